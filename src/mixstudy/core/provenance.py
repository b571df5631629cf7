"""What produced a result: package versions, device, code revision, data hashes."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the results layer reads precision_of without it
    import torch



def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def code_revision() -> str | None:
    """The git commit of the source tree (with ``-dirty`` if it has uncommitted changes)."""
    source_dir = Path(__file__).resolve().parents[1]  # the whole package, not only core/
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=source_dir, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name where Linux tells it (platform.processor() is empty there), else the
    architecture: two x86 hosts can differ twofold in speed and in float32's last digits."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def precision_of(amp: str, device_type: str) -> str:
    """What ``compute.amp`` resolves to: ``on`` is bfloat16 autocast on any device, ``auto``
    bfloat16 on CUDA only; otherwise float32."""
    return "bfloat16" if amp == "on" or (amp == "auto" and device_type == "cuda") else "float32"


def cpu_bf16_unit(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's bf16 hardware as its flags name it: ``amx_bf16`` (Intel AMX, a bf16 matrix unit),
    else ``avx512_bf16`` (bf16 dot-product vector instructions), else None. Under
    ``compute.amp: on`` the first trains the study's network about 4x faster than float32, the
    second about 1.8x (docs/performance.md); without either, bf16 is emulated."""
    try:
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags.update(value.split())
    except OSError:
        return None
    return next((unit for unit in ("amx_bf16", "avx512_bf16") if unit in flags), None)


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def provenance(device: torch.device, subset_sha256: str, data_provenance: dict | None = None, precision: str | None = None) -> dict:
    """``precision``: what the run computed in, as resolved from ``compute.amp`` (float32 | bfloat16)."""
    import torch

    return {
        "packages": {p: _version(p) for p in ("mixstudy", "torch", "torchvision", "numpy")},
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        # the instruction set torch's CPU kernels were chosen for (e.g. AVX2, AVX512): it sets the speed
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_unit": cpu_bf16_unit() if device.type == "cpu" else None,
        "precision": precision,
        "code_revision": code_revision(),
        "subset_sha256": subset_sha256,
        "data": data_provenance or {},
    }
