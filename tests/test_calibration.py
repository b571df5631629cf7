"""Calibration after training and the regularisers mixup is compared with: temperature scaling,
best-by-validation weights, label smoothing and Cutout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixstudy.data import engine

from mixstudy.train import evaluation, training
from mixstudy.cli import main
from mixstudy.core.config import load_params
from mixstudy.core.errors import ConfigError
from mixstudy.model.metrics import fit_temperature, nll
from mixstudy.model.mixing import Mixer, smooth

from conftest import PARAMS_FILE, make_study_data

NUM_CLASSES = 10  # a CIFAR-10-sized label space

# --- temperature scaling --------------------------------------------------------------------


def _calibrated_logits(n: int = 20000, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from the logits' own softmax: calibrated at temperature 1."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator, dtype=torch.float64) * 3
    labels = torch.multinomial(F.softmax(logits, 1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("temperature", [0.5, 2.0, 4.0])
def test_temperature_scaling_recovers_a_known_temperature(temperature):
    logits, labels = _calibrated_logits()
    # Dividing the logits by T makes them miscalibrated; the fitted T must undo it.
    fitted = fit_temperature(logits * temperature, labels)
    assert fitted == pytest.approx(temperature, rel=0.05)


def test_temperature_scaling_lowers_nll_of_an_overconfident_set():
    logits, labels = _calibrated_logits(seed=1)
    overconfident = logits * 3
    fitted = fit_temperature(overconfident, labels)
    assert fitted > 1
    assert nll(overconfident / fitted, labels) < nll(overconfident, labels) - 0.1


def test_temperature_scaling_refuses_an_empty_validation_split():
    with pytest.raises(ValueError, match="held-out logits"):
        fit_temperature(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ConfigError, match="subset.val_per_class"):  # the parameters say it first
        load_params([PARAMS_FILE], ["subset.val_per_class=0", "evaluation.temperature_scaling=true"])


# --- best epoch by validation ---------------------------------------------------------------

HISTORY = [
    {"epoch": 10, "val_acc": 0.40, "val_nll": 1.9, "test_acc": 0.41},
    {"epoch": 20, "val_acc": 0.52, "val_nll": 1.6, "test_acc": 0.45},
    {"epoch": 25, "test_acc": 0.60},  # a test-only epoch: never a candidate
    {"epoch": 30, "val_acc": 0.52, "val_nll": 1.4, "test_acc": 0.47},
    {"epoch": 40, "val_acc": 0.50, "val_nll": 1.5, "test_acc": 0.55},
]


def test_best_by_validation_accuracy_picks_the_first_best_epoch():
    assert evaluation.best_validation_epoch(HISTORY, "val_acc") == 20  # ties keep the earlier epoch


def test_best_by_validation_nll_picks_the_lowest():
    assert evaluation.best_validation_epoch(HISTORY, "val_nll") == 30


def test_best_by_validation_without_validation_rows_is_none():
    assert evaluation.best_validation_epoch([{"epoch": 1, "test_acc": 0.5}], "val_acc") is None


def _val_config(tiny_config, **sections):
    evaluation = {"val_every": 1, "temperature_scaling": True, **sections.pop("evaluation", {})}
    return tiny_config(train={"epochs": 4}, evaluation=evaluation, **sections)


def test_run_reports_the_best_validation_epoch_and_its_test_metrics(tmp_path, tiny_config):
    data = make_study_data(n_val_per_class=2)
    record = training.train_runs([_val_config(tiny_config)], data, [tmp_path / "run"], progress="lines")[0]
    history = [json.loads(json.dumps(row)) for row in _history_rows(tmp_path / "run")]
    best = record["metrics"]["test_best_val"]
    assert best["epoch"] == evaluation.best_validation_epoch(history, "val_acc")
    assert best["val_acc"] == max(row["val_acc"] for row in history)
    assert {"acc", "nll", "ece", "brier"} <= set(best)
    assert [row["epoch"] for row in history if row["val_acc"] is not None] == [1, 2, 3, 4]


def test_the_test_set_never_reaches_the_selection(tmp_path, tiny_config):
    """Two test sets, one training and validation set: the chosen epoch and weights are the same."""
    config = _val_config(tiny_config, evaluation={"every": 1})
    first = make_study_data(n_val_per_class=2)
    other_test = make_study_data(n_val_per_class=2, n_test=30, seed=9)
    second = make_study_data(n_val_per_class=2)
    # one class for every label: a network that has learnt little (one class for every image) still
    # scores otherwise than on the balanced first test set
    second.x_test, second.y_test = other_test.x_test, np.zeros_like(other_test.y_test)
    a = training.train_runs([config], first, [tmp_path / "a"], progress="lines")[0]
    b = training.train_runs([config], second, [tmp_path / "b"], progress="lines")[0]
    assert a["metrics"]["test_best_val"]["epoch"] == b["metrics"]["test_best_val"]["epoch"]
    assert a["metrics"]["val"] == b["metrics"]["val"]
    assert a["metrics"]["test_ts"]["temperature"] == b["metrics"]["test_ts"]["temperature"]
    assert [r["test_acc"] for r in _history_rows(tmp_path / "a")] != [r["test_acc"] for r in _history_rows(tmp_path / "b")]


def test_temperature_scaled_metrics_are_recorded(tmp_path, tiny_config):
    data = make_study_data(n_val_per_class=2)
    record = training.train_runs([_val_config(tiny_config)], data, [tmp_path / "run"], progress="lines")[0]
    scaled, raw = record["metrics"]["test_ts"], record["metrics"]["test"]
    assert scaled["temperature"] > 0
    assert scaled["acc"] == raw["acc"]  # one positive temperature never changes the argmax
    assert sum(record["reliability"]["test_ts"]["bin_count"]) == len(data.y_test)


def test_temperature_scaling_without_a_validation_split_is_refused_before_writing(tmp_path, tiny_config, tiny_data):
    config = _val_config(tiny_config)
    with pytest.raises(ConfigError, match="evaluation.temperature_scaling"):
        training.train_runs([config], tiny_data, [tmp_path / "run"], progress="lines")[0]
    assert not (tmp_path / "run").exists()


def _history_rows(folder) -> list[dict]:
    import csv

    def number(text):
        return None if text == "" else float(text)

    with open(folder / "history.tsv", newline="") as handle:
        return [{key: number(value) for key, value in row.items()} for row in csv.DictReader(handle, delimiter="\t")]


# --- label smoothing ------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_loss_equals_torch(eps):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=generator)
    labels = torch.randint(0, 10, (16,), generator=generator)
    mixer = Mixer(
        method="none", alpha=0.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=eps, num_classes=NUM_CLASSES, targets="mixed",
    )
    ours = mixer.loss_fn(logits, mixer.targets(labels, None))
    assert ours.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=eps).item(), rel=1e-6)


def test_label_smoothing_targets_sum_to_one_and_are_smoothed_before_mixing():
    targets = smooth(F.one_hot(torch.tensor([0, 3]), 10).float(), 0.1)
    assert torch.allclose(targets.sum(1), torch.ones(2))
    assert targets[0, 0].item() == pytest.approx(0.91) and targets[0, 1].item() == pytest.approx(0.01)
    mixer = Mixer(
        method="mixup", alpha=1.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.1, num_classes=NUM_CLASSES, targets="mixed",
    )
    draw = mixer.draw(np.random.default_rng(0), 2, (8, 8), "cpu")
    mixed = mixer.targets(torch.tensor([0, 3]), draw)
    expected = draw.lam * targets + (1 - draw.lam) * targets[draw.perm]
    assert torch.allclose(mixed, expected)


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5])
def test_label_smoothing_out_of_range_is_refused(eps):
    with pytest.raises(ConfigError, match="mixing.label_smoothing"):
        load_params([PARAMS_FILE], [f"mixing.label_smoothing={eps}"])


# --- Cutout ---------------------------------------------------------------------------------


def test_cutout_mask_by_hand():
    # 6x6 image, side 4: the square's top-left corner is center - 2, clipped at the border.
    mask = engine.cutout_mask(torch.tensor([3, 0, 5]), torch.tensor([3, 0, 1]), 4, 6, 6)[:, 0]
    inside = torch.zeros(3, 6, 6, dtype=torch.bool)
    inside[0, 1:5, 1:5] = True  # centered: rows 1-4, columns 1-4
    inside[1, 0:2, 0:2] = True  # top-left corner: rows -2..1 clipped to 0..1
    inside[2, 3:6, 0:3] = True  # bottom rows 3..6 clipped to 3..5; columns -1..2 clipped to 0..2
    assert torch.equal(mask, inside)


def test_cutout_zeroes_one_square_per_image_after_normalisation():
    x = torch.full((8, 3, 32, 32), 2.0)
    out = engine.cutout(x, 16, torch.Generator().manual_seed(0))
    zeroed = (out == 0).all(1)  # all channels of a pixel
    assert torch.equal((out == 0).any(1), zeroed)
    per_image = zeroed.flatten(1).sum(1)
    assert ((per_image >= 64) & (per_image <= 256)).all()  # a 16x16 square, at least a quarter inside
    assert (out[~zeroed.unsqueeze(1).expand_as(out)] == 2.0).all()


def test_cutout_of_size_zero_draws_nothing():
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    x = torch.ones(2, 3, 8, 8)
    assert engine.cutout(x, 0, generator) is x
    assert torch.equal(generator.get_state(), before)


# --- bad input: one line naming the parameter, nothing written ------------------------------


@pytest.mark.parametrize(
    "assignment, parameter",
    [
        ("mixing.label_smoothing=-0.1", "mixing.label_smoothing"),
        ("mixing.label_smoothing=1.0", "mixing.label_smoothing"),
        ("train.augment.cutout=-1", "train.augment.cutout"),
        ("train.augment.cutout=33", "train.augment.cutout"),
        ("evaluation.val_every=-1", "evaluation.val_every"),
        ("sweep.label_smoothing=[1.0]", "sweep.label_smoothing"),
        ("sweep.cutout_sizes=[0]", "sweep.cutout_sizes"),
        ("subset.val_per_class=0", "evaluation.temperature_scaling"),
    ],
)
def test_bad_regulariser_settings_are_refused_in_one_line(tmp_path, monkeypatch, capsys, assignment, parameter):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--params", str(PARAMS_FILE), "--set", assignment, "--out", "run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert parameter in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
