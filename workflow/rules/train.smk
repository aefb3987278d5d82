# The linear-SVM softness model, trained at train.T_train_K (default: the lowest temperature),
# and the hyperplane-stability check: the same model retrained at train.stability_T_K (default:
# the temperature nearest the geometric middle of the study) and compared with it. Both use run 0 at
# their temperature (results/T<T>/); the other independent runs (run.replicas_per_temperature) enter
# the Arrhenius analysis only.
import json

from snakemake.exceptions import WorkflowError

from softness.classifier import stability_temperature
from softness.errors import SoftnessError

try:
    T_STABILITY = temperature_label(stability_temperature(config))
except SoftnessError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

# What the model depends on: the seed and the train section, less the stability check's
# temperature (changing it reruns the check, not the training).
TRAIN_SCIENCE = json.dumps({"seed": config["seed"],
                            "train": {k: v for k, v in config["train"].items() if k != "stability_T_K"}},
                           sort_keys=True)


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
        science=TRAIN_SCIENCE,
    threads: 1
    resources:
        mem_mb=2000 + FEATURES_MB,
        runtime=30,
    conda:
        "../../environment.yml"
    shell:
        "softness train --config {params.config} --features {input.features} --hops {input.hops} "
        "--out {output} > {log} 2>&1"


rule stability:
    input:
        model="results/model.h5",
        features=f"results/T{T_STABILITY}/features.h5",
        hops=f"results/T{T_STABILITY}/hops.h5",
        train_features=f"results/T{T_TRAIN}/features.h5",
    output:
        "results/stability.h5",
    log:
        "results/logs/stability.log",
    benchmark:
        "results/benchmarks/stability.tsv"
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
        "softness stability --config {params.config} --model {input.model} --features {input.features} "
        "--hops {input.hops} --train-features {input.train_features} --out {output} > {log} 2>&1"
