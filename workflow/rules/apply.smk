# Softness of every atom and frame at one temperature, from the model trained at T_train.


rule apply:
    input:
        model="results/model.h5",
        features="results/T{T}/{run_dir}features.h5",
    output:
        "results/T{T}/{run_dir}softness.h5",
    log:
        "results/logs/T{T}/{run_dir}apply.log",
    benchmark:
        "results/benchmarks/T{T}/{run_dir}apply.tsv"
    params:
        config=RESOLVED_CONFIG,
    threads: 1
    resources:
        mem_mb=1000 + FEATURES_MB,
        runtime=20,
    conda:
        "../../environment.yml"
    shell:
        "softness apply --config {params.config} --model {input.model} --features {input.features} "
        "--out {output} > {log} 2>&1"
