"""Relaxation dynamics per species: MSD, diffusion constant, F_s(q, t) and tau_alpha.

For lag times tau (log-spaced whole numbers of frame intervals), averaged over every time
origin t0 of the run and over the atoms of a species,

    MSD(tau)    = < |r_i(t0 + tau) - r_i(t0)|^2 >,
    F_s(q, tau) = < sin(q dr) / (q dr) >,   dr = |r_i(t0 + tau) - r_i(t0)|,

on unwrapped positions; F_s is the isotropic (orientation-averaged) self-intermediate
scattering function (Hansen & McDonald, Theory of Simple Liquids, ch. 7), evaluated at
q near the first peak of S(q) (about 1.7 1/A in silica; Horbach & Kob, PRB 60, 3169 (1999)).

* D from MSD = 6 D t + c fitted over the lag window ``dynamics.fit_lag_fractions`` of the
  run length (default 5 % to 50 %: past the cage, short enough to have many time origins).
  The error combines the spread of per-atom slopes (standard error over atoms) with half the
  difference between the slopes fitted on the two halves of the window (curvature left from
  the cage). The run counts as diffusive when the MSD grows linearly over the window: the
  growth exponent alpha = 1 + ln(s2 / s1) / ln(t2 / t1), from the slopes s1, s2 of the two
  halves at mean lags t1, t2 (alpha of MSD = A t^alpha + c, blind to the cage offset c that
  bends the plain log-log slope), is 1 within ``dynamics.diffusive_tolerance``. Otherwise D is
  still reported, flagged and warned about.
* tau_alpha where F_s first falls to 1/e, interpolated linearly in log t between the two
  bracketing lags; NaN, flagged and warned about when the run is too short to get there.

Cost: O(n_lags F N), processed in chunks of atoms to bound memory.
"""

from __future__ import annotations

import logging

import numpy as np

from softness.errors import SoftnessError
from softness.hops import SPECIES_NAMES, frame_interval_fs
from softness.io import atomic_h5
from softness.trajectory import read_trajectory

log = logging.getLogger(__name__)


def log_lags(n_frames: int, n_lags: int) -> np.ndarray:
    """At most ``n_lags`` distinct, log-spaced lags in frames, from 1 to ``n_frames - 1``."""
    if n_frames < 2:
        raise SoftnessError(f"{n_frames} frame(s) give no lag time; at least two are needed.")
    lags = np.unique(np.round(np.geomspace(1, n_frames - 1, n_lags)).astype(np.int64))
    return lags


def self_displacements(positions, lags, q_inv_A: float, *, images=None, box=None, atom_chunk: int = 2048):
    """Per-atom MSD and F_s(q) for each lag, averaged over all time origins.

    Args:
      positions: [F, N, 3] positions in Angstrom; unwrapped, or wrapped with ``images`` and ``box``.
      lags: [L] lags in frames (1 <= lag < F).
      q_inv_A: wavenumber in 1/Angstrom.
      images: optional [F, N, 3] image flags.
      box: [F, 3] or [3] box edges, needed with ``images``.
      atom_chunk: atoms processed together.

    Returns:
      (msd [L, N] in Angstrom^2, F_s [L, N], n_origins [L]).
    """
    positions = np.asarray(positions)
    n_frames, n_atoms = positions.shape[:2]
    lags = np.asarray(lags, dtype=np.int64)
    if np.any(lags < 1) or np.any(lags >= n_frames):
        raise ValueError(f"lags must lie in [1, {n_frames - 1}]")
    if images is not None:
        box = np.broadcast_to(np.asarray(box, dtype=np.float64), (n_frames, 3))
    msd = np.empty((len(lags), n_atoms))
    fs = np.empty((len(lags), n_atoms))
    for a0 in range(0, n_atoms, atom_chunk):
        sl = slice(a0, min(a0 + atom_chunk, n_atoms))
        x = positions[:, sl].astype(np.float64)
        if images is not None:
            x = x + np.asarray(images[:, sl]) * box[:, None, :]
        for k, lag in enumerate(lags):
            d = x[lag:] - x[:-lag]
            r2 = np.einsum("fnd,fnd->fn", d, d)
            msd[k, sl] = r2.mean(axis=0)
            # np.sinc(y) = sin(pi y) / (pi y), so sin(q r) / (q r) = sinc(q r / pi).
            fs[k, sl] = np.sinc(q_inv_A * np.sqrt(r2) / np.pi).mean(axis=0)
    return msd, fs, n_frames - lags


def diffusion_constant(lag_time_fs, msd_per_atom, window_fs, tolerance: float = 0.15):
    """D from MSD = 6 D t + c over a window of lag times.

    Args:
      lag_time_fs: [L] lag times.
      msd_per_atom: [L, n] MSD of each atom of one species (or [L] for an average).
      window_fs: (t_min, t_max) of the fit.
      tolerance: the MSD is diffusive when its log-log slope over the window is within
        ``1 +- tolerance``.

    Returns:
      dict with ``D`` and ``D_err`` (Angstrom^2/fs), ``exponent`` (log-log slope of the MSD),
      ``growth_exponent`` (alpha from the slopes of the two halves of the window, see the module
      docstring), ``diffusive`` (bool: alpha within ``1 +- tolerance``) and ``n_points`` (lags in
      the window); NaNs when fewer than three lags fall in the window.
    """
    t = np.asarray(lag_time_fs, dtype=np.float64)
    m = np.asarray(msd_per_atom, dtype=np.float64).reshape(t.shape[0], -1)
    sel = np.flatnonzero((t >= window_fs[0]) & (t <= window_fs[1]))
    nan = {"D": np.nan, "D_err": np.nan, "exponent": np.nan, "growth_exponent": np.nan, "diffusive": False,
           "n_points": len(sel)}
    if len(sel) < 3 or m.shape[1] == 0:
        return nan
    mean = m.mean(axis=1)

    def slope(idx, y):
        # Least-squares slope of y against t over lags idx, for every column of y at once.
        tt = t[idx] - t[idx].mean()
        return tt @ (y[idx] - y[idx].mean(axis=0)) / (tt @ tt)

    d_atoms = slope(sel, m) / 6.0
    d = float(d_atoms.mean())
    sem = float(d_atoms.std(ddof=1) / np.sqrt(d_atoms.size)) if d_atoms.size > 1 else 0.0
    half = len(sel) // 2
    lo, hi = sel[: max(half, 2)], sel[half:]
    s_lo, s_hi = float(slope(lo, mean)), float(slope(hi, mean))
    curvature = 0.5 * abs(s_hi - s_lo) / 6.0
    growth = (1.0 + np.log(s_hi / s_lo) / np.log(t[hi].mean() / t[lo].mean())
              if s_lo > 0 and s_hi > 0 else np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        lt, lm = np.log(t[sel]), np.log(mean[sel])
    exponent = float(np.polyfit(lt, lm, 1)[0]) if np.all(np.isfinite(lm)) else np.nan
    return {"D": d, "D_err": float(np.hypot(sem, curvature)), "exponent": exponent,
            "growth_exponent": float(growth), "diffusive": bool(abs(growth - 1.0) <= tolerance),
            "n_points": len(sel)}


def relaxation_time(lag_time_fs, f_s, level: float = np.exp(-1.0)):
    """First time F_s falls to ``level`` (1/e: tau_alpha), interpolated linearly in log t.

    If F_s is already below ``level`` at the first lag, an exponential decay from F_s(0) = 1
    is assumed over that first interval.

    Returns:
      (tau_fs, reached): NaN and False when F_s never falls to ``level``.
    """
    t = np.asarray(lag_time_fs, dtype=np.float64)
    f = np.asarray(f_s, dtype=np.float64)
    below = np.flatnonzero(f <= level)
    if below.size == 0:
        return np.nan, False
    i = int(below[0])
    if i == 0:
        return float(t[0] * np.log(level) / np.log(max(f[0], 1e-300))), True
    frac = (f[i - 1] - level) / (f[i - 1] - f[i])
    return float(np.exp(np.log(t[i - 1]) + frac * (np.log(t[i]) - np.log(t[i - 1])))), True


def dynamics_file(cfg: dict, trajectory, out) -> None:
    """The ``softness dynamics`` stage.

    Args:
      cfg: resolved config (uses ``dynamics``).
      trajectory: H5MD trajectory with image flags.
      out: the HDF5 product. Datasets: ``/lag_time_fs`` [L], ``/lag_frames`` [L],
        ``/n_origins`` [L], ``/msd_A2`` [2, L], ``/F_s`` [2, L], ``/D_A2_per_fs`` [2],
        ``/D_err_A2_per_fs`` [2], ``/msd_exponent`` [2] (log-log slope in the fit window),
        ``/msd_growth_exponent`` [2] (alpha of MSD = A t^alpha + c in the fit window),
        ``/diffusive`` [2] bool, ``/tau_alpha_fs`` [2] (NaN if not reached),
        ``/tau_alpha_reached`` [2] bool, ``/species_names``; root attributes ``q_inv_A``,
        ``temperature_K``, ``frame_interval_fs``, ``fit_window_fs`` [2].
    """
    dcfg = cfg["dynamics"]
    lo, hi = dcfg["fit_lag_fractions"]
    if not lo < hi:
        raise SoftnessError(f"config key 'dynamics.fit_lag_fractions' ({lo}, {hi}) must be increasing.")
    traj = read_trajectory(trajectory)
    dt = frame_interval_fs(traj.time_fs, f"trajectory {trajectory}")
    n_frames = traj.n_frames
    lags = log_lags(n_frames, dcfg["n_lags"])
    lag_time = lags * dt
    q = float(dcfg["q_inv_A"])
    temperature = float(traj.attrs.get("temperature_K", np.nan))
    if np.isnan(temperature):
        log.warning("trajectory %s has no temperature_K attribute; dynamics carry NaN.", trajectory)

    msd_atoms, fs_atoms, n_origins = self_displacements(traj.positions, lags, q, images=traj.images,
                                                        box=traj.box)
    run_fs = (n_frames - 1) * dt
    window = (lo * run_fs, hi * run_fs)
    n_lags = len(lags)
    msd = np.full((2, n_lags), np.nan)
    f_s = np.full((2, n_lags), np.nan)
    res = {k: np.full(2, np.nan) for k in ("D", "D_err", "exponent", "growth_exponent", "tau")}
    diffusive, reached = np.zeros(2, bool), np.zeros(2, bool)
    for s, name in enumerate(SPECIES_NAMES):
        mine = traj.species == s
        if not mine.any():
            continue
        msd[s], f_s[s] = msd_atoms[:, mine].mean(axis=1), fs_atoms[:, mine].mean(axis=1)
        fit = diffusion_constant(lag_time, msd_atoms[:, mine], window, dcfg["diffusive_tolerance"])
        for k in ("D", "D_err", "exponent", "growth_exponent"):
            res[k][s] = fit[k]
        diffusive[s] = fit["diffusive"]
        res["tau"][s], reached[s] = relaxation_time(lag_time, f_s[s])
        if not diffusive[s]:
            log.warning("%s: the MSD is not diffusive over %g-%g fs (it grows as t^%.2f); D = %.3g A^2/fs "
                        "is an estimate only. Run longer.", name, *window, fit["growth_exponent"], fit["D"])
        if not reached[s]:
            log.warning("%s: F_s(q = %g 1/A) only decays to %.3f within %g fs; the run is too short to "
                        "reach tau_alpha (NaN).", name, q, f_s[s].min(), lag_time[-1])
        log.info("%s: D = %.3g +- %.2g A^2/fs, tau_alpha = %.4g fs", name, res["D"][s], res["D_err"][s],
                 res["tau"][s])

    with atomic_h5(out, "dynamics", cfg) as f:
        f.attrs["temperature_K"] = temperature
        f.attrs["q_inv_A"] = q
        f.attrs["frame_interval_fs"] = dt
        f.attrs["fit_window_fs"] = np.array(window)
        f.attrs["source"] = str(trajectory)
        f["lag_time_fs"] = lag_time
        f["lag_frames"] = lags
        f["n_origins"] = n_origins
        f["msd_A2"] = msd
        f["F_s"] = f_s
        f["D_A2_per_fs"] = res["D"]
        f["D_err_A2_per_fs"] = res["D_err"]
        f["msd_exponent"] = res["exponent"]
        f["msd_growth_exponent"] = res["growth_exponent"]
        f["diffusive"] = diffusive
        f["tau_alpha_fs"] = res["tau"]
        f["tau_alpha_reached"] = reached
        f["species_names"] = np.array(SPECIES_NAMES, dtype="S")
    log.info("wrote %s", out)
