"""Packed runs: K configurations trained as one network give each member its solo result."""

from __future__ import annotations

import json

import pytest
import torch

from mixstudy.runs import study

from mixstudy.train import training
from mixstudy.core.errors import ConfigError, DivergedError
from mixstudy.runs.run_folder import RESUME_FILE
from mixstudy.model.models import build_model
from mixstudy.model.packing import check_packable, pack_modules

from test_training import _history, _train, _weights

# The packed kernels (grouped convolutions, one batched matmul for the heads) sum in another
# order than the solo ones, so a member matches its solo run to rounding, not bit for bit. What
# each precision can promise on any x86 CPU (oneDNN and ATen pick other kernels on other CPUs;
# `make test` reruns this file with the AVX2 kernels, see the Makefile):
#
# float64, 3 epochs: rounding (1.1e-16) grows to about 4e-14 of each weight tensor's largest value
# (measured with this CPU's kernels and with AVX2's); metrics and histories came out identical.
# Allowed: 1e-12 relative, 25 times the measured spread and far below what a packing mistake
# gives (members differ from each other by more than 1e-3, test_members_are_not_interchangeable).
FLOAT64_TOLERANCE = 1e-12
# float32, 1 epoch. What decides the tolerances is not rounding alone: a max-pool or LeakyReLU
# near-tie decided the other way routes one gradient differently, and which ties come out which
# way depends on the CPU's kernels. Measured (packed against solo, the four members):
#   - an AVX-512 host: state 3e-7 relative L2 (2e-4 in one member), NLL 2.5e-7 relative, ECE 4e-7;
#   - an AMD EPYC (AVX2): state 3e-7, 3e-7, 9.7e-4 and 4.3e-3; NLL 2.6e-6 relative; ECE 2e-5.
# So the bounds follow the near-ties, with room for a third CPU, and stay far below what a
# packing mistake gives (a member trained with another member's seed or data lies 0.7 away in
# state, test_members_are_not_interchangeable; the float64 test above pins exactness at 1e-12):
#   weights: relative L2 distance of the whole state under 2e-2 (4.6x the worst measured, 35x
#     below a wrong member);
#   NLL and Brier score: relative 1e-4 (40x the worst measured);
#   ECE: absolute 1e-3 (50x the worst measured; under the 2.4e-3 to 1.4e-2 between members):
#     ECE averages |accuracy - confidence| over bins, so it moves no more than the confidences
#     do unless one crosses a bin edge;
#   accuracy: at most one of the 20 test images may flip (its two top logits within rounding).
FLOAT32_RELATIVE = {"nll": 1e-4, "brier": 1e-4}
FLOAT32_ABSOLUTE = {"ece": 1e-3, "acc": 1 / 20 + 1e-9}
FLOAT32_STATE_L2 = 2e-2

# Four members that exercise every per-member stream: plain, manifold mixup at different
# point sets (so members mix at different layers in one batch), and CutMix.
MEMBERS = [
    (0, {"method": "none", "alpha": 0.0}),
    (1, {"method": "manifold", "alpha": 1.0, "layers": [0, 1, 2]}),
    (2, {"method": "manifold", "alpha": 2.0, "layers": [1]}),
    (3, {"method": "cutmix", "alpha": 1.0}),
]


# Every network with dropout packs: the study's (the tiny configuration's default) and the convnet.
NETWORKS = {
    "cnn13": {"name": "cnn13", "widths": [4, 8, 8, 8, 4], "dropout": 0.5, "leaky_slope": 0.1},
    "convnet": {"name": "convnet", "widths": [4, 8, 8], "dropout": 0.25, "leaky_slope": 0.1},
}


@pytest.fixture(params=list(NETWORKS))
def member_configs(request, tiny_config):
    model = NETWORKS[request.param]
    return [
        tiny_config(seed=seed, model=model, train={"epochs": 3, "checkpoint_every": 1}, mixing=mixing)
        for seed, mixing in MEMBERS
    ]


@pytest.fixture
def float64(monkeypatch):
    """Train in float64, where packed and solo runs agree to far below anything training amplifies."""
    from mixstudy.data import engine

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
        scale = weight.double().abs().max().item() if weight.numel() else 1.0
        assert torch.allclose(packed_weights[name].double(), weight.double(), rtol=0, atol=tolerance * scale), name


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
        solo_metrics, packed_metrics = solo_record["metrics"]["test"], packed_record["metrics"]["test"]
        assert solo_metrics.keys() == packed_metrics.keys() == FLOAT32_RELATIVE.keys() | FLOAT32_ABSOLUTE.keys()
        for name, rel in FLOAT32_RELATIVE.items():
            assert packed_metrics[name] == pytest.approx(solo_metrics[name], rel=rel, abs=0), name
        for name, abs_ in FLOAT32_ABSOLUTE.items():
            assert packed_metrics[name] == pytest.approx(solo_metrics[name], rel=0, abs=abs_), name
        assert _state_distance(_weights(out), _weights(solo_out)) < FLOAT32_STATE_L2


def _state_distance(packed: dict, solo: dict) -> float:
    """|packed - solo| / |solo| over every floating-point tensor of the state, as one vector."""
    names = [name for name, tensor in solo.items() if tensor.is_floating_point()]
    difference = sum(((packed[n].double() - solo[n].double()) ** 2).sum() for n in names) ** 0.5
    return float(difference / sum((solo[n].double() ** 2).sum() for n in names) ** 0.5)


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
    assert all((out / RESUME_FILE).is_file() for out in outs)

    torch.manual_seed(1234)  # each member's dropout stream is restored from its own resume point
    resumed = _train_pack(member_configs, tiny_data, outs)
    for out, reference_out, record, reference_record in zip(outs, reference_outs, resumed, reference):
        _assert_same_as_solo(out, reference_out, record, reference_record, tolerance=0)


def test_runs_with_different_training_settings_are_not_packed(tiny_config):
    with pytest.raises(ConfigError, match="train"):
        check_packable([tiny_config(seed=0), tiny_config(seed=1, train={"lr": 0.5})])
    check_packable([tiny_config(seed=0), tiny_config(seed=1, mixing={"method": "cutmix", "alpha": 1.0})])


@pytest.mark.parametrize("model", [
    {**NETWORKS["cnn13"], "dropout": 0.0},
    {**NETWORKS["convnet"], "dropout": 0.0},
    {"name": "preactresnet18", "base_width": 64},
])
def test_packed_network_computes_each_members_output(model):
    torch.manual_seed(0)
    members = [build_model(model, 10).eval() for _ in range(3)]
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
    from mixstudy.core.config import deep_merge

    packed_params = deep_merge(params, {"compute": {"pack_size": 4}})
    spec = study.sweep_runs(params)[0]
    selection = {"scheduler": "step", "momentum": 0.9, "weight_decay": 0.001}
    assert study.spec_config(packed_params, spec, selection) == study.spec_config(params, spec, selection)


def test_packed_network_trains_under_bf16_autocast():
    """The CUDA path's mixed precision, checked on CPU: packed layers keep float32 weights and gradients."""
    torch.manual_seed(0)
    members = [build_model({"name": "convnet", "widths": [4, 8, 8], "dropout": 0.25, "leaky_slope": 0.1}, 10) for _ in range(2)]
    packed = pack_modules(members, [torch.Generator().manual_seed(i) for i in range(2)]).train()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = packed(torch.randn(4, 6, 32, 32))
    assert logits.shape == (4, 20) and logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in packed.parameters())
