"""Writing a run folder (its files are named in mixstudy.runs.run_folder): one writer at a time,
kept or cleared before training, its logs, its finished files.

* :func:`check_run_folder_path`, :func:`locked_run_folder` - one writer per folder;
* :func:`refuse_foreign_folder` - a folder that does not hold a mixstudy run is not written into;
* :func:`kept_record`, :func:`clear_other_run` - a finished run kept, another configuration's refused;
* :func:`run_logs` - this process's log lines appended to each run's ``train.log``;
* :func:`history_tsv`, :func:`write_finished_run`, :func:`write_failure` - a run's files, each
  written atomically, ``metrics.json`` last (its presence marks a finished run).
"""

from __future__ import annotations

import csv
import io
import logging
from contextlib import contextmanager
from pathlib import Path

from mixstudy.core.errors import ConfigError, MixstudyError
from mixstudy.core.fileio import is_temporary, remove_temporaries, sha256_bytes, write_bytes, write_json
from mixstudy.runs import study
from mixstudy.runs.run_folder import (
    FAILURE_FILE,
    HISTORY_FILE,
    LOCK_FILE,
    LOG_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    RESUME_FILE,
    RUN_BEGUN_FILES,
    RUN_FOLDER_FILES,
    RUN_OUTPUTS,
    TRAINING_WRITES,
    WEIGHTS,
    read_run_record,
    recorded_training_hash,
    unfinished_reason,
    with_record_digest,
)
from mixstudy.train.checkpoint import torch_bytes

log = logging.getLogger(__name__)


def check_run_folder_path(folder: Path) -> None:
    """A run folder must be a folder, under folders: one clear error instead of a traceback later."""
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"run folder {folder}: {path} is a file, not a folder; choose another --out")


def foreign_content(folder: Path) -> str | None:
    """What shows that ``folder`` does not hold a mixstudy run (None: it is not there or empty, its
    metrics.json is a run record, or it holds only a run's files, among them a log, resume point,
    progress or failure of a run begun). Temporary files of mixstudy's writes and its lock do not count."""
    if not folder.is_dir():
        return None
    names = sorted(path.name for path in folder.iterdir() if path.name != LOCK_FILE and not is_temporary(path.name))
    if not names:
        return None
    if (folder / METRICS_FILE).is_file():
        try:
            read_run_record(folder)
            return None
        except ConfigError:
            pass
    foreign = [name for name in names if name not in RUN_FOLDER_FILES]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"it holds {shown}, which mixstudy does not write"
    if any(name in RUN_BEGUN_FILES for name in names):
        return None  # a run begun here (its record, if any, damaged): cleared and trained again
    if METRICS_FILE in names:
        return "its metrics.json is not a mixstudy run record"
    return f"it holds {', '.join(names)} but no record, log or resume point of a mixstudy run"


def refuse_foreign_folder(folder: Path) -> None:
    """Never write into a folder that does not hold a mixstudy run without ``--replace``."""
    why = foreign_content(folder)
    if why:
        raise MixstudyError(
            f"{folder} does not hold a mixstudy run ({why}); choose another --out, or pass --replace to train into it"
        )


@contextmanager
def locked_run_folder(folder: Path):
    """Hold the run folder's lock (an OS lock on a file in it: a crashed writer cannot leave it held);
    the temporary files of a killed writer's atomic writes go once it is held."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MixstudyError(
            f"{folder} is being written by another mixstudy process; wait for it to finish or choose another --out"
        ) from None
    try:
        removed = remove_temporaries(folder / name for name in TRAINING_WRITES)
        if removed:
            log.info("%s: removed %s, left by a killed write", folder, ", ".join(path.name for path in removed))
        yield
    finally:
        (folder / LOCK_FILE).unlink(missing_ok=True)  # while held: a waiter on the old file sees it unlinked and retries
        lock.release()


def kept_record(folder: Path, config: dict, subset_sha256: str) -> dict | None:
    """The record of a finished, intact run of this very training in ``folder``, else None."""
    if unfinished_reason(folder, study.training_hash(config, subset_sha256)) is not None:
        return None
    log.info("%s: already finished with this training configuration and subset; kept as it is", folder)
    return read_run_record(folder)


def clear_other_run(folder: Path, config: dict, subset_sha256: str, replace: bool) -> None:
    """Before training: a finished run of another configuration is refused (or removed with
    ``replace``); outputs of an unfinished or damaged run of this one are removed."""
    metrics = folder / METRICS_FILE
    if not metrics.is_file():
        return
    try:
        other = recorded_training_hash(read_run_record(folder)) != study.training_hash(config, subset_sha256)
    except ConfigError:
        other = False  # a damaged record: nothing finished to protect
    if other and not replace:
        raise MixstudyError(
            f"{folder} holds a finished run of another configuration; choose another --out, "
            "or pass --replace to train over it"
        )
    log.warning("%s: replacing its %s run", folder, "other" if other else "damaged")
    for name in (*RUN_OUTPUTS, FAILURE_FILE, LOG_FILE):
        (folder / name).unlink(missing_ok=True)


@contextmanager
def run_logs(out_dirs: list[Path]):
    """Append this process's mixstudy log lines to each trained run's train.log (a pack's runs share them)."""
    logger = logging.getLogger("mixstudy")
    handlers = [logging.FileHandler(out_dir / LOG_FILE, delay=True) for out_dir in out_dirs]  # opened at the first line
    level = logger.level
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)


def history_columns(history: list[dict]) -> list[str]:
    """Every column any epoch has, in order of first appearance (optional ones come and go)."""
    columns = {"epoch": None}
    for row in history:
        columns.update(dict.fromkeys(row))
    return list(columns)


def history_tsv(history: list[dict]) -> str:
    """One row per epoch; an epoch without an optional column (test or validation) leaves it empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=history_columns(history), restval="", delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_finished_run(out_dir: Path, record: dict, history: list[dict], model: dict) -> None:
    """Write a finished (or failed and recorded) run: history.tsv, model.pt (``model``: its config
    and weights), then metrics.json (``record``, given the other files' sha256 under ``files`` and,
    last, the digest of its own content, ``record_sha256``);
    the files of a run in progress go."""
    history_bytes = history_tsv(history).encode()
    model_bytes = torch_bytes(model)
    record["files"] = {HISTORY_FILE: sha256_bytes(history_bytes), WEIGHTS: sha256_bytes(model_bytes)}
    with_record_digest(record)  # a later hand edit of the record is seen (run_folder.record_tampering)
    write_bytes(out_dir / HISTORY_FILE, history_bytes)
    write_bytes(out_dir / WEIGHTS, model_bytes)
    write_json(out_dir / METRICS_FILE, record)
    (out_dir / RESUME_FILE).unlink(missing_ok=True)
    (out_dir / PROGRESS_FILE).unlink(missing_ok=True)
    (out_dir / FAILURE_FILE).unlink(missing_ok=True)


def write_failure(out_dir: Path, record: dict) -> None:
    """A diverged run that raises: its record in failure.json; its resume point stays, metrics.json is not written."""
    write_json(out_dir / FAILURE_FILE, record)
    (out_dir / PROGRESS_FILE).unlink(missing_ok=True)
