"""Carratino et al.'s two measures (mixstudy.model.theory, mixstudy.train.run_evaluation), each checked against an
independent computation: torch.func's Jacobian, scipy's integral, a hand calculation in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from conftest import CIFAR10_MEAN as MEAN, CIFAR10_STD as STD, make_study_data
from mixstudy.data import engine
from mixstudy.train.run_evaluation import evaluate_checkpoint, mixing_transformation_scope, shrinkage, training_mean_image
from mixstudy.model.theory import (
    BETWEEN_LAMBDAS, between_measures, between_pairs, input_jacobians, jacobian_norms, miss_rate, shrink_towards_mean, theta_bar,
)


def small_convnet() -> torch.nn.Module:
    """Conv, BatchNorm (with non-trivial running statistics), pooling and a linear head, in eval mode."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.1),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    )
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 3, 8, 8) * 2 + 1)  # running statistics away from (0, 1)
    return model.eval()


# --- smoothness: the input Jacobian ----------------------------------------------------------------


def test_the_jacobian_norm_of_a_linear_model_is_its_weight_matrix_frobenius_norm():
    torch.manual_seed(1)
    linear = torch.nn.Linear(12, 3)
    model = torch.nn.Sequential(torch.nn.Flatten(), linear)
    norms = jacobian_norms(model, torch.randn(7, 3, 2, 2))
    expected = torch.linalg.matrix_norm(linear.weight.detach(), ord="fro")
    torch.testing.assert_close(norms["logits"], expected.expand(7), rtol=1e-6, atol=0)


def test_input_jacobians_equal_torch_func_jacrev_image_by_image():
    model = small_convnet()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    model = model.double()
    ours = input_jacobians(model, x)
    reference = torch.stack([torch.func.jacrev(lambda image: model(image.unsqueeze(0)).squeeze(0))(image) for image in x])
    # float64 on both sides: the same sums in another order, so equal to rounding of ~1e-16 relative
    torch.testing.assert_close(ours.double(), reference, rtol=1e-10, atol=1e-12)


def test_the_log_softmax_norm_is_that_of_the_autograd_jacobian_of_log_softmax():
    model = small_convnet().double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    norms = jacobian_norms(model, x)
    for image, norm in zip(x, norms["log_softmax"]):
        jacobian = torch.autograd.functional.jacobian(lambda i: torch.log_softmax(model(i.unsqueeze(0)), 1).squeeze(0), image)
        # float64 on both sides: the same sums in another order
        assert norm.item() == pytest.approx(jacobian.norm().item(), rel=1e-10)


def test_the_jacobian_is_taken_in_eval_mode_so_images_do_not_interact():
    model = small_convnet()
    x = torch.randn(6, 3, 8, 8)
    together = jacobian_norms(model.train(), x)["logits"]  # jacobian_norms puts it in eval mode itself
    alone = torch.cat([jacobian_norms(model, x[i : i + 1])["logits"] for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=0)


# --- theta_bar and the test-time transformation --------------------------------------------------


def scipy_integral_of_theta(alpha: float) -> float:
    """E[max(lambda, 1 - lambda)] by numerical integration of the Beta(alpha, alpha) density."""
    density = stats.beta(alpha, alpha).pdf
    low, _ = integrate.quad(lambda lam: (1 - lam) * density(lam), 0, 0.5)
    high, _ = integrate.quad(lambda lam: lam * density(lam), 0.5, 1)
    return low + high


def test_theta_bar_for_alpha_one_is_three_quarters():
    assert theta_bar(1.0) == pytest.approx(0.75, abs=1e-12)  # uniform lambda: E[max(l, 1 - l)] = 3/4


@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.5, 2.0, 4.0, 5.0])
def test_theta_bar_is_the_integral_of_max_lambda_under_the_beta_density(alpha):
    assert theta_bar(alpha) == pytest.approx(scipy_integral_of_theta(alpha), abs=1e-7)


def test_theta_bar_tends_to_one_as_alpha_tends_to_zero_and_to_one_half_as_it_grows():
    assert theta_bar(1e-4) == pytest.approx(1.0, abs=1e-3)
    assert [theta_bar(a) for a in (0.01, 0.1, 1, 10, 100)] == sorted([theta_bar(a) for a in (0.01, 0.1, 1, 10, 100)], reverse=True)
    assert theta_bar(1e4) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan])
def test_theta_bar_refuses_an_alpha_that_does_not_mix(alpha):
    with pytest.raises(ValueError, match="alpha > 0"):
        theta_bar(alpha)


def test_shrinking_at_theta_one_is_the_identity_and_at_zero_gives_the_mean():
    x, mean = torch.randn(3, 3, 4, 4), torch.randn(1, 3, 4, 4)
    assert torch.equal(shrink_towards_mean(x, mean, 1.0), x)
    torch.testing.assert_close(shrink_towards_mean(x, mean, 0.0), mean.expand_as(x))


def one_layer_softmax_model(weight: np.ndarray, bias: np.ndarray) -> torch.nn.Module:
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return torch.nn.Sequential(torch.nn.Flatten(), linear).eval()


def numpy_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def test_the_transformation_of_a_one_layer_softmax_model_is_the_hand_calculation():
    # 1x1-pixel images: the network sees three normalised channel values, z = W x + b.
    rng = np.random.default_rng(3)
    data = make_study_data(n_train_per_class=2, n_test=20)
    data.x_train, data.x_test = data.x_train[:, :1, :1, :].copy(), data.x_test[:, :1, :1, :].copy()
    weight, bias = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    model = one_layer_softmax_model(weight, bias)
    config = {"mixing": {"method": "manifold", "alpha": 1.0, "layers": [0]},
              "compute": {"amp": "off", "eval_batch_size": 7, "channels_last": False}, "evaluation": {"ece_bins": 15}}
    result = shrinkage(model, data, engine.Normalise(MEAN, STD), config, torch.device("cpu"))

    def normalised(images):  # by hand: [0, 1] pixels, then the CIFAR-10 channel statistics
        return (images.reshape(len(images), 3).astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)

    mean = normalised(data.x_train).mean(axis=0)
    x = normalised(data.x_test)
    shrunk = mean + 0.75 * (x - mean)  # theta_bar(1) = 3/4
    by_hand = {
        "plain": x @ weight.T + bias,
        "inputs_shrunk": shrunk @ weight.T + bias,
        "logits_rescaled": (x @ weight.T + bias) / 0.75,
        "both": (shrunk @ weight.T + bias) / 0.75,
    }
    assert result["theta_bar"] == pytest.approx(0.75)
    for variant, logits in by_hand.items():
        assert result[variant]["nll"] == pytest.approx(numpy_nll(logits, data.y_test), rel=1e-5), variant
        assert result[variant]["acc"] == pytest.approx(float((logits.argmax(1) == data.y_test).mean())), variant


def test_the_mean_image_comes_from_the_training_images_only():
    data = make_study_data(n_train_per_class=2, n_test=20)
    other_test = make_study_data(n_train_per_class=2, n_test=20, seed=9)
    data_with_other_test = type(data)(**{**data.__dict__, "x_test": other_test.x_test, "y_test": other_test.y_test})
    normalise = engine.Normalise(MEAN, STD)
    mean = training_mean_image(data, normalise, torch.device("cpu"))
    assert torch.equal(mean, training_mean_image(data_with_other_test, normalise, torch.device("cpu")))
    by_hand = ((data.x_train.astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)).mean(axis=0)
    np.testing.assert_allclose(mean.squeeze(0).permute(1, 2, 0).numpy(), by_hand, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("mixing", "claimed"),
    [
        ({"method": "manifold", "alpha": 4.0, "layers": [0]}, "input mixup: the paper's claim"),
        ({"method": "mixup", "alpha": 0.5, "layers": [0]}, "input mixup: the paper's claim"),
        ({"method": "manifold", "alpha": 4.0, "layers": [0, 2]}, "where it makes no claim"),
        ({"method": "cutmix", "alpha": 1.0, "layers": [0]}, "where it makes no claim"),
        ({"method": "none", "alpha": 0.0, "layers": [0]}, None),
        ({"method": "manifold", "alpha": 0.0, "layers": [0]}, None),
    ],
)
def test_only_runs_that_mix_get_the_transformation(mixing, claimed):
    scope = mixing_transformation_scope(mixing)
    assert scope is None if claimed is None else claimed in scope


# --- a finished run's checkpoint ---------------------------------------------------------------------


def saved_checkpoint(path, tiny_config, **sections):
    from mixstudy.train.checkpoint import torch_bytes
    from mixstudy.model.models import build_model

    config = tiny_config(**sections)
    torch.manual_seed(0)
    path.write_bytes(torch_bytes({"config": config, "model": build_model(config["model"], 10).state_dict()}))
    return path


def test_an_unmixed_run_records_no_transformation_and_a_mixed_one_does(tmp_path, tiny_config, params):
    data = make_study_data(n_train_per_class=2, n_test=20)
    settings = {**params, "theory": {**params["theory"], "jacobian_images": 5}}
    baseline = evaluate_checkpoint(saved_checkpoint(tmp_path / "baseline.pt", tiny_config), data, settings)
    mixed = evaluate_checkpoint(
        saved_checkpoint(tmp_path / "mixup.pt", tiny_config, mixing={"method": "manifold", "alpha": 2.0, "layers": [0]}),
        data, settings,
    )
    assert "shrinkage" not in baseline and baseline["smoothness"]["images"] == 5
    assert mixed["shrinkage"]["theta_bar"] == pytest.approx(theta_bar(2.0))
    assert mixed["shrinkage"]["plain"] == mixed["metrics"]["test"]  # the same logits, the same metrics
    off = evaluate_checkpoint(tmp_path / "baseline.pt", data, {**params, "theory": {**params["theory"], "jacobian_images": 0}})
    assert "smoothness" not in off


# --- between training examples (Zhang et al., Figure 2) -------------------------------------------


def test_pairs_are_of_distinct_images_and_the_seed_fixes_them():
    first, second = between_pairs(7, 500, seed=0)
    assert (first != second).all() and first.max() < 7 and second.max() < 7
    assert set(first) == set(range(7)) and set(second) == set(range(7))
    again = between_pairs(7, 500, seed=0)
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)
    assert not np.array_equal(between_pairs(7, 500, seed=1)[0], first)


def test_a_model_that_predicts_the_first_label_never_misses():
    """One-hot inputs through the identity: at lambda > 1/2 the first image's class has the largest logit."""
    labels = torch.tensor([0, 1, 2, 3, 1])
    x = torch.nn.functional.one_hot(labels, 4).float()
    identity = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(4))
    first, second = between_pairs(len(x), 40, seed=0)
    rows = between_measures(identity, x, labels, first, second, lambdas=(0.6, 0.8, 1.0))
    assert [row["miss_rate"] for row in rows] == [0.0, 0.0, 0.0]
    assert miss_rate(labels[first], labels[first], labels[second]) == 0.0


def test_a_constant_models_miss_rate_is_the_hand_count():
    labels = torch.tensor([0, 1, 2, 3])
    constant = torch.nn.Linear(4, 4)
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))  # always class 0
    first, second = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])  # pairs (0,1) (1,2) (2,3) (3,0): two hold no 0
    rows = between_measures(constant, torch.randn(4, 4), labels, first, second)
    assert [row["lambda"] for row in rows] == list(BETWEEN_LAMBDAS)
    assert all(row["miss_rate"] == 0.5 for row in rows)


def test_the_gradient_norm_at_lambda_one_is_the_plain_input_gradient_norm_at_x_i():
    model = small_convnet()
    torch.manual_seed(2)
    x, labels = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    first, second = between_pairs(len(x), 9, seed=0)
    at_one, = between_measures(model, x, labels, first, second, lambdas=(1.0,), chunk=4)
    plain = []
    for i in first:  # one image at a time, the loss torch writes
        image = x[i : i + 1].clone().requires_grad_(True)
        gradient, = torch.autograd.grad(torch.nn.functional.cross_entropy(model(image), labels[i : i + 1]), image)
        plain.append(gradient.norm())
    plain = torch.stack(plain)
    assert at_one["gradient_norm"] == pytest.approx(float(plain.mean()), rel=1e-5)
    assert at_one["gradient_norm_std"] == pytest.approx(float(plain.std()), rel=1e-4)
    halfway, = between_measures(model, x, labels, first, second, lambdas=(0.5,))
    assert halfway["gradient_norm"] != pytest.approx(at_one["gradient_norm"])


def test_evaluate_records_the_in_between_measures_when_asked(tmp_path, tiny_config, params):
    data = make_study_data(n_train_per_class=2, n_test=20)
    checkpoint = saved_checkpoint(tmp_path / "baseline.pt", tiny_config)
    asked = evaluate_checkpoint(checkpoint, data, {**params, "theory": {"jacobian_images": 0, "between_pairs": 30}})
    assert asked["between"]["pairs"] == 30 and [row["lambda"] for row in asked["between"]["by_lambda"]] == list(BETWEEN_LAMBDAS)
    assert all(0 <= row["miss_rate"] <= 1 and row["gradient_norm"] > 0 for row in asked["between"]["by_lambda"])
    off = evaluate_checkpoint(checkpoint, data, {**params, "theory": {"jacobian_images": 0, "between_pairs": 0}})
    assert "between" not in off
