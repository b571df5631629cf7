"""dvc.yaml's data and subset paths, resolved by DVC itself, are the paths the commands write.

For params.yaml and each data set's configuration layered on it, dvc.yaml is resolved by DVC's own
templating (``${data.name}``, ``${subset.*}``) against those parameters folded into params.yaml (DVC
reads params.yaml only), and compared with what ``mixstudy data`` and ``mixstudy subset`` write from
a few images made here. A path DVC would track that no command writes (CIFAR-10's literals on
another data set) fails. ``subset.draw: all`` is Snakemake only (dvc.yaml's header says why), so no
configuration here uses it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from mixstudy.data import datasets as data
from mixstudy.data import subsets
from mixstudy.cli import main
from mixstudy.core.config import deep_merge, load_params, read_yaml

dvc_repo = pytest.importorskip("dvc.repo")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "params.yaml": [],
    "smoke": ["config/smoke.yaml"],
    "first": ["config/first.yaml"],
    "cifar100": ["config/cifar100.yaml"],
    "svhn": ["config/svhn.yaml"],
    "svhn-extra": ["config/svhn.yaml", "config/svhn-extra.yaml"],
}
DATA_STAGES = ("data", "subset")  # the stages whose outputs the commands below write
TRAINING_IMAGES_PER_CLASS = {10: 100, 100: 10}  # enough for every configuration's subset and validation


@pytest.fixture(autouse=True)
def dvc_site_cache_in_the_tests_folder(tmp_path, monkeypatch):
    """DVC keeps a small cache per repository, by default in /var/tmp/dvc: here in the test's folder."""
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))


def resolved_stages(folder: Path, params: dict, dvc_yaml: str) -> dict[str, dict[str, list[str]]]:
    """Each stage's dependency and output paths as DVC resolves ``dvc_yaml`` with ``params`` as params.yaml."""
    folder.mkdir(parents=True)
    (folder / "dvc.yaml").write_text(dvc_yaml)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_repo.Repo.init(str(folder), no_scm=True)
    with dvc_repo.Repo(str(folder)) as repo:
        return {stage.name: {"deps": [dep.def_path for dep in stage.deps], "outs": [out.def_path for out in stage.outs]}
                for stage in repo.index.stages}


def folded_params(files: list[str]) -> dict:
    """params.yaml with the configuration files folded in, as DVC must be given them."""
    params = read_yaml(ROOT / "params.yaml")
    for name in files:
        params = deep_merge(params, read_yaml(ROOT / name))
    return params


def small_npz(path: Path, spec: data.DataSet) -> Path:
    """A few images of data set ``spec`` in the normalised form (every class, one test image each)."""
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(spec.num_classes), TRAINING_IMAGES_PER_CLASS[spec.num_classes]).astype(np.uint8)
    y_test = np.arange(spec.num_classes).astype(np.uint8)
    np.savez(path, x_train=rng.integers(0, 256, (len(y_train), 32, 32, 3), dtype=np.uint8), y_train=y_train,
             x_test=rng.integers(0, 256, (len(y_test), 32, 32, 3), dtype=np.uint8), y_test=y_test)
    return path


def accept_small_data(monkeypatch, name: str) -> data.DataSet:
    """Data set ``name``'s expected sizes shrunk to those of :func:`small_npz`."""
    spec = data.DATASETS[name]
    per_class = TRAINING_IMAGES_PER_CLASS[spec.num_classes]
    small = dataclasses.replace(
        spec, train_size=per_class * spec.num_classes, test_size=spec.num_classes,
        train_per_class=per_class if spec.train_per_class else None, test_per_class=1 if spec.test_per_class else None,
    )
    monkeypatch.setitem(data.DATASETS, name, small)
    return small


def written_by_the_commands(folder: Path, files: list[str], monkeypatch) -> set[str]:
    """Run ``mixstudy data`` and ``mixstudy subset`` with these configuration files in ``folder``
    (from a small .npz); every file they wrote, relative to it."""
    name = load_params([ROOT / "params.yaml", *(ROOT / f for f in files)])["data"]["name"]
    source = small_npz(folder.parent / f"{name}-source.npz", accept_small_data(monkeypatch, name))
    folder.mkdir()
    monkeypatch.chdir(folder)
    arguments = [argument for f in ["params.yaml", *files] for argument in ("--params", str(ROOT / f))]
    arguments += ["--set", "data.source=npz", "--set", f"data.npz_path={source}", "--set", "data.npz_sha256=null"]
    assert main(["data", *arguments]) == 0
    assert main(["subset", *arguments]) == 0
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def path_problems(stages: dict, written: set[str]) -> list[str]:
    """Where DVC's paths are not the commands': outputs of the data stages, and every data/ path any
    stage depends on (the prepared file and the subset for the later stages)."""
    problems = []
    tracked = {path for stage in DATA_STAGES for path in stages[stage]["outs"]}
    if tracked != written:
        problems.append(f"the data and subset stages track {sorted(tracked)}, the commands write {sorted(written)}")
    for name, stage in stages.items():
        for path in stage["deps"] + stage["outs"]:
            if path.startswith("data/") and path not in written:
                problems.append(f"stage {name} names {path}, which no command writes")
    return problems


@pytest.mark.parametrize("files", CONFIGS.values(), ids=CONFIGS.keys())
def test_dvc_paths_are_the_paths_the_commands_write(tmp_path, monkeypatch, files):
    stages = resolved_stages(tmp_path / "dvc", folded_params(files), (ROOT / "dvc.yaml").read_text())
    written = written_by_the_commands(tmp_path / "work", files, monkeypatch)
    assert path_problems(stages, written) == []
    params = load_params([ROOT / "params.yaml", *(ROOT / f for f in files)])  # the project's own path functions
    prepared = params["data"]["out"]
    subset = str(subsets.subset_file(params["subset"], params["data"]["name"]))
    assert written == {prepared, str(data.manifest_path_for(Path(prepared))), subset}
    assert prepared in stages["subset"]["deps"] and prepared in stages["figures"]["deps"]
    assert subset in stages["runs"]["deps"] and subset in stages["figures"]["deps"]


def test_cifar10_literals_are_caught_on_another_data_set(tmp_path, monkeypatch):
    """The check fails on a dvc.yaml whose data paths are CIFAR-10's whatever data.name says."""
    files = CONFIGS["cifar100"]
    cifar10_only = (ROOT / "dvc.yaml").read_text().replace("${data.name}", "cifar10")
    stages = resolved_stages(tmp_path / "dvc", folded_params(files), cifar10_only)
    problems = path_problems(stages, written_by_the_commands(tmp_path / "work", files, monkeypatch))
    assert any("stage subset names data/cifar10/cifar10.npz" in problem for problem in problems), problems
    assert any("data/subsets/cifar10_seeded_n5_val5_seed0.json" in problem for problem in problems), problems
