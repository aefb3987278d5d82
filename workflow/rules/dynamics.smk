# MSD, diffusion constant, self-intermediate scattering function and tau_alpha per species.


rule dynamics:
    input:
        trajectory="results/T{T}/{run_dir}trajectory.h5",
    output:
        "results/T{T}/{run_dir}dynamics.h5",
    log:
        "results/logs/T{T}/{run_dir}dynamics.log",
    benchmark:
        "results/benchmarks/T{T}/{run_dir}dynamics.tsv"
    params:
        config=RESOLVED_CONFIG,
        science=science("dynamics"),
    threads: 1
    resources:
        mem_mb=1000 + 4 * TRAJECTORY_MB,
        runtime=20,
    conda:
        "../../environment.yml"
    shell:
        "softness dynamics --config {params.config} --trajectory {input.trajectory} --out {output} "
        "> {log} 2>&1"
