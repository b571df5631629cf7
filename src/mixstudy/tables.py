"""The study's tables from its run folders, and a flat summary of them for DVC.

Tables: Table 1 (baseline tuning), the final baseline, Table 3 (layer set S x alpha) for
accuracy, NLL and ECE, each mixing configuration's difference to the baseline, and CutMix.

Units: ``runs.csv`` keeps every number exactly as ``metrics.json`` has it (accuracies as
fractions). Tables, figures and ``summary.json`` show accuracies (every metric whose name
contains ``acc``) in percent, and NLL, ECE and Brier score as they are.

Statistics over seeds: the mean; the sample standard deviation (ddof=1), undefined below two
seeds; and the difference of a configuration to the baseline with a Welch t-interval and
Welch's t-test (unequal variances, unpaired). Welch rather than a paired test because it stays
valid when a seed is missing on one side. Only runs with status ``ok`` enter any statistic;
every expected run that is missing, failed or mismatched is listed in ``problems.csv``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mixstudy import study
from mixstudy.config import config_hash
from mixstudy.fileio import RESUME_FILE, write_json, write_text
from mixstudy.selection import rank_configurations

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
INCOMPLETE = "†"  # marks a cell with fewer finished seeds than asked
TABLE_METRICS = ("acc", "nll", "ece")
DIGITS = {"acc": 2, "nll": 3, "ece": 3, "brier": 3}
METRIC_LABELS = {"acc": "test accuracy (%)", "nll": "test NLL", "ece": "test ECE", "brier": "test Brier score"}
SPEC_COLUMNS = [
    "stage", "name", "seed", "run_id", "method", "alpha", "layers", "strength", "scheduler", "momentum", "weight_decay",
]
# The comparison regularisers besides mixing, and what their strength column holds.
REGULARISERS = {"cutmix": "alpha", "label_smoothing": "eps", "cutout": "square side (pixels)"}
RECORD_COLUMNS = ["epochs", "lr", "status", "wall_time_s", "epochs_completed"]
BASE_METRICS = ["acc", "nll", "ece", "brier"]
PROBLEM_COLUMNS = ["run_id", "stage", "name", "seed", "problem", "reason"]
# LaTeX for the few non-ASCII characters the display tables use (applied after pandas escaping).
LATEX_SYMBOLS = {"±": r"$\pm$", INCOMPLETE: r"$^{\dagger}$", "—": "--", "α": r"$\alpha$", "Δ": r"$\Delta$"}


def is_percent(metric: str) -> bool:
    return "acc" in metric


def set_notation(layers: str) -> str:
    """A run name's layer label as the study writes the set: ``0-2`` -> ``{0,2}``."""
    return "{" + layers.replace("-", ",") + "}"


# --- collecting run folders -----------------------------------------------------------------


def describe_spec(spec: study.RunSpec) -> dict:
    """What a run id asks for: its stage, configuration name, seed and the settings that name it.

    Every run of the grids sets its mixing method and alpha; the training settings are set by tuning
    runs only (None: the sweep's, from params.yaml or the tuning's choice)."""
    mixing = spec.overrides["mixing"]
    train = spec.overrides.get("train", {})
    method = mixing["method"]
    strength = float(mixing["alpha"]) if method == "cutmix" else None
    if mixing.get("label_smoothing"):
        method, strength = "label_smoothing", float(mixing["label_smoothing"])
    if train.get("augment", {}).get("cutout"):
        method, strength = "cutout", float(train["augment"]["cutout"])
    return {
        "stage": spec.stage,
        "name": spec.name,
        "seed": spec.seed,
        "run_id": spec.run_id,
        "method": method,
        "alpha": float(mixing["alpha"]),
        "layers": study.layers_label(mixing["layers"]) if method == "manifold" else "",
        "strength": strength,
        "scheduler": train.get("scheduler", {}).get("name"),
        "momentum": train.get("momentum"),
        "weight_decay": train.get("weight_decay"),
    }


def expected_runs(params: dict) -> pd.DataFrame:
    """One row per run of the study's grids (from :func:`mixstudy.study.all_runs`), in grid order."""
    return pd.DataFrame([describe_spec(spec) for spec in study.all_runs(params)], columns=SPEC_COLUMNS)


def read_record(folder: Path) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


def record_columns(record: dict) -> dict:
    """The columns a finished run adds: its actual training settings, status, metrics and time."""
    train = (record.get("config") or {}).get("train", {})
    row = {
        "scheduler": train.get("scheduler", {}).get("name"),
        "momentum": train.get("momentum"),
        "weight_decay": train.get("weight_decay"),
        "epochs": train.get("epochs"),
        "lr": train.get("lr"),
        "status": record.get("status"),
        "wall_time_s": record.get("wall_time_s"),
        "epochs_completed": record.get("epochs_completed"),
    }
    metrics = record.get("metrics") or {}
    row.update(metrics.get("test", {}))
    for split, prefix in RECORDED_SPLITS.items():
        row.update({f"{prefix}_{key}": value for key, value in metrics.get(split, {}).items() if _is_number(value)})
    return row


# Metric groups of metrics.json beside "test", and their column prefixes in runs.csv.
RECORDED_SPLITS = {
    "val": "val",  # the validation split, final weights
    "test_ts": "ts",  # test after temperature scaling (ts_temperature: the fitted T)
    "test_best_val": "bestval",  # test of the best validation epoch's weights (bestval_epoch)
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def best_test_epoch(folder: Path) -> dict:
    """The published practice's number: the highest test accuracy of any epoch that evaluated the
    test set during training (``evaluation.every``), and that epoch. Optimistic: it selects on the
    test set, so it is reported beside the honest numbers, never used to choose anything."""
    path = Path(folder) / "history.tsv"
    if not path.is_file():
        return {}
    history = pd.read_csv(path, sep="\t")
    if "test_acc" not in history or history["test_acc"].isna().all():
        return {}
    best = history.loc[history["test_acc"].idxmax()]
    return {"besttest_acc": float(best["test_acc"]), "besttest_epoch": int(best["epoch"])}


def _same(expected, actual) -> bool:
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    return expected == actual


def config_mismatches(expected: dict, actual: dict, prefix: str = "") -> list[str]:
    """Keys where a recorded configuration differs from what the run id asks for.

    Run names do not encode everything (e.g. tuning.epochs), so a folder left from an earlier
    version of params.yaml would otherwise be aggregated as if it were current.
    """
    differences = []
    for key, want in expected.items():
        have = actual.get(key) if isinstance(actual, dict) else None
        if isinstance(want, dict):
            differences += config_mismatches(want, have if isinstance(have, dict) else {}, f"{prefix}{key}.")
        elif not _same(want, have):
            differences.append(f"{prefix}{key} is {have!r}, expected {want!r}")
    return differences


def missing_reason(folder: Path) -> str:
    failure = folder / "failure.json"
    if failure.is_file():
        try:
            error = json.loads(failure.read_text()).get("error")
        except (json.JSONDecodeError, OSError):
            error = "(unreadable)"
        return f"no metrics.json; failure.json: {error}"
    if (folder / RESUME_FILE).is_file():
        return f"no metrics.json; {RESUME_FILE} present (running or interrupted)"
    if folder.is_dir():
        return "no metrics.json (run folder exists)"
    return "no run folder"


@dataclass(frozen=True)
class Expectation:
    """What the aggregation checks a run against besides its run id: the tuning's choice (for
    sweep runs that take it) and the subset's content hash. None: taken from the run itself."""

    selection: dict | None = None
    subset_sha256: str | None = None


def expected_config(params: dict, spec: study.RunSpec, record: dict, expectation: Expectation) -> dict:
    """The whole training configuration the grid asks of this run (compute settings left out)."""
    selection = expectation.selection
    if selection is None and study.needs_selection(params, spec):  # no selection given: the run's own
        train = (record.get("config") or {}).get("train", {})
        selection = {"scheduler": train.get("scheduler", {}).get("name"), "momentum": train.get("momentum"),
                     "weight_decay": train.get("weight_decay")}
    return study.training_config(study.spec_config(params, spec, selection))


def configuration_mismatches(params: dict, spec: study.RunSpec, record: dict, expectation: Expectation) -> list[str]:
    """Why a run's recorded training (its whole configuration and subset) is not what the grid asks."""
    expected = expected_config(params, spec, record, expectation)
    actual = study.training_config(record.get("config") or {})
    differences = []
    if config_hash(expected) != config_hash(actual):
        differences = config_mismatches(expected, actual) + [
            f"{key} is not asked for" for key in sorted(set(actual) - set(expected))
        ]
        differences = differences or ["the recorded configuration differs from the one asked for"]
    recorded_subset = (record.get("provenance") or {}).get("subset_sha256")
    if expectation.subset_sha256 is not None and recorded_subset != expectation.subset_sha256:
        differences.append(f"trained on subset {str(recorded_subset)[:12]}, expected {expectation.subset_sha256[:12]}")
    return differences


def inspect_run(params: dict, spec: study.RunSpec, runs_root: str | Path, expectation: Expectation) -> tuple[dict | None, dict | None]:
    """The run's row (None when it has no readable metrics.json) and its problem (None when ok)."""
    described = describe_spec(spec)
    problem = {key: described[key] for key in ("run_id", "stage", "name", "seed")}
    folder = spec.folder(runs_root)
    if not (folder / "metrics.json").is_file():
        return None, {**problem, "problem": "missing", "reason": missing_reason(folder)}
    try:
        record = read_record(folder)
    except (json.JSONDecodeError, OSError) as err:
        return None, {**problem, "problem": "missing", "reason": f"metrics.json cannot be read ({err})"}
    row = {**described, **record_columns(record), **best_test_epoch(folder)}
    differences = configuration_mismatches(params, spec, record, expectation)
    if differences:
        row["status"] = "mismatched"
        return row, {**problem, "problem": "mismatched", "reason": "; ".join(differences)}
    if row["status"] != "ok":
        return row, {**problem, "problem": "failed", "reason": record.get("error") or f"status {row['status']!r}"}
    return row, None


def collect_runs(params: dict, runs_root: str | Path, expectation: Expectation = Expectation()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy table of expected runs that have a metrics.json, and the list of problems.

    ``runs`` has one row per expected run with a readable metrics.json; ``status`` is ``ok``,
    ``failed`` or ``mismatched`` (its whole training configuration, compute settings aside, or
    its subset is not the one the grid asks for). ``problems`` lists every expected run that is
    missing, failed or mismatched, with the reason.
    """
    rows, problems = [], []
    for spec in study.all_runs(params):
        row, problem = inspect_run(params, spec, runs_root, expectation)
        if row is not None:
            rows.append(row)
        if problem is not None:
            problems.append(problem)
    runs = pd.DataFrame(rows)
    extra = [column for column in runs.columns if column not in SPEC_COLUMNS + RECORD_COLUMNS + BASE_METRICS]
    runs = runs.reindex(columns=SPEC_COLUMNS + RECORD_COLUMNS + BASE_METRICS + extra)
    return runs, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


# --- statistics over seeds ------------------------------------------------------------------


def metric_columns(runs: pd.DataFrame) -> list[str]:
    return [column for column in runs.columns if column not in SPEC_COLUMNS + RECORD_COLUMNS]


def finished_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with status ok, accuracies in percent: the only rows any statistic uses."""
    done = runs[runs["status"] == "ok"].copy()
    for column in metric_columns(runs):
        done[column] = pd.to_numeric(done[column], errors="coerce")
        if is_percent(column):
            done[column] = done[column] * 100.0
    return done


def config_stats(expected: pd.DataFrame, done: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per configuration (stage, name): what it asks for, seeds asked and finished, mean and std."""
    keys = ["stage", "name"]
    descriptors = ["method", "alpha", "layers", "strength", "scheduler", "momentum", "weight_decay"]
    configs = expected.groupby(keys, sort=False).agg(
        **{column: (column, "first") for column in descriptors}, asked=("seed", "size")
    )
    aggregations = {"n": ("seed", "size")}
    for metric in metrics:
        aggregations[f"{metric}_mean"] = (metric, "mean")
        aggregations[f"{metric}_std"] = (metric, "std")  # pandas std: ddof=1, NaN for one seed
    seeds = done.groupby(keys).agg(**aggregations)
    table = configs.join(seeds)
    table["n"] = table["n"].fillna(0).astype(int)
    return table.reset_index()


def welch_difference(cell, baseline, confidence: float = CONFIDENCE) -> dict:
    """Mean difference cell - baseline, its Welch t-interval and Welch's t-test p-value.

    The interval and p-value need two seeds on each side and some spread; otherwise they are NaN.
    """
    cell, baseline = np.asarray(cell, dtype=float), np.asarray(baseline, dtype=float)
    result = {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    if len(cell) and len(baseline):
        result["diff"] = float(cell.mean() - baseline.mean())
    if len(cell) < 2 or len(baseline) < 2 or (cell.var() == 0 and baseline.var() == 0):
        return result
    test = stats.ttest_ind(cell, baseline, equal_var=False)
    interval = test.confidence_interval(confidence)
    result.update(ci_low=float(interval.low), ci_high=float(interval.high), p=float(test.pvalue))
    return result


@dataclass
class Analysis:
    """Everything the tables, figures and report are computed from, collected once."""

    params: dict
    expected: pd.DataFrame  # every run of the grids
    runs: pd.DataFrame  # expected runs with a metrics.json, as recorded
    problems: pd.DataFrame  # missing, failed and mismatched runs
    done: pd.DataFrame  # finished runs (status ok), accuracies in percent
    configs: pd.DataFrame  # one row per configuration: seeds asked/finished, mean and std per metric
    metrics: list[str]

    def stage(self, stage: str, method: str | None = None) -> pd.DataFrame:
        rows = self.configs[self.configs["stage"] == stage]
        return rows if method is None else rows[rows["method"] == method]

    def values(self, name: str, metric: str, stage: str = "sweep") -> np.ndarray:
        rows = self.done[(self.done["stage"] == stage) & (self.done["name"] == name)]
        return rows[metric].dropna().to_numpy(dtype=float)

    def baseline(self) -> pd.Series:
        return self.configs[(self.configs["stage"] == "sweep") & (self.configs["name"] == "baseline")].iloc[0]

    def counts(self) -> dict:
        problems = self.problems["problem"].value_counts()
        return {
            "expected": len(self.expected),
            "finished": int((self.runs["status"] == "ok").sum()),
            "failed": int(problems.get("failed", 0)),
            "missing": int(problems.get("missing", 0)),
            "mismatched": int(problems.get("mismatched", 0)),
        }

    def compute_hours(self, stage: str | None = None) -> float:
        """Wall time of every run with a metrics.json (failed ones too: their time was spent)."""
        rows = self.runs if stage is None else self.runs[self.runs["stage"] == stage]
        return float(pd.to_numeric(rows["wall_time_s"], errors="coerce").fillna(0).sum() / 3600)


def analyse(params: dict, runs_root: str | Path, expectation: Expectation = Expectation()) -> Analysis:
    runs, problems = collect_runs(params, runs_root, expectation)
    done = finished_runs(runs)
    metrics = metric_columns(runs)
    expected = expected_runs(params)
    return Analysis(params, expected, runs, problems, done, config_stats(expected, done, metrics), metrics)


def mixing_differences(analysis: Analysis, metric: str = "acc") -> pd.DataFrame:
    """Each configuration of the sweep (manifold, CutMix, label smoothing, Cutout) against the final baseline."""
    baseline = analysis.values("baseline", metric)
    cells = analysis.stage("sweep")
    cells = cells[cells["name"] != "baseline"]
    rows = []
    for cell in cells.itertuples():
        difference = welch_difference(analysis.values(cell.name, metric), baseline)
        rows.append({"name": cell.name, "method": cell.method, "layers": cell.layers, "alpha": cell.alpha,
                     "strength": cell.strength, "n": cell.n, "asked": cell.asked, "n_baseline": len(baseline),
                     **difference})
    return pd.DataFrame(rows, columns=["name", "method", "layers", "alpha", "strength", "n", "asked", "n_baseline",
                                       "diff", "ci_low", "ci_high", "p"])


def best_mixing(analysis: Analysis, method: str = "manifold") -> pd.Series | None:
    """The configuration with the highest mean test accuracy, preferring those with every seed finished."""
    cells = analysis.stage("sweep", method)
    cells = cells[cells["n"] > 0]
    if cells.empty:
        return None
    complete = cells[cells["n"] == cells["asked"]]
    pool = complete if not complete.empty else cells
    return pool.loc[pool["acc_mean"].idxmax()]


def best_tuning(analysis: Analysis, on_test: bool = False) -> pd.Series | None:
    """The configuration ``mixstudy select`` chooses for the sweep (:data:`selection.SELECTION_RULE`),
    with the split that ranked it as ``ranked_on`` ("val" or "test"); ``on_test`` ranks on the test
    set whatever the runs hold."""
    runs = analysis.runs
    tuning = runs[runs["stage"] == "tuning"] if not runs.empty else runs
    if tuning.empty:
        return None
    ranking, ranked_on = rank_configurations(tuning, "test" if on_test else None)
    if ranking.iloc[0]["finished_seeds"] == 0:
        return None
    cells = analysis.stage("tuning")
    best = cells[cells["name"] == ranking.iloc[0]["name"]].iloc[0].copy()
    best["ranked_on"] = ranked_on
    return best


def cell_label(cell) -> str:
    """A configuration as the text names it: ``S={0,2}, α=4``, ``CutMix α=1``, ``baseline``."""
    if cell["method"] == "manifold":
        return f"S={set_notation(cell['layers'])}, α={study.fmt(cell['alpha'])}"
    if cell["method"] == "cutmix":
        return f"CutMix α={study.fmt(cell['alpha'])}"
    if cell["method"] == "label_smoothing":
        return f"label smoothing ε={study.fmt(cell['strength'])}"
    if cell["method"] == "cutout":
        return f"Cutout {int(cell['strength'])} px"
    return str(cell["name"])


# --- formatting -----------------------------------------------------------------------------


def format_stat(mean: float, std: float, n: int, asked: int, digits: int) -> str:
    """``mean ± std``; just the mean for one seed; ``—`` for none; a trailing † when seeds are missing."""
    if n == 0:
        return "—"
    text = f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (INCOMPLETE if n < asked else "")


def format_signed(value: float, digits: int = 2) -> str:
    """``+1.25``, ``-0.40``; a value that rounds to zero is ``0.00``, never ``-0.00``."""
    if pd.isna(value):
        return "—"
    rounded = round(value, digits)
    return f"{0.0:.{digits}f}" if rounded == 0 else f"{rounded:+.{digits}f}"


def format_interval(low: float, high: float, digits: int = 2) -> str:
    return "—" if pd.isna(low) else f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def format_p(p: float) -> str:
    return "—" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def incomplete_note(cells: pd.DataFrame) -> list[str]:
    """A footnote naming every configuration with fewer finished seeds than asked."""
    short = cells[cells["n"] < cells["asked"]]
    if short.empty:
        return []
    listed = "; ".join(f"{cell_label(cell)}: {cell['n']}/{cell['asked']}" for _, cell in short.iterrows())
    return [f"{INCOMPLETE} fewer finished seeds than asked (finished/asked): {listed}."]


@dataclass
class Table:
    """One table: numbers for the CSV, formatted text for Markdown and LaTeX, and footnotes."""

    name: str  # file stem
    title: str
    data: pd.DataFrame
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        notes = "".join(f"\n\n{note}" for note in self.notes)
        # disable_numparse: tabulate would otherwise turn "+4.30" into 4.3 and realign the column.
        return self.display.to_markdown(index=False, disable_numparse=True) + notes + "\n"

    def latex(self) -> str:
        text = self.display.to_latex(index=False, escape=True, caption=self.title, label=f"tab:{self.name}")
        if self.notes:
            notes = "".join(f"\\par\\footnotesize {_latex_escape(note)}\n" for note in self.notes)
            text = text.replace("\\end{table}", notes + "\\end{table}")
        for symbol, latex in LATEX_SYMBOLS.items():
            text = text.replace(symbol, latex)
        return text


def _latex_escape(text: str) -> str:
    for char in ("&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


# --- the tables -----------------------------------------------------------------------------


def cell_texts(cells: pd.DataFrame, metric: str, mark_incomplete: bool = True) -> list[str]:
    """``mean ± std`` of one metric for each configuration, with † where seeds are missing."""
    texts = []
    for _, cell in cells.iterrows():
        asked = cell["asked"] if mark_incomplete else cell["n"]
        texts.append(format_stat(cell[f"{metric}_mean"], cell[f"{metric}_std"], cell["n"], asked, DIGITS[metric]))
    return texts


def difference_columns(rows: pd.DataFrame, marks: list[str] | None = None) -> dict[str, list[str]]:
    """Display columns for differences to the baseline: Δ, its interval and the p-value."""
    marks = marks or [""] * len(rows)
    return {
        "Δ accuracy (points)": [format_signed(d) + m for d, m in zip(rows["diff"], marks)],
        f"{CONFIDENCE:.0%} CI (Welch)": [format_interval(r.ci_low, r.ci_high) for r in rows.itertuples()],
        "p (Welch t-test)": list(rows["p"].map(format_p)),
    }


def tuning_table(analysis: Analysis) -> Table:
    cells = analysis.stage("tuning")
    data = cells[["name", "scheduler", "momentum", "weight_decay", "asked", "n", "acc_mean", "acc_std"]]
    display = pd.DataFrame({
        "scheduler": cells["scheduler"],
        "momentum": cells["momentum"].map(study.fmt),
        "weight decay": cells["weight_decay"].map(study.fmt),
        METRIC_LABELS["acc"]: cell_texts(cells, "acc", mark_incomplete=False),  # the next column says it
        "seeds (finished/asked)": [f"{c.n}/{c.asked}" for c in cells.itertuples()],
    })
    return Table("table1_tuning", "Table 1: baseline tuning, test accuracy over seeds", data, display)


def baseline_table(analysis: Analysis) -> Table:
    base = analysis.baseline()
    one = pd.DataFrame([base])
    data = pd.DataFrame({
        "metric": BASE_METRICS,
        "mean": [base[f"{m}_mean"] for m in BASE_METRICS],
        "std": [base[f"{m}_std"] for m in BASE_METRICS],
        "n": base["n"],
        "asked": base["asked"],
    })
    display = pd.DataFrame({
        "metric": [METRIC_LABELS[m] for m in BASE_METRICS],
        "mean ± std": [cell_texts(one, m)[0] for m in BASE_METRICS],
        "seeds (finished/asked)": f"{base['n']}/{base['asked']}",
    })
    return Table("table2_baseline", "Final baseline (sweep/baseline) over seeds", data, display, incomplete_note(one))


def alpha_column(alpha: float) -> str:
    return f"α={study.fmt(alpha)}"


def sweep_grid(analysis: Analysis, metric: str) -> Table:
    """Table 3 for one metric: rows the layer sets S, columns alpha, cells mean ± std over seeds."""
    cells = analysis.stage("sweep", "manifold").copy()
    cells["S"] = cells["layers"].map(set_notation)
    cells["column"] = cells["alpha"].map(alpha_column)
    cells["cell"] = cell_texts(cells, metric)
    rows = list(dict.fromkeys(cells["S"]))
    columns = [alpha_column(alpha) for alpha in sorted(set(cells["alpha"]))]  # numerically, not as found
    display = cells.pivot(index="S", columns="column", values="cell").reindex(index=rows, columns=columns)
    display.columns.name = None
    data = cells[["S", "layers", "alpha", "asked", "n", f"{metric}_mean", f"{metric}_std"]]
    title = f"Table 3: {METRIC_LABELS[metric]}, manifold mixup over mixing sets S and alpha (mean ± std over seeds)"
    return Table(f"table3_{metric}", title, data, display.reset_index(), incomplete_note(cells))


def differences_table(analysis: Analysis, differences: pd.DataFrame) -> Table:
    marks = [INCOMPLETE if row.n < row.asked else "" for row in differences.itertuples()]
    asked_baseline = analysis.baseline()["asked"]
    display = pd.DataFrame({
        "configuration": [cell_label(row) for _, row in differences.iterrows()],
        **difference_columns(differences, marks),
        "seeds": [f"{r.n}/{r.asked} vs {r.n_baseline}/{asked_baseline}" for r in differences.itertuples()],
    })
    title = "Difference in test accuracy to the final baseline (percentage points; configuration minus baseline)"
    compared = analysis.stage("sweep")
    notes = incomplete_note(compared[compared["name"].isin([*differences["name"], "baseline"])])
    return Table("table3_delta_acc", title, differences, display, notes)


def comparison_cells(analysis: Analysis) -> pd.DataFrame:
    """The comparison regularisers (CutMix, label smoothing, Cutout) of the sweep, in grid order."""
    cells = analysis.stage("sweep")
    return cells[cells["method"].isin(list(REGULARISERS))]


def comparison_table(analysis: Analysis, differences: pd.DataFrame) -> Table | None:
    cells = comparison_cells(analysis)
    if cells.empty:
        return None
    cells = cells.merge(differences[["name", "diff", "ci_low", "ci_high", "p"]], on="name", how="left")
    display = pd.DataFrame({
        "configuration": [cell_label(c) for _, c in cells.iterrows()],
        **{METRIC_LABELS[metric]: cell_texts(cells, metric) for metric in TABLE_METRICS},
        **difference_columns(cells),
    })
    statistics = [f"{m}_{stat}" for m in TABLE_METRICS for stat in ("mean", "std")]
    data = cells[["name", "method", "strength", "asked", "n", *statistics, "diff", "ci_low", "ci_high", "p"]]
    title = "Comparison regularisers: CutMix, label smoothing, Cutout (mean ± std over seeds; Δ to the final baseline)"
    return Table("table4_comparison", title, data, display, incomplete_note(cells))


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and its t-interval over seeds (NaN bounds below two seeds)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def format_mean_interval(values: np.ndarray, digits: int = 3) -> str:
    mean, low, high = mean_interval(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if math.isnan(low) else f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def calibration_cells(analysis: Analysis) -> pd.DataFrame:
    """Configurations compared for calibration: the baseline, the manifold cell at the published best
    (else the best), input mixup at that alpha, and each comparison regulariser, where they ran."""
    sweep = analysis.stage("sweep")
    names = ["baseline"]
    manifold = published_best_cell(analysis)
    if manifold is not None:
        names += [manifold["name"], f"manifold_S0_alpha{study.fmt(manifold['alpha'])}"]
    names += list(comparison_cells(analysis)["name"])
    chosen = sweep[sweep["name"].isin(names) & (sweep["n"] > 0)]
    return chosen.set_index("name").loc[[n for n in dict.fromkeys(names) if n in set(chosen["name"])]].reset_index()


PUBLISHED_CONFIG = re.compile(r"S\s*=\s*\{([\d,\s]+)\}\s*,\s*alpha\s*=\s*([\d.]+)")


def published_cell(analysis: Analysis, config_text: str | None) -> pd.Series | None:
    """Our configuration named by the published ``S={0,2}, alpha=4`` text, if the sweep has it."""
    match = PUBLISHED_CONFIG.search(config_text or "")
    if not match:
        return None
    layers = study.layers_label(int(k) for k in match.group(1).split(","))
    name = f"manifold_S{layers}_alpha{study.fmt(float(match.group(2)))}"
    cells = analysis.stage("sweep", "manifold")
    cells = cells[cells["name"] == name]
    return None if cells.empty else cells.iloc[0]


def published_best_cell(analysis: Analysis) -> pd.Series | None:
    """Our manifold cell at the study's best configuration (``report.published.best_mixup_config``),
    fixed in advance so it carries no selection bias, where it has finished runs; else our best cell."""
    cell = published_cell(analysis, analysis.params["report"]["published"]["best_mixup_config"])
    return cell if cell is not None and cell["n"] > 0 else best_mixing(analysis)


def calibration_table(analysis: Analysis) -> Table | None:
    """Test ECE and NLL before and after temperature scaling (one T per run, fitted on validation)."""
    cells = calibration_cells(analysis)
    if cells.empty or "ts_ece" not in analysis.done:
        return None
    rows, display = [], []
    for _, cell in cells.iterrows():
        runs = analysis.done[(analysis.done["stage"] == "sweep") & (analysis.done["name"] == cell["name"])]
        row = {"name": cell["name"], "n": len(runs)}
        for column in ("ece", "ts_ece", "nll", "ts_nll", "ts_temperature"):
            row[f"{column}_mean"], row[f"{column}_low"], row[f"{column}_high"] = mean_interval(runs[column])
        rows.append(row)
        display.append({
            "configuration": cell_label(cell),
            "ECE": format_mean_interval(runs["ece"]),
            "ECE after scaling": format_mean_interval(runs["ts_ece"]),
            "NLL": format_mean_interval(runs["nll"]),
            "NLL after scaling": format_mean_interval(runs["ts_nll"]),
            "temperature": format_mean_interval(runs["ts_temperature"], 2),
            "seeds": len(runs),
        })
    title = (f"Calibration before and after temperature scaling (test set; mean [{CONFIDENCE:.0%} t-interval] "
             "over seeds; one temperature per run, fitted on the validation split)")
    return Table("table5_calibration", title, pd.DataFrame(rows), pd.DataFrame(display))


def best_epoch_table(analysis: Analysis) -> Table | None:
    """Final epoch, best validation epoch, and (labelled optimistic) best test epoch, per configuration."""
    done = analysis.done[analysis.done["stage"] == "sweep"]
    if "bestval_acc" not in done or done["bestval_acc"].isna().all():
        return None
    rows, display = [], []
    for name, runs in done.groupby("name", sort=False):
        if runs["bestval_acc"].isna().all():
            continue
        optimistic = runs["besttest_acc"] if "besttest_acc" in runs else pd.Series(dtype=float)
        row = {"name": name, "n": len(runs), "final_acc": runs["acc"].mean(), "bestval_acc": runs["bestval_acc"].mean(),
               "bestval_epoch": runs["bestval_epoch"].mean(),
               "besttest_acc": optimistic.mean() if optimistic.notna().any() else math.nan}
        rows.append(row)
        cell = analysis.configs[(analysis.configs["stage"] == "sweep") & (analysis.configs["name"] == name)].iloc[0]
        display.append({
            "configuration": cell_label(cell),
            "final epoch (%)": f"{row['final_acc']:.2f}",
            "best validation epoch (%)": f"{row['bestval_acc']:.2f}",
            "its epoch (mean)": f"{row['bestval_epoch']:.0f}",
            "best test epoch (%, optimistic)": "—" if math.isnan(row["besttest_acc"]) else f"{row['besttest_acc']:.2f}",
            "seeds": len(runs),
        })
    title = ("Test accuracy of the final epoch, of the best validation epoch's weights, and the best test epoch "
             "(the published practice's number: chosen on the test set, so optimistic)")
    return Table("table6_best_epoch", title, pd.DataFrame(rows), pd.DataFrame(display))


def study_tables(analysis: Analysis) -> list[Table]:
    differences = mixing_differences(analysis)
    tables = [tuning_table(analysis), baseline_table(analysis)]
    tables += [sweep_grid(analysis, metric) for metric in TABLE_METRICS]
    tables.append(differences_table(analysis, differences))
    optional = [comparison_table(analysis, differences), calibration_table(analysis), best_epoch_table(analysis)]
    return tables + [table for table in optional if table is not None]


# --- summary.json ---------------------------------------------------------------------------


def _put(summary: dict, key: str, value) -> None:
    """Store a finite number (rounded to 6 decimals); undefined values (NaN, None) are left out."""
    if value is None or pd.isna(value):
        return
    summary[key] = int(value) if isinstance(value, (int, np.integer)) else round(float(value), 6)


def _put_config(summary: dict, prefix: str, cell: pd.Series, metrics: list[str]) -> None:
    _put(summary, f"{prefix}.n", int(cell["n"]))
    for metric in metrics:
        _put(summary, f"{prefix}.{metric}_mean", cell[f"{metric}_mean"])
        _put(summary, f"{prefix}.{metric}_std", cell[f"{metric}_std"])


def summary_key(cell) -> str:
    """``sweep.S=0-2.alpha=4``, ``cutmix.alpha=1``, ``label_smoothing.eps=0.1``, ``cutout.size=16``,
    ``baseline``, ``tuning.<name>``."""
    alpha = study.fmt(cell["alpha"])
    if cell["method"] == "manifold":
        return f"sweep.S={cell['layers']}.alpha={alpha}"
    if cell["method"] == "cutmix":
        return f"cutmix.alpha={alpha}"
    if cell["method"] == "label_smoothing":
        return f"label_smoothing.eps={study.fmt(cell['strength'])}"
    if cell["method"] == "cutout":
        return f"cutout.size={int(cell['strength'])}"
    return "baseline" if cell["stage"] == "sweep" else f"tuning.{cell['name']}"


def summary_metrics(analysis: Analysis, differences: pd.DataFrame) -> dict:
    """A flat dict of numbers with stable keys for ``dvc metrics`` (see the module docstring for units).

    Keys (``<config>`` is ``baseline``, ``tuning.<name>``, ``sweep.S=<0-2>.alpha=<4>`` or
    ``cutmix.alpha=<1>``; ``<metric>`` is every test metric, and ``val_<metric>`` when present):
      runs.{expected,finished,failed,missing,mismatched}, compute.{total,tuning,sweep}_hours,
      <config>.n, <config>.<metric>_mean, <config>.<metric>_std,
      <mixing config>.delta_acc, .delta_acc_ci_low, .delta_acc_ci_high, .delta_acc_p,
      tuning.best.acc_mean/acc_std/n, sweep.best.acc_mean/acc_std/n/delta_acc.
    A key is left out when its value is undefined: std below two finished seeds, the interval and
    p-value below two seeds on either side, every statistic of a configuration with no finished seed.
    """
    summary: dict = {}
    for kind, count in analysis.counts().items():
        _put(summary, f"runs.{kind}", count)
    _put(summary, "compute.total_hours", analysis.compute_hours())
    for stage in ("tuning", "sweep"):
        _put(summary, f"compute.{stage}_hours", analysis.compute_hours(stage))
    for _, cell in analysis.configs.iterrows():
        _put_config(summary, summary_key(cell), cell, analysis.metrics)
    by_name = differences.set_index("name")
    for _, cell in analysis.stage("sweep").iterrows():
        if cell["name"] in by_name.index:
            difference = by_name.loc[cell["name"]]
            prefix = f"{summary_key(cell)}.delta_acc"
            _put(summary, prefix, difference["diff"])
            for stat in ("ci_low", "ci_high", "p"):
                _put(summary, f"{prefix}_{stat}", difference[stat])
    _put_best(summary, "tuning.best", best_tuning(analysis))
    best = best_mixing(analysis)
    _put_best(summary, "sweep.best", best)
    if best is not None:
        _put(summary, "sweep.best.delta_acc", by_name.loc[best["name"], "diff"])
    return summary


def _put_best(summary: dict, prefix: str, cell: pd.Series | None) -> None:
    if cell is not None:
        _put_config(summary, prefix, cell, ["acc"])


# --- writing --------------------------------------------------------------------------------


def write_table(table: Table, out_dir: Path) -> list[Path]:
    paths = [out_dir / f"{table.name}.{suffix}" for suffix in ("csv", "md", "tex")]
    write_text(paths[0], table.data.to_csv(index=False))
    write_text(paths[1], f"**{table.title}**\n\n{table.markdown()}")
    write_text(paths[2], table.latex())
    return paths


def read_histories(folders: list[Path]) -> pd.DataFrame | None:
    """The history.tsv of each run folder, stacked (None when there is none)."""
    frames = [pd.read_csv(folder / "history.tsv", sep="\t") for folder in folders if (folder / "history.tsv").is_file()]
    return pd.concat(frames, ignore_index=True) if frames else None


def mean_curves(analysis: Analysis, runs_root: str | Path) -> pd.DataFrame:
    """Per-epoch means over seeds for the baseline and the best mixup configuration (DVC plots)."""
    columns = {}
    best = best_mixing(analysis)
    for label, name in (("baseline", "baseline"), ("best_mixup", None if best is None else best["name"])):
        rows = analysis.done[(analysis.done["stage"] == "sweep") & (analysis.done["name"] == name)]
        histories = read_histories([Path(runs_root) / run_id for run_id in rows["run_id"]])
        if histories is None:
            continue
        by_epoch = histories.groupby("epoch")
        for column in ("train_loss", "train_acc", "lr"):
            columns[f"{label}_{column}"] = by_epoch[column].mean()
    curves = pd.DataFrame(columns)
    curves.index.name = "epoch"
    return curves.reset_index()


def aggregate(
    params: dict, runs_root: str | Path, out_dir: str | Path, summary_path: str | Path, expectation: Expectation = Expectation()
) -> Analysis:
    """Write every table (CSV, Markdown, LaTeX), runs.csv, problems.csv and the flat summary.json."""
    out_dir = Path(out_dir)
    analysis = analyse(params, runs_root, expectation)
    from mixstudy.published import published_tables  # published builds on this module

    for table in study_tables(analysis) + published_tables(analysis):
        write_table(table, out_dir)
    write_text(out_dir / "runs.csv", analysis.runs.to_csv(index=False))
    write_text(out_dir / "problems.csv", analysis.problems.to_csv(index=False))
    write_text(out_dir / "curves.tsv", mean_curves(analysis, runs_root).to_csv(sep="\t", index=False))
    write_json(summary_path, summary_metrics(analysis, mixing_differences(analysis)))
    counts = analysis.counts()
    if counts["finished"] < counts["expected"]:
        log.warning(
            "%d of %d expected runs are not usable (%d missing, %d failed, %d mismatched); see %s",
            counts["expected"] - counts["finished"], counts["expected"], counts["missing"], counts["failed"],
            counts["mismatched"], out_dir / "problems.csv",
        )
    return analysis
