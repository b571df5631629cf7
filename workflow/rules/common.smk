# Shared helpers. The grids are expanded by mixstudy.study (never here), so the workflow,
# DVC and the CLI agree on every run and its folder.
import json
from pathlib import Path

from mixstudy import study
from mixstudy.config import validate_params
from mixstudy.data import subset_file
from mixstudy.fileio import write_text

validate_params(config)  # schema + mixing points: a bad parameter stops here, before any job

RUNS = "results/runs"
DATA = config["data"]["out"]
SUBSET = str(subset_file(config["subset"]))
SELECTION = "results/tuning/selection.yaml"
TUNING_RUNS = study.tuning_runs(config)
SWEEP_RUNS = study.sweep_runs(config)


def write_if_changed(path, text):
    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return str(path)


# The merged parameters (params.yaml + --configfile + --config) for the CLI. A fixed path, so
# that a changed setting reruns only the jobs it shapes (Snakemake locks the folder, so two
# workflows never share it at once).
PARAMS = write_if_changed("results/params.json", json.dumps(config, indent=2, sort_keys=True))


def declare_run_configs():
    """Write each run's own configuration to <run>/config.json when it changes.

    The training rules take this file as input, so a changed hyper-parameter gives it a newer
    modification time and Snakemake retrains that run, even where its metadata is missing
    (fresh clones, DVC experiment workspaces). Compute settings are left out: they do not
    change what a run computes.
    """
    for spec in TUNING_RUNS + SWEEP_RUNS:
        run_config = study.run_config(config, spec.seed, spec.overrides)
        run_config.pop("compute")
        write_if_changed(spec.folder(RUNS) / "config.json", json.dumps(run_config, indent=2, sort_keys=True) + "\n")


declare_run_configs()


def run_files(specs, name="metrics.json"):
    return [str(spec.folder(RUNS) / name) for spec in specs]


# The training command of every training job: `runs` is one `--run RUN_ID`, or several (a pack).
# Its log goes to each run's train.log (tee: a pack's runs share one log).
TRAIN_COMMAND = (
    "mixstudy train --params {params.params} {params.runs} --subset {input.subset}"
    " {params.selection} --set compute.threads={threads}"
    " --progress lines --on-diverge record 2>&1 | tee {log} > /dev/null"
)


def selection_argument(wildcards, input):
    """Sweep runs read the tuning's choice; tuning runs have none."""
    return f"--selection {input.selection}" if "selection" in input.keys() else ""
