# The planted-barrier test: rearrangements drawn from a known barrier along the model's normal,
# on the real features and temperatures, through the unchanged train / apply / arrhenius code.
# Planted against recovered e1, Sigma1 and 1/T0 is the pipeline's own bias. It uses run 0 at each
# temperature (the events are planted, so more runs would add nothing but time).


rule planted:
    input:
        features=expand("results/T{T}/features.h5", T=TEMPERATURES),
        dynamics=expand("results/T{T}/dynamics.h5", T=TEMPERATURES),
        model="results/model.h5",
    output:
        planted="results/planted.h5",
        summary="results/planted.json",
    log:
        "results/logs/planted.log",
    benchmark:
        "results/benchmarks/planted.tsv"
    params:
        config=RESOLVED_CONFIG,
        science=science("seed", "train", "hops", "arrhenius", "planted"),
    threads: 1
    resources:
        mem_mb=2000 + FEATURES_MB,
        runtime=60,
    conda:
        "../../environment.yml"
    shell:
        "softness planted --config {params.config} --features {input.features} --dynamics {input.dynamics} "
        "--model {input.model} --out {output.planted} --summary {output.summary} > {log} 2>&1"
