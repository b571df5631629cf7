"""results/report.md and its offline HTML rendering: the study's tables and figures in one place,
our numbers beside the published ones (params ``report.published``), what ran and what did not,
and the configuration used.

The tables are computed afresh from the run folders (the same functions ``mixstudy aggregate``
uses); the figures are linked by relative path from the figures folder ``mixstudy figures`` wrote.
The report holds no timestamp, so the same runs always give the same file.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd
import yaml

from mixstudy import published, study
from mixstudy.analysis import Analysis, analyse, best_mixing, mixing_differences
from mixstudy.fileio import write_text
from mixstudy.networks import STUDY_NETWORK, network, network_settings
from mixstudy.selection import SELECTION_RULE, best_tuning
from mixstudy.statistics import CONFIDENCE, welch_difference
from mixstudy.tables import format_interval, format_p, format_signed, published_best_cell, published_cell, study_tables

FIGURE_CAPTIONS = {
    "fig1_mixing_examples": "Figure 1: pairs from the training subset, their input mixup at λ = 0.5 and CutMix.",
    "tuning_bars": "Table 1 as bars: mean test accuracy over seeds, error bars one standard deviation.",
    "sweep_acc_heatmap": "Table 3 test accuracy, mean over seeds.",
    "sweep_delta_heatmap": "Table 3 minus the final baseline, in percentage points.",
    "acc_vs_alpha": "Test accuracy against α, one line per mixing set S; bands one standard deviation over seeds.",
    "acc_vs_alpha_panels": "The same, one panel per S, with the baseline's mean and band in each.",
    "training_curves": "Training loss, training accuracy and learning rate per epoch: baseline and best mixup.",
    "reliability": "Reliability diagrams of the baseline and the best mixup configuration, bins pooled over seeds.",
    "reliability_scaled": "The same reliability diagrams after temperature scaling (one temperature per run, fitted on validation).",
    "calibration_scaling": "Test ECE and NLL before and after temperature scaling; bars are means, lines 95% intervals over seeds.",
    "test_curves": "Test accuracy during training (every evaluation.every epochs), mean ± sd over seeds.",
    "published_vs_ours": "Each published cell we ran: our mean ± sd over seeds against the study's mean of five runs.",
}
HTML_STYLE = """
body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
code { font-size: 0.9em; }
"""


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


# --- runs, tables, figures ------------------------------------------------------------------


def runs_section(analysis: Analysis, max_problems: int = 20) -> str:
    counts = analysis.counts()
    text = (
        "## Runs\n\n"
        f"{counts['expected']} runs are in the grids: {counts['finished']} finished, {counts['failed']} failed, "
        f"{counts['missing']} missing, {counts['mismatched']} with a configuration other than their run id asks for. "
        "Only finished runs enter the tables. "
        f"Compute time of the runs with results: {analysis.compute_hours():.1f} hours "
        f"(tuning {analysis.compute_hours('tuning'):.1f}, sweep {analysis.compute_hours('sweep'):.1f}).\n"
    )
    problems = analysis.problems
    if not problems.empty:
        shown = problems.head(max_problems)[["run_id", "problem", "reason"]]
        more = len(problems) - len(shown)
        text += "\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
        if more:
            text += f"\n… and {more} more, all listed in `problems.csv` (written by `mixstudy aggregate`).\n"
    return text


def figure_markdown(name: str, figures_dir: Path, report_dir: Path) -> str:
    path = figures_dir / f"{name}.png"
    if not path.is_file():
        return f"*Figure `{name}` is not available: `mixstudy figures` has not drawn it (its log says why).*\n"
    relative = Path(os.path.relpath(path, report_dir)).as_posix()
    return f"![{FIGURE_CAPTIONS[name]}]({relative})\n\n*{FIGURE_CAPTIONS[name]}*\n"


def table_markdown(table) -> str:
    return f"**{table.title}**\n\n{table.markdown()}"


def selection_text(analysis: Analysis, selection: dict | None) -> str:
    """The selection rule, stated once, and the choice the sweep trained with (flagged when the
    finished tuning runs now rank another configuration first)."""
    rule = f"The best tuning configuration, here and for the sweep, is {SELECTION_RULE}.\n\n"
    if selection is None:
        return rule + "No tuning selection file was found; the sweep's scheduler, momentum and weight decay are not shown.\n"
    chosen = f"{selection['scheduler']}, momentum {selection['momentum']}, weight decay {selection['weight_decay']}"
    how = f" ({selection['selected_by']}: {100 * selection['mean_acc']:.2f} %)" if "mean_acc" in selection else ""
    text = rule + f"The sweep trains with the tuning's choice: {chosen}{how}.\n"
    best = best_tuning(analysis)
    if best is not None and (best["scheduler"], best["momentum"], best["weight_decay"]) != (
        selection["scheduler"], selection["momentum"], selection["weight_decay"]
    ):
        text += (f"\n**The finished tuning runs now rank {best['name']} first**, not the choice above: "
                 "run `mixstudy select` again and retrain the sweep.\n")
    return text


STATISTICS_NOTE = (
    "Statistics: mean and sample standard deviation (ddof=1) over seeds; a cell marked † has fewer finished seeds "
    f"than asked. Differences are configuration minus baseline in percentage points, with a {CONFIDENCE:.0%} Welch "
    "t-interval and Welch's two-sided t-test (unequal variances, unpaired, so a missing seed on one side does not "
    "break the pairing). No correction for multiple comparisons is applied: among this many cells, about one in "
    "twenty crosses p < 0.05 by chance alone.\n"
)


def results_sections(analysis: Analysis, figures_dir: Path, report_dir: Path, selection: dict | None) -> str:
    tables = {table.name: table for table in study_tables(analysis)}

    def figure(name):
        return figure_markdown(name, figures_dir, report_dir)

    parts = [
        "## Baseline tuning (Table 1)\n", table_markdown(tables["table1_tuning"]), figure("tuning_bars"),
        selection_text(analysis, selection),
        "## Final baseline\n", table_markdown(tables["table2_baseline"]),
        "## Manifold mixup sweep (Table 3)\n", STATISTICS_NOTE, table_markdown(tables["table3_acc"]),
        figure("sweep_acc_heatmap"), figure("acc_vs_alpha"), figure("acc_vs_alpha_panels"),
        table_markdown(tables["table3_nll"]), table_markdown(tables["table3_ece"]),
        "## Differences to the baseline\n", table_markdown(tables["table3_delta_acc"]), figure("sweep_delta_heatmap"),
    ]
    if "table4_comparison" in tables:
        parts += ["## CutMix, label smoothing and Cutout\n", table_markdown(tables["table4_comparison"])]
    parts += [
        "## Training and calibration: baseline vs best mixup\n", figure("training_curves"), figure("reliability"),
        calibration_section(analysis, tables, figure),
        best_epoch_section(tables, figure),
        published_section(analysis, figure),
        "## Figure 1\n", figure("fig1_mixing_examples"),
    ]
    return "\n".join(part for part in parts if part)


# --- configuration --------------------------------------------------------------------------


def yaml_block(data: dict) -> str:
    return "```yaml\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100).rstrip() + "\n```\n"


def configuration_section(params: dict, selection: dict | None) -> str:
    parts = [
        "## Configuration used\n",
        "Data subset and network:\n", yaml_block({"subset": params["subset"], "model": network_settings(params["model"])}),
    ]
    if selection:
        chosen = {key: selection[key] for key in ("scheduler", "momentum", "weight_decay")}
        parts += ["Tuning selection, applied to the final baseline and every sweep run:\n",
                  yaml_block({"selection": chosen})]
        train = study.run_config(params, 0, selection=selection)["train"]
        parts.append("Training of the final baseline and the sweep runs (params.yaml with the selection applied):\n")
    else:
        train = params["train"]
        parts.append("Training of the final baseline and the sweep runs (params.yaml; no tuning selection found):\n")
    parts += [
        yaml_block({"train": train}),
        "Mixing defaults and evaluation:\n",
        yaml_block({"mixing": params["mixing"], "evaluation": params["evaluation"]}),
        "Grids:\n", yaml_block({"tuning": params["tuning"], "sweep": params["sweep"]}),
    ]
    return "\n".join(parts)


# --- the report -----------------------------------------------------------------------------


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


# --- calibration, best epochs, the published cells ------------------------------------------


def calibration_section(analysis: Analysis, tables: dict, figure) -> str:
    if "table5_calibration" not in tables:
        return ""
    data = tables["table5_calibration"].data.set_index("name")
    parts = ["## Calibration after temperature scaling\n", table_markdown(tables["table5_calibration"]),
             figure("calibration_scaling"), figure("reliability_scaled")]
    claims = calibration_claims(analysis, data)
    if claims:
        parts.append("Claims from the literature, checked on these runs:\n\n" + "\n".join(f"- {c}" for c in claims) + "\n")
    return "\n".join(parts)


def calibration_claims(analysis: Analysis, data: pd.DataFrame) -> list[str]:
    cell = published_best_cell(analysis)
    if "baseline" not in data.index or cell is None or cell["name"] not in data.index:
        return []
    base, mix = data.loc["baseline"], data.loc[cell["name"]]
    claims = [wang_claim(analysis, cell, base, mix)]
    smoothing = [name for name in data.index if name.startswith("label_smoothing")]
    if smoothing and mix["ece_mean"] < base["ece_mean"]:
        claims.append(thulasidasan_claim(base, data.loc[smoothing[0]], mix))
    return claims


def wang_claim(analysis: Analysis, cell: pd.Series, base: pd.Series, mix: pd.Series) -> str:
    """Judged on the Welch interval of mixup's ECE after scaling minus the baseline's, run by run:
    a claim that mixup is *no better* is contradicted only by an interval wholly below zero."""
    scaled = welch_difference(analysis.values(cell["name"], "ts_ece"), analysis.values("baseline", "ts_ece"))
    numbers = (
        f"ECE of mixup ({cell['label']}) against the baseline: {mix['ece_mean']:.3f} vs {base['ece_mean']:.3f} "
        f"raw, {mix['ts_ece_mean']:.3f} vs {base['ts_ece_mean']:.3f} after scaling; mixup minus baseline after "
        f"scaling: {format_signed(scaled['diff'], 3)}, {CONFIDENCE:.0%} Welch interval "
        f"{format_interval(scaled['ci_low'], scaled['ci_high'], 3)}. "
    )
    if pd.isna(scaled["ci_low"]):
        verdict = "**Cannot be judged here**: an interval needs two finished seeds on each side."
    elif scaled["ci_high"] < 0:
        verdict = "**Does not hold here**: mixup stays better calibrated after scaling, beyond the seeds' spread."
    elif scaled["ci_low"] > 0:
        verdict = "**Holds here**: after scaling mixup is worse calibrated than the baseline."
    else:
        was_better = " (it was before scaling)" if mix["ece_mean"] < base["ece_mean"] else ""
        verdict = ("**Not contradicted here**: the interval holds zero, so after scaling mixup is not shown to be "
                   f"better calibrated{was_better}.")
    return ("Wang et al. (CVPR 2023): after temperature scaling, mixup is no better calibrated than the baseline. "
            + numbers + verdict)


def thulasidasan_claim(base: pd.Series, smoothing: pd.Series, mix: pd.Series) -> str:
    share = (base["ece_mean"] - smoothing["ece_mean"]) / (base["ece_mean"] - mix["ece_mean"])
    return (
        "Thulasidasan et al. (NeurIPS 2019): much of mixup's calibration comes from its soft labels. Raw ECE: "
        f"baseline {base['ece_mean']:.3f}, label smoothing alone (soft labels, no mixing) {smoothing['ece_mean']:.3f}, "
        f"mixup {mix['ece_mean']:.3f}; label smoothing gives {max(share, 0):.0%} of mixup's reduction "
        "(means over seeds). "
        + ("**Holds here** (more than half)." if share > 0.5 else "**Does not hold here** (half or less).")
    )


def best_epoch_section(tables: dict, figure) -> str:
    if "table6_best_epoch" not in tables:
        return ""
    return "\n".join([
        "## Which epoch is reported\n",
        "Our tables report the final epoch. The weights of the best validation epoch are a choice made on held-out "
        "data; the best test epoch, which the official mixup, manifold mixup and CutMix code report, is chosen on "
        "the test set itself and so is optimistic. It is shown only to measure how much that practice adds.\n",
        table_markdown(tables["table6_best_epoch"]), figure("test_curves"),
    ])


def published_section(analysis: Analysis, figure) -> str:
    table3 = published.table3_beside_ours(analysis)
    ran = table3[table3["n"] > 0]
    parts = ["## The published cells beside ours\n",
             f"Each of the study's {len(table3)} Table 3 cells (mean of its five runs) beside ours, where we ran it "
             f"({len(ran)} {'cell' if len(ran) == 1 else 'cells'}); a cell we did not run is marked and left empty.\n",
             published.beside_markdown(table3, "Table 3: S × α"),
             published.beside_markdown(published.table1_beside_ours(analysis), "Table 1: tuning"),
             figure("published_vs_ours"),
             "The study's claims, checked on our runs (cell means over seeds):\n\n"
             + "\n".join(f"- {c.text} **{c.verdict.capitalize()}**: {c.evidence}." for c in published.check_claims(analysis))
             + "\n",
             published.chance_difference(analysis) + "\n"]
    return "\n".join(parts)


SUBSET_DRAWS = {"study": "the study's own images", "seeded": "a seeded draw, not the study's images"}


def setting_lines(params: dict) -> str:
    """The report's first lines: which images and which network its runs trained."""
    subset, name = params["subset"], params["model"]["name"]
    lines = (
        f"{subset['per_class']} training images per class ({10 * subset['per_class']} in all; "
        f"{SUBSET_DRAWS[subset['draw']]}); network `{name}`, {network(name).description}. "
    )
    if name != STUDY_NETWORK:
        lines += f"The study's network, {STUDY_NETWORK}, is the default of a full run (params.yaml). "
    return lines + "Generated by `mixstudy report` from the run folders.\n"


def render_report(analysis: Analysis, figures_dir: Path, report_dir: Path, selection: dict | None) -> str:
    differences = mixing_differences(analysis)
    header = "# Mixing regularisers on small-data CIFAR-10: results\n\n" + setting_lines(analysis.params)
    sections = [
        header,
        headline_section(analysis, differences),
        comparison_section(analysis, differences),
        runs_section(analysis),
        results_sections(analysis, figures_dir, report_dir, selection),
        configuration_section(analysis.params, selection),
    ]
    return "\n".join(sections)


def markdown_to_html(text: str, title: str) -> str:
    """A self-contained page: inline style, no external CSS or scripts, images by relative path."""
    import markdown

    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(
    params: dict,
    runs_root: str | Path,
    out: str | Path,
    figures_dir: str | Path,
    selection_path: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write the Markdown report and its HTML rendering beside it (same name, .html)."""
    out = Path(out)
    selection = study.read_selection(selection_path) if selection_path and Path(selection_path).is_file() else None
    text = render_report(analyse(params, runs_root), Path(figures_dir), out.parent, selection)
    html_path = out.with_suffix(".html")
    write_text(out, text)
    write_text(html_path, markdown_to_html(text, title=text.splitlines()[0].removeprefix("# ")))
    return out, html_path
