# One job per run (compute.pack_size 1): the rule `train_run` over the run ids of the grids
# (mixstudy.runs.study names them: tuning/<name>/seed<k>, sweep/<name>/seed<k>). Each run's folder
# (results/runs/<run id>) holds metrics.json, history.tsv, model.pt and train.log; Snakemake's log
# and benchmark of the job go to logs/runs/ and results/benchmarks/.
# Jobs ask for gpu=1, so `--resources gpu=1` runs one training job at a time.


rule train_run:
    input:
        unpack(lambda wildcards: run_inputs(one_run(wildcards.run_id))),
    output:
        run_outputs_of("{run_id}"),
    params:
        runs=lambda wildcards: run_spec_arguments(one_run(wildcards.run_id)),
        selection=selection_argument,
    wildcard_constraints:
        run_id=RUN_ID_PATTERN,
    log:
        "logs/runs/{run_id}.log",
    benchmark:
        "results/benchmarks/{run_id}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/mixstudy.yaml"
    shell:
        TRAIN_COMMAND
