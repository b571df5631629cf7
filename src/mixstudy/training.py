"""One training run: seeded, resumable, written atomically to its own folder.

A run folder holds, when complete:
  metrics.json  - status, the full resolved configuration, metrics, provenance, wall time
  history.tsv   - per-epoch train loss/accuracy and learning rate (and test accuracy if asked)
  model.pt      - final weights and configuration, loadable by ``mixstudy evaluate``
While it runs, ``resume.pt`` (weights, optimizer, scheduler, every random state, epoch) is
replaced atomically every ``train.checkpoint_every`` epochs; a restarted run continues from it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mixstudy import engine
from mixstudy.config import config_hash
from mixstudy.data import StudyData
from mixstudy.errors import ConfigError, DivergedError
from mixstudy.fileio import atomic_path, write_json, write_text
from mixstudy.metrics import fgsm_perturb, summarise
from mixstudy.mixing import Mixer
from mixstudy.models import build_model, mixing_points
from mixstudy.provenance import provenance

log = logging.getLogger(__name__)

SCHEDULERS = ("step", "cosine", "warm_restarts")
RESUME_FILE = "resume.pt"


def build_scheduler(optimizer: torch.optim.Optimizer, sched: dict):
    """The study's three schedulers, stepped once per epoch."""
    name = sched["name"]
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=sched["step_size"], gamma=sched["gamma"])
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=sched["t_max"], eta_min=sched["eta_min"])
    if name == "warm_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=sched["t_0"], T_mult=sched["t_mult"], eta_min=sched["eta_min"]
        )
    raise ConfigError(f"train.scheduler.name: unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")


def build_optimizer(model: torch.nn.Module, train: dict) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=train["lr"],
        momentum=train["momentum"],
        nesterov=train.get("nesterov", False),
        weight_decay=train["weight_decay"],
    )


def check_run_config(config: dict) -> None:
    """Checks a schema cannot make: mixing points exist in the network."""
    points = mixing_points(config["model"]["name"])
    mixing = config["mixing"]
    if mixing["alpha"] < 0:
        raise ConfigError(f"mixing.alpha: {mixing['alpha']} is negative; alpha must be >= 0")
    bad = sorted(set(mixing.get("layers", [0])) - set(points))
    if bad:
        raise ConfigError(
            f"mixing.layers: point(s) {bad} do not exist in {config['model']['name']}; valid points are {list(points)}"
        )


@dataclass
class Seeds:
    """One run seed split into independent streams: init+dropout, data order+augmentation, mixing draws."""

    init: int
    data: int
    mixing: np.random.SeedSequence

    @classmethod
    def from_seed(cls, seed: int) -> "Seeds":
        init, data, mixing = np.random.SeedSequence(seed).spawn(3)
        return cls(int(init.generate_state(1)[0]), int(data.generate_state(1)[0]), mixing)


@dataclass
class Trainer:
    """Everything that changes while training, so it can be checkpointed as one object."""

    config: dict
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    mixer: Mixer
    data_gen: torch.Generator
    mix_rng: np.random.Generator
    epoch: int = 0
    history: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {
            "config_hash": config_hash(self.config),
            "epoch": self.epoch,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "data_gen": self.data_gen.get_state(),
            "mix_rng": self.mix_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.data_gen.set_state(state["data_gen"])
        self.mix_rng.bit_generator.state = state["mix_rng"]


def make_trainer(config: dict, device: torch.device) -> Trainer:
    seeds = Seeds.from_seed(config["seed"])
    torch.manual_seed(seeds.init)  # initialisation and dropout masks
    model = build_model(config["model"]).to(device)
    if config["compute"].get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config["train"])
    scheduler = build_scheduler(optimizer, config["train"]["scheduler"])
    data_gen = torch.Generator(device=device)
    data_gen.manual_seed(seeds.data)
    return Trainer(
        config=config,
        device=device,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        mixer=Mixer.from_params(config["mixing"]),
        data_gen=data_gen,
        mix_rng=np.random.Generator(np.random.PCG64(seeds.mixing)),
    )


def autocast_context(device: torch.device, amp: str):
    """bf16 autocast on CUDA when asked for (``auto`` or ``on``); CPU runs in float32."""
    if device.type == "cuda" and amp in ("auto", "on"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_epoch(trainer: Trainer, forward, x_train: torch.Tensor, y_train: torch.Tensor, normalise) -> dict:
    """One pass over the subset; loss and accuracy accumulate on the device (one sync per epoch)."""
    train = trainer.config["train"]
    augment = train.get("augment", {})
    trainer.model.train()
    order = torch.randperm(len(y_train), generator=trainer.data_gen, device=trainer.device)
    loss_sum = torch.zeros((), device=trainer.device)
    correct_sum = torch.zeros((), device=trainer.device)
    seen = 0
    amp = autocast_context(trainer.device, trainer.config["compute"].get("amp", "auto"))
    for index in engine.batches(order, train["batch_size"]):
        images = engine.augment(x_train[index], augment.get("crop_padding", 0), augment.get("flip", False), trainer.data_gen)
        labels = y_train[index]
        draw = trainer.mixer.draw(trainer.mix_rng, len(index), images.shape[-2:], trainer.device)
        targets = trainer.mixer.targets(labels, draw)
        with amp:
            if draw is None:
                logits = forward(normalise(images))
            else:
                logits = forward(normalise(images), mix_at=draw.point, mix=lambda h: trainer.mixer.mix(h, draw))
            loss = trainer.mixer.loss_fn(logits, targets)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct_sum += (logits.detach().argmax(1) == targets.argmax(1)).sum()
        seen += len(index)
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct_sum.item() / seen}


@torch.no_grad()
def predict(model, images: torch.Tensor, normalise, batch_size: int, amp_context=nullcontext, channels_last=False) -> torch.Tensor:
    """Logits for uint8 (or float) images, in large no-grad batches."""
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = engine.to_float(images[start : start + batch_size], channels_last)
        with amp_context():
            outputs.append(model(normalise(batch)).float().cpu())
    return torch.cat(outputs)


def fgsm_accuracy(model, images, labels, normalise, epsilon: float, batch_size: int, channels_last=False) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = engine.to_float(images[start : start + batch_size], channels_last)
        y = labels[start : start + batch_size]
        adversarial = fgsm_perturb(model, x, y, epsilon, normalise)
        with torch.no_grad():
            correct += (model(normalise(adversarial)).argmax(1) == y).sum().item()
    return correct / len(images)


def evaluate_split(model, images, labels, normalise, evaluation: dict, compute: dict, device) -> tuple[dict, dict]:
    batch_size = compute.get("eval_batch_size", 1000)
    channels_last = compute.get("channels_last", False)
    amp = lambda: autocast_context(device, compute.get("amp", "auto"))  # noqa: E731
    logits = predict(model, images, normalise, batch_size, amp, channels_last)
    metrics, reliability = summarise(logits, labels.cpu(), evaluation.get("ece_bins", 15))
    for epsilon in evaluation.get("fgsm_epsilons", []):
        metrics[f"fgsm_acc@{epsilon:g}"] = fgsm_accuracy(model, images, labels, normalise, epsilon, batch_size, channels_last)
    return metrics, reliability


class EpochReporter:
    """A progress bar for a person at a terminal; one log line per epoch under a pipeline."""

    def __init__(self, total: int, start: int, mode: str, label: str):
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = None
        self.label = label
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=label, unit="epoch", dynamic_ncols=True)

    def update(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{row['train_loss']:.4f}", lr=f"{row['lr']:.4g}")
            self.bar.update(1)
        else:
            extra = f" test_acc={row['test_acc']:.4f}" if "test_acc" in row else ""
            log.info(
                "%s epoch %d loss=%.4f acc=%.4f lr=%.5g%s",
                self.label, row["epoch"], row["train_loss"], row["train_acc"], row["lr"], extra,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def history_tsv(history: list[dict]) -> str:
    buffer = io.StringIO()
    columns = list(history[0]) if history else ["epoch"]
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def save_resume_point(trainer: Trainer, out_dir: Path) -> None:
    with atomic_path(out_dir / RESUME_FILE) as tmp:
        torch.save(trainer.state_dict(), tmp)


def try_resume(trainer: Trainer, out_dir: Path) -> bool:
    path = out_dir / RESUME_FILE
    if not path.is_file():
        return False
    state = torch.load(path, map_location=trainer.device, weights_only=False)
    if state.get("config_hash") != config_hash(trainer.config):
        log.warning("%s belongs to a different configuration; starting from scratch", path)
        path.unlink()
        return False
    trainer.load_state_dict(state)
    log.info("resuming %s from epoch %d", out_dir, trainer.epoch)
    return True


def run_training(
    config: dict,
    data: StudyData,
    out_dir: str | Path,
    progress: str = "auto",
    on_diverge: str = "error",
    data_provenance: dict | None = None,
) -> dict:
    """Train one configuration and write its run folder; return the metrics record."""
    check_run_config(config)
    data = limit_test_set(data, config["evaluation"].get("test_limit", 0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    compute = config["compute"]
    torch.set_num_threads(compute.get("threads", 1))
    device = engine.resolve_device(compute.get("device", "auto"))
    started = time.perf_counter()
    origin = provenance(device, data.subset_sha256, data_provenance or data.data_manifest)  # the code that starts the run

    channels_last = compute.get("channels_last", False)
    x_train = engine.to_float(engine.to_device_images(data.x_train, device), channels_last)
    y_train = torch.from_numpy(data.y_train).to(device)
    normalise = engine.Normalise().to(device)

    trainer = make_trainer(config, device)
    resumed = try_resume(trainer, out_dir)
    prior_seconds = trainer.history[-1]["elapsed_s"] if resumed and trainer.history else 0.0
    forward = torch.compile(trainer.model) if compute.get("compile") else trainer.model

    epochs = config["train"]["epochs"]
    every = config["evaluation"].get("every", 0)
    checkpoint_every = config["train"].get("checkpoint_every", 0)
    reporter = EpochReporter(epochs, trainer.epoch, progress, out_dir.name)
    failure = None
    try:
        while trainer.epoch < epochs:
            lr = trainer.optimizer.param_groups[0]["lr"]
            row = {"epoch": trainer.epoch + 1, **train_epoch(trainer, forward, x_train, y_train, normalise), "lr": lr}
            if not math.isfinite(row["train_loss"]):
                raise DivergedError(
                    f"training loss became {row['train_loss']} at epoch {row['epoch']}; lower train.lr or "
                    "check the mixing settings"
                )
            trainer.scheduler.step()
            trainer.epoch += 1
            if every and trainer.epoch % every == 0:
                row["test_acc"] = _quick_test_accuracy(trainer, data, normalise, compute, device)
            row["elapsed_s"] = round(prior_seconds + time.perf_counter() - started, 3)
            trainer.history.append(row)
            reporter.update(row)
            if checkpoint_every and trainer.epoch % checkpoint_every == 0 and trainer.epoch < epochs:
                save_resume_point(trainer, out_dir)
    except DivergedError as err:
        failure = str(err)
    finally:
        reporter.close()

    wall = prior_seconds + time.perf_counter() - started
    record = {
        "status": "failed" if failure else "ok",
        "error": failure,
        "config": config,
        "config_hash": config_hash(config),
        "metrics": None,
        "reliability": None,
        "wall_time_s": round(wall, 3),
        "epochs_completed": trainer.epoch,
        "provenance": origin,
    }
    if failure is None:
        record["metrics"], record["reliability"] = evaluate_all(trainer.model, data, normalise, config, device)
        record["wall_time_s"] = round(prior_seconds + time.perf_counter() - started, 3)
    elif on_diverge == "error":
        write_json(out_dir / "failure.json", record)
        raise DivergedError(f"{out_dir}: {failure}")

    write_text(out_dir / "history.tsv", history_tsv(trainer.history))
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"config": config, "model": trainer.model.state_dict()}, tmp)
    write_json(out_dir / "metrics.json", record)  # written last: its presence marks a finished run
    (out_dir / RESUME_FILE).unlink(missing_ok=True)
    (out_dir / "failure.json").unlink(missing_ok=True)
    if failure:
        log.error("%s: run FAILED: %s (recorded in metrics.json with status 'failed')", out_dir, failure)
    return record


def limit_test_set(data: StudyData, limit: int) -> StudyData:
    """Smoke runs may evaluate on the first ``limit`` test images; 0 keeps all 10,000."""
    if not limit:
        return data
    return dataclasses.replace(data, x_test=data.x_test[:limit], y_test=data.y_test[:limit])


def _quick_test_accuracy(trainer: Trainer, data: StudyData, normalise, compute: dict, device) -> float:
    x_test = engine.to_device_images(data.x_test, device)
    logits = predict(trainer.model, x_test, normalise, compute.get("eval_batch_size", 1000), channels_last=compute.get("channels_last", False))
    return (logits.argmax(1) == torch.from_numpy(data.y_test)).float().mean().item()


def evaluate_all(model, data: StudyData, normalise, config: dict, device) -> tuple[dict, dict]:
    """Test metrics (and validation metrics when the subset has a validation split)."""
    metrics, reliability = {}, {}
    splits = [("test", data.x_test, data.y_test)]
    if len(data.y_val):
        splits.append(("val", data.x_val, data.y_val))
    for name, images, labels in splits:
        x = engine.to_device_images(images, device)
        y = torch.from_numpy(labels).to(device)
        metrics[name], reliability[name] = evaluate_split(
            model, x, y, normalise, config["evaluation"], config["compute"], device
        )
    return metrics, reliability


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from ``model.pt``."""
    from mixstudy.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; train the run first")
    try:
        saved = torch.load(path, map_location=device or "cpu", weights_only=False)
        model = build_model(saved["config"]["model"])
        model.load_state_dict(saved["model"])
    except Exception as err:  # truncated or foreign files fail in zip, pickle or state-dict loading
        raise DataError(f"{path} is not a complete mixstudy checkpoint ({err})") from err
    return model, saved["config"]
