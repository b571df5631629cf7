"""Training runs: the entry point :func:`train_runs` and the pack loop.

Several configurations train as one pack (mixstudy.train.trainer, mixstudy.model.packing; one alone is a plain
run), each seeded, resumable (mixstudy.train.checkpoint), evaluated (mixstudy.train.evaluation) and written
atomically to its own locked folder (mixstudy.train.run_writer, which lists a run folder's files).

The pack loop looks :func:`train_epoch`, :func:`save_resume_point` and (for ``progress.json``)
:func:`write_json` up in this module, so a test may replace them here
(``monkeypatch.setattr(training, "train_epoch", ...)``).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from mixstudy.data import engine
from mixstudy.train.checkpoint import resumed_or_new_members, save_resume_point
from mixstudy.core.config import config_hash
from mixstudy.data.subsets import StudyData
from mixstudy.core.errors import DivergedError, Interrupted
from mixstudy.train.evaluation import (
    best_validation_metrics,
    check_validation_split,
    evaluate_all,
    evaluate_during_training,
    limit_test_set,
)
from mixstudy.core.fileio import write_json
from mixstudy.model.packing import check_packable
from mixstudy.runs.run_folder import PROGRESS_FILE
from mixstudy.core.provenance import cpu_bf16_unit, provenance
from mixstudy.train.run_writer import (
    check_run_folder_path,
    clear_other_run,
    kept_record,
    locked_run_folder,
    refuse_foreign_folder,
    run_logs,
    write_failure,
    write_finished_run,
)
from mixstudy.train.trainer import PackedTrainer, Trainer, check_run_config, train_epoch, training_precision

log = logging.getLogger(__name__)

# How much faster `compute.amp: on` (bf16 autocast) trains a network than float32 on a CPU with a bf16
# unit, measured per epoch (benchmarks/bf16_cost.py; docs/performance.md, "bf16 on the CPU").
BF16_SPEEDUP = {("cnn13", "amx_bf16"): 4.0, ("cnn13", "avx512_bf16"): 1.8}


def bf16_hint(network: str, precision: str, device: torch.device, unit: str | None) -> str | None:
    """The line a float32 CPU run logs at its start where bf16 is measured faster on this CPU's bf16 unit."""
    speedup = BF16_SPEEDUP.get((network, unit))
    if precision != "float32" or device.type != "cpu" or speedup is None:
        return None
    return (f"this CPU has a bf16 unit ({unit}): compute.amp: on trains {network} about {speedup:g}x faster here "
            "than float32 (docs/performance.md); bf16 is recorded in the run, not part of its identity")


def train_runs(
    configs: list[dict],
    data: StudyData,
    out_dirs: list[str | Path],
    progress: str = "auto",
    on_diverge: str = "error",
    replace: bool = False,
) -> list[dict]:
    """Train several configurations as one pack (one alone is a plain run); write each run folder.

    Each run's folder is exactly what it would be had it trained alone: its own resume points,
    history, weights and metrics. A run whose loss turns non-finite is marked failed and stops
    learning; the others finish. With ``on_diverge="error"`` failed runs then raise.

    Each folder is locked while it is written (a second writer is refused). A folder that already
    holds a finished, intact run of the same training configuration and subset is kept as it is
    (its record is returned, nothing is trained); one that holds a finished run of another
    configuration, or that does not hold a mixstudy run at all, is refused unless ``replace``.
    """
    for config in configs:
        check_run_config(config)
        check_validation_split(config, data)
    check_packable(configs)
    device = engine.resolve_device(configs[0]["compute"]["device"])  # before anything is written
    out_dirs = [Path(out_dir) for out_dir in out_dirs]
    for out_dir in out_dirs:
        check_run_folder_path(out_dir)
        if not replace:
            refuse_foreign_folder(out_dir)
    with ExitStack() as locks:
        for out_dir in out_dirs:
            locks.enter_context(locked_run_folder(out_dir))
        kept = {i: kept_record(out_dirs[i], configs[i], data.subset_sha256) for i in range(len(configs))}
        todo = [i for i, record in kept.items() if record is None]
        for i in todo:
            clear_other_run(out_dirs[i], configs[i], data.subset_sha256, replace)
        trained = []
        if todo:
            todo_dirs = [out_dirs[i] for i in todo]
            with run_logs(todo_dirs):
                trained = _train_pack([configs[i] for i in todo], data, todo_dirs, device, progress, on_diverge)
    records = dict(kept)
    records.update(zip(todo, trained))
    return [records[i] for i in range(len(configs))]


# --- the pack loop --------------------------------------------------------------------------


@dataclass
class _PackRun:
    """What the pack loop works on: the pack, its data on the device, its folders and its clock."""

    pack: PackedTrainer
    forward: object  # the packed network, compiled when asked
    data: StudyData
    x_train: torch.Tensor
    y_train: torch.Tensor
    normalise: torch.nn.Module
    device: torch.device
    out_dirs: list[Path]
    labels: list[str]
    origin: dict  # provenance: the code that starts the run
    started: float
    prior_seconds: float  # training seconds before a resume

    def elapsed(self) -> float:
        return round(self.prior_seconds + time.perf_counter() - self.started, 3)


def _train_pack(
    configs: list[dict],
    data: StudyData,
    out_dirs: list[Path],
    device: torch.device,
    progress: str,
    on_diverge: str,
) -> list[dict]:
    """Train the runs as one pack and write each folder (the folders are locked and checked)."""
    run = _start_pack(configs, data, out_dirs, device)
    pack, train = run.pack, configs[0]["train"]
    epochs, checkpoint_every = train["epochs"], train["checkpoint_every"]
    label = run.labels[0] if pack.size == 1 else f"pack of {pack.size}"
    reporter = EpochReporter(epochs, pack.epoch, progress, label)
    saved = pack.epoch  # the epoch the resume points hold (0: none yet)
    try:
        while pack.epoch < epochs and any(m.failure is None for m in pack.members):
            reporter.update(_pack_epoch(run, epochs))
            if checkpoint_every and pack.epoch % checkpoint_every == 0 and pack.epoch < epochs:
                for index, (member, out_dir) in enumerate(zip(pack.members, out_dirs)):
                    if member.failure is None:
                        save_resume_point(pack.sync(index), out_dir)
                saved = pack.epoch
    except KeyboardInterrupt:
        raise Interrupted(stopped_where(out_dirs, pack.epoch, epochs, saved)) from None
    finally:
        reporter.close()
    return _finish_pack(run, on_diverge)


def stopped_where(out_dirs: list[Path], done: int, epochs: int, saved: int) -> str:
    """Where Ctrl-C stopped a run (or pack), and where the same command will go on from."""
    folders = ", ".join(str(out_dir) for out_dir in out_dirs)
    resumes = f"it resumes from its resume point at epoch {saved}" if saved else "it has no resume point yet and starts again from epoch 1"
    return f"stopped by Ctrl-C in epoch {done + 1} of {epochs} of {folders} ({done} done; {resumes})"


def _start_pack(configs: list[dict], data: StudyData, out_dirs: list[Path], device: torch.device) -> _PackRun:
    """The pack (resumed where its runs have resume points) and its data on the device."""
    first = configs[0]
    data = limit_test_set(data, first["evaluation"]["test_limit"])
    compute = first["compute"]
    torch.set_num_threads(compute["threads"])
    started = time.perf_counter()
    precision = training_precision(device, compute["amp"])
    origin = provenance(device, data.subset_sha256, data.data_manifest, precision)  # the code that starts the run

    x_train = engine.to_float(engine.to_device_images(data.x_train, device), compute["channels_last"])
    y_train = torch.from_numpy(data.y_train).to(device)
    normalise = engine.Normalise(data.mean, data.std).to(device)

    pack = PackedTrainer.of(resumed_or_new_members(configs, out_dirs, device, data.num_classes))
    prior_seconds = pack.members[0].history[-1]["elapsed_s"] if pack.members[0].history else 0.0
    hint = bf16_hint(first["model"]["name"], precision, device, origin["cpu_bf16_unit"])
    if hint:  # once the runs are read: a run refused before it starts logs nothing
        log.info(hint)
    forward = torch.compile(pack.model) if compute["compile"] else pack.model
    labels = [out_dir.name if len(out_dirs) == 1 else str(out_dir) for out_dir in out_dirs]
    if pack.size > 1:
        log.info("training a pack of %d runs: %s", pack.size, ", ".join(labels))
    return _PackRun(
        pack=pack, forward=forward, data=data, x_train=x_train, y_train=y_train, normalise=normalise, device=device,
        out_dirs=out_dirs, labels=labels, origin=origin, started=started, prior_seconds=prior_seconds,
    )


def _pack_epoch(run: _PackRun, epochs: int) -> dict[str, dict]:
    """Train one epoch; each member still learning gets its history row (or is marked failed).
    Returns the rows by run label, for the reporter."""
    pack = run.pack
    lr = pack.optimizer.param_groups[0]["lr"]
    rows = train_epoch(pack, run.forward, run.x_train, run.y_train, run.normalise)
    pack.scheduler.step()
    pack.epoch += 1
    updates = {}
    for index, (member, row) in enumerate(zip(pack.members, rows)):
        if member.failure is not None:
            continue
        row = {"epoch": pack.epoch, **row, "lr": lr}
        if not math.isfinite(row["train_loss"]):
            member.failure = (
                f"training loss became {row['train_loss']} at epoch {row['epoch']}; lower train.lr or "
                "check the mixing settings"
            )
            pack.sync(index)
            log.error("%s: %s", run.labels[index], member.failure)
            continue
        member.epoch = pack.epoch
        evaluate_during_training(pack, index, row, run.data, run.normalise, run.device, final=pack.epoch == epochs)
        row["elapsed_s"] = run.elapsed()
        member.history.append(row)
        updates[run.labels[index]] = row
        write_json(run.out_dirs[index] / PROGRESS_FILE, {"epoch": row["epoch"], "epochs": epochs, "elapsed_s": row["elapsed_s"]})
    return updates


def _finish_pack(run: _PackRun, on_diverge: str) -> list[dict]:
    """Evaluate and write every member's folder; with ``on_diverge="error"`` failed runs then raise."""
    pack, out_dirs = run.pack, run.out_dirs
    extra = {"provenance": run.origin}
    if pack.size > 1:
        extra["pack"] = {"size": pack.size, "runs": [str(d) for d in out_dirs]}
    records, raised = [], []
    for index, (member, out_dir) in enumerate(zip(pack.members, out_dirs)):
        if member.failure is None:
            pack.sync(index)
        record = _finish_run(member, run, out_dir, extra, on_diverge)
        if member.failure and on_diverge == "error":
            raised.append(f"{out_dir}: {member.failure}")
        records.append(record)
    if raised:
        raise DivergedError("; ".join(raised))
    return records


def _finish_run(member: Trainer, run: _PackRun, out_dir: Path, extra: dict, on_diverge: str) -> dict:
    """Evaluate a member and write its run folder (metrics.json last: its presence marks a finished run)."""
    failure = member.failure
    record = {
        "status": "failed" if failure else "ok",
        "error": failure,
        "config": member.config,
        "config_hash": config_hash(member.config),
        "metrics": None,
        "reliability": None,
        "wall_time_s": run.elapsed(),
        "epochs_completed": member.epoch,
        **extra,
    }
    if failure is None:
        record["metrics"], record["reliability"] = evaluate_all(member.model, run.data, run.normalise, member.config, member.device)
        if member.best is not None:
            record["metrics"]["test_best_val"] = best_validation_metrics(member, run.data, run.normalise)
        record["wall_time_s"] = run.elapsed()
    elif on_diverge == "error":
        write_failure(out_dir, record)
        return record
    write_finished_run(out_dir, record, member.history, {"config": member.config, "model": member.model.state_dict()})
    if failure:
        log.error("%s: run FAILED: %s (recorded in metrics.json with status 'failed')", out_dir, failure)
    return record


class EpochReporter:
    """A progress bar for a person at a terminal; one log line per run and epoch under a pipeline."""

    def __init__(self, total: int, start: int, mode: str, label: str):
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=label, unit="epoch", dynamic_ncols=True)

    def update(self, rows: dict[str, dict]) -> None:
        """``rows``: this epoch's history row of each run still learning, by run label."""
        if self.bar is not None:
            losses = [row["train_loss"] for row in rows.values()]
            loss = f"{losses[0]:.4f}" if len(losses) == 1 else f"{min(losses):.4f}..{max(losses):.4f}"
            lr = next(iter(rows.values()))["lr"] if rows else float("nan")
            self.bar.set_postfix(loss=loss, lr=f"{lr:.4g}")
            self.bar.update(1)
            return
        for label, row in rows.items():
            extra = f" test_acc={row['test_acc']:.4f}" if "test_acc" in row else ""
            log.info(
                "%s epoch %d loss=%.4f acc=%.4f lr=%.5g%s",
                label, row["epoch"], row["train_loss"], row["train_acc"], row["lr"], extra,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
