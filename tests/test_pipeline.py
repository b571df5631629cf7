"""The whole chain under Snakemake on the smoke configuration, and what reruns after a change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import copy_project, jobs_by_rule, run, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("smoke"))
    snakemake(project)
    return project


def test_default_params_dry_run_lists_the_study_grid(tmp_path):
    project = copy_project(tmp_path)
    counts = jobs_by_rule(run(["snakemake", "-n", "--cores", "all"], project).stdout)
    assert counts["train_tuning"] == 60
    assert counts["train_manifold"] == 245
    assert counts["train_baseline"] == 5


def test_lint_is_clean(tmp_path):
    project = copy_project(tmp_path)
    result = run(["snakemake", "--lint"], project, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_smoke_chain_produces_every_output(smoke_project):
    for name in ("results/report.md", "results/report.html", "metrics/summary.json", "results/tables/runs.csv"):
        assert (smoke_project / name).is_file(), name
    assert list((smoke_project / "results/figures").glob("*.png"))
    runs = sorted((smoke_project / "results/runs").glob("*/*/seed*/metrics.json"))
    assert len(runs) == 2 + 2 + 4 + 2  # tuning, baseline, manifold, cutmix
    for metrics in runs:
        record = json.loads(metrics.read_text())
        assert record["status"] == "ok"
        assert (metrics.parent / "benchmark.tsv").is_file()
    assert "Nothing to be done" in snakemake(smoke_project, "-n").stdout


def test_selection_feeds_the_sweep(smoke_project):
    selection = yaml.safe_load((smoke_project / "results/tuning/selection.yaml").read_text())
    baseline = json.loads((smoke_project / "results/runs/sweep/baseline/seed0/metrics.json").read_text())
    assert baseline["config"]["train"]["scheduler"]["name"] == selection["scheduler"]
    assert baseline["config"]["train"]["momentum"] == selection["momentum"]


def _override(project: Path, text: str) -> None:
    (project / "config" / "change.yaml").write_text(text)


def _dry_run_with_change(project: Path) -> dict[str, int]:
    result = run(
        ["snakemake", "-n", "--cores", "all", "--configfile", "config/smoke.yaml", "config/test-data.yaml", "config/change.yaml"],
        project,
    )
    return jobs_by_rule(result.stdout)


def test_adding_an_alpha_trains_only_the_new_runs(smoke_project):
    _override(smoke_project, "sweep:\n  alphas: [1.0, 2.0]\n")
    counts = _dry_run_with_change(smoke_project)
    assert counts.get("train_manifold") == 2 * 2  # two layer sets x two seeds, alpha 2 only
    assert "train_baseline" not in counts and "train_tuning" not in counts


def test_changed_hyper_parameter_never_reuses_a_result(smoke_project):
    _override(smoke_project, "model:\n  dropout: 0.1\n")
    counts = _dry_run_with_change(smoke_project)
    assert counts.get("train_tuning") == 2
    assert counts.get("train_manifold") == 4
    assert counts.get("train_baseline") == 2
