"""Aggregation on fabricated run folders with known accuracies (no training).

Standard deviations are sample standard deviations (ddof=1). Differences to the baseline use
Welch's unequal-variance t-interval and t-test; the tests recompute them from the textbook formulas.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from mixstudy.runs import study
from mixstudy.core.config import load_params
from mixstudy.results.aggregation import aggregate
from mixstudy.results.analysis import analyse, collect_runs, Expectation, missing_reason, mixing_differences
from mixstudy.results.statistics import mean_interval
from mixstudy.results.summary import mean_curves, summary_metrics
from mixstudy.results.tables import (
    Table,
    best_epoch_table,
    calibration_table,
    format_mean_interval,
    format_p,
    study_tables,
)

REPO = Path(__file__).resolve().parents[1]
SELECTION = {"scheduler": "cosine", "momentum": 0.9, "weight_decay": 0.001}
SMALL_GRIDS = [
    "tuning.grid.scheduler=[step, cosine]",
    "tuning.grid.momentum=[0.9]",
    "tuning.grid.weight_decay=[0.001]",
    "tuning.seeds=[0, 1, 2]",
    "sweep.alphas=[1.0, 4.0]",
    "sweep.layer_sets=[[0], [0, 2]]",
    "sweep.seeds=[0, 1, 2]",
    "sweep.cutmix_alphas=[1.0]",
]
# Test accuracies (fractions, as metrics.json holds them) per configuration name, seeds 0, 1, 2.
ACCURACY = {
    "step_mom0.9_wd0.001": [0.40, 0.42, 0.41],
    "cosine_mom0.9_wd0.001": [0.45, 0.47, 0.49],
    "baseline": [0.50, 0.52, 0.55],
    "manifold_S0_alpha1": [0.53, 0.54, 0.58],
    "manifold_S0_alpha4": [0.56, 0.57, 0.59],
    "manifold_S0-2_alpha1": [0.55, 0.56, 0.60],
    "manifold_S0-2_alpha4": [0.60, 0.62, 0.61],
    "cutmix_alpha1": [0.54, 0.57, 0.55],
    "label_smoothing_eps0.1": [0.51, 0.53, 0.54],
    "cutout_16": [0.52, 0.55, 0.53],
}


def small_params(*extra: str) -> dict:
    return load_params([REPO / "params.yaml"], SMALL_GRIDS + list(extra))


def spec_of(params: dict, run_id: str) -> study.RunSpec:
    return study.find_run(params, run_id)


def reliability_bins(acc: float, n_bins: int = 5) -> dict:
    edges = [i / n_bins for i in range(n_bins + 1)]
    return {
        "bin_edges": edges,
        "bin_accuracy": [min(1.0, acc * (i + 1) / 3) for i in range(n_bins)],
        "bin_confidence": [(edges[i] + edges[i + 1]) / 2 for i in range(n_bins)],
        "bin_count": [100, 200, 300, 250, 150],
    }


def write_history(folder: Path, acc: float, epochs: int = 4) -> None:
    """Training columns every epoch; test and validation columns every second epoch, empty otherwise.
    The test accuracy peaks at epoch 2 (acc + 0.02), so the best test epoch differs from the final."""
    lines = ["epoch\ttrain_loss\ttrain_acc\tlr\telapsed_s\ttest_acc\tval_acc\tval_nll"]
    for epoch in range(1, epochs + 1):
        evaluated = f"{acc + 0.02 * (epoch == 2):.4f}\t{acc:.4f}\t{2 - acc:.4f}" if epoch % 2 == 0 else "\t"
        lines.append(f"{epoch}\t{2.3 / epoch:.4f}\t{acc * epoch / epochs:.4f}\t{0.1 / epoch:.4f}\t{epoch * 1.5}\t{evaluated}")
    (folder / "history.tsv").write_text("\n".join(lines) + "\n")


def run_metrics(acc: float) -> dict:
    """metrics.json's metrics: test, after temperature scaling, and of the best validation epoch."""
    return {
        "test": {"acc": acc, "nll": 2.0 - acc, "ece": acc / 10, "brier": 1.0 - acc},
        "test_ts": {"acc": acc, "nll": 1.9 - acc, "ece": acc / 20, "brier": 0.9 - acc, "temperature": 1.0 + acc},
        "test_best_val": {"acc": acc + 0.01, "nll": 2.0 - acc, "ece": acc / 10, "brier": 1.0 - acc, "epoch": 2,
                          "best_by": "val_acc", "val_acc": acc},
    }


def write_run(root: Path, params: dict, run_id: str, acc: float | None = None, status: str = "ok",
              wall_time_s: float = 360.0) -> Path:
    """A run folder as training writes it; ``acc`` defaults to the table above."""
    spec = spec_of(params, run_id)
    acc = ACCURACY[spec.name][spec.seed] if acc is None else acc
    folder = spec.folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    ok = status == "ok"
    record = {
        "status": status,
        "error": None if ok else "training loss became nan at epoch 3",
        "config": study.spec_config(params, spec, SELECTION),
        "config_hash": "0" * 16,
        "metrics": run_metrics(acc) if ok else None,
        "reliability": {"test": reliability_bins(acc), "test_ts": reliability_bins(acc / 2)} if ok else None,
        "wall_time_s": wall_time_s,
        "epochs_completed": 4 if ok else 3,
        "provenance": {},
    }
    (folder / "metrics.json").write_text(json.dumps(record))
    write_history(folder, acc)
    return folder


def write_all_runs(root: Path, params: dict, skip: tuple[str, ...] = ()) -> None:
    for spec in study.all_runs(params):
        if spec.run_id not in skip:
            write_run(root, params, spec.run_id)


def percent(values):
    return [100 * v for v in values]


def welch_by_hand(a, b, confidence=0.95):
    """Welch's interval and test from the formulas: se, Welch-Satterthwaite df, Student t."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.mean(a) - statistics.mean(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    p = 2 * stats.t.sf(abs(diff / se), df)
    return diff, diff - half, diff + half, p


def strict_json(path: Path) -> dict:
    def refuse(token):
        raise ValueError(f"{path} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def params():
    return small_params()


@pytest.fixture
def complete_root(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    return root


def test_collect_runs_lists_every_expected_run(complete_root, params):
    runs, problems = collect_runs(params, complete_root)
    assert len(runs) == len(study.all_runs(params)) == 2 * 3 + 8 * 3  # sweep: baseline, 4 manifold, CutMix, LS, Cutout
    assert problems.empty
    row = runs.set_index("run_id").loc["sweep/manifold_S0-2_alpha4/seed1"]
    assert (row["method"], row["alpha"], row["layers"], row["status"]) == ("manifold", 4.0, "0-2", "ok")
    assert row["acc"] == pytest.approx(0.62)  # runs.csv keeps metrics.json's fractions
    assert (row["scheduler"], row["momentum"], row["weight_decay"]) == ("cosine", 0.9, 0.001)  # the selection


def test_means_and_sample_std_over_seeds(complete_root, params):
    analysis = analyse(params, complete_root)
    configs = analysis.configs.set_index("name")
    for name, values in ACCURACY.items():
        assert configs.loc[name, "acc_mean"] == pytest.approx(statistics.mean(percent(values)))
        assert configs.loc[name, "acc_std"] == pytest.approx(statistics.stdev(percent(values)))  # ddof=1
        assert (configs.loc[name, "n"], configs.loc[name, "asked"]) == (3, 3)


def test_difference_to_baseline_matches_welch_formulas(complete_root, params):
    differences = mixing_differences(analyse(params, complete_root)).set_index("name")
    for name in ("manifold_S0-2_alpha4", "manifold_S0_alpha1", "cutmix_alpha1"):
        diff, low, high, p = welch_by_hand(percent(ACCURACY[name]), percent(ACCURACY["baseline"]))
        row = differences.loc[name]
        assert row["diff"] == pytest.approx(diff)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["p"] == pytest.approx(p)


def test_summary_keys_and_values(complete_root, params, tmp_path):
    summary_path = tmp_path / "metrics" / "summary.json"
    aggregate(params, complete_root, tmp_path / "tables", summary_path)
    summary = strict_json(summary_path)
    assert all(isinstance(value, (int, float)) for value in summary.values())
    assert summary["runs.expected"] == summary["runs.finished"] == 30
    assert summary["runs.failed"] == summary["runs.missing"] == summary["runs.mismatched"] == 0
    assert summary["compute.total_hours"] == pytest.approx(30 * 360 / 3600)
    assert summary["compute.tuning_hours"] == pytest.approx(6 * 360 / 3600)
    assert summary["compute.sweep_hours"] == pytest.approx(24 * 360 / 3600)
    assert summary["baseline.acc_mean"] == pytest.approx(statistics.mean(percent(ACCURACY["baseline"])), abs=1e-6)
    assert summary["baseline.acc_std"] == pytest.approx(statistics.stdev(percent(ACCURACY["baseline"])), abs=1e-6)
    assert summary["baseline.n"] == 3 and isinstance(summary["baseline.n"], int)
    cell = "sweep.S=0-2.alpha=4"
    diff, low, high, p = welch_by_hand(percent(ACCURACY["manifold_S0-2_alpha4"]), percent(ACCURACY["baseline"]))
    assert summary[f"{cell}.acc_mean"] == pytest.approx(61.0, abs=1e-6)
    assert summary[f"{cell}.delta_acc"] == pytest.approx(diff, abs=1e-6)
    assert summary[f"{cell}.delta_acc_ci_low"] == pytest.approx(low, abs=1e-6)
    assert summary[f"{cell}.delta_acc_ci_high"] == pytest.approx(high, abs=1e-6)
    assert summary[f"{cell}.delta_acc_p"] == pytest.approx(p, abs=1e-6)
    for key in (f"{cell}.nll_mean", f"{cell}.ece_std", "cutmix.alpha=1.delta_acc", "sweep.S=0.alpha=1.acc_mean",
                "tuning.cosine_mom0.9_wd0.001.acc_mean", "tuning.best.acc_mean", "sweep.best.delta_acc"):
        assert key in summary
    assert summary["tuning.best.acc_mean"] == pytest.approx(47.0, abs=1e-6)
    assert summary["sweep.best.acc_mean"] == pytest.approx(61.0, abs=1e-6)


def test_headline_is_the_fixed_cell_against_the_baseline_and_the_runs_counts(complete_root, params, tmp_path):
    """metrics/headline.json: what `dvc exp show` shows by default, beside the detailed summary."""
    aggregate(params, complete_root, tmp_path / "tables", tmp_path / "metrics" / "summary.json")
    headline = strict_json(tmp_path / "metrics" / "headline.json")
    diff, low, high, _ = welch_by_hand(percent(ACCURACY["manifold_S0-2_alpha4"]), percent(ACCURACY["baseline"]))
    assert headline["gain"] == {"points": round(diff, 2), "low": round(low, 2), "high": round(high, 2)}
    assert headline["fixed_in_advance"] is True  # the study's S={0,2}, alpha=4 is in this grid
    assert headline["mixup"]["acc"] == 61.0 and headline["mixup"]["seeds"] == 3
    assert headline["baseline"]["acc"] == round(statistics.mean(percent(ACCURACY["baseline"])), 2)
    assert set(headline["mixup"]) == set(headline["baseline"]) == {"acc", "nll", "ece", "seeds"}
    assert headline["runs"] == {"finished": 30, "stale": 0, "expected": 30}


def test_headline_falls_back_to_the_best_cell_and_counts_a_stale_run(tmp_path):
    params = small_params("sweep.layer_sets=[[0]]", "sweep.alphas=[1.0]")  # the fixed cell is not in the grid
    root = tmp_path / "runs"
    write_all_runs(root, params)
    other = small_params("sweep.layer_sets=[[0]]", "sweep.alphas=[1.0]", "train.lr=0.5")
    write_run(root, other, "sweep/baseline/seed2")  # another training in a run's folder: stale
    aggregate(params, root, tmp_path / "tables", tmp_path / "summary.json", headline_path=tmp_path / "h.json")
    headline = strict_json(tmp_path / "h.json")
    assert headline["fixed_in_advance"] is False and headline["mixup"]["acc"] == round(statistics.mean(percent(ACCURACY["manifold_S0_alpha1"])), 2)
    assert headline["baseline"]["seeds"] == 2 and headline["runs"]["stale"] == 1
    assert headline["runs"]["finished"] == headline["runs"]["expected"] - 1


def test_missing_seed_is_marked_and_listed(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params, skip=("sweep/manifold_S0-2_alpha4/seed2", "sweep/manifold_S0_alpha1/seed1"))
    diverged = spec_of(params, "sweep/manifold_S0_alpha1/seed1").folder(root)
    diverged.mkdir(parents=True)
    (diverged / "failure.json").write_text(json.dumps({"status": "failed", "error": "training loss became nan"}))

    analysis = analyse(params, root)
    problems = analysis.problems.set_index("run_id")
    assert problems.loc["sweep/manifold_S0-2_alpha4/seed2", "problem"] == "missing"
    assert "failure.json: training loss became nan" in problems.loc["sweep/manifold_S0_alpha1/seed1", "reason"]
    cell = analysis.configs.set_index("name").loc["manifold_S0-2_alpha4"]
    assert (cell["n"], cell["asked"]) == (2, 3)
    assert cell["acc_mean"] == pytest.approx(61.0)  # the mean of the two finished seeds, 60 and 62

    grid = {table.name: table for table in study_tables(analysis)}["table3_acc"]
    row = grid.display.set_index("S").loc["{0,2}"]
    assert row["α=4"] == "61.00 ± 1.41†"
    assert row["α=1"] == "57.00 ± 2.65"
    assert "S={0,2}, α=4: 2/3" in grid.notes[0] and "S={0}, α=1: 2/3" in grid.notes[0]
    assert "†" in grid.markdown() and r"$^{\dagger}$" in grid.latex()


def test_failed_run_is_listed_and_excluded(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    write_run(root, params, "sweep/baseline/seed2", status="failed")
    summary_path = tmp_path / "summary.json"
    analysis = aggregate(params, root, tmp_path / "tables", summary_path)

    problems = analysis.problems.set_index("run_id")
    assert problems.loc["sweep/baseline/seed2", "problem"] == "failed"
    assert "nan" in problems.loc["sweep/baseline/seed2", "reason"]
    summary = strict_json(summary_path)
    assert summary["runs.failed"] == 1 and summary["runs.finished"] == 29
    assert summary["baseline.n"] == 2
    assert summary["baseline.acc_mean"] == pytest.approx(51.0, abs=1e-6)  # seeds 0 and 1 only
    problems_csv = (tmp_path / "tables" / "problems.csv").read_text()
    assert "sweep/baseline/seed2,sweep,baseline,2,failed" in problems_csv


def test_one_seed_leaves_std_out_of_the_summary(tmp_path):
    params = small_params("sweep.seeds=[0]", "tuning.seeds=[0]")
    root = tmp_path / "runs"
    write_all_runs(root, params)
    summary = summary_metrics(analyse(params, root), mixing_differences(analyse(params, root)))
    assert "baseline.acc_mean" in summary and "baseline.acc_std" not in summary
    assert "sweep.S=0-2.alpha=4.delta_acc" in summary
    assert "sweep.S=0-2.alpha=4.delta_acc_p" not in summary  # a t-test needs two seeds a side


def test_stale_run_is_mismatched_not_averaged(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    stale = spec_of(params, "tuning/step_mom0.9_wd0.001/seed0").folder(root) / "metrics.json"
    record = json.loads(stale.read_text())
    record["config"]["train"]["epochs"] = 7  # written under an older tuning.epochs
    stale.write_text(json.dumps(record))

    analysis = analyse(params, root)
    problem = analysis.problems.set_index("run_id").loc["tuning/step_mom0.9_wd0.001/seed0"]
    assert problem["problem"] == "mismatched" and "train.epochs is 7" in problem["reason"]
    assert analysis.configs.set_index("name").loc["step_mom0.9_wd0.001", "n"] == 2


def test_aggregate_writes_every_table_format(complete_root, params, tmp_path):
    out = tmp_path / "tables"
    aggregate(params, complete_root, out, tmp_path / "summary.json")
    for stem in ("table1_tuning", "table2_baseline", "table3_acc", "table3_nll", "table3_ece", "table3_delta_acc",
                 "table4_comparison"):
        for suffix in ("csv", "md", "tex"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0, f"{stem}.{suffix}"
    assert len((out / "runs.csv").read_text().splitlines()) == 31
    tuning = (out / "table1_tuning.md").read_text()
    assert "47.00 ± 2.00" in tuning and "3/3" in tuning
    latex = (out / "table3_acc.tex").read_text()
    assert r"\{0,2\}" in latex and r"$\pm$" in latex and "±" not in latex


def test_runs_csv_reads_back_as_the_collected_runs(complete_root, params, tmp_path, caplog):
    analysis = aggregate(params, complete_root, tmp_path / "tables", tmp_path / "summary.json")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # every run finished
    for table in study_tables(analysis):
        written = pd.read_csv(tmp_path / "tables" / f"{table.name}.csv")
        assert list(written.columns) == [str(column) for column in table.data.columns], table.name
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv")
    assert list(runs.columns) == list(analysis.runs.columns)  # no index column
    assert list(runs["run_id"]) == list(analysis.runs["run_id"])


def test_every_table_and_runs_csv_name_the_data_set_of_a_cifar100_run(tmp_path):
    """Each table's title begins with the data set's display name and each CSV's first column is the
    data set: the tables of two data sets share their file names, never their content."""
    params = small_params("data.name=cifar100")
    root = tmp_path / "runs"
    write_all_runs(root, params)
    analysis = aggregate(params, root, tmp_path / "tables", tmp_path / "summary.json")
    assert analysis.counts()["finished"] == 30
    tables = sorted((tmp_path / "tables").glob("table*.csv"))
    assert {path.stem for path in tables} >= {"table1_tuning", "table3_acc", "table4_comparison", "table3_published"}
    for path in [*tables, tmp_path / "tables" / "runs.csv", tmp_path / "tables" / "problems.csv"]:
        written = pd.read_csv(path)
        assert written.columns[0] == "dataset", path.name
        assert set(written["dataset"]) <= {"cifar100"}, path.name
    assert set(pd.read_csv(tmp_path / "tables" / "runs.csv")["dataset"]) == {"cifar100"}
    for path in tables:
        assert path.with_suffix(".md").read_text().startswith("**CIFAR-100. "), path.stem
        assert r"\caption{CIFAR-100. " in path.with_suffix(".tex").read_text(), path.stem
    titles = [table.title for table in study_tables(analysis)]
    assert titles[0] == "CIFAR-100. Table 1: baseline tuning, test accuracy over seeds"
    assert all(title.startswith("CIFAR-100. ") for title in titles)


def test_runs_csv_gives_each_run_the_data_set_its_record_names(complete_root, params, tmp_path):
    """A CIFAR-10 run records no `data` key (its configuration and training hash as they always were):
    it is cifar10. A run of another data set in a CIFAR-10 folder keeps its own, and is mismatched."""
    intruder = spec_of(params, "sweep/baseline/seed1").folder(complete_root) / "metrics.json"
    record = json.loads(intruder.read_text())
    assert "data" not in record["config"]
    record["config"]["data"] = {"name": "svhn"}
    intruder.write_text(json.dumps(record))
    aggregate(params, complete_root, tmp_path / "tables", tmp_path / "summary.json")
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv").set_index("run_id")
    assert runs.loc["sweep/baseline/seed1", "dataset"] == "svhn" and runs.loc["sweep/baseline/seed1", "status"] == "mismatched"
    assert set(runs.drop(index="sweep/baseline/seed1")["dataset"]) == {"cifar10"}
    assert list(pd.read_csv(tmp_path / "tables" / "problems.csv")["dataset"]) == ["cifar10"]  # the run asked for
    assert (tmp_path / "tables" / "table3_acc.md").read_text().startswith("**CIFAR-10. Table 3: test accuracy (%)")


def test_curves_are_the_per_epoch_means_of_the_baseline_and_the_best_mixup(complete_root, params, tmp_path):
    """curves.tsv (the DVC plot): each epoch's mean over seeds, for the baseline and the best mixup cell only."""
    aggregate(params, complete_root, tmp_path / "tables", tmp_path / "summary.json")
    curves = pd.read_csv(tmp_path / "tables" / "curves.tsv", sep="\t")
    assert list(curves.columns) == ["epoch"] + [
        f"{label}_{column}" for label in ("baseline", "best_mixup") for column in ("train_loss", "train_acc", "lr")
    ]
    assert list(curves["epoch"]) == [1, 2, 3, 4]
    for label, name in (("baseline", "baseline"), ("best_mixup", "manifold_S0-2_alpha4")):
        for row in curves.itertuples():
            # write_history's training accuracy at an epoch, as its file rounds it
            expected = statistics.mean(round(acc * row.epoch / 4, 4) for acc in ACCURACY[name])
            assert getattr(row, f"{label}_train_acc") == pytest.approx(expected, abs=1e-9)
            assert getattr(row, f"{label}_lr") == pytest.approx(round(0.1 / row.epoch, 4), abs=1e-9)


def test_a_run_without_metrics_is_listed_with_what_its_folder_shows(tmp_path):
    folder = tmp_path / "run"
    assert missing_reason(folder) == "no run folder"
    folder.mkdir()
    assert missing_reason(folder) == "no metrics.json (run folder exists)"
    (folder / "resume.pt").write_bytes(b"")
    assert missing_reason(folder) == "no metrics.json; resume.pt present (running or interrupted)"
    (folder / "failure.json").write_text(json.dumps({"error": "loss became nan at epoch 3"}))
    assert missing_reason(folder) == "no metrics.json; failure.json: loss became nan at epoch 3"
    (folder / "failure.json").write_text("{trunc")
    assert missing_reason(folder) == "no metrics.json; failure.json: (unreadable)"


def test_a_latex_table_has_its_caption_label_and_escaped_notes_inside_the_float():
    display = pd.DataFrame({"S": ["{0,2}"], "acc": ["50.00 ± 1.00"]})
    table = Table("table3_acc", "Table 3", display, display, ["5% of runs_failed & {x} #1 $", "second"])
    assert table.latex().splitlines() == [
        r"\begin{table}", r"\caption{Table 3}", r"\label{tab:table3_acc}", r"\begin{tabular}{ll}", r"\toprule",
        r"S & acc \\", r"\midrule", r"\{0,2\} & 50.00 $\pm$ 1.00 \\", r"\bottomrule", r"\end{tabular}",
        r"\par\footnotesize 5\% of runs\_failed \& \{x\} \#1 \$", r"\par\footnotesize second", r"\end{table}",
    ]


def test_a_latex_caption_escapes_what_latex_would_read_as_commands():
    # A bare % in a caption comments out the rest of the line and the closing brace with it.
    display = pd.DataFrame({"S": ["{0}"]})
    table = Table("t", "CIFAR-10. Table 3: test accuracy (%), S & α_1 #2", display, display)
    assert table.latex().splitlines()[1] == r"\caption{CIFAR-10. Table 3: test accuracy (\%), S \& $\alpha$\_1 \#2}"


def test_a_markdown_table_keeps_its_text_as_written_and_its_notes_in_paragraphs():
    display = pd.DataFrame({"configuration": ["S={0}, α=4", "S={2}, α=4"], "Δ accuracy (points)": ["+4.30", "-0.40"]})
    markdown = Table("t", "title", display, display, ["first note", "second note"]).markdown()
    lines = markdown.split("\n")
    assert lines[0].split("|")[1].strip() == "configuration"  # no index column
    assert "+4.30" in lines[2] and "-0.40" in lines[3]  # tabulate would print 4.3 and -0.4
    assert markdown.endswith("|\n\nfirst note\n\nsecond note\n")


def test_aggregate_warns_of_unusable_runs_naming_the_problems_file(tmp_path, params, caplog):
    write_all_runs(tmp_path / "runs", params, skip=("sweep/baseline/seed0", "sweep/cutmix_alpha1/seed2"))
    analysis = aggregate(params, tmp_path / "runs", tmp_path / "tables", tmp_path / "summary.json")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"2 of 30 expected runs are not usable (2 missing, 0 failed, 0 mismatched); see {tmp_path / 'tables' / 'problems.csv'}"]
    problems = pd.read_csv(tmp_path / "tables" / "problems.csv")
    assert list(problems.columns) == list(analysis.problems.columns)  # no index column
    assert sorted(problems["run_id"]) == ["sweep/baseline/seed0", "sweep/cutmix_alpha1/seed2"]


@pytest.mark.parametrize("values", [[0.10, 0.20], [0.10, 0.20, 0.40], [0.05, float("nan"), 0.07, 0.02]])
def test_mean_interval_is_students_t_interval_from_two_seeds_on(values):
    finite = [v for v in values if not math.isnan(v)]
    half = stats.t.ppf(0.975, len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite))
    mean = statistics.mean(finite)
    assert mean_interval(values) == (pytest.approx(mean), pytest.approx(mean - half), pytest.approx(mean + half))


def test_calibration_cells_print_the_mean_and_its_interval_to_three_decimals():
    _, low, high = mean_interval([0.1, 0.2])
    assert format_mean_interval([0.1, 0.2]) == f"0.150 [{low:.3f}, {high:.3f}]"
    assert format_mean_interval([0.1]) == "0.100"
    assert format_mean_interval([]) == "—"


def test_aggregate_checks_the_runs_against_the_expected_subset(complete_root, params, tmp_path):
    analysis = aggregate(params, complete_root, tmp_path / "tables", tmp_path / "summary.json",
                         Expectation(selection=SELECTION, subset_sha256="f" * 64))
    assert set(analysis.problems["problem"]) == {"mismatched"}


def test_mean_interval_of_one_seed_has_no_bounds_and_of_none_no_mean():
    mean, low, high = mean_interval([0.3, float("nan")])
    assert mean == pytest.approx(0.3) and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(value) for value in mean_interval([]))


def test_curves_of_the_best_mixup_are_written_when_the_baseline_has_no_history(complete_root, params):
    for seed in (0, 1, 2):
        (complete_root / f"sweep/baseline/seed{seed}/history.tsv").unlink()
    curves = mean_curves(analyse(params, complete_root), complete_root)
    assert list(curves.columns) == ["epoch", "best_mixup_train_loss", "best_mixup_train_acc", "best_mixup_lr"]


def test_the_differences_table_shows_each_difference_its_interval_p_and_missing_seeds(tmp_path, params):
    write_all_runs(tmp_path, params, skip=("sweep/manifold_S0_alpha1/seed2", "sweep/manifold_S0_alpha4/seed0",
                                           "tuning/step_mom0.9_wd0.001/seed1"))
    analysis = analyse(params, tmp_path)
    tables = {table.name: table for table in study_tables(analysis)}
    table = tables["table3_delta_acc"]
    rows = table.display.set_index("configuration")
    diff, low, high, p = welch_by_hand(percent(ACCURACY["manifold_S0-2_alpha4"]), percent(ACCURACY["baseline"]))
    assert list(rows.loc["S={0,2}, α=4"]) == [f"{diff:+.2f}", f"[{low:+.2f}, {high:+.2f}]", f"{p:.3f}", "3/3 vs 3/3"]
    diff, *_ = welch_by_hand(percent(ACCURACY["manifold_S0_alpha1"][:2]), percent(ACCURACY["baseline"]))
    assert rows.loc["S={0}, α=1", "Δ accuracy (points)"] == f"{diff:+.2f}†"
    assert rows.loc["S={0}, α=1", "seeds"] == "2/3 vs 3/3"
    assert list(table.display.columns) == [
        "configuration", "Δ accuracy (points)", "95% CI (Welch)", "p (Welch t-test)", "seeds"]
    note = "† fewer finished seeds than asked (finished/asked): S={0}, α=1: 2/3; S={0}, α=4: 2/3."
    assert table.notes == [note, "Trained in float32."]
    markdown = table.markdown()
    assert markdown.startswith("| configuration ") and markdown.endswith(f"\n\n{note}\n\nTrained in float32.\n")
    assert "| +" in markdown  # signed differences stay text, not numbers re-formatted by tabulate
    compared = tables["table4_comparison"].display.set_index("configuration")
    diff, *_ = welch_by_hand(percent(ACCURACY["cutmix_alpha1"]), percent(ACCURACY["baseline"]))
    assert compared.loc["CutMix α=1", "Δ accuracy (points)"] == f"{diff:+.2f}"  # no mark: all seeds finished
    tuning = tables["table1_tuning"].display.set_index("scheduler")
    assert tuning.loc["step", "test accuracy (%)"] == "40.50 ± 0.71"  # seeds 0 and 2; no † here: the seeds column says it
    assert tuning.loc["step", "seeds (finished/asked)"] == "2/3"


@pytest.mark.parametrize("p, text", [(float("nan"), "—"), (0.0004, "<0.001"), (0.001, "0.001"), (0.0394, "0.039")])
def test_p_values_are_printed_to_three_decimals_and_small_ones_as_a_bound(p, text):
    assert format_p(p) == text


def test_no_runs_at_all_still_aggregates(tmp_path, params):
    analysis = aggregate(params, tmp_path / "nothing", tmp_path / "tables", tmp_path / "summary.json")
    summary = strict_json(tmp_path / "summary.json")
    assert summary["runs.missing"] == summary["runs.expected"] == 30
    assert "baseline.acc_mean" not in summary and summary["baseline.n"] == 0
    assert set(analysis.problems["reason"]) == {"no run folder"}
    assert "—" in (tmp_path / "tables" / "table3_acc.md").read_text()


def test_fgsm_and_validation_metrics_are_carried_through(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    for seed, fgsm in enumerate([0.20, 0.30, 0.40]):
        path = spec_of(params, f"sweep/baseline/seed{seed}").folder(root) / "metrics.json"
        record = json.loads(path.read_text())
        record["metrics"]["test"]["fgsm_acc@0.0078"] = fgsm
        record["metrics"]["val"] = {"acc": fgsm + 0.1, "nll": 1.0, "ece": 0.1, "brier": 0.5}
        path.write_text(json.dumps(record))
    analysis = aggregate(params, root, tmp_path / "tables", tmp_path / "summary.json")
    summary = strict_json(tmp_path / "summary.json")
    assert summary["baseline.fgsm_acc@0.0078_mean"] == pytest.approx(30.0)
    assert summary["baseline.val_acc_mean"] == pytest.approx(40.0)
    assert "sweep.S=0.alpha=1.fgsm_acc@0.0078_mean" not in summary  # those runs were not attacked
    assert {"fgsm_acc@0.0078", "val_acc"} <= set(analysis.runs.columns)


def test_calibration_and_best_epoch_tables_come_from_the_run_records(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    analysis = analyse(params, root)
    calibration = calibration_table(analysis).data.set_index("name")
    accs = ACCURACY["baseline"]
    assert calibration.loc["baseline", "ece_mean"] == pytest.approx(statistics.mean(a / 10 for a in accs))
    assert calibration.loc["baseline", "ts_ece_mean"] == pytest.approx(statistics.mean(a / 20 for a in accs))
    assert calibration.loc["baseline", "ts_temperature_mean"] == pytest.approx(statistics.mean(1 + a for a in accs))
    ts_nll = [1.9 - a for a in accs]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(ts_nll) / math.sqrt(3)
    assert calibration.loc["baseline", "ts_nll_low"] == pytest.approx(statistics.mean(ts_nll) - half)
    # the compared cells: baseline, the published best cell, input mixup at its alpha, the regularisers
    assert list(calibration.index) == ["baseline", "manifold_S0-2_alpha4", "manifold_S0_alpha4", "cutmix_alpha1",
                                       "label_smoothing_eps0.1", "cutout_16"]
    best = best_epoch_table(analysis).data.set_index("name")
    assert best.loc["baseline", "final_acc"] == pytest.approx(100 * statistics.mean(accs))
    assert best.loc["baseline", "bestval_acc"] == pytest.approx(100 * statistics.mean(accs) + 1)
    assert best.loc["baseline", "besttest_acc"] == pytest.approx(100 * statistics.mean(accs) + 2, abs=1e-4)
    assert best.loc["baseline", "bestval_epoch"] == 2


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda config: config["evaluation"].update(test_limit=1000), "evaluation.test_limit is 1000"),
        (lambda config: config["model"].update(dropout=0.1), "model.dropout is 0.1"),
        (lambda config: config["train"].update(momentum=0.95), "train.momentum is 0.95"),  # another selection
    ],
    ids=["evaluation", "model", "selection"],
)
def test_run_with_another_training_configuration_is_mismatched(tmp_path, params, change, reason):
    """The whole configuration counts, not only the settings a run name encodes."""
    root = tmp_path / "runs"
    write_all_runs(root, params)
    path = spec_of(params, "sweep/baseline/seed0").folder(root) / "metrics.json"
    record = json.loads(path.read_text())
    change(record["config"])
    path.write_text(json.dumps(record))
    analysis = analyse(params, root, Expectation(selection=SELECTION))
    problem = analysis.problems.set_index("run_id").loc["sweep/baseline/seed0"]
    assert problem["problem"] == "mismatched" and reason in problem["reason"]
    assert analysis.configs.set_index("name").loc["baseline", "n"] == 2


def test_compute_settings_do_not_make_a_run_mismatched(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    path = spec_of(params, "sweep/baseline/seed0").folder(root) / "metrics.json"
    record = json.loads(path.read_text())
    record["config"]["compute"].update(threads=8, device="cuda", eval_batch_size=1000)
    path.write_text(json.dumps(record))
    assert analyse(params, root, Expectation(selection=SELECTION)).problems.empty


def test_run_on_another_subset_is_mismatched(complete_root, params):
    analysis = analyse(params, complete_root, Expectation(selection=SELECTION, subset_sha256="f" * 64))
    assert set(analysis.problems["problem"]) == {"mismatched"} and len(analysis.problems) == len(study.all_runs(params))
    assert "subset" in analysis.problems["reason"].iloc[0]


def test_table3_and_its_heatmap_order_alpha_numerically_whatever_order_the_runs_come_in(tmp_path):
    """A cross of the grid lists S={0} (alpha 4 only) first, and params may list alphas in any order."""
    from mixstudy.figures.grids import sweep_pivot

    params = small_params("sweep.alphas=[4.0, 1.0]", "sweep.cross={layers: [0, 2], alpha: 4.0}")
    manifold_names = [spec.name for spec in study.sweep_runs(params) if spec.name.startswith("manifold")]
    assert manifold_names[0] == "manifold_S0_alpha4"  # the first cell found is not the smallest alpha
    root = tmp_path / "runs"
    write_all_runs(root, params)
    analysis = analyse(params, root)
    grid = {table.name: table for table in study_tables(analysis)}["table3_acc"]
    assert list(grid.display.columns) == ["S", "α=1", "α=4"]
    assert pd.isna(grid.display.set_index("S").loc["{0}", "α=1"])  # outside the cross: not run
    cells = analysis.stage("sweep", "manifold")
    assert list(sweep_pivot(analysis, cells["acc_mean"]).columns) == [1.0, 4.0]
