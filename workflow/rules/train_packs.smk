# One job per pack (compute.pack_size > 1): `mixstudy train --run-spec A --run-spec B ...` trains
# the pack's runs as one packed network and writes each run's folder as a solo job would
# (metrics.json, history.tsv, model.pt, train.log: the pack's log). Runs of the pack that are
# already finished with their configuration are kept; the rest train as a smaller pack. The
# pack's benchmark goes to results/packs/<stage>/pack<NNN>/. `mixstudy runs --packs` lists the packs.
#
# Packs are formed in grid order (mixstudy.runs.study.packs); a changed grid can regroup them. A
# regrouped pack keeps its finished runs (their configuration did not change).


for pack in study.packs(TUNING_RUNS + SWEEP_RUNS, PACK_SIZE):

    rule:
        name:
            f"train_pack_{pack.stage}_{pack.index:03d}"
        input:
            **run_inputs(pack.runs),
        output:
            run_outputs(pack.runs),
        params:
            runs=lambda wildcards, runs=pack.runs: run_spec_arguments(runs),
            selection=selection_argument,
        log:
            f"logs/packs/{pack.name}.log",
        benchmark:
            str(pack.folder() / "benchmark.tsv")
        threads: 1
        resources:
            gpu=1,
            # Peak resident memory measured on CPU: 1,072 MB for one run, 2,368 MB for a pack of
            # 16 (docs/performance.md); about three times that, as the SLURM profile gives solo runs.
            mem_mb=3000 + 250 * len(pack.runs),
        conda:
            "../envs/mixstudy.yaml"
        shell:
            TRAIN_COMMAND
