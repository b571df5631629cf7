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
        config=RUNS + "/tuning/{name}/seed{seed}/config.json",
    output:
        metrics=RUNS + "/tuning/{name}/seed{seed}/metrics.json",
        history=RUNS + "/tuning/{name}/seed{seed}/history.tsv",
        model=RUNS + "/tuning/{name}/seed{seed}/model.pt",
    params:
        run_id="tuning/{name}/seed{seed}",
    log:
        RUNS + "/tuning/{name}/seed{seed}/train.log",
    benchmark:
        RUNS + "/tuning/{name}/seed{seed}/benchmark.tsv"
    threads: 1
    resources:
        gpu=1,
    shell:
        "mixstudy train --params {PARAMS} --run {params.run_id} --subset {input.subset}"
        " --selection {SELECTION} --set compute.threads={threads}"
        " --progress lines --on-diverge record > {log} 2>&1"


use rule train_tuning as train_baseline with:
    input:
        data=DATA,
        subset=SUBSET,
        selection=SELECTION,
        config=RUNS + "/sweep/baseline/seed{seed}/config.json",
    output:
        metrics=RUNS + "/sweep/baseline/seed{seed}/metrics.json",
        history=RUNS + "/sweep/baseline/seed{seed}/history.tsv",
        model=RUNS + "/sweep/baseline/seed{seed}/model.pt",
    params:
        run_id="sweep/baseline/seed{seed}",
    log:
        RUNS + "/sweep/baseline/seed{seed}/train.log",
    benchmark:
        RUNS + "/sweep/baseline/seed{seed}/benchmark.tsv"


use rule train_tuning as train_manifold with:
    input:
        data=DATA,
        subset=SUBSET,
        selection=SELECTION,
        config=RUNS + "/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/config.json",
    output:
        metrics=RUNS + "/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/metrics.json",
        history=RUNS + "/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/history.tsv",
        model=RUNS + "/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/model.pt",
    params:
        run_id="sweep/manifold_S{layers}_alpha{alpha}/seed{seed}",
    log:
        RUNS + "/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/train.log",
    benchmark:
        RUNS + "/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}/benchmark.tsv"


use rule train_tuning as train_cutmix with:
    input:
        data=DATA,
        subset=SUBSET,
        selection=SELECTION,
        config=RUNS + "/sweep/cutmix_alpha{alpha}/seed{seed}/config.json",
    output:
        metrics=RUNS + "/sweep/cutmix_alpha{alpha}/seed{seed}/metrics.json",
        history=RUNS + "/sweep/cutmix_alpha{alpha}/seed{seed}/history.tsv",
        model=RUNS + "/sweep/cutmix_alpha{alpha}/seed{seed}/model.pt",
    params:
        run_id="sweep/cutmix_alpha{alpha}/seed{seed}",
    log:
        RUNS + "/sweep/cutmix_alpha{alpha}/seed{seed}/train.log",
    benchmark:
        RUNS + "/sweep/cutmix_alpha{alpha}/seed{seed}/benchmark.tsv"


rule select_baseline:
    input:
        run_files(TUNING_RUNS),
    output:
        SELECTION,
    log:
        "logs/select_baseline.log",
    shell:
        "mixstudy select --params {PARAMS} --runs-root {RUNS} --out {output} > {log} 2>&1"


rule train_all:
    input:
        SELECTION,
        run_files(SWEEP_RUNS),
