# NVT equilibration and production at one temperature, from the quench snapshot at that
# temperature. Resumable like the quench: rerunning after a kill (e.g. a cluster's wall
# time) continues from the checkpoint instead of starting over.


rule md_run:
    input:
        start="results/quench/quench.h5",
    output:
        "results/T{T}/trajectory.h5",
    log:
        "results/logs/T{T}/md_run.log",
    benchmark:
        "results/benchmarks/T{T}/md_run.tsv"
    params:
        config=RESOLVED_CONFIG,
        resume_from=lambda wildcards, output: md_checkpoint(output[0]),
        science=science("seed", "precision", "system", "potential", "md", "run"),
    threads: 1
    resources:
        mem_mb=2000 + 2 * TRAJECTORY_MB,
        runtime=RUN_RUNTIME,
    conda:
        "../../environment.yml"
    shell:
        "resume=; if [ -e {params.resume_from} ]; then resume=--resume; echo resuming from {params.resume_from} >> {log}; "
        "else : > {log}; fi; "
        "softness run --config {params.config} --start {input.start} --temperature {wildcards.T} "
        "--out {output} $resume >> {log} 2>&1"
