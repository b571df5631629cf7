"""A run folder: the name of every file it holds, defined here once, and its record read and checked.

A run folder (``<runs root>/<run id>``, :class:`mixstudy.runs.study.RunSpec`) holds, when complete:
  metrics.json  - status, the full resolved configuration, metrics, provenance, wall time: the record
  history.tsv   - per-epoch train loss/accuracy and learning rate; validation and test accuracy
  model.pt      - final weights and configuration, loadable by ``mixstudy evaluate``
  train.log     - the mixstudy log lines of every process that trained it
and after ``mixstudy evaluate`` its ``evaluation.json``; a run whose weights were left out on
purpose ``weights-left-out.json`` instead of model.pt. While it trains it holds ``resume.pt``,
``progress.json`` and its lock; a run that diverged under ``on_diverge="error"`` leaves ``failure.json``.

A finished run is recognised by content (:func:`unfinished_reason`): its recorded training hash and
the sha256s of its files, by the training command, the workflow and the aggregation alike. Its
files are written by :mod:`mixstudy.train.run_writer`.
"""

from __future__ import annotations

import json
from pathlib import Path

from mixstudy.core.errors import ConfigError
from mixstudy.core.fileio import sha256_bytes, sha256_file, write_json
from mixstudy.core.provenance import precision_of
from mixstudy.runs.study import training_hash

# --- the files of a run folder --------------------------------------------------------------

METRICS_FILE = "metrics.json"  # the run's record; written last, its presence marks a finished run
HISTORY_FILE = "history.tsv"
WEIGHTS = "model.pt"
LOG_FILE = "train.log"
RESUME_FILE = "resume.pt"  # a run's resumable checkpoint (mixstudy.train.checkpoint)
PROGRESS_FILE = "progress.json"  # the running view of a run (mixstudy.runs.progress)
FAILURE_FILE = "failure.json"  # a run that diverged under on_diverge="error"
LOCK_FILE = ".train.lock"  # one writer per folder (mixstudy.train.run_writer)
# A finished run's model.pt measured after training (`mixstudy evaluate`: the theory section's
# input-gradient norms and test-time transformation). Not part of the run's training identity: it
# is recomputed from model.pt whenever the model or the `theory` settings change.
EVALUATION_FILE = "evaluation.json"
# A finished run's weights left out of a repository on purpose (12 MB a run of the study's
# network): this file, written by `mixstudy leave-out-weights` once the run's evaluation.json was
# computed from them, records the sha256 of the model.pt left out. Such a run stays finished (never
# retrained); a model.pt that is there is checked as always, and a model.pt gone without this file,
# or with one naming other weights, is damaged.
WEIGHTS_LEFT_OUT_FILE = "weights-left-out.json"

RUN_OUTPUTS = (METRICS_FILE, HISTORY_FILE, WEIGHTS)
# What the workflow declares as a training job's outputs. model.pt is checked by content instead
# (`unfinished_reason`: a run with a lost or damaged model.pt is rebuilt), because a finished run's
# weights may be left out on purpose, and Snakemake would retrain a job with any declared output missing.
WORKFLOW_OUTPUTS = (METRICS_FILE, HISTORY_FILE)

# Every file mixstudy writes in a run folder, and those only a run begun or trained leaves there
# (its log, resume point, progress or failure): what tells a run folder from a folder of one's own.
RUN_FOLDER_FILES = (*RUN_OUTPUTS, LOG_FILE, RESUME_FILE, PROGRESS_FILE, FAILURE_FILE, EVALUATION_FILE, WEIGHTS_LEFT_OUT_FILE)
RUN_BEGUN_FILES = (LOG_FILE, RESUME_FILE, PROGRESS_FILE, FAILURE_FILE)
# The files training writes atomically: a killed write's temporary is removed under the lock.
TRAINING_WRITES = (*RUN_OUTPUTS, RESUME_FILE, PROGRESS_FILE, FAILURE_FILE)


# --- the record -------------------------------------------------------------------------------

def recorded_training_hash(record: dict) -> str:
    """The training hash of a finished run's metrics.json (runs of every version record both parts)."""
    return training_hash(record.get("config") or {}, (record.get("provenance") or {}).get("subset_sha256"))


def recorded_precision(record: dict) -> str:
    """The precision a run trained in: recorded since runs record it; before, what its
    ``compute.amp`` resolved to on its device (float32 for every CPU run that did not ask for bf16)."""
    provenance = record.get("provenance") or {}
    if provenance.get("precision"):
        return provenance["precision"]
    amp = ((record.get("config") or {}).get("compute") or {}).get("amp", "off")
    return precision_of(amp, str(provenance.get("device", "cpu")).split(":")[0])


def read_run_record(folder: str | Path) -> dict:
    """A run folder's metrics.json; ConfigError naming the file when it is unreadable."""
    path = Path(folder) / METRICS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is empty or damaged ({err}); delete it and train the run again") from err
    if not isinstance(record, dict) or "config" not in record or "status" not in record:
        raise ConfigError(f"{path} is not a run record; delete it and train the run again")
    return record


def weights_left_out(folder: str | Path, record: dict) -> bool:
    """Whether the run's model.pt is absent on purpose: the left-out file names the very weights
    its metrics.json records."""
    folder = Path(folder)
    if (folder / WEIGHTS).exists():
        return False
    try:
        left_out = json.loads((folder / WEIGHTS_LEFT_OUT_FILE).read_text())
        return left_out["sha256"] == (record.get("files") or {})[WEIGHTS]
    except (OSError, ValueError, KeyError, TypeError):
        return False


# A digest of the record over its other fields, written with it (runs trained before it existed
# have none and are read as before): a hand edit of any number cannot keep the two consistent.
RECORD_DIGEST = "record_sha256"


def record_digest(record: dict) -> str:
    """The sha256 of a record's content without its digest, in one canonical JSON form (keys
    sorted, no spaces), taken from the record as JSON reads it back."""
    body = {key: value for key, value in json.loads(json.dumps(record)).items() if key != RECORD_DIGEST}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def with_record_digest(record: dict) -> dict:
    """``record`` (changed in place) with its digest, the last field written."""
    record.pop(RECORD_DIGEST, None)
    record[RECORD_DIGEST] = record_digest(record)
    return record


def record_tampering(record: dict) -> str | None:
    """Why a record cannot be believed: it records a digest its content does not have (None: it
    has none, or its own)."""
    recorded = record.get(RECORD_DIGEST)
    if recorded is None or recorded == record_digest(record):
        return None
    return f"metrics.json was changed after training (its content does not match its {RECORD_DIGEST})"


def _output_state(folder: Path, name: str, recorded: dict) -> str | None:
    """One output of a finished run against its record: ``missing``, ``empty``, ``differs`` or None (intact)."""
    path = folder / name
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    if name in recorded and sha256_file(path) != recorded[name]:
        return "differs"
    return None


def damaged_outputs(folder: str | Path, record: dict) -> list[str]:
    """Outputs of a finished run that are missing, empty, or differ from the sha256 its metrics.json
    records (weights left out on purpose are neither missing nor damaged)."""
    folder, recorded = Path(folder), record.get("files") or {}
    states = {name: _output_state(folder, name, recorded) for name in RUN_OUTPUTS[1:]}
    if states[WEIGHTS] == "missing" and weights_left_out(folder, record):
        states[WEIGHTS] = None
    return [
        f"{name} is missing or empty" if state in ("missing", "empty") else f"{name} differs from the sha256 in metrics.json"
        for name, state in states.items()
        if state is not None
    ]


def altered_outputs(folder: str | Path, record: dict) -> list[str]:
    """Outputs of a finished run that are there but are not what its metrics.json records: empty,
    or of another sha256. A file that is not there is not judged here (:func:`damaged_outputs` is)."""
    folder, recorded = Path(folder), record.get("files") or {}
    states = {name: _output_state(folder, name, recorded) for name in RUN_OUTPUTS[1:]}
    return [
        f"{name} is empty" if state == "empty" else f"{name} differs from the sha256 in metrics.json"
        for name, state in states.items()
        if state in ("empty", "differs")
    ]


def integrity_problems(folder: str | Path, record: dict) -> list[str]:
    """What a finished run's folder holds that its record does not claim, for a reader of its
    results (the aggregation): a record changed after training, an output file damaged. Files left
    out of a folder (committed runs without their weights) are not problems here."""
    tampered = record_tampering(record)
    return ([tampered] if tampered else []) + altered_outputs(folder, record)


def leave_out_weights(folder: str | Path, theory_settings: dict) -> dict:
    """Record that a finished run's model.pt will be left out (``mixstudy leave-out-weights``): only
    for an intact run whose evaluation.json was computed from these weights (with these ``theory``
    settings), since nothing can measure the model again once it is gone. Returns the record written."""
    folder = Path(folder)
    reason = unfinished_reason(folder, None)
    if reason is not None:
        raise ConfigError(f"{folder} does not hold a finished, intact run ({reason}); its weights cannot be left out")
    record = read_run_record(folder)
    if not (folder / WEIGHTS).is_file():
        raise ConfigError(f"{folder}: its weights are already left out ({WEIGHTS_LEFT_OUT_FILE})")
    if not evaluation_is_current(folder, theory_settings):
        raise ConfigError(
            f"{folder}: compute its {EVALUATION_FILE} from {WEIGHTS} first (mixstudy evaluate --runs-root ...), "
            "then leave the weights out"
        )
    left_out = {"sha256": record["files"][WEIGHTS], "size_bytes": (folder / WEIGHTS).stat().st_size,
                "why": "weights not committed; evaluation.json was computed from them"}
    write_json(folder / WEIGHTS_LEFT_OUT_FILE, left_out)
    return left_out


# `theory` settings added after evaluations were recorded, at the value that computes what the code
# computed before they existed (an evaluation.json without one measured nothing of it).
THEORY_SETTINGS_ADDED_LATER = {"between_pairs": 0}


def theory_settings_as_read(settings) -> dict | None:
    """``theory`` settings with those added later filled in at their earlier behaviour."""
    return {**THEORY_SETTINGS_ADDED_LATER, **settings} if isinstance(settings, dict) else None


def evaluation_is_current(folder: str | Path, theory_settings: dict) -> bool:
    """Whether the folder's evaluation.json was computed from its model.pt (the sha256 its
    metrics.json records) with these ``theory`` settings (a setting it predates: at its earlier behaviour)."""
    folder = Path(folder)
    try:
        evaluation = json.loads((folder / EVALUATION_FILE).read_text())
        model_sha256 = read_run_record(folder)["files"][WEIGHTS]
        recorded = evaluation["provenance"]
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return False
    return (recorded.get("model_sha256") == model_sha256
            and theory_settings_as_read(recorded.get("theory")) == theory_settings_as_read(theory_settings))


def unfinished_reason(folder: str | Path, expected_hash: str | None) -> str | None:
    """Why a folder does not hold a finished, intact run with this training hash (None: it does).

    ``expected_hash`` None accepts any configuration (only intactness is checked).
    """
    folder = Path(folder)
    if not (folder / METRICS_FILE).is_file():
        return "no metrics.json"
    try:
        record = read_run_record(folder)
    except ConfigError as err:
        return str(err)
    if expected_hash is not None and recorded_training_hash(record) != expected_hash:
        return "it holds a run of another training configuration or subset"
    tampered = record_tampering(record)
    damaged = ([tampered] if tampered else []) + damaged_outputs(folder, record)
    return "; ".join(damaged) if damaged else None
