"""The study's runs: the grids of params.yaml expanded once, each run named by its configuration.

A run id reads ``<stage>/<name>/seed<seed>`` and is also its folder under ``results/runs``:

  tuning/warm_restarts_mom0.9_wd0.001/seed0    baseline tuning (Table 1)
  sweep/baseline/seed0                         final baseline (Table 2)
  sweep/manifold_S0-2_alpha4/seed0             manifold mixup, S={0,2}, alpha=4 (Table 3; S0 is input mixup)
  sweep/cutmix_alpha1/seed0                    CutMix comparison
  sweep/label_smoothing_eps0.1/seed0           label smoothing comparison (eps = 0.1)
  sweep/cutout_16/seed0                        Cutout comparison (16-pixel square)
  cifar100/sweep/baseline/seed0                a run on another data set than CIFAR-10 (data.name)

Everything (Snakemake, DVC, the CLI, aggregation) gets the list of runs from here.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mixstudy.core.config import config_hash, deep_merge, parse_yaml
from mixstudy.core.errors import ConfigError
from mixstudy.core.networks import network_settings

RUN_SECTIONS = ("model", "train", "mixing", "evaluation", "compute")
RUNS_ROOT = "results/runs"  # where the workflow and the CLI keep run folders (dvc.yaml names it too)
BASELINE = "baseline"
# The data set of every run recorded before data.name existed, and of every run without a `data`
# section in its configuration: CIFAR-10 runs keep their folders, configurations and training hashes.
DEFAULT_DATASET = "cifar10"


def fmt(value: float) -> str:
    """Numbers in run names: short form (4.0 -> 4, 0.0001 -> 0.0001), exact where that would round."""
    short = f"{value:g}"
    return short if float(short) == float(value) else repr(float(value))


def layers_label(layers) -> str:
    return "-".join(str(k) for k in layers)


def set_notation(layers: str) -> str:
    """A run name's layer label as the study writes the set: ``0-2`` -> ``{0,2}``."""
    return "{" + layers.replace("-", ",") + "}"


# Manifold mixup whose one mixing point is the image itself, S={0}, is input mixup: the
# configuration the paper's input-mixup claims are about (point 0 is always the image: models.py).
INPUT_MIXUP_LAYERS = "0"


def is_input_mixup(method: str, layers) -> bool:
    """Whether a configuration mixes the images themselves: ``mixup``, or ``manifold`` at S={0}
    (``layers``: the points, or their label as run names write it, ``0``)."""
    if method != "manifold":
        return method == "mixup"  # any other method's layers are not read (they may be absent)
    return (layers if isinstance(layers, str) else layers_label(layers)) == INPUT_MIXUP_LAYERS


def manifold_label(layers: str, alpha: float) -> str:
    """A manifold mixup configuration as the text names it: ``S={0,2}, α=4``."""
    return f"S={set_notation(layers)}, α={fmt(alpha)}"


# --- configuration names: the one place a run name is formatted ------------------------------


def tuning_name(scheduler: str, momentum: float, weight_decay: float) -> str:
    return f"{scheduler}_mom{fmt(momentum)}_wd{fmt(weight_decay)}"


def manifold_name(layers, alpha: float) -> str:
    """``manifold_S0-2_alpha4``; ``layers`` a list of points or their label ``0-2``."""
    label = layers if isinstance(layers, str) else layers_label(layers)
    return f"manifold_S{label}_alpha{fmt(alpha)}"


def cutmix_name(alpha: float) -> str:
    return f"cutmix_alpha{fmt(alpha)}"


def label_smoothing_name(eps: float) -> str:
    return f"label_smoothing_eps{fmt(eps)}"


def cutout_name(size: int) -> str:
    return f"cutout_{int(size)}"


@dataclass(frozen=True)
class RunSpec:
    """One run of the grids: its stage, configuration name and seed, the overrides that define it,
    and every name it goes by (run id and folder, the text's label, the summary key)."""

    stage: str  # tuning | sweep
    name: str
    seed: int
    overrides: dict = field(compare=False, hash=False)  # nested params overrides that define this run
    dataset: str = DEFAULT_DATASET  # data.name; another data set's runs live under its own name

    @property
    def run_id(self) -> str:
        prefix = "" if self.dataset == DEFAULT_DATASET else f"{self.dataset}/"
        return f"{prefix}{self.stage}/{self.name}/seed{self.seed}"

    def folder(self, root: str | Path = RUNS_ROOT) -> Path:
        return Path(root) / self.run_id

    @property
    def method(self) -> str:
        """none | manifold | cutmix | label_smoothing | cutout: what the configuration compares."""
        mixing, augment = self.overrides["mixing"], self.overrides.get("train", {}).get("augment", {})
        if mixing.get("label_smoothing"):
            return "label_smoothing"
        if augment.get("cutout"):
            return "cutout"
        return mixing["method"]

    @property
    def strength(self) -> float | None:
        """CutMix's alpha, label smoothing's eps, Cutout's square side; None for the others."""
        mixing = self.overrides["mixing"]
        strengths = {
            "cutmix": lambda: float(mixing["alpha"]),
            "label_smoothing": lambda: float(mixing["label_smoothing"]),
            "cutout": lambda: float(self.overrides["train"]["augment"]["cutout"]),
        }
        return strengths[self.method]() if self.method in strengths else None

    @property
    def layers(self) -> str:
        """Manifold mixup's set S as in run names (``0-2``); empty for the others."""
        return layers_label(self.overrides["mixing"]["layers"]) if self.method == "manifold" else ""

    @property
    def label(self) -> str:
        """The configuration as the text names it: ``S={0,2}, α=4``, ``CutMix α=1``, ``baseline``."""
        alpha = fmt(self.overrides["mixing"]["alpha"])
        labels = {
            "manifold": lambda: manifold_label(self.layers, self.overrides["mixing"]["alpha"]),
            "cutmix": lambda: f"CutMix α={alpha}",
            "label_smoothing": lambda: f"label smoothing ε={fmt(self.strength)}",
            "cutout": lambda: f"Cutout {int(self.strength)} px",
        }
        return labels[self.method]() if self.method in labels else self.name

    @property
    def summary_key(self) -> str:
        """The configuration's prefix in ``metrics/summary.json``: ``sweep.S=0-2.alpha=4``,
        ``cutmix.alpha=1``, ``label_smoothing.eps=0.1``, ``cutout.size=16``, ``baseline``, ``tuning.<name>``."""
        alpha = fmt(self.overrides["mixing"]["alpha"])
        keys = {
            "manifold": lambda: f"sweep.S={self.layers}.alpha={alpha}",
            "cutmix": lambda: f"cutmix.alpha={alpha}",
            "label_smoothing": lambda: f"label_smoothing.eps={fmt(self.strength)}",
            "cutout": lambda: f"cutout.size={int(self.strength)}",
        }
        if self.method in keys:
            return keys[self.method]()
        return BASELINE if self.stage == "sweep" else f"tuning.{self.name}"


def tuning_runs(params: dict) -> list[RunSpec]:
    tuning = params["tuning"]
    grid = tuning["grid"]
    runs = []
    for sched, momentum, wd in itertools.product(grid["scheduler"], grid["momentum"], grid["weight_decay"]):
        overrides = {
            "train": {
                "epochs": tuning["epochs"],
                "lr": float(tuning["lr"]),
                "momentum": float(momentum),
                "weight_decay": float(wd),
                "scheduler": {"name": sched},
            },
            "mixing": {"method": "none", "alpha": 0.0},
        }
        name = tuning_name(sched, momentum, wd)
        overrides = _with_test_every(params, name, overrides)
        runs += [RunSpec("tuning", name, seed, overrides, params["data"]["name"]) for seed in tuning["seeds"]]
    return runs


def _with_test_every(params: dict, name: str, overrides: dict) -> dict:
    """Runs left out of ``evaluation.every_only`` (when it names any) skip the every-N test pass."""
    only = params["evaluation"]["every_only"]
    if only and name not in only:
        return {**overrides, "evaluation": {"every": 0}}
    return overrides


def manifold_cells(sweep: dict) -> list[tuple[list[int], float]]:
    """The (S, alpha) cells of Table 3 to run: the whole grid, or its row and column through ``cross``."""
    cells = [(list(layers), float(alpha)) for layers, alpha in itertools.product(sweep["layer_sets"], sweep["alphas"])]
    cross = sweep["cross"]
    if cross is None:
        return cells
    return [(layers, alpha) for layers, alpha in cells if layers == list(cross["layers"]) or alpha == float(cross["alpha"])]


def sweep_runs(params: dict) -> list[RunSpec]:
    """Baseline runs, then alpha x S manifold mixup runs, then CutMix, label smoothing and Cutout runs, each over the seeds."""
    sweep = params["sweep"]
    plain = {"method": "none", "alpha": 0.0}
    configs = [(BASELINE, {"mixing": plain})]
    for layers, alpha in manifold_cells(sweep):
        configs.append((manifold_name(layers, alpha), {"mixing": {"method": "manifold", "alpha": alpha, "layers": layers}}))
    for alpha in sweep["cutmix_alphas"]:
        configs.append((cutmix_name(alpha), {"mixing": {"method": "cutmix", "alpha": float(alpha)}}))
    for eps in sweep["label_smoothing"]:
        configs.append((label_smoothing_name(eps), {"mixing": {**plain, "label_smoothing": float(eps)}}))
    for size in sweep["cutout_sizes"]:
        configs.append((cutout_name(size), {"mixing": plain, "train": {"augment": {"cutout": int(size)}}}))
    return [
        RunSpec("sweep", name, seed, _with_test_every(params, name, overrides), params["data"]["name"])
        for name, overrides in configs
        for seed in sweep["seeds"]
    ]


def all_runs(params: dict) -> list[RunSpec]:
    return tuning_runs(params) + sweep_runs(params)


def find_run(params: dict, run_id: str) -> RunSpec:
    runs = {spec.run_id: spec for spec in all_runs(params)}
    if run_id not in runs:
        examples = ", ".join(list(runs)[:3])
        raise ConfigError(f"run {run_id!r} is not in the grids of these parameters (e.g. {examples})")
    return runs[run_id]


def read_selection(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; run `mixstudy select` on the tuning runs first")
    try:
        selection = parse_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); delete it and run `mixstudy select` again") from err
    if not isinstance(selection, dict):
        raise ConfigError(f"{path} does not hold a selection mapping; delete it and run `mixstudy select` again")
    missing = {"scheduler", "momentum", "weight_decay"} - set(selection)
    if missing:
        raise ConfigError(f"{path} lacks {sorted(missing)}; run `mixstudy select` again")
    return selection


def selection_overrides(selection: dict) -> dict:
    return {
        "train": {
            "scheduler": {"name": selection["scheduler"]},
            "momentum": float(selection["momentum"]),
            "weight_decay": float(selection["weight_decay"]),
        }
    }


def run_config(params: dict, seed: int, overrides: dict | None = None, selection: dict | None = None) -> dict:
    """The full configuration of one run: params' run sections, the tuning choice, the run's own settings."""
    config = {key: copy.deepcopy(params[key]) for key in RUN_SECTIONS}
    config["model"] = network_settings(config["model"])  # the chosen network's settings only
    config["compute"].pop("pack_size", None)  # how runs are grouped, not what one computes
    config["compute"].pop("jobs", None)  # how many run at once (dvc.yaml's runs stage)
    config["evaluation"].pop("every_only", None)  # which runs; each run's own `every` says it
    if selection is not None:
        config = deep_merge(config, selection_overrides(selection))
    config = deep_merge(config, overrides or {})
    config["mixing"]["alpha"] = float(config["mixing"]["alpha"])
    config["train"]["lr"] = float(config["train"]["lr"])
    config["seed"] = int(seed)
    if params["data"]["name"] != DEFAULT_DATASET:  # CIFAR-10's configuration stays as it was recorded
        config["data"] = {"name": params["data"]["name"]}
    return without_settings_that_do_not_act(config)


def config_dataset(config: dict) -> str:
    """The data set a run's configuration was trained on (no ``data`` section: CIFAR-10)."""
    return (config.get("data") or {}).get("name", DEFAULT_DATASET)


def needs_selection(params: dict, spec: RunSpec) -> bool:
    """Sweep runs take the tuning's choice unless ``sweep.use_tuning_choice`` is false."""
    return spec.stage == "sweep" and params["sweep"]["use_tuning_choice"]


def spec_config(params: dict, spec: RunSpec, selection: dict | None) -> dict:
    if not needs_selection(params, spec):
        return run_config(params, spec.seed, spec.overrides)
    if selection is None:
        raise ConfigError(f"{spec.run_id} needs the tuning selection (--selection results/tuning/selection.yaml)")
    return run_config(params, spec.seed, spec.overrides, selection)


@dataclass(frozen=True)
class Pack:
    """Runs trained together in one process (see mixstudy.model.packing), named ``<stage>/pack<index>``."""

    stage: str
    index: int
    runs: tuple[RunSpec, ...]

    @property
    def name(self) -> str:
        return f"{self.stage}/pack{self.index:03d}"

    def folder(self, root: str | Path = "results/packs") -> Path:  # the pack's Snakemake benchmark
        return Path(root) / self.name


def packs(specs: list[RunSpec], pack_size: int) -> list[Pack]:
    """Group runs into packs of at most ``pack_size``, in grid order.

    Only runs that differ in nothing but seed and mixing settings share a pack: all sweep runs
    (one training setting, the tuning's choice), and the seeds of one tuning configuration.
    """
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        shared = {key: value for key, value in spec.overrides.items() if key != "mixing"}
        groups.setdefault((spec.stage, json.dumps(shared, sort_keys=True)), []).append(spec)
    result, counters = [], {}
    for (stage, _), members in groups.items():
        for start in range(0, len(members), pack_size):
            counters[stage] = counters.get(stage, 0) + 1
            result.append(Pack(stage, counters[stage], tuple(members[start : start + pack_size])))
    return result


# --- a run's training identity --------------------------------------------------------------

# Settings added after runs were recorded, with the value that reproduces what the code did before
# they existed: a record without one was trained with that value (read so, it stays finished and
# comparable; nothing is rewritten on disk).
SETTINGS_ADDED_LATER = {
    ("train", "augment", "crop_padding_mode"): "zero",
    ("mixing", "targets"): "mixed",
}
# Not among them: `data`. A configuration without it is CIFAR-10's (run_config writes it only for
# another data set), so a CIFAR-10 run's configuration and training hash are what they always were,
# and a run of another data set can never share a CIFAR-10 run's training hash.


def mixes(mixing: dict) -> bool:
    """Whether a run's mixing section mixes anything (mixing.Mixer.active)."""
    return mixing["method"] != "none" and float(mixing["alpha"]) > 0


def without_settings_that_do_not_act(config: dict) -> dict:
    """``config`` less ``mixing.targets`` where it does not act: at ``mixed`` (what every run did
    before the setting existed) and in a run that does not mix. Such a run's configuration, and so its
    files, resume points and training hash, are what they were before the setting, byte for byte; a
    record without it reads as ``mixed`` (:data:`SETTINGS_ADDED_LATER`)."""
    mixing = config["mixing"]
    if mixing.get("targets") == SETTINGS_ADDED_LATER[("mixing", "targets")] or not mixes(mixing):
        mixing.pop("targets", None)
    return config


def with_settings_added_later(config: dict) -> dict:
    """``config`` with each setting of :data:`SETTINGS_ADDED_LATER` it lacks, at its earlier behaviour."""
    completed = copy.deepcopy(config)
    for path, value in SETTINGS_ADDED_LATER.items():
        node = completed
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node.setdefault(path[-1], value)
    return completed


def training_config(config: dict) -> dict:
    """What a run computes: its configuration without the compute settings (threads, device,
    batch size of evaluation, packing), which change how fast it runs, not what it learns.
    Settings a record predates are filled in with their earlier behaviour."""
    return {key: value for key, value in with_settings_added_later(config).items() if key != "compute"}


def training_hash(config: dict, subset_sha256: str | None) -> str:
    """The identity of a run's result: its training configuration and its training images."""
    return config_hash({"config": training_config(config), "subset_sha256": subset_sha256})
