rule data:
    output:
        npz=DATA,
        manifest=str(Path(DATA).with_suffix(".manifest.json")),
    params:
        params=PARAMS,
        source=config["data"],  # rerun when the data source settings change
    log:
        "logs/data.log",
    conda:
        "../envs/mixstudy.yaml"
    shell:
        "mixstudy data --params {params.params} > {log} 2>&1"


rule subset:
    input:
        DATA,
    output:
        SUBSET,
    params:
        params=PARAMS,
    log:
        "logs/subset.log",
    conda:
        "../envs/mixstudy.yaml"
    shell:
        "mixstudy subset --params {params.params} --out {output} > {log} 2>&1"
