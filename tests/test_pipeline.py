"""The whole chain under Snakemake on the smoke configuration, and what reruns after a change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import copy_project, env, jobs_by_rule, run, snakemake, training_jobs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("smoke"))
    snakemake(project)
    return project


def test_default_params_dry_run_lists_the_study_grid(tmp_path):
    project = copy_project(tmp_path)
    counts = training_jobs(run(["snakemake", "-n", "--cores", "all"], project).stdout)
    assert counts["tuning"] == 60
    assert counts["manifold"] == 245
    assert counts["baseline"] == 5


@pytest.mark.parametrize("pack_size", [1, 4])
def test_lint_is_clean(tmp_path, pack_size):
    project = copy_project(tmp_path)
    (project / "config/pack.yaml").write_text(f"compute:\n  pack_size: {pack_size}\n")
    result = run(["snakemake", "--lint", "--configfile", "config/pack.yaml"], project, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_smoke_chain_produces_every_output(smoke_project):
    for name in ("results/report.md", "results/report.html", "metrics/summary.json", "results/tables/runs.csv"):
        assert (smoke_project / name).is_file(), name
    assert list((smoke_project / "results/figures").glob("*.png"))
    runs = sorted((smoke_project / "results/runs").glob("*/*/seed*/metrics.json"))
    assert len(runs) == 2 + 2 + 4 + 2 + 2 + 2  # tuning, baseline, manifold, cutmix, label smoothing, Cutout
    for metrics in runs:
        record = json.loads(metrics.read_text())
        assert record["status"] == "ok"
        run_id = metrics.parent.relative_to(smoke_project / "results/runs")
        assert (smoke_project / "results/benchmarks" / f"{run_id}.tsv").is_file()
        files = {"metrics.json", "history.tsv", "model.pt", "train.log"}
        if run_id.parts[0] == "sweep":  # each sweep run's model.pt measured after training
            files.add("evaluation.json")
            evaluation = json.loads((metrics.parent / "evaluation.json").read_text())
            assert evaluation["provenance"]["model_sha256"] == record["files"]["model.pt"]
            assert ("shrinkage" in evaluation) == (record["config"]["mixing"]["method"] != "none")
        assert {p.name for p in metrics.parent.iterdir()} == files
    assert "Nothing to be done" in snakemake(smoke_project, "-n").stdout
    assert (smoke_project / "results/tables/table7_smoothness.csv").is_file()
    assert "## Mixup's theory, measured" in (smoke_project / "results/report.md").read_text()


def _run_folders(project: Path) -> dict[str, set[str]]:
    """Each run folder and its files."""
    runs = project / "results/runs"
    return {
        str(m.parent.relative_to(runs)): {p.name for p in m.parent.iterdir()}
        for m in runs.glob("*/*/seed*/metrics.json")
    }


# The size of each configuration's pack on the smoke grid with pack_size 4 (`mixstudy runs --packs`).
PACK_SIZES = {"step_mom0.9_wd0.001": 1, "warm_restarts_mom0.9_wd0.001": 1, "baseline": 4, "manifold_S0_alpha1": 4,
              "manifold_S0-2_alpha1": 4, "cutmix_alpha1": 4, "label_smoothing_eps0.1": 2, "cutout_16": 2}


def test_packed_sweep_writes_the_same_run_folders(smoke_project, tmp_path):
    project = copy_project(tmp_path)
    (project / "config/pack4.yaml").write_text("compute:\n  pack_size: 4\n")
    planned = training_jobs(snakemake(project, "-n", configfiles=("config/pack4.yaml",)).stdout)
    # 2 tuning configurations of one seed each; 12 sweep runs: 10 of one training setting in packs of
    # 4, 4 and 2, and the 2 Cutout runs (other augmentation) in a pack of their own.
    assert planned == {
        "train_pack_tuning_001": 1, "train_pack_tuning_002": 1,
        "train_pack_sweep_001": 1, "train_pack_sweep_002": 1, "train_pack_sweep_003": 1, "train_pack_sweep_004": 1,
    }

    snakemake(project, configfiles=("config/pack4.yaml",))
    assert _run_folders(project) == _run_folders(smoke_project)
    for run_id in _run_folders(project):
        packed = json.loads((project / "results/runs" / run_id / "metrics.json").read_text())
        solo = json.loads((smoke_project / "results/runs" / run_id / "metrics.json").read_text())
        assert packed["status"] == "ok" and packed["config"] == solo["config"]
        assert packed.get("pack", {"size": 1})["size"] == PACK_SIZES[run_id.split("/")[1]]
    assert (project / "results/packs/sweep/pack001/benchmark.tsv").is_file()
    assert "training a pack of 4 runs" in (project / "results/runs/sweep/baseline/seed0/train.log").read_text()
    assert (project / "results/report.md").is_file()


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
    return training_jobs(result.stdout)


def test_adding_an_alpha_trains_only_the_new_runs(smoke_project):
    _override(smoke_project, "sweep:\n  alphas: [1.0, 2.0]\n")
    counts = _dry_run_with_change(smoke_project)
    assert counts == {"manifold": 2 * 2}  # two layer sets x two seeds, alpha 2 only


def test_changed_hyper_parameter_never_reuses_a_result(smoke_project):
    _override(smoke_project, "model:\n  cnn13:\n    dropout: 0.1\n")
    counts = _dry_run_with_change(smoke_project)
    assert counts.get("tuning") == 2
    assert counts.get("manifold") == 4
    assert counts.get("baseline") == 2


@pytest.mark.parametrize("target", ["all", "train_all"])
def test_changed_hyper_parameter_retrains_without_snakemake_metadata(smoke_project, tmp_path, target):
    """A workspace without Snakemake's metadata and with outputs newer than their inputs (a DVC
    experiment's temporary workspace, a fresh clone): runs of another configuration are retrained,
    not kept because nothing else asks for their rebuild requests."""
    import shutil

    workspace = tmp_path / "workspace"
    shutil.copytree(smoke_project, workspace, ignore=shutil.ignore_patterns(".snakemake"))  # mtimes kept
    _override(workspace, "model:\n  cnn13:\n    dropout: 0.1\n")
    result = run(["snakemake", "-n", target, "--cores", "all", "--configfile", "config/smoke.yaml",
                  "config/test-data.yaml", "config/change.yaml"], workspace)
    assert training_jobs(result.stdout) == {"tuning": 2, "baseline": 2, "manifold": 4, "cutmix": 2,
                                            "regulariser": 4}, result.stdout[-3000:]


def test_interrupted_snakemake_reruns_only_the_interrupted_job(tmp_path):
    """Kill the whole workflow mid-job (as a node failure would); the README's command finishes the rest."""
    project = copy_project(tmp_path)
    _override(project, "tuning:\n  epochs: 300\ntrain:\n  checkpoint_every: 5\n")
    command = ["snakemake", "results/tuning/selection.yaml", "--cores", "1", "--resources", "gpu=1", "--rerun-incomplete",
               "--configfile", "config/smoke.yaml", "config/test-data.yaml", "config/change.yaml"]
    folders = [project / "results/runs/tuning" / name / "seed0" for name in ("step_mom0.9_wd0.001", "warm_restarts_mom0.9_wd0.001")]

    def one_done_one_under_way():
        done = [f for f in folders if (f / "metrics.json").is_file()]
        running = [f for f in folders if (f / "resume.pt").is_file() and not (f / "metrics.json").exists()]
        return (done[0], running[0]) if len(done) == 1 and len(running) == 1 else None

    workflow = subprocess.Popen(command, cwd=project, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and one_done_one_under_way() is None:
        time.sleep(0.2)
    state = one_done_one_under_way()
    os.killpg(workflow.pid, signal.SIGKILL)
    workflow.wait()
    assert state is not None, "the workflow never reached the point to interrupt"
    first, second = state
    finished_at = (first / "metrics.json").stat().st_mtime_ns

    run(["snakemake", "--unlock"], project)  # a killed workflow leaves its lock: the README's first step after a crash
    result = run(command, project)
    assert (first / "metrics.json").stat().st_mtime_ns == finished_at, "a finished run was trained again"
    assert (second / "metrics.json").is_file()
    assert "resuming" in (second / "train.log").read_text()
    assert "Nothing to be done" in run([*command, "-n"], project).stdout
    assert result.returncode == 0


# --- the workflow's state is decided by content; reading the rules writes nothing ---------------


def _project_state(project: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder of the project (Snakemake's own .snakemake aside), with content and mtime."""
    return {
        str(path.relative_to(project)): (path.stat().st_mtime_ns, path.read_bytes() if path.is_file() else b"/")
        for path in sorted(project.rglob("*"))
        if ".snakemake" not in path.relative_to(project).parts
    }


def test_dry_runs_and_unlock_write_nothing(smoke_project):
    """A dry run with another configfile, or an unlock, cannot change what a running job trains:
    nothing is written while the rules are read (no shared params file, no run folders)."""
    _override(smoke_project, "train:\n  epochs: 30\nevaluation:\n  test_limit: 0\n")
    after_override = _project_state(smoke_project)
    counts = _dry_run_with_change(smoke_project)
    assert counts, counts  # the other configuration would train every run ...
    run(["snakemake", "--unlock"], smoke_project)  # params.yaml alone: 305 runs
    run(["snakemake", "-n", "--cores", "all"], smoke_project)
    assert _project_state(smoke_project) == after_override  # ... but reading it wrote nothing


def _fingerprints(project: Path, pattern: str = "*/*/seed*") -> dict[str, bytes]:
    """Each run's metrics.json, model.pt and train.log: unchanged bytes mean it was not trained again."""
    runs = project / "results/runs"
    return {
        str(path.relative_to(runs)): path.read_bytes()
        for folder in runs.glob(pattern)
        for path in (folder / "metrics.json", folder / "model.pt", folder / "train.log")
    }


def test_new_modification_times_retrain_nothing(smoke_project):
    """What a clone, a checkout or `dvc pull` does to modification times (here: every file touched
    in random order) makes no training job: reruns are decided by content."""
    import random

    files = [p for p in (smoke_project / "data").rglob("*") if p.is_file()]
    files += [p for p in (smoke_project / "results").rglob("*") if p.is_file()]
    random.Random(0).shuffle(files)
    for offset, path in enumerate(files):
        os.utime(path, ns=(time.time_ns() + offset * 1_000_000,) * 2)
    planned = snakemake(smoke_project, "-n").stdout
    assert not training_jobs(planned) and "select_baseline" not in jobs_by_rule(planned), planned[-3000:]
    assert "evaluate_run" not in jobs_by_rule(planned), planned[-3000:]  # evaluation.json: current by content too
    planned = run(["snakemake", "-n", "train_all", "--cores", "all", "--configfile", "config/smoke.yaml",
                   "config/test-data.yaml"], smoke_project).stdout
    assert not training_jobs(planned), planned[-3000:]


def test_damaged_outputs_are_rebuilt_byte_identical(smoke_project):
    """A deleted model.pt and a truncated metrics.json are found and rebuilt (and only those runs);
    the same training gives the same model.pt, byte for byte."""
    lost = smoke_project / "results/runs/sweep/cutmix_alpha1/seed1"
    damaged = smoke_project / "results/runs/sweep/manifold_S0_alpha1/seed0"
    model, metrics = (lost / "model.pt").read_bytes(), json.loads((damaged / "metrics.json").read_text())
    (lost / "model.pt").unlink()
    (damaged / "metrics.json").write_text((damaged / "metrics.json").read_text()[:50])
    counts = training_jobs(snakemake(smoke_project, "-n").stdout)
    assert counts == {"cutmix": 1, "manifold": 1}, counts
    snakemake(smoke_project)
    assert (lost / "model.pt").read_bytes() == model
    assert json.loads((damaged / "metrics.json").read_text())["metrics"] == metrics["metrics"]
    # The rebuilt runs keep their rebuild request among their inputs (the set Snakemake recorded):
    # the next invocation plans nothing.
    planned = snakemake(smoke_project, "-n").stdout
    assert "Nothing to be done" in planned, planned[-3000:]


def test_recreating_an_unchanged_selection_retrains_nothing(smoke_project):
    """A lost selection.yaml is made again; sweep runs whose configuration did not change are kept."""
    before = _fingerprints(smoke_project, "sweep/*/seed*")
    (smoke_project / "results/tuning/selection.yaml").unlink()
    snakemake(smoke_project, "train_all")
    assert (smoke_project / "results/tuning/selection.yaml").is_file()
    assert _fingerprints(smoke_project, "sweep/*/seed*") == before
    kept = (smoke_project / "logs/runs/sweep/baseline/seed0.log").read_text()
    assert "kept as it is" in kept


def test_weights_left_out_on_purpose_retrain_and_remeasure_nothing(smoke_project):
    """A finished, measured run committed without its model.pt (`mixstudy leave-out-weights`) is
    finished: the dry run plans nothing; the same file gone without that record is rebuilt."""
    snakemake(smoke_project)  # settle what earlier tests left (rebuilt jobs are scheduled once more)
    folder = smoke_project / "results/runs/sweep/manifold_S0-2_alpha1/seed0"
    weights = (folder / "model.pt").read_bytes()
    run(["mixstudy", "leave-out-weights", "--params", "config/smoke.yaml", "--params", "config/test-data.yaml",
         str(folder.relative_to(smoke_project))], smoke_project)
    (folder / "model.pt").unlink()
    try:
        assert "Nothing to be done" in snakemake(smoke_project, "-n").stdout
        (folder / "weights-left-out.json").unlink()  # now lost, not left out
        assert training_jobs(snakemake(smoke_project, "-n").stdout) == {"manifold": 1}
    finally:
        (folder / "weights-left-out.json").unlink(missing_ok=True)
        (folder / "model.pt").write_bytes(weights)
