rule aggregate:
    input:
        run_files(TUNING_RUNS + SWEEP_RUNS),
        selection=SELECTION,
    output:
        summary="metrics/summary.json",
        runs="results/tables/runs.csv",
    log:
        "logs/aggregate.log",
    shell:
        "mixstudy aggregate --params {PARAMS} --runs-root {RUNS} --out-dir results/tables"
        " --summary {output.summary} > {log} 2>&1"


rule figures:
    input:
        rules.aggregate.output,
        run_files(TUNING_RUNS + SWEEP_RUNS, "history.tsv"),
        subset=SUBSET,
    output:
        directory("results/figures"),
    log:
        "logs/figures.log",
    shell:
        "mixstudy figures --params {PARAMS} --runs-root {RUNS} --out-dir {output} > {log} 2>&1"


rule report:
    input:
        rules.aggregate.output,
        "results/figures",
    output:
        md="results/report.md",
        html="results/report.html",
    log:
        "logs/report.log",
    shell:
        "mixstudy report --params {PARAMS} --runs-root {RUNS} --out {output.md} > {log} 2>&1"
