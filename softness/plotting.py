"""The figures of the study.

Each figure has a function that takes plain arrays and returns a matplotlib ``Figure``
(testable on synthetic data, reusable on anyone's numbers) and a ``*_from_files`` function
that reads the pipeline's products. :func:`save` writes a figure as PNG and PDF. Figures are
built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, no pyplot state), so
they draw the same in a batch job, a thread or a notebook.

Species are whatever the products name (``/species_names``; :func:`softness.trajectory.read_species_names`
for trajectories), in any number: one panel or one series per species, g(r) for every unordered
pair. Colours are colourblind-safe: the Okabe-Ito palette for species, in species order (so
silica's Si is blue and O vermillion), each species also with its own marker, ``cividis`` for
temperature series and ``viridis`` for softness bins. Temperatures are shown as 1000 / T (1/K)
with T (K) on the top axis; times in fs; barriers in eV with K (E / k_B) on the opposite axis.
A system with reduced units (``REDUCED_UNITS`` of :mod:`softness.systems`, named by the
product's root attribute ``system`` or its stored config), such as the Kob-Andersen liquid,
also gets its reduced temperature T* = T / (eps / k_B) on every temperature axis (and in the
temperature labels) and barriers in eps on the right axis.

Main figures (Cubuk, Liu, Kaxiras, Schoenholz, arXiv:2008.09681):

1. :func:`relaxation_figure`: tau_alpha and D against 1/T, with an Arrhenius fit to the
   lowest temperatures, so the strong (Arrhenius) regime and the fragile departure from it
   read at a glance.
2. :func:`rearrangement_probability_figure`: P_R(S, T) against 1/T for several softness
   bins, each with its Arrhenius fit P_R = exp(Sigma(S) - DeltaE(S) / T).
3. :func:`barriers_figure`: DeltaE(S) and Sigma(S) with their linear fits.
4. :func:`crossover_figure`: <S>(T) with its linear fit, and the apparent barrier predicted
   from the softness picture against the one measured.

Diagnostics: :func:`pair_correlation_figure` (g(r) per species pair and temperature),
:func:`p_hop_figure` (p_hop histograms with the thresholds), :func:`softness_distribution_figure`
and :func:`classifier_figure` (accuracy against the SVM penalty C).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from softness import units
from softness.errors import SoftnessError
from softness.io import decode, decode_all, open_input, require, system_attribute
from softness.structure import species_pairs

#: Okabe & Ito (2008), "Color universal design": distinguishable with any colour vision.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: Markers of species 0, 1, 2, ... (cycled, like the colours: with 8 colours and 9 markers the
#: first 72 species all differ).
SPECIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")

INVERSE_T_LABEL = "1000 / T (1/K)"
#: Label of the reduced temperature.
REDUCED_T_LABEL = r"$T^*$ (reduced)"


# ---------------------------------------------------------------------------- species

def species_colour(k: int) -> str:
    """The colour of species number ``k`` (Okabe-Ito, cycled): 0 blue, 1 vermillion, 2 green..."""
    return OKABE_ITO[k % len(OKABE_ITO)]


def species_marker(k: int) -> str:
    """The marker of species number ``k`` (cycled)."""
    return SPECIES_MARKERS[k % len(SPECIES_MARKERS)]


def pair_names(species_names) -> list[str]:
    """Names of :func:`species_pairs`, e.g. ``["Si-Si", "Si-O", "O-O"]``."""
    names = list(species_names)
    return [f"{names[a]}-{names[b]}" for a, b in species_pairs(len(names))]


def default_species_names(n_species: int) -> tuple[str, ...]:
    """Names for arrays that come without them: ``("species 0", "species 1", ...)``."""
    return tuple(f"species {k}" for k in range(n_species))


def _species_names_for(species_names, n_species: int, what: str) -> tuple[str, ...]:
    """``species_names`` checked against the number of species of the data (default names if None)."""
    if species_names is None:
        return default_species_names(n_species)
    names = tuple(str(n) for n in species_names)
    if len(names) != n_species:
        raise SoftnessError(f"{what} has {n_species} species but {len(names)} species names "
                            f"({', '.join(names)}) were given.")
    return names


def product_species_names(f, what: str) -> tuple[str, ...]:
    """The species names a product stores in ``/species_names``, indexed by species number."""
    if "species_names" not in f:
        raise SoftnessError(f"{what} file {f.filename} has no '/species_names' naming its species.")
    return decode_all(f["species_names"][()])


def _same_names(rows, what: str) -> tuple[str, ...]:
    """The species names shared by every file of ``rows`` [(path, names)]; a clear error otherwise."""
    (first_path, first), *rest = rows
    for path, names in rest:
        if tuple(names) != tuple(first):
            raise SoftnessError(f"{what} file {path} names its species {', '.join(names)} but {first_path} "
                                f"names them {', '.join(first)}; plot one system at a time.")
    return tuple(first)


def product_system(attrs) -> str | None:
    """The system a product was made for: its root attribute ``system``, else ``system.name`` of the
    config it stores, else None (``attrs``: the root attributes, an h5py AttributeManager or dict)."""
    if "system" in attrs:
        return system_attribute(attrs)
    try:
        cfg = json.loads(decode(attrs.get("config", "{}")))
    except ValueError:
        return None
    system = cfg.get("system") if isinstance(cfg, dict) else None
    name = system.get("name") if isinstance(system, dict) else None
    return None if name is None else str(name)


def reduced_units_of(system: str | None, path=None) -> dict | None:
    """``REDUCED_UNITS`` of the system called ``system`` (None for None or a system in real units).

    Raises:
      SoftnessError: the system is unknown (naming ``path``, the file that names it).
    """
    if system is None:
        return None
    from softness import systems

    if system not in systems.SYSTEMS:
        raise SoftnessError(f"file {path} was made for the unknown system {system!r} (the systems are "
                            f"{', '.join(systems.SYSTEMS)}).")
    return systems.get(system).REDUCED_UNITS


def _reduced_units_of_file(f) -> dict | None:
    return reduced_units_of(product_system(f.attrs), f.filename)


def temperature_label(temperature_K: float, reduced_units: dict | None = None) -> str:
    """``"3000 K"``, or with reduced units ``"56.3 K (T* = 0.47)"``."""
    label = f"{temperature_K:g} K"
    if reduced_units is not None:
        label += f" (T* = {temperature_K / reduced_units['temperature_K']:.3g})"
    return label


# ---------------------------------------------------------------------------- style helpers

def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.0, height: float = 3.3, **kwargs):
    """A figure with a grid of axes (constrained layout), without touching pyplot."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def temperature_colours(temperatures_K):
    """One colour per temperature, dark (cold) to light (hot), from the cividis map."""
    from matplotlib import colormaps

    t = np.asarray(temperatures_K, dtype=float)
    span = np.ptp(t) if t.size > 1 else 1.0
    return [colormaps["cividis"](0.85 * (x - t.min()) / (span or 1.0)) for x in t]


def softness_colours(n: int):
    """One colour per softness bin, hard (dark) to soft (bright), from the viridis map."""
    from matplotlib import colormaps

    return [colormaps["viridis"](0.9 * k / max(1, n - 1)) for k in range(n)]


def species_panels(n_species: int, *, max_cols: int = 4, width: float = 4.0, height: float = 3.3, **kwargs):
    """A figure with one panel per species (rows of at most ``max_cols``).

    Returns:
      (fig, axes): ``axes`` a flat list of ``n_species`` axes (unused grid cells removed).
    """
    ncols = max(1, min(n_species, max_cols))
    nrows = max(1, -(-n_species // ncols))
    fig, grid = new_figure(ncols, nrows, width=width, height=height, **kwargs)
    flat = list(grid.ravel())
    for ax in flat[n_species:]:
        ax.remove()
    return fig, flat[:max(n_species, 0)]


def _inverse(x):
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(x != 0, 1000.0 / x, np.inf)


def _round_inverse_ticks(lo: float, hi: float, unit_K: float, steps) -> np.ndarray | None:
    """Round temperatures (in units of ``unit_K``) for an axis in 1000 / T (K) from lo to hi: the
    first step of ``steps`` that gives two ticks or more, none closer than a tenth of the axis
    (1 / T crowds them at high T); None if no step does."""
    if not (lo > 0 and hi > lo):
        return None
    t_lo, t_hi = 1000.0 / hi / unit_K, 1000.0 / lo / unit_K
    for step in steps:
        temps = np.arange(np.ceil(t_lo / step) * step, t_hi + 1e-9 / unit_K, step)
        x = np.sort(1000.0 / (temps * unit_K))
        if temps.size >= 2 and np.min(np.diff(x)) >= 0.1 * (hi - lo):
            return temps
    return None


def add_temperature_axis(ax, reduced_units: dict | None = None) -> None:
    """A top axis in T (K) above an x axis in 1000 / T; with ``reduced_units`` (a system's
    ``REDUCED_UNITS``) a second one above it in T* = T / (eps / k_B)."""
    top = ax.secondary_xaxis("top", functions=(_inverse, _inverse))
    top.set_xlabel("T (K)")
    lo, hi = sorted(ax.get_xlim())
    temps = _round_inverse_ticks(lo, hi, 1.0, (100, 250, 500, 1000, 2000, 5000))
    if temps is None:  # a cold system (tens of K): finer steps
        temps = _round_inverse_ticks(lo, hi, 1.0, (1, 2, 5, 10, 20, 25, 50))
    if temps is not None:
        top.set_xticks(temps)
    if reduced_units is not None:
        unit = float(reduced_units["temperature_K"])

        def to_reduced(x):
            return _inverse(x) / unit

        def from_reduced(t):
            return _inverse(np.asarray(t, dtype=float) * unit)

        red = ax.secondary_xaxis(1.22, functions=(to_reduced, from_reduced))
        red.set_xlabel(REDUCED_T_LABEL + f" = T / {unit:g} K")
        temps = _round_inverse_ticks(lo, hi, unit, (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10))
        if temps is not None:
            red.set_xticks(temps)


def add_reduced_temperature_axis(ax, reduced_units: dict | None) -> None:
    """Over an x axis in T (K), a top axis in T* = T / (eps / k_B) (nothing without reduced units)."""
    if reduced_units is None:
        return
    unit = float(reduced_units["temperature_K"])
    top = ax.secondary_xaxis("top", functions=(lambda t: np.asarray(t, dtype=float) / unit,
                                               lambda t: np.asarray(t, dtype=float) * unit))
    top.set_xlabel(REDUCED_T_LABEL + f" = T / {unit:g} K")


def add_kelvin_axis(ax, reduced_units: dict | None = None) -> None:
    """A right axis giving an energy axis in eV as E / k_B in K, or with ``reduced_units`` in the
    system's energy unit eps."""
    k_per_ev = units.eV_to_K(1.0)
    if reduced_units is None:
        right = ax.secondary_yaxis("right", functions=(lambda e: e * k_per_ev, lambda k: k / k_per_ev))
        right.set_ylabel("(K)")
        return
    per_ev = k_per_ev / float(reduced_units["temperature_K"])  # eps / k_B in K
    right = ax.secondary_yaxis("right", functions=(lambda e: e * per_ev, lambda r: r / per_ev))
    right.set_ylabel(r"(reduced, $\varepsilon$)")


def save(fig: Figure, *paths) -> list[Path]:
    """Write ``fig`` to every path (format from the suffix: .png at 200 dpi, .pdf, ...).

    Returns:
      The paths written.
    """
    written = []
    for path in paths:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=200)
        written.append(path)
    return written


# ---------------------------------------------------------------------------- small fits

def log_linear_fit(x, y):
    """Least-squares fit ln y = a + b x over the finite, positive points.

    Args:
      x, y: [n] arrays.

    Returns:
      (a, b), or (nan, nan) with fewer than two usable points.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if np.count_nonzero(ok) < 2 or np.ptp(x[ok]) == 0:
        return np.nan, np.nan
    b, a = np.polyfit(x[ok], np.log(y[ok]), 1)
    return float(a), float(b)


def arrhenius_fit_lowest(temperatures_K, values, n_lowest: int = 3):
    """Arrhenius fit ln v = a + b / T to the ``n_lowest`` lowest temperatures with finite data.

    Returns:
      (a, b, T_used): b in K (b > 0 for a time growing on cooling, b < 0 for a rate).
    """
    t = np.asarray(temperatures_K, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    order = np.argsort(t[ok])[:n_lowest]
    t_used = t[ok][order]
    a, b = log_linear_fit(1.0 / t_used, v[ok][order])
    return a, b, t_used


# ---------------------------------------------------------------------------- figure 1: relaxation

def relaxation_figure(temperatures_K, tau_alpha_fs, D_A2_per_fs, *, D_err_A2_per_fs=None,
                      tau_alpha_reached=None, tau_fits=None, tau_softness=None,
                      n_arrhenius: int = 3, species_names=None, reduced_units=None) -> Figure:
    """tau_alpha and D against 1000 / T, per species, with the strong and fragile fits.

    tau_alpha: with ``tau_fits`` (from the Arrhenius product), the fitted law with a kink at the
    crossover temperature T_x (barrier E_low below it, E_high above; dashed) and T_x itself;
    otherwise an Arrhenius law fitted to the ``n_arrhenius`` lowest temperatures. D: Arrhenius
    fits to the ``n_arrhenius`` lowest temperatures. A strong liquid stays on its Arrhenius line,
    a fragile one leaves it.

    Args:
      temperatures_K: [nT].
      tau_alpha_fs: [nT, n_species] alpha-relaxation times (NaN where not reached).
      D_A2_per_fs: [nT, n_species] diffusion constants.
      D_err_A2_per_fs: [nT, n_species] their errors, optional.
      tau_alpha_reached: [nT, n_species] bool, optional; unreached points are left out.
      tau_fits: per species (list of n_species) a dict with ``ln_tau0``, ``E_low_K``, ``E_high_K``,
        ``T_x_K`` and ``T_x_K_err`` (softness.arrhenius.kinked_arrhenius); NaN entries are
        skipped.
      tau_softness: per species (list of n_species) a dict with ``tau_S_fs`` [nT], the relaxation time
        the softness model predicts (softness.arrhenius.predicted_mean_P_R), and ``offset``, the
        fitted ln tau_alpha - ln tau_S; drawn as tau_S e^offset (dotted), optional.
      n_arrhenius: number of lowest temperatures in the fits made here.
      species_names: the name of each species (default "species 0", ...).
      reduced_units: the system's ``REDUCED_UNITS``, optional: adds a T* axis.

    Returns:
      The figure (two panels, one series per species).
    """
    t = np.asarray(temperatures_K, dtype=float)
    tau = np.asarray(tau_alpha_fs, dtype=float).reshape(t.size, -1)
    n_sp = tau.shape[1]
    names = _species_names_for(species_names, n_sp, "the relaxation data")
    diff = np.asarray(D_A2_per_fs, dtype=float).reshape(t.size, n_sp)
    d_err = (None if D_err_A2_per_fs is None
             else np.asarray(D_err_A2_per_fs, dtype=float).reshape(t.size, n_sp))
    reached = (np.isfinite(tau) if tau_alpha_reached is None
               else np.asarray(tau_alpha_reached, dtype=bool).reshape(t.size, n_sp))
    x = 1000.0 / t
    x_line = np.linspace(x.min() * 0.97, x.max() * 1.03, 200)
    t_line = 1000.0 / x_line
    fig, axes = new_figure(2, width=4.4, height=3.6)
    ax_tau, ax_d = axes[0]
    for s in range(n_sp):
        c, m, name = species_colour(s), species_marker(s), names[s]
        ok = reached[:, s] & np.isfinite(tau[:, s])
        ax_tau.plot(x[ok], tau[ok, s], m, color=c, label=name)
        fit = None if tau_fits is None else tau_fits[s]
        kinked = ("ln_tau0", "E_low_K", "E_high_K", "T_x_K")
        if fit is not None and np.all(np.isfinite([fit.get(k, np.nan) for k in kinked])):
            x_x = 1000.0 / fit["T_x_K"]  # in 1000 / T, like x_line
            ln_tau = (fit["ln_tau0"] + fit["E_low_K"] * np.maximum(x_line, x_x) / 1000.0
                      + fit["E_high_K"] * np.minimum(x_line - x_x, 0.0) / 1000.0)
            ax_tau.plot(x_line, np.exp(ln_tau), "--", color=c, lw=1,
                        label=f"{name} fit: {_ev(fit['E_low_K']):.2f} eV below T$_x$, "
                              f"{_ev(fit['E_high_K']):.2f} eV above")
        elif fit is None:
            a, b, used = arrhenius_fit_lowest(t[ok], tau[ok, s], n_arrhenius)
            if np.isfinite(b):
                ax_tau.plot(x_line, np.exp(a + b / t_line), "--", color=c, lw=1,
                            label=f"{name} Arrhenius, {used.size} lowest T: {_ev(b):.2f} eV")
        pred = None if tau_softness is None else tau_softness[s]
        if pred is not None and np.isfinite(pred["offset"]) and np.any(np.isfinite(pred["tau_S_fs"])):
            ax_tau.plot(x, np.asarray(pred["tau_S_fs"], dtype=float) * np.exp(pred["offset"]), ":", color=c,
                        lw=1.2, label=f"{name} from softness, " + r"$\tau_S\,e^{c}$")
        if fit is not None and np.isfinite(fit.get("T_x_K", np.nan)) and fit["T_x_K"] > 0:
            err = fit.get("T_x_K_err", np.nan)
            ax_tau.axvline(1000.0 / fit["T_x_K"], color=c, lw=0.8, alpha=0.6,
                           label=f"{name} crossover T$_x$ = {fit['T_x_K']:.0f}"
                                 + (f" ± {err:.0f} K" if np.isfinite(err) else " K"))
        if d_err is not None:
            ax_d.errorbar(x, diff[:, s], yerr=d_err[:, s], fmt=m, color=c, label=name)
        else:
            ax_d.plot(x, diff[:, s], m, color=c, label=name)
        a, b, used = arrhenius_fit_lowest(t, diff[:, s], n_arrhenius)
        if np.isfinite(b):
            ax_d.plot(x_line, np.exp(a + b / t_line), "--", color=c, lw=1,
                      label=f"{name} Arrhenius, {used.size} lowest T: {_ev(-b):.2f} eV")
    ax_tau.set_ylabel(r"$\tau_\alpha$ (fs)")
    ax_d.set_ylabel(r"$D$ ($\mathrm{\AA^2}$/fs)")
    for ax in (ax_tau, ax_d):
        ax.set_yscale("log")
        ax.set_xlabel(INVERSE_T_LABEL)
        add_temperature_axis(ax, reduced_units)
        ax.legend(fontsize=6.5, frameon=False)
    ax_tau.set_title(r"$\alpha$-relaxation time", fontsize=10)
    ax_d.set_title("self-diffusion", fontsize=10)
    return fig


def _ev(e_K):
    """An energy in K (E / k_B) in eV."""
    return e_K / units.eV_to_K(1.0)


def read_dynamics(paths) -> dict:
    """Per-temperature results of dynamics products, sorted by temperature.

    Returns:
      dict of arrays: ``temperature_K`` [nT], ``tau_alpha_fs``, ``tau_alpha_reached``,
      ``D_A2_per_fs``, ``D_err_A2_per_fs`` [nT, n_species], and ``species_names`` (the products'
      ``/species_names``, the same in every file) and ``reduced_units`` (of the products'
      system, or None) (empty dict without files).
    """
    rows, names, reduced = [], [], None
    for path in paths:
        with open_input(path, "dynamics") as f:
            require(f, "tau_alpha_fs", "D_A2_per_fs", what="dynamics")
            names.append((path, product_species_names(f, "dynamics")))
            reduced = reduced if rows else _reduced_units_of_file(f)
            tau = f["tau_alpha_fs"][()]
            if tau.shape != (len(names[-1][1]),):
                raise SoftnessError(f"dynamics file {path} has tau_alpha_fs of shape {tau.shape} for its "
                                    f"{len(names[-1][1])} species.")
            rows.append({
                "temperature_K": float(f.attrs["temperature_K"]),
                "tau_alpha_fs": tau,
                "tau_alpha_reached": (f["tau_alpha_reached"][()] if "tau_alpha_reached" in f
                                      else np.isfinite(tau)),
                "D_A2_per_fs": f["D_A2_per_fs"][()],
                "D_err_A2_per_fs": (f["D_err_A2_per_fs"][()] if "D_err_A2_per_fs" in f
                                    else np.full(tau.shape, np.nan)),
            })
    if not rows:
        return {}
    species_names = _same_names(names, "dynamics")
    rows.sort(key=lambda r: r["temperature_K"])
    out = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    out["species_names"] = species_names
    out["reduced_units"] = reduced
    return out


def relaxation_from_files(dynamics_paths, arrhenius_path=None, **kwargs) -> Figure:
    """:func:`relaxation_figure` from dynamics products (one per temperature) and, if given,
    the tau_alpha fits of the Arrhenius product (which must name the same species)."""
    d = read_dynamics(dynamics_paths)
    if not d:
        raise SoftnessError("no dynamics files to plot.")
    names = d["species_names"]
    tau_fits = tau_softness = None
    if arrhenius_path is not None:
        a = read_arrhenius(arrhenius_path)
        if a["species_names"] != names:
            raise SoftnessError(f"arrhenius file {arrhenius_path} names its species "
                                f"{', '.join(a['species_names'])} but the dynamics files name them "
                                f"{', '.join(names)}.")
        tau_fits = [{key: a[f"tau_fit/{key}"][s] for key in ("ln_tau0", "E_low_K", "E_high_K", "T_x_K",
                                                              "T_x_K_err")}
                    for s in range(len(names))]
        if "closure/tau_S_fs" in a and np.array_equal(a["temperature_K"], d["temperature_K"]):
            tau_softness = [{"tau_S_fs": a["closure/tau_S_fs"][s], "offset": a["closure/tau_alpha/offset"][s]}
                            for s in range(len(names))]
    kwargs.setdefault("reduced_units", d["reduced_units"])
    return relaxation_figure(d["temperature_K"], d["tau_alpha_fs"], d["D_A2_per_fs"],
                             D_err_A2_per_fs=d["D_err_A2_per_fs"], tau_alpha_reached=d["tau_alpha_reached"],
                             tau_fits=tau_fits, tau_softness=tau_softness, species_names=names, **kwargs)


# ---------------------------------------------------------------------------- the Arrhenius product

#: Datasets of the Arrhenius product (softness/arrhenius.py) the figures use.
ARRHENIUS_KEYS = (
    "temperature_K", "P_R", "ln_P_R_err", "usable", "bins/S_mean",
    "bin_fit/Sigma", "bin_fit/Sigma_err", "bin_fit/DeltaE_K", "bin_fit/DeltaE_K_err",
    "lines/e0_K", "lines/e1_K", "lines/Sigma0", "lines/Sigma1",
    "mean_softness/mean", "mean_softness/err", "mean_softness/a", "mean_softness/b_per_K",
    "crossover/T_mid_K", "crossover/E_app_rate_K", "crossover/E_app_rate_K_err", "crossover/E_app_tau_K",
    "tau_fit/ln_tau0", "tau_fit/E_low_K", "tau_fit/E_high_K", "tau_fit/T_x_K", "tau_fit/T_x_K_err",
)


def read_arrhenius(path) -> dict:
    """The arrays of an Arrhenius product the figures need (per-species arrays lead with
    [n_species]), its ``species_names`` (tuple) and the ``reduced_units`` of its system (or None)."""
    with open_input(path, "arrhenius") as f:
        require(f, *ARRHENIUS_KEYS, what="arrhenius")
        out = {key: f[key][()] for key in ARRHENIUS_KEYS}
        out["species_names"] = names = product_species_names(f, "arrhenius")
        if out["P_R"].shape[0] != len(names):
            raise SoftnessError(f"arrhenius file {path} has P_R for {out['P_R'].shape[0]} species but names "
                                f"{len(names)} ({', '.join(names)}).")
        out["reduced_units"] = _reduced_units_of_file(f)
        out["T_train_K"] = float(f.attrs.get("T_train_K", np.nan))
        out["P_R_window_fs"] = float(f.attrs.get("P_R_window_fs", np.nan))
        # Temperatures with no cage jumps to count (absent from older products: none flagged).
        out["flagged_temperature"] = (f["flagged_temperature"][()] if "flagged_temperature" in f
                                      else np.zeros((len(names), out["temperature_K"].size), bool))
        for key in ("closure/tau_S_fs", "closure/tau_alpha/offset",  # the relaxation from softness
                    "crossover/E_app_tau_K_err"):
            if key in f:
                out[key] = f[key][()]
    return out


# ---------------------------------------------------------------------------- figure 2: P_R(S, T)

def rearrangement_probability_figure(temperatures_K, S_centres, P_R, *, ln_P_R_err=None, usable=None,
                                     Sigma=None, DeltaE_K=None, flagged=None, window_fs=None,
                                     max_bins: int = 6, species_names=None, reduced_units=None) -> Figure:
    """P_R(S, T) against 1000 / T for several softness bins, per species, with Arrhenius fits.

    Args:
      temperatures_K: [nT].
      S_centres: [n_species, nS] softness of each bin.
      P_R: [n_species, nT, nS] probability that an atom starts a rearrangement within the P_R window after
        its structure is taken (NaN: no data).
      ln_P_R_err: [n_species, nT, nS] errors of ln P_R, optional (bars from P e^-err to P e^+err).
      usable: [n_species, nT, nS] bool, optional: points with enough events to enter the fits (filled);
        others are drawn open.
      Sigma, DeltaE_K: [n_species, nS] fitted ln P_R = Sigma - DeltaE / T per bin (NaN: not fitted).
      flagged: [n_species, nT] bool, optional: temperatures with no cage jumps to count (tau_alpha not
        well above t_R), drawn open in grey whatever their counts.
      window_fs: the P_R window, named on the axis, optional.
      max_bins: at most this many bins per species, evenly spread over those with data.
      species_names: the name of each species (default "species 0", ...).
      reduced_units: the system's ``REDUCED_UNITS``, optional: adds a T* axis.

    Returns:
      The figure (one panel per species).
    """
    t = np.asarray(temperatures_K, dtype=float)
    p_all = np.asarray(P_R, dtype=float)
    s_all = np.asarray(S_centres, dtype=float)
    n_sp = s_all.shape[0] if s_all.ndim == 2 else p_all.shape[0] if p_all.ndim == 3 else 1
    names = _species_names_for(species_names, n_sp, "the P_R data")
    s_all = s_all.reshape(n_sp, -1)
    n_s = s_all.shape[1]
    p_all = p_all.reshape(n_sp, t.size, n_s)
    x = 1000.0 / t
    x_line = np.linspace(x.min() * 0.97, x.max() * 1.03, 100)
    fig, axes = species_panels(n_sp, width=4.4, height=3.8)
    no_jumps = np.zeros((n_sp, t.size), bool) if flagged is None else np.asarray(flagged, bool)
    no_jumps = no_jumps.reshape(n_sp, t.size)
    for sp, ax in enumerate(axes):
        p = p_all[sp]
        grey_label = "no cage jumps (not fitted)"
        with_data = np.flatnonzero(np.sum(np.isfinite(p) & (p > 0), axis=0) > 0)
        if with_data.size > max_bins:
            pick = np.unique(np.round(np.linspace(0, with_data.size - 1, max_bins)).astype(int))
            with_data = with_data[pick]
        for colour, k in zip(softness_colours(with_data.size), with_data, strict=True):
            use = (np.ones(t.size, bool) if usable is None
                   else np.asarray(usable, bool).reshape(n_sp, t.size, n_s)[sp, :, k])
            if ln_P_R_err is not None:
                e = np.asarray(ln_P_R_err, dtype=float).reshape(n_sp, t.size, n_s)[sp, :, k]
                yerr = np.stack([p[:, k] * (1 - np.exp(-e)), p[:, k] * (np.exp(e) - 1)])
            else:
                yerr = None
            off = no_jumps[sp]
            for sel, edge, face in ((use & ~off, colour, colour), (~use & ~off, colour, "none"),
                                    (off, "0.6", "none")):
                if np.any(sel):
                    label = f"S = {s_all[sp, k]:+.2f}" if face is colour else None
                    if edge == "0.6":
                        label, grey_label = grey_label, None
                    ax.errorbar(x[sel], p[sel, k], yerr=None if yerr is None else yerr[:, sel], fmt="o",
                                ms=4, color=edge, mfc=face, label=label)
            if Sigma is not None and DeltaE_K is not None:
                sig, de = np.asarray(Sigma)[sp, k], np.asarray(DeltaE_K)[sp, k]
                if np.isfinite(sig) and np.isfinite(de):
                    ax.plot(x_line, np.exp(sig - de * x_line / 1000.0), "-", color=colour, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel(INVERSE_T_LABEL)
        add_temperature_axis(ax, reduced_units)
        ax.set_title(names[sp], fontsize=10)
        ax.legend(fontsize=6.5, frameon=False, title="softness bin", title_fontsize=7)
    axes[0].set_ylabel(r"$P_R(S, T)$" + (f" (rearrangement starts within {window_fs:g} fs)"
                                             if window_fs is not None and np.isfinite(window_fs) else ""))
    return fig


def rearrangement_probability_from_file(arrhenius_path, **kwargs) -> Figure:
    """:func:`rearrangement_probability_figure` from the Arrhenius product."""
    a = read_arrhenius(arrhenius_path)
    return rearrangement_probability_figure(a["temperature_K"], a["bins/S_mean"], a["P_R"],
                                            ln_P_R_err=a["ln_P_R_err"], usable=a["usable"],
                                            Sigma=a["bin_fit/Sigma"], DeltaE_K=a["bin_fit/DeltaE_K"],
                                            flagged=a["flagged_temperature"], window_fs=a["P_R_window_fs"],
                                            species_names=a["species_names"],
                                            **{"reduced_units": a["reduced_units"], **kwargs})


# ---------------------------------------------------------------------------- figure 3: DeltaE(S), Sigma(S)

def barriers_figure(S_centres, DeltaE_K, Sigma, *, DeltaE_err_K=None, Sigma_err=None, e0_K=None, e1_K=None,
                    Sigma0=None, Sigma1=None, species_names=None, reduced_units=None) -> Figure:
    """The barrier DeltaE(S) and the prefactor Sigma(S) of each species, with linear fits.

    Args:
      S_centres: [n_species, nS] softness of the bins.
      DeltaE_K, Sigma: [n_species, nS] per-bin Arrhenius parameters (barrier as E / k_B), NaN if
        not fitted.
      DeltaE_err_K, Sigma_err: [n_species, nS] errors, optional.
      e0_K, e1_K: [n_species] DeltaE = e0 - e1 S, optional.
      Sigma0, Sigma1: [n_species] Sigma = Sigma0 - Sigma1 S, optional.
      species_names: the name of each species (default "species 0", ...).
      reduced_units: the system's ``REDUCED_UNITS``, optional: the right axis in eps, not K.

    Returns:
      The figure (two panels, one series per species; the barrier in eV with K on the right axis).
    """
    s = np.asarray(S_centres, dtype=float)
    s = s.reshape(s.shape[0] if s.ndim == 2 else 1, -1)
    n_sp = s.shape[0]
    names = _species_names_for(species_names, n_sp, "the barrier data")

    def per_species(v):
        return None if v is None else np.asarray(v, dtype=float).reshape(n_sp, -1)

    de, de_err, sig, sig_err = (per_species(v) for v in (DeltaE_K, DeltaE_err_K, Sigma, Sigma_err))
    fig, axes = new_figure(2, width=4.2, height=3.4)
    ax_e, ax_s = axes[0]
    for sp in range(n_sp):
        c, m, name = species_colour(sp), species_marker(sp), names[sp]
        # The lines span the bins that entered the fits, not the whole softness range.
        fitted = np.isfinite(s[sp]) & np.isfinite(de[sp]) & np.isfinite(sig[sp])
        s_line = np.linspace(s[sp][fitted].min(), s[sp][fitted].max(), 50) if fitted.any() else np.zeros(0)
        ax_e.errorbar(s[sp], _ev(de[sp]), yerr=None if de_err is None else _ev(de_err[sp]), fmt=m, color=c,
                      label=f"{name}, per bin")
        ax_s.errorbar(s[sp], sig[sp], yerr=None if sig_err is None else sig_err[sp], fmt=m, color=c,
                      label=f"{name}, per bin")
        if e0_K is not None and np.isfinite(e0_K[sp]) and np.isfinite(e1_K[sp]):
            ax_e.plot(s_line, _ev(e0_K[sp] - e1_K[sp] * s_line), "-", color=c, lw=1,
                      label=rf"{name}: $\Delta E = {_ev(e0_K[sp]):.2f} - {_ev(e1_K[sp]):.2f}\,S$ eV")
        if Sigma0 is not None and np.isfinite(Sigma0[sp]) and np.isfinite(Sigma1[sp]):
            ax_s.plot(s_line, Sigma0[sp] - Sigma1[sp] * s_line, "-", color=c, lw=1,
                      label=rf"{name}: $\Sigma = {Sigma0[sp]:.2f} - {Sigma1[sp]:.2f}\,S$")
    ax_e.set_ylabel(r"barrier $\Delta E(S)$ (eV)")
    add_kelvin_axis(ax_e, reduced_units)
    ax_s.set_ylabel(r"$\Sigma(S)$ (ln prefactor)")
    for ax in (ax_e, ax_s):
        ax.set_xlabel("softness S")
        ax.legend(fontsize=6.5, frameon=False)
    return fig


def barriers_from_file(arrhenius_path) -> Figure:
    """:func:`barriers_figure` from the Arrhenius product."""
    a = read_arrhenius(arrhenius_path)
    return barriers_figure(a["bins/S_mean"], a["bin_fit/DeltaE_K"], a["bin_fit/Sigma"],
                           DeltaE_err_K=a["bin_fit/DeltaE_K_err"], Sigma_err=a["bin_fit/Sigma_err"],
                           e0_K=a["lines/e0_K"], e1_K=a["lines/e1_K"], Sigma0=a["lines/Sigma0"],
                           Sigma1=a["lines/Sigma1"], species_names=a["species_names"],
                           reduced_units=a["reduced_units"])


# ---------------------------------------------------------------------------- figure 4: crossover

def predicted_apparent_barrier(temperature_K, e0_K, e1_K, Sigma1, a, b):
    """E_app(T) = (e0 - e1 a) - Sigma1 b T^2 (K): the softness picture's apparent barrier at <S>."""
    t = np.asarray(temperature_K, dtype=float)
    return e0_K - e1_K * a - Sigma1 * b * t**2


def crossover_figure(temperatures_K, mean_S, *, mean_S_err=None, a=None, b=None, e0_K=None, e1_K=None,
                     Sigma1=None, T_mid_K=None, E_app_rate_K=None, E_app_rate_err_K=None,
                     E_app_tau_K=None, E_app_tau_err_K=None, species_names=None,
                     reduced_units=None) -> Figure:
    """<S>(T) with its linear fit, and the apparent barrier measured against the prediction.

    Args:
      temperatures_K: [nT].
      mean_S, mean_S_err: [n_species, nT] mean softness per species and its error.
      a, b: [n_species] <S> = a + b T.
      e0_K, e1_K, Sigma1: [n_species] the linear fits of DeltaE(S) and Sigma(S).
      T_mid_K: [nT - 1] temperatures of the measured barriers (secants between neighbours).
      E_app_rate_K, E_app_rate_err_K: [n_species, nT - 1] -d ln(rearrangement rate) / d(1/T).
      E_app_tau_K, E_app_tau_err_K: [n_species, nT - 1] d ln(tau_alpha) / d(1/T) and its error.
      species_names: the name of each species (default "species 0", ...).
      reduced_units: the system's ``REDUCED_UNITS``, optional: T* axes on top, barriers in eps
        on the right.

    Returns:
      The figure (two panels, one series per species; barriers in eV with K on the right axis).
    """
    t = np.asarray(temperatures_K, dtype=float)
    mean_s = np.asarray(mean_S, dtype=float).reshape(-1, t.size)
    n_sp = mean_s.shape[0]
    names = _species_names_for(species_names, n_sp, "the mean softness data")
    t_line = np.linspace(t.min(), t.max(), 100)
    fig, axes = new_figure(2, width=4.3, height=3.5)
    ax_s, ax_e = axes[0]
    for sp in range(n_sp):
        c, m, name = species_colour(sp), species_marker(sp), names[sp]
        ax_s.errorbar(t, mean_s[sp], yerr=None if mean_S_err is None else np.asarray(mean_S_err)[sp], fmt=m,
                      color=c, label=name)
        if a is not None and np.isfinite(a[sp]) and np.isfinite(b[sp]):
            ax_s.plot(t_line, a[sp] + b[sp] * t_line, "-", color=c, lw=1,
                      label=rf"{name}: $\langle S\rangle = {a[sp]:.2f} + {b[sp] * 1e3:.3f}\,T/(1000\,K)$")
        if E_app_rate_K is not None:
            err = None if E_app_rate_err_K is None else _ev(np.asarray(E_app_rate_err_K)[sp])
            ax_e.errorbar(T_mid_K, _ev(np.asarray(E_app_rate_K)[sp]), yerr=err, fmt=m, color=c,
                          label=f"{name}, from the rearrangement rate")
        if E_app_tau_K is not None:
            err = None if E_app_tau_err_K is None else _ev(np.asarray(E_app_tau_err_K)[sp])
            ax_e.errorbar(T_mid_K, _ev(np.asarray(E_app_tau_K)[sp]), yerr=err, fmt=m, color=c, mfc="none",
                          label=rf"{name}, from $\tau_\alpha$")
        if all(v is not None for v in (e0_K, e1_K, Sigma1, a, b)):
            e = predicted_apparent_barrier(t_line, e0_K[sp], e1_K[sp], Sigma1[sp], a[sp], b[sp])
            if np.all(np.isfinite(e)):
                ax_e.plot(t_line, _ev(e), "-", color=c, lw=1.2, label=f"{name}, softness prediction")
    ax_s.set_xlabel("T (K)")
    ax_s.set_ylabel(r"mean softness $\langle S \rangle$")
    ax_s.legend(fontsize=6.5, frameon=False)
    ax_e.set_xlabel("T (K)")
    ax_e.set_ylabel(r"apparent barrier $E_{app}(T)$ (eV)")
    add_kelvin_axis(ax_e, reduced_units)
    ax_e.legend(fontsize=6.5, frameon=False)
    for ax in (ax_s, ax_e):
        add_reduced_temperature_axis(ax, reduced_units)
    return fig


def crossover_from_file(arrhenius_path) -> Figure:
    """:func:`crossover_figure` from the Arrhenius product."""
    a = read_arrhenius(arrhenius_path)
    return crossover_figure(a["temperature_K"], a["mean_softness/mean"], mean_S_err=a["mean_softness/err"],
                            a=a["mean_softness/a"], b=a["mean_softness/b_per_K"], e0_K=a["lines/e0_K"],
                            e1_K=a["lines/e1_K"], Sigma1=a["lines/Sigma1"], T_mid_K=a["crossover/T_mid_K"],
                            E_app_rate_K=a["crossover/E_app_rate_K"],
                            E_app_rate_err_K=a["crossover/E_app_rate_K_err"],
                            E_app_tau_K=a["crossover/E_app_tau_K"],
                            E_app_tau_err_K=a.get("crossover/E_app_tau_K_err"),
                            species_names=a["species_names"], reduced_units=a["reduced_units"])


# ---------------------------------------------------------------------------- g(r)

def pair_correlation(positions, box, species, *, r_max_A: float | None = None, dr_A: float = 0.02,
                     atom_chunk: int = 256, n_species: int | None = None):
    """Partial radial distribution functions g_ab(r) of a periodic orthorhombic system.

    g_ab(r) = V / (N_a N_b') <sum_{i in a} sum_{j in b, j != i} delta(r - r_ij)> / (4 pi r^2),
    with N_b' = N_b - 1 when a = b, averaged over frames (minimum image, so r_max is at most
    half the smallest box edge).

    Args:
      positions: [F, N, 3] or [N, 3] positions (Angstrom).
      box: [F, 3] or [3] box edges.
      species: [N] species numbers 0 ... n_species - 1.
      r_max_A: largest r (default and upper bound: half the smallest edge).
      dr_A: bin width.
      atom_chunk: rows of the distance matrix held at once.
      n_species: number of species (default: the largest species number + 1); a pair with a
        species without atoms (or a single atom of a like pair) is all zero.

    Returns:
      r [nbins] bin centres and g [n_pairs, nbins], one row per unordered pair of
      :func:`species_pairs` (for two species: 0-0, 0-1, 1-1).
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    n_frames, n = pos.shape[:2]
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (n_frames, 3))
    species = np.asarray(species, dtype=np.int64)
    n_sp = int(species.max()) + 1 if n_species is None and species.size else int(n_species or 1)
    if species.size and (species.min() < 0 or species.max() >= n_sp):
        raise SoftnessError(f"species numbers {species.min()}..{species.max()} do not fit {n_sp} species.")
    pairs = species_pairs(n_sp)
    r_half = 0.5 * float(box.min())
    r_max = r_half if r_max_A is None else min(float(r_max_A), r_half)
    n_bins = max(1, int(r_max / dr_A))
    edges = np.linspace(0.0, n_bins * dr_A, n_bins + 1)
    # pair index per (species_i, species_j), symmetric: a-b and b-a share a row
    pair_of = np.zeros((n_sp, n_sp), dtype=np.int64)
    for p, (a, b) in enumerate(pairs):
        pair_of[a, b] = pair_of[b, a] = p
    counts = np.zeros(len(pairs) * n_bins, dtype=np.float64)
    volume = 0.0
    for f in range(n_frames):
        L = box[f]
        volume += np.prod(L)
        for start in range(0, n, atom_chunk):
            stop = min(n, start + atom_chunk)
            d = pos[f, start:stop, None, :] - pos[f, None, :, :]
            d -= L * np.round(d / L)
            r = np.sqrt(np.sum(d * d, axis=-1))
            r[np.arange(stop - start), np.arange(start, stop)] = 2.0 * r_max + 1.0  # no self pairs
            k = np.floor(r / dr_A).astype(np.int64)
            inside = k < n_bins
            pair = pair_of[species[start:stop, None], species[None, :]]
            counts += np.bincount((pair * n_bins + k)[inside], minlength=len(pairs) * n_bins)
    counts = counts.reshape(len(pairs), n_bins)
    volume /= n_frames
    n_s = np.bincount(species, minlength=n_sp).astype(np.float64)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = np.zeros((len(pairs), n_bins))
    for p, (a, b) in enumerate(pairs):
        # ordered pairs (i in a, j in b) and (i in b, j in a) both land in the a-b row
        n_pairs = n_s[a] * (n_s[b] - 1) if a == b else 2 * n_s[a] * n_s[b]
        if n_pairs > 0:
            g[p] = counts[p] / n_frames / (n_pairs / volume * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


def pair_correlation_figure(temperatures_K, r_A, g, *, species_names=None, reduced_units=None) -> Figure:
    """g(r) of every species pair (for silica Si-Si, Si-O and O-O) at every temperature.

    Args:
      temperatures_K: [nT].
      r_A: [nbins] bin centres (Angstrom).
      g: [nT, n_pairs, nbins], the pairs of :func:`species_pairs`.
      species_names: the name of each species (default "species 0", ...); n_pairs must be
        n (n + 1) / 2 for n species.
      reduced_units: the system's ``REDUCED_UNITS``, optional: T* in the temperature labels.

    Returns:
      The figure (one panel per pair, at most three a row).
    """
    t = np.asarray(temperatures_K, dtype=float)
    g = np.asarray(g, dtype=float)
    n_pairs = g.shape[1]
    n_sp = int(round((np.sqrt(8 * n_pairs + 1) - 1) / 2))
    if n_sp * (n_sp + 1) // 2 != n_pairs:
        raise SoftnessError(f"g(r) has {n_pairs} rows, not the n (n + 1) / 2 pairs of n species.")
    names = pair_names(_species_names_for(species_names, n_sp, "the g(r) data"))
    fig, axes = species_panels(n_pairs, max_cols=3, width=3.3, sharey=False)
    for p, ax in enumerate(axes):
        for k, colour in enumerate(temperature_colours(t)):
            ax.plot(r_A, g[k, p], color=colour, lw=1.2, label=temperature_label(t[k], reduced_units))
        ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
        ax.set_xlabel(r"$r$ ($\mathrm{\AA}$)")
        ax.set_title(names[p], fontsize=10)
    for ax in axes[::3]:
        ax.set_ylabel(r"$g(r)$")
    axes[min(2, n_pairs - 1)].legend(fontsize=7, frameon=False)
    return fig


def pair_correlation_from_files(trajectory_paths, *, n_frames: int = 20, r_max_A: float = 8.0,
                                dr_A: float = 0.05) -> Figure:
    """:func:`pair_correlation_figure` from trajectories (which must name the same species), averaging
    ``n_frames`` frames spread over each run, for every pair of the species they name."""
    from softness.trajectory import count_frames, read_trajectory

    rows, names, reduced = [], [], None
    for path in trajectory_paths:
        total = count_frames(path)
        frames = np.unique(np.linspace(0, total - 1, min(n_frames, total)).astype(int))
        traj = read_trajectory(path, frames, require_images=False)
        names.append((path, traj.species_names))
        reduced = reduced if rows else reduced_units_of(product_system(traj.attrs), path)
        r, g = pair_correlation(traj.positions, traj.box, traj.species, r_max_A=r_max_A, dr_A=dr_A,
                                n_species=len(traj.species_names))
        rows.append((float(traj.attrs.get("temperature_K", np.nan)), g))
    if not rows:
        raise SoftnessError("no trajectory files to plot.")
    species_names = _same_names(names, "trajectory")
    rows.sort(key=lambda row: row[0])
    return pair_correlation_figure([row[0] for row in rows], r, np.array([row[1] for row in rows]),
                                   species_names=species_names, reduced_units=reduced)


# ---------------------------------------------------------------------------- p_hop

def p_hop_figure(hops_paths) -> Figure:
    """Histograms of p_hop per species and temperature with p_c and p_quiet marked
    (:func:`softness.hops.plot_p_hop_histogram`)."""
    from softness.hops import plot_p_hop_histogram

    return plot_p_hop_histogram(list(hops_paths))


# ---------------------------------------------------------------------------- softness distributions

def bulk_range(samples, width: float = 6.0) -> tuple[float, float]:
    """The range that holds the bulk of every sample: the union over samples of median +/- width
    robust standard deviations (interquartile range / 1.349), clipped to the data.

    Unlike pooled percentiles it ignores a tail of outliers however heavy, as long as it is
    separated from the bulk, and keeps the whole bulk of each sample, however far apart the
    samples lie.

    Args:
      samples: list of 1-d arrays (NaN-free).
      width: half-width in robust standard deviations.

    Returns:
      (lo, hi).
    """
    los, his = [], []
    for v in samples:
        if v.size == 0:
            continue
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        sigma = (q3 - q1) / 1.349
        los.append(max(med - width * sigma, v.min()))
        his.append(min(med + width * sigma, v.max()))
    return (min(los), max(his)) if los else (0.0, 1.0)


def softness_distribution_figure(temperatures_K, softness_by_T, species, *, bins=60, species_names=None,
                                 reduced_units=None) -> Figure:
    """The distribution of softness per species at every temperature.

    Args:
      temperatures_K: [nT].
      softness_by_T: list of [F, N] (or [M]) softness arrays, one per temperature.
      species: [N] species numbers, or a list of them (one per temperature).
      bins: number of bins or shared bin edges. A number of bins spans the bulk of every
        temperature's distribution (:func:`bulk_range`); the share of each temperature's atoms
        beyond the axis is given in the legend, so a tail of rare outliers (an atom far
        outside the structures seen in training has a large |S|) is reported without squashing
        the distributions into a few bins.
      species_names: the name of each species (default: "species 0", ... up to the largest
        species number).
      reduced_units: the system's ``REDUCED_UNITS``, optional: T* in the temperature labels.

    Returns:
      The figure (one panel per species), with <S> of each temperature marked (the mean over
      all atoms, outliers included).
    """
    t = np.asarray(temperatures_K, dtype=float)
    species_list = species if isinstance(species, list | tuple) else [species] * len(softness_by_T)
    n_sp = (len(species_names) if species_names is not None
            else max((int(np.max(sp)) + 1 for sp in species_list if np.size(sp)), default=1))
    names = _species_names_for(species_names, n_sp, "the softness data")
    values = [[np.asarray(sv)[..., np.asarray(sp) == s].ravel() for sv, sp in
               zip(softness_by_T, species_list, strict=True)] for s in range(n_sp)]
    fig, axes = species_panels(n_sp, sharey=True)
    for s, ax in enumerate(axes):
        finite = [v[np.isfinite(v)] for v in values[s]]
        everything = np.concatenate(finite) if finite else np.zeros(0)
        edges = bins
        if np.ndim(bins) == 0 and everything.size:
            lo, hi = bulk_range(finite)
            edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.histogram_bin_edges(everything, bins)
        for v, temp, colour in zip(finite, t, temperature_colours(t), strict=True):
            if v.size == 0:
                continue
            inside = (v >= edges[0]) & (v <= edges[-1])
            # Normalised over all atoms, so that the area shows the share inside the axis.
            counts, e = np.histogram(v[inside], bins=edges)
            off_axis = np.mean(~inside)
            label = (temperature_label(temp, reduced_units)
                     + (f", {100 * off_axis:.1f} % off axis" if off_axis >= 1e-3 else ""))
            ax.stairs(counts / (v.size * np.diff(e)), e, color=colour, lw=1.3, label=label)
            ax.axvline(np.mean(v), color=colour, lw=0.8, ls="--")
        ax.axvline(0.0, color="0.6", lw=0.6, ls=":")
        if np.ndim(edges) == 1:
            ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("softness S")
        ax.set_title(names[s], fontsize=10)
        ax.legend(fontsize=6.5, frameon=False, title=r"dashed: $\langle S\rangle$", title_fontsize=6.5)
    for ax in axes[::4]:
        ax.set_ylabel("probability density")
    return fig


def softness_distribution_from_files(softness_paths, **kwargs) -> Figure:
    """:func:`softness_distribution_figure` from softness products (which must name the same species)."""
    rows, names, reduced = [], [], None
    for path in softness_paths:
        with open_input(path, "softness") as f:
            require(f, "softness", "species", what="softness")
            names.append((path, product_species_names(f, "softness")))
            reduced = reduced if rows else _reduced_units_of_file(f)
            rows.append((float(f.attrs["temperature_K"]), f["softness"][()], f["species"][()]))
    if not rows:
        raise SoftnessError("no softness files to plot.")
    species_names = _same_names(names, "softness")
    rows.sort(key=lambda row: row[0])
    kwargs.setdefault("reduced_units", reduced)
    return softness_distribution_figure([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                        species_names=species_names, **kwargs)


# ---------------------------------------------------------------------------- classifier

def classifier_figure(C_grid, cv_accuracy_mean, *, cv_accuracy_std=None, C_chosen=None,
                      test_accuracy=None, test_accuracy_err=None, T_train_K=None, species_names=None,
                      reduced_units=None) -> Figure:
    """Cross-validated accuracy of the softness SVM against its penalty C, per species.

    Args:
      C_grid: [nC].
      cv_accuracy_mean: [n_species, nC]; cv_accuracy_std: [n_species, nC] optional.
      C_chosen: [n_species] the C picked per species, optional.
      test_accuracy, test_accuracy_err: [n_species] accuracy on the held-out split, optional.
      T_train_K: training temperature for the title.
      species_names: the name of each species (default "species 0", ...).
      reduced_units: the system's ``REDUCED_UNITS``, optional: T* in the title.

    Returns:
      The figure (one series per species).
    """
    c = np.asarray(C_grid, dtype=float)
    mean = np.asarray(cv_accuracy_mean, dtype=float).reshape(-1, c.size)
    n_sp = mean.shape[0]
    names = _species_names_for(species_names, n_sp, "the classifier data")
    std = None if cv_accuracy_std is None else np.asarray(cv_accuracy_std, dtype=float).reshape(n_sp, c.size)
    fig, axes = new_figure(1, width=4.6, height=3.5)
    ax = axes[0, 0]
    for s in range(n_sp):
        colour = species_colour(s)
        ax.errorbar(c, mean[s], yerr=None if std is None else std[s], fmt=species_marker(s) + "-",
                    color=colour, label=f"{names[s]}, cross-validation")
        if C_chosen is not None and test_accuracy is not None:
            err = None if test_accuracy_err is None else [test_accuracy_err[s]]
            ax.errorbar([C_chosen[s]], [test_accuracy[s]], yerr=err, fmt="*", ms=12, color=colour,
                        markeredgecolor="k", label=f"{names[s]}, held-out at chosen C")
    ax.axhline(0.5, color="0.6", lw=0.6, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("SVM penalty C")
    ax.set_ylabel("accuracy (rearranging vs quiet)")
    ax.legend(fontsize=7, frameon=False)
    if T_train_K is not None and np.isfinite(T_train_K):
        ax.set_title(f"trained at {temperature_label(T_train_K, reduced_units)}", fontsize=10)
    return fig


def classifier_from_file(model_path) -> Figure:
    """:func:`classifier_figure` from a model file."""
    with open_input(model_path, "model") as f:
        require(f, "C_grid", "cv_accuracy_mean", what="model")

        def get(name):
            return f[name][()] if name in f else None

        return classifier_figure(get("C_grid"), get("cv_accuracy_mean"),
                                 cv_accuracy_std=get("cv_accuracy_std"), C_chosen=get("C"),
                                 test_accuracy=get("accuracy"), test_accuracy_err=get("accuracy_err"),
                                 T_train_K=float(f.attrs.get("T_train_K", np.nan)),
                                 species_names=product_species_names(f, "model"),
                                 reduced_units=_reduced_units_of_file(f))


# ---------------------------------------------------------------------------- notebooks

#: Inputs of each figure, as globs under the results directory (used when a notebook is
#: opened by hand instead of being run by Snakemake).
FIGURE_INPUTS = {
    "relaxation": {"dynamics": "T*/dynamics.h5", "arrhenius": "arrhenius.h5"},
    "rearrangement_probability": {"arrhenius": "arrhenius.h5"},
    "barriers": {"arrhenius": "arrhenius.h5"},
    "crossover": {"arrhenius": "arrhenius.h5"},
    "pair_correlation": {"trajectories": "T*/trajectory.h5"},
    "p_hop": {"hops": "T*/hops.h5"},
    "softness_distributions": {"softness": "T*/softness.h5"},
    "classifier": {"model": "model.h5"},
}


def find_results(start=None) -> Path:
    """The ``results`` directory of the workflow: in ``start`` (default: the current
    directory) or one of its parents."""
    here = Path.cwd() if start is None else Path(start)
    for d in (here, *here.resolve().parents):
        if (d / "results").is_dir():
            return d / "results"
    raise SoftnessError(f"no results/ directory in {here} or above it; run the workflow first.")


def notebook_io(name: str, snakemake=None, results=None) -> tuple[dict, list]:
    """Inputs and outputs of a figure notebook.

    Run by Snakemake, they are ``snakemake.input`` and ``snakemake.output``; opened by hand,
    the inputs are the products found under ``results/`` and nothing is written.

    Returns:
      (inputs: dict name -> path or list of paths, outputs: list of figure paths).
    """
    if snakemake is not None:
        return {k: (list(v) if not isinstance(v, str) else v) for k, v in snakemake.input.items()}, \
            list(snakemake.output)
    root = find_results(results)
    inputs = {}
    for key, pattern in FIGURE_INPUTS[name].items():
        if "*" in pattern:
            inputs[key] = sorted(str(p) for p in root.glob(pattern))
        else:
            inputs[key] = str(root / pattern)
    return inputs, []


# ---------------------------------------------------------------------------- softness in the box

#: Marker diameter of species 0, 1, 2, ... relative to the mean interatomic spacing.
SLAB_MARKER_SCALE = (0.55, 0.45, 0.38, 0.32)


def slab_mask(positions, box, *, slab_width_A=None, slab_centre_A=None, axis: int = 2):
    """Atoms inside a slab of the periodic box, and the slab used.

    The slab is ``|z - z_c| <= w / 2`` with periodic distances along ``axis`` (z by default).

    Args:
      positions: [N, 3] positions (Angstrom; wrapped or not).
      box: [3] box edges.
      slab_width_A: w; default 1.5 times the mean interatomic spacing (V / N)^(1/3), at most L.
      slab_centre_A: z_c; default the middle of the box, L / 2.
      axis: the axis normal to the slab.

    Returns:
      (mask [N] bool, centre, width).
    """
    positions = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    length = box[axis]
    if slab_width_A is None:
        slab_width_A = 1.5 * (np.prod(box) / max(1, positions.shape[0])) ** (1.0 / 3.0)
    width = float(min(slab_width_A, length))
    if not width > 0:
        raise SoftnessError(f"the slab width must be positive, not {slab_width_A!r} A.")
    centre = 0.5 * length if slab_centre_A is None else float(slab_centre_A)
    d = np.mod(positions[:, axis] - centre + 0.5 * length, length) - 0.5 * length
    return np.abs(d) <= 0.5 * width, centre, width


def softness_slab_figure(positions, box, species, softness, about_to_rearrange, *, species_names=None,
                         slab_width_A=None, slab_centre_A=None, temperature_K=None, time_fs=None,
                         window_fs=None, reduced_units=None) -> Figure:
    """Softness in real space: a slab of the box at one frame, atoms coloured by softness.

    The atoms with z in a slab (:func:`slab_mask`) are drawn at their (x, y), wrapped into the box,
    as markers of their species' shape and size, filled by softness on a diverging colour map
    centred on S = 0 (red soft, blue hard; grey where S is undefined), with a colour bar. Atoms
    about to rearrange (``about_to_rearrange`` == 1: an event starts within the P_R window after
    this frame) carry a black ring.

    Args:
      positions: [N, 3] positions (Angstrom); box: [3] edges; species: [N] species numbers.
      softness: [N] softness (NaN allowed); about_to_rearrange: [N] 1 / 0 / -1 (or bool).
      species_names: names indexed by species number (default "species 0", ...).
      slab_width_A, slab_centre_A: the slab (see :func:`slab_mask`).
      temperature_K, time_fs, window_fs: for the title (T, the frame's time, the P_R window).
      reduced_units: the system's ``REDUCED_UNITS`` (adds T* to the title), or None.

    Returns:
      The Figure. Its scatter collections have ``gid`` ``"species:<name>"`` (one per species, the
      atoms of that species in the slab) and ``"about_to_rearrange"`` (the rings).
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    positions = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    species = np.asarray(species)
    softness = np.asarray(softness, dtype=np.float64)
    ahead = np.asarray(about_to_rearrange).astype(np.int64) == 1
    n_species = int(species.max()) + 1 if species.size else 0
    if species_names is not None:
        n_species = max(n_species, len(species_names))
    names = _species_names_for(species_names, n_species, "the slab")
    inside, centre, width = slab_mask(positions, box, slab_width_A=slab_width_A, slab_centre_A=slab_centre_A)
    xy = np.mod(positions[:, :2], box[:2])

    fig = Figure(figsize=(6.2, 5.6), layout="constrained")
    ax = fig.subplots()
    finite = softness[np.isfinite(softness)]
    limit = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    norm = Normalize(vmin=-(limit or 1.0), vmax=limit or 1.0)
    cmap = colormaps["RdBu_r"].with_extremes(bad="lightgrey")
    spacing_pt = 4.3 * 72 / max(box[0], box[1]) * (np.prod(box) / max(1, positions.shape[0])) ** (1 / 3)
    handles = []
    mappable = None
    for s, name in enumerate(names):
        mine = inside & (species == s)
        diameter = SLAB_MARKER_SCALE[min(s, len(SLAB_MARKER_SCALE) - 1)] * spacing_pt
        sc = ax.scatter(xy[mine, 0], xy[mine, 1], c=softness[mine], cmap=cmap, norm=norm,
                        s=diameter**2, marker=species_marker(s), edgecolors="0.25", linewidths=0.4,
                        plotnonfinite=True, gid=f"species:{name}", zorder=2)
        mappable = sc if mappable is None else mappable
        handles.append(Line2D([], [], ls="none", marker=species_marker(s), markersize=7, mfc="0.8",
                              mec="0.25", label=f"{name} ({int(mine.sum())})"))
    ring = inside & ahead
    ring_d = 1.6 * SLAB_MARKER_SCALE[0] * spacing_pt
    ax.scatter(xy[ring, 0], xy[ring, 1], s=ring_d**2, facecolors="none", edgecolors="k", linewidths=1.4,
               gid="about_to_rearrange", zorder=3)
    within = "" if window_fs is None else f" within {window_fs:g} fs"
    handles.append(Line2D([], [], ls="none", marker="o", markersize=10, mfc="none", mec="k", mew=1.4,
                          label=f"about to rearrange{within} ({int(ring.sum())})"))
    if mappable is not None:
        fig.colorbar(mappable, ax=ax, label="softness S", shrink=0.85, extend="both")
    ax.set_xlim(0.0, box[0])
    ax.set_ylim(0.0, box[1])
    ax.set_aspect("equal")
    ax.set_xlabel(r"x ($\AA$)")
    ax.set_ylabel(r"y ($\AA$)")
    title = []
    if temperature_K is not None and np.isfinite(temperature_K):
        title.append(temperature_label(float(temperature_K), reduced_units))
    if time_fs is not None:
        title.append(f"t = {float(time_fs):g} fs")
    lo, hi = centre - 0.5 * width, centre + 0.5 * width
    title.append(f"slab {lo:.1f} $\\leq$ z $\\leq$ {hi:.1f} $\\AA$")
    ax.set_title(", ".join(title), fontsize=10)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(3, len(handles)),
              frameon=False, fontsize=8)
    return fig


def softness_slab_from_files(trajectory, softness, hops, frame=None, slab_width_A=None, *,
                             slab_centre_A=None, window_fs=None) -> Figure:
    """:func:`softness_slab_figure` of one softness frame of a run, from its products.

    Args:
      trajectory, softness, hops: the run's trajectory, softness file and hops file (checked
        against each other by :func:`softness.export.open_products`).
      frame: the trajectory frame index of a softness frame; default: the middle one of the
        softness frames where "about to rearrange" is decided for every atom (else the middle one).
      slab_width_A, slab_centre_A: the slab (see :func:`slab_mask`).
      window_fs: the P_R window (default as in :func:`softness.export.open_products`).

    Raises:
      SoftnessError: mismatched or missing products, or ``frame`` is not a softness frame.
    """
    from softness import export

    source = export.open_products(trajectory, softness, hops, window_fs=window_fs)
    if source.softness_frames.size == 0:
        raise SoftnessError(f"softness file {softness} holds no frame to plot.")
    if frame is None:
        decided = export.decided_frames(source)
        pool = decided if decided.size else source.softness_frames
        frame = int(pool[pool.size // 2])
    elif int(frame) not in set(source.softness_frames.tolist()):
        raise SoftnessError(f"frame {frame} is not a softness frame of {softness} (its frames run from "
                            f"{int(source.softness_frames[0])} to {int(source.softness_frames[-1])}).")
    data = export.read_frames(source, np.array([int(frame)]))
    return softness_slab_figure(data.positions[0], data.box[0], data.species, data.softness[0],
                                data.about_to_rearrange[0], species_names=data.species_names,
                                slab_width_A=slab_width_A, slab_centre_A=slab_centre_A,
                                temperature_K=data.temperature_K, time_fs=data.time_fs[0],
                                window_fs=data.window_fs,
                                reduced_units=reduced_units_of(data.system, trajectory))
