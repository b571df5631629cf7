"""Corrupted training labels (data.label_noise, Zhang et al. 2018 sec. 3.5): the stated share, from the
seed, never the validation or test labels, part of the run's identity, and measured while training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mixstudy.data import datasets as data
from mixstudy.data import subsets

from mixstudy.runs import study
from mixstudy.core.errors import DataError

SUBSET = {"draw": "seeded", "per_class": 4, "val_per_class": 2, "seed": 0}
OLD_KEYS = {"params", "train_indices", "val_indices", "train_sha256", "val_sha256", "data_sha256"}


def test_the_stated_share_is_corrupted_each_to_another_class_and_the_seed_fixes_which():
    labels = np.repeat(np.arange(10), 50).astype(np.uint8)
    positions, noisy = subsets.corrupt_labels(labels, 0.2, seed=0, num_classes=10)
    assert len(positions) == 100 and np.array_equal(positions, np.flatnonzero(noisy != labels))
    assert noisy.dtype == labels.dtype and noisy.max() < 10
    again_positions, again = subsets.corrupt_labels(labels, 0.2, seed=0, num_classes=10)
    assert np.array_equal(again_positions, positions) and np.array_equal(again, noisy)
    other_positions, _ = subsets.corrupt_labels(labels, 0.2, seed=1, num_classes=10)
    assert not np.array_equal(other_positions, positions)
    assert len(subsets.corrupt_labels(labels, 0.5, 0, 10)[0]) == 250 and len(subsets.corrupt_labels(labels, 0.0, 0, 10)[0]) == 0


def test_a_corrupted_label_is_any_other_class_alike():
    labels = np.zeros(9000, dtype=np.uint8)
    _, noisy = subsets.corrupt_labels(labels, 0.9, seed=3, num_classes=10)
    counts = np.bincount(noisy, minlength=10)
    assert counts[0] == 900  # the 10% left alone; never "corrupted" to its own class
    assert np.all(np.abs(counts[1:] - 900) < 4 * np.sqrt(900))  # 8100 draws, 1/9 each


@pytest.mark.parametrize("share", [1.0, -0.1])
def test_a_share_outside_0_1_is_refused(share):
    with pytest.raises(DataError, match="data.label_noise"):
        subsets.corrupt_labels(np.zeros(10, dtype=np.uint8), share, 0, 10)


def test_without_noise_the_subset_file_and_its_name_are_what_they_always_were(tmp_path, prepared_npz):
    plain = subsets.make_subset(prepared_npz, SUBSET, tmp_path / "plain.json")
    off = subsets.make_subset(prepared_npz, SUBSET, tmp_path / "off.json", label_noise=0.0)
    assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "off.json").read_bytes()
    assert set(off) == OLD_KEYS
    arrays = data.load_prepared(prepared_npz)
    assert plain["train_sha256"] == subsets.subset_content_hash(arrays, np.asarray(plain["train_indices"]))
    assert subsets.subset_file(SUBSET, "cifar10", label_noise=0.0).name == "cifar10_seeded_n4_val2_seed0.json"
    assert subsets.subset_file(SUBSET, "cifar10", label_noise=0.2).name == "cifar10_seeded_n4_val2_seed0_noise0.2.json"


@pytest.fixture(scope="module")
def noisy_and_plain(tmp_path_factory, prepared_npz):
    folder = tmp_path_factory.mktemp("noisy")
    subsets.make_subset(prepared_npz, SUBSET, folder / "plain.json")
    subsets.make_subset(prepared_npz, SUBSET, folder / "noisy.json", label_noise=0.5)
    return folder / "noisy.json", subsets.load_study_data(prepared_npz, folder / "noisy.json"), subsets.load_study_data(prepared_npz, folder / "plain.json")


def test_a_noisy_subset_changes_only_training_labels_and_the_runs_identity(noisy_and_plain):
    path, noisy, plain = noisy_and_plain
    record = json.loads(path.read_text())
    assert set(record) == OLD_KEYS | {"label_noise"} and record["label_noise"]["share"] == 0.5
    changed = np.flatnonzero(noisy.y_train != plain.y_train)
    assert len(changed) == 20 and changed.tolist() == record["label_noise"]["corrupted_positions"]
    assert np.array_equal(noisy.y_train_true, plain.y_train) and plain.y_train_true is None
    assert np.array_equal(noisy.x_train, plain.x_train)
    for split in ("x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(noisy, split), getattr(plain, split)), split
    assert noisy.label_noise["corrupted"] == 20 and noisy.label_noise["images"] == 40
    assert noisy.subset_sha256 != plain.subset_sha256 == record["label_noise"]["true_train_sha256"]
    config = {"mixing": {"method": "none", "alpha": 0.0}, "seed": 0}
    assert study.training_hash(config, noisy.subset_sha256) != study.training_hash(config, plain.subset_sha256)


def test_changed_corrupted_labels_are_refused(tmp_path, noisy_and_plain, prepared_npz):
    path, _, _ = noisy_and_plain
    record = json.loads(path.read_text())
    record["label_noise"]["train_labels"][0] = (record["label_noise"]["train_labels"][0] + 1) % 10
    (tmp_path / "changed.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="content hash"):
        subsets.load_study_data(prepared_npz, tmp_path / "changed.json")


def test_training_records_the_fit_to_corrupted_and_to_true_labels(tmp_path, tiny_data, tiny_config):
    from mixstudy.train.training import train_runs

    true = tiny_data.y_train
    positions, noisy = subsets.corrupt_labels(true, 0.25, seed=0, num_classes=10)
    corrupted = dataclasses.replace(
        tiny_data, y_train=noisy, y_train_true=true, subset_sha256="1" * 64,
        label_noise={"share": 0.25, "seed": 0, "corrupted": len(positions), "images": len(true), "corrupted_positions": positions},
    )
    config = tiny_config(mixing={"method": "mixup", "alpha": 1.0})
    record, = train_runs([config], corrupted, [tmp_path / "noisy"], progress="lines")
    fit = record["metrics"]["train_labels"]
    assert (fit["share"], fit["corrupted"], fit["images"]) == (0.25, 10, 40)
    assert 0 <= fit["acc_noisy"] <= 1 and 0 <= fit["acc_true"] <= 1
    # on the 30 clean images both labels agree: the two accuracies differ only through the corrupted 10
    assert fit["acc_noisy"] - fit["acc_true"] == pytest.approx((fit["corrupted_acc_noisy"] - fit["corrupted_acc_true"]) * 10 / 40)
    header = (tmp_path / "noisy" / "history.tsv").read_text().splitlines()[0].split("\t")
    assert {"train_acc_noisy", "train_acc_true"} <= set(header)
    plain, = train_runs([config], tiny_data, [tmp_path / "plain"], progress="lines")
    assert "train_labels" not in plain["metrics"]
    assert "train_acc_true" not in (tmp_path / "plain" / "history.tsv").read_text()


def test_the_report_says_which_share_was_corrupted_and_that_test_labels_are_true(params):
    from mixstudy.report.setting import setting_lines

    noisy = {**params, "data": {**params["data"], "label_noise": 0.2}}
    assert "Corrupted labels: 20% of the training labels (100 of 500)" in setting_lines(noisy)
    assert "test labels are the true ones" in setting_lines(noisy)
    assert "Corrupted" not in setting_lines(params)
