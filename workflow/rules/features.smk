# Radial and angular structure functions of every atom in every (strided) frame.


rule features:
    input:
        trajectory="results/T{T}/{run_dir}trajectory.h5",
    output:
        "results/T{T}/{run_dir}features.h5",
    log:
        "results/logs/T{T}/{run_dir}features.log",
    benchmark:
        "results/benchmarks/T{T}/{run_dir}features.tsv"
    params:
        config=RESOLVED_CONFIG,
        science=science("precision", "features"),
    threads: 1
    resources:
        mem_mb=2000 + TRAJECTORY_MB + 2 * FEATURES_MB,
        runtime=30,
    conda:
        "../../environment.yml"
    shell:
        "softness features --config {params.config} --trajectory {input.trajectory} --out {output} "
        "> {log} 2>&1"
