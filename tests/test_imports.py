"""Aggregation, selection, figures and the report never import torch (a second of start-up,
not six, and a sixth of the memory: docs/testing.md)."""

from __future__ import annotations

import subprocess
import sys

from conftest import PARAMS_FILE, ROOT

TORCH_FREE = ["core.config", "runs.study", "results.selection", "results.tables", "figures.base", "figures.examples",
              "figures.grids", "figures.run_files", "figures.registry", "report.comparison", "report.results",
              "report.setting", "report.document", "cli", "core.networks", "core.fileio"]


def _run_without_torch(code: str, cwd) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, then fail if it imported torch."""
    check = code + "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    return subprocess.run([sys.executable, "-c", check], cwd=cwd, capture_output=True, text=True)


def test_light_modules_import_without_torch():
    imports = "\n".join(f"import mixstudy.{name}" for name in TORCH_FREE)
    result = _run_without_torch(imports, ROOT)
    assert result.returncode == 0, result.stderr


def test_aggregate_and_report_run_without_torch(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "runs" / "sweep" / "baseline" / "seed0").mkdir(parents=True)  # one run begun: every run is listed as missing
    code = (
        "from mixstudy.cli import main\n"
        f"common = ['--params', {str(PARAMS_FILE)!r}, '--runs-root', {str(tmp_path / 'runs')!r}]\n"
        f"assert main(['aggregate', *common, '--out-dir', {str(out)!r}, '--summary', {str(out / 's.json')!r}]) == 0\n"
        f"assert main(['report', *common, '--out', {str(out / 'report.md')!r}, '--figures-dir', {str(out)!r}]) == 0\n"
    )
    result = _run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "report.md").is_file() and (out / "table1_tuning.csv").is_file()
