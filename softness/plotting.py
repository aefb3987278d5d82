"""The figures of the study.

Each figure has a function that takes plain arrays and returns a matplotlib ``Figure``
(testable on synthetic data, reusable on anyone's numbers) and a ``*_from_files`` function
that reads the pipeline's products. :func:`save` writes a figure as PNG and PDF. Figures are
built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, no pyplot state), so
they draw the same in a batch job, a thread or a notebook.

Colours are colourblind-safe: the Okabe-Ito palette for species (Si blue, O vermillion) and
for categories, ``cividis`` for temperature series and ``viridis`` for softness bins.
Temperatures are shown as 1000 / T (1/K) with T (K) on the top axis; times in fs; barriers
in eV with K (E / k_B) on the opposite axis.

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

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from softness import units
from softness.errors import SoftnessError
from softness.io import open_input, require

SPECIES_NAMES = ("Si", "O")

#: Okabe & Ito (2008), "Color universal design": distinguishable with any colour vision.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: Si blue, O vermillion, everywhere.
SPECIES_COLOURS = ("#0072B2", "#D55E00")
SPECIES_MARKERS = ("o", "s")

#: Species pairs of the partial pair correlation functions.
PAIRS = ((0, 0), (0, 1), (1, 1))
PAIR_NAMES = ("Si-Si", "Si-O", "O-O")

INVERSE_T_LABEL = "1000 / T (1/K)"


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


def add_temperature_axis(ax) -> None:
    """A top axis in T (K) above an x axis in 1000 / T."""
    def inv(x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(x != 0, 1000.0 / x, np.inf)

    top = ax.secondary_xaxis("top", functions=(inv, inv))
    top.set_xlabel("T (K)")
    # Round temperatures, no closer than a tenth of the axis (1/T crowds them at high T).
    lo, hi = sorted(ax.get_xlim())
    if lo > 0 and hi > lo:
        for step in (100, 250, 500, 1000, 2000, 5000):
            temps = np.arange(np.ceil(1000.0 / hi / step) * step, 1000.0 / lo + 1e-9, step)
            x = np.sort(1000.0 / temps)
            if temps.size >= 2 and np.min(np.diff(x)) >= 0.1 * (hi - lo):
                top.set_xticks(temps)
                break


def add_kelvin_axis(ax) -> None:
    """A right axis giving an energy axis in eV as E / k_B in K."""
    k_per_ev = units.eV_to_K(1.0)
    right = ax.secondary_yaxis("right", functions=(lambda e: e * k_per_ev, lambda k: k / k_per_ev))
    right.set_ylabel("(K)")


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
                      n_arrhenius: int = 3) -> Figure:
    """tau_alpha and D against 1000 / T, per species, with the strong and fragile fits.

    tau_alpha: with ``tau_fits`` (from the Arrhenius product), the fitted law with a kink at the
    crossover temperature T_x (barrier E_low below it, E_high above; dashed) and T_x itself;
    otherwise an Arrhenius law fitted to the ``n_arrhenius`` lowest temperatures. D: Arrhenius
    fits to the ``n_arrhenius`` lowest temperatures. A strong liquid stays on its Arrhenius line,
    a fragile one leaves it.

    Args:
      temperatures_K: [nT].
      tau_alpha_fs: [nT, 2] alpha-relaxation times (NaN where not reached).
      D_A2_per_fs: [nT, 2] diffusion constants.
      D_err_A2_per_fs: [nT, 2] their errors, optional.
      tau_alpha_reached: [nT, 2] bool, optional; unreached points are left out.
      tau_fits: per species (list of 2) a dict with ``ln_tau0``, ``E_low_K``, ``E_high_K``,
        ``T_x_K`` and ``T_x_K_err`` (softness.arrhenius.kinked_arrhenius); NaN entries are
        skipped.
      tau_softness: per species (list of 2) a dict with ``tau_S_fs`` [nT], the relaxation time
        the softness model predicts (softness.arrhenius.predicted_mean_P_R), and ``offset``, the
        fitted ln tau_alpha - ln tau_S; drawn as tau_S e^offset (dotted), optional.
      n_arrhenius: number of lowest temperatures in the fits made here.

    Returns:
      The figure (two panels).
    """
    t = np.asarray(temperatures_K, dtype=float)
    tau = np.asarray(tau_alpha_fs, dtype=float).reshape(t.size, 2)
    diff = np.asarray(D_A2_per_fs, dtype=float).reshape(t.size, 2)
    d_err = None if D_err_A2_per_fs is None else np.asarray(D_err_A2_per_fs, dtype=float).reshape(t.size, 2)
    reached = (np.isfinite(tau) if tau_alpha_reached is None
               else np.asarray(tau_alpha_reached, dtype=bool).reshape(t.size, 2))
    x = 1000.0 / t
    x_line = np.linspace(x.min() * 0.97, x.max() * 1.03, 200)
    t_line = 1000.0 / x_line
    fig, axes = new_figure(2, width=4.4, height=3.6)
    ax_tau, ax_d = axes[0]
    for s in range(2):
        c, m, name = SPECIES_COLOURS[s], SPECIES_MARKERS[s], SPECIES_NAMES[s]
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
        add_temperature_axis(ax)
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
      ``D_A2_per_fs``, ``D_err_A2_per_fs`` [nT, 2] (empty dict without files).
    """
    rows = []
    for path in paths:
        with open_input(path, "dynamics") as f:
            require(f, "tau_alpha_fs", "D_A2_per_fs", what="dynamics")
            tau = f["tau_alpha_fs"][()]
            rows.append({
                "temperature_K": float(f.attrs["temperature_K"]),
                "tau_alpha_fs": tau,
                "tau_alpha_reached": (f["tau_alpha_reached"][()] if "tau_alpha_reached" in f
                                      else np.isfinite(tau)),
                "D_A2_per_fs": f["D_A2_per_fs"][()],
                "D_err_A2_per_fs": (f["D_err_A2_per_fs"][()] if "D_err_A2_per_fs" in f
                                    else np.full(2, np.nan)),
            })
    rows.sort(key=lambda r: r["temperature_K"])
    return {key: np.array([r[key] for r in rows]) for key in (rows[0] if rows else ())}


def relaxation_from_files(dynamics_paths, arrhenius_path=None, **kwargs) -> Figure:
    """:func:`relaxation_figure` from dynamics products (one per temperature) and, if given,
    the tau_alpha fits of the Arrhenius product."""
    d = read_dynamics(dynamics_paths)
    if not d:
        raise SoftnessError("no dynamics files to plot.")
    tau_fits = tau_softness = None
    if arrhenius_path is not None:
        a = read_arrhenius(arrhenius_path)
        tau_fits = [{key: a[f"tau_fit/{key}"][s] for key in ("ln_tau0", "E_low_K", "E_high_K", "T_x_K",
                                                              "T_x_K_err")}
                    for s in range(2)]
        if "closure/tau_S_fs" in a and np.array_equal(a["temperature_K"], d["temperature_K"]):
            tau_softness = [{"tau_S_fs": a["closure/tau_S_fs"][s], "offset": a["closure/tau_alpha/offset"][s]}
                            for s in range(2)]
    return relaxation_figure(d["temperature_K"], d["tau_alpha_fs"], d["D_A2_per_fs"],
                             D_err_A2_per_fs=d["D_err_A2_per_fs"], tau_alpha_reached=d["tau_alpha_reached"],
                             tau_fits=tau_fits, tau_softness=tau_softness, **kwargs)


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
    """The arrays of an Arrhenius product the figures need (per-species arrays lead with [2])."""
    with open_input(path, "arrhenius") as f:
        require(f, *ARRHENIUS_KEYS, what="arrhenius")
        out = {key: f[key][()] for key in ARRHENIUS_KEYS}
        out["T_train_K"] = float(f.attrs.get("T_train_K", np.nan))
        out["P_R_window_fs"] = float(f.attrs.get("P_R_window_fs", np.nan))
        # Temperatures with no cage jumps to count (absent from older products: none flagged).
        out["flagged_temperature"] = (f["flagged_temperature"][()] if "flagged_temperature" in f
                                      else np.zeros((2, out["temperature_K"].size), bool))
        for key in ("closure/tau_S_fs", "closure/tau_alpha/offset",  # the relaxation from softness
                    "crossover/E_app_tau_K_err"):
            if key in f:
                out[key] = f[key][()]
    return out


# ---------------------------------------------------------------------------- figure 2: P_R(S, T)

def rearrangement_probability_figure(temperatures_K, S_centres, P_R, *, ln_P_R_err=None, usable=None,
                                     Sigma=None, DeltaE_K=None, flagged=None, window_fs=None,
                                     max_bins: int = 6) -> Figure:
    """P_R(S, T) against 1000 / T for several softness bins, per species, with Arrhenius fits.

    Args:
      temperatures_K: [nT].
      S_centres: [2, nS] softness of each bin.
      P_R: [2, nT, nS] probability that an atom starts a rearrangement within the P_R window after
        its structure is taken (NaN: no data).
      ln_P_R_err: [2, nT, nS] errors of ln P_R, optional (bars from P e^-err to P e^+err).
      usable: [2, nT, nS] bool, optional: points with enough events to enter the fits (filled);
        others are drawn open.
      Sigma, DeltaE_K: [2, nS] fitted ln P_R = Sigma - DeltaE / T per bin (NaN: not fitted).
      flagged: [2, nT] bool, optional: temperatures with no cage jumps to count (tau_alpha not
        well above t_R), drawn open in grey whatever their counts.
      window_fs: the P_R window, named on the axis, optional.
      max_bins: at most this many bins per species, evenly spread over those with data.

    Returns:
      The figure (one panel per species).
    """
    t = np.asarray(temperatures_K, dtype=float)
    s_all = np.asarray(S_centres, dtype=float).reshape(2, -1)
    n_s = s_all.shape[1]
    p_all = np.asarray(P_R, dtype=float).reshape(2, t.size, n_s)
    x = 1000.0 / t
    x_line = np.linspace(x.min() * 0.97, x.max() * 1.03, 100)
    fig, axes = new_figure(2, width=4.4, height=3.8)
    no_jumps = np.zeros((2, t.size), bool) if flagged is None else np.asarray(flagged, bool)
    no_jumps = no_jumps.reshape(2, t.size)
    for sp, ax in enumerate(axes[0]):
        p = p_all[sp]
        grey_label = "no cage jumps (not fitted)"
        with_data = np.flatnonzero(np.sum(np.isfinite(p) & (p > 0), axis=0) > 0)
        if with_data.size > max_bins:
            pick = np.unique(np.round(np.linspace(0, with_data.size - 1, max_bins)).astype(int))
            with_data = with_data[pick]
        for colour, k in zip(softness_colours(with_data.size), with_data, strict=True):
            use = (np.ones(t.size, bool) if usable is None
                   else np.asarray(usable, bool).reshape(2, t.size, n_s)[sp, :, k])
            if ln_P_R_err is not None:
                e = np.asarray(ln_P_R_err, dtype=float).reshape(2, t.size, n_s)[sp, :, k]
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
        add_temperature_axis(ax)
        ax.set_title(SPECIES_NAMES[sp], fontsize=10)
        ax.legend(fontsize=6.5, frameon=False, title="softness bin", title_fontsize=7)
    axes[0, 0].set_ylabel(r"$P_R(S, T)$" + (f" (rearrangement starts within {window_fs:g} fs)"
                                             if window_fs is not None and np.isfinite(window_fs) else ""))
    return fig


def rearrangement_probability_from_file(arrhenius_path, **kwargs) -> Figure:
    """:func:`rearrangement_probability_figure` from the Arrhenius product."""
    a = read_arrhenius(arrhenius_path)
    return rearrangement_probability_figure(a["temperature_K"], a["bins/S_mean"], a["P_R"],
                                            ln_P_R_err=a["ln_P_R_err"], usable=a["usable"],
                                            Sigma=a["bin_fit/Sigma"], DeltaE_K=a["bin_fit/DeltaE_K"],
                                            flagged=a["flagged_temperature"], window_fs=a["P_R_window_fs"],
                                            **kwargs)


# ---------------------------------------------------------------------------- figure 3: DeltaE(S), Sigma(S)

def barriers_figure(S_centres, DeltaE_K, Sigma, *, DeltaE_err_K=None, Sigma_err=None, e0_K=None, e1_K=None,
                    Sigma0=None, Sigma1=None) -> Figure:
    """The barrier DeltaE(S) and the prefactor Sigma(S) of each species, with linear fits.

    Args:
      S_centres: [2, nS] softness of the bins.
      DeltaE_K, Sigma: [2, nS] per-bin Arrhenius parameters (barrier as E / k_B), NaN if not fitted.
      DeltaE_err_K, Sigma_err: [2, nS] errors, optional.
      e0_K, e1_K: [2] DeltaE = e0 - e1 S, optional.
      Sigma0, Sigma1: [2] Sigma = Sigma0 - Sigma1 S, optional.

    Returns:
      The figure (two panels; the barrier in eV with K on the right axis).
    """
    s = np.asarray(S_centres, dtype=float).reshape(2, -1)

    def per_species(v):
        return None if v is None else np.asarray(v, dtype=float).reshape(2, -1)

    de, de_err, sig, sig_err = (per_species(v) for v in (DeltaE_K, DeltaE_err_K, Sigma, Sigma_err))
    fig, axes = new_figure(2, width=4.2, height=3.4)
    ax_e, ax_s = axes[0]
    for sp in range(2):
        c, m, name = SPECIES_COLOURS[sp], SPECIES_MARKERS[sp], SPECIES_NAMES[sp]
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
    add_kelvin_axis(ax_e)
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
                           Sigma1=a["lines/Sigma1"])


# ---------------------------------------------------------------------------- figure 4: crossover

def predicted_apparent_barrier(temperature_K, e0_K, e1_K, Sigma1, a, b):
    """E_app(T) = (e0 - e1 a) - Sigma1 b T^2 (K): the softness picture's apparent barrier at <S>."""
    t = np.asarray(temperature_K, dtype=float)
    return e0_K - e1_K * a - Sigma1 * b * t**2


def crossover_figure(temperatures_K, mean_S, *, mean_S_err=None, a=None, b=None, e0_K=None, e1_K=None,
                     Sigma1=None, T_mid_K=None, E_app_rate_K=None, E_app_rate_err_K=None,
                     E_app_tau_K=None, E_app_tau_err_K=None) -> Figure:
    """<S>(T) with its linear fit, and the apparent barrier measured against the prediction.

    Args:
      temperatures_K: [nT].
      mean_S, mean_S_err: [2, nT] mean softness per species and its error.
      a, b: [2] <S> = a + b T.
      e0_K, e1_K, Sigma1: [2] the linear fits of DeltaE(S) and Sigma(S).
      T_mid_K: [nT - 1] temperatures of the measured barriers (secants between neighbours).
      E_app_rate_K, E_app_rate_err_K: [2, nT - 1] -d ln(rearrangement rate) / d(1/T).
      E_app_tau_K, E_app_tau_err_K: [2, nT - 1] d ln(tau_alpha) / d(1/T) and its error.

    Returns:
      The figure (two panels; barriers in eV with K on the right axis).
    """
    t = np.asarray(temperatures_K, dtype=float)
    mean_s = np.asarray(mean_S, dtype=float).reshape(2, t.size)
    t_line = np.linspace(t.min(), t.max(), 100)
    fig, axes = new_figure(2, width=4.3, height=3.5)
    ax_s, ax_e = axes[0]
    for sp in range(2):
        c, m, name = SPECIES_COLOURS[sp], SPECIES_MARKERS[sp], SPECIES_NAMES[sp]
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
    add_kelvin_axis(ax_e)
    ax_e.legend(fontsize=6.5, frameon=False)
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
                            E_app_tau_err_K=a.get("crossover/E_app_tau_K_err"))


# ---------------------------------------------------------------------------- g(r)

def pair_correlation(positions, box, species, *, r_max_A: float | None = None, dr_A: float = 0.02,
                     atom_chunk: int = 256):
    """Partial radial distribution functions g_ab(r) of a periodic orthorhombic system.

    g_ab(r) = V / (N_a N_b') <sum_{i in a} sum_{j in b, j != i} delta(r - r_ij)> / (4 pi r^2),
    with N_b' = N_b - 1 when a = b, averaged over frames (minimum image, so r_max is at most
    half the smallest box edge).

    Args:
      positions: [F, N, 3] or [N, 3] positions (Angstrom).
      box: [F, 3] or [3] box edges.
      species: [N] 0 = Si, 1 = O.
      r_max_A: largest r (default and upper bound: half the smallest edge).
      dr_A: bin width.
      atom_chunk: rows of the distance matrix held at once.

    Returns:
      r [nbins] bin centres and g [3, nbins] for Si-Si, Si-O, O-O.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    n_frames, n = pos.shape[:2]
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (n_frames, 3))
    species = np.asarray(species, dtype=np.int64)
    r_half = 0.5 * float(box.min())
    r_max = r_half if r_max_A is None else min(float(r_max_A), r_half)
    n_bins = max(1, int(r_max / dr_A))
    edges = np.linspace(0.0, n_bins * dr_A, n_bins + 1)
    # pair index per (species_i, species_j): Si-Si 0, Si-O 1, O-Si 1, O-O 2
    pair_of = np.array([[0, 1], [1, 2]])
    counts = np.zeros(3 * n_bins, dtype=np.float64)
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
            counts += np.bincount((pair * n_bins + k)[inside], minlength=3 * n_bins)
    counts = counts.reshape(3, n_bins)
    volume /= n_frames
    n_s = np.array([np.sum(species == 0), np.sum(species == 1)], dtype=np.float64)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = np.zeros((3, n_bins))
    for p, (a, b) in enumerate(PAIRS):
        # ordered pairs (i in a, j in b) and (i in b, j in a) both land in the a-b row
        n_pairs = n_s[a] * (n_s[b] - 1) if a == b else 2 * n_s[a] * n_s[b]
        if n_pairs > 0:
            g[p] = counts[p] / n_frames / (n_pairs / volume * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


def pair_correlation_figure(temperatures_K, r_A, g) -> Figure:
    """g(r) of Si-Si, Si-O and O-O at every temperature.

    Args:
      temperatures_K: [nT].
      r_A: [nbins] bin centres (Angstrom).
      g: [nT, 3, nbins].

    Returns:
      The figure (three panels).
    """
    t = np.asarray(temperatures_K, dtype=float)
    g = np.asarray(g, dtype=float)
    fig, axes = new_figure(3, width=3.3, sharey=False)
    for p, ax in enumerate(axes[0]):
        for k, colour in enumerate(temperature_colours(t)):
            ax.plot(r_A, g[k, p], color=colour, lw=1.2, label=f"{t[k]:g} K")
        ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
        ax.set_xlabel(r"$r$ ($\mathrm{\AA}$)")
        ax.set_title(PAIR_NAMES[p], fontsize=10)
    axes[0, 0].set_ylabel(r"$g(r)$")
    axes[0, 2].legend(fontsize=7, frameon=False)
    return fig


def pair_correlation_from_files(trajectory_paths, *, n_frames: int = 20, r_max_A: float = 8.0,
                                dr_A: float = 0.05) -> Figure:
    """:func:`pair_correlation_figure` from trajectories, averaging ``n_frames`` frames spread
    over each run."""
    from softness.trajectory import count_frames, read_trajectory

    rows = []
    for path in trajectory_paths:
        total = count_frames(path)
        frames = np.unique(np.linspace(0, total - 1, min(n_frames, total)).astype(int))
        traj = read_trajectory(path, frames, require_images=False)
        r, g = pair_correlation(traj.positions, traj.box, traj.species, r_max_A=r_max_A, dr_A=dr_A)
        rows.append((float(traj.attrs.get("temperature_K", np.nan)), g))
    rows.sort(key=lambda row: row[0])
    return pair_correlation_figure([row[0] for row in rows], r, np.array([row[1] for row in rows]))


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


def softness_distribution_figure(temperatures_K, softness_by_T, species, *, bins=60) -> Figure:
    """The distribution of softness per species at every temperature.

    Args:
      temperatures_K: [nT].
      softness_by_T: list of [F, N] (or [M]) softness arrays, one per temperature.
      species: [N] species, or a list of them (one per temperature).
      bins: number of bins or shared bin edges. A number of bins spans the bulk of every
        temperature's distribution (:func:`bulk_range`); the share of each temperature's atoms
        beyond the axis is given in the legend, so a tail of rare outliers (an atom far
        outside the structures seen in training has a large |S|) is reported without squashing
        the distributions into a few bins.

    Returns:
      The figure (one panel per species), with <S> of each temperature marked (the mean over
      all atoms, outliers included).
    """
    t = np.asarray(temperatures_K, dtype=float)
    species_list = species if isinstance(species, list | tuple) else [species] * len(softness_by_T)
    values = [[np.asarray(sv)[..., np.asarray(sp) == s].ravel() for sv, sp in
               zip(softness_by_T, species_list, strict=True)] for s in range(2)]
    fig, axes = new_figure(2, sharey=True)
    for s, ax in enumerate(axes[0]):
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
            label = f"{temp:g} K" + (f", {100 * off_axis:.1f} % off axis" if off_axis >= 1e-3 else "")
            ax.stairs(counts / (v.size * np.diff(e)), e, color=colour, lw=1.3, label=label)
            ax.axvline(np.mean(v), color=colour, lw=0.8, ls="--")
        ax.axvline(0.0, color="0.6", lw=0.6, ls=":")
        if np.ndim(edges) == 1:
            ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("softness S")
        ax.set_title(SPECIES_NAMES[s], fontsize=10)
        ax.legend(fontsize=6.5, frameon=False, title=r"dashed: $\langle S\rangle$", title_fontsize=6.5)
    axes[0, 0].set_ylabel("probability density")
    return fig


def softness_distribution_from_files(softness_paths, **kwargs) -> Figure:
    """:func:`softness_distribution_figure` from softness products."""
    rows = []
    for path in softness_paths:
        with open_input(path, "softness") as f:
            require(f, "softness", "species", what="softness")
            rows.append((float(f.attrs["temperature_K"]), f["softness"][()], f["species"][()]))
    rows.sort(key=lambda row: row[0])
    return softness_distribution_figure([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                        **kwargs)


# ---------------------------------------------------------------------------- classifier

def classifier_figure(C_grid, cv_accuracy_mean, *, cv_accuracy_std=None, C_chosen=None,
                      test_accuracy=None, test_accuracy_err=None, T_train_K=None) -> Figure:
    """Cross-validated accuracy of the softness SVM against its penalty C, per species.

    Args:
      C_grid: [nC].
      cv_accuracy_mean: [2, nC]; cv_accuracy_std: [2, nC] optional.
      C_chosen: [2] the C picked per species, optional.
      test_accuracy, test_accuracy_err: [2] accuracy on the held-out split, optional.
      T_train_K: training temperature for the title.

    Returns:
      The figure.
    """
    c = np.asarray(C_grid, dtype=float)
    mean = np.asarray(cv_accuracy_mean, dtype=float).reshape(2, c.size)
    std = None if cv_accuracy_std is None else np.asarray(cv_accuracy_std, dtype=float).reshape(2, c.size)
    fig, axes = new_figure(1, width=4.6, height=3.5)
    ax = axes[0, 0]
    for s in range(2):
        colour = SPECIES_COLOURS[s]
        ax.errorbar(c, mean[s], yerr=None if std is None else std[s], fmt=SPECIES_MARKERS[s] + "-",
                    color=colour, label=f"{SPECIES_NAMES[s]}, cross-validation")
        if C_chosen is not None and test_accuracy is not None:
            err = None if test_accuracy_err is None else [test_accuracy_err[s]]
            ax.errorbar([C_chosen[s]], [test_accuracy[s]], yerr=err, fmt="*", ms=12, color=colour,
                        markeredgecolor="k", label=f"{SPECIES_NAMES[s]}, held-out at chosen C")
    ax.axhline(0.5, color="0.6", lw=0.6, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("SVM penalty C")
    ax.set_ylabel("accuracy (rearranging vs quiet)")
    ax.legend(fontsize=7, frameon=False)
    if T_train_K is not None and np.isfinite(T_train_K):
        ax.set_title(f"trained at {T_train_K:g} K", fontsize=10)
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
                                 T_train_K=float(f.attrs.get("T_train_K", np.nan)))


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
