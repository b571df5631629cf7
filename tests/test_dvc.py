"""DVC on a fresh git repository: repro, a no-op second repro, a parameter change, metrics diff, push/pull."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from mixstudy.core.config import deep_merge, read_yaml
from pipeline_helpers import copy_project, run, training_jobs

pytestmark = pytest.mark.slow


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("dvc"))
    # DVC reads params.yaml only: fold the smoke and data overrides into it.
    params = read_yaml(project / "params.yaml")
    for override in ("config/smoke.yaml", "config/test-data.yaml"):
        params = deep_merge(params, read_yaml(project / override))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "smoke"], project)
    run(["dvc", "repro"], project)
    return project


def _commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", message], project)


def test_second_repro_does_nothing(dvc_project):
    result = run(["dvc", "repro"], dvc_project)
    assert "Running stage" not in result.stdout, result.stdout
    status = run(["dvc", "status"], dvc_project)
    assert "up to date" in status.stdout, status.stdout


def test_new_alpha_trains_only_new_runs_and_shows_in_metrics_diff(dvc_project):
    _commit(dvc_project, "first results")
    runs = dvc_project / "results" / "runs"
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/seed*/metrics.json")}

    params = read_yaml(dvc_project / "params.yaml")
    params["sweep"]["alphas"] = [1.0, 2.0]
    (dvc_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], dvc_project)

    after = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/seed*/metrics.json")}
    assert {p: after[p] for p in before} == before, "finished runs were trained again"
    new = sorted(str(p.relative_to(runs)) for p in set(after) - set(before))
    assert new == sorted(f"sweep/manifold_S{s}_alpha2/seed{k}/metrics.json" for s in ("0", "0-2") for k in (0, 1))

    diff = run(["dvc", "metrics", "diff", "HEAD", "--targets", "metrics/summary.json"], dvc_project).stdout
    assert "alpha=2" in diff, diff  # the detail of every configuration, asked for by name
    default = run(["dvc", "metrics", "diff", "HEAD", "--all"], dvc_project).stdout
    assert "metrics/headline.json" in default and "summary.json" not in default, default  # the headline only


def test_push_and_pull_restore_outputs_bit_identical(dvc_project, tmp_path):
    _commit(dvc_project, "second results")
    tracked = ["data/subsets", "results/runs", "results/tables"]
    before = {name: _tree_digest(dvc_project / name) for name in tracked}
    run(["dvc", "remote", "add", "-f", "-d", "local", str(tmp_path / "remote")], dvc_project)
    run(["dvc", "push"], dvc_project)
    shutil.rmtree(dvc_project / ".dvc" / "cache")
    for name in tracked:
        shutil.rmtree(dvc_project / name)
    run(["dvc", "pull"], dvc_project)
    assert {name: _tree_digest(dvc_project / name) for name in tracked} == before
    assert "up to date" in run(["dvc", "status"], dvc_project).stdout


def _run_bytes(runs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(runs)): p.read_bytes() for p in sorted(runs.glob("*/*/seed*/*")) if p.is_file()}


def test_fresh_clone_and_pull_trains_nothing_and_a_new_alpha_trains_only_its_runs(dvc_project, tmp_path):
    """A clone plus `dvc pull` gets new modification times in pull order, and no Snakemake metadata:
    the same command plans no training, and an experiment adding one alpha trains only its runs."""
    _commit(dvc_project, "results to clone")
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-f", "-d", "local", str(remote)], dvc_project)
    run(["dvc", "push"], dvc_project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(dvc_project), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "-f", "-d", "local", str(remote)], clone)
    run(["dvc", "pull"], clone)
    runs = clone / "results" / "runs"
    pulled = _run_bytes(runs)
    assert pulled == _run_bytes(dvc_project / "results" / "runs")

    planned = run(["snakemake", "-n", "train_all", "--cores", "all", "--resources", "gpu=1"], clone).stdout
    assert not training_jobs(planned), planned

    alphas = read_yaml(clone / "params.yaml")["sweep"]["alphas"]
    run(["dvc", "exp", "run", "-S", f"sweep.alphas={[*alphas, 4.0]}"], clone)
    after = _run_bytes(runs)
    assert {name: after[name] for name in pulled} == pulled, "finished runs were trained again"
    new = {name.rsplit("/", 1)[0] for name in set(after) - set(pulled)}
    assert new == {f"sweep/manifold_S{s}_alpha4/seed{k}" for s in ("0", "0-2") for k in (0, 1)}


def test_queued_experiment_does_not_return_stale_results(dvc_project):
    """A queued experiment with a changed hyper-parameter retrains: its metrics differ from HEAD's."""
    import json

    _commit(dvc_project, "before the experiment")
    head = json.loads((dvc_project / "metrics" / "summary.json").read_text())
    run(["dvc", "exp", "run", "--queue", "-S", "model.cnn13.dropout=0.05", "--name", "lowdrop"], dvc_project)
    run(["dvc", "exp", "run", "--run-all", "--jobs", "1"], dvc_project, timeout=1500)
    status = run(["dvc", "queue", "status"], dvc_project).stdout
    # `--run-all` exits 0 when an experiment fails, and `exp show` then lists it with HEAD's metrics.
    assert "Failed" not in status, status + run(["dvc", "queue", "logs", "lowdrop"], dvc_project, check=False).stdout[-4000:]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], dvc_project).stdout)
    experiment = next(
        exp["data"]
        for row in shown
        for branch in (row.get("experiments") or [])
        for exp in branch.get("revs", [])
        if exp.get("name") == "lowdrop"
    )
    headline = experiment["metrics"]["metrics/headline.json"]["data"]
    assert headline["runs"]["finished"] == head["runs.finished"] and headline["runs"]["stale"] == 0
    assert headline["baseline"]["acc"] != round(head["baseline.acc_mean"], 2) or headline["baseline"]["nll"] != round(head["baseline.nll_mean"], 4)
