# Shared helpers. The grids are expanded by mixstudy.study (never here), so the workflow,
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

from mixstudy import study
from mixstudy.config import validate_params, with_data_paths
from mixstudy.data import check_subset_fits, subset_file
from mixstudy.errors import ConfigError

config.update(with_data_paths(config))  # data.npz_path and data.out of data.name ({name} replaced)
validate_params(config)  # schema + mixing points: a bad parameter stops here, before any job
check_subset_fits(config)  # an impossible subset too, with the line `mixstudy subset` gives

RUNS = study.RUNS_ROOT
DATA = config["data"]["out"]
SUBSET = str(subset_file(config["subset"], config["data"]["name"]))
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
    """`--run-spec JSON` per run: what the grid asks of it (run sections, seed, own settings)."""
    sections = {key: config[key] for key in study.RUN_SECTIONS} | {"data": {"name": config["data"]["name"]}}
    specs_json = [
        json.dumps({"run_id": spec.run_id, "sections": sections, "seed": spec.seed, "overrides": spec.overrides}, sort_keys=True)
        for spec in specs
    ]
    return " ".join(f"--run-spec {shlex.quote(text)}" for text in specs_json)


# --- what is finished, by content (read only) ----------------------------------------------------


def _subset_sha256():
    try:
        return json.loads(Path(SUBSET).read_text())["train_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _current_selection():
    try:
        return study.read_selection(SELECTION)
    except ConfigError:
        return None


SUBSET_SHA256 = _subset_sha256()
CURRENT_SELECTION = _current_selection()


def run_state(spec, selection):
    """None when the run's folder holds a finished, intact run of what is asked; else why not."""
    if SUBSET_SHA256 is None:
        return "the subset is not made yet"
    expected = study.training_hash(study.spec_config(config, spec, selection), SUBSET_SHA256)
    return study.unfinished_reason(spec.folder(RUNS), expected)


TUNING_STATE = {spec.run_id: run_state(spec, None) for spec in TUNING_RUNS}
# The tuning's choice cannot change in this invocation when every tuning run is finished and
# selection.yaml exists; otherwise sweep runs that read it wait for `select_baseline`, and the
# training command keeps each one whose configuration did not change.
SELECTION_SETTLED = CURRENT_SELECTION is not None and not any(TUNING_STATE.values())
def recorded_selection(spec):
    """The tuning's choice a finished sweep run was trained with (None without a readable run)."""
    try:
        train = study.read_run_record(spec.folder(RUNS))["config"]["train"]
        return {"scheduler": train["scheduler"]["name"], "momentum": train["momentum"], "weight_decay": train["weight_decay"]}
    except (ConfigError, KeyError, TypeError):
        return None


def sweep_state(spec):
    """A sweep run's state; before the selection is settled (tuning runs to train), a run whose
    recorded training differs in anything besides the tuning's choice is already known to be stale.
    Otherwise undecided (None is not returned then): its selection input decides, by content."""
    if SELECTION_SETTLED or not study.needs_selection(config, spec):
        return run_state(spec, CURRENT_SELECTION)
    selection = recorded_selection(spec)
    return run_state(spec, selection) if selection is not None else "the tuning's choice is not settled"


SWEEP_STATE = {spec.run_id: sweep_state(spec) for spec in SWEEP_RUNS}
SWEEP_STATE = {
    run_id: reason
    for run_id, reason in SWEEP_STATE.items()
    if reason is not None or SELECTION_SETTLED or not study.needs_selection(config, RUN_BY_ID[run_id])
}
FINISHED = {run_id for run_id, reason in {**TUNING_STATE, **SWEEP_STATE}.items() if reason is None}
# Runs with outputs on disk that are not what is asked (another configuration, damaged files):
# a rebuild request (a temporary file made by a job) makes Snakemake run them.
REBUILD = {
    run_id: reason
    for run_id, reason in {**TUNING_STATE, **SWEEP_STATE}.items()
    if reason is not None and (RUN_BY_ID[run_id].folder(RUNS) / "metrics.json").exists()
}


def rebuild_request(run_id):
    return f"results/rebuild/{run_id}.txt"


# The target rules (`all`, `train_all`) ask for every rebuild request themselves. A missing file
# that only a training job asks for is made only when that job already has another reason to run
# (Snakemake reaches upstream from jobs that must run); without metadata and with older inputs
# (a DVC experiment workspace, a fresh clone) a stale run would have none, and be kept.
REBUILD_REQUESTS = [rebuild_request(run_id) for run_id in sorted(REBUILD)]


def run_inputs(specs):
    """A training job's inputs: unchanged inputs of finished runs are ancient (their modification
    times do not matter); runs to rebuild wait for their rebuild request."""
    inputs = {"data": DATA, "subset": SUBSET}
    if any(study.needs_selection(config, spec) for spec in specs):
        inputs["selection"] = SELECTION
    if all(spec.run_id in FINISHED for spec in specs):
        inputs = {key: ancient(path) for key, path in inputs.items()}
    rebuild = [rebuild_request(spec.run_id) for spec in specs if spec.run_id in REBUILD]
    if rebuild:
        inputs["rebuild"] = rebuild
    return inputs


def run_files(specs, name="metrics.json"):
    return [str(spec.folder(RUNS) / name) for spec in specs]


def run_outputs(specs):
    """A run's results; `update`: Snakemake leaves them in place for the training command, which
    keeps a finished run of the same configuration (and restores them if the job fails)."""
    return [update(path) for name in study.RUN_OUTPUTS for path in run_files(specs, name)]


def run_outputs_of(run_id_pattern):
    """The outputs of the run (or the `{run_id}` wildcard) under RUNS, as `run_outputs` gives them."""
    return [update(f"{RUNS}/{run_id_pattern}/{name}") for name in study.RUN_OUTPUTS]


def every_run_file(specs):
    return [path for name in study.RUN_OUTPUTS for path in run_files(specs, name)]


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
    return run_files(specs, study.EVALUATION_FILE)


def evaluation_inputs(spec):
    """An evaluation job's inputs: the run's model.pt, data and subset; all ancient when the run's
    evaluation.json is current by content (computed from this model.pt with these settings), so a
    clone or a checkout measures nothing again."""
    inputs = {"model": str(spec.folder(RUNS) / "model.pt"), "data": DATA, "subset": SUBSET}
    if study.evaluation_is_current(spec.folder(RUNS), config["theory"]):
        inputs = {key: ancient(path) for key, path in inputs.items()}
    return inputs
