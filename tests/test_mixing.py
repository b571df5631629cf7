"""Mixing: equality with torchvision's MixUp/CutMix, the Mixer's draws, the mixed losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import CutMix, MixUp

from mixstudy.model import mixing
from mixstudy.core.errors import ConfigError
from mixstudy.model.mixing import MixDraw, Mixer

NUM_CLASSES = 10  # a CIFAR-10-sized label space


def _batch(batch=6, height=12, width=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, height, width, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    return images, labels


def _fix_lambda(transform, value: float) -> float:
    """Make a torchvision MixUp/CutMix draw ``value``; return the python float it will use."""
    fixed = torch.tensor([value])
    transform._dist.sample = lambda *args, **kwargs: fixed.clone()
    return float(fixed)


def _torchvision_perm(batch: int) -> torch.Tensor:
    return torch.roll(torch.arange(batch), 1)  # torchvision pairs sample i with sample i-1


# --- equality with torchvision ---------------------------------------------------------------


@pytest.mark.parametrize("value", [0.3137, 0.9, 0.05, 0.5])
def test_input_mixup_equals_torchvision_mixup(value):
    images, labels = _batch()
    reference = MixUp(alpha=1.0, num_classes=NUM_CLASSES)
    lam = _fix_lambda(reference, value)
    expected_images, expected_targets = reference(images.clone(), labels.clone())

    perm = _torchvision_perm(len(labels))
    mixer = Mixer(
        method="mixup", alpha=1.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    draw = MixDraw(point=0, lam=lam, perm=perm)
    assert torch.equal(mixer.mix(images, draw), expected_images)
    assert torch.equal(mixing.mix_tensors(images, perm, lam), expected_images)
    assert torch.equal(mixer.targets(labels, draw), expected_targets)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("value", [0.7, 0.2, 0.02])
def test_cutmix_equals_torchvision_cutmix(seed, value):
    height, width = 12, 16  # not square, so swapped axes would show
    images, labels = _batch(height=height, width=width, seed=seed)
    reference = CutMix(alpha=1.0, num_classes=NUM_CLASSES)
    lam = _fix_lambda(reference, value)
    torch.manual_seed(seed)
    expected_images, expected_targets = reference(images.clone(), labels.clone())

    # torchvision's make_params: r_x = randint(W), r_y = randint(H), right after the (fixed) lambda.
    torch.manual_seed(seed)
    center_x = int(torch.randint(width, size=(1,)))
    center_y = int(torch.randint(height, size=(1,)))
    box = mixing.cutmix_box(lam, height, width, center_y, center_x)

    torch.manual_seed(seed)
    params = reference.make_params([images])
    assert tuple(box) == tuple(params["box"])
    assert mixing.box_lambda(box, height, width) == params["lam_adjusted"]

    perm = _torchvision_perm(len(labels))
    mask = mixing.box_mask([box], height, width, "cpu")
    draw = MixDraw(point=0, lam=mixing.box_lambda(box, height, width), perm=perm, mask=mask)
    mixer = Mixer(
        method="cutmix", alpha=1.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    assert torch.equal(mixer.mix(images, draw), expected_images)
    assert torch.equal(mixer.targets(labels, draw), expected_targets)


def test_cutmix_box_is_clipped_to_the_image():
    # A box centred in a corner is cut by the borders: the kept share grows accordingly.
    box = mixing.cutmix_box(0.0, 32, 32, 0, 0)
    assert box == (0, 0, 16, 16)
    assert mixing.box_lambda(box, 32, 32) == pytest.approx(1 - 256 / 1024)
    full = mixing.cutmix_box(0.0, 32, 32, 16, 16)
    assert full == (0, 0, 32, 32)
    assert mixing.box_lambda(full, 32, 32) == 0.0


# --- the Mixer ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, alpha", [("none", 0.0), ("none", 1.0), ("mixup", 0.0), ("manifold", 0.0), ("cutmix", 0.0)])
def test_mixer_without_mixing_draws_nothing(method, alpha):
    mixer = Mixer(
        method=method, alpha=alpha, layers=(0, 1, 2), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert not mixer.active
    assert mixer.draw(rng, 8, (32, 32), "cpu") is None
    assert rng.bit_generator.state == state  # no random numbers used
    labels = torch.tensor([3, 1, 4, 1])
    assert torch.equal(mixer.targets(labels, None), F.one_hot(labels, NUM_CLASSES).float())


@pytest.mark.parametrize("layers", [(0, 2), (1,), (0, 1, 2)])
def test_manifold_draws_points_uniformly_from_s(layers):
    mixer = Mixer(
        method="manifold", alpha=2.0, layers=layers, lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    rng = np.random.default_rng(12345)
    n = 3000
    points = [mixer.draw(rng, 4, (8, 8), "cpu").point for _ in range(n)]
    assert set(points) == set(layers)
    share = 1.0 / len(layers)
    for k in layers:
        # binomial standard deviation is at most 0.0092 here; allow > 5 sigma
        assert abs(points.count(k) / n - share) < 0.05


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_input_mixup_and_cutmix_always_mix_at_the_input(method):
    mixer = Mixer.from_params(
        {"method": method, "alpha": 1.0, "layers": [1, 2], "lambda_per": "batch", "loss": "soft_ce", "label_smoothing": 0.0, "targets": "mixed"}, NUM_CLASSES
    )
    rng = np.random.default_rng(0)
    assert {mixer.draw(rng, 4, (8, 8), "cpu").point for _ in range(50)} == {0}


def test_from_params_passes_every_setting():
    mixer = Mixer.from_params(
        {"method": "manifold", "alpha": 2, "layers": [1, 2], "lambda_per": "sample", "loss": "bce", "label_smoothing": 0.1, "targets": "hard"}, NUM_CLASSES
    )
    assert (mixer.method, mixer.alpha, mixer.layers) == ("manifold", 2.0, (1, 2))
    assert (mixer.lambda_per, mixer.loss, mixer.label_smoothing) == ("sample", "bce", 0.1)
    assert mixer.target_mode == "hard"
    assert mixer.num_classes == NUM_CLASSES


def test_member_mixes_mix_each_members_block_at_its_own_point():
    """A pack of three: member 0 mixes at point 1, member 1 does not mix, member 2 mixes at point 0."""
    mixers = [
        Mixer(
            method=method, alpha=1.0, layers=(0, 1), lambda_per="batch",
            loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
        )
        for method in ("manifold", "none", "mixup")
    ]
    perm = torch.tensor([2, 0, 3, 1])
    draws = [MixDraw(point=1, lam=0.3, perm=perm), None, MixDraw(point=0, lam=0.8, perm=perm.flip(0))]
    mixes = mixing.member_mixes(mixers, draws)
    assert sorted(mixes) == [0, 1]
    h = torch.randn(4, 3 * 5, 2, 2, generator=torch.Generator().manual_seed(0))
    blocks = h.chunk(3, dim=1)
    at_input = mixes[0](h).chunk(3, dim=1)
    assert torch.equal(at_input[0], blocks[0]) and torch.equal(at_input[1], blocks[1])
    assert torch.equal(at_input[2], mixers[2].mix(blocks[2], draws[2]))
    at_one = mixes[1](h).chunk(3, dim=1)
    assert torch.equal(at_one[0], mixers[0].mix(blocks[0], draws[0]))
    assert torch.equal(at_one[1], blocks[1]) and torch.equal(at_one[2], blocks[2])
    solo = mixing.member_mixes(mixers[:1], draws[:1])
    assert torch.equal(solo[1](blocks[0]), mixers[0].mix(blocks[0], draws[0]))  # a pack of one: the solo mix


def test_a_mixer_given_no_method_or_no_alpha_does_not_mix():
    assert not Mixer(
        method="none", alpha=1.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    ).active
    assert not Mixer(
        method="mixup", alpha=0.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    ).active


def test_a_mixer_is_given_every_setting():
    """params.yaml holds the defaults; a Mixer has none of its own."""
    with pytest.raises(TypeError, match="missing"):
        Mixer("mixup", alpha=1.0)


def test_cutmix_masks_are_built_on_the_device_asked_for():
    """The mask is made where the batch lives (meta stands in for a GPU here: no copy can hide there)."""
    mixer = Mixer(
        method="cutmix", alpha=1.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    draw = mixer.draw(np.random.default_rng(0), 4, (8, 8), "meta")
    assert draw.mask.device.type == "meta"
    assert mixing.box_mask([(0, 0, 2, 2)], 8, 8, "meta").device.type == "meta"


def test_draws_are_reproducible_from_the_generator_seed():
    mixer = Mixer(
        method="cutmix", alpha=1.0, layers=(0,), lambda_per="sample",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    a = mixer.draw(np.random.default_rng(7), 6, (32, 32), "cpu")
    b = mixer.draw(np.random.default_rng(7), 6, (32, 32), "cpu")
    c = mixer.draw(np.random.default_rng(8), 6, (32, 32), "cpu")
    assert np.array_equal(a.lam, b.lam) and torch.equal(a.perm, b.perm) and torch.equal(a.mask, b.mask)
    assert not (np.array_equal(a.lam, c.lam) and torch.equal(a.mask, c.mask))


@pytest.mark.parametrize("method", ["mixup", "manifold"])
def test_per_sample_lambda_mixes_each_sample_with_its_own_weight(method):
    batch = 7
    mixer = Mixer(
        method=method, alpha=1.0, layers=(0, 1), lambda_per="sample",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    draw = mixer.draw(np.random.default_rng(3), batch, (32, 32), "cpu")
    lam = np.asarray(draw.lam)
    assert lam.shape == (batch,)
    assert len(np.unique(lam)) == batch  # one weight per sample
    assert ((lam >= 0) & (lam <= 1)).all()

    hidden = torch.randn(batch, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    mixed = mixer.mix(hidden, draw)
    labels = torch.arange(batch) % NUM_CLASSES
    targets = mixer.targets(labels, draw)
    perm = draw.perm
    for i in range(batch):
        j = int(perm[i])
        expected = lam[i] * hidden[i] + (1 - lam[i]) * hidden[j]
        assert torch.allclose(mixed[i], expected, atol=1e-6)
        expected_target = torch.zeros(NUM_CLASSES)
        expected_target[int(labels[i])] += lam[i]
        expected_target[int(labels[j])] += 1 - lam[i]
        assert torch.allclose(targets[i], expected_target, atol=1e-6)


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_per_batch_lambda_is_one_float(method):
    mixer = Mixer(
        method=method, alpha=0.4, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        draw = mixer.draw(rng, 5, (32, 32), "cpu")
        assert isinstance(draw.lam, float) and 0.0 <= draw.lam <= 1.0
        assert sorted(draw.perm.tolist()) == list(range(5))


@pytest.mark.parametrize("lambda_per", ["batch", "sample"])
def test_cutmix_lambda_is_the_kept_area_share(lambda_per):
    height, width, batch = 32, 24, 5
    mixer = Mixer(
        method="cutmix", alpha=1.0, layers=(0,), lambda_per=lambda_per,
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    rng = np.random.default_rng(99)
    for _ in range(40):
        draw = mixer.draw(rng, batch, (height, width), "cpu")
        assert draw.mask.shape[0] == (1 if lambda_per == "batch" else batch)
        pasted = draw.mask.reshape(draw.mask.shape[0], -1).sum(1).double() / (height * width)
        kept = np.atleast_1d(np.asarray(draw.lam, dtype=np.float64))
        assert np.allclose(kept, 1.0 - pasted.numpy(), rtol=0, atol=1e-12)

        # The mixed images take exactly the masked pixels from the partner sample.
        images = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 3, height, width).clone()
        mixed = mixer.mix(images, draw)
        for i in range(batch):
            m = draw.mask[i if lambda_per == "sample" else 0, 0]
            j = int(draw.perm[i])
            assert torch.equal(mixed[i][:, m], torch.full_like(mixed[i][:, m], float(j)))
            assert torch.equal(mixed[i][:, ~m], torch.full_like(mixed[i][:, ~m], float(i)))


# --- losses ---------------------------------------------------------------------------------


def _logits_and_labels(batch=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, NUM_CLASSES, generator=gen) * 3
    y_a = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    y_b = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    return logits, y_a, y_b


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.75, 1.0])
def test_soft_ce_is_the_interpolated_cross_entropy(lam):
    logits, y_a, y_b = _logits_and_labels()
    targets = lam * F.one_hot(y_a, NUM_CLASSES).float() + (1 - lam) * F.one_hot(y_b, NUM_CLASSES).float()
    expected = lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
    assert torch.allclose(mixing.mixed_loss(logits, targets, "soft_ce"), expected, atol=1e-6)


def test_soft_ce_with_per_sample_lambda():
    logits, y_a, y_b = _logits_and_labels()
    lam = torch.tensor([0.1, 0.9, 0.5, 0.0, 1.0, 0.33])
    targets = lam[:, None] * F.one_hot(y_a, NUM_CLASSES) + (1 - lam[:, None]) * F.one_hot(y_b, NUM_CLASSES)
    ce_a = F.cross_entropy(logits, y_a, reduction="none")
    ce_b = F.cross_entropy(logits, y_b, reduction="none")
    expected = (lam * ce_a + (1 - lam) * ce_b).mean()
    assert torch.allclose(mixing.mixed_loss(logits, targets.float(), "soft_ce"), expected, atol=1e-6)


def test_bce_is_bce_on_softmax():
    logits, y_a, y_b = _logits_and_labels()
    lam = 0.4
    targets = lam * F.one_hot(y_a, NUM_CLASSES).float() + (1 - lam) * F.one_hot(y_b, NUM_CLASSES).float()
    expected = torch.nn.BCELoss()(torch.softmax(logits, dim=1), targets)
    assert torch.allclose(mixing.mixed_loss(logits, targets, "bce"), expected, atol=1e-6)
    mixer = Mixer(
        method="mixup", alpha=1.0, layers=(0,), lambda_per="batch",
        loss="bce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    assert torch.allclose(mixer.loss_fn(logits, targets), expected, atol=1e-6)


def test_unmixed_soft_ce_is_plain_cross_entropy():
    logits, y_a, _ = _logits_and_labels()
    mixer = Mixer(
        method="none", alpha=0.0, layers=(0,), lambda_per="batch",
        loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
    )
    loss = mixer.loss_fn(logits, mixer.targets(y_a, None))
    assert torch.allclose(loss, F.cross_entropy(logits, y_a), atol=1e-6)


# --- configuration errors -------------------------------------------------------------------


def test_negative_alpha_is_refused_by_the_parameters_schema():
    """One check, where every parameter is validated (the schema); Mixer trusts validated settings."""
    from mixstudy.core.config import load_params

    from conftest import PARAMS_FILE

    with pytest.raises(ConfigError, match="mixing.alpha"):
        load_params([PARAMS_FILE], ["mixing.method=mixup", "mixing.alpha=-0.5"])
    with pytest.raises(ConfigError, match="mixing.label_smoothing"):
        load_params([PARAMS_FILE], ["mixing.label_smoothing=1.0"])


def test_unknown_method_is_refused():
    with pytest.raises(ConfigError, match="mixing.method") as info:
        Mixer(
            method="mixmatch", alpha=1.0, layers=(0,), lambda_per="batch",
            loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
        )
    assert str(info.value).endswith("choose one of: none, mixup, manifold, cutmix")


def test_unknown_loss_is_refused():
    with pytest.raises(ConfigError, match="mixing.loss.*choose one of: soft_ce, bce$"):
        Mixer(
            method="mixup", alpha=1.0, layers=(0,), lambda_per="batch",
            loss="mse", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
        )
    logits, y_a, _ = _logits_and_labels()
    with pytest.raises(ConfigError, match="mixing.loss.*choose one of: soft_ce, bce$"):
        mixing.mixed_loss(logits, F.one_hot(y_a, NUM_CLASSES).float(), "mse")


def test_the_default_loss_is_the_interpolated_cross_entropy():
    logits, y_a, _ = _logits_and_labels()
    targets = F.one_hot(y_a, NUM_CLASSES).float()
    assert torch.equal(mixing.mixed_loss(logits, targets), mixing.mixed_loss(logits, targets, "soft_ce"))


def test_unknown_lambda_per_is_refused():
    with pytest.raises(ConfigError, match="mixing.lambda_per"):
        Mixer(
            method="mixup", alpha=1.0, layers=(0,), lambda_per="pixel",
            loss="soft_ce", label_smoothing=0.0, num_classes=NUM_CLASSES, targets="mixed",
        )


# --- targets: mixed or hard, with label smoothing ----------------------------------------------


def _input_mixer(targets: str, eps: float = 0.0) -> Mixer:
    return Mixer(method="mixup", alpha=1.0, layers=(0,), lambda_per="batch", loss="soft_ce",
                 label_smoothing=eps, num_classes=NUM_CLASSES, targets=targets)


def test_hard_targets_mix_the_inputs_and_keep_each_rows_first_label():
    labels, perm, lam = torch.tensor([3, 1, 4, 1]), torch.tensor([2, 0, 3, 1]), 0.3
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    draw = MixDraw(point=0, lam=lam, perm=perm)
    mixed_images = _input_mixer("hard").mix(images, draw)
    assert torch.allclose(mixed_images[:, 0, 0, 0], torch.tensor([0.3 * 0 + 0.7 * 2, 0.3 * 1 + 0.7 * 0, 0.3 * 2 + 0.7 * 3, 0.3 * 3 + 0.7 * 1]))
    hand = torch.zeros(4, NUM_CLASSES)
    hand[0, 3] = hand[1, 1] = hand[2, 4] = hand[3, 1] = 1.0
    assert torch.equal(_input_mixer("hard").targets(labels, draw), hand)
    assert torch.equal(_input_mixer("hard").mix(images, draw), _input_mixer("mixed").mix(images, draw))
    assert not torch.equal(_input_mixer("mixed").targets(labels, draw), hand)


def test_label_smoothing_smooths_each_one_hot_target_before_mixing():
    """Zhang et al. (and timm's mixup_target): lam * smooth(y_i) + (1 - lam) * smooth(y_j)."""
    labels, perm, draw_lam = torch.tensor([3, 1]), torch.tensor([1, 0]), 0.3
    targets = _input_mixer("mixed", eps=0.1).targets(labels, MixDraw(point=0, lam=draw_lam, perm=perm))
    hand = torch.full((2, NUM_CLASSES), 0.01)  # eps / classes everywhere
    hand[0, 3], hand[0, 1] = 0.3 * 0.91 + 0.7 * 0.01, 0.3 * 0.01 + 0.7 * 0.91  # the true class gets 1 - eps + eps / classes
    hand[1, 1], hand[1, 3] = 0.3 * 0.91 + 0.7 * 0.01, 0.3 * 0.01 + 0.7 * 0.91
    assert torch.allclose(targets, hand, atol=1e-7) and torch.allclose(targets.sum(1), torch.ones(2))
    hard = _input_mixer("hard", eps=0.1).targets(labels, MixDraw(point=0, lam=draw_lam, perm=perm))
    assert torch.allclose(hard, mixing.smooth(F.one_hot(labels, NUM_CLASSES).float(), 0.1))


def test_an_unknown_targets_mode_is_refused_by_name():
    with pytest.raises(ConfigError, match="mixing.targets: unknown targets 'soft'; choose one of: mixed, hard"):
        _input_mixer("soft")
