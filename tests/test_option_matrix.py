"""Every documented option works to the end of a run, and acts: a tiny real run per option value,
through the final writes (metrics.json, history.tsv, model.pt) and back through aggregate, figures
and report; and for each row, a second run with the option at another value, which must differ
where the option acts (its weights, its learning rates, a metric, what evaluation was asked to do).

`MATRIX` holds one row per option value; `test_every_option_has_a_row` fails when the schema
gains an option that is neither in the matrix nor listed with the reason it is covered elsewhere,
and `test_every_row_says_where_its_option_acts` when a row has no contrast in `EFFECTS`.
"""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

import torch

from mixstudy.runs import study
from mixstudy.train import evaluation, training
from mixstudy.train.checkpoint import load_checkpoint
from mixstudy.core.config import _schema, load_params
from mixstudy.core.errors import Interrupted, MixstudyError
from mixstudy.runs.run_folder import RESUME_FILE
from mixstudy.figures.registry import make_figures
from mixstudy.report.document import write_report
from mixstudy.results.aggregation import aggregate

from conftest import PARAMS_FILE, make_study_data

TINY = [
    "model.name=convnet",  # the tiny network of every test that trains; the study network: test_models, test_packing
    "model.convnet.widths=[4,8,8]",
    "train.epochs=2",
    "train.batch_size=8",
    "train.checkpoint_every=0",
    "compute.device=cpu",
    "compute.eval_batch_size=7",  # not a divisor of any split: partial last batches everywhere
    "subset.val_per_class=2",
    "tuning.grid.scheduler=[step]",
    "tuning.grid.momentum=[0.9]",
    "tuning.grid.weight_decay=[0.001]",
    "tuning.seeds=[0]",
    "sweep.alphas=[1.0]",
    "sweep.layer_sets=[[0, 2]]",
    "sweep.seeds=[0]",
    "sweep.use_tuning_choice=false",
]
BASELINE, MANIFOLD, CUTMIX = "sweep/baseline/seed0", "sweep/manifold_S0-2_alpha1/seed0", "sweep/cutmix_alpha1/seed0"
SINGLE = None  # a single run of params.yaml's own mixing section (mixstudy train --out), with mixing.alpha=1

# (option, value as --set writes it, the run id to train). Run ids other than the baseline are
# where the option acts: the mixing settings on mixed runs, the regularisers on their own runs.
MATRIX = [
    ("train.scheduler.name", "step", BASELINE),
    ("train.scheduler.name", "cosine", BASELINE),
    ("train.scheduler.name", "warm_restarts", BASELINE),
    ("train.scheduler.step_size", "1", BASELINE),
    ("train.scheduler.gamma", "0.5", BASELINE),
    ("train.scheduler.t_max", "1", BASELINE),
    ("train.scheduler.t_0", "1", BASELINE),
    ("train.scheduler.t_mult", "2", BASELINE),
    ("train.scheduler.eta_min", "0.001", BASELINE),
    ("train.nesterov", "true", BASELINE),
    ("train.augment.crop_padding", "0", BASELINE),
    ("train.augment.flip", "false", BASELINE),
    ("train.augment.cutout", "8", "sweep/cutout_8/seed0"),
    ("train.checkpoint_every", "1", BASELINE),
    ("mixing.method", "mixup", SINGLE),  # no grid run is plain mixup (the sweep's input mixup is S={0})
    ("mixing.method", "manifold", MANIFOLD),
    ("mixing.method", "cutmix", CUTMIX),
    ("mixing.method", "none", BASELINE),
    ("mixing.alpha", "0.5", SINGLE),  # a sweep cell sets its own alpha and S: the single run reads these
    ("mixing.layers", "[1]", SINGLE),
    ("mixing.lambda_per", "sample", MANIFOLD),
    ("mixing.lambda_per", "sample", CUTMIX),
    ("mixing.loss", "bce", MANIFOLD),
    ("mixing.loss", "soft_ce", CUTMIX),
    ("mixing.label_smoothing", "0.1", "sweep/label_smoothing_eps0.1/seed0"),
    ("mixing.targets", "hard", MANIFOLD),  # inputs mixed, each row keeps its first label
    ("evaluation.ece_bins", "5", BASELINE),
    ("evaluation.fgsm_epsilons", "[0.01]", BASELINE),
    ("evaluation.every", "1", BASELINE),
    ("evaluation.every_only", "[baseline]", BASELINE),
    ("evaluation.test_limit", "10", BASELINE),
    ("evaluation.val_every", "1", BASELINE),
    ("evaluation.val_every", "0", BASELINE),
    ("evaluation.best_by", "val_nll", BASELINE),
    ("evaluation.temperature_scaling", "false", BASELINE),
    ("compute.channels_last", "true", BASELINE),
    ("compute.channels_last", "false", MANIFOLD),
    ("compute.amp", "off", BASELINE),
    ("compute.amp", "on", MANIFOLD),  # bf16 autocast, on CPU too
    ("compute.threads", "2", BASELINE),
    ("compute.eval_batch_size", "1000", BASELINE),
    ("model.name", "preactresnet18", MANIFOLD),
    ("model.name", "cnn13", MANIFOLD),
    ("model.cnn13.widths", "[3,5,6,5,3]", BASELINE),
    ("model.cnn13.dropout", "0.0", BASELINE),
    ("model.cnn13.leaky_slope", "0.3", BASELINE),
    ("model.convnet.widths", "[3,5,6]", BASELINE),
    ("model.convnet.dropout", "0.0", BASELINE),
    ("model.convnet.leaky_slope", "0.3", BASELINE),
    ("model.preactresnet18.base_width", "16", BASELINE),
    ("train.augment.crop_padding_mode", "zero", BASELINE),
    ("subset.val_per_class", "1", BASELINE),
]

# Options every row above exercises at their params.yaml value (each run reads them).
USED_BY_EVERY_ROW = {
    "train.epochs", "train.batch_size", "train.lr", "train.momentum", "train.weight_decay", "compute.device",
}
# Options whose end-to-end path is another test's subject, and why they have no row here.
COVERED_ELSEWHERE = {
    "compute.compile": "torch.compile on CPU costs about a minute of inductor compilation; test_speed_settings",
    "compute.jobs": "how many training jobs DVC's runs stage lets Snakemake start, not read by a run: test_dvc_params",
    "compute.pack_size": "a pack of two is its own test below (test_a_pack_of_two_runs_to_the_end)",
    "data": "where CIFAR-10 comes from: test_data (every source, checksums, corrupt files)",
    "subset.per_class": "the subset draw: test_data; tiny data here has its own sizes",
    "subset.seed": "the subset draw: test_data",
    "subset.draw": "the subset draw: test_data (the study's indices, the seeded draw)",
    "tuning": "the tuning grid and selection: test_cli, test_pipeline, test_aggregate",
    "sweep": "the sweep grid (cross, comparison runs, use_tuning_choice): test_cli, test_pipeline",
    "report": "published numbers and the study's setting: test_figures_report, test_published",
    "theory": "measured after training on model.pt, not part of a run: test_theory (jacobian_images 0, 5, 50), test_cli, test_pipeline",
}


def _leaves(schema: dict, prefix: str = "") -> list[str]:
    properties = schema.get("properties")
    if not properties:
        return [prefix]
    leaves = []
    for key, child in properties.items():
        leaves += _leaves(child, f"{prefix}.{key}" if prefix else key)
    return leaves


def _covered(option: str) -> bool:
    rows = {key for key, _, _ in MATRIX}
    parents = [option.rsplit(".", k)[0] for k in range(option.count(".") + 1)]
    return option in rows or option in USED_BY_EVERY_ROW or any(p in COVERED_ELSEWHERE for p in parents)


def test_every_option_has_a_row():
    uncovered = [option for option in _leaves(_schema()) if not _covered(option)]
    assert uncovered == [], f"options without a row in MATRIX (or a reason in COVERED_ELSEWHERE): {uncovered}"


# The scheduler each scheduler setting belongs to (params.yaml's is warm restarts), with what makes
# the setting act within the tiny runs' epochs.
SCHEDULER_OF = {
    "train.scheduler.step_size": ["train.scheduler.name=step"],
    "train.scheduler.gamma": ["train.scheduler.name=step", "train.scheduler.step_size=1"],
    "train.scheduler.t_max": ["train.scheduler.name=cosine"],
    "train.scheduler.eta_min": ["train.scheduler.name=cosine"],
    "train.scheduler.t_0": ["train.scheduler.name=warm_restarts"],
    "train.scheduler.t_mult": ["train.scheduler.name=warm_restarts", "train.scheduler.t_0=1", "train.epochs=3"],
}


def _row_params(option: str, value: str) -> dict:
    extra = ["sweep.cutout_sizes=[8]"] if option == "train.augment.cutout" else []
    extra += SCHEDULER_OF.get(option, [])
    if option.startswith("mixing."):
        extra.append("mixing.alpha=1.0")  # params.yaml's alpha 0 means no mixing; the row may set its own
    if option in ("mixing.alpha", "mixing.layers"):
        extra.append("mixing.method=manifold")  # the set S applies to manifold mixup only
    if option == "evaluation.every_only":
        extra.append("evaluation.every=1")  # which runs get the every-N test pass, when there is one
    network = {"model.cnn13": "cnn13", "model.preactresnet18": "preactresnet18"}.get(option.rsplit(".", 1)[0])
    if option == "model.name" or network:
        extra += ["model.cnn13.widths=[4,8,8,8,4]", "model.preactresnet18.base_width=8"]  # tiny, like TINY's convnet (8: the least params.yaml allows)
    if network:
        extra.append(f"model.name={network}")  # its settings act only when it is the chosen network
    return load_params([PARAMS_FILE], TINY + extra + [f"{option}={value}"])


def _strict_json(path) -> dict:
    def refuse(token):
        raise ValueError(f"{path} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _check_run_folder(folder, config) -> None:
    record = _strict_json(folder / "metrics.json")
    assert record["status"] == "ok", record["error"]
    assert record["config"] == config
    with open(folder / "history.tsv", newline="") as handle:
        history = list(csv.DictReader(handle, delimiter="\t"))
    assert [int(row["epoch"]) for row in history] == list(range(1, config["train"]["epochs"] + 1))
    every = config["evaluation"]["every"]
    tested = [int(row["epoch"]) for row in history if row.get("test_acc")]
    assert tested == [e for e in range(1, config["train"]["epochs"] + 1) if every and e % every == 0]
    model, _ = load_checkpoint(folder / "model.pt")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not (folder / RESUME_FILE).exists()


def _through_the_results(params: dict, root, tmp_path, in_grid: bool = True) -> None:
    analysis = aggregate(params, root, tmp_path / "tables", tmp_path / "summary.json")
    if in_grid:
        assert analysis.counts()["finished"] == 1 and analysis.counts()["mismatched"] == 0
    else:  # a single run outside the grids sits where the baseline would: listed, never averaged
        assert analysis.counts()["finished"] == 0 and analysis.counts()["mismatched"] == 1
    _strict_json(tmp_path / "summary.json")
    data = make_study_data()
    figures = make_figures(params, root, tmp_path / "figures", examples=(data.x_train, data.y_train))
    assert figures.written, figures.skipped
    markdown, _ = write_report(params, root, tmp_path / "report.md", tmp_path / "figures")
    assert "## Headline" in markdown.read_text()


@pytest.mark.parametrize("option, value, run_id", MATRIX, ids=[f"{o}={v}@{(r or 'single/run').split('/')[1]}" for o, v, r in MATRIX])
def test_option_runs_to_the_end(tmp_path, option, value, run_id):
    params, config, folder = _train_row(option, value, run_id, tmp_path / "runs")
    _check_run_folder(folder, config)
    _through_the_results(params, tmp_path / "runs", tmp_path, in_grid=run_id is not None)


def _train_row(option: str, value: str, run_id: str | None, root) -> tuple[dict, dict, object]:
    """One row's tiny run, trained into its folder under ``root``: (params, run config, folder)."""
    params = _row_params(option, value)
    spec = study.find_run(params, run_id or BASELINE)
    config = study.spec_config(params, spec, None) if run_id else study.run_config(params, 0)
    data = make_study_data(n_val_per_class=params["subset"]["val_per_class"])
    training.train_runs([config], data, [spec.folder(root)], progress="lines")
    return params, config, spec.folder(root)


# Where an option acts, read from a finished run folder (and from what its evaluation was asked to
# do, for the settings that change how fast, not what: `seen` holds the evaluation calls' arguments).
def _weights(folder, seen):
    """The trained network's parameters and buffers, as one digest (layout aside: channels_last)."""
    model, _ = load_checkpoint(folder / "model.pt")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _history(column):
    def read(folder, seen):
        with open(folder / "history.tsv", newline="") as handle:
            return [(row["epoch"], row.get(column) or None) for row in csv.DictReader(handle, delimiter="\t")]
    return read


def _metrics(split, keys=False):
    def read(folder, seen):
        metrics = _strict_json(folder / "metrics.json")["metrics"].get(split)
        return sorted(metrics) if keys and metrics is not None else metrics
    return read


def _record(*path):
    def read(folder, seen):
        value = _strict_json(folder / "metrics.json")
        for key in path:
            value = value[key]
        return value
    return read


def _evaluation_calls(argument):
    def read(folder, seen):
        return sorted(set(call[argument] for call in seen if call is not SAVED))
    return read


LEARNING_RATES = _history("lr")
WEIGHTS = _weights
# (option, row's value, another value, run id, where it acts): every MATRIX row's option appears
# here with its value; the two runs must differ where it acts.
EFFECTS = [
    ("train.scheduler.name", "step", "cosine", BASELINE, LEARNING_RATES),
    ("train.scheduler.name", "cosine", "step", BASELINE, LEARNING_RATES),
    ("train.scheduler.name", "warm_restarts", "step", BASELINE, LEARNING_RATES),
    ("train.scheduler.step_size", "1", "30", BASELINE, LEARNING_RATES),
    ("train.scheduler.gamma", "0.5", "0.1", BASELINE, LEARNING_RATES),
    ("train.scheduler.t_max", "1", "100", BASELINE, LEARNING_RATES),
    ("train.scheduler.t_0", "1", "10", BASELINE, LEARNING_RATES),
    ("train.scheduler.t_mult", "2", "1", BASELINE, LEARNING_RATES),
    ("train.scheduler.eta_min", "0.001", "0.0", BASELINE, LEARNING_RATES),
    ("train.nesterov", "true", "false", BASELINE, WEIGHTS),
    ("train.augment.crop_padding", "0", "4", BASELINE, WEIGHTS),
    ("train.augment.crop_padding_mode", "zero", "reflect", BASELINE, WEIGHTS),
    ("train.augment.flip", "false", "true", BASELINE, WEIGHTS),
    ("train.augment.cutout", "8", "0", SINGLE, WEIGHTS),
    ("mixing.method", "mixup", "none", SINGLE, WEIGHTS),
    ("mixing.method", "manifold", "none", SINGLE, WEIGHTS),
    ("mixing.method", "cutmix", "none", SINGLE, WEIGHTS),
    ("mixing.method", "none", "mixup", SINGLE, WEIGHTS),
    ("mixing.alpha", "0.5", "1.0", SINGLE, WEIGHTS),
    ("mixing.layers", "[1]", "[0]", SINGLE, WEIGHTS),
    ("mixing.lambda_per", "sample", "batch", MANIFOLD, WEIGHTS),
    ("mixing.lambda_per", "sample", "batch", CUTMIX, WEIGHTS),
    ("mixing.loss", "bce", "soft_ce", MANIFOLD, WEIGHTS),
    ("mixing.loss", "soft_ce", "bce", CUTMIX, WEIGHTS),
    ("mixing.label_smoothing", "0.1", "0.0", SINGLE, WEIGHTS),
    ("mixing.targets", "hard", "mixed", MANIFOLD, WEIGHTS),
    ("evaluation.ece_bins", "5", "15", BASELINE, _record("reliability", "test", "bin_edges")),
    ("evaluation.fgsm_epsilons", "[0.01]", "[]", BASELINE, _metrics("test", keys=True)),
    ("evaluation.every", "1", "0", BASELINE, _history("test_acc")),
    ("evaluation.every_only", "[baseline]", "[manifold_S0-2_alpha1]", BASELINE, _history("test_acc")),
    ("evaluation.test_limit", "10", "0", BASELINE, _metrics("test")),
    ("evaluation.val_every", "1", "10", BASELINE, _history("val_acc")),
    ("evaluation.val_every", "0", "1", BASELINE, _history("val_acc")),
    ("evaluation.best_by", "val_nll", "val_acc", BASELINE, _metrics("test_best_val", keys=True)),
    ("evaluation.temperature_scaling", "false", "true", BASELINE, _metrics("test_ts")),
    ("train.checkpoint_every", "1", "0", BASELINE, _evaluation_calls("resume_points")),
    ("compute.channels_last", "true", "false", BASELINE, _evaluation_calls("channels_last")),
    ("compute.channels_last", "false", "true", MANIFOLD, _evaluation_calls("channels_last")),
    ("compute.amp", "off", "on", BASELINE, WEIGHTS),
    ("compute.amp", "on", "off", MANIFOLD, WEIGHTS),
    ("compute.threads", "2", "1", BASELINE, _record("provenance", "threads")),
    ("compute.eval_batch_size", "1000", "7", BASELINE, _evaluation_calls("batch_size")),
    ("model.name", "preactresnet18", "convnet", MANIFOLD, WEIGHTS),
    ("model.name", "cnn13", "convnet", MANIFOLD, WEIGHTS),
    ("model.cnn13.widths", "[3,5,6,5,3]", "[4,8,8,8,4]", BASELINE, WEIGHTS),
    ("model.cnn13.dropout", "0.0", "0.5", BASELINE, WEIGHTS),
    ("model.cnn13.leaky_slope", "0.3", "0.1", BASELINE, WEIGHTS),
    ("model.convnet.widths", "[3,5,6]", "[4,8,8]", BASELINE, WEIGHTS),
    ("model.convnet.dropout", "0.0", "0.25", BASELINE, WEIGHTS),
    ("model.convnet.leaky_slope", "0.3", "0.1", BASELINE, WEIGHTS),
    ("model.preactresnet18.base_width", "16", "8", BASELINE, WEIGHTS),
    ("subset.val_per_class", "1", "2", BASELINE, _metrics("val")),
]


def test_every_row_says_where_its_option_acts():
    contrasted = {(option, value) for option, value, *_ in EFFECTS}
    assert [(option, value) for option, value, _ in MATRIX if (option, value) not in contrasted] == []


@pytest.fixture
def evaluation_calls(monkeypatch):
    """What each evaluation pass was asked (batch size, channels_last and the network's layout) and
    how many resume points training saved before it: the settings of speed, not of results."""
    seen = []  # the evaluation calls' arguments, and a SAVED mark per resume point written
    real_predict, real_save = evaluation.predict, training.save_resume_point

    def predict(model, images, normalise, batch_size, *rest):
        channels_last = rest[1] if len(rest) > 1 else False
        weights = next(p for p in model.parameters() if p.dim() == 4)
        layout = weights.is_contiguous(memory_format=torch.channels_last) and not weights.is_contiguous()
        saved = sum(call is SAVED for call in seen)
        seen.append({"batch_size": batch_size, "channels_last": (channels_last, layout), "resume_points": saved})
        return real_predict(model, images, normalise, batch_size, *rest)

    monkeypatch.setattr(evaluation, "predict", predict)
    monkeypatch.setattr(training, "save_resume_point", lambda *args: (seen.append(SAVED), real_save(*args)))
    return seen


SAVED = object()


@pytest.mark.parametrize("option, value, other, run_id, acts", EFFECTS, ids=[f"{o}={v}-vs-{w}" for o, v, w, _, _ in EFFECTS])
def test_option_acts(tmp_path, evaluation_calls, option, value, other, run_id, acts):
    """The row's run and one with the option at another value differ where the option acts (an
    option silently ignored, or overridden by what the run id sets itself, leaves them equal)."""
    observed = []
    for name, setting in (("row", value), ("other", other)):
        evaluation_calls.clear()
        _, _, folder = _train_row(option, setting, run_id, tmp_path / name)
        observed.append(acts(folder, evaluation_calls))
    assert observed[0] != observed[1], f"{option}={value} and ={other} give the same {observed[0]!r}"


def test_resume_across_a_checkpoint_finishes_the_same_run(tmp_path, monkeypatch):
    params = _row_params("train.checkpoint_every", "1")
    config = study.run_config(params, 0, {"train": {"epochs": 3}, "evaluation": {"every": 1}})
    data = make_study_data(n_val_per_class=2)
    whole = training.train_runs([config], data, [tmp_path / "whole"], progress="lines")[0]

    real_epoch = training.train_epoch
    calls = {"n": 0}

    def crash_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", crash_in_epoch_three)
    with pytest.raises(Interrupted, match="resumes from its resume point at epoch 2"):  # Ctrl-C, said in one line
        training.train_runs([config], data, [tmp_path / "resumed"], progress="lines")
    assert (tmp_path / "resumed" / RESUME_FILE).is_file()
    monkeypatch.setattr(training, "train_epoch", real_epoch)
    resumed = training.train_runs([config], data, [tmp_path / "resumed"], progress="lines")[0]
    assert resumed["metrics"] == whole["metrics"]
    _check_run_folder(tmp_path / "resumed", config)


def test_a_pack_of_two_runs_to_the_end(tmp_path):
    params = _row_params("compute.pack_size", "2")
    specs = [study.find_run(params, run_id) for run_id in (BASELINE, MANIFOLD)]
    configs = [study.spec_config(params, spec, None) for spec in specs]
    root = tmp_path / "runs"
    data = make_study_data(n_val_per_class=2)
    training.train_runs(configs, data, [spec.folder(root) for spec in specs], progress="lines")
    for spec, config in zip(specs, configs):
        _check_run_folder(spec.folder(root), config)
    analysis = aggregate(params, root, tmp_path / "tables", tmp_path / "summary.json")
    assert analysis.counts()["finished"] == 2


def test_an_unknown_option_is_refused():
    with pytest.raises(MixstudyError, match="evaluation"):
        load_params([PARAMS_FILE], TINY + ["evaluation.every_epochs=3"])
