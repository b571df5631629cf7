"""Command line: help, one-line errors that write nothing, the run lists, a tiny end-to-end run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mixstudy.cli import main

from conftest import PARAMS_FILE

COMMANDS = ["data", "subset", "train", "evaluate", "select", "runs"]
P = str(PARAMS_FILE)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_entry_point_help_lists_every_command():
    exe = Path(sys.executable).with_name("mixstudy")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command}" in out  # listed as a sub-command, with its help


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: mixstudy {command}" in out
    assert "--params" in out and "--set" in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "run"],
        ["data"],
        ["subset", "--out", "subset.json"],
        ["runs"],
    ],
    ids=["train", "data", "subset", "runs"],
)
def test_bad_parameter_exits_2_naming_the_key_and_writes_nothing(in_tmp, capsys, argv):
    code = main([*argv, "--params", P, "--set", "mixing.alpha=-1"])
    captured = capsys.readouterr()
    assert code == 2
    assert "mixing.alpha" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert list(in_tmp.iterdir()) == []  # no run folder, no data, no subset file


def test_bad_parameter_error_is_one_line(in_tmp, capsys):
    """errors.py: "the CLI prints these as one clear line"."""
    code = main(["train", "--out", "run", "--params", P, "--set", "mixing.alpha=-1"])
    captured = capsys.readouterr()
    assert code == 2
    lines = _lines(captured.err)
    assert len(lines) == 1, f"expected one error line, got: {captured.err!r}"
    assert lines[0].startswith("mixstudy train: error:")
    assert "mixing.alpha" in lines[0]


def test_missing_data_source_is_one_line_error(in_tmp, capsys):
    code = main(
        ["data", "--params", P, "--set", "data.source=npz", "--set", "data.npz_path=absent.npz", "--set", "data.out=out/c.npz"]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "data.npz_path" in captured.err
    assert not (in_tmp / "out").exists()


def test_train_needs_a_run_or_an_output_folder(in_tmp, capsys):
    assert main(["train", "--params", P]) == 2
    assert "--run" in capsys.readouterr().err


def test_unknown_run_id_is_refused(in_tmp, capsys):
    assert main(["train", "--params", P, "--run", "sweep/nonsense/seed0"]) == 2
    assert "sweep/nonsense/seed0" in capsys.readouterr().err
    assert list(in_tmp.iterdir()) == []


def test_several_runs_cannot_share_one_out_folder(in_tmp, capsys):
    runs = ["--run", "tuning/step_mom0.9_wd0.001/seed0", "--run", "tuning/step_mom0.9_wd0.001/seed1"]
    assert main(["train", "--params", P, *runs, "--out", "run"]) == 2
    assert "--out" in capsys.readouterr().err
    assert list(in_tmp.iterdir()) == []


def test_pack_list_covers_the_sweep_once(capsys):
    assert main(["runs", "--params", P, "--stage", "sweep", "--packs", "--set", "compute.pack_size=16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    packed = [run for line in lines for run in line.split(": ")[1].split()]
    assert sorted(packed) == sorted(_run_ids(capsys, "--stage", "sweep"))
    # Cutout runs train with other augmentation settings, so they form packs of their own.
    cutout = [run for run in packed if run.startswith("sweep/cutout_")]
    assert len(lines) == -(-(len(packed) - len(cutout)) // 16) + -(-len(cutout) // 16)
    assert all(len(line.split(": ")[1].split()) <= 16 for line in lines)
    assert lines[0].startswith("sweep/pack001: sweep/baseline/seed0 ")


def _run_ids(capsys, *extra) -> list[str]:
    assert main(["runs", "--params", P, *extra]) == 0
    return capsys.readouterr().out.split()


def test_sweep_run_list(capsys):
    runs = _run_ids(capsys, "--stage", "sweep")
    sweep = yaml.safe_load(PARAMS_FILE.read_text())["sweep"]
    n_seeds = len(sweep["seeds"])
    manifold = [r for r in runs if r.startswith("sweep/manifold_")]
    baseline = [r for r in runs if r.startswith("sweep/baseline/")]
    cutmix = [r for r in runs if r.startswith("sweep/cutmix_")]
    smoothing = [r for r in runs if r.startswith("sweep/label_smoothing_eps")]
    cutout = [r for r in runs if r.startswith("sweep/cutout_")]
    assert len(manifold) == 7 * 7 * 5 == len(sweep["alphas"]) * len(sweep["layer_sets"]) * n_seeds
    assert len(baseline) == 5 == n_seeds
    assert len(cutmix) == len(sweep["cutmix_alphas"]) * n_seeds
    assert len(smoothing) == len(sweep["label_smoothing"]) * n_seeds > 0
    assert len(cutout) == len(sweep["cutout_sizes"]) * n_seeds > 0
    assert len(runs) == len(manifold) + len(baseline) + len(cutmix) + len(smoothing) + len(cutout) == len(set(runs))
    assert "sweep/manifold_S0-2_alpha4/seed0" in runs  # the study's best configuration
    assert "sweep/manifold_S0-1-2_alpha0.2/seed4" in runs
    assert "sweep/cutmix_alpha1/seed3" in runs
    assert "sweep/label_smoothing_eps0.1/seed2" in runs
    assert "sweep/cutout_16/seed4" in runs


def test_tuning_run_list(capsys):
    runs = _run_ids(capsys, "--stage", "tuning")
    assert len(runs) == 60 == 3 * 2 * 2 * 5
    assert len(set(runs)) == 60
    assert all(r.startswith("tuning/") for r in runs)
    assert "tuning/warm_restarts_mom0.9_wd0.001/seed0" in runs
    assert "tuning/step_mom0.95_wd0.0001/seed4" in runs


def test_all_runs_is_tuning_then_sweep(capsys):
    every = _run_ids(capsys)
    tuning = _run_ids(capsys, "--stage", "tuning")
    sweep = _run_ids(capsys, "--stage", "sweep")
    assert every == tuning + sweep


def test_runs_follow_overrides(capsys):
    runs = _run_ids(
        capsys, "--stage", "sweep", "--set", "sweep.alphas=[1.0]", "--set", "sweep.seeds=[0]",
        "--set", "sweep.cutmix_alphas=[]", "--set", "sweep.label_smoothing=[]", "--set", "sweep.cutout_sizes=[]",
    )
    assert len(runs) == 1 + 7


def test_cross_runs_the_row_and_column_through_one_cell(capsys):
    runs = _run_ids(capsys, "--stage", "sweep", "--set", "sweep.seeds=[0]", "--set", "sweep.cross={layers: [0, 2], alpha: 4}")
    manifold = [r for r in runs if r.startswith("sweep/manifold_")]
    row = {f"sweep/manifold_S0-2_alpha{a}/seed0" for a in ("0.2", "0.5", "1", "1.5", "2", "4", "5")}
    column = {f"sweep/manifold_S{s}_alpha4/seed0" for s in ("0", "1", "2", "0-1", "0-2", "1-2", "0-1-2")}
    assert set(manifold) == row | column and len(manifold) == 13


def test_subset_train_evaluate_end_to_end(in_tmp, capsys, prepared_npz):
    common = [
        "--params", P,
        "--set", "evaluation.test_limit=50",  # keep evaluation cheap: 50 test images
        "--set", f"data.out={prepared_npz}",
        "--set", "subset.per_class=2",
        "--set", "model.name=convnet", "--set", "model.convnet.widths=[4,8,8]",
        "--set", "train.epochs=1",
        "--set", "train.batch_size=8",
        "--set", "compute.device=cpu",
    ]
    assert main(["subset", *common]) == 0
    subset_path = in_tmp / "data" / "subsets" / "cifar10_study_n2_val50_seed0.json"
    assert len(json.loads(subset_path.read_text())["train_indices"]) == 20

    assert main(["train", *common, "--out", "run", "--seed", "1", "--progress", "lines"]) == 0
    record = json.loads((in_tmp / "run" / "metrics.json").read_text())
    assert record["status"] == "ok" and record["config"]["seed"] == 1
    assert record["config"]["train"]["epochs"] == 1
    capsys.readouterr()

    assert main(["evaluate", *common, "run/model.pt", "--out", "eval.json"]) == 0
    evaluated = json.loads((in_tmp / "eval.json").read_text())
    assert evaluated["metrics"]["test"]["acc"] == record["metrics"]["test"]["acc"]
    assert evaluated["metrics"]["test"]["nll"] == pytest.approx(record["metrics"]["test"]["nll"], rel=1e-5)
    assert evaluated["smoothness"]["images"] == 50 and evaluated["smoothness"]["jacobian_logits"] > 0
    assert "shrinkage" not in evaluated  # a run without mixing: no test-time transformation to undo
    assert evaluated["provenance"]["model_sha256"] == record["files"]["model.pt"]
    assert evaluated["provenance"]["precision"] == record["provenance"]["precision"] == "float32"  # amp auto on CPU

    # Several --run train as one pack, each into its own run folder.
    tuning = ["--set", "tuning.epochs=1", "--set", "tuning.seeds=[0,1]"]
    pack = ["--run", "tuning/step_mom0.9_wd0.001/seed0", "--run", "tuning/step_mom0.9_wd0.001/seed1"]
    assert main(["train", *common, *tuning, *pack, "--progress", "lines"]) == 0
    for seed in (0, 1):
        packed = json.loads((in_tmp / f"results/runs/tuning/step_mom0.9_wd0.001/seed{seed}/metrics.json").read_text())
        assert packed["status"] == "ok" and packed["config"]["seed"] == seed and packed["pack"]["size"] == 2
    capsys.readouterr()
    shutil.rmtree(in_tmp / "results")

    # A sweep run needs the tuning selection; without it: a one-line error and no run folder.
    code = main(["train", *common, "--run", "sweep/baseline/seed0", "--selection", "absent.yaml"])
    assert code == 2
    assert "absent.yaml" in capsys.readouterr().err
    assert not (in_tmp / "results").exists()


# --- bad input: one line naming the parameter or file and the fix, exit code 2, nothing written ---


@pytest.fixture(scope="module")
def small_subset(tmp_path_factory, prepared_npz) -> tuple[list[str], str]:
    """Options that point every command at the prepared fake data, and a small subset file."""
    subset = str(tmp_path_factory.mktemp("subset") / "subset.json")
    common = ["--params", P, "--set", f"data.out={prepared_npz}", "--set", "subset.per_class=2",
              "--set", "subset.val_per_class=0", "--set", "evaluation.temperature_scaling=false"]
    assert main(["subset", *common, "--out", subset]) == 0
    return common, subset


def _empty_tuning_records(root: Path) -> None:
    for line in ("step_mom0.9_wd0.001",):
        folder = root / "results/runs/tuning" / line / "seed0"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text("")


def _corrupt_resume(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "resume.pt").write_bytes(b"not a checkpoint")


def _folder_of_ones_own(*files: str):
    """A folder U of the user's own, holding ``files`` (a metrics.json of another kind among them)."""
    def set_up(root: Path) -> None:
        (root / "U").mkdir()
        for name in files:
            (root / "U" / name).write_text('{"mine": 1}\n')
    return set_up


# A run that takes a second, should a refusal before training regress (the test then fails, not hangs).
TINY_RUN = ["--set", "train.epochs=1", "--set", "model.name=convnet", "--set", "model.convnet.widths=[4,8,8]"]
SMALL_TUNING = ["--set", "tuning.grid={scheduler: [step], momentum: [0.9], weight_decay: [0.001]}", "--set", "tuning.seeds=[0]"]

BAD_INPUTS = {
    # id: (command line after `mixstudy`, set-up of the folder, text the one error line must name)
    "alpha_nan": (["train", "--out", "run", "--set", "mixing.alpha=.nan"], None, "mixing.alpha is nan"),
    "alpha_inf": (["train", "--out", "run", "--set", "mixing.alpha=.inf"], None, "mixing.alpha is inf"),
    "lr_inf": (["train", "--out", "run", "--set", "train.lr=.inf"], None, "train.lr is inf"),
    "negative_seed": (["train", "--out", "run", "--seed", "-1"], None, "--seed -1"),
    "out_under_a_file": (["train", "--out", "afile/run"], lambda root: (root / "afile").write_text("x"), "afile is a file"),
    "corrupt_resume_point": (["train", "--out", "run"], _corrupt_resume, "resume.pt cannot be read"),
    "malformed_selection": (
        ["train", "--out", "run", "--use-selection", "--selection", "sel.yaml"],
        lambda root: (root / "sel.yaml").write_text("scheduler: [unclosed\n"), "sel.yaml is not valid YAML",
    ),
    "selection_not_a_mapping": (
        ["train", "--out", "run", "--use-selection", "--selection", "sel.yaml"],
        lambda root: (root / "sel.yaml").write_text("- a list\n"), "sel.yaml does not hold a selection",
    ),
    "select_on_empty_tuning_metrics": (["select", *SMALL_TUNING], _empty_tuning_records, "metrics.json is empty or damaged"),
    "evaluate_a_folder": (["evaluate", "adir"], lambda root: (root / "adir").mkdir(), "adir is a folder"),
    "negative_jacobian_images": (["evaluate", "run/model.pt", "--out", "eval.json", "--set", "theory.jacobian_images=-1"],
                                 None, "theory.jacobian_images: -1 is less than the minimum of 0"),
    "fractional_jacobian_images": (["evaluate", "run/model.pt", "--out", "eval.json", "--set", "theory.jacobian_images=2.5"],
                                   None, "theory.jacobian_images: 2.5 is not of type 'integer'"),
    "unknown_report_key": (["runs", "--set", "report.colour=red"], None, "report: Additional properties"),
    "cuda_without_gpu": (["train", "--out", "run", "--set", "compute.device=cuda"], None, "compute.device: cuda"),
    "unknown_network": (["runs", "--set", "model.name=vgg"], None, "model.name: unknown network 'vgg'; choose one of: cnn13, convnet, preactresnet18"),
    "preactresnet_narrower_than_8": (["train", "--out", "run", "--set", "model.name=preactresnet18",
                                      "--set", "model.preactresnet18.base_width=4"], None,
                                     "model.preactresnet18.base_width: 4 is less than the minimum of 8"),
    "unknown_padding_mode": (["runs", "--set", "train.augment.crop_padding_mode=edge"], None, "choose one of: reflect, zero"),
    "label_noise_of_one": (["subset", "--set", "data.label_noise=1"], None, "data.label_noise: 1 is greater than or equal to the maximum of 1"),
    "negative_label_noise": (["train", "--out", "run", "--set", "data.label_noise=-0.1"], None,
                             "data.label_noise: -0.1 is less than the minimum of 0"),
    "unknown_targets": (["train", "--out", "run", "--set", "mixing.targets=soft"], None,
                        "mixing.targets: 'soft' is not allowed; choose one of: mixed, hard"),
    "negative_between_pairs": (["evaluate", "run/model.pt", "--out", "eval.json", "--set", "theory.between_pairs=-5"],
                               None, "theory.between_pairs: -5 is less than the minimum of 0"),
    "unknown_subset_draw": (["subset", "--set", "subset.draw=random"], None, "subset.draw: 'random' is not allowed; choose one of: study, seeded"),
    "layers_of_input_mixup": (["train", "--out", "run", "--set", "mixing.method=mixup", "--set", "mixing.alpha=1",
                               "--set", "mixing.layers=[1]"], None, "mixing.layers: [1] applies to manifold mixup only"),
    "layers_of_cutmix": (["runs", "--set", "mixing.method=cutmix", "--set", "mixing.layers=[2]"], None,
                         "mixing.layers: [2] applies to manifold mixup only"),
    "out_folder_with_ones_own_metrics_json": (["train", "--out", "U", *TINY_RUN], _folder_of_ones_own("metrics.json"),
                                              "U does not hold a mixstudy run (its metrics.json is not a mixstudy run record); "
                                              "choose another --out, or pass --replace to train into it"),
    "out_folder_with_ones_own_files": (["train", "--out", "U", *TINY_RUN], _folder_of_ones_own("metrics.json", "model.pt", "notes.txt"),
                                       "U does not hold a mixstudy run (it holds notes.txt, which mixstudy does not write)"),
    "out_folder_with_ones_own_model_pt": (["train", "--out", "U", *TINY_RUN], _folder_of_ones_own("model.pt"),
                                          "U does not hold a mixstudy run (it holds model.pt but no record, log or resume point"),
    "aggregate_of_a_runs_root_not_there": (["aggregate", "--runs-root", "results/runz"], None, "--runs-root results/runz is not a folder"),
    "report_of_a_runs_root_not_there": (["report", "--runs-root", "results/runz"], None, "--runs-root results/runz is not a folder"),
    "figures_of_a_runs_root_not_there": (["figures", "--runs-root", "results/runz"], None, "--runs-root results/runz is not a folder"),
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"/") for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, in_tmp, capsys, monkeypatch, small_subset):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv, set_up, named = BAD_INPUTS[case]
    if set_up is not None:
        set_up(in_tmp)
    common, subset = small_subset
    before = _tree(in_tmp)
    extra = common + (["--subset", subset] if argv[0] == "train" else [])
    code = main([*argv, *extra])
    captured = capsys.readouterr()
    lines = _lines(captured.err)
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"mixstudy {argv[0]}: error:") and named in lines[0], lines[0]
    assert _tree(in_tmp) == before


def test_set_values_parse_as_yaml_1_2_and_strings_stay_strings():
    from mixstudy.core.config import load_params

    digits = "1" * 64
    params = load_params([PARAMS_FILE], ["train.lr=1e6", "compute.amp=on", f"data.npz_sha256={digits}", "mixing.alpha=4"])
    assert params["train"]["lr"] == 1e6 and isinstance(params["train"]["lr"], float)
    assert params["compute"]["amp"] == "on"
    assert params["data"]["npz_sha256"] == digits
    assert params["mixing"]["alpha"] == 4
