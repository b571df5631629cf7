"""Copy the project into a scratch folder and run its pipeline commands there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_NPZ = REPO.parent / "shared" / "datasets" / "cifar10" / "cifar10.npz"
BIN = Path(sys.executable).parent


def require_shared_data() -> Path:
    assert SHARED_NPZ.is_file(), (
        f"the offline CIFAR-10 copy is expected at {SHARED_NPZ} (beside the checkout, as in CI); "
        "the pipeline tests train on it"
    )
    return SHARED_NPZ


def copy_project(dest: Path) -> Path:
    """Copy the tracked and unignored files of the checkout (what a fresh clone has)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (dest / "config" / "test-data.yaml").write_text(yaml.safe_dump({"data": {"npz_path": str(require_shared_data())}}))
    return dest


def env() -> dict:
    environment = dict(os.environ)
    environment["PATH"] = f"{BIN}{os.pathsep}{environment['PATH']}"
    return environment


def run(command: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def snakemake(cwd: Path, *extra: str, check: bool = True, configfiles: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return run(
        ["snakemake", *extra, "--cores", "all", "--resources", "gpu=1",
         "--configfile", "config/smoke.yaml", "config/test-data.yaml", *configfiles],
        cwd, check=check,
    )


def jobs_by_rule(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a Snakemake dry run."""
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                break
            counts[parts[0]] = int(parts[1])
    return counts


def training_jobs(dry_run_output: str) -> dict[str, int]:
    """Training jobs of a Snakemake dry run by kind of run: tuning, baseline, manifold, cutmix,
    regulariser (label smoothing, Cutout), from each `train_run` job's run id; a pack job
    (`train_pack_*`) counts under its rule name."""
    counts, rule = {}, None
    for line in dry_run_output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            rule = stripped.split()[1].rstrip(":")
            if rule.startswith("train_pack_"):
                counts[rule] = counts.get(rule, 0) + 1
        elif rule == "train_run" and stripped.startswith("wildcards: run_id="):
            stage, name = stripped.split("=", 1)[1].split("/")[:2]
            kind = "tuning" if stage == "tuning" else next(
                (k for k in ("baseline", "manifold", "cutmix") if name.startswith(k)), "regulariser")
            counts[kind] = counts.get(kind, 0) + 1
    return counts
