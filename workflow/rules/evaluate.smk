# After training: each sweep run's model.pt measured by `mixstudy evaluate` (input-Jacobian norms,
# mixup's test-time transformation; the `theory` parameters, docs/theory.md), into evaluation.json
# beside the run's files. It is not part of the run's training identity, so runs trained before it
# existed get it from their model.pt, and changing `theory` recomputes it without training again.
# Jobs ask for gpu=1 like training jobs: the measures are backward passes through the network.


rule evaluate_run:
    input:
        unpack(lambda wildcards: evaluation_inputs(RUN_BY_ID[wildcards.run_id])),
    output:
        f"{RUNS}/{{run_id}}/{run_folder.EVALUATION_FILE}",
    params:
        model=lambda wildcards: RUN_BY_ID[wildcards.run_id].folder(RUNS) / run_folder.WEIGHTS,
        params=params_json("evaluation", "theory", "compute"),
    wildcard_constraints:
        run_id=SWEEP_RUN_ID_PATTERN,
    log:
        "logs/evaluate/{run_id}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/mixstudy.yaml"
    shell:
        "mixstudy evaluate {params.model} --data {input.data} --subset {input.subset}"
        " --params-json {params.params} --set compute.threads={threads} --out {output} > {log} 2>&1"
