"""The study's figures, each written as PNG and PDF under one folder (default results/figures).

  fig1_mixing_examples  image pairs from the training subset, their input mixup (lambda = 0.5) and CutMix
  tuning_bars           Table 1 as grouped bars, error bars one standard deviation over seeds
  sweep_acc_heatmap     Table 3 accuracy, S x alpha
  sweep_delta_heatmap   Table 3 minus the baseline, diverging colours centred at 0
  acc_vs_alpha          accuracy against alpha, one line per S, bands one standard deviation over seeds
  acc_vs_alpha_panels   the same, one panel per S (the bands overlap on one axis)
  training_curves       train loss, train accuracy and learning rate per epoch: baseline vs best mixup
  reliability           reliability diagrams, baseline vs best mixup, bins pooled over seeds
  reliability_scaled    the same after temperature scaling (one temperature per run, fitted on validation)
  calibration_scaling   test ECE and NLL before and after temperature scaling, per configuration
  test_curves           test accuracy every evaluation.every epochs, for the runs that recorded it
  published_vs_ours     each Table 1 and Table 3 cell we ran against the study's, identity line

Every number comes from :func:`mixstudy.analysis.analyse` (accuracies in percent, std with ddof=1).
A figure whose data is absent is skipped with a warning, and any stale copy of it is removed.
Each layer set S has one colour and marker in every figure; the baseline is black, CutMix grey.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from mixstudy import published, study
from mixstudy.analysis import Analysis, analyse, best_mixing, mixing_differences, read_histories
from mixstudy.errors import DataError
from mixstudy.fileio import atomic_path
from mixstudy.statistics import CONFIDENCE
from mixstudy.tables import INCOMPLETE, calibration_cells, calibration_table, format_signed

matplotlib.use("Agg")  # files only; never needs a display

log = logging.getLogger(__name__)

BASELINE_COLOUR = "black"
CUTMIX_COLOUR = "0.5"
CUTMIX_MARKER = "X"
MARKERS = ("o", "s", "^", "D", "v", "P", "<", ">", "p", "*")
FORMATS = ("png", "pdf")
DPI = 150
ACC_LABEL = "test accuracy (%)"
CUTMIX_DODGE = 1.06  # CutMix points sit this factor right of their alpha, off the mixup markers


class MissingFigureData(Exception):
    """The runs or files a figure needs are not there; the figure is skipped."""


@dataclass
class FigureContext:
    analysis: Analysis
    runs_root: Path
    examples: Callable[[], tuple[np.ndarray, np.ndarray]]  # training images (N,H,W,3 uint8) and labels
    styles: dict = field(default_factory=dict)  # layer set label "{0,2}" -> matplotlib color and marker


def layer_set_styles(params: dict) -> dict:
    """One colour and marker per layer set S, in the order of sweep.layer_sets, shared by every figure."""
    labels = [study.set_notation(study.layers_label(layers)) for layers in params["sweep"]["layer_sets"]]
    palette = sns.color_palette("colorblind" if len(labels) <= 7 else "husl", len(labels))
    return {
        label: {"color": colour, "marker": MARKERS[i % len(MARKERS)]}
        for i, (label, colour) in enumerate(zip(labels, palette))
    }


def config_colour(context: FigureContext, cell) -> str | tuple:
    if cell["method"] == "manifold":
        return context.styles[study.set_notation(cell["layers"])]["color"]
    return CUTMIX_COLOUR if cell["method"] == "cutmix" else BASELINE_COLOUR


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for suffix in FORMATS:
        path = out_dir / f"{name}.{suffix}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=DPI, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def remove_stale(out_dir: Path, name: str) -> None:
    for suffix in FORMATS:
        (out_dir / f"{name}.{suffix}").unlink(missing_ok=True)


# --- Figure 1: mixing examples --------------------------------------------------------------


def pick_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random pairs of images from different classes."""
    order = rng.permutation(len(labels))
    half = len(order) // 2
    pairs = [(int(a), int(b)) for a, b in zip(order[:half], order[half:]) if labels[a] != labels[b]]
    return pairs[:n_pairs]


def mix_pairs(images: np.ndarray, pairs: list[tuple[int, int]]) -> dict:
    """Input mixup at lambda = 0.5 and a centred CutMix box of the pairs, with the study's functions."""
    from mixstudy.mixing import box_lambda, box_mask, cutmix_box, mix_tensors, paste_boxes
    import torch

    n = len(pairs)
    indices = [a for a, _ in pairs] + [b for _, b in pairs]
    batch = torch.from_numpy(images[indices]).permute(0, 3, 1, 2).float() / 255
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])  # A_i is mixed with B_i
    height, width = batch.shape[-2:]
    box = cutmix_box(0.5, height, width, height // 2, width // 2)
    pasted = paste_boxes(batch, partner, box_mask([box] * len(batch), height, width, "cpu"))

    def as_images(x):
        return x[:n].permute(0, 2, 3, 1).clamp(0, 1).numpy()

    return {
        "first": as_images(batch),
        "second": batch[n:].permute(0, 2, 3, 1).numpy(),
        "mixup": as_images(mix_tensors(batch, partner, 0.5)),
        "cutmix": as_images(pasted),
        "box": box,
        "cutmix_lambda": box_lambda(box, height, width),
    }


def mixing_examples_figure(images: np.ndarray, labels: np.ndarray, n_pairs: int = 4, seed: int = 0) -> plt.Figure:
    """The study's Figure 1 from uint8 images (N, H, W, 3) and their labels."""
    from mixstudy.data import CLASSES

    pairs = pick_pairs(np.asarray(labels), n_pairs, np.random.default_rng(seed))
    if not pairs:
        raise MissingFigureData("no two images of different classes to mix")
    mixed = mix_pairs(images, pairs)
    lam = mixed["cutmix_lambda"]
    columns = [
        ("image A", "first"),
        ("image B", "second"),
        ("input mixup, λ = 0.5", "mixup"),
        (f"CutMix, λ = {lam:.2f}", "cutmix"),
    ]
    fig, axes = plt.subplots(len(pairs), 4, figsize=(10, 2.5 * len(pairs)), squeeze=False)
    for row, (a, b) in enumerate(pairs):
        name_a, name_b = CLASSES[labels[a]], CLASSES[labels[b]]
        captions = [name_a, name_b, f"0.5 {name_a} + 0.5 {name_b}", f"{lam:.2f} {name_a} + {1 - lam:.2f} {name_b}"]
        for col, ((title, key), caption) in enumerate(zip(columns, captions)):
            ax = axes[row, col]
            ax.imshow(mixed[key][row], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_xlabel(caption, fontsize=9)
            if row == 0:
                ax.set_title(title, fontsize=11)
        x1, y1, x2, y2 = mixed["box"]
        axes[row, 3].add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=1))
    fig.suptitle("Figure 1: mixing pairs of training images", fontsize=13)
    fig.tight_layout()
    return fig


def study_examples(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The study's training subset, as training sees it."""
    from mixstudy.data import load_study_data, subset_file

    try:
        data = load_study_data(params["data"]["out"], subset_file(params["subset"]))
    except DataError as err:
        raise MissingFigureData(str(err)) from err
    return data.x_train, data.y_train


def fig1_mixing_examples(context: FigureContext) -> plt.Figure:
    images, labels = context.examples()
    return mixing_examples_figure(images, labels)


# --- Table 1 and Table 3 --------------------------------------------------------------------


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


# --- baseline vs best mixup -----------------------------------------------------------------


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
    done = context.analysis.done
    rows = done[(done["stage"] == cell["stage"]) & (done["name"] == cell["name"])]
    return [context.runs_root / run_id for run_id in rows["run_id"]]


def require_histories(folders: list[Path]) -> pd.DataFrame:
    """The stacked histories (:func:`mixstudy.analysis.read_histories`), or MissingFigureData: the figure is skipped."""
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
    tables = [(study.read_run_record(folder).get("reliability") or {}).get(split) for folder in folders]
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


FIGURES: dict[str, Callable[[FigureContext], plt.Figure]] = {
    "fig1_mixing_examples": fig1_mixing_examples,
    "tuning_bars": tuning_bars,
    "sweep_acc_heatmap": sweep_acc_heatmap,
    "sweep_delta_heatmap": sweep_delta_heatmap,
    "acc_vs_alpha": acc_vs_alpha,
    "acc_vs_alpha_panels": acc_vs_alpha_panels,
    "training_curves": training_curves,
    "reliability": reliability,
    "reliability_scaled": reliability_scaled,
    "calibration_scaling": calibration_scaling,
    "test_curves": test_curves,
    "published_vs_ours": published_vs_ours,
}


@dataclass
class FigureResult:
    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # figure name -> why


def make_figures(
    params: dict,
    runs_root: str | Path,
    out_dir: str | Path,
    examples: tuple[np.ndarray, np.ndarray] | None = None,
) -> FigureResult:
    """Draw every figure whose data is there; ``examples`` (images, labels) replaces the study's subset for Figure 1."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # exists even when every figure is skipped (a pipeline output)
    context = FigureContext(
        analysis=analyse(params, runs_root),
        runs_root=Path(runs_root),
        examples=(lambda: examples) if examples is not None else (lambda: study_examples(params)),
        styles=layer_set_styles(params),
    )
    result = FigureResult()
    with plt.rc_context():
        sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
        for name, draw in FIGURES.items():
            try:
                fig = draw(context)
            except MissingFigureData as why:
                plt.close("all")
                log.warning("skipping figure %s: %s", name, why)
                remove_stale(out_dir, name)
                result.skipped[name] = str(why)
                continue
            result.written[name] = save_figure(fig, out_dir, name)
    return result
