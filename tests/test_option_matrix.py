"""Every documented option works to the end of a run: a tiny real run per option value, through
the final writes (metrics.json, history.tsv, model.pt) and back through aggregate, figures and report.

`MATRIX` holds one row per option value; `test_every_option_has_a_row` fails when the schema
gains an option that is neither in the matrix nor listed with the reason it is covered elsewhere.
"""

from __future__ import annotations

import csv
import json

import pytest

from mixstudy.runs import study

from mixstudy.train import training
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
    ("mixing.alpha", "0.5", MANIFOLD),
    ("mixing.layers", "[1]", MANIFOLD),
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


def _row_params(option: str, value: str) -> dict:
    extra = ["sweep.cutout_sizes=[8]"] if option == "train.augment.cutout" else []
    if option.startswith("mixing."):
        extra.append("mixing.alpha=1.0")  # params.yaml's alpha 0 means no mixing; the row may set its own
    if option == "mixing.layers":
        extra.append("mixing.method=manifold")  # the set S applies to manifold mixup only
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
    params = _row_params(option, value)
    spec = study.find_run(params, run_id or BASELINE)
    config = study.spec_config(params, spec, None) if run_id else study.run_config(params, 0)
    root = tmp_path / "runs"
    data = make_study_data(n_val_per_class=params["subset"]["val_per_class"])
    training.train_runs([config], data, [spec.folder(root)], progress="lines")
    _check_run_folder(spec.folder(root), config)
    _through_the_results(params, root, tmp_path, in_grid=run_id is not None)


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
