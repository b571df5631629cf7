"""A training process killed with SIGKILL resumes from its last checkpoint, bit for bit."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline_helpers import env, require_shared_data

pytestmark = pytest.mark.slow

TINY = [
    "--set", "subset.per_class=5", "--set", "model.name=convnet", "--set", "model.convnet.widths=[4,8,8]", "--set", "train.epochs=12",
    "--set", "train.checkpoint_every=1", "--set", "mixing.method=manifold", "--set", "mixing.alpha=1.0",
    "--set", "mixing.layers=[0,1,2]",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    repo = Path(__file__).resolve().parents[1]
    base = ["mixstudy", "--params", str(repo / "params.yaml"), "--set", f"data.npz_path={require_shared_data()}"]
    for command in ("data", "subset"):
        subprocess.run([base[0], command, *base[1:], *TINY], cwd=root, env=env(), check=True, capture_output=True)
    return root


def _train_command(repo_params: Path, out: str) -> list[str]:
    return ["mixstudy", "train", "--params", str(repo_params), *TINY, "--out", out, "--progress", "lines"]


def _result(run_dir: Path) -> tuple[dict, list[list[str]]]:
    record = json.loads((run_dir / "metrics.json").read_text())
    history = [line.split("\t")[:4] for line in (run_dir / "history.tsv").read_text().splitlines()]
    return record["metrics"], history  # elapsed seconds differ, the numbers must not


def test_sigkilled_run_resumes_to_identical_metrics(workdir):
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    subprocess.run(_train_command(params, "straight"), cwd=workdir, env=env(), check=True, capture_output=True)

    process = subprocess.Popen(_train_command(params, "killed"), cwd=workdir, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    resume_point = workdir / "killed" / "resume.pt"
    deadline = time.monotonic() + 300
    log_lines = []
    while time.monotonic() < deadline:  # kill it once it has passed a few checkpoints
        line = process.stderr.readline()
        log_lines.append(line)
        if " epoch 5 " in line:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert resume_point.is_file(), "".join(log_lines)
    assert not (workdir / "killed" / "metrics.json").exists()

    resumed = subprocess.run(_train_command(params, "killed"), cwd=workdir, env=env(), check=True, capture_output=True, text=True)
    assert "resuming" in resumed.stderr
    assert not resume_point.exists()
    assert _result(workdir / "killed") == _result(workdir / "straight")
