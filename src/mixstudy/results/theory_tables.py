"""The theory section's tables, from each sweep run's evaluation.json (:mod:`mixstudy.train.run_evaluation`).

* :func:`smoothness_table` - input-Jacobian norm and test accuracy of every sweep configuration,
  with the norm's difference to the baseline (Welch, as every difference to the baseline);
* :func:`transformation_table` - mixup's test-time transformation (Carratino et al.): accuracy and ECE
  without it, with shrunk inputs, with logits divided by theta_bar, and with both, per mixing
  configuration; the effect of "both" as a paired difference over the same runs;
* :func:`between_table` - Zhang et al.'s in-between measures per configuration and lambda: the miss
  rate and the loss's input-gradient norm, each with its Welch difference to the baseline.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mixstudy.results.analysis import BETWEEN_GRADIENT, BETWEEN_MISS, Analysis
from mixstudy.results.statistics import CONFIDENCE, mean_interval, welch_difference
from mixstudy.results.tables import Table, format_interval, format_mean_interval, format_signed, named_tables
from mixstudy.runs.study import is_input_mixup

JACOBIAN = "jacobian_logits"
# Columns of the test-time transformation (analysis.SHRINKAGE_VARIANTS) and their headings.
TEST_TIME_VARIANTS = {
    "tt_plain": "as trained", "tt_inputs": "inputs shrunk", "tt_logits": "logits / θ̄", "tt_both": "both",
}
# The variants the Markdown table shows per metric (the CSV has every one): accuracy all four;
# ECE as trained and with both; NLL none (in the CSV).
SHOWN_VARIANTS = {"acc": tuple(TEST_TIME_VARIANTS), "ece": ("tt_plain", "tt_both"), "nll": ()}


def measured_cells(analysis: Analysis, column: str) -> list[pd.Series]:
    """The sweep's configurations, in grid order, with at least one finished run that has ``column``."""
    if column not in analysis.done:
        return []
    cells = analysis.stage("sweep")
    return [cell for _, cell in cells.iterrows() if analysis.runs_of(cell["name"])[column].notna().any()]


def smoothness_table(analysis: Analysis) -> Table | None:
    cells = measured_cells(analysis, JACOBIAN)
    if not cells:
        return None
    baseline = analysis.runs_of("baseline")[JACOBIAN].dropna().to_numpy(dtype=float)
    rows, display = [], []
    for cell in cells:
        runs = analysis.runs_of(cell["name"])
        runs = runs[runs[JACOBIAN].notna()]
        row = {"name": cell["name"], "method": cell["method"], "layers": cell["layers"], "n": len(runs)}
        for column in ("acc", JACOBIAN, "jacobian_log_softmax"):
            row[f"{column}_mean"], row[f"{column}_low"], row[f"{column}_high"] = mean_interval(runs[column])
        difference = welch_difference(runs[JACOBIAN], baseline) if cell["name"] != "baseline" else {}
        row.update({f"jacobian_{key}": difference.get(key, math.nan) for key in ("diff", "ci_low", "ci_high", "p")})
        rows.append(row)
        display.append({
            "configuration": cell["label"],
            "test accuracy (%)": format_mean_interval(runs["acc"], 2),
            "‖J‖ of the logits": format_mean_interval(runs[JACOBIAN], 3),
            "‖J‖ of the log-softmax": format_mean_interval(runs["jacobian_log_softmax"], 3),
            "Δ‖J‖ to the baseline": "" if cell["name"] == "baseline" else
            f"{format_signed(row['jacobian_diff'], 3)} {format_interval(row['jacobian_ci_low'], row['jacobian_ci_high'], 3)}",
            "seeds": len(runs),
        })
    title = (f"Input-gradient smoothness: mean Frobenius norm of the input Jacobian over test images (mean "
             f"[{CONFIDENCE:.0%} t-interval] over seeds; Δ: Welch interval against the baseline)")
    notes = [f"‖J‖: the Jacobian of the network's outputs with respect to its normalised input, on the first "
             f"{analysis.params['theory']['jacobian_images']} test images (theory.jacobian_images)."]
    return Table("table7_smoothness", title, pd.DataFrame(rows), pd.DataFrame(display), notes)


def paired_effect(runs: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """Mean and t-interval over runs of (both - as trained) for one metric: the same runs, paired."""
    return mean_interval((runs[f"tt_both_{metric}"] - runs[f"tt_plain_{metric}"]).to_numpy(dtype=float))


def transformation_table(analysis: Analysis) -> Table | None:
    cells = measured_cells(analysis, "tt_plain_acc")
    if not cells:
        return None
    rows, display = [], []
    for cell in cells:
        runs = analysis.runs_of(cell["name"])
        runs = runs[runs["tt_plain_acc"].notna()]
        row = {"name": cell["name"], "method": cell["method"], "layers": cell["layers"], "n": len(runs),
               "theta_bar": float(runs["theta_bar"].iloc[0]), "claimed": is_claimed(cell)}
        shown = {"configuration": cell["label"], "θ̄": f"{row['theta_bar']:.3f}",
                 "the paper's claim": "yes" if row["claimed"] else "no"}
        for metric, digits in (("acc", 2), ("ece", 3), ("nll", 3)):
            for prefix, heading in TEST_TIME_VARIANTS.items():
                column = f"{prefix}_{metric}"
                row[f"{column}_mean"], row[f"{column}_low"], row[f"{column}_high"] = mean_interval(runs[column])
                if prefix in SHOWN_VARIANTS[metric]:
                    shown[f"{metric.upper()} {heading}"] = format_mean_interval(runs[column], digits)
            effect = paired_effect(runs, metric)
            row[f"effect_{metric}"], row[f"effect_{metric}_low"], row[f"effect_{metric}_high"] = effect
            if SHOWN_VARIANTS[metric]:
                shown[f"Δ{metric.upper()} (both)"] = f"{format_signed(effect[0], digits)} {format_interval(effect[1], effect[2], digits)}"
        shown["seeds"] = len(runs)
        rows.append(row)
        display.append(shown)
    title = ("Mixup's test-time transformation (Carratino et al.): test inputs shrunk towards the training mean "
             "image by θ̄ = E[max(λ, 1 − λ)], logits divided by θ̄, and both (mean [" f"{CONFIDENCE:.0%} "
             "t-interval] over seeds; Δ: both minus as trained, paired over the same runs)")
    notes = ["The paper's claim is for input mixup (S={0}); for manifold mixup at other points and for CutMix the "
             "same transformation is applied where the paper makes no claim."]
    return Table("table8_test_time", title, pd.DataFrame(rows), pd.DataFrame(display), notes)


def is_claimed(cell: pd.Series) -> bool:
    """Input mixup: the configuration the paper's test-time claim is about."""
    return is_input_mixup(cell["method"], cell["layers"])


def between_lambdas(analysis: Analysis) -> list[float]:
    """The lambdas of the in-between measures that runs recorded (their columns ``between_miss@<lambda>``)."""
    return sorted(float(column.split("@")[1]) for column in analysis.done if column.startswith(f"{BETWEEN_MISS}@"))


# The in-between measures, each: its column prefix, its scale in the table, its digits and its heading.
BETWEEN_MEASURES = {"miss": (BETWEEN_MISS, 100.0, 1, "miss rate (%)"), "grad": (BETWEEN_GRADIENT, 1.0, 3, "‖∇ₓ loss‖")}


def between_table(analysis: Analysis) -> Table | None:
    lambdas = between_lambdas(analysis)
    cells = measured_cells(analysis, f"{BETWEEN_MISS}@{lambdas[0]:g}") if lambdas else []
    if not cells:
        return None
    rows, display = [], []
    for cell in cells:
        runs = analysis.runs_of(cell["name"])
        baseline = analysis.runs_of("baseline")
        for lam in lambdas:
            measured = runs[runs[f"{BETWEEN_MISS}@{lam:g}"].notna()]
            row = {"name": cell["name"], "method": cell["method"], "layers": cell["layers"], "lambda": lam, "n": len(measured)}
            shown = {"configuration": cell["label"], "λ": f"{lam:g}"}
            for key, (prefix, scale, digits, heading) in BETWEEN_MEASURES.items():
                column = f"{prefix}@{lam:g}"
                values = measured[column].to_numpy(dtype=float) * scale
                row[f"{key}_mean"], row[f"{key}_low"], row[f"{key}_high"] = mean_interval(values)
                reference = baseline[column].dropna().to_numpy(dtype=float) * scale
                difference = welch_difference(values, reference) if cell["name"] != "baseline" else {}
                row.update({f"{key}_{part}": difference.get(part, math.nan) for part in ("diff", "ci_low", "ci_high", "p")})
                shown[heading] = format_mean_interval(values, digits)
                shown[f"Δ {heading} to the baseline"] = "" if cell["name"] == "baseline" else (
                    f"{format_signed(row[f'{key}_diff'], digits)} {format_interval(row[f'{key}_ci_low'], row[f'{key}_ci_high'], digits)}")
            shown["seeds"] = len(measured)
            rows.append(row)
            display.append(shown)
    pairs = analysis.params["theory"]["between_pairs"]
    title = (f"Between training images (Zhang et al., Figure 2): at λ x_i + (1 − λ) x_j, the share of predictions "
             f"neither y_i nor y_j (miss) and the input-gradient norm of the loss (mean [{CONFIDENCE:.0%} t-interval] "
             "over seeds; Δ: Welch interval against the baseline)")
    notes = [f"{pairs} seeded pairs of distinct training images (theory.between_pairs), labels as each run trained on "
             "them; the loss is the cross-entropy against λ y_i + (1 − λ) y_j, its gradient taken with respect to "
             "the normalised input; λ = 1 is the training image itself."]
    return Table("table9_between", title, pd.DataFrame(rows), pd.DataFrame(display), notes)


def theory_tables(analysis: Analysis) -> list[Table]:
    tables = [table for table in (smoothness_table(analysis), transformation_table(analysis), between_table(analysis))
              if table is not None]
    return named_tables(tables, analysis.params)


def effect_verdict(low: float, high: float, better_when: str) -> str:
    """Holds / does not hold / not shown, from a paired interval of (both - as trained)."""
    if np.isnan(low):
        return "cannot be judged (an interval needs two runs)"
    improved, worsened = (low > 0, high < 0) if better_when == "higher" else (high < 0, low > 0)
    return "improves" if improved else "worsens" if worsened else "no change beyond the seeds' spread"
