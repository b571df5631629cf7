"""Command line: ``mixstudy <command>``; parameters come from params.yaml plus overrides.

Every command reads the same parameter files (``--params``, repeatable, later files win)
and ``--set dotted.key=value`` overrides, validated before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from mixstudy.core.errors import Interrupted, MixstudyError
from mixstudy.runs.study import RUNS_ROOT as DEFAULT_RUNS_ROOT

log = logging.getLogger("mixstudy")

DEFAULT_SELECTION = "results/tuning/selection.yaml"
DEFAULT_TABLES_DIR = "results/tables"
DEFAULT_SUMMARY = "metrics/summary.json"
DEFAULT_FIGURES_DIR = "results/figures"
DEFAULT_REPORT = "results/report.md"


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", action="append", metavar="FILE",
        help="override file, layered on params.yaml (of the current folder); repeat to layer more, later files win",
    )
    parser.add_argument(
        "--params-json", metavar="JSON",
        help="parameters as JSON text, layered after the --params files (what the workflow passes its jobs)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one parameter, e.g. --set train.epochs=5 --set mixing.layers=[0,2]",
    )


def _add_runs_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-root", default=DEFAULT_RUNS_ROOT, help=f"root of run folders (default {DEFAULT_RUNS_ROOT})")


def _runs_root(args) -> Path:
    """The --runs-root of a command that reads finished runs: a folder that is not there is a typo
    or a queue not started, and reading it would write tables and a report of nothing."""
    root = Path(args.runs_root)
    if not root.is_dir():
        raise MixstudyError(
            f"--runs-root {root} is not a folder; give the folder that holds the run folders "
            f"(default {DEFAULT_RUNS_ROOT}, e.g. docs/real-runs) or train the runs first"
        )
    return root


def _grid_runs_root(args, params: dict, expectation=None) -> Path:
    """The --runs-root of a command that writes results from the runs (aggregate, figures, report):
    it must hold runs of these parameters' grids, else the results it would replace are kept."""
    from mixstudy.results.analysis import Expectation, absent_grid_runs

    root = _runs_root(args)
    reason = absent_grid_runs(params, root, expectation or Expectation())
    if reason:
        raise MixstudyError(
            f"--runs-root {root} {reason}; nothing was written: give the folder of this study's runs with the "
            "--params they were trained with (e.g. --runs-root docs/real-runs --params config/table3.yaml), "
            "or train the runs first"
        )
    return root


def _params(args) -> dict:
    from mixstudy.core.config import layered_on_defaults, load_params, parse_json_params

    extra = [parse_json_params(args.params_json)] if args.params_json else []
    return load_params([*layered_on_defaults(args.params or []), *extra], args.overrides)


def cmd_data(args) -> None:
    from mixstudy.data.datasets import prepare_data

    params = _params(args)
    manifest = prepare_data(params["data"])
    print(f"wrote {params['data']['out']} from {manifest['source']}")


def cmd_subset(args) -> None:
    from mixstudy.data.subsets import make_subset, params_subset_file

    params = _params(args)
    out = args.out or params_subset_file(params)
    record = make_subset(params["data"]["out"], params["subset"], out, params["data"]["label_noise"])
    print(f"wrote {out}: {len(record['train_indices'])} train, {len(record['val_indices'])} validation images")


def cmd_train(args) -> None:
    from mixstudy.data.subsets import load_study_data, params_subset_file
    from mixstudy.train.training import train_runs

    if args.run_spec:
        configs, outs = _spec_targets(args)
        data_npz, subset = args.data, args.subset
    else:
        params = _params(args)
        configs, outs = _train_targets(params, args)
        data_npz = args.data or params["data"]["out"]
        subset = args.subset or params_subset_file(params)
    if args.seed < 0:
        raise MixstudyError(f"--seed {args.seed}: a seed is an integer >= 0, e.g. --seed 0")
    data = load_study_data(data_npz, subset)
    records = train_runs(configs, data, outs, progress=args.progress, on_diverge=args.on_diverge, replace=args.replace)
    for out, record in zip(outs, records):
        if record["status"] == "ok":
            test = record["metrics"]["test"]
            print(f"{out}: test acc {test['acc']:.4f}, nll {test['nll']:.4f}, ece {test['ece']:.4f} ({record['wall_time_s']:.0f} s)")
        else:
            print(f"{out}: FAILED: {record['error']}")


def _train_targets(params: dict, args) -> tuple[list[dict], list[Path]]:
    """The configurations and run folders to train: runs of the grids (several make a pack) or one --out run."""
    from mixstudy.runs import study

    if args.run:
        if args.out and len(args.run) > 1:
            raise MixstudyError("--out names one run folder; drop it to train several --run runs in their own folders")
        specs = [study.find_run(params, run_id) for run_id in args.run]
        needs_selection = any(study.needs_selection(params, spec) for spec in specs)
        selection = study.read_selection(args.selection) if needs_selection else None
        configs = [study.spec_config(params, spec, selection) for spec in specs]
        outs = [Path(args.out)] if args.out else [spec.folder(args.runs_root) for spec in specs]
        return configs, outs
    if not args.out:
        raise MixstudyError("give --run RUN_ID (a run of the study's grids) or --out DIR for a single run")
    selection = study.read_selection(args.selection) if args.use_selection else None
    return [study.run_config(params, args.seed, selection=selection)], [Path(args.out)]


def _spec_targets(args) -> tuple[list[dict], list[Path]]:
    """Runs given by the workflow as JSON specs (run id, run sections, seed, overrides): the
    configuration reaches the job through its own command line, never through a shared file."""
    from mixstudy.runs import study
    from mixstudy.core.config import parse_json_params

    if not (args.data and args.subset):
        raise MixstudyError("--run-spec needs --data and --subset")
    specs = [parse_json_params(text) for text in args.run_spec]
    selection = study.read_selection(args.selection) if args.use_selection else None
    configs = [
        study.run_config(spec["sections"], spec["seed"], spec["overrides"], selection) for spec in specs
    ]
    for config in configs:
        config["compute"].update(_compute_overrides(args.overrides))
    return configs, [Path(args.runs_root) / spec["run_id"] for spec in specs]


def _compute_overrides(assignments: list[str]) -> dict:
    """--set compute.KEY=VALUE with --run-spec (the workflow's threads per job)."""
    from mixstudy.core.config import apply_override

    compute = {}
    for assignment in assignments:
        if not assignment.startswith("compute."):
            raise MixstudyError(f"--set {assignment}: with --run-spec only compute.* settings can be set")
        compute.update(apply_override({}, assignment)["compute"])
    return compute


def cmd_evaluate(args) -> None:
    from mixstudy.data.subsets import params_subset_file
    from mixstudy.core.fileio import remove_temporaries, write_json
    from mixstudy.train.run_evaluation import evaluate_run_files, evaluate_stale_runs
    from mixstudy.runs.run_folder import EVALUATION_FILE

    params = _params(args)
    data_npz, subset = args.data or params["data"]["out"], args.subset or params_subset_file(params)
    if (args.checkpoint is None) == (args.runs_root is None):
        raise MixstudyError("give one model.pt, or --runs-root to evaluate every finished sweep run under a folder")
    if args.runs_root is not None:
        root = _runs_root(args)
        evaluated = evaluate_stale_runs(params, root, data_npz, subset)
        print(f"evaluated {len(evaluated)} runs under {root} (the others: not finished, or evaluation.json current)")
        for folder in evaluated:
            print(f"  {folder / EVALUATION_FILE}")
        return
    result = evaluate_run_files(args.checkpoint, data_npz, subset, params)
    if args.out:
        remove_temporaries([args.out])  # what a killed run of this command left beside it
        write_json(args.out, result)
    print(json.dumps(result, indent=2))


def cmd_leave_out_weights(args) -> None:
    from mixstudy.runs.run_folder import WEIGHTS_LEFT_OUT_FILE, leave_out_weights

    params = _params(args)
    for folder in args.folders:
        left_out = leave_out_weights(folder, params["theory"])
        print(f"{Path(folder) / WEIGHTS_LEFT_OUT_FILE}: model.pt ({left_out['sha256'][:12]}) may now be left out; "
              "the run stays finished without it")


def cmd_select(args) -> None:
    from mixstudy.results.selection import select_best, write_selection

    params = _params(args)
    selection = select_best(params, _runs_root(args))
    write_selection(selection, args.out)
    print(
        f"wrote {args.out}: {selection['scheduler']}, momentum {selection['momentum']}, "
        f"weight decay {selection['weight_decay']} ({selection['selected_by']}: {selection['mean_acc']:.4f})"
    )


def cmd_runs(args) -> None:
    from mixstudy.runs import study

    params = _params(args)
    specs = study.tuning_runs(params) if args.stage == "tuning" else study.sweep_runs(params) if args.stage == "sweep" else study.all_runs(params)
    if args.packs:
        for pack in study.packs(specs, params["compute"]["pack_size"]):
            print(f"{pack.name}: {' '.join(spec.run_id for spec in pack.runs)}")
        return
    for spec in specs:
        print(spec.run_id)


def cmd_progress(args) -> None:
    from mixstudy.runs.progress import progress_lines, watch

    params = _params(args)
    if args.watch:
        watch(params, args.runs_root, args.watch)
    else:
        print("\n".join(progress_lines(params, args.runs_root)))


def cmd_check_config(args) -> None:
    """What Snakemake's --configfile will read, checked first: each file's YAML (file, line and
    column of an error), the files layered on params.yaml as Snakemake layers them, validated, and
    the subset they ask for against the data set's classes."""
    from mixstudy.runs import study
    from mixstudy.core.config import layered_on_defaults, load_params
    from mixstudy.data.subsets import check_subset_fits

    files = layered_on_defaults(args.files)
    params = load_params(files)
    check_subset_fits(params)
    print(f"{' + '.join(str(f) for f in files)}: valid ({len(study.all_runs(params))} runs in the grids)")


def cmd_aggregate(args) -> None:
    from mixstudy.results.aggregation import aggregate
    from mixstudy.results.summary import HEADLINE_FILE

    params = _params(args)
    headline = args.headline or Path(args.summary).with_name(HEADLINE_FILE)
    expectation = _expectation(params, args)
    analysis = aggregate(params, _grid_runs_root(args, params, expectation), args.out_dir, args.summary, expectation, headline)
    counts = analysis.counts()
    print(
        f"wrote tables to {args.out_dir}, {args.summary} and {headline}: {counts['finished']} of {counts['expected']} runs finished, "
        f"{counts['failed']} failed, {counts['missing']} missing, {counts['mismatched']} mismatched"
        + (f", {counts['damaged']} damaged (left out; see problems.csv)" if counts["damaged"] else "")
    )


def _expectation(params: dict, args):
    """What runs are checked against: the tuning's choice and the subset, where they exist."""
    from mixstudy.runs import study
    from mixstudy.data.subsets import params_subset_file
    from mixstudy.results.analysis import Expectation

    selection = study.read_selection(args.selection) if Path(args.selection).is_file() else None
    subset = Path(args.subset or params_subset_file(params))
    return Expectation(selection, _subset_sha256(subset) if subset.is_file() else None)


def _subset_sha256(path: Path) -> str:
    """The content hash of a subset's training images, as runs record it."""
    try:
        return json.loads(path.read_text())["train_sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise MixstudyError(f"{path} is not a subset file ({err}); run `mixstudy subset` again") from err


def cmd_compare(args) -> None:
    from mixstudy.results.analysis import analyse
    from mixstudy.core.config import layered_on_defaults, load_params
    from mixstudy.results.run_sets import compare_run_sets

    params = _params(args)
    against_params = load_params(layered_on_defaults(args.against_params)) if args.against_params else params
    root = _runs_root(args)
    against_root = _runs_root(argparse.Namespace(runs_root=args.against_root))
    labels = tuple(args.labels)
    a, b = analyse(params, root), analyse(against_params, against_root)
    configs = compare_run_sets(a, b, labels, args.out_dir)
    print(f"wrote {Path(args.out_dir) / 'compare.md'}: {configs['name'].nunique()} configurations, {labels[0]} against {labels[1]}")


def cmd_figures(args) -> None:
    from mixstudy.figures.registry import make_figures

    params = _params(args)
    result = make_figures(params, _grid_runs_root(args, params), args.out_dir)
    print(f"wrote {len(result.written)} figures to {args.out_dir}")
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")


def cmd_report(args) -> None:
    from mixstudy.report.document import write_report

    params = _params(args)
    markdown_path, html_path = write_report(params, _grid_runs_root(args, params), args.out, args.figures_dir, args.selection)
    print(f"wrote {markdown_path} and {html_path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixstudy", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="fetch, verify and normalise CIFAR-10 (data.* parameters)")
    _add_params(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("subset", help="draw the seeded stratified subset (subset.* parameters)")
    _add_params(p)
    p.add_argument("--out", help="subset file (default: data/subsets/<named by the parameters>.json)")
    p.set_defaults(func=cmd_subset)

    p = sub.add_parser("train", help="train one run, or several as one pack, and write each run folder (metrics.json, history.tsv, model.pt)")
    _add_params(p)
    p.add_argument(
        "--run", metavar="RUN_ID", action="append",
        help="a run of the study's grids, e.g. sweep/manifold_S0-2_alpha4/seed0 (see `mixstudy runs`); "
        "repeat to train several as one pack (same training setting, any seeds and mixing)",
    )
    p.add_argument("--out", help="run folder (default for --run: RUNS_ROOT/RUN_ID)")
    p.add_argument("--seed", type=int, default=0, help="run seed when not using --run (default 0)")
    _add_runs_root(p)
    p.add_argument("--selection", default=DEFAULT_SELECTION, help=f"tuning choice for sweep runs (default {DEFAULT_SELECTION})")
    p.add_argument("--use-selection", action="store_true", help="apply the tuning choice to a single --out run too")
    p.add_argument("--subset", help="subset file (default: the one named by the subset.* parameters)")
    p.add_argument("--data", help="prepared data file (default: data.out)")
    p.add_argument(
        "--run-spec", metavar="JSON", action="append",
        help="a run as the workflow passes it: JSON with run_id, sections, seed and overrides (repeat for a pack)",
    )
    p.add_argument("--replace", action="store_true", help="train over a finished run of another configuration in the run folder, or into a folder that does not hold a mixstudy run")
    p.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto", help="progress bar at a terminal, log lines otherwise (default auto)")
    p.add_argument(
        "--on-diverge", choices=["error", "record"], default="error",
        help="non-finite loss: exit with an error (default), or record a failed run in metrics.json and exit 0 (pipelines)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved model.pt: test and validation metrics, input-Jacobian norms and the "
        "test-time transformation of mixup (theory.* parameters)",
    )
    _add_params(p)
    p.add_argument("checkpoint", nargs="?", help="path to a run's model.pt")
    p.add_argument(
        "--runs-root", help="instead of one model.pt: write evaluation.json for every finished sweep run under this "
        "folder whose evaluation.json is missing or stale (e.g. docs/real-runs)",
    )
    p.add_argument("--data", help="prepared data (.npz; default data.out)")
    p.add_argument("--subset", help="the run's subset file (its training images and validation split)")
    p.add_argument("--out", help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "leave-out-weights",
        help="record that finished runs' model.pt will be left out (e.g. not committed): they stay finished, "
        "never retrained; needs each run's evaluation.json computed from its model.pt first",
    )
    _add_params(p)
    p.add_argument("folders", nargs="+", metavar="RUN_FOLDER", help="a finished run's folder (holding metrics.json and model.pt)")
    p.set_defaults(func=cmd_leave_out_weights)

    p = sub.add_parser("select", help="choose the best baseline configuration from the tuning runs")
    _add_params(p)
    _add_runs_root(p)
    p.add_argument("--out", default=DEFAULT_SELECTION, help=f"selection file (default {DEFAULT_SELECTION})")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("runs", help="list the run ids of the study's grids")
    _add_params(p)
    p.add_argument("--stage", choices=["all", "tuning", "sweep"], default="all", help="which grid (default all)")
    p.add_argument("--packs", action="store_true", help="list the packs of compute.pack_size runs the workflow trains together")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "check-config",
        help="check parameter files before `snakemake --configfile FILE...`: their YAML (file, line, column), "
        "the parameters they give layered on params.yaml, and the subset they ask for",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="parameter files, in the order given to --configfile")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("progress", help="runs finished, running and waiting per stage, and an estimate of the time left")
    _add_params(p)
    _add_runs_root(p)
    p.add_argument("--watch", type=float, metavar="SECONDS", help="print again every SECONDS until every run has finished")
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("aggregate", help="tables (CSV, Markdown, LaTeX), runs.csv, problems.csv and summary.json from the run folders")
    _add_params(p)
    _add_runs_root(p)
    p.add_argument("--out-dir", default=DEFAULT_TABLES_DIR, help=f"folder for the tables (default {DEFAULT_TABLES_DIR})")
    p.add_argument("--summary", default=DEFAULT_SUMMARY, help=f"flat metrics of every configuration (default {DEFAULT_SUMMARY})")
    p.add_argument("--headline", help="the headline metrics DVC shows by default: mixup's gain and interval, both arms' "
                   "accuracy, NLL and ECE, runs finished and stale (default: headline.json beside --summary)")
    p.add_argument("--selection", default=DEFAULT_SELECTION, help=f"tuning choice the sweep runs must have, if present (default {DEFAULT_SELECTION})")
    p.add_argument("--subset", help="subset the runs must have trained on, if present (default: the one named by the subset.* parameters)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser(
        "compare",
        help="two run sets of the same configurations side by side (e.g. bf16 against float32): metrics per seed, "
        "and per configuration the difference of the means with its interval",
    )
    _add_params(p)
    _add_runs_root(p)
    p.add_argument("--against-root", required=True, help="the other run set's root of run folders")
    p.add_argument("--against-params", action="append", default=[], metavar="FILE",
                   help="the other run set's override files on params.yaml (default: the same as --params)")
    p.add_argument("--labels", nargs=2, default=["A", "B"], metavar=("A", "B"), help="names of the two sets (default A B)")
    p.add_argument("--out-dir", required=True, help="folder for compare.md, compare.csv and compare_seeds.csv")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("figures", help="the study's figures as PNG and PDF; figures without data are skipped")
    _add_params(p)
    _add_runs_root(p)
    p.add_argument("--out-dir", default=DEFAULT_FIGURES_DIR, help=f"folder for the figures (default {DEFAULT_FIGURES_DIR})")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("report", help="results/report.md and report.html: tables, figures, published numbers beside ours")
    _add_params(p)
    _add_runs_root(p)
    p.add_argument("--out", default=DEFAULT_REPORT, help=f"Markdown report; the HTML goes beside it (default {DEFAULT_REPORT})")
    p.add_argument("--figures-dir", default=DEFAULT_FIGURES_DIR, help=f"figures to link (default {DEFAULT_FIGURES_DIR})")
    p.add_argument("--selection", default=DEFAULT_SELECTION, help=f"tuning choice to describe, if present (default {DEFAULT_SELECTION})")
    p.set_defaults(func=cmd_report)

    return parser


INTERRUPTED = 130  # the shell's exit status of a command stopped by Ctrl-C (128 + SIGINT)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    again = "mixstudy " + shlex.join(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except Interrupted as err:  # where training stopped, and how it goes on
        print(f"mixstudy {args.command}: {err}; resume with: {again}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:  # every write is atomic: nothing half-written is left
        print(f"mixstudy {args.command}: stopped by Ctrl-C; run it again: {again}", file=sys.stderr)
        return INTERRUPTED
    except MixstudyError as err:
        print(f"mixstudy {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that cannot be read or written: name it, no traceback
        where = f"{err.filename}: " if err.filename is not None else ""
        print(f"mixstudy {args.command}: error: {where}{err.strerror or err}; check the path, its permissions and free space",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
