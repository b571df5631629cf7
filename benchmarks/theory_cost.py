"""What the theory measures (`mixstudy evaluate`: rule evaluate_run) cost a run, against its training.

Times, on the network of the parameter files given (one thread), one training epoch on the subset,
the input-Jacobian norms of a batch of test images, and one full test pass; then prints what a
400-epoch run spends on the measures for several ``theory.jacobian_images``: the Jacobians, and the
test passes of the evaluation (the metrics as training recorded them, and the test-time
transformation's plain and shrunk passes). Figures are medians of repeats.

Run from the repository root after `mixstudy data && mixstudy subset` (same parameter files):
    python benchmarks/theory_cost.py --params config/first.yaml --repeats 3
    python benchmarks/theory_cost.py --repeats 3          # the study's network (cnn13)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mixstudy.data import engine

from mixstudy.train import evaluation, trainer
from mixstudy.core.config import layered_on_defaults, load_params
from mixstudy.data.subsets import load_study_data, subset_file
from mixstudy.runs.study import run_config
from mixstudy.model.theory import jacobian_norms

JACOBIAN_BATCH = 100  # test images timed for the Jacobian (scaled to jacobian_images)
TEST_PASSES = 3  # evaluate_all's test pass, and the transformation's plain and shrunk ones


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", action="append", default=[], help="override files layered on params.yaml")
    args = parser.parse_args()
    params = load_params(layered_on_defaults(args.params), ["compute.device=cpu", "compute.threads=1"])
    torch.set_num_threads(1)
    config = run_config(params, 0)
    data = load_study_data(params["data"]["out"], subset_file(params["subset"], params["data"]["name"]))
    device = torch.device("cpu")
    pack = trainer.PackedTrainer.of([trainer.make_trainer(config, device, data.num_classes)])
    normalise = engine.Normalise(data.mean, data.std)
    x_train = engine.to_float(engine.to_device_images(data.x_train, device), config["compute"]["channels_last"])
    y_train = torch.from_numpy(data.y_train)
    x_test = engine.to_device_images(data.x_test, device)
    x_jacobian = normalise(engine.to_float(x_test[:JACOBIAN_BATCH], channels_last=False))

    epoch_s = median_seconds(lambda: trainer.train_epoch(pack, pack.model, x_train, y_train, normalise), args.repeats)
    model = pack.sync(0).model
    jacobian_s = median_seconds(lambda: jacobian_norms(model, x_jacobian), args.repeats)
    test_s = median_seconds(lambda: evaluation.split_logits(model, x_test, normalise, config["compute"], device),
                            max(1, args.repeats // 2))
    epochs = config["train"]["epochs"]
    training_s = epochs * epoch_s
    print(f"network {config['model']['name']}, {len(data.y_train)} training and {len(data.y_test)} test images, "
          f"one thread, medians of {args.repeats}")
    print(f"training epoch {epoch_s:.2f} s | Jacobian of {JACOBIAN_BATCH} images {jacobian_s:.2f} s | "
          f"test pass {test_s:.2f} s | {epochs}-epoch run {training_s / 60:.1f} min")
    passes_s = TEST_PASSES * test_s
    for images in (250, 500, 1000):
        total = images / JACOBIAN_BATCH * jacobian_s + passes_s
        print(f"jacobian_images {images:>4}: {total:6.1f} s per run ({total / training_s:.1%} of its training; "
              f"test passes {passes_s:.0f} s of it)")


if __name__ == "__main__":
    main()
