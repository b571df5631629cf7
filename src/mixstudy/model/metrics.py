"""Classification metrics from logits: accuracy, NLL, expected calibration error, Brier score, FGSM."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits.double(), labels).item()


def brier(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over samples of the squared distance between the softmax and the one-hot label."""
    probs = F.softmax(logits.double(), dim=1)
    onehot = F.one_hot(labels, probs.shape[1]).double()
    return ((probs - onehot) ** 2).sum(1).mean().item()


def calibration(logits: torch.Tensor, labels: torch.Tensor, n_bins: int) -> dict:
    """Expected calibration error over equal-width confidence bins, with the per-bin table.

    Bin i holds confidences in (i/n, (i+1)/n] (the first bin also holds 0). ECE is the
    count-weighted mean of |accuracy - confidence| over bins.
    """
    probs = F.softmax(logits.double(), dim=1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    bins = torch.clamp(torch.ceil(confidence * n_bins).long() - 1, 0, n_bins - 1)
    count = torch.bincount(bins, minlength=n_bins).double()
    conf_sum = torch.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    safe = count.clamp(min=1)
    bin_acc, bin_conf = acc_sum / safe, conf_sum / safe
    ece = ((count / count.sum()) * (bin_acc - bin_conf).abs()).sum().item()
    return {
        "ece": ece,
        "bin_edges": torch.linspace(0, 1, n_bins + 1).tolist(),
        "bin_accuracy": bin_acc.tolist(),
        "bin_confidence": bin_conf.tolist(),
        "bin_count": count.long().tolist(),
    }


def summarise(logits: torch.Tensor, labels: torch.Tensor, n_bins: int) -> tuple[dict, dict]:
    """All logit-based metrics, and the reliability table for diagrams."""
    reliability = calibration(logits, labels, n_bins)
    metrics = {
        "acc": accuracy(logits, labels),
        "nll": nll(logits, labels),
        "ece": reliability.pop("ece"),
        "brier": brier(logits, labels),
    }
    return metrics, reliability


def fgsm_perturb(model, images: torch.Tensor, labels: torch.Tensor, epsilon: float, normalise) -> torch.Tensor:
    """One signed-gradient step of size ``epsilon`` on [0, 1] pixels, clipped back to [0, 1]."""
    images = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(normalise(images)), labels)
    (grad,) = torch.autograd.grad(loss, images)
    return (images + epsilon * grad.sign()).clamp_(0, 1).detach()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the NLL of ``logits / T``.

    Optimises log T (so T stays positive) with torch's L-BFGS and a strong-Wolfe line search,
    in float64, from T = 1. Fit it on held-out (validation) logits, never on the test set.
    """
    if len(labels) == 0:
        raise ValueError("fit_temperature needs held-out logits; it was given none")
    logits, labels = logits.detach().double(), labels.detach()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    solver = torch.optim.LBFGS([log_t], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        solver.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    solver.step(closure)
    return float(log_t.exp().item())
