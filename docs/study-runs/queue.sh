#!/usr/bin/env bash
# The real runs of docs/study-runs/, through the project's own workflow, one queue at a time:
#   bash docs/study-runs/queue.sh            (from the repository root, after `make install`)
#   bash docs/study-runs/queue.sh theory     (only the configurations named)
#   SNAKEMAKE_OPTIONS="--prioritize results/runs/X/metrics.json" bash docs/study-runs/queue.sh study-net
#                                            (those runs first, e.g. the ones that resume)
# Each configuration runs in a worktree of its own at the current commit (so later edits of the
# checkout never reach a running job), with its run folders linked into docs/study-runs/, where
# they are committed: a finished run is kept by content, an interrupted one resumes from the
# resume.pt committed beside it. Running this again after an interruption continues where it stopped.
# JOBS (default 2, one per core) is the number of training jobs at once.
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
BIN=$ROOT/.venv/bin
LOGS=$(dirname "$ROOT")/queue-logs
REVISION=$(git -C "$ROOT" rev-parse HEAD)
JOBS=${JOBS:-2}

run_config() {  # run_config NAME CONFIG... : snakemake over these config files, runs in docs/study-runs/NAME/runs
  # (extra Snakemake options before --configfile: $SNAKEMAKE_OPTIONS)
  local name=$1; shift
  local tree=$(dirname "$ROOT")/queue-${name//\//-}  # beside the checkout: data.npz_path ../shared/ holds
  if [ ! -d "$tree" ]; then
    git -C "$ROOT" worktree add --detach "$tree" "$REVISION" >/dev/null
  fi
  mkdir -p "$ROOT/docs/study-runs/$name/runs" "$tree/results"
  ln -sfn "$ROOT/docs/study-runs/$name/runs" "$tree/results/runs"
  (cd "$tree" && PATH=$BIN:$PATH PYTHONPATH=$tree/src nice -n 10 \
    snakemake --cores "$JOBS" --resources gpu="$JOBS" --rerun-incomplete ${SNAKEMAKE_OPTIONS:-} --configfile "$@" >> "$LOGS/${name//\//-}.log" 2>&1)
}

ARGS="$*"

mkdir -p "$LOGS"
# How far the choice of 500 images moves a result: the first run's network and budget, one seed.
for subset in study seeded1 seeded2 seeded3; do
  if [ -z "$ARGS" ] || [[ " $ARGS " == *" subset-share/$subset "* ]]; then
    run_config "subset-share/$subset" config/first.yaml "config/subset-share/$subset.yaml"
  fi
done
# The theory section's cheap second network: the first run's configuration with input mixup beside
# S={0,2}, two seeds (its seed-0 runs of S={0,2} and the baseline are those of subset-share/study).
if [ -z "$ARGS" ] || [[ " $ARGS " == *" theory "* ]]; then
  run_config theory config/first.yaml config/theory.yaml
fi
# The crop's padding share: the theory runs' baseline and S={0,2} again with zero-padded crops.
if [ -z "$ARGS" ] || [[ " $ARGS " == *" padding-share/zero "* ]]; then
  run_config padding-share/zero config/first.yaml config/padding-share/zero.yaml
fi
# The study's network, crop and images: its final setting and Table 1's, the 100-epoch Table 1 runs
# first (they finish within a session; a 400-epoch run of this network takes about 2 h a core).
if [ -z "$ARGS" ] || [[ " $ARGS " == *" study-net "* ]]; then
  SNAKEMAKE_OPTIONS="--prioritize results/tuning/selection.yaml ${SNAKEMAKE_OPTIONS:-}" run_config study-net config/study-net.yaml
fi
