"""Runs per hour of the sweep, packed (K runs as one network) against unpacked (one run at a time).

For each pack size K, trains the first K runs of the sweep grid (baseline, manifold mixup at
every S, CutMix: members mix at different points) as one pack for a few epochs after a warm-up
epoch, and reports seconds per epoch and the runs per hour that gives for a run of
``train.epochs`` epochs. K = 1 is the unpacked rate. One process, one device, the training
rules' thread count; test evaluation (the same for both, once per run) is left out.

Run from the repository root after `mixstudy data && mixstudy subset`; on a GPU machine the
same command measures the GPU (``--device cuda``):
    python benchmarks/packed_throughput.py --sizes 1 2 4 8 16 --epochs 2
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from mixstudy.data import engine

from mixstudy.runs import study

from mixstudy.train import trainer
from mixstudy.core.config import load_params
from mixstudy.data.subsets import load_study_data, subset_file


def pack_configs(params: dict, size: int) -> list[dict]:
    specs = study.sweep_runs(params)
    if size > len(specs):
        raise SystemExit(f"the sweep grid has {len(specs)} runs; ask for packs of at most that many")
    return [study.run_config(params, spec.seed, spec.overrides) for spec in specs[:size]]


def seconds_per_epoch(configs: list[dict], data, device: torch.device, epochs: int) -> float:
    channels_last = configs[0]["compute"]["channels_last"]
    pack = trainer.PackedTrainer.of([trainer.make_trainer(config, device, data.num_classes) for config in configs])
    x_train = engine.to_float(engine.to_device_images(data.x_train, device), channels_last)
    y_train = torch.from_numpy(data.y_train).to(device)
    normalise = engine.Normalise(data.mean, data.std).to(device)

    def epoch():
        trainer.train_epoch(pack, pack.model, x_train, y_train, normalise)  # returns after its one sync
        pack.scheduler.step()

    epoch()  # warm-up: kernel selection, allocator, first-touch
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", action="append", help="parameter file(s) (default params.yaml)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="pack sizes (default 1 2 4 8 16)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per pack size, after one warm-up (default 2)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default auto)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the training rules)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    params = load_params(args.params or ["params.yaml"], [f"compute.device={args.device}"])
    device = engine.resolve_device(args.device)
    data = load_study_data(params["data"]["out"], subset_file(params["subset"], params["data"]["name"]))
    run_epochs = params["train"]["epochs"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device.type} ({name}), torch {torch.__version__}, {args.threads} thread(s), "
          f"network {params['model']['name']} {params['model'].get('widths', '')}, batch {params['train']['batch_size']}, "
          f"{len(data.y_train)} images, {args.epochs} timed epochs per size; runs/hour for {run_epochs}-epoch runs")
    print(f"{'K':>3} {'s/epoch (pack)':>15} {'s/epoch per run':>16} {'runs/hour':>10} {'vs K=1':>7}")
    unpacked = None
    for size in args.sizes:
        per_epoch = seconds_per_epoch(pack_configs(params, size), data, device, args.epochs)
        runs_per_hour = size * 3600 / (per_epoch * run_epochs)
        unpacked = unpacked or (runs_per_hour if size == 1 else None)
        ratio = f"{runs_per_hour / unpacked:7.2f}" if unpacked else "      -"
        print(f"{size:>3} {per_epoch:>15.2f} {per_epoch / size:>16.3f} {runs_per_hour:>10.2f} {ratio}")
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
          + (f"; peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
