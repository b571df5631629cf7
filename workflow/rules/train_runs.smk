# One job per run: train_tuning (Table 1), train_baseline, train_manifold (Table 3), and the
# comparison runs train_cutmix and train_regulariser (label smoothing, Cutout). Each run's folder (results/runs/<stage>/<name>/seed<seed>) holds its
# config.json (declared by common.smk), metrics.json, history.tsv, model.pt, train.log and
# benchmark.tsv. Jobs ask for gpu=1, so `--resources gpu=1` runs one training job at a time.

wildcard_constraints:
    name="[^/]+",
    seed=r"\d+",
    layers=r"[0-9]+(-[0-9]+)*",
    alpha=r"[0-9.e+-]+",


def sweep_run_inputs(folder):
    """A sweep run reads the tuning's choice unless sweep.use_tuning_choice is false."""
    inputs = {"data": DATA, "subset": SUBSET, "config": f"{folder}/config.json"}
    if config["sweep"]["use_tuning_choice"]:
        inputs["selection"] = SELECTION
    return inputs


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
        **sweep_run_inputs("results/runs/sweep/baseline/seed{seed}"),
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
        **sweep_run_inputs("results/runs/sweep/manifold_S{layers}_alpha{alpha}/seed{seed}"),
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
        **sweep_run_inputs("results/runs/sweep/cutmix_alpha{alpha}/seed{seed}"),
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


use rule train_tuning as train_regulariser with:
    input:
        **sweep_run_inputs("results/runs/sweep/{regulariser}/seed{seed}"),
    output:
        metrics="results/runs/sweep/{regulariser}/seed{seed}/metrics.json",
        history="results/runs/sweep/{regulariser}/seed{seed}/history.tsv",
        model="results/runs/sweep/{regulariser}/seed{seed}/model.pt",
    params:
        runs="--run sweep/{regulariser}/seed{seed}",
        params=PARAMS,
        selection=selection_argument,
    log:
        "results/runs/sweep/{regulariser}/seed{seed}/train.log",
    benchmark:
        "results/runs/sweep/{regulariser}/seed{seed}/benchmark.tsv"
    wildcard_constraints:
        regulariser=r"(label_smoothing_eps[0-9.e+-]+|cutout_[0-9]+)",
