"""Ways to train K copies of the study network in one process: time of one training step.

  loop     - K separate networks, one after the other (what K solo runs do)
  grouped  - mixstudy.model.packing: one network with grouped convolutions (what compute.pack_size uses)
  vmap     - torch.func.stack_module_state + functional_call under vmap; BatchNorm running
             statistics switched off (torch.func.replace_all_batch_norm_modules_), because vmap
             cannot update them in place

Dropout is off in all three: the network's layout-stable dropout (an in-place bernoulli_ on a
fresh tensor) is refused by vmap with randomness="different" ("Cannot ask for different inplace
randomness on an unbatched tensor"), and "same" would give every member the same masks.

Each step is forward + backward + SGD step on a batch of 32 per member, after warm-up steps.
Run from the repository root: python benchmarks/packing_methods.py --sizes 1 4 8 [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from mixstudy.data import engine
from mixstudy.model.models import build_model
from mixstudy.model.packing import pack_modules

MODEL = {"name": "convnet", "widths": [32, 64, 128], "dropout": 0.0, "leaky_slope": 0.1}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device: torch.device, steps: int, warmup: int = 3) -> float:
    """Milliseconds per call of ``step``."""
    for _ in range(warmup):
        step()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronise(device)
    return (time.perf_counter() - start) / steps * 1000


def loop_step(members, x, y):
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in members]

    def step():
        for member, optimizer in zip(members, optimizers):
            loss = F.cross_entropy(member(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return step


def grouped_step(members, x, y, device):
    packed = pack_modules(members, [torch.Generator(device=device) for _ in members]).to(device)
    optimizer = torch.optim.SGD(packed.parameters(), lr=0.01, momentum=0.9)
    k = len(members)
    packed_x = x.repeat(1, k, 1, 1)

    def step():
        logits = packed(packed_x).view(len(y), k, -1)
        loss = sum(F.cross_entropy(logits[:, i], y) for i in range(k))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def vmap_step(members, x, y):
    members = [copy.deepcopy(m) for m in members]
    for member in members:
        torch.func.replace_all_batch_norm_modules_(member)
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    optimizer = torch.optim.SGD(list(params.values()), lr=0.01, momentum=0.9)

    def loss_of(p, b):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    grads_of = vmap(grad_and_value(loss_of), randomness="different")

    def step():
        grads, _ = grads_of(params, buffers)
        for name, value in params.items():
            value.grad = grads[name]
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8], help="pack sizes (default 1 4 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method and size (default 10)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the training rules)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = engine.resolve_device(args.device)
    print(f"device: {device.type}, torch {torch.__version__}, {args.threads} thread(s), network {MODEL['widths']}, batch 32 per member")
    print(f"{'K':>3} {'loop ms/step':>13} {'grouped':>9} {'vmap':>9}")
    torch.manual_seed(0)
    x = torch.randn(32, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    for k in args.sizes:
        members = [build_model(MODEL, 10).to(device).train() for _ in range(k)]
        figures = [
            time_steps(loop_step(members, x, y), device, args.steps),
            time_steps(grouped_step(members, x, y, device), device, args.steps),
            time_steps(vmap_step(members, x, y), device, args.steps),
        ]
        print(f"{k:>3} {figures[0]:>13.1f} {figures[1]:>9.1f} {figures[2]:>9.1f}")


if __name__ == "__main__":
    main()
