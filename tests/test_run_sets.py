"""Two run sets of the same configurations side by side (`mixstudy compare`), on fabricated runs."""

from __future__ import annotations

import pandas as pd
import pytest

from test_aggregate import ACCURACY, small_params, welch_by_hand, write_run

from mixstudy.results.analysis import analyse
from mixstudy.cli import main
from mixstudy.results.run_sets import compare_run_sets, verdict

RUNS = ["sweep/baseline/seed{}", "sweep/manifold_S0-2_alpha4/seed{}"]


def _run_set(root, params, seeds, shift=0.0):
    for run in RUNS:
        for seed in seeds:
            name = run.split("/")[1]
            write_run(root, params, run.format(seed), acc=ACCURACY[name][seed] + shift)


def test_each_configuration_finished_in_both_sets_is_compared_seed_by_seed_and_by_its_mean(tmp_path):
    params = small_params()
    _run_set(tmp_path / "a", params, [0, 1, 2], shift=0.01)
    _run_set(tmp_path / "b", params, [0, 1])
    configs = compare_run_sets(analyse(params, tmp_path / "a"), analyse(params, tmp_path / "b"), ("bf16", "fp32"), tmp_path / "out")
    assert list(dict.fromkeys(configs["name"])) == ["baseline", "manifold_S0-2_alpha4"]
    row = configs[(configs["name"] == "baseline") & (configs["metric"] == "acc")].iloc[0]
    a = [100 * (v + 0.01) for v in ACCURACY["baseline"]]
    b = [100 * v for v in ACCURACY["baseline"][:2]]
    diff, low, high, _ = welch_by_hand(a, b)
    assert (row["n_bf16"], row["n_fp32"]) == (3, 2)
    assert row["diff"] == pytest.approx(diff) and row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
    seeds = pd.read_csv(tmp_path / "out/compare_seeds.csv")
    third = seeds[(seeds["name"] == "baseline") & (seeds["seed"] == 2)].iloc[0]
    assert third["acc_bf16"] == pytest.approx(100 * (ACCURACY["baseline"][2] + 0.01)) and pd.isna(third["acc_fp32"])
    text = (tmp_path / "out/compare.md").read_text()
    assert "# bf16 against fp32" in text and "within seed noise" in text


def test_the_verdict_says_whether_the_interval_holds_zero():
    assert verdict(pd.Series({"ci_low": -1.0, "ci_high": 2.0})).startswith("within seed noise")
    assert verdict(pd.Series({"ci_low": 0.5, "ci_high": 2.0})).startswith("beyond seed noise")
    assert verdict(pd.Series({"ci_low": float("nan"), "ci_high": float("nan")})) == "too few seeds for an interval"


def test_the_command_refuses_sets_with_nothing_in_common_in_one_line(tmp_path, capsys):
    params = small_params()
    _run_set(tmp_path / "a", params, [0, 1])
    (tmp_path / "b").mkdir()
    args = ["compare", "--params-json", '{"sweep": {"alphas": [1.0, 4.0], "layer_sets": [[0], [0, 2]], "seeds": [0, 1, 2]}}',
            "--runs-root", str(tmp_path / "a"), "--against-root", str(tmp_path / "b"), "--out-dir", str(tmp_path / "out")]
    assert main(args) == 2
    assert not (tmp_path / "out").exists()  # nothing written
    error = capsys.readouterr().err.strip()
    assert "no sweep configuration has finished runs in both" in error and len(error.splitlines()) == 1
