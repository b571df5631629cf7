# Training: one job per run (compute.pack_size 1), or one job per pack of runs trained
# together in one process (compute.pack_size > 1; docs/performance.md). Either way each run
# writes the same folder, results/runs/<stage>/<name>/seed<seed>, so everything downstream is
# the same. Training jobs ask for gpu=1, so `--resources gpu=1` runs one at a time.
# Every target asks for each run's metrics.json and history.tsv; model.pt is checked by content
# (common.smk, run_state): a lost or damaged output of a finished run is rebuilt, weights left out
# on purpose (`mixstudy leave-out-weights`) are not.

PACK_SIZE = config["compute"]["pack_size"]  # validated in common.smk: every key is present


include: "train_packs.smk" if PACK_SIZE > 1 else "train_runs.smk"


rule select_baseline:
    input:
        # Ancient once every tuning run is finished with its configuration: a checkout or a pull
        # (new modification times) does not choose again.
        [ancient(path) if SELECTION_SETTLED else path for path in run_files(TUNING_RUNS)],
    output:
        SELECTION,
    params:
        params=params_json("data", "tuning", "evaluation", *study.RUN_SECTIONS),  # data.name: whose runs
    log:
        "logs/select_baseline.log",
    conda:
        "../envs/mixstudy.yaml"
    shell:
        "mixstudy select --params-json {params.params} --out {output} > {log} 2>&1"


rule train_all:
    input:
        SELECTION,
        every_run_file(TUNING_RUNS + SWEEP_RUNS),
        evaluation_files(SWEEP_RUNS),
        REBUILD_REQUESTS,


# A run with outputs that are not what is asked (another configuration, damaged files): a request
# file named by the training hash asked (results/rebuild/<run id>/<key>.txt), made by a job, that its
# training job waits for and the target rules ask for (mixstudy.runs.reruns). Writing it removes the run's
# requests of other keys, so no later change finds one already made.
# It only writes one line, so it runs where Snakemake runs, never as a cluster job.
localrules:
    rebuild_request,


rule rebuild_request:
    output:
        reruns.rebuild_request("{run_id}", "{key}"),
    wildcard_constraints:
        run_id=RUN_ID_PATTERN,
        key="[0-9a-f]{16}",
    log:
        "logs/rebuild/{run_id}/{key}.log",
    run:
        # the reason is no param: a param would make Snakemake remake a finished run's request
        reruns.write_rebuild_request(output[0], REBUILD[wildcards.run_id].reason if wildcards.run_id in REBUILD else "requested")
