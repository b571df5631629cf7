"""The CUDA code paths (bf16 autocast, device selection, asynchronous copies), checked on CPU.

Their speed cannot be measured on these machines; shapes, dtypes and choices can.
"""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from mixstudy.data import engine
from mixstudy.core.errors import ConfigError
from mixstudy.model.mixing import Mixer, host_to_device, mixed_loss
from mixstudy.model.models import convnet
from mixstudy.train.trainer import autocast_context

from conftest import CIFAR10_MEAN, CIFAR10_STD

NUM_CLASSES = 10  # a CIFAR-10-sized label space


def test_autocast_is_bf16_on_cuda_and_off_on_cpu():
    assert isinstance(autocast_context(torch.device("cpu"), "auto"), nullcontext)
    assert isinstance(autocast_context(torch.device("cpu"), "off"), nullcontext)
    assert isinstance(autocast_context(torch.device("cuda"), "off"), nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else nullcontext():
        context = autocast_context(torch.device("cuda"), "auto")
    assert isinstance(context, torch.autocast)
    assert context.fast_dtype == torch.bfloat16


def test_bf16_forward_gives_float32_loss_and_gradients():
    torch.manual_seed(0)
    model = convnet(NUM_CLASSES, widths=(4, 8, 8), dropout=0.25, leaky_slope=0.1).to(memory_format=torch.channels_last)
    images = torch.rand(6, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    mixer = Mixer(
        method="manifold", alpha=1.0, layers=(0, 1, 2), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    draw = mixer.draw(np.random.default_rng(0), 6, (32, 32), "cpu")
    targets = mixer.targets(torch.arange(6) % 10, draw)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = model(engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)(images), mixes={draw.point: lambda h: mixer.mix(h, draw)})
        loss = mixed_loss(logits, targets)
    assert logits.shape == (6, 10) and logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


def test_auto_device_falls_back_to_cpu_and_cuda_demand_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engine.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="compute.device"):
        engine.resolve_device("cuda")


def test_host_to_device_on_the_cpu_keeps_values_and_dtype_without_a_copy():
    array = np.array([3, 1, 2], dtype=np.int64)
    tensor = host_to_device(array, "cpu")
    assert tensor.dtype == torch.int64 and tensor.tolist() == [3, 1, 2]
    assert tensor.data_ptr() == torch.from_numpy(array).data_ptr()  # the host's own memory, not pinned


def test_host_to_device_on_cuda_pins_then_copies_without_waiting(monkeypatch):
    """The CUDA branch, on a machine without CUDA: the tensor's pin and copy are recorded, not run."""
    calls = []
    real_to = torch.Tensor.to

    def to(tensor, *args, **kwargs):
        if args and torch.device(args[0]).type == "cuda":
            calls.append(("to", str(args[0]), kwargs.get("non_blocking", False)))
            return tensor
        return real_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: calls.append("pin") or tensor)
    monkeypatch.setattr(torch.Tensor, "to", to)
    tensor = host_to_device(np.array([[3, 1], [2, 0]], dtype=np.int64)[:, 0], "cuda:0")  # a strided view
    assert calls == ["pin", ("to", "cuda:0", True)]
    assert tensor.tolist() == [3, 2] and tensor.is_contiguous()


def test_evaluation_images_stay_uint8_until_each_batch():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    on_device = engine.to_device_images(images, torch.device("cpu"))
    assert on_device.dtype == torch.uint8 and on_device.shape == (5, 3, 32, 32)
    as_float = engine.to_float(on_device, channels_last=True)
    assert as_float.dtype == torch.float32 and as_float.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(as_float * 255, torch.from_numpy(images).permute(0, 3, 1, 2).float(), atol=1e-4)


def test_amp_on_means_bf16_autocast_on_cpu_too():
    context = autocast_context(torch.device("cpu"), "on")
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    assert context.device == "cpu"


def _trained(tiny_config, tiny_data, out, amp: str) -> tuple[dict, dict]:
    from mixstudy.train import training

    config = tiny_config(train={"epochs": 1}, compute={"amp": amp})
    training.train_runs([config], tiny_data, [out], progress="lines")
    record = json.loads((out / "metrics.json").read_text())  # as written to the run folder
    test = record["metrics"]["test"] | {"precision": record["provenance"]["precision"]}
    return test, torch.load(out / "model.pt", weights_only=False)["model"]


def test_amp_on_trains_in_bf16_on_cpu_and_auto_is_float32(tmp_path, tiny_config, tiny_data):
    off, off_weights = _trained(tiny_config, tiny_data, tmp_path / "off", "off")
    auto, auto_weights = _trained(tiny_config, tiny_data, tmp_path / "auto", "auto")
    on, on_weights = _trained(tiny_config, tiny_data, tmp_path / "on", "on")
    # each run records the precision it computed in, as resolved on this device
    assert (off.pop("precision"), auto.pop("precision"), on.pop("precision")) == ("float32", "float32", "bfloat16")
    assert auto == off and all(torch.equal(auto_weights[k], off_weights[k]) for k in off_weights)
    assert on["nll"] != off["nll"]  # bf16 rounding shows in the result
    assert all(w.dtype == off_weights[k].dtype for k, w in on_weights.items())  # weights stay float32


def test_a_float32_cpu_run_on_a_cpu_with_a_bf16_unit_says_what_bf16_would_save():
    from mixstudy.train.training import BF16_SPEEDUP, bf16_hint

    cpu = torch.device("cpu")
    hint = bf16_hint("cnn13", "float32", cpu, "amx_bf16")
    assert f"about {BF16_SPEEDUP[('cnn13', 'amx_bf16')]:g}x faster" in hint and "compute.amp: on" in hint
    assert bf16_hint("cnn13", "bfloat16", cpu, "amx_bf16") is None  # already in bf16
    assert bf16_hint("cnn13", "float32", cpu, None) is None  # no bf16 unit: emulated, not faster
    assert bf16_hint("cnn13", "float32", torch.device("cuda"), "amx_bf16") is None
    assert bf16_hint("convnet", "float32", cpu, "amx_bf16") is None  # not measured for that network


def test_the_hint_is_logged_once_at_the_start_of_a_float32_run(tmp_path, tiny_config, tiny_data, caplog, monkeypatch):
    from mixstudy.train import training

    monkeypatch.setattr(training, "BF16_SPEEDUP", {("convnet", "amx_bf16"): 3.0})
    monkeypatch.setattr(training, "provenance", lambda *args: {"cpu_bf16_unit": "amx_bf16", "precision": args[-1]})
    caplog.set_level("INFO", logger="mixstudy")
    training.train_runs([tiny_config(train={"epochs": 1}, compute={"amp": "off"})], tiny_data, [tmp_path / "off"], progress="lines")
    assert sum("about 3x faster" in line for line in caplog.messages) == 1
    caplog.clear()
    training.train_runs([tiny_config(train={"epochs": 1}, compute={"amp": "on"})], tiny_data, [tmp_path / "on"], progress="lines")
    assert not any("faster" in line for line in caplog.messages)
