"""What a run records about the machine it ran on: enough to tell two hosts' timings apart."""

import platform

import torch

from mixstudy.provenance import cpu_model, provenance

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu avx2

processor\t: 1
model name\t: AMD EPYC 7B13
"""


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"


def test_without_cpuinfo_the_cpu_model_falls_back_to_the_architecture(tmp_path):
    expected = platform.processor() or platform.machine()
    assert cpu_model(tmp_path / "absent") == expected
    (tmp_path / "empty").write_text("processor\t: 0\nmodel name\t: \n")
    assert cpu_model(tmp_path / "empty") == expected


def test_a_cpu_run_records_the_instruction_set_its_kernels_use():
    record = provenance(torch.device("cpu"), subset_sha256="0" * 64)
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu_capability"]  # e.g. AVX2, AVX512, DEFAULT
    assert record["device_name"]
