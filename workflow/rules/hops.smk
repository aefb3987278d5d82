# p_hop of every atom and frame, and the rearranging / quiet labels.


rule hops:
    input:
        trajectory="results/T{T}/{run_dir}trajectory.h5",
    output:
        "results/T{T}/{run_dir}hops.h5",
    log:
        "results/logs/T{T}/{run_dir}hops.log",
    benchmark:
        "results/benchmarks/T{T}/{run_dir}hops.tsv"
    params:
        config=RESOLVED_CONFIG,
        science=science("hops"),
    threads: 1
    resources:
        mem_mb=1000 + 4 * TRAJECTORY_MB,
        runtime=20,
    conda:
        "../../environment.yml"
    shell:
        "softness hops --config {params.config} --trajectory {input.trajectory} --out {output} "
        "> {log} 2>&1"
