"""The figures of the grids: Table 1 as bars, Table 3 as heatmaps (accuracy and the difference to
the baseline) and accuracy against alpha, one line or one panel per layer set S.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from mixstudy.runs import study
from mixstudy.results.analysis import Analysis, mixing_differences
from mixstudy.figures.base import (
    ACC_LABEL, BASELINE_COLOUR, CUTMIX_COLOUR, CUTMIX_DODGE, CUTMIX_MARKER, FigureContext, MissingFigureData,
)
from mixstudy.results.tables import INCOMPLETE, format_signed


def finished_cells(cells: pd.DataFrame, what: str) -> pd.DataFrame:
    cells = cells[cells["n"] > 0]
    if cells.empty:
        raise MissingFigureData(f"no {what} run has finished")
    return cells


def tuning_bars(context: FigureContext) -> plt.Figure:
    cells = finished_cells(context.analysis.stage("tuning"), "tuning")
    cells = cells.assign(setting=[f"momentum {c.momentum:g}, wd {c.weight_decay:g}" for c in cells.itertuples()])
    schedulers = list(dict.fromkeys(cells["scheduler"]))
    settings = list(dict.fromkeys(cells["setting"]))
    width = 0.8 / len(settings)
    fig, ax = plt.subplots(figsize=(1.2 + 2.2 * len(schedulers), 4.5))
    for i, (setting, colour) in enumerate(zip(settings, sns.color_palette("crest", len(settings)))):
        rows = cells[cells["setting"] == setting].set_index("scheduler").reindex(schedulers)
        x = np.arange(len(schedulers)) + (i - (len(settings) - 1) / 2) * width
        bars = ax.bar(x, rows["acc_mean"], width, yerr=rows["acc_std"].fillna(0), capsize=3, color=colour,
                      label=setting)
        labels = [f"{m:.1f}" + ("" if n == a else INCOMPLETE) if n else "" for m, n, a in
                  zip(rows["acc_mean"], rows["n"].fillna(0), rows["asked"])]
        ax.bar_label(bars, labels=labels, label_type="center", rotation=90, fontsize=8, color="white")
    ax.set_xticks(np.arange(len(schedulers)), schedulers)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel("learning-rate schedule")
    ax.set_ylabel(f"{ACC_LABEL}, mean ± sd over seeds")
    ax.set_title("Baseline tuning (Table 1)")
    ax.legend(title="setting", bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def sweep_pivot(analysis: Analysis, values: pd.Series) -> pd.DataFrame:
    """``values`` (indexed like the manifold cells) laid out as S x alpha: S in grid order, alpha
    ascending (a cross of the grid lists its cells by S, so the first alpha found need not be the smallest)."""
    cells = analysis.stage("sweep", "manifold")
    frame = pd.DataFrame({"S": cells["layers"].map(study.set_notation), "alpha": cells["alpha"], "value": values})
    pivot = frame.pivot(index="S", columns="alpha", values="value")
    return pivot.reindex(index=list(dict.fromkeys(frame["S"])), columns=sorted(set(frame["alpha"])))


def grid_heatmap(analysis: Analysis, means: pd.DataFrame, annotations: pd.DataFrame, title: str, colourbar: str,
                 **heatmap) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 1.1 * means.shape[1]), max(4.0, 1.8 + 0.65 * means.shape[0])))
    sns.heatmap(means.astype(float), annot=annotations.to_numpy(), fmt="", ax=ax, linewidths=0.5, linecolor="white",
                cbar_kws={"label": colourbar}, annot_kws={"fontsize": 9}, **heatmap)
    ax.grid(False)
    for row, col in zip(*np.nonzero(means.isna().to_numpy())):  # hatched, so no one reads them as "about 0"
        ax.add_patch(Rectangle((col, row), 1, 1, fill=False, hatch="///", ec="0.55", lw=0))
    ax.set_xticklabels([study.fmt(a) for a in means.columns])
    ax.set_xlabel("mixing strength α (λ ~ Beta(α, α))")
    ax.set_ylabel("mixing set S (0 = input)")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(title)
    fig.tight_layout()
    cells = analysis.stage("sweep", "manifold")
    if (cells["n"] < cells["asked"]).any():  # below the figure; savefig's tight bounding box keeps it
        fig.text(0.01, 0.0, f"{INCOMPLETE} fewer finished seeds than asked; hatched: no finished seed", fontsize=9,
                 ha="left", va="top")
    return fig


def cell_marks(analysis: Analysis) -> pd.Series:
    cells = analysis.stage("sweep", "manifold")
    return pd.Series(np.where(cells["n"] < cells["asked"], INCOMPLETE, ""), index=cells.index)


def sweep_acc_heatmap(context: FigureContext) -> plt.Figure:
    analysis = context.analysis
    cells = analysis.stage("sweep", "manifold")
    finished_cells(cells, "manifold mixup")
    marks = cell_marks(analysis)
    text = ["" if n == 0 else f"{m:.1f}{mark}" for m, n, mark in zip(cells["acc_mean"], cells["n"], marks)]
    means = sweep_pivot(analysis, cells["acc_mean"])
    annotations = sweep_pivot(analysis, pd.Series(text, index=cells.index))
    return grid_heatmap(analysis, means, annotations, "Test accuracy, manifold mixup (mean over seeds)", ACC_LABEL,
                        cmap="viridis")


def sweep_delta_heatmap(context: FigureContext) -> plt.Figure:
    analysis = context.analysis
    cells = analysis.stage("sweep", "manifold")
    finished_cells(cells, "manifold mixup")
    if analysis.baseline()["n"] == 0:
        raise MissingFigureData("no baseline run has finished")
    differences = mixing_differences(analysis).set_index("name").reindex(cells["name"])
    diff = pd.Series(differences["diff"].to_numpy(), index=cells.index)
    text = ["" if pd.isna(d) else format_signed(d, 1) + mark for d, mark in zip(diff, cell_marks(analysis))]
    limit = max(float(np.nanmax(np.abs(diff))), 0.1)
    return grid_heatmap(
        analysis, sweep_pivot(analysis, diff), sweep_pivot(analysis, pd.Series(text, index=cells.index)),
        "Manifold mixup minus baseline, test accuracy", "Δ accuracy (percentage points)",
        cmap="RdBu", center=0, vmin=-limit, vmax=limit,
    )


def draw_baseline(ax, base: pd.Series) -> None:
    """The baseline's mean as a dashed line with a band of one standard deviation."""
    if base["n"] == 0:
        return
    spread = 0 if pd.isna(base["acc_std"]) else base["acc_std"]
    ax.axhspan(base["acc_mean"] - spread, base["acc_mean"] + spread, color=BASELINE_COLOUR, alpha=0.1, lw=0)
    ax.axhline(base["acc_mean"], color=BASELINE_COLOUR, ls="--", lw=1.2, label="baseline (no mixing)")


def draw_alpha_line(ax, rows: pd.DataFrame, style: dict, band_alpha: float) -> None:
    """One layer set's mean accuracy against alpha, with a band of one standard deviation over seeds."""
    label = f"S = {study.set_notation(rows['layers'].iloc[0])}"
    ax.plot(rows["alpha"], rows["acc_mean"], label=label, **style)
    ax.fill_between(rows["alpha"], rows["acc_mean"] - rows["acc_std"], rows["acc_mean"] + rows["acc_std"],
                    color=style["color"], alpha=band_alpha, lw=0)


def draw_cutmix(ax, analysis: Analysis) -> None:
    cutmix = analysis.stage("sweep", "cutmix")
    cutmix = cutmix[cutmix["n"] > 0]
    if not cutmix.empty:
        ax.errorbar(cutmix["alpha"] * CUTMIX_DODGE, cutmix["acc_mean"], yerr=cutmix["acc_std"].fillna(0),
                    fmt=CUTMIX_MARKER, color=CUTMIX_COLOUR, capsize=3, label="CutMix")


def alpha_axis(ax, analysis: Analysis) -> None:
    alphas = sorted(set(analysis.stage("sweep", "manifold")["alpha"]) | set(analysis.stage("sweep", "cutmix")["alpha"]))
    ax.set_xscale("log")
    ax.set_xticks(alphas, [study.fmt(a) for a in alphas])
    ax.minorticks_off()


def acc_vs_alpha(context: FigureContext) -> plt.Figure:
    """Every layer set on one axis (bands kept faint so the lines stay readable)."""
    analysis = context.analysis
    cells = finished_cells(analysis.stage("sweep", "manifold"), "manifold mixup")
    fig, ax = plt.subplots(figsize=(8, 4.8))
    draw_baseline(ax, analysis.baseline())
    for layers, rows in cells.groupby("layers", sort=False):
        draw_alpha_line(ax, rows, context.styles[study.set_notation(layers)], band_alpha=0.08)
    draw_cutmix(ax, analysis)
    alpha_axis(ax, analysis)
    ax.set_xlabel("mixing strength α (log scale)")
    ax.set_ylabel(f"{ACC_LABEL}, mean ± sd over seeds")
    ax.set_title("Test accuracy against α")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def acc_vs_alpha_panels(context: FigureContext) -> plt.Figure:
    """The same curves, one panel per layer set, so each band can be read against the baseline's."""
    analysis = context.analysis
    cells = finished_cells(analysis.stage("sweep", "manifold"), "manifold mixup")
    groups = list(cells.groupby("layers", sort=False))
    ncols = min(4, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), sharex=True, sharey=True, squeeze=False)
    for ax, (layers, rows) in zip(axes.flat, groups):
        draw_baseline(ax, analysis.baseline())
        draw_alpha_line(ax, rows, context.styles[study.set_notation(layers)], band_alpha=0.2)
        alpha_axis(ax, analysis)
        ax.set_title(f"S = {study.set_notation(layers)}")
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ACC_LABEL)
    for index, ax in enumerate(axes.flat[: len(groups)]):
        if index + ncols >= len(groups):  # lowest panel of its column
            ax.set_xlabel("α (log scale)")
            ax.tick_params(axis="x", labelbottom=True, labelsize=8)
    fig.suptitle("Test accuracy against α per mixing set S: mean ± sd over seeds; dashed: baseline ± sd")
    fig.tight_layout()
    return fig
