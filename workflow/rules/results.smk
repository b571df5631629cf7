rule aggregate:
    input:
        every_run_file(TUNING_RUNS + SWEEP_RUNS),
        evaluation_files(SWEEP_RUNS),
        selection=SELECTION,
        subset=SUBSET,
    output:
        summary="metrics/summary.json",
        headline="metrics/headline.json",
        runs="results/tables/runs.csv",
    params:
        params=params_json(),
    conda:
        "../envs/mixstudy.yaml"
    log:
        "logs/aggregate.log",
    shell:
        "mixstudy aggregate --params-json {params.params} --out-dir results/tables"
        " --summary {output.summary} --headline {output.headline} --selection {input.selection}"
        " --subset {input.subset} > {log} 2>&1"


rule figures:
    input:
        rules.aggregate.output,
        run_files(TUNING_RUNS + SWEEP_RUNS, run_folder.HISTORY_FILE),
        subset=SUBSET,
    output:
        directory("results/figures"),
    params:
        params=params_json(),
    conda:
        "../envs/mixstudy.yaml"
    log:
        "logs/figures.log",
    shell:
        "mixstudy figures --params-json {params.params} --out-dir {output} > {log} 2>&1"


rule report:
    input:
        rules.aggregate.output,
        "results/figures",
    output:
        md="results/report.md",
        html="results/report.html",
    params:
        params=params_json(),
    conda:
        "../envs/mixstudy.yaml"
    log:
        "logs/report.log",
    shell:
        "mixstudy report --params-json {params.params} --out {output.md} > {log} 2>&1"
