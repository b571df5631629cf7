rule data:
    output:
        npz=DATA,
        manifest=str(Path(DATA).with_suffix(".manifest.json")),
    params:
        source=config["data"],  # rerun when the data source settings change
    log:
        "logs/data.log",
    shell:
        "mixstudy data --params {PARAMS} > {log} 2>&1"


rule subset:
    input:
        DATA,
    output:
        SUBSET,
    log:
        "logs/subset.log",
    shell:
        "mixstudy subset --params {PARAMS} --out {output} > {log} 2>&1"
