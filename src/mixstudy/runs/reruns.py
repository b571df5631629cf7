"""What the workflow must make again, decided by content (read only; the Snakefile's rules ask).

Snakemake decides reruns by modification times and its own metadata; neither says whether a run's
folder holds the training asked for (a clone, a checkout, `dvc pull` or a DVC experiment's workspace
bring new times and no metadata). This module decides it from the folders themselves, once per
invocation, before any job runs:

- a run is *finished* when its folder holds an intact run of the training hash asked for
  (:func:`mixstudy.runs.run_folder.unfinished_reason`); its training job gets ancient inputs;
- a run whose folder holds another training (or damaged files) is *stale*: it gets a rebuild
  request, ``results/rebuild/<run id>/<key>.txt``, that its training job waits for. The key is the
  training hash the request was made for, so a request left from an earlier change never counts as
  made for a later one; the job that writes a request removes the run's requests of other keys,
  so going back to an earlier setting cannot find its old request either. A run finished with
  the key of a request it still has keeps that request among its (ancient) inputs: its training
  job's set of inputs stays what Snakemake recorded, and the next invocation plans nothing;
- a sweep run's ``evaluation.json`` is current when it was computed from the run's ``model.pt``
  with the ``theory`` settings asked; its job's inputs are ancient only when, besides, the run is
  finished (not trained in this invocation): a retrained run is always evaluated again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mixstudy.runs import run_folder, study
from mixstudy.core.errors import ConfigError

REBUILD_ROOT = "results/rebuild"  # rebuild requests (not versioned: a fresh clone needs none)
UNSETTLED = "the tuning's choice is not settled"


@dataclass(frozen=True)
class RunState:
    """A run's state: ``reason`` None when finished, else why not; ``key``, the training hash asked
    of it (None while the subset is not made: then the subset job's output makes the job run)."""

    reason: str | None
    key: str | None


def subset_sha256(path: str | Path) -> str | None:
    """The training images' content hash a subset file records (None: no readable subset yet)."""
    try:
        return json.loads(Path(path).read_text())["train_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def current_selection(path: str | Path) -> dict | None:
    """The tuning's choice in ``path`` (None when there is none, or it is unreadable: made again)."""
    try:
        return study.read_selection(path)
    except ConfigError:
        return None


def recorded_selection(folder: str | Path) -> dict | None:
    """The tuning's choice a finished sweep run was trained with (None without a readable run)."""
    try:
        train = run_folder.read_run_record(folder)["config"]["train"]
        return {"scheduler": train["scheduler"]["name"], "momentum": train["momentum"], "weight_decay": train["weight_decay"]}
    except (ConfigError, KeyError, TypeError):
        return None


def asked_hash(params: dict, spec: study.RunSpec, subset: str | None, selection: dict | None) -> str | None:
    """The training hash asked of a run with this tuning choice (a sweep run without one: the hash
    of everything else asked, a key that still changes with every other setting)."""
    if subset is None:
        return None
    chosen = selection if study.needs_selection(params, spec) else None
    return study.training_hash(study.run_config(params, spec.seed, spec.overrides, chosen), subset)


def run_state(params: dict, spec: study.RunSpec, runs_root: str | Path, subset: str | None, selection: dict | None) -> RunState:
    """Whether the run's folder holds a finished, intact run of what is asked (with this choice)."""
    key = asked_hash(params, spec, subset, selection)
    if key is None:
        return RunState("the subset is not made yet", None)
    return RunState(run_folder.unfinished_reason(spec.folder(runs_root), key), key)


@dataclass
class Plan:
    """Every run's state for one invocation. ``states`` holds the runs decided now; a sweep run
    that waits for the tuning's choice (tuning runs to train) and has nothing else stale is left
    out: its selection input decides, by content, once ``select_baseline`` has run."""

    states: dict[str, RunState]
    selection_settled: bool
    runs_root: str = study.RUNS_ROOT
    rebuild_root: str = REBUILD_ROOT
    _folders: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> set[str]:
        return {run_id for run_id, state in self.states.items() if state.reason is None}

    @property
    def rebuild(self) -> dict[str, RunState]:
        """Stale runs with outputs on disk (another configuration, damaged files), by run id."""
        return {
            run_id: state
            for run_id, state in self.states.items()
            if state.reason is not None and state.key is not None and (self._folders[run_id] / run_folder.METRICS_FILE).exists()
        }

    def request(self, run_id: str) -> str | None:
        """The rebuild request of a stale run, or the one a finished run was trained for, if it is
        still there (so its job's inputs stay the ones Snakemake recorded); None otherwise."""
        state = self.states.get(run_id)
        if state is None or state.key is None:
            return None
        path = rebuild_request(run_id, state.key, self.rebuild_root)
        if run_id in self.rebuild or (state.reason is None and Path(path).is_file()):
            return path
        return None

    def requests(self) -> list[str]:
        """What the target rules ask for: the rebuild request of every stale run."""
        return [rebuild_request(run_id, state.key, self.rebuild_root) for run_id, state in sorted(self.rebuild.items())]


def plan_runs(
    params: dict,
    tuning: list[study.RunSpec],
    sweep: list[study.RunSpec],
    runs_root: str | Path,
    subset: str | None,
    selection: dict | None,
    rebuild_root: str = REBUILD_ROOT,
) -> Plan:
    """The state of every run of the grids, from the run folders, the subset's hash and the tuning's
    choice as they are before any job runs."""
    states = {spec.run_id: run_state(params, spec, runs_root, subset, None) for spec in tuning}
    # The choice cannot change in this invocation when every tuning run is finished and selection.yaml
    # exists; otherwise a sweep run is judged with the choice it recorded: stale in anything else, it
    # is known stale now; else it waits for select_baseline (the training command keeps it if unchanged).
    settled = selection is not None and all(state.reason is None for state in states.values())
    for spec in sweep:
        if settled or not study.needs_selection(params, spec):
            states[spec.run_id] = run_state(params, spec, runs_root, subset, selection)
            continue
        recorded = recorded_selection(spec.folder(runs_root))
        state = run_state(params, spec, runs_root, subset, recorded)
        if recorded is None:
            state = RunState(UNSETTLED if state.reason is None else state.reason, state.key)
        if state.reason is not None:
            states[spec.run_id] = state
    folders = {spec.run_id: spec.folder(runs_root) for spec in [*tuning, *sweep]}
    return Plan(states, settled, str(runs_root), rebuild_root, folders)


def rebuild_request(run_id: str, key: str, root: str = REBUILD_ROOT) -> str:
    """The rebuild request of a run for one training hash: ``results/rebuild/<run id>/<key>.txt``."""
    return f"{root}/{run_id}/{key}.txt"


def write_rebuild_request(path: str | Path, reason: str) -> list[Path]:
    """Write a request (its reason, one line) and remove the run's requests of other keys, which no
    later change may find already made. Returns the removed files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    removed = [other for other in path.parent.glob("*.txt") if other.name != path.name]
    for other in removed:
        other.unlink()
    path.write_text(reason.strip() + "\n")
    return removed


def evaluation_settled(plan: Plan, spec: study.RunSpec, theory: dict) -> bool:
    """Whether a sweep run's evaluation job can have ancient inputs: the run is not trained in this
    invocation (finished now) and its evaluation.json was computed from its model.pt with these
    ``theory`` settings. A run trained now is always evaluated after its training."""
    return spec.run_id in plan.finished and run_folder.evaluation_is_current(spec.folder(plan.runs_root), theory)


def run_spec(params: dict, spec: study.RunSpec) -> dict:
    """What the workflow passes a training job for one run (``mixstudy train --run-spec``): its run
    sections as the run sees them before the tuning's choice (the chosen network's settings, its
    own overrides applied), its seed and its overrides. Settings the run does not read are not in
    it, so changing them changes no training job's params (Snakemake's rerun trigger)."""
    sections = study.run_config(params, spec.seed, spec.overrides)
    sections.pop("seed")
    sections["data"] = {"name": params["data"]["name"]}
    return {"run_id": spec.run_id, "sections": sections, "seed": spec.seed, "overrides": spec.overrides}
