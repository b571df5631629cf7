"""Evaluation: a network's metrics on the test and validation splits, during training and after.

* :func:`predict`, :func:`split_logits` - logits of a split, with a run's evaluation settings;
* :func:`fgsm_accuracy`, :func:`evaluate_split`, :func:`evaluate_all` - a finished run's metrics:
  test, validation, and the test metrics after temperature scaling;
* :data:`BEST_BY`, :func:`improves`, :func:`note_validation`, :func:`best_validation_epoch`,
  :func:`best_validation_metrics` - the weights of the best validation epoch and their test metrics;
* :func:`evaluate_during_training` - the optional test and validation columns of an epoch's row;
* :func:`label_fit` - with corrupted training labels (data.label_noise): how well the network fits the
  labels it trains on and the true ones, on the training images as they are (every epoch and at the end);
* :func:`limit_test_set`, :func:`check_validation_split` - the splits a run evaluates on.
"""

from __future__ import annotations

import copy
import dataclasses
from contextlib import nullcontext

import torch

from mixstudy.data import engine
from mixstudy.data.subsets import StudyData
from mixstudy.core.errors import ConfigError
from mixstudy.model.metrics import accuracy, fgsm_perturb, fit_temperature, nll, summarise
from mixstudy.train.trainer import PackedTrainer, Trainer, autocast_context


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
        metrics["test_ts"], reliability["test_ts"] = temperature_scaled_metrics(logits, data, evaluation["ece_bins"])
    if data.y_train_true is not None:
        metrics["train_labels"] = label_fit(model, data, normalise, compute, device)
    return metrics, reliability


def label_fit(model, data: StudyData, normalise, compute: dict, device) -> dict:
    """With corrupted training labels: accuracy on the training images (no augmentation, no mixing)
    against the labels trained on (``acc_noisy``) and against the true ones (``acc_true``), and the same
    on the corrupted images alone (memorising them raises ``corrupted_acc_noisy``, the share predicted
    as their wrong label, while ``corrupted_acc_true`` falls). Test and validation labels are true."""
    logits = split_logits(model, engine.to_device_images(data.x_train, device), normalise, compute, device)
    noisy, true = torch.from_numpy(data.y_train), torch.from_numpy(data.y_train_true)
    corrupted = torch.from_numpy(data.label_noise["corrupted_positions"])
    return {
        "share": data.label_noise["share"],
        "corrupted": data.label_noise["corrupted"],
        "images": len(noisy),
        "acc_noisy": accuracy(logits, noisy),
        "acc_true": accuracy(logits, true),
        "corrupted_acc_noisy": accuracy(logits[corrupted], noisy[corrupted]) if len(corrupted) else None,
        "corrupted_acc_true": accuracy(logits[corrupted], true[corrupted]) if len(corrupted) else None,
    }


def temperature_scaled_metrics(logits: dict, data: StudyData, ece_bins: int) -> tuple[dict, dict]:
    """Test metrics after temperature scaling: one temperature fitted on the validation logits."""
    temperature = fit_temperature(logits["val"], torch.from_numpy(data.y_val))
    metrics, reliability = summarise(logits["test"] / temperature, torch.from_numpy(data.y_test), ece_bins)
    metrics["temperature"] = temperature
    return metrics, reliability


# --- best epoch by validation ---------------------------------------------------------------

# Which validation column decides, and whether higher is better. Only validation columns are
# eligible: choosing weights on the test set would make the test set part of training.
BEST_BY = {"val_acc": ("val_acc", True), "val_nll": ("val_nll", False)}


def improves(row: dict, best_row: dict, best_by: str) -> bool:
    """Strictly better validation score (ties keep the earlier epoch)."""
    column, higher_is_better = BEST_BY[best_by]
    return row[column] > best_row[column] if higher_is_better else row[column] < best_row[column]


def note_validation(member: Trainer, row: dict, best_by: str) -> None:
    """Keep this epoch's weights in ``member.best`` when its validation score beats the best so far."""
    if member.best is None or improves(row, member.best["row"], best_by):
        state = {key: value.detach().cpu().clone() for key, value in member.model.state_dict().items()}
        member.best = {"epoch": row["epoch"], "row": dict(row), "state": state}


def best_validation_epoch(history: list[dict], best_by: str) -> int | None:
    """The epoch :func:`note_validation` keeps, from a history; None without validation rows."""
    column, _ = BEST_BY[best_by]
    best = None
    for row in history:
        if row.get(column) not in (None, "") and (best is None or improves(row, best, best_by)):
            best = row
    return None if best is None else best["epoch"]


def best_validation_metrics(member: Trainer, data: StudyData, normalise) -> dict:
    """Test metrics of the weights of the best validation epoch, with that epoch and the rule."""
    best_model = copy.deepcopy(member.model)
    best_model.load_state_dict(member.best["state"])
    x = engine.to_device_images(data.x_test, member.device)
    logits = split_logits(best_model, x, normalise, member.config["compute"], member.device)
    metrics, _ = summarise(logits, torch.from_numpy(data.y_test), member.config["evaluation"]["ece_bins"])
    best_by = member.config["evaluation"]["best_by"]
    return {**metrics, "epoch": member.best["epoch"], "best_by": best_by, best_by: member.best["row"][best_by]}


# --- during training ------------------------------------------------------------------------


def evaluate_during_training(pack: PackedTrainer, index: int, row: dict, data: StudyData, normalise, device, final: bool) -> None:
    """Add this epoch's optional columns to ``row``: test accuracy every ``evaluation.every``
    epochs; validation accuracy and NLL every ``evaluation.val_every`` epochs and at the last,
    where the member also keeps the weights of its best validation epoch; with corrupted training
    labels, every epoch, the training images' accuracy against them and against the true labels."""
    member = pack.members[index]
    evaluation, compute = member.config["evaluation"], member.config["compute"]
    every, val_every = evaluation["every"], evaluation["val_every"]
    if data.y_train_true is not None:
        fit = label_fit(pack.sync(index).model, data, normalise, compute, device)
        row["train_acc_noisy"], row["train_acc_true"] = fit["acc_noisy"], fit["acc_true"]
    if every and row["epoch"] % every == 0:
        logits = split_logits(pack.sync(index).model, engine.to_device_images(data.x_test, device), normalise, compute, device)
        row["test_acc"] = accuracy(logits, torch.from_numpy(data.y_test))
    if len(data.y_val) and (final or (val_every and row["epoch"] % val_every == 0)):
        logits = split_logits(pack.sync(index).model, engine.to_device_images(data.x_val, device), normalise, compute, device)
        labels = torch.from_numpy(data.y_val)
        row["val_acc"], row["val_nll"] = accuracy(logits, labels), nll(logits, labels)
        note_validation(member, row, evaluation["best_by"])


# --- the splits -----------------------------------------------------------------------------


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
