"""config/claims/ (issue 38's real runs): each file layers on config/first.yaml and asks what its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixstudy.runs import study
from mixstudy.core.config import load_params

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = sorted((ROOT / "config" / "claims").glob("*.yaml"))


def claim_params(name: str) -> dict:
    return load_params([ROOT / "params.yaml", ROOT / "config" / "first.yaml", ROOT / "config" / "claims" / name])


@pytest.mark.parametrize("path", CLAIMS, ids=[p.name for p in CLAIMS])
def test_each_claim_file_trains_erm_and_one_input_mixup_cell_on_two_seeds_measured_between_images(path):
    params = claim_params(path.name)
    runs = study.sweep_runs(params)
    assert sorted({spec.name for spec in runs}) == sorted({"baseline", study.manifold_name([0], params["sweep"]["alphas"][0])})
    assert len(runs) == 4 and params["theory"]["between_pairs"] == 500 and params["model"]["name"] == "convnet"


def test_the_claim_files_set_what_the_issue_asks():
    assert len(CLAIMS) == 8
    for share in (20, 50):
        assert claim_params(f"noise{share}.yaml")["data"]["label_noise"] == share / 100
        dropout = claim_params(f"noise{share}-dropout.yaml")
        assert dropout["data"]["label_noise"] == share / 100 and dropout["model"]["convnet"]["dropout"] == 0.7
        assert dropout["sweep"]["alphas"] == [8.0]
    assert [claim_params(f"wd{wd}.yaml")["train"]["weight_decay"] for wd in ("1e-4", "5e-4")] == [1e-4, 5e-4]
    hard = claim_params("hard-targets.yaml")
    cell, = [spec for spec in study.sweep_runs(hard) if spec.name != "baseline" and spec.seed == 0]
    assert study.spec_config(hard, cell, None)["mixing"]["targets"] == "hard"
    assert claim_params("mixup-label-smoothing.yaml")["mixing"]["label_smoothing"] == 0.1
