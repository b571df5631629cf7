"""How far the study's runs are: per stage, runs finished, running and waiting, and the time left.

A training run writes ``progress.json`` (epoch, epochs, seconds so far) into its folder after every
epoch and removes it when it finishes, so this module reads small files only (no torch, no
Snakemake). A run killed part way (a machine stopped, a job cancelled) leaves its file behind: a file
not updated for several of the run's epochs is a *stopped* run, which resumes from its checkpoint
when the same command runs again. The estimate of the time left is the work left, in epochs, at the
speed the running and finished runs of the same stage have shown (of every stage, for a stage not
started yet), shared over the runs training at once. Those speeds are whole-run averages, so a run that once shared
the machine with other work, or was paused, slows the estimate for good; ``watch`` therefore estimates,
once it has seen a few minutes, from the pace it observes itself: epochs trained over every run per
second of wall time, which also counts how many runs train at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mixstudy.runs import run_folder, study
from mixstudy.runs.run_folder import METRICS_FILE, PROGRESS_FILE
from mixstudy.core.errors import ConfigError

# A running run rewrites its progress file every epoch; one untouched for this many of its own epochs
# (and at least STOPPED_AFTER_MIN_S, for test passes and checkpoints between epochs) has stopped.
STOPPED_AFTER_EPOCHS = 5
STOPPED_AFTER_MIN_S = 300.0
# watch's pace is measured over at most this much of the latest wall time, so it follows a machine that
# speeds up or slows down (another job starts or ends).
PACE_WINDOW_S = 600.0


@dataclass
class RunState:
    spec: study.RunSpec
    state: str  # finished | running | stopped | waiting
    epoch: int
    epochs: int
    seconds: float  # training seconds so far (finished: the whole run)


def _epochs(params: dict, spec: study.RunSpec) -> int:
    return spec.overrides.get("train", {}).get("epochs", params["train"]["epochs"])


def run_state(params: dict, spec: study.RunSpec, runs_root: str | Path) -> RunState:
    folder = spec.folder(runs_root)
    epochs = _epochs(params, spec)
    metrics, progress = folder / METRICS_FILE, folder / PROGRESS_FILE
    if metrics.is_file():
        try:
            record = run_folder.read_run_record(folder)
            return RunState(spec, "finished", epochs, epochs, float(record.get("wall_time_s") or 0))
        except (ConfigError, ValueError, TypeError):
            pass  # being written or damaged: not finished
    if progress.is_file():
        try:
            now = json.loads(progress.read_text())
            epoch, seconds = int(now["epoch"]), float(now["elapsed_s"])
            silent_s = time.time() - progress.stat().st_mtime
            state = "stopped" if _has_stopped(silent_s, seconds / max(epoch, 1)) else "running"
            return RunState(spec, state, epoch, int(now["epochs"]), seconds)
        except (json.JSONDecodeError, OSError, KeyError, ValueError):
            pass
    return RunState(spec, "waiting", 0, epochs, 0.0)


def _has_stopped(silent_s: float, seconds_per_epoch: float) -> bool:
    return silent_s > max(STOPPED_AFTER_MIN_S, STOPPED_AFTER_EPOCHS * seconds_per_epoch)


def seconds_per_epoch(states: list[RunState]) -> float | None:
    """The stage's observed speed: training seconds per epoch over its finished and running runs."""
    epochs = sum(s.epoch for s in states if s.state != "waiting")
    seconds = sum(s.seconds for s in states if s.state != "waiting")
    return seconds / epochs if epochs and seconds else None


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def run_states(params: dict, runs_root: str | Path) -> list[RunState]:
    return [run_state(params, spec, runs_root) for spec in study.all_runs(params)]


def epochs_trained(states: list[RunState]) -> int:
    return sum(s.epoch for s in states if s.state != "waiting")


def progress_lines(params: dict, runs_root: str | Path) -> list[str]:
    """One line per stage, then the estimate of the time left from the runs' own speeds."""
    return describe(run_states(params, runs_root))


def describe(states: list[RunState], pace: float | None = None) -> list[str]:
    """The progress lines of these run states; the time left from ``pace`` (epochs a second over
    every run, as ``watch`` observes it) when given, else from the runs' own speeds."""
    specs = [s.spec for s in states]
    # A stage none of whose runs has started (the sweep may start before the tuning) is estimated
    # at the speed of the others: same network, same images per epoch.
    overall_rate = seconds_per_epoch(states)
    lines, work_left_s, total_epochs_left, unknown = [], 0.0, 0, False
    for stage in dict.fromkeys(spec.stage for spec in specs):
        in_stage = [s for s in states if s.spec.stage == stage]
        counts = {kind: sum(s.state == kind for s in in_stage) for kind in ("finished", "running", "stopped", "waiting")}
        lines.append(
            f"{stage}: {counts['finished']} of {len(in_stage)} runs finished, {counts['running']} running"
            + _epochs_of(in_stage, "running")
            + (f", {counts['stopped']} stopped" + _epochs_of(in_stage, "stopped") if counts["stopped"] else "")
            + f", {counts['waiting']} waiting"
        )
        rate = seconds_per_epoch(in_stage) or overall_rate
        epochs_left = sum(s.epochs - s.epoch for s in in_stage if s.state != "finished")
        total_epochs_left += epochs_left
        if epochs_left and rate is None:
            unknown = True
        elif epochs_left:
            work_left_s += epochs_left * rate
    slots = max(1, sum(s.state == "running" for s in states))
    if any(s.state == "stopped" for s in states):
        lines.append("stopped runs resume from their last checkpoint when the same command runs again")
    if total_epochs_left and pace:
        lines.append(f"time left: about {_duration(total_epochs_left / pace)} at the pace of the last minutes "
                     f"({pace * 60:.0f} epochs a minute over every run)")
    elif unknown:
        lines.append("time left: not known yet (no run has trained an epoch)")
    elif work_left_s:
        lines.append(f"time left: about {_duration(work_left_s / slots)} of training ({slots} at once)")
    else:
        lines.append("every run has finished")
    return lines


def _epochs_of(states: list[RunState], state: str) -> str:
    named = ", ".join(f"{s.spec.run_id} epoch {s.epoch}/{s.epochs}" for s in states if s.state == state)
    return f" ({named})" if named else ""


def observed_pace(seen: list[tuple[float, int]]) -> float | None:
    """Epochs a second from ``(time, epochs trained)`` snapshots, over the latest PACE_WINDOW_S."""
    latest_time, latest_epochs = seen[-1]
    window = [(t, e) for t, e in seen if latest_time - t <= PACE_WINDOW_S]
    first_time, first_epochs = window[0]
    if latest_time <= first_time or latest_epochs <= first_epochs:
        return None
    return (latest_epochs - first_epochs) / (latest_time - first_time)


def watch(params: dict, runs_root: str | Path, every_s: float, echo=print, clock=time.monotonic,
          sleep=time.sleep) -> None:
    """Print the progress every ``every_s`` seconds until every run has finished (or interrupted)."""
    seen: list[tuple[float, int]] = []
    while True:
        states = run_states(params, runs_root)
        seen.append((clock(), epochs_trained(states)))
        lines = describe(states, observed_pace(seen))
        echo(f"[progress {time.strftime('%H:%M:%S')}] " + " | ".join(lines))
        if lines[-1] == "every run has finished":
            return
        sleep(every_s)
