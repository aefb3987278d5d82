# P_R(S, T) per softness bin, its Arrhenius fits, DeltaE(S), Sigma(S), <S>(T) and the
# strong-to-fragile crossover, from every temperature at once.


rule arrhenius:
    input:
        softness=expand("results/T{T}/softness.h5", T=TEMPERATURES),
        hops=expand("results/T{T}/hops.h5", T=TEMPERATURES),
        dynamics=expand("results/T{T}/dynamics.h5", T=TEMPERATURES),
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
        mem_mb=1000 + 3 * len(TEMPERATURES) * frames_mb(1),
        runtime=30,
    conda:
        "../../environment.yml"
    shell:
        "softness arrhenius --config {params.config} --softness {input.softness} --hops {input.hops} "
        "--dynamics {input.dynamics} --model {input.model} --stability {input.stability} "
        "--out {output.arrhenius} --summary {output.summary} > {log} 2>&1"
