"""Run folders read against the grids, once, into what every table, figure and the report use.

One row per expected run (:func:`collect_runs`): its recorded settings, status and metrics, or
the reason it is missing; a run whose recorded training differs from what the grid asks is
``mismatched`` and never averaged; a run whose record or output files are not what the record
claims (:func:`mixstudy.runs.run_folder.integrity_problems`: a record changed after training, a damaged
model.pt) is ``damaged`` and has no row at all. Then the statistics over seeds per configuration:
the mean; the sample standard deviation (ddof=1), undefined below two seeds; and each
configuration's difference to the baseline (:func:`mixstudy.results.statistics.welch_difference`). Only
runs with status ``ok`` enter any statistic; every expected run that is missing, failed, mismatched
or damaged is listed in ``problems.csv``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mixstudy.runs import run_folder, study
from mixstudy.runs.run_folder import FAILURE_FILE, HISTORY_FILE, METRICS_FILE, RESUME_FILE
from mixstudy.core.config import config_hash
from mixstudy.core.errors import ConfigError
from mixstudy.results.statistics import welch_difference

# The first column of runs.csv, problems.csv and every table: the data set, so that no table of one
# data set can pass for another's. In runs.csv it is each run's own, read from its record.
DATASET_COLUMN = "dataset"
SPEC_COLUMNS = [
    "stage", "name", "seed", "run_id", "method", "alpha", "layers", "strength", "scheduler", "momentum", "weight_decay",
]
# The comparison regularisers besides mixing, and what their strength column holds.
REGULARISERS = {"cutmix": "alpha", "label_smoothing": "eps", "cutout": "square side (pixels)"}
RECORD_COLUMNS = ["epochs", "lr", "status", "precision", "wall_time_s", "epochs_completed"]
BASE_METRICS = ["acc", "nll", "ece", "brier"]
PROBLEM_COLUMNS = [DATASET_COLUMN, "run_id", "stage", "name", "seed", "problem", "reason"]


def is_percent(metric: str) -> bool:
    return "acc" in metric


def describe_spec(spec: study.RunSpec) -> dict:
    """What a run id asks for: its stage, configuration name, seed and the settings that name it.

    Every run of the grids sets its mixing method and alpha; the training settings are set by tuning
    runs only (None: the sweep's, from params.yaml or the tuning's choice)."""
    train = spec.overrides.get("train", {})
    return {
        "stage": spec.stage,
        "name": spec.name,
        "seed": spec.seed,
        "run_id": spec.run_id,
        "method": spec.method,
        "alpha": float(spec.overrides["mixing"]["alpha"]),
        "layers": spec.layers,
        "strength": spec.strength,
        "scheduler": train.get("scheduler", {}).get("name"),
        "momentum": train.get("momentum"),
        "weight_decay": train.get("weight_decay"),
    }


def expected_runs(params: dict) -> pd.DataFrame:
    """One row per run of the study's grids (from :func:`mixstudy.runs.study.all_runs`), in grid order,
    with each configuration's label and summary key (kept out of runs.csv, which lists runs)."""
    specs = study.all_runs(params)
    frame = pd.DataFrame([describe_spec(spec) for spec in specs], columns=SPEC_COLUMNS)
    return frame.assign(label=[spec.label for spec in specs], summary_key=[spec.summary_key for spec in specs])


def read_history(folder: Path) -> pd.DataFrame | None:
    """A run folder's history.tsv (None when it has none); its metrics.json: :func:`mixstudy.runs.run_folder.read_run_record`."""
    path = Path(folder) / HISTORY_FILE
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def record_columns(record: dict) -> dict:
    """The columns a finished run adds: its data set, actual training settings, status, metrics and time."""
    train = (record.get("config") or {}).get("train", {})
    row = {
        DATASET_COLUMN: study.config_dataset(record.get("config") or {}),  # no `data` key: a CIFAR-10 run
        "scheduler": train.get("scheduler", {}).get("name"),
        "momentum": train.get("momentum"),
        "weight_decay": train.get("weight_decay"),
        "epochs": train.get("epochs"),
        "lr": train.get("lr"),
        "status": record.get("status"),
        "precision": run_folder.recorded_precision(record),  # float32 | bfloat16 (compute.amp as resolved)
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
    "train_labels": "trainlabels",  # corrupted training labels (data.label_noise): the fit to them and to the true ones
}


# The test-time transformation's variants in evaluation.json, and their column prefixes.
SHRINKAGE_VARIANTS = {"plain": "tt_plain", "inputs_shrunk": "tt_inputs", "logits_rescaled": "tt_logits", "both": "tt_both"}


def evaluation_columns(folder: Path, theory_settings: dict) -> dict:
    """The theory measures of a run's evaluation.json (``mixstudy evaluate``), when it was computed
    from the run's model.pt with these settings; none otherwise (not evaluated yet, or stale)."""
    if not run_folder.evaluation_is_current(folder, theory_settings):
        return {}
    evaluation = json.loads((Path(folder) / run_folder.EVALUATION_FILE).read_text())
    smoothness, shrinkage = evaluation.get("smoothness") or {}, evaluation.get("shrinkage") or {}
    row = {key: smoothness[key] for key in ("jacobian_logits", "jacobian_log_softmax") if key in smoothness}
    if shrinkage:
        row["theta_bar"] = shrinkage["theta_bar"]
        for variant, prefix in SHRINKAGE_VARIANTS.items():
            row.update({f"{prefix}_{key}": shrinkage[variant][key] for key in ("acc", "nll", "ece")})
    for point in (evaluation.get("between") or {}).get("by_lambda", []):
        row[f"{BETWEEN_MISS}@{point['lambda']:g}"] = point["miss_rate"]
        row[f"{BETWEEN_GRADIENT}@{point['lambda']:g}"] = point["gradient_norm"]
    return row


# Zhang et al.'s in-between measures in evaluation.json, as columns per lambda: between_miss@0.5, ...
BETWEEN_MISS, BETWEEN_GRADIENT = "between_miss", "between_grad"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def best_test_epoch(folder: Path) -> dict:
    """The published practice's number: the highest test accuracy of any epoch that evaluated the
    test set during training (``evaluation.every``), and that epoch. Optimistic: it selects on the
    test set, so it is reported beside the honest numbers, never used to choose anything."""
    history = read_history(folder)
    if history is None or "test_acc" not in history or history["test_acc"].isna().all():
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
    failure = folder / FAILURE_FILE
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
    if study.config_dataset(actual) != study.config_dataset(expected):  # never averaged with another data set
        return [f"trained on data set {study.config_dataset(actual)}, expected {study.config_dataset(expected)}"]
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
    problem = {DATASET_COLUMN: spec.dataset, **{key: described[key] for key in ("run_id", "stage", "name", "seed")}}
    folder = spec.folder(runs_root)
    if not (folder / METRICS_FILE).is_file():
        return None, {**problem, "problem": "missing", "reason": missing_reason(folder)}
    try:
        record = run_folder.read_run_record(folder)
    except ConfigError as err:
        return None, {**problem, "problem": "missing", "reason": f"metrics.json cannot be read ({err})"}
    damage = run_folder.integrity_problems(folder, record)
    if damage:  # nothing it records can be believed: no row, in no table
        return None, {**problem, "problem": "damaged", "reason": "; ".join(damage)}
    row = {**described, **record_columns(record), **best_test_epoch(folder),
           **evaluation_columns(folder, params["theory"])}
    differences = configuration_mismatches(params, spec, record, expectation)
    if differences:
        row["status"] = "mismatched"
        return row, {**problem, "problem": "mismatched", "reason": "; ".join(differences)}
    if row["status"] != "ok":
        return row, {**problem, "problem": "failed", "reason": record.get("error") or f"status {row['status']!r}"}
    return row, None


def absent_grid_runs(params: dict, runs_root: str | Path, expectation: Expectation = Expectation()) -> str | None:
    """Why ``runs_root`` holds no run of ``params``' grids (None: it holds at least one run folder
    of the grids whose record is of the configuration asked for, or has no readable record yet).

    An empty folder, or one of another study, would otherwise give tables, figures and a report
    of nothing in place of the results they replace."""
    specs = study.all_runs(params)
    present = [spec for spec in specs if spec.folder(runs_root).is_dir()]
    if not present:
        return f"holds none of the {len(specs)} runs of these parameters' grids (e.g. {specs[0].run_id})"
    other = []
    for spec in present:
        try:
            record = run_folder.read_run_record(spec.folder(runs_root))
        except ConfigError:
            return None  # a run of the grid in progress, or with a damaged record: listed as such
        differences = configuration_mismatches(params, spec, record, expectation)
        if not differences:
            return None
        other.append(f"{spec.run_id}: {differences[0]}")
    return (f"holds {len(present)} run folder(s) of these parameters' grids, all of another configuration "
            f"(e.g. {other[0]})")


def collect_runs(params: dict, runs_root: str | Path, expectation: Expectation = Expectation()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy table of expected runs that have a metrics.json, and the list of problems.

    ``runs`` has one row per expected run with a readable metrics.json; ``status`` is ``ok``,
    ``failed`` or ``mismatched`` (its whole training configuration, compute settings aside, or
    its subset is not the one the grid asks for). ``problems`` lists every expected run that is
    missing, failed, mismatched or damaged (no row: its record or files are not what it claims),
    with the reason.
    """
    rows, problems = [], []
    for spec in study.all_runs(params):
        row, problem = inspect_run(params, spec, runs_root, expectation)
        if row is not None:
            rows.append(row)
        if problem is not None:
            problems.append(problem)
    runs = pd.DataFrame(rows)
    leading = [DATASET_COLUMN, *SPEC_COLUMNS, *RECORD_COLUMNS, *BASE_METRICS]
    runs = runs.reindex(columns=leading + [column for column in runs.columns if column not in leading])
    return runs, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


def metric_columns(runs: pd.DataFrame) -> list[str]:
    return [column for column in runs.columns if column not in [DATASET_COLUMN, *SPEC_COLUMNS, *RECORD_COLUMNS]]


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
    descriptors = ["method", "alpha", "layers", "strength", "scheduler", "momentum", "weight_decay", "label", "summary_key"]
    configs = expected.groupby(keys, sort=False).agg(
        **{column: (column, "first") for column in descriptors}, asked=("seed", "size")
    )
    aggregations = {"n": ("seed", "size")}
    for metric in metrics:
        aggregations[f"{metric}_mean"] = (metric, "mean")
        aggregations[f"{metric}_std"] = (metric, "std")  # pandas std: ddof=1, NaN for one seed
    aggregations["precision"] = ("precision", precisions_of_seeds)
    seeds = done.groupby(keys).agg(**aggregations)
    table = configs.join(seeds)
    table["n"] = table["n"].fillna(0).astype(int)
    return table.reset_index()


MIXED = "+"  # joins the precisions of a configuration whose seeds trained in more than one


def precisions_of_seeds(precisions: pd.Series) -> str:
    """``float32``, ``bfloat16``, or ``bfloat16+float32`` for a configuration whose finished seeds
    trained in different precisions (flagged wherever it appears, never silently averaged as one)."""
    return MIXED.join(sorted(set(precisions.dropna())))


def mixed_precision_problems(done: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """One problem per finished run of a configuration whose seeds trained in different precisions."""
    mixed = configs[configs["precision"].map(lambda precision: isinstance(precision, str) and MIXED in precision)]
    rows = []
    for config in mixed.itertuples():
        for run in done[(done["stage"] == config.stage) & (done["name"] == config.name)].itertuples():
            rows.append({DATASET_COLUMN: getattr(run, DATASET_COLUMN), "run_id": run.run_id, "stage": run.stage, "name": run.name,
                         "seed": run.seed, "problem": "mixed precision",
                         "reason": f"trained in {run.precision}; the seeds of {config.label} trained in {config.precision}"})
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


@dataclass


class Analysis:
    """Everything the tables, figures and report are computed from, collected once."""

    params: dict
    expected: pd.DataFrame  # every run of the grids
    runs: pd.DataFrame  # expected runs with a metrics.json, as recorded
    problems: pd.DataFrame  # missing, failed, mismatched and damaged runs
    done: pd.DataFrame  # finished runs (status ok), accuracies in percent
    configs: pd.DataFrame  # one row per configuration: seeds asked/finished, mean and std per metric
    metrics: list[str]

    def stage(self, stage: str, method: str | None = None) -> pd.DataFrame:
        rows = self.configs[self.configs["stage"] == stage]
        return rows if method is None else rows[rows["method"] == method]

    def runs_of(self, name: str, stage: str = "sweep") -> pd.DataFrame:
        """The finished runs of one configuration (by default a sweep cell): the one filter for it."""
        return self.done[(self.done["stage"] == stage) & (self.done["name"] == name)]

    def values(self, name: str, metric: str, stage: str = "sweep") -> np.ndarray:
        return self.runs_of(name, stage)[metric].dropna().to_numpy(dtype=float)

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
            "damaged": int(problems.get("damaged", 0)),
            "mixed_precision": int(problems.get("mixed precision", 0)),
        }

    def precisions(self) -> dict[str, int]:
        """Finished runs by the precision they trained in."""
        return {str(k): int(v) for k, v in self.done["precision"].value_counts().sort_index().items()} if len(self.done) else {}

    def compute_hours(self, stage: str | None = None) -> float:
        """Wall time of every run with a metrics.json (failed ones too: their time was spent)."""
        rows = self.runs if stage is None else self.runs[self.runs["stage"] == stage]
        return float(pd.to_numeric(rows["wall_time_s"], errors="coerce").fillna(0).sum() / 3600)


def analyse(params: dict, runs_root: str | Path, expectation: Expectation = Expectation()) -> Analysis:
    runs, problems = collect_runs(params, runs_root, expectation)
    done = finished_runs(runs)
    metrics = metric_columns(runs)
    expected = expected_runs(params)
    configs = config_stats(expected, done, metrics)
    mixed = mixed_precision_problems(done, configs)
    problems = pd.concat([problems, mixed], ignore_index=True) if not mixed.empty else problems
    return Analysis(params, expected, runs, problems, done, configs, metrics)


def mixing_differences(analysis: Analysis, metric: str = "acc") -> pd.DataFrame:
    """Each configuration of the sweep (manifold, CutMix, label smoothing, Cutout) against the final baseline."""
    baseline = analysis.values("baseline", metric)
    cells = analysis.stage("sweep")
    cells = cells[cells["name"] != "baseline"]
    rows = []
    for cell in cells.itertuples():
        difference = welch_difference(analysis.values(cell.name, metric), baseline)
        rows.append({"name": cell.name, "method": cell.method, "layers": cell.layers, "alpha": cell.alpha,
                     "strength": cell.strength, "label": cell.label, "summary_key": cell.summary_key, "n": cell.n,
                     "asked": cell.asked, "n_baseline": len(baseline), **difference})
    return pd.DataFrame(rows, columns=["name", "method", "layers", "alpha", "strength", "label", "summary_key", "n",
                                       "asked", "n_baseline", "diff", "ci_low", "ci_high", "p"])


def best_mixing(analysis: Analysis, method: str = "manifold") -> pd.Series | None:
    """The configuration with the highest mean test accuracy, preferring those with every seed finished."""
    cells = analysis.stage("sweep", method)
    cells = cells[cells["n"] > 0]
    if cells.empty:
        return None
    complete = cells[cells["n"] == cells["asked"]]
    pool = complete if not complete.empty else cells
    return pool.loc[pool["acc_mean"].idxmax()]


def read_histories(folders: list[Path]) -> pd.DataFrame | None:
    """The history.tsv of each run folder, stacked (None when there is none)."""
    frames = [history for history in map(read_history, folders) if history is not None]
    return pd.concat(frames, ignore_index=True) if frames else None
