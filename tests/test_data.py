"""Data: verification, the three sources, the normalised file, seeded stratified subsets."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mixstudy.data import datasets as data
from mixstudy.data import subsets
from mixstudy.data.datasets import DataError
from mixstudy.core.errors import DataError as _DataError  # the same class, imported where it is defined

from torchvision.datasets import CIFAR10

from conftest import REAL_NPZ

assert DataError is _DataError


def _replace(arrays: dict, **changed) -> dict:
    out = dict(arrays)
    out.update(changed)
    return out


def _no_temp_files(directory: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in directory.iterdir())


# --- check_arrays ---------------------------------------------------------------------------


def test_check_arrays_accepts_cifar_shaped_arrays(fake_arrays):
    data.check_arrays(fake_arrays, "fake")  # no exception


@pytest.mark.parametrize(
    "name, bad",
    [
        ("x_train", lambda a: a["x_train"][:49999]),  # one image short
        ("x_test", lambda a: a["x_test"][:, :, :, :1]),  # one channel
        ("x_train", lambda a: a["x_train"].reshape(50000, 3, 32, 32)),  # NCHW instead of NHWC
        ("y_test", lambda a: a["y_test"].reshape(10000, 1)),
    ],
)
def test_check_arrays_rejects_wrong_shape(fake_arrays, name, bad):
    arrays = _replace(fake_arrays, **{name: bad(fake_arrays)})
    with pytest.raises(DataError, match=name) as info:
        data.check_arrays(arrays, "somefile.npz")
    assert "somefile.npz" in str(info.value)


@pytest.mark.parametrize(
    "name, dtype",
    [("x_train", np.float32), ("y_train", np.int64), ("x_test", np.int16), ("y_test", np.int32)],
)
def test_check_arrays_rejects_wrong_dtype(fake_arrays, name, dtype):
    arrays = _replace(fake_arrays, **{name: fake_arrays[name].astype(dtype)})
    with pytest.raises(DataError, match=name):
        data.check_arrays(arrays, "somefile.npz")


@pytest.mark.parametrize("split", ["y_train", "y_test"])
def test_check_arrays_rejects_label_out_of_range(fake_arrays, split):
    labels = fake_arrays[split].copy()
    labels[7] = 10
    with pytest.raises(DataError, match=split) as info:
        data.check_arrays(_replace(fake_arrays, **{split: labels}), "somefile.npz")
    assert "10" in str(info.value)


@pytest.mark.parametrize("split", ["y_train", "y_test"])
def test_check_arrays_rejects_wrong_class_counts(fake_arrays, split):
    labels = fake_arrays[split].copy()
    first_zero = int(np.flatnonzero(labels == 0)[0])
    labels[first_zero] = 1  # class 0 one short, class 1 one over; every label still in 0..9
    with pytest.raises(DataError, match=split):
        data.check_arrays(_replace(fake_arrays, **{split: labels}), "somefile.npz")


def test_check_arrays_rejects_missing_array(fake_arrays):
    arrays = {k: v for k, v in fake_arrays.items() if k != "y_test"}
    with pytest.raises(DataError, match="y_test"):
        data.check_arrays(arrays, "somefile.npz")


# --- load_npz -------------------------------------------------------------------------------


def test_load_npz_reads_a_valid_file_with_its_sha256(fake_npz, fake_arrays):
    digest = hashlib.sha256(fake_npz.read_bytes()).hexdigest()
    arrays = data.load_npz(fake_npz, digest)
    for name, expected in fake_arrays.items():
        assert arrays[name].dtype == expected.dtype
        assert np.array_equal(arrays[name], expected)


@pytest.mark.parametrize("keep", [0.5, 0.99])
@pytest.mark.parametrize("with_sha", [False, True])
def test_load_npz_refuses_truncated_file(tmp_path, fake_npz, keep, with_sha):
    raw = fake_npz.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: int(len(raw) * keep)])
    sha = hashlib.sha256(raw).hexdigest() if with_sha else None
    with pytest.raises(DataError, match="truncated"):
        data.load_npz(truncated, sha)


def test_load_npz_refuses_altered_file_by_sha256(tmp_path, fake_npz):
    raw = bytearray(fake_npz.read_bytes())
    expected_sha = hashlib.sha256(raw).hexdigest()
    raw[len(raw) // 2] ^= 0xFF
    altered = tmp_path / "altered.npz"
    altered.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="sha256") as info:
        data.load_npz(altered, expected_sha)
    assert expected_sha in str(info.value)
    assert hashlib.sha256(raw).hexdigest() in str(info.value)


def test_load_npz_refuses_non_zip_file(tmp_path):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("this is not an npz archive\n")
    with pytest.raises(DataError):
        data.load_npz(bogus, None)


def test_load_npz_refuses_corrupt_deflate_stream_without_sha(tmp_path):
    """A compressed .npz (as the offline copy is) with a damaged deflate stream, checked without
    a sha256 (``data.npz_sha256: null``), must still be refused with a DataError, not a zlib error."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=rng.integers(0, 256, size=4000, dtype=np.uint8))
    raw = buffer.getvalue()
    # Find a byte whose corruption makes the member's raw deflate stream undecodable.
    import zipfile

    info = zipfile.ZipFile(io.BytesIO(raw)).infolist()[0]
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # first byte of the member's deflate stream
    position = None
    for pos in range(start, start + info.compress_size):
        damaged = bytearray(raw)
        damaged[pos] ^= 0x55
        try:
            zlib.decompressobj(-15).decompress(bytes(damaged[start : start + info.compress_size]))
        except zlib.error:
            position = pos
            break
    assert position is not None
    damaged = bytearray(raw)
    damaged[position] ^= 0x55
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError):
        data.load_npz(path, None)


# --- sources --------------------------------------------------------------------------------


class _NoNetworkCIFAR10(CIFAR10):
    """Stands in for torchvision.datasets.CIFAR10 on a machine without internet."""

    calls: list = []

    def __init__(self, root, train=True, download=False, **kwargs):
        type(self).calls.append(download)
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")


def test_fetch_without_any_source_names_all_three_fixes(tmp_path, monkeypatch):
    import torchvision.datasets

    _NoNetworkCIFAR10.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _NoNetworkCIFAR10)
    official = tmp_path / "raw"
    official.mkdir()
    missing_npz = tmp_path / "nowhere" / "cifar10.npz"
    params = {"name": "cifar10", "source": "auto", "npz_path": str(missing_npz), "npz_sha256": None, "official_dir": str(official), "out": str(tmp_path / "out.npz")}
    with pytest.raises(DataError) as info:
        data.fetch_dataset(params)
    message = str(info.value)
    assert True in _NoNetworkCIFAR10.calls  # a download was attempted
    assert str(missing_npz) in message  # fix 1: the offline copy
    assert CIFAR10.filename in message and str(official) in message  # fix 2: the official archive
    assert "internet" in message  # fix 3: download
    assert "\n" not in message  # one line


def test_fetch_npz_source_missing_names_the_key(tmp_path):
    params = {"name": "cifar10", "source": "npz", "npz_path": str(tmp_path / "absent.npz"), "official_dir": str(tmp_path), "out": "x"}
    with pytest.raises(DataError, match="data.npz_path"):
        data.fetch_dataset(params)


def test_fetch_official_source_empty_dir_names_the_key(tmp_path):
    params = {"name": "cifar10", "source": "official", "npz_path": str(tmp_path / "absent.npz"), "official_dir": str(tmp_path), "out": "x"}
    with pytest.raises(DataError, match="data.official_dir"):
        data.fetch_dataset(params)


def test_fetch_auto_prefers_npz(fake_npz, tmp_path):
    params = {"name": "cifar10", "source": "auto", "npz_path": str(fake_npz), "npz_sha256": None, "official_dir": str(tmp_path), "out": "x"}
    arrays, _, source = data.fetch_dataset(params)
    assert source == f"npz:{fake_npz}"
    assert set(arrays) == set(data.ARRAYS)


def _corrupt_archive(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / CIFAR10.filename
    archive.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 40)  # gzip magic, garbage body
    assert hashlib.md5(archive.read_bytes()).hexdigest() != CIFAR10.tgz_md5
    return archive


def test_load_official_refuses_corrupt_archive(tmp_path):
    directory = tmp_path / "raw"
    _corrupt_archive(directory)
    with pytest.raises(DataError, match="md5"):
        data.load_official(directory)
    assert not (directory / "cifar-10-batches-py").exists()  # nothing extracted


def test_fetch_auto_uses_official_archive_and_refuses_it_when_corrupt(tmp_path):
    directory = tmp_path / "raw"
    _corrupt_archive(directory)
    params = {"name": "cifar10", "source": "auto", "npz_path": str(tmp_path / "absent.npz"), "official_dir": str(directory), "out": "x"}
    with pytest.raises(DataError, match="md5"):
        data.fetch_dataset(params)


# --- prepare_data ---------------------------------------------------------------------------


def test_prepare_data_writes_npz_and_manifest(prepared_npz, fake_npz, fake_arrays):
    with np.load(prepared_npz, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(data.ARRAYS)
        for name, expected in fake_arrays.items():
            assert archive[name].dtype == expected.dtype
            assert np.array_equal(archive[name], expected)
    manifest_path = prepared_npz.with_suffix(".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["source"] == f"npz:{fake_npz}"
    expected_hashes = {name: hashlib.sha256(a.tobytes()).hexdigest() for name, a in fake_arrays.items()}
    assert manifest["arrays_sha256"] == expected_hashes
    assert _no_temp_files(prepared_npz.parent)


@pytest.mark.parametrize("corruption", ["truncated_npz", "wrong_sha", "corrupt_archive"])
def test_prepare_data_writes_nothing_when_source_is_corrupt(tmp_path, fake_npz, corruption):
    out = tmp_path / "prepared" / "cifar10.npz"
    params = {"name": "cifar10", "source": "npz", "npz_path": str(fake_npz), "npz_sha256": None, "official_dir": str(tmp_path / "raw"), "out": str(out)}
    if corruption == "truncated_npz":
        bad = tmp_path / "bad.npz"
        bad.write_bytes(fake_npz.read_bytes()[:1000])
        params["npz_path"] = str(bad)
    elif corruption == "wrong_sha":
        params["npz_sha256"] = "0" * 64
    else:
        _corrupt_archive(tmp_path / "raw")
        params["source"] = "official"
    with pytest.raises(DataError):
        data.prepare_data(params)
    assert not out.exists()
    assert not data.manifest_path_for(out).exists()
    if out.parent.exists():
        assert list(out.parent.iterdir()) == []


def test_load_prepared_refuses_data_that_does_not_match_its_manifest(tmp_path, prepared_npz):
    copy = tmp_path / "cifar10.npz"
    copy.symlink_to(prepared_npz)  # the same data, beside a manifest that disagrees with it
    manifest = json.loads(data.manifest_path_for(prepared_npz).read_text())
    manifest["arrays_sha256"]["y_test"] = "f" * 64
    data.manifest_path_for(copy).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="manifest"):
        data.load_prepared(copy)


# --- subsets --------------------------------------------------------------------------------


def test_seeded_subset_counts_and_disjointness(fake_arrays):
    labels = fake_arrays["y_train"]
    subset = subsets.seeded_subset(labels, per_class=7, val_per_class=3, seed=0)
    train, val = subset.train_indices, subset.val_indices
    assert len(train) == 70 and len(val) == 30
    assert np.array_equal(np.bincount(labels[train], minlength=10), np.full(10, 7))
    assert np.array_equal(np.bincount(labels[val], minlength=10), np.full(10, 3))
    assert len(np.intersect1d(train, val)) == 0
    assert len(np.unique(train)) == 70 and len(np.unique(val)) == 30
    assert train.min() >= 0 and max(train.max(), val.max()) < len(labels)


def test_seeded_subset_without_validation(fake_arrays):
    subset = subsets.seeded_subset(fake_arrays["y_train"], per_class=5, val_per_class=0, seed=3)
    assert len(subset.train_indices) == 50 and len(subset.val_indices) == 0


def test_seeded_subset_is_deterministic_per_seed(fake_arrays):
    labels = fake_arrays["y_train"]
    a = subsets.seeded_subset(labels, 10, 2, seed=5)
    b = subsets.seeded_subset(labels, 10, 2, seed=5)
    c = subsets.seeded_subset(labels, 10, 2, seed=6)
    assert np.array_equal(a.train_indices, b.train_indices)
    assert np.array_equal(a.val_indices, b.val_indices)
    assert not np.array_equal(a.train_indices, c.train_indices)
    assert not np.array_equal(a.val_indices, c.val_indices)


# Seed 0 on 200 labels 0..9 in turn (np.arange(200) % 10), 3 training and 2 validation images
# per class. Written once from an independent computation (``_from_scratch_subset`` below: a
# Fisher-Yates shuffle on PCG64's raw 64-bit outputs) and kept here, so a change of numpy's
# stream, of the draw order or of the sorting shows as a changed list.
GOLDEN_TRAIN = [8, 19, 27, 40, 41, 45, 48, 53, 54, 55, 60, 72, 73, 87, 106,
                109, 111, 112, 113, 124, 126, 135, 147, 148, 161, 174, 176, 189, 190, 192]
GOLDEN_VAL = [5, 6, 14, 17, 20, 52, 58, 61, 71, 75, 86, 98, 102, 129, 130, 134, 143, 159, 163, 177]


def test_seeded_subset_golden_pcg64_stream():
    subset = subsets.seeded_subset(np.arange(200) % 10, per_class=3, val_per_class=2, seed=0)
    assert subset.train_indices.tolist() == GOLDEN_TRAIN
    assert subset.val_indices.tolist() == GOLDEN_VAL


class _Uint32FromPCG64:
    """numpy's bounded integers for ``shuffle``, from PCG64's raw outputs: a 64-bit output gives
    two uint32 draws, low half first; a bound is drawn by masked rejection."""

    def __init__(self, seed: int):
        self.bits, self.high = np.random.PCG64(seed), None

    def uint32(self) -> int:
        if self.high is not None:
            value, self.high = self.high, None
            return value
        raw = int(self.bits.random_raw())
        self.high = raw >> 32
        return raw & 0xFFFFFFFF

    def at_most(self, maximum: int) -> int:
        mask = (1 << maximum.bit_length()) - 1
        while (value := self.uint32() & mask) > maximum:
            pass
        return value


def _from_scratch_subset(labels, per_class, val_per_class, seed):
    """The same draw without numpy's ``permutation``: Fisher-Yates from the last position down."""
    rng, train, val = _Uint32FromPCG64(seed), [], []
    for cls in range(10):
        members = [int(i) for i in np.flatnonzero(labels == cls)]
        for i in range(len(members) - 1, 0, -1):
            j = rng.at_most(i)
            members[i], members[j] = members[j], members[i]
        train += members[:per_class]
        val += members[per_class : per_class + val_per_class]
    return sorted(train), sorted(val)


def test_golden_subset_is_what_a_from_scratch_shuffle_of_pcg64_gives():
    assert _from_scratch_subset(np.arange(200) % 10, 3, 2, seed=0) == (GOLDEN_TRAIN, GOLDEN_VAL)


def test_subset_larger_than_a_class_is_refused_without_output(tmp_path, prepared_npz, fake_arrays):
    labels = fake_arrays["y_train"]
    with pytest.raises(DataError, match="per_class"):
        subsets.seeded_subset(labels, per_class=4990, val_per_class=11, seed=0)
    out = tmp_path / "subsets" / "too_big.json"
    with pytest.raises(DataError, match="per_class"):
        subsets.make_subset(prepared_npz, {"draw": "seeded", "per_class": 5000, "val_per_class": 1, "seed": 0}, out)
    assert not out.exists()


def test_subset_file_name_says_what_it_holds():
    path = subsets.subset_file({"draw": "seeded", "per_class": 50, "val_per_class": 5, "seed": 3}, "cifar10", root="somewhere")
    assert path == Path("somewhere") / "cifar10_seeded_n50_val5_seed3.json"


@pytest.fixture(scope="module")
def subset_record(tmp_path_factory, prepared_npz):
    out = tmp_path_factory.mktemp("subsets") / "subset.json"
    record = subsets.make_subset(prepared_npz, {"draw": "seeded", "per_class": 4, "val_per_class": 2, "seed": 0}, out)
    return out, record


def test_make_subset_and_load_study_data_round_trip(subset_record, prepared_npz, fake_arrays):
    path, record = subset_record
    expected = subsets.seeded_subset(fake_arrays["y_train"], 4, 2, 0)
    assert record["train_indices"] == expected.train_indices.tolist()
    assert record["val_indices"] == expected.val_indices.tolist()
    study = subsets.load_study_data(prepared_npz, path)
    train, val = expected.train_indices, expected.val_indices
    assert np.array_equal(study.x_train, fake_arrays["x_train"][train])
    assert np.array_equal(study.y_train, fake_arrays["y_train"][train].astype(np.int64))
    assert study.y_train.dtype == np.int64 and study.y_val.dtype == np.int64 and study.y_test.dtype == np.int64
    assert np.array_equal(study.x_val, fake_arrays["x_train"][val])
    assert np.array_equal(study.x_test, fake_arrays["x_test"])
    assert np.array_equal(study.y_test, fake_arrays["y_test"])
    assert study.subset_sha256 == record["train_sha256"]


def _tampered(tmp_path: Path, source: Path, change) -> Path:
    record = json.loads(source.read_text())
    change(record)
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(record))
    return out


def _other_member_of_same_class(labels: np.ndarray, taken: list[int], index: int) -> int:
    same = np.flatnonzero(labels == labels[index])
    return int(next(i for i in same if i not in set(taken)))


def test_load_study_data_refuses_edited_train_index(tmp_path, subset_record, prepared_npz, fake_arrays):
    path, record = subset_record
    taken = record["train_indices"] + record["val_indices"]
    replacement = _other_member_of_same_class(fake_arrays["y_train"], taken, record["train_indices"][0])

    def edit(r):
        r["train_indices"][0] = replacement

    with pytest.raises(DataError, match="hash"):
        subsets.load_study_data(prepared_npz, _tampered(tmp_path, path, edit))


def test_load_study_data_refuses_edited_validation_index(tmp_path, subset_record, prepared_npz, fake_arrays):
    """The validation indices choose the images that rank the tuning runs; the file records
    ``val_sha256`` for them, so an edited validation index must be refused too."""
    path, record = subset_record
    taken = record["train_indices"] + record["val_indices"]
    replacement = _other_member_of_same_class(fake_arrays["y_train"], taken, record["val_indices"][0])

    def edit(r):
        r["val_indices"][0] = replacement

    with pytest.raises(DataError):
        subsets.load_study_data(prepared_npz, _tampered(tmp_path, path, edit))


def test_load_study_data_refuses_out_of_range_index(tmp_path, subset_record, prepared_npz):
    path, _ = subset_record

    def edit(r):
        r["train_indices"][-1] = 50000  # one past the last training image

    with pytest.raises(DataError):
        subsets.load_study_data(prepared_npz, _tampered(tmp_path, path, edit))


def test_load_study_data_refuses_edited_hash(tmp_path, subset_record, prepared_npz):
    path, _ = subset_record

    def edit(r):
        r["train_sha256"] = "0" * 64

    with pytest.raises(DataError, match="hash"):
        subsets.load_study_data(prepared_npz, _tampered(tmp_path, path, edit))


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_load_study_data_refuses_truncated_json(tmp_path, subset_record, prepared_npz, keep):
    path, _ = subset_record
    text = path.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: int(len(text) * keep)])
    with pytest.raises(DataError, match="subset"):
        subsets.load_study_data(prepared_npz, truncated)


def test_load_study_data_missing_subset_file(tmp_path, prepared_npz):
    with pytest.raises(DataError, match="mixstudy subset"):
        subsets.load_study_data(prepared_npz, tmp_path / "absent.json")


# --- real data (the offline copy beside the checkout, as in CI) ------------------------------


@pytest.mark.real_data
def test_real_offline_copy_matches_its_readme():
    assert REAL_NPZ.is_file(), f"the offline CIFAR-10 copy is expected at {REAL_NPZ} (beside the checkout, as in CI)"
    readme = (REAL_NPZ.parent / "README.md").read_text()
    documented = dict(re.findall(r"^\s+(x_train|y_train|x_test|y_test)\s+([0-9a-f]{64})\s*$", readme, re.M))
    file_sha = re.search(r"sha256 of the file: ([0-9a-f]{64})", readme).group(1)
    arrays = data.load_npz(REAL_NPZ, file_sha)  # checks shapes, dtypes, labels, counts too
    assert data.array_hashes(arrays) == documented
    assert len(documented) == 4


# --- the study's own 500 images (subset.draw: study) -----------------------------------------


def test_study_draw_on_fabricated_labels_is_stratified_and_independent_of_validation(fake_arrays):
    labels = fake_arrays["y_train"]
    with_val = subsets.study_subset(labels, per_class=50, val_per_class=20, seed=0)
    without_val = subsets.study_subset(labels, per_class=50, val_per_class=0, seed=0)
    other_seed = subsets.study_subset(labels, per_class=50, val_per_class=20, seed=1)
    assert np.array_equal(with_val.train_indices, without_val.train_indices)  # validation never moves a training image
    assert np.array_equal(with_val.train_indices, other_seed.train_indices)  # subset.seed draws validation only
    assert not np.array_equal(with_val.val_indices, other_seed.val_indices)
    assert np.bincount(labels[with_val.train_indices], minlength=10).tolist() == [50] * 10
    assert np.bincount(labels[with_val.val_indices], minlength=10).tolist() == [20] * 10
    assert np.intersect1d(with_val.train_indices, with_val.val_indices).size == 0


def test_study_draw_is_scikit_learns_second_split_after_seeding_numpys_global_generator(fake_arrays):
    """The study's notebook, step by step: np.random.seed(1234), then StratifiedShuffleSplit without a
    random_state (numpy's global generator), the second of ten splits."""
    from sklearn.model_selection import StratifiedShuffleSplit

    labels = fake_arrays["y_train"]
    state = np.random.get_state()
    try:
        np.random.seed(1234)
        splits = [train for train, _ in StratifiedShuffleSplit(n_splits=10, train_size=500, test_size=None).split(labels, labels)]
    finally:
        np.random.set_state(state)
    assert np.array_equal(subsets.study_draw(labels, 50), splits[1])
    before = np.random.get_state()[1].copy()
    subsets.study_draw(labels, 50)
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global generator is left alone


def test_study_draw_refuses_a_size_it_cannot_split_evenly():
    labels = np.repeat(np.arange(10), [30] * 9 + [3])  # one small class: no 10 per class in 100 draws
    with pytest.raises(DataError, match="subset.draw: seeded"):
        subsets.study_draw(labels, 10)


def test_unknown_subset_draw_names_the_choices(fake_arrays):
    with pytest.raises(DataError, match="subset.draw.*study, seeded"):
        subsets.draw_subset(fake_arrays["y_train"], {"draw": "random", "per_class": 5, "val_per_class": 0, "seed": 0})


@pytest.mark.real_data
def test_the_study_subset_of_real_cifar10():
    """The indices the study's notebook draws (README of shared/study: 8237, 19518, 20936, 11588, 869 first)."""
    labels = np.load(REAL_NPZ)["y_train"]
    drawn = subsets.study_draw(labels, 50)
    assert drawn[:5].tolist() == [8237, 19518, 20936, 11588, 869]
    assert np.bincount(labels[drawn], minlength=10).tolist() == [50] * 10
    digest = hashlib.sha256(np.sort(drawn).astype(np.int64).tobytes()).hexdigest()
    assert digest == "1f2654e1b51b2a4fecd02ab231e46ae953a5e0c984d2a4c67cb3fa4bf987d277"
    subset = subsets.draw_subset(labels, {"draw": "study", "per_class": 50, "val_per_class": 50, "seed": 0})
    assert np.array_equal(subset.train_indices, np.sort(drawn))
