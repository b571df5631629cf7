"""Checkpoints (mixstudy.train.checkpoint): a run's resume point saved and read back whole, refused when
damaged or foreign, dropped for another configuration; a pack resumed only when every run can be;
model.pt rebuilt."""

from __future__ import annotations

import io
import logging

import pytest
import torch
import torch._dynamo  # noqa: F401  (the first optimizer imports it, seconds; mutmut's fork server then imports it once)

from mixstudy.train import checkpoint
from mixstudy.core.errors import DataError
from mixstudy.runs.run_folder import RESUME_FILE
from mixstudy.train.trainer import make_trainer

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as the tiny runs train (compute.threads=1): faster on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trained(config, epochs: int = 1):
    """A trainer moved away from its initial state: weights, optimizer, scheduler, every stream."""
    trainer = make_trainer(config, CPU, 10)
    for _ in range(epochs):
        loss = trainer.model(torch.rand(4, 3, 32, 32, generator=trainer.data_gen)).sum()
        loss.backward()
        trainer.optimizer.step()
        trainer.scheduler.step()
        trainer.mix_rng.random(3)
        torch.rand(2, generator=trainer.dropout_gen)
        trainer.epoch += 1
        trainer.history.append({"epoch": trainer.epoch, "train_loss": loss.detach().item()})
    trainer.best = {"epoch": 1, "row": {"epoch": 1, "val_acc": 0.5}, "state": {"w": torch.ones(2)}}
    return trainer


def _same(a, b) -> bool:
    """Equal nested states: tensors bit for bit, everything else by ==."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_torch_bytes_is_what_torch_loads_back_and_equal_for_equal_content():
    state = {"w": torch.arange(6.0).view(2, 3), "epoch": 3}
    raw = checkpoint.torch_bytes(state)
    assert _same(torch.load(io.BytesIO(raw), weights_only=False), state)
    assert checkpoint.torch_bytes({"w": torch.arange(6.0).view(2, 3), "epoch": 3}) == raw


def test_a_saved_resume_point_restores_the_whole_run(tmp_path, tiny_config):
    config = tiny_config(seed=4, mixing={"method": "manifold", "alpha": 1.0, "layers": [0, 1]})
    trainer = _trained(config, epochs=2)
    checkpoint.save_resume_point(trainer, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESUME_FILE]

    fresh = make_trainer(config, CPU, 10)
    assert checkpoint.try_resume(fresh, tmp_path) is True
    assert (tmp_path / RESUME_FILE).is_file()  # kept until the run is finished
    assert fresh.epoch == 2 and fresh.history == trainer.history and _same(fresh.best, trainer.best)
    assert _same(fresh.state_dict(), trainer.state_dict())
    # the streams continue where the saved run's would
    assert torch.equal(torch.rand(5, generator=fresh.data_gen), torch.rand(5, generator=trainer.data_gen))
    assert torch.equal(torch.rand(5, generator=fresh.dropout_gen), torch.rand(5, generator=trainer.dropout_gen))
    assert (fresh.mix_rng.random(5) == trainer.mix_rng.random(5)).all()


def test_no_resume_point_is_a_fresh_start(tmp_path, tiny_config):
    trainer = make_trainer(tiny_config(), CPU, 10)
    assert checkpoint.try_resume(trainer, tmp_path) is False
    (tmp_path / RESUME_FILE).mkdir()  # a folder by that name is no resume point
    assert checkpoint.try_resume(trainer, tmp_path) is False
    assert trainer.epoch == 0


def test_a_resume_point_of_another_configuration_is_deleted_with_a_warning(tmp_path, tiny_config, caplog):
    checkpoint.save_resume_point(_trained(tiny_config(seed=1)), tmp_path)
    trainer = make_trainer(tiny_config(seed=2), CPU, 10)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="mixstudy"):
        assert checkpoint.try_resume(trainer, tmp_path) is False
    assert not (tmp_path / RESUME_FILE).exists()
    assert trainer.epoch == 0 and _same(trainer.model.state_dict(), initial)
    assert f"{tmp_path / RESUME_FILE} belongs to a different configuration; starting from scratch" in caplog.messages


@pytest.mark.parametrize("content", [b"", b"not a zip archive", "truncated"])
def test_an_unreadable_resume_point_is_refused_naming_the_file_and_the_way_out(tmp_path, tiny_config, content):
    trainer = make_trainer(tiny_config(), CPU, 10)
    if content == "truncated":
        checkpoint.save_resume_point(_trained(tiny_config()), tmp_path)
        content = (tmp_path / RESUME_FILE).read_bytes()[:200]
    (tmp_path / RESUME_FILE).write_bytes(content)
    with pytest.raises(DataError) as refused:
        checkpoint.try_resume(trainer, tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / RESUME_FILE} cannot be read (")
    assert message.endswith("); delete it to train the run from the start")
    assert isinstance(refused.value.__cause__, Exception)


@pytest.mark.parametrize("state", [[1, 2], {"epoch": 3}])
def test_a_file_that_is_no_resume_point_is_refused(tmp_path, tiny_config, state):
    (tmp_path / RESUME_FILE).write_bytes(checkpoint.torch_bytes(state))
    with pytest.raises(DataError) as refused:
        checkpoint.try_resume(make_trainer(tiny_config(), CPU, 10), tmp_path)
    assert str(refused.value) == f"{tmp_path / RESUME_FILE} is not a mixstudy resume point; delete it to train the run from the start"


def _pack_folders(tmp_path, configs, epochs):
    """Run folders with resume points after ``epochs[i]`` epochs (None: no resume point)."""
    folders = []
    for i, (config, epoch) in enumerate(zip(configs, epochs)):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        if epoch is not None:
            checkpoint.save_resume_point(_trained(config, epochs=epoch), folder)
        folders.append(folder)
    return folders


def test_a_pack_resumes_when_every_run_has_a_resume_point_at_the_same_epoch(tmp_path, tiny_config):
    configs = [tiny_config(seed=seed) for seed in (0, 1)]
    folders = _pack_folders(tmp_path, configs, [2, 2])
    members = checkpoint.resumed_or_new_members(configs, folders, CPU, 10)
    assert [m.epoch for m in members] == [2, 2]
    assert [m.config for m in members] == configs
    for member, config in zip(members, configs):
        assert _same(member.model.state_dict(), _trained(config, epochs=2).model.state_dict())


def test_a_pack_without_resume_points_starts_fresh(tmp_path, tiny_config):
    configs = [tiny_config(seed=seed) for seed in (0, 1)]
    members = checkpoint.resumed_or_new_members(configs, _pack_folders(tmp_path, configs, [None, None]), CPU, 10)
    assert [m.epoch for m in members] == [0, 0] and [m.config for m in members] == configs
    for member, config in zip(members, configs):
        assert _same(member.model.state_dict(), make_trainer(config, CPU, 10).model.state_dict())


# [0, None]: one run resumes at the epoch the other starts at, yet the other has no resume point
@pytest.mark.parametrize("epochs", [[2, None], [None, 1], [1, 2], [0, None]])
def test_a_pack_whose_runs_cannot_all_resume_at_one_epoch_starts_fresh_with_a_warning(tmp_path, tiny_config, caplog, epochs):
    configs = [tiny_config(seed=seed) for seed in (0, 1)]
    folders = _pack_folders(tmp_path, configs, epochs)
    with caplog.at_level(logging.WARNING, logger="mixstudy"):
        members = checkpoint.resumed_or_new_members(configs, folders, CPU, 10)
    assert [m.epoch for m in members] == [0, 0] and [m.history for m in members] == [[], []]
    assert [m.config for m in members] == configs
    for member, config in zip(members, configs):
        assert _same(member.model.state_dict(), make_trainer(config, CPU, 10).model.state_dict())
    where = ", ".join(f"{folder}: {'none' if epoch is None else epoch}" for folder, epoch in zip(folders, epochs))
    assert caplog.messages[-1] == (
        f"the runs of this pack have resume points at different epochs ({where}); training them all from scratch"
    )


def test_load_checkpoint_rebuilds_the_network_and_refuses_folders_missing_and_foreign_files(tmp_path, tiny_config):
    config = tiny_config(seed=3)
    trainer = _trained(config)
    path = tmp_path / "model.pt"
    path.write_bytes(checkpoint.torch_bytes({"config": config, "model": trainer.model.state_dict()}))
    model, saved = checkpoint.load_checkpoint(str(path), CPU)  # a path given as text
    assert saved == config and _same(model.state_dict(), trainer.model.state_dict())
    model, _ = checkpoint.load_checkpoint(path)  # no device: the CPU
    assert all(value.device == CPU for value in model.state_dict().values())

    with pytest.raises(DataError) as refused:
        checkpoint.load_checkpoint(tmp_path)
    assert str(refused.value) == f"{tmp_path} is a folder; give the model.pt inside it (e.g. {path})"
    with pytest.raises(DataError) as refused:
        checkpoint.load_checkpoint(tmp_path / "absent.pt")
    assert str(refused.value) == f"{tmp_path / 'absent.pt'} does not exist; train the run first"
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(checkpoint.torch_bytes({"config": config}))
    with pytest.raises(DataError) as refused:
        checkpoint.load_checkpoint(foreign)
    assert str(refused.value) == f"{foreign} is not a complete mixstudy checkpoint ('model')"


def test_a_resumed_run_says_which_folder_and_epoch_it_continues_from(tmp_path, tiny_config, caplog):
    """The one line a user reads when a restarted queue picks a run up again (train.log)."""
    config = tiny_config(seed=1)
    checkpoint.save_resume_point(_trained(config, epochs=3), tmp_path)
    with caplog.at_level(logging.INFO, logger="mixstudy.train.checkpoint"):
        assert checkpoint.try_resume(make_trainer(config, CPU, 10), tmp_path) is True
    assert [record.getMessage() for record in caplog.records if record.name == "mixstudy.train.checkpoint"] == [
        f"resuming {tmp_path} from epoch 3"
    ]
