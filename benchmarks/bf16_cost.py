"""What bf16 (``compute.amp: on``) costs against float32 on this CPU, for the study's network.

Prints, for float32 and bfloat16 (bf16 autocast), seconds per epoch of the 500 training images:
  (a)  the mixstudy engine (`trainer.train_epoch`: device-resident data, batched crop/flip);
  (c)  the compute bound: forward + backward + step of the same network on batches built
       beforehand, nothing else (the same convolutions timed alone, in that precision);
  (a2) `mixstudy train` processes: one job alone, and two jobs side by side (one per core), read
       from each run's history.tsv (epochs 2 to the last, so start-up and the final test pass are
       left out);
then c/a per precision, the float32/bf16 ratio of each, and one full pass over the 10,000 test
images (the final evaluation's unit of cost) in each precision. ``--compile`` adds (a) under
torch.compile. The machine line names the CPU, torch's kernel choice and its bf16 unit
(amx_bf16: a matrix unit; avx512_bf16: vector dot products; none: emulated).

Run from the repository root after `mixstudy data && mixstudy subset`:
    python benchmarks/bf16_cost.py --epochs 3 --process-epochs 6
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from mixstudy.data import engine

from mixstudy.train import trainer
from mixstudy.core.config import load_params
from mixstudy.data.subsets import load_study_data, subset_file
from mixstudy.train.evaluation import predict
from mixstudy.core.provenance import cpu_bf16_unit, cpu_model
from mixstudy.runs.study import run_config

PRECISIONS = {"float32": "off", "bfloat16": "on"}  # compute.amp for each


def with_amp(config: dict, amp: str, compile_model: bool = False) -> dict:
    config = copy.deepcopy(config)
    config["compute"]["amp"], config["compute"]["compile"] = amp, compile_model
    return config


def engine_epoch_s(config: dict, data, epochs: int) -> float:
    """Seconds per epoch of the engine, after one warm-up epoch (and compilation, if asked)."""
    device = torch.device("cpu")
    pack = trainer.PackedTrainer.of([trainer.make_trainer(config, device, data.num_classes)])
    forward = torch.compile(pack.model) if config["compute"]["compile"] else pack.model
    x_train = engine.to_float(engine.to_device_images(data.x_train, device), config["compute"]["channels_last"])
    y_train = torch.from_numpy(data.y_train)
    normalise = engine.Normalise(data.mean, data.std)
    trainer.train_epoch(pack, forward, x_train, y_train, normalise)  # warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(pack, forward, x_train, y_train, normalise)
    return (time.perf_counter() - start) / epochs


def compute_bound_epoch_s(config: dict, data, epochs: int) -> float:
    """Seconds per epoch of forward, backward and step alone, in the config's precision."""
    device = torch.device("cpu")
    run = trainer.make_trainer(config, device, data.num_classes)
    model, optimizer = run.model, run.optimizer
    memory_format = torch.channels_last if config["compute"]["channels_last"] else torch.contiguous_format
    normalise = engine.Normalise(data.mean, data.std)
    x = normalise(engine.to_float(engine.to_device_images(data.x_train, device), False)).contiguous(memory_format=memory_format)
    y = torch.from_numpy(data.y_train)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(y), 32)]
    model.train()

    def epoch():
        for images, labels in batches:
            with trainer.autocast_context(device, config["compute"]["amp"]):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return (time.perf_counter() - start) / epochs


def test_pass_s(config: dict, data) -> float:
    """One pass over the whole test set, as the final evaluation makes several of."""
    device = torch.device("cpu")
    model = trainer.make_trainer(config, device, data.num_classes).model.eval()
    x_test = engine.to_device_images(data.x_test, device)
    amp = lambda: trainer.autocast_context(device, config["compute"]["amp"])  # noqa: E731
    start = time.perf_counter()
    predict(model, x_test, engine.Normalise(data.mean, data.std), config["compute"]["eval_batch_size"], amp,
            config["compute"]["channels_last"])
    return time.perf_counter() - start


def process_epoch_s(params_files: list[str], amp: str, jobs: int, epochs: int) -> list[float]:
    """Seconds per epoch of each of ``jobs`` `mixstudy train` processes started together."""
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"job{j}" for j in range(jobs)]
        command = lambda out, seed: [  # noqa: E731
            sys.executable, "-m", "mixstudy.cli", "train", *sum((["--params", f] for f in params_files), []),
            "--set", f"train.epochs={epochs}", "--set", "train.checkpoint_every=0", "--set", f"compute.amp={amp}",
            "--set", "evaluation.val_every=0", "--set", "evaluation.test_limit=100", "--set", "compute.threads=1",
            "--set", "mixing.method=manifold", "--set", "mixing.alpha=4", "--set", "mixing.layers=[0,2]",
            "--seed", str(seed), "--out", str(out), "--progress", "lines"]
        processes = [subprocess.Popen(command(out, seed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for seed, out in enumerate(outs)]
        for process in processes:
            if process.wait() != 0:
                raise SystemExit(f"mixstudy train failed: {process.stderr.read().decode()[-2000:]}")
        rates = []
        for out in outs:
            elapsed = pd.read_csv(out / "history.tsv", sep="\t")["elapsed_s"].to_numpy()
            rates.append(float((elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)))
        return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", action="append", default=[], help="override file(s) on params.yaml (default: none, the study's network)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of (a) and (c), after one warm-up (default 3)")
    parser.add_argument("--process-epochs", type=int, default=6, help="epochs of each `mixstudy train` job (default 6; 0 skips)")
    parser.add_argument("--compile", action="store_true", help="also time (a) under torch.compile")
    args = parser.parse_args()

    torch.set_num_threads(1)
    params = load_params(["params.yaml", *args.params])
    config = run_config(params, seed=0, overrides={"mixing": {"method": "manifold", "alpha": 4.0, "layers": [0, 2]}})
    data = load_study_data(params["data"]["out"], subset_file(params["subset"], params["data"]["name"]))
    print(f"machine: {cpu_model()}; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 unit: {cpu_bf16_unit() or 'none'}; 1 thread, network {params['model']['name']}, batch 32, "
          f"{len(data.y_train)} images, S={{0,2}}, alpha=4")

    figures: dict[str, dict[str, float]] = {}
    for precision, amp in PRECISIONS.items():
        row = figures[precision] = {}
        row["a"] = engine_epoch_s(with_amp(config, amp), data, args.epochs)
        row["c"] = compute_bound_epoch_s(with_amp(config, amp), data, args.epochs)
        if args.compile:
            row["a compiled"] = engine_epoch_s(with_amp(config, amp, compile_model=True), data, args.epochs)
        row["test pass"] = test_pass_s(with_amp(config, amp), data)
        if args.process_epochs:
            row["a2 one job"] = process_epoch_s(args.params, amp, 1, args.process_epochs)[0]
            row["a2 two jobs"] = max(process_epoch_s(args.params, amp, 2, args.process_epochs))
        for name, seconds in row.items():
            unit = "s" if name == "test pass" else "s/epoch"
            print(f"{precision:9s} {name:12s} {seconds:8.2f} {unit}")
        print(f"{precision:9s} c/a = {row['a'] / row['c']:.3f}  (as images/s, the compute bound over the engine; 1.0: at the bound)")
    for name in figures["float32"]:
        print(f"float32/bf16 {name:12s} {figures['float32'][name] / figures['bfloat16'][name]:.2f}x")


if __name__ == "__main__":
    main()
