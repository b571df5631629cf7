"""``mixstudy aggregate``: every table (CSV, Markdown, LaTeX), runs.csv, problems.csv, the curves
and the flat summary, written from one reading of the run folders."""

from __future__ import annotations

import logging
from pathlib import Path

from mixstudy.results.analysis import Analysis, Expectation, analyse, mixing_differences
from mixstudy.core.fileio import written_together
from mixstudy.results.published import published_tables
from mixstudy.results.summary import HEADLINE_FILE, headline_metrics, mean_curves, summary_metrics
from mixstudy.results.tables import study_tables, write_table
from mixstudy.results.theory_tables import theory_tables

log = logging.getLogger(__name__)


def aggregate(
    params: dict, runs_root: str | Path, out_dir: str | Path, summary_path: str | Path, expectation: Expectation = Expectation(),
    headline_path: str | Path | None = None,
) -> Analysis:
    """Write every table (CSV, Markdown, LaTeX), runs.csv, problems.csv, the flat summary.json and
    the headline (``headline_path``; default headline.json beside the summary), all built aside and
    put in place together (or none, when any cannot be written)."""
    out_dir = Path(out_dir)
    analysis = analyse(params, runs_root, expectation)
    differences = mixing_differences(analysis)
    with written_together() as files:  # the tables and the summaries never disagree: all or none replaced
        for table in study_tables(analysis) + theory_tables(analysis) + published_tables(analysis):
            write_table(table, out_dir, files.text)
        files.text(out_dir / "runs.csv", analysis.runs.to_csv(index=False))
        files.text(out_dir / "problems.csv", analysis.problems.to_csv(index=False))
        files.text(out_dir / "curves.tsv", mean_curves(analysis, runs_root).to_csv(sep="\t", index=False))
        files.json(summary_path, summary_metrics(analysis, differences))
        files.json(headline_path or Path(summary_path).with_name(HEADLINE_FILE), headline_metrics(analysis, differences))
    counts = analysis.counts()
    if counts["finished"] < counts["expected"]:
        log.warning(
            "%d of %d expected runs are not usable (%d missing, %d failed, %d mismatched%s); see %s",
            counts["expected"] - counts["finished"], counts["expected"], counts["missing"], counts["failed"],
            counts["mismatched"], f", {counts['damaged']} damaged" if counts["damaged"] else "", out_dir / "problems.csv",
        )
    return analysis
