"""The trainer (mixstudy.train.trainer): one epoch against an epoch written out with torch's SGD, a
failed member of a pack left out, a pack built from and synced back to its members, a run's
streams (and where a resume point keeps dropout's, on the CPU and on a GPU), the schedulers
against SGDR's closed forms, the amp setting and the configuration checks."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  (the first optimizer imports it, seconds; mutmut's fork server then imports it once)
import torch.nn.functional as F

from conftest import CIFAR10_MEAN, CIFAR10_STD
from mixstudy.data import engine
from mixstudy.train import trainer
from mixstudy.core.errors import ConfigError
from mixstudy.model.mixing import member_mixes
from mixstudy.model.models import build_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as the tiny runs train (compute.threads=1): faster on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# No dropout (its masks would have to be replayed); BatchNorm trains on batch statistics, which
# the epoch written out below computes with the same batches.
NETWORK = {"name": "convnet", "widths": [4, 8, 8], "dropout": 0.0, "leaky_slope": 0.1}
AUGMENT = {"crop_padding": 2, "crop_padding_mode": "reflect", "flip": True, "cutout": 8}


def _config(tiny_config, seed=0, **train):
    return tiny_config(
        seed=seed, model=NETWORK,
        train={"batch_size": 8, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "augment": AUGMENT, **train},
        mixing={"method": "cutmix", "alpha": 1.0},
    )


IMAGES = 36  # in batches of 8: four of 8 and one of 4, so a mean of batch means is not the mean


def _data(tiny_data):
    x = torch.from_numpy(tiny_data.x_train[:IMAGES]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(tiny_data.y_train[:IMAGES])
    assert len(y) == IMAGES and IMAGES % 8 != 0  # tiny_data holds 40: a short last batch really happens
    return x, y


def _epoch_by_hand(member, x, y, train):
    """One epoch written out: the member's own streams drawn in the order the docstring of
    train_epoch gives (batch order, then per batch crops and flips, the mixing draw, Cutout), each
    batch's soft-target cross-entropy, torch's SGD step; returns the network and the epoch's
    example-weighted mean loss and accuracy against the targets' largest share."""
    model = copy.deepcopy(member.model).train()
    config = member.config["train"]
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config["lr"], momentum=config["momentum"], nesterov=config["nesterov"], weight_decay=config["weight_decay"]
    )
    normalise = engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)
    data_gen, mix_rng = copy.deepcopy(member.data_gen), copy.deepcopy(member.mix_rng)
    order = torch.randperm(len(y), generator=data_gen)
    loss_sum, correct, seen = 0.0, 0, 0
    for index in engine.batches(order, config["batch_size"]):
        images = engine.augment(x[index], AUGMENT["crop_padding"], AUGMENT["crop_padding_mode"], AUGMENT["flip"], data_gen)
        draw = member.mixer.draw(mix_rng, len(index), images.shape[-2:], CPU)
        inputs = engine.cutout(normalise(images), AUGMENT["cutout"], data_gen)
        targets = member.mixer.targets(y[index], draw)
        logits = model(inputs, mixes=member_mixes([member.mixer], [draw]))
        loss = -(targets * F.log_softmax(logits, 1)).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(index)
        correct += (logits.argmax(1) == targets.argmax(1)).sum().item()
        seen += len(index)
    return model, loss_sum / seen, correct / seen


def test_one_epoch_is_sgd_over_the_members_own_batches_augmentation_and_mixing(tiny_config, tiny_data):
    x, y = _data(tiny_data)
    member = trainer.make_trainer(_config(tiny_config), CPU, 10)
    expected_model, expected_loss, expected_acc = _epoch_by_hand(member, x, y, member.config["train"])
    pack = trainer.PackedTrainer.of([member])
    pack.model.eval()  # train_epoch must put it in training mode itself
    (row,) = trainer.train_epoch(pack, pack.model, x, y, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD))
    assert pack.model.training
    trained = pack.sync(0).model.state_dict()
    # A pack of one runs the network's own layers (packing.PackedLinear: "exactly the solo
    # layer"; a grouped convolution of one group is a convolution), so the epoch written out runs
    # the same kernels on the same shapes and gives the same bytes, on any CPU.
    for name, expected in expected_model.state_dict().items():
        assert torch.equal(trained[name], expected), name
    # the loss: the same batch losses summed in float32 on the device, here in float64 (six sums)
    assert row["train_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert row["train_acc"] == expected_acc  # counts of equal predictions: exact
    assert set(row) == {"train_loss", "train_acc"}


def _pack_of_two(tiny_config, failed: bool):
    # no weight decay: it would shrink a failed member's weights on its zero gradient (harmless:
    # its weights were synced out when it failed, and those are what its folder gets)
    members = [trainer.make_trainer(_config(tiny_config, seed=seed, weight_decay=0.0), CPU, 10) for seed in (0, 1)]
    if failed:
        members[1].failure = "training loss became nan at epoch 1"
    return trainer.PackedTrainer.of(members)


def test_a_failed_member_no_longer_learns_while_the_others_do(tiny_config, tiny_data):
    x, y = _data(tiny_data)
    before = [copy.deepcopy(m.model.state_dict()) for m in _pack_of_two(tiny_config, False).members]
    rows = {}
    packs = {}
    for failed in (False, True):
        packs[failed] = _pack_of_two(tiny_config, failed)
        rows[failed] = trainer.train_epoch(packs[failed], packs[failed].model, x, y, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD))
    assert all(set(row) == {"train_loss", "train_acc"} for row in rows[True])
    # Member 0 learns as it does beside a member that learns: the same packed kernels on the same
    # shapes compute its share bit for bit; member 1 moves only when it has not failed.
    assert rows[True][0] == rows[False][0]
    learnt, beside_failed = packs[False].sync(0).model.state_dict(), packs[True].sync(0).model.state_dict()
    assert all(torch.equal(learnt[name], beside_failed[name]) for name in learnt)
    assert not torch.equal(learnt["stages.0.0.weight"], before[0]["stages.0.0.weight"])
    stayed, moved = packs[True].sync(1).model.state_dict(), packs[False].sync(1).model.state_dict()
    for name, value in before[1].items():
        if value.is_floating_point() and "running" not in name:  # BatchNorm's statistics still follow the batches
            assert torch.equal(stayed[name], value), name
    assert not torch.equal(moved["stages.0.0.weight"], before[1]["stages.0.0.weight"])


def test_a_pack_starts_from_its_members_state_and_gives_each_its_share_back(tiny_config):
    members = []
    for seed in (0, 1):
        member = trainer.make_trainer(_config(tiny_config, seed=seed, scheduler={"name": "step", "step_size": 1, "gamma": 0.5}), CPU, 10)
        loss = member.model(torch.rand(4, 3, 32, 32)).square().sum()
        loss.backward()
        member.optimizer.step()  # momentum buffers to pack
        member.scheduler.step()
        member.epoch = 3
        members.append(member)
    states = [copy.deepcopy((m.model.state_dict(), m.optimizer.state_dict())) for m in members]
    pack = trainer.PackedTrainer.of(members)
    assert pack.size == 2 and pack.epoch == 3 and pack.members == members
    assert pack.optimizer.param_groups[0]["lr"] == 0.025  # the members' scheduled rate, 0.05 halved
    assert pack.scheduler.last_epoch == 1
    pack.scheduler.step()  # the pack trains on: its schedule is the one the members get back
    for member in members:  # the members' own copies are overwritten by sync; it must restore them
        for value in member.model.state_dict().values():
            value.zero_()
        member.optimizer.state.clear()
    for index, (model_state, optimizer_state) in enumerate(states):
        synced = pack.sync(index)
        assert synced is members[index]
        assert all(torch.equal(synced.model.state_dict()[k], v) for k, v in model_state.items())
        buffers = synced.optimizer.state_dict()["state"]
        assert buffers.keys() == optimizer_state["state"].keys()
        for key, value in optimizer_state["state"].items():
            assert torch.equal(buffers[key]["momentum_buffer"], value["momentum_buffer"])
        assert synced.scheduler.last_epoch == 2 and synced.scheduler.get_last_lr() == [0.0125]


def test_a_pack_in_channels_last_runs_its_network_in_channels_last(tiny_config):
    config = _config(tiny_config)
    config["compute"]["channels_last"] = True
    member = trainer.make_trainer(config, CPU, 10)
    pack = trainer.PackedTrainer.of([member])
    convolutions = [m for m in [*member.model.modules(), *pack.model.modules()] if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convolutions)


def test_each_run_has_its_own_seeded_streams(tiny_config):
    def draws(seed):
        torch.manual_seed(1000 + seed)  # whatever the global stream was before
        member = trainer.make_trainer(_config(tiny_config, seed=seed), CPU, 10)
        weights = torch.cat([p.detach().flatten() for p in member.model.parameters()])
        return (
            weights,
            torch.rand(4, generator=member.data_gen),
            torch.rand(4, generator=member.dropout_gen),
            torch.from_numpy(member.mix_rng.random(4)),
        )

    first, again, other = draws(0), draws(0), draws(1)
    for a, b in zip(first, again):
        assert torch.equal(a.float(), b.float())  # a run's seed alone decides
    for a, b in zip(first, other):
        assert not torch.equal(a.float(), b.float())  # each stream depends on it
    assert len({tuple(stream.float().tolist()) for stream in first[1:]}) == 3  # three different streams


def test_a_run_seed_splits_into_the_streams_in_the_order_recorded_runs_used():
    # the three children of the seed's SeedSequence, in this order: another order trains other
    # numbers from the same seed than the runs already recorded (test_bit_identical compares them)
    children = np.random.SeedSequence(11).spawn(3)
    seeds = trainer.Seeds.from_seed(11)
    assert seeds.init == int(children[0].generate_state(1)[0])
    assert seeds.data == int(children[1].generate_state(1)[0])
    assert seeds.mixing.spawn_key == children[2].spawn_key == (2,) and seeds.mixing.entropy == 11


def test_a_fresh_trainer_is_at_epoch_zero_with_the_runs_optimizer_scheduler_and_mixer(tiny_config):
    config = _config(tiny_config, scheduler={"name": "cosine", "t_max": 7, "eta_min": 0.001})
    member = trainer.make_trainer(config, CPU, 10)
    assert member.config is config and member.device == CPU
    assert member.epoch == 0 and member.history == [] and member.failure is None and member.best is None
    group = member.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.9, True, 5e-4)
    assert isinstance(member.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and member.scheduler.T_max == 7
    assert member.mixer.method == "cutmix" and member.mixer.alpha == 1.0


def _cosine(t_cur, period, lr, eta_min):
    """SGDR's annealing (Loshchilov & Hutter 2017, eq. 5): from lr down to eta_min over ``period`` epochs."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t_cur / period)) / 2


def _sgdr(epoch, lr, eta_min, t_0, t_mult):
    """SGDR with restarts: the first period is t_0 epochs, each next one t_mult times the last."""
    start, period = 0, t_0
    while epoch >= start + period:
        start, period = start + period, period * t_mult
    return _cosine(epoch - start, period, lr, eta_min)


SCHEDULES = {
    # each with settings other than torch's defaults (gamma 0.1, eta_min 0, t_mult 1)
    "step": ({"name": "step", "step_size": 3, "gamma": 0.5}, lambda t: 0.05 * 0.5 ** (t // 3)),
    # no restart: past t_max epochs the cosine climbs back, as torch's CosineAnnealingLR documents
    "cosine": ({"name": "cosine", "t_max": 7, "eta_min": 0.004}, lambda t: _cosine(t, 7, 0.05, 0.004)),
    # periods of 2, 4 and 8 epochs: restarts after epochs 2, 6 and 14
    "warm_restarts": (
        {"name": "warm_restarts", "t_0": 2, "t_mult": 2, "eta_min": 0.002},
        lambda t: _sgdr(t, 0.05, 0.002, 2, 2),
    ),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_scheduler_follows_its_closed_form_epoch_by_epoch(tiny_config, name):
    sched, closed_form = SCHEDULES[name]
    member = trainer.make_trainer(_config(tiny_config, scheduler=sched), CPU, 10)
    rates = []
    for _ in range(16):
        rates.append(member.optimizer.param_groups[0]["lr"])
        member.optimizer.step()  # no gradients: nothing moves; only the order torch expects
        member.scheduler.step()
    # Python floats (float64 on every CPU); torch's cosine is recursive, so a few roundings apart
    assert rates == pytest.approx([closed_form(t) for t in range(16)], rel=1e-9, abs=1e-12)
    # the pack trains on the same schedule
    assert trainer.PackedTrainer.of([member]).optimizer.param_groups[0]["lr"] == pytest.approx(closed_form(16), rel=1e-9, abs=1e-12)


def test_an_unknown_scheduler_is_refused_naming_the_three(tiny_config):
    member = trainer.make_trainer(_config(tiny_config), CPU, 10)
    with pytest.raises(ConfigError) as refused:
        trainer.build_scheduler(member.optimizer, {"name": "linear"})
    assert str(refused.value) == "train.scheduler.name: unknown scheduler 'linear'; choose one of: step, cosine, warm_restarts"


def test_non_finite_run_settings_are_refused_naming_them(tiny_config):
    # NaN passes every range check of the schema (each comparison with it is false)
    config = _config(tiny_config, lr=float("nan"))
    config["train"]["scheduler"]["eta_min"] = float("inf")
    with pytest.raises(ConfigError) as refused:
        trainer.check_run_config(config)
    assert str(refused.value) == "train.lr is nan; train.scheduler.eta_min is inf: give a finite number"
    config = _config(tiny_config, seed=0)
    config["mixing"]["alpha"] = -math.inf
    with pytest.raises(ConfigError, match=r"^mixing\.alpha is -inf: give a finite number$"):
        trainer.check_run_config(config)


def _generator_state(seed):
    return torch.Generator().manual_seed(seed).get_state()


def _on_a_gpu(member, device):
    """The trainer as it is on a GPU, for the bookkeeping of its streams (its tensors stay on the CPU)."""
    return dataclasses.replace(member, device=torch.device(device))


@pytest.mark.parametrize("device, slot", [("cuda:1", 1), ("cuda", 2)], ids=["named", "current"])
def test_a_resume_point_on_a_gpu_keeps_dropout_in_its_gpus_slot_of_the_cuda_streams(tiny_config, monkeypatch, device, slot):
    # torch.cuda's streams stood in for: three GPUs, the current one is 2
    gpu_states = [_generator_state(100 + i) for i in range(3)]
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state.clone() for state in gpu_states])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    member = _on_a_gpu(trainer.make_trainer(_config(tiny_config), CPU, 10), device)
    torch.rand(3, generator=member.dropout_gen)  # dropout has drawn: its stream is no other's
    dropout, host = member.dropout_gen.get_state(), torch.get_rng_state()
    state = member.state_dict()
    # saved where a solo run on that GPU keeps them: the host's stream, and dropout's in its GPU's slot
    assert torch.equal(state["torch_rng"], host)
    expected = [dropout if index == slot else other for index, other in enumerate(gpu_states)]
    assert len(state["cuda_rng"]) == 3 and all(torch.equal(a, b) for a, b in zip(state["cuda_rng"], expected))
    resumed = _on_a_gpu(trainer.make_trainer(_config(tiny_config), CPU, 10), device)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.dropout_gen.get_state(), dropout)


def test_a_resume_point_holds_dropout_in_the_hosts_stream_where_it_has_no_cuda_streams(tiny_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    written_on_cpu = trainer.make_trainer(_config(tiny_config), CPU, 10)
    torch.rand(3, generator=written_on_cpu.dropout_gen)
    state = written_on_cpu.state_dict()
    assert state["cuda_rng"] is None and torch.equal(state["torch_rng"], written_on_cpu.dropout_gen.get_state())
    # resumed on a GPU: there is no GPU stream to take, dropout continues the host's
    on_gpu = _on_a_gpu(trainer.make_trainer(_config(tiny_config), CPU, 10), "cuda:0")
    on_gpu.load_state_dict(state)
    assert torch.equal(on_gpu.dropout_gen.get_state(), state["torch_rng"])
    # a resume point written on a GPU, resumed on the CPU: the host's stream, not a GPU's
    written_on_gpu = dict(state, cuda_rng=[_generator_state(7), _generator_state(8)])
    on_cpu = trainer.make_trainer(_config(tiny_config), CPU, 10)
    on_cpu.load_state_dict(written_on_gpu)
    assert torch.equal(on_cpu.dropout_gen.get_state(), state["torch_rng"])


def test_on_the_cpu_dropout_continues_the_global_stream_after_initialisation(tiny_config):
    # what a run alone in its process does: seed with the init stream, build the network, and
    # dropout then draws from torch's global stream
    config = _config(tiny_config, seed=5)
    init_seed = int(np.random.SeedSequence(5).spawn(3)[0].generate_state(1)[0])
    torch.manual_seed(init_seed)
    alone = build_model(config["model"], 10)
    dropout_draws = torch.rand(16)
    torch.manual_seed(123)  # whatever the global stream was before
    member = trainer.make_trainer(config, CPU, 10)
    assert all(torch.equal(a, b) for a, b in zip(member.model.state_dict().values(), alone.state_dict().values()))
    assert torch.equal(torch.rand(16, generator=member.dropout_gen), dropout_draws)


@pytest.mark.parametrize("amp", ["on", "off", "auto"])
def test_every_batch_of_an_epoch_runs_in_the_amp_setting(tiny_config, tiny_data, amp):
    x, y = _data(tiny_data)
    config = _config(tiny_config)
    config["compute"]["amp"] = amp
    pack = trainer.PackedTrainer.of([trainer.make_trainer(config, CPU, 10)])
    batches = []

    def forward(inputs, mixes):
        logits = pack.model(inputs, mixes=mixes)
        autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        batches.append((len(inputs), autocast, logits.dtype))
        return logits

    trainer.train_epoch(pack, forward, x, y, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD))
    assert [size for size, _, _ in batches] == [8, 8, 8, 8, 4]
    # bf16 when asked for on any device; auto means float32 on the CPU
    expected = (torch.bfloat16, torch.bfloat16) if amp == "on" else (None, torch.float32)
    assert all((autocast, dtype) == expected for _, autocast, dtype in batches)
    assert not torch.is_autocast_enabled("cpu")  # and only inside the epoch


def test_amp_on_autocasts_to_bf16_anywhere_auto_only_on_cuda():
    on = trainer.autocast_context(CPU, "on")
    assert isinstance(on, torch.autocast) and on.fast_dtype == torch.bfloat16 and on.device == "cpu"
    assert isinstance(trainer.autocast_context(CPU, "auto"), nullcontext)
    assert isinstance(trainer.autocast_context(CPU, "off"), nullcontext)
    with warnings.catch_warnings():  # without a GPU torch warns that it would disable it
        warnings.simplefilter("ignore", UserWarning)
        auto_cuda = trainer.autocast_context(torch.device("cuda"), "auto")  # built, not entered: no GPU needed
    assert isinstance(auto_cuda, torch.autocast) and auto_cuda.fast_dtype == torch.bfloat16 and auto_cuda.device == "cuda"


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_a_seed_that_is_no_integer_from_zero_is_refused(tiny_config, seed):
    config = tiny_config()
    config["seed"] = seed
    with pytest.raises(ConfigError) as refused:
        trainer.check_run_config(config)
    assert str(refused.value) == f"seed: {seed!r} is not a seed; give an integer >= 0 (--seed 0)"


def test_mixing_points_the_network_lacks_are_refused_naming_them_and_the_valid_ones(tiny_config):
    trainer.check_run_config(tiny_config(seed=0, mixing={"method": "manifold", "alpha": 1.0, "layers": [0, 2]}))
    config = tiny_config(mixing={"method": "manifold", "alpha": 1.0, "layers": [5, 0, 4]})
    with pytest.raises(ConfigError) as refused:
        trainer.check_run_config(config)
    assert str(refused.value) == "mixing.layers: mixing point(s) [4, 5] do not exist in convnet; valid points are [0, 1, 2] (0 = input)"
