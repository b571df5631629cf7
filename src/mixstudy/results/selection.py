"""The best tuning configuration (the study's Table 1), by one rule that the sweep (``mixstudy
select``), the tables, ``summary.json`` and the report all use: :func:`rank_configurations`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import yaml

from mixstudy.results.analysis import Analysis, Expectation, inspect_run
from mixstudy.core.errors import MixstudyError
from mixstudy.core.fileio import write_text
from mixstudy.runs.study import tuning_runs
from mixstudy.runs.run_folder import METRICS_FILE, read_run_record

log = logging.getLogger(__name__)

SELECTION_RULE = (
    "the tuning configuration with the highest mean accuracy over its finished seeds, on the validation "
    "split when every finished tuning run has one, else on the test set; failed runs, and stale runs "
    "(whose recorded configuration is not the one their run id asks for), are left out"
)
DESCRIPTORS = ["scheduler", "momentum", "weight_decay"]


def selection_split(runs: pd.DataFrame) -> str:
    """``val`` when every finished run has a validation accuracy, else ``test``."""
    finished = runs[runs["status"] == "ok"]
    if finished.empty or "val_acc" not in finished:
        return "test"
    return "val" if pd.to_numeric(finished["val_acc"], errors="coerce").notna().all() else "test"


def rank_configurations(runs: pd.DataFrame, split: str | None = None) -> tuple[pd.DataFrame, str]:
    """Tuning configurations, best first, and the split that ranked them (see ``SELECTION_RULE``;
    ``split="test"`` ranks on the test set whatever the runs hold).

    ``runs`` has one row per tuning run as :func:`mixstudy.results.analysis.collect_runs` makes them
    (``name``, ``status`` ok/failed/mismatched, ``acc``, ``val_acc``, the descriptors); accuracies
    keep the unit they come in. A configuration without a finished seed ranks last (mean NaN);
    ties keep grid order.
    """
    split = split or selection_split(runs)
    score = "val_acc" if split == "val" else "acc"
    rows = []
    for name, group in runs.groupby("name", sort=False):
        finished = group[group["status"] == "ok"]
        described = finished.iloc[0] if not finished.empty else group.iloc[0]
        rows.append({
            "name": name,
            **{key: described[key] for key in DESCRIPTORS},
            "mean_acc": float(pd.to_numeric(finished[score]).mean()) if not finished.empty else float("nan"),
            "finished_seeds": len(finished),
            "failed_seeds": int((group["status"] == "failed").sum()),
            "stale_seeds": int((group["status"] == "mismatched").sum()),
        })
    ranking = pd.DataFrame(rows).sort_values("mean_acc", ascending=False, kind="stable", na_position="last")
    return ranking.reset_index(drop=True), split


def select_best(params: dict, runs_root: str | Path) -> dict:
    """The tuning's choice for the sweep, from the finished tuning runs of ``params``' grid.

    Every tuning run must have a metrics.json: a selection over a partial grid would silently
    change when the missing runs arrive.
    """
    rows, missing = [], []
    for spec in tuning_runs(params):
        row, problem = inspect_run(params, spec, runs_root, Expectation())
        if row is None and (spec.folder(runs_root) / METRICS_FILE).is_file():
            read_run_record(spec.folder(runs_root))  # raises, naming the damaged file and the fix
        if problem and problem["problem"] == "damaged":  # its numbers cannot be believed: no choice from it
            raise MixstudyError(
                f"{spec.folder(runs_root)}: {problem['reason']}; train it again (mixstudy train --run {spec.run_id})"
            )
        if row is None:
            missing.append(spec.run_id)
        else:
            rows.append(row)
            if problem and problem["problem"] == "mismatched":
                log.warning("%s is stale and left out of the selection: %s", spec.run_id, problem["reason"])
    if missing:
        raise MixstudyError(f"{len(missing)} tuning run(s) are not finished, e.g. {missing[:3]}; train them first")
    ranking, split = rank_configurations(pd.DataFrame(rows))
    best = ranking.iloc[0]
    if best["finished_seeds"] == 0:
        raise MixstudyError("every tuning run failed or is stale; there is no configuration to select")
    return {
        **{key: _plain(best[key]) for key in DESCRIPTORS},
        "selected_by": f"mean {split} accuracy over seeds",
        "mean_acc": float(best["mean_acc"]),
        "ranking": [{key: _plain(value) for key, value in row.items()} for row in ranking.to_dict("records")],
    }


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


def _plain(value):
    """numpy scalars as plain Python numbers, so the selection file is plain YAML."""
    return value.item() if hasattr(value, "item") else value


def write_selection(selection: dict, out: str | Path) -> None:
    write_text(out, yaml.safe_dump(selection, sort_keys=False))
