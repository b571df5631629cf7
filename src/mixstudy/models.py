"""Networks with declared mixing points.

A network is a sequence of ``stages`` followed by a ``head``. Mixing point ``k`` is the input
of ``stages[k]``, so point 0 is always the image itself (plain input mixup). Each network
declares its points once, through the number of its stages.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from mixstudy.networks import MIXING_POINTS, mixing_points  # noqa: F401  (re-exported)

NUM_CLASSES = 10

log = logging.getLogger(__name__)


class StagedNet(nn.Module):
    """Stages with a mixing point before each, then a classifier head."""

    def __init__(self, stages: list[nn.Module], head: nn.Module):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = head

    @property
    def mixing_points(self) -> tuple[int, ...]:
        return tuple(range(len(self.stages)))

    def forward(self, x: torch.Tensor, mixes: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> torch.Tensor:
        """``mixes`` maps mixing points to the function that mixes there (one point per run; a pack
        mixes each member's channels at that member's point)."""
        mixes = mixes or {}
        for point, stage in enumerate(self.stages):
            if point in mixes:
                x = mixes[point](x)
            x = stage(x)
        return self.head(x)


# --- the study's convnet -------------------------------------------------------------------


class LayoutStableDropout(nn.Dropout):
    """Dropout whose mask is drawn in logical (N, C, H, W) order.

    ``nn.Dropout`` draws its mask in memory order, so switching to channels_last would drop
    other units under the same seed; this keeps a run's result independent of memory format.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def conv_block(c_in: int, c_out: int, slope: float, dropout: float) -> nn.Sequential:
    """Three (conv 3x3, BatchNorm, LeakyReLU), then 2x2 max-pool and dropout."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(slope),
        ]
    layers += [nn.MaxPool2d(2), LayoutStableDropout(dropout)]
    return nn.Sequential(*layers)


def convnet(widths: tuple[int, int, int], dropout: float, leaky_slope: float) -> StagedNet:
    """The study's network: three blocks of three conv layers, global pooling, linear layer.

    Its settings come from ``model:`` in params.yaml, which says why they were chosen.
    """
    channels = [3, *widths]
    stages = [conv_block(channels[i], channels[i + 1], leaky_slope, dropout) for i in range(3)]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], NUM_CLASSES))
    return StagedNet(stages, head)


# --- PreActResNet18 (manifold mixup paper) -------------------------------------------------


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def _resnet_layer(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [PreActBlock(c_in, c_out, stride)]
    layers += [PreActBlock(c_out, c_out, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


PREACT_BASE_WIDTH = 64  # the manifold mixup paper's PreActResNet18: widths 64, 128, 256, 512


def preactresnet18(base_width: int = PREACT_BASE_WIDTH) -> StagedNet:
    """PreActResNet18; mixing points: input, after stage 1, after stage 2 (as in the paper's code)."""
    w = base_width
    stem_and_layer1 = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), _resnet_layer(w, w, 2, 1))
    layer2 = _resnet_layer(w, 2 * w, 2, 2)
    layer3_and_4 = nn.Sequential(_resnet_layer(2 * w, 4 * w, 2, 2), _resnet_layer(4 * w, 8 * w, 2, 2))
    head = nn.Sequential(
        nn.BatchNorm2d(8 * w), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, NUM_CLASSES)
    )
    return StagedNet([stem_and_layer1, layer2, layer3_and_4], head)


CONVNET_ONLY = ("widths", "dropout", "leaky_slope")


def build_model(model_params: dict) -> StagedNet:
    """The network ``model:`` names, from validated settings (params.yaml holds every default)."""
    name = model_params["name"]
    mixing_points(name)
    if name == "convnet":
        return convnet(tuple(model_params["widths"]), model_params["dropout"], model_params["leaky_slope"])
    log.warning(
        "model.name preactresnet18 has the paper's widths (64, 128, 256, 512), no dropout and ReLU: "
        "model.%s apply to convnet only and are not used", ", model.".join(CONVNET_ONLY),
    )
    return preactresnet18()
