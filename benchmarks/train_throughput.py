"""Training throughput of the mixstudy engine against the published-style training loop.

Prints images per second on the study's network and settings for
  (a)  the mixstudy engine (device-resident data, batched crop/flip, test set evaluated once);
  (b)  a reference loop written like the published mixup / manifold mixup code: torchvision
       dataset with PIL transforms and a DataLoader, test evaluation every epoch;
  (b') the same loop evaluating the test set only once at the end;
  (c)  the compute bound: forward + backward + step on pre-built batches, no data handling;
and the ratios a/b, a/b', a/c. Every variant trains on the same 500-image subset for the same
number of epochs and ends with one full test evaluation (b also evaluates after every epoch).

Run from the repository root after `mixstudy data && mixstudy subset`:
    python benchmarks/train_throughput.py --epochs 5
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from mixstudy.data import engine

from mixstudy.train import trainer
from mixstudy.core.config import load_params
from mixstudy.data.subsets import load_study_data, subset_file
from mixstudy.train.evaluation import predict
from mixstudy.runs.study import run_config


class ArrayDataset(Dataset):
    """torchvision.datasets.CIFAR10's __getitem__: uint8 array -> PIL image -> transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def reference_loop(config, data, epochs: int, evaluate_every_epoch: bool) -> float:
    """Images per second of the published-style loop (PIL transforms, DataLoader)."""
    train_tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(data.mean, data.std),
    ])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    train_loader = DataLoader(ArrayDataset(data.x_train, data.y_train, train_tf), batch_size=32, shuffle=True)
    test_loader = DataLoader(ArrayDataset(data.x_test, data.y_test, test_tf), batch_size=100)
    run = trainer.make_trainer(config, torch.device("cpu"), data.num_classes)
    model, optimizer = run.model, run.optimizer

    def evaluate():
        model.eval()
        with torch.no_grad():
            for images, _ in test_loader:
                model(images)

    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if evaluate_every_epoch or epoch == epochs - 1:
            evaluate()
    return epochs * len(data.y_train) / (time.perf_counter() - start)


def engine_loop(config, data, epochs: int) -> float:
    device = torch.device("cpu")
    channels_last = config["compute"]["channels_last"]
    pack = trainer.PackedTrainer.of([trainer.make_trainer(config, device, data.num_classes)])
    x_train = engine.to_float(engine.to_device_images(data.x_train, device), channels_last)
    y_train = torch.from_numpy(data.y_train)
    x_test = engine.to_device_images(data.x_test, device)
    normalise = engine.Normalise(data.mean, data.std)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(pack, pack.model, x_train, y_train, normalise)
        pack.scheduler.step()
    predict(pack.model, x_test, normalise, config["compute"]["eval_batch_size"], channels_last=channels_last)
    return epochs * len(data.y_train) / (time.perf_counter() - start)


def compute_bound(config, data, epochs: int) -> float:
    """Forward, backward and step on batches built beforehand; the same final test pass as (a)."""
    channels_last = config["compute"]["channels_last"]
    run = trainer.make_trainer(config, torch.device("cpu"), data.num_classes)
    model, optimizer = run.model, run.optimizer
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = ((torch.from_numpy(data.x_train).permute(0, 3, 1, 2).float() / 255 - torch.tensor(data.mean).view(1, 3, 1, 1))
         / torch.tensor(data.std).view(1, 3, 1, 1)).contiguous(memory_format=memory_format)
    y = torch.from_numpy(data.y_train)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(y), 32)]
    x_test = engine.to_device_images(data.x_test, torch.device("cpu"))
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, labels in batches:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    predict(model, x_test, engine.Normalise(data.mean, data.std), config["compute"]["eval_batch_size"], channels_last=channels_last)
    return epochs * len(y) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameter file (default params.yaml)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per variant (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the training rule)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    params = load_params([args.params])
    config = run_config(params, seed=0)
    data = load_study_data(params["data"]["out"], subset_file(params["subset"], params["data"]["name"]))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), network {params['model']}, batch 32, {args.epochs} epochs of {len(data.y_train)} images")

    figures = {}
    for label, measure in (
        ("a  engine", lambda: engine_loop(config, data, args.epochs)),
        ("b  reference, test every epoch", lambda: reference_loop(config, data, args.epochs, True)),
        ("b' reference, test once", lambda: reference_loop(config, data, args.epochs, False)),
        ("c  compute bound", lambda: compute_bound(config, data, args.epochs)),
    ):
        figures[label[:2].strip()] = rate = measure()
        print(f"{label:34s} {rate:8.1f} images/s")
    once = figures["b'"]
    print(f"a/b  = {figures['a'] / figures['b']:.2f}   (target >= 3)")
    print(f"a/b' = {figures['a'] / once:.2f}   (target >= 1.25)")
    print(f"c/a  = {figures['c'] / figures['a']:.3f}  (target <= 1.15)")
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
