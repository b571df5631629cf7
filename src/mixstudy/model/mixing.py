"""Input mixup, manifold mixup and CutMix as small functions plus one :class:`Mixer`.

This module is the one answer to where alpha acts: the draws (:meth:`Mixer.draw`), mixing at the
drawn point (:meth:`Mixer.mix`, and :func:`member_mixes` for each member of a pack), the mixed
targets (:meth:`Mixer.targets`) and the loss on them (:meth:`Mixer.loss_fn`).

The variants are named options of one mixer (``method``, ``lambda_per``, ``loss``, ``targets``), not copies:

* ``mixup``    - mix at point 0 (the input);
* ``manifold`` - mix at a point k drawn uniformly from the set S (``layers``) each batch;
* ``cutmix``   - paste a box of the permuted batch into the input; lambda becomes the kept area;
* ``targets``  - ``mixed``: the targets mixed with the same lambda and partner; ``hard``: the inputs are
  mixed but each row keeps its own label, the first of its pair (Zhang et al.'s "mix input only").

Label smoothing composes as in Zhang et al. (and timm's ``mixup_target``): each one-hot target is
smoothed first, then the smoothed targets are mixed (or, ``hard``, kept).

All random draws (lambda, k, permutation, box) come from one numpy Generator, so a seed fixes
them on any device. Mixing arithmetic follows ``torchvision.transforms.v2.MixUp``/``CutMix``
operation for operation, so given the same lambda, permutation and box the results are equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mixstudy.core.errors import ConfigError

METHODS = ("none", "mixup", "manifold", "cutmix")
LOSSES = ("soft_ce", "bce")
TARGETS = ("mixed", "hard")


# --- pure functions -------------------------------------------------------------------------


def host_to_device(array: np.ndarray, device) -> torch.Tensor:
    """Copy a small host array to the device without making the host wait (pinned, non-blocking on CUDA)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _as_weight(lam, like: torch.Tensor):
    """A python float stays a scalar; per-sample lambdas broadcast over the non-batch dims."""
    if isinstance(lam, float):
        return lam
    lam = host_to_device(np.asarray(lam), like.device).to(like.dtype)
    return lam.view(-1, *([1] * (like.dim() - 1)))


def mix_tensors(x: torch.Tensor, perm: torch.Tensor, lam) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[perm]``, in torchvision's order of operations."""
    weight = _as_weight(lam, x)
    return x[perm].mul(1.0 - weight).add_(x.mul(weight))


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels, num_classes).float()


def smooth(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing: ``(1 - eps) * targets + eps / classes`` (torch's ``label_smoothing=`` of cross_entropy)."""
    if eps == 0:
        return targets
    return targets * (1.0 - eps) + eps / targets.shape[1]


def cutmix_box(lam: float, height: int, width: int, center_y: int, center_x: int) -> tuple[int, int, int, int]:
    """Box ``(x1, y1, x2, y2)`` of area about ``(1 - lam)`` around a center, clipped to the image."""
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    x1, y1 = max(center_x - half_w, 0), max(center_y - half_h, 0)
    x2, y2 = min(center_x + half_w, width), min(center_y + half_h, height)
    return x1, y1, x2, y2


def box_lambda(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """The true share of the image kept from the original sample once the box is pasted."""
    x1, y1, x2, y2 = box
    return float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))


def box_mask(boxes: list[tuple[int, int, int, int]], height: int, width: int, device) -> torch.Tensor:
    """Boolean mask ``(len(boxes), 1, H, W)``, true inside each box; built on the device from python ints."""
    mask = torch.zeros(len(boxes), 1, height, width, dtype=torch.bool, device=device)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        mask[i, :, y1:y2, x1:x2] = True
    return mask


def paste_boxes(x: torch.Tensor, perm: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Take pixels inside the mask from the permuted batch, the rest from the batch itself."""
    return torch.where(mask, x[perm], x)


def mixed_loss(logits: torch.Tensor, soft_targets: torch.Tensor, kind: str = "soft_ce") -> torch.Tensor:
    """Interpolated cross-entropy, or BCE on softmax as in the official manifold mixup code."""
    logits = logits.float()
    if kind == "soft_ce":
        return torch.sum(-soft_targets * F.log_softmax(logits, dim=1), dim=1).mean()
    if kind == "bce":
        return F.binary_cross_entropy(F.softmax(logits, dim=1), soft_targets)
    raise ConfigError(f"mixing.loss: unknown loss {kind!r}; choose one of: {', '.join(LOSSES)}")


# --- the mixer ------------------------------------------------------------------------------


@dataclass
class MixDraw:
    """One batch's draws: where to mix, how much, with whom, and (CutMix) which pixels."""

    point: int
    lam: float | np.ndarray  # per batch (float) or per sample (array); CutMix: the pasted-area-corrected value
    perm: torch.Tensor
    mask: torch.Tensor | None = None


class Mixer:
    """Draws and applies one mixing method; ``method='none'`` or ``alpha=0`` means plain training.

    Every setting is given (params.yaml's ``mixing`` holds the defaults; see :meth:`from_params`).
    """

    def __init__(
        self,
        method: str,
        alpha: float,
        layers,
        lambda_per: str,
        loss: str,
        label_smoothing: float,
        num_classes: int,
        targets: str,
    ):
        if method not in METHODS:
            raise ConfigError(f"mixing.method: unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        if lambda_per not in ("batch", "sample"):
            raise ConfigError(f"mixing.lambda_per: {lambda_per!r}; choose batch or sample")
        if loss not in LOSSES:
            raise ConfigError(f"mixing.loss: unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")
        if targets not in TARGETS:
            raise ConfigError(f"mixing.targets: unknown targets {targets!r}; choose one of: {', '.join(TARGETS)}")
        self.method, self.alpha, self.loss, self.target_mode = method, float(alpha), loss, targets
        self.layers = tuple(layers) if method == "manifold" else (0,)
        self.lambda_per = lambda_per
        self.label_smoothing = float(label_smoothing)
        self.num_classes = num_classes

    @classmethod
    def from_params(cls, mixing: dict, num_classes: int) -> "Mixer":
        """``mixing``: a run's section, settings added later filled in (study.with_settings_added_later)."""
        return cls(
            method=mixing["method"],
            alpha=mixing["alpha"],
            layers=mixing["layers"],
            lambda_per=mixing["lambda_per"],
            loss=mixing["loss"],
            label_smoothing=mixing["label_smoothing"],
            num_classes=num_classes,
            targets=mixing["targets"],
        )

    @property
    def active(self) -> bool:
        return self.method != "none" and self.alpha > 0

    def draw(self, rng: np.random.Generator, batch_size: int, image_hw: tuple[int, int], device) -> MixDraw | None:
        """Draw k, lambda, the permutation and (CutMix) boxes for one batch; None when not mixing."""
        if not self.active:
            return None
        point = int(self.layers[rng.integers(len(self.layers))])
        n_lam = 1 if self.lambda_per == "batch" else batch_size
        lams = rng.beta(self.alpha, self.alpha, size=n_lam)
        perm = host_to_device(rng.permutation(batch_size), device)
        if self.method != "cutmix":
            lam = float(lams[0]) if n_lam == 1 else lams
            return MixDraw(point, lam, perm)
        height, width = image_hw
        centers_y = rng.integers(height, size=n_lam)
        centers_x = rng.integers(width, size=n_lam)
        boxes = [cutmix_box(float(l), height, width, int(cy), int(cx)) for l, cy, cx in zip(lams, centers_y, centers_x)]
        kept = np.array([box_lambda(b, height, width) for b in boxes])
        lam = float(kept[0]) if n_lam == 1 else kept
        return MixDraw(point, lam, perm, box_mask(boxes, height, width, device))

    def mix(self, h: torch.Tensor, draw: MixDraw) -> torch.Tensor:
        """Mix a batch of inputs (point 0) or hidden states (point k)."""
        if draw.mask is not None:
            return paste_boxes(h, draw.perm, draw.mask)
        return mix_tensors(h, draw.perm, draw.lam)

    def targets(self, labels: torch.Tensor, draw: MixDraw | None) -> torch.Tensor:
        """One-hot targets, smoothed when asked, then mixed with the draw's permutation (``targets:
        mixed``) or left as each row's own (``hard``)."""
        onehot = smooth(one_hot(labels, self.num_classes), self.label_smoothing)
        if draw is None or self.target_mode == "hard":
            return onehot
        return mix_tensors(onehot, draw.perm, draw.lam)

    def loss_fn(self, logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
        return mixed_loss(logits, soft_targets, self.loss)


def member_mixes(mixers: list[Mixer], draws: list[MixDraw | None]) -> dict:
    """Mixing functions by point for a pack (see mixstudy.model.packing): member ``i`` mixes its own
    channel block with ``mixers[i]`` and its own draw, at the point it drew; a plain run is a pack of one."""

    def mix_at(point: int):
        def mix(h: torch.Tensor) -> torch.Tensor:
            blocks = list(h.chunk(len(mixers), dim=1))
            for i, (mixer, draw) in enumerate(zip(mixers, draws)):
                if draw is not None and draw.point == point:
                    blocks[i] = mixer.mix(blocks[i], draw)
            return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)

        return mix

    return {point: mix_at(point) for point in {d.point for d in draws if d is not None}}
