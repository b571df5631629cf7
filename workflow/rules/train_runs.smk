# One job per run: train_tuning (Table 1), train_baseline, train_manifold (Table 3), and the
# comparison runs train_cutmix and train_regulariser (label smoothing, Cutout). Each run's folder
# (results/runs/<stage>/<name>/seed<seed>) holds metrics.json, history.tsv, model.pt and train.log;
# Snakemake's log and benchmark of the job go to logs/runs/ and results/benchmarks/.
# Jobs ask for gpu=1, so `--resources gpu=1` runs one training job at a time.

wildcard_constraints:
    name="[^/]+",
    seed=r"\d+",
    layers=r"[0-9]+(-[0-9]+)*",
    alpha=r"[0-9.e+-]+",


rule train_tuning:
    input:
        unpack(lambda wildcards: run_inputs(one_run(f"tuning/{wildcards.name}/seed{wildcards.seed}"))),
    output:
        update("results/runs/tuning/{name}/seed{seed}/metrics.json"),
        update("results/runs/tuning/{name}/seed{seed}/history.tsv"),
        update("results/runs/tuning/{name}/seed{seed}/model.pt"),
    params:
        runs=lambda wildcards: run_spec_arguments(one_run(f"tuning/{wildcards.name}/seed{wildcards.seed}")),
        selection=selection_argument,
    log:
        "logs/runs/tuning/{name}/seed{seed}.log",
    benchmark:
        "results/benchmarks/tuning/{name}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/mixstudy.yaml"
    shell:
        TRAIN_COMMAND


use rule train_tuning as train_baseline with:
    input:
        unpack(lambda wildcards: run_inputs(one_run(f"sweep/baseline/seed{wildcards.seed}"))),
    output:
        update("results/runs/sweep/baseline/seed{seed}/metrics.json"),
        update("results/runs/sweep/baseline/seed{seed}/history.tsv"),
        update("results/runs/sweep/baseline/seed{seed}/model.pt"),
    params:
        runs=lambda wildcards: run_spec_arguments(one_run(f"sweep/baseline/seed{wildcards.seed}")),
        selection=selection_argument,
    log:
        "logs/runs/sweep/baseline/seed{seed}.log",
    benchmark:
        "results/benchmarks/sweep/baseline/seed{seed}.tsv"


use rule train_tuning as train_manifold with:
    input:
        unpack(lambda wildcards: run_inputs(one_run(f"sweep/manifold_S{wildcards.layers}_alpha{wildcards.alpha}/seed{wildcards.seed}"))),
    output:
        update("results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/metrics.json"),
        update("results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/history.tsv"),
        update("results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/model.pt"),
    params:
        runs=lambda wildcards: run_spec_arguments(one_run(f"sweep/manifold_S{wildcards.layers}_alpha{wildcards.alpha}/seed{wildcards.seed}")),
        selection=selection_argument,
    log:
        "logs/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}.log",
    benchmark:
        "results/benchmarks/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}.tsv"


use rule train_tuning as train_cutmix with:
    input:
        unpack(lambda wildcards: run_inputs(one_run(f"sweep/cutmix_alpha{wildcards.alpha}/seed{wildcards.seed}"))),
    output:
        update("results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/metrics.json"),
        update("results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/history.tsv"),
        update("results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/model.pt"),
    params:
        runs=lambda wildcards: run_spec_arguments(one_run(f"sweep/cutmix_alpha{wildcards.alpha}/seed{wildcards.seed}")),
        selection=selection_argument,
    log:
        "logs/runs/sweep/cutmix_alpha{alpha}/seed{seed}.log",
    benchmark:
        "results/benchmarks/sweep/cutmix_alpha{alpha}/seed{seed}.tsv"


use rule train_tuning as train_regulariser with:
    input:
        unpack(lambda wildcards: run_inputs(one_run(f"sweep/{wildcards.regulariser}/seed{wildcards.seed}"))),
    output:
        update("results/runs/sweep/{regulariser}/seed{seed}/metrics.json"),
        update("results/runs/sweep/{regulariser}/seed{seed}/history.tsv"),
        update("results/runs/sweep/{regulariser}/seed{seed}/model.pt"),
    params:
        runs=lambda wildcards: run_spec_arguments(one_run(f"sweep/{wildcards.regulariser}/seed{wildcards.seed}")),
        selection=selection_argument,
    log:
        "logs/runs/sweep/{regulariser}/seed{seed}.log",
    benchmark:
        "results/benchmarks/sweep/{regulariser}/seed{seed}.tsv"
    wildcard_constraints:
        regulariser=r"(label_smoothing_eps[0-9.e+-]+|cutout_[0-9]+)",
