"""The figures read from the runs' own files: training and test curves (history.tsv), reliability
diagrams (the bins in metrics.json), calibration before and after temperature scaling, and each
published cell against ours; most compare the baseline with the best manifold mixup configuration.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from mixstudy.results import published

from mixstudy.runs import run_folder, study
from mixstudy.results.analysis import best_mixing, read_histories
from mixstudy.figures.base import ACC_LABEL, BASELINE_COLOUR, FigureContext, MissingFigureData, config_colour
from mixstudy.results.statistics import CONFIDENCE
from mixstudy.results.tables import calibration_cells, calibration_table
from mixstudy.results.theory_tables import BETWEEN_MEASURES, between_table, smoothness_table


def compared_configs(context: FigureContext) -> list[tuple[str, pd.Series, object]]:
    """The baseline and the best manifold mixup configuration, where they have finished runs."""
    analysis = context.analysis
    compared = []
    base = analysis.baseline()
    if base["n"] > 0:
        compared.append(("baseline", base, BASELINE_COLOUR))
    best = best_mixing(analysis)
    if best is not None:
        compared.append((f"best mixup: {best['label']}", best, config_colour(context, best)))
    if not compared:
        raise MissingFigureData("neither the baseline nor any manifold mixup run has finished")
    return compared


def run_folders(context: FigureContext, cell: pd.Series) -> list[Path]:
    rows = context.analysis.runs_of(cell["name"], cell["stage"])
    return [context.runs_root / run_id for run_id in rows["run_id"]]


def require_histories(folders: list[Path]) -> pd.DataFrame:
    """The stacked histories (:func:`mixstudy.results.analysis.read_histories`), or MissingFigureData: the figure is skipped."""
    histories = read_histories(folders)
    if histories is None:
        raise MissingFigureData(f"no history.tsv in {folders[0].parent if folders else 'the run folders'}")
    return histories


def draw_mean_band(ax, by_epoch, column: str, scale: float, colour, style: str, label: str) -> None:
    mean, sd = by_epoch[column].mean() * scale, by_epoch[column].std().fillna(0) * scale
    ax.plot(mean.index, mean, color=colour, ls=style, lw=1.2, label=label)
    ax.fill_between(mean.index, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)


def training_curves(context: FigureContext) -> plt.Figure:
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    schedules = []
    for (label, cell, colour), style in zip(compared_configs(context), ("-", "--")):
        by_epoch = require_histories(run_folders(context, cell)).groupby("epoch")
        label = f"{label} ({cell['n']} seeds)"
        draw_mean_band(loss_ax, by_epoch, "train_loss", 1, colour, style, label)
        draw_mean_band(acc_ax, by_epoch, "train_acc", 100, colour, style, label)
        schedules.append((by_epoch["lr"].mean(), colour, style))
    first = schedules[0][0]
    if all(len(lr) == len(first) and np.allclose(lr, first) for lr, _, _ in schedules):
        # One schedule for all: a single thin line (warm restarts draw dozens of cycles).
        lr_ax.plot(first.index, first, color="0.3", lw=0.7)
        lr_ax.set_title("one schedule for both", fontsize=10)
    else:
        for lr, colour, style in schedules:
            lr_ax.plot(lr.index, lr, color=colour, ls=style, lw=0.8)
    ylabels = {loss_ax: "train loss (cross-entropy)", acc_ax: "train accuracy (%)", lr_ax: "learning rate"}
    for ax, ylabel in ylabels.items():
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = loss_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), frameon=False)
    fig.suptitle("Training curves, mean ± sd over seeds (mixup: loss and accuracy against the mixed targets)")
    fig.tight_layout()
    return fig


def pool_reliability(tables: list[dict]) -> dict:
    """Pool per-seed reliability bins: counts summed, accuracy and confidence count-weighted."""
    edges = tables[0]["bin_edges"]
    if any(table["bin_edges"] != edges for table in tables):
        raise MissingFigureData("the runs' reliability bins differ (evaluation.ece_bins changed between runs)")
    counts = np.array([table["bin_count"] for table in tables], dtype=float)
    total = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (np.array([t["bin_accuracy"] for t in tables]) * counts).sum(axis=0) / total
        confidence = (np.array([t["bin_confidence"] for t in tables]) * counts).sum(axis=0) / total
    return {"bin_edges": np.array(edges), "bin_accuracy": accuracy, "bin_confidence": confidence, "bin_count": total}


def pooled_reliability(folders: list[Path], split: str = "test") -> dict:
    tables = [(run_folder.read_run_record(folder).get("reliability") or {}).get(split) for folder in folders]
    tables = [table for table in tables if table]
    if not tables:
        raise MissingFigureData("the finished runs hold no reliability bins")
    return pool_reliability(tables)


def reliability(context: FigureContext, split: str = "test") -> plt.Figure:
    compared = compared_configs(context)
    fig, axes = plt.subplots(2, len(compared), figsize=(5 * len(compared), 6), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})
    for col, (label, cell, colour) in enumerate(compared):
        pooled = pooled_reliability(run_folders(context, cell), split)
        edges, count = pooled["bin_edges"], pooled["bin_count"]
        top, bottom = axes[0, col], axes[1, col]
        top.bar(edges[:-1], 100 * np.nan_to_num(pooled["bin_accuracy"]), np.diff(edges), align="edge", color=colour,
                alpha=0.6, edgecolor="white", label="accuracy in bin")
        top.plot([0, 1], [0, 100], ls="--", color="black", lw=1.2, label="perfect calibration")
        top.set_xlim(0, 1), top.set_ylim(0, 100)
        ece = cell["ece_mean"] if split == "test" else cell["ts_ece_mean"]
        top.set_title(f"{label}\nECE {ece:.3f} (mean over {cell['n']} seeds)", fontsize=11)
        top.set_ylabel("accuracy (%)")
        top.legend(loc="upper left", fontsize=9)
        bottom.bar(edges[:-1], 100 * count / count.sum(), np.diff(edges), align="edge", color=colour, alpha=0.6,
                   edgecolor="white")
        bottom.set_xlabel("confidence (max softmax probability)")
        bottom.set_ylabel("test images (%)")
    after = "" if split == "test" else " after temperature scaling"
    fig.suptitle(f"Reliability diagrams{after}, bins pooled over seeds")
    fig.tight_layout()
    return fig


def reliability_scaled(context: FigureContext) -> plt.Figure:
    if "ts_ece_mean" not in context.analysis.configs:
        raise MissingFigureData("no run recorded temperature-scaled metrics (evaluation.temperature_scaling)")
    return reliability(context, "test_ts")


def calibration_scaling(context: FigureContext) -> plt.Figure:
    table = calibration_table(context.analysis)
    if table is None:
        raise MissingFigureData("no run recorded temperature-scaled metrics (evaluation.temperature_scaling)")
    labels = [cell["label"] for _, cell in calibration_cells(context.analysis).iterrows()]
    data = table.data.set_index("name")
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.8 + 0.55 * len(data)), sharey=True)
    y = np.arange(len(data))
    for ax, metric in zip(axes, ("ece", "nll")):
        for offset, (prefix, label, colour) in zip((-0.18, 0.18), (("", "before", "0.6"), ("ts_", "after scaling", "C0"))):
            mean = data[f"{prefix}{metric}_mean"]
            low, high = data[f"{prefix}{metric}_low"], data[f"{prefix}{metric}_high"]
            errors = np.vstack([(mean - low).fillna(0), (high - mean).fillna(0)])
            ax.barh(y + offset, mean, 0.34, xerr=errors, capsize=3, color=colour, label=label)
        ax.set_xlabel(f"test {metric.upper()}, mean and {CONFIDENCE:.0%} interval over seeds")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    fig.suptitle("Temperature scaling: one temperature per run, fitted on the validation split")
    fig.tight_layout()
    return fig


def test_curves(context: FigureContext) -> plt.Figure:
    """Test accuracy over epochs where runs evaluated the test set during training (evaluation.every)."""
    done = context.analysis.done
    if "besttest_acc" not in done or done["besttest_acc"].isna().all():
        raise MissingFigureData("no run evaluated the test set during training (evaluation.every)")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for index, (name, runs) in enumerate(done[done["besttest_acc"].notna()].groupby("name", sort=False)):
        cell = context.analysis.configs[context.analysis.configs["name"] == name].iloc[0]
        colour = BASELINE_COLOUR if name == "baseline" else config_colour(context, cell)
        histories = require_histories([context.runs_root / run_id for run_id in runs["run_id"]]).dropna(subset=["test_acc"])
        draw_mean_band(ax, histories.groupby("epoch"), "test_acc", 100, colour, ("-", "--", ":")[index % 3],
                       f"{cell['label']} ({len(runs)} seeds)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{ACC_LABEL}, mean ± sd over seeds")
    ax.set_title("Test accuracy during training (never used to choose anything)")
    ax.legend(loc="lower right")
    return fig


def published_vs_ours(context: FigureContext) -> plt.Figure:

    stages = {"Table 3 (manifold mixup)": published.table3_beside_ours(context.analysis),
              "Table 1 (tuning)": published.table1_beside_ours(context.analysis)}
    ran = {title: table[table["n"] > 0] for title, table in stages.items()}
    if all(table.empty for table in ran.values()):
        raise MissingFigureData("none of the published cells has a finished run of ours")
    fig, ax = plt.subplots(figsize=(5.8, 5.6))
    for (title, table), marker in zip(ran.items(), ("o", "s")):
        if table.empty:
            continue
        ax.errorbar(table["published"], table["acc_mean"], yerr=table["acc_std"].fillna(0), fmt=marker, ms=5,
                    capsize=2, label=f"{title}: {len(table)} cells")
    values = pd.concat([pd.concat([t["published"], t["acc_mean"]]) for t in ran.values()])
    low, high = values.min() - 2, values.max() + 2
    ax.plot([low, high], [low, high], ls="--", color="0.4", lw=1, label="ours = published")
    ax.set_xlim(low, high), ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("published test accuracy (%, mean of 5 runs)")
    ax.set_ylabel("ours (%, mean ± sd over seeds)")
    ax.set_title("Each published cell we ran, ours against the study's")
    ax.legend(loc="upper left", fontsize=9)
    return fig


def smoothness_vs_accuracy(context: FigureContext) -> plt.Figure:
    """Input-Jacobian norm against test accuracy, one point per sweep configuration (theory section)."""
    table = smoothness_table(context.analysis)
    if table is None:
        raise MissingFigureData("no sweep run has an evaluation.json with input-Jacobian norms (mixstudy evaluate)")
    cells = context.analysis.stage("sweep").set_index("name")
    fig, ax = plt.subplots(figsize=(7.2, 5.2))
    for _, row in table.data.iterrows():
        cell = cells.loc[row["name"]]
        errors = {axis: np.array([[row[f"{column}_mean"] - row[f"{column}_low"]], [row[f"{column}_high"] - row[f"{column}_mean"]]])
                  for axis, column in (("x", "acc"), ("y", "jacobian_logits"))}
        ax.errorbar(row["acc_mean"], row["jacobian_logits_mean"], xerr=np.nan_to_num(errors["x"]), yerr=np.nan_to_num(errors["y"]),
                    fmt="s" if row["name"] == study.BASELINE else "o", ms=6, capsize=2, color=config_colour(context, cell),
                    label=cell["label"])
    ax.set_xlabel(f"{ACC_LABEL}, mean and {CONFIDENCE:.0%} interval over seeds")
    ax.set_ylabel("‖∂ logits / ∂ input‖ (Frobenius), mean over test images")
    ax.set_title("Input-gradient smoothness against accuracy, per configuration")
    ax.legend(fontsize=8, loc="best")
    return fig


def between_vs_lambda(context: FigureContext) -> plt.Figure:
    """Zhang et al.'s Figure 2 on these runs: miss rate and the loss's input-gradient norm at points
    between training images, against lambda, one line per sweep configuration (baseline vs mixup)."""
    table = between_table(context.analysis)
    if table is None:
        raise MissingFigureData("no sweep run has an evaluation.json with in-between measures (theory.between_pairs > 0)")
    cells = context.analysis.stage("sweep").set_index("name")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    styles = ["-", "--", ":", "-."]
    for index, (name, rows) in enumerate(table.data.groupby("name", sort=False)):
        cell = cells.loc[name]
        for ax, (key, (_, _, _, heading)) in zip(axes, BETWEEN_MEASURES.items()):
            errors = np.nan_to_num(np.array([rows[f"{key}_mean"] - rows[f"{key}_low"], rows[f"{key}_high"] - rows[f"{key}_mean"]]))
            ax.errorbar(rows["lambda"], rows[f"{key}_mean"], yerr=errors, color=config_colour(context, cell),
                        ls=styles[index % len(styles)], marker="s" if name == study.BASELINE else "o", ms=5, capsize=2,
                        label=cell["label"])
            ax.set_xlabel("λ (the point λ x_i + (1 − λ) x_j)")
            ax.set_ylabel(f"{heading}, mean and {CONFIDENCE:.0%} interval over seeds")
    axes[0].set_title("Predictions neither y_i nor y_j")
    axes[1].set_title("Input-gradient norm of the loss")
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
