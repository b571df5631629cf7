"""Two sets of runs of the same configurations side by side (``mixstudy compare``): the same cells
trained in bf16 and in float32, on two hosts, or before and after a change of code.

Each set is read against its own grids (:func:`mixstudy.results.analysis.analyse`: only finished runs of
the configuration asked for count). For every sweep configuration finished in both: the test
accuracy, NLL and ECE per seed in each set, and per configuration the difference of the means (set
A minus set B) with Welch's interval, beside the spread of the seeds within each set. A difference
whose interval holds zero is not told apart from seed noise.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mixstudy.results.analysis import Analysis
from mixstudy.core.errors import MixstudyError
from mixstudy.core.fileio import write_text
from mixstudy.results.statistics import CONFIDENCE, welch_difference
from mixstudy.results.tables import DIGITS, format_interval, format_signed

COMPARED_METRICS = ("acc", "nll", "ece")


def shared_configurations(a: Analysis, b: Analysis) -> list[tuple[str, str]]:
    """(name, label) of the sweep configurations with finished runs in both sets, in A's grid order."""
    finished_b = set(b.done.loc[b.done["stage"] == "sweep", "name"])
    configs = a.stage("sweep")
    configs = configs[(configs["n"] > 0) & configs["name"].isin(finished_b)]
    return list(zip(configs["name"], configs["label"]))


def per_seed(a: Analysis, b: Analysis, labels: tuple[str, str]) -> pd.DataFrame:
    """One row per configuration and seed finished in either set: each set's metrics (accuracy in %)
    and precision."""
    rows = []
    for name, label in shared_configurations(a, b):
        sets = [analysis.runs_of(name).set_index("seed") for analysis in (a, b)]
        for seed in sorted(set(sets[0].index) | set(sets[1].index)):
            row = {"configuration": label, "name": name, "seed": int(seed)}
            for set_label, runs in zip(labels, sets):
                for metric in (*COMPARED_METRICS, "precision"):
                    row[f"{metric}_{set_label}"] = runs.at[seed, metric] if seed in runs.index else None
            rows.append(row)
    return pd.DataFrame(rows)


def per_configuration(a: Analysis, b: Analysis, labels: tuple[str, str]) -> pd.DataFrame:
    """One row per configuration and metric: each set's seeds, mean and sd, and A - B with its interval."""
    rows = []
    for name, label in shared_configurations(a, b):
        for metric in COMPARED_METRICS:
            values = [analysis.values(name, metric) for analysis in (a, b)]
            row = {"configuration": label, "name": name, "metric": metric}
            for set_label, vals in zip(labels, values):
                row |= {f"n_{set_label}": len(vals), f"mean_{set_label}": vals.mean(),
                        f"sd_{set_label}": vals.std(ddof=1) if len(vals) > 1 else float("nan")}
            rows.append(row | welch_difference(values[0], values[1]))
    return pd.DataFrame(rows)


def verdict(row: pd.Series) -> str:
    """Whether the difference of the means is told apart from seed noise (its interval excludes zero)."""
    if pd.isna(row["ci_low"]):
        return "too few seeds for an interval"
    if row["ci_low"] <= 0 <= row["ci_high"]:
        return "within seed noise (the interval holds 0)"
    return "beyond seed noise (the interval excludes 0)"


def comparison_markdown(seeds: pd.DataFrame, configs: pd.DataFrame, labels: tuple[str, str]) -> str:
    a, b = labels
    lines = [f"# {a} against {b}\n",
             f"Test metrics of the configurations finished in both run sets (accuracy in %). Differences are "
             f"{a} minus {b}, with Welch's {CONFIDENCE:.0%} interval over seeds.\n", "## Per seed\n"]
    shown = seeds
    columns = {"configuration": "configuration", "seed": "seed"}
    for metric in COMPARED_METRICS:
        for label in labels:
            columns[f"{metric}_{label}"] = f"{metric} {label}"
    lines.append(shown[list(columns)].rename(columns=columns).to_markdown(index=False, floatfmt=".3f") + "\n")
    lines.append("## Per configuration\n")
    rows = []
    for row in configs.itertuples():
        digits = DIGITS[row.metric]
        spread = lambda label: f"{getattr(row, 'mean_' + label):.{digits}f} ± {getattr(row, 'sd_' + label):.{digits}f} (n={getattr(row, 'n_' + label)})"  # noqa: E731
        rows.append({"configuration": row.configuration, "metric": row.metric, a: spread(a), b: spread(b),
                     f"{a} − {b}": format_signed(row.diff, digits),
                     f"{CONFIDENCE:.0%} CI": format_interval(row.ci_low, row.ci_high, digits),
                     "verdict": verdict(pd.Series(row._asdict()))})
    lines.append(pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n")
    return "\n".join(lines)


def compare_run_sets(a: Analysis, b: Analysis, labels: tuple[str, str], out_dir: str | Path) -> pd.DataFrame:
    """Write compare_seeds.csv, compare.csv and compare.md into ``out_dir``; return the per-configuration rows."""
    out_dir = Path(out_dir)
    if not shared_configurations(a, b):
        raise MixstudyError("no sweep configuration has finished runs in both run sets; check --runs-root, "
                            "--against-root and each one's --params")
    seeds, configs = per_seed(a, b, labels), per_configuration(a, b, labels)
    write_text(out_dir / "compare_seeds.csv", seeds.to_csv(index=False))
    write_text(out_dir / "compare.csv", configs.to_csv(index=False))
    write_text(out_dir / "compare.md", comparison_markdown(seeds, configs, labels))
    return configs
