"""Rearrangements: p_hop and the rearranging / quiet labels of every atom.

p_hop is the cage-jump indicator of Candelier, Dauchot and Biroli (PRL 102, 088001 (2009))
as used for the softness training sets (Candelier et al., PRE 81, 031510 (2010);
Schoenholz et al., Nat. Phys. 12, 469 (2016); Cubuk et al., Science 358, 1033 (2017)):

    p_hop(i, t) = sqrt( <(r_i - <r_i>_B)^2>_A  <(r_i - <r_i>_A)^2>_B ),

with A the half window before t and B the half window after it, on unwrapped positions,
in Angstrom^2. Each factor equals the variance of r_i inside one half plus the squared
distance between the two halves' mean positions, so p_hop is of the order of a vibration
amplitude squared while an atom rattles in its cage and of the order of the jump length
squared while it moves to a new cage. (jax_md's ``quantity.phop`` is a different quantity.)

Discretisation. With frames every dt, a window ``t_R`` holds ``2 h`` frames,
``h = round(t_R / (2 dt))`` (``t_R`` is rounded to a whole even number of frame
intervals; the value used is stored). At frame t, A is the ``h`` frames t-h ... t-1 and B
the ``h`` frames t ... t+h-1, so an atom that jumps by a vector of length a between frames
t-1 and t has p_hop(t) = a^2 exactly. p_hop is defined for h <= t <= F-h and NaN elsewhere.
Cost is O(F N) (running sums over frames), memory bounded by processing atoms in chunks.

Labels (per species thresholds):
  * 1, rearranging: p_hop(t) > p_c;
  * 0, quiet ("hard"): p_hop stays below p_quiet during the whole window of length
    ``t_quiet`` centred on t (2 q + 1 frames, ``q = round(t_quiet / (2 dt))``), every
    frame of which has a defined p_hop; the structure at t is the middle of that window;
  * -1 otherwise (neither; also every frame where p_hop is NaN).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from softness.errors import SoftnessError
from softness.io import atomic_h5, open_input, require
from softness.trajectory import read_trajectory

log = logging.getLogger(__name__)

SPECIES_NAMES = ("Si", "O")

#: Labels written to ``/labels``.
REARRANGING, QUIET, UNLABELLED = 1, 0, -1


# ---------------------------------------------------------------------------- frames and windows

def frame_interval_fs(time_fs, where: str = "trajectory") -> float:
    """The constant time between saved frames.

    Args:
      time_fs: [F] frame times in fs.
      where: what to name in the error message.

    Returns:
      dt in fs.

    Raises:
      SoftnessError: fewer than two frames, or frames not evenly spaced in time.
    """
    time_fs = np.asarray(time_fs, dtype=np.float64)
    if time_fs.shape[0] < 2:
        raise SoftnessError(f"{where} has {time_fs.shape[0]} frame(s); at least two are needed.")
    dts = np.diff(time_fs)
    dt = float(np.median(dts))
    if not dt > 0 or not np.allclose(dts, dt, rtol=1e-6, atol=1e-9 * dt):
        raise SoftnessError(f"{where} frames are not evenly spaced in time "
                            f"(intervals from {dts.min():g} to {dts.max():g} fs).")
    return dt


def half_window_frames(window_fs: float, dt_fs: float, key: str = "hops.t_R_fs") -> int:
    """Frames in half of a window of length ``window_fs``: ``round(window_fs / (2 dt))``.

    Raises:
      SoftnessError: the window is shorter than two frame intervals.
    """
    h = int(round(window_fs / (2.0 * dt_fs)))
    if h < 1:
        raise SoftnessError(f"config key '{key}' ({window_fs:g} fs) is shorter than two frame "
                            f"intervals ({2 * dt_fs:g} fs); it must span at least two frames.")
    if abs(2 * h * dt_fs - window_fs) > 1e-6 * window_fs:
        log.warning("%s = %g fs is not a multiple of twice the frame interval %g fs; using %g fs.",
                    key, window_fs, dt_fs, 2 * h * dt_fs)
    return h


# ---------------------------------------------------------------------------- p_hop

def _p_hop_block(x: np.ndarray, h: int) -> np.ndarray:
    """p_hop of unwrapped positions ``x`` [F, n, 3] (float64), NaN where the window does not fit."""
    n_frames = x.shape[0]
    x = x - x[:1]  # small numbers keep the running sums exact enough
    zero = np.zeros((1, *x.shape[1:]), dtype=np.float64)
    s1 = np.concatenate([zero, np.cumsum(x, axis=0)])  # s1[k] = sum_{j<k} x_j
    s2 = np.concatenate([zero[..., 0], np.cumsum(np.einsum("fnd,fnd->fn", x, x), axis=0)])
    t = np.arange(h, n_frames - h + 1)
    mean_a = (s1[t] - s1[t - h]) / h
    mean_b = (s1[t + h] - s1[t]) / h
    var_a = np.maximum((s2[t] - s2[t - h]) / h - np.einsum("fnd,fnd->fn", mean_a, mean_a), 0.0)
    var_b = np.maximum((s2[t + h] - s2[t]) / h - np.einsum("fnd,fnd->fn", mean_b, mean_b), 0.0)
    d = mean_a - mean_b
    d2 = np.einsum("fnd,fnd->fn", d, d)
    # <(r - <r>_B)^2>_A = var_A + |<r>_A - <r>_B|^2, and symmetrically for B.
    out = np.full((n_frames, x.shape[1]), np.nan)
    out[t] = np.sqrt((var_a + d2) * (var_b + d2))
    return out


def p_hop(positions, half_window: int, *, images=None, box=None, atom_chunk: int = 1024) -> np.ndarray:
    """Candelier's p_hop of every atom at every frame.

    Args:
      positions: [F, N, 3] positions in Angstrom; unwrapped, or wrapped together with
        ``images`` and ``box``.
      half_window: h, the number of frames in each half window (t_R = 2 h dt).
      images: optional [F, N, 3] integer image flags (unwrapped = positions + images * box).
      box: [F, 3] or [3] box edges in Angstrom, needed with ``images``.
      atom_chunk: atoms processed together (bounds the temporary memory to
        about 160 * F * atom_chunk bytes).

    Returns:
      [F, N] float64 p_hop in Angstrom^2; NaN at frames t < h and t > F - h.
    """
    positions = np.asarray(positions)
    n_frames, n_atoms = positions.shape[:2]
    if half_window < 1:
        raise ValueError("half_window must be at least 1")
    if n_frames < 2 * half_window:
        raise SoftnessError(f"{n_frames} frames are too few for a p_hop window of {2 * half_window} frames.")
    if images is not None:
        box = np.broadcast_to(np.asarray(box, dtype=np.float64), (n_frames, 3))
    out = np.empty((n_frames, n_atoms), dtype=np.float64)
    for a0 in range(0, n_atoms, atom_chunk):
        sl = slice(a0, min(a0 + atom_chunk, n_atoms))
        x = positions[:, sl].astype(np.float64)
        if images is not None:
            x = x + np.asarray(images[:, sl]) * box[:, None, :]
        out[:, sl] = _p_hop_block(x, half_window)
    return out


# ---------------------------------------------------------------------------- labels

def _per_atom(values_by_species, species) -> np.ndarray:
    return np.asarray(values_by_species, dtype=np.float64)[np.asarray(species)]


def quiet_mask(p_hop_values, p_quiet_per_atom, quiet_half_window: int) -> np.ndarray:
    """Atoms whose p_hop stays below ``p_quiet`` over the 2 q + 1 frames centred on each frame.

    Args:
      p_hop_values: [F, N] p_hop (NaN where undefined; NaN never counts as quiet).
      p_quiet_per_atom: [N] (or scalar) threshold in Angstrom^2.
      quiet_half_window: q in frames.

    Returns:
      [F, N] bool; False where the window sticks out of the defined frames.
    """
    p = np.asarray(p_hop_values)
    n_frames = p.shape[0]
    q = int(quiet_half_window)
    loud = ~(p < p_quiet_per_atom)  # NaN counts as loud
    counts = np.concatenate([np.zeros((1, p.shape[1]), np.int64), np.cumsum(loud, axis=0)])
    out = np.zeros(p.shape, dtype=bool)
    t = np.arange(q, n_frames - q)
    out[t] = (counts[t + q + 1] - counts[t - q]) == 0
    return out


def rearrangement_labels(p_hop_values, species, p_c, p_quiet, quiet_half_window: int) -> np.ndarray:
    """Labels 1 (rearranging), 0 (quiet) and -1 (neither) of every atom and frame.

    Args:
      p_hop_values: [F, N] p_hop in Angstrom^2 (NaN where undefined).
      species: [N] species (0 = Si, 1 = O).
      p_c: per-species thresholds [2]: rearranging when p_hop > p_c.
      p_quiet: per-species thresholds [2]: quiet when p_hop < p_quiet over the quiet window.
      quiet_half_window: q, half the quiet window in frames.

    Returns:
      [F, N] int8 labels.
    """
    p_c, p_quiet = np.asarray(p_c, np.float64), np.asarray(p_quiet, np.float64)
    if np.any(p_quiet > p_c):
        raise SoftnessError(f"quiet thresholds hops.p_quiet_A2 {p_quiet.tolist()} must not exceed "
                            f"the rearrangement thresholds hops.p_c_A2 {p_c.tolist()}.")
    p = np.asarray(p_hop_values)
    labels = np.full(p.shape, UNLABELLED, dtype=np.int8)
    labels[quiet_mask(p, _per_atom(p_quiet, species), quiet_half_window)] = QUIET
    labels[p > _per_atom(p_c, species)] = REARRANGING
    return labels


def rearrangement_events(p_hop_values, species, p_c) -> np.ndarray:
    """Number of rearrangement events per species: onsets of runs of frames with p_hop > p_c.

    A run that is already going on at the first defined frame counts as one event.

    Returns:
      [2] int counts (Si, O).
    """
    p = np.asarray(p_hop_values)
    above = p > _per_atom(p_c, species)
    onsets = above.copy()
    onsets[1:] &= ~above[:-1]
    per_atom = onsets.sum(axis=0)
    return np.array([per_atom[np.asarray(species) == s].sum() for s in range(2)], dtype=np.int64)


# ---------------------------------------------------------------------------- the stage

def _thresholds(cfg: dict, key: str) -> np.ndarray:
    return np.array([cfg["hops"][key][name] for name in SPECIES_NAMES], dtype=np.float64)


def hops_file(cfg: dict, trajectory, out) -> None:
    """The ``softness hops`` stage: p_hop and labels of every atom and frame.

    Args:
      cfg: resolved config (uses ``hops``).
      trajectory: H5MD trajectory with image flags.
      out: the HDF5 product to write. Datasets: ``/p_hop`` [F, N] float32 (A^2, NaN where
        the window does not fit), ``/labels`` [F, N] int8, ``/frames``, ``/step``,
        ``/time_fs``, ``/species``, ``/species_names``, ``/thresholds/p_c_A2`` [2],
        ``/thresholds/p_quiet_A2`` [2], ``/n_events`` [2], ``/rearrangement_rate_per_fs``
        [2] (events per atom per fs over the frames where p_hop is defined); root attributes
        ``temperature_K``, ``t_R_fs`` and ``t_quiet_fs`` (as used, after rounding to frames),
        ``half_window_frames``, ``quiet_half_window_frames``, ``frame_interval_fs``.
    """
    hcfg = cfg["hops"]
    traj = read_trajectory(trajectory)
    n_frames = traj.n_frames
    dt = frame_interval_fs(traj.time_fs, f"trajectory {trajectory}")
    h = half_window_frames(hcfg["t_R_fs"], dt, "hops.t_R_fs")
    if n_frames < 2 * h:
        raise SoftnessError(
            f"trajectory {trajectory} has {n_frames} frames ({(n_frames - 1) * dt:g} fs), too short for "
            f"the p_hop window hops.t_R_fs = {2 * h * dt:g} fs ({2 * h} frames of {dt:g} fs).")
    q = half_window_frames(hcfg["t_quiet_fs"], dt, "hops.t_quiet_fs")
    if n_frames - 2 * h < 2 * q:
        log.warning("trajectory %s (%d frames) is too short for the quiet window hops.t_quiet_fs = %g fs "
                    "plus t_R; no atom will be labelled quiet.", trajectory, n_frames, 2 * q * dt)
    temperature = float(traj.attrs.get("temperature_K", np.nan))
    if np.isnan(temperature):
        log.warning("trajectory %s has no temperature_K attribute; hops carry NaN.", trajectory)
    p_c, p_quiet = _thresholds(cfg, "p_c_A2"), _thresholds(cfg, "p_quiet_A2")

    p = p_hop(traj.positions, h, images=traj.images, box=traj.box)
    labels = rearrangement_labels(p, traj.species, p_c, p_quiet, q)
    events = rearrangement_events(p, traj.species, p_c)
    n_per_species = np.bincount(traj.species, minlength=2)
    duration = (n_frames - 2 * h + 1) * dt  # frames with a defined p_hop, each standing for dt
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = events / (n_per_species * duration)
    # Events are onsets of runs above p_c; hot, runs merge and the event rate falls while the
    # share of rearranging labels (what P_R counts) keeps rising, so both are logged.
    for s, name in enumerate(SPECIES_NAMES):
        own = labels[h:n_frames - h + 1, traj.species == s]
        share = (100 * np.mean(own == REARRANGING), 100 * np.mean(own == QUIET)) if own.size else (0.0, 0.0)
        log.info("%s: %d rearrangement events (onsets), %.3g per atom per ps; labels %.3g%% rearranging, "
                 "%.3g%% quiet", name, events[s], rate[s] * 1e3, *share)

    with atomic_h5(out, "hops", cfg) as f:
        f.attrs["temperature_K"] = temperature
        f.attrs["t_R_fs"] = 2 * h * dt
        f.attrs["t_quiet_fs"] = 2 * q * dt
        f.attrs["half_window_frames"] = h
        f.attrs["quiet_half_window_frames"] = q
        f.attrs["frame_interval_fs"] = dt
        f.attrs["source"] = str(trajectory)
        ds = f.create_dataset("p_hop", data=p.astype(np.float32), chunks=True, compression="gzip",
                              compression_opts=1)
        ds.attrs["unit"] = "angstrom^2"
        f.create_dataset("labels", data=labels, chunks=True, compression="gzip", compression_opts=1)
        f["labels"].attrs["meaning"] = "1 rearranging (p_hop > p_c), 0 quiet, -1 neither"
        f["frames"] = np.arange(n_frames, dtype=np.int64)
        f["step"] = traj.step
        f["time_fs"] = traj.time_fs
        f["species"] = traj.species
        f["species_names"] = np.array(SPECIES_NAMES, dtype="S")
        f["thresholds/p_c_A2"] = p_c
        f["thresholds/p_quiet_A2"] = p_quiet
        f["n_events"] = events
        f["rearrangement_rate_per_fs"] = rate
    log.info("wrote %s", out)


# ---------------------------------------------------------------------------- p_hop histograms

def p_hop_histogram(p_hop_values, species, bins) -> np.ndarray:
    """Normalised histograms of log10 p_hop per species.

    Args:
      p_hop_values: [F, N] p_hop (NaN ignored).
      species: [N].
      bins: bin edges in Angstrom^2 (log-spaced for a log-x plot).

    Returns:
      [2, len(bins) - 1] probability density in log10(p_hop) (each row integrates to the
      fraction of defined values inside the bins).
    """
    p = np.asarray(p_hop_values)
    species = np.asarray(species)
    widths = np.diff(np.log10(bins))
    out = np.zeros((2, len(bins) - 1))
    for s in range(2):
        v = p[:, species == s]
        v = v[np.isfinite(v)]
        if v.size:
            out[s] = np.histogram(v, bins=bins)[0] / (v.size * widths)
    return out


def plot_p_hop_histogram(hops_files, out=None, *, bins=None):
    """The p_hop calibration figure: one panel per species, one curve per temperature.

    Log-x histograms of p_hop with the thresholds p_c (solid) and p_quiet (dashed) marked.
    A good p_c lies beyond the vibrational peak, in the tail made by cage jumps.

    Args:
      hops_files: products of :func:`hops_file` (one per temperature).
      out: where to save the figure (any matplotlib format), or None.
      bins: log-spaced bin edges in Angstrom^2 (default 1e-3 ... 1e2).

    Returns:
      The matplotlib Figure.
    """
    # The Figure API draws without pyplot, so no backend is chosen or changed (headless-safe).
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    bins = np.logspace(-3, 2, 101) if bins is None else np.asarray(bins)
    centres = np.sqrt(bins[1:] * bins[:-1])
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    curves = []
    for path in hops_files:
        with open_input(path, "hops") as f:
            require(f, "p_hop", "species", "thresholds/p_c_A2", what="hops")
            curves.append((float(f.attrs.get("temperature_K", np.nan)),
                           p_hop_histogram(f["p_hop"][()], f["species"][()], bins),
                           f["thresholds/p_c_A2"][()], f["thresholds/p_quiet_A2"][()]))
    curves.sort(key=lambda c: c[0])
    cmap = colormaps["coolwarm"]
    for k, (temp, hist, _, _) in enumerate(curves):
        colour = cmap(k / max(1, len(curves) - 1))
        for s, ax in enumerate(axes):
            ax.plot(centres, hist[s], color=colour, label=f"{temp:g} K")
    for s, ax in enumerate(axes):
        if curves:
            ax.axvline(curves[0][2][s], color="k", lw=1, label="$p_c$")
            ax.axvline(curves[0][3][s], color="k", lw=1, ls="--", label="$p_{quiet}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$p_{hop}$ ($\AA^2$)")
        ax.set_title(SPECIES_NAMES[s])
    axes[0].set_ylabel(r"$P(\log_{10} p_{hop})$")
    axes[1].legend(fontsize=7, frameon=False)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=150)
    return fig
