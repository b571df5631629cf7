"""A setting changed twice with `dvc exp run -S`: each experiment trains what it asks (the runs, their
evaluation.json and the tables), DVC and Snakemake then find nothing to do, and the headline metrics
of the two experiments differ.

The grid of test_changes.py (five tiny runs), folded into params.yaml (DVC reads no other file).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mixstudy.core.config import deep_merge, load_params, read_yaml
from pipeline_helpers import copy_project, env, run
from test_changes import TINY, check_every_run_is_what_is_asked

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]


def _params(project: Path) -> dict:
    return load_params([project / "params.yaml"])


def _check_nothing_left_to_do(project: Path) -> None:
    status = run(["dvc", "status"], project).stdout
    assert "up to date" in status, status
    planned = run(["snakemake", "-n", "train_all", "--cores", "1"], project).stdout
    assert "Nothing to be done" in planned, planned[-3000:]


def test_changing_the_learning_rate_twice_with_dvc_experiments(tmp_path):
    project = copy_project(tmp_path)
    params = read_yaml(project / "params.yaml")
    for override in (read_yaml(project / "config/smoke.yaml"), read_yaml(project / "config/test-data.yaml"), TINY):
        params = deep_merge(params, override)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-qm", "tiny"], project)
    run(["dvc", "repro"], project)
    check_every_run_is_what_is_asked(project, _params(project))
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-qm", "first results"], project)

    headlines = []
    for lr in (0.05, 0.02):
        run(["dvc", "exp", "run", "-S", f"train.lr={lr}"], project)
        params = _params(project)
        assert params["train"]["lr"] == lr
        check_every_run_is_what_is_asked(project, params)
        _check_nothing_left_to_do(project)
        headlines.append(json.loads((project / "metrics/headline.json").read_text()))
    assert headlines[0]["baseline"] != headlines[1]["baseline"], "the second experiment shows the first one's metrics"
    assert all(h["runs"] == {"finished": 5, "stale": 0, "expected": 5} for h in headlines)

    # At 200 columns the params and metrics that differ fit, each column whole (no "…"); the
    # dependencies' hashes (columns named by paths) are dropped, as the README shows.
    shown = subprocess.run(["dvc", "exp", "show", "--no-pager", "--only-changed", "--drop", ".*/.*"], cwd=project, capture_output=True,
                           text=True, check=True, env={**env(), "COLUMNS": "200"}).stdout
    assert "baseline.acc" in shown and "train.lr" in shown and "…" not in shown, shown
    assert max(map(len, shown.splitlines())) <= 200, shown
    assert "metrics/headline.json" in run(["dvc", "metrics", "diff", "HEAD"], project).stdout
    detail = run(["dvc", "metrics", "diff", "HEAD", "--targets", "metrics/summary.json"], project).stdout
    assert "baseline.acc_mean" in detail, detail
