#!/usr/bin/env bash
# The real runs of docs/study-runs/, through the project's own workflow, one queue at a time:
#   bash docs/study-runs/queue.sh            (from the repository root, after `make install`)
#   bash docs/study-runs/queue.sh theory     (only the configurations named)
#   SNAKEMAKE_OPTIONS="--prioritize results/runs/X/metrics.json" bash docs/study-runs/queue.sh study-net
#                                            (those runs first, e.g. the ones that resume)
#   bash docs/study-runs/queue.sh study-net-bf16:1   (only phase 1 of study-net-bf16; see below)
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
  # (extra Snakemake options before --configfile: $SNAKEMAKE_OPTIONS; targets, before every option:
  # $TARGETS, default the workflow's own)
  local name=$1; shift
  local tree=$(dirname "$ROOT")/queue-${name//\//-}  # beside the checkout: data.npz_path ../shared/ holds
  if [ ! -d "$tree" ]; then
    git -C "$ROOT" worktree add --detach "$tree" "$REVISION" >/dev/null
  elif [ "$(git -C "$tree" rev-parse HEAD)" != "$REVISION" ]; then
    # a worktree of an earlier queue (one session's processes end with it): the current commit now
    git -C "$tree" checkout --quiet --detach "$REVISION"
  fi
  mkdir -p "$ROOT/docs/study-runs/$name/runs" "$tree/results"
  ln -sfn "$ROOT/docs/study-runs/$name/runs" "$tree/results/runs"
  # The data and the subset first: until the subset exists the workflow cannot tell a committed
  # finished run from a stale one, and would hand every one to its training and evaluation jobs
  # (which keep the run, but measure its test set again).
  (cd "$tree" && PATH=$BIN:$PATH PYTHONPATH=$tree/src nice -n 10 \
    snakemake subset --cores 1 --configfile "$@" >> "$LOGS/${name//\//-}.log" 2>&1)
  (cd "$tree" && PATH=$BIN:$PATH PYTHONPATH=$tree/src nice -n 10 \
    snakemake ${TARGETS:-} --cores "$JOBS" --resources gpu="$JOBS" --rerun-incomplete ${SNAKEMAKE_OPTIONS:-} --configfile "$@" >> "$LOGS/${name//\//-}.log" 2>&1)
}

# The rest is one block, which bash reads whole before running it, then exits: the script can be
# edited (a commit, a checkout) while a queue runs without the running one reading the new text.
{
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

# The study's network in bf16 (config/study-net-bf16.yaml): whether bf16 moves a result, then Table 3's
# shape. Its phases, in order, each one Snakemake invocation naming its runs' evaluation.json as
# targets (the folder's Table 1 runs are not trained: the float32 ones of study-net/ stand):
#   1  the baseline and S={0,2}, alpha=4, seeds 0-1 (if they sit outside what seeds move, stop here)
#   2  Table 3's row alpha=4 and column S={0,2} (12 cells besides S={0,2}, alpha=4), seed 0
#   3  the baseline and S={0,2}, alpha=4, seeds 2-4
#   4  the 12 cells, seed 1
BF16_CONFIG="config/study-net.yaml config/study-net-bf16.yaml"
bf16_targets() {  # bf16_targets SEEDS ARM... : the evaluation.json of these runs
  local seeds=$1; shift
  for arm in "$@"; do for seed in $seeds; do echo "results/runs/sweep/$arm/seed$seed/evaluation.json"; done; done
}
BF16_HEADLINE="baseline manifold_S0-2_alpha4"
BF16_CELLS="manifold_S0_alpha4 manifold_S1_alpha4 manifold_S2_alpha4 manifold_S0-1_alpha4 manifold_S1-2_alpha4
  manifold_S0-1-2_alpha4 manifold_S0-2_alpha0.2 manifold_S0-2_alpha0.5 manifold_S0-2_alpha1 manifold_S0-2_alpha1.5
  manifold_S0-2_alpha2 manifold_S0-2_alpha5"
for phase in 1 2 3 4; do
  if [ -z "$ARGS" ] || [[ " $ARGS " == *" study-net-bf16 "* ]] || [[ " $ARGS " == *" study-net-bf16:$phase "* ]]; then
    case $phase in
      1) TARGETS=$(bf16_targets "0 1" $BF16_HEADLINE) ;;
      2) TARGETS=$(bf16_targets "0" $BF16_CELLS) ;;
      3) TARGETS=$(bf16_targets "2 3 4" $BF16_HEADLINE) ;;
      4) TARGETS=$(bf16_targets "1" $BF16_CELLS) ;;
    esac
    TARGETS=$TARGETS run_config study-net-bf16 $BF16_CONFIG
  fi
done
exit
}
