"""How to use the cores for a sweep: N single-thread jobs side by side, or one N-thread job at a time.

Runs real `mixstudy train` processes (study network and settings, a short budget) and prints
runs per hour for each way, plus each process's peak resident memory. Run from the repository
root after `mixstudy data && mixstudy subset`:
    python benchmarks/two_cores.py --epochs 10
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_command(out: Path, epochs: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "mixstudy.cli", "train", "--set", f"train.epochs={epochs}",
            "--set", f"compute.threads={threads}", "--set", "train.checkpoint_every=0",
            "--out", str(out), "--progress", "lines"]


def timed(commands: list[list[str]]) -> float:
    """Start the commands together and return the seconds until the last one ends."""
    start = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"{' '.join(process.args)} failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (default 10)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores to use (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        side_by_side = timed([train_command(root / f"single{i}", args.epochs, 1) for i in range(args.cores)])
        one_at_a_time = sum(timed([train_command(root / f"multi{i}", args.epochs, args.cores)]) for i in range(args.cores))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{args.cores} runs of {args.epochs} epochs (study network, batch 32, final test evaluation included)")
    print(f"{args.cores} single-thread jobs side by side: {side_by_side:7.1f} s  -> {3600 * args.cores / side_by_side:6.1f} runs/hour")
    print(f"one {args.cores}-thread job at a time:        {one_at_a_time:7.1f} s  -> {3600 * args.cores / one_at_a_time:6.1f} runs/hour")
    print(f"peak resident memory of one training process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
