"""Batched augmentation against torchvision's transforms on the same offsets."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from mixstudy.data import engine


def _offsets(generator: torch.Generator, batch: int, padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What random_crop draws from its generator: the row offsets, then the column offsets."""
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    return dy, dx


@pytest.mark.parametrize("mode, torchvision_mode", [("reflect", "reflect"), ("zero", "constant")])
def test_random_crop_is_torchvisions_random_crop_on_the_same_offsets(mode, torchvision_mode):
    """RandomCrop(32, padding=4, padding_mode=...) is pad, then a 32x32 window at a random offset."""
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cropped = engine.random_crop(images, 4, mode, torch.Generator().manual_seed(7))
    dy, dx = _offsets(torch.Generator().manual_seed(7), 16, 4)
    for i in range(16):
        padded = TF.pad(images[i], [4], padding_mode=torchvision_mode)
        expected = TF.crop(padded, int(dy[i]), int(dx[i]), 32, 32)
        assert torch.equal(cropped[i], expected), f"image {i}, offset ({int(dy[i])}, {int(dx[i])})"


def test_reflect_and_zero_padding_differ_only_where_the_window_leaves_the_image():
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) + 0.5  # no pixel is 0
    reflect = engine.random_crop(images, 4, "reflect", torch.Generator().manual_seed(3))
    zero = engine.random_crop(images, 4, "zero", torch.Generator().manual_seed(3))
    dy, dx = _offsets(torch.Generator().manual_seed(3), 64, 4)
    inside = (dy == 4) & (dx == 4)  # the window is the image itself
    assert torch.equal(reflect[inside], zero[inside])
    assert (zero[~inside] == 0).any() and not (reflect == 0).any()  # reflection copies pixels, never zeros


def test_no_padding_is_no_crop():
    images = torch.rand(2, 3, 32, 32)
    assert engine.random_crop(images, 0, "reflect", torch.Generator()) is images
