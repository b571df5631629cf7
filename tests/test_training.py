"""Training: schedulers, bit-for-bit reproducibility, the run folder, divergence, resuming."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from mixstudy.train import training
from mixstudy.train.checkpoint import load_checkpoint
from mixstudy.train.evaluation import predict, split_logits
from mixstudy.runs.run_folder import LOCK_FILE, RESUME_FILE
from mixstudy.train.trainer import build_scheduler
from mixstudy.core.errors import ConfigError, DataError, DivergedError
from mixstudy.model.metrics import summarise

from conftest import CIFAR10_MEAN, CIFAR10_STD, make_study_data

MIXINGS = {
    "none": {"method": "none", "alpha": 0.0},
    "manifold": {"method": "manifold", "alpha": 1.0, "layers": [0, 1, 2]},
    "cutmix": {"method": "cutmix", "alpha": 1.0},
}


def _train(config, data, out, **kwargs) -> dict:
    return training.train_runs([config], data, [out], progress="lines", **kwargs)[0]


def _history(out: Path, drop=("elapsed_s",)) -> list[dict]:
    with open(out / "history.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def _weights(out: Path) -> dict:
    return torch.load(out / "model.pt", map_location="cpu", weights_only=False)["model"]


def _resume_state(out: Path) -> dict:
    return torch.load(out / RESUME_FILE, map_location="cpu", weights_only=False)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- schedulers -----------------------------------------------------------------------------


def _lrs(sched: dict, epochs: int, base_lr: float = 0.1) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr, momentum=0.9)
    scheduler = build_scheduler(optimizer, sched)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_scheduler_learning_rates():
    lrs = _lrs({"name": "step", "step_size": 3, "gamma": 0.5}, 10)
    expected = [0.1 * 0.5 ** (epoch // 3) for epoch in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[2] == pytest.approx(0.1) and lrs[3] == pytest.approx(0.05) and lrs[9] == pytest.approx(0.0125)


def test_cosine_scheduler_learning_rates():
    base, eta_min, t_max = 0.1, 0.001, 5
    lrs = _lrs({"name": "cosine", "t_max": t_max, "eta_min": eta_min}, 13, base)
    expected = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2 for e in range(13)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert lrs[0] == pytest.approx(base) and lrs[t_max] == pytest.approx(eta_min)


@pytest.mark.parametrize("t_mult", [1, 2])
def test_warm_restarts_scheduler_learning_rates(t_mult):
    base, eta_min, t_0 = 0.1, 0.0, 3
    epochs = 25
    lrs = _lrs({"name": "warm_restarts", "t_0": t_0, "t_mult": t_mult, "eta_min": eta_min}, epochs, base)
    expected = []
    period, t_cur = t_0, 0
    for _ in range(epochs):
        expected.append(eta_min + (base - eta_min) * (1 + math.cos(math.pi * t_cur / period)) / 2)
        t_cur += 1
        if t_cur == period:  # restart
            t_cur, period = 0, period * t_mult
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
    restarts = [e for e in range(1, epochs) if lrs[e] == pytest.approx(base)]
    assert restarts == ([3, 6, 9, 12, 15, 18, 21, 24] if t_mult == 1 else [3, 9, 21])


def test_unknown_scheduler_is_refused():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    with pytest.raises(ConfigError, match="train.scheduler.name"):
        build_scheduler(optimizer, {"name": "adam"})


def test_history_records_the_learning_rate_of_each_epoch(tmp_path, tiny_config, tiny_data):
    config = tiny_config(train={"epochs": 3, "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5}})
    _train(config, tiny_data, tmp_path / "run")
    lrs = [float(row["lr"]) for row in _history(tmp_path / "run")]
    base = config["train"]["lr"]
    assert lrs == pytest.approx([base, base * 0.5, base * 0.25], rel=1e-12)


# --- reproducibility ------------------------------------------------------------------------


@pytest.mark.parametrize("mixing", ["none", "manifold", "cutmix"])
def test_same_seed_gives_bit_identical_runs(tmp_path, tiny_config, tiny_data, mixing):
    config = tiny_config(seed=3, mixing=MIXINGS[mixing])
    first = _train(config, tiny_data, tmp_path / "a")
    second = _train(config, tiny_data, tmp_path / "b")
    assert first["status"] == second["status"] == "ok"
    assert first["metrics"] == second["metrics"]  # exact float equality
    assert first["reliability"] == second["reliability"]
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    assert _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_different_seed_gives_different_runs(tmp_path, tiny_config, tiny_data):
    a = _train(tiny_config(seed=0), tiny_data, tmp_path / "a")
    b = _train(tiny_config(seed=1), tiny_data, tmp_path / "b")
    assert not _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert a["metrics"] != b["metrics"] or _history(tmp_path / "a") != _history(tmp_path / "b")


def test_mixing_changes_the_run(tmp_path, tiny_config, tiny_data):
    _train(tiny_config(mixing=MIXINGS["none"]), tiny_data, tmp_path / "none")
    _train(tiny_config(mixing=MIXINGS["manifold"]), tiny_data, tmp_path / "manifold")
    assert not _same_weights(_weights(tmp_path / "none"), _weights(tmp_path / "manifold"))


def test_periodic_evaluation_does_not_change_training(tmp_path, tiny_config, tiny_data):
    plain = _train(tiny_config(mixing=MIXINGS["manifold"]), tiny_data, tmp_path / "plain")
    config = tiny_config(mixing=MIXINGS["manifold"], evaluation={"every": 1})
    watched = _train(config, tiny_data, tmp_path / "watched")
    assert plain["metrics"] == watched["metrics"]
    watched_history = _history(tmp_path / "watched", drop=("elapsed_s", "test_acc"))
    assert watched_history == _history(tmp_path / "plain")
    assert all("test_acc" in row for row in _history(tmp_path / "watched"))


def test_warm_restart_run_at_a_cycle_end_is_the_shorter_run(tmp_path, tiny_config, tiny_data):
    """With warm restarts the schedule repeats every t_0 epochs whatever the run's length, so a
    run's test accuracy at epoch 2 x t_0 is what a run of 2 x t_0 epochs ends with (docs/first-run.md
    reads shorter budgets off longer runs this way)."""
    schedule = {"scheduler": {"name": "warm_restarts", "t_0": 2, "t_mult": 1}}
    short = _train(tiny_config(train={**schedule, "epochs": 4}, mixing=MIXINGS["manifold"]), tiny_data, tmp_path / "short")
    config = tiny_config(train={**schedule, "epochs": 6}, mixing=MIXINGS["manifold"], evaluation={"every": 2})
    _train(config, tiny_data, tmp_path / "long")
    at_epoch_4 = next(row for row in _history(tmp_path / "long") if int(row["epoch"]) == 4)
    assert float(at_epoch_4["test_acc"]) == short["metrics"]["test"]["acc"]


# --- the run folder -------------------------------------------------------------------------


def test_run_folder_contents(tmp_path, tiny_config, tiny_data):
    config = tiny_config(train={"checkpoint_every": 1}, mixing=MIXINGS["cutmix"])
    out = tmp_path / "run"
    record = _train(config, tiny_data, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["history.tsv", "metrics.json", "model.pt", "train.log"]  # no resume.pt, failure.json, lock or temp files
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["status"] == "ok" and saved["error"] is None
    assert saved["config"] == config
    assert saved["epochs_completed"] == config["train"]["epochs"]
    assert set(saved["metrics"]["test"]) == {"acc", "nll", "ece", "brier"}
    assert "val" not in saved["metrics"]
    history = _history(out, drop=())
    assert [int(row["epoch"]) for row in history] == [1, 2]
    assert {"train_loss", "train_acc", "lr", "elapsed_s"} <= set(history[0])


def test_validation_split_and_fgsm_are_evaluated(tmp_path, tiny_config):
    data = make_study_data(n_val_per_class=1)
    config = tiny_config(train={"epochs": 1}, evaluation={"fgsm_epsilons": [0.0078]})
    record = _train(config, data, tmp_path / "run")
    assert set(record["metrics"]) == {"test", "val", "test_best_val"}
    assert 0.0 <= record["metrics"]["test"]["fgsm_acc@0.0078"] <= 1.0
    assert sum(record["reliability"]["val"]["bin_count"]) == len(data.y_val)


def test_load_checkpoint_round_trips(tmp_path, tiny_config, tiny_data):
    config = tiny_config(mixing=MIXINGS["manifold"])
    out = tmp_path / "run"
    record = _train(config, tiny_data, out)
    model, saved_config = load_checkpoint(out / "model.pt")
    assert saved_config == config
    assert _same_weights(model.state_dict(), _weights(out))
    from mixstudy.data import engine

    images = engine.to_device_images(tiny_data.x_test, torch.device("cpu"))
    logits = predict(model, images, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), 64)
    metrics, _ = summarise(logits, torch.from_numpy(tiny_data.y_test), config["evaluation"]["ece_bins"])
    assert metrics["acc"] == record["metrics"]["test"]["acc"]
    assert metrics["nll"] == pytest.approx(record["metrics"]["test"]["nll"], rel=1e-5)


def test_load_checkpoint_refuses_missing_and_truncated_files(tmp_path, tiny_config, tiny_data):
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "absent" / "model.pt")
    out = tmp_path / "run"
    _train(tiny_config(train={"epochs": 1}), tiny_data, out)
    truncated = tmp_path / "truncated.pt"
    raw = (out / "model.pt").read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError):
        load_checkpoint(truncated)


# --- divergence -----------------------------------------------------------------------------


def test_diverging_run_raises_and_writes_only_a_failure_record(tmp_path, tiny_config, tiny_data):
    config = tiny_config(train={"lr": 1e6})
    out = tmp_path / "run"
    with pytest.raises(DivergedError, match="train.lr"):
        _train(config, tiny_data, out, on_diverge="error")
    assert not (out / "metrics.json").exists()
    failure = json.loads((out / "failure.json").read_text())
    assert failure["status"] == "failed" and failure["metrics"] is None
    assert "nan" in failure["error"] or "inf" in failure["error"]

    # A later successful run in the same folder clears the failure record.
    _train(tiny_config(), tiny_data, out)
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
    assert not (out / "failure.json").exists()


def test_diverging_run_can_be_recorded(tmp_path, tiny_config, tiny_data):
    config = tiny_config(train={"lr": 1e6})
    out = tmp_path / "run"
    record = _train(config, tiny_data, out, on_diverge="record")
    assert record["status"] == "failed" and record["metrics"] is None
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["metrics"] is None and saved["error"]
    assert saved["epochs_completed"] < config["train"]["epochs"]
    assert not (out / "failure.json").exists()


def test_divergence_is_detected_at_the_epoch_it_happens(tmp_path, tiny_config, tiny_data, monkeypatch):
    real_epoch = training.train_epoch
    calls = []

    def second_epoch_diverges(pack, *args, **kwargs):
        rows = real_epoch(pack, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            rows[0]["train_loss"] = float("inf")
        return rows

    monkeypatch.setattr(training, "train_epoch", second_epoch_diverges)
    record = _train(tiny_config(train={"epochs": 3}), tiny_data, tmp_path / "run", on_diverge="record")
    assert record["status"] == "failed"
    assert record["epochs_completed"] == 1
    assert "epoch 2" in record["error"]


# --- resuming -------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("mixing, stop_after", [("manifold", 2), ("cutmix", 2), ("manifold", 1)])
def test_interrupted_run_resumes_bit_for_bit(tmp_path, tiny_config, tiny_data, monkeypatch, mixing, stop_after):
    config = tiny_config(seed=5, train={"epochs": 3, "checkpoint_every": 1}, mixing=MIXINGS[mixing])
    reference = _train(config, tiny_data, tmp_path / "reference")

    out = tmp_path / "interrupted"
    real_save = training.save_resume_point

    def save_then_die(trainer, out_dir):
        real_save(trainer, out_dir)
        if trainer.epoch == stop_after:
            raise _Interrupted(f"killed after epoch {stop_after}")

    monkeypatch.setattr(training, "save_resume_point", save_then_die)
    with pytest.raises(_Interrupted):
        _train(config, tiny_data, out)
    assert (out / RESUME_FILE).is_file()
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(training, "save_resume_point", real_save)

    assert len(_resume_state(out)["history"]) == stop_after

    torch.manual_seed(1234)  # the resume must restore the global RNG (dropout masks) itself
    resumed = _train(config, tiny_data, out)
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["reliability"] == reference["reliability"]
    assert _history(out) == _history(tmp_path / "reference")
    assert _same_weights(_weights(out), _weights(tmp_path / "reference"))
    assert not (out / RESUME_FILE).exists()


def test_resume_point_of_another_configuration_is_ignored(tmp_path, tiny_config, tiny_data, monkeypatch):
    other = tiny_config(seed=1, train={"epochs": 3, "checkpoint_every": 1})
    out = tmp_path / "run"
    real_save = training.save_resume_point

    def die_after_first_checkpoint(trainer, out_dir):
        real_save(trainer, out_dir)
        raise _Interrupted

    monkeypatch.setattr(training, "save_resume_point", die_after_first_checkpoint)
    with pytest.raises(_Interrupted):
        _train(other, tiny_data, out)
    monkeypatch.setattr(training, "save_resume_point", real_save)

    config = tiny_config(seed=2, train={"epochs": 3, "checkpoint_every": 1})
    fresh = _train(config, tiny_data, tmp_path / "fresh")
    continued = _train(config, tiny_data, out)
    assert continued["metrics"] == fresh["metrics"]
    assert _same_weights(_weights(out), _weights(tmp_path / "fresh"))


@pytest.mark.parametrize("n, expected", [(41, [8, 8, 8, 8, 8]), (42, [8, 8, 8, 8, 8, 2]), (40, [8] * 5), (1, [1])])
def test_batches_drop_only_a_trailing_batch_of_one(n, expected):
    from mixstudy.data import engine

    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    chunks = engine.batches(order, 8)
    assert [len(c) for c in chunks] == expected
    assert torch.equal(torch.cat(chunks), order[: sum(expected)])


# Every evaluation setting, set away from its params.yaml value, must show in what the run writes.
EVALUATION = {
    "ece_bins": 7,
    "fgsm_epsilons": [0.01, 0.03],
    "every": 1,
    "test_limit": 10,
    "val_every": 1,
    "best_by": "val_nll",
    "temperature_scaling": True,
}


def test_every_evaluation_setting_is_observed_in_the_written_metrics(tmp_path, tiny_config):
    from mixstudy.data import engine

    data = make_study_data(n_val_per_class=2, n_test=20)
    config = tiny_config(train={"epochs": 3}, evaluation=EVALUATION)
    record = _train(config, data, tmp_path / "run")
    metrics, reliability = record["metrics"], record["reliability"]

    # ece_bins: every reliability table has 7 bins, and the ECE is the 7-bin ECE of the saved weights
    assert {split: len(table["bin_count"]) for split, table in reliability.items()} == {"test": 7, "val": 7, "test_ts": 7}
    model, _ = load_checkpoint(tmp_path / "run" / "model.pt")
    x_test = engine.to_device_images(data.x_test[:10], torch.device("cpu"))
    logits = split_logits(model, x_test, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), config["compute"], torch.device("cpu"))
    recomputed, _ = summarise(logits, torch.from_numpy(data.y_test[:10]), 7)
    assert metrics["test"]["ece"] == recomputed["ece"]
    # test_limit: the test metrics count 10 images
    assert sum(reliability["test"]["bin_count"]) == 10 and sum(reliability["val"]["bin_count"]) == 20
    # fgsm_epsilons: one accuracy per radius and split
    for split in ("test", "val"):
        assert {key for key in metrics[split] if key.startswith("fgsm")} == {"fgsm_acc@0.01", "fgsm_acc@0.03"}
    # every and val_every: test and validation columns at every epoch
    history = _history(tmp_path / "run")
    assert all(row["test_acc"] != "" and row["val_nll"] != "" for row in history)
    # best_by: the kept weights are those of the lowest validation NLL
    best_epoch = min(history, key=lambda row: float(row["val_nll"]))["epoch"]
    assert metrics["test_best_val"]["best_by"] == "val_nll" and metrics["test_best_val"]["epoch"] == int(best_epoch)
    # temperature_scaling: the scaled test metrics and their temperature
    assert metrics["test_ts"]["temperature"] > 0


# --- one writer per run folder; finished runs kept, never silently overwritten; byte-identical files ---


def test_same_training_twice_gives_byte_identical_model_files(tmp_path, tiny_config, tiny_data):
    config = tiny_config(mixing=MIXINGS["manifold"])
    _train(config, tiny_data, tmp_path / "a")
    _train(config, tiny_data, tmp_path / "b")
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_a_second_writer_is_refused_while_the_folder_is_locked(tmp_path, tiny_config, tiny_data):
    import subprocess
    import sys

    from mixstudy.core.errors import MixstudyError

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(120)", str(out / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MixstudyError, match="being written by another mixstudy process"):
            _train(tiny_config(), tiny_data, out)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else written
    finally:
        holder.kill()
        holder.wait()
    _train(tiny_config(), tiny_data, out)  # the holder died: its lock went with it
    assert (out / "metrics.json").is_file() and not (out / LOCK_FILE).exists()


def test_finished_run_is_kept_and_another_configuration_needs_replace(tmp_path, tiny_config, tiny_data):
    from mixstudy.core.errors import MixstudyError

    out = tmp_path / "run"
    _train(tiny_config(seed=0), tiny_data, out)
    finished = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    kept = _train(tiny_config(seed=0, compute={"eval_batch_size": 7}), tiny_data, out)  # compute settings do not count
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == finished
    assert kept["config"]["seed"] == 0
    with pytest.raises(MixstudyError, match="finished run of another configuration.*--replace"):
        _train(tiny_config(seed=1), tiny_data, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == finished
    record = _train(tiny_config(seed=1), tiny_data, out, replace=True)
    assert record["config"]["seed"] == 1 == json.loads((out / "metrics.json").read_text())["config"]["seed"]


@pytest.mark.parametrize("damage", ["delete_model", "truncate_model", "truncate_metrics"])
def test_damaged_outputs_of_a_finished_run_are_rebuilt(tmp_path, tiny_config, tiny_data, damage):
    out = tmp_path / "run"
    config = tiny_config()
    _train(config, tiny_data, out)
    model = (out / "model.pt").read_bytes()
    if damage == "delete_model":
        (out / "model.pt").unlink()
    elif damage == "truncate_model":
        (out / "model.pt").write_bytes(model[:100])
    else:
        (out / "metrics.json").write_text('{"status": "ok", "conf')
    _train(config, tiny_data, out)
    assert (out / "model.pt").read_bytes() == model
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
