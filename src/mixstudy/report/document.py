"""results/report.md and its offline HTML rendering: the study's tables and figures in one place,
our numbers beside the published ones (params ``report.published``), what ran and what did not,
and the configuration used.

The tables are computed afresh from the run folders (the same functions ``mixstudy aggregate``
uses); the figures are linked by relative path from the figures folder ``mixstudy figures`` wrote.
The report holds no timestamp, so the same runs always give the same file.

This module assembles the sections (report.comparison, report.results, report.setting) and writes
the Markdown and its HTML rendering.
"""

from __future__ import annotations

import html
from pathlib import Path

from mixstudy.runs import study
from mixstudy.results.analysis import Analysis, analyse, mixing_differences
from mixstudy.data.datasets import dataset
from mixstudy.core.fileio import written_together
from mixstudy.report.comparison import comparison_section, headline_section
from mixstudy.report.results import damaged_runs_warning, results_sections, runs_section
from mixstudy.report.setting import configuration_section, setting_lines

HTML_STYLE = """
body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
code { font-size: 0.9em; }
"""


def render_report(analysis: Analysis, figures_dir: Path, report_dir: Path, selection: dict | None) -> str:
    differences = mixing_differences(analysis)
    title = dataset(analysis.params["data"]["name"]).title
    header = f"# Mixing regularisers on small-data {title}: results\n\n" + setting_lines(analysis.params)
    sections = [
        header,
        *filter(None, [damaged_runs_warning(analysis)]),
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
    with written_together() as files:  # the Markdown and its HTML, both or neither
        files.text(out, text)
        files.text(html_path, markdown_to_html(text, title=text.splitlines()[0].removeprefix("# ")))
    return out, html_path
