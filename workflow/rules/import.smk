# Import mode (config section `import`): each temperature's trajectory is the user's own file
# (LAMMPS dump, GSD, XTC/TRR with a topology, extended XYZ, H5MD), written as our H5MD trajectory
# with unwrapped paths by `softness import`, in place of the quench and the MD run (the Snakefile
# includes this file instead of quench.smk and md_run.smk). Everything downstream reads
# results/T<T>/trajectory.h5 as it reads an MD product. The inputs, options and rerun trigger are
# made in common.smk ("import mode").
import re


rule import_trajectory:
    input:
        unpack(import_inputs),
    output:
        "results/T{T}/trajectory.h5",
    log:
        "results/logs/T{T}/import_trajectory.log",
    benchmark:
        "results/benchmarks/T{T}/import_trajectory.tsv"
    wildcard_constraints:
        T="|".join(re.escape(T) for T in TEMPERATURES),
    params:
        config=RESOLVED_CONFIG,
        options=import_options(),
        science=IMPORT_SCIENCE,
    threads: 1
    resources:
        mem_mb=2000,  # softness import streams the frames in chunks
        runtime=lambda wildcards: import_runtime(IMPORT_FILES[wildcards.T]),
    conda:
        "../../environment.yml"
    shell:
        "softness import {input.trajectory:q} --config {params.config} --out {output} "
        "--temperature {wildcards.T} {params.options} > {log} 2>&1"
