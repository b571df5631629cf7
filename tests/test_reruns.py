"""What the workflow makes again, decided from the run folders (mixstudy.runs.reruns): finished runs,
stale runs and their rebuild requests named by the training hash asked, evaluations after a retrain,
and the run spec a training job gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixstudy.runs import reruns, run_folder, study

from mixstudy.train import run_writer
from mixstudy.core.config import apply_override, load_params

ROOT = Path(__file__).resolve().parents[1]
SUBSET = "a" * 64
SELECTION = {"scheduler": "step", "momentum": 0.9, "weight_decay": 0.001}
GRID = ["sweep.layer_sets=[[0]]", "sweep.alphas=[1.0]", "sweep.seeds=[0]", "sweep.cutmix_alphas=[]",
        "sweep.label_smoothing=[]", "sweep.cutout_sizes=[]", "tuning.grid.scheduler=[step]",
        "tuning.grid.momentum=[0.9]", "tuning.grid.weight_decay=[0.001]", "tuning.seeds=[0]"]


def _params(*overrides: str) -> dict:
    return load_params([ROOT / "params.yaml"], [*GRID, *overrides])


def _finish(root: Path, params: dict, spec: study.RunSpec, selection=SELECTION) -> Path:
    """A finished, intact run folder of what ``params`` asks of ``spec``, as training writes it."""
    folder = spec.folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    config = study.spec_config(params, spec, selection)
    record = {"status": "ok", "config": config, "provenance": {"subset_sha256": SUBSET}, "metrics": {"test": {"acc": 0.5}}}
    run_writer.write_finished_run(folder, record, [{"epoch": 1, "train_loss": 2.0}], {"config": config, "model": {}})
    return folder


def _plan(params: dict, root: Path, selection=SELECTION, rebuild_root=None) -> reruns.Plan:
    return reruns.plan_runs(params, study.tuning_runs(params), study.sweep_runs(params), root, SUBSET, selection,
                            str(rebuild_root or root / "rebuild"))


def _finish_all(root: Path, params: dict) -> None:
    for spec in study.all_runs(params):
        _finish(root, params, spec)


def test_finished_runs_need_nothing_and_runs_of_another_setting_get_a_request_named_by_the_hash_asked(tmp_path):
    params = _params()
    _finish_all(tmp_path, params)
    plan = _plan(params, tmp_path)
    assert plan.selection_settled and plan.finished == {spec.run_id for spec in study.all_runs(params)}
    assert plan.rebuild == {} and plan.requests() == []

    changed = apply_override(params, "train.lr=0.05")  # the sweep's runs change; the tuning's (its own lr) do not
    plan = _plan(changed, tmp_path)
    sweep = {spec.run_id: spec for spec in study.sweep_runs(changed)}
    assert set(plan.rebuild) == set(sweep) and plan.finished == {spec.run_id for spec in study.tuning_runs(changed)}
    for run_id, state in plan.rebuild.items():
        assert state.key == study.training_hash(study.spec_config(changed, sweep[run_id], SELECTION), SUBSET)
        assert plan.request(run_id) == f"{tmp_path}/rebuild/{run_id}/{state.key}.txt"
    assert plan.requests() == sorted(plan.request(run_id) for run_id in sweep)

    again = _plan(apply_override(params, "train.lr=0.02"), tmp_path)  # the second change of the same knob
    assert {run_id: state.key for run_id, state in again.rebuild.items()}.keys() == sweep.keys()
    assert not set(again.requests()) & set(plan.requests()), "a request of the first change counts for the second"


def test_a_request_left_from_an_earlier_change_never_counts_as_made(tmp_path):
    """lr 0.1 -> 0.05 -> 0.1 -> 0.05: each change asks for a request that is not on disk, because
    writing one removes the run's requests of other keys."""
    base, changed = _params(), _params("train.lr=0.05")
    spec = study.sweep_runs(base)[0]
    _finish_all(tmp_path, base)
    to_changed = _plan(changed, tmp_path).request(spec.run_id)
    reruns.write_rebuild_request(to_changed, "another training")
    _finish(tmp_path, changed, spec)  # trained for it

    back = _plan(base, tmp_path).request(spec.run_id)
    assert back != to_changed and not Path(back).exists()
    assert reruns.write_rebuild_request(back, "another training") == [Path(to_changed)]
    _finish(tmp_path, base, spec)

    forth = _plan(changed, tmp_path).request(spec.run_id)
    assert forth == to_changed and not Path(forth).exists(), "the first change's request was found already made"
    assert Path(back).read_text() == "another training\n"


def test_a_finished_run_keeps_the_request_it_was_trained_for_among_its_inputs(tmp_path):
    """So its training job's set of inputs is the one Snakemake recorded: the next invocation plans nothing."""
    params, changed = _params(), _params("train.lr=0.05")
    spec = study.sweep_runs(params)[0]
    _finish_all(tmp_path, params)
    assert _plan(params, tmp_path).request(spec.run_id) is None  # no request was ever made
    request = _plan(changed, tmp_path).request(spec.run_id)
    reruns.write_rebuild_request(request, "another training")
    _finish(tmp_path, changed, spec)
    plan = _plan(changed, tmp_path)
    assert spec.run_id in plan.finished and spec.run_id not in plan.rebuild and plan.request(spec.run_id) == request
    assert request not in plan.requests()  # the target rules ask only for stale runs' requests


def test_damaged_files_of_the_asked_training_get_a_request_and_a_run_without_files_none(tmp_path):
    params = _params()
    _finish_all(tmp_path, params)
    damaged, empty = study.sweep_runs(params)
    (damaged.folder(tmp_path) / "model.pt").write_bytes(b"x")
    for path in empty.folder(tmp_path).iterdir():
        path.unlink()
    plan = _plan(params, tmp_path)
    assert set(plan.rebuild) == {damaged.run_id}, "a run with no metrics.json is made by its missing outputs"
    assert "differs from the sha256" in plan.rebuild[damaged.run_id].reason
    assert empty.run_id not in plan.finished


def test_without_the_subset_nothing_is_finished_and_nothing_requested(tmp_path):
    params = _params()
    _finish_all(tmp_path, params)
    plan = reruns.plan_runs(params, study.tuning_runs(params), study.sweep_runs(params), tmp_path, None, SELECTION)
    assert plan.finished == set() and plan.rebuild == {}


def test_sweep_runs_wait_for_the_tuning_choice_unless_stale_in_anything_else(tmp_path):
    params = _params()
    _finish_all(tmp_path, params)
    tuning_changed = apply_override(params, "tuning.lr=0.02")  # tuning runs to train: the choice may change
    plan = _plan(tuning_changed, tmp_path)
    assert not plan.selection_settled
    assert set(plan.states) == {spec.run_id for spec in study.tuning_runs(params)}  # the sweep: undecided
    both_changed = apply_override(tuning_changed, "train.lr=0.05")  # stale whatever the choice: known now
    plan = _plan(both_changed, tmp_path)
    assert set(plan.rebuild) == {spec.run_id for spec in study.all_runs(params)}
    assert plan.rebuild[study.sweep_runs(params)[0].run_id].key == study.training_hash(
        study.spec_config(both_changed, study.sweep_runs(params)[0], SELECTION), SUBSET)
    no_selection = _plan(params, tmp_path, selection=None)
    assert not no_selection.selection_settled and set(no_selection.states) == {s.run_id for s in study.tuning_runs(params)}


def _evaluate(folder: Path, theory: dict) -> None:
    model_sha256 = json.loads((folder / "metrics.json").read_text())["files"]["model.pt"]
    (folder / run_folder.EVALUATION_FILE).write_text(json.dumps({"provenance": {"model_sha256": model_sha256, "theory": theory}}))


def test_a_run_trained_again_is_evaluated_again_though_its_evaluation_matches_its_old_model(tmp_path):
    params = _params()
    _finish_all(tmp_path, params)
    spec = study.sweep_runs(params)[0]
    _evaluate(spec.folder(tmp_path), params["theory"])
    assert reruns.evaluation_settled(_plan(params, tmp_path), spec, params["theory"])
    assert not reruns.evaluation_settled(_plan(_params("train.lr=0.05"), tmp_path), spec, params["theory"])
    assert not reruns.evaluation_settled(_plan(params, tmp_path), spec, {**params["theory"], "jacobian_images": 7})


@pytest.mark.parametrize("config_file", [None, "config/smoke.yaml", "config/table3.yaml", "config/cifar100.yaml"])
def test_the_run_spec_gives_the_training_command_the_configuration_the_grid_asks(config_file):
    """`mixstudy train --run-spec` builds run_config(sections, seed, overrides, choice): the same
    configuration as study.spec_config, for every run of the grids."""
    params = load_params([ROOT / "params.yaml", *([ROOT / config_file] if config_file else [])])
    for spec in study.all_runs(params):
        given = json.loads(json.dumps(reruns.run_spec(params, spec)))
        selection = SELECTION if study.needs_selection(params, spec) else None
        built = study.run_config(given["sections"], given["seed"], given["overrides"], selection)
        assert built == study.spec_config(params, spec, selection), spec.run_id


def test_the_run_spec_holds_only_what_the_run_reads():
    """A setting a run does not read leaves its training job's params as they were (no rerun)."""
    params = _params()

    def specs(chosen):
        return (reruns.run_spec(chosen, study.tuning_runs(chosen)[0]), reruns.run_spec(chosen, study.sweep_runs(chosen)[0]))

    tuning, sweep = specs(params)
    for change, changes_tuning, changes_sweep in [("train.lr=0.05", False, True), ("tuning.lr=0.5", True, False),
                                                  ("model.convnet.dropout=0.1", False, False),
                                                  ("model.cnn13.dropout=0.1", True, True),
                                                  ("compute.pack_size=4", False, False)]:
        changed_tuning, changed_sweep = specs(apply_override(params, change))
        assert (changed_tuning != tuning, changed_sweep != sweep) == (changes_tuning, changes_sweep), change
