"""Weights left out on purpose (a finished run committed without its model.pt) against weights lost
or damaged: the first stays finished and is never retrained, the others are damaged."""

from __future__ import annotations

import json

import pytest
import torch

from mixstudy.train import run_writer

from mixstudy.runs import run_folder
from mixstudy.cli import main
from mixstudy.core.errors import ConfigError
from mixstudy.core.fileio import sha256_file, write_json

THEORY = {"jacobian_images": 10}


def _finished(folder, evaluated: bool = True) -> dict:
    folder.mkdir(parents=True)
    record = {"status": "ok", "config": {"seed": 0}, "provenance": {"subset_sha256": "s"}, "metrics": {}}
    run_writer.write_finished_run(folder, record, [{"epoch": 1, "train_loss": 2.0}], {"config": {}, "model": {"w": torch.ones(3)}})
    if evaluated:  # as `mixstudy evaluate` records the model it measured
        write_json(folder / run_folder.EVALUATION_FILE, {"provenance": {"model_sha256": sha256_file(folder / "model.pt"), "theory": THEORY}})
    return record


def test_a_run_whose_weights_are_left_out_on_purpose_stays_finished(tmp_path):
    record = _finished(tmp_path / "run")
    left_out = run_folder.leave_out_weights(tmp_path / "run", THEORY)
    assert left_out["sha256"] == record["files"]["model.pt"]
    assert run_folder.unfinished_reason(tmp_path / "run", None) is None  # with its model.pt still there
    (tmp_path / "run" / "model.pt").unlink()
    assert run_folder.weights_left_out(tmp_path / "run", record)
    assert run_folder.unfinished_reason(tmp_path / "run", None) is None
    assert run_folder.evaluation_is_current(tmp_path / "run", THEORY)  # its measures still stand


def test_weights_lost_without_the_record_of_leaving_them_out_are_damaged(tmp_path):
    record = _finished(tmp_path / "run")
    (tmp_path / "run" / "model.pt").unlink()
    assert not run_folder.weights_left_out(tmp_path / "run", record)
    assert run_folder.unfinished_reason(tmp_path / "run", None) == "model.pt is missing or empty"


def test_a_left_out_record_naming_other_weights_does_not_cover_a_loss(tmp_path):
    record = _finished(tmp_path / "run")
    write_json(tmp_path / "run" / run_folder.WEIGHTS_LEFT_OUT_FILE, {"sha256": "0" * 64})
    (tmp_path / "run" / "model.pt").unlink()
    assert not run_folder.weights_left_out(tmp_path / "run", record)
    assert "model.pt is missing" in run_folder.unfinished_reason(tmp_path / "run", None)


def test_weights_that_are_there_are_checked_even_when_left_out_was_recorded(tmp_path):
    _finished(tmp_path / "run")
    run_folder.leave_out_weights(tmp_path / "run", THEORY)
    (tmp_path / "run" / "model.pt").write_bytes(b"other weights")
    assert run_folder.unfinished_reason(tmp_path / "run", None) == "model.pt differs from the sha256 in metrics.json"


def test_weights_are_left_out_only_after_their_evaluation(tmp_path):
    _finished(tmp_path / "run", evaluated=False)
    with pytest.raises(ConfigError, match="evaluation.json"):
        run_folder.leave_out_weights(tmp_path / "run", THEORY)
    assert not (tmp_path / "run" / run_folder.WEIGHTS_LEFT_OUT_FILE).exists()
    _finished(tmp_path / "other")
    with pytest.raises(ConfigError, match="evaluation.json"):  # measured with other theory settings
        run_folder.leave_out_weights(tmp_path / "other", {"jacobian_images": 5})


def test_the_weights_of_an_unfinished_run_cannot_be_left_out(tmp_path):
    _finished(tmp_path / "run")
    (tmp_path / "run" / "history.tsv").write_text("changed")
    with pytest.raises(ConfigError, match="finished, intact"):
        run_folder.leave_out_weights(tmp_path / "run", THEORY)


def test_the_command_records_each_folder_and_refuses_in_one_line(tmp_path, capsys):
    _finished(tmp_path / "a")
    _finished(tmp_path / "b", evaluated=False)
    theory = json.dumps({"theory": THEORY})
    assert main(["leave-out-weights", "--params-json", theory, str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / run_folder.WEIGHTS_LEFT_OUT_FILE).is_file()
    assert main(["leave-out-weights", "--params-json", theory, str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err.strip()
    assert "evaluation.json" in error and len(error.splitlines()) == 1
