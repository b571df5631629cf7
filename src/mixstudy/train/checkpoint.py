"""Checkpoints: a run's resume point (``resume.pt``) and its finished network (``model.pt``).

* :func:`torch_bytes` - ``torch.save`` into memory, equal content giving equal bytes;
* :func:`save_resume_point`, :func:`try_resume`, :func:`resumed_or_new_members` - a run's
  whole state (weights, optimizer, scheduler, every random state, epoch), replaced atomically
  every ``train.checkpoint_every`` epochs; a restarted run (or pack) continues from it;
* :func:`load_checkpoint` - a trained network rebuilt from ``model.pt``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

from mixstudy.core.config import config_hash
from mixstudy.core.errors import DataError
from mixstudy.core.fileio import write_bytes
from mixstudy.model.models import build_model
from mixstudy.runs.run_folder import RESUME_FILE
from mixstudy.train.trainer import Trainer, make_trainer

log = logging.getLogger(__name__)


def torch_bytes(obj) -> bytes:
    """``torch.save`` into memory: the archive's inner folder gets a fixed name ("archive"), not the
    name of a random temporary file, so equal content gives equal bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_resume_point(trainer: Trainer, out_dir: Path) -> None:
    write_bytes(out_dir / RESUME_FILE, torch_bytes(trainer.state_dict()))


def try_resume(trainer: Trainer, out_dir: Path) -> bool:
    path = out_dir / RESUME_FILE
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location=trainer.device, weights_only=False)
    except Exception as err:  # truncated or foreign files fail in zip or pickle loading
        raise DataError(f"{path} cannot be read ({type(err).__name__}); delete it to train the run from the start") from err
    if not isinstance(state, dict) or "config_hash" not in state:
        raise DataError(f"{path} is not a mixstudy resume point; delete it to train the run from the start")
    if state.get("config_hash") != config_hash(trainer.config):
        log.warning("%s belongs to a different configuration; starting from scratch", path)
        path.unlink()
        return False
    trainer.load_state_dict(state)
    log.info("resuming %s from epoch %d", out_dir, trainer.epoch)
    return True


def resumed_or_new_members(configs: list[dict], out_dirs: list[Path], device: torch.device, num_classes: int) -> list[Trainer]:
    """Members from their resume points when all have one at the same epoch, else fresh."""
    members = [make_trainer(config, device, num_classes) for config in configs]
    resumed = [try_resume(member, out_dir) for member, out_dir in zip(members, out_dirs)]
    if not any(resumed):
        return members
    if all(resumed) and len({member.epoch for member in members}) == 1:
        return members
    log.warning(
        "the runs of this pack have resume points at different epochs (%s); training them all from scratch",
        ", ".join(f"{d}: {m.epoch if r else 'none'}" for d, m, r in zip(out_dirs, members, resumed)),
    )
    return [make_trainer(config, device, num_classes) for config in configs]


def head_outputs(state_dict: dict) -> int:
    """A saved network's number of classes: the rows of its last weight matrix (the classifier;
    model.pt files do not record it)."""
    return next(weight.shape[0] for weight in reversed(state_dict.values()) if weight.ndim == 2)


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from ``model.pt``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give the model.pt inside it (e.g. {path / 'model.pt'})")
    if not path.is_file():
        raise DataError(f"{path} does not exist; train the run first")
    try:
        saved = torch.load(path, map_location=device or "cpu", weights_only=False)
        model = build_model(saved["config"]["model"], head_outputs(saved["model"]))
        model.load_state_dict(saved["model"])
    except Exception as err:  # truncated or foreign files fail in zip, pickle or state-dict loading
        raise DataError(f"{path} is not a complete mixstudy checkpoint ({err})") from err
    return model, saved["config"]
