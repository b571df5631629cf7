"""The theory section's tables and claims (results.theory_tables, report.theory) from fabricated run folders
with evaluation.json files, checked against statistics computed by hand (scipy's t, the formulas)."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats

from mixstudy.runs import run_folder, study
from mixstudy.results.analysis import analyse
from mixstudy.report.theory import between_claims, smoothness_claims, transformation_claims, theory_section
from mixstudy.model.theory import theta_bar
from mixstudy.results.theory_tables import between_table, smoothness_table, transformation_table
from test_aggregate import small_params, welch_by_hand, write_all_runs

# Input-Jacobian norms per configuration, seeds 0, 1, 2: every mixing cell below the baseline.
JACOBIAN = {"baseline": [10.0, 11.0, 12.5], "manifold_S0_alpha1": [6.0, 6.5, 7.5], "manifold_S0_alpha4": [5.0, 5.2, 5.9],
            "manifold_S0-2_alpha1": [7.0, 7.4, 7.1], "manifold_S0-2_alpha4": [6.1, 6.6, 6.2], "cutmix_alpha1": [9.0, 9.9, 9.4],
            "label_smoothing_eps0.1": [8.0, 8.8, 8.1], "cutout_16": [11.0, 12.0, 11.6]}
# Test accuracy (fraction) as trained and with the transformation ("both"): input mixup gains, S={0,2} loses.
BOTH_MINUS_PLAIN = {"manifold_S0_alpha1": [0.010, 0.014, 0.011], "manifold_S0_alpha4": [0.020, 0.025, 0.021],
                    "manifold_S0-2_alpha1": [-0.010, -0.014, -0.012], "manifold_S0-2_alpha4": [-0.03, -0.04, -0.035],
                    "cutmix_alpha1": [-0.01, 0.01, 0.0]}
THEORY = {"jacobian_images": 1000}  # as recorded before theory.between_pairs existed: read as between_pairs 0
# In-between measures (Zhang et al.): miss rate at lambda = 0.5 per configuration, seeds 0, 1, 2, falling
# linearly to 0 at lambda = 1; the loss's gradient norm GRADIENT * (2 - lambda). Mixing cells below the baseline.
MISS = {"baseline": [0.30, 0.34, 0.32], "manifold_S0_alpha1": [0.10, 0.12, 0.11], "manifold_S0_alpha4": [0.08, 0.07, 0.09],
        "manifold_S0-2_alpha1": [0.20, 0.21, 0.19], "manifold_S0-2_alpha4": [0.15, 0.14, 0.16], "cutmix_alpha1": [0.31, 0.33, 0.35],
        "label_smoothing_eps0.1": [0.25, 0.27, 0.26], "cutout_16": [0.30, 0.31, 0.36]}
GRADIENT = {name: [10 * miss for miss in misses] for name, misses in MISS.items()}
BETWEEN_PAIRS = 20


def between_rows(name: str, seed: int) -> list[dict]:
    return [{"lambda": lam, "miss_rate": MISS[name][seed] * 2 * (1 - lam), "gradient_norm": GRADIENT[name][seed] * (2 - lam),
             "gradient_norm_std": 0.1} for lam in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]


def write_evaluation(folder, jacobian: float, gain: float | None, alpha: float, model_sha256: str = "ab" * 32,
                     between: list | None = None) -> None:
    """An evaluation.json as `mixstudy evaluate` writes it, and the model.pt sha256 its metrics.json records."""
    record = json.loads((folder / "metrics.json").read_text())
    record["files"] = {"model.pt": "ab" * 32}
    (folder / "metrics.json").write_text(json.dumps(record))
    plain = record["metrics"]["test"]
    evaluation = {
        "metrics": record["metrics"],
        "smoothness": {"images": 1000, "jacobian_logits": jacobian, "jacobian_log_softmax": jacobian * 1.2},
        "provenance": {"model_sha256": model_sha256, "theory": THEORY},
    }
    if between is not None:
        evaluation["between"] = {"pairs": BETWEEN_PAIRS, "seed": 0, "labels": "as trained", "by_lambda": between}
        evaluation["provenance"]["theory"] = {**THEORY, "between_pairs": BETWEEN_PAIRS}
    if gain is not None:
        both = {"acc": plain["acc"] + gain, "nll": plain["nll"] - gain, "ece": plain["ece"] - gain / 2}
        evaluation["shrinkage"] = {"theta_bar": theta_bar(alpha), "plain": plain, "inputs_shrunk": both,
                                   "logits_rescaled": plain, "both": both}
    (folder / run_folder.EVALUATION_FILE).write_text(json.dumps(evaluation))


def write_evaluations(root, params) -> None:
    """An evaluation.json (the numbers above) in every finished sweep run folder under ``root``; with the
    in-between measures where ``params`` ask for them (theory.between_pairs)."""
    assert params["theory"]["between_pairs"] in (0, BETWEEN_PAIRS)
    for spec in study.sweep_runs(params):
        folder = spec.folder(root)
        if not (folder / "metrics.json").is_file() or json.loads((folder / "metrics.json").read_text())["status"] != "ok":
            continue
        alpha = float(spec.overrides["mixing"]["alpha"])
        write_evaluation(folder, JACOBIAN[spec.name][spec.seed],
                         BOTH_MINUS_PLAIN[spec.name][spec.seed] if spec.name in BOTH_MINUS_PLAIN else None, alpha,
                         between=between_rows(spec.name, spec.seed) if params["theory"]["between_pairs"] else None)


@pytest.fixture
def evaluated(tmp_path):
    params = small_params()
    root = tmp_path / "runs"
    write_all_runs(root, params)
    write_evaluations(root, params)
    return params, root


def t_interval(values, confidence=0.95):
    mean = statistics.mean(values)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def test_the_smoothness_table_holds_each_configurations_norm_and_its_welch_difference(evaluated):
    params, root = evaluated
    data = smoothness_table(analyse(params, root)).data.set_index("name")
    assert list(data.index) == [spec.name for spec in study.sweep_runs(params) if spec.seed == 0]
    for name, norms in JACOBIAN.items():
        assert data.loc[name, ["jacobian_logits_mean", "jacobian_logits_low", "jacobian_logits_high"]].tolist() == pytest.approx(t_interval(norms))
        if name != "baseline":
            diff, low, high, p = welch_by_hand(norms, JACOBIAN["baseline"])
            assert data.loc[name, ["jacobian_diff", "jacobian_ci_low", "jacobian_ci_high", "jacobian_p"]].tolist() == pytest.approx([diff, low, high, p])
    assert data["n"].eq(3).all()


def test_a_stale_or_missing_evaluation_is_left_out(evaluated):
    params, root = evaluated
    folder = study.find_run(params, "sweep/baseline/seed2").folder(root)
    write_evaluation(folder, 99.0, None, 0.0, model_sha256="cd" * 32)  # computed from another model.pt
    (study.find_run(params, "sweep/cutout_16/seed0").folder(root) / run_folder.EVALUATION_FILE).unlink()
    data = smoothness_table(analyse(params, root)).data.set_index("name")
    assert data.loc["baseline", "n"] == 2 and data.loc["baseline", "jacobian_logits_mean"] == pytest.approx(10.5)
    assert data.loc["cutout_16", "n"] == 2
    other = {**params, "theory": {"jacobian_images": 10}}  # another setting: every evaluation is stale
    assert smoothness_table(analyse(other, root)) is None


def test_the_test_time_table_pairs_each_runs_effect_and_marks_the_papers_claim(evaluated):
    params, root = evaluated
    data = transformation_table(analyse(params, root)).data.set_index("name")
    assert set(data.index) == set(BOTH_MINUS_PLAIN)  # mixing runs only: no baseline, label smoothing, Cutout
    assert data["claimed"].to_dict() == {name: name.startswith("manifold_S0_") for name in data.index}
    for name, gains in BOTH_MINUS_PLAIN.items():
        if len(set(gains)) > 1:
            expected = t_interval([100 * g for g in gains])  # accuracies in percentage points
            assert data.loc[name, ["effect_acc", "effect_acc_low", "effect_acc_high"]].tolist() == pytest.approx(expected)
    assert data.loc["manifold_S0_alpha4", "theta_bar"] == pytest.approx(theta_bar(4.0))


def test_the_claims_are_judged_from_the_intervals(evaluated):
    params, root = evaluated
    analysis = analyse(params, root)
    smoothness = smoothness_claims(smoothness_table(analysis).data)
    assert smoothness[0].startswith("Smoothness, input mixup (S={0}): **holds here**: 2 of 2")
    assert smoothness[1].startswith("Smoothness, manifold mixup (other S): **holds here**: 2 of 2")
    claims = transformation_claims(transformation_table(analysis).data)
    by_cell = {claim.split(", ")[1].split(" ")[0] if "no claim" not in claim else claim.split("no claim, ")[1].split(" ")[0]: claim
               for claim in claims}
    assert "accuracy improves, calibration improves; **holds here**" in by_cell["manifold_S0_alpha4"]
    assert "where the paper makes no claim" in by_cell["manifold_S0-2_alpha4"]
    assert "accuracy worsens, calibration worsens" in by_cell["manifold_S0-2_alpha4"]
    assert "accuracy no change beyond the seeds' spread" in by_cell["cutmix_alpha1"]


def test_a_larger_norm_than_the_baseline_is_said_not_to_hold(evaluated):
    params, root = evaluated
    for spec in study.sweep_runs(params):
        if spec.name.startswith("manifold_S0_"):
            write_evaluation(spec.folder(root), 20.0 + spec.seed, BOTH_MINUS_PLAIN[spec.name][spec.seed], 1.0)
    claims = smoothness_claims(smoothness_table(analyse(params, root)).data)
    assert claims[0].startswith("Smoothness, input mixup (S={0}): **does not hold here** (the norm is larger)")


def test_without_any_evaluation_the_report_has_no_theory_section(tmp_path):
    params = small_params()
    write_all_runs(tmp_path / "runs", params)
    analysis = analyse(params, tmp_path / "runs")
    assert smoothness_table(analysis) is None and transformation_table(analysis) is None
    assert theory_section(analysis, lambda table: table.markdown(), lambda name: "") == ""


def test_norms_that_cannot_be_told_from_the_baselines_are_not_shown_to_be_smaller(evaluated):
    params, root = evaluated
    for spec in study.sweep_runs(params):
        if spec.name.startswith("manifold_S0_"):  # around the baseline's 10.0, 11.0, 12.5
            write_evaluation(spec.folder(root), [9.0, 12.0, 12.4][spec.seed], BOTH_MINUS_PLAIN[spec.name][spec.seed], 1.0)
    claims = smoothness_claims(smoothness_table(analyse(params, root)).data)
    assert claims[0].startswith("Smoothness, input mixup (S={0}): **not shown here** (every interval holds zero): 0 of 2")


@pytest.fixture
def evaluated_between(tmp_path):
    params = small_params("theory.between_pairs=20")
    root = tmp_path / "runs_between"
    write_all_runs(root, params)
    write_evaluations(root, params)
    return params, root


def test_an_evaluation_predating_between_pairs_is_current_while_they_are_off_and_stale_once_asked(evaluated, evaluated_between):
    params, root = evaluated  # recorded with {"jacobian_images": 1000}, no between_pairs
    folder = study.find_run(params, "sweep/baseline/seed0").folder(root)
    assert params["theory"] == {**THEORY, "between_pairs": 0} and run_folder.evaluation_is_current(folder, params["theory"])
    assert not run_folder.evaluation_is_current(folder, {**params["theory"], "between_pairs": BETWEEN_PAIRS})
    assert between_table(analyse(params, root)) is None
    params, root = evaluated_between
    assert run_folder.evaluation_is_current(study.find_run(params, "sweep/baseline/seed0").folder(root), params["theory"])


def test_the_between_table_holds_each_lambdas_miss_rate_and_gradient_norm_and_their_welch_differences(evaluated_between):
    params, root = evaluated_between
    data = between_table(analyse(params, root)).data
    assert sorted(set(data["lambda"])) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0] and data["n"].eq(3).all()
    for name in MISS:
        rows = data[data["name"] == name].set_index("lambda")
        for lam in (0.5, 0.8):
            misses = [100 * miss * 2 * (1 - lam) for miss in MISS[name]]  # percent
            gradients = [gradient * (2 - lam) for gradient in GRADIENT[name]]
            assert rows.loc[lam, ["miss_mean", "miss_low", "miss_high"]].tolist() == pytest.approx(t_interval(misses))
            assert rows.loc[lam, ["grad_mean", "grad_low", "grad_high"]].tolist() == pytest.approx(t_interval(gradients))
            if name != "baseline":
                reference = [100 * miss * 2 * (1 - lam) for miss in MISS["baseline"]]
                assert rows.loc[lam, ["miss_diff", "miss_ci_low", "miss_ci_high", "miss_p"]].tolist() == pytest.approx(welch_by_hand(misses, reference))


def test_the_between_claim_holds_where_both_measures_fall_and_fails_where_one_rises(evaluated_between):
    params, root = evaluated_between
    analysis = analyse(params, root)
    labels = dict(zip(analysis.stage("sweep")["name"], analysis.stage("sweep")["label"]))
    claims = {claim.split(": ")[0].split(", ", 1)[1]: claim for claim in between_claims(between_table(analysis).data, labels)}
    assert "**holds here**" in claims["S={0}, α=4"] and "at 5 of 5 λ < 1" in claims["S={0}, α=4"]
    assert "**does not hold here**" not in claims["S={0,2}, α=1"]
    section = theory_section(analysis, lambda table: table.markdown(), lambda name: f"![{name}]")
    assert "![between_vs_lambda]" in section and "In-between behaviour (Zhang et al.)" in section
