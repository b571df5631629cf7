"""Evaluation (mixstudy.train.evaluation) on networks small enough to check by hand: each split's
metrics, the after-scaling test metrics, FGSM accuracy, the best-by-validation weights and their
test metrics, and the columns an epoch's row gets during training.

Expected values come from torch's own functions (``F.cross_entropy``, autograd) or scipy, never
from mixstudy.model.metrics. The logits here are computed in the evaluation's batches, by the same
kernels on the same shapes, so they are the same bytes on any CPU and whatever only passes them on
is compared exactly; numbers computed another way (a float64 NLL, scipy's temperature fit) get a
tolerance derived beside them.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from mixstudy.data import engine

from mixstudy.train import evaluation
from mixstudy.core.errors import ConfigError

from conftest import CIFAR10_MEAN, CIFAR10_STD, make_study_data

CPU = torch.device("cpu")
COMPUTE = {"eval_batch_size": 3, "amp": "off", "channels_last": False}  # 3: batches that do not divide the splits


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as the tiny runs train (compute.threads=1): faster on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _identity(x):
    return x


def _linear(seed: int = 0, batchnorm: bool = True) -> torch.nn.Module:
    """A linear classifier of the whole image; its BatchNorm's running statistics differ from
    any batch's, so a network left in training mode gives other logits."""
    torch.manual_seed(seed)
    layers = [torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)]
    if batchnorm:
        norm = torch.nn.BatchNorm1d(10)
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        layers.append(norm)
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        model[1].weight.mul_(20)  # confident logits: NLL, ECE and the temperature far from trivial
    return model.train()  # the evaluation must switch it to inference itself


def _logits(model, images_nhwc) -> torch.Tensor:
    """Logits computed here, in inference mode, in the batches of COMPUTE (the same kernels on the
    same shapes as the evaluation's, so equal logits are the same bytes on any CPU)."""
    model.eval()
    x = engine.to_float(engine.to_device_images(images_nhwc, CPU), False)
    size = COMPUTE["eval_batch_size"]
    with torch.no_grad():
        return torch.cat([model(engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)(x[i : i + size])) for i in range(0, len(x), size)])


def _accuracy(logits, labels) -> float:
    """The share of right predictions as mixstudy records it, a float32 mean: the float32 nearest
    k / n (k / n in float64, then rounded to float32, is that number: float64 carries more than
    twice float32's digits)."""
    return float(np.float32((logits.argmax(1) == labels).sum().item() / len(labels)))


def _images(images_nhwc) -> torch.Tensor:
    return engine.to_device_images(images_nhwc, CPU)


# --- predict, split_logits ------------------------------------------------------------------


def test_predict_gives_inference_logits_of_every_image_in_batches():
    data = make_study_data(n_test=7)
    model = _linear()
    logits = evaluation.predict(model, _images(data.x_test), engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), 3)
    assert not model.training
    assert logits.shape == (7, 10) and logits.dtype == torch.float32
    assert torch.equal(logits, _logits(model, data.x_test))


def test_predict_uses_the_amp_context_once_per_batch_and_the_memory_format_asked_for():
    entered, formats = [], []

    class Context:
        def __enter__(self):
            entered.append(1)

        def __exit__(self, *args):
            return False

    def model(x):
        formats.append(x.is_contiguous(memory_format=torch.channels_last))
        return x.flatten(1)[:, :10].double()  # float64 out: predict returns float32

    model.eval = lambda: None
    images = _images(make_study_data(n_test=7).x_test)
    logits = evaluation.predict(model, images, _identity, 3, Context, channels_last=True)
    assert len(entered) == 3 and formats == [True, True, True]
    assert logits.dtype == torch.float32
    assert torch.equal(logits, (images.float() / 255).flatten(1)[:, :10])


def test_split_logits_reads_the_runs_batch_size_memory_format_and_amp():
    data = make_study_data(n_test=7)
    model = _linear()
    images = _images(data.x_test)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append((len(args[0]), args[0].is_contiguous(memory_format=torch.channels_last))))
    plain = evaluation.split_logits(model, images, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), {**COMPUTE, "channels_last": True}, CPU)
    assert seen == [(3, True), (3, True), (1, True)]
    assert plain.dtype == torch.float32
    # amp "on": the network runs under bf16 autocast (the same on the CPU), as it does here
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x = engine.to_float(images, False)
        expected = torch.cat([model(engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)(x[i : i + 3])).float() for i in range(0, 7, 3)])
    bf16 = evaluation.split_logits(model, images, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), {**COMPUTE, "amp": "on"}, CPU)
    assert torch.equal(bf16, expected)
    assert not torch.equal(bf16, plain)


# --- FGSM accuracy --------------------------------------------------------------------------


def _fgsm_accuracy_by_hand(model, images_nhwc, labels, epsilon, size=COMPUTE["eval_batch_size"]) -> float:
    """The attack written out with autograd: per batch, one step of size epsilon along the sign
    of the gradient of the batch's mean cross-entropy, clipped to [0, 1], then the accuracy."""
    model.eval()
    images = engine.to_float(engine.to_device_images(images_nhwc, CPU), False)
    correct = 0
    for i in range(0, len(images), size):
        x, y = images[i : i + size].clone().requires_grad_(True), labels[i : i + size]
        (grad,) = torch.autograd.grad(F.cross_entropy(model(engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)(x)), y), x)
        adversarial = (x + epsilon * grad.sign()).clamp(0, 1).detach()
        with torch.no_grad():
            correct += (model(engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)(adversarial)).argmax(1) == y).sum().item()
    return correct / len(labels)


def test_fgsm_accuracy_is_the_accuracy_on_the_signed_gradient_step_of_each_image():
    data = make_study_data(n_test=20, seed=3)
    model = _linear(batchnorm=True)
    labels = _logits(model, data.x_test).argmax(1)  # every image right before the attack
    labels[:4] = (labels[:4] + 1) % 10  # four wrong
    model.train()
    accuracies = [
        evaluation.fgsm_accuracy(model, _images(data.x_test), labels, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), epsilon, COMPUTE["eval_batch_size"])
        for epsilon in (0.0, 0.01, 0.05)
    ]
    expected = [_fgsm_accuracy_by_hand(model, data.x_test, labels, epsilon) for epsilon in (0.0, 0.01, 0.05)]
    assert accuracies[0] == 16 / 20  # no step: the plain accuracy
    assert accuracies == expected
    assert accuracies[2] < accuracies[0]  # the attack does something on this network


def test_fgsm_of_a_split_runs_in_the_memory_format_of_the_run():
    # channels_last changes no number on this CPU, but it is the format the network is built and
    # timed in; every forward pass of the attack (the gradient and the scoring) must get it
    data = make_study_data(n_test=7)
    model = _linear(batchnorm=False)
    formats = []
    model.register_forward_pre_hook(lambda m, args: formats.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    settings = {**EVALUATION, "fgsm_epsilons": [0.01]}
    compute = {**COMPUTE, "channels_last": True}
    labels = torch.from_numpy(data.y_test)
    evaluation.evaluate_split(model, _images(data.x_test), labels, _identity, settings, compute, CPU, torch.zeros(7, 10))
    assert formats == [True] * 6  # three batches, two passes each


# --- one split, all splits, after temperature scaling ---------------------------------------

EVALUATION = {"ece_bins": 4, "fgsm_epsilons": [], "temperature_scaling": True, "best_by": "val_acc"}


def _ece_by_hand(logits, labels, n_bins) -> float:
    """Expected calibration error with equal-width bins (upper edges inclusive), written out."""
    probabilities = F.softmax(logits.double(), 1)
    confidence, prediction = probabilities.max(1)
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            gap = (prediction[inside] == labels[inside]).double().mean() - confidence[inside].mean()
            total += inside.sum().item() / len(labels) * abs(gap.item())
    return total


def _check_split_metrics(metrics, reliability, logits, labels, n_bins):
    assert metrics["acc"] == _accuracy(logits, labels)
    assert metrics["nll"] == pytest.approx(F.cross_entropy(logits.double(), labels).item(), rel=1e-5)
    # ECE: float32 softmax against float64 here; a confidence within 1e-6 of a bin edge would move
    # it further, which these logits do not have (checked by the bin counts below).
    assert metrics["ece"] == pytest.approx(_ece_by_hand(logits, labels, n_bins), abs=1e-5)
    assert len(reliability["bin_count"]) == n_bins and sum(reliability["bin_count"]) == len(labels)


def test_evaluate_split_scores_the_logits_it_is_given_and_adds_one_fgsm_accuracy_per_radius():
    data = make_study_data(n_test=20)
    model = _linear()
    labels = torch.from_numpy(data.y_test)
    given = torch.randn(20, 10, generator=torch.Generator().manual_seed(1)) * 3  # not the network's
    settings = {**EVALUATION, "fgsm_epsilons": [0.01, 0.0078]}
    metrics, reliability = evaluation.evaluate_split(model, _images(data.x_test), labels, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), settings, COMPUTE, CPU, given)
    _check_split_metrics(metrics, reliability, given, labels, 4)
    assert list(metrics) == ["acc", "nll", "ece", "brier", "fgsm_acc@0.01", "fgsm_acc@0.0078"]
    for epsilon in (0.01, 0.0078):
        assert metrics[f"fgsm_acc@{epsilon}"] == _fgsm_accuracy_by_hand(model, data.x_test, labels, epsilon)


def test_evaluate_split_without_logits_scores_the_network():
    data = make_study_data(n_test=20)
    model = _linear()
    labels = torch.from_numpy(data.y_test)
    metrics, reliability = evaluation.evaluate_split(model, _images(data.x_test), labels, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), EVALUATION, COMPUTE, CPU)
    _check_split_metrics(metrics, reliability, _logits(model, data.x_test), labels, 4)
    assert list(metrics) == ["acc", "nll", "ece", "brier"]


def _temperature_by_scipy(logits, labels) -> float:
    """The NLL-minimising temperature, by scipy's bounded scalar search in log T."""
    logits, labels = logits.double(), labels

    def loss(log_t):
        return F.cross_entropy(logits / np.exp(log_t), labels).item()

    return float(np.exp(minimize_scalar(loss, bounds=(-5, 5), method="bounded", options={"xatol": 1e-9}).x))


def _val_data(n_val_per_class=3, n_test=20):
    return make_study_data(n_val_per_class=n_val_per_class, n_test=n_test)


def test_evaluate_all_scores_test_and_validation_and_the_test_after_a_temperature_fitted_on_validation():
    data = _val_data()
    model = _linear()
    config = {"evaluation": {**EVALUATION, "fgsm_epsilons": [0.01]}, "compute": COMPUTE}
    metrics, reliability = evaluation.evaluate_all(model, data, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), config, CPU)
    assert list(metrics) == list(reliability) == ["test", "val", "test_ts"]
    test_logits, val_logits = _logits(model, data.x_test), _logits(model, data.x_val)
    y_test, y_val = torch.from_numpy(data.y_test), torch.from_numpy(data.y_val)
    _check_split_metrics(metrics["test"], reliability["test"], test_logits, y_test, 4)
    _check_split_metrics(metrics["val"], reliability["val"], val_logits, y_val, 4)
    # FGSM on each split's own images (and none after scaling: it attacks the network, not logits)
    assert metrics["test"]["fgsm_acc@0.01"] == _fgsm_accuracy_by_hand(model, data.x_test, y_test, 0.01)
    assert metrics["val"]["fgsm_acc@0.01"] == _fgsm_accuracy_by_hand(model, data.x_val, y_val, 0.01)
    assert "fgsm_acc@0.01" not in metrics["test_ts"]
    # The fitted temperature: both fits stop within about 1e-6 of the optimum in log T; the
    # validation and test optima differ by far more (asserted), so a fit on the wrong split fails.
    temperature = _temperature_by_scipy(val_logits, y_val)
    assert abs(temperature - _temperature_by_scipy(test_logits, y_test)) > 0.1 * temperature
    assert temperature > 1.5  # these logits are overconfident: scaling does something
    assert metrics["test_ts"]["temperature"] == pytest.approx(temperature, rel=1e-4)
    scaled = test_logits / metrics["test_ts"]["temperature"]
    _check_split_metrics({k: v for k, v in metrics["test_ts"].items() if k != "temperature"}, reliability["test_ts"], scaled, y_test, 4)


def test_evaluate_all_without_temperature_scaling_or_validation_split_has_only_those_splits():
    model = _linear()
    unscaled = {"evaluation": {**EVALUATION, "temperature_scaling": False}, "compute": COMPUTE}
    metrics, _ = evaluation.evaluate_all(model, _val_data(), engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), unscaled, CPU)
    assert list(metrics) == ["test", "val"]
    no_val = make_study_data(n_test=20)
    scaled = {"evaluation": EVALUATION, "compute": COMPUTE}  # asked for, but there is nothing to fit on
    metrics, reliability = evaluation.evaluate_all(model, no_val, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), scaled, CPU)
    assert list(metrics) == list(reliability) == ["test"]
    _check_split_metrics(metrics["test"], reliability["test"], _logits(model, no_val.x_test), torch.from_numpy(no_val.y_test), 4)


def test_evaluate_all_with_amp_on_scores_the_bf16_logits():
    data = make_study_data(n_test=20)
    model = _linear()
    config = {"evaluation": {**EVALUATION, "temperature_scaling": False}, "compute": {**COMPUTE, "amp": "on"}}
    metrics, _ = evaluation.evaluate_all(model, data, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), config, CPU)
    model.eval()
    x = engine.to_float(_images(data.x_test), False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.cat([model(engine.Normalise(CIFAR10_MEAN, CIFAR10_STD)(x[i : i + 3])).float() for i in range(0, 20, 3)])
    labels = torch.from_numpy(data.y_test)
    assert metrics["test"]["acc"] == _accuracy(logits, labels)
    assert metrics["test"]["nll"] == pytest.approx(F.cross_entropy(logits.double(), labels).item(), rel=1e-5)


# --- best epoch by validation ---------------------------------------------------------------


def test_improves_is_strict_in_the_direction_of_each_rule():
    assert evaluation.improves({"val_acc": 0.6}, {"val_acc": 0.5}, "val_acc")
    assert not evaluation.improves({"val_acc": 0.5}, {"val_acc": 0.5}, "val_acc")
    assert not evaluation.improves({"val_acc": 0.4}, {"val_acc": 0.5}, "val_acc")
    assert evaluation.improves({"val_nll": 1.0}, {"val_nll": 1.1}, "val_nll")
    assert not evaluation.improves({"val_nll": 1.1}, {"val_nll": 1.1}, "val_nll")
    assert not evaluation.improves({"val_nll": 1.2}, {"val_nll": 1.1}, "val_nll")
    # each rule reads its own column
    assert evaluation.improves({"val_acc": 0.6, "val_nll": 9.0}, {"val_acc": 0.5, "val_nll": 1.0}, "val_acc")
    assert evaluation.improves({"val_acc": 0.1, "val_nll": 0.5}, {"val_acc": 0.5, "val_nll": 1.0}, "val_nll")


def test_best_validation_epoch_skips_the_empty_cells_of_a_history_file_and_keeps_the_first_of_ties():
    history = [
        {"epoch": 1, "val_acc": "", "val_nll": ""},  # as read back from history.tsv
        {"epoch": 2, "val_acc": 0.3, "val_nll": 2.0},
        {"epoch": 3, "val_acc": None, "val_nll": None},
        {"epoch": 4, "val_acc": 0.3, "val_nll": 2.0},
        {"epoch": 5, "val_acc": 0.2, "val_nll": 2.5},
    ]
    assert evaluation.best_validation_epoch(history, "val_acc") == 2
    assert evaluation.best_validation_epoch(history, "val_nll") == 2
    assert evaluation.best_validation_epoch(history[:1], "val_nll") is None


def _member(model, best_by="val_acc", ece_bins=4):
    return SimpleNamespace(
        model=model, best=None, device=CPU,
        config={"evaluation": {**EVALUATION, "best_by": best_by, "ece_bins": ece_bins}, "compute": COMPUTE},
    )


def _weights(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_note_validation_keeps_a_copy_of_the_weights_and_row_of_each_better_epoch_only():
    model = _linear()
    member = _member(model)
    first = _weights(model)
    row = {"epoch": 1, "val_acc": 0.5, "val_nll": 1.0}
    evaluation.note_validation(member, row, "val_acc")
    row["elapsed_s"] = 1.0  # the row goes on being filled after it is noted
    with torch.no_grad():
        model[1].weight.add_(1.0)  # training goes on: the kept weights must not move with it
    assert member.best["epoch"] == 1 and member.best["row"] == {"epoch": 1, "val_acc": 0.5, "val_nll": 1.0}
    assert member.best["state"].keys() == first.keys()
    assert all(torch.equal(member.best["state"][key], first[key]) for key in first)
    assert all(not value.requires_grad and value.device == CPU for value in member.best["state"].values())

    evaluation.note_validation(member, {"epoch": 2, "val_acc": 0.5, "val_nll": 0.1}, "val_acc")  # a tie
    evaluation.note_validation(member, {"epoch": 3, "val_acc": 0.4, "val_nll": 0.1}, "val_acc")  # worse
    assert member.best["epoch"] == 1
    second = _weights(model)
    evaluation.note_validation(member, {"epoch": 4, "val_acc": 0.7, "val_nll": 2.0}, "val_acc")
    assert member.best["epoch"] == 4 and member.best["row"]["val_acc"] == 0.7
    assert all(torch.equal(member.best["state"][key], second[key]) for key in second)


@pytest.mark.parametrize("best_by", ["val_acc", "val_nll"])
def test_best_validation_metrics_are_the_test_metrics_of_the_kept_weights(best_by):
    data = make_study_data(n_test=20)
    kept = _linear(seed=1)
    model = _linear(seed=2)  # the weights the run ended with
    member = _member(model, best_by=best_by, ece_bins=3)
    row = {"epoch": 7, "val_acc": 0.25, "val_nll": 1.75}
    member.best = {"epoch": 7, "row": row, "state": _weights(kept)}
    final = _weights(model)
    metrics = evaluation.best_validation_metrics(member, data, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD))
    logits, labels = _logits(kept, data.x_test), torch.from_numpy(data.y_test)
    assert not torch.equal(logits.argmax(1), _logits(model, data.x_test).argmax(1))  # the two differ
    assert metrics["acc"] == _accuracy(logits, labels)
    assert metrics["nll"] == pytest.approx(F.cross_entropy(logits.double(), labels).item(), rel=1e-5)
    assert metrics["ece"] == pytest.approx(_ece_by_hand(logits, labels, 3), abs=1e-5)
    assert metrics["epoch"] == 7 and metrics["best_by"] == best_by and metrics[best_by] == row[best_by]
    assert set(metrics) == {"acc", "nll", "ece", "brier", "epoch", "best_by", best_by}
    # the run's own network is left as it was
    assert all(torch.equal(model.state_dict()[key], final[key]) for key in final)


# --- during training ------------------------------------------------------------------------


def _pack(member):
    synced = []

    def sync(index):
        synced.append(index)
        return member

    return SimpleNamespace(members=[member], sync=sync, synced=synced)


def _during(data, every, val_every, epochs, best_by="val_acc"):
    """The rows evaluate_during_training fills for epochs 1..epochs, the last one final."""
    model = _linear()
    member = _member(model, best_by=best_by)
    member.config["evaluation"].update(every=every, val_every=val_every)
    pack = _pack(member)
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch}
        evaluation.evaluate_during_training(pack, 0, row, data, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), CPU, final=epoch == epochs)
        rows.append(row)
    return rows, member, model


def test_during_training_test_accuracy_every_n_epochs_and_validation_every_m_and_at_the_last():
    data = _val_data(n_val_per_class=2, n_test=20)
    rows, member, model = _during(data, every=2, val_every=3, epochs=7)
    assert [sorted(row) for row in rows] == [
        ["epoch"],
        ["epoch", "test_acc"],
        ["epoch", "val_acc", "val_nll"],
        ["epoch", "test_acc"],
        ["epoch"],
        ["epoch", "test_acc", "val_acc", "val_nll"],
        ["epoch", "val_acc", "val_nll"],  # the last epoch, though 7 is no multiple of 3
    ]
    test_logits, val_logits = _logits(model, data.x_test), _logits(model, data.x_val)
    y_test, y_val = torch.from_numpy(data.y_test), torch.from_numpy(data.y_val)
    test_acc, val_acc = _accuracy(test_logits, y_test), _accuracy(val_logits, y_val)
    assert test_acc != val_acc  # so that one split read for the other is seen
    assert rows[1]["test_acc"] == test_acc
    assert rows[2]["val_acc"] == val_acc
    assert rows[2]["val_nll"] == pytest.approx(F.cross_entropy(val_logits.double(), y_val).item(), rel=1e-5)
    assert member.best["epoch"] == 3  # noted at the first validation epoch; the same network later ties


def test_during_training_nothing_is_evaluated_when_every_and_val_every_are_zero_but_the_last_epoch_validates():
    data = _val_data(n_val_per_class=2, n_test=20)
    rows, member, _ = _during(data, every=0, val_every=0, epochs=3, best_by="val_nll")
    assert [sorted(row) for row in rows] == [["epoch"], ["epoch"], ["epoch", "val_acc", "val_nll"]]
    assert member.best["epoch"] == 3 and member.best["row"] == rows[2]


def test_during_training_without_a_validation_split_only_the_test_column_is_added():
    data = make_study_data(n_test=20)
    rows, member, _ = _during(data, every=1, val_every=1, epochs=2)
    assert [sorted(row) for row in rows] == [["epoch", "test_acc"], ["epoch", "test_acc"]]
    assert member.best is None


def test_during_training_evaluates_the_members_synced_weights():
    data = _val_data(n_val_per_class=2, n_test=20)
    model = _linear()
    member = _member(model)
    member.config["evaluation"].update(every=1, val_every=1)
    pack = _pack(member)
    evaluation.evaluate_during_training(pack, 0, {"epoch": 1}, data, engine.Normalise(CIFAR10_MEAN, CIFAR10_STD), CPU, final=False)
    assert pack.synced == [0, 0]  # weights copied out of the pack before each split


# --- the splits -----------------------------------------------------------------------------


def test_limit_test_set_keeps_the_first_images_of_the_test_split_only():
    data = _val_data(n_val_per_class=1, n_test=20)
    assert evaluation.limit_test_set(data, 0) is data
    limited = evaluation.limit_test_set(data, 5)
    assert np.array_equal(limited.x_test, data.x_test[:5]) and np.array_equal(limited.y_test, data.y_test[:5])
    for field in dataclasses.fields(data):
        if field.name not in ("x_test", "y_test"):
            assert getattr(limited, field.name) is getattr(data, field.name)


def test_temperature_scaling_without_validation_images_is_refused_with_both_ways_out():
    config = {"evaluation": {"temperature_scaling": True}}
    with pytest.raises(ConfigError) as refused:
        evaluation.check_validation_split(config, make_study_data())
    assert str(refused.value) == (
        "evaluation.temperature_scaling needs a validation split, and this subset has none; "
        "set subset.val_per_class > 0 (e.g. 50) or evaluation.temperature_scaling: false"
    )
    evaluation.check_validation_split(config, _val_data(n_val_per_class=1))
    evaluation.check_validation_split({"evaluation": {"temperature_scaling": False}}, make_study_data())
