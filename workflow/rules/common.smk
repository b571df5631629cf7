# Shared helpers. The grids are expanded by mixstudy.runs.study (never here), so the workflow,
# DVC and the CLI agree on every run and its folder.
#
# Nothing is written while the rules are read: every job gets its settings through its own
# declared params (JSON on its command line; Snakemake's params trigger reruns it when they
# change), so a dry run, an unlock or another --configfile cannot change what a running job does.
#
# Reruns of training are decided by content (see README, "Reliability"): a run whose folder holds
# a finished, intact run of the very training configuration and subset asked for is finished,
# whatever the files' modification times say (a clone, a checkout or `dvc pull` retrains nothing).
import json
import re
import shlex
from pathlib import Path

from mixstudy.runs import reruns, run_folder, study
from mixstudy.core.config import validate_params, with_data_paths
from mixstudy.data.subsets import check_subset_fits, params_subset_file

config.update(with_data_paths(config))  # data.npz_path and data.out of data.name ({name} replaced)
validate_params(config)  # schema + mixing points: a bad parameter stops here, before any job
check_subset_fits(config)  # an impossible subset too, with the line `mixstudy subset` gives

RUNS = study.RUNS_ROOT
DATA = config["data"]["out"]
SUBSET = str(params_subset_file(config))
SELECTION = "results/tuning/selection.yaml"
TUNING_RUNS = study.tuning_runs(config)
SWEEP_RUNS = study.sweep_runs(config)
RUN_BY_ID = {spec.run_id: spec for spec in TUNING_RUNS + SWEEP_RUNS}


def run_id_pattern(specs):
    """A wildcard that matches these runs' ids only (longest first), nothing else."""
    return "|".join(re.escape(spec.run_id) for spec in sorted(specs, key=lambda s: len(s.run_id), reverse=True)) or "(?!)"


RUN_ID_PATTERN = run_id_pattern(TUNING_RUNS + SWEEP_RUNS)  # training jobs
SWEEP_RUN_ID_PATTERN = run_id_pattern(SWEEP_RUNS)  # evaluation jobs (evaluate.smk)


def params_json(*sections):
    """The merged parameters (params.yaml + --configfile + --config), or some sections, as one
    shell-quoted JSON argument for a job's command line (`mixstudy ... --params-json`)."""
    chosen = {key: config[key] for key in sections} if sections else config
    text = shlex.quote(json.dumps(chosen, sort_keys=True))
    return lambda wildcards: text  # a function: Snakemake expands braces in plain params strings


def run_spec_arguments(specs):
    """`--run-spec JSON` per run: what the grid asks of it (its run sections as the run sees them,
    before the tuning's choice; seed; own settings). Only what the run computes from is in it, so a
    setting it does not read (train.lr for a tuning run) leaves its job's params unchanged."""
    specs_json = [json.dumps(reruns.run_spec(config, spec), sort_keys=True) for spec in specs]
    return " ".join(f"--run-spec {shlex.quote(text)}" for text in specs_json)


# --- what is finished, by content (read only; decided in mixstudy.runs.reruns) ----------------------

PLAN = reruns.plan_runs(
    config, TUNING_RUNS, SWEEP_RUNS, RUNS, reruns.subset_sha256(SUBSET), reruns.current_selection(SELECTION)
)
SELECTION_SETTLED = PLAN.selection_settled
FINISHED = PLAN.finished
# Runs with outputs on disk that are not what is asked get a rebuild request, named by the training
# hash asked, that their training job waits for. The target rules (`all`, `train_all`) ask for every
# request themselves: a missing file that only a training job asks for is made only when that job
# already has another reason to run, and without metadata and with older inputs (a DVC experiment
# workspace, a fresh clone) a stale run would have none, and be kept.
REBUILD = PLAN.rebuild
REBUILD_REQUESTS = PLAN.requests()


def run_inputs(specs):
    """A training job's inputs: unchanged inputs of finished runs are ancient (their modification
    times do not matter); runs to rebuild wait for their rebuild request (a finished run keeps
    the request it was trained for while it is there: its set of inputs does not change)."""
    inputs = {"data": DATA, "subset": SUBSET}
    if any(study.needs_selection(config, spec) for spec in specs):
        inputs["selection"] = SELECTION
    requests = [path for path in map(PLAN.request, (spec.run_id for spec in specs)) if path]
    if requests:
        inputs["rebuild"] = requests
    if all(spec.run_id in FINISHED for spec in specs):
        inputs = {key: ancient(path) for key, path in inputs.items()}
    return inputs


def run_files(specs, name=run_folder.METRICS_FILE):
    return [str(spec.folder(RUNS) / name) for spec in specs]


def run_outputs(specs):
    """A run's results; `update`: Snakemake leaves them in place for the training command, which
    keeps a finished run of the same configuration (and restores them if the job fails)."""
    return [update(path) for name in run_folder.WORKFLOW_OUTPUTS for path in run_files(specs, name)]


def run_outputs_of(run_id_pattern):
    """The outputs of the run (or the `{run_id}` wildcard) under RUNS, as `run_outputs` gives them."""
    return [update(f"{RUNS}/{run_id_pattern}/{name}") for name in run_folder.WORKFLOW_OUTPUTS]


def every_run_file(specs):
    return [path for name in run_folder.WORKFLOW_OUTPUTS for path in run_files(specs, name)]


# The training command of every training job: `runs` is one `--run-spec`, or several (a pack).
# Its log goes to logs/runs/ (Snakemake's) and, for the runs it trains, to each run's train.log.
TRAIN_COMMAND = (
    "mixstudy train {params.runs} --data {input.data} --subset {input.subset}"
    " {params.selection} --replace --set compute.threads={threads}"
    " --progress lines --on-diverge record > {log} 2>&1"
)


def selection_argument(wildcards, input):
    """Sweep runs read the tuning's choice; tuning runs have none."""
    return f"--use-selection --selection {input.selection}" if "selection" in input.keys() else ""


def one_run(run_id):
    """The run a training rule's wildcards name (its folder), as a list for run_inputs and run_spec_arguments."""
    return [RUN_BY_ID[run_id]]


def evaluation_files(specs):
    return run_files(specs, run_folder.EVALUATION_FILE)


def evaluation_inputs(spec):
    """An evaluation job's inputs: the run's record (its model.pt is checked by content, and may be
    left out on purpose once measured), data and subset; all ancient when the run is not trained in
    this invocation and its evaluation.json is current by content (computed from this model.pt with
    these settings), so a clone or a checkout measures nothing again, and a retrained run is always
    measured again."""
    inputs = {"record": str(spec.folder(RUNS) / run_folder.METRICS_FILE), "data": DATA, "subset": SUBSET}
    if reruns.evaluation_settled(PLAN, spec, config["theory"]):
        inputs = {key: ancient(path) for key, path in inputs.items()}
    return inputs
