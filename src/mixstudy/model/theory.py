"""Two claims of Carratino et al., "On Mixup Regularization" (JMLR 2022), measured on a trained network.

Mixup is ERM on data shrunk towards its mean, ``x -> mean + theta_bar (x - mean)`` (labels shrunk the
same way), plus a random perturbation of the shrunk data; ``theta`` is ``max(lambda, 1 - lambda)``
for ``lambda ~ Beta(alpha, alpha)`` and ``theta_bar`` its mean. Two consequences are measured here:

1. **Smoothness.** The perturbation penalises the model's Jacobian: mixup-trained models should have
   smaller input gradients. :func:`jacobian_norms` gives, per image, the Frobenius norm of the
   Jacobian of the logits with respect to the (normalised) input, exactly (one backward pass per
   class), and that of the log-softmax. The logits are what
   the paper's expansion differentiates (the model ``f`` before the loss); the log-softmax's
   Jacobian ``(I - 1 p^T) J`` drops the direction that shifts every logit alike, which no
   prediction sees, so both are recorded.
2. **Test-time transformation.** A mixup model was fitted to shrunk data, so the paper applies the
   same shrinkage to a test input (:func:`shrink_towards_mean`, with the mean image of the
   training inputs, as the paper's ``x_bar``) and undoes the label shrinkage on the output: for
   softmax outputs, logits divided by ``theta_bar`` (:func:`theta_bar`).

And one claim of Zhang et al., "mixup: Beyond Empirical Risk Minimization" (ICLR 2018, Figure 2):

3. **In-between behaviour.** At points ``lambda x_i + (1 - lambda) x_j`` between training examples
   (:func:`between_points`, on a fixed seeded set of pairs, :func:`between_pairs`, and the fixed grid
   :data:`BETWEEN_LAMBDAS`), a mixup model's prediction is less often neither ``y_i`` nor ``y_j``
   (:func:`miss_rate`) and the input gradient of its loss there is smaller (:func:`between_measures`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

# Images per backward pass: the chunk's activations are held while one backward pass per class runs.
JACOBIAN_CHUNK = 50


def theta_bar(alpha: float) -> float:
    """E[max(lambda, 1 - lambda)] for lambda ~ Beta(alpha, alpha), from scipy's Beta distribution.

    By symmetry E[max] = 2 E[lambda; lambda > 1/2], and lambda times the Beta(a, a) density is
    1/2 times the Beta(a + 1, a) density, so E[max] = P(Beta(alpha + 1, alpha) > 1/2)."""
    if not alpha > 0:
        raise ValueError(f"theta_bar needs alpha > 0 (a mixing run), got {alpha!r}")
    return float(stats.beta(alpha + 1.0, alpha).sf(0.5))


def shrink_towards_mean(x: torch.Tensor, mean_image: torch.Tensor, theta: float) -> torch.Tensor:
    """``mean + theta (x - mean)``: the paper's transformation of an input, written as
    ``theta x + (1 - theta) mean`` so that theta = 1 gives ``x`` exactly (and theta = 0 the mean)."""
    return theta * x + (1.0 - theta) * mean_image


def input_jacobians(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian of the logits with respect to each input image: shape (N, classes, *image).

    In eval mode the images of a batch do not interact (BatchNorm uses its running statistics), so
    the gradient of logit k summed over the batch holds row k of every image's Jacobian: one
    forward pass and one backward pass per class (measured 4x faster on CPU than
    ``torch.func.vmap(torch.func.jacrev(...))``, which the tests use to check it)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    rows = [
        torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k < logits.shape[1] - 1)[0]
        for k in range(logits.shape[1])
    ]
    return torch.stack(rows, dim=1)


def jacobian_norms(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image, the Frobenius norms of the Jacobians of the logits and of the log-softmax with
    respect to the input ``x`` (float, as the network takes it), in eval mode."""
    model.eval()
    logits_norms, log_softmax_norms = [], []
    for start in range(0, len(x), JACOBIAN_CHUNK):
        chunk = x[start : start + JACOBIAN_CHUNK]
        jacobian = input_jacobians(model, chunk).flatten(2)  # (n, classes, inputs)
        with torch.no_grad():
            probabilities = torch.softmax(model(chunk), dim=1)
        # d log softmax_k = d z_k - sum_j p_j d z_j: subtract the probability-weighted mean row.
        log_softmax_jacobian = jacobian - torch.einsum("nj,nji->ni", probabilities, jacobian).unsqueeze(1)
        logits_norms.append(jacobian.norm(dim=(1, 2)))
        log_softmax_norms.append(log_softmax_jacobian.norm(dim=(1, 2)))
    return {"logits": torch.cat(logits_norms).detach(), "log_softmax": torch.cat(log_softmax_norms).detach()}


# --- between training examples (Zhang et al., Figure 2) ----------------------------------------

# The fixed grid of lambda: Zhang et al.'s Figure 2 spans 0.5 to 1 (with random pairs, 1 - lambda
# gives the same points with the pair's roles swapped); lambda = 1 is the training image itself.
BETWEEN_LAMBDAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BETWEEN_SEED = 0  # the pairs' own numpy stream: the same pairs for every run of a subset


def between_pairs(images: int, pairs: int, seed: int = BETWEEN_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` pairs (i, j) of distinct training images, each drawn uniformly (numpy's PCG64)."""
    if images < 2:
        raise ValueError(f"pairs between training images need two images, not {images}")
    rng = np.random.Generator(np.random.PCG64(seed))
    first = rng.integers(images, size=pairs)
    second = (first + rng.integers(1, images, size=pairs)) % images  # never the image itself
    return first, second


def between_points(x_i: torch.Tensor, x_j: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam x_i + (1 - lam) x_j``: lambda = 1 gives ``x_i`` exactly."""
    return lam * x_i + (1.0 - lam) * x_j


def miss_rate(predictions: torch.Tensor, y_i: torch.Tensor, y_j: torch.Tensor) -> float:
    """The share of predictions that are neither ``y_i`` nor ``y_j`` (Zhang et al.'s "miss")."""
    return ((predictions != y_i) & (predictions != y_j)).float().mean().item()


def between_measures(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, first: np.ndarray, second: np.ndarray,
                     lambdas=BETWEEN_LAMBDAS, chunk: int = JACOBIAN_CHUNK) -> list[dict]:
    """Per lambda, at ``lambda x_i + (1 - lambda) x_j`` for the pairs (first, second) of ``x`` (float,
    as the network takes it): the miss rate, and the mean (and std) over pairs of the norm of the
    gradient, with respect to the input, of the cross-entropy against the mixed target
    ``lambda y_i + (1 - lambda) y_j`` (the loss mixup trains on; at lambda = 1 the plain loss at x_i).
    Eval mode: each point's gradient is its own."""
    model.eval()
    first, second = torch.as_tensor(first, device=x.device), torch.as_tensor(second, device=x.device)
    rows = []
    for lam in lambdas:
        predictions, norms = [], []
        for start in range(0, len(first), chunk):
            i, j = first[start : start + chunk], second[start : start + chunk]
            points = between_points(x[i], x[j], lam).detach().requires_grad_(True)
            logits = model(points).float()
            classes = logits.shape[1]
            target = between_points(F.one_hot(labels[i], classes).float(), F.one_hot(labels[j], classes).float(), lam)
            loss = -(target * F.log_softmax(logits, dim=1)).sum()  # a sum: each point's gradient is its own loss's
            gradient, = torch.autograd.grad(loss, points)
            norms.append(gradient.flatten(1).norm(dim=1).detach())
            predictions.append(logits.argmax(1).detach())
        norms = torch.cat(norms)
        rows.append({
            "lambda": float(lam),
            "miss_rate": miss_rate(torch.cat(predictions), labels[first], labels[second]),
            "gradient_norm": float(norms.mean()),
            "gradient_norm_std": float(norms.std()) if len(norms) > 1 else None,
        })
    return rows
