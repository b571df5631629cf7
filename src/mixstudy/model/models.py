"""The networks' builders (their names and mixing points: :data:`mixstudy.core.networks.NETWORKS`).

A network is a sequence of ``stages`` followed by a ``head``. Mixing point ``k`` is the input
of ``stages[k]``, so point 0 is always the image itself (plain input mixup); the table's
``mixing_points`` are the stages' inputs (tests/test_models.py checks each network against it).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from mixstudy.core.networks import network, network_settings


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


# --- shared layers ---------------------------------------------------------------------------


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


def conv_bn_act(c_in: int, c_out: int, kernel: int, padding: int, bias: bool, slope: float) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias), nn.BatchNorm2d(c_out), nn.LeakyReLU(slope)]


def conv_block(c_in: int, c_out: int, slope: float, dropout: float, bias: bool = False) -> nn.Sequential:
    """Three (conv 3x3 with padding 1, BatchNorm, LeakyReLU), then 2x2 max-pool and dropout."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers += conv_bn_act(c_in if i == 0 else c_out, c_out, 3, 1, bias, slope)
    layers += [nn.MaxPool2d(2), LayoutStableDropout(dropout)]
    return nn.Sequential(*layers)


# --- the study's network (its Figure 2 and the notebook's ConvNet) --------------------------


def cnn13(num_classes: int, widths: tuple[int, int, int, int, int], dropout: float, leaky_slope: float) -> StagedNet:
    """The study's network, the 13-layer CNN ("CNN-13", "ConvLarge") of the semi-supervised literature.

    ``widths`` (the study: 128, 256, 512, 256, 128): blocks 1 and 2, then block 3's three layers.
    - blocks 1 and 2: 3 x [conv 3x3 padding 1 with bias, BatchNorm, LeakyReLU], max-pool 2, dropout;
    - block 3: conv 3x3 with no padding (8x8 -> 6x6), conv 1x1, conv 1x1, each with BatchNorm and
      LeakyReLU, then average pooling 6 (-> 1x1); no dropout;
    - a linear classifier. Mixing points: the input, the input of block 2, the input of block 3.
    """
    w1, w2, w3, w4, w5 = widths
    block3 = nn.Sequential(
        *conv_bn_act(w2, w3, 3, 0, True, leaky_slope),
        *conv_bn_act(w3, w4, 1, 0, True, leaky_slope),
        *conv_bn_act(w4, w5, 1, 0, True, leaky_slope),
        nn.AvgPool2d(6, stride=2),
    )
    stages = [conv_block(3, w1, leaky_slope, dropout, bias=True), conv_block(w1, w2, leaky_slope, dropout, bias=True), block3]
    return StagedNet(stages, nn.Sequential(nn.Flatten(), nn.Linear(w5, num_classes)))


# --- the cheap convnet (the network of the earlier real runs) -------------------------------


def convnet(num_classes: int, widths: tuple[int, int, int], dropout: float, leaky_slope: float) -> StagedNet:
    """Three blocks of three bias-free 3x3 conv layers (each ending in max-pool and dropout),
    global average pooling and a linear layer: a tenth of the study network's compute."""
    channels = [3, *widths]
    stages = [conv_block(channels[i], channels[i + 1], leaky_slope, dropout) for i in range(3)]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))
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


def preactresnet18(num_classes: int, base_width: int) -> StagedNet:
    """PreActResNet18 (the paper's: base width 64, stage widths 64, 128, 256, 512), with ReLU and no
    dropout; mixing points: input, after stage 1, after stage 2 (as in the paper's code)."""
    w = base_width
    stem_and_layer1 = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), _resnet_layer(w, w, 2, 1))
    layer2 = _resnet_layer(w, 2 * w, 2, 2)
    layer3_and_4 = nn.Sequential(_resnet_layer(2 * w, 4 * w, 2, 2), _resnet_layer(4 * w, 8 * w, 2, 2))
    head = nn.Sequential(
        nn.BatchNorm2d(8 * w), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes)
    )
    return StagedNet([stem_and_layer1, layer2, layer3_and_4], head)


def build_model(model_params: dict, num_classes: int) -> StagedNet:
    """The network ``model:`` names, from validated settings (params.yaml holds every default), with
    ``num_classes`` outputs (the data's: ``StudyData.num_classes``).

    ``model_params`` is a run's model section (``{"name": ..., **settings}``) or params.yaml's
    ``model:`` (one section per network); the builder comes from :data:`mixstudy.core.networks.NETWORKS`.
    """
    settings = network_settings(model_params)
    builder = globals()[network(settings.pop("name")).builder]
    return builder(num_classes, **{key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()})
