"""Figures (and the CLI from aggregate to report) on fabricated run folders (see test_aggregate.py for how they are made)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mixstudy import cli
from mixstudy.figures.base import MissingFigureData
from mixstudy.figures.examples import mix_pairs, mixing_examples_figure, study_examples
from mixstudy.figures.run_files import pool_reliability
from mixstudy.figures.registry import FIGURES, make_figures
from test_aggregate import REPO, SMALL_GRIDS, small_params, write_all_runs, write_run
from test_theory_tables import write_evaluations

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_examples(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, np.arange(n) % 10


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """Runs with one missing and one failed seed, drawn once for the module (drawing takes seconds)."""
    root = tmp_path_factory.mktemp("study")
    params = small_params(f"data.out={root / 'absent.npz'}", "theory.between_pairs=20")  # Figure 1: images from the tests
    write_all_runs(root / "runs", params, skip=("sweep/manifold_S0-2_alpha4/seed2",))
    write_run(root / "runs", params, "sweep/manifold_S0_alpha1/seed0", status="failed")
    write_evaluations(root / "runs", params)
    result = make_figures(params, root / "runs", root / "results" / "figures", examples=tiny_examples())
    return root, params, result


@pytest.fixture
def params(study_dir):
    return study_dir[1]


@pytest.fixture
def runs_root(study_dir):
    return study_dir[0] / "runs"


def test_every_figure_is_written_as_png_and_pdf(study_dir):
    root, _, result = study_dir
    out = root / "results" / "figures"
    assert result.skipped == {}
    assert set(result.written) == set(FIGURES)
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")


def test_drawing_the_same_runs_again_gives_the_same_bytes(study_dir, tmp_path):
    """No creation date in the files: a rebuilt report's figures differ only where the runs do."""
    root, params, _ = study_dir
    again = tmp_path / "figures"
    make_figures(params, root / "runs", again, examples=tiny_examples())
    for name in FIGURES:
        for suffix in ("png", "pdf"):
            first = (root / "results" / "figures" / f"{name}.{suffix}").read_bytes()
            assert (again / f"{name}.{suffix}").read_bytes() == first, f"{name}.{suffix}"


def test_figures_without_data_are_skipped_not_fatal(tmp_path, params):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "sweep_acc_heatmap.png").write_bytes(b"stale")
    result = make_figures(params, tmp_path / "no_runs", out)  # no runs, no data file
    assert set(result.skipped) == set(FIGURES)
    assert "does not exist" in result.skipped["fig1_mixing_examples"]
    assert not (out / "sweep_acc_heatmap.png").exists()  # a stale copy would pass for a current one


def test_only_baseline_finished_draws_what_it_can(tmp_path, params):
    root = tmp_path / "runs"
    for seed in (0, 1, 2):
        write_run(root, params, f"sweep/baseline/seed{seed}")
    result = make_figures(params, root, tmp_path / "figures", examples=tiny_examples())
    assert {"training_curves", "reliability", "fig1_mixing_examples"} <= set(result.written)
    assert {"sweep_acc_heatmap", "sweep_delta_heatmap", "acc_vs_alpha", "tuning_bars"} <= set(result.skipped)


def test_mix_pairs_uses_half_and_half_and_a_pasted_box():
    images, _ = tiny_examples(4)
    mixed = mix_pairs(images, [(0, 1), (2, 3)])
    a, b = images[[0, 2]] / 255.0, images[[1, 3]] / 255.0
    np.testing.assert_allclose(mixed["mixup"], 0.5 * a + 0.5 * b, atol=1e-6)
    x1, y1, x2, y2 = mixed["box"]
    inside = np.zeros((32, 32), dtype=bool)
    inside[y1:y2, x1:x2] = True
    np.testing.assert_allclose(mixed["cutmix"][:, inside], b[:, inside], atol=1e-6)
    np.testing.assert_allclose(mixed["cutmix"][:, ~inside], a[:, ~inside], atol=1e-6)
    assert mixed["cutmix_lambda"] == pytest.approx(1 - inside.mean())


def test_figure1_accepts_arrays_and_names_classes():
    images, labels = tiny_examples()
    fig = mixing_examples_figure(images, labels, n_pairs=3)
    captions = [ax.get_xlabel() for ax in fig.axes]
    assert len(fig.axes) == 12 and any(re.fullmatch(r"0\.5 \w+ \+ 0\.5 \w+", c) for c in captions)


def test_figure1_without_the_data_file_is_missing_data(params):
    with pytest.raises(MissingFigureData):
        study_examples(params)


def test_reliability_bins_pool_by_count():
    first = {"bin_edges": [0, 0.5, 1], "bin_accuracy": [0.2, 0.9], "bin_confidence": [0.3, 0.8], "bin_count": [10, 30]}
    second = {"bin_edges": [0, 0.5, 1], "bin_accuracy": [0.4, 0.0], "bin_confidence": [0.4, 0.0], "bin_count": [30, 0]}
    pooled = pool_reliability([first, second])
    np.testing.assert_allclose(pooled["bin_count"], [40, 30])
    np.testing.assert_allclose(pooled["bin_accuracy"], [(0.2 * 10 + 0.4 * 30) / 40, 0.9])
    np.testing.assert_allclose(pooled["bin_confidence"], [(0.3 * 10 + 0.4 * 30) / 40, 0.8])


def test_cli_commands_write_their_outputs(tmp_path, runs_root, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no subset file or selection of the checkout's own runs is read
    common = ["--params", str(REPO / "params.yaml"), "--set", f"data.out={tmp_path / 'absent.npz'}"]
    for override in SMALL_GRIDS:
        common += ["--set", override]
    results = tmp_path / "results"
    assert cli.main(["aggregate", *common, "--runs-root", str(runs_root), "--out-dir", str(results / "tables"),
                     "--summary", str(tmp_path / "metrics" / "summary.json")]) == 0
    assert cli.main(["figures", *common, "--runs-root", str(runs_root), "--out-dir", str(results / "figures")]) == 0
    assert cli.main(["report", *common, "--runs-root", str(runs_root), "--out", str(results / "report.md"),
                     "--figures-dir", str(results / "figures"), "--selection", str(tmp_path / "none.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "28 of 30 runs finished, 1 failed, 1 missing" in printed
    assert "skipped fig1_mixing_examples" in printed
    assert (tmp_path / "metrics" / "summary.json").is_file() and (results / "tables" / "table3_acc.tex").is_file()
    assert (results / "report.html").is_file() and (results / "figures" / "acc_vs_alpha.png").is_file()

