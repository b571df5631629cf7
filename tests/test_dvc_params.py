"""Every params.yaml section a DVC stage's command reads is declared in that stage's `params:`
(dvc.yaml), so that `dvc exp run -S section.key=value` reruns each stage whose outputs it can change.

The results stages run on fabricated run folders (test_aggregate.py) with parameters that record
every top-level section the command reads; a section read but left out of dvc.yaml fails.
"""

from __future__ import annotations

import pytest
import yaml

from mixstudy import cli
from test_aggregate import REPO, SMALL_GRIDS, small_params, write_all_runs
from test_theory_tables import write_evaluations

# Read by a stage, but unable to change its outputs: `compute` (threads, device, batch size of
# evaluation) is left out of every run's training identity (study.training_config), which is all the
# results stages compare runs with.
READ_WITHOUT_EFFECT = {"compute"}


class RecordingParams(dict):
    """A params mapping that records the top-level sections read (any iteration reads them all)."""

    def __init__(self, params: dict, seen: set[str]):
        super().__init__(params)
        self.seen = seen

    def __getitem__(self, key):
        self.seen.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.seen.add(key)
        return super().get(key, default)

    def __contains__(self, key):
        self.seen.add(key)
        return super().__contains__(key)

    def __iter__(self):
        self.seen.update(super().keys())
        return super().__iter__()

    def keys(self):
        self.seen.update(super().keys())
        return super().keys()

    def items(self):
        self.seen.update(super().keys())
        return super().items()

    def values(self):
        self.seen.update(super().keys())
        return super().values()


def declared_params(stage: str) -> set[str]:
    """The params.yaml sections a stage of dvc.yaml declares (a dotted key counts for its section)."""
    entries = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage].get("params", [])
    return {entry.split(".")[0] for entry in entries if isinstance(entry, str)}


@pytest.fixture(scope="module")
def sections_read(tmp_path_factory):
    """The sections `mixstudy aggregate`, `figures` and `report` read, by DVC stage."""
    out = tmp_path_factory.mktemp("read")
    runs_root = out / "runs"
    params = small_params(f"data.out={out / 'absent.npz'}")
    write_all_runs(runs_root, params)
    write_evaluations(runs_root, params)
    common = ["--params", str(REPO / "params.yaml"), "--set", f"data.out={out / 'absent.npz'}"]
    for override in SMALL_GRIDS:
        common += ["--set", override]
    commands = {
        "aggregate": ["aggregate", "--out-dir", str(out / "tables"), "--summary", str(out / "summary.json"),
                      "--selection", str(out / "none.yaml"), "--subset", str(out / "none.json")],
        "figures": ["figures", "--out-dir", str(out / "figures")],
        "report": ["report", "--out", str(out / "report.md"), "--figures-dir", str(out / "figures"),
                   "--selection", str(out / "none.yaml")],
    }
    read = {}
    original = cli._params
    for stage, command in commands.items():
        seen: set[str] = set()
        cli._params = lambda args, seen=seen: RecordingParams(original(args), seen)
        try:
            assert cli.main([*command, *common, "--runs-root", str(runs_root)]) == 0, stage
        finally:
            cli._params = original
        read[stage] = seen
    return read


@pytest.mark.parametrize("stage", ["aggregate", "figures", "report"])
def test_each_results_stage_declares_every_section_its_command_reads(sections_read, stage):
    read = sections_read[stage] - READ_WITHOUT_EFFECT
    assert read, "the recording saw nothing: the command no longer reads its parameters through cli._params"
    undeclared = sorted(read - declared_params(stage))
    assert undeclared == [], f"dvc.yaml stage {stage} reads params sections it does not declare: {undeclared}"


def test_the_recording_sees_a_section_read_by_key():
    seen: set[str] = set()
    params = RecordingParams({"train": {"lr": 0.1}, "sweep": {}}, seen)
    assert params["train"]["lr"] == 0.1 and seen == {"train"}
    dict(params.items())
    assert seen == {"train", "sweep"}


def test_the_runs_stage_declares_every_section_the_workflow_reads_but_the_subsets_and_the_report():
    """`runs` (Snakemake's train_all) trains, selects and evaluates from every section; the subset's
    settings all name its file, a dependency of the stage; `report` is read by the report alone."""
    sections = set(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert sections - {"subset", "report"} - declared_params("runs") == set()
