"""The study's published cells as data, set beside ours cell by cell, and its claims checked,
on fabricated run folders with known accuracies (see test_aggregate)."""

from __future__ import annotations

import hashlib
import math
import statistics
from importlib import resources

import pandas as pd
import pytest

from mixstudy.results import published
from mixstudy.report.document import render_report
from mixstudy.report.comparison import headline_section
from mixstudy.results.aggregation import aggregate
from mixstudy.results.analysis import analyse, mixing_differences

from test_aggregate import ACCURACY, small_params, write_all_runs, write_run

PROVENANCE_SHA256 = {  # as the README beside the files states
    "table1.csv": "407786d054887a2d26bcc4c334425df90c2bf81ded8b71b1e7c6e4262143b7e1",
    "table3.csv": "03ef14163e1f7296a9dd5cb9861cc42205f7003ce7aff32aa50dd36ffda59c4a",
    "manifold_mixup_full_data.csv": "6019aa2784abfd583f3e876a0a9c213a693c9e69523416c147c5051686cb0dc0",
}


@pytest.mark.parametrize("name", sorted(PROVENANCE_SHA256))
def test_published_files_are_the_ones_the_readme_names(name):
    data = (resources.files("mixstudy.results") / "published" / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == PROVENANCE_SHA256[name]
    readme = (resources.files("mixstudy.results") / "published" / "README.md").read_text()
    assert PROVENANCE_SHA256[name] in readme


def test_full_data_results_are_one_cell_per_data_set_and_method():
    table = published.published_full_data()
    assert sorted(table["dataset"].unique()) == ["cifar100", "svhn"]  # data set names as data.name spells them
    assert table.groupby("dataset")["method"].apply(sorted).to_dict() == {
        name: ["input mixup", "manifold mixup", "none"] for name in ("cifar100", "svhn")
    }
    # the paper's finding on each data set: manifold mixup below input mixup below no mixing
    for _, cells in table.groupby("dataset"):
        error = cells.set_index("method")["test_error_pct"]
        assert error["manifold mixup"] < error["input mixup"] < error["none"]


def test_published_tables_match_the_study_summaries():
    table3, table1 = published.published_table3(), published.published_table1()
    assert len(table3) == 49 and len(table1) == 12
    best = table3.loc[table3["test_acc_pct"].idxmax()]
    assert (best["layers"], best["alpha"], best["test_acc_pct"]) == ("0-2", 4.0, 61.73)
    assert table1["test_acc_pct"].max() == 52.59
    by_alpha = table3.groupby("alpha")["test_acc_pct"].mean()
    assert by_alpha[4.0] == pytest.approx(60.17, abs=0.01) and by_alpha[2.0] == pytest.approx(60.12, abs=0.01)


@pytest.fixture
def params():
    return small_params()


@pytest.fixture
def analysis(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params, skip=("sweep/manifold_S0_alpha1/seed1", "sweep/manifold_S0_alpha1/seed2"))
    return analyse(params, root)


def mean_percent(name: str, seeds=(0, 1, 2)) -> float:
    return 100 * sum(ACCURACY[name][s] for s in seeds) / len(seeds)


def test_a_cell_we_ran_shows_its_difference_to_the_published_one(analysis):
    table = published.table3_beside_ours(analysis).set_index("name")
    cell = table.loc["manifold_S0-2_alpha4"]
    assert cell["published"] == 61.73
    assert cell["acc_mean"] == pytest.approx(mean_percent("manifold_S0-2_alpha4"))
    assert cell["difference"] == pytest.approx(mean_percent("manifold_S0-2_alpha4") - 61.73)
    assert cell["status"] == "ran" and cell["n"] == 3
    partial = table.loc["manifold_S0_alpha1"]  # one of three seeds finished: its own mean, its own count
    assert partial["n"] == 1 and partial["acc_mean"] == pytest.approx(100 * ACCURACY["manifold_S0_alpha1"][0])


def test_a_cell_we_did_not_run_is_marked_missing_and_never_filled_in(analysis):
    table = published.table3_beside_ours(analysis).set_index("name")
    assert len(table) == 49
    absent = table.loc["manifold_S1_alpha2"]
    assert absent["status"] == "not in our grid" and absent["n"] == 0
    assert math.isnan(absent["acc_mean"]) and math.isnan(absent["difference"])
    shown = published.beside_table(table.reset_index(), "t", "t").display.set_index("cell")
    assert shown.loc["S={1}, α=2", "ours (%)"] == "—"
    assert shown.loc["S={1}, α=2", "ours − published (points)"] == "—"
    assert shown.loc["S={1}, α=2", "published (%)"] == "59.50"


def test_a_cell_in_the_grid_without_finished_runs_is_not_finished(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params, skip=tuple(f"sweep/manifold_S0_alpha4/seed{s}" for s in range(3)))
    table = published.table3_beside_ours(analyse(params, root)).set_index("name")
    assert table.loc["manifold_S0_alpha4", "status"] == "not finished"
    assert math.isnan(table.loc["manifold_S0_alpha4", "acc_mean"])


def test_aggregate_writes_the_published_cells_beside_ours(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    aggregate(params, root, tmp_path / "tables", tmp_path / "summary.json")
    written = pd.read_csv(tmp_path / "tables" / "table3_published.csv")
    assert len(written) == 49 and (written["status"] == "ran").sum() == 4
    assert (tmp_path / "tables" / "table1_published.md").is_file()


# --- the claims -----------------------------------------------------------------------------


def _claims(tmp_path, params, accuracies: dict) -> dict:
    root = tmp_path / "runs"
    write_all_runs(root, params)
    for run_id, acc in accuracies.items():
        write_run(root, params, run_id, acc=acc)
    return {claim.text: claim for claim in published.check_claims(analyse(params, root))}


def test_claims_on_the_known_accuracies(tmp_path, params):
    claims = _claims(tmp_path, params, {})
    assert claims["Every cell beats the baseline."].holds  # 52.3% baseline, every cell above
    assert claims["S={0,2} is best in most columns."].holds  # S={0,2} beats S={0} at alpha 1 and 4
    assert claims["Manifold mixup beats input mixup (S={0})."].holds
    assert claims["S={2} alone gains least."].holds is None  # S={2} is not in this grid
    assert claims["α=4 and α=2 are the best columns."].holds is None  # no set ran at three alphas


def test_a_cell_below_the_baseline_breaks_the_first_claim_and_is_named(tmp_path, params):
    low = {f"sweep/manifold_S0_alpha1/seed{s}": 0.40 for s in range(3)}
    claims = _claims(tmp_path, params, low)
    claim = claims["Every cell beats the baseline."]
    assert claim.holds is False and "S={0}, α=1" in claim.evidence
    assert claim.verdict == "does not hold"


def test_input_mixup_ahead_breaks_the_manifold_claim(tmp_path, params):
    high = {f"sweep/manifold_S0_alpha4/seed{s}": 0.70 for s in range(3)}
    claims = _claims(tmp_path, params, high)
    assert claims["Manifold mixup beats input mixup (S={0})."].holds is False
    assert claims["S={0,2} is best in most columns."].holds is False  # now best only at alpha 1: 1 of 2


def test_the_best_alphas_claim_within_a_layer_set(tmp_path):
    params = small_params("sweep.alphas=[1.0, 2.0, 4.0]", "sweep.layer_sets=[[0, 2]]")
    root = tmp_path / "runs"
    for spec_alpha, acc in (("1", 0.55), ("2", 0.60), ("4", 0.62)):
        for seed in range(3):
            write_run(root, params, f"sweep/manifold_S0-2_alpha{spec_alpha}/seed{seed}", acc=acc)
    assert published.alphas_4_and_2_best(analyse(params, root)).holds
    for seed in range(3):
        write_run(root, params, f"sweep/manifold_S0-2_alpha1/seed{seed}", acc=0.65)
    assert published.alphas_4_and_2_best(analyse(params, root)).holds is False


def _sd_points(values) -> float:
    return statistics.stdev(100 * v for v in values)


def test_chance_difference_is_the_median_seed_spread_scaled_to_two_means(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    sweep = [name for name in ACCURACY if not name.startswith(("step", "cosine"))]
    sd = statistics.median(_sd_points(ACCURACY[name]) for name in sweep)
    text = published.chance_difference(analyse(params, root))
    assert f"standard deviation of {sd:.2f} points" in text
    assert f"over the {len(sweep)} configurations" in text
    assert f"differ by about {sd * math.sqrt(2 / 3):.2f} points" in text  # three seeds per cell
    assert "means of 3 seeds per cell" in text


def test_chance_difference_uses_the_cell_with_fewest_seeds(tmp_path, params):
    root = tmp_path / "runs"
    one_seed = ("sweep/manifold_S0_alpha4/seed1", "sweep/manifold_S0_alpha4/seed2")
    write_all_runs(root, params, skip=one_seed)
    with_two = [name for name in ACCURACY if not name.startswith(("step", "cosine")) and name != "manifold_S0_alpha4"]
    sd = statistics.median(_sd_points(ACCURACY[name]) for name in with_two)
    text = published.chance_difference(analyse(params, root))
    assert f"over the {len(with_two)} configurations" in text  # the one-seed cell has no spread
    assert f"two means of 1 seed differ by about {sd * math.sqrt(2):.2f} points" in text
    assert "means of 1 to 3 seeds per cell" in text


def test_chance_difference_without_two_seeds_anywhere_says_provisional(tmp_path):
    params = small_params("sweep.seeds=[0]")
    root = tmp_path / "runs"
    write_all_runs(root, params)
    assert "provisional" in published.chance_difference(analyse(params, root))


# --- the report's headline ------------------------------------------------------------------


def test_headline_opens_the_report_with_the_fixed_cell_and_its_interval(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    analysis = analyse(params, root)
    differences = mixing_differences(analysis)
    row = differences.set_index("name").loc["manifold_S0-2_alpha4"]
    text = headline_section(analysis, differences)
    assert "S={0,2}, α=4; the study's best cell, fixed in advance" in text
    assert f"{row['diff']:+.2f} points" in text
    assert f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]" in text
    assert row["ci_low"] > 0 and "does not exclude zero" not in text
    report = render_report(analysis, tmp_path / "figures", tmp_path, None)
    assert report.index("## Headline") < report.index("## Our numbers beside the published ones")


def test_headline_says_first_when_the_interval_includes_zero(tmp_path, params):
    root = tmp_path / "runs"
    write_all_runs(root, params)
    for seed, acc in enumerate((0.45, 0.62, 0.58)):  # around the baseline, widely spread
        write_run(root, params, f"sweep/manifold_S0-2_alpha4/seed{seed}", acc=acc)
    analysis = analyse(params, root)
    text = headline_section(analysis, mixing_differences(analysis))
    body = text.split("\n\n", 1)[1]
    assert body.startswith("**The interval does not exclude zero")
    assert "3 and 3 seeds" in body
