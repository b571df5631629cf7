"""Packed runs: K configurations trained as one network give each member its solo result."""

from __future__ import annotations

import json

import pytest
import torch

from mixstudy import study, training
from mixstudy.errors import ConfigError, DivergedError
from mixstudy.models import build_model
from mixstudy.packing import check_packable, pack_modules

from test_training import _history, _train, _weights

# The packed kernels (grouped convolutions, one batched matmul for the heads) sum in another
# order than the solo ones, so a member matches its solo run to rounding, not bit for bit.
# In float64 the rounding is too small to grow: measured after 3 epochs of the tiny runs below,
# weights within 1e-14 and identical metrics and histories, so the packing itself changes nothing.
# In float32 results agree to rounding after one epoch (metrics within 5e-9 relative, weights
# within 1e-5 of each tensor's largest value) and then drift apart as SGD amplifies rounding,
# as runs on two different GPUs would. The bounds leave room for other CPUs' kernels.
FLOAT64_TOLERANCE = 1e-10
METRIC_TOLERANCE = 1e-6
WEIGHT_TOLERANCE = 1e-4

# Four members that exercise every per-member stream: plain, manifold mixup at different
# point sets (so members mix at different layers in one batch), and CutMix.
MEMBERS = [
    (0, {"method": "none", "alpha": 0.0}),
    (1, {"method": "manifold", "alpha": 1.0, "layers": [0, 1, 2]}),
    (2, {"method": "manifold", "alpha": 2.0, "layers": [1]}),
    (3, {"method": "cutmix", "alpha": 1.0}),
]


@pytest.fixture
def member_configs(tiny_config):
    return [tiny_config(seed=seed, train={"epochs": 3, "checkpoint_every": 1}, mixing=mixing) for seed, mixing in MEMBERS]


@pytest.fixture
def float64(monkeypatch):
    """Train in float64, where packed and solo runs agree to far below anything training amplifies."""
    from mixstudy import engine

    to_float = engine.to_float
    monkeypatch.setattr(engine, "to_float", lambda images, channels_last: to_float(images, channels_last).double())
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _train_pack(configs, data, outs, **kwargs):
    return training.train_runs(configs, data, outs, progress="lines", **kwargs)


def _assert_same_as_solo(packed_dir, solo_dir, packed_record, solo_record, tolerance=FLOAT64_TOLERANCE):
    assert packed_record["status"] == solo_record["status"] == "ok"
    for name, value in solo_record["metrics"]["test"].items():
        assert packed_record["metrics"]["test"][name] == pytest.approx(value, rel=tolerance, abs=tolerance), name
    packed_history, solo_history = _history(packed_dir), _history(solo_dir)
    assert [row.keys() for row in packed_history] == [row.keys() for row in solo_history]
    for packed_row, solo_row in zip(packed_history, solo_history):
        assert [float(v) for v in packed_row.values()] == pytest.approx([float(v) for v in solo_row.values()], rel=tolerance)
    packed_weights, solo_weights = _weights(packed_dir), _weights(solo_dir)
    assert packed_weights.keys() == solo_weights.keys()
    for name, weight in solo_weights.items():
        assert torch.allclose(packed_weights[name].double(), weight.double(), rtol=0, atol=tolerance), name


def test_pack_of_four_in_float64_gives_each_member_its_solo_run(tmp_path, member_configs, tiny_data, float64):
    solo = [_train(config, tiny_data, tmp_path / f"solo{i}") for i, config in enumerate(member_configs)]
    outs = [tmp_path / f"packed{i}" for i in range(len(member_configs))]
    packed = _train_pack(member_configs, tiny_data, outs)
    for i, (packed_record, solo_record) in enumerate(zip(packed, solo)):
        _assert_same_as_solo(outs[i], tmp_path / f"solo{i}", packed_record, solo_record)
        assert packed_record["config"] == solo_record["config"]
        assert packed_record["pack"] == {"size": 4, "runs": [str(out) for out in outs]}
        assert {p.name for p in outs[i].iterdir()} == {p.name for p in (tmp_path / f"solo{i}").iterdir()}


def test_pack_of_four_in_float32_matches_solo_runs_to_rounding(tmp_path, tiny_config, tiny_data):
    configs = [tiny_config(seed=seed, train={"epochs": 1}, mixing=mixing) for seed, mixing in MEMBERS]
    solo = [_train(config, tiny_data, tmp_path / f"solo{i}") for i, config in enumerate(configs)]
    outs = [tmp_path / f"packed{i}" for i in range(len(configs))]
    packed = _train_pack(configs, tiny_data, outs)
    for out, solo_out, packed_record, solo_record in zip(outs, [tmp_path / f"solo{i}" for i in range(4)], packed, solo):
        for name, value in solo_record["metrics"]["test"].items():
            assert packed_record["metrics"]["test"][name] == pytest.approx(value, rel=METRIC_TOLERANCE), name
        packed_weights, solo_weights = _weights(out), _weights(solo_out)
        for name, weight in solo_weights.items():
            scale = weight.abs().max().item() if weight.dim() else 1.0
            assert torch.allclose(packed_weights[name], weight, rtol=0, atol=WEIGHT_TOLERANCE * scale), name


def test_members_are_not_interchangeable(tmp_path, member_configs, tiny_data):
    """The comparisons above can fail: members differ from each other far beyond rounding."""
    outs = [tmp_path / f"packed{i}" for i in range(2)]
    records = _train_pack(member_configs[:2], tiny_data, outs)
    assert records[0]["metrics"]["test"]["nll"] != pytest.approx(records[1]["metrics"]["test"]["nll"], rel=1e-3)
    assert _history(outs[0]) != _history(outs[1])


def _poison_member_at_epoch(monkeypatch, member_index: int, epoch: int):
    """Make one member's weights infinite before ``epoch``: its loss turns non-finite inside the pack."""
    real_epoch = training.train_epoch

    def poisoned(pack, *args, **kwargs):
        if pack.epoch + 1 == epoch:
            first_conv = next(m for m in pack.model.modules() if isinstance(m, torch.nn.Conv2d))
            with torch.no_grad():
                first_conv.weight.chunk(pack.size, dim=0)[member_index].fill_(float("inf"))
        return real_epoch(pack, *args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", poisoned)


def test_failed_member_stops_and_the_others_finish_as_alone(tmp_path, member_configs, tiny_data, monkeypatch, float64):
    solo = {i: _train(member_configs[i], tiny_data, tmp_path / f"solo{i}") for i in (0, 2, 3)}
    outs = [tmp_path / f"packed{i}" for i in range(4)]
    _poison_member_at_epoch(monkeypatch, member_index=1, epoch=2)
    records = _train_pack(member_configs, tiny_data, outs, on_diverge="record")

    failed = json.loads((outs[1] / "metrics.json").read_text())
    assert records[1]["status"] == failed["status"] == "failed"
    assert failed["epochs_completed"] == 1 and "epoch 2" in failed["error"]
    for i in (0, 2, 3):
        _assert_same_as_solo(outs[i], tmp_path / f"solo{i}", records[i], solo[i])


def test_failed_member_raises_after_the_others_are_written(tmp_path, member_configs, tiny_data, monkeypatch):
    outs = [tmp_path / f"packed{i}" for i in range(2)]
    _poison_member_at_epoch(monkeypatch, member_index=0, epoch=1)
    with pytest.raises(DivergedError, match="packed0"):
        _train_pack(member_configs[:2], tiny_data, outs, on_diverge="error")
    assert (outs[0] / "failure.json").is_file() and not (outs[0] / "metrics.json").exists()
    assert json.loads((outs[1] / "metrics.json").read_text())["status"] == "ok"


class _Interrupted(Exception):
    pass


def test_interrupted_pack_resumes_bit_for_bit(tmp_path, member_configs, tiny_data, monkeypatch):
    reference_outs = [tmp_path / f"reference{i}" for i in range(4)]
    reference = _train_pack(member_configs, tiny_data, reference_outs)

    outs = [tmp_path / f"interrupted{i}" for i in range(4)]
    real_save = training.save_resume_point

    def save_then_die(trainer, out_dir):
        real_save(trainer, out_dir)
        if trainer.epoch == 2 and out_dir == outs[-1]:
            raise _Interrupted("killed after epoch 2")

    monkeypatch.setattr(training, "save_resume_point", save_then_die)
    with pytest.raises(_Interrupted):
        _train_pack(member_configs, tiny_data, outs)
    monkeypatch.setattr(training, "save_resume_point", real_save)
    assert all((out / training.RESUME_FILE).is_file() for out in outs)

    torch.manual_seed(1234)  # each member's dropout stream is restored from its own resume point
    resumed = _train_pack(member_configs, tiny_data, outs)
    for out, reference_out, record, reference_record in zip(outs, reference_outs, resumed, reference):
        _assert_same_as_solo(out, reference_out, record, reference_record, tolerance=0)


def test_runs_with_different_training_settings_are_not_packed(tiny_config):
    with pytest.raises(ConfigError, match="train"):
        check_packable([tiny_config(seed=0), tiny_config(seed=1, train={"lr": 0.5})])
    check_packable([tiny_config(seed=0), tiny_config(seed=1, mixing={"method": "cutmix", "alpha": 1.0})])


@pytest.mark.parametrize("model", [
    {"name": "convnet", "widths": [4, 8, 8], "dropout": 0.0, "leaky_slope": 0.1},
    {"name": "preactresnet18"},
])
def test_packed_network_computes_each_members_output(model):
    torch.manual_seed(0)
    members = [build_model(model).eval() for _ in range(3)]
    packed = pack_modules(members, [torch.Generator() for _ in members]).eval()
    x = [torch.randn(2, 3, 32, 32) for _ in members]
    with torch.no_grad():
        outputs = packed(torch.cat(x, dim=1)).view(2, 3, -1)
        for i, member in enumerate(members):
            assert torch.allclose(outputs[:, i], member(x[i]), atol=1e-4)


# --- grouping the grids into packs --------------------------------------------------------------


def test_packs_cover_every_run_once_in_grid_order(params):
    specs = study.all_runs(params)
    packs = study.packs(specs, 4)
    assert [spec for pack in packs for spec in pack.runs] == specs
    assert all(1 <= len(pack.runs) <= 4 for pack in packs)
    assert len({pack.name for pack in packs}) == len(packs)


def test_packs_never_mix_training_settings(params):
    for pack in study.packs(study.all_runs(params), 8):
        stages = {spec.stage for spec in pack.runs}
        assert len(stages) == 1
        if pack.stage == "tuning":  # only the seeds of one tuning configuration share a pack
            assert len({spec.name for spec in pack.runs}) == 1
    sweep_packs = study.packs(study.sweep_runs(params), 8)
    assert len(sweep_packs) == -(-len(study.sweep_runs(params)) // 8)  # the sweep shares one setting


def test_pack_size_is_not_part_of_a_runs_configuration(params):
    from mixstudy.config import deep_merge

    packed_params = deep_merge(params, {"compute": {"pack_size": 4}})
    spec = study.sweep_runs(params)[0]
    selection = {"scheduler": "step", "momentum": 0.9, "weight_decay": 0.001}
    assert study.spec_config(packed_params, spec, selection) == study.spec_config(params, spec, selection)


def test_packed_network_trains_under_bf16_autocast():
    """The CUDA path's mixed precision, checked on CPU: packed layers keep float32 weights and gradients."""
    torch.manual_seed(0)
    members = [build_model({"name": "convnet", "widths": [4, 8, 8], "dropout": 0.25, "leaky_slope": 0.1}) for _ in range(2)]
    packed = pack_modules(members, [torch.Generator().manual_seed(i) for i in range(2)]).train()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = packed(torch.randn(4, 6, 32, 32))
    assert logits.shape == (4, 20) and logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in packed.parameters())
