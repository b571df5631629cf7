"""Outputs are written atomically, and no two runs of the grids share a folder."""

from __future__ import annotations

import pytest

from mixstudy.runs import study
from mixstudy.core.config import load_params
from mixstudy.core.fileio import atomic_path, write_json


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_whole_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"status": "ok", "acc": 0.5})
    write_json(target, {"status": "ok"})
    assert target.read_text() == '{\n  "status": "ok"\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize(
    "override",
    [[], ["sweep.alphas=[0.5,1.0,1.5]", "sweep.cutmix_alphas=[0.5,1.0]"], ["sweep.alphas=[0.1234567,0.1234568]"]],
)
def test_every_run_has_its_own_folder(override):
    params = load_params(["params.yaml"], override)
    folders = [spec.folder() for spec in study.all_runs(params)]
    assert len(folders) == len(set(folders))
