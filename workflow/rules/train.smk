# The linear-SVM softness model, trained at train.T_train_K (default: the lowest temperature).


rule train:
    input:
        features=f"results/T{T_TRAIN}/features.h5",
        hops=f"results/T{T_TRAIN}/hops.h5",
    output:
        "results/model.h5",
    log:
        "results/logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    params:
        config=RESOLVED_CONFIG,
        science=science("seed", "train"),
    threads: 1
    resources:
        mem_mb=2000 + FEATURES_MB,
        runtime=30,
    conda:
        "../../environment.yml"
    shell:
        "softness train --config {params.config} --features {input.features} --hops {input.hops} "
        "--out {output} > {log} 2>&1"
