"""CIFAR-100 and SVHN (with and without its extra images) from files in their official formats, made
here (a few images each): loading, label mapping, md5 and truncation refused, class counts, subsets,
a 100-class network trained, and the aggregation refusing to put runs of two data sets together.

The official md5s (torchvision's class attributes) cannot match files made by a test, so the tests
that load such files set those attributes to the md5s of the files they wrote; the tests of refusal
leave them as torchvision has them. The data set's expected sizes are shrunk the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torchvision.datasets import CIFAR100, SVHN

from mixstudy.data import datasets as data
from mixstudy.data import subsets

from mixstudy.runs import study
from mixstudy.results.analysis import analyse
from mixstudy.train.checkpoint import load_checkpoint
from mixstudy.cli import main
from mixstudy.core.config import load_params
from mixstudy.core.errors import DataError
from mixstudy.train.training import train_runs

from conftest import CIFAR10_MEAN, CIFAR10_STD, PARAMS_FILE, REAL_NPZ, TINY_OVERRIDES

CIFAR100_TRAIN_PER_CLASS, CIFAR100_TEST_PER_CLASS = 2, 1
SVHN_TRAIN_COUNTS = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # digit k has SVHN_TRAIN_COUNTS[k] training images
SVHN_TEST_COUNTS = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2]
SVHN_EXTRA_COUNTS = [2, 1, 1, 1, 1, 1, 1, 1, 1, 3]
SVHN_COUNTS = {"train": SVHN_TRAIN_COUNTS, "test": SVHN_TEST_COUNTS, "extra": SVHN_EXTRA_COUNTS}
CONFIG = PARAMS_FILE.parent / "config"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _images(rng, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _data_params(tmp_path: Path, name: str, **changed) -> dict:
    return {"name": name, "source": "auto", "npz_path": str(tmp_path / "absent.npz"), "npz_sha256": None,
            "official_dir": str(tmp_path / "raw"), "out": str(tmp_path / name / f"{name}.npz"), **changed}


# --- CIFAR-100 in its official python layout ------------------------------------------------


@pytest.fixture
def cifar100_sizes(monkeypatch):
    spec = dataclasses.replace(
        data.DATASETS["cifar100"], train_size=100 * CIFAR100_TRAIN_PER_CLASS, test_size=100 * CIFAR100_TEST_PER_CLASS,
        train_per_class=CIFAR100_TRAIN_PER_CLASS, test_per_class=CIFAR100_TEST_PER_CLASS,
    )
    monkeypatch.setitem(data.DATASETS, "cifar100", spec)


def write_cifar100(raw: Path, seed: int = 0) -> dict:
    """``raw/cifar-100-python/{train,test,meta}`` as the official archive holds them (pickled dicts,
    images as rows of 3072 bytes, channel-major); returns the images and labels written."""
    rng = np.random.default_rng(seed)
    folder = raw / CIFAR100.base_folder
    folder.mkdir(parents=True)
    written = {}
    for split, per_class in (("train", CIFAR100_TRAIN_PER_CLASS), ("test", CIFAR100_TEST_PER_CLASS)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        images = _images(rng, len(fine))
        entry = {"data": images.transpose(0, 3, 1, 2).reshape(len(fine), 3072), "fine_labels": fine.tolist(),
                 "coarse_labels": (fine // 5).tolist(), "filenames": [f"{split}_{i}.png" for i in range(len(fine))]}
        (folder / split).write_bytes(pickle.dumps(entry))
        written[split] = (images, fine, fine // 5)
    meta = {"fine_label_names": [f"fine{k}" for k in range(100)], "coarse_label_names": [f"coarse{k}" for k in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return written


def accept_cifar100_files(monkeypatch, raw: Path) -> None:
    folder = raw / CIFAR100.base_folder
    monkeypatch.setattr(CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": _md5(folder / "meta")})


def archive_cifar100(raw: Path) -> Path:
    """The extracted folder packed as the official ``cifar-100-python.tar.gz`` (the folder removed)."""
    archive = raw / CIFAR100.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(raw / CIFAR100.base_folder, arcname=CIFAR100.base_folder)
    for path in sorted((raw / CIFAR100.base_folder).iterdir()):
        path.unlink()
    (raw / CIFAR100.base_folder).rmdir()
    return archive


def test_cifar100_from_its_extracted_folder_fine_labels_and_coarse_kept(tmp_path, monkeypatch, cifar100_sizes):
    written = write_cifar100(tmp_path / "raw")
    accept_cifar100_files(monkeypatch, tmp_path / "raw")
    params = _data_params(tmp_path, "cifar100")
    manifest = data.prepare_data(params)

    with np.load(params["out"]) as prepared:
        for split in ("train", "test"):
            images, fine, coarse = written[split]
            assert np.array_equal(prepared[f"x_{split}"], images)  # NHWC as the other data sets
            assert np.array_equal(prepared[f"y_{split}"], fine)  # the fine labels are the labels
            assert np.array_equal(prepared[f"y_{split}_coarse"], coarse)  # the superclasses kept for users
    assert manifest["source"] == f"official:{tmp_path / 'raw'}"
    assert (manifest["dataset"], manifest["num_classes"]) == ("cifar100", 100)
    assert manifest["class_names"] == [f"fine{k}" for k in range(100)]  # from the official meta file
    assert (tuple(manifest["mean"]), tuple(manifest["std"])) == data.channel_statistics(written["train"][0])
    assert data.read_manifest(params["out"]) == manifest


def test_cifar100_from_its_official_archive(tmp_path, monkeypatch, cifar100_sizes):
    written = write_cifar100(tmp_path / "raw")
    accept_cifar100_files(monkeypatch, tmp_path / "raw")
    archive = archive_cifar100(tmp_path / "raw")
    monkeypatch.setattr(CIFAR100, "tgz_md5", _md5(archive))
    arrays, class_names, source = data.fetch_dataset(_data_params(tmp_path, "cifar100"))
    assert np.array_equal(arrays["y_train"], written["train"][1])
    assert len(class_names) == 100 and source.startswith("official:")


def test_cifar100_archive_with_a_wrong_md5_is_refused_and_nothing_written(tmp_path, monkeypatch, cifar100_sizes):
    write_cifar100(tmp_path / "raw")
    accept_cifar100_files(monkeypatch, tmp_path / "raw")
    archive_cifar100(tmp_path / "raw")  # the official tgz_md5 stays: this archive is not the official one
    params = _data_params(tmp_path, "cifar100")
    with pytest.raises(DataError, match=f"md5 is not the official {CIFAR100.tgz_md5}"):
        data.prepare_data(params)
    assert not (tmp_path / "raw" / CIFAR100.base_folder).exists()  # nothing extracted
    assert not Path(params["out"]).exists() and not data.manifest_path_for(Path(params["out"])).exists()


def test_cifar100_truncated_batch_file_is_refused(tmp_path, monkeypatch, cifar100_sizes):
    write_cifar100(tmp_path / "raw")
    accept_cifar100_files(monkeypatch, tmp_path / "raw")
    train = tmp_path / "raw" / CIFAR100.base_folder / "train"
    train.write_bytes(train.read_bytes()[:5000])  # cut short after its md5 was taken
    with pytest.raises(DataError, match="md5"):
        data.prepare_data(_data_params(tmp_path, "cifar100"))
    assert not (tmp_path / "cifar100").exists()


def test_cifar100_class_counts_are_checked(tmp_path, monkeypatch, cifar100_sizes):
    arrays = {"x_train": np.zeros((200, 32, 32, 3), np.uint8), "y_train": np.repeat(np.arange(100), 2).astype(np.uint8),
              "x_test": np.zeros((100, 32, 32, 3), np.uint8), "y_test": np.arange(100).astype(np.uint8)}
    data.check_arrays(arrays, "fine", "cifar100")
    unbalanced = {**arrays, "y_train": arrays["y_train"].copy()}
    unbalanced["y_train"][0] = 99  # class 0 one short, class 99 one over
    with pytest.raises(DataError, match="y_train class counts .*expected 2 per class"):
        data.check_arrays(unbalanced, "somefile", "cifar100")
    with pytest.raises(DataError, match="labels are 0..99"):
        data.check_arrays({**arrays, "y_test": np.full(100, 100, np.uint8)}, "somefile", "cifar100")
    with pytest.raises(DataError, match=r"expected \(200, 32, 32, 3\)"):  # CIFAR-10 labels are not CIFAR-100's
        data.check_arrays({**arrays, "x_train": np.zeros((50, 32, 32, 3), np.uint8)}, "somefile", "cifar100")


# --- SVHN in its official .mat layout -------------------------------------------------------


@pytest.fixture
def svhn_sizes(monkeypatch):
    spec = dataclasses.replace(data.DATASETS["svhn"], train_size=sum(SVHN_TRAIN_COUNTS), test_size=sum(SVHN_TEST_COUNTS))
    monkeypatch.setitem(data.DATASETS, "svhn", spec)


@pytest.fixture
def svhn_extra_sizes(monkeypatch):
    spec = dataclasses.replace(data.DATASETS["svhn_extra"], train_size=sum(SVHN_TRAIN_COUNTS) + sum(SVHN_EXTRA_COUNTS),
                               test_size=sum(SVHN_TEST_COUNTS))
    monkeypatch.setitem(data.DATASETS, "svhn_extra", spec)


def write_svhn(raw: Path, seed: int = 0, splits: tuple[str, ...] = ("train", "test")) -> dict:
    """``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` when asked) as the official
    files hold them: X (32, 32, 3, N), y (N, 1) with the digit 0 labelled 10."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        digits = rng.permutation(np.repeat(np.arange(10), SVHN_COUNTS[split]))
        images = _images(rng, len(digits))
        official_labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(raw / SVHN.split_list[split][1], {"X": images.transpose(1, 2, 3, 0), "y": official_labels})
        written[split] = (images, digits)
    return written


def accept_svhn_files(monkeypatch, raw: Path) -> None:
    """The md5s of the files in ``raw``; a file not there keeps its official md5."""
    split_list = {split: [url, name, _md5(raw / name)] if (raw / name).is_file() else [url, name, md5]
                  for split, (url, name, md5) in SVHN.split_list.items()}
    monkeypatch.setattr(SVHN, "split_list", split_list)


def test_svhn_from_its_mat_files_label_10_is_digit_0(tmp_path, monkeypatch, svhn_sizes):
    written = write_svhn(tmp_path / "raw")
    accept_svhn_files(monkeypatch, tmp_path / "raw")
    manifest = data.prepare_data(_data_params(tmp_path, "svhn"))
    prepared = data.load_prepared(tmp_path / "svhn" / "svhn.npz", "svhn")
    for split in ("train", "test"):
        images, digits = written[split]
        assert np.array_equal(prepared[f"x_{split}"], images)
        assert np.array_equal(prepared[f"y_{split}"], digits)  # 10 -> 0, 1..9 unchanged
    assert np.bincount(prepared["y_train"]).tolist() == SVHN_TRAIN_COUNTS  # unbalanced, accepted
    assert (manifest["dataset"], manifest["num_classes"], manifest["class_names"]) == ("svhn", 10, [str(d) for d in range(10)])
    assert not any(path.name.startswith("extra") for path in (tmp_path / "raw").iterdir())  # extra is not read


def test_svhn_wrong_md5_and_truncated_file_are_refused(tmp_path, monkeypatch, svhn_sizes):
    write_svhn(tmp_path / "raw")
    with pytest.raises(DataError, match="md5 is not the official"):  # the official md5s: not these files
        data.prepare_data(_data_params(tmp_path, "svhn"))
    accept_svhn_files(monkeypatch, tmp_path / "raw")
    test_file = tmp_path / "raw" / "test_32x32.mat"
    test_file.write_bytes(test_file.read_bytes()[:2000])
    with pytest.raises(DataError, match="test_32x32.mat.*truncated"):
        data.prepare_data(_data_params(tmp_path, "svhn"))
    assert not (tmp_path / "svhn").exists()


def test_svhn_extra_is_the_training_images_followed_by_the_extra_ones(tmp_path, monkeypatch, svhn_extra_sizes):
    written = write_svhn(tmp_path / "raw", splits=("train", "extra", "test"))
    accept_svhn_files(monkeypatch, tmp_path / "raw")
    params = _data_params(tmp_path, "svhn_extra")
    manifest = data.prepare_data(params)
    assert params["out"] == str(tmp_path / "svhn_extra" / "svhn_extra.npz")  # its own file, never svhn's
    prepared = data.load_prepared(params["out"], "svhn_extra")
    (train_images, train_digits), (extra_images, extra_digits) = written["train"], written["extra"]
    assert np.array_equal(prepared["x_train"], np.concatenate([train_images, extra_images]))  # in order: train, extra
    assert np.array_equal(prepared["y_train"], np.concatenate([train_digits, extra_digits]))  # 10 -> 0 in both
    assert np.array_equal(prepared["x_test"], written["test"][0]) and np.array_equal(prepared["y_test"], written["test"][1])
    assert (manifest["dataset"], manifest["num_classes"]) == ("svhn_extra", 10)
    assert (tuple(manifest["mean"]), tuple(manifest["std"])) == data.channel_statistics(prepared["x_train"])


def test_plain_svhn_leaves_an_extra_file_beside_it_unread(tmp_path, monkeypatch, svhn_sizes):
    written = write_svhn(tmp_path / "raw")
    (tmp_path / "raw" / "extra_32x32.mat").write_bytes(b"not read by data.name svhn")
    accept_svhn_files(monkeypatch, tmp_path / "raw")  # even its md5 would pass
    read = []
    loadmat = scipy.io.loadmat
    monkeypatch.setattr(scipy.io, "loadmat", lambda path, *args, **kwargs: read.append(Path(path).name) or loadmat(path, *args, **kwargs))
    data.prepare_data(_data_params(tmp_path, "svhn"))
    assert read == ["train_32x32.mat", "test_32x32.mat"]
    prepared = data.load_prepared(tmp_path / "svhn" / "svhn.npz", "svhn")
    assert np.array_equal(prepared["y_train"], written["train"][1])


def test_cli_svhn_extra_without_its_extra_file_names_it_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, svhn_extra_sizes):
    raw = tmp_path / "data" / "raw"
    write_svhn(raw)  # train and test only
    accept_svhn_files(monkeypatch, raw)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code = main(["data", "--params", str(PARAMS_FILE), "--params", str(CONFIG / "svhn.yaml"),
                 "--params", str(CONFIG / "svhn-extra.yaml")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert "data/raw/extra_32x32.mat is missing" in lines[0] and "data.name: svhn" in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_svhn_extra_files_subsets_and_runs_never_pass_for_plain_svhns(tmp_path, monkeypatch, svhn_extra_sizes):
    svhn = load_params([PARAMS_FILE, CONFIG / "svhn.yaml"])
    extra = load_params([PARAMS_FILE, CONFIG / "svhn.yaml", CONFIG / "svhn-extra.yaml"])
    assert extra["data"]["out"] == "data/svhn_extra/svhn_extra.npz" and svhn["data"]["out"] == "data/svhn/svhn.npz"
    assert subsets.subset_file(extra["subset"], "svhn_extra").name == "svhn_extra_seeded_n50_val50_seed0.json"
    assert study.sweep_runs(extra)[0].run_id == "svhn_extra/sweep/baseline/seed0"
    assert study.run_config(extra, 0)["data"] == {"name": "svhn_extra"}
    assert study.training_hash(study.run_config(extra, 0), "s") != study.training_hash(study.run_config(svhn, 0), "s")
    write_svhn(tmp_path / "raw", splits=("train", "extra", "test"))
    accept_svhn_files(monkeypatch, tmp_path / "raw")
    data.prepare_data(_data_params(tmp_path, "svhn_extra"))
    with pytest.raises(DataError, match="holds svhn_extra, not data.name svhn"):
        data.load_prepared(tmp_path / "svhn_extra" / "svhn_extra.npz", "svhn")


def test_svhn_class_missing_from_a_split_is_refused(svhn_sizes):
    n_train, n_test = sum(SVHN_TRAIN_COUNTS), sum(SVHN_TEST_COUNTS)
    arrays = {"x_train": np.zeros((n_train, 32, 32, 3), np.uint8), "y_train": np.repeat(np.arange(10), SVHN_TRAIN_COUNTS).astype(np.uint8),
              "x_test": np.zeros((n_test, 32, 32, 3), np.uint8), "y_test": np.ones(n_test, np.uint8)}
    with pytest.raises(DataError, match=r"y_test has no image of classes \[0, 2, 3"):
        data.check_arrays(arrays, "somefile", "svhn")


# --- no file anywhere ------------------------------------------------------------------------


class _NoNetworkCIFAR100(CIFAR100):
    """torchvision's CIFAR100 on a machine without internet: it makes its folder and a partial
    download, then fails."""

    def __init__(self, root, *args, **kwargs):
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / CIFAR100.filename).write_bytes(b"\x1f\x8b partial")
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")


def test_cli_without_any_cifar100_file_says_where_to_put_it_in_one_line(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _NoNetworkCIFAR100)
    monkeypatch.chdir(tmp_path)
    code = main(["data", "--params", str(PARAMS_FILE), "--set", "data.name=cifar100"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "cifar-100-python.tar.gz" in lines[0] and "data/raw" in lines[0] and "internet" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the folders the download made


def test_a_failed_download_leaves_an_existing_folder_as_it_was(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _NoNetworkCIFAR100)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="internet"):
        data.prepare_data(_data_params(tmp_path, "cifar100"))
    assert [path.name for path in raw.iterdir()] == ["notes.txt"]


def test_a_prepared_file_of_another_data_set_is_refused(tmp_path, monkeypatch, svhn_sizes):
    write_svhn(tmp_path / "raw")
    accept_svhn_files(monkeypatch, tmp_path / "raw")
    data.prepare_data(_data_params(tmp_path, "svhn"))
    with pytest.raises(DataError, match="holds svhn, not data.name cifar10"):
        data.load_prepared(tmp_path / "svhn" / "svhn.npz", "cifar10")


# --- statistics from the data ----------------------------------------------------------------


def test_channel_statistics_are_exact_population_statistics():
    images = np.zeros((2, 1, 1, 3), np.uint8)
    images[1] = 255  # per channel: values 0 and 1 on the [0, 1] scale
    assert data.channel_statistics(images) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.mark.real_data
def test_cifar10_statistics_computed_from_the_data_are_the_constants_every_run_used():
    """The normalisation of CIFAR-10 runs is unchanged: the computed, rounded values are exactly
    the floats they were normalised with (so the normalised inputs are bit-identical)."""
    with np.load(REAL_NPZ) as archive:
        mean, std = data.channel_statistics(archive["x_train"])
    assert (mean, std) == (CIFAR10_MEAN, CIFAR10_STD)


def test_a_manifest_without_statistics_is_completed_from_the_data(tmp_path, prepared_npz, caplog):
    """Prepared CIFAR-10 files from before the manifest recorded classes and statistics keep working."""
    old = tmp_path / "cifar10.npz"
    old.symlink_to(prepared_npz)
    manifest = json.loads(data.manifest_path_for(prepared_npz).read_text())
    data.manifest_path_for(old).write_text(json.dumps({k: manifest[k] for k in ("source", "arrays_sha256")}))
    subset = tmp_path / "subset.json"
    subsets.make_subset(old, {"draw": "seeded", "per_class": 2, "val_per_class": 0, "seed": 0}, subset)
    loaded = subsets.load_study_data(old, subset)
    assert "predates" in caplog.text and "mixstudy data" in caplog.text
    assert loaded.info == {key: manifest[key] for key in data.INFO_KEYS}


# --- subsets per class --------------------------------------------------------------------------


def test_seeded_subset_of_a_100_class_set_has_per_class_of_each():
    labels = np.repeat(np.arange(100), 7)
    subset = subsets.seeded_subset(labels, per_class=3, val_per_class=2, seed=0)
    assert np.bincount(labels[subset.train_indices], minlength=100).tolist() == [3] * 100
    assert np.bincount(labels[subset.val_indices], minlength=100).tolist() == [2] * 100
    assert not set(subset.train_indices) & set(subset.val_indices)


def test_seeded_subset_of_unbalanced_classes_is_exact_or_names_the_largest_possible():
    labels = np.repeat(np.arange(10), SVHN_TRAIN_COUNTS)
    subset = subsets.seeded_subset(labels, per_class=2, val_per_class=1, seed=0)
    assert np.bincount(labels[subset.train_indices]).tolist() == [2] * 10  # not proportional to class sizes
    with pytest.raises(DataError, match="smallest class \\(3 images\\).*largest subset.per_class with this subset.val_per_class is 2"):
        subsets.seeded_subset(labels, per_class=3, val_per_class=1, seed=0)


def test_subset_files_are_named_by_their_data_set():
    subset = {"draw": "seeded", "per_class": 5, "val_per_class": 1, "seed": 0}
    assert subsets.subset_file(subset, "cifar10").name == "cifar10_seeded_n5_val1_seed0.json"
    assert subsets.subset_file(subset, "cifar100").name == "cifar100_seeded_n5_val1_seed0.json"


# --- a 100-class network, and runs of two data sets ----------------------------------------------


def _hundred_class_data(per_class: int = 1) -> subsets.StudyData:
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(100), per_class).astype(np.int64)
    y_test = np.arange(100).astype(np.int64)
    info = {"dataset": "cifar100", "num_classes": 100, "class_names": [str(k) for k in range(100)],
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    return subsets.StudyData(_images(rng, len(y_train)), y_train, _images(rng, 0), y_train[:0], _images(rng, 100), y_test,
                          subset_sha256="1" * 64, info=info)


def test_a_network_with_100_outputs_trains_one_epoch(tmp_path):
    params = load_params([PARAMS_FILE], [*TINY_OVERRIDES, "data.name=cifar100", "train.epochs=1"])
    config = study.run_config(params, 0, {"mixing": {"method": "manifold", "alpha": 1.0, "layers": [0, 1]}})
    assert config["data"] == {"name": "cifar100"}  # the data set is part of the run's configuration
    record = train_runs([config], _hundred_class_data(), [tmp_path / "run"], progress="lines")[0]
    assert record["status"] == "ok" and record["epochs_completed"] == 1
    model, _ = load_checkpoint(tmp_path / "run" / "model.pt")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_cifar10_configuration_and_folder_are_unchanged_and_others_are_named_by_their_data_set():
    cifar10 = load_params([PARAMS_FILE])
    cifar100 = load_params([PARAMS_FILE], ["data.name=cifar100"])
    assert "data" not in study.run_config(cifar10, 0)  # as every CIFAR-10 run recorded it
    assert study.sweep_runs(cifar10)[0].run_id == "sweep/baseline/seed0"
    assert study.sweep_runs(cifar100)[0].run_id == "cifar100/sweep/baseline/seed0"
    assert study.training_hash(study.run_config(cifar10, 0), "s") != study.training_hash(study.run_config(cifar100, 0), "s")


def _write_record(folder: Path, config: dict, acc: float) -> None:
    folder.mkdir(parents=True)
    metrics = {"test": {"acc": acc, "nll": 1.0, "ece": 0.1, "brier": 0.5}}
    (folder / "metrics.json").write_text(json.dumps({"status": "ok", "error": None, "config": config, "metrics": metrics,
                                                     "wall_time_s": 1.0, "epochs_completed": 1, "provenance": {}}))
    (folder / "history.tsv").write_text("epoch\ttrain_loss\n1\t1.0\n")
    (folder / "model.pt").write_bytes(b"weights")


def test_aggregation_never_averages_runs_of_two_data_sets(tmp_path):
    grids = ["tuning.grid.scheduler=[step]", "tuning.grid.momentum=[0.9]", "tuning.grid.weight_decay=[0.001]",
             "tuning.seeds=[0, 1]", "sweep.use_tuning_choice=false"]
    cifar10 = load_params([PARAMS_FILE], grids)
    cifar100 = load_params([PARAMS_FILE], [*grids, "data.name=cifar100"])
    root = tmp_path / "runs"
    spec0, spec1 = study.tuning_runs(cifar10)
    _write_record(spec0.folder(root), study.spec_config(cifar10, spec0, None), 0.5)
    # seed 1's folder holds a CIFAR-100 run of the same configuration
    _write_record(spec1.folder(root), study.spec_config(cifar100, study.tuning_runs(cifar100)[1], None), 0.2)

    analysis = analyse(cifar10, root)
    row = analysis.configs.set_index("name").loc[spec0.name]
    assert (row["n"], row["acc_mean"]) == (1, 50.0)  # the CIFAR-100 run is not in the mean
    problem = analysis.problems.set_index("run_id").loc[spec1.run_id]
    assert problem["problem"] == "mismatched" and "data set cifar100, expected cifar10" in problem["reason"]
    # and the CIFAR-100 aggregation reads its own folders only: the CIFAR-10 runs are not there
    assert analyse(cifar100, root).done.empty


def test_full_data_draw_trains_on_every_image_not_drawn_for_validation():
    labels = np.repeat(np.arange(10), SVHN_TRAIN_COUNTS)
    subset = subsets.full_subset(labels, per_class=1, val_per_class=2, seed=0)
    assert np.bincount(labels[subset.val_indices]).tolist() == [2] * 10
    assert sorted([*subset.train_indices, *subset.val_indices]) == list(range(len(labels)))
    assert subsets.subset_file({"draw": "all", "per_class": 50, "val_per_class": 0, "seed": 0}, "svhn").name == "svhn_all_val0_seed0.json"
    with pytest.raises(DataError, match="smallest class"):
        subsets.full_subset(labels, per_class=1, val_per_class=3, seed=0)  # would leave digit 0 without a training image
