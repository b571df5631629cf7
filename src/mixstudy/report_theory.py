"""The report's theory section: Carratino et al.'s two claims about mixup, judged on these runs.

1. Mixup smooths the model: a smaller input-Jacobian norm than the baseline (Welch interval of the
   difference wholly below zero), judged for input mixup (S={0}) and for manifold mixup elsewhere.
2. A mixup model should see transformed data at test time: accuracy up and ECE down with inputs
   shrunk and logits divided by theta_bar (paired interval over the same runs), judged where the
   paper claims it (input mixup) and reported as what it is elsewhere.
"""

from __future__ import annotations

import pandas as pd

from mixstudy.analysis import Analysis
from mixstudy.tables import format_interval, format_signed
from mixstudy.theory_tables import effect_verdict, theory_tables

SOURCE = 'Carratino et al., "On Mixup Regularization" (JMLR 2022)'


def smoothness_verdict(rows: pd.DataFrame) -> str:
    """Counts of configurations below, above and not distinguishable from the baseline's norm."""
    judged = rows[rows["jacobian_ci_low"].notna()]
    if judged.empty:
        return "**cannot be judged here** (an interval needs two finished seeds on each side)"
    smaller, larger = int((judged["jacobian_ci_high"] < 0).sum()), int((judged["jacobian_ci_low"] > 0).sum())
    counts = (f"{smaller} of {len(judged)} configurations have a smaller norm than the baseline beyond the seeds' "
              f"spread, {larger} a larger one, {len(judged) - smaller - larger} cannot be told apart")
    if smaller == len(judged):
        return f"**holds here**: {counts}"
    if larger == len(judged):
        return f"**does not hold here** (the norm is larger): {counts}"
    if smaller == larger == 0:
        return f"**not shown here** (every interval holds zero): {counts}"
    return f"**partly**: {counts}"


def smoothness_claims(data: pd.DataFrame) -> list[str]:
    mixing = data[data["method"] == "manifold"]
    groups = {"input mixup (S={0})": mixing[mixing["layers"] == "0"],
              "manifold mixup (other S)": mixing[mixing["layers"] != "0"]}
    claims = []
    for group, rows in groups.items():
        if rows.empty:
            continue
        examples = "; ".join(f"{row['name']}: {format_signed(row['jacobian_diff'], 3)} "
                             f"{format_interval(row['jacobian_ci_low'], row['jacobian_ci_high'], 3)}"
                             for _, row in rows.head(3).iterrows())
        claims.append(f"Smoothness, {group}: {smoothness_verdict(rows)} (Δ‖J‖ to the baseline: {examples}"
                      f"{'; …' if len(rows) > 3 else ''}).")
    return claims


def transformation_claims(data: pd.DataFrame) -> list[str]:
    claims = []
    for claimed, rows in ((True, data[data["claimed"]]), (False, data[~data["claimed"]])):
        for _, row in rows.iterrows():
            accuracy = effect_verdict(row["effect_acc_low"], row["effect_acc_high"], "higher")
            calibration = effect_verdict(row["effect_ece_low"], row["effect_ece_high"], "lower")
            numbers = (f"{row['name']} (θ̄ = {row['theta_bar']:.3f}): accuracy "
                       f"{format_signed(row['effect_acc'], 2)} points {format_interval(row['effect_acc_low'], row['effect_acc_high'], 2)}, "
                       f"ECE {format_signed(row['effect_ece'], 3)} {format_interval(row['effect_ece_low'], row['effect_ece_high'], 3)}")
            if claimed:
                holds = accuracy == "improves" and calibration == "improves"
                fails = "worsens" in (accuracy, calibration)
                verdict = "**holds here**" if holds else "**does not hold here**" if fails else "**not shown here**"
                claims.append(f"Test-time transformation, {numbers}: accuracy {accuracy}, calibration {calibration}; {verdict}.")
            else:
                claims.append(f"Test-time transformation where the paper makes no claim, {numbers}: accuracy {accuracy}, "
                              f"calibration {calibration}.")
    return claims


def theory_section(analysis: Analysis, table_markdown, figure) -> str:
    """The section (empty when no run has been evaluated with ``mixstudy evaluate``)."""
    tables = {table.name: table for table in theory_tables(analysis)}
    if not tables:
        return ""
    parts = ["## Mixup's theory, measured\n",
             f"Two claims of {SOURCE}, measured on each finished sweep run's model.pt (`mixstudy evaluate`, "
             "docs/theory.md): mixup's random perturbation penalises the model's input Jacobian, and a mixup "
             "model should see test inputs shrunk towards the training mean, with its logits divided by θ̄.\n"]
    claims = []
    if "table7_smoothness" in tables:
        parts += [table_markdown(tables["table7_smoothness"]), figure("smoothness_vs_accuracy")]
        claims += smoothness_claims(tables["table7_smoothness"].data)
    if "table8_test_time" in tables:
        parts.append(table_markdown(tables["table8_test_time"]))
        claims += transformation_claims(tables["table8_test_time"].data)
    if claims:
        parts.append("Checked on these runs:\n\n" + "\n".join(f"- {claim}" for claim in claims) + "\n")
    return "\n".join(parts)
