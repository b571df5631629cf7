"""What a run records about the machine it ran on: enough to tell two hosts' timings apart."""

import platform

import torch

from mixstudy.core.provenance import cpu_bf16_unit, cpu_model, provenance

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


def test_a_cpu_run_records_the_instruction_set_its_kernels_use(monkeypatch):
    record = provenance(torch.device("cpu"), subset_sha256="0" * 64)
    assert record["cpu_capability"]  # e.g. AVX2, AVX512, DEFAULT
    assert record["device_name"]
    # what torch reports at the time of the run, not a value of its own (torch reads
    # ATEN_CPU_CAPABILITY once, so another capability is put in its place here)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2 (as torch said)")
    assert provenance(torch.device("cpu"), subset_sha256="0" * 64)["cpu_capability"] == "AVX2 (as torch said)"


def test_the_cpu_bf16_unit_is_read_from_the_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert cpu_bf16_unit(cpuinfo) is None
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_bf16_unit(cpuinfo) == "avx512_bf16"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_unit(cpuinfo) == "amx_bf16"  # the matrix unit wins over the vector instructions
    assert cpu_bf16_unit(tmp_path / "absent") is None


def test_a_run_records_the_precision_it_was_given_and_the_cpu_bf16_unit():
    record = provenance(torch.device("cpu"), subset_sha256="0" * 64, precision="bfloat16")
    assert record["precision"] == "bfloat16"
    assert record["cpu_bf16_unit"] == cpu_bf16_unit()
