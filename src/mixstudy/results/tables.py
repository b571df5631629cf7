"""The study's tables from its run folders (Table 1, the final baseline, Table 3 for accuracy, NLL
and ECE, the differences to the baseline, the comparison regularisers, calibration, the best epoch),
formatted for CSV, Markdown and LaTeX.

Units: ``runs.csv`` keeps every number exactly as ``metrics.json`` has it (accuracies as
fractions). Tables, figures and ``summary.json`` show accuracies (every metric whose name
contains ``acc``) in percent, and NLL, ECE and Brier score as they are. The statistics behind
each cell: :mod:`mixstudy.results.analysis` and :mod:`mixstudy.results.statistics`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mixstudy.runs import study
from mixstudy.results.analysis import BASE_METRICS, DATASET_COLUMN, MIXED, REGULARISERS, Analysis, best_mixing, mixing_differences
from mixstudy.data.datasets import dataset
from mixstudy.core.fileio import write_text
from mixstudy.results.statistics import CONFIDENCE, mean_interval

INCOMPLETE = "†"  # marks a cell with fewer finished seeds than asked
MIXED_PRECISION = "‡"  # flags a configuration whose seeds trained in different precisions
TABLE_METRICS = ("acc", "nll", "ece")
DIGITS = {"acc": 2, "nll": 3, "ece": 3, "brier": 3}
METRIC_LABELS = {"acc": "test accuracy (%)", "nll": "test NLL", "ece": "test ECE", "brier": "test Brier score"}
# LaTeX for the few non-ASCII characters the display tables use (applied after pandas escaping).
LATEX_SYMBOLS = {"±": r"$\pm$", INCOMPLETE: r"$^{\dagger}$", MIXED_PRECISION: r"$^{\ddagger}$", "—": "--", "α": r"$\alpha$", "Δ": r"$\Delta$"}


def format_stat(mean: float, std: float, n: int, asked: int, digits: int) -> str:
    """``mean ± std``; just the mean for one seed; ``—`` for none; a trailing † when seeds are missing."""
    if n == 0:
        return "—"
    text = f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (INCOMPLETE if n < asked else "")


def format_signed(value: float, digits: int = 2) -> str:
    """``+1.25``, ``-0.40``; a value that rounds to zero is ``0.00``, never ``-0.00``."""
    if pd.isna(value):
        return "—"
    rounded = round(value, digits)
    return f"{0.0:.{digits}f}" if rounded == 0 else f"{rounded:+.{digits}f}"


def format_interval(low: float, high: float, digits: int = 2) -> str:
    return "—" if pd.isna(low) else f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def format_p(p: float) -> str:
    return "—" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def incomplete_note(cells: pd.DataFrame) -> list[str]:
    """A footnote naming every configuration with fewer finished seeds than asked."""
    short = cells[cells["n"] < cells["asked"]]
    if short.empty:
        return []
    listed = "; ".join(f"{cell['label']}: {cell['n']}/{cell['asked']}" for _, cell in short.iterrows())
    return [f"{INCOMPLETE} fewer finished seeds than asked (finished/asked): {listed}."]


def precision_note(cells: pd.DataFrame) -> list[str]:
    """The precision the cells' finished runs trained in (``compute.amp`` as resolved; per run in
    runs.csv), and each configuration whose seeds trained in different precisions, flagged."""
    trained = cells[cells["n"] > 0]
    if "precision" not in trained or trained.empty:
        return []
    mixed = trained[trained["precision"].str.contains(MIXED, regex=False)]
    by_precision = trained[~trained.index.isin(mixed.index)].groupby("precision", sort=True)["label"].agg(list)
    if len(by_precision) == 1 and mixed.empty:
        notes = [f"Trained in {by_precision.index[0]}."]
    else:
        notes = ["Trained in " + "; ".join(f"{precision}: {', '.join(labels)}" for precision, labels in by_precision.items()) + "."]
    if not mixed.empty:
        listed = "; ".join(f"{cell['label']} ({cell['precision']})" for _, cell in mixed.iterrows())
        notes.append(f"{MIXED_PRECISION} seeds trained in different precisions, averaged all the same (problems.csv): {listed}.")
    return notes


def cell_notes(cells: pd.DataFrame) -> list[str]:
    """Every table's footnotes on its cells: seeds missing, and the precision they trained in."""
    return incomplete_note(cells) + precision_note(cells)


@dataclass
class Table:
    """One table: numbers for the CSV, formatted text for Markdown and LaTeX, and footnotes."""

    name: str  # file stem
    title: str
    data: pd.DataFrame
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        notes = "".join(f"\n\n{note}" for note in self.notes)
        # disable_numparse: tabulate would otherwise turn "+4.30" into 4.3 and realign the column.
        return self.display.to_markdown(index=False, disable_numparse=True) + notes + "\n"

    def latex(self) -> str:
        # pandas escapes the cells but not the caption: a bare % there would comment out the rest of it.
        caption = _latex_escape(self.title)
        text = self.display.to_latex(index=False, escape=True, caption=caption, label=f"tab:{self.name}")
        if self.notes:
            notes = "".join(f"\\par\\footnotesize {_latex_escape(note)}\n" for note in self.notes)
            text = text.replace("\\end{table}", notes + "\\end{table}")
        for symbol, latex in LATEX_SYMBOLS.items():
            text = text.replace(symbol, latex)
        return text


def named_by_dataset(table: Table, name: str) -> Table:
    """``table`` as it is written and shown: its title begins with the data set's display name
    ("CIFAR-10. Table 3: ...") and its CSV's first column is the data set, so a table of one data set
    can never pass for another's (each configuration's tables are written to the same file names)."""
    data = table.data.copy()
    data.insert(0, DATASET_COLUMN, name)
    return replace(table, title=f"{dataset(name).title}. {table.title}", data=data)


def named_tables(tables: list[Table], params: dict) -> list[Table]:
    return [named_by_dataset(table, params["data"]["name"]) for table in tables]


def _latex_escape(text: str) -> str:
    for char in ("&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


def cell_texts(cells: pd.DataFrame, metric: str, mark_incomplete: bool = True) -> list[str]:
    """``mean ± std`` of one metric for each configuration, with † where seeds are missing and ‡
    where they trained in different precisions."""
    texts = []
    for _, cell in cells.iterrows():
        asked = cell["asked"] if mark_incomplete else cell["n"]
        text = format_stat(cell[f"{metric}_mean"], cell[f"{metric}_std"], cell["n"], asked, DIGITS[metric])
        texts.append(text + (MIXED_PRECISION if MIXED in str(cell.get("precision") or "") else ""))
    return texts


def difference_columns(rows: pd.DataFrame, marks: list[str] | None = None) -> dict[str, list[str]]:
    """Display columns for differences to the baseline: Δ, its interval and the p-value."""
    marks = marks or [""] * len(rows)
    return {
        "Δ accuracy (points)": [format_signed(d) + m for d, m in zip(rows["diff"], marks)],
        f"{CONFIDENCE:.0%} CI (Welch)": [format_interval(r.ci_low, r.ci_high) for r in rows.itertuples()],
        "p (Welch t-test)": list(rows["p"].map(format_p)),
    }


def tuning_table(analysis: Analysis) -> Table:
    cells = analysis.stage("tuning")
    data = cells[["name", "scheduler", "momentum", "weight_decay", "asked", "n", "acc_mean", "acc_std"]]
    display = pd.DataFrame({
        "scheduler": cells["scheduler"],
        "momentum": cells["momentum"].map(study.fmt),
        "weight decay": cells["weight_decay"].map(study.fmt),
        METRIC_LABELS["acc"]: cell_texts(cells, "acc", mark_incomplete=False),  # the next column says it
        "seeds (finished/asked)": [f"{c.n}/{c.asked}" for c in cells.itertuples()],
    })
    return Table("table1_tuning", "Table 1: baseline tuning, test accuracy over seeds", data, display, precision_note(cells))


def baseline_table(analysis: Analysis) -> Table:
    base = analysis.baseline()
    one = pd.DataFrame([base])
    data = pd.DataFrame({
        "metric": BASE_METRICS,
        "mean": [base[f"{m}_mean"] for m in BASE_METRICS],
        "std": [base[f"{m}_std"] for m in BASE_METRICS],
        "n": base["n"],
        "asked": base["asked"],
    })
    display = pd.DataFrame({
        "metric": [METRIC_LABELS[m] for m in BASE_METRICS],
        "mean ± std": [cell_texts(one, m)[0] for m in BASE_METRICS],
        "seeds (finished/asked)": f"{base['n']}/{base['asked']}",
    })
    return Table("table2_baseline", "Final baseline (sweep/baseline) over seeds", data, display, cell_notes(one))


def alpha_column(alpha: float) -> str:
    return f"α={study.fmt(alpha)}"


def sweep_grid(analysis: Analysis, metric: str) -> Table:
    """Table 3 for one metric: rows the layer sets S, columns alpha, cells mean ± std over seeds."""
    cells = analysis.stage("sweep", "manifold").copy()
    cells["S"] = cells["layers"].map(study.set_notation)
    cells["column"] = cells["alpha"].map(alpha_column)
    cells["cell"] = cell_texts(cells, metric)
    rows = list(dict.fromkeys(cells["S"]))
    columns = [alpha_column(alpha) for alpha in sorted(set(cells["alpha"]))]  # numerically, not as found
    display = cells.pivot(index="S", columns="column", values="cell").reindex(index=rows, columns=columns)
    display.columns.name = None
    data = cells[["S", "layers", "alpha", "asked", "n", f"{metric}_mean", f"{metric}_std"]]
    title = f"Table 3: {METRIC_LABELS[metric]}, manifold mixup over mixing sets S and alpha (mean ± std over seeds)"
    return Table(f"table3_{metric}", title, data, display.reset_index(), cell_notes(cells))


def differences_table(analysis: Analysis, differences: pd.DataFrame) -> Table:
    marks = [INCOMPLETE if row.n < row.asked else "" for row in differences.itertuples()]
    asked_baseline = analysis.baseline()["asked"]
    display = pd.DataFrame({
        "configuration": [row["label"] for _, row in differences.iterrows()],
        **difference_columns(differences, marks),
        "seeds": [f"{r.n}/{r.asked} vs {r.n_baseline}/{asked_baseline}" for r in differences.itertuples()],
    })
    title = "Difference in test accuracy to the final baseline (percentage points; configuration minus baseline)"
    compared = analysis.stage("sweep")
    notes = cell_notes(compared[compared["name"].isin([*differences["name"], "baseline"])])
    data = differences.drop(columns=["label", "summary_key"])  # the names a reader sees are in the display
    return Table("table3_delta_acc", title, data, display, notes)


def comparison_cells(analysis: Analysis) -> pd.DataFrame:
    """The comparison regularisers (CutMix, label smoothing, Cutout) of the sweep, in grid order."""
    cells = analysis.stage("sweep")
    return cells[cells["method"].isin(list(REGULARISERS))]


def comparison_table(analysis: Analysis, differences: pd.DataFrame) -> Table | None:
    cells = comparison_cells(analysis)
    if cells.empty:
        return None
    cells = cells.merge(differences[["name", "diff", "ci_low", "ci_high", "p"]], on="name", how="left")
    display = pd.DataFrame({
        "configuration": [c["label"] for _, c in cells.iterrows()],
        **{METRIC_LABELS[metric]: cell_texts(cells, metric) for metric in TABLE_METRICS},
        **difference_columns(cells),
    })
    statistics = [f"{m}_{stat}" for m in TABLE_METRICS for stat in ("mean", "std")]
    data = cells[["name", "method", "strength", "asked", "n", *statistics, "diff", "ci_low", "ci_high", "p"]]
    title = "Comparison regularisers: CutMix, label smoothing, Cutout (mean ± std over seeds; Δ to the final baseline)"
    return Table("table4_comparison", title, data, display, cell_notes(cells))


def format_mean_interval(values: np.ndarray, digits: int = 3) -> str:
    mean, low, high = mean_interval(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if math.isnan(low) else f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def calibration_cells(analysis: Analysis) -> pd.DataFrame:
    """Configurations compared for calibration: the baseline, the manifold cell at the published best
    (else the best), input mixup at that alpha, and each comparison regulariser, where they ran."""
    sweep = analysis.stage("sweep")
    names = ["baseline"]
    manifold = published_best_cell(analysis)
    if manifold is not None:
        names += [manifold["name"], study.manifold_name([0], manifold["alpha"])]
    names += list(comparison_cells(analysis)["name"])
    chosen = sweep[sweep["name"].isin(names) & (sweep["n"] > 0)]
    return chosen.set_index("name").loc[[n for n in dict.fromkeys(names) if n in set(chosen["name"])]].reset_index()


PUBLISHED_CONFIG = re.compile(r"S\s*=\s*\{([\d,\s]+)\}\s*,\s*alpha\s*=\s*([\d.]+)")


def published_cell(analysis: Analysis, config_text: str | None) -> pd.Series | None:
    """Our configuration named by the published ``S={0,2}, alpha=4`` text, if the sweep has it."""
    match = PUBLISHED_CONFIG.search(config_text or "")
    if not match:
        return None
    layers = study.layers_label(int(k) for k in match.group(1).split(","))
    name = study.manifold_name(layers, float(match.group(2)))
    cells = analysis.stage("sweep", "manifold")
    cells = cells[cells["name"] == name]
    return None if cells.empty else cells.iloc[0]


def published_best_cell(analysis: Analysis) -> pd.Series | None:
    """Our manifold cell at the study's best configuration (``report.published.best_mixup_config``),
    fixed in advance so it carries no selection bias, where it has finished runs; else our best cell."""
    cell = published_cell(analysis, analysis.params["report"]["published"]["best_mixup_config"])
    return cell if cell is not None and cell["n"] > 0 else best_mixing(analysis)


def calibration_table(analysis: Analysis) -> Table | None:
    """Test ECE and NLL before and after temperature scaling (one T per run, fitted on validation)."""
    cells = calibration_cells(analysis)
    if cells.empty or "ts_ece" not in analysis.done:
        return None
    rows, display = [], []
    for _, cell in cells.iterrows():
        runs = analysis.runs_of(cell["name"])
        row = {"name": cell["name"], "n": len(runs)}
        for column in ("ece", "ts_ece", "nll", "ts_nll", "ts_temperature"):
            row[f"{column}_mean"], row[f"{column}_low"], row[f"{column}_high"] = mean_interval(runs[column])
        rows.append(row)
        display.append({
            "configuration": cell["label"],
            "ECE": format_mean_interval(runs["ece"]),
            "ECE after scaling": format_mean_interval(runs["ts_ece"]),
            "NLL": format_mean_interval(runs["nll"]),
            "NLL after scaling": format_mean_interval(runs["ts_nll"]),
            "temperature": format_mean_interval(runs["ts_temperature"], 2),
            "seeds": len(runs),
        })
    title = (f"Calibration before and after temperature scaling (test set; mean [{CONFIDENCE:.0%} t-interval] "
             "over seeds; one temperature per run, fitted on the validation split)")
    return Table("table5_calibration", title, pd.DataFrame(rows), pd.DataFrame(display))


def best_epoch_table(analysis: Analysis) -> Table | None:
    """Final epoch, best validation epoch, and (labelled optimistic) best test epoch, per configuration."""
    done = analysis.done[analysis.done["stage"] == "sweep"]
    if "bestval_acc" not in done or done["bestval_acc"].isna().all():
        return None
    rows, display = [], []
    for name, runs in done.groupby("name", sort=False):
        if runs["bestval_acc"].isna().all():
            continue
        optimistic = runs["besttest_acc"] if "besttest_acc" in runs else pd.Series(dtype=float)
        row = {"name": name, "n": len(runs), "final_acc": runs["acc"].mean(), "bestval_acc": runs["bestval_acc"].mean(),
               "bestval_epoch": runs["bestval_epoch"].mean(),
               "besttest_acc": optimistic.mean() if optimistic.notna().any() else math.nan}
        rows.append(row)
        cell = analysis.configs[(analysis.configs["stage"] == "sweep") & (analysis.configs["name"] == name)].iloc[0]
        display.append({
            "configuration": cell["label"],
            "final epoch (%)": f"{row['final_acc']:.2f}",
            "best validation epoch (%)": f"{row['bestval_acc']:.2f}",
            "its epoch (mean)": f"{row['bestval_epoch']:.0f}",
            "best test epoch (%, optimistic)": "—" if math.isnan(row["besttest_acc"]) else f"{row['besttest_acc']:.2f}",
            "seeds": len(runs),
        })
    title = ("Test accuracy of the final epoch, of the best validation epoch's weights, and the best test epoch "
             "(the published practice's number: chosen on the test set, so optimistic)")
    return Table("table6_best_epoch", title, pd.DataFrame(rows), pd.DataFrame(display))


def study_tables(analysis: Analysis) -> list[Table]:
    differences = mixing_differences(analysis)
    tables = [tuning_table(analysis), baseline_table(analysis)]
    tables += [sweep_grid(analysis, metric) for metric in TABLE_METRICS]
    tables.append(differences_table(analysis, differences))
    optional = [comparison_table(analysis, differences), calibration_table(analysis), best_epoch_table(analysis)]
    return named_tables(tables + [table for table in optional if table is not None], analysis.params)


def write_table(table: Table, out_dir: Path, write: Callable[[Path, str], None] = write_text) -> list[Path]:
    """The table as CSV, Markdown and LaTeX under ``out_dir``, each written by ``write`` (an atomic
    write; the aggregation's: a file of a group put in place together)."""
    paths = [out_dir / f"{table.name}.{suffix}" for suffix in ("csv", "md", "tex")]
    write(paths[0], table.data.to_csv(index=False))
    write(paths[1], f"**{table.title}**\n\n{table.markdown()}")
    write(paths[2], table.latex())
    return paths
