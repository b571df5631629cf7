"""The study's published cells beside ours, cell by cell, and the study's claims checked on our runs.

The published numbers are data (``mixstudy/results/published/*.csv``, provenance in its README): Table 1
(tuning) and Table 3 (S x alpha), test accuracy in percent, means over the study's five runs.
Every published cell gets a row; a cell we did not run is marked missing and left empty, never
filled in from another cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from mixstudy.runs import study
from mixstudy.results.analysis import Analysis
from mixstudy.results.tables import Table, format_signed, format_stat, named_by_dataset, named_tables

PUBLISHED = resources.files("mixstudy.results") / "published"
PUBLISHED_COLUMN = "test_acc_pct"


def published_table1() -> pd.DataFrame:
    with resources.as_file(PUBLISHED / "table1.csv") as path:
        table = pd.read_csv(path)
    table["name"] = [study.tuning_name(row.scheduler, row.momentum, row.weight_decay) for row in table.itertuples()]
    return table


def published_table3() -> pd.DataFrame:
    with resources.as_file(PUBLISHED / "table3.csv") as path:
        table = pd.read_csv(path, dtype={"layers": str})
    table["name"] = [study.manifold_name(row.layers, row.alpha) for row in table.itertuples()]
    return table


def published_full_data() -> pd.DataFrame:
    """The manifold mixup paper's full-data test errors (CIFAR-100, SVHN; README for provenance)."""
    with resources.as_file(PUBLISHED / "manifold_mixup_full_data.csv") as path:
        return pd.read_csv(path)


def _beside(published: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """Join published cells with our configurations by run name; ours stay empty where not run."""
    ours = ours.set_index("name")[["n", "asked", "acc_mean", "acc_std"]]
    table = published.join(ours, on="name")
    table["n"] = table["n"].fillna(0).astype(int)
    table["asked"] = table["asked"].fillna(0).astype(int)
    table.loc[table["n"] == 0, ["acc_mean", "acc_std"]] = np.nan
    table["status"] = np.where(table["n"] > 0, "ran", np.where(table["asked"] > 0, "not finished", "not in our grid"))
    table["difference"] = table["acc_mean"] - table[PUBLISHED_COLUMN]
    return table.rename(columns={PUBLISHED_COLUMN: "published"})


STUDY_DATASET = "cifar10"  # the study's cells are CIFAR-10's: never set beside runs on another data set


def on_study_dataset(params: dict) -> bool:
    return params["data"]["name"] == STUDY_DATASET


def table3_beside_ours(analysis: Analysis) -> pd.DataFrame:
    """Every published Table 3 cell: layers, alpha, published, our mean/sd/seeds, difference, status
    (no cell for runs on another data set than the study's)."""
    cells = published_table3() if on_study_dataset(analysis.params) else published_table3().iloc[:0]
    return _beside(cells, analysis.stage("sweep", "manifold"))


def table1_beside_ours(analysis: Analysis) -> pd.DataFrame:
    cells = published_table1() if on_study_dataset(analysis.params) else published_table1().iloc[:0]
    return _beside(cells, analysis.stage("tuning"))


# --- the study's claims -----------------------------------------------------------------------


@dataclass
class Claim:
    text: str
    holds: bool | None  # None: our cells cannot decide it
    evidence: str

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "cannot be checked"}[self.holds]


def _ran(analysis: Analysis) -> pd.DataFrame:
    cells = analysis.stage("sweep", "manifold")
    return cells[cells["n"] > 0].copy()


def every_cell_beats_the_baseline(analysis: Analysis) -> Claim:
    cells, base = _ran(analysis), analysis.baseline()
    text = "Every cell beats the baseline."
    if cells.empty or base["n"] == 0:
        return Claim(text, None, "no finished manifold mixup cells or baseline runs")
    losers = cells[cells["acc_mean"] <= base["acc_mean"]]
    evidence = f"{len(cells) - len(losers)} of {len(cells)} cells we ran have a higher mean than the baseline ({base['acc_mean']:.2f}%)"
    if not losers.empty:
        evidence += "; not: " + ", ".join(f"{study.manifold_label(c.layers, c.alpha)} ({c.acc_mean:.2f}%)" for c in losers.itertuples())
    return Claim(text, losers.empty, evidence)


def _columns(cells: pd.DataFrame) -> dict[float, pd.DataFrame]:
    """Alpha columns in which at least two layer sets ran."""
    return {alpha: group for alpha, group in cells.groupby("alpha") if len(group) >= 2}


def set_2_gains_least(analysis: Analysis) -> Claim:
    text = "S={2} alone gains least."
    columns = {a: g for a, g in _columns(_ran(analysis)).items() if "2" in set(g["layers"])}
    if not columns:
        return Claim(text, None, "no alpha column holds S={2} beside another set")
    lowest = {alpha: group.loc[group["acc_mean"].idxmin(), "layers"] for alpha, group in columns.items()}
    held = [alpha for alpha, layers in lowest.items() if layers == "2"]
    evidence = "; ".join(
        f"α={study.fmt(alpha)}: lowest is S={study.set_notation(layers)} of {len(columns[alpha])} sets"
        for alpha, layers in lowest.items()
    )
    return Claim(text, len(held) == len(columns), evidence)


def set_02_best_in_most_columns(analysis: Analysis) -> Claim:
    text = "S={0,2} is best in most columns."
    columns = {a: g for a, g in _columns(_ran(analysis)).items() if "0-2" in set(g["layers"])}
    if not columns:
        return Claim(text, None, "no alpha column holds S={0,2} beside another set")
    best = {alpha: group.loc[group["acc_mean"].idxmax(), "layers"] for alpha, group in columns.items()}
    wins = sum(layers == "0-2" for layers in best.values())
    evidence = "; ".join(f"α={study.fmt(a)}: best is S={study.set_notation(l)} of {len(columns[a])} sets" for a, l in best.items())
    return Claim(text, wins > len(columns) / 2, f"best in {wins} of {len(columns)} column(s) with two or more sets ({evidence})")


def alphas_4_and_2_best(analysis: Analysis) -> Claim:
    """Judged within each layer set that ran at three or more alphas (our grid may be a cross, so
    column means over S would average different sets)."""
    text = "α=4 and α=2 are the best columns."
    rows = {layers: group for layers, group in _ran(analysis).groupby("layers") if len(group) >= 3}
    if not rows:
        return Claim(text, None, "no layer set ran at three or more alphas")
    verdicts, parts = [], []
    for layers, group in rows.items():
        top_two = set(group.nlargest(2, "acc_mean")["alpha"])
        verdicts.append(top_two == {2.0, 4.0})
        parts.append(f"S={study.set_notation(layers)}: best two of {len(group)} alphas are "
                     + " and ".join(f"α={study.fmt(a)}" for a in sorted(top_two)))
    return Claim(text, all(verdicts), "; ".join(parts))


def manifold_beats_input_mixup(analysis: Analysis) -> Claim:
    text = "Manifold mixup beats input mixup (S={0})."
    parts, verdicts = [], []
    for alpha, group in _ran(analysis).groupby("alpha"):
        if study.INPUT_MIXUP_LAYERS not in set(group["layers"]) or len(group) < 2:
            continue
        input_mixup = group[group["layers"] == study.INPUT_MIXUP_LAYERS].iloc[0]
        others = group[group["layers"] != study.INPUT_MIXUP_LAYERS]
        best = others.loc[others["acc_mean"].idxmax()]
        verdicts.append(best["acc_mean"] > input_mixup["acc_mean"])
        parts.append(f"α={study.fmt(alpha)}: best manifold S={study.set_notation(best['layers'])} {best['acc_mean']:.2f}% "
                     f"vs input mixup {input_mixup['acc_mean']:.2f}%")
    if not verdicts:
        return Claim(text, None, "no alpha at which S={0} ran beside another set")
    return Claim(text, all(verdicts), "; ".join(parts))


def chance_difference(analysis: Analysis) -> str:
    """How far apart two cell means lie by chance alone, for reading the verdicts on which cell is best."""
    sweep, ran = analysis.stage("sweep"), _ran(analysis)
    spread = sweep.loc[sweep["n"] >= 2, "acc_std"]
    if spread.empty or ran.empty:
        return ("No configuration has two finished seeds yet, so the spread between seeds is not known: "
                "read the verdicts on which cell is best as provisional.")
    sd, fewest, most = spread.median(), int(ran["n"].min()), int(ran["n"].max())
    seeds = f"{fewest}" if fewest == most else f"{fewest} to {most}"
    return (f"The verdicts on which cell is best compare means of {seeds} seed{'' if most == 1 else 's'} per cell. "
            f"Between the seeds of one configuration, test accuracy has a standard deviation of {sd:.2f} points "
            f"(median over the {len(spread)} configurations with two or more seeds), so two means of {fewest} "
            f"seed{'' if fewest == 1 else 's'} differ by about {sd * np.sqrt(2 / fewest):.2f} points by chance alone "
            "(one standard error of their difference); an order between cells closer than that can change as seeds are added.")


CLAIMS = (every_cell_beats_the_baseline, set_2_gains_least, set_02_best_in_most_columns, alphas_4_and_2_best,
          manifold_beats_input_mixup)


def check_claims(analysis: Analysis) -> list[Claim]:
    return [claim(analysis) for claim in CLAIMS]


# --- display --------------------------------------------------------------------------------


def _cell_names(table: pd.DataFrame) -> list[str]:
    if "layers" in table:
        return [study.manifold_label(row.layers, row.alpha) for row in table.itertuples()]
    return [f"{row.scheduler}, momentum {study.fmt(row.momentum)}, wd {study.fmt(row.weight_decay)}" for row in table.itertuples()]


def beside_table(table: pd.DataFrame, name: str, title: str) -> Table:
    """Published, ours (mean ± sd), difference and status for every published cell."""
    display = pd.DataFrame({
        "cell": _cell_names(table),
        "published (%)": table["published"].map(lambda v: f"{v:.2f}"),
        "ours (%)": [format_stat(r.acc_mean, r.acc_std, r.n, r.n, 2) for r in table.itertuples()],
        "seeds": [f"{r.n}/{r.asked}" if r.asked else "—" for r in table.itertuples()],
        "ours − published (points)": table["difference"].map(format_signed),
        "status": table["status"],
    })
    data = table.drop(columns=["name"]).assign(name=table["name"])
    return Table(name, title, data, display)


def beside_markdown(table: pd.DataFrame, title: str, dataset_name: str) -> str:
    shown = named_by_dataset(beside_table(table, "beside", title), dataset_name)
    return f"**{shown.title}**\n\n{shown.markdown()}"


def published_tables(analysis: Analysis) -> list[Table]:
    """The published cells beside ours, written by ``mixstudy aggregate`` beside the study's tables."""
    return named_tables([
        beside_table(table3_beside_ours(analysis), "table3_published",
                     "Table 3, the study's cells beside ours (test accuracy, %)"),
        beside_table(table1_beside_ours(analysis), "table1_published",
                     "Table 1, the study's cells beside ours (test accuracy, %)"),
    ], analysis.params)
