"""The trainer: one run's state and the packed training step loop.

* :func:`build_scheduler`, :func:`build_optimizer` - the study's SGD and its three schedulers;
* :class:`Seeds` - one run seed split into independent streams;
* :class:`Trainer`, :func:`make_trainer` - one run's network, optimizer, scheduler, mixer and
  random streams, checkpointed as one object (see mixstudy.train.checkpoint);
* :class:`PackedTrainer` - K runs trained as one packed network (see mixstudy.model.packing);
* :func:`train_epoch` - one pass over the subset for every member of a pack;
* :func:`check_run_config` - the checks of a run's configuration a schema cannot make.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from mixstudy.data import engine
from mixstudy.core.config import check_finite, check_points_exist, config_hash
from mixstudy.core.errors import ConfigError
from mixstudy.model.mixing import Mixer, member_mixes
from mixstudy.model.models import build_model
from mixstudy.model.packing import pack_modules, pack_optimizer_state, unpack_optimizer_state, unpack_state
from mixstudy.core.provenance import precision_of
from mixstudy.runs.study import with_settings_added_later

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
    """Checks a schema cannot make on one run's configuration: finite numbers, a usable seed, mixing
    points that exist in its network (value ranges such as alpha >= 0: the schema, config.validate_params)."""
    check_finite(config)
    if not isinstance(config["seed"], int) or config["seed"] < 0:
        raise ConfigError(f"seed: {config['seed']!r} is not a seed; give an integer >= 0 (--seed 0)")
    check_points_exist("mixing.layers", config["mixing"]["layers"], config["model"]["name"])


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


def make_trainer(config: dict, device: torch.device, num_classes: int) -> Trainer:
    """One run's state; ``num_classes`` is the data's (every network's outputs, the mixed targets)."""
    seeds = Seeds.from_seed(config["seed"])
    torch.manual_seed(seeds.init)  # initialisation; dropout continues this stream in dropout_gen
    model = build_model(config["model"], num_classes).to(device)
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
        mixer=Mixer.from_params(with_settings_added_later(config)["mixing"], num_classes),  # mixing.targets: recorded where it acts
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
    """K runs trained as one packed network (see mixstudy.model.packing); K = 1 is a plain run."""

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


def training_precision(device: torch.device, amp: str) -> str:
    """What ``compute.amp`` resolves to on this device (:func:`mixstudy.core.provenance.precision_of`)."""
    return precision_of(amp, device.type)


def autocast_context(device: torch.device, amp: str):
    """bf16 autocast where ``compute.amp`` resolves to bfloat16 (:func:`training_precision`); otherwise float32."""
    if training_precision(device, amp) == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_epoch(pack: PackedTrainer, forward, x_train: torch.Tensor, y_train: torch.Tensor, normalise) -> list[dict]:
    """One pass over the subset for every member; sums stay on the device (one sync per epoch).

    Each member draws its batch order, augmentation and mixing from its own streams, exactly as
    it would alone. A failed member's loss is left out, so it no longer learns.
    """
    members = pack.members
    mixers = [m.mixer for m in members]
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
            logits = forward(packed_input, mixes=member_mixes(mixers, draws)).view(batch, pack.size, -1)
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
