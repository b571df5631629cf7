"""Figures and report on fabricated run folders (see test_aggregate.py for how they are made)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mixstudy import cli
from mixstudy.figures import (
    FIGURES, MissingFigureData, make_figures, mix_pairs, mixing_examples_figure, pool_reliability, study_examples,
)
from mixstudy.report import write_report
from test_aggregate import REPO, SMALL_GRIDS, small_params, write_all_runs, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_examples(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, np.arange(n) % 10


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """Runs with one missing and one failed seed, drawn once for the module (drawing takes seconds)."""
    root = tmp_path_factory.mktemp("study")
    params = small_params(f"data.out={root / 'absent.npz'}")  # Figure 1 gets its images from the tests
    write_all_runs(root / "runs", params, skip=("sweep/manifold_S0-2_alpha4/seed2",))
    write_run(root / "runs", params, "sweep/manifold_S0_alpha1/seed0", status="failed")
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


def test_report_sets_ours_beside_the_published_numbers(tmp_path, study_dir, params, runs_root):
    results = study_dir[0] / "results"
    selection = tmp_path / "selection.yaml"
    selection.write_text(
        "scheduler: cosine\nmomentum: 0.9\nweight_decay: 0.001\nselected_by: mean test accuracy\nmean_acc: 0.47\n"
    )
    markdown_path, html_path = write_report(params, runs_root, results / "report.md", results / "figures", selection)

    text = markdown_path.read_text()
    assert re.search(r"\| Final baseline +\| 56\.07 +\| 52\.33 +\| -3\.74 +\| sweep/baseline \(3/3 seeds\)", text)
    assert "Final baseline: ours, 52.33 %, is 3.74 percentage points lower than the published 56.07 %." in text
    assert "Best tuning configuration (Table 1): ours, 47.00 %, is 5.59 percentage points lower" in text
    assert "Mixup at the published best (S={0,2}, α=4)" in text
    assert "30 runs are in the grids: 28 finished, 1 failed, 1 missing" in text
    assert "cosine, momentum 0.9, weight decay 0.001" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert not link.startswith("/") and (results / link).is_file(), link
    page = html_path.read_text()
    assert "<table>" in page and 'src="figures/reliability.png"' in page
    assert "<script" not in page and "<link" not in page and "http" not in page


def test_report_without_figures_says_so(tmp_path, params, runs_root):
    markdown_path, _ = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "no_figures")
    text = markdown_path.read_text()
    assert "Figure `reliability` is not available" in text
    assert "No tuning selection file was found" in text


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


def test_report_flags_departures_from_the_study_setting():
    from mixstudy.config import load_params
    from mixstudy.report import departures_from_study

    assert departures_from_study(load_params(["params.yaml"])) == []
    small = load_params(["params.yaml", "config/smoke.yaml"])
    flagged = departures_from_study(small)
    assert any("train.epochs" in text and "400" in text for text in flagged)
    assert not any("train.lr" in text for text in flagged)


def comparison_table(text: str) -> dict[str, dict[str, str]]:
    """The report's published-vs-ours table, by quantity."""
    section = text.split("## Our numbers beside the published ones", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_every_published_and_ours_number_comes_from_its_table(tmp_path, params, runs_root):
    """Each row of the comparison: the published number from report.published, ours from the
    aggregated tables (summary.json), and the difference ours minus published."""
    import json

    from mixstudy.tables import aggregate

    aggregate(params, runs_root, tmp_path / "tables", tmp_path / "summary.json")
    summary = json.loads((tmp_path / "summary.json").read_text())
    published = params["report"]["published"]
    markdown_path, _ = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures")
    text = markdown_path.read_text()
    rows = comparison_table(text)
    expected = {
        "Best tuning configuration (Table 1)": (published["tuning_best"], summary["tuning.best.acc_mean"]),
        "Final baseline": (published["baseline"], summary["baseline.acc_mean"]),
        "Best manifold mixup": (published["best_mixup"], summary["sweep.best.acc_mean"]),
        "Mixup at the published best (S={0,2}, α=4)": (published["best_mixup"], summary["sweep.S=0-2.alpha=4.acc_mean"]),
    }
    assert set(rows) == set(expected)
    for quantity, (theirs, ours) in expected.items():
        row = rows[quantity]
        assert float(row["published (%)"]) == pytest.approx(theirs, abs=0.005), quantity
        assert float(row["ours (%)"]) == pytest.approx(ours, abs=0.005), quantity
        assert float(row["ours − published (points)"]) == pytest.approx(ours - theirs, abs=0.01), quantity
    gain = published["best_mixup"] - published["baseline"]
    assert f"The published gain of mixup over the baseline is {gain:+.2f} points." in text
    assert f"minus the baseline, is {summary['sweep.best.delta_acc']:+.2f} points" in text


def test_report_states_the_selection_rule_once(tmp_path, params, runs_root):
    from mixstudy.selection import SELECTION_RULE

    markdown_path, _ = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures")
    assert markdown_path.read_text().count(SELECTION_RULE) == 1


def test_report_flags_a_selection_the_tuning_runs_no_longer_rank_first(tmp_path, params, runs_root):
    selection = tmp_path / "selection.yaml"
    selection.write_text("scheduler: step\nmomentum: 0.9\nweight_decay: 0.001\n")
    markdown_path, _ = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures", selection)
    assert "The finished tuning runs now rank cosine_mom0.9_wd0.001 first" in markdown_path.read_text()


def test_gain_is_called_optimistic_only_when_a_best_cell_was_picked(tmp_path, params, runs_root):
    """Several manifold cells: the best one was picked on the test set (optimistic). One cell, fixed
    in advance (config/first.yaml): nothing was picked, and the report says so."""
    many, _ = write_report(params, runs_root, tmp_path / "many" / "report.md", tmp_path / "none", tmp_path / "absent.yaml")
    assert "read this gain as optimistic" in many.read_text()

    one_cell = small_params("sweep.alphas=[4.0]", "sweep.layer_sets=[[0, 2]]")
    single_root = tmp_path / "single"
    write_all_runs(single_root, one_cell)
    one, _ = write_report(one_cell, single_root, tmp_path / "one" / "report.md", tmp_path / "none", tmp_path / "absent.yaml")
    text = one.read_text()
    assert "read this gain as optimistic" not in text
    assert "the only manifold mixup configuration run, so no choice on the test set favours it" in text
