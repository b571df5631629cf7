"""A setting changed again and again under Snakemake: after each change every run holds the training
asked, every evaluation.json was computed from its run's model.pt, the tables count every run
finished, and the same command run once more plans nothing.

On a grid of five tiny runs (one tuning run; the baseline and input mixup at two seeds): lr, lr
again, back to the first lr (a rebuild request of an earlier change must not count as made), an
alpha added, a seed removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mixstudy.runs import run_folder, study
from mixstudy.core.config import load_params
from mixstudy.core.fileio import sha256_file
from pipeline_helpers import copy_project, run, training_jobs

pytestmark = pytest.mark.slow

# Layered on config/smoke.yaml: fewer runs, fewer test and validation images, fewer Jacobian images.
TINY = {
    "subset": {"val_per_class": 10},
    "evaluation": {"test_limit": 200},
    "theory": {"jacobian_images": 10},
    "tuning": {"grid": {"scheduler": ["warm_restarts"]}},
    "sweep": {"layer_sets": [[0]], "alphas": [1.0], "seeds": [0, 1], "cutmix_alphas": [], "label_smoothing": [],
              "cutout_sizes": []},
}
CONFIG_FILES = ("config/smoke.yaml", "config/test-data.yaml", "config/tiny.yaml", "config/change.yaml")


def snakemake(project: Path, *extra: str) -> str:
    return run(["snakemake", *extra, "--cores", "2", "--resources", "gpu=2", "--configfile", *CONFIG_FILES],
               project).stdout


def change(project: Path, settings: dict) -> dict:
    """Write the change and return the parameters it asks for (as the workflow merges them)."""
    (project / "config/change.yaml").write_text(yaml.safe_dump(settings))
    return load_params([project / "params.yaml", *(project / name for name in CONFIG_FILES)])


def run_bytes(project: Path) -> dict[str, bytes]:
    return {str(path.relative_to(project / "results/runs")): path.read_bytes()
            for path in (project / "results/runs").glob("*/*/seed*/metrics.json")}


def check_every_run_is_what_is_asked(project: Path, params: dict) -> None:
    subset = json.loads(next((project / "data/subsets").glob("*.json")).read_text())["train_sha256"]
    selection = study.read_selection(project / "results/tuning/selection.yaml")
    specs = study.all_runs(params)
    for spec in specs:
        folder = spec.folder(project / study.RUNS_ROOT)
        expected = study.training_hash(study.spec_config(params, spec, selection), subset)
        assert run_folder.unfinished_reason(folder, expected) is None, f"{spec.run_id}: {run_folder.unfinished_reason(folder, expected)}"
        record = run_folder.read_run_record(folder)
        lr = params["tuning"]["lr"] if spec.stage == "tuning" else params["train"]["lr"]
        assert record["status"] == "ok" and record["config"]["train"]["lr"] == lr, spec.run_id
        if spec.stage == "sweep":
            evaluation = json.loads((folder / run_folder.EVALUATION_FILE).read_text())
            assert evaluation["provenance"]["model_sha256"] == sha256_file(folder / "model.pt") == record["files"]["model.pt"], \
                f"{spec.run_id}: evaluation.json measured another model"
    summary = json.loads((project / "metrics/summary.json").read_text())
    assert (summary["runs.expected"], summary["runs.finished"], summary["runs.mismatched"]) == (len(specs), len(specs), 0)
    assert "## Mixup's theory, measured" in (project / "results/report.md").read_text()  # every evaluation read


def test_changing_settings_again_and_again_trains_what_is_asked_and_then_plans_nothing(tmp_path):
    project = copy_project(tmp_path)
    (project / "config/tiny.yaml").write_text(yaml.safe_dump(TINY))
    steps = [
        ("first", {}, None),
        ("lr", {"train": {"lr": 0.05}}, {"baseline": 2, "manifold": 2}),
        ("lr again", {"train": {"lr": 0.02}}, {"baseline": 2, "manifold": 2}),
        ("lr back", {"train": {"lr": 0.05}}, {"baseline": 2, "manifold": 2}),
        ("an alpha added", {"train": {"lr": 0.05}, "sweep": {"alphas": [1.0, 2.0]}}, {"manifold": 2}),
        ("a seed removed", {"train": {"lr": 0.05}, "sweep": {"alphas": [1.0, 2.0], "seeds": [0]}}, {}),
    ]
    for name, settings, planned in steps:
        params = change(project, settings)
        if planned is not None:
            assert training_jobs(snakemake(project, "-n")) == planned, name
        before = run_bytes(project)
        snakemake(project)
        check_every_run_is_what_is_asked(project, params)
        if name in ("an alpha added", "a seed removed"):  # the runs asked before are kept as they were
            after = run_bytes(project)
            assert {key: after[key] for key in before if key in after} == {key: before[key] for key in before if key in after}, name
        dry = snakemake(project, "-n")
        assert "Nothing to be done" in dry, f"after {name}, the same command plans again:\n{dry[-3000:]}"
