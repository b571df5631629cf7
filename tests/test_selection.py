"""The tuning selection on fabricated tuning folders with a known best: one rule for the sweep
(``mixstudy select``), the tables, summary.json and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mixstudy.runs import study
from mixstudy.core.errors import MixstudyError
from mixstudy.report.comparison import comparison_section
from mixstudy.results.selection import SELECTION_RULE, select_best
from mixstudy.results.analysis import analyse, mixing_differences
from mixstudy.results.selection import best_tuning
from mixstudy.results.summary import summary_metrics

from test_aggregate import small_params

GRID = [
    "tuning.grid.scheduler=[step, cosine, warm_restarts]",
    "tuning.grid.momentum=[0.9, 0.95]",
    "tuning.grid.weight_decay=[0.001]",
    "tuning.seeds=[0, 1]",
]
# (test accuracy, validation accuracy) per configuration and seed. By validation the best is
# cosine/0.95 (mean 0.55); by test it would be step/0.9 (mean 0.60); the worst is warm_restarts/0.95.
SCORES = {
    "step_mom0.9_wd0.001": [(0.60, 0.40), (0.60, 0.42)],
    "step_mom0.95_wd0.001": [(0.45, 0.50), (0.47, 0.52)],
    "cosine_mom0.9_wd0.001": [(0.44, 0.52), (0.46, 0.54)],
    "cosine_mom0.95_wd0.001": [(0.50, 0.56), (0.52, 0.54)],
    "warm_restarts_mom0.9_wd0.001": [(0.48, 0.49), (0.48, 0.51)],
    "warm_restarts_mom0.95_wd0.001": [(0.30, 0.20), (0.31, 0.21)],
}
BEST_BY_VAL = ("cosine", 0.95, 0.001)
BEST_BY_TEST = ("step", 0.9, 0.001)


@pytest.fixture
def params():
    return small_params(*GRID)


def write_tuning_run(root: Path, params: dict, spec: study.RunSpec, test_acc: float, val_acc: float | None,
                     status: str = "ok", stale: bool = False) -> None:
    config = study.spec_config(params, spec, None)
    if stale:  # a folder left from an earlier params.yaml: another tuning budget
        config["train"]["epochs"] += 1
    metrics = {"test": {"acc": test_acc, "nll": 1.0, "ece": 0.1, "brier": 0.5}}
    if val_acc is not None:
        metrics["val"] = {"acc": val_acc, "nll": 1.0, "ece": 0.1, "brier": 0.5}
    record = {"status": status, "error": None if status == "ok" else "loss became nan", "config": config,
              "metrics": metrics if status == "ok" else None, "wall_time_s": 1.0, "epochs_completed": 1}
    folder = spec.folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(record))


def write_tuning(root: Path, params: dict, with_val: bool = True, scores: dict = SCORES, **special) -> None:
    """Every tuning run of ``scores``; ``special`` maps a run id to extra arguments (stale, status)."""
    for spec in study.tuning_runs(params):
        test_acc, val_acc = scores[spec.name][spec.seed]
        write_tuning_run(root, params, spec, test_acc, val_acc if with_val else None, **special.get(spec.run_id, {}))


def chosen(selection: dict) -> tuple:
    return selection["scheduler"], selection["momentum"], selection["weight_decay"]


def tables_choice(params: dict, root: Path) -> tuple:
    best = best_tuning(analyse(params, root))
    return best["scheduler"], best["momentum"], best["weight_decay"]


def test_selection_picks_the_best_validation_mean(tmp_path, params):
    write_tuning(tmp_path, params)
    selection = select_best(params, tmp_path)
    assert chosen(selection) == BEST_BY_VAL
    assert selection["mean_acc"] == pytest.approx(0.55)
    assert selection["selected_by"] == "mean val accuracy over seeds"
    means = [row["mean_acc"] for row in selection["ranking"]]
    assert means == sorted(means, reverse=True) and means[-1] == pytest.approx(0.205)  # the worst ranks last
    assert tables_choice(params, tmp_path) == BEST_BY_VAL


def test_without_validation_the_test_mean_decides(tmp_path, params):
    write_tuning(tmp_path, params, with_val=False)
    selection = select_best(params, tmp_path)
    assert chosen(selection) == BEST_BY_TEST
    assert selection["selected_by"] == "mean test accuracy over seeds"
    assert tables_choice(params, tmp_path) == BEST_BY_TEST


def test_stale_runs_are_left_out(tmp_path, params):
    """A stale configuration with the best scores is skipped; a stale seed leaves its configuration's mean."""
    stale = {
        "tuning/warm_restarts_mom0.95_wd0.001/seed0": {"stale": True},
        "tuning/warm_restarts_mom0.95_wd0.001/seed1": {"stale": True},
        "tuning/step_mom0.95_wd0.001/seed1": {"stale": True},
    }
    write_tuning(tmp_path, params, **stale)
    for run_id in ("tuning/warm_restarts_mom0.95_wd0.001/seed0", "tuning/warm_restarts_mom0.95_wd0.001/seed1"):
        write_tuning_run(tmp_path, params, study.find_run(params, run_id), 0.99, 0.99, stale=True)  # best, if counted
    selection = select_best(params, tmp_path)
    assert chosen(selection) == BEST_BY_VAL
    ranking = {row["name"]: row for row in selection["ranking"]}
    assert ranking["warm_restarts_mom0.95_wd0.001"]["finished_seeds"] == 0
    assert math.isnan(ranking["warm_restarts_mom0.95_wd0.001"]["mean_acc"])
    assert ranking["step_mom0.95_wd0.001"]["mean_acc"] == pytest.approx(0.50)  # seed 1 (0.52) left out
    assert ranking["step_mom0.95_wd0.001"]["stale_seeds"] == 1
    assert tables_choice(params, tmp_path) == BEST_BY_VAL


def test_failed_runs_are_left_out(tmp_path, params):
    failed = {f"tuning/cosine_mom0.95_wd0.001/seed{seed}": {"status": "failed"} for seed in (0, 1)}
    write_tuning(tmp_path, params, **failed)
    selection = select_best(params, tmp_path)
    assert chosen(selection) == ("cosine", 0.9, 0.001)  # the next best by validation (0.53)
    assert tables_choice(params, tmp_path) == ("cosine", 0.9, 0.001)
    row = next(r for r in selection["ranking"] if r["name"] == "cosine_mom0.95_wd0.001")
    assert (row["finished_seeds"], row["failed_seeds"], row["stale_seeds"]) == (0, 2, 0)


def test_one_finished_run_without_validation_makes_the_test_mean_decide(tmp_path, params):
    write_tuning(tmp_path, params)
    spec = study.find_run(params, "tuning/step_mom0.9_wd0.001/seed1")
    write_tuning_run(tmp_path, params, spec, *SCORES[spec.name][1][:1], None)
    selection = select_best(params, tmp_path)
    assert chosen(selection) == BEST_BY_TEST and selection["selected_by"] == "mean test accuracy over seeds"


def test_ties_keep_grid_order(tmp_path, params):
    """cosine/0.9 ties step/0.95 (grid order: step first; by name cosine would be)."""
    tied = {name: [(0.4, 0.4), (0.4, 0.4)] for name in SCORES}
    tied["step_mom0.95_wd0.001"] = tied["cosine_mom0.9_wd0.001"] = [(0.5, 0.6), (0.5, 0.6)]
    write_tuning(tmp_path, params, scores=tied)
    assert chosen(select_best(params, tmp_path)) == ("step", 0.95, 0.001)


def test_summary_names_the_selected_configuration(tmp_path, params):
    write_tuning(tmp_path, params)
    analysis = analyse(params, tmp_path)
    summary = summary_metrics(analysis, mixing_differences(analysis))
    assert summary["tuning.best.acc_mean"] == pytest.approx(51.0)  # cosine/0.95's test mean, in percent


def test_missing_tuning_runs_stop_the_selection_naming_three(tmp_path, params):
    write_tuning(tmp_path, params)
    specs = study.tuning_runs(params)
    for spec in specs[:4]:
        (spec.folder(tmp_path) / "metrics.json").unlink()
    with pytest.raises(MixstudyError, match="^4 tuning run") as info:
        select_best(params, tmp_path)
    assert all(spec.run_id in str(info.value) for spec in specs[:3]) and specs[3].run_id not in str(info.value)


def test_a_damaged_tuning_record_stops_the_selection_naming_the_file(tmp_path, params):
    """A truncated metrics.json is not a missing run: the error names the file and the fix."""
    write_tuning(tmp_path, params)
    damaged = study.tuning_runs(params)[2].folder(tmp_path) / "metrics.json"
    damaged.write_text(damaged.read_text()[:40])
    with pytest.raises(MixstudyError, match="is empty or damaged") as info:
        select_best(params, tmp_path)
    assert str(damaged) in str(info.value) and "delete it and train the run again" in str(info.value)


def test_every_run_failed_or_stale_is_an_error(tmp_path, params):
    write_tuning(tmp_path, params, **{spec.run_id: {"stale": True} for spec in study.tuning_runs(params)})
    with pytest.raises(MixstudyError, match="^every tuning run failed or is stale; there is no configuration to select$"):
        select_best(params, tmp_path)
    assert best_tuning(analyse(params, tmp_path)) is None


def test_stale_runs_are_named_in_the_log(tmp_path, params, caplog):
    stale = "tuning/step_mom0.95_wd0.001/seed1"
    write_tuning(tmp_path, params, **{stale: {"stale": True}})
    select_best(params, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{stale} is stale and left out of the selection: train.epochs is 101")


def test_the_selection_file_is_plain_yaml_read_back_unchanged(tmp_path, params):
    import yaml

    from mixstudy.results.selection import write_selection

    write_tuning(tmp_path, params)
    selection = select_best(params, tmp_path)
    write_selection(selection, tmp_path / "selection.yaml")
    text = (tmp_path / "selection.yaml").read_text()
    assert "numpy" not in text and text.startswith("scheduler: cosine\nmomentum: 0.95\n")  # in order, plain numbers
    read = yaml.safe_load(text)
    assert chosen(read) == BEST_BY_VAL and read["ranking"] == selection["ranking"]
    assert study.read_selection(tmp_path / "selection.yaml")["scheduler"] == "cosine"


def test_the_rule_is_stated_once_in_words():
    assert "validation" in SELECTION_RULE and "stale" in SELECTION_RULE and "else on the test set" in SELECTION_RULE


def test_a_configuration_whose_one_seed_failed_is_ranked_last_with_its_settings(tmp_path):
    """Table 1 at one seed (config/table3.yaml): a configuration with no finished run still names its
    settings, from its only run, and ranks after every finished one."""
    one_seed = small_params(*GRID[:-1], "tuning.seeds=[0]")
    write_tuning(tmp_path, one_seed, **{"tuning/cosine_mom0.95_wd0.001/seed0": {"status": "failed"}})
    ranking = select_best(one_seed, tmp_path)["ranking"]
    last = ranking[-1]
    assert (last["name"], last["scheduler"], last["momentum"], last["weight_decay"]) == (
        "cosine_mom0.95_wd0.001", "cosine", 0.95, 0.001)
    assert math.isnan(last["mean_acc"]) and (last["finished_seeds"], last["failed_seeds"]) == (0, 1)
    assert list(last) == ["name", "scheduler", "momentum", "weight_decay", "mean_acc", "finished_seeds",
                          "failed_seeds", "stale_seeds"]


def test_the_report_says_the_tuning_choice_was_made_on_validation_and_what_test_would_pick(tmp_path, params):
    write_tuning(tmp_path, params)
    analysis = analyse(params, tmp_path)
    text = comparison_section(analysis, mixing_differences(analysis))
    assert "| cosine_mom0.95_wd0.001, chosen on validation (2/2 seeds) |" in text
    assert ("ranked on the test set, as the study's Table 1 is, ours would be step_mom0.9_wd0.001 at 60.00 % "
            "(9.00 points above the choice).") in text


def test_the_report_names_no_split_when_the_test_set_ranked_the_tuning(tmp_path, params):
    write_tuning(tmp_path, params, with_val=False)
    analysis = analyse(params, tmp_path)
    text = comparison_section(analysis, mixing_differences(analysis))
    assert "| step_mom0.9_wd0.001 (2/2 seeds) |" in text
    assert "validation" not in text and "ours would be" not in text
