# glass-softness: from nothing to the figures of the strong-to-fragile crossover of liquid
# silica, as one DAG (see README.md; every config key is explained in config/README.md).
#
#   snakemake --cores 2                                     default study on a laptop
#   snakemake --cores 2 --configfile config/test.yaml       tiny run (CI)
#   snakemake --workflow-profile profiles/slurm-gpu --configfile config/paper.yaml
#                                                           paper-scale protocol on a cluster
#   snakemake --report report.html                          every figure with its caption
#
# With the config section `import` set (your own trajectories, one per temperature; config/README.md)
# the DAG starts from those files (workflow/rules/import.smk) instead of the quench and the MD runs.
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from softness.config import check_import_files, import_mode, replace_run_length_mappings, resolve
from softness.errors import SoftnessError

configfile: Path(workflow.basedir) / "config" / "config.yaml"


# Snakemake merged the command line's --configfile files and --config on top of that key by key;
# a mapping of run lengths per temperature given there replaces the default study's whole.
for override in [*(yaml.safe_load(Path(f).read_text()) for f in workflow.config_settings.configfiles),
                 dict(workflow.config_settings.config)]:
    replace_run_length_mappings(config, override)


# Fill every default from the schema and validate, so a broken config stops here, before any
# job runs, with one sentence naming the key (command-line --configfile / --config included); in
# import mode also the user's trajectory files (they exist and their format is known).
try:
    config.update(resolve(config))
    check_import_files(config)
except SoftnessError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


if import_mode(config):

    include: "workflow/rules/import.smk"

else:

    include: "workflow/rules/quench.smk"
    include: "workflow/rules/md_run.smk"


include: "workflow/rules/features.smk"
include: "workflow/rules/hops.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/apply.smk"
include: "workflow/rules/arrhenius.smk"
include: "workflow/rules/planted.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        FIGURE_FILES,
        "results/arrhenius.h5",
        "results/stability.h5",
        "results/planted.h5",
        "results/summary.json",
        "results/summary.md",
