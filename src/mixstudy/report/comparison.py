"""Our numbers beside the published ones (params ``report.published``): the headline that opens
the report (the gain of manifold mixup over the baseline, with its interval) and the comparison
section (its table, and a sentence for each row that never contradicts the numbers beside it).
"""

from __future__ import annotations

import pandas as pd

from mixstudy.results.analysis import Analysis, best_mixing
from mixstudy.results.selection import best_tuning
from mixstudy.results.statistics import CONFIDENCE
from mixstudy.results.tables import format_interval, format_p, format_signed, published_best_cell, published_cell


# --- comparison with the published numbers --------------------------------------------------


def compare_in_words(what: str, ours: float | None, published: float | None) -> str:
    if published is None:
        return f"{what}: the study publishes no number." + ("" if ours is None else f" Ours: {ours:.2f} %.")
    if ours is None:
        return f"{what}: no finished runs yet, so nothing stands beside the published {published:.2f} %."
    # Compared as printed (two decimals), so the words never contradict the numbers beside them.
    diff = round(ours, 2) - round(published, 2)
    if round(diff, 2) == 0:
        return f"{what}: ours, {ours:.2f} %, equals the published {published:.2f} %."
    direction = "higher" if diff > 0 else "lower"
    return (f"{what}: ours, {ours:.2f} %, is {abs(diff):.2f} percentage points {direction} "
            f"than the published {published:.2f} %.")


def seeds_text(cell: pd.Series | None) -> str:
    if cell is None:
        return "—"
    return f"{cell['n']}/{cell['asked']} seeds"


def mean_of(cell: pd.Series | None) -> float | None:
    return None if cell is None or cell["n"] == 0 else float(cell["acc_mean"])


def comparison_rows(analysis: Analysis) -> list[tuple[str, float | None, pd.Series | None, str]]:
    """(what, published, our cell, how we name our cell) for each published number."""
    published = analysis.params["report"]["published"]
    tuning, best = best_tuning(analysis), best_mixing(analysis)
    at_published = published_cell(analysis, published["best_mixup_config"])
    rows = [
        ("Best tuning configuration (Table 1)", published["tuning_best"], tuning, tuning_label(tuning)),
        ("Final baseline", published["baseline"], analysis.baseline(), "sweep/baseline"),
        ("Best manifold mixup", published["best_mixup"], best, best["label"] if best is not None else "—"),
    ]
    if at_published is not None:
        rows.append((f"Mixup at the published best ({at_published['label']})", published["best_mixup"],
                     at_published, at_published["label"]))
    return rows


def tuning_label(tuning: pd.Series | None) -> str:
    if tuning is None:
        return "—"
    return f"{tuning['name']}, chosen on validation" if tuning["ranked_on"] == "val" else str(tuning["name"])


def tuning_on_test_in_words(analysis: Analysis, chosen: pd.Series | None) -> str | None:
    """When the selection (``chosen``) ranked on validation and the test set ranks another
    configuration first, say so: the published best is read off the study's test accuracies."""
    if chosen is None or chosen["ranked_on"] != "val":
        return None
    on_test = best_tuning(analysis, on_test=True)
    if on_test["name"] == chosen["name"]:
        return None
    return (f"Best tuning configuration (Table 1): ours is chosen on the validation split; ranked on the test "
            f"set, as the study's Table 1 is, ours would be {on_test['name']} at {on_test['acc_mean']:.2f} % "
            f"({on_test['acc_mean'] - chosen['acc_mean']:.2f} points above the choice).")


def departures_from_study(params: dict) -> list[str]:
    """Settings of this configuration that differ from the study's (``report.published.setting``)."""
    setting = params["report"]["published"]["setting"]
    departures = []
    for dotted, study_value in setting.items():
        value = params
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value != study_value:
            departures.append(f"`{dotted}` is {value!r} (the study: {study_value!r})")
    return departures


def departures_warning(params: dict) -> str:
    departures = departures_from_study(params)
    if not departures:
        return ""
    return (
        "**This configuration is not the study's**, so its numbers are not comparable with the published "
        "ones: " + "; ".join(departures) + ".\n\n"
    )


def comparison_section(analysis: Analysis, differences: pd.DataFrame) -> str:
    rows = comparison_rows(analysis)
    table = pd.DataFrame({
        "quantity": [what for what, *_ in rows],
        "published (%)": ["—" if p is None else f"{p:.2f}" for _, p, _, _ in rows],
        "ours (%)": ["—" if mean_of(c) is None else f"{mean_of(c):.2f}" for _, _, c, _ in rows],
        "ours − published (points)": [
            "—" if p is None or mean_of(c) is None else format_signed(mean_of(c) - p) for _, p, c, _ in rows
        ],
        "our configuration": [f"{label} ({seeds_text(c)})" for _, _, c, label in rows],
    })
    words = [compare_in_words(what, mean_of(cell), published) for what, published, cell, _ in rows]
    tuning = rows[0][2]
    words.insert(1, tuning_on_test_in_words(analysis, tuning))
    words.append(gain_in_words(analysis, differences))
    published = analysis.params["report"]["published"]
    config = published["best_mixup_config"]
    intro = f"The study reports its best mixup at {config}. " if config else ""
    return (
        "## Our numbers beside the published ones\n\n"
        + departures_warning(analysis.params)
        + f"{intro}All numbers are mean test accuracy over seeds, in percent.\n\n"
        + table.to_markdown(index=False, disable_numparse=True)
        + "\n\n" + "\n".join(f"- {sentence}" for sentence in words if sentence) + "\n"
    )


def gain_in_words(analysis: Analysis, differences: pd.DataFrame) -> str:
    published = analysis.params["report"]["published"]
    best = best_mixing(analysis)
    claimed = ""
    if published["best_mixup"] is not None and published["baseline"] is not None:
        gain = format_signed(published["best_mixup"] - published["baseline"])
        claimed = f"The published gain of mixup over the baseline is {gain} points. "
    if best is None or analysis.baseline()["n"] == 0:
        return claimed + "Ours cannot be computed yet (the baseline or every mixup configuration lacks finished runs)."
    row = differences.set_index("name").loc[best["name"]]
    cells = analysis.stage("sweep", "manifold")
    caveat = (
        "picking the best of many configurations on the test set favours it, so read this gain as optimistic."
        if (cells["n"] > 0).sum() > 1
        else "it is the only manifold mixup configuration run, so no choice on the test set favours it."
    )
    return (
        f"{claimed}Ours, best manifold mixup ({best['label']}) minus the baseline, is "
        f"{format_signed(row['diff'])} points ({CONFIDENCE:.0%} Welch interval "
        f"{format_interval(row['ci_low'], row['ci_high'])}, p = {format_p(row['p'])}); {caveat}"
    )


# --- the headline: the fixed comparison, first ---------------------------------------------


def headline_section(analysis: Analysis, differences: pd.DataFrame) -> str:
    """Manifold mixup against the baseline, opening the report: the gain with its interval, NLL, ECE.

    The cell is the study's best configuration, fixed in advance (no selection on our test set);
    only where it has not run is our best cell used, and then said to be optimistic.
    """
    base, cell = analysis.baseline(), published_best_cell(analysis)
    if cell is None or base["n"] == 0:
        return ("## Headline: manifold mixup against the baseline\n\n"
                "Not available yet: the baseline or every manifold mixup configuration lacks finished runs.\n")
    fixed = published_cell(analysis, analysis.params["report"]["published"]["best_mixup_config"])
    chosen_how = ("the study's best cell, fixed in advance" if fixed is not None and fixed["name"] == cell["name"]
                  else "our best cell, chosen on the test set, so optimistic")
    row = differences.set_index("name").loc[cell["name"]]
    lines = [
        f"- **Gain of manifold mixup ({cell['label']}; {chosen_how}) over the baseline: "
        f"{format_signed(row['diff'])} points** of test accuracy, {CONFIDENCE:.0%} Welch interval "
        f"{format_interval(row['ci_low'], row['ci_high'])} ({cell['acc_mean']:.2f}% vs {base['acc_mean']:.2f}%; "
        f"{int(cell['n'])} and {int(base['n'])} seeds).",
        f"- Test NLL {base['nll_mean']:.3f} → {cell['nll_mean']:.3f}; ECE {base['ece_mean']:.3f} → {cell['ece_mean']:.3f} "
        "(baseline → mixup, means over seeds).",
    ]
    return "## Headline: manifold mixup against the baseline\n\n" + interval_warning(analysis, row) + "\n".join(lines) + "\n"


def interval_warning(analysis: Analysis, row: pd.Series) -> str:
    """When the interval does not exclude zero, say so first, and why that may be."""
    if pd.notna(row["ci_low"]) and (row["ci_low"] > 0 or row["ci_high"] < 0):
        return ""
    reasons = []
    if pd.isna(row["ci_low"]):
        reasons.append("fewer than two finished seeds on a side, so no interval can be computed")
    else:
        reasons.append(f"{int(row['n'])} and {int(row['n_baseline'])} seeds leave a wide interval "
                       "(the t quantile for two seeds per side is about 4.3)")
    epochs = analysis.params["train"]["epochs"]
    if epochs < 400:
        reasons.append(f"{epochs} epochs: mixup needs the long budget (on a narrow network it measured no gain at "
                       "100 epochs and a clear gain at 400)")
    departures = departures_from_study(analysis.params)
    if departures:
        reasons.append("this configuration departs from the study's (see below)")
    return ("**The interval does not exclude zero: these runs cannot tell the gain from seed-to-seed noise.** "
            "Why: " + "; ".join(reasons) + ".\n\n")
