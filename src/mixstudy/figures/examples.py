"""Figure 1: pairs of training images, their input mixup (lambda = 0.5) and CutMix, mixed by the
study's own functions. The only figure module that needs torch, the data and the mixing code, and
it imports them only when Figure 1 is drawn.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mixstudy.core.errors import DataError
from mixstudy.figures.base import FigureContext, MissingFigureData


def pick_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random pairs of images from different classes."""
    order = rng.permutation(len(labels))
    half = len(order) // 2
    pairs = [(int(a), int(b)) for a, b in zip(order[:half], order[half:]) if labels[a] != labels[b]]
    return pairs[:n_pairs]


def mix_pairs(images: np.ndarray, pairs: list[tuple[int, int]]) -> dict:
    """Input mixup at lambda = 0.5 and a centred CutMix box of the pairs, with the study's functions."""
    from mixstudy.model.mixing import box_lambda, box_mask, cutmix_box, mix_tensors, paste_boxes
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


def mixing_examples_figure(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] | None = None, n_pairs: int = 4, seed: int = 0
) -> plt.Figure:
    """The study's Figure 1 from uint8 images (N, H, W, 3), their labels and the data set's class
    names (None: the labels' numbers)."""
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
        name_a, name_b = (str(labels[i]) if class_names is None else class_names[labels[i]] for i in (a, b))
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
    from mixstudy.data.subsets import load_study_data, params_subset_file

    try:
        data = load_study_data(params["data"]["out"], params_subset_file(params))
    except DataError as err:
        raise MissingFigureData(str(err)) from err
    return data.x_train, data.y_train


def fig1_mixing_examples(context: FigureContext) -> plt.Figure:
    from mixstudy.data.datasets import prepared_class_names

    images, labels = context.examples()
    return mixing_examples_figure(images, labels, prepared_class_names(context.analysis.params["data"]))
