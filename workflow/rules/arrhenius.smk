# P_R(S, T) per softness bin, its Arrhenius fits, DeltaE(S), Sigma(S), <S>(T) and the
# strong-to-fragile crossover, from every temperature at once: every independent run of a
# temperature (run.replicas_per_temperature), pooled by softness.arrhenius.


rule arrhenius:
    input:
        softness=every_run("softness.h5"),
        hops=every_run("hops.h5"),
        dynamics=every_run("dynamics.h5"),
        model="results/model.h5",
        stability="results/stability.h5",
    output:
        arrhenius="results/arrhenius.h5",
        summary="results/summary.json",
        summary_table="results/summary.md",  # written next to the JSON by the same command
    log:
        "results/logs/arrhenius.log",
    benchmark:
        "results/benchmarks/arrhenius.tsv"
    params:
        config=RESOLVED_CONFIG,
        science=science("seed", "arrhenius"),
    threads: 1
    resources:
        mem_mb=1000 + 3 * len(TEMPERATURES) * N_RUNS * frames_mb(1),
        runtime=30,
    conda:
        "../../environment.yml"
    shell:
        "softness arrhenius --config {params.config} --softness {input.softness} --hops {input.hops} "
        "--dynamics {input.dynamics} --model {input.model} --stability {input.stability} "
        "--out {output.arrhenius} --summary {output.summary} > {log} 2>&1"
