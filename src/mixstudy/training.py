"""One training run: seeded, resumable, written atomically to its own folder.

A run folder holds, when complete:
  metrics.json  - status, the full resolved configuration, metrics, provenance, wall time
  history.tsv   - per-epoch train loss/accuracy and learning rate; validation accuracy and NLL
                  every ``evaluation.val_every`` epochs and test accuracy every ``evaluation.every``
                  epochs (empty cells where an epoch has none)
  model.pt      - final weights and configuration, loadable by ``mixstudy evaluate``
While it runs, ``resume.pt`` (weights, optimizer, scheduler, every random state, epoch) is
replaced atomically every ``train.checkpoint_every`` epochs; a restarted run continues from it.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import logging
import math
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mixstudy import engine, study
from mixstudy.config import check_finite, config_hash
from mixstudy.data import StudyData
from mixstudy.errors import ConfigError, DataError, DivergedError, MixstudyError
from mixstudy.fileio import RESUME_FILE, sha256_bytes, write_bytes, write_json
from mixstudy.metrics import accuracy, fgsm_perturb, fit_temperature, nll, summarise
from mixstudy.mixing import Mixer
from mixstudy.models import build_model, mixing_points
from mixstudy.progress import PROGRESS_FILE
from mixstudy.packing import check_packable, pack_modules, pack_optimizer_state, unpack_optimizer_state, unpack_state
from mixstudy.provenance import provenance

log = logging.getLogger(__name__)

SCHEDULERS = ("step", "cosine", "warm_restarts")


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
        nesterov=train["nesterov"],
        weight_decay=train["weight_decay"],
    )


def check_run_config(config: dict) -> None:
    """Checks a schema cannot make: finite numbers, a usable seed, mixing points that exist in the network."""
    check_finite(config)
    if not isinstance(config["seed"], int) or config["seed"] < 0:
        raise ConfigError(f"seed: {config['seed']!r} is not a seed; give an integer >= 0 (--seed 0)")
    points = mixing_points(config["model"]["name"])
    mixing = config["mixing"]
    if mixing["alpha"] < 0:
        raise ConfigError(f"mixing.alpha: {mixing['alpha']} is negative; alpha must be >= 0")
    bad = sorted(set(mixing["layers"]) - set(points))
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
    """One run's state (its own network, optimizer and random streams), checkpointed as one object.

    While a pack trains, the pack holds the live weights; :meth:`PackedTrainer.sync` copies a member's
    share back here before it is checkpointed or evaluated.
    """

    config: dict
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    mixer: Mixer
    data_gen: torch.Generator
    mix_rng: np.random.Generator
    dropout_gen: torch.Generator
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    failure: str | None = None
    best: dict | None = None  # the best validation epoch so far: epoch, its row, its weights (CPU)

    def _cuda_index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def state_dict(self) -> dict:
        # Dropout draws come from dropout_gen; it is saved where a solo run keeps its global stream.
        if self.device.type == "cuda":
            torch_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state_all()
            cuda_rng[self._cuda_index()] = self.dropout_gen.get_state()
        else:
            torch_rng, cuda_rng = self.dropout_gen.get_state(), None
        return {
            "config_hash": config_hash(self.config),
            "epoch": self.epoch,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch_rng,
            "cuda_rng": cuda_rng,
            "data_gen": self.data_gen.get_state(),
            "mix_rng": self.mix_rng.bit_generator.state,
            "best": self.best,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.device.type == "cuda" and state["cuda_rng"] is not None:
            self.dropout_gen.set_state(state["cuda_rng"][self._cuda_index()])
        else:
            self.dropout_gen.set_state(state["torch_rng"])
        self.data_gen.set_state(state["data_gen"])
        self.mix_rng.bit_generator.state = state["mix_rng"]
        self.best = state["best"]

    def note_validation(self, row: dict, best_by: str) -> None:
        """Keep this epoch's weights when its validation score beats the best so far."""
        if self.best is None or improves(row, self.best["row"], best_by):
            state = {key: value.detach().cpu().clone() for key, value in self.model.state_dict().items()}
            self.best = {"epoch": row["epoch"], "row": dict(row), "state": state}


def make_trainer(config: dict, device: torch.device) -> Trainer:
    seeds = Seeds.from_seed(config["seed"])
    torch.manual_seed(seeds.init)  # initialisation; dropout continues this stream in dropout_gen
    model = build_model(config["model"]).to(device)
    if config["compute"]["channels_last"]:
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
        dropout_gen=_dropout_generator(device, seeds.init),
    )


def _dropout_generator(device: torch.device, init_seed: int) -> torch.Generator:
    """The stream dropout would use in a process of its own: the global one, right after initialisation."""
    if device.type == "cuda":  # the network is initialised on the CPU, so the CUDA stream is fresh
        generator = torch.Generator(device=device)
        generator.manual_seed(init_seed)
    else:
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
    return generator


@dataclass
class PackedTrainer:
    """K runs trained as one packed network (see mixstudy.packing); K = 1 is a plain run."""

    members: list[Trainer]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    epoch: int

    @classmethod
    def of(cls, members: list[Trainer]) -> "PackedTrainer":
        first = members[0]
        model = pack_modules([m.model for m in members], [m.dropout_gen for m in members]).to(first.device)
        if first.config["compute"]["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, first.config["train"])
        scheduler = build_scheduler(optimizer, first.config["train"]["scheduler"])
        optimizer.load_state_dict(pack_optimizer_state([m.optimizer.state_dict() for m in members]))
        scheduler.load_state_dict(first.scheduler.state_dict())
        return cls(members, model, optimizer, scheduler, epoch=first.epoch)

    @property
    def size(self) -> int:
        return len(self.members)

    def sync(self, index: int) -> Trainer:
        """Copy member ``index``'s share of the packed state into its own Trainer."""
        member = self.members[index]
        member.model.load_state_dict(unpack_state(self.model.state_dict(), self.size, index))
        member.optimizer.load_state_dict(unpack_optimizer_state(self.optimizer.state_dict(), self.size, index))
        member.scheduler.load_state_dict(self.scheduler.state_dict())
        return member


def autocast_context(device: torch.device, amp: str):
    """bf16 autocast where asked for: ``on`` on any device, ``auto`` on CUDA only; otherwise float32."""
    if amp == "on" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _member_mixes(members: list[Trainer], draws: list) -> dict:
    """Mixing functions by point: each member mixes its own channel block at its own point."""
    def mix_at(point: int):
        def mix(h: torch.Tensor) -> torch.Tensor:
            blocks = list(h.chunk(len(members), dim=1))
            for i, (member, draw) in enumerate(zip(members, draws)):
                if draw is not None and draw.point == point:
                    blocks[i] = member.mixer.mix(blocks[i], draw)
            return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
        return mix

    return {point: mix_at(point) for point in {d.point for d in draws if d is not None}}


def train_epoch(pack: PackedTrainer, forward, x_train: torch.Tensor, y_train: torch.Tensor, normalise) -> list[dict]:
    """One pass over the subset for every member; sums stay on the device (one sync per epoch).

    Each member draws its batch order, augmentation and mixing from its own streams, exactly as
    it would alone. A failed member's loss is left out, so it no longer learns.
    """
    members = pack.members
    first = members[0]
    train, device = first.config["train"], first.device
    augment = train["augment"]
    pack.model.train()
    learning = torch.tensor([m.failure is None for m in members], device=device)
    orders = [torch.randperm(len(y_train), generator=m.data_gen, device=device) for m in members]
    loss_sums = torch.zeros(pack.size, device=device)
    correct_sums = torch.zeros(pack.size, device=device)
    seen = 0
    amp = autocast_context(device, first.config["compute"]["amp"])
    for indices in zip(*(engine.batches(order, train["batch_size"]) for order in orders)):
        inputs, targets, draws = [], [], []
        for member, index in zip(members, indices):
            images = engine.augment(
                x_train[index], augment["crop_padding"], augment["crop_padding_mode"], augment["flip"], member.data_gen
            )
            draw = member.mixer.draw(member.mix_rng, len(index), images.shape[-2:], device)
            inputs.append(engine.cutout(normalise(images), augment["cutout"], member.data_gen))
            targets.append(member.mixer.targets(y_train[index], draw))
            draws.append(draw)
        batch = len(indices[0])
        with amp:
            packed_input = inputs[0] if pack.size == 1 else torch.cat(inputs, dim=1)
            logits = forward(packed_input, mixes=_member_mixes(members, draws)).view(batch, pack.size, -1)
            losses = torch.stack([m.mixer.loss_fn(logits[:, i], t) for i, (m, t) in enumerate(zip(members, targets))])
        pack.optimizer.zero_grad(set_to_none=True)
        torch.where(learning, losses, 0.0).sum().backward()
        pack.optimizer.step()
        loss_sums += losses.detach() * batch
        predictions = logits.detach().argmax(2)
        correct_sums += torch.stack([(predictions[:, i] == t.argmax(1)).sum() for i, t in enumerate(targets)])
        seen += batch
    return [
        {"train_loss": loss / seen, "train_acc": correct / seen}
        for loss, correct in zip(loss_sums.tolist(), correct_sums.tolist())
    ]


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


def split_logits(model, images, normalise, compute: dict, device) -> torch.Tensor:
    """Logits of one split (uint8 images on the device), with the run's evaluation settings."""
    amp = lambda: autocast_context(device, compute["amp"])  # noqa: E731
    return predict(model, images, normalise, compute["eval_batch_size"], amp, compute["channels_last"])


def evaluate_split(model, images, labels, normalise, evaluation: dict, compute: dict, device, logits=None) -> tuple[dict, dict]:
    if logits is None:
        logits = split_logits(model, images, normalise, compute, device)
    metrics, reliability = summarise(logits, labels.cpu(), evaluation["ece_bins"])
    for epsilon in evaluation["fgsm_epsilons"]:
        metrics[f"fgsm_acc@{epsilon:g}"] = fgsm_accuracy(
            model, images, labels, normalise, epsilon, compute["eval_batch_size"], compute["channels_last"]
        )
    return metrics, reliability


# --- best epoch by validation ---------------------------------------------------------------

# Which validation column decides, and whether higher is better. Only validation columns are
# eligible: choosing weights on the test set would make the test set part of training.
BEST_BY = {"val_acc": ("val_acc", True), "val_nll": ("val_nll", False)}


def improves(row: dict, best_row: dict, best_by: str) -> bool:
    """Strictly better validation score (ties keep the earlier epoch)."""
    column, higher_is_better = BEST_BY[best_by]
    return row[column] > best_row[column] if higher_is_better else row[column] < best_row[column]


def best_validation_epoch(history: list[dict], best_by: str) -> int | None:
    """The epoch :meth:`Trainer.note_validation` keeps, from a history; None without validation rows."""
    column, _ = BEST_BY[best_by]
    best = None
    for row in history:
        if row.get(column) not in (None, "") and (best is None or improves(row, best, best_by)):
            best = row
    return None if best is None else best["epoch"]


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
    configuration is refused unless ``replace``.
    """
    for config in configs:
        check_run_config(config)
        check_validation_split(config, data)
    check_packable(configs)
    device = engine.resolve_device(configs[0]["compute"]["device"])  # before anything is written
    out_dirs = [Path(out_dir) for out_dir in out_dirs]
    for out_dir in out_dirs:
        check_run_folder_path(out_dir)
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


LOCK_FILE = ".train.lock"


def check_run_folder_path(folder: Path) -> None:
    """A run folder must be a folder, under folders: one clear error instead of a traceback later."""
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"run folder {folder}: {path} is a file, not a folder; choose another --out")


@contextmanager
def locked_run_folder(folder: Path):
    """Hold the run folder's lock (an OS lock on a file in it: a crashed writer cannot leave it held)."""
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
        yield
    finally:
        (folder / LOCK_FILE).unlink(missing_ok=True)  # while held: a waiter on the old file sees it unlinked and retries
        lock.release()


def kept_record(folder: Path, config: dict, subset_sha256: str) -> dict | None:
    """The record of a finished, intact run of this very training in ``folder``, else None."""
    if study.unfinished_reason(folder, study.training_hash(config, subset_sha256)) is not None:
        return None
    log.info("%s: already finished with this training configuration and subset; kept as it is", folder)
    return study.read_run_record(folder)


def clear_other_run(folder: Path, config: dict, subset_sha256: str, replace: bool) -> None:
    """Before training: a finished run of another configuration is refused (or removed with
    ``replace``); outputs of an unfinished or damaged run of this one are removed."""
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        return
    try:
        other = study.recorded_training_hash(study.read_run_record(folder)) != study.training_hash(config, subset_sha256)
    except ConfigError:
        other = False  # a damaged record: nothing finished to protect
    if other and not replace:
        raise MixstudyError(
            f"{folder} holds a finished run of another configuration; choose another --out, "
            "or pass --replace to train over it"
        )
    log.warning("%s: replacing its %s run", folder, "other" if other else "damaged")
    for name in ("metrics.json", *study.RUN_OUTPUTS[1:], "failure.json", "train.log"):
        (folder / name).unlink(missing_ok=True)


@contextmanager
def run_logs(out_dirs: list[Path]):
    """Append this process's mixstudy log lines to each trained run's train.log (a pack's runs share them)."""
    logger = logging.getLogger("mixstudy")
    handlers = [logging.FileHandler(out_dir / "train.log", delay=True) for out_dir in out_dirs]  # opened at the first line
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


def _train_pack(
    configs: list[dict],
    data: StudyData,
    out_dirs: list[Path],
    device: torch.device,
    progress: str,
    on_diverge: str,
) -> list[dict]:
    """Train the runs as one pack and write each folder (the folders are locked and checked)."""
    first = configs[0]
    data = limit_test_set(data, first["evaluation"]["test_limit"])
    compute = first["compute"]
    torch.set_num_threads(compute["threads"])
    started = time.perf_counter()
    origin = provenance(device, data.subset_sha256, data.data_manifest)  # the code that starts the run

    x_train = engine.to_float(engine.to_device_images(data.x_train, device), compute["channels_last"])
    y_train = torch.from_numpy(data.y_train).to(device)
    normalise = engine.Normalise().to(device)

    pack = PackedTrainer.of(_resumed_or_new_members(configs, out_dirs, device))
    prior_seconds = pack.members[0].history[-1]["elapsed_s"] if pack.members[0].history else 0.0
    forward = torch.compile(pack.model) if compute["compile"] else pack.model
    labels = [out_dir.name if len(out_dirs) == 1 else str(out_dir) for out_dir in out_dirs]
    if pack.size > 1:
        log.info("training a pack of %d runs: %s", pack.size, ", ".join(labels))

    epochs = first["train"]["epochs"]
    checkpoint_every = first["train"]["checkpoint_every"]
    reporter = EpochReporter(epochs, pack.epoch, progress, labels[0] if pack.size == 1 else f"pack of {pack.size}")
    try:
        while pack.epoch < epochs and any(m.failure is None for m in pack.members):
            lr = pack.optimizer.param_groups[0]["lr"]
            rows = train_epoch(pack, forward, x_train, y_train, normalise)
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
                    log.error("%s: %s", labels[index], member.failure)
                    continue
                member.epoch = pack.epoch
                _evaluate_during_training(pack, index, row, data, normalise, device, final=pack.epoch == epochs)
                row["elapsed_s"] = round(prior_seconds + time.perf_counter() - started, 3)
                member.history.append(row)
                updates[labels[index]] = row
                write_json(out_dirs[index] / PROGRESS_FILE, {"epoch": row["epoch"], "epochs": epochs, "elapsed_s": row["elapsed_s"]})
            reporter.update(updates)
            if checkpoint_every and pack.epoch % checkpoint_every == 0 and pack.epoch < epochs:
                for index, (member, out_dir) in enumerate(zip(pack.members, out_dirs)):
                    if member.failure is None:
                        save_resume_point(pack.sync(index), out_dir)
    finally:
        reporter.close()

    extra = {"provenance": origin}
    if pack.size > 1:
        extra["pack"] = {"size": pack.size, "runs": [str(d) for d in out_dirs]}
    records, raised = [], []
    for index, (member, out_dir) in enumerate(zip(pack.members, out_dirs)):
        if member.failure is None:
            pack.sync(index)
        record = _finish_run(member, data, normalise, out_dir, extra, prior_seconds, started, on_diverge)
        if member.failure and on_diverge == "error":
            raised.append(f"{out_dir}: {member.failure}")
        records.append(record)
    if raised:
        raise DivergedError("; ".join(raised))
    return records


def _resumed_or_new_members(configs: list[dict], out_dirs: list[Path], device: torch.device) -> list[Trainer]:
    """Members from their resume points when all have one at the same epoch, else fresh."""
    members = [make_trainer(config, device) for config in configs]
    resumed = [try_resume(member, out_dir) for member, out_dir in zip(members, out_dirs)]
    if not any(resumed):
        return members
    if all(resumed) and len({member.epoch for member in members}) == 1:
        return members
    log.warning(
        "the runs of this pack have resume points at different epochs (%s); training them all from scratch",
        ", ".join(f"{d}: {m.epoch if r else 'none'}" for d, m, r in zip(out_dirs, members, resumed)),
    )
    return [make_trainer(config, device) for config in configs]


def _finish_run(member: Trainer, data, normalise, out_dir: Path, extra: dict, prior_seconds: float, started: float, on_diverge: str) -> dict:
    """Evaluate a member and write its run folder (metrics.json last: its presence marks a finished run)."""
    failure = member.failure
    record = {
        "status": "failed" if failure else "ok",
        "error": failure,
        "config": member.config,
        "config_hash": config_hash(member.config),
        "metrics": None,
        "reliability": None,
        "wall_time_s": round(prior_seconds + time.perf_counter() - started, 3),
        "epochs_completed": member.epoch,
        **extra,
    }
    if failure is None:
        record["metrics"], record["reliability"] = evaluate_all(member.model, data, normalise, member.config, member.device)
        if member.best is not None:
            record["metrics"]["test_best_val"] = best_validation_metrics(member, data, normalise)
        record["wall_time_s"] = round(prior_seconds + time.perf_counter() - started, 3)
    elif on_diverge == "error":
        write_json(out_dir / "failure.json", record)
        (out_dir / PROGRESS_FILE).unlink(missing_ok=True)
        return record

    history = history_tsv(member.history).encode()
    model = torch_bytes({"config": member.config, "model": member.model.state_dict()})
    record["files"] = {"history.tsv": sha256_bytes(history), "model.pt": sha256_bytes(model)}
    write_bytes(out_dir / "history.tsv", history)
    write_bytes(out_dir / "model.pt", model)
    write_json(out_dir / "metrics.json", record)
    (out_dir / RESUME_FILE).unlink(missing_ok=True)
    (out_dir / PROGRESS_FILE).unlink(missing_ok=True)
    (out_dir / "failure.json").unlink(missing_ok=True)
    if failure:
        log.error("%s: run FAILED: %s (recorded in metrics.json with status 'failed')", out_dir, failure)
    return record


def limit_test_set(data: StudyData, limit: int) -> StudyData:
    """Smoke runs may evaluate on the first ``limit`` test images; 0 keeps all 10,000."""
    if not limit:
        return data
    return dataclasses.replace(data, x_test=data.x_test[:limit], y_test=data.y_test[:limit])


def check_validation_split(config: dict, data: StudyData) -> None:
    """Settings that need validation images refuse a subset without them, before anything is written."""
    if config["evaluation"]["temperature_scaling"] and not len(data.y_val):
        raise ConfigError(
            "evaluation.temperature_scaling needs a validation split, and this subset has none; "
            "set subset.val_per_class > 0 (e.g. 50) or evaluation.temperature_scaling: false"
        )


def _evaluate_during_training(pack: PackedTrainer, index: int, row: dict, data: StudyData, normalise, device, final: bool) -> None:
    """Add this epoch's optional columns to ``row``: test accuracy every ``evaluation.every``
    epochs; validation accuracy and NLL every ``evaluation.val_every`` epochs and at the last,
    where the member also keeps the weights of its best validation epoch."""
    member = pack.members[index]
    evaluation, compute = member.config["evaluation"], member.config["compute"]
    every, val_every = evaluation["every"], evaluation["val_every"]
    if every and row["epoch"] % every == 0:
        logits = split_logits(pack.sync(index).model, engine.to_device_images(data.x_test, device), normalise, compute, device)
        row["test_acc"] = accuracy(logits, torch.from_numpy(data.y_test))
    if len(data.y_val) and (final or (val_every and row["epoch"] % val_every == 0)):
        logits = split_logits(pack.sync(index).model, engine.to_device_images(data.x_val, device), normalise, compute, device)
        labels = torch.from_numpy(data.y_val)
        row["val_acc"], row["val_nll"] = accuracy(logits, labels), nll(logits, labels)
        member.note_validation(row, evaluation["best_by"])


def evaluate_all(model, data: StudyData, normalise, config: dict, device) -> tuple[dict, dict]:
    """Test metrics, and with a validation split: validation metrics and, when asked, the test
    metrics after temperature scaling (one temperature fitted on the validation logits)."""
    evaluation, compute = config["evaluation"], config["compute"]
    metrics, reliability, logits = {}, {}, {}
    splits = [("test", data.x_test, data.y_test)]
    if len(data.y_val):
        splits.append(("val", data.x_val, data.y_val))
    for name, images, labels in splits:
        x = engine.to_device_images(images, device)
        y = torch.from_numpy(labels).to(device)
        logits[name] = split_logits(model, x, normalise, compute, device)
        metrics[name], reliability[name] = evaluate_split(model, x, y, normalise, evaluation, compute, device, logits[name])
    if evaluation["temperature_scaling"] and len(data.y_val):
        temperature = fit_temperature(logits["val"], torch.from_numpy(data.y_val))
        metrics["test_ts"], reliability["test_ts"] = summarise(logits["test"] / temperature, torch.from_numpy(data.y_test), evaluation["ece_bins"])
        metrics["test_ts"]["temperature"] = temperature
    return metrics, reliability


def best_validation_metrics(member: Trainer, data: StudyData, normalise) -> dict:
    """Test metrics of the weights of the best validation epoch, with that epoch and the rule."""
    best_model = copy.deepcopy(member.model)
    best_model.load_state_dict(member.best["state"])
    x = engine.to_device_images(data.x_test, member.device)
    logits = split_logits(best_model, x, normalise, member.config["compute"], member.device)
    metrics, _ = summarise(logits, torch.from_numpy(data.y_test), member.config["evaluation"]["ece_bins"])
    best_by = member.config["evaluation"]["best_by"]
    return {**metrics, "epoch": member.best["epoch"], "best_by": best_by, best_by: member.best["row"][best_by]}


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from ``model.pt``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give the model.pt inside it (e.g. {path / 'model.pt'})")
    if not path.is_file():
        raise DataError(f"{path} does not exist; train the run first")
    try:
        saved = torch.load(path, map_location=device or "cpu", weights_only=False)
        model = build_model(saved["config"]["model"])
        model.load_state_dict(saved["model"])
    except Exception as err:  # truncated or foreign files fail in zip, pickle or state-dict loading
        raise DataError(f"{path} is not a complete mixstudy checkpoint ({err})") from err
    return model, saved["config"]
