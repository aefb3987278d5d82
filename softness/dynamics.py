"""Relaxation dynamics per species: MSD, diffusion constant, F_s(q, t) and tau_alpha.

Species names and count come from the trajectory (``Trajectory.species_names``); every
per-species result is indexed by species number in the file's order and the product stores
``/species_names``. For lag times tau (log-spaced whole numbers of frame intervals), averaged
over every time origin t0 of the run and over the atoms of a species,

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

Errors from blocks. The run is cut into ``dynamics.n_blocks`` consecutive blocks of equal
length; F_s, tau_alpha and D are measured in each block alone, and the error of the whole
run's value is the standard error of the block values, std / sqrt(n) (Flyvbjerg & Petersen,
J. Chem. Phys. 91, 461 (1989); Allen & Tildesley, Computer Simulation of Liquids, 2nd ed.,
sec. 8.4). This assumes blocks that are independent, i.e. long compared with tau_alpha: a
block shorter than :data:`MIN_BLOCK_TAU_ALPHA` tau_alpha is warned about (its blocks are
correlated and each F_s averages few relaxations, so the error is only indicative). The
default of 4 blocks is the fewest that give a standard error with a usable spread (3 degrees
of freedom: the error itself is known to ~40 %, and a 95 % interval is 3.18 errors wide) while
keeping each block as long as possible at a given run length, which matters on the cold side
where a run holds few tau_alpha. On random walks the block error matches the scatter of
tau_alpha between independent runs (tests/test_dynamics.py).
D's error is the larger of the per-atom error above and the block standard error: the
per-atom spread misses slow collective fluctuations that the blocks see.

Equilibration and drift, checked. The MD product says how long it was equilibrated
(``equilibration_time_fs``); t_eq / tau_alpha is stored per species and warned about when it
is below ``dynamics.min_equilibration_tau_alpha``: a liquid forgets its quenched structure
only after several tau_alpha. As a cheap test of what remains, the mean potential energy of
the first and last block (errors by Flyvbjerg-Petersen blocking within each block) must
agree within :data:`DRIFT_SIGMAS` combined errors; otherwise the run is still ageing (or
heating), which is flagged and warned about.

Cost: O(n_lags F N) for the whole run and as much again for the blocks, processed in chunks
of atoms to bound memory.
"""

from __future__ import annotations

import logging

import numpy as np

from softness.errors import SoftnessError
from softness.hops import frame_interval_fs
from softness.io import atomic_h5, system_attribute
from softness.trajectory import read_trajectory

log = logging.getLogger(__name__)

#: Blocks shorter than this many tau_alpha are warned about: they are not independent samples.
MIN_BLOCK_TAU_ALPHA = 5.0
#: The potential energy drifts when its first and last block means differ by more than this many
#: combined errors (3: a false alarm in ~0.3 % of equilibrium runs).
DRIFT_SIGMAS = 3.0
#: Fewest batches of the coarsest Flyvbjerg-Petersen blocking level (fewer: the std is too noisy).
MIN_BATCHES = 8


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



def block_bounds(n_frames: int, n_blocks: int) -> np.ndarray:
    """Frame ranges of ``n_blocks`` consecutive blocks of equal length.

    Returns:
      [n_blocks, 2] (first, stop) frame indices; leftover frames at the end (fewer than
      ``n_blocks``) are left out so that every block spans the same time.

    Raises:
      SoftnessError: a block would hold fewer than two frames.
    """
    length = n_frames // n_blocks
    if length < 2:
        raise SoftnessError(f"config key 'dynamics.n_blocks' ({n_blocks}) cuts the {n_frames} frames into "
                            "blocks of fewer than two frames.")
    first = np.arange(n_blocks) * length
    return np.stack([first, first + length], axis=1)


def standard_error(values) -> float:
    """Standard error of the mean of the finite ``values``, std (ddof 1) / sqrt(n); NaN for n < 2."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size >= 2 else np.nan


def block_dynamics(positions, species, frame_interval: float, n_blocks: int, *, q_inv_A: float, n_lags: int,
                   fit_lag_fractions=(0.05, 0.5), tolerance: float = 0.15, images=None, box=None,
                   n_species=None) -> dict:
    """tau_alpha and D of each of ``n_blocks`` consecutive blocks of a trajectory, each block alone.

    Args:
      positions: [F, N, 3] positions in Angstrom; unwrapped, or wrapped with ``images`` and ``box``.
      species: [N] species numbers (0 .. n_species - 1).
      frame_interval: time between frames in fs.
      n_blocks: number of blocks (see :func:`block_bounds`).
      q_inv_A, n_lags: of F_s, as for the whole run.
      fit_lag_fractions: the D fit window as fractions of the block length.
      tolerance: of the diffusive test (:func:`diffusion_constant`).
      images: optional [F, N, 3] image flags.
      box: [F, 3] or [3] box edges, needed with ``images``.
      n_species: number of species (default: one more than the largest species number).

    Returns:
      dict with ``tau_fs`` and ``D`` ([n_species, n_blocks]; NaN where a block's F_s does not reach
      1/e or a species is absent) and ``block_length_fs`` (time spanned by one block).
    """
    positions = np.asarray(positions)
    species = np.asarray(species)
    bounds = block_bounds(positions.shape[0], n_blocks)
    length = int(bounds[0, 1] - bounds[0, 0])
    lags = log_lags(length, n_lags)
    lag_time = lags * frame_interval
    block_fs = (length - 1) * frame_interval
    window = (fit_lag_fractions[0] * block_fs, fit_lag_fractions[1] * block_fs)
    if box is not None:
        box = np.broadcast_to(np.asarray(box, dtype=np.float64), (positions.shape[0], 3))
    if n_species is None:
        n_species = int(species.max()) + 1 if species.size else 0
    tau, diff = np.full((n_species, n_blocks), np.nan), np.full((n_species, n_blocks), np.nan)
    for b, (first, stop) in enumerate(bounds):
        sl = slice(int(first), int(stop))
        msd, fs, _ = self_displacements(positions[sl], lags, q_inv_A,
                                        images=None if images is None else images[sl],
                                        box=None if box is None else box[sl])
        for s in range(n_species):
            mine = species == s
            if not mine.any():
                continue
            tau[s, b] = relaxation_time(lag_time, fs[:, mine].mean(axis=1))[0]
            diff[s, b] = diffusion_constant(lag_time, msd[:, mine], window, tolerance)["D"]
    return {"tau_fs": tau, "D": diff, "block_length_fs": block_fs}


def correlated_mean_error(series, min_batches: int = MIN_BATCHES) -> float:
    """Error of the mean of a time-correlated series by Flyvbjerg-Petersen blocking.

    Neighbouring values are averaged pairwise again and again; the naive standard error grows
    with each level until the batches are longer than the correlation time and then stays
    flat. The largest error over the levels that keep at least ``min_batches`` batches is
    returned (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)).

    Args:
      series: [n] values sampled at equal intervals.
      min_batches: the coarsest level used keeps at least this many batches.

    Returns:
      The error of the mean (the units of ``series``); NaN for fewer than two values.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.size < 2:
        return np.nan
    best = x.std(ddof=1) / np.sqrt(x.size)
    while x.size >= 2 * min_batches:
        even = x.size // 2 * 2
        x = 0.5 * (x[:even:2] + x[1:even:2])
        best = max(best, x.std(ddof=1) / np.sqrt(x.size))
    return float(best)


def energy_drift(potential_energy, n_blocks: int, sigmas: float = DRIFT_SIGMAS) -> dict:
    """Whether the mean potential energy of the first and last block differ beyond their errors.

    Args:
      potential_energy: [F] per-frame potential energy (any unit).
      n_blocks: number of consecutive blocks (see :func:`block_bounds`).
      sigmas: the drift threshold in combined errors.

    Returns:
      dict with ``means`` and ``errors`` [n_blocks] (block means and their errors,
      :func:`correlated_mean_error`), ``deviation`` ((last - first) / combined error) and ``drift``
      (bool: |deviation| > ``sigmas``).
    """
    e = np.asarray(potential_energy, dtype=np.float64)
    bounds = block_bounds(e.shape[0], n_blocks)
    means = np.array([e[a:b].mean() for a, b in bounds])
    errors = np.array([correlated_mean_error(e[a:b]) for a, b in bounds])
    change, combined = means[-1] - means[0], np.hypot(errors[0], errors[-1])
    # (a constant energy has no error: any change at all is then a drift)
    if combined > 0:
        deviation = float(change / combined)
    else:
        deviation = 0.0 if change == 0 else float(np.sign(change) * np.inf)
    return {"means": means, "errors": errors, "deviation": deviation, "drift": bool(abs(deviation) > sigmas)}


def equilibration_in_tau_alpha(equilibration_fs: float, tau_fs, longest_lag_fs: float) -> tuple:
    """Equilibration time in units of tau_alpha, per species.

    Args:
      equilibration_fs: equilibration time before the trajectory (NaN: unknown).
      tau_fs: [n_species] tau_alpha (NaN where the run did not reach it).
      longest_lag_fs: the longest lag of the run; where tau_alpha was not reached it is longer
        than this, so t_eq / longest_lag_fs bounds t_eq / tau_alpha from above.

    Returns:
      (ratio [n_species], NaN where tau_alpha or t_eq is unknown; upper_bound [n_species], the
      ratio where known and t_eq / longest_lag_fs where tau_alpha was not reached).
    """
    tau = np.asarray(tau_fs, dtype=np.float64)
    ratio = equilibration_fs / tau
    bound = np.where(np.isfinite(tau), ratio, equilibration_fs / longest_lag_fs)
    return ratio, bound


def dynamics_file(cfg: dict, trajectory, out) -> None:
    """The ``softness dynamics`` stage.

    Args:
      cfg: resolved config (uses ``dynamics``).
      trajectory: H5MD trajectory with image flags (its ``equilibration_time_fs`` attribute and
        ``potential_energy`` observable, when present, feed the equilibration checks).
      out: the HDF5 product. Datasets: ``/lag_time_fs`` [L], ``/lag_frames`` [L],
        ``/n_origins`` [L], ``/msd_A2`` [S, L], ``/F_s`` [S, L], ``/D_A2_per_fs`` [S],
        ``/D_err_A2_per_fs`` [S] (the larger of the per-atom and the block error),
        ``/D_blocks_A2_per_fs`` [S, n_blocks], ``/D_block_err_A2_per_fs`` [S] (standard error over
        blocks), ``/msd_exponent`` [S] (log-log slope in the fit window),
        ``/msd_growth_exponent`` [S] (alpha of MSD = A t^alpha + c in the fit window),
        ``/diffusive`` [S] bool, ``/tau_alpha_fs`` [S] (NaN if not reached),
        ``/tau_alpha_reached`` [S] bool, ``/tau_alpha_blocks_fs`` [S, n_blocks] (NaN where a
        block does not reach it), ``/tau_alpha_err_fs`` [S] (standard error over the blocks that
        reach tau_alpha; NaN when fewer than two do), ``/equilibration_tau_alpha`` [S]
        (t_eq / tau_alpha; NaN when either is unknown), ``/equilibration_too_short`` [S] bool,
        ``/potential_energy_blocks_kcal_mol_per_atom`` [n_blocks] and
        ``/potential_energy_blocks_err_kcal_mol_per_atom`` [n_blocks] (when the trajectory has the
        observable), ``/species_names`` (the trajectory's); S is the number of species, indexed by
        species number (NaN / False for a species without atoms); root attributes ``q_inv_A``,
        ``temperature_K``, ``frame_interval_fs``, ``fit_window_fs`` [2], ``n_blocks``,
        ``block_length_fs``, ``block_length_tau_alpha`` [S], ``blocks_too_short`` [S] (shorter than
        :data:`MIN_BLOCK_TAU_ALPHA` tau_alpha: the block errors are indicative only),
        ``equilibration_time_fs`` (NaN if the trajectory does not say),
        ``min_equilibration_tau_alpha``, ``potential_energy_drift`` (bool),
        ``potential_energy_drift_sigmas`` ((last - first block mean) / combined error; NaN
        without the observable), ``drift_threshold_sigmas``, ``source`` and ``system`` (the
        trajectory's, when it has one).
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
    n_blocks = int(dcfg["n_blocks"])
    names = tuple(traj.species_names)
    n_species = len(names)
    system = system_attribute(traj.attrs)
    temperature = float(traj.attrs.get("temperature_K", np.nan))
    if np.isnan(temperature):
        log.warning("trajectory %s has no temperature_K attribute; dynamics carry NaN.", trajectory)
    bounds = block_bounds(n_frames, n_blocks)  # (fails before any work when the blocks cannot be cut)

    msd_atoms, fs_atoms, n_origins = self_displacements(traj.positions, lags, q, images=traj.images,
                                                        box=traj.box)
    blocks = block_dynamics(traj.positions, traj.species, dt, n_blocks, q_inv_A=q, n_lags=dcfg["n_lags"],
                            fit_lag_fractions=(lo, hi), tolerance=dcfg["diffusive_tolerance"],
                            images=traj.images, box=traj.box, n_species=n_species)
    run_fs = (n_frames - 1) * dt
    window = (lo * run_fs, hi * run_fs)
    n_lags = len(lags)
    msd = np.full((n_species, n_lags), np.nan)
    f_s = np.full((n_species, n_lags), np.nan)
    res = {k: np.full(n_species, np.nan) for k in ("D", "D_err", "D_block_err", "exponent", "growth_exponent",
                                                   "tau", "tau_err")}
    diffusive, reached = np.zeros(n_species, bool), np.zeros(n_species, bool)
    for s, name in enumerate(names):
        mine = traj.species == s
        if not mine.any():
            continue
        msd[s], f_s[s] = msd_atoms[:, mine].mean(axis=1), fs_atoms[:, mine].mean(axis=1)
        fit = diffusion_constant(lag_time, msd_atoms[:, mine], window, dcfg["diffusive_tolerance"])
        for k in ("D", "exponent", "growth_exponent"):
            res[k][s] = fit[k]
        res["D_block_err"][s] = standard_error(blocks["D"][s])
        # The per-atom error misses collective, slow fluctuations that the blocks see; either
        # can come out small by chance, so the larger one is kept.
        res["D_err"][s] = np.fmax(fit["D_err"], res["D_block_err"][s])
        diffusive[s] = fit["diffusive"]
        res["tau"][s], reached[s] = relaxation_time(lag_time, f_s[s])
        res["tau_err"][s] = standard_error(blocks["tau_fs"][s])
        if not diffusive[s]:
            log.warning("%s: the MSD is not diffusive over %g-%g fs (it grows as t^%.2f); D = %.3g A^2/fs "
                        "is an estimate only. Run longer.", name, *window, fit["growth_exponent"], fit["D"])
        if not reached[s]:
            log.warning("%s: F_s(q = %g 1/A) only decays to %.3f within %g fs; the run is too short to "
                        "reach tau_alpha (NaN).", name, q, f_s[s].min(), lag_time[-1])
        log.info("%s: D = %.3g +- %.2g A^2/fs, tau_alpha = %.4g +- %.2g fs", name, res["D"][s],
                 res["D_err"][s], res["tau"][s], res["tau_err"][s])

    present = np.array([np.any(traj.species == s) for s in range(n_species)], dtype=bool)
    block_fs = blocks["block_length_fs"]
    block_tau = block_fs / res["tau"]
    short_blocks = present & ~(block_tau >= MIN_BLOCK_TAU_ALPHA)  # (tau_alpha not reached: short too)
    for s in np.flatnonzero(short_blocks):
        log.warning("%s: the %d blocks of %g fs behind the errors of tau_alpha and D are shorter than %g "
                    "tau_alpha (tau_alpha = %.4g fs), so those errors are indicative only; run longer or set "
                    "fewer dynamics.n_blocks.", names[s], n_blocks, block_fs, MIN_BLOCK_TAU_ALPHA,
                    res["tau"][s])

    t_eq = float(traj.attrs.get("equilibration_time_fs", np.nan))
    min_eq = float(dcfg["min_equilibration_tau_alpha"])
    eq_ratio, eq_bound = equilibration_in_tau_alpha(t_eq, res["tau"], lag_time[-1])
    eq_short = present & (eq_bound < min_eq)
    if np.isnan(t_eq):
        log.info("trajectory %s does not say how long it was equilibrated; equilibration not checked.",
                 trajectory)
    for s in np.flatnonzero(eq_short):
        what = (f"{eq_ratio[s]:.3g} tau_alpha" if reached[s]
                else f"less than {eq_bound[s]:.3g} tau_alpha (tau_alpha was not reached)")
        log.warning("%s: the run was equilibrated for %g fs, %s, fewer than "
                    "dynamics.min_equilibration_tau_alpha = %g, so it may not have forgotten its quenched "
                    "structure.", names[s], t_eq, what, min_eq)

    pe = traj.observables.get("potential_energy")
    drift = None
    if pe is not None:
        drift = energy_drift(np.asarray(pe, dtype=np.float64) / traj.n_atoms, n_blocks)
        if drift["drift"]:
            log.warning("the mean potential energy moves from %.4f +- %.2g to %.4f +- %.2g kcal/mol per atom "
                        "between the first and the last of %d blocks (%.1f combined errors): the run is not "
                        "stationary; equilibrate longer.", drift["means"][0], drift["errors"][0],
                        drift["means"][-1], drift["errors"][-1], n_blocks, drift["deviation"])

    with atomic_h5(out, "dynamics", cfg) as f:
        f.attrs["temperature_K"] = temperature
        f.attrs["q_inv_A"] = q
        f.attrs["frame_interval_fs"] = dt
        f.attrs["fit_window_fs"] = np.array(window)
        f.attrs["source"] = str(trajectory)
        if system is not None:
            f.attrs["system"] = system
        f.attrs["n_blocks"] = n_blocks
        f.attrs["block_length_fs"] = block_fs
        f.attrs["block_frames"] = int(bounds[0, 1] - bounds[0, 0])
        f.attrs["block_length_tau_alpha"] = block_tau
        f.attrs["blocks_too_short"] = short_blocks
        f.attrs["min_block_tau_alpha"] = MIN_BLOCK_TAU_ALPHA
        f.attrs["equilibration_time_fs"] = t_eq
        f.attrs["min_equilibration_tau_alpha"] = min_eq
        f.attrs["potential_energy_drift"] = bool(drift is not None and drift["drift"])
        f.attrs["potential_energy_drift_sigmas"] = np.nan if drift is None else drift["deviation"]
        f.attrs["drift_threshold_sigmas"] = DRIFT_SIGMAS
        f["lag_time_fs"] = lag_time
        f["lag_frames"] = lags
        f["n_origins"] = n_origins
        f["msd_A2"] = msd
        f["F_s"] = f_s
        f["D_A2_per_fs"] = res["D"]
        f["D_err_A2_per_fs"] = res["D_err"]
        f["D_blocks_A2_per_fs"] = blocks["D"]
        f["D_block_err_A2_per_fs"] = res["D_block_err"]
        f["msd_exponent"] = res["exponent"]
        f["msd_growth_exponent"] = res["growth_exponent"]
        f["diffusive"] = diffusive
        f["tau_alpha_fs"] = res["tau"]
        f["tau_alpha_reached"] = reached
        f["tau_alpha_blocks_fs"] = blocks["tau_fs"]
        f["tau_alpha_err_fs"] = res["tau_err"]
        f["equilibration_tau_alpha"] = eq_ratio
        f["equilibration_too_short"] = eq_short
        if drift is not None:
            f["potential_energy_blocks_kcal_mol_per_atom"] = drift["means"]
            f["potential_energy_blocks_err_kcal_mol_per_atom"] = drift["errors"]
        for name in ("lag_time_fs", "tau_alpha_fs", "tau_alpha_blocks_fs", "tau_alpha_err_fs"):
            f[name].attrs["unit"] = "fs"
        for name in ("D_A2_per_fs", "D_err_A2_per_fs", "D_blocks_A2_per_fs", "D_block_err_A2_per_fs"):
            f[name].attrs["unit"] = "angstrom^2/fs"
        f["msd_A2"].attrs["unit"] = "angstrom^2"
        if drift is not None:
            for name in ("potential_energy_blocks_kcal_mol_per_atom",
                         "potential_energy_blocks_err_kcal_mol_per_atom"):
                f[name].attrs["unit"] = "kcal/mol per atom"
        f["species_names"] = np.array(names, dtype="S")
    log.info("wrote %s", out)
