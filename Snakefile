# mixstudy workflow: data -> subset -> baseline tuning -> selection -> sweep -> evaluation -> aggregation -> figures/report.
# Parameters: params.yaml, with override files layered on top (--configfile config/smoke.yaml).
# The rules live in workflow/rules/; helper functions in workflow/rules/common.smk; what is made again
# (finished and stale runs, rebuild requests, evaluations) is decided in mixstudy.runs.reruns.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/results.smk"


rule all:
    default_target: True
    input:
        "results/report.md",
        REBUILD_REQUESTS,
