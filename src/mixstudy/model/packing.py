"""Packing: K networks of one architecture run as one network with grouped layers.

Member ``i`` owns channel block ``i`` of every layer: convolutions become grouped
convolutions (``groups * K``), BatchNorm keeps per-channel statistics (so per member for
free), the linear head becomes K independent linear maps, and dropout draws each member's
mask from that member's own generator. Elementwise and per-channel layers (activations,
pooling, flatten) are shared as they are. Nothing crosses between channel blocks, so each
member computes what it would compute alone, up to floating-point summation order.

Every packed tensor is the members' tensors concatenated along dim 0 (parameters, buffers
and optimizer state alike), which makes packing and unpacking a ``cat`` and a ``chunk``.

Why grouped layers rather than ``torch.func.stack_module_state`` + ``vmap``: vmap refuses the
network's dropout with ``randomness="different"`` and "same" would share masks, so a member
could not reproduce its solo run; BatchNorm's running statistics cannot be updated under vmap;
grouped layers are ordinary modules, checkpoint as ordinary state dicts, run one
cuDNN/oneDNN kernel per layer for the whole pack, and measured faster than vmap on CPU
(docs/performance.md, benchmarks/packing_methods.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mixstudy.core.errors import ConfigError
from mixstudy.model.models import LayoutStableDropout

# Layers that act per element or per channel: shared unchanged by every member.
CHANNELWISE = (nn.LeakyReLU, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


class PackedDropout(nn.Module):
    """Dropout with one generator per member; each mask has the member's solo shape and draw order."""

    def __init__(self, p: float, generators: list[torch.Generator]):
        super().__init__()
        self.p = p
        self.generators = generators

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        masks = [
            torch.empty(block.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p, generator=generator)
            for block, generator in zip(x.chunk(len(self.generators), dim=1), self.generators)
        ]
        keep = masks[0] if len(masks) == 1 else torch.cat(masks, dim=1)
        return x * keep / (1 - self.p)


class PackedLinear(nn.Module):
    """K independent linear maps: input (B, K*in) -> output (B, K*out), one batched matmul."""

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members * out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.members == 1:
            return F.linear(x, self.weight, self.bias)  # exactly the solo layer
        k, n_in, n_out = self.members, self.in_features, self.out_features
        per_member = x.reshape(-1, k, n_in).transpose(0, 1)  # (K, B, in)
        weight = self.weight.view(k, n_out, n_in).transpose(1, 2)  # (K, in, out)
        if self.bias is None:
            out = torch.bmm(per_member, weight)
        else:  # one fused op, cast by autocast like nn.Linear's (bias included)
            out = torch.baddbmm(self.bias.view(k, 1, n_out), per_member, weight)
        out = out.transpose(0, 1)  # (B, K, out)
        return out.reshape(-1, k * n_out)


def _packed_leaf(template: nn.Module, k: int, generators: list[torch.Generator]) -> nn.Module:
    if isinstance(template, nn.Conv2d):
        return nn.Conv2d(
            template.in_channels * k,
            template.out_channels * k,
            template.kernel_size,
            stride=template.stride,
            padding=template.padding,
            dilation=template.dilation,
            groups=template.groups * k,
            bias=template.bias is not None,
            padding_mode=template.padding_mode,
        )
    if isinstance(template, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            template.num_features * k, eps=template.eps, momentum=template.momentum,
            affine=template.affine, track_running_stats=template.track_running_stats,
        )
    if isinstance(template, nn.Linear):
        return PackedLinear(k, template.in_features, template.out_features, bias=template.bias is not None)
    if isinstance(template, LayoutStableDropout):
        return PackedDropout(template.p, generators)
    if isinstance(template, CHANNELWISE):
        return copy.deepcopy(template)
    raise ConfigError(
        f"cannot pack a {type(template).__name__} layer; set compute.pack_size=1 or teach "
        "mixstudy.model.packing this layer"
    )


def pack_modules(members: list[nn.Module], generators: list[torch.Generator]) -> nn.Module:
    """One module computing all ``members`` side by side (same structure, packed leaves), with their weights."""
    packed = _pack_structure(members[0], len(members), generators)
    packed.load_state_dict(pack_state([m.state_dict() for m in members]))
    return packed


def _pack_structure(template: nn.Module, k: int, generators: list[torch.Generator]) -> nn.Module:
    children = list(template.named_children())
    if not children:
        return _packed_leaf(template, k, generators)
    if list(template.parameters(recurse=False)) or list(template.buffers(recurse=False)):
        raise ConfigError(f"cannot pack {type(template).__name__}: it holds weights of its own, not in a layer")
    packed = copy.copy(template)  # keeps the container's forward (e.g. residual blocks, StagedNet)
    packed._modules, packed._parameters, packed._buffers = {}, {}, {}
    for name, child in children:
        setattr(packed, name, _pack_structure(child, k, generators))
    return packed


def _cat(values: list):
    first = values[0]
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        return torch.cat(values, dim=0)
    return first  # counters (num_batches_tracked) and empty slots are the same for every member


def _chunk(value, k: int, index: int):
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.chunk(k, dim=0)[index].clone()
    return value


def pack_state(states: list[dict]) -> dict:
    return {name: _cat([state[name] for state in states]) for name in states[0]}


def unpack_state(state: dict, k: int, index: int) -> dict:
    return {name: _chunk(value, k, index) for name, value in state.items()}


def pack_optimizer_state(states: list[dict]) -> dict:
    """Members' optimizer state dicts (same hyper-parameters) -> the packed optimizer's."""
    per_param = states[0]["state"]
    packed = {
        param: {key: _cat([state["state"][param][key] for state in states]) for key in per_param[param]}
        for param in per_param
    }
    return {"state": packed, "param_groups": copy.deepcopy(states[0]["param_groups"])}


def unpack_optimizer_state(state: dict, k: int, index: int) -> dict:
    member = {param: {key: _chunk(value, k, index) for key, value in slots.items()} for param, slots in state["state"].items()}
    return {"state": member, "param_groups": copy.deepcopy(state["param_groups"])}


def check_packable(configs: list[dict]) -> None:
    """A pack shares everything but the seed and the mixing settings."""
    def shared(config: dict) -> dict:
        return {key: value for key, value in config.items() if key not in ("seed", "mixing")}

    reference = shared(configs[0])
    for config in configs[1:]:
        differing = sorted(key for key in reference if shared(config).get(key) != reference[key])
        if differing:
            raise ConfigError(
                f"runs in one pack must share network, optimiser, schedule, epochs and compute settings; "
                f"these differ in {differing}: train them in separate packs"
            )
