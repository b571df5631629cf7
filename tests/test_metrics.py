"""Metrics on small hand-computed examples; FGSM stays in the image range and the epsilon ball."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mixstudy.model import metrics

# Six samples over four classes. Logits are log-probabilities, so the softmax is the row itself.
PROBS = [
    [0.5, 0.2, 0.2, 0.1],  # label 0: correct, confidence 0.50 -> bin 7  (7/15=0.467 < c <= 0.533)
    [0.9, 0.05, 0.03, 0.02],  # label 0: correct, confidence 0.90 -> bin 13 (0.867 < c <= 0.933)
    [0.9, 0.05, 0.03, 0.02],  # label 2: wrong,   confidence 0.90 -> bin 13
    [0.1, 0.2, 0.55, 0.15],  # label 3: wrong,   confidence 0.55 -> bin 8  (0.533 < c <= 0.6)
    [0.7, 0.1, 0.1, 0.1],  # label 0: correct, confidence 0.70 -> bin 10 (0.667 < c <= 0.733)
    [0.1, 0.7, 0.1, 0.1],  # label 1: correct, confidence 0.70 -> bin 10
]
LABELS = [0, 0, 2, 3, 0, 1]


@pytest.fixture
def example():
    logits = torch.tensor(PROBS, dtype=torch.float64).log()
    # shift each row by a different constant: the softmax must not care
    logits = logits + torch.arange(6, dtype=torch.float64)[:, None] * 3.0
    return logits.float(), torch.tensor(LABELS)


def test_accuracy(example):
    assert metrics.accuracy(*example) == pytest.approx(4 / 6)


def test_nll(example):
    # -log of the probability given to the true label, averaged
    expected = -(math.log(0.5) + math.log(0.9) + math.log(0.03) + math.log(0.15) + math.log(0.7) + math.log(0.7)) / 6
    assert metrics.nll(*example) == pytest.approx(expected, rel=1e-6)


def test_brier(example):
    # per sample: sum over classes of (p - onehot)^2, worked out by hand
    per_sample = [
        0.25 + 0.04 + 0.04 + 0.01,  # 0.34
        0.01 + 0.0025 + 0.0009 + 0.0004,  # 0.0138
        0.81 + 0.0025 + 0.9409 + 0.0004,  # 1.7538
        0.01 + 0.04 + 0.3025 + 0.7225,  # 1.075
        0.09 + 0.01 + 0.01 + 0.01,  # 0.12
        0.01 + 0.09 + 0.01 + 0.01,  # 0.12
    ]
    assert metrics.brier(*example) == pytest.approx(sum(per_sample) / 6, rel=1e-6)
    # without the last class among the labels, the one-hot still spans every class of the logits
    logits, labels = example
    assert metrics.brier(logits[:3], labels[:3]) == pytest.approx(sum(per_sample[:3]) / 3, rel=1e-6)


def test_ece_and_reliability_table(example):
    table = metrics.calibration(*example, n_bins=15)
    # bins: 7 -> 1 sample (acc 1, conf .5); 8 -> 1 (acc 0, conf .55); 10 -> 2 (acc 1, conf .7); 13 -> 2 (acc .5, conf .9)
    expected_ece = (1 * abs(1 - 0.5) + 1 * abs(0 - 0.55) + 2 * abs(1 - 0.7) + 2 * abs(0.5 - 0.9)) / 6
    assert table["ece"] == pytest.approx(expected_ece, rel=1e-6)
    expected_count = [0] * 15
    expected_count[7], expected_count[8], expected_count[10], expected_count[13] = 1, 1, 2, 2
    assert table["bin_count"] == expected_count
    expected_acc = [0.0] * 15
    expected_acc[7], expected_acc[10], expected_acc[13] = 1.0, 1.0, 0.5
    assert table["bin_accuracy"] == pytest.approx(expected_acc)
    expected_conf = [0.0] * 15
    expected_conf[7], expected_conf[8], expected_conf[10], expected_conf[13] = 0.5, 0.55, 0.7, 0.9
    assert table["bin_confidence"] == pytest.approx(expected_conf, rel=1e-6)
    assert table["bin_edges"] == pytest.approx([i / 15 for i in range(16)])


def test_ece_of_a_perfectly_calibrated_example_is_zero():
    # four samples at confidence 0.75 of which three are right: accuracy equals confidence
    probs = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    assert metrics.calibration(probs.log(), labels, 15)["ece"] == pytest.approx(0.0, abs=1e-9)


def test_ece_with_certain_predictions_uses_the_last_bin():
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    labels = torch.tensor([0, 1, 0])
    table = metrics.calibration(logits, labels, 15)
    assert table["bin_count"] == [0] * 14 + [3]
    assert table["ece"] == pytest.approx(abs(2 / 3 - 1.0), rel=1e-6)


def test_summarise_collects_all_metrics(example):
    values, reliability = metrics.summarise(*example, n_bins=15)
    assert set(values) == {"acc", "nll", "ece", "brier"}
    assert "ece" not in reliability
    assert values["acc"] == pytest.approx(4 / 6)
    assert values["ece"] == pytest.approx(metrics.calibration(*example, 15)["ece"])
    assert sum(reliability["bin_count"]) == 6


# --- FGSM -----------------------------------------------------------------------------------


def _linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    with torch.no_grad():
        model[1].weight.add_(torch.sign(model[1].weight) * 0.01)  # no zero weights, no zero gradients
    return model


@pytest.mark.parametrize("epsilon", [2 / 255, 0.03, 0.3])
def test_fgsm_stays_in_range_and_in_the_epsilon_ball(epsilon):
    model = _linear_model()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(16, 3, 8, 8, generator=gen)
    images[0] = 0.0  # at the borders: clipping must keep them in [0, 1]
    images[1] = 1.0
    labels = torch.randint(0, 10, (16,), generator=gen)
    normalise = nn.Identity()
    adversarial = metrics.fgsm_perturb(model, images, labels, epsilon, normalise)
    assert all(p.grad is None for p in model.parameters())  # the attack leaves no gradients behind
    assert adversarial.shape == images.shape
    assert not adversarial.requires_grad
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    delta = (adversarial - images).abs()
    assert delta.max() <= epsilon + 1e-6
    # away from the borders every pixel moves by exactly epsilon (all gradients are non-zero)
    interior = (images > epsilon) & (images < 1 - epsilon)
    assert torch.allclose(delta[interior], torch.full_like(delta[interior], epsilon), atol=1e-6)
    # and the step increases the loss
    loss = nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(model(adversarial), labels) > loss(model(images), labels)


def test_ece_bins_are_closed_on_the_right():
    # confidence exactly 0.5 (a two-way tie) lies on an edge of 4 bins: (0.25, 0.5] is bin 1, not bin 2
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 50.0]])
    labels = torch.tensor([0, 1, 1])
    table = metrics.calibration(logits, labels, n_bins=4)
    assert table["bin_count"] == [0, 2, 0, 1]
    assert table["bin_accuracy"][1] == pytest.approx(0.5)
    assert table["bin_confidence"][1] == pytest.approx(0.5)
    assert table["ece"] == pytest.approx(0.0, abs=1e-12)


# FGSM on a linear two-class model where the attack's effect is computable by hand: logits
# (z0, z1) = (5.4, sum of the 12 pixels), so an image of constant value v is classed 1 iff v > 0.45.
# The loss gradient moves every pixel by +epsilon for label 0 and by -epsilon for label 1, so an
# image stays correct iff its value after the step is still on its side of 0.45.
FGSM_VALUES = [0.1, 0.2, 0.3, 0.4, 0.6, 0.5, 0.7]
FGSM_LABELS = [0, 0, 0, 0, 0, 1, 1]
# epsilon -> correct images by hand: clean 0.1-0.4 and 0.5, 0.7 (6 of 7); at 0.1: 0.1-0.3 (0.4 -> 0.5
# crosses) and 0.7 (0.5 -> 0.4 crosses); at 0.2: 0.1, 0.2 and 0.7.
FGSM_EXPECTED = {0.1: 4 / 7, 0.2: 3 / 7}


def _hand_checkable_linear_model() -> nn.Module:
    linear = nn.Linear(12, 2).double()
    with torch.no_grad():
        linear.weight.copy_(torch.stack([torch.zeros(12), torch.ones(12)]))
        linear.bias.copy_(torch.tensor([5.4, 0.0]))
    return nn.Sequential(nn.Flatten(), linear)


@pytest.mark.parametrize("epsilon", sorted(FGSM_EXPECTED))
def test_fgsm_accuracy_of_a_linear_model_is_what_the_attack_computes(epsilon):
    from mixstudy.train.evaluation import fgsm_accuracy

    model = _hand_checkable_linear_model()
    images = torch.tensor(FGSM_VALUES, dtype=torch.float64)[:, None, None, None].expand(-1, 3, 2, 2).contiguous()
    labels = torch.tensor(FGSM_LABELS)
    assert metrics.accuracy(model(images), labels) == pytest.approx(6 / 7)
    accuracy = fgsm_accuracy(model, images, labels, nn.Identity(), epsilon, batch_size=3)
    assert accuracy == pytest.approx(FGSM_EXPECTED[epsilon])


def test_fgsm_leaves_pixels_the_loss_does_not_depend_on():
    """A zero gradient has sign 0: those pixels do not move (the step is epsilon times the sign)."""
    model = _hand_checkable_linear_model()
    with torch.no_grad():
        model[1].weight[:, 4:] = 0.0  # the model reads the first channel only (pixels 0-3)
    images = torch.full((2, 3, 2, 2), 0.3, dtype=torch.float64)
    adversarial = metrics.fgsm_perturb(model, images, torch.tensor([0, 0]), 0.1, nn.Identity())
    assert torch.equal(adversarial[:, 1:], images[:, 1:])
    assert torch.allclose(adversarial[:, 0], torch.full_like(images[:, 0], 0.4))


def test_ece_first_bin_holds_the_lowest_confidences():
    # ten equal logits: confidence 0.1, inside the first of 4 bins (0, 0.25]
    table = metrics.calibration(torch.zeros(3, 10), torch.tensor([0, 1, 2]), n_bins=4)
    assert table["bin_count"] == [3, 0, 0, 0]
    assert table["ece"] == pytest.approx(abs(1 / 3 - 0.1))
