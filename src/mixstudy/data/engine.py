"""Device-resident data and batched augmentation (no PIL, no DataLoader).

The whole subset lives on the training device as one float tensor in [0, 1]; random crops
(reflect or zero padding, as torchvision's ``RandomCrop(32, padding=4, padding_mode=...)`` before
``Normalize``) and
horizontal flips are done for a whole batch with tensor indexing, driven by a torch
Generator on the same device so no random state crosses between host and device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from mixstudy.core.errors import ConfigError

        raise ConfigError("compute.device: cuda was asked for but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


def to_device_images(images_nhwc: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW tensor on the device (4x smaller than float; converted per batch)."""
    return torch.from_numpy(np.ascontiguousarray(images_nhwc)).to(device).permute(0, 3, 1, 2)


def to_float(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 images -> float in [0, 1], in the memory format the network runs in; float input passes through."""
    if images.is_floating_point():
        return images
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return images.float().div_(255).contiguous(memory_format=memory_format)


class Normalise(torch.nn.Module):
    """Per-channel standardisation with the training split's statistics (``StudyData.mean``/``std``,
    recorded in the prepared data's manifest, 8 decimals)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(tuple(mean)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(tuple(std)).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# train.augment.crop_padding_mode -> torch's name for the padding (F.pad's ``mode``).
PADDING_MODES = {"reflect": "reflect", "zero": "constant"}


def random_crop(x: torch.Tensor, padding: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` (``mode``: reflect or zero; the schema names the choices) and take one
    random ``H x W`` window per image."""
    if padding == 0:
        return x
    batch, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4, mode=PADDING_MODES[mode])
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(height, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, :]  # (B, 1, W)
    batch_index = torch.arange(batch, device=x.device)[:, None, None]
    windows = padded.permute(0, 2, 3, 1)[batch_index, rows, cols]  # (B, H, W, C)
    return windows.permute(0, 3, 1, 2).contiguous(memory_format=_format_of(x))


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, padding: int, padding_mode: str, flip: bool, generator: torch.Generator) -> torch.Tensor:
    x = random_crop(x, padding, padding_mode, generator)
    return random_flip(x, generator) if flip else x


def cutout_mask(centers_y: torch.Tensor, centers_x: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Boolean ``(B, 1, H, W)``: true inside a ``size`` square per image, its top-left corner at
    ``center - size // 2``, clipped at the border (so a square near an edge is smaller)."""
    rows = torch.arange(height, device=centers_y.device)
    cols = torch.arange(width, device=centers_x.device)
    top, left = centers_y - size // 2, centers_x - size // 2
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)  # (B, H)
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)  # (B, W)
    return (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) on a normalised batch: one random square per image set to zero.

    The center is uniform over the image, as in the paper's code, so squares may be clipped.
    Draws nothing when ``size`` is 0, so runs without Cutout keep their random streams.
    """
    if size == 0:
        return x
    batch, _, height, width = x.shape
    centers_y = torch.randint(0, height, (batch,), generator=generator, device=x.device)
    centers_x = torch.randint(0, width, (batch,), generator=generator, device=x.device)
    return x.masked_fill(cutout_mask(centers_y, centers_x, size, height, width), 0.0)


def _format_of(x: torch.Tensor):
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format


def batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a trailing batch of one (BatchNorm cannot train on it) is dropped."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    return chunks
