"""Pick the best baseline configuration from the finished tuning runs (the study's Table 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from mixstudy.errors import MixstudyError
from mixstudy.fileio import write_text
from mixstudy.study import RunSpec, read_run_record


def select_best(specs: list[RunSpec], runs_root: str | Path) -> dict:
    """Mean accuracy over seeds per configuration; validation accuracy when the runs have it, else test.

    Every tuning run must be finished: a selection over a partial grid would silently change
    when the missing runs arrive.
    """
    by_name: dict[str, list[dict]] = {}
    missing = []
    for spec in specs:
        path = spec.folder(runs_root) / "metrics.json"
        if not path.is_file():
            missing.append(spec.run_id)
            continue
        by_name.setdefault(spec.name, []).append(read_run_record(spec.folder(runs_root)))
    if missing:
        raise MixstudyError(f"{len(missing)} tuning run(s) are not finished, e.g. {missing[:3]}; train them first")
    table = []
    split = "val" if all("val" in (r["metrics"] or {}) for runs in by_name.values() for r in runs) else "test"
    for name, records in by_name.items():
        scores = [r["metrics"][split]["acc"] for r in records if r["status"] == "ok"]
        train = records[0]["config"]["train"]
        table.append(
            {
                "name": name,
                "scheduler": train["scheduler"]["name"],
                "momentum": train["momentum"],
                "weight_decay": train["weight_decay"],
                "mean_acc": float(np.mean(scores)) if scores else float("-inf"),
                "finished_seeds": len(scores),
                "failed_seeds": len(records) - len(scores),
            }
        )
    table.sort(key=lambda row: row["mean_acc"], reverse=True)
    best = table[0]
    if best["finished_seeds"] == 0:
        raise MixstudyError("every tuning run failed; there is no configuration to select")
    return {
        "scheduler": best["scheduler"],
        "momentum": best["momentum"],
        "weight_decay": best["weight_decay"],
        "selected_by": f"mean {split} accuracy over seeds",
        "mean_acc": best["mean_acc"],
        "ranking": table,
    }


def write_selection(selection: dict, out: str | Path) -> None:
    write_text(out, yaml.safe_dump(selection, sort_keys=False))
