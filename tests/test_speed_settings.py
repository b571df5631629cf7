"""Speed settings change the order of floating-point operations, never the result beyond that noise.

A short, gentle run (one epoch, lr 0.01) keeps training from amplifying that noise, so the
metrics must agree to a relative 1e-3. A setting that changed a random stream (say, dropout
masks drawn in memory order under channels_last) moves them far more and fails this.
"""

from __future__ import annotations

import pytest

from mixstudy.train import training

MANIFOLD = {"method": "manifold", "alpha": 1.0, "layers": [0, 1, 2]}


def _metrics(config, data, out) -> dict:
    return training.train_runs([config], data, [out], progress="lines")[0]["metrics"]["test"]


@pytest.mark.parametrize(
    "speed",
    [
        {"channels_last": True},
        {"eval_batch_size": 7},
        {"threads": 2},
    ],
    ids=["channels_last", "eval_batch_size", "threads"],
)
def test_speed_settings_keep_metrics(tmp_path, tiny_config, tiny_data, speed):
    reference_compute = {"channels_last": False, "eval_batch_size": 1000, "threads": 1}
    gentle = {"epochs": 1, "lr": 0.01}
    reference = _metrics(tiny_config(seed=5, mixing=MANIFOLD, train=gentle, compute=reference_compute), tiny_data, tmp_path / "ref")
    changed = _metrics(
        tiny_config(seed=5, mixing=MANIFOLD, train=gentle, compute={**reference_compute, **speed}), tiny_data, tmp_path / "fast"
    )
    assert changed["acc"] == pytest.approx(reference["acc"], abs=1 / 20 + 1e-9)  # at most one of 20 test images flips
    for name in ("nll", "ece", "brier"):
        assert changed[name] == pytest.approx(reference[name], rel=1e-3, abs=1e-4), name
