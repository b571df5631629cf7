"""The precision a run trained in (float32 or bfloat16), shown per configuration; a configuration
whose seeds trained in different precisions is flagged in the tables, problems.csv and the report."""

from __future__ import annotations

import json

from test_aggregate import small_params, write_all_runs

from mixstudy.runs import run_folder
from mixstudy.results.analysis import analyse
from mixstudy.report.results import runs_section
from mixstudy.results.tables import MIXED_PRECISION, study_tables


def _trained_in(root, run_id: str, precision: str) -> None:
    path = root / run_id / "metrics.json"
    record = json.loads(path.read_text())
    record["provenance"]["precision"] = precision
    path.write_text(json.dumps(record))


def _table(analysis, name):
    return next(table for table in study_tables(analysis) if table.name == name)


def test_runs_before_the_record_of_precision_are_read_as_what_their_amp_resolved_to():
    cpu = {"config": {"compute": {"amp": "auto"}}, "provenance": {"device": "cpu"}}
    assert run_folder.recorded_precision(cpu) == "float32"
    assert run_folder.recorded_precision({"config": {"compute": {"amp": "auto"}}, "provenance": {"device": "cuda:0"}}) == "bfloat16"
    assert run_folder.recorded_precision({"config": {"compute": {"amp": "on"}}, "provenance": {"device": "cpu"}}) == "bfloat16"
    assert run_folder.recorded_precision({**cpu, "provenance": {"device": "cpu", "precision": "bfloat16"}}) == "bfloat16"


def test_one_precision_is_stated_and_nothing_is_flagged(tmp_path):
    params = small_params()
    write_all_runs(tmp_path, params)  # records without a precision: CPU float32 (amp auto)
    analysis = analyse(params, tmp_path)
    assert set(analysis.configs["precision"].dropna()) == {"float32"}
    table3 = _table(analysis, "table3_acc")
    assert "Trained in float32." in table3.notes and MIXED_PRECISION not in table3.markdown()
    assert analysis.counts()["mixed_precision"] == 0
    assert "Precision: 30 finished runs trained in float32." in runs_section(analysis)


def test_a_configuration_whose_seeds_trained_in_different_precisions_is_flagged_everywhere(tmp_path):
    params = small_params()
    write_all_runs(tmp_path, params)
    _trained_in(tmp_path, "sweep/manifold_S0-2_alpha4/seed1", "bfloat16")
    for seed in range(3):  # one configuration wholly in bf16: stated, not flagged
        _trained_in(tmp_path, f"sweep/manifold_S0_alpha1/seed{seed}", "bfloat16")
    analysis = analyse(params, tmp_path)
    configs = analysis.configs.set_index("name")
    assert configs.loc["manifold_S0-2_alpha4", "precision"] == "bfloat16+float32"
    assert configs.loc["manifold_S0_alpha1", "precision"] == "bfloat16"
    flagged = analysis.problems[analysis.problems["problem"] == "mixed precision"]
    assert sorted(flagged["run_id"]) == [f"sweep/manifold_S0-2_alpha4/seed{seed}" for seed in range(3)]
    table3 = _table(analysis, "table3_acc")
    cell = table3.display.set_index("S").loc["{0,2}", "α=4"]
    assert cell.endswith(MIXED_PRECISION)
    assert table3.display.set_index("S").loc["{0}", "α=1"].endswith(MIXED_PRECISION) is False
    assert any("S={0,2}, α=4 (bfloat16+float32)" in note for note in table3.notes)
    assert any("bfloat16: S={0}, α=1" in note for note in table3.notes)
    assert r"$^{\ddagger}$" in table3.latex()
    section = runs_section(analysis)
    assert "3 runs belong to configurations whose seeds trained in different precisions" in section
    assert "mixed precision" in section
