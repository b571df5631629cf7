"""Shared fixtures: tiny fabricated data and tiny run configurations (CPU, seconds per run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixstudy.core.config import load_params
from mixstudy.data.subsets import StudyData
from mixstudy.runs.study import run_config

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "params.yaml"
REAL_NPZ = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10.npz"
# The published CIFAR-10 training statistics, the normalisation constants of every CIFAR-10 run
# before they were computed from the data (test_data checks the computed ones equal these).
CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_INFO = {"dataset": "cifar10", "num_classes": 10, "class_names": list(CIFAR10_CLASSES),
                "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}

# Settings that make one training run take a fraction of a second on one CPU thread.
TINY_OVERRIDES = [
    "model.name=convnet",  # the tiny network of every test that trains; the study network: test_models, test_packing
    "model.convnet.widths=[4,8,8]",
    "train.epochs=2",
    "train.batch_size=8",
    "train.checkpoint_every=0",
    "compute.device=cpu",
    "compute.threads=1",
    "compute.eval_batch_size=64",
    "evaluation.fgsm_epsilons=[]",
    "evaluation.every=0",
    "evaluation.temperature_scaling=false",  # tiny_data has no validation split
]


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: uses the real CIFAR-10 offline copy beside the checkout")


def fake_cifar_arrays(seed: int = 123) -> dict[str, np.ndarray]:
    """Arrays with CIFAR-10's names, shapes, dtypes and class counts; each training image is
    constant with a value that depends on its index, so different indices select different pixels."""
    rng = np.random.default_rng(seed)
    y_train = rng.permutation(np.repeat(np.arange(10), 5000)).astype(np.uint8)
    y_test = rng.permutation(np.repeat(np.arange(10), 1000)).astype(np.uint8)
    x_train = np.empty((50000, 32, 32, 3), np.uint8)
    x_train[:] = (np.arange(50000) % 251).astype(np.uint8)[:, None, None, None]
    x_test = np.zeros((10000, 32, 32, 3), np.uint8)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def fake_arrays() -> dict[str, np.ndarray]:
    arrays = fake_cifar_arrays()
    for a in arrays.values():
        a.setflags(write=False)  # tests must copy before changing
    return arrays


@pytest.fixture(scope="session")
def fake_npz(tmp_path_factory, fake_arrays) -> Path:
    """A valid CIFAR-10-shaped .npz (compressed, so it is small on disk)."""
    path = tmp_path_factory.mktemp("source") / "cifar10.npz"
    np.savez_compressed(path, **fake_arrays)
    return path


@pytest.fixture(scope="session")
def prepared_npz(tmp_path_factory, fake_npz) -> Path:
    """The normalised data (and manifest) written once by ``prepare_data`` from the fake source."""
    from mixstudy.data.datasets import prepare_data

    out = tmp_path_factory.mktemp("prepared") / "cifar10.npz"
    prepare_data(
        {"name": "cifar10", "source": "npz", "npz_path": str(fake_npz), "npz_sha256": None, "official_dir": str(out.parent / "raw"), "out": str(out)}
    )
    return out


def make_study_data(n_train_per_class: int = 4, n_test: int = 20, n_val_per_class: int = 0, seed: int = 0) -> StudyData:
    rng = np.random.default_rng(seed)

    def images(n):
        return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)

    y_train = np.repeat(np.arange(10), n_train_per_class).astype(np.int64)
    y_val = np.repeat(np.arange(10), n_val_per_class).astype(np.int64)
    y_test = (np.arange(n_test) % 10).astype(np.int64)
    return StudyData(
        x_train=images(len(y_train)),
        y_train=y_train,
        x_val=images(len(y_val)),
        y_val=y_val,
        x_test=images(n_test),
        y_test=y_test,
        subset_sha256="0" * 64,
        info=CIFAR10_INFO,
    )


@pytest.fixture(scope="session")
def tiny_data() -> StudyData:
    """40 training images (4 per class), 20 test images, no validation split."""
    return make_study_data()


@pytest.fixture(scope="session")
def params() -> dict:
    return load_params([PARAMS_FILE], TINY_OVERRIDES)


@pytest.fixture
def tiny_config(params):
    """Build a run configuration from params.yaml with the tiny overrides plus run-specific ones."""
    from mixstudy.core.config import deep_merge

    def build(seed: int = 0, **sections) -> dict:
        return run_config(params, seed, deep_merge({}, sections))

    return build
