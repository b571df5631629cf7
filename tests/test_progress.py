"""Progress of the study's runs: stage counts, running epochs and the estimate of the time left."""

from __future__ import annotations

import json
import os
import time

import pytest

from mixstudy.train import training
from mixstudy.cli import main
from mixstudy.core.config import load_params
from mixstudy.runs.progress import PACE_WINDOW_S, observed_pace, progress_lines, watch
from mixstudy.runs.run_folder import PROGRESS_FILE

from conftest import PARAMS_FILE, TINY_OVERRIDES

GRIDS = TINY_OVERRIDES + [
    "tuning.grid.scheduler=[step]", "tuning.grid.momentum=[0.9]", "tuning.grid.weight_decay=[0.001]",
    "tuning.seeds=[0, 1]", "tuning.epochs=100", "train.epochs=400", "sweep.alphas=[4.0]",
    "sweep.layer_sets=[[0, 2]]", "sweep.seeds=[0]", "sweep.cutmix_alphas=[]", "sweep.label_smoothing=[]",
    "sweep.cutout_sizes=[]",
]


@pytest.fixture
def params():
    return load_params([PARAMS_FILE], GRIDS)


def _finished(root, run_id, wall):
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "ok", "config": {}, "wall_time_s": wall}))


def _running(root, run_id, epoch, epochs, elapsed, silent_s=0.0):
    folder = root / run_id
    folder.mkdir(parents=True)
    progress = folder / PROGRESS_FILE
    progress.write_text(json.dumps({"epoch": epoch, "epochs": epochs, "elapsed_s": elapsed}))
    last_written = time.time() - silent_s
    os.utime(progress, (last_written, last_written))


def test_counts_and_time_left_from_the_observed_speed(tmp_path, params):
    _finished(tmp_path, "tuning/step_mom0.9_wd0.001/seed0", 200.0)  # 100 epochs: 2 s per epoch
    _running(tmp_path, "tuning/step_mom0.9_wd0.001/seed1", 50, 100, 100.0)
    _running(tmp_path, "sweep/baseline/seed0", 100, 400, 300.0)  # 3 s per epoch
    lines = progress_lines(params, tmp_path)
    assert lines[0] == ("tuning: 1 of 2 runs finished, 1 running (tuning/step_mom0.9_wd0.001/seed1 epoch 50/100), "
                        "0 waiting")
    assert lines[1].startswith("sweep: 0 of 2 runs finished, 1 running (sweep/baseline/seed0 epoch 100/400)")
    assert lines[1].endswith("1 waiting")
    # left: tuning 50 epochs x 2 s = 100 s; sweep 300 + 400 epochs x 3 s = 2100 s; two run at once
    assert lines[2] == "time left: about 18 min of training (2 at once)"


def test_time_left_is_not_guessed_before_any_run_has_trained(tmp_path, params):
    lines = progress_lines(params, tmp_path)
    assert lines[-1].startswith("time left: not known yet")


def test_a_stage_not_started_yet_is_estimated_at_the_speed_of_the_others(tmp_path, params):
    """The sweep may start before the tuning (sweep.use_tuning_choice: false): the tuning's time
    left comes from the sweep's speed, not 'not known'."""
    _running(tmp_path, "sweep/baseline/seed0", 100, 400, 300.0)  # 3 s per epoch
    _running(tmp_path, "sweep/manifold_S0-2_alpha4/seed0", 100, 400, 300.0)
    lines = progress_lines(params, tmp_path)
    # left: tuning 2 x 100 epochs x 3 s = 600 s; sweep 2 x 300 epochs x 3 s = 1800 s; two at once
    assert lines[-1] == "time left: about 20 min of training (2 at once)"


def test_a_run_whose_progress_file_went_silent_is_stopped_not_running(tmp_path, params):
    """A killed run leaves progress.json behind; it must not be counted as running for ever."""
    _running(tmp_path, "sweep/baseline/seed0", 100, 400, 300.0, silent_s=3600)  # 3 s per epoch, silent 1 h
    _running(tmp_path, "sweep/manifold_S0-2_alpha4/seed0", 10, 400, 1000.0, silent_s=400)  # 100 s per epoch
    lines = progress_lines(params, tmp_path)
    assert lines[1] == ("sweep: 0 of 2 runs finished, 1 running (sweep/manifold_S0-2_alpha4/seed0 epoch 10/400), "
                        "1 stopped (sweep/baseline/seed0 epoch 100/400), 0 waiting")
    assert lines[2].startswith("stopped runs resume from their last checkpoint")


def test_a_pause_of_a_few_minutes_between_epochs_is_still_running(tmp_path, params):
    """5 epochs of 20 s is 100 s, but a test pass or checkpoint may take minutes: 300 s at least."""
    _running(tmp_path, "sweep/baseline/seed0", 1, 400, 20.0, silent_s=250)
    assert "1 running (sweep/baseline/seed0 epoch 1/400)" in progress_lines(params, tmp_path)[1]


def test_observed_pace_is_epochs_a_second_over_the_latest_window():
    assert observed_pace([(0.0, 100), (60.0, 130), (120.0, 160)]) == pytest.approx(0.5)
    # a slow start (a paused machine) older than the window no longer counts
    assert observed_pace([(0.0, 0), (PACE_WINDOW_S + 100, 100), (2 * PACE_WINDOW_S + 100, 400)]) == pytest.approx(0.5)
    assert observed_pace([(0.0, 100)]) is None  # one snapshot: no pace yet
    assert observed_pace([(0.0, 100), (60.0, 100)]) is None  # nothing trained since


def test_watch_estimates_from_the_pace_it_observes_not_from_a_slow_past(tmp_path, params):
    """A run slowed by other work earlier (its elapsed_s says 10 s per epoch) now trains 1 epoch a
    second: once watch has seen that, the time left follows the pace, and watch ends when all finish."""
    for run_id in ("tuning/step_mom0.9_wd0.001/seed0", "tuning/step_mom0.9_wd0.001/seed1"):
        _finished(tmp_path, run_id, 1000.0)
    _running(tmp_path, "sweep/baseline/seed0", 100, 400, 1000.0)
    now, printed = [0.0], []

    def one_minute_later(seconds):
        now[0] += seconds
        epoch = 100 + int(now[0])  # one epoch a second
        folder = tmp_path / "sweep/baseline/seed0"
        if epoch >= 400:
            (folder / PROGRESS_FILE).unlink()
            (folder / "metrics.json").write_text(json.dumps({"status": "ok", "config": {}, "wall_time_s": 1300.0}))
            _finished(tmp_path, "sweep/manifold_S0-2_alpha4/seed0", 400.0)
        else:
            (folder / PROGRESS_FILE).write_text(json.dumps({"epoch": epoch, "epochs": 400, "elapsed_s": 1000.0 + now[0]}))

    watch(params, tmp_path, 60, echo=printed.append, clock=lambda: now[0], sleep=one_minute_later)
    # first print: the runs' own speed, 10 s per epoch: 300 + 400 epochs left, one run at once
    assert printed[0].endswith("time left: about 1.9 h of training (1 at once)")
    # then the observed pace: 60 epochs a minute, (240 + 400) epochs left
    assert printed[1].endswith("time left: about 11 min at the pace of the last minutes (60 epochs a minute over every run)")
    assert printed[-1].endswith("every run has finished") and len(printed) == 6


def test_training_writes_progress_each_epoch_and_removes_it_at_the_end(tmp_path, tiny_config, tiny_data, monkeypatch):
    seen = []
    real_write = training.write_json

    def spy(path, obj):
        if path.name == PROGRESS_FILE:
            seen.append(obj)
        real_write(path, obj)

    monkeypatch.setattr(training, "write_json", spy)
    training.train_runs([tiny_config(train={"epochs": 3})], tiny_data, [tmp_path / "run"], progress="lines")
    assert [(p["epoch"], p["epochs"]) for p in seen] == [(1, 3), (2, 3), (3, 3)]
    assert not (tmp_path / "run" / PROGRESS_FILE).exists()


def test_progress_command_prints_every_stage(tmp_path, capsys):
    assert main(["progress", "--params", str(PARAMS_FILE), *sum((["--set", o] for o in GRIDS), []),
                 "--runs-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tuning: 0 of 2 runs finished" in out and "sweep: 0 of 2 runs finished" in out
