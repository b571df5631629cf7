"""Faults and bad inputs a careful user tried (issue 36), each one line, exit 2 (130 for Ctrl-C),
nothing lost and nothing silently wrong. Fabricated run folders as in test_aggregate.py; the tiny
runs that train take a fraction of a second.

  a record changed by hand      the run is named in problems.csv, in no table, warned of at the top
  a damaged output file         likewise (the sha256s its record lists are checked)
  an empty or foreign runs root aggregate, figures and report refuse and touch nothing
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from mixstudy import cli

from mixstudy.runs import run_folder, study
from mixstudy.results.analysis import analyse
from mixstudy.core.config import load_params
from mixstudy.report.document import write_report
from test_aggregate import ACCURACY, REPO, SMALL_GRIDS, small_params, write_all_runs

TAMPERED = "sweep/baseline/seed1"


def _sign(folder: Path, model: bytes | None = None) -> dict:
    """Give a fabricated run what training records: its files' sha256s (model.pt written when
    given) and the digest of its record."""
    record = json.loads((folder / "metrics.json").read_text())
    record["files"] = {"history.tsv": hashlib.sha256((folder / "history.tsv").read_bytes()).hexdigest()}
    if model is not None:
        (folder / "model.pt").write_bytes(model)
        record["files"]["model.pt"] = hashlib.sha256(model).hexdigest()
    (folder / "metrics.json").write_text(json.dumps(run_folder.with_record_digest(record), indent=2))
    return record


def _set_test_acc(folder: Path, acc: float) -> None:
    """A hand edit: the test accuracy changed, every other byte of the file kept."""
    record = json.loads((folder / "metrics.json").read_text())
    record["metrics"]["test"]["acc"] = acc
    (folder / "metrics.json").write_text(json.dumps(record, indent=2))


@pytest.fixture
def signed_root(tmp_path):
    """Every run of the small grids; every sweep run signed as training signs it now, the tuning
    runs without digest or sha256s, as runs recorded before them are."""
    params = small_params(f"data.out={tmp_path / 'absent.npz'}")
    root = tmp_path / "runs"
    write_all_runs(root, params)
    for spec in study.sweep_runs(params):
        _sign(spec.folder(root), model=f"weights of {spec.run_id}".encode())
    return root, params


# --- a record changed by hand ---------------------------------------------------------------


def test_a_signed_record_reads_as_it_did_unsigned(signed_root, tmp_path):
    root, params = signed_root
    analysis = analyse(params, root)
    assert analysis.problems.empty and analysis.counts()["finished"] == 30
    assert analysis.configs.set_index("name").loc["baseline", "acc_mean"] == pytest.approx(100 * sum(ACCURACY["baseline"]) / 3)


def test_a_hand_edited_test_accuracy_is_named_and_left_out_of_every_table(signed_root, tmp_path, capsys, monkeypatch):
    root, params = signed_root
    _set_test_acc(study.find_run(params, TAMPERED).folder(root), 0.986)
    analysis = analyse(params, root)
    problem = analysis.problems.set_index("run_id").loc[TAMPERED]
    assert problem["problem"] == "damaged"
    assert problem["reason"] == "metrics.json was changed after training (its content does not match its record_sha256)"
    assert TAMPERED not in set(analysis.runs["run_id"])
    baseline = analysis.configs.set_index("name").loc["baseline"]
    assert (baseline["n"], baseline["acc_mean"]) == (2, pytest.approx(100 * (0.50 + 0.55) / 2))

    monkeypatch.chdir(tmp_path)
    common = ["--params", str(REPO / "params.yaml"), "--set", f"data.out={tmp_path / 'absent.npz'}"]
    for override in SMALL_GRIDS:
        common += ["--set", override]
    assert cli.main(["aggregate", *common, "--runs-root", str(root), "--out-dir", "tables", "--summary", "summary.json"]) == 0
    assert "29 of 30 runs finished, 0 failed, 0 missing, 0 mismatched, 1 damaged" in capsys.readouterr().out
    problems = pd.read_csv(tmp_path / "tables" / "problems.csv")
    assert problems[["run_id", "problem"]].values.tolist() == [[TAMPERED, "damaged"]]
    assert TAMPERED not in set(pd.read_csv(tmp_path / "tables" / "runs.csv")["run_id"])
    assert "98.6" not in (tmp_path / "tables" / "table2_baseline.md").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["runs.damaged"], summary["baseline.n"]) == (1, 2)

    markdown, _ = write_report(params, root, tmp_path / "report.md", tmp_path / "figures")
    lines = markdown.read_text().splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("**Warning: 1 run(s) are left out"))
    assert warning < next(i for i, line in enumerate(lines) if line.startswith("## "))  # before the first section
    assert f"`{TAMPERED}`" in lines[warning]


def test_a_report_without_damaged_runs_has_no_warning(signed_root, tmp_path):
    root, params = signed_root
    markdown, _ = write_report(params, root, tmp_path / "report.md", tmp_path / "figures")
    assert "Warning" not in markdown.read_text()


def test_a_hand_edited_record_is_not_finished_and_training_replaces_it(tmp_path, tiny_config, tiny_data, caplog):
    from mixstudy.train.training import train_runs

    folder, config = tmp_path / "run", tiny_config()
    [record] = train_runs([config], tiny_data, [folder], progress="lines")
    assert record[run_folder.RECORD_DIGEST] == json.loads((folder / "metrics.json").read_text())[run_folder.RECORD_DIGEST]
    expected = study.training_hash(config, tiny_data.subset_sha256)
    assert run_folder.unfinished_reason(folder, expected) is None
    acc = record["metrics"]["test"]["acc"]
    _set_test_acc(folder, 0.986)
    assert run_folder.unfinished_reason(folder, expected) == (
        "metrics.json was changed after training (its content does not match its record_sha256)"
    )
    [again] = train_runs([config], tiny_data, [folder], progress="lines")  # no --replace: its own run, damaged
    assert f"{folder}: replacing its damaged run" in caplog.messages
    assert again["metrics"]["test"]["acc"] == acc
    assert run_folder.unfinished_reason(folder, expected) is None


def test_the_digest_is_of_the_content_not_of_its_layout():
    record = {"status": "ok", "config": {"b": 1, "a": [0.1, 2]}, "metrics": {"test": {"acc": 0.5}}}
    signed = run_folder.with_record_digest(dict(record))
    relaid = json.loads(json.dumps(signed, indent=None, sort_keys=True))  # another layout, same content
    assert run_folder.record_tampering(relaid) is None
    assert run_folder.record_tampering(record) is None  # no digest: a record written before digests
    relaid["metrics"]["test"]["acc"] = 0.51
    assert run_folder.record_tampering(relaid) is not None


@pytest.mark.parametrize(
    "params_files, runs",
    [
        (["config/table3.yaml"], "docs/real-runs"),
        (["config/study-net.yaml"], "docs/study-runs/study-net/runs"),
        (["config/first.yaml", "config/padding-share/zero.yaml"], "docs/study-runs/padding-share/zero/runs"),
    ],
)
def test_the_committed_runs_have_no_digest_and_stay_finished(params_files, runs):
    params = load_params([REPO / "params.yaml", *(REPO / name for name in params_files)], [])
    analysis = analyse(params, REPO / runs)
    assert analysis.problems.empty
    assert analysis.counts()["finished"] == analysis.counts()["expected"]
    for spec in study.all_runs(params):
        assert run_folder.RECORD_DIGEST not in run_folder.read_run_record(spec.folder(REPO / runs))


def test_select_refuses_a_hand_edited_tuning_record_naming_it(signed_root):
    from mixstudy.core.errors import MixstudyError
    from mixstudy.results.selection import select_best

    root, params = signed_root
    folder = study.find_run(params, "tuning/step_mom0.9_wd0.001/seed0").folder(root)
    _sign(folder)
    select_best(params, root)  # signed and intact: chosen from as before
    _set_test_acc(folder, 0.986)
    with pytest.raises(MixstudyError) as refused:
        select_best(params, root)
    assert str(refused.value) == (
        f"{folder}: metrics.json was changed after training (its content does not match its record_sha256); "
        "train it again (mixstudy train --run tuning/step_mom0.9_wd0.001/seed0)"
    )


# --- a damaged output file ------------------------------------------------------------------


def test_a_flipped_byte_in_model_pt_is_named_and_left_out(signed_root):
    root, params = signed_root
    model = study.find_run(params, TAMPERED).folder(root) / "model.pt"
    data = bytearray(model.read_bytes())
    data[3] ^= 0x01
    model.write_bytes(bytes(data))
    analysis = analyse(params, root)
    problem = analysis.problems.set_index("run_id").loc[TAMPERED]
    assert (problem["problem"], problem["reason"]) == ("damaged", "model.pt differs from the sha256 in metrics.json")
    assert TAMPERED not in set(analysis.runs["run_id"])
    assert analysis.configs.set_index("name").loc["baseline", "n"] == 2


@pytest.mark.parametrize("damage, reason", [
    (lambda path: path.write_text(""), "history.tsv is empty"),
    (lambda path: path.write_text(path.read_text() + "5\t0.1\t0.99\t0.01\t7.5\t\t\t\n"),
     "history.tsv differs from the sha256 in metrics.json"),
])
def test_a_damaged_history_is_named_and_left_out(signed_root, damage, reason):
    root, params = signed_root
    damage(study.find_run(params, TAMPERED).folder(root) / "history.tsv")
    problem = analyse(params, root).problems.set_index("run_id").loc[TAMPERED]
    assert (problem["problem"], problem["reason"]) == ("damaged", reason)


def test_weights_left_out_of_a_folder_are_not_damage(signed_root):
    root, params = signed_root
    (study.find_run(params, TAMPERED).folder(root) / "model.pt").unlink()  # as committed runs leave them out
    analysis = analyse(params, root)
    assert analysis.problems.empty and TAMPERED in set(analysis.runs["run_id"])


# --- an empty or foreign runs root ----------------------------------------------------------


def _snapshot(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("root_kind", ["empty", "foreign"])
def test_aggregate_figures_and_report_refuse_a_runs_root_without_the_grids_runs(tmp_path, capsys, monkeypatch, root_kind):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    if root_kind == "empty":
        root.mkdir()
    else:  # the same run ids, trained with other epochs
        write_all_runs(root, small_params("train.epochs=7", "tuning.epochs=7"))
    for path, text in {"results/tables/table3_acc.md": "kept", "metrics/summary.json": "{}", "results/figures/a.png": "png",
                       "results/report.md": "report", "results/report.html": "html"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    before = _snapshot(tmp_path)
    common = ["--params", str(REPO / "params.yaml"), "--runs-root", str(root)]
    for override in SMALL_GRIDS:
        common += ["--set", override]
    for argv in (["aggregate", *common], ["figures", *common], ["report", *common]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert err.startswith(f"mixstudy {argv[0]}: error: --runs-root {root} holds ")
        assert "nothing was written" in err and "train the runs first" in err
        assert ("none of the 30 runs" if root_kind == "empty" else "all of another configuration (e.g. tuning/") in err
    assert _snapshot(tmp_path) == before


# --- a folder of one's own ------------------------------------------------------------------


def test_replace_trains_into_a_folder_of_ones_own_and_leaves_its_other_files(tmp_path, tiny_config, tiny_data):
    from mixstudy.core.errors import MixstudyError
    from mixstudy.train.training import train_runs

    folder = tmp_path / "U"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"mine": 1}\n')
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(MixstudyError, match="does not hold a mixstudy run"):
        train_runs([tiny_config()], tiny_data, [folder], progress="lines")
    assert sorted(path.name for path in folder.iterdir()) == ["metrics.json", "notes.txt"]
    [record] = train_runs([tiny_config()], tiny_data, [folder], progress="lines", replace=True)
    assert run_folder.read_run_record(folder) == json.loads(json.dumps(record))
    assert (folder / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("files", [(), ("progress.json",), ("resume.pt", "train.log"), ("history.tsv", "model.pt", "train.log"),
                                   (".model.pt.k2j3.tmp",), ("metrics.json", "train.log", "failure.json"),
                                   ("metrics.json", "history.tsv", "train.log", run_folder.WEIGHTS_LEFT_OUT_FILE)])
def test_a_folder_a_run_began_in_is_a_run_folder(tmp_path, files):
    from mixstudy.train.run_writer import foreign_content

    for name in files:
        (tmp_path / name).write_text("damaged")
    assert foreign_content(tmp_path) is None


# --- a write killed at its rename -----------------------------------------------------------

_KILLED_AT_RENAME = """
import os, signal, sys
from pathlib import Path
real_replace = os.replace
def replace(src, dst):
    if Path(dst).name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between the temporary's last byte and its rename
    return real_replace(src, dst)
os.replace = replace
from mixstudy.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("killed_at", ["model.pt", "metrics.json"])
def test_a_training_killed_at_a_rename_leaves_no_temporary_once_run_again(tmp_path, killed_at, prepared_npz):
    import subprocess
    import sys

    from mixstudy.data.subsets import make_subset

    from conftest import TINY_OVERRIDES

    subset = tmp_path / "subset.json"
    make_subset(prepared_npz, {"draw": "seeded", "per_class": 2, "val_per_class": 0, "seed": 0}, subset)
    argv = ["train", "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "run"), "--data", str(prepared_npz),
            "--subset", str(subset), "--progress", "lines"]
    for override in TINY_OVERRIDES:
        argv += ["--set", override]
    killed = subprocess.run([sys.executable, "-c", _KILLED_AT_RENAME, killed_at, *argv], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    left = [path.name for path in (tmp_path / "run").iterdir() if path.name.startswith(f".{killed_at}.")]
    assert len(left) == 1 and left[0].endswith(".tmp")
    assert cli.main(argv) == 0
    names = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert names == ["history.tsv", "metrics.json", "model.pt", "train.log"]
    assert run_folder.unfinished_reason(tmp_path / "run", None) is None


def test_evaluate_out_removes_what_a_killed_evaluate_left_beside_it(tmp_path, monkeypatch, capsys):
    from mixstudy.train import run_evaluation

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_evaluation, "evaluate_run_files", lambda *args: {"metrics": {}})
    (tmp_path / ".eval.json.x8k2_q.tmp").write_text('{"metr')  # kill -9 at its rename
    (tmp_path / ".other.json.x8k2_q.tmp").write_text("another file's")
    assert cli.main(["evaluate", "run/model.pt", "--params", str(REPO / "params.yaml"), "--out", "eval.json"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.json.x8k2_q.tmp", "eval.json"]


# --- Ctrl-C ---------------------------------------------------------------------------------


def _main_under_ctrl_c(argv: list[str]) -> int:
    """The command's exit status; a Ctrl-C it lets through fails this test alone (not the session)."""
    try:
        return cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C went through the command as a traceback")


def test_ctrl_c_in_training_is_one_line_saying_where_and_how_to_resume_exit_130(tmp_path, prepared_npz, monkeypatch, capsys):
    from mixstudy.train import training
    from mixstudy.data.subsets import make_subset

    from conftest import TINY_OVERRIDES

    subset = tmp_path / "subset.json"
    make_subset(prepared_npz, {"draw": "seeded", "per_class": 2, "val_per_class": 0, "seed": 0}, subset)
    run = tmp_path / "run"
    argv = ["train", "--params", str(REPO / "params.yaml"), "--out", str(run), "--data", str(prepared_npz),
            "--subset", str(subset), "--progress", "lines"]
    for override in [*TINY_OVERRIDES, "train.epochs=5", "train.checkpoint_every=2"]:
        argv += ["--set", override]
    real_epoch, calls = training.train_epoch, []

    def interrupted_in_epoch_4(*args):
        calls.append(None)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(training, "train_epoch", interrupted_in_epoch_4)
    assert _main_under_ctrl_c(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("mixstudy train")]
    assert line.startswith(f"mixstudy train: stopped by Ctrl-C in epoch 4 of 5 of {run} (3 done; it resumes from its "
                           "resume point at epoch 2); resume with: mixstudy train --params ")
    resume = line.split("resume with: ", 1)[1]
    monkeypatch.setattr(training, "train_epoch", real_epoch)
    import shlex

    assert cli.main(shlex.split(resume)[1:]) == 0
    assert run_folder.unfinished_reason(run, None) is None
    assert run_folder.read_run_record(run)["epochs_completed"] == 5


def test_ctrl_c_before_the_first_resume_point_says_the_run_starts_again(tmp_path):
    from mixstudy.train.training import stopped_where

    assert stopped_where([tmp_path / "a", tmp_path / "b"], 0, 400, 0) == (
        f"stopped by Ctrl-C in epoch 1 of 400 of {tmp_path / 'a'}, {tmp_path / 'b'} (0 done; it has no resume point yet "
        "and starts again from epoch 1)"
    )


def test_ctrl_c_outside_training_is_one_line_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_runs", interrupted)
    assert _main_under_ctrl_c(["runs", "--stage", "sweep"]) == 130
    assert capsys.readouterr().err == "mixstudy runs: stopped by Ctrl-C; run it again: mixstudy runs --stage sweep\n"


# --- a full disk, a folder one cannot write -------------------------------------------------


def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")  # as a write on a full disk raises it: no file named


def test_a_write_on_a_full_disk_names_its_path_and_leaves_nothing(tmp_path, monkeypatch):
    from mixstudy.core import fileio

    monkeypatch.setattr(Path, "write_text", _disk_full)
    with pytest.raises(OSError) as failed:
        fileio.write_text(tmp_path / "metrics.json", "{}")
    assert (failed.value.errno, failed.value.filename) == (28, str(tmp_path / "metrics.json"))
    assert list(tmp_path.iterdir()) == []


def test_the_cli_names_the_path_a_full_disk_stopped(tmp_path, monkeypatch, capsys, signed_root):
    root, _ = signed_root
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Path, "write_text", _disk_full)
    argv = ["aggregate", "--params", str(REPO / "params.yaml"), "--runs-root", str(root), "--out-dir", "tables"]
    for override in SMALL_GRIDS:
        argv += ["--set", override]
    assert cli.main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mixstudy aggregate: error: tables/")
    assert line.endswith(": No space left on device; check the path, its permissions and free space")


def test_a_folder_one_cannot_write_is_named_not_its_temporary(tmp_path, monkeypatch):
    import tempfile

    from mixstudy.core import fileio

    def refused(prefix, suffix, dir):
        raise PermissionError(13, "Permission denied", str(Path(dir) / f"{prefix}k2j3{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as failed:
        fileio.write_text(tmp_path / "summary.json", "{}")
    assert failed.value.filename == str(tmp_path / "summary.json")


# --- results written whole or not at all ----------------------------------------------------


def _refusing(monkeypatch, path: Path) -> None:
    """``path`` cannot be written (as in a read-only folder, which refuses anyone but root): no
    temporary file for it can be made."""
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == path.parent.resolve() and prefix == f".{path.name}.":
            raise PermissionError(13, "Permission denied", str(Path(dir) / f"{prefix}x{suffix}"))
        return real_mkstemp(suffix=suffix, prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_summary_that_cannot_be_written_leaves_the_tables_as_they_were(signed_root, tmp_path, monkeypatch, capsys):
    from mixstudy.results.aggregation import aggregate

    root, params = signed_root
    tables, summary = tmp_path / "results" / "tables", tmp_path / "metrics" / "summary.json"
    aggregate(params, root, tables, summary)
    before = _snapshot(tmp_path / "results"), summary.read_bytes()
    _set_test_acc(study.find_run(params, "sweep/baseline/seed0").folder(root), 0.99)  # the tables would change
    _refusing(monkeypatch, summary)
    with pytest.raises(PermissionError) as refused:
        aggregate(params, root, tables, summary)
    assert refused.value.filename == str(summary)
    assert (_snapshot(tmp_path / "results"), summary.read_bytes()) == before  # no table rewritten, no temporary left


def test_a_report_whose_html_cannot_be_written_keeps_the_markdown_it_had(signed_root, tmp_path, monkeypatch):
    root, params = signed_root
    out = tmp_path / "results"
    out.mkdir()
    (out / "report.md").write_text("the report before\n")
    _refusing(monkeypatch, out / "report.html")
    with pytest.raises(PermissionError) as refused:
        write_report(params, root, out / "report.md", out / "figures")
    assert refused.value.filename == str(out / "report.html")
    assert _snapshot(out) == {"report.md": b"the report before\n"}


def test_figures_that_cannot_all_be_written_leave_the_earlier_ones(signed_root, tmp_path, monkeypatch):
    from mixstudy.figures import base as figure_base
    from mixstudy.figures.registry import make_figures

    from test_figures_report import tiny_examples

    root, params = signed_root
    out = tmp_path / "figures"
    out.mkdir()
    for name in ("acc_vs_alpha.png", "test_curves.png"):  # a figure of the drawing before; a skipped one's stale copy
        (out / name).write_bytes(b"earlier")
    real_savefig = figure_base.plt.Figure.savefig
    calls = []

    def disk_full_at_the_fifth(self, fname, *args, **kwargs):
        calls.append(fname)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(figure_base.plt.Figure, "savefig", disk_full_at_the_fifth)
    with pytest.raises(OSError):
        make_figures(params, root, out, examples=tiny_examples())
    assert _snapshot(out) == {"acc_vs_alpha.png": b"earlier", "test_curves.png": b"earlier"}


# --- an impossible subset, seen by a dry run ------------------------------------------------


def _workflow_copy(dest: Path) -> Path:
    """What the workflow reads as it loads its rules (no data, no runs)."""
    import shutil

    for name in ("Snakefile", "params.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, dest / name)
    return dest


IMPOSSIBLE_SUBSETS = {
    "per_class_6000": ("subset: {per_class: 6000}\n", "subset.per_class + subset.val_per_class = 6050 exceeds the smallest "
                       "class (5000 images); lower them (the largest subset.per_class with this subset.val_per_class is 4950)"),
    "per_class_and_val_5001": ("subset: {draw: seeded, per_class: 4990, val_per_class: 11}\n",
                               "subset.per_class + subset.val_per_class = 5001 exceeds the smallest class (5000 images); "
                               "lower them (the largest subset.per_class with this subset.val_per_class is 4989)"),
}


@pytest.mark.parametrize("case", list(IMPOSSIBLE_SUBSETS))
def test_mixstudy_subset_and_the_package_check_give_the_same_line(case, tmp_path, prepared_npz, capsys, monkeypatch):
    from mixstudy.data.subsets import check_subset_fits
    from mixstudy.core.errors import DataError

    text, line = IMPOSSIBLE_SUBSETS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(text)
    assert cli.main(["subset", "--params", str(REPO / "params.yaml"), "--params", "bad.yaml",
                     "--set", f"data.out={prepared_npz}", "--out", "subset.json"]) == 2
    assert capsys.readouterr().err == f"mixstudy subset: error: {line}\n"
    with pytest.raises(DataError) as refused:
        check_subset_fits(load_params([REPO / "params.yaml", tmp_path / "bad.yaml"], []))
    assert str(refused.value) == line


def test_a_subset_that_fits_passes_the_check():
    from mixstudy.data.subsets import check_subset_fits

    for overrides in ([], ["subset.per_class=4950"], ["subset.draw=all", "subset.val_per_class=4999"]):
        check_subset_fits(load_params([REPO / "params.yaml"], overrides))


def test_the_dry_run_refuses_an_impossible_subset_with_that_line(tmp_path):
    from pipeline_helpers import run

    project = _workflow_copy(tmp_path)
    text, line = IMPOSSIBLE_SUBSETS["per_class_6000"]
    (project / "bad.yaml").write_text(text)
    result = run(["snakemake", "-n", "--cores", "1", "--configfile", "bad.yaml"], project, check=False)
    assert result.returncode != 0
    assert line in (result.stdout + result.stderr).splitlines()
    assert not (project / "data").exists() and not (project / "results").exists()


# --- a broken or missing --configfile -------------------------------------------------------

CONFIG_FILES = {
    # id: (file content, None: no file; the error line's text after "mixstudy check-config: error: ")
    "broken_yaml": ("train:\n  lr: [0.1\n", "bad.yaml is not valid YAML at line 3, column 1: expected ',' or ']', but got "
                    "'<stream end>' (while parsing a flow sequence)"),
    "tab_indented": ("train:\n\tlr: 0.1\n", "bad.yaml is not valid YAML at line 2, column 1: found character '\\t' that "
                     "cannot start any token (while scanning for the next token)"),
    "missing": (None, "parameter file bad.yaml does not exist"),
    "not_a_mapping": ("- 1\n", "bad.yaml must hold a mapping of parameters, not list"),
    "bad_parameter": ("train: {lr: -1}\n", "train.lr: -1 is less than or equal to the minimum of 0"),
    "impossible_subset": IMPOSSIBLE_SUBSETS["per_class_6000"],
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_check_config_names_the_file_and_position_of_what_snakemake_would_refuse(case, tmp_path, monkeypatch, capsys):
    import shutil

    text, named = CONFIG_FILES[case]
    monkeypatch.chdir(tmp_path)
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    if text is not None:
        (tmp_path / "bad.yaml").write_text(text)
    before = _snapshot(tmp_path)
    assert cli.main(["check-config", "bad.yaml"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mixstudy check-config: error: ") and named in line, line
    assert _snapshot(tmp_path) == before


def test_check_config_passes_what_snakemake_reads_layered_in_order(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    files = ["config/svhn.yaml", "config/svhn-extra.yaml"]  # extra only after svhn: its data set is named there
    runs = len(study.all_runs(load_params(["params.yaml", *files])))
    assert cli.main(["check-config", *files]) == 0
    assert capsys.readouterr().out == f"params.yaml + config/svhn.yaml + config/svhn-extra.yaml: valid ({runs} runs in the grids)\n"


def test_make_study_checks_its_configuration_files_before_snakemake_reads_them():
    import subprocess

    planned = subprocess.run(["make", "-n", "study", "CONFIG=config/smoke.yaml config/theory.yaml"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    check = next(i for i, line in enumerate(planned) if "mixstudy check-config config/smoke.yaml config/theory.yaml" in line)
    assert check < next(i for i, line in enumerate(planned) if line.lstrip().startswith("snakemake "))
