"""Networks: declared mixing points, output shapes, manifold mixing at the right place only."""

from __future__ import annotations

import pytest
import torch

from mixstudy import models
from mixstudy.config import load_params
from mixstudy.errors import ConfigError
from mixstudy.training import check_run_config

from conftest import PARAMS_FILE, TINY_OVERRIDES


TINY_CONVNET = {"name": "convnet", "widths": [4, 8, 8], "dropout": 0.25, "leaky_slope": 0.1}


def _tiny(name: str) -> models.StagedNet:
    torch.manual_seed(0)
    if name == "convnet":
        return models.build_model(TINY_CONVNET)
    return models.preactresnet18(base_width=4)


def _images(batch=4, seed=0):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["convnet", "preactresnet18"])
def test_networks_declare_mixing_points(name):
    assert models.mixing_points(name) == (0, 1, 2)
    assert _tiny(name).mixing_points == (0, 1, 2)


@pytest.mark.parametrize("name", ["convnet", "preactresnet18"])
def test_output_shape(name):
    model = _tiny(name).eval()
    with torch.no_grad():
        assert model(_images(batch=3)).shape == (3, 10)


def test_build_model_full_size_preactresnet18_says_it_ignores_the_convnet_settings(caplog):
    torch.manual_seed(0)
    model = models.build_model({**TINY_CONVNET, "name": "preactresnet18"}).eval()
    assert model.mixing_points == (0, 1, 2)
    with torch.no_grad():
        assert model(_images(batch=2)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 64 and model.head[-1].in_features == 512  # not model.widths
    assert all(f"model.{key}" in caplog.text for key in ("widths", "dropout", "leaky_slope"))


def test_build_model_uses_every_configured_setting():
    model = models.build_model({"name": "convnet", "widths": [4, 8, 16], "dropout": 0.4, "leaky_slope": 0.2})
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4] * 3 + [8] * 3 + [16] * 3
    assert model.head[-1].in_features == 16
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.4}
    assert {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}


@pytest.mark.parametrize("key", ["widths", "dropout", "leaky_slope"])
def test_build_model_has_no_default_of_its_own(key):
    """params.yaml holds the one default: a model section without a key is an error, not another network."""
    with pytest.raises(KeyError, match=key):
        models.build_model({k: v for k, v in TINY_CONVNET.items() if k != key})


class _StageInputs:
    """Forward pre-hooks recording the input of every stage and of the head."""

    def __init__(self, model: models.StagedNet):
        self.inputs: dict[str, torch.Tensor] = {}
        self.handles = []
        for k, stage in enumerate(model.stages):
            self.handles.append(stage.register_forward_pre_hook(self._hook(f"stage{k}")))
        self.handles.append(model.head.register_forward_pre_hook(self._hook("head")))

    def _hook(self, key):
        def hook(module, args):
            self.inputs[key] = args[0].detach().clone()

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("name", ["convnet", "preactresnet18"])
@pytest.mark.parametrize("point", [0, 1, 2])
def test_manifold_mixing_changes_nothing_before_its_point(name, point):
    model = _tiny(name).eval()  # eval: no dropout, BatchNorm uses running statistics
    x = _images(batch=4)
    perm = torch.tensor([2, 0, 3, 1])
    lam = 0.3
    calls = []

    def mix(h):
        calls.append(h.shape)
        return lam * h + (1 - lam) * h[perm]

    with torch.no_grad():
        plain_rec = _StageInputs(model)
        plain_out = model(x)
        plain_rec.remove()
        mixed_rec = _StageInputs(model)
        mixed_out = model(x, mixes={point: mix})
        mixed_rec.remove()

    assert len(calls) == 1  # mixed exactly once
    for k in range(point):
        assert torch.equal(mixed_rec.inputs[f"stage{k}"], plain_rec.inputs[f"stage{k}"])
    expected = lam * plain_rec.inputs[f"stage{point}"] + (1 - lam) * plain_rec.inputs[f"stage{point}"][perm]
    assert torch.equal(mixed_rec.inputs[f"stage{point}"], expected)
    assert not torch.allclose(mixed_out, plain_out)


def test_build_model_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="model.name") as info:
        models.build_model({"name": "vgg"})
    assert "convnet" in str(info.value) and "preactresnet18" in str(info.value)


def test_config_with_missing_mixing_point_lists_valid_points():
    with pytest.raises(ConfigError, match="mixing.layers") as info:
        load_params([PARAMS_FILE], TINY_OVERRIDES + ["mixing.layers=[3]"])
    assert "[0, 1, 2]" in str(info.value)


def test_run_config_with_missing_mixing_point_lists_valid_points(tiny_config):
    config = tiny_config(mixing={"method": "manifold", "alpha": 1.0, "layers": [0, 3]})
    with pytest.raises(ConfigError, match="mixing.layers") as info:
        check_run_config(config)
    assert "[0, 1, 2]" in str(info.value)
