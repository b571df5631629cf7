# One job per pack (compute.pack_size > 1): `mixstudy train --run A --run B ...` trains the
# pack's runs as one packed network and writes each run's folder as a solo job would
# (config.json, metrics.json, history.tsv, model.pt, train.log: the pack's log). The pack's
# benchmark goes to results/packs/<stage>/pack<NNN>/. `mixstudy runs --packs` lists the packs.
#
# Packs are formed in grid order (mixstudy.study.packs); a changed grid can regroup them, and a
# regrouped pack retrains its runs (docs/performance.md, "Packed sweeps").


def pack_inputs(pack):
    inputs = {
        "data": DATA,
        "subset": SUBSET,
        "configs": run_files(pack.runs, "config.json"),
    }
    if any(study.needs_selection(config, spec) for spec in pack.runs):
        inputs["selection"] = SELECTION
    return inputs


def pack_outputs(pack):
    return [str(spec.folder(RUNS) / name) for spec in pack.runs for name in ("metrics.json", "history.tsv", "model.pt")]


for pack in study.packs(TUNING_RUNS + SWEEP_RUNS, PACK_SIZE):

    rule:
        name:
            f"train_pack_{pack.stage}_{pack.index:03d}"
        input:
            **pack_inputs(pack),
        output:
            pack_outputs(pack),
        params:
            runs=" ".join(f"--run {spec.run_id}" for spec in pack.runs),
            params=PARAMS,
            selection=selection_argument,
        log:
            run_files(pack.runs, "train.log"),
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
