# Strong and fragile side by side: several studies (each one run of the whole DAG of the top-level
# Snakefile, e.g. BKS silica and the Kob-Andersen liquid) in one DAG, and one figure that compares
# them (`softness compare`, softness/compare.py).
#
#   snakemake -s workflow/compare.smk --cores 2 --configfile config/strong_and_fragile.yaml
#   snakemake -s workflow/compare.smk --cores 2 --configfile tests/strong_and_fragile_ci.yaml  (tiny)
#
# The study config lists the studies as {name: [config files]}: each study's config is
# config/config.yaml with its files merged on top, in order, exactly as
# `snakemake --configfile FILE ...` merges them (a deep merge; relative paths are relative to the
# repository). Study NAME runs the top-level Snakefile as a Snakemake module with the prefix
# studies/NAME/, so its products are those of a plain run under studies/NAME/results/ and its
# rules are called NAME_<rule> (NAME_md_run, NAME_arrhenius ...). The comparison lands in
# studies/figures/strong_vs_fragile.{png,pdf,json}.
#
# What a module does not do by itself is done here (see "the studies as modules" below):
# * a module prefixes the rules' input, output, log and benchmark paths but not their params, so
#   the params that name a file under results/ (the resolved config every job reads, the MD
#   group's work files) are given the study's prefix;
# * a module's onstart handler does not run, so what the Snakefile's does (write the resolved
#   config the jobs read, common.smk's write_resolved_config) is done here for each study, inside
#   the study's directory;
# * workflow.basedir is this file's directory, so the repository is put on PYTHONPATH here, and
#   the report gets its own description (a module's would be rendered with this file's config).
# The studies' figures, logs, benchmarks and per-rule report captions work unchanged. Per-rule
# settings of a profile (profiles/slurm*: set-resources md_run ...) name the plain rules; here the
# rules are NAME_md_run ..., so their own resource estimates apply.
import contextlib
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir).resolve().parent
COMPARISON = "studies/figures/strong_vs_fragile"


include: "compare_common.smk"


if "studies" not in config:

    configfile: REPO / "config" / "strong_and_fragile.yaml"


# Jobs run `python -m softness` and the notebooks import softness: put this source tree first on
# their path (the top-level Snakefile does so for a plain run, from its own directory, which for a
# module is the directory of this file).
os.environ.update(PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))

if not isinstance(config.get("studies"), dict) or len(config["studies"]) < 1:
    raise WorkflowError("the study config must list the studies as 'studies: {name: [config files]}'.")
STUDIES = {str(name): study_config(REPO, name, files) for name, files in config["studies"].items()}
COMPARE = {"tau_ref_fs": None, **(config.get("compare") or {})}


report: "report/strong_and_fragile.rst"


# ---------------------------------------------------------------------------- the studies as modules
# For each study, what
#     module NAME:
#         snakefile: "../Snakefile"
#         config: CONFIG
#         prefix: "studies/NAME"
#     use rule * from NAME as NAME_*
# compiles to, in a loop over the names (Snakemake 8 has no module names from variables).
# The study's module (its globals) afterwards is the global of this file named after it.
MODULES = {}
for STUDY, STUDY_CONFIG in STUDIES.items():
    before = {rule.name for rule in workflow.rules}
    workflow.module(STUDY, snakefile=str(REPO / "Snakefile"), config=STUDY_CONFIG, prefix=f"studies/{STUDY}")
    workflow.userule(rules=["*"], from_module=STUDY, name_modifier=f"{STUDY}_*")(lambda: None)
    prefix_params([rule for rule in workflow.rules if rule.name not in before], f"studies/{STUDY}/")
    MODULES[STUDY] = check_module(workflow.globals[STUDY])


# What the Snakefile's own onstart does (a module's onstart does not run), for each study in its
# directory: write the resolved config (and the quench's) that its jobs read.
onstart:
    for name, module in MODULES.items():
        Path(f"studies/{name}").mkdir(parents=True, exist_ok=True)
        with contextlib.chdir(f"studies/{name}"):
            module.write_resolved_config()

# ---------------------------------------------------------------------------- the comparison


rule all:
    default_target: True
    input:
        [getattr(rules, f"{name}_all").input for name in STUDIES],
        expand(f"{COMPARISON}.{{ext}}", ext=["png", "pdf", "json"]),


rule compare:
    input:
        dynamics=[getattr(rules, f"{name}_arrhenius").input.dynamics for name in STUDIES],
        arrhenius=[getattr(rules, f"{name}_arrhenius").output.arrhenius for name in STUDIES],
        summary=[getattr(rules, f"{name}_arrhenius").output.summary for name in STUDIES],
    output:
        png=report(f"{COMPARISON}.png", caption="report/strong_vs_fragile.rst", category="0. Side by side"),
        pdf=f"{COMPARISON}.pdf",
        json=f"{COMPARISON}.json",
    log:
        "studies/logs/compare.log",
    benchmark:
        "studies/benchmarks/compare.tsv"
    params:
        studies=" ".join(f"--study {name}=studies/{name}/results" for name in STUDIES),
        tau_ref=("" if COMPARE["tau_ref_fs"] is None else f"--tau-ref-fs {float(COMPARE['tau_ref_fs'])!r}"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    shell:
        "softness compare {params.studies} {params.tau_ref} --out {output.png} {output.pdf} "
        "--json {output.json} > {log} 2>&1"
