"""Strong and fragile side by side: the relaxation of several studies (systems) on one figure.

``softness compare --study NAME=RESULTS_DIR ...`` reads each study's products, whatever its system
and species (names, system and units come from the files), and draws:

(a) an **Angell plot**: log10 tau_alpha against T_ref / T for every study and species. T_ref of a
    study is the temperature at which tau_alpha of its *first* species reaches a value tau_ref
    common to all studies (interpolated linearly in ln tau_alpha against 1/T); by default tau_ref
    is the slowest tau_alpha that every study's first species spans (the upper end of the common
    range, the analogue of Angell's 100 s at T_g), or ``--tau-ref-fs``. A study that does not
    reach tau_ref takes its lowest temperature as T_ref (the figure and the JSON say so). An
    Arrhenius (strong) liquid is a straight line, a super-Arrhenius (fragile) one bends upwards.
(b) the **apparent activation energy** E_app = d ln tau_alpha / d(1/T), from each pair of
    neighbouring temperatures, divided by T_ref, against T_ref / T at the middle of the pair (in
    1/T), with errors from those of tau_alpha: flat for a strong liquid, rising on cooling for a
    fragile one. A study's tau_alpha crossover T_x (``summary.json``, where fitted) is marked.
(c) where the study has ``arrhenius.h5``, its softness barrier line
    DeltaE(S) / k_B T_ref = (e0 - e1 S) / T_ref over S in [-2, 2], with the band of its error.

The fragility index m = d log10 tau_alpha / d(T_ref / T) at T = T_ref is taken from the two
temperatures nearest T_ref (in 1/T): m = E_app / (T_ref ln 10) of that pair. For an Arrhenius
liquid tau = tau0 exp(E / T) it is E / (T_ref ln 10) = log10(tau_ref / tau0), the strong limit;
a fragile liquid with the same tau0 has a larger m.

Inputs of a study (RESULTS_DIR is the ``results/`` directory of a run of the workflow):
``T<T>/dynamics.h5`` and ``T<T>/run<r>/dynamics.h5`` (tau_alpha per species with its block error;
independent runs at one temperature are pooled as :func:`softness.arrhenius.mean_over_runs` does),
``arrhenius.h5`` (the softness lines e0, e1 and their covariance) and ``summary.json`` (or the
summary stored in ``arrhenius.h5``: tau_alpha crossover, T0, e0, e1, Sigma1), both optional. Times
are in fs and temperatures in K for every system (:mod:`softness.units`); a system with reduced
units (``REDUCED_UNITS`` of :mod:`softness.systems`, named by the products' ``system``
attribute) also gets T_ref and tau_ref in them in the JSON and the legend.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from softness import systems
from softness.errors import SoftnessError
from softness.io import decode_all, open_input, temporary_path
from softness.plotting import OKABE_ITO, product_system, species_marker

log = logging.getLogger(__name__)

#: Softness range of the barrier lines of panel (c).
S_RANGE = (-2.0, 2.0)
#: Line styles of species 0, 1, 2, ... (cycled): the first species, which sets T_ref, is solid.
SPECIES_LINESTYLES = ("-", "--", ":", "-.")
LN10 = math.log(10.0)
DEFINITION = ("T_ref: the temperature where tau_alpha of the study's first species equals tau_ref_fs "
              "(ln tau interpolated in 1/T), else the study's lowest temperature; m = d log10 tau_alpha / "
              "d(T_ref/T) at T_ref from the two temperatures nearest T_ref; E_app = d ln tau_alpha / d(1/T) "
              "(K) from neighbouring temperatures; softness barrier line (e0 - e1 S) / T_ref")
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


# ---------------------------------------------------------------------------- the numbers

def _relative_errors(tau, tau_err) -> np.ndarray:
    """Errors of ln tau (NaN where the error is unknown)."""
    tau = np.asarray(tau, dtype=np.float64)
    err = np.full(tau.shape, np.nan) if tau_err is None else np.asarray(tau_err, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return err / tau


def _finite_sorted(temperature_K, tau, tau_err):
    """(1/T ascending, ln tau, error of ln tau) at the temperatures where tau is finite and positive."""
    t = np.asarray(temperature_K, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    sig = _relative_errors(tau, tau_err)
    ok = np.isfinite(t) & (t > 0) & np.isfinite(tau) & (tau > 0)
    x, y, s = 1.0 / t[ok], np.log(tau[ok]), sig[ok]
    order = np.argsort(x)
    return x[order], y[order], s[order]


def spanned_range(temperature_K, tau_fs) -> tuple[float, float] | None:
    """(smallest, largest) finite tau_alpha, or None when there is none."""
    tau = np.asarray(tau_fs, dtype=np.float64)
    tau = tau[np.isfinite(tau) & (tau > 0)]
    return None if tau.size == 0 else (float(tau.min()), float(tau.max()))


def common_tau(ranges) -> float | None:
    """The slowest tau_alpha spanned by every range of ``ranges`` [(lo, hi)], or None (no overlap)."""
    ranges = list(ranges)
    if not ranges or any(r is None for r in ranges):
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return hi if lo <= hi else None


def reference_temperature(temperature_K, tau_fs, tau_ref_fs, tau_err_fs=None) -> tuple[float, float] | None:
    """The temperature at which tau_alpha reaches ``tau_ref_fs``, with its error.

    ln tau_alpha is interpolated linearly in 1/T between neighbouring temperatures; where it crosses
    tau_ref more than once (noise), the coldest crossing is taken. The error follows from those of
    the two neighbours: an error d of the interpolated ln tau moves 1/T_ref by d / slope.

    Returns:
      (T_ref, its error) in K (error NaN where the errors are unknown), or None when tau_ref lies
      outside the tau_alpha spanned.
    """
    x, y, s = _finite_sorted(temperature_K, tau_fs, tau_err_fs)
    y_ref = math.log(tau_ref_fs)
    if x.size == 0:
        return None
    if x.size == 1:
        return (1.0 / x[0], np.nan) if abs(y[0] - y_ref) <= 1e-12 else None
    for i in range(x.size - 2, -1, -1):  # the coldest segment first
        a, b = y[i], y[i + 1]
        if not (min(a, b) - 1e-12 <= y_ref <= max(a, b) + 1e-12):
            continue
        if a == b:  # flat: tau_ref at both ends; the colder one
            return 1.0 / x[i + 1], np.nan
        w = min(max((y_ref - a) / (b - a), 0.0), 1.0)
        x_ref = x[i] + w * (x[i + 1] - x[i])
        slope = (b - a) / (x[i + 1] - x[i])
        dx = math.sqrt((1 - w) ** 2 * s[i] ** 2 + w**2 * s[i + 1] ** 2) / abs(slope)
        return 1.0 / x_ref, dx / x_ref**2
    return None


def apparent_barrier(temperature_K, tau_fs, tau_err_fs=None) -> dict:
    """E_app = d ln tau / d(1/T) (K) from each pair of neighbouring temperatures (in 1/T).

    Returns:
      ``{"inverse_T": [P] 1/T at the middle of each pair, "E_K": [P], "E_err_K": [P] (NaN where the
      errors are unknown), "T_pair_K": [P, 2]}``, pairs ordered from hot to cold.
    """
    x, y, s = _finite_sorted(temperature_K, tau_fs, tau_err_fs)
    dx = np.diff(x)
    e = np.diff(y) / dx
    err = np.sqrt(s[1:] ** 2 + s[:-1] ** 2) / dx
    return {"inverse_T": 0.5 * (x[1:] + x[:-1]), "E_K": e, "E_err_K": err,
            "T_pair_K": np.stack([1.0 / x[:-1], 1.0 / x[1:]], axis=-1) if x.size > 1 else np.zeros((0, 2))}


def fragility_index(temperature_K, tau_fs, T_ref_K, tau_err_fs=None, T_ref_err_K=np.nan) -> dict:
    """m = d log10 tau_alpha / d(T_ref / T) at T_ref, from the two temperatures nearest T_ref (in 1/T).

    m = E_app / (T_ref ln 10) with E_app the slope of ln tau against 1/T between those two. Its
    error adds in quadrature that from the two tau_alpha errors and that of T_ref (m ~ 1 / T_ref).

    Returns:
      ``{"value", "error", "temperatures_K": [2]}`` (value None: fewer than two temperatures).
    """
    x, y, s = _finite_sorted(temperature_K, tau_fs, tau_err_fs)
    if x.size < 2 or not np.isfinite(T_ref_K):
        return {"value": None, "error": None, "temperatures_K": []}
    near = np.sort(np.argsort(np.abs(x - 1.0 / T_ref_K), kind="stable")[:2])
    i, j = int(near[0]), int(near[1])
    t = np.asarray(temperature_K, dtype=np.float64)
    pair = [float(t[np.argmin(np.abs(1.0 / t - x[n]))]) for n in (i, j)]  # (as given, not 1 / (1 / T))
    e_app = (y[j] - y[i]) / (x[j] - x[i])
    m = e_app / (T_ref_K * LN10)
    err_tau = math.sqrt(s[i] ** 2 + s[j] ** 2) / abs(x[j] - x[i]) / (T_ref_K * LN10)
    err_ref = abs(m) * T_ref_err_K / T_ref_K if np.isfinite(T_ref_err_K) else 0.0
    err = math.hypot(err_tau, err_ref)
    return {"value": float(m), "error": float(err) if np.isfinite(err) else None,
            "temperatures_K": pair}


# ---------------------------------------------------------------------------- a study's products

@dataclass
class Study:
    """What ``softness compare`` reads of one study.

    Attributes:
      name: the study's name (``--study NAME=...``).
      results: its results directory.
      system: ``system.name`` of its products (None when they do not say).
      reduced_units: ``REDUCED_UNITS`` of the system (None: real units only).
      species_names: the products' species names, in species order.
      temperature_K: [T] ascending.
      tau_fs, tau_err_fs: [S, T] tau_alpha and its error (NaN: not reached / unknown), pooled over
        the independent runs at each temperature.
      n_runs: [T] runs pooled at each temperature.
      lines: ``{"e0_K", "e1_K": [S], "cov": [S, 2, 2]}`` from ``arrhenius.h5``, or None.
      summary: the arrhenius summary (``summary.json``), or None.
    """

    name: str
    results: Path
    system: str | None
    reduced_units: dict | None
    species_names: tuple
    temperature_K: np.ndarray
    tau_fs: np.ndarray
    tau_err_fs: np.ndarray
    n_runs: np.ndarray
    lines: dict | None = None
    summary: dict | None = None
    sources: list = field(default_factory=list)


def _names(f, path) -> tuple:
    if "species_names" not in f:
        raise SoftnessError(f"file {path} has no '/species_names' naming its species; remake it with this "
                            "version of the pipeline.")
    return decode_all(f["species_names"][()])


def parse_studies(specs) -> list[tuple[str, Path]]:
    """``["NAME=DIR", ...]`` as [(name, Path)], each name given once."""
    out, seen = [], set()
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not path or not _STUDY_NAME.fullmatch(name):
            raise SoftnessError(f"--study {spec!r} must be NAME=RESULTS_DIR with a name of letters, digits, "
                                "'_', '.', '+' or '-'.")
        if name in seen:
            raise SoftnessError(f"study name {name!r} is given twice; give each study its own name.")
        seen.add(name)
        out.append((name, Path(path)))
    if not out:
        raise SoftnessError("give at least one study (--study NAME=RESULTS_DIR).")
    return out


def dynamics_files(results: Path) -> list[Path]:
    """Every run's dynamics product under a results directory (T<T>/ and T<T>/run<r>/)."""
    def temperature_dir(d):
        return re.fullmatch(r"T[0-9]+(\.[0-9]+)?", d.name) is not None

    found = [p for p in results.glob("T*/dynamics.h5") if temperature_dir(p.parent)]
    found += [p for p in results.glob("T*/run*/dynamics.h5")
              if temperature_dir(p.parent.parent) and re.fullmatch(r"run[0-9]+", p.parent.name)]
    return sorted(found)


def _reduced_units(system, name, path):
    if system is None:
        return None
    try:
        return systems.get(system).REDUCED_UNITS
    except SoftnessError as exc:
        log.warning("study %s: %s (named by %s); it is shown without reduced units.", name, exc, path)
        return None


def _read_summary(results: Path, arrhenius_path: Path, name: str) -> dict | None:
    path = results / "summary.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise SoftnessError(f"summary {path} of study {name} is not valid JSON ({exc}).") from None
    if arrhenius_path.is_file():
        with open_input(arrhenius_path, "arrhenius") as f:
            if "summary" in f.attrs:
                return json.loads(f.attrs["summary"])
    return None


def _read_lines(path: Path, names: tuple, name: str) -> dict | None:
    """e0, e1 and their covariance per species from ``arrhenius.h5`` (None: no file or no lines)."""
    if not path.is_file():
        return None
    with open_input(path, "arrhenius") as f:
        if "lines/e0_K" not in f or "lines/e1_K" not in f:
            log.warning("study %s: %s has no softness lines (lines/e0_K, lines/e1_K); panel (c) leaves "
                        "it out.", name, path)
            return None
        got = _names(f, path)
        if got != names:
            raise SoftnessError(f"arrhenius file {path} names the species ({', '.join(got)}) but the "
                                f"dynamics files of study {name} name ({', '.join(names)}); they come from "
                                "different runs.")
        e0, e1 = f["lines/e0_K"][()].astype(np.float64), f["lines/e1_K"][()].astype(np.float64)
        cov = np.full((len(names), 2, 2), np.nan)
        if "lines/cov" in f:
            cov = f["lines/cov"][()][:, :2, :2].astype(np.float64)
        elif "lines/e0_K_err" in f and "lines/e1_K_err" in f:
            cov[:, 0, 0], cov[:, 1, 1] = f["lines/e0_K_err"][()] ** 2, f["lines/e1_K_err"][()] ** 2
            cov[:, 0, 1] = cov[:, 1, 0] = 0.0
        system = product_system(f.attrs)
    return {"e0_K": e0, "e1_K": e1, "cov": cov, "system": system}


def read_study(name: str, results) -> Study:
    """One study's tau_alpha(T) per species (pooled over runs), softness lines and summary.

    Raises:
      SoftnessError: no such directory, no dynamics products in it, or products that disagree
        (species names, system), each in one sentence naming the file.
    """
    from softness.arrhenius import mean_over_runs

    results = Path(results)
    if not results.is_dir():
        raise SoftnessError(f"results directory {results} of study {name} does not exist.")
    paths = dynamics_files(results)
    if not paths:
        raise SoftnessError(f"results directory {results} of study {name} holds no dynamics products "
                            "(T<T>/dynamics.h5); run the study's workflow first.")
    by_T: dict[float, list] = {}
    names = system = None
    for path in paths:
        with open_input(path, "dynamics") as f:
            for key in ("tau_alpha_fs", "species_names"):
                if key not in f:
                    raise SoftnessError(f"dynamics file {path} has no '{key}'; is it a dynamics product?")
            got = _names(f, path)
            temperature = float(f.attrs.get("temperature_K", np.nan))
            tau = f["tau_alpha_fs"][()].astype(np.float64)
            err = (f["tau_alpha_err_fs"][()].astype(np.float64) if "tau_alpha_err_fs" in f
                   else np.full(tau.shape, np.nan))
            if "tau_alpha_reached" in f:
                tau = np.where(f["tau_alpha_reached"][()], tau, np.nan)
            sys_here = product_system(f.attrs)
        if not np.isfinite(temperature):
            raise SoftnessError(f"dynamics file {path} has no temperature_K attribute.")
        if tau.shape != (len(got),):
            raise SoftnessError(f"dynamics file {path} holds tau_alpha of shape {tau.shape}, not one value "
                                f"per species ({', '.join(got)}).")
        if names is None:
            names, first = got, path
        elif got != names:
            raise SoftnessError(f"dynamics file {path} names the species ({', '.join(got)}) but {first} "
                                f"names ({', '.join(names)}); a study is one system.")
        if sys_here is not None:
            if system is not None and sys_here != system:
                raise SoftnessError(f"dynamics file {path} was made for system {sys_here} but other files of "
                                    f"study {name} for {system}; a study is one system.")
            system = sys_here
        by_T.setdefault(temperature, []).append((tau, err))
    temps = np.array(sorted(by_T))
    tau = np.full((len(names), temps.size), np.nan)
    tau_err = np.full_like(tau, np.nan)
    n_runs = np.zeros(temps.size, dtype=int)
    for k, t in enumerate(temps):
        runs = by_T[t]
        tau[:, k], tau_err[:, k] = mean_over_runs([r[0] for r in runs], [r[1] for r in runs])
        n_runs[k] = len(runs)
    arrhenius_path = results / "arrhenius.h5"
    lines = _read_lines(arrhenius_path, names, name)
    summary = _read_summary(results, arrhenius_path, name)
    if system is None and lines is not None:
        system = lines.get("system")
    if system is None and summary is not None:
        system = (summary.get("reduced_units") or {}).get("system")
    study = Study(name=name, results=results, system=system,
                  reduced_units=_reduced_units(system, name, results), species_names=names,
                  temperature_K=temps, tau_fs=tau, tau_err_fs=tau_err, n_runs=n_runs, lines=lines,
                  summary=summary, sources=[str(p) for p in paths])
    if not np.isfinite(tau[0]).any():
        log.warning("study %s: tau_alpha of %s is reached at no temperature; it has no T_ref.", name,
                    names[0])
    return study


# ---------------------------------------------------------------------------- the comparison

def _num(x):
    """A JSON-able float (None for NaN / inf / None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _nums(a):
    return [_num(v) for v in np.ravel(np.asarray(a, dtype=np.float64))]


def _summary_numbers(summary: dict | None, species: str) -> dict:
    """The fitted numbers of one species from the arrhenius summary (values and errors in K)."""
    if not summary:
        return {}
    s = (summary.get("species") or {}).get(species)
    if not s:
        return {}

    def ve(entry):
        entry = entry or {}
        if "K" in entry:
            entry = entry["K"]
        return {"value": entry.get("value"), "error": entry.get("error")}

    tau = s.get("tau_alpha", {})
    return {"T_crossover_K": ve(tau.get("T_crossover")), "E_low_K": ve(tau.get("E_low")),
            "E_high_K": ve(tau.get("E_high")), "strong_to_fragile": tau.get("strong_to_fragile"),
            "kink": tau.get("kink"), "T0_K": ve(s.get("T0")), "e0_K": ve(s.get("e0")),
            "e1_K": ve(s.get("e1")), "Sigma1": ve(s.get("Sigma1"))}


def compare(studies: list[Study], tau_ref_fs: float | None = None) -> dict:
    """The numbers of the comparison figure (plain JSON-able data; NaN written as None).

    Args:
      studies: from :func:`read_study`.
      tau_ref_fs: the tau_alpha of the first species that sets each study's T_ref (default: the
        slowest value every study spans, :func:`common_tau`).
    """
    ranges = [spanned_range(s.temperature_K, s.tau_fs[0]) for s in studies]
    if tau_ref_fs is None:
        tau_ref_fs = common_tau(ranges)
        how = "common" if tau_ref_fs is not None else "none"
    else:
        if not (tau_ref_fs > 0 and math.isfinite(tau_ref_fs)):
            raise SoftnessError(f"--tau-ref-fs {tau_ref_fs} must be a positive number of fs.")
        how = "given"
    out = {"tau_ref_fs": _num(tau_ref_fs), "tau_ref_choice": how,
           "definition": DEFINITION,
           "studies": {}}
    for study, span in zip(studies, ranges, strict=True):
        first = study.species_names[0]
        ref = None if tau_ref_fs is None else reference_temperature(study.temperature_K, study.tau_fs[0],
                                                                    tau_ref_fs, study.tau_err_fs[0])
        if ref is not None:
            T_ref, T_ref_err = ref
            method = f"tau_alpha of {first} = {tau_ref_fs:.4g} fs"
        else:
            reached = study.temperature_K[np.isfinite(study.tau_fs[0])]
            T_ref = float(reached.min() if reached.size else study.temperature_K.min())
            T_ref_err = np.nan
            method = "lowest temperature" + (f" with tau_alpha of {first}" if reached.size else "")
            if tau_ref_fs is not None:
                spans = "nothing" if span is None else f"{span[0]:.4g}-{span[1]:.4g} fs"
                log.warning("study %s: tau_alpha of %s does not reach %.4g fs (it spans %s); T_ref is its "
                            "%s, %.4g K.", study.name, first, tau_ref_fs, spans, method, T_ref)
        ru = study.reduced_units
        entry = {"results": str(study.results), "system": study.system, "species": list(study.species_names),
                 "reduced_units": None if ru is None else dict(ru),
                 "temperatures_K": _nums(study.temperature_K), "runs_per_temperature": study.n_runs.tolist(),
                 "T_ref_K": _num(T_ref), "T_ref_K_err": _num(T_ref_err), "T_ref_method": method,
                 "tau_alpha_span_fs": None if span is None else list(span), "per_species": {}}
        if ru is not None:
            t_u, time_u = float(ru["temperature_K"]), float(ru["time_fs"])
            entry["T_ref_reduced"] = _num(T_ref / t_u)
            entry["T_ref_reduced_err"] = _num(T_ref_err / t_u)
            entry["tau_ref_reduced"] = _num(tau_ref_fs / time_u) if tau_ref_fs is not None else None
        for k, sp in enumerate(study.species_names):
            tau, err = study.tau_fs[k], study.tau_err_fs[k]
            ok = np.isfinite(tau) & (tau > 0)
            sig = _relative_errors(tau, err)
            eapp = apparent_barrier(study.temperature_K, tau, err)
            m = fragility_index(study.temperature_K, tau, T_ref, err, T_ref_err)
            item = {
                "tau_alpha_fs": _nums(tau), "tau_alpha_err_fs": _nums(err),
                "angell": {"T_ref_over_T": _nums(T_ref / study.temperature_K[ok]),
                           "log10_tau_alpha_fs": _nums(np.log10(tau[ok])),
                           "log10_tau_alpha_err": _nums(sig[ok] / LN10)},
                "apparent_barrier": {"T_ref_over_T": _nums(T_ref * eapp["inverse_T"]),
                                     "E_app_K": _nums(eapp["E_K"]), "E_app_err_K": _nums(eapp["E_err_K"]),
                                     "E_app_over_T_ref": _nums(eapp["E_K"] / T_ref),
                                     "E_app_over_T_ref_err": _nums(eapp["E_err_K"] / T_ref)},
                "fragility_m": m, "fit": _summary_numbers(study.summary, sp)}
            lines = study.lines
            if lines is not None and np.isfinite(lines["e0_K"][k]) and np.isfinite(lines["e1_K"][k]):
                cov = study.lines["cov"][k]
                item["softness_barrier"] = {
                    "e0_K": _num(study.lines["e0_K"][k]), "e1_K": _num(study.lines["e1_K"][k]),
                    "e0_K_err": _num(math.sqrt(cov[0, 0])) if cov[0, 0] >= 0 else None,
                    "e1_K_err": _num(math.sqrt(cov[1, 1])) if cov[1, 1] >= 0 else None,
                    "cov_e0_e1_K2": _num(cov[0, 1]),
                    "e0_over_T_ref": _num(study.lines["e0_K"][k] / T_ref),
                    "e1_over_T_ref": _num(study.lines["e1_K"][k] / T_ref)}
            entry["per_species"][sp] = item
            if m["value"] is not None:
                log.info("%s %s: T_ref = %.4g K, m = %.3g +- %.2g (from %g and %g K)", study.name, sp, T_ref,
                         m["value"], m["error"] if m["error"] is not None else np.nan, *m["temperatures_K"])
        out["studies"][study.name] = entry
    return out


# ---------------------------------------------------------------------------- the figure

def _time_text(fs: float) -> str:
    """A time for a label: fs, ps or ns, three digits."""
    for unit, scale in (("ns", 1e6), ("ps", 1e3)):
        if fs >= scale:
            return f"{fs / scale:.3g} {unit}"
    return f"{fs:.3g} fs"


def _study_label(name: str, entry: dict) -> str:
    system = entry.get("system")
    label = name if system in (None, name) else f"{name} ({system})"
    text = f"{label}: $T_{{ref}}$ = {entry['T_ref_K']:.4g} K"
    if entry.get("T_ref_reduced") is not None:
        text += f", $T^*$ = {entry['T_ref_reduced']:.3g}"
    if entry["T_ref_method"].startswith("tau_alpha"):
        text += f" ({entry['species'][0]})"
    else:
        text += " (lowest temperature)"
    return text


def _errorbars(y_err):
    y_err = np.asarray([np.nan if v is None else v for v in y_err], dtype=np.float64)
    return None if not np.isfinite(y_err).any() else np.nan_to_num(y_err, nan=0.0)


def comparison_figure(numbers: dict, studies: list[Study]) -> Figure:
    """Panels (a) Angell plot, (b) E_app / T_ref, (c) softness barrier lines (where there are any),
    drawn from the output of :func:`compare`. Colour: the study; marker and line style: the species."""
    by_name = {s.name: s for s in studies}
    has_lines = any("softness_barrier" in item for e in numbers["studies"].values()
                    for item in e["per_species"].values())
    n_panels = 3 if has_lines else 2
    fig = Figure(figsize=(4.6 * n_panels, 4.4), layout="constrained")
    axes = fig.subplots(1, n_panels)
    ax_a, ax_b = axes[0], axes[1]
    tau_ref = numbers["tau_ref_fs"]
    for n, (name, entry) in enumerate(numbers["studies"].items()):
        colour = OKABE_ITO[n % len(OKABE_ITO)]
        ax_a.plot([], [], color=colour, lw=6, label=_study_label(name, entry))
        for k, sp in enumerate(entry["species"]):
            item = entry["per_species"][sp]
            style = {"color": colour, "marker": species_marker(k), "ms": 5, "capsize": 2,
                     "ls": SPECIES_LINESTYLES[k % len(SPECIES_LINESTYLES)], "mfc": "white" if k else colour}
            label = f"{name} {sp}"
            a = item["angell"]
            if a["T_ref_over_T"]:
                ax_a.errorbar(a["T_ref_over_T"], a["log10_tau_alpha_fs"],
                              yerr=_errorbars(a["log10_tau_alpha_err"]), **style)
            b = item["apparent_barrier"]
            m = item["fragility_m"]
            if m["value"] is not None:
                label += f": m = {m['value']:.3g}"
                if m["error"] is not None:
                    label += f" ± {m['error']:.2g}"
            if b["T_ref_over_T"]:
                y = np.array([np.nan if v is None else v for v in b["E_app_over_T_ref"]])
                ax_b.errorbar(b["T_ref_over_T"], y, yerr=_errorbars(b["E_app_over_T_ref_err"]), label=label,
                              **style)
            if has_lines and "softness_barrier" in item:
                sb = item["softness_barrier"]
                S = np.linspace(*S_RANGE, 101)
                t_ref = entry["T_ref_K"]
                line = (sb["e0_K"] - sb["e1_K"] * S) / t_ref
                axes[2].plot(S, line, color=colour, ls=style["ls"], label=f"{name} {sp}")
                cov = by_name[name].lines["cov"][k] if name in by_name and by_name[name].lines else None
                if cov is not None and np.all(np.isfinite(cov)):
                    var = cov[0, 0] + S**2 * cov[1, 1] - 2 * S * cov[0, 1]
                    band = np.sqrt(np.clip(var, 0, None)) / t_ref
                    axes[2].fill_between(S, line - band, line + band, color=colour, alpha=0.15, lw=0)
        # the crossover temperature of the first species' tau_alpha fit, where there is one
        t_x = (entry["per_species"][entry["species"][0]]["fit"].get("T_crossover_K") or {}).get("value")
        if t_x is not None and t_x > 0:
            ax_b.axvline(entry["T_ref_K"] / t_x, color=colour, ls=(0, (1, 3)), lw=1.2)
    ax_a.axvline(1.0, color="0.6", lw=0.8)
    if tau_ref is not None:
        ax_a.axhline(math.log10(tau_ref), color="0.6", lw=0.8)
    ax_a.set_xlabel(r"$T_{ref}\,/\,T$")
    ax_a.set_ylabel(r"$\log_{10}(\tau_\alpha$ / fs)")
    what = (f"$\\tau_\\alpha$(first species) = {_time_text(tau_ref)}" if tau_ref is not None
            else "lowest temperature (no common $\\tau_\\alpha$)")
    ax_a.set_title(f"(a) Angell plot; $T_{{ref}}$: {what}", fontsize=9)
    ax_a.legend(fontsize=7, loc="lower right", frameon=False)
    ax_b.set_xlabel(r"$T_{ref}\,/\,T$")
    ax_b.set_ylabel(r"$E_{app}\,/\,k_B T_{ref}$,  $E_{app} = d\ln\tau_\alpha / d(1/T)$")
    ax_b.set_title("(b) apparent activation energy (dotted: crossover $T_x$)", fontsize=9)
    ax_b.legend(fontsize=7, frameon=False, title="m = d log10 τ / d(T_ref/T) at T_ref", title_fontsize=7)
    if has_lines:
        axes[2].set_xlabel("softness S")
        axes[2].set_ylabel(r"$\Delta E(S)\,/\,k_B T_{ref} = (e_0 - e_1 S)\,/\,T_{ref}$")
        axes[2].set_title("(c) softness barrier", fontsize=9)
        axes[2].legend(fontsize=7, frameon=False)
    fig.suptitle("Strong and fragile side by side: straight in (a) and flat in (b) is Arrhenius (strong)",
                 fontsize=10)
    return fig


# ---------------------------------------------------------------------------- the stage

def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def compare_files(studies, out, json_path=None, tau_ref_fs: float | None = None) -> dict:
    """The ``softness compare`` stage.

    Args:
      studies: ``["NAME=RESULTS_DIR", ...]`` (or [(name, dir)]).
      out: figure path(s); the format follows each suffix (.png at 200 dpi, .pdf, .svg).
      json_path: optional path for the numbers (:func:`compare`).
      tau_ref_fs: see :func:`compare`.

    Returns:
      The numbers.
    """
    pairs = parse_studies(studies) if studies and isinstance(next(iter(studies)), str) else [
        (str(n), Path(p)) for n, p in studies]
    outs = [Path(p) for p in ([out] if isinstance(out, (str, Path)) else out)]
    formats = Figure().canvas.get_supported_filetypes()
    for p in outs:
        if p.suffix.lstrip(".").lower() not in formats:
            known = ", ".join("." + k for k in sorted(formats))
            raise SoftnessError(f"figure {p} has no known image suffix ({known}).")
    loaded = [read_study(name, path) for name, path in pairs]
    numbers = compare(loaded, tau_ref_fs)
    fig = comparison_figure(numbers, loaded)
    for p in outs:
        _write_atomic(p, lambda tmp, p=p: fig.savefig(tmp, format=p.suffix.lstrip(".").lower(), dpi=200))
        log.info("wrote %s", p)
    if json_path is not None:
        text = json.dumps(numbers, indent=2, allow_nan=False) + "\n"
        _write_atomic(Path(json_path), lambda tmp: tmp.write_text(text))
        log.info("wrote %s", json_path)
    return numbers
