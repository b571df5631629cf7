"""A run folder (mixstudy.runs.run_folder names its files, mixstudy.train.run_writer writes them): its file names, its path checked, its lock, a finished run kept or refused,
a damaged one cleared, its log, history.tsv written by hand-checked rules, its finished files."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch

from mixstudy.core.errors import ConfigError, MixstudyError
from mixstudy.runs import run_folder
from mixstudy.runs.run_folder import PROGRESS_FILE, RESUME_FILE
from mixstudy.train import run_writer

SUBSET = "0" * 64


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as the tiny runs train (compute.threads=1): faster on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_folders_files_keep_their_documented_names():
    """The names are defined once (run_folder); they are also what README.md, the committed runs and
    every clone's run folders hold, so none may change."""
    names = {name: getattr(run_folder, name) for name in dir(run_folder) if name.endswith("_FILE") or name == "WEIGHTS"}
    assert names == {"METRICS_FILE": "metrics.json", "HISTORY_FILE": "history.tsv", "WEIGHTS": "model.pt",
                     "LOG_FILE": "train.log", "RESUME_FILE": "resume.pt", "PROGRESS_FILE": "progress.json",
                     "FAILURE_FILE": "failure.json", "LOCK_FILE": ".train.lock", "EVALUATION_FILE": "evaluation.json",
                     "WEIGHTS_LEFT_OUT_FILE": "weights-left-out.json"}


def test_a_run_folder_under_a_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    for folder in (tmp_path / "afile", tmp_path / "afile" / "run"):
        with pytest.raises(ConfigError) as refused:
            run_writer.check_run_folder_path(folder)
        assert str(refused.value) == f"run folder {folder}: {tmp_path / 'afile'} is a file, not a folder; choose another --out"
    run_writer.check_run_folder_path(tmp_path / "new" / "run")  # folders yet to be made are fine
    run_writer.check_run_folder_path(tmp_path)


def test_the_lock_is_held_inside_and_gone_after_even_when_training_raises(tmp_path):
    from filelock import FileLock, Timeout

    folder = tmp_path / "a" / "run"  # made, parents and all
    with pytest.raises(RuntimeError):
        with run_writer.locked_run_folder(folder):
            assert (folder / run_folder.LOCK_FILE).exists()
            with pytest.raises(Timeout):
                FileLock(folder / run_folder.LOCK_FILE).acquire(timeout=0)
            with pytest.raises(MixstudyError) as refused:
                with run_writer.locked_run_folder(folder):
                    pass
            assert str(refused.value) == (
                f"{folder} is being written by another mixstudy process; wait for it to finish or choose another --out"
            )
            raise RuntimeError("training failed")
    assert not (folder / run_folder.LOCK_FILE).exists()
    with run_writer.locked_run_folder(folder):  # free again
        pass


def _finished(folder, config, subset=SUBSET, status="ok"):
    """A finished, intact run folder of ``config`` on ``subset``, written as training writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "config": config, "provenance": {"subset_sha256": subset}, "metrics": {"test": {"acc": 0.5}}}
    run_writer.write_finished_run(folder, record, [{"epoch": 1, "train_loss": 2.0}], {"config": config, "model": {}})
    (folder / "train.log").write_text("log\n")
    return record


def test_kept_record_is_the_record_of_this_very_training_only(tmp_path, tiny_config, caplog):
    config = tiny_config(seed=0)
    folder = tmp_path / "run"
    assert run_writer.kept_record(folder, config, SUBSET) is None  # nothing there
    record = _finished(folder, config)
    with caplog.at_level(logging.INFO, logger="mixstudy"):
        kept = run_writer.kept_record(folder, config, SUBSET)
    assert kept == json.loads(json.dumps(record))
    assert f"{folder}: already finished with this training configuration and subset; kept as it is" in caplog.messages
    assert run_writer.kept_record(folder, tiny_config(seed=1), SUBSET) is None
    assert run_writer.kept_record(folder, config, "1" * 64) is None


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_clear_other_run_leaves_a_folder_without_a_record_alone(tmp_path, tiny_config):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / RESUME_FILE).write_bytes(b"resume")
    (folder / "train.log").write_text("log\n")
    run_writer.clear_other_run(folder, tiny_config(), SUBSET, replace=False)
    assert _names(folder) == sorted([RESUME_FILE, "train.log"])  # a run in progress resumes


def test_a_finished_run_of_another_configuration_is_refused_and_replaced_only_when_asked(tmp_path, tiny_config, caplog):
    folder = tmp_path / "run"
    _finished(folder, tiny_config(seed=0))
    (folder / RESUME_FILE).write_bytes(b"resume")
    before = _names(folder)
    with pytest.raises(MixstudyError) as refused:
        run_writer.clear_other_run(folder, tiny_config(seed=1), SUBSET, replace=False)
    assert str(refused.value) == (
        f"{folder} holds a finished run of another configuration; choose another --out, or pass --replace to train over it"
    )
    assert _names(folder) == before
    with caplog.at_level(logging.WARNING, logger="mixstudy"):
        run_writer.clear_other_run(folder, tiny_config(seed=1), SUBSET, replace=True)
    assert f"{folder}: replacing its other run" in caplog.messages
    assert _names(folder) == [RESUME_FILE]  # the resume point is the new configuration's to judge


@pytest.mark.parametrize("damage", ["not json", '{"status": "ok"}'])
def test_a_damaged_record_is_cleared_without_replace(tmp_path, tiny_config, caplog, damage):
    folder = tmp_path / "run"
    config = tiny_config()
    _finished(folder, config)
    (folder / "failure.json").write_text("{}")
    (folder / "metrics.json").write_text(damage)
    with caplog.at_level(logging.WARNING, logger="mixstudy"):
        run_writer.clear_other_run(folder, config, SUBSET, replace=False)
    assert f"{folder}: replacing its damaged run" in caplog.messages
    assert _names(folder) == []  # metrics.json, history.tsv, model.pt, failure.json, train.log


def test_a_finished_run_of_this_configuration_is_cleared_as_damaged(tmp_path, tiny_config, caplog):
    # train_runs clears only folders kept_record did not keep: a record of this configuration whose
    # files are damaged (here model.pt went) is rebuilt without --replace
    folder = tmp_path / "run"
    config = tiny_config()
    _finished(folder, config)
    (folder / "model.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="mixstudy"):
        run_writer.clear_other_run(folder, config, SUBSET, replace=False)
    assert f"{folder}: replacing its damaged run" in caplog.messages
    assert _names(folder) == []


def test_run_logs_appends_this_processs_mixstudy_lines_to_every_runs_log_and_then_stops(tmp_path):
    logger = logging.getLogger("mixstudy")
    level = logger.level
    logger.setLevel(logging.WARNING)  # as a caller may have it: run logs still get INFO lines
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    (folders[0] / "train.log").write_text("earlier process\n")
    try:
        with run_writer.run_logs(folders):
            logging.getLogger("mixstudy.train.training").info("epoch %d done", 1)
            logging.getLogger("mixstudy.train.training").debug("not logged")
            logging.getLogger("other").warning("not ours")
            assert logger.level == logging.INFO
        logging.getLogger("mixstudy.train.training").warning("after the run")
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(level)
    first = (folders[0] / "train.log").read_text().splitlines()
    second = (folders[1] / "train.log").read_text().splitlines()
    assert first[0] == "earlier process" and len(first) == 2 and len(second) == 1
    assert first[1] == second[0] and second[0].endswith(" INFO mixstudy.train.training: epoch 1 done")


def test_run_logs_records_info_lines_when_the_mixstudy_logger_has_no_level_of_its_own(tmp_path):
    logger = logging.getLogger("mixstudy")
    level = logger.level
    logger.setLevel(logging.NOTSET)  # the usual case: the root logger's WARNING would apply
    try:
        with run_writer.run_logs([tmp_path]):
            logging.getLogger("mixstudy.train.training").info("resuming")
        assert logger.level == logging.NOTSET
    finally:
        logger.setLevel(level)
    assert (tmp_path / "train.log").read_text().endswith(" INFO mixstudy.train.training: resuming\n")


def test_run_logs_opens_no_file_when_nothing_is_logged(tmp_path):
    with run_writer.run_logs([tmp_path]):
        pass
    assert not (tmp_path / "train.log").exists()


def test_history_tsv_has_every_column_in_order_of_first_appearance_and_empty_cells_where_missing():
    history = [
        {"epoch": 1, "train_loss": 2.5, "lr": 0.1},
        {"epoch": 2, "train_loss": 2.0, "lr": 0.1, "val_acc": 0.25},
        {"epoch": 3, "train_loss": 1.5, "test_acc": 0.5, "lr": 0.05},
    ]
    assert run_writer.history_columns(history) == ["epoch", "train_loss", "lr", "val_acc", "test_acc"]
    assert run_writer.history_tsv(history) == (
        "epoch\ttrain_loss\tlr\tval_acc\ttest_acc\n"
        "1\t2.5\t0.1\t\t\n"
        "2\t2.0\t0.1\t0.25\t\n"
        "3\t1.5\t0.05\t\t0.5\n"
    )
    assert run_writer.history_tsv([]) == "epoch\n"


def test_write_finished_run_writes_the_files_and_their_sha256s_and_removes_those_of_a_run_in_progress(tmp_path):
    for name in (RESUME_FILE, PROGRESS_FILE, "failure.json"):
        (tmp_path / name).write_text("in progress")
    (tmp_path / "train.log").write_text("log\n")
    model = {"config": {"seed": 0}, "model": {"w": torch.arange(3.0)}}
    history = [{"epoch": 1, "train_loss": 2.5}]
    record = {"status": "ok"}
    run_writer.write_finished_run(tmp_path, record, history, model)
    assert _names(tmp_path) == ["history.tsv", "metrics.json", "model.pt", "train.log"]
    history_bytes, model_bytes = (tmp_path / "history.tsv").read_bytes(), (tmp_path / "model.pt").read_bytes()
    assert history_bytes == b"epoch\ttrain_loss\n1\t2.5\n"
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    assert saved["config"] == {"seed": 0} and torch.equal(saved["model"]["w"], torch.arange(3.0))
    files = {"history.tsv": hashlib.sha256(history_bytes).hexdigest(), "model.pt": hashlib.sha256(model_bytes).hexdigest()}
    content = json.dumps({"files": files, "status": "ok"}, separators=(",", ":")).encode()  # keys sorted, no spaces
    assert record == {"status": "ok", "files": files, "record_sha256": hashlib.sha256(content).hexdigest()}
    assert json.loads((tmp_path / "metrics.json").read_text()) == record
    assert run_folder.damaged_outputs(tmp_path, record) == []  # what the readers of a run folder check


def test_write_failure_writes_the_record_and_keeps_the_resume_point(tmp_path):
    for name in (RESUME_FILE, PROGRESS_FILE):
        (tmp_path / name).write_text("in progress")
    run_writer.write_failure(tmp_path, {"status": "failed", "error": "nan"})
    assert _names(tmp_path) == sorted(["failure.json", RESUME_FILE])
    assert json.loads((tmp_path / "failure.json").read_text()) == {"status": "failed", "error": "nan"}


def test_write_failure_of_a_run_that_diverged_before_its_first_progress_line(tmp_path):
    """A run can diverge in its first epoch, before progress.json exists: the record is still written."""
    run_writer.write_failure(tmp_path, {"status": "failed", "error": "nan"})
    assert _names(tmp_path) == ["failure.json"]
