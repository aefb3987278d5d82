# Helpers of workflow/compare.smk (the studies' configs, and the params a module leaves unprefixed).
import builtins
import functools
import keyword
import re

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

from softness.config import replace_run_length_mappings, resolve
from softness.errors import SoftnessError

STUDY_NAME = re.compile(r"[a-z][a-z0-9_]*")
# A study's module becomes a global of compare.smk under the study's name: no name in use there.
RESERVED = set(globals()) | set(dir(builtins)) | {"compare", "all", "before", "study_config", "prefixed",
                                                  "prefix_params", "check_module"}


def study_config(repo, name, files):
    """config/config.yaml with ``files`` (relative to ``repo``) deep-merged on top, in order, as
    `snakemake --configfile` merges them (run lengths per temperature taken whole, as the
    Snakefile does), and resolved; one sentence naming the study otherwise."""
    if not STUDY_NAME.fullmatch(str(name)) or keyword.iskeyword(name) or name in RESERVED:
        raise WorkflowError(f"study name {name!r} in 'studies' must be a lower-case letter followed by "
                            "lower-case letters, digits or underscores, and no name this workflow uses (it "
                            "names the study's rules, directory and module).")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list):
        raise WorkflowError(f"study {name}: 'studies.{name}' must list config files, not {files!r}.")
    cfg = {}
    for path in ["config/config.yaml", *files]:
        path = repo / path
        if not path.is_file():
            raise WorkflowError(f"study {name}: config file {path} does not exist.")
        override = yaml.safe_load(path.read_text()) or {}
        update_config(cfg, override)
        replace_run_length_mappings(cfg, override)
    try:
        return resolve(cfg)
    except SoftnessError as exc:
        raise WorkflowError(f"study {name}: invalid config: {exc}") from None


def prefixed(value, prefix):
    """``value`` (a param of a study's rule) with every word that is a path under results/ put
    under ``prefix``; a callable param is wrapped (same signature) so that its result is."""
    if callable(value):
        @functools.wraps(value)
        def wrapper(*args, **kwargs):
            return prefixed(value(*args, **kwargs), prefix)

        return wrapper
    if isinstance(value, str):
        return " ".join(prefix + w if w.startswith("results/") else w for w in value.split(" "))
    return value


def prefix_params(rules, prefix):
    """Put the params of ``rules`` (Rule objects) that name files under results/ under ``prefix`` (in place)."""
    for each in rules:
        params = each.params
        for i, value in enumerate(params):
            params[i] = prefixed(value, prefix)
        for key, (start, end) in params._names.items():
            if end is None:
                setattr(params, key, params[start])


def check_module(module):
    """The study's module has what compare.smk runs at the start (common.smk's write_resolved_config)."""
    if not callable(getattr(module, "write_resolved_config", None)):
        raise WorkflowError("the Snakefile's rules no longer define write_resolved_config() (common.smk), "
                            "which workflow/compare.smk runs for each study; update both together.")
    return module
