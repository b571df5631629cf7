"""Networks: declared mixing points, output shapes, manifold mixing at the right place only."""

from __future__ import annotations

import pytest
import torch

from mixstudy.model import models

from mixstudy.core import networks
from mixstudy.core.config import _schema, load_params
from mixstudy.core.errors import ConfigError
from mixstudy.train.trainer import check_run_config

from conftest import PARAMS_FILE, TINY_OVERRIDES


TINY_CONVNET = {"name": "convnet", "widths": [4, 8, 8], "dropout": 0.25, "leaky_slope": 0.1}
TINY = {
    "cnn13": {"name": "cnn13", "widths": [4, 8, 8, 8, 4], "dropout": 0.5, "leaky_slope": 0.1},
    "convnet": TINY_CONVNET,
    "preactresnet18": {"name": "preactresnet18", "base_width": 4},
}
NAMES = list(networks.NETWORKS)


def _tiny(name: str) -> models.StagedNet:
    torch.manual_seed(0)
    return models.build_model(TINY[name], 10)


def test_every_network_of_the_table_has_settings_in_params_and_schema():
    params = load_params([PARAMS_FILE])
    assert set(TINY) == set(networks.NETWORKS)
    assert set(params["model"]) - {"name"} == set(networks.NETWORKS)
    assert set(_schema()["properties"]["model"]["properties"]) - {"name"} == set(networks.NETWORKS)
    assert params["model"]["name"] == networks.STUDY_NETWORK == "cnn13"


def test_the_study_network_layer_by_layer():
    """Figure 2 of the study: conv shapes, biases, padding, pooling, dropout, and the 6x6 map."""
    torch.manual_seed(0)
    model = models.build_model(load_params([PARAMS_FILE])["model"], 10).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == (
        [(3, 128, 3, 1), (128, 128, 3, 1), (128, 128, 3, 1), (128, 256, 3, 1), (256, 256, 3, 1), (256, 256, 3, 1)]
        + [(256, 512, 3, 0), (512, 256, 1, 0), (256, 128, 1, 0)]
    )
    assert all(c.bias is not None for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 9
    assert {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.1}
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]  # blocks 1 and 2 only
    assert [type(m).__name__ for m in model.modules() if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))] == [
        "MaxPool2d", "MaxPool2d", "AvgPool2d"]
    shapes = {}

    def record(key):
        def hook(module, args):
            shapes[key] = tuple(args[0].shape)
        return hook

    model.stages[2][3].register_forward_pre_hook(record("first_1x1"))
    model.head.register_forward_pre_hook(record("head"))
    with torch.no_grad():
        assert model(_images(batch=2)).shape == (2, 10)
    assert shapes["first_1x1"] == (2, 512, 6, 6)  # the 3x3 convolution without padding: 8x8 -> 6x6
    assert shapes["head"] == (2, 128, 1, 1)  # average pooling 6 -> 128 features before the classifier
    assert model.head[-1].in_features == 128 and model.head[-1].out_features == 10


def test_the_study_network_parameter_count():
    def conv_bn(c_in, c_out, k):  # weights + bias, BatchNorm's scale and shift
        return c_in * c_out * k * k + c_out + 2 * c_out

    expected = (
        conv_bn(3, 128, 3) + 2 * conv_bn(128, 128, 3) + conv_bn(128, 256, 3) + 2 * conv_bn(256, 256, 3)
        + conv_bn(256, 512, 3) + conv_bn(512, 256, 1) + conv_bn(256, 128, 1) + 128 * 10 + 10
    )
    model = models.build_model(load_params([PARAMS_FILE])["model"], 10)
    assert sum(p.numel() for p in model.parameters()) == expected == 3_123_850


def _images(batch=4, seed=0):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_networks_declare_mixing_points(name):
    assert networks.mixing_points(name) == (0, 1, 2)
    assert _tiny(name).mixing_points == networks.mixing_points(name)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name):
    model = _tiny(name).eval()
    with torch.no_grad():
        assert model(_images(batch=3)).shape == (3, 10)


def test_build_model_full_size_preactresnet18_has_the_paper_widths():
    torch.manual_seed(0)
    model = models.build_model(load_params([PARAMS_FILE], ["model.name=preactresnet18"])["model"], 10).eval()
    assert model.mixing_points == (0, 1, 2)
    with torch.no_grad():
        assert model(_images(batch=2)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 64 and model.head[-1].in_features == 512


def test_params_model_section_resolves_to_the_chosen_networks_settings_only():
    params = load_params([PARAMS_FILE], ["model.name=convnet", "model.convnet.widths=[4,8,16]"])
    assert networks.network_settings(params["model"]) == {
        "name": "convnet", "widths": [4, 8, 16], "dropout": 0.25, "leaky_slope": 0.1}
    assert networks.network_settings(TINY_CONVNET) == TINY_CONVNET  # a recorded run's section as it is


def test_build_model_uses_every_configured_setting():
    model = models.build_model({"name": "convnet", "widths": [4, 8, 16], "dropout": 0.4, "leaky_slope": 0.2}, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4] * 3 + [8] * 3 + [16] * 3
    assert model.head[-1].in_features == 16
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.4}
    assert {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}


@pytest.mark.parametrize("key", ["widths", "dropout", "leaky_slope"])
def test_build_model_has_no_default_of_its_own(key):
    """params.yaml holds the one default: a model section without a key is an error, not another network."""
    with pytest.raises(TypeError, match=key):
        models.build_model({k: v for k, v in TINY_CONVNET.items() if k != key}, 10)


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


@pytest.mark.parametrize("name", NAMES)
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
        models.build_model({"name": "vgg"}, 10)
    assert all(name in str(info.value) for name in ("cnn13", "convnet", "preactresnet18"))


def test_config_with_missing_mixing_point_lists_valid_points():
    with pytest.raises(ConfigError, match="mixing.layers") as info:
        load_params([PARAMS_FILE], TINY_OVERRIDES + ["mixing.layers=[3]"])
    assert "[0, 1, 2]" in str(info.value)


def test_run_config_with_missing_mixing_point_lists_valid_points(tiny_config):
    config = tiny_config(mixing={"method": "manifold", "alpha": 1.0, "layers": [0, 3]})
    with pytest.raises(ConfigError, match="mixing.layers") as info:
        check_run_config(config)
    assert "[0, 1, 2]" in str(info.value)
