"""The report's sections on the results: the runs that finished and those that did not, the
study's tables with their figures (linked by relative path from the folder ``mixstudy figures``
wrote), the selection rule, calibration and the claims from the literature checked on our runs,
which epoch is reported, and the published cells beside ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mixstudy.results import published
from mixstudy.results.analysis import Analysis
from mixstudy.report.theory import theory_section
from mixstudy.results.selection import SELECTION_RULE, best_tuning
from mixstudy.results.statistics import CONFIDENCE, welch_difference
from mixstudy.results.tables import format_interval, format_signed, published_best_cell, study_tables

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
    "smoothness_vs_accuracy": "Input-Jacobian norm of the logits against test accuracy, per configuration; lines 95% intervals over seeds.",
    "between_vs_lambda": "Between training images: miss rate and the loss's input-gradient norm against λ, per configuration; lines 95% intervals over seeds.",
}


# --- runs, tables, figures ------------------------------------------------------------------


def damaged_runs_warning(analysis: Analysis, max_named: int = 5) -> str:
    """The report's warning, at its top, of runs left out because their record or files are not what
    the record claims (changed after training, damaged); empty when there are none."""
    damaged = analysis.problems[analysis.problems["problem"] == "damaged"]
    if damaged.empty:
        return ""
    named = ", ".join(f"`{run_id}`" for run_id in damaged["run_id"].head(max_named))
    more = f" and {len(damaged) - max_named} more" if len(damaged) > max_named else ""
    return (f"**Warning: {len(damaged)} run(s) are left out of every table and figure because their record or "
            f"files are not what the record claims (changed after training, or damaged): {named}{more}. "
            "Each is named with the reason in the section Runs and in `problems.csv`; train them again.**\n")


def runs_section(analysis: Analysis, max_problems: int = 20) -> str:
    counts = analysis.counts()
    text = (
        "## Runs\n\n"
        f"{counts['expected']} runs are in the grids: {counts['finished']} finished, {counts['failed']} failed, "
        f"{counts['missing']} missing, {counts['mismatched']} with a configuration other than their run id asks for"
        + (f", {counts['damaged']} damaged (their record or files are not what the record claims)" if counts["damaged"] else "")
        + ". "
        "Only finished runs enter the tables. "
        f"Compute time of the runs with results: {analysis.compute_hours():.1f} hours "
        f"(tuning {analysis.compute_hours('tuning'):.1f}, sweep {analysis.compute_hours('sweep'):.1f}).\n"
    )
    text += precision_sentence(analysis)
    problems = analysis.problems
    if not problems.empty:
        shown = problems.head(max_problems)[["run_id", "problem", "reason"]]
        more = len(problems) - len(shown)
        text += "\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
        if more:
            text += f"\n… and {more} more, all listed in `problems.csv` (written by `mixstudy aggregate`).\n"
    return text


def precision_sentence(analysis: Analysis) -> str:
    """What the finished runs trained in (``compute.amp`` as resolved), and any configuration whose
    seeds trained in different precisions, flagged like a stale run."""
    precisions = analysis.precisions()
    if not precisions:
        return ""
    text = "\nPrecision: " + ", ".join(f"{n} finished runs trained in {precision}" for precision, n in precisions.items()) + "."
    mixed = analysis.counts()["mixed_precision"]
    if mixed:
        text += f" **{mixed} runs belong to configurations whose seeds trained in different precisions** (‡ in the tables)."
    return text + "\n"


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
        theory_section(analysis, table_markdown, figure),
        best_epoch_section(tables, figure),
        published_section(analysis, figure),
        "## Figure 1\n", figure("fig1_mixing_examples"),
    ]
    return "\n".join(part for part in parts if part)


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
    if not published.on_study_dataset(analysis.params):
        return (f"## The published cells beside ours\n\nThe study published {published.STUDY_DATASET} cells only; "
                f"none is set beside these runs on {analysis.params['data']['name']}.\n")
    table3 = published.table3_beside_ours(analysis)
    ran = table3[table3["n"] > 0]
    parts = ["## The published cells beside ours\n",
             f"Each of the study's {len(table3)} Table 3 cells (mean of its five runs) beside ours, where we ran it "
             f"({len(ran)} {'cell' if len(ran) == 1 else 'cells'}); a cell we did not run is marked and left empty.\n",
             published.beside_markdown(table3, "Table 3: S × α", analysis.params["data"]["name"]),
             published.beside_markdown(published.table1_beside_ours(analysis), "Table 1: tuning",
                                       analysis.params["data"]["name"]),
             figure("published_vs_ours"),
             "The study's claims, checked on our runs (cell means over seeds):\n\n"
             + "\n".join(f"- {c.text} **{c.verdict.capitalize()}**: {c.evidence}." for c in published.check_claims(analysis))
             + "\n",
             published.chance_difference(analysis) + "\n"]
    return "\n".join(parts)
