# Helpers shared by the rule files. Temperature labels, the resolved config handed to the
# command line, the config sections each product depends on, estimated resources, and the
# shell prefix through which every job calls `softness`.
import json
import math
import shlex
import sys
from pathlib import Path

import yaml

from softness import importer, systems
from softness.config import (import_mode, md_run_groups, one_run_section, run_time_fs, species_names,
                             training_temperature)

# ---------------------------------------------------------------------------- temperatures


def temperature_label(T):
    """The directory name of a temperature: results/T3000/, results/T2750.5/."""
    T = float(T)
    return str(int(T)) if T.is_integer() else repr(T)


TEMPERATURES = [temperature_label(T) for T in config["temperatures_K"]]
T_TRAIN = temperature_label(training_temperature(config))

# Import mode (config section `import`, softness.config.import_mode): the trajectories come from
# the user's files (workflow/rules/import.smk) instead of the quench and the MD runs, which the
# Snakefile then leaves out.
IMPORT_MODE = import_mode(config)

# ---------------------------------------------------------------------------- independent runs
# run.replicas_per_temperature independent runs at each temperature, numbered 0, 1, ...: run 0's
# products stay in results/T<T>/ (a study with one run is what it always was), run r >= 1's are in
# results/T<T>/run<r>/. The {run_dir} wildcard is that sub-directory with its slash, "" for run 0.
# Every per-temperature rule (md_run, features, hops, dynamics, apply) runs once per run; the
# Arrhenius analysis pools them all; training, the stability check, the planted-barrier test and
# the figures drawn from per-temperature files use run 0.


def run_dir(r):
    """The sub-directory of run ``r`` under results/T<T>/ (with its slash; "" for run 0)."""
    return "" if r == 0 else f"run{r}/"


def run_index(run_dir):
    """The index of the run whose sub-directory is ``run_dir`` ("" -> 0, "run2/" -> 2)."""
    return int(run_dir[len("run"):-1]) if run_dir else 0


N_RUNS = config["run"]["replicas_per_temperature"]
RUN_DIRS = [run_dir(r) for r in range(N_RUNS)]


def every_run(name):
    """The product ``name`` (e.g. "softness.h5") of every run at every temperature, run 0 first."""
    return [f"results/T{T}/{d}{name}" for T in TEMPERATURES for d in RUN_DIRS]


def md_groups(cfg):
    """{group name: temperature labels}: temperatures of equal run lengths, lowest first,
    execution.md_replicas_per_job at a time (softness.config.md_run_groups), once per run index
    (a group holds one run of each of its temperatures; run r >= 1's groups are named ..._run<r>);
    None for one job per temperature and run."""
    if cfg["execution"]["md_replicas_per_job"] == 1:
        return None
    groups = [[temperature_label(T) for T in g] for g in md_run_groups(cfg)]
    return {"T" + "_".join(g) + (f"_run{r}" if r else ""): g
            for r in range(cfg["run"]["replicas_per_temperature"]) for g in groups}


def group_run_index(group):
    """The run index of an MD group ("T3000_3100" -> 0, "T3000_3100_run2" -> 2)."""
    return int(group.rsplit("_run", 1)[1]) if "_run" in group else 0


MD_GROUPS = None if IMPORT_MODE else md_groups(config)
MD_GROUP_OF = {(T, run_dir(group_run_index(name))): name for name, g in (MD_GROUPS or {}).items() for T in g}

wildcard_constraints:
    T=r"[0-9]+(\.[0-9]+)?",
    run_dir=r"(run[1-9][0-9]*/)?",
    group=r"T[0-9._]+(_run[1-9][0-9]*)?",

# ---------------------------------------------------------------------------- the config

# The jobs read the fully resolved config (every default filled in) from this file. It is
# rewritten before each run, and only when its content changes. It is no job's input:
# which products a config change makes stale is decided by `science()` below, through
# Snakemake's params rerun trigger, so that e.g. adding a temperature leaves the other
# temperatures' products alone.
RESOLVED_CONFIG = "results/config.resolved.yaml"

# The quench keeps a snapshot (the start of a run) as it cools through each temperature. It
# is asked for one every QUENCH_SNAPSHOT_STEP_K between quench.T_min_K and quench.T_melt_K,
# besides those at temperatures_K, so that moving or adding a temperature on that grid needs
# no new quench (and so none of the other temperatures' runs are redone). The extra snapshots
# change nothing else: the cooling is the same whichever snapshots are kept. The quench alone
# reads this config, identical to the resolved one but for temperatures_K.
QUENCH_SNAPSHOT_STEP_K = 50.0
QUENCH_CONFIG = "results/config.quench.yaml"


def quench_config():
    q = config["quench"]
    first = math.ceil(q["T_min_K"] / QUENCH_SNAPSHOT_STEP_K) * QUENCH_SNAPSHOT_STEP_K
    grid = [first + k * QUENCH_SNAPSHOT_STEP_K
            for k in range(int((q["T_melt_K"] - first) // QUENCH_SNAPSHOT_STEP_K) + 1)]
    temperatures = sorted({float(t) for t in grid} | {float(t) for t in config["temperatures_K"]})
    # Run lengths given per temperature cover temperatures_K, not the snapshot grid: the quench
    # does not use them, so it gets the shortest as one number (the checks of the hops windows
    # against the run stay those of the study).
    run = {**config["run"], **{key: min(run_time_fs(config, key, T) for T in config["temperatures_K"])
                              for key in ("equilibration_time_fs", "production_time_fs")
                              if isinstance(config["run"][key], dict)}}
    return {**config, "temperatures_K": [int(t) if t.is_integer() else t for t in temperatures], "run": run}


def _write_if_changed(path, data):
    text = yaml.safe_dump(data, sort_keys=False)
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)


def write_resolved_config():
    _write_if_changed(RESOLVED_CONFIG, dict(config))
    if not IMPORT_MODE:
        _write_if_changed(QUENCH_CONFIG, quench_config())


def science(*keys, cfg=None):
    """The config sections a product depends on, as one canonical string.

    Passed as a rule parameter, so a change in any of them (and only in them) makes
    Snakemake rerun the rule and everything downstream.
    """
    cfg = config if cfg is None else cfg
    return json.dumps({k: cfg[k] for k in keys}, sort_keys=True)


def run_science(T):
    """science() of a run at temperature label T: the run section as that run sees it
    (softness.config.one_run_section), so that a run length given per temperature restales only
    that temperature's products, and the number of independent runs none of the runs made."""
    return science("seed", "precision", "system", "potential", "md", "run",
                   cfg={**config, "run": one_run_section(config, float(T))})


# ---------------------------------------------------------------------------- resources
# Rough estimates for schedulers (runtime in minutes, memory in MB); profiles override them
# per rule. The MD estimate assumes one CPU core (about 3e5 atom-steps per second for BKS
# silica at N ~ 650 with jax-md float32) with a safety factor of 3.

N_ATOMS = systems.of_config(config).n_atoms(config["system"])
_STEPS_QUENCH = (config["quench"]["melt_time_fs"]
                 + (config["quench"]["T_melt_K"] - config["quench"]["T_min_K"])
                 / config["quench"]["cooling_rate_K_per_ps"] * 1000.0) / config["md"]["timestep_fs"]


def run_steps(T):
    """MD steps of the run at temperature T (equilibration and production)."""
    return (run_time_fs(config, "equilibration_time_fs", T)
            + run_time_fs(config, "production_time_fs", T)) / config["md"]["timestep_fs"]


# Run lengths may depend on temperature: per-product memory is sized for the longest run.
N_FRAMES = int(max(run_time_fs(config, "production_time_fs", T) for T in config["temperatures_K"])
               // config["run"]["frame_interval_fs"]) + 1

# In import mode the number of atoms and frames is the files' and is not read before the jobs run:
# it is estimated from each file's size at a low number of bytes per atom and frame for its format
# (text ~30-70, float32 binary 12-24, XTC's compressed coordinates ~3-4), so that memory and run
# time are estimated high rather than low.
IMPORT_BYTES_PER_ATOM_FRAME = {"LAMMPSDUMP": 30, "EXTXYZ": 30, "GSD": 12, "TRR": 12, "DCD": 12, "NCDF": 12,
                               "H5MD": 12, "XTC": 3, "TNG": 3}
# Atom-frames `softness import` reads per second on one core (a low estimate; docs/benchmarks.md).
IMPORT_ATOM_FRAMES_PER_S = 2e5


def import_atom_frames(path):
    """Estimated atoms x frames of the trajectory file ``path`` (from its size and format)."""
    fmt = importer.guess_format(path, config["import"]["format"])
    return Path(path).stat().st_size / IMPORT_BYTES_PER_ATOM_FRAME.get(fmt, 3)


def import_runtime(path):
    """Runtime estimate (minutes) of importing ``path``, with a safety factor of 3."""
    return max(10, math.ceil(3 * import_atom_frames(path) / IMPORT_ATOM_FRAMES_PER_S / 60))


# Atoms x frames of the largest trajectory: what per-product memory is sized for.
if IMPORT_MODE:
    ATOM_FRAMES = max(import_atom_frames(p) for p in config["import"]["trajectories"].values())
else:
    ATOM_FRAMES = N_FRAMES * N_ATOMS

# ---------------------------------------------------------------------------- import mode
# The user's files are the import's inputs (a newer file reruns its import and what follows), by
# absolute path: relative paths in the config are taken from the working directory, and an absolute
# path is left alone when this workflow runs as a module with a prefix.

IMPORT = config["import"]
IMPORT_FILES = {temperature_label(T): str(Path(path).resolve()) for T, path in IMPORT["trajectories"].items()}


def import_inputs(wildcards):
    """The trajectory file of temperature label ``wildcards.T`` and the topology, if any."""
    files = {"trajectory": IMPORT_FILES[wildcards.T]}
    if IMPORT["topology"] is not None:
        files["topology"] = str(Path(IMPORT["topology"]).resolve())
    return files


def import_options():
    """The options of `softness import` that the `import` section sets, quoted for the shell."""
    options = ["--species", *(shlex.quote(f"{t}={name}") for t, name in IMPORT["species"].items())]
    if IMPORT["format"] is not None:
        options += ["--format", shlex.quote(IMPORT["format"])]
    if IMPORT["frame_interval_fs"] is not None:
        options += ["--frame-interval-fs", repr(float(IMPORT["frame_interval_fs"]))]
    if IMPORT["length_unit_A"] is not None:
        options += ["--length-unit-A", repr(float(IMPORT["length_unit_A"]))]
    if IMPORT["system"] is not None:
        options += ["--system", shlex.quote(IMPORT["system"])]
    if IMPORT["masses"]:
        options += ["--masses", *(shlex.quote(f"{name}={float(m)!r}") for name, m in IMPORT["masses"].items())]
    if IMPORT["topology"] is not None:
        options += ["--topology", shlex.quote(str(Path(IMPORT["topology"]).resolve()))]
    return " ".join(options)


# What an imported trajectory depends on besides its file (an input): the import settings but the
# trajectory files, so that adding or changing one temperature's file leaves the others alone.
IMPORT_SCIENCE = json.dumps({"import": {k: v for k, v in IMPORT.items() if k != "trajectories"}}, sort_keys=True)


def md_runtime(steps):
    return max(10, math.ceil(3 * steps * N_ATOMS / 3e5 / 60))


def run_runtime(labels):
    """Runtime estimate (minutes) of an MD job with the temperatures ``labels``: the sum of
    their runs' estimates, as on a CPU that runs replicas one after another."""
    return sum(md_runtime(run_steps(float(T))) for T in labels)


def frames_mb(values_per_atom, bytes_per_value=4):
    """Memory of one per-frame, per-atom product, in MB."""
    return math.ceil(ATOM_FRAMES * values_per_atom * bytes_per_value / 1e6)


# Per atom: radial functions for each neighbour species, angular ones for each unordered pair.
N_SPECIES = len(species_names(config))
N_FEATURES_ESTIMATE = (
    N_SPECIES * (1 + int((config["features"]["radial_r_max_A"] - config["features"]["radial_r_min_A"])
                         / config["features"]["radial_dr_A"]))
    + N_SPECIES * (N_SPECIES + 1) // 2 * len(config["features"]["angular"]))
QUENCH_RUNTIME = md_runtime(_STEPS_QUENCH)
TRAJECTORY_MB = frames_mb(6)
FEATURES_MB = frames_mb(N_FEATURES_ESTIMATE)

# ---------------------------------------------------------------------------- MD checkpoints


def md_checkpoint(path):
    """Where the MD stage keeps its checkpoint while it writes ``path``.

    The partial trajectory and the checkpoint are hidden files next to the declared
    output, never the output itself, so Snakemake does not delete them when a job is
    killed; the rerun passes --resume and continues from them.
    """
    path = Path(path)
    return str(path.with_name(f".{path.name}.checkpoint.h5"))


# ---------------------------------------------------------------------------- the shell


def _uses_conda():
    settings = getattr(workflow, "deployment_settings", None)
    methods = getattr(settings, "deployment_method", None) or ()
    return any(getattr(m, "name", str(m)).upper() == "CONDA" for m in methods)


def shell_prefix():
    """Prepended to every job's shell command.

    * `softness` is a shell function that runs the package's command line with the Python
      that runs Snakemake (or the rule's conda environment with --sdm conda), so the
      workflow runs without activating any environment;
    * the source tree is put on PYTHONPATH, so jobs and notebooks use exactly the code of
      this workflow;
    * (the command line sizes XLA's CPU thread pool from OMP_NUM_THREADS, which Snakemake
      sets to the rule's threads: softness.cli.set_up_xla)
    * on a GPU, XLA allocates memory as needed instead of grabbing most of it, so that
      several jobs can share one device.
    """
    basedir = shlex.quote(str(workflow.basedir))
    lines = [
        "set -euo pipefail",
        f'export PYTHONPATH={basedir}"${{PYTHONPATH:+:$PYTHONPATH}}"',
        "export XLA_PYTHON_CLIENT_PREALLOCATE=false",
    ]
    if _uses_conda():
        lines.append('softness() { python -m softness "$@"; }')
    else:
        bindir = shlex.quote(str(Path(sys.executable).parent))
        python = shlex.quote(sys.executable)
        # The notebook directive calls `jupyter-nbconvert` from PATH.
        lines.append(f'export PATH={bindir}:"$PATH"')
        lines.append(f'softness() {{ {python} -m softness "$@"; }}')
    # shell.prefix() formats its argument like a shell command, so braces are doubled.
    return "; ".join(lines).replace("{", "{{").replace("}", "}}") + "; "


shell.prefix(shell_prefix())


onstart:
    write_resolved_config()
