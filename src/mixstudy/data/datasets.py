"""The data sets (CIFAR-10, CIFAR-100, SVHN, and SVHN with its extra images): fetch from one of three
sources, verify, normalise to one local .npz with a manifest.

Sources, in order of preference for ``source: auto``:
  1. a local .npz with uint8 arrays x_train (N,32,32,3), y_train, x_test, y_test, checked for shape,
     dtype, label range and per-class counts, and against a sha256 when given;
  2. the official files in ``data.official_dir`` (CIFAR-10/100: the python archive or its extracted
     folder; SVHN: the ``.mat`` files, read with scipy), verified by the md5s torchvision's dataset
     classes carry;
  3. the official download through torchvision (md5-verified).

The normalised file's manifest records what later stages take from the data, never from a constant:
the data set's name, its number of classes and class names, and the per-channel mean and standard
deviation of its training split (:func:`data_info`). The subsets drawn from a prepared file:
mixstudy.data.subsets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixstudy.core.errors import DataError
from mixstudy.core.fileio import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

IMAGE_SHAPE = (32, 32, 3)  # every data set here: 32x32 RGB, height x width x channel
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
STATISTICS_DECIMALS = 8  # the published CIFAR-10 statistics' precision; the normalisation uses these


@dataclass(frozen=True)
class DataSet:
    """What verifying one data set needs: its official layout and the counts its files must hold.

    ``train_per_class``/``test_per_class`` are None for a data set whose classes are unbalanced
    (SVHN): then only the totals and that every class is present are checked.
    """

    name: str
    title: str
    num_classes: int
    train_size: int
    test_size: int
    train_per_class: int | None
    test_per_class: int | None
    official_names: str  # what data.official_dir must hold, for messages
    class_names: tuple[str, ...] | None = None  # None: read from the official files' metadata


DATASETS = {
    "cifar10": DataSet(
        "cifar10", "CIFAR-10", 10, 50000, 10000, 5000, 1000, "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "cifar100": DataSet(
        "cifar100", "CIFAR-100", 100, 50000, 10000, 500, 100, "cifar-100-python.tar.gz (or its extracted cifar-100-python/)"
    ),
    # SVHN's .mat files label digit 0 as 10; torchvision maps it to 0, so class k is digit k
    "svhn": DataSet(
        "svhn", "SVHN", 10, 73257, 26032, None, None, "train_32x32.mat and test_32x32.mat",
        tuple(str(digit) for digit in range(10)),
    ),
    # SVHN's 73,257 training images followed by its 531,131 extra ones, the test split unchanged. Asked
    # for by name only: a data set of its own name, so its files, subsets and runs never pass for SVHN's.
    "svhn_extra": DataSet(
        "svhn_extra", "SVHN+extra", 10, 73257 + 531131, 26032, None, None,
        "train_32x32.mat, extra_32x32.mat and test_32x32.mat", tuple(str(digit) for digit in range(10)),
    ),
}
# The official SVHN files (torchvision's SVHN.split_list keys) whose images make each split of the
# normalised file, in this order: svhn_extra's training split is train's images, then extra's.
SVHN_PARTS = {
    "svhn": {"train": ("train",), "test": ("test",)},
    "svhn_extra": {"train": ("train", "extra"), "test": ("test",)},
}


def dataset(name: str) -> DataSet:
    if name not in DATASETS:
        raise DataError(f"data.name: unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def expected_arrays(spec: DataSet) -> dict[str, tuple[tuple[int, ...], type]]:
    return {
        "x_train": ((spec.train_size, *IMAGE_SHAPE), np.uint8),
        "y_train": ((spec.train_size,), np.uint8),
        "x_test": ((spec.test_size, *IMAGE_SHAPE), np.uint8),
        "y_test": ((spec.test_size,), np.uint8),
    }


# --- verification ---------------------------------------------------------------------------


def check_arrays(arrays: dict[str, np.ndarray], origin: str, name: str = "cifar10") -> None:
    """Refuse arrays whose names, shapes, dtypes, labels or class counts are not those of data set ``name``."""
    spec = dataset(name)
    expected = expected_arrays(spec)
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise DataError(f"{origin}: missing arrays {missing}; expected {sorted(expected)}")
    for array_name, (shape, dtype) in expected.items():
        a = arrays[array_name]
        if a.shape != shape or a.dtype != dtype:
            raise DataError(
                f"{origin}: {array_name} has shape {a.shape} and dtype {a.dtype}; expected {shape} {np.dtype(dtype)} "
                f"({spec.title})"
            )
    for split, per_class in (("y_train", spec.train_per_class), ("y_test", spec.test_per_class)):
        labels = arrays[split]
        if labels.max() >= spec.num_classes:
            raise DataError(
                f"{origin}: {split} holds label {labels.max()}; {spec.title} labels are 0..{spec.num_classes - 1}"
            )
        counts = np.bincount(labels, minlength=spec.num_classes)
        if per_class is not None and not (counts == per_class).all():
            raise DataError(f"{origin}: {split} class counts {counts.tolist()}; expected {per_class} per class")
        if per_class is None and not (counts > 0).all():
            raise DataError(f"{origin}: {split} has no image of classes {np.flatnonzero(counts == 0).tolist()}")


def array_hashes(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    # hashlib reads the arrays' buffers directly: no copy of the 150 MB training images
    return {name: hashlib.sha256(memoryview(np.ascontiguousarray(arrays[name]))).hexdigest() for name in ARRAYS}


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 NHWC images on the [0, 1]
    scale, rounded to 8 decimals. Sums are exact integer sums (a histogram of the 256 values per
    channel), so the result does not depend on summation order or machine."""
    means, stds = [], []
    values = np.arange(256, dtype=np.float64)
    for channel in range(images.shape[-1]):
        counts = np.bincount(images[..., channel].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = (counts @ values) / total
        variance = (counts @ values**2) / total - mean**2
        means.append(round(float(mean / 255), STATISTICS_DECIMALS))
        stds.append(round(float(np.sqrt(variance) / 255), STATISTICS_DECIMALS))
    return tuple(means), tuple(stds)


def class_count(labels: np.ndarray) -> int:
    """The number of classes of a verified training split (every class 0..K-1 holds images)."""
    return int(labels.max()) + 1


def data_info(name: str, arrays: dict[str, np.ndarray], class_names: tuple[str, ...] | None) -> dict:
    """What later stages read from the data: its name, classes and training-split statistics."""
    num_classes = class_count(arrays["y_train"])
    mean, std = channel_statistics(arrays["x_train"])
    names = list(class_names) if class_names else [str(k) for k in range(num_classes)]
    return {"dataset": name, "num_classes": num_classes, "class_names": names, "mean": list(mean), "std": list(std)}


# --- sources --------------------------------------------------------------------------------


def load_npz(path: Path, sha256: str | None, name: str = "cifar10") -> dict[str, np.ndarray]:
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise DataError(
                f"{path}: sha256 {actual} does not match the expected {sha256}; the file is truncated or "
                "altered. Copy it again, or set data.npz_sha256 to null if you changed it on purpose."
            )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {array_name: archive[array_name] for array_name in archive.files}
    except Exception as err:  # damaged bytes fail in zipfile, zlib, the .npy header parser, ...
        raise DataError(f"{path}: cannot be read as an .npz archive ({err}); the file is truncated or corrupt") from err
    check_arrays(arrays, str(path), name)
    return arrays


def _torchvision_split(name: str, root: Path, train: bool, download: bool):
    """torchvision's CIFAR dataset object of one split; it checks the official md5s (RuntimeError if not)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[name](str(root), train=train, download=download)


def _svhn_split(root: Path, parts: tuple[str, ...], download: bool) -> tuple[np.ndarray, np.ndarray]:
    """The images (NHWC uint8) and labels of SVHN's official files ``parts``, one after the other.
    torchvision's SVHN reads each .mat file with scipy, checks its md5 (RuntimeError if not) and maps
    label 10 to the digit 0; it keeps the images as NCHW."""
    from torchvision.datasets import SVHN

    splits = [SVHN(str(root), split=part, download=download) for part in parts]
    images = np.concatenate([split.data.transpose(0, 2, 3, 1) for split in splits])  # one copy, contiguous
    labels = np.concatenate([np.asarray(split.labels) for split in splits])
    return images.astype(np.uint8, copy=False), labels.astype(np.uint8)


def _coarse_labels(dataset_object, root: Path) -> np.ndarray:
    """CIFAR-100's 20 superclass labels, which torchvision does not load: read from the same
    official files, after torchvision has checked their md5s."""
    labels = []
    for file_name, _ in dataset_object.train_list if dataset_object.train else dataset_object.test_list:
        with open(root / dataset_object.base_folder / file_name, "rb") as handle:
            labels.extend(pickle.load(handle, encoding="latin1")["coarse_labels"])
    return np.asarray(labels, dtype=np.uint8)


def _from_torchvision(name: str, root: Path, download: bool) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """The arrays of both splits (NHWC uint8) and the class names the official metadata gives."""
    arrays, class_names = {}, None
    if name in SVHN_PARTS:  # SVHN's files carry no class names
        for split, parts in SVHN_PARTS[name].items():
            arrays[f"x_{split}"], arrays[f"y_{split}"] = _svhn_split(root, parts, download)
        return arrays, None
    for train in (True, False):
        split = "train" if train else "test"
        dataset_object = _torchvision_split(name, root, train, download)
        arrays[f"x_{split}"] = np.ascontiguousarray(dataset_object.data, dtype=np.uint8)
        arrays[f"y_{split}"] = np.asarray(dataset_object.targets, dtype=np.uint8)
        class_names = tuple(dataset_object.classes)
        if name == "cifar100":
            arrays[f"y_{split}_coarse"] = _coarse_labels(dataset_object, root)
    return arrays, class_names


def official_files(name: str) -> dict[str, str]:
    """The official archive (or files) of ``name`` and their md5s, as torchvision's classes carry them."""
    from torchvision.datasets import CIFAR10, CIFAR100, SVHN

    if name in SVHN_PARTS:
        parts = [part for split_parts in SVHN_PARTS[name].values() for part in split_parts]
        return {SVHN.split_list[part][1]: SVHN.split_list[part][2] for part in parts}
    cls = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    return {cls.filename: cls.tgz_md5}


def _extracted_folder(name: str) -> str | None:
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10.base_folder, "cifar100": CIFAR100.base_folder}.get(name)


def official_present(name: str, directory: Path) -> bool:
    folder = _extracted_folder(name)
    if folder is not None:
        return (directory / folder).is_dir() or all((directory / f).is_file() for f in official_files(name))
    return any((directory / f).is_file() for f in official_files(name))


def load_official(directory: Path, name: str = "cifar10") -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """Read the local official files of ``name``, verified by the official md5s."""
    from torchvision.datasets.utils import check_integrity, extract_archive

    spec = dataset(name)
    folder = _extracted_folder(name)
    if folder is None:  # SVHN: the .mat files themselves, each checked here so the message names it
        for file_name, md5 in official_files(name).items():
            if not (directory / file_name).is_file():
                raise DataError(
                    f"{directory / file_name} is missing: {spec.title} needs {spec.official_names} in {directory}; "
                    f"put it there{_other_fix(name)}"
                )
            if not check_integrity(str(directory / file_name), md5):
                raise DataError(
                    f"{directory / file_name}: md5 is not the official {md5}; the file is truncated or altered. "
                    f"{spec.title} needs {spec.official_names} in {directory}"
                )
    elif not (directory / folder).is_dir():  # CIFAR: the archive, checked before anything is extracted
        ((archive, md5),) = official_files(name).items()
        if not check_integrity(str(directory / archive), md5):
            raise DataError(f"{directory / archive}: md5 is not the official {md5}; the archive is truncated or altered")
        extract_archive(str(directory / archive), str(directory))
    where = directory / folder if folder is not None else directory
    try:
        arrays, class_names = _from_torchvision(name, directory, download=False)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"{where}: official files fail their md5 check ({err}); extract the archive again") from err
    check_arrays(arrays, str(where), name)
    return arrays, class_names


def _other_fix(name: str) -> str:
    """The other fix when svhn_extra's extra file is missing: plain SVHN does not read it."""
    return " (or set data.name: svhn for SVHN without its extra images)" if name == "svhn_extra" else ""


def _topmost_missing(directory: Path) -> Path | None:
    """The highest folder of ``directory``'s path that does not exist yet (None: it exists)."""
    missing = None
    for folder in (directory, *directory.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def _remove_new_entries(directory: Path, missing_root: Path | None, before: set[Path]) -> None:
    """Undo what a failed download left: the folders it created, or the files it added to ``directory``."""
    if missing_root is not None:
        shutil.rmtree(missing_root, ignore_errors=True)
        return
    for path in set(directory.iterdir()) - before:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def download_official(directory: Path, name: str = "cifar10") -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """The official files through torchvision; a failed download leaves nothing behind."""
    missing_root = _topmost_missing(directory)
    before = set(directory.iterdir()) if missing_root is None else set()
    try:
        arrays, class_names = _from_torchvision(name, directory, download=True)
    except Exception as err:  # network errors come in many types
        _remove_new_entries(directory, missing_root, before)
        raise DataError(f"downloading {dataset(name).title} into {directory} failed: {err}") from err
    check_arrays(arrays, f"downloaded {dataset(name).title}", name)
    return arrays, class_names


def _npz_class_names(path: Path, spec: DataSet) -> tuple[str, ...] | None:
    """An offline .npz may carry its class names (array ``class_names``); else the table's, if any."""
    with np.load(path, allow_pickle=False) as archive:
        if "class_names" in archive.files:
            return tuple(str(n) for n in archive["class_names"])
    return spec.class_names


def fetch_dataset(data_params: dict) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None, str]:
    """Load ``data.name`` from the configured source: its arrays, class names and a description of the source."""
    name = data_params["name"]
    spec = dataset(name)
    source = data_params["source"]
    npz_path = Path(data_params["npz_path"])
    official_dir = Path(data_params["official_dir"])
    if source == "npz" or (source == "auto" and npz_path.is_file()):
        if not npz_path.is_file():
            raise DataError(f"data.npz_path: {npz_path} does not exist")
        arrays = load_npz(npz_path, data_params["npz_sha256"], name)
        return arrays, _npz_class_names(npz_path, spec) or spec.class_names, f"npz:{npz_path}"
    if source == "official" or (source == "auto" and official_present(name, official_dir)):
        if not official_present(name, official_dir):
            raise DataError(f"data.official_dir: {official_dir} does not hold {spec.official_names}")
        arrays, class_names = load_official(official_dir, name)
        return arrays, class_names or spec.class_names, f"official:{official_dir}"
    try:
        arrays, class_names = download_official(official_dir, name)
    except DataError as err:
        raise DataError(
            f"{spec.title} is not available: put {spec.official_names} in {official_dir}, or its normalised .npz at "
            f"{npz_path} (data.npz_path), or run where torchvision can download it (internet access); {err}"
        ) from err
    return arrays, class_names or spec.class_names, f"download:{official_dir}"


def prepare_data(data_params: dict) -> dict:
    """Write the normalised .npz and its manifest (array hashes, classes, statistics); return the manifest."""
    arrays, class_names, source = fetch_dataset(data_params)
    out = Path(data_params["out"])
    kept = [array_name for array_name in arrays if array_name in ARRAYS or array_name.endswith("_coarse")]
    manifest = {"source": source, "arrays_sha256": array_hashes(arrays), **data_info(data_params["name"], arrays, class_names)}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{array_name: arrays[array_name] for array_name in kept})
    write_json(manifest_path_for(out), manifest)
    return manifest


def manifest_path_for(npz_path: Path) -> Path:
    return Path(npz_path).with_suffix(".manifest.json")


def read_manifest(npz_path: str | Path) -> dict:
    path = manifest_path_for(Path(npz_path))
    return json.loads(path.read_text()) if path.is_file() else {}


INFO_KEYS = ("dataset", "num_classes", "class_names", "mean", "std")


def completed_manifest(manifest: dict, arrays: dict[str, np.ndarray], npz_path: Path) -> dict:
    """A manifest written before it recorded the data set's classes and statistics (those files
    are all CIFAR-10's) completed from the arrays themselves, with a message; nothing is rewritten."""
    if all(key in manifest for key in INFO_KEYS):
        return manifest
    log.warning(
        "%s predates the manifest's classes and statistics; computing them from its training split "
        "(run `mixstudy data` again to record them)", manifest_path_for(npz_path),
    )
    return {**manifest, **data_info("cifar10", arrays, DATASETS["cifar10"].class_names)}


def prepared_class_names(data_params: dict) -> tuple[str, ...]:
    """The class names of ``data.name``: its prepared file's manifest, else the official names the
    table knows (the labels' numbers where the official files are needed to know them)."""
    recorded = read_manifest(data_params["out"]).get("class_names")
    if recorded:
        return tuple(recorded)
    spec = dataset(data_params["name"])
    return spec.class_names or tuple(str(k) for k in range(spec.num_classes))


def load_prepared(npz_path: str | Path, name: str | None = None) -> dict[str, np.ndarray]:
    """Read the normalised data written by :func:`prepare_data`, verified against its manifest."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise DataError(f"{npz_path} does not exist; run `mixstudy data` first")
    manifest = read_manifest(npz_path)
    recorded = manifest.get("dataset", "cifar10")  # manifests before data.name are CIFAR-10's
    if name is not None and recorded != name:
        raise DataError(f"{npz_path} holds {recorded}, not data.name {name}; set data.out to {name}'s file or run `mixstudy data`")
    arrays = load_npz(npz_path, sha256=None, name=recorded)
    if manifest and array_hashes(arrays) != manifest["arrays_sha256"]:
        raise DataError(f"{npz_path} does not match {manifest_path_for(npz_path)}; run `mixstudy data` again")
    return arrays
