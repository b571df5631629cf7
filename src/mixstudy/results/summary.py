"""What DVC shows of the tables: the headline (``metrics/headline.json``, the metrics `dvc exp show`
and `dvc metrics diff` show by default), the flat detail of every configuration
(``metrics/summary.json``), and the per-epoch curves for ``dvc plots`` (``results/tables/curves.tsv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mixstudy.results.analysis import Analysis, best_mixing, read_histories
from mixstudy.results.selection import best_tuning
from mixstudy.results.tables import published_best_cell, published_cell

HEADLINE_FILE = "headline.json"  # beside the summary (metrics/headline.json)


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


def summary_metrics(analysis: Analysis, differences: pd.DataFrame) -> dict:
    """A flat dict of numbers with stable keys for ``dvc metrics`` (see the module docstring for units).

    Keys (``<config>`` is ``baseline``, ``tuning.<name>``, ``sweep.S=<0-2>.alpha=<4>`` or
    ``cutmix.alpha=<1>``; ``<metric>`` is every test metric, and ``val_<metric>`` when present):
      runs.{expected,finished,failed,missing,mismatched,damaged}, compute.{total,tuning,sweep}_hours,
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
        _put_config(summary, cell["summary_key"], cell, analysis.metrics)
    by_name = differences.set_index("name")
    for _, cell in analysis.stage("sweep").iterrows():
        if cell["name"] in by_name.index:
            difference = by_name.loc[cell["name"]]
            prefix = f"{cell['summary_key']}.delta_acc"
            _put(summary, prefix, difference["diff"])
            for stat in ("ci_low", "ci_high", "p"):
                _put(summary, f"{prefix}_{stat}", difference[stat])
    _put_best(summary, "tuning.best", best_tuning(analysis))
    best = best_mixing(analysis)
    _put_best(summary, "sweep.best", best)
    if best is not None:
        _put(summary, "sweep.best.delta_acc", by_name.loc[best["name"], "diff"])
    return summary


def headline_metrics(analysis: Analysis, differences: pd.DataFrame) -> dict:
    """The report's headline as numbers: the gain in test accuracy of the mixup cell fixed in advance
    (``report.published.best_mixup_config``; where it has no finished run, our best cell, and
    ``fixed_in_advance`` false) over the baseline with its Welch interval (points), both arms'
    accuracy (%), NLL and ECE, and how many runs are finished and stale (another configuration).

    Nested, short keys: `dvc exp show` prints them as ``gain.points``, ``mixup.acc``, ``runs.stale``.
    """
    counts = analysis.counts()
    headline: dict = {}
    base, cell = analysis.baseline(), published_best_cell(analysis)
    if cell is not None and base["n"] > 0:
        row = differences.set_index("name").loc[cell["name"]]
        fixed = published_cell(analysis, analysis.params["report"]["published"]["best_mixup_config"])
        headline["gain"] = _rounded({"points": row["diff"], "low": row["ci_low"], "high": row["ci_high"]}, 2)
        headline["mixup"] = _arm(cell)
        headline["baseline"] = _arm(base)
        headline["fixed_in_advance"] = bool(fixed is not None and fixed["name"] == cell["name"])
    headline["runs"] = {"finished": counts["finished"], "stale": counts["mismatched"], "expected": counts["expected"]}
    return headline


def _arm(cell: pd.Series) -> dict:
    arm = _rounded({"acc": cell["acc_mean"]}, 2) | _rounded({"nll": cell["nll_mean"], "ece": cell["ece_mean"]}, 4)
    return arm | {"seeds": int(cell["n"])}


def _rounded(values: dict, digits: int) -> dict:
    """Finite values rounded for reading; undefined ones (one seed: no interval) left out."""
    return {key: round(float(value), digits) for key, value in values.items() if value is not None and not pd.isna(value)}


def _put_best(summary: dict, prefix: str, cell: pd.Series | None) -> None:
    if cell is not None:
        _put_config(summary, prefix, cell, ["acc"])


def mean_curves(analysis: Analysis, runs_root: str | Path) -> pd.DataFrame:
    """Per-epoch means over seeds for the baseline and the best mixup configuration (DVC plots)."""
    columns = {}
    best = best_mixing(analysis)
    for label, name in (("baseline", "baseline"), ("best_mixup", None if best is None else best["name"])):
        rows = analysis.runs_of(name)
        histories = read_histories([Path(runs_root) / run_id for run_id in rows["run_id"]])
        if histories is None:
            continue
        by_epoch = histories.groupby("epoch")
        for column in ("train_loss", "train_acc", "lr"):
            columns[f"{label}_{column}"] = by_epoch[column].mean()
    curves = pd.DataFrame(columns)
    curves.index.name = "epoch"
    return curves.reset_index()
