"""The config: load, fill defaults from the JSON schema, validate.

The schema (``softness/config.schema.yaml``, also reached as
``workflow/schemas/config.schema.yaml``) is the single source of truth for every key,
its type, its bounds and its default. :func:`resolve` returns a complete config; a
bad one raises :class:`~softness.errors.SoftnessError` with one sentence naming the key.
"""

from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import yaml

from softness import systems
from softness.errors import SoftnessError


@functools.cache
def schema() -> dict:
    """The config schema as a dict."""
    text = resources.files("softness").joinpath("config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(sch: dict, instance) -> None:
    """Fill missing keys from ``default`` entries, recursing into objects."""
    if not isinstance(instance, dict):
        return
    for key, sub in sch.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key])


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


#: Keys that are gone, with why: an old config that still sets one is told so in one sentence.
REMOVED_KEYS = {
    "arrhenius.T_split_K": "tau_alpha(T) is no longer an Arrhenius and a VFT law split at a given "
                           "temperature but one continuous fit whose crossover temperature T_x is fitted, "
                           "with its error",
}


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key_path(error)
        full = [f"{where}.{k}" if where != "(top level)" else k for k in extra]
        removed = [k for k in full if k in REMOVED_KEYS]
        if removed:
            why = REMOVED_KEYS[removed[0]]
            return f"config key '{removed[0]}' has been removed ({why}); delete it from the config"
        return f"unknown config key '{', '.join(full)}'"
    if error.validator == "oneOf" and list(error.absolute_path)[-1:] in ([k] for k in RUN_LENGTH_KEYS):
        # a number, or a mapping of temperatures to numbers: say both instead of "not valid under any"
        number = error.schema["oneOf"][0]
        bound = "> 0" if "exclusiveMinimum" in number else ">= 0"
        return (f"config key '{_key_path(error)}' must be a time in fs ({bound}) or a non-empty mapping from "
                f"temperature (K) to such times, not {error.instance!r}")
    return f"config key '{_key_path(error)}': {error.message}"


# ---------------------------------------------------------------------------- cross-key rules
# Each key can be valid on its own while two of them contradict each other; such a config
# would pass the schema, start the DAG and fail only in a later stage (after all the MD).
# Every rule below returns None, or one sentence naming both keys. The arithmetic mirrors
# what the stages do (softness/md.py run_plan / quench_plan, softness/hops.py,
# softness/structure.py, softness/classifier.py), so that a config passing here does not fail
# there for the same reason.


def _g(x) -> str:
    return f"{x:g}"


def _whole_steps(time_fs: float, timestep_fs: float) -> int | None:
    """Steps in ``time_fs`` when it is a whole, positive number of steps (md.steps_for), else None."""
    n = time_fs / timestep_fs
    k = int(round(n))
    return k if k >= 1 and abs(n - k) <= 1e-6 * max(1.0, n) else None


def _shortest_production(cfg: dict) -> tuple[float, float | None]:
    """(time in fs, temperature) of the shortest production of the study; the temperature is None
    when ``run.production_time_fs`` is one number for all."""
    prod = cfg["run"]["production_time_fs"]
    if not isinstance(prod, dict):
        return float(prod), None
    T = min(cfg["temperatures_K"], key=lambda t: (run_time_fs(cfg, "production_time_fs", t), t))
    return run_time_fs(cfg, "production_time_fs", T), float(T)


def _production_text(cfg: dict) -> str:
    """The shortest production for a message: '4000 fs', or '4000 fs at 3500 K' for a mapping."""
    time, T = _shortest_production(cfg)
    return f"{_g(time)} fs" if T is None else f"{_g(time)} fs at {_g(T)} K"


def _production_frames(cfg: dict) -> int:
    """Frames of the shortest run's trajectory, as softness.md.run_plan counts them."""
    r, dt = cfg["run"], cfg["md"]["timestep_fs"]
    every = _whole_steps(r["frame_interval_fs"], dt)
    n_prod = int(round(_shortest_production(cfg)[0] / dt))
    n_prod = max(every, n_prod - n_prod % every)
    return n_prod // every + 1


def _half_window(window_fs: float, frame_fs: float) -> int:
    """Frames in half a window, as softness.hops.half_window_frames rounds it."""
    return int(round(window_fs / (2.0 * frame_fs)))


def initial_box_edges(system: dict) -> np.ndarray:
    """The three edges (A) of the box the quench starts in, from the config's ``system`` section.

    The same box the system builds (``softness.systems.<name>.initial_box``), without placing
    any atom.
    """
    return systems.get(system.get("name", "silica")).initial_box(system)


def _sample_text(cfg) -> str:
    """The system keys that set the box, with their values, for messages."""
    s, system = cfg["system"], systems.of_config(cfg)
    return " and ".join(f"'system.{k}' ({_g(s[k])})" for k in system.CONFIG_KEYS if k != "initial_structure")


def _initial_structure(cfg):
    return systems.of_config(cfg).initial_problem(cfg["system"])


def _potential_cutoff_vs_box(cfg):
    system = systems.of_config(cfg)
    if system.initial_problem(cfg["system"]):
        return None
    edge = float(initial_box_edges(cfg["system"]).min())
    cut = system.cutoff_A(cfg["potential"])
    if edge < 2 * cut:
        which = (f"config key 'potential.cutoff_A' ({_g(cut)} A)" if "cutoff_A" in system.POTENTIAL_KEYS
                 else f"the potential cutoff ({_g(cut)} A)")
        return (f"{which} is more than half the box edge {edge:.2f} A that {_sample_text(cfg)} give: the box "
                "must be at least twice the potential cutoff.")


def _features_cutoff_vs_box(cfg):
    if systems.of_config(cfg).initial_problem(cfg["system"]):
        return None
    edge = float(initial_box_edges(cfg["system"]).min())
    cut = cfg["features"]["cutoff_A"]
    if edge < 2 * cut:
        return (f"config key 'features.cutoff_A' ({_g(cut)} A) is more than half the box edge "
                f"{edge:.2f} A that {_sample_text(cfg)} give: the box must be at least twice the "
                "structure-function cutoff.")


def _radial_grid(cfg):
    f = cfg["features"]
    if f["radial_r_max_A"] <= f["radial_r_min_A"]:
        return (f"config key 'features.radial_r_max_A' ({_g(f['radial_r_max_A'])} A) must exceed "
                f"'features.radial_r_min_A' ({_g(f['radial_r_min_A'])} A).")


def _radial_vs_cutoff(cfg):
    f = cfg["features"]
    # The last centre on the grid, as StructureGrid.from_config places it.
    n = int(math.floor((f["radial_r_max_A"] - f["radial_r_min_A"]) / f["radial_dr_A"] + 1e-6)) + 1
    last = round(f["radial_r_min_A"] + f["radial_dr_A"] * (n - 1), 10)
    if last > f["cutoff_A"]:
        return (f"config key 'features.radial_r_max_A' ({_g(f['radial_r_max_A'])} A) puts a radial centre "
                f"at {_g(last)} A, beyond 'features.cutoff_A' ({_g(f['cutoff_A'])} A).")


def _quench_temperatures(cfg):
    q, temps = cfg["quench"], cfg["temperatures_K"]
    if q["T_min_K"] > min(temps):
        return (f"config key 'quench.T_min_K' ({_g(q['T_min_K'])} K) is above the lowest of "
                f"'temperatures_K' ({_g(min(temps))} K); the quench must reach every temperature.")


def _melt_temperatures(cfg):
    q, temps = cfg["quench"], cfg["temperatures_K"]
    if max(temps) > q["T_melt_K"]:
        return (f"config key 'temperatures_K' includes {_g(max(temps))} K, above 'quench.T_melt_K' "
                f"({_g(q['T_melt_K'])} K); the quench cannot pass it.")


def _training_temperature(cfg):
    t = cfg["train"]["T_train_K"]
    if t is not None and t not in cfg["temperatures_K"]:
        return (f"config key 'train.T_train_K' ({_g(t)} K) is not one of 'temperatures_K' "
                f"{cfg['temperatures_K']}.")


def _stability_temperature(cfg):
    t = cfg["train"].get("stability_T_K")
    if t is not None and t not in cfg["temperatures_K"]:
        return (f"config key 'train.stability_T_K' ({_g(t)} K) is not one of 'temperatures_K' "
                f"{cfg['temperatures_K']}.")


def _quench_frames_vs_timestep(cfg):
    fi, dt = cfg["quench"]["frame_interval_fs"], cfg["md"]["timestep_fs"]
    if _whole_steps(fi, dt) is None:
        return (f"config key 'quench.frame_interval_fs' ({_g(fi)} fs) is not a whole, positive number of "
                f"'md.timestep_fs' ({_g(dt)} fs) steps.")


def _planted_bounds(cfg):
    lo, hi = cfg["planted"]["P_min"], cfg["planted"]["P_max"]
    if not lo < hi:
        return f"config key 'planted.P_min' ({_g(lo)}) must be below 'planted.P_max' ({_g(hi)})."


def _run_frames_vs_timestep(cfg):
    fi, dt = cfg["run"]["frame_interval_fs"], cfg["md"]["timestep_fs"]
    if _whole_steps(fi, dt) is None:
        return (f"config key 'run.frame_interval_fs' ({_g(fi)} fs) is not a whole, positive number of "
                f"'md.timestep_fs' ({_g(dt)} fs) steps.")


def _checkpoint_vs_chunk(cfg):
    md = cfg["md"]
    if md["checkpoint_every_steps"] < md["chunk_steps"]:
        return (f"config key 'md.checkpoint_every_steps' ({md['checkpoint_every_steps']}) is shorter than "
                f"'md.chunk_steps' ({md['chunk_steps']}); checkpoints are written only between chunks.")


def _replicas_vs_quench(cfg):
    k = cfg["execution"]["md_replicas_per_job"]
    if k > 1 and cfg["quench"]["ensemble"] != "nvt":
        return (f"config key 'execution.md_replicas_per_job' ({k}) needs one box for every temperature, but "
                f"'quench.ensemble' is {cfg['quench']['ensemble']!r} (each snapshot has its own box); use 1.")


def _t_R_vs_frames(cfg):
    t_R, fi = cfg["hops"]["t_R_fs"], cfg["run"]["frame_interval_fs"]
    if _half_window(t_R, fi) < 1:
        return (f"config key 'hops.t_R_fs' ({_g(t_R)} fs) is shorter than two of 'run.frame_interval_fs' "
                f"({_g(fi)} fs); the p_hop window must span at least two frames.")


def _P_R_window_vs_frames(cfg):
    window, fi = cfg["arrhenius"]["P_R_window_fs"], cfg["run"]["frame_interval_fs"]
    if window < fi * (1 - 1e-9):
        return (f"config key 'arrhenius.P_R_window_fs' ({_g(window)} fs) is shorter than "
                f"'run.frame_interval_fs' ({_g(fi)} fs); the window must span at least one frame.")


def _t_R_vs_production(cfg):
    t_R, fi = cfg["hops"]["t_R_fs"], cfg["run"]["frame_interval_fs"]
    n, h = _production_frames(cfg), _half_window(t_R, fi)
    if n < 2 * h:
        return (f"config key 'hops.t_R_fs' ({_g(t_R)} fs, {2 * h} frames) is longer than the run: "
                f"'run.production_time_fs' ({_production_text(cfg)}) gives {n} frames.")


def _t_quiet_vs_frames(cfg):
    tq, fi = cfg["hops"]["t_quiet_fs"], cfg["run"]["frame_interval_fs"]
    if _half_window(tq, fi) < 1:
        return (f"config key 'hops.t_quiet_fs' ({_g(tq)} fs) is shorter than two of 'run.frame_interval_fs' "
                f"({_g(fi)} fs); the quiet window must span at least two frames.")


def _t_quiet_vs_production(cfg):
    h = cfg["hops"]
    fi = cfg["run"]["frame_interval_fs"]
    n, hr, hq = _production_frames(cfg), _half_window(h["t_R_fs"], fi), _half_window(h["t_quiet_fs"], fi)
    if n - 2 * hr < 2 * hq:
        return (f"config key 'hops.t_quiet_fs' ({_g(h['t_quiet_fs'])} fs) does not fit in "
                f"'run.production_time_fs' ({_production_text(cfg)}) besides the p_hop "
                f"window hops.t_R_fs, so no atom could be labelled quiet and training would fail.")


def _p_quiet_vs_p_c(cfg):
    h = cfg["hops"]
    for sp in species_names(cfg):
        quiet, c = h["p_quiet_A2"][sp], h["p_c_A2"][sp]
        if quiet > c:
            return (f"config key 'hops.p_quiet_A2.{sp}' ({_g(quiet)} A^2) exceeds 'hops.p_c_A2.{sp}' "
                    f"({_g(c)} A^2); a quiet atom must stay below the rearrangement threshold.")


def _feature_frames_vs_run(cfg):
    n, stride = _production_frames(cfg), cfg["features"]["frame_stride"]
    # A label uses the structure of the latest feature frame before it (classifier.label_to_feature_rows);
    # with frame 0 alone there is none but frame 0's, where p_hop is never defined.
    if stride >= n:
        prod = _production_text(cfg)
        return (f"config key 'features.frame_stride' ({stride}) leaves structure functions on frame 0 "
                f"only of the {n} frames that 'run.production_time_fs' ({prod}) "
                "gives, where p_hop is undefined, so there is nothing to train on.")


def _n_per_class_vs_folds(cfg):
    t = cfg["train"]
    need = int(math.ceil(t["cv_folds"] / (1.0 - t["test_fraction"]))) + 1  # classifier.minimum_per_class
    if t["n_per_class"] < need:
        return (f"config key 'train.n_per_class' ({t['n_per_class']}) is too small for 'train.cv_folds' "
                f"({t['cv_folds']}) and train.test_fraction ({_g(t['test_fraction'])}): at least {need} "
                "examples per class are needed.")


def _fit_lag_fractions(cfg):
    lo, hi = cfg["dynamics"]["fit_lag_fractions"]
    if not lo < hi:
        return f"config key 'dynamics.fit_lag_fractions' ({_g(lo)}, {_g(hi)}) must be increasing."


#: The cross-key rules in the order they are checked (each: cfg -> None or one sentence). Order
#: matters: the frame counting of the hops rules needs whole frame intervals, checked before.
RULES = (
    _initial_structure, _potential_cutoff_vs_box, _features_cutoff_vs_box,
    _radial_grid, _radial_vs_cutoff,
    _quench_temperatures, _melt_temperatures, _training_temperature, _stability_temperature,
    _quench_frames_vs_timestep, _run_frames_vs_timestep, _checkpoint_vs_chunk, _replicas_vs_quench,
    _t_R_vs_frames, _P_R_window_vs_frames, _t_R_vs_production, _t_quiet_vs_frames, _t_quiet_vs_production,
    _p_quiet_vs_p_c, _feature_frames_vs_run, _n_per_class_vs_folds, _fit_lag_fractions, _planted_bounds,
)

#: The rules about the quench, the MD runs and the initial box: unused in import mode, where the
#: trajectories come from files (softness import checks what they give: frames, box, p_hop window).
NATIVE_ONLY_RULES = (
    _initial_structure, _potential_cutoff_vs_box, _features_cutoff_vs_box, _quench_temperatures,
    _melt_temperatures, _quench_frames_vs_timestep, _run_frames_vs_timestep, _checkpoint_vs_chunk,
    _replicas_vs_quench, _t_R_vs_production, _t_quiet_vs_production, _feature_frames_vs_run,
)
#: The rules on windows against the frame interval: in import mode they take import.frame_interval_fs
#: when it is given (and are left to softness import, which knows the file's interval, when not).
FRAME_INTERVAL_RULES = (_t_R_vs_frames, _P_R_window_vs_frames, _t_quiet_vs_frames)


def _check_consistency(cfg: dict) -> None:
    """Constraints between keys that a JSON schema cannot express: the first broken rule of
    :data:`RULES` raises, with one sentence naming both keys.

    In import mode (:func:`import_mode`) the rules of :data:`NATIVE_ONLY_RULES` do not apply, and
    those of :data:`FRAME_INTERVAL_RULES` check ``import.frame_interval_fs`` (when given) in place
    of ``run.frame_interval_fs``.
    """
    imported = import_mode(cfg)
    interval = cfg["import"]["frame_interval_fs"] if imported else None
    for rule in RULES:
        if imported and rule in NATIVE_ONLY_RULES:
            continue
        if imported and rule in FRAME_INTERVAL_RULES:
            if interval is None:
                continue
            message = rule({**cfg, "run": {**cfg["run"], "frame_interval_fs": interval}})
            if message:
                message = message.replace("'run.frame_interval_fs'", "'import.frame_interval_fs'")
        else:
            message = rule(cfg)
        if message:
            raise SoftnessError(message)


# ---------------------------------------------------------------------------- import mode
# The study starts from the user's trajectories (config section ``import``), one per temperature,
# written as our H5MD by ``softness import``; the quench and the MD runs are skipped.


def import_mode(cfg: dict) -> bool:
    """Whether the study starts from imported trajectories (``import.trajectories`` is not empty)."""
    section = cfg.get("import") or {}
    return bool(section.get("trajectories"))


def import_species_names(cfg: dict) -> tuple:
    """The species names of the imported trajectories, in the order of their species numbers (as
    softness.importer numbers them): the system's species when ``import.system`` is set, else the
    names of ``import.species`` in order of first appearance."""
    section = cfg["import"]
    if section.get("system"):
        return tuple(systems.get(section["system"]).SPECIES_NAMES)
    return tuple(dict.fromkeys(str(v) for v in section["species"].values()))


def species_names(cfg: dict) -> tuple:
    """The species names of the study: the imported trajectories' in import mode, else the system's."""
    return import_species_names(cfg) if import_mode(cfg) else tuple(systems.of_config(cfg).SPECIES_NAMES)


def import_trajectory_file(cfg: dict, temperature_K: float) -> str:
    """``import.trajectories``' file at one temperature (KeyError if none)."""
    for T, path in cfg["import"]["trajectories"].items():
        if float(T) == float(temperature_K):
            return path
    raise KeyError(temperature_K)


def _import_keys(cfg: dict) -> None:
    """Turn, in place, the keys of ``import.trajectories`` into floats (temperatures, like the run
    lengths') and those of ``import.species`` into text (YAML reads the LAMMPS type ``1:`` as an int)."""
    section = cfg.get("import")
    if not isinstance(section, dict):
        return
    files = section.get("trajectories")
    if isinstance(files, dict):
        out = {}
        for t, path in files.items():
            try:
                T = float(t)
            except (TypeError, ValueError):
                raise SoftnessError(f"config key 'import.trajectories' maps temperatures (K) to trajectory "
                                    f"files, but {t!r} is not a temperature.") from None
            if T in out:
                raise SoftnessError(f"config key 'import.trajectories' gives {_g(T)} K twice.")
            out[T] = path
        section["trajectories"] = out
    species = section.get("species")
    if isinstance(species, dict):
        out = {}
        for t, name in species.items():
            key = str(t)
            if key in out:
                raise SoftnessError(f"config key 'import.species' gives atom type {key} twice.")
            out[key] = name
        section["species"] = out


def _import_species(cfg):
    if not cfg["import"]["species"]:
        return ("config key 'import.species' is empty, but 'import.trajectories' is set: give the species "
                "name of every atom type of the trajectories.")


def _import_system(cfg):
    own, name = cfg["import"]["system"], cfg["system"]["name"]
    if own is not None and own != name:
        return (f"config key 'import.system' ({own}) differs from 'system.name' ({name}); set both to the "
                "system the trajectories are of.")


def _import_species_of_system(cfg):
    own = cfg["import"]["system"]
    if own is None:
        return None
    names = systems.get(own).SPECIES_NAMES
    foreign = [n for n in dict.fromkeys(cfg["import"]["species"].values()) if n not in names]
    if foreign:
        return (f"config key 'import.species' names species {', '.join(map(repr, foreign))}, which system "
                f"{own} of 'import.system' does not have (its species are {', '.join(names)}).")


def _import_temperatures(cfg):
    files = cfg["import"]["trajectories"]
    temps = [float(t) for t in cfg["temperatures_K"]]
    missing = [t for t in temps if t not in files]
    if missing:
        return (f"config key 'temperatures_K' includes {', '.join(_g(t) for t in missing)} K, for which "
                "'import.trajectories' gives no trajectory file (it must give one for every temperature).")
    extra = [t for t in files if t not in temps]
    if extra:
        listed = ", ".join(_g(t) for t in extra)
        return (f"config key 'import.trajectories' gives a trajectory file for {listed} K, which "
                f"'temperatures_K' {cfg['temperatures_K']} does not include (the two must list the same "
                "temperatures).")


def _import_replicas(cfg):
    k = cfg["run"]["replicas_per_temperature"]
    if k > 1:
        return (f"config key 'run.replicas_per_temperature' ({k}) must be 1 in import mode, where "
                "'import.trajectories' gives one trajectory per temperature.")


def _import_masses(cfg):
    masses = cfg["import"]["masses"]
    if masses is None:
        return None
    missing = [n for n in import_species_names(cfg) if n not in masses]
    if missing:
        return (f"config key 'import.masses' gives no mass for species {', '.join(missing)} of "
                "'import.species'.")


#: The import-mode rules, checked (in this order) only when import.trajectories is set; each: cfg ->
#: None or one sentence naming the keys. The files themselves are checked by check_import_files.
IMPORT_RULES = (_import_species, _import_system, _import_species_of_system, _import_temperatures,
                _import_replicas, _import_masses)


def _check_import(cfg: dict) -> None:
    if not import_mode(cfg):
        return
    for rule in IMPORT_RULES:
        message = rule(cfg)
        if message:
            raise SoftnessError(message)


#: Formats whose files name no atoms: the import needs import.topology (softness.importer).
_FORMATS_WITHOUT_NAMES = ("LAMMPSDUMP", "GSD", "EXTXYZ", "H5MD")


def check_import_files(cfg: dict) -> None:
    """In import mode, that every trajectory file (and ``import.topology``) exists and that its
    format is known (``import.format``, else its suffix); a file that needs a topology has one.

    Checked by the workflow before any job, not by :func:`resolve`: every job re-reads the
    resolved config, and the analysis after the import must not need the original files.
    Relative paths are taken from the working directory.

    Raises:
      SoftnessError: one sentence naming the key, the temperature and the file.
    """
    if not import_mode(cfg):
        return
    from softness import importer

    section = cfg["import"]
    topology = section["topology"]
    if topology is not None and not Path(topology).is_file():
        raise SoftnessError(f"config key 'import.topology' names {topology}, which does not exist.")
    for T, path in section["trajectories"].items():
        where = f"config key 'import.trajectories' gives {_g(T)} K the trajectory file {path}"
        if not Path(path).exists():
            raise SoftnessError(f"{where}, which does not exist.")
        if not Path(path).is_file():
            raise SoftnessError(f"{where}, which is not a file.")
        try:
            fmt = importer.guess_format(path, section["format"])
        except SoftnessError:
            raise SoftnessError(f"{where}, whose format its suffix does not tell; set 'import.format'.") \
                from None
        if topology is None and fmt not in _FORMATS_WITHOUT_NAMES:
            raise SoftnessError(f"config key 'import.topology' is not set, but the {fmt} trajectory file "
                                f"{path} ({_g(T)} K) does not name its atoms; give a topology (GRO, PDB, TPR "
                                "or LAMMPS data file).")


def _temperature_keys(cfg: dict) -> None:
    """Turn the temperature keys of per-temperature run lengths into floats, in place.

    YAML reads ``3000:`` as an int and JSON only has string keys; one float per temperature lets
    the schema check the times and every stage look a temperature up the same way.
    """
    run = cfg.get("run")
    if not isinstance(run, dict):
        return
    for key in RUN_LENGTH_KEYS:
        times = run.get(key)
        if not isinstance(times, dict):
            continue
        out = {}
        for t, value in times.items():
            try:
                T = float(t)
            except (TypeError, ValueError):
                raise SoftnessError(f"config key 'run.{key}' maps temperatures (K) to times, but {t!r} is "
                                    "not a temperature.") from None
            if T in out:
                raise SoftnessError(f"config key 'run.{key}' gives {_g(T)} K twice.")
            out[T] = value
        run[key] = out


#: Config keys that hold one value per species, keyed by the system's species names.
PER_SPECIES_KEYS = (("hops", "p_c_A2"), ("hops", "p_quiet_A2"))


def _system_keys(cfg: dict) -> None:
    """Keep, in place, only the keys of the named system: its ``system`` and ``potential`` keys
    and its species in every per-species mapping.

    Configs are merged on top of config/config.yaml (silica), so another system's keys arrive
    from there and are dropped here; a species name that no system has, or a species of this
    system with no value, is refused with one sentence. In import mode the species are those of
    the imported trajectories (:func:`import_species_names`), not the system's.
    """
    system = systems.get(cfg["system"]["name"])
    cfg["system"] = {k: v for k, v in cfg["system"].items() if k == "name" or k in system.CONFIG_KEYS}
    cfg["potential"] = {k: v for k, v in cfg["potential"].items() if k in system.POTENTIAL_KEYS}
    if import_mode(cfg):  # the species of the imported trajectories, whatever the system
        names = import_species_names(cfg)
        owner = ("which import.species does not name", "of import.species")
    else:
        names = system.SPECIES_NAMES
        owner = (f"which system {system.NAME} does not have", f"of system {system.NAME}")
    others = {n for name in systems.SYSTEMS for n in systems.get(name).SPECIES_NAMES} - set(names)
    for section, key in PER_SPECIES_KEYS:
        given = cfg[section][key]
        unknown = [n for n in given if n not in names and n not in others]
        if unknown:
            raise SoftnessError(
                f"config key '{section}.{key}' names species {', '.join(map(repr, unknown))}, {owner[0]} "
                f"(its species are {', '.join(names)}).")
        missing = [n for n in names if n not in given]
        if missing:
            raise SoftnessError(
                f"config key '{section}.{key}' gives no value for species {', '.join(missing)} {owner[1]} "
                f"(its species are {', '.join(names)}).")
        cfg[section][key] = {n: given[n] for n in names}


def resolve(cfg: dict | None) -> dict:
    """Return a complete, validated copy of ``cfg`` with every default filled in.

    Raises:
      SoftnessError: naming the first offending key.
    """
    cfg = copy.deepcopy(cfg) if cfg else {}
    if not isinstance(cfg, dict):
        raise SoftnessError("the config must be a mapping of keys to values.")
    sch = schema()
    _fill_defaults(sch, cfg)
    _temperature_keys(cfg)
    _import_keys(cfg)
    validator = jsonschema.Draft7Validator(sch)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise SoftnessError(_describe(errors[0]) + ".")
    _check_import(cfg)
    _system_keys(cfg)
    _check_consistency(cfg)
    return cfg


def load(path: str | Path | None) -> dict:
    """Read a YAML config file (``None``: the defaults) and :func:`resolve` it."""
    if path is None:
        return resolve({})
    path = Path(path)
    if not path.exists():
        raise SoftnessError(f"config file {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SoftnessError(f"config file {path} is not valid YAML ({exc}).") from None
    return resolve(raw)


def training_temperature(cfg: dict) -> float:
    """T_train: the configured one, or the lowest simulated temperature."""
    t = cfg["train"]["T_train_K"]
    return min(cfg["temperatures_K"]) if t is None else t


#: The run lengths that may be given per temperature (a number, or a mapping K -> fs).
RUN_LENGTH_KEYS = ("equilibration_time_fs", "production_time_fs")


def replace_run_length_mappings(cfg: dict, override: dict | None) -> dict:
    """Give ``cfg`` (in place) the run lengths per temperature of ``override`` whole.

    Snakemake merges a ``--configfile`` or ``--config`` on top of config/config.yaml key by key,
    mappings included, so a study's ``{T: fs}`` mapping would keep the default study's
    temperatures beside its own, and a temperature between them would get a time interpolated
    from the other study. Call this after each such merge with the config merged on top; a
    single number is taken as it is anyway.

    Returns:
      ``cfg``.
    """
    run = (override or {}).get("run")
    if isinstance(run, dict) and isinstance(cfg.get("run"), dict):
        for key in RUN_LENGTH_KEYS:
            if key in run:
                cfg["run"][key] = copy.deepcopy(run[key])
    return cfg


def run_time_fs(cfg: dict, key: str, temperature_K: float) -> float:
    """``run.<key>`` (one of :data:`RUN_LENGTH_KEYS`) at one temperature, in fs.

    A mapping gives the time at its own temperatures. Between two of them the time is
    interpolated linearly in ln(time) against 1/T (the way an Arrhenius tau_alpha, and the
    time a run needs, change); outside their range it is the time of the nearest end, so a
    temperature added to ``temperatures_K`` gets a time without editing the mapping (give it
    its own entry when it is colder than all of them).

    Args:
      cfg: config (resolved, or merged but not yet resolved: keys may be int, float or numeric str).
      key: ``equilibration_time_fs`` or ``production_time_fs``.
      temperature_K: the temperature of the run.

    Returns:
      The number, or the mapping's time at that temperature.
    """
    times = cfg["run"][key]
    if not isinstance(times, dict):
        return float(times)
    table = sorted((1.0 / float(t), float(v)) for t, v in times.items())
    x = 1.0 / float(temperature_K)
    inv_t = np.array([row[0] for row in table])
    values = np.array([row[1] for row in table])
    exact = np.isclose(inv_t, x, rtol=1e-12, atol=0.0)
    if exact.any():
        return float(values[np.argmax(exact)])
    if x <= inv_t[0] or x >= inv_t[-1]:  # the nearest end's time itself
        return float(values[0] if x <= inv_t[0] else values[-1])
    i = int(np.searchsorted(inv_t, x)) - 1
    w = (x - inv_t[i]) / (inv_t[i + 1] - inv_t[i])
    lo, hi = float(values[i]), float(values[i + 1])
    if lo <= 0 or hi <= 0:  # (an equilibration of 0 fs) interpolate the time itself
        return lo + w * (hi - lo)
    # ln(time) linear in 1/T, written so that equal neighbours give their time to the bit
    # (temperatures of equal lengths share an MD job: md_run_groups)
    return lo * (hi / lo) ** w


def run_section(cfg: dict, temperature_K: float) -> dict:
    """The ``run`` section as the run at one temperature sees it: both lengths as numbers.

    With one number for all temperatures it equals ``cfg["run"]``, so a run's identity (its
    checkpoint, the workflow's rerun trigger) is what it was before lengths could depend on
    temperature, and with a mapping it changes only when that temperature's lengths do.
    """
    run = dict(cfg["run"])
    for key in RUN_LENGTH_KEYS:
        if isinstance(run[key], dict):
            run[key] = run_time_fs(cfg, key, temperature_K)
    return run


#: The number of independent runs per temperature: a property of the study, not of any one run.
RUN_COUNT_KEY = "replicas_per_temperature"


def one_run_section(cfg: dict, temperature_K: float) -> dict:
    """What one run at one temperature depends on: :func:`run_section` without
    ``run.replicas_per_temperature``.

    A run's checkpoint identity and the workflow's rerun trigger use this, so that asking for
    more (or fewer) independent runs leaves the runs already made, run 0 above all, untouched.
    """
    run = run_section(cfg, temperature_K)
    run.pop(RUN_COUNT_KEY, None)
    return run


def md_run_groups(cfg: dict, per_job: int | None = None) -> list[list]:
    """Temperatures packed into MD jobs, as replicas of one program (``md.run_temperatures``).

    Replicas advance in lockstep chunks over one schedule, so only temperatures with the same
    equilibration and production lengths share a job: the temperatures (lowest first) are sorted
    into classes of equal lengths, and each class is cut into jobs of ``per_job``.

    Args:
      cfg: resolved config.
      per_job: temperatures per job; default ``execution.md_replicas_per_job``.

    Returns:
      The jobs, each a list of temperatures as given in ``temperatures_K``, lowest first; jobs
      ordered by their lowest temperature.
    """
    per_job = cfg["execution"]["md_replicas_per_job"] if per_job is None else per_job
    classes: dict = {}
    for T in sorted(cfg["temperatures_K"], key=float):
        lengths = tuple(run_time_fs(cfg, key, T) for key in RUN_LENGTH_KEYS)
        classes.setdefault(lengths, []).append(T)
    jobs = [c[i:i + per_job] for c in classes.values() for i in range(0, len(c), per_job)]
    return sorted(jobs, key=lambda job: float(job[0]))
