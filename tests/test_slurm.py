"""The smoke sweep on a real SLURM scheduler through Snakemake's executor plugin (docs/cluster.md).

A one-node cluster on localhost: munged, slurmctld and slurmd from Debian's slurm-wlm and munge
(`make test` installs them), started here as root with their own configuration, sockets, ports and
state under a scratch folder, and stopped by their process ids. The node has two dummy GPUs (plain
files), so that the training jobs' --gpus=1 is accepted. There is no accounting daemon: the
plugin reads job states with squeue, as on a cluster without slurmdbd.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import string
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from mixstudy.runs.run_folder import RECORD_DIGEST, record_tampering
from pipeline_helpers import copy_project, env, jobs_by_rule, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

TEMPLATES = Path(__file__).parent / "slurm"
PARTITION = "mixstudy"
NODE = "mixnode"
SBIN_PATH = f"/usr/sbin:/usr/bin:{os.environ.get('PATH', '')}"


def _require(program: str) -> str:
    path = shutil.which(program, path=SBIN_PATH)
    assert path, (
        f"{program} is not installed: this test runs a real SLURM cluster on localhost and needs Debian's "
        "slurm-wlm and munge (`make slurm-deps`, as root, installs them)"
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def _render(template: str, target: Path, values: dict) -> Path:
    target.write_text(string.Template((TEMPLATES / template).read_text()).substitute(values))
    return target


def _wait_for(what: str, check, processes: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode} while waiting for {what}"
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LocalSlurm:
    """munged, slurmctld and slurmd as child processes of the test, under one scratch folder."""

    def __init__(self, root: Path):
        assert os.geteuid() == 0, (
            "this test starts slurmctld and slurmd with SlurmUser=root and must run as root "
            "(CI does: `.ci/run` -> `make test`)"
        )
        self.root = root
        self.programs = {name: _require(name) for name in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "srun")}
        self.processes: dict[str, subprocess.Popen] = {}
        self.outputs = []
        for folder in ("state", "spool", "dev", "munge", "bin"):
            (root / folder).mkdir(mode=0o700)
        for index in range(2):
            (root / "dev" / f"gpu{index}").touch()
        self.values = {
            "root": str(root),
            "host": socket.gethostname().split(".")[0],
            "node": NODE,
            "partition": PARTITION,
            "ctld_port": _free_port(),
            "slurmd_port": _free_port(),
            "munge_socket": str(root / "munge" / "munge.socket"),
            "memory_mb": _memory_mb(),
        }
        self.conf = _render("slurm.conf", root / "slurm.conf", self.values)
        _render("gres.conf", root / "gres.conf", self.values)
        (root / "plugstack.conf").write_text("")
        srun = _render("srun", root / "bin" / "srun", {"conf": self.conf, "srun": self.programs["srun"]})
        srun.chmod(0o755)
        environment = env()
        environment["PATH"] = f"{srun.parent}{os.pathsep}{environment['PATH']}"
        self.env = {**environment, "SLURM_CONF": str(self.conf)}

    def _start(self, name: str, command: list[str]) -> None:
        self.outputs.append(open(self.root / f"{name}.out", "w"))
        self.processes[name] = subprocess.Popen(command, stdout=self.outputs[-1], stderr=subprocess.STDOUT, env=self.env)

    def start(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        munge = self.root / "munge"
        self._start("munged", [
            self.programs["munged"], "--foreground", "--force", f"--key-file={key}", f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}",
        ])
        _wait_for("munged's socket", (munge / "munge.socket").exists, self.processes)
        self._start("slurmctld", [self.programs["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", [self.programs["slurmd"], "-D", "-N", NODE, "-f", str(self.conf)])
        _wait_for("the node to be idle", lambda: self.node_state() == "idle", self.processes)

    def active_jobs(self) -> list[str]:
        result = subprocess.run([self.programs["squeue"], "-h", "-t", "PENDING,CONFIGURING,RUNNING,COMPLETING", "-o", "%i"],
                                env=self.env, capture_output=True, text=True, timeout=30)
        return result.stdout.split()

    def node_state(self) -> str:
        result = subprocess.run([self.programs["sinfo"], "-h", "-n", NODE, "-o", "%T"],
                                env=self.env, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    def stop(self) -> None:
        """Cancel what is left (a failed test can leave jobs behind), let slurmd end their steps,
        then stop the three daemons by their process ids."""
        if all(p.poll() is None for p in self.processes.values()) and len(self.processes) == 3:
            subprocess.run([self.programs["scancel"], "--user=root"], env=self.env,
                           capture_output=True, timeout=30)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.active_jobs():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for output in self.outputs:
            output.close()

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.out"):
            path = self.root / name
            if path.is_file():
                parts.append(f"--- {name}\n" + path.read_text()[-3000:])
        return "\n".join(parts)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_local_cluster_accepts_a_gpu_job(slurm):
    result = subprocess.run([slurm.programs["sbatch"], "--parsable", "--wait", "--gpus=1", "-p", PARTITION,
                             "-o", str(slurm.root / "probe.out"), "--wrap", "echo gpus=$SLURM_GPUS_ON_NODE"],
                            env=slurm.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr + slurm.logs()
    assert (slurm.root / "probe.out").read_text().strip() == "gpus=1"


def _scheduler_jobs(slurm: LocalSlurm) -> dict[str, dict]:
    """Every job the scheduler has seen in the last MinJobAge seconds, finished ones included."""
    fields = ["JobID", "State", "tres-per-job", "MinMemory", "TimeLimit", "Comment"]
    result = subprocess.run([slurm.programs["squeue"], "-h", "-t", "all", "-O", ",".join(f"{f}:|" for f in fields)],
                            env=slurm.env, capture_output=True, text=True, check=True)
    jobs = {}
    for line in result.stdout.splitlines():
        values = dict(zip(fields, (v.strip() for v in line.split("|"))))
        jobs[values["JobID"]] = values
    return jobs


def _without_hours(report: str) -> str:
    """The report less its line of compute hours (the runs' wall time)."""
    return re.sub(r"Compute time of the runs with results: [^\n]*", "Compute time: (wall time)", report)


def _minutes(limit: str) -> int:
    """squeue's [days-]hours:minutes:seconds (or minutes:seconds) as minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def _run_record(path: Path) -> dict:
    record = json.loads(path.read_text())
    assert record_tampering(record) is None, path  # the record's digest holds: it is its own content's
    record.pop("wall_time_s")  # the fields that depend on when and where the run ran:
    record["files"].pop("history.tsv")  # the history's elapsed_s column (model.pt's hash stays compared)
    record.pop(RECORD_DIGEST)  # and the digest over them all
    return record


def test_smoke_sweep_through_slurm_equals_a_local_run(slurm, tmp_path):
    """Every job of the smoke sweep goes through sbatch with the profile's resources; the results
    are those of `snakemake --cores all --resources gpu=1` on the same configuration."""
    cluster = copy_project(tmp_path / "cluster")
    local = copy_project(tmp_path / "local")
    expected = jobs_by_rule(snakemake(cluster, "-n").stdout)
    expected.pop("all")  # a target rule without a command: Snakemake completes it itself, without a job

    with ThreadPoolExecutor(1) as pool:  # the local run, meanwhile: the SLURM run mostly waits on polling
        local_run = pool.submit(snakemake, local)
        command = [
            "snakemake", "--profile", "workflow/profiles/slurm",
            "--default-resources", f"slurm_partition={PARTITION}",
            "--slurm-status-command", "squeue",  # no accounting (slurmdbd) on this cluster
            "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs",
            "--configfile", "config/smoke.yaml", "config/test-data.yaml",
        ]
        result = subprocess.run(command, cwd=cluster, env=slurm.env, capture_output=True, text=True, timeout=900)
        local_run.result()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + slurm.logs()

    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(submitted) == sum(expected.values()), output[-6000:]
    jobs = _scheduler_jobs(slurm)
    profile = yaml.safe_load((cluster / "workflow/profiles/slurm/profile.yaml").read_text())
    by_rule: dict[str, int] = {}
    for job_id in submitted:
        job = jobs[job_id]
        assert job["State"] == "COMPLETED", job
        rule = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", job["Comment"]).group(1)
        by_rule[rule] = by_rule.get(rule, 0) + 1
        wanted = profile["set-resources"][rule]
        assert job["MinMemory"] == f"{wanted['mem_mb']}M", job
        assert _minutes(job["TimeLimit"]) == wanted["runtime"], job
        assert job["tres-per-job"] == ("gres:gpu:1" if wanted.get("gpu") else "N/A"), job
    assert by_rule == expected
    assert len(list((cluster / ".snakemake/slurm_logs").rglob("*.log"))) == len(submitted)

    local_runs = sorted(p.relative_to(local) for p in local.glob("results/runs/*/*/seed*/metrics.json"))
    cluster_runs = sorted(p.relative_to(cluster) for p in cluster.glob("results/runs/*/*/seed*/metrics.json"))
    assert cluster_runs == local_runs
    assert len(local_runs) == sum(count for rule, count in expected.items() if rule.startswith("train_"))
    for name in local_runs:
        assert _run_record(cluster / name) == _run_record(local / name), name
    assert (cluster / "results/tuning/selection.yaml").read_text() == (local / "results/tuning/selection.yaml").read_text()
    # the report's compute hours are the runs' wall time, which two runs of the same jobs do not share
    assert _without_hours((cluster / "results/report.md").read_text()) == _without_hours((local / "results/report.md").read_text())
    assert "Nothing to be done" in snakemake(cluster, "-n").stdout
