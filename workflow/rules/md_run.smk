# NVT equilibration and production at each temperature, from the quench snapshot at that
# temperature. Resumable like the quench: rerunning after a kill (e.g. a cluster's wall
# time) continues from the checkpoint instead of starting over.
#
# execution.md_replicas_per_job > 1 packs consecutive temperatures (of equal run lengths: replicas
# advance together) into one job that runs them as replicas of one program (md_run_group, worth
# it on a GPU); each temperature still gets its own product (md_run_member gives it its place, a
# hard link) and keeps its partial trajectory and checkpoint next to that product, so a run
# resumes whether it ran alone or in a group.
#
# With run.replicas_per_temperature > 1 each temperature has that many independent runs (run 0 in
# results/T<T>/, run r in results/T<T>/run<r>/: the {run_dir} wildcard, common.smk); a group packs
# one run index of several temperatures (softness run --run-index).

if MD_GROUPS is None:

    rule md_run:
        input:
            start="results/quench/quench.h5",
        output:
            "results/T{T}/{run_dir}trajectory.h5",
        log:
            "results/logs/T{T}/{run_dir}md_run.log",
        benchmark:
            "results/benchmarks/T{T}/{run_dir}md_run.tsv"
        params:
            config=RESOLVED_CONFIG,
            resume_from=lambda wildcards, output: md_checkpoint(output[0]),
            run_index=lambda wildcards: run_index(wildcards.run_dir),
            science=lambda wildcards: run_science(wildcards.T),
        threads: 1
        resources:
            mem_mb=2000 + 2 * TRAJECTORY_MB,
            runtime=lambda wildcards: run_runtime([wildcards.T]),
        conda:
            "../../environment.yml"
        shell:
            "resume=; if [ -e {params.resume_from} ]; then resume=--resume; "
            "echo resuming from {params.resume_from} >> {log}; else : > {log}; fi; "
            "softness run --config {params.config} --start {input.start} --temperature {wildcards.T} "
            "--out {output} --run-index {params.run_index} $resume >> {log} 2>&1"

else:

    rule md_run_group:
        input:
            start="results/quench/quench.h5",
        output:
            directory("results/md_groups/{group}"),
        log:
            "results/logs/md_groups/{group}.log",
        benchmark:
            "results/benchmarks/md_groups/{group}.tsv"
        params:
            config=RESOLVED_CONFIG,
            temperatures=lambda wildcards: " ".join(MD_GROUPS[wildcards.group]),
            outs=lambda wildcards, output: " ".join(
                f"{output[0]}/T{T}.h5" for T in MD_GROUPS[wildcards.group]),
            work=lambda wildcards: " ".join(
                f"results/T{T}/{run_dir(group_run_index(wildcards.group))}trajectory.h5"
                for T in MD_GROUPS[wildcards.group]),
            checkpoints=lambda wildcards: " ".join(
                md_checkpoint(f"results/T{T}/{run_dir(group_run_index(wildcards.group))}trajectory.h5")
                for T in MD_GROUPS[wildcards.group]),
            run_index=lambda wildcards: group_run_index(wildcards.group),
            # (the members of a group have equal run lengths, hence one run section)
            science=lambda wildcards: run_science(MD_GROUPS[wildcards.group][0]),
        threads: 1
        resources:
            mem_mb=lambda wildcards: 2000 + 2 * TRAJECTORY_MB * len(MD_GROUPS[wildcards.group]),
            runtime=lambda wildcards: run_runtime(MD_GROUPS[wildcards.group]),
        conda:
            "../../environment.yml"
        shell:
            # --keep-going: a temperature that fails leaves T<T>.h5.failed, which its
            # md_run_member reports, and the others' products stand.
            "mkdir -p {output}; resume=; for c in {params.checkpoints}; do if [ -e $c ]; then "
            "resume=--resume; fi; done; if [ -n \"$resume\" ]; then "
            "echo resuming from {params.checkpoints} >> {log}; else : > {log}; fi; "
            "softness run --config {params.config} --start {input.start} --temperature {params.temperatures} "
            "--out {params.outs} --work {params.work} --keep-going --run-index {params.run_index} $resume "
            ">> {log} 2>&1"

    rule md_run_member:
        input:
            lambda wildcards: f"results/md_groups/{MD_GROUP_OF[(wildcards.T, wildcards.run_dir)]}",
        output:
            "results/T{T}/{run_dir}trajectory.h5",
        log:
            "results/logs/T{T}/{run_dir}md_run.log",
        localrule: True
        run:
            from softness.md import take_group_product

            try:
                take_group_product(f"{input[0]}/T{wildcards.T}.h5", output[0])
            except SoftnessError as exc:
                Path(log[0]).write_text(f"softness run: error: {exc}\n")
                raise WorkflowError(f"the run at {wildcards.T} K failed: {exc}") from None
            Path(log[0]).write_text(f"{output[0]}: the run at {wildcards.T} K of {input[0]}\n")
