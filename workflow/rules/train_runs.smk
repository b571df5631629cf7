# One job per run. Each run's folder (results/runs/<stage>/<name>/seed<seed>) holds its
# config.json (declared by common.smk), metrics.json, history.tsv, model.pt, train.log and
# benchmark.tsv. Jobs ask for gpu=1, so `--resources gpu=1` runs one training job at a time.

wildcard_constraints:
    name="[^/]+",
    seed=r"\d+",
    layers=r"[0-9]+(-[0-9]+)*",
    alpha=r"[0-9.e+-]+",


rule train_tuning:
    input:
        data=DATA,
        subset=SUBSET,
        config="results/runs/tuning/{name}/seed{seed}/config.json",
    output:
        metrics="results/runs/tuning/{name}/seed{seed}/metrics.json",
        history="results/runs/tuning/{name}/seed{seed}/history.tsv",
        model="results/runs/tuning/{name}/seed{seed}/model.pt",
    params:
        runs="--run tuning/{name}/seed{seed}",
        params=PARAMS,
        selection=selection_argument,
    log:
        "results/runs/tuning/{name}/seed{seed}/train.log",
    benchmark:
        "results/runs/tuning/{name}/seed{seed}/benchmark.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/mixstudy.yaml"
    shell:
        TRAIN_COMMAND


use rule train_tuning as train_baseline with:
    input:
        data=DATA,
        subset=SUBSET,
        selection=SELECTION,
        config="results/runs/sweep/baseline/seed{seed}/config.json",
    output:
        metrics="results/runs/sweep/baseline/seed{seed}/metrics.json",
        history="results/runs/sweep/baseline/seed{seed}/history.tsv",
        model="results/runs/sweep/baseline/seed{seed}/model.pt",
    params:
        runs="--run sweep/baseline/seed{seed}",
        params=PARAMS,
        selection=selection_argument,
    log:
        "results/runs/sweep/baseline/seed{seed}/train.log",
    benchmark:
        "results/runs/sweep/baseline/seed{seed}/benchmark.tsv"


use rule train_tuning as train_manifold with:
    input:
        data=DATA,
        subset=SUBSET,
        selection=SELECTION,
        config="results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/config.json",
    output:
        metrics="results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/metrics.json",
        history="results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/history.tsv",
        model="results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/model.pt",
    params:
        runs="--run sweep/manifold_S{layers}_alpha{alpha}/seed{seed}",
        params=PARAMS,
        selection=selection_argument,
    log:
        "results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/train.log",
    benchmark:
        "results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/benchmark.tsv"


use rule train_tuning as train_cutmix with:
    input:
        data=DATA,
        subset=SUBSET,
        selection=SELECTION,
        config="results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/config.json",
    output:
        metrics="results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/metrics.json",
        history="results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/history.tsv",
        model="results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/model.pt",
    params:
        runs="--run sweep/cutmix_alpha{alpha}/seed{seed}",
        params=PARAMS,
        selection=selection_argument,
    log:
        "results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/train.log",
    benchmark:
        "results/runs/sweep/cutmix_alpha{alpha}/seed{seed}/benchmark.tsv"
