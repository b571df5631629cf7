"""What evaluating the validation split every ``evaluation.val_every`` epochs costs a run.

Times, on the study's network and settings (one thread), one training epoch on the 500-image
subset, one pass over the validation split (``subset.val_per_class`` x 10 images: logits,
accuracy, NLL and the best-weights copy) and one full test pass, then prints the share a
400-epoch run spends on validation for several ``val_every``. Figures are medians of repeats.

Run from the repository root after `mixstudy data && mixstudy subset`:
    python benchmarks/validation_cost.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mixstudy.data import engine

from mixstudy.train import evaluation, trainer
from mixstudy.core.config import load_params
from mixstudy.data.subsets import load_study_data, subset_file
from mixstudy.model.metrics import accuracy, nll
from mixstudy.runs.study import run_config


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params([args.params], ["compute.device=cpu", "compute.threads=1"])
    torch.set_num_threads(1)
    config = run_config(params, 0)
    data = load_study_data(params["data"]["out"], subset_file(params["subset"], params["data"]["name"]))
    device = torch.device("cpu")
    pack = trainer.PackedTrainer.of([trainer.make_trainer(config, device, data.num_classes)])
    normalise = engine.Normalise(data.mean, data.std)
    x_train = engine.to_float(engine.to_device_images(data.x_train, device), config["compute"]["channels_last"])
    y_train = torch.from_numpy(data.y_train)
    x_val, x_test = engine.to_device_images(data.x_val, device), engine.to_device_images(data.x_test, device)

    def train_one_epoch():
        trainer.train_epoch(pack, pack.model, x_train, y_train, normalise)

    def validation_pass():
        row = {"epoch": 1}
        logits = evaluation.split_logits(pack.sync(0).model, x_val, normalise, config["compute"], device)
        labels = torch.from_numpy(data.y_val)
        row["val_acc"], row["val_nll"] = accuracy(logits, labels), nll(logits, labels)
        pack.members[0].best = None
        evaluation.note_validation(pack.members[0], row, "val_acc")

    def test_pass():
        evaluation.split_logits(pack.sync(0).model, x_test, normalise, config["compute"], device)

    epoch_s = median_seconds(train_one_epoch, args.repeats)
    val_s = median_seconds(validation_pass, args.repeats)
    test_s = median_seconds(test_pass, max(1, args.repeats // 2))
    epochs = config["train"]["epochs"]
    print(f"network {config['model']['name']} widths {config['model']['widths']}, {len(data.y_train)} training, "
          f"{len(data.y_val)} validation, {len(data.y_test)} test images, one thread, medians of {args.repeats}")
    print(f"training epoch {epoch_s:.2f} s | validation pass {val_s:.3f} s | test pass {test_s:.2f} s")
    for val_every in (1, 5, 10, 20):
        passes = epochs // val_every
        share = passes * val_s / (epochs * epoch_s)
        print(f"val_every {val_every:>2}: {passes:>3} passes, {passes * val_s:6.1f} s per {epochs}-epoch run "
              f"({share:.1%} of its training time)")


if __name__ == "__main__":
    main()
