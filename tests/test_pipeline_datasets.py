"""The whole chain under Snakemake on another data set: a made-up file in CIFAR-100's format
(its shapes, 100 classes of 500 training and 100 test images), from data to report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline_helpers import copy_project, snakemake

pytestmark = pytest.mark.slow


def made_up_cifar100(path: Path) -> None:
    rng = np.random.default_rng(0)
    y_train = rng.permutation(np.repeat(np.arange(100), 500)).astype(np.uint8)
    y_test = rng.permutation(np.repeat(np.arange(100), 100)).astype(np.uint8)
    # each image a constant grey that depends on its class, so a network can learn something
    x_train = np.broadcast_to((y_train * 2 + 28).astype(np.uint8)[:, None, None, None], (50000, 32, 32, 3))
    x_test = np.broadcast_to((y_test * 2 + 28).astype(np.uint8)[:, None, None, None], (10000, 32, 32, 3))
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def test_smoke_chain_on_a_cifar100_format_file_goes_from_data_to_report(tmp_path):
    project = copy_project(tmp_path)
    made_up_cifar100(project / "made-up-cifar100.npz")
    (project / "config" / "test-data.yaml").write_text(yaml.safe_dump({"data": {"npz_path": "made-up-cifar100.npz"}}))
    snakemake(project, configfiles=("config/cifar100.yaml",))

    manifest = json.loads((project / "data/cifar100/cifar100.manifest.json").read_text())
    assert (manifest["dataset"], manifest["num_classes"]) == ("cifar100", 100)
    assert (project / "data/subsets/cifar100_seeded_n5_val5_seed0.json").is_file()
    runs = sorted((project / "results/runs/cifar100").glob("*/*/seed*/metrics.json"))
    assert len(runs) == 2 + 2 + 4 + 2 + 2 + 2  # the smoke grid, every run in the data set's own folders
    assert not (project / "results/runs/sweep").exists() and not (project / "data/cifar10").exists()
    for metrics in runs:
        record = json.loads(metrics.read_text())
        assert record["status"] == "ok" and record["config"]["data"] == {"name": "cifar100"}
    with open(project / "results/tables/runs.csv", newline="") as handle:
        run_ids = [row["run_id"] for row in csv.DictReader(handle)]
    assert len(run_ids) == len(runs) and all(run_id.startswith("cifar100/") for run_id in run_ids)  # named by the data set
    report = (project / "results/report.md").read_text()
    assert report.startswith("# Mixing regularisers on small-data CIFAR-100: results")
    assert "5 training images per class (500 in all" in report
    assert "none is set beside these runs on cifar100" in report
    assert "Nothing to be done" in snakemake(project, "-n", configfiles=("config/cifar100.yaml",)).stdout
