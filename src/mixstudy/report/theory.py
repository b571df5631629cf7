"""The report's theory section: Carratino et al.'s two claims about mixup, judged on these runs.

1. Mixup smooths the model: a smaller input-Jacobian norm than the baseline (Welch interval of the
   difference wholly below zero), judged for input mixup (S={0}) and for manifold mixup elsewhere.
2. A mixup model should see transformed data at test time: accuracy up and ECE down with inputs
   shrunk and logits divided by theta_bar (paired interval over the same runs), judged where the
   paper claims it (input mixup) and reported as what it is elsewhere.

And one of Zhang et al. (2018, Figure 2), where runs were measured between training images:

3. Between training images a mixup model misses less often (a prediction neither y_i nor y_j) and
   the input gradient of its loss is smaller than the baseline's: per lambda below 1, Welch intervals
   of the difference to the baseline wholly below zero.
"""

from __future__ import annotations

import pandas as pd

from mixstudy.results.analysis import Analysis
from mixstudy.results.tables import format_interval, format_signed
from mixstudy.results.theory_tables import effect_verdict, theory_tables
from mixstudy.runs.study import INPUT_MIXUP_LAYERS

SOURCE = 'Carratino et al., "On Mixup Regularization" (JMLR 2022)'
ZHANG = 'Zhang et al., "mixup: Beyond Empirical Risk Minimization" (ICLR 2018)'
MIXING_METHODS = ("mixup", "manifold", "cutmix")


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
    input_mixup = mixing["layers"] == INPUT_MIXUP_LAYERS
    groups = {"input mixup (S={0})": mixing[input_mixup], "manifold mixup (other S)": mixing[~input_mixup]}
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


def interval_counts(rows: pd.DataFrame, key: str) -> tuple[int, int, int]:
    """Of the rows with an interval for ``key``'s difference to the baseline: how many lie wholly below
    zero, wholly above, and how many are judged at all."""
    judged = rows[rows[f"{key}_ci_low"].notna()]
    return int((judged[f"{key}_ci_high"] < 0).sum()), int((judged[f"{key}_ci_low"] > 0).sum()), len(judged)


def between_claims(data: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """Per mixing configuration: smaller miss rate and gradient norm than the baseline, judged at each
    lambda below 1 (lambda = 1 is the training image itself)."""
    claims = []
    mixing = data[data["method"].isin(MIXING_METHODS) & (data["lambda"] < 1)]  # the claim is about mixing models
    for name, rows in mixing.groupby("name", sort=False):
        parts, verdicts = [], []
        for key, measure in (("miss", "miss rate"), ("grad", "gradient norm")):
            smaller, larger, judged = interval_counts(rows, key)
            if not judged:
                verdicts.append(None)
                parts.append(f"{measure}: no interval (two finished seeds needed on each side)")
                continue
            verdicts.append("smaller" if smaller == judged else "larger" if larger else "mixed" if smaller else "unclear")
            parts.append(f"{measure} smaller than the baseline's at {smaller} of {judged} λ < 1, larger at {larger}")
        if None in verdicts:
            verdict = "**cannot be judged here**"
        elif verdicts == ["smaller", "smaller"]:
            verdict = "**holds here**"
        elif "larger" in verdicts:
            verdict = "**does not hold here**"
        else:
            verdict = "**not shown here**" if verdicts == ["unclear", "unclear"] else "**partly**"
        halfway = rows[rows["lambda"] == rows["lambda"].min()].iloc[0]
        numbers = (f"at λ = {halfway['lambda']:g}: Δmiss {format_signed(halfway['miss_diff'], 1)} points "
                   f"{format_interval(halfway['miss_ci_low'], halfway['miss_ci_high'], 1)}, Δ‖∇‖ "
                   f"{format_signed(halfway['grad_diff'], 3)} {format_interval(halfway['grad_ci_low'], halfway['grad_ci_high'], 3)}")
        claims.append(f"In-between behaviour ({ZHANG.split(',')[0]}), {labels.get(name, name)}: {verdict}: "
                      f"{'; '.join(parts)} ({numbers}).")
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
    if "table9_between" in tables:
        parts += [f"Between training images ({ZHANG}, Figure 2): at λ x_i + (1 − λ) x_j, how often a prediction is "
                  "neither y_i nor y_j, and the input-gradient norm of the loss; a mixup model should do better on both.\n",
                  table_markdown(tables["table9_between"]), figure("between_vs_lambda")]
        labels = dict(zip(analysis.stage("sweep")["name"], analysis.stage("sweep")["label"]))
        claims += between_claims(tables["table9_between"].data, labels)
    if claims:
        parts.append("Checked on these runs:\n\n" + "\n".join(f"- {claim}" for claim in claims) + "\n")
    return "\n".join(parts)
