rule data:
    output:
        npz=DATA,
        manifest=str(Path(DATA).with_suffix(".manifest.json")),
    params:
        params=params_json("data"),  # rerun when the data source settings change
    log:
        "logs/data.log",
    conda:
        "../envs/mixstudy.yaml"
    shell:
        "mixstudy data --params-json {params.params} > {log} 2>&1"


rule subset:
    input:
        DATA,
    output:
        SUBSET,
    params:
        params=params_json("data", "subset"),
    log:
        "logs/subset.log",
    conda:
        "../envs/mixstudy.yaml"
    shell:
        "mixstudy subset --params-json {params.params} --out {output} > {log} 2>&1"
