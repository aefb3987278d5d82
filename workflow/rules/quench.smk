# Melt at quench.T_melt_K and cool linearly to quench.T_min_K, keeping a snapshot at each
# temperature of the study and every 50 K in between (the starting points of the runs; see
# quench_config() in common.smk). Resumable: a killed job leaves a checkpoint next to the
# output, and the rerun continues from it (appending to the log).


rule quench:
    output:
        "results/quench/quench.h5",
    log:
        "results/logs/quench.log",
    benchmark:
        "results/benchmarks/quench.tsv"
    params:
        config=QUENCH_CONFIG,
        resume_from=lambda wildcards, output: md_checkpoint(output[0]),
        science=science("seed", "precision", "temperatures_K", "system", "potential", "md", "quench",
                        cfg=quench_config()),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=QUENCH_RUNTIME,
    conda:
        "../../environment.yml"
    shell:
        "resume=; if [ -e {params.resume_from} ]; then resume=--resume; echo resuming from {params.resume_from} >> {log}; "
        "else : > {log}; fi; "
        "softness quench --config {params.config} --out {output} $resume >> {log} 2>&1"
