"""What every figure shares: the colours and markers, the context a figure is drawn from, how a
figure is saved (PNG and PDF, atomically) and how a skipped figure's stale copy is removed.

Each layer set S has one colour and marker in every figure; the baseline is black, CutMix grey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from mixstudy.runs import study
from mixstudy.results.analysis import Analysis
from mixstudy.core.fileio import FileGroup, atomic_path

matplotlib.use("Agg")  # files only; never needs a display

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


# No creation date in the files, so that rebuilding a figure from the same runs gives the same bytes.
STABLE_METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def save_figure(fig: plt.Figure, out_dir: Path, name: str, files: FileGroup | None = None) -> list[Path]:
    """The figure as PNG and PDF, each written atomically, or through ``files`` (put in place with the others)."""
    paths = []
    for suffix in FORMATS:
        path = out_dir / f"{name}.{suffix}"
        if files is not None:
            fig.savefig(files.path(path), format=suffix, dpi=DPI, bbox_inches="tight", metadata=STABLE_METADATA[suffix])
        else:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=suffix, dpi=DPI, bbox_inches="tight", metadata=STABLE_METADATA[suffix])
        paths.append(path)
    plt.close(fig)
    return paths


def remove_stale(out_dir: Path, name: str, files: FileGroup | None = None) -> None:
    """A skipped figure's copies from an earlier drawing: removed now, or with ``files`` when the others are put in place."""
    for suffix in FORMATS:
        path = out_dir / f"{name}.{suffix}"
        if files is not None:
            files.remove(path)
        else:
            path.unlink(missing_ok=True)
