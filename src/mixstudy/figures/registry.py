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
  smoothness_vs_accuracy  input-Jacobian norm against test accuracy per configuration (evaluation.json)
  between_vs_lambda     miss rate and loss-gradient norm between training images against lambda (evaluation.json)

Every number comes from :func:`mixstudy.results.analysis.analyse` (accuracies in percent, std with ddof=1).
A figure whose data is absent is skipped with a warning, and any stale copy of it is removed.
Every figure is drawn aside before any file is replaced: the folder holds the figures of one
drawing, or, when one cannot be written, those of the drawing before.
Each layer set S has one colour and marker in every figure; the baseline is black, CutMix grey.

This module holds the registry and the entry point of `mixstudy figures`; the figures are drawn in
figures.examples (Figure 1), figures.grids (Tables 1 and 3) and figures.run_files (the runs' own
files), with what they share in figures.base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from mixstudy.results.analysis import analyse
from mixstudy.figures.base import FigureContext, MissingFigureData, layer_set_styles, remove_stale, save_figure
from mixstudy.core.fileio import written_together
from mixstudy.figures.examples import fig1_mixing_examples, study_examples
from mixstudy.figures.grids import acc_vs_alpha, acc_vs_alpha_panels, sweep_acc_heatmap, sweep_delta_heatmap, tuning_bars
from mixstudy.figures.run_files import (
    between_vs_lambda, calibration_scaling, published_vs_ours, reliability, reliability_scaled, smoothness_vs_accuracy,
    test_curves, training_curves,
)

log = logging.getLogger(__name__)

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
    "smoothness_vs_accuracy": smoothness_vs_accuracy,
    "between_vs_lambda": between_vs_lambda,
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
    with plt.rc_context(), written_together() as files:  # every figure drawn before any is replaced
        sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
        for name, draw in FIGURES.items():
            try:
                fig = draw(context)
            except MissingFigureData as why:
                plt.close("all")
                log.warning("skipping figure %s: %s", name, why)
                remove_stale(out_dir, name, files)
                result.skipped[name] = str(why)
                continue
            result.written[name] = save_figure(fig, out_dir, name, files)
    return result
