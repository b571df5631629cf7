"""The subsets of a prepared data set: the draws (``subset.draw``: the study's own, seeded, all),
their labels corrupted on request (``data.label_noise``), the subset file and its content hash, and
the subset loaded for training (:class:`StudyData`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixstudy.core.errors import DataError
from mixstudy.core.fileio import sha256_bytes, write_json
from mixstudy.data.datasets import (
    INFO_KEYS,
    array_hashes,
    class_count,
    completed_manifest,
    dataset,
    load_prepared,
    read_manifest,
)


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
        n_splits=STUDY_SPLITS, train_size=per_class * class_count(labels), test_size=None,
        random_state=np.random.RandomState(STUDY_SEED),
    )
    for index, (train, _) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if index == STUDY_SPLIT_INDEX:
            break
    counts = np.bincount(labels[train], minlength=class_count(labels))
    if not (counts == per_class).all():
        raise DataError(
            f"subset.draw study gives {counts.tolist()} images per class at subset.per_class {per_class}, "
            "not the same number in each; use subset.draw: seeded for this size"
        )
    return train


def _check_fits(smallest: int, per_class: int, val_per_class: int) -> None:
    """The subset's images of one class must fit in the smallest class (``smallest`` images)."""
    needed = per_class + val_per_class
    if needed > smallest:
        largest = max(smallest - (needed - per_class), 0)
        raise DataError(
            f"subset.per_class + subset.val_per_class = {needed} exceeds the smallest class "
            f"({smallest} images); lower them (the largest subset.per_class with this "
            f"subset.val_per_class is {largest})"
        )


def _check_class_sizes(labels: np.ndarray, per_class: int, val_per_class: int) -> None:
    _check_fits(int(np.bincount(labels, minlength=class_count(labels)).min()), per_class, val_per_class)


def check_subset_fits(params: dict) -> None:
    """Before any data is read (the workflow calls it as it loads its rules, so that a dry run
    refuses an impossible subset): the error ``mixstudy subset`` would give on the data, from the
    data set's class sizes. Data sets whose classes differ in size are checked on their data only."""
    smallest = dataset(params["data"]["name"]).train_per_class
    subset = params["subset"]
    if smallest is not None:
        _check_fits(smallest, 1 if subset["draw"] == "all" else subset["per_class"], subset["val_per_class"])


def seeded_subset(labels: np.ndarray, per_class: int, val_per_class: int, seed: int) -> Subset:
    """Draw ``per_class`` training and ``val_per_class`` validation indices per class, disjoint.

    Uses numpy's PCG64 Generator, whose streams are stable across machines and numpy versions
    for ``permutation``; torch is not involved, so the indices do not depend on its version.
    """
    needed = per_class + val_per_class
    _check_class_sizes(labels, per_class, val_per_class)
    rng = np.random.Generator(np.random.PCG64(seed))
    train, val = [], []
    for cls in range(class_count(labels)):
        members = np.flatnonzero(labels == cls)
        drawn = rng.permutation(members)[:needed]
        train.append(np.sort(drawn[:per_class]))
        val.append(np.sort(drawn[per_class:]))
    return Subset(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)))


def study_subset(labels: np.ndarray, per_class: int, val_per_class: int, seed: int) -> Subset:
    """The study's training images; validation images drawn per class from the rest with ``seed``
    (so the training images never depend on the validation split)."""
    _check_class_sizes(labels, per_class, val_per_class)
    train = study_draw(labels, per_class)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    rng = np.random.Generator(np.random.PCG64(seed))
    val = [np.sort(rng.permutation(rest[labels[rest] == cls])[:val_per_class]) for cls in range(class_count(labels))]
    return Subset(np.sort(train), np.sort(np.concatenate(val)))


def full_subset(labels: np.ndarray, per_class: int, val_per_class: int, seed: int) -> Subset:
    """The whole training split for training (``per_class`` is not used), less ``val_per_class`` images
    per class drawn for validation with ``seed``: the full-data setting of the manifold mixup paper."""
    _check_class_sizes(labels, 1, val_per_class)  # at least one training image of each class left
    rng = np.random.Generator(np.random.PCG64(seed))
    val = [np.sort(rng.permutation(np.flatnonzero(labels == cls))[:val_per_class]) for cls in range(class_count(labels))]
    val_indices = np.sort(np.concatenate(val))
    return Subset(np.setdiff1d(np.arange(len(labels)), val_indices), val_indices)


SUBSET_DRAWS = {"study": study_subset, "seeded": seeded_subset, "all": full_subset}


def draw_subset(labels: np.ndarray, subset_params: dict) -> Subset:
    """The subset ``subset:`` asks for (``draw``: study or seeded)."""
    draw = subset_params["draw"]
    if draw not in SUBSET_DRAWS:
        raise DataError(f"subset.draw: unknown draw {draw!r}; choose one of: {', '.join(SUBSET_DRAWS)}")
    p = subset_params
    return SUBSET_DRAWS[draw](labels, p["per_class"], p["val_per_class"], p["seed"])


def subset_content_hash(arrays: dict[str, np.ndarray], indices: np.ndarray, labels: np.ndarray | None = None) -> str:
    """sha256 of the indices, their images and their labels (``labels``: the labels a run trains on
    where they are not the data set's, i.e. corrupted ones; the same dtype as the data set's)."""
    x = np.ascontiguousarray(arrays["x_train"][indices])
    y = np.ascontiguousarray(arrays["y_train"][indices] if labels is None else labels.astype(arrays["y_train"].dtype))
    return sha256_bytes(indices.astype(np.int64).tobytes() + x.tobytes() + y.tobytes())


# --- corrupted training labels (data.label_noise) --------------------------------------------

# The label noise's own stream: a SeedSequence of (this tag, subset.seed), so no draw of the subset
# itself (its images, its validation split) depends on it or changes with it.
LABEL_NOISE_TAG = 38


def corrupt_labels(labels: np.ndarray, share: float, seed: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``round(share * n)`` of the labels, at positions drawn uniformly without replacement, replaced by
    a uniformly random *other* class (``(y + U{1..classes-1}) mod classes``). Returns the sorted
    positions corrupted and the new labels (same dtype); numpy's PCG64, so the same on every machine."""
    if not 0 <= share < 1:
        raise DataError(f"data.label_noise: {share!r} is not a share in [0, 1)")
    labels = np.asarray(labels)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([LABEL_NOISE_TAG, int(seed)])))
    positions = np.sort(rng.choice(len(labels), size=int(round(share * len(labels))), replace=False))
    shifts = rng.integers(1, num_classes, size=len(positions))
    noisy = labels.copy()
    noisy[positions] = (labels[positions].astype(np.int64) + shifts) % num_classes
    return positions, noisy


def make_subset(data_npz: str | Path, subset_params: dict, out: str | Path, label_noise: float = 0.0) -> dict:
    """Draw the subset and write its file. With ``label_noise`` > 0 the file also holds the corrupted
    training labels (``label_noise``: share, seed, positions, the labels trained on), and its
    ``train_sha256`` covers those labels, so a run's identity follows them; without, the file is
    what it always was, byte for byte."""
    arrays = load_prepared(data_npz)
    subset = draw_subset(arrays["y_train"], subset_params)
    noisy = None
    if label_noise > 0:
        positions, noisy = corrupt_labels(arrays["y_train"][subset.train_indices], label_noise, subset_params["seed"],
                                          class_count(arrays["y_train"]))
    record = {
        "params": dict(subset_params),
        "train_indices": subset.train_indices.tolist(),
        "val_indices": subset.val_indices.tolist(),
        "train_sha256": subset_content_hash(arrays, subset.train_indices, noisy),
        "val_sha256": subset_content_hash(arrays, subset.val_indices),
        "data_sha256": array_hashes(arrays),
    }
    if noisy is not None:
        record["label_noise"] = {
            "share": label_noise,
            "seed": subset_params["seed"],
            "corrupted_positions": positions.tolist(),  # positions in train_indices
            "train_labels": noisy.tolist(),  # the labels runs train on, aligned with train_indices
            "true_train_sha256": subset_content_hash(arrays, subset.train_indices),
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
    info: dict = field(default_factory=dict)  # data set, classes and statistics (see datasets.data_info)
    # With corrupted training labels (data.label_noise): y_train holds the labels trained on, this the
    # true ones, and label_noise the share and positions corrupted; None and {} without.
    y_train_true: np.ndarray | None = None
    label_noise: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Every network's number of outputs: from the data, never a constant."""
        return int(self.info["num_classes"])

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.info["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.info["std"])


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
    noisy, noise = _recorded_label_noise(record, subset_file, len(train_idx))
    for key, indices, labels in (("train_sha256", train_idx, noisy), ("val_sha256", val_idx, None)):
        in_range = indices.size == 0 or (indices.min() >= 0 and indices.max() < len(arrays["y_train"]))
        if not in_range or subset_content_hash(arrays, indices, labels) != expected[key]:
            raise DataError(
                f"{subset_file}: the selected images do not match its recorded content hash ({key}; the subset file or "
                f"{data_npz} changed); run `mixstudy subset` again"
            )
    true_labels = arrays["y_train"][train_idx].astype(np.int64)
    if noisy is not None and not np.array_equal(np.flatnonzero(noisy != true_labels), noise["corrupted_positions"]):
        raise DataError(f"{subset_file}: its corrupted labels are not where it says they are; run `mixstudy subset` again")
    return StudyData(
        x_train=arrays["x_train"][train_idx],
        y_train=true_labels if noisy is None else noisy.astype(np.int64),
        y_train_true=None if noisy is None else true_labels,
        label_noise=noise,
        x_val=arrays["x_train"][val_idx],
        y_val=arrays["y_train"][val_idx].astype(np.int64),
        x_test=arrays["x_test"],
        y_test=arrays["y_test"].astype(np.int64),
        subset_sha256=expected["train_sha256"],
        data_manifest=read_manifest(data_npz),
        info={key: value for key, value in completed_manifest(read_manifest(data_npz), arrays, Path(data_npz)).items() if key in INFO_KEYS},
    )


def _recorded_label_noise(record: dict, subset_file: Path, n_train: int) -> tuple[np.ndarray | None, dict]:
    """The corrupted training labels a subset file holds (None, {} for true labels), and what to say
    about them: share, seed, how many and which positions."""
    if "label_noise" not in record:
        return None, {}
    try:
        noise = record["label_noise"]
        noisy = np.asarray(noise["train_labels"], dtype=np.int64)
        positions = np.asarray(noise["corrupted_positions"], dtype=np.int64)
        summary = {"share": float(noise["share"]), "seed": int(noise["seed"]), "corrupted": len(positions),
                   "images": n_train, "corrupted_positions": positions}
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{subset_file}: its label_noise record is incomplete ({err}); run `mixstudy subset` again") from err
    if noisy.shape != (n_train,):
        raise DataError(f"{subset_file}: {len(noisy)} corrupted labels for {n_train} training images; run `mixstudy subset` again")
    return noisy, summary


def subset_file(subset_params: dict, name: str, root: str | Path = "data/subsets", label_noise: float = 0.0) -> Path:
    """Where the subset of these parameters of data set ``name`` lives; the name says what it holds
    (``_noise0.2``: a fifth of its training labels corrupted, data.label_noise)."""
    p = subset_params
    size = "" if p["draw"] == "all" else f"_n{p['per_class']}"  # every training image: per_class is not used
    noise = f"_noise{float(label_noise)!r}" if label_noise > 0 else ""  # repr: the shortest exact form (0.2)
    return Path(root) / f"{name}_{p['draw']}{size}_val{p['val_per_class']}_seed{p['seed']}{noise}.json"


def params_subset_file(params: dict, root: str | Path = "data/subsets") -> Path:
    """The subset file of merged parameters: ``subset:`` and data.name, data.label_noise."""
    return subset_file(params["subset"], params["data"]["name"], root, params["data"]["label_noise"])
