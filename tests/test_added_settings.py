"""Settings added after runs were recorded (study.SETTINGS_ADDED_LATER) change no run's identity:
the committed runs stay finished, as the workflow computes what it expects of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixstudy.runs import run_folder, study
from mixstudy.core.config import load_params
from mixstudy.train.trainer import make_trainer

ROOT = Path(__file__).resolve().parents[1]
# committed runs, the parameter files that asked for them, and the subset they were trained on
COMMITTED = [
    ("docs/study-runs/study-net/runs", ["config/study-net.yaml"], "sweep/baseline/seed0", "docs/study-runs/study-net/subset.json"),
    ("docs/study-runs/study-net/runs", ["config/study-net.yaml"], "sweep/manifold_S0-2_alpha4/seed1", "docs/study-runs/study-net/subset.json"),
    ("docs/study-runs/theory/runs", ["config/first.yaml", "config/theory.yaml"], "sweep/manifold_S0_alpha4/seed0",
     "docs/study-runs/theory/subset.json"),
    ("docs/real-runs", ["config/table3.yaml"], "sweep/manifold_S0-2_alpha4/seed0", None),  # before crop_padding_mode
]


@pytest.mark.parametrize("root, files, run_id, subset", COMMITTED, ids=[c[2] + " " + c[0] for c in COMMITTED])
def test_a_committed_run_keeps_its_training_hash_and_stays_finished(root, files, run_id, subset):
    params = load_params([ROOT / "params.yaml", *(ROOT / f for f in files)])
    record = run_folder.read_run_record(ROOT / root / run_id)
    subset_sha256 = (json.loads((ROOT / subset).read_text())["train_sha256"] if subset
                     else record["provenance"]["subset_sha256"])
    expected = study.training_hash(study.spec_config(params, study.find_run(params, run_id), None), subset_sha256)
    assert run_folder.recorded_training_hash(record) == expected
    if root.startswith("docs/study-runs"):  # docs/real-runs keeps no weights (nor a note that they were left out)
        assert run_folder.unfinished_reason(ROOT / root / run_id, expected) is None


def test_a_run_records_targets_only_where_they_act(params):
    baseline = study.run_config(params, 0, {"mixing": {"method": "none", "alpha": 0.0}})
    mixup = study.run_config(params, 0, {"mixing": {"method": "mixup", "alpha": 1.0}})
    assert "targets" not in baseline["mixing"] and "targets" not in mixup["mixing"]  # as every run before
    hard = study.run_config(params, 0, {"mixing": {"method": "mixup", "alpha": 1.0, "targets": "hard"}})
    hard_baseline = study.run_config(params, 0, {"mixing": {"method": "none", "alpha": 0.0, "targets": "hard"}})
    assert hard["mixing"]["targets"] == "hard" and hard_baseline == baseline  # nothing mixed: nothing to keep hard
    assert study.training_hash(hard, "s") != study.training_hash(mixup, "s")
    mixed = {**mixup, "mixing": {**mixup["mixing"], "targets": "mixed"}}  # a record that names it
    assert study.training_hash(mixed, "s") == study.training_hash(mixup, "s")


def test_a_config_without_targets_trains_with_mixed_ones(params):
    mixup = study.run_config(params, 0, {"mixing": {"method": "mixup", "alpha": 1.0}})
    hard = study.run_config(params, 0, {"mixing": {"method": "mixup", "alpha": 1.0, "targets": "hard"}})
    assert make_trainer(mixup, torch.device("cpu"), 10).mixer.target_mode == "mixed"
    assert make_trainer(hard, torch.device("cpu"), 10).mixer.target_mode == "hard"
