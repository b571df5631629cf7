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
from mixstudy.core.fileio import sha256_bytes, sha256_file, write_json
from mixstudy.core.networks import network_settings
from mixstudy.core.provenance import precision_of

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
            "manifold": lambda: f"S={set_notation(self.layers)}, α={alpha}",
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


# --- finished runs, recognised by content -----------------------------------------------------

RUN_OUTPUTS = ("metrics.json", "history.tsv", "model.pt")
# What the workflow declares as a training job's outputs. model.pt is checked by content instead
# (`unfinished_reason`: a run with a lost or damaged model.pt is rebuilt), because a finished run's
# weights may be left out on purpose, and Snakemake would retrain a job with any declared output missing.
WORKFLOW_OUTPUTS = ("metrics.json", "history.tsv")


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
    path = Path(folder) / "metrics.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is empty or damaged ({err}); delete it and train the run again") from err
    if not isinstance(record, dict) or "config" not in record or "status" not in record:
        raise ConfigError(f"{path} is not a run record; delete it and train the run again")
    return record


# A finished run's weights left out of a repository on purpose (12 MB a run of the study's
# network): this file, written by `mixstudy leave-out-weights` once the run's evaluation.json was
# computed from them, records the sha256 of the model.pt left out. Such a run stays finished (never
# retrained); a model.pt that is there is checked as always, and a model.pt gone without this file,
# or with one naming other weights, is damaged.
WEIGHTS_LEFT_OUT_FILE = "weights-left-out.json"
WEIGHTS = "model.pt"


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


# A finished run's model.pt measured after training (`mixstudy evaluate`: the theory section's
# input-gradient norms and test-time transformation). Not part of the run's training identity: it
# is recomputed from model.pt whenever the model or the `theory` settings change.
EVALUATION_FILE = "evaluation.json"


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
        model_sha256 = read_run_record(folder)["files"]["model.pt"]
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
    if not (folder / "metrics.json").is_file():
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
