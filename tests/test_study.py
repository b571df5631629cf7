"""Rules of the grids written once in mixstudy.runs.study: which configuration is input mixup, and
how a manifold mixup cell is named in the text."""

from __future__ import annotations

import pytest

from conftest import PARAMS_FILE
from mixstudy.core.config import load_params
from mixstudy.runs import study


@pytest.mark.parametrize(("method", "layers", "expected"), [
    ("mixup", None, True),  # input mixup's own method: its layers are not read
    ("manifold", [0], True),
    ("manifold", "0", True),  # as run names and the analysis write S
    ("manifold", [0, 2], False),
    ("manifold", "0-2", False),
    ("manifold", [1], False),
    ("cutmix", [0], False),
    ("none", None, False),
])
def test_input_mixup_is_mixup_or_manifold_mixup_at_the_image_alone(method, layers, expected):
    assert study.is_input_mixup(method, layers) is expected


def test_a_manifold_cell_is_named_as_its_run_spec_names_it():
    specs = [spec for spec in study.sweep_runs(load_params([PARAMS_FILE])) if spec.method == "manifold"]
    assert specs
    for spec in specs:
        assert spec.label == study.manifold_label(spec.layers, spec.overrides["mixing"]["alpha"])
    assert study.manifold_label("0-2", 4.0) == "S={0,2}, α=4"
