"""CIFAR-10: fetch from one of three sources, verify, normalise to one local .npz; seeded subsets.

Sources, in order of preference for ``source: auto``:
  1. a local .npz with uint8 arrays x_train (50000,32,32,3), y_train, x_test (10000,32,32,3), y_test,
     checked for shape, dtype, label range and per-class counts, and against a sha256 when given;
  2. a local official ``cifar-10-python.tar.gz`` or extracted ``cifar-10-batches-py/`` (official md5s);
  3. the official download through torchvision (md5-verified).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixstudy.errors import DataError
from mixstudy.fileio import atomic_path, sha256_bytes, sha256_file, write_json

log = logging.getLogger(__name__)

NUM_CLASSES = 10
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
EXPECTED = {
    "x_train": ((50000, 32, 32, 3), np.uint8),
    "y_train": ((50000,), np.uint8),
    "x_test": ((10000, 32, 32, 3), np.uint8),
    "y_test": ((10000,), np.uint8),
}
# Per-channel statistics of the CIFAR-10 training set, for input normalisation.
MEAN = (0.49139968, 0.48215841, 0.44653091)
STD = (0.24703223, 0.24348513, 0.26158784)
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
OFFICIAL_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"


# --- verification ---------------------------------------------------------------------------


def check_arrays(arrays: dict[str, np.ndarray], origin: str) -> None:
    """Refuse arrays whose names, shapes, dtypes, labels or class counts are not CIFAR-10's."""
    missing = sorted(set(EXPECTED) - set(arrays))
    if missing:
        raise DataError(f"{origin}: missing arrays {missing}; expected {sorted(EXPECTED)}")
    for name, (shape, dtype) in EXPECTED.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            raise DataError(
                f"{origin}: {name} has shape {a.shape} and dtype {a.dtype}; expected {shape} {np.dtype(dtype)}"
            )
    for split, per_class in (("y_train", 5000), ("y_test", 1000)):
        labels = arrays[split]
        if labels.max() >= NUM_CLASSES:
            raise DataError(f"{origin}: {split} holds label {labels.max()}; CIFAR-10 labels are 0..9")
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        if not (counts == per_class).all():
            raise DataError(f"{origin}: {split} class counts {counts.tolist()}; expected {per_class} per class")


def array_hashes(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    # hashlib reads the arrays' buffers directly: no copy of the 150 MB training images
    return {name: hashlib.sha256(memoryview(np.ascontiguousarray(arrays[name]))).hexdigest() for name in EXPECTED}


# --- sources --------------------------------------------------------------------------------


def load_npz(path: Path, sha256: str | None) -> dict[str, np.ndarray]:
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise DataError(
                f"{path}: sha256 {actual} does not match the expected {sha256}; the file is truncated or "
                "altered. Copy it again, or set data.npz_sha256 to null if you changed it on purpose."
            )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as err:  # damaged bytes fail in zipfile, zlib, the .npy header parser, ...
        raise DataError(f"{path}: cannot be read as an .npz archive ({err}); the file is truncated or corrupt") from err
    check_arrays(arrays, str(path))
    return arrays


def _from_torchvision(root: Path, download: bool) -> dict[str, np.ndarray]:
    from torchvision.datasets import CIFAR10

    arrays = {}
    for train in (True, False):
        dataset = CIFAR10(str(root), train=train, download=download)  # verifies the official md5s
        split = "train" if train else "test"
        arrays[f"x_{split}"] = np.ascontiguousarray(dataset.data, dtype=np.uint8)
        arrays[f"y_{split}"] = np.asarray(dataset.targets, dtype=np.uint8)
    return arrays


def load_official(directory: Path) -> dict[str, np.ndarray]:
    """Read a local official archive or its extracted batches, verified by the official md5s."""
    from torchvision.datasets.utils import check_integrity, extract_archive

    archive = directory / OFFICIAL_ARCHIVE
    batches = directory / "cifar-10-batches-py"
    if not batches.is_dir():
        if not check_integrity(str(archive), OFFICIAL_ARCHIVE_MD5):
            raise DataError(f"{archive}: md5 is not the official {OFFICIAL_ARCHIVE_MD5}; the archive is truncated or altered")
        extract_archive(str(archive), str(directory))
    try:
        arrays = _from_torchvision(directory, download=False)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"{batches}: official batch files fail their md5 check ({err}); extract the archive again") from err
    check_arrays(arrays, str(batches))
    return arrays


def download_official(directory: Path) -> dict[str, np.ndarray]:
    try:
        arrays = _from_torchvision(directory, download=True)
    except Exception as err:  # network errors come in many types
        raise DataError(f"downloading CIFAR-10 into {directory} failed: {err}") from err
    check_arrays(arrays, "downloaded CIFAR-10")
    return arrays


def _official_present(directory: Path) -> bool:
    return (directory / OFFICIAL_ARCHIVE).is_file() or (directory / "cifar-10-batches-py").is_dir()


def fetch_cifar10(data_params: dict) -> tuple[dict[str, np.ndarray], str]:
    """Load CIFAR-10 from the configured source; return the arrays and a description of the source."""
    source = data_params["source"]
    npz_path = Path(data_params["npz_path"])
    official_dir = Path(data_params["official_dir"])
    if source == "npz" or (source == "auto" and npz_path.is_file()):
        if not npz_path.is_file():
            raise DataError(f"data.npz_path: {npz_path} does not exist")
        return load_npz(npz_path, data_params["npz_sha256"]), f"npz:{npz_path}"
    if source == "official" or (source == "auto" and _official_present(official_dir)):
        if not _official_present(official_dir):
            raise DataError(f"data.official_dir: {official_dir} holds neither {OFFICIAL_ARCHIVE} nor cifar-10-batches-py/")
        return load_official(official_dir), f"official:{official_dir}"
    try:
        return download_official(official_dir), f"download:{official_dir}"
    except DataError as err:
        raise DataError(
            f"CIFAR-10 is not available ({err}). Fix it one of three ways:\n"
            f"  1. put the offline copy at {npz_path} (or set data.npz_path to where it is);\n"
            f"  2. put the official {OFFICIAL_ARCHIVE} (or its extracted cifar-10-batches-py/) in {official_dir};\n"
            "  3. run on a machine with internet access so torchvision can download the official archive."
        ) from err


def prepare_data(data_params: dict) -> dict:
    """Write the normalised .npz and a manifest of array hashes; return the manifest."""
    arrays, source = fetch_cifar10(data_params)
    out = Path(data_params["out"])
    manifest = {"source": source, "arrays_sha256": array_hashes(arrays)}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{name: arrays[name] for name in EXPECTED})
    write_json(manifest_path_for(out), manifest)
    return manifest


def manifest_path_for(npz_path: Path) -> Path:
    return Path(npz_path).with_suffix(".manifest.json")


def read_manifest(npz_path: str | Path) -> dict:
    path = manifest_path_for(Path(npz_path))
    return json.loads(path.read_text()) if path.is_file() else {}


def load_prepared(npz_path: str | Path) -> dict[str, np.ndarray]:
    """Read the normalised data written by :func:`prepare_data`, verified against its manifest."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise DataError(f"{npz_path} does not exist; run `mixstudy data` first")
    arrays = load_npz(npz_path, sha256=None)
    manifest = read_manifest(npz_path)
    if manifest and array_hashes(arrays) != manifest["arrays_sha256"]:
        raise DataError(f"{npz_path} does not match {manifest_path_for(npz_path)}; run `mixstudy data` again")
    return arrays


# --- subsets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subset:
    train_indices: np.ndarray
    val_indices: np.ndarray


# The study's draw (its notebook, code/CIFAR10.ipynb): np.random.seed(1234) with nothing drawn from
# numpy's global generator before, StratifiedShuffleSplit(n_splits=10, train_size=500, test_size=None)
# over the official training labels, and the second split (train_indices[1]) for every run.
STUDY_SEED = 1234
STUDY_SPLITS = 10
STUDY_SPLIT_INDEX = 1


def study_draw(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The study's training indices, in the order of its draw (50 per class at ``per_class`` 50).

    A RandomState seeded 1234 draws what the study's freshly seeded global generator drew,
    without touching numpy's global state.
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    splitter = StratifiedShuffleSplit(
        n_splits=STUDY_SPLITS, train_size=per_class * NUM_CLASSES, test_size=None,
        random_state=np.random.RandomState(STUDY_SEED),
    )
    for index, (train, _) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if index == STUDY_SPLIT_INDEX:
            break
    counts = np.bincount(labels[train], minlength=NUM_CLASSES)
    if not (counts == per_class).all():
        raise DataError(
            f"subset.draw study gives {counts.tolist()} images per class at subset.per_class {per_class}, "
            "not the same number in each; use subset.draw: seeded for this size"
        )
    return train


def _check_class_sizes(labels: np.ndarray, needed: int) -> None:
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if needed > counts.min():
        raise DataError(
            f"subset.per_class + subset.val_per_class = {needed} exceeds the smallest class "
            f"({counts.min()} images); lower them"
        )


def seeded_subset(labels: np.ndarray, per_class: int, val_per_class: int, seed: int) -> Subset:
    """Draw ``per_class`` training and ``val_per_class`` validation indices per class, disjoint.

    Uses numpy's PCG64 Generator, whose streams are stable across machines and numpy versions
    for ``permutation``; torch is not involved, so the indices do not depend on its version.
    """
    needed = per_class + val_per_class
    _check_class_sizes(labels, needed)
    rng = np.random.Generator(np.random.PCG64(seed))
    train, val = [], []
    for cls in range(NUM_CLASSES):
        members = np.flatnonzero(labels == cls)
        drawn = rng.permutation(members)[:needed]
        train.append(np.sort(drawn[:per_class]))
        val.append(np.sort(drawn[per_class:]))
    return Subset(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)))


def study_subset(labels: np.ndarray, per_class: int, val_per_class: int, seed: int) -> Subset:
    """The study's training images; validation images drawn per class from the rest with ``seed``
    (so the training images never depend on the validation split)."""
    _check_class_sizes(labels, per_class + val_per_class)
    train = study_draw(labels, per_class)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    rng = np.random.Generator(np.random.PCG64(seed))
    val = [np.sort(rng.permutation(rest[labels[rest] == cls])[:val_per_class]) for cls in range(NUM_CLASSES)]
    return Subset(np.sort(train), np.sort(np.concatenate(val)))


SUBSET_DRAWS = {"study": study_subset, "seeded": seeded_subset}


def draw_subset(labels: np.ndarray, subset_params: dict) -> Subset:
    """The subset ``subset:`` asks for (``draw``: study or seeded)."""
    draw = subset_params["draw"]
    if draw not in SUBSET_DRAWS:
        raise DataError(f"subset.draw: unknown draw {draw!r}; choose one of: {', '.join(SUBSET_DRAWS)}")
    p = subset_params
    return SUBSET_DRAWS[draw](labels, p["per_class"], p["val_per_class"], p["seed"])


def subset_content_hash(arrays: dict[str, np.ndarray], indices: np.ndarray) -> str:
    x = np.ascontiguousarray(arrays["x_train"][indices])
    y = np.ascontiguousarray(arrays["y_train"][indices])
    return sha256_bytes(indices.astype(np.int64).tobytes() + x.tobytes() + y.tobytes())


def make_subset(data_npz: str | Path, subset_params: dict, out: str | Path) -> dict:
    arrays = load_prepared(data_npz)
    subset = draw_subset(arrays["y_train"], subset_params)
    record = {
        "params": dict(subset_params),
        "train_indices": subset.train_indices.tolist(),
        "val_indices": subset.val_indices.tolist(),
        "train_sha256": subset_content_hash(arrays, subset.train_indices),
        "val_sha256": subset_content_hash(arrays, subset.val_indices),
        "data_sha256": array_hashes(arrays),
    }
    write_json(out, record)
    return record


@dataclass
class StudyData:
    """The arrays one run needs (uint8 NHWC, labels int64) and their provenance."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    subset_sha256: str
    data_manifest: dict = field(default_factory=dict)  # source and array hashes of the prepared data


def load_study_data(data_npz: str | Path, subset_file: str | Path) -> StudyData:
    """Load the prepared data and a subset file, refusing a subset whose content hash does not match."""
    subset_file = Path(subset_file)
    if not subset_file.is_file():
        raise DataError(f"{subset_file} does not exist; run `mixstudy subset` first")
    try:
        record = json.loads(subset_file.read_text())
        train_idx = np.asarray(record["train_indices"], dtype=np.int64)
        val_idx = np.asarray(record["val_indices"], dtype=np.int64)
        expected = {"train_sha256": record["train_sha256"], "val_sha256": record["val_sha256"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{subset_file} is not a complete subset file ({err}); run `mixstudy subset` again") from err
    arrays = load_prepared(data_npz)
    for key, indices in (("train_sha256", train_idx), ("val_sha256", val_idx)):
        in_range = indices.size == 0 or (indices.min() >= 0 and indices.max() < len(arrays["y_train"]))
        if not in_range or subset_content_hash(arrays, indices) != expected[key]:
            raise DataError(
                f"{subset_file}: the selected images do not match its recorded content hash ({key}; the subset file or "
                f"{data_npz} changed); run `mixstudy subset` again"
            )
    return StudyData(
        x_train=arrays["x_train"][train_idx],
        y_train=arrays["y_train"][train_idx].astype(np.int64),
        x_val=arrays["x_train"][val_idx],
        y_val=arrays["y_train"][val_idx].astype(np.int64),
        x_test=arrays["x_test"],
        y_test=arrays["y_test"].astype(np.int64),
        subset_sha256=expected["train_sha256"],
        data_manifest=read_manifest(data_npz),
    )


def subset_file(subset_params: dict, root: str | Path = "data/subsets") -> Path:
    """Where the subset of these parameters lives; the name says what it holds."""
    p = subset_params
    return Path(root) / f"cifar10_{p['draw']}_n{p['per_class']}_val{p['val_per_class']}_seed{p['seed']}.json"
