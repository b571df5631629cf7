"""Training does not change by one bit across a restructuring of the code.

The same short runs are trained by the code of a reference commit (taken from git, run in a
subprocess of its own) and by the code of this checkout, on this machine, and their files compared
byte for byte: every CPU computes the same bytes twice with the same kernels, so the comparison is
exact on any machine, while no stored number is tied to the digits of one CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import io
from pathlib import Path

import pytest

from conftest import REAL_NPZ

ROOT = Path(__file__).resolve().parents[1]
# The last commit before the one-home restructuring (issue 24), with the study network (issue 23);
# the last before the layers became sub-packages (issue 35).
REFERENCES = {"before-issue-24": "3ad056adde1509c7845093a9a06de5ce5174d6af",
              "before-issue-35": "678aca2f22c87b86bd73acfd1109e2058ab595d4"}
# Short runs over every path a finished run's files depend on: the study network and the convnet,
# input and manifold mixup at several points, CutMix, validation, temperature scaling, best-by-
# validation, FGSM, the every-N test pass, resume points, and a pack of two.
SETTINGS = [
    "--set", "subset.per_class=3", "--set", "subset.val_per_class=2",
    "--set", "train.epochs=3", "--set", "train.batch_size=8", "--set", "train.checkpoint_every=1",
    "--set", "evaluation.every=2", "--set", "evaluation.val_every=1", "--set", "evaluation.test_limit=60",
    "--set", "evaluation.fgsm_epsilons=[0.0078]", "--set", "compute.device=cpu", "--set", "compute.threads=1",
    "--set", "model.cnn13.widths=[4,8,8,8,4]", "--set", "model.convnet.widths=[4,8,8]",
]
RUNS = {
    "cnn13_manifold": ["--set", "mixing.method=manifold", "--set", "mixing.alpha=2.0", "--set", "mixing.layers=[0,1,2]"],
    "convnet_cutmix": ["--set", "model.name=convnet", "--set", "mixing.method=cutmix", "--set", "mixing.alpha=1.0"],
}
# When and where a run ran, not what it computed; and the digest of the record, which covers them
# (records of the first reference commit have none).
VARYING = ("wall_time_s", "provenance", "code_revision", "record_sha256")


def _source_tree(commit: str, into: Path) -> Path:
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as err:
        pytest.fail(f"git cannot give commit {commit} ({err.stderr.decode().strip()}); clone with the full history")
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(into)
    return into / "src"


def _mixstudy(src: Path, cwd: Path, *args: str) -> None:
    # mixstudy from `src` alone: the checkout's editable install puts its own src on sys.path too,
    # and its regular package would win over an older commit's namespace package (no __init__.py)
    code = (
        "import os, sys; src = os.environ['PYTHONPATH']; "
        "sys.path = [src] + [p for p in sys.path if not os.path.isdir(os.path.join(p or '.', 'mixstudy'))]; "
        "import mixstudy; assert list(mixstudy.__path__) == [os.path.join(src, 'mixstudy')], mixstudy.__path__; "
        "from mixstudy.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def _params_file(commit: str, into: Path) -> Path:
    """A commit's own params.yaml: a newer one has settings older code does not know (data.name)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:params.yaml"], check=True, capture_output=True).stdout
    into.write_bytes(text)
    return into


def _train_all(src: Path, work: Path, data_npz: Path, params: Path) -> Path:
    work.mkdir()
    common = ["--params", str(params), "--set", f"data.out={data_npz}", *SETTINGS]
    _mixstudy(src, work, "subset", *common, "--out", "subset.json")
    for name, extra in RUNS.items():
        _mixstudy(src, work, "train", *common, *extra, "--subset", "subset.json", "--out", f"runs/{name}", "--seed", "3", "--progress", "lines")
    return work / "runs"


def _comparable(record: dict) -> dict:
    """metrics.json less when and where it ran (history.tsv's sha256 covers its elapsed_s column:
    history.tsv is compared without it instead)."""
    files = {**record["files"], "history.tsv": None}
    return {**{key: value for key, value in record.items() if key not in VARYING}, "files": files}


def _history_without_times(path: Path) -> list[list[str]]:
    """history.tsv's cells as written, less its elapsed_s column (seconds since the run began)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name != "elapsed_s"]
    return [[row[i] for i in keep] for row in rows]


@pytest.fixture
def real_prepared_npz(tmp_path) -> Path:
    """The real CIFAR-10, prepared by this checkout: its normalisation statistics are computed from
    the data (the reference commit's were constants), so only the real images show them equal."""
    from mixstudy.data.datasets import prepare_data

    assert REAL_NPZ.is_file(), f"the offline CIFAR-10 copy is expected at {REAL_NPZ}"
    out = tmp_path / "prepared" / "cifar10.npz"
    prepare_data({"name": "cifar10", "source": "npz", "npz_path": str(REAL_NPZ), "npz_sha256": None,
                  "official_dir": str(tmp_path / "raw"), "out": str(out)})
    return out


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("reference", sorted(REFERENCES))
def test_training_is_bit_identical_to_the_reference_commit(tmp_path, real_prepared_npz, reference):
    commit = REFERENCES[reference]
    reference_params = _params_file(commit, tmp_path / "reference-params.yaml")
    before = _train_all(_source_tree(commit, tmp_path / "reference"), tmp_path / "before", real_prepared_npz, reference_params)
    after = _train_all(ROOT / "src", tmp_path / "after", real_prepared_npz, ROOT / "params.yaml")
    for name in RUNS:
        assert (before / name / "model.pt").read_bytes() == (after / name / "model.pt").read_bytes(), name
        assert _history_without_times(before / name / "history.tsv") == _history_without_times(after / name / "history.tsv")
        old = json.loads((before / name / "metrics.json").read_text())
        new = json.loads((after / name / "metrics.json").read_text())
        assert old["status"] == new["status"] == "ok"
        assert _comparable(new) == _comparable(old), name
        assert set(old) - set(_comparable(old)) <= {"wall_time_s", "provenance", "record_sha256"}  # nothing else left out
