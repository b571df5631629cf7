"""Gain of manifold mixup (S={0,2}, alpha=4) over the baseline at every epoch the test set was
evaluated (evaluation.every), from run folders. With warm restarts (period t_0 = 10) the schedule
does not depend on the run's length, so a 400-epoch run's test accuracy at epoch 100, 200 or 300 is
what a run of that many epochs ends with (tests/test_training.py::test_warm_restart_run_at_a_cycle_end_is_the_shorter_run).

    python docs/first-run-search/gain_by_epoch.py docs/first-run-search/w16_every50
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from mixstudy.results.tables import welch_difference

ARMS = {"baseline": "baseline", "mixup": "manifold_S0-2_alpha4"}


def test_accuracy_by_epoch(runs: Path, name: str) -> pd.DataFrame:
    """Test accuracy in percent, one column per seed, one row per evaluated epoch."""
    columns = {}
    for folder in sorted((runs / "sweep" / name).glob("seed*")):
        history = pd.read_csv(folder / "history.tsv", sep="\t").dropna(subset=["test_acc"])
        columns[folder.name] = history.set_index("epoch")["test_acc"] * 100
    return pd.DataFrame(columns)


def gain_by_epoch(runs: Path) -> pd.DataFrame:
    baseline, mixup = (test_accuracy_by_epoch(runs, name) for name in ARMS.values())
    rows = []
    for epoch in baseline.index.intersection(mixup.index):
        gain = welch_difference(mixup.loc[epoch].to_numpy(), baseline.loc[epoch].to_numpy())
        rows.append({
            "epoch": epoch,
            "baseline (%)": " / ".join(f"{v:.2f}" for v in baseline.loc[epoch]),
            "mixup (%)": " / ".join(f"{v:.2f}" for v in mixup.loc[epoch]),
            "gain (points)": f"{gain['diff']:+.2f}",
            "95% Welch interval": f"[{gain['ci_low']:+.2f}, {gain['ci_high']:+.2f}]",
        })
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print(gain_by_epoch(Path(sys.argv[1])).to_markdown(index=False, disable_numparse=True))
