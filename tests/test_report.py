"""The report on fabricated run folders (see test_aggregate.py for how they are made): every number
beside its source, and each sentence's branches. No figure is drawn here (test_figures_report.py
draws them), so these tests are quick enough to run against every mutant of the report modules."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from scipy import stats

from mixstudy.figures.registry import FIGURES
from mixstudy.report.document import write_report
from mixstudy.report.comparison import compare_in_words
from test_aggregate import small_params, write_all_runs, write_run
from test_theory_tables import write_evaluations


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    """Runs with one missing and one failed seed, written once for the module."""
    root = tmp_path_factory.mktemp("study")
    params = small_params(f"data.out={root / 'absent.npz'}", "theory.between_pairs=20")
    write_all_runs(root / "runs", params, skip=("sweep/manifold_S0-2_alpha4/seed2",))
    write_run(root / "runs", params, "sweep/manifold_S0_alpha1/seed0", status="failed")
    write_evaluations(root / "runs", params)
    return root / "runs", params


@pytest.fixture
def params(study_runs):
    return study_runs[1]


@pytest.fixture
def runs_root(study_runs):
    return study_runs[0]


def test_report_sets_ours_beside_the_published_numbers(tmp_path, params, runs_root):
    results = tmp_path / "results"
    (results / "figures").mkdir(parents=True)
    for name in FIGURES:  # the report links what is there; drawing them is test_figures_report's work
        (results / "figures" / f"{name}.png").write_bytes(b"png")
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
    rows = comparison_table(text)
    assert rows["Best tuning configuration (Table 1)"]["our configuration"] == "cosine_mom0.9_wd0.001 (3/3 seeds)"
    assert rows["Best manifold mixup"]["our configuration"] == "S={0}, α=4 (3/3 seeds)"
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


def test_report_flags_departures_from_the_study_setting():
    from mixstudy.core.config import load_params
    from mixstudy.report.comparison import departures_from_study

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

    from mixstudy.results.aggregation import aggregate

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
    header = next(line for line in text.split("## Our numbers beside the published ones", 1)[1].splitlines()
                  if line.startswith("|"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "quantity", "published (%)", "ours (%)", "ours − published (points)", "our configuration"]
    section = sections_of(text)["Our numbers beside the published ones"]
    after_table = section[section.rindex("|\n") + 2:]
    assert after_table.startswith("\n- ")
    assert all(line.startswith("- ") and line.endswith(".") for line in after_table.strip().splitlines())
    for quantity, (theirs, ours) in expected.items():
        row = rows[quantity]
        assert float(row["published (%)"]) == pytest.approx(theirs, abs=0.005), quantity
        assert float(row["ours (%)"]) == pytest.approx(ours, abs=0.005), quantity
        assert float(row["ours − published (points)"]) == pytest.approx(ours - theirs, abs=0.01), quantity
    gain = published["best_mixup"] - published["baseline"]
    assert f"The published gain of mixup over the baseline is {gain:+.2f} points." in text
    assert f"minus the baseline, is {summary['sweep.best.delta_acc']:+.2f} points" in text


def test_report_states_the_selection_rule_once(tmp_path, params, runs_root):
    from mixstudy.results.selection import SELECTION_RULE

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


@pytest.mark.parametrize("ours, published, expected", [
    # rounded before they are compared: 61.7351 prints, and counts, as 61.74
    (61.7351, 61.73, "X: ours, 61.74 %, is 0.01 percentage points higher than the published 61.73 %."),
    (61.73, 61.7351, "X: ours, 61.73 %, is 0.01 percentage points lower than the published 61.74 %."),
    (61.7349, 61.73, "X: ours, 61.73 %, equals the published 61.73 %."),
    (61.73, 61.7349, "X: ours, 61.73 %, equals the published 61.73 %."),
    (58.774, 61.73, "X: ours, 58.77 %, is 2.96 percentage points lower than the published 61.73 %."),
    (62.0, 61.73, "X: ours, 62.00 %, is 0.27 percentage points higher than the published 61.73 %."),
    (61.734, 61.73, "X: ours, 61.73 %, equals the published 61.73 %."),
    # 61.736 prints as 61.74: the words follow the printed numbers, not the hidden digits
    (61.736, 61.732, "X: ours, 61.74 %, is 0.01 percentage points higher than the published 61.73 %."),
    (61.0, 62.0, "X: ours, 61.00 %, is 1.00 percentage points lower than the published 62.00 %."),
])
def test_ours_against_published_in_words(ours, published, expected):
    assert compare_in_words("X", ours, published) == expected


def test_a_number_the_study_does_not_publish_is_said_so():
    assert compare_in_words("X", None, None) == "X: the study publishes no number."
    assert compare_in_words("X", 55.555, None) == "X: the study publishes no number. Ours: 55.55 %."


def test_no_finished_runs_is_said_so_and_nothing_is_filled_in():
    assert compare_in_words("X", None, 61.73) == (
        "X: no finished runs yet, so nothing stands beside the published 61.73 %.")


def test_published_numbers_without_finished_runs_of_ours_stay_empty(tmp_path, params):
    """Only the baseline has finished: every other row of the comparison is marked, never filled in."""
    for seed in (0, 1, 2):
        write_run(tmp_path / "runs", params, f"sweep/baseline/seed{seed}")
    markdown_path, _ = write_report(params, tmp_path / "runs", tmp_path / "report.md", tmp_path / "figures")
    text = markdown_path.read_text()
    rows = comparison_table(text)
    assert rows["Final baseline"]["ours (%)"] == "52.33"
    assert rows["Final baseline"]["our configuration"] == "sweep/baseline (3/3 seeds)"
    for quantity in ("Best tuning configuration (Table 1)", "Best manifold mixup"):
        assert (rows[quantity]["ours (%)"], rows[quantity]["ours − published (points)"]) == ("—", "—")
        assert rows[quantity]["our configuration"] == "— (—)"
        assert f"- {quantity}: no finished runs yet, so nothing stands beside the published" in text
    at_published = rows["Mixup at the published best (S={0,2}, α=4)"]
    assert (at_published["ours (%)"], at_published["our configuration"]) == ("—", "S={0,2}, α=4 (0/3 seeds)")
    assert "Ours cannot be computed yet (the baseline or every mixup configuration lacks finished runs)." in text


def test_the_html_page_is_a_standard_document_titled_like_the_report(tmp_path, params, runs_root):
    markdown_path, html_path = write_report(params, runs_root, tmp_path / "study.md", tmp_path / "figures")
    assert html_path == tmp_path / "study.html"
    heading = markdown_path.read_text().splitlines()[0]
    assert heading == "# Mixing regularisers on small-data CIFAR-10: results"
    page = html_path.read_text()
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    assert "<title>Mixing regularisers on small-data CIFAR-10: results</title>" in page


# --- the calibration claims, on runs whose ECE before and after scaling are set by hand -------------

CALIBRATION_GRID = ("sweep.alphas=[4.0]", "sweep.layer_sets=[[0, 2]]", "sweep.seeds=[0, 1, 2]",
                    "sweep.cutmix_alphas=[]", "sweep.cutout_sizes=[]", "sweep.label_smoothing=[0.1]")


def write_calibrated_runs(root, params, name, ece, ts_ece):
    """One run per seed of ``name`` whose test ECE before and after scaling are the given values."""
    for seed, (raw, scaled) in enumerate(zip(ece, ts_ece)):
        folder = write_run(root, params, f"sweep/{name}/seed{seed}")
        record = json.loads((folder / "metrics.json").read_text())
        record["metrics"]["test"]["ece"], record["metrics"]["test_ts"]["ece"] = raw, scaled
        (folder / "metrics.json").write_text(json.dumps(record))


def claims_of(tmp_path, baseline, mixup, smoothing=None):
    """The report's calibration claims for runs with these (raw ECEs, scaled ECEs) per configuration."""
    params = small_params(*CALIBRATION_GRID)
    root = tmp_path / "runs"
    write_calibrated_runs(root, params, "baseline", *baseline)
    write_calibrated_runs(root, params, "manifold_S0-2_alpha4", *mixup)
    if smoothing:
        write_calibrated_runs(root, params, "label_smoothing_eps0.1", *smoothing)
    text = write_report(params, root, tmp_path / "report.md", tmp_path / "figures")[0].read_text()
    return [line for line in text.splitlines() if line.startswith(("- Wang", "- Thulasidasan"))]


def welch(a, b):
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(0.95)
    return np.mean(a) - np.mean(b), interval.low, interval.high


RAW_BASE, RAW_MIX = [0.30, 0.28, 0.26], [0.05, 0.04, 0.06]


def test_wang_is_contradicted_only_when_mixup_is_better_after_scaling_beyond_the_spread(tmp_path):
    base_ts, mix_ts = [0.030, 0.032, 0.031], [0.010, 0.011, 0.012]
    (wang,) = claims_of(tmp_path, (RAW_BASE, base_ts), (RAW_MIX, mix_ts))
    diff, low, high = welch(mix_ts, base_ts)
    assert f"0.050 vs 0.280 raw, 0.011 vs 0.031 after scaling; mixup minus baseline after scaling: {diff:+.3f}" in wang
    assert f"95% Welch interval [{low:+.3f}, {high:+.3f}]." in wang
    assert wang.endswith("**Does not hold here**: mixup stays better calibrated after scaling, beyond the seeds' spread.")


def test_wang_is_not_contradicted_when_the_interval_holds_zero(tmp_path):
    base_ts, mix_ts = [0.010, 0.030, 0.020], [0.012, 0.018, 0.015]  # mixup's mean is lower, within the spread
    (wang,) = claims_of(tmp_path, (RAW_BASE, base_ts), (RAW_MIX, mix_ts))
    assert wang.endswith("**Not contradicted here**: the interval holds zero, so after scaling mixup is not shown "
                         "to be better calibrated (it was before scaling).")


def test_wang_holds_when_mixup_is_worse_after_scaling(tmp_path):
    (wang,) = claims_of(tmp_path, (RAW_BASE, [0.010, 0.011, 0.012]), (RAW_MIX, [0.030, 0.032, 0.031]))
    assert wang.endswith("**Holds here**: after scaling mixup is worse calibrated than the baseline.")


def test_wang_with_one_seed_each_cannot_be_judged(tmp_path):
    (wang,) = claims_of(tmp_path, ([0.30], [0.03]), ([0.05], [0.01]))
    assert "mixup minus baseline after scaling: -0.020, 95% Welch interval —." in wang
    assert wang.endswith("**Cannot be judged here**: an interval needs two finished seeds on each side.")


@pytest.mark.parametrize("smoothing_ece, share, verdict", [
    ([0.10, 0.08, 0.12], "78%", "**Holds here** (more than half)."),  # (0.28 - 0.10) / (0.28 - 0.05) = 0.78
    ([0.20, 0.22, 0.21], "30%", "**Does not hold here** (half or less)."),  # 0.07 / 0.23 = 0.30
    ([0.30, 0.31, 0.32], "0%", "**Does not hold here** (half or less)."),  # worse than the baseline: no share
])
def test_thulasidasan_share_of_mixups_ece_reduction_that_label_smoothing_gives(tmp_path, smoothing_ece, share, verdict):
    scaled = [0.02, 0.02, 0.02]
    _, claim = claims_of(tmp_path, (RAW_BASE, scaled), (RAW_MIX, scaled), smoothing=(smoothing_ece, scaled))
    ls_mean = np.mean(smoothing_ece)
    assert f"baseline 0.280, label smoothing alone (soft labels, no mixing) {ls_mean:.3f}, mixup 0.050" in claim
    assert f"label smoothing gives {share} of mixup's reduction (means over seeds)." in claim
    assert claim.endswith(verdict)


@pytest.mark.parametrize("mixup_raw", [RAW_BASE, [0.40, 0.42, 0.44]], ids=["equal", "higher"])
def test_no_soft_label_claim_when_mixup_did_not_lower_the_ece(tmp_path, mixup_raw):
    scaled = [0.02, 0.02, 0.02]
    claims = claims_of(tmp_path, (RAW_BASE, scaled), (mixup_raw, scaled), smoothing=([0.1, 0.1, 0.1], scaled))
    assert [claim.split(":")[0] for claim in claims] == ["- Wang et al. (CVPR 2023)"]


def test_half_of_mixups_reduction_is_not_more_than_half(tmp_path):
    exact = [0.375] * 3, [0.25] * 3, [0.125] * 3  # binary fractions: the share is exactly 0.5
    scaled = [0.02, 0.02, 0.02]
    _, claim = claims_of(tmp_path, (exact[0], scaled), (exact[2], scaled), smoothing=(exact[1], scaled))
    assert claim.endswith("gives 50% of mixup's reduction (means over seeds). **Does not hold here** (half or less).")


def test_wang_within_the_spread_says_nothing_of_before_when_mixup_was_not_better_then(tmp_path):
    (wang,) = claims_of(tmp_path, (RAW_BASE, [0.010, 0.030, 0.020]), (RAW_BASE, [0.012, 0.018, 0.015]))
    assert wang.endswith("so after scaling mixup is not shown to be better calibrated.")


# --- the comparison's branches ----------------------------------------------------------------------


def report_text(tmp_path, params, runs_root) -> str:
    return write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures")[0].read_text()


def test_every_departure_from_the_study_setting_is_named_in_the_comparison(tmp_path, runs_root):
    departing = small_params("train.epochs=30", "train.lr=0.05")
    text = report_text(tmp_path, departing, runs_root)
    section = text.split("## Our numbers beside the published ones\n\n", 1)[1]
    assert section.startswith(
        "**This configuration is not the study's**, so its numbers are not comparable with the published ones: "
        "`train.epochs` is 30 (the study: 400); `train.lr` is 0.05 (the study: 0.1).\n\n"
        "The study reports its best mixup at S={0,2}, alpha=4. All numbers are mean test accuracy")


def test_the_study_setting_gets_no_departure_warning(tmp_path, params, runs_root):
    section = report_text(tmp_path, params, runs_root).split("## Our numbers beside the published ones\n\n", 1)[1]
    assert section.startswith("The study reports its best mixup at S={0,2}, alpha=4. All numbers are mean")


def test_numbers_the_study_does_not_publish_are_marked_and_no_gain_is_claimed(tmp_path, runs_root):
    unpublished = small_params("report.published.baseline=null", "report.published.best_mixup_config=null")
    text = report_text(tmp_path, unpublished, runs_root)
    rows = comparison_table(text)
    assert (rows["Final baseline"]["published (%)"], rows["Final baseline"]["ours − published (points)"]) == ("—", "—")
    assert "- Final baseline: the study publishes no number. Ours: 52.33 %." in text
    assert "The published gain" not in text
    assert sections_of(text)["Our numbers beside the published ones"].startswith("\nAll numbers are mean test accuracy")
    assert "- Ours, best manifold mixup (S={0}, α=4) minus the baseline, is" in text


def test_without_a_finished_baseline_no_gain_is_computed(tmp_path, params):
    for seed in (0, 1, 2):
        write_run(tmp_path / "runs", params, f"sweep/manifold_S0-2_alpha4/seed{seed}")
    text = report_text(tmp_path, params, tmp_path / "runs")
    assert ("- The published gain of mixup over the baseline is +5.66 points. Ours cannot be computed yet "
            "(the baseline or every mixup configuration lacks finished runs).") in text


@pytest.mark.parametrize("seeds_per_cell, optimistic", [
    ({"manifold_S0-2_alpha4": 2}, False),  # one of the grid's cells ran: nothing was picked
    ({"manifold_S0-2_alpha4": 2, "manifold_S0_alpha1": 1}, True),  # two ran, one of them with one seed
])
def test_the_gain_is_optimistic_when_two_or_more_cells_ran(tmp_path, params, seeds_per_cell, optimistic):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, params, f"sweep/baseline/seed{seed}")
    for name, seeds in seeds_per_cell.items():
        for seed in range(seeds):
            write_run(root, params, f"sweep/{name}/seed{seed}")
    text = report_text(tmp_path, params, root)
    assert ("read this gain as optimistic" in text) is optimistic
    assert ("it is the only manifold mixup configuration run" in text) is not optimistic


def test_the_gain_sentence_gives_the_interval_of_the_differences_table(tmp_path, params, runs_root):
    from mixstudy.results.analysis import analyse, best_mixing, mixing_differences

    analysis = analyse(params, runs_root)
    row = mixing_differences(analysis).set_index("name").loc[best_mixing(analysis)["name"]]
    text = report_text(tmp_path, params, runs_root)
    assert (f"minus the baseline, is {row['diff']:+.2f} points (95% Welch interval "
            f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}], p = {row['p']:.3f});") in text


# --- the report's structure: its sections in order, each figure under its section ---------------------

SECTIONS = {
    "Headline: manifold mixup against the baseline": [],
    "Our numbers beside the published ones": [],
    "Runs": [],
    "Baseline tuning (Table 1)": ["tuning_bars"],
    "Final baseline": [],
    "Manifold mixup sweep (Table 3)": ["sweep_acc_heatmap", "acc_vs_alpha", "acc_vs_alpha_panels"],
    "Differences to the baseline": ["sweep_delta_heatmap"],
    "CutMix, label smoothing and Cutout": [],
    "Training and calibration: baseline vs best mixup": ["training_curves", "reliability"],
    "Calibration after temperature scaling": ["calibration_scaling", "reliability_scaled"],
    "Mixup's theory, measured": ["smoothness_vs_accuracy", "between_vs_lambda"],
    "Which epoch is reported": ["test_curves"],
    "The published cells beside ours": ["published_vs_ours"],
    "Figure 1": ["fig1_mixing_examples"],
    "Configuration used": [],
}


def sections_of(text: str) -> dict[str, str]:
    """The report's ``## `` sections by heading, in order (the title and its lines before them left out)."""
    parts = re.split(r"^## (.+)\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_figure_is_linked_once_with_its_caption_under_its_section(tmp_path, params, runs_root):
    from mixstudy.report.results import FIGURE_CAPTIONS

    figures = tmp_path / "results" / "figures"
    figures.mkdir(parents=True)
    for name in FIGURES:
        (figures / f"{name}.png").write_bytes(b"png")
    text = write_report(params, runs_root, tmp_path / "results" / "report.md", figures)[0].read_text()
    sections = sections_of(text)
    assert list(sections) == list(SECTIONS)
    for heading, body in sections.items():
        links = re.findall(r"!\[([^\]]*)\]\(figures/(\w+)\.png\)\n\n\*([^*]*)\*\n", body)
        assert [name for _, name, _ in links] == SECTIONS[heading], heading
        for alt, name, caption in links:
            assert alt == caption == FIGURE_CAPTIONS[name]
    assert sorted(sum(SECTIONS.values(), [])) == sorted(FIGURES) == sorted(FIGURE_CAPTIONS)


def test_the_runs_section_counts_runs_and_their_compute_time(tmp_path, params, runs_root):
    hours = {stage: 360 * len(list((runs_root / stage).glob("*/seed*/metrics.json"))) / 3600
             for stage in ("tuning", "sweep")}  # write_run records 360 s per run
    runs = sections_of(report_text(tmp_path, params, runs_root))["Runs"]
    assert runs.startswith(
        "\n30 runs are in the grids: 28 finished, 1 failed, 1 missing, 0 with a configuration other than their run "
        "id asks for. Only finished runs enter the tables. Compute time of the runs with results: "
        f"{hours['tuning'] + hours['sweep']:.1f} hours (tuning {hours['tuning']:.1f}, sweep {hours['sweep']:.1f}).\n"
        "\nPrecision: 28 finished runs trained in float32.\n"
        "\n| run_id ")


def test_the_runs_section_lists_twenty_problems_and_counts_the_rest(tmp_path, params):
    for seed in (0, 1, 2):
        write_run(tmp_path / "runs", params, f"sweep/baseline/seed{seed}")
    runs = sections_of(report_text(tmp_path, params, tmp_path / "runs"))["Runs"]
    table = [line for line in runs.splitlines() if line.startswith("|")]
    assert [cell.strip() for cell in table[0].strip("|").split("|")] == ["run_id", "problem", "reason"]
    assert len(table) == 2 + 20
    assert "|\n\n… and 7 more, all listed in `problems.csv` (written by `mixstudy aggregate`).\n" in runs


SELECTION = {"scheduler": "cosine", "momentum": 0.9, "weight_decay": 0.001}


def test_the_sweeps_tuning_choice_is_stated_with_how_it_was_chosen(tmp_path, params, runs_root):
    from mixstudy.results.selection import SELECTION_RULE

    selection = tmp_path / "selection.yaml"
    selection.write_text(yaml.safe_dump({**SELECTION, "selected_by": "mean validation accuracy", "mean_acc": 0.4712}))
    text = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures", selection)[0].read_text()
    assert (f"The best tuning configuration, here and for the sweep, is {SELECTION_RULE}.\n\n"
            "The sweep trains with the tuning's choice: cosine, momentum 0.9, weight decay 0.001 "
            "(mean validation accuracy: 47.12 %).\n") in text
    assert "now rank" not in text  # the choice is still the finished runs' best

    selection.write_text(yaml.safe_dump({**SELECTION, "scheduler": "step"}))  # no record of how
    text = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures", selection)[0].read_text()
    assert (f"is {SELECTION_RULE}.\n\nThe sweep trains with the tuning's choice: step, momentum 0.9, weight decay "
            "0.001.\n\n**The finished tuning runs now rank cosine_mom0.9_wd0.001 first**, not the choice above: "
            "run `mixstudy select` again and retrain the sweep.\n") in text


def yaml_blocks(section: str) -> list[tuple[str, dict]]:
    """(the line that introduces it, the parsed block) for each YAML block of a section."""
    found = re.findall(r"([^\n]+):\n\n```yaml\n(.*?)\n```\n", section, flags=re.DOTALL)
    return [(intro, yaml.safe_load(block)) for intro, block in found]


def test_the_configuration_section_reads_back_as_the_settings_used(tmp_path, params, runs_root):
    """Every YAML block parses back to the parameters (keys in params.yaml's order), and the sweep's
    training settings are the ones with the tuning choice applied."""
    from mixstudy.runs import study

    selection = tmp_path / "selection.yaml"
    selection.write_text(yaml.safe_dump({**SELECTION, "weight_decay": 0.0001}))
    text = write_report(params, runs_root, tmp_path / "report.md", tmp_path / "figures", selection)[0].read_text()
    blocks = yaml_blocks(sections_of(text)["Configuration used"])
    expected = [
        ("Data subset and network", {"subset": params["subset"], "model": {"name": params["model"]["name"], **params["model"][params["model"]["name"]]}}),
        ("Tuning selection, applied to the final baseline and every sweep run",
         {"selection": {**SELECTION, "weight_decay": 0.0001}}),
        ("Training of the final baseline and the sweep runs (params.yaml with the selection applied)",
         {"train": study.run_config(params, 0, selection={**SELECTION, "weight_decay": 0.0001})["train"]}),
        ("Mixing defaults and evaluation", {"mixing": params["mixing"], "evaluation": params["evaluation"]}),
        ("Grids", {"tuning": params["tuning"], "sweep": params["sweep"]}),
    ]
    assert blocks == expected
    assert blocks[2][1]["train"]["weight_decay"] == 0.0001 != params["train"]["weight_decay"]
    for (_, block), (_, wanted) in zip(blocks, expected):
        for key in wanted:
            assert list(block[key]) == list(wanted[key]), key  # params.yaml's order, not sorted


def test_without_a_selection_the_configuration_shows_params_training_settings(tmp_path, params, runs_root):
    blocks = dict(yaml_blocks(sections_of(report_text(tmp_path, params, runs_root))["Configuration used"]))
    assert blocks["Training of the final baseline and the sweep runs (params.yaml; no tuning selection found)"] == {
        "train": params["train"]}
    assert not any(intro.startswith("Tuning selection") for intro in blocks)


def test_runs_without_a_validation_split_get_no_calibration_or_epoch_section(tmp_path, params):
    """Runs trained with subset.val_per_class 0 record no scaled or best-validation metrics."""
    root = tmp_path / "runs"
    write_all_runs(root, params)
    for record_path in root.glob("*/*/seed*/metrics.json"):
        record = json.loads(record_path.read_text())
        for key in ("test_ts", "test_best_val"):
            del record["metrics"][key]
        record_path.write_text(json.dumps(record))
    figures = tmp_path / "figures"
    figures.mkdir()
    for name in FIGURES:
        (figures / f"{name}.png").write_bytes(b"png")
    text = write_report(params, root, tmp_path / "report.md", figures)[0].read_text()
    # nor any evaluation.json here: no theory section either (test_theory_tables checks it alone)
    left_out = ("Calibration after temperature scaling", "Mixup's theory, measured", "Which epoch is reported")
    assert list(sections_of(text)) == [heading for heading in SECTIONS if heading not in left_out]


def test_a_study_setting_that_names_no_parameter_is_a_departure():
    from mixstudy.core.config import load_params
    from mixstudy.report.comparison import departures_from_study

    params = load_params(["params.yaml"])
    params["report"]["published"]["setting"]["train.epochs.per_cycle"] = 10  # train.epochs is a number
    params["report"]["published"]["setting"]["nowhere.at_all"] = 1
    assert departures_from_study(params) == ["`train.epochs.per_cycle` is None (the study: 10)",
                                             "`nowhere.at_all` is None (the study: 1)"]


# --- the headline: the fixed comparison and, when its interval holds zero, why -------------------------

HEADLINE = "Headline: manifold mixup against the baseline"
NOISE = "**The interval does not exclude zero: these runs cannot tell the gain from seed-to-seed noise.** Why: "


def headline_of(tmp_path, params, baseline, mixup, mixup_name="manifold_S0-2_alpha4"):
    """The headline of a report on runs with these test accuracies (fractions), one run per seed."""
    root = tmp_path / "runs"
    for seed, acc in enumerate(baseline):
        write_run(root, params, f"sweep/baseline/seed{seed}", acc=acc)
    for seed, acc in enumerate(mixup):
        write_run(root, params, f"sweep/{mixup_name}/seed{seed}", acc=acc)
    return sections_of(report_text(tmp_path, params, root))[HEADLINE]


def gain_line(label, how, mixup, baseline):
    mixup, baseline = 100 * np.array(mixup), 100 * np.array(baseline)
    diff, low, high = welch(mixup, baseline)
    return (f"- **Gain of manifold mixup ({label}; {how}) over the baseline: {diff:+.2f} points** of test accuracy, "
            f"95% Welch interval [{low:+.2f}, {high:+.2f}] ({mixup.mean():.2f}% vs {baseline.mean():.2f}%; "
            f"{len(mixup)} and {len(baseline)} seeds).\n")


BASE = [0.50, 0.52, 0.54]


def test_a_gain_whose_interval_excludes_zero_opens_the_report_with_nll_and_ece(tmp_path, params):
    mixup = [0.555, 0.585, 0.615]  # the interval's low end lies between 0 and 1 point
    headline = headline_of(tmp_path, params, BASE, mixup)
    assert 0 < welch(mixup, BASE)[1] < 0.01
    assert headline == ("\n" + gain_line("S={0,2}, α=4", "the study's best cell, fixed in advance", mixup, BASE)
                        + "- Test NLL 1.480 → 1.415; ECE 0.052 → 0.058 (baseline → mixup, means over seeds).\n\n")


def test_an_interval_that_holds_zero_is_said_first_with_the_seeds_as_the_reason(tmp_path, params):
    mixup = [0.435, 0.465, 0.495]  # the interval's high end lies between 0 and 1 point
    headline = headline_of(tmp_path, params, BASE, mixup)
    assert 0 < welch(mixup, BASE)[2] < 0.01
    assert headline.startswith(
        "\n" + NOISE + "3 and 3 seeds leave a wide interval (the t quantile for two seeds per side is about 4.3).\n\n"
        + gain_line("S={0,2}, α=4", "the study's best cell, fixed in advance", mixup, BASE))


def test_one_seed_a_short_budget_and_a_departure_are_each_given_as_reasons(tmp_path):
    short = small_params("train.epochs=399")
    headline = headline_of(tmp_path, short, [0.50], [0.60])
    assert headline.startswith(
        "\n" + NOISE + "fewer than two finished seeds on a side, so no interval can be computed; 399 epochs: mixup "
        "needs the long budget (on a narrow network it measured no gain at 100 epochs and a clear gain at 400); "
        "this configuration departs from the study's (see below).\n\n- **Gain of manifold mixup")
    assert "95% Welch interval — (60.00% vs 50.00%; 1 and 1 seeds)." in headline


def test_our_best_cell_stands_in_when_the_studys_has_not_run_and_is_called_optimistic(tmp_path, params):
    mixup = [0.555, 0.585, 0.615]
    headline = headline_of(tmp_path, params, BASE, mixup, mixup_name="manifold_S0_alpha1")
    assert gain_line("S={0}, α=1", "our best cell, chosen on the test set, so optimistic", mixup, BASE) in headline


def test_without_a_finished_mixup_run_the_headline_says_it_is_not_available(tmp_path, params):
    assert headline_of(tmp_path, params, BASE, []) == (
        "\nNot available yet: the baseline or every manifold mixup configuration lacks finished runs.\n\n")


def test_the_report_opens_with_its_title_and_the_size_of_the_training_set(tmp_path, runs_root):
    text = report_text(tmp_path, small_params("subset.per_class=20"), runs_root)
    assert text.startswith(
        "# Mixing regularisers on small-data CIFAR-10: results\n\n20 training images per class (200 in all; the "
        "study's own images); network `cnn13`, the study's network (its Figure 2; the CNN-13 of the semi-supervised "
        "literature). Generated by `mixstudy report` from the run folders.\n"
    )


def test_the_report_of_another_network_on_a_seeded_draw_says_so(tmp_path, runs_root, params):
    from mixstudy.report.setting import setting_lines

    cheap_params = {**params, "model": {**params["model"], "name": "convnet"}, "subset": {**params["subset"], "draw": "seeded"}}
    lines = setting_lines(cheap_params)
    assert "a seeded draw, not the study's images" in lines and "network `convnet`, a cheap convnet" in lines
    assert "The study's network, cnn13, is the default of a full run (params.yaml)." in lines


def test_the_published_section_counts_the_cells_we_ran_and_states_each_claims_verdict(tmp_path, params, runs_root):
    from mixstudy.results import published
    from mixstudy.results.analysis import analyse

    section = sections_of(report_text(tmp_path, params, runs_root))["The published cells beside ours"]
    assert section.startswith("\nEach of the study's 49 Table 3 cells (mean of its five runs) beside ours, where we "
                              "ran it (4 cells); a cell we did not run is marked and left empty.\n")
    assert "**CIFAR-10. Table 3: S × α**" in section and "**CIFAR-10. Table 1: tuning**" in section
    claims = published.check_claims(analyse(params, runs_root))
    bullets = "\n".join(f"- {c.text} **{c.verdict.capitalize()}**: {c.evidence}." for c in claims)
    assert "The study's claims, checked on our runs (cell means over seeds):\n\n" + bullets + "\n" in section
    assert section.rstrip().endswith(published.chance_difference(analyse(params, runs_root)))


def test_a_cell_with_one_finished_seed_counts_as_run(tmp_path, params):
    write_run(tmp_path / "runs", params, "sweep/baseline/seed0")
    write_run(tmp_path / "runs", params, "sweep/manifold_S0-2_alpha4/seed0")
    section = sections_of(report_text(tmp_path, params, tmp_path / "runs"))["The published cells beside ours"]
    assert "where we ran it (1 cell);" in section
