"""A finished run's ``model.pt`` evaluated again (``mixstudy evaluate``), with the theory measures.

* :func:`evaluate_stale_runs` - every finished sweep run under a root whose evaluation.json is
  missing or stale (runs trained before the measures existed, or another ``theory`` setting);
* :func:`evaluate_checkpoint` - the test and validation metrics as training recorded them, then
  the two measures of :mod:`mixstudy.model.theory` (``theory.*`` in params.yaml):
  - ``smoothness``: the mean input-Jacobian norms over the first ``theory.jacobian_images`` test
    images (every run);
  - ``shrinkage``: the test metrics with the paper's test-time transformation (inputs shrunk
    towards the training mean image, logits divided by theta_bar, and both), for runs that mix
    with a Beta(alpha, alpha) draw; nothing for the others;
  - ``between`` (``theory.between_pairs`` > 0): Zhang et al.'s in-between measures, the miss rate and
    the loss's input-gradient norm at points between seeded pairs of training images, per lambda.

Nothing here chooses anything: theta_bar comes from the run's alpha and the mean image from its
training images, so the test set is only ever measured. The measures live beside the run's files
(:data:`mixstudy.runs.run_folder.EVALUATION_FILE`) and outside its training identity, so runs trained before
they existed get them from their ``model.pt`` without training again.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mixstudy.data import engine
from mixstudy.train.checkpoint import load_checkpoint
from mixstudy.data.subsets import StudyData, load_study_data
from mixstudy.core.errors import ConfigError, DataError
from mixstudy.train.evaluation import evaluate_all, limit_test_set, split_logits
from mixstudy.core.fileio import remove_temporaries, sha256_file, write_json
from mixstudy.model.metrics import summarise
from mixstudy.core.provenance import code_revision
from mixstudy.runs.run_folder import (
    EVALUATION_FILE, METRICS_FILE, WEIGHTS, WEIGHTS_LEFT_OUT_FILE, evaluation_is_current, read_run_record, unfinished_reason,
)
from mixstudy.runs.study import is_input_mixup, sweep_runs
from mixstudy.model.theory import BETWEEN_SEED, between_measures, between_pairs, jacobian_norms, shrink_towards_mean, theta_bar
from mixstudy.train.trainer import training_precision

# Mixing methods whose lambda is drawn from Beta(alpha, alpha), and so have a theta_bar.
BETA_MIXING = ("mixup", "manifold", "cutmix")


def mixing_transformation_scope(mixing: dict) -> str | None:
    """What the test-time transformation is for this run: the paper's claim (input mixup), the same
    transformation where the paper makes no claim (manifold mixup elsewhere than the input, CutMix),
    or None (no mixing: nothing to undo)."""
    if mixing["method"] not in BETA_MIXING or not mixing["alpha"] > 0:
        return None
    if is_input_mixup(mixing["method"], mixing.get("layers", ())):
        return "input mixup: the paper's claim"
    return f"{mixing['method']} (S={mixing['layers']}): the paper's transformation, where it makes no claim"


def training_mean_image(data: StudyData, normalise: torch.nn.Module, device) -> torch.Tensor:
    """The mean of the run's training images (no augmentation), as the network sees them (normalised)."""
    x = engine.to_float(engine.to_device_images(data.x_train, device), channels_last=False)
    return normalise(x).mean(dim=0, keepdim=True)


def smoothness(model, data: StudyData, normalise, images: int, device) -> dict:
    """Mean (and std) over the first ``images`` test images of the input-Jacobian norms."""
    started = time.perf_counter()
    x = normalise(engine.to_float(engine.to_device_images(data.x_test[:images], device), channels_last=False))
    norms = jacobian_norms(model, x)
    result = {"images": len(x)}
    for output, values in norms.items():
        result[f"jacobian_{output}"] = float(values.mean())
        result[f"jacobian_{output}_std"] = float(values.std()) if len(values) > 1 else None
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def shrinkage(model, data: StudyData, normalise, config: dict, device) -> dict:
    """Test metrics without and with the test-time transformation (inputs, logits, both)."""
    theta = theta_bar(config["mixing"]["alpha"])
    mean_image = training_mean_image(data, normalise, device)

    def shrunk(x: torch.Tensor) -> torch.Tensor:
        return shrink_towards_mean(normalise(x), mean_image, theta)

    x_test = engine.to_device_images(data.x_test, device)
    labels = torch.from_numpy(data.y_test)
    logits = {
        "plain": split_logits(model, x_test, normalise, config["compute"], device),
        "inputs_shrunk": split_logits(model, x_test, shrunk, config["compute"], device),
    }
    bins = config["evaluation"]["ece_bins"]
    variants = {
        "plain": logits["plain"],
        "inputs_shrunk": logits["inputs_shrunk"],
        "logits_rescaled": logits["plain"] / theta,
        "both": logits["inputs_shrunk"] / theta,
    }
    result = {"theta_bar": theta, "mean": "training mean image", "scope": mixing_transformation_scope(config["mixing"])}
    for name, variant in variants.items():
        result[name], _ = summarise(variant, labels, bins)
    return result


def between(model, data: StudyData, normalise, pairs: int, device) -> dict:
    """Zhang et al.'s in-between measures on ``pairs`` seeded pairs of the run's training images (no
    augmentation; labels as the run trained on them), per lambda of theory.BETWEEN_LAMBDAS."""
    started = time.perf_counter()
    x = normalise(engine.to_float(engine.to_device_images(data.x_train, device), channels_last=False))
    first, second = between_pairs(len(x), pairs, BETWEEN_SEED)
    labels = torch.from_numpy(data.y_train).to(device)
    return {"pairs": pairs, "seed": BETWEEN_SEED, "labels": "as trained",
            "by_lambda": between_measures(model, x, labels, first, second),
            "seconds": round(time.perf_counter() - started, 3)}


def check_subset(checkpoint: Path, data: StudyData) -> None:
    """A run's measures need its own training images (their mean image): refuse another subset."""
    if not (checkpoint.parent / METRICS_FILE).is_file():
        return  # a model.pt copied out of its folder: nothing to check against
    try:
        trained_on = read_run_record(checkpoint.parent)["provenance"]["subset_sha256"]
    except (ConfigError, KeyError, TypeError):
        return
    if trained_on and trained_on != data.subset_sha256:
        raise DataError(
            f"{checkpoint} was trained on subset {trained_on[:12]}, not on the subset given ({data.subset_sha256[:12]}); "
            "give --subset the subset file of that run (data/subsets/, named by its subset settings)"
        )


def evaluate_run_files(checkpoint: str | Path, data_npz: str | Path, subset_file: str | Path, params: dict) -> dict:
    """`mixstudy evaluate`: the checkpoint read first (the argument a user typed), then the data."""
    device = engine.resolve_device(params["compute"]["device"])
    loaded = load_checkpoint(checkpoint, device)
    return evaluate_checkpoint(checkpoint, load_study_data(data_npz, subset_file), params, loaded)


def evaluate_checkpoint(checkpoint: str | Path, data: StudyData, params: dict, loaded: tuple | None = None) -> dict:
    """Everything `mixstudy evaluate` writes for one model.pt: metrics, smoothness, shrinkage,
    provenance (``loaded``: the checkpoint's network and configuration, when already read)."""
    checkpoint = Path(checkpoint)
    check_subset(checkpoint, data)
    device = engine.resolve_device(params["compute"]["device"])
    torch.set_num_threads(params["compute"]["threads"])
    model, config = loaded or load_checkpoint(checkpoint, device)
    model.to(device)
    # How to evaluate is today's choice (this machine's compute settings, the current evaluation
    # section); what was trained (network, mixing) is the checkpoint's.
    config["evaluation"], config["compute"] = params["evaluation"], params["compute"]
    data = limit_test_set(data, config["evaluation"]["test_limit"])
    normalise = engine.Normalise(data.mean, data.std).to(device)
    metrics, _ = evaluate_all(model, data, normalise, config, device)
    result = {"metrics": metrics}
    images = params["theory"]["jacobian_images"]
    if images:
        result["smoothness"] = smoothness(model, data, normalise, images, device)
    if mixing_transformation_scope(config["mixing"]) is not None:
        result["shrinkage"] = shrinkage(model, data, normalise, config, device)
    if params["theory"]["between_pairs"]:
        result["between"] = between(model, data, normalise, params["theory"]["between_pairs"], device)
    result["provenance"] = {
        "model_sha256": sha256_file(checkpoint),
        "theory": params["theory"],
        "subset_sha256": data.subset_sha256,
        "code_revision": code_revision(),
        "device": str(device),
        "precision": training_precision(device, params["compute"]["amp"]),  # what these measures computed in
    }
    return result


def evaluate_stale_runs(params: dict, runs_root: str | Path, data_npz: str | Path, subset_file: str | Path) -> list[Path]:
    """Write evaluation.json for each finished, intact sweep run of the grids under ``runs_root``
    whose evaluation.json is missing or stale; the folders evaluated, in grid order."""
    folders = [spec.folder(runs_root) for spec in sweep_runs(params)]
    stale = [folder for folder in folders
             if unfinished_reason(folder, None) is None and not evaluation_is_current(folder, params["theory"])]
    # weights left out on purpose cannot be measured again: said after the others are done
    unmeasurable = [folder for folder in stale if not (folder / WEIGHTS).is_file()]
    stale = [folder for folder in stale if folder not in unmeasurable]
    if stale:
        data = load_study_data(data_npz, subset_file)
        for folder in stale:
            remove_temporaries([folder / EVALUATION_FILE])  # what a killed run of this command left
            write_json(folder / EVALUATION_FILE, evaluate_checkpoint(folder / WEIGHTS, data, params))
    if unmeasurable:
        raise ConfigError(
            f"{len(unmeasurable)} runs need a new {EVALUATION_FILE} but their weights were left out "
            f"({WEIGHTS_LEFT_OUT_FILE}), e.g. {unmeasurable[0]}; put back the model.pt its "
            f"{WEIGHTS_LEFT_OUT_FILE} names, or keep the theory settings they were measured with"
        )
    return stale
