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

Species. Names and count come from the trajectory (``Trajectory.species_names``), never from
a constant; per-species results are indexed by species number in the file's order, and every
product stores ``/species_names``. Per-species thresholds are config mappings keyed by name.

Labels (per species thresholds):
  * 1, rearranging: p_hop(t) > p_c;
  * 0, quiet ("hard"): p_hop stays below p_quiet during the whole window of length
    ``t_quiet`` centred on t (2 q + 1 frames, ``q = round(t_quiet / (2 dt))``), every
    frame of which has a defined p_hop; the structure at t is the middle of that window;
  * -1 otherwise (neither; also every frame where p_hop is NaN).
The classifier trains on these labels.

Events (what P_R counts). A rearrangement *event* of atom i is one excursion of p_hop above
its species' p_c; excursions of the same atom separated by fewer than h frames are one event,
since one jump raises p_hop over about 2 h frames and p_hop may flicker around p_c on the way
up and down. The event sits at the frame where p_hop is largest inside the (merged)
excursion: a jump between frames t-1 and t maximises p_hop at t, so that is the jump frame.
On the first and last frame with a defined p_hop the peak of an excursion may lie outside the
run (a jump before the first frame leaves a falling tail), so no event is located there; the
event rate counts events per atom over the frames where one can be located (F - 2 h - 1
frames, from h + 1 to F - h - 1). The maxima of the excursions (p_hop at the events) are the
calibration of p_c: a well-placed p_c leaves them in a tail of cage jumps (near a^2 for jumps of
length a) clearly above it, not piled up just above p_c on the shoulder of the vibrational peak.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from softness.errors import SoftnessError
from softness.io import atomic_h5, decode_all, open_input, require, system_attribute
from softness.trajectory import read_species_names, read_trajectory

log = logging.getLogger(__name__)

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


def _n_species(species, n_species=None) -> int:
    """The number of species: ``n_species`` if given, else one more than the largest species number."""
    if n_species is not None:
        return int(n_species)
    species = np.asarray(species)
    return int(species.max()) + 1 if species.size else 0


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
      species: [N] species numbers (indices into the per-species thresholds).
      p_c: per-species thresholds [n_species]: rearranging when p_hop > p_c.
      p_quiet: per-species thresholds [n_species]: quiet when p_hop < p_quiet over the quiet window.
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


#: Values of ``/events``.
EVENT, NO_EVENT, UNOBSERVED = 1, 0, -1

#: Bin edges (Angstrom^2) of the stored histogram of excursion maxima, 20 per decade.
EVENT_MAX_EDGES_A2 = np.logspace(-3, 3, 121)


def _event_peaks(p: np.ndarray, p_c: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame and atom of the peak of every merged excursion of p_hop above p_c.

    Args:
      p: [F, n] p_hop (NaN where undefined, which never counts as above p_c).
      p_c: [n] thresholds.
      h: excursions separated by fewer than h frames below p_c are merged.

    Returns:
      frames [E], atoms [E] of the first frame holding each merged excursion's largest p_hop.
    """
    n_frames, n_atoms = p.shape
    width = n_frames + 2  # one frame of padding on both sides keeps each atom's runs apart
    above = np.zeros((n_atoms, width), dtype=bool)
    with np.errstate(invalid="ignore"):
        above[:, 1:-1] = (p > p_c).T
    step = np.diff(above.ravel().view(np.int8))
    starts = np.flatnonzero(step == 1) + 1  # flat index of the first frame of each run above p_c
    ends = np.flatnonzero(step == -1) + 1  # ... and of the first frame after it
    if starts.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    same_atom = starts[1:] // width == ends[:-1] // width
    new_event = np.r_[True, ~same_atom | (starts[1:] - ends[:-1] >= h)]
    ev_start, ev_end = starts[new_event], ends[np.r_[new_event[1:], True]]
    values = np.full((n_atoms, width), -np.inf)
    values[:, 1:-1] = np.where(np.isfinite(p), p, -np.inf).T
    values = values.ravel()
    peak_value = np.maximum.reduceat(values, np.ravel(np.column_stack([ev_start, ev_end])))[::2]
    # Which event each flat index inside an event belongs to, then its first maximum.
    opened = np.zeros(values.size, np.int64)
    opened[ev_start] = 1
    closed = np.zeros(values.size, np.int64)
    closed[ev_end] = 1
    event_id = np.cumsum(opened) - 1
    inside = np.flatnonzero(event_id >= np.cumsum(closed))  # opened more events than closed
    event_id = event_id[inside]
    hit = values[inside] == peak_value[event_id]
    at_peak, peak_id = inside[hit], event_id[hit]
    first = at_peak[np.r_[True, np.diff(peak_id) != 0]]
    return first % width - 1, first // width


def rearrangement_events(p_hop_values, species, p_c, half_window: int, *,
                         atom_chunk: int = 1024) -> np.ndarray:
    """Rearrangement events: the peak frame of each excursion of p_hop above p_c.

    An excursion is a run of frames with p_hop > p_c; runs of one atom separated by fewer than
    ``half_window`` frames are one event (one jump raises p_hop for about 2 h frames and may
    flicker around p_c). The event is placed at the frame of the largest p_hop inside it, which
    is the jump frame t of a jump between frames t-1 and t.

    Args:
      p_hop_values: [F, N] p_hop in Angstrom^2 (NaN where undefined).
      species: [N] species numbers.
      p_c: per-species thresholds [n_species] in Angstrom^2.
      half_window: h, the half window of p_hop in frames (the merging distance).
      atom_chunk: atoms processed together (bounds the temporary memory).

    Returns:
      [F, N] int8: 1 at each event, 0 elsewhere, -1 where no event can be located: where p_hop
      is NaN, and on each atom's first and last frame with a defined p_hop (a peak there may lie
      outside the run; an event whose peak falls there is not counted).
    """
    p = np.asarray(p_hop_values)
    n_frames, n_atoms = p.shape
    p_c_atom = _per_atom(p_c, species)
    events = np.zeros((n_frames, n_atoms), dtype=np.int8)
    for a0 in range(0, n_atoms, atom_chunk):
        sl = slice(a0, min(a0 + atom_chunk, n_atoms))
        frames, atoms = _event_peaks(p[:, sl], p_c_atom[sl], int(half_window))
        events[frames, atoms + a0] = EVENT
    defined = np.isfinite(p)
    events[~defined] = UNOBSERVED
    has = defined.any(axis=0)
    cols = np.flatnonzero(has)
    events[np.argmax(defined, axis=0)[has], cols] = UNOBSERVED
    events[n_frames - 1 - np.argmax(defined[::-1], axis=0)[has], cols] = UNOBSERVED
    return events


def event_p_hop_maxima(p_hop_values, events, species, n_species=None) -> list[np.ndarray]:
    """The excursion maximum of every event per species: p_hop at the event frames.

    Args:
      n_species: number of species (default: one more than the largest species number).

    Returns:
      one array per species number, in Angstrom^2.
    """
    frames, atoms = np.nonzero(np.asarray(events) == EVENT)
    values = np.asarray(p_hop_values)[frames, atoms]
    own = np.asarray(species)[atoms]
    return [values[own == s] for s in range(_n_species(species, n_species))]


def event_statistics(events, species, dt_fs: float, half_window: int, n_species=None) -> dict:
    """Per-species event counts, rates and the share of atoms with an event per p_hop window.

    Args:
      events: [F, N] output of :func:`rearrangement_events`.
      species: [N].
      dt_fs: frame interval in fs.
      half_window: h; the p_hop window is 2 h frames.
      n_species: number of species (default: one more than the largest species number).

    Returns:
      dict of [n_species] arrays: ``n_events``, ``observed_fs`` (atom-frames where an event can be
      located, times dt, summed over the species' atoms), ``rate_per_fs`` (events per atom per
      fs) and ``window_fraction`` (fraction of (atom, window) pairs with at least one event, over
      consecutive windows of 2 h frames where every atom's events are observed).
    """
    events = np.asarray(events)
    species = np.asarray(species)
    observed_rows = np.flatnonzero(np.all(events != UNOBSERVED, axis=1))
    n_windows = observed_rows.size // (2 * half_window)
    n = _n_species(species, n_species)
    out = {"n_events": np.zeros(n, np.int64), "observed_fs": np.zeros(n),
           "rate_per_fs": np.full(n, np.nan), "window_fraction": np.full(n, np.nan)}
    for s in range(n):
        own = events[:, species == s]
        out["n_events"][s] = np.sum(own == EVENT)
        out["observed_fs"][s] = np.sum(own != UNOBSERVED) * dt_fs
        if out["observed_fs"][s] > 0:
            out["rate_per_fs"][s] = out["n_events"][s] / out["observed_fs"][s]
        if n_windows and own.shape[1]:
            rows = observed_rows[: n_windows * 2 * half_window]
            per_window = (own[rows] == EVENT).reshape(n_windows, 2 * half_window, -1).any(axis=1)
            out["window_fraction"][s] = per_window.mean()
    return out


# ---------------------------------------------------------------------------- the stage

def species_thresholds(cfg: dict, key: str, species_names, source) -> np.ndarray:
    """A per-species threshold ``hops.<key>`` looked up by the species names of a file.

    Args:
      cfg: resolved config; ``cfg["hops"][key]`` maps species names to values (A^2).
      key: ``"p_c_A2"`` or ``"p_quiet_A2"``.
      species_names: the names of the file's species, indexed by species number.
      source: the file the names come from (for the error message).

    Returns:
      [n_species] float64 thresholds in the file's species order.

    Raises:
      SoftnessError: the mapping has no value for one of the file's species.
    """
    values = cfg["hops"][key]
    if not isinstance(values, Mapping):
        raise SoftnessError(f"config key 'hops.{key}' must map species names to thresholds in A^2, "
                            f"e.g. {{{', '.join(f'{n}: 1.0' for n in species_names)}}}.")
    for name in species_names:
        if name not in values:
            raise SoftnessError(f"config key 'hops.{key}' has no value for species '{name}' of "
                                f"{source}.")
    return np.array([values[name] for name in species_names], dtype=np.float64)


def _names_of_source(source) -> tuple:
    """Species names and ``system`` attribute of the file a product is made from.

    The file is a product with ``/species_names`` (e.g. a features file) or a trajectory.
    """
    try:
        with h5py.File(source, "r") as f:
            system = system_attribute(f.attrs)
            if "species_names" in f:
                return decode_all(f["species_names"][()]), system
            is_trajectory = "particles/all/species" in f
    except (OSError, TypeError) as exc:
        raise SoftnessError(f"cannot read the species names of {source} ({exc}).") from None
    if is_trajectory:
        return read_species_names(source), system
    raise SoftnessError(f"file {source} stores no species names (/species_names), so the hops product "
                        "made from it cannot name its species.")


def write_hops_datasets(f, *, p_hop_values, labels, events, stats, species, frames, step, time_fs, p_c,
                        p_quiet, dt_fs: float, half_window: int, quiet_half_window: int,
                        temperature_K: float, source, species_names=None, system=None) -> None:
    """The datasets and attributes of a hops product (see :func:`hops_file`) in an open file.

    Args:
      f: writable HDF5 file.
      p_hop_values, labels, events: [F, N]; stats: :func:`event_statistics` of ``events``;
      species: [N]; frames, step, time_fs: [F].
      p_c, p_quiet: [n_species] thresholds; dt_fs, half_window, quiet_half_window: the frame
        interval and the half windows of t_R and t_quiet in frames.
      temperature_K: T; source: the file the events come from.
      species_names: the name of each species number; default: read from ``source`` (its
        ``/species_names``, or a trajectory's species names), together with its ``system``.
      system: the root attribute ``system`` to record (e.g. "silica"); None: none (or the
        source's, when the names are read from it).
    """
    if species_names is None:
        species_names, source_system = _names_of_source(source)
        system = source_system if system is None else system
    species_names = tuple(str(n) for n in species_names)
    n_species = len(species_names)
    species = np.asarray(species)
    if species.size and not (species.min() >= 0 and species.max() < n_species):
        raise SoftnessError(f"the species numbers of {source} ({int(species.min())} to {int(species.max())}) "
                            f"do not all name one of its {n_species} species {', '.join(species_names)}.")
    if np.shape(p_c) != (n_species,) or np.shape(p_quiet) != (n_species,):
        raise SoftnessError(f"the thresholds for {source} must have one value per species "
                            f"({', '.join(species_names)}), not {np.shape(p_c)} and {np.shape(p_quiet)}.")
    h, q = half_window, quiet_half_window
    if system is not None:
        f.attrs["system"] = str(system)
    f.attrs["temperature_K"] = temperature_K
    f.attrs["t_R_fs"] = 2 * h * dt_fs
    f.attrs["t_quiet_fs"] = 2 * q * dt_fs
    f.attrs["half_window_frames"] = h
    f.attrs["quiet_half_window_frames"] = q
    f.attrs["frame_interval_fs"] = dt_fs
    f.attrs["source"] = str(source)
    ds = f.create_dataset("p_hop", data=np.asarray(p_hop_values).astype(np.float32), chunks=True,
                          compression="gzip", compression_opts=1)
    ds.attrs["unit"] = "angstrom^2"
    f.create_dataset("labels", data=labels, chunks=True, compression="gzip", compression_opts=1)
    f["labels"].attrs["meaning"] = "1 rearranging (p_hop > p_c), 0 quiet, -1 neither"
    f.create_dataset("events", data=np.asarray(events, np.int8), chunks=True, compression="gzip",
                     compression_opts=1)
    f["events"].attrs["meaning"] = (
        "1 at the frame where a rearrangement event peaks (an excursion of p_hop above p_c, "
        "excursions closer than half_window_frames merged; for a jump between frames t-1 and t, "
        "frame t), 0 elsewhere, -1 where no event can be located (p_hop undefined, or the first or "
        "last frame where it is defined)")
    f["frames"] = np.asarray(frames, np.int64)
    f["step"] = step
    f["time_fs"] = np.asarray(time_fs, np.float64)
    f["species"] = species
    f["species_names"] = np.array(species_names, dtype="S")
    f["thresholds/p_c_A2"] = p_c
    f["thresholds/p_quiet_A2"] = p_quiet
    f["n_events"] = stats["n_events"]
    f["rearrangement_rate_per_fs"] = stats["rate_per_fs"]
    f["rearrangement_rate_per_fs"].attrs["meaning"] = (
        "events per atom per fs over the frames where an event can be located (events != -1)")
    f["event_window_fraction"] = stats["window_fraction"]
    f["event_window_fraction"].attrs["meaning"] = (
        "fraction of (atom, p_hop window of t_R_fs) pairs with at least one event")
    maxima = event_p_hop_maxima(p_hop_values, events, species, n_species)
    f["event_p_hop_max/counts"] = np.array([np.histogram(v, bins=EVENT_MAX_EDGES_A2)[0] for v in maxima],
                                           dtype=np.int64).reshape(n_species, len(EVENT_MAX_EDGES_A2) - 1)
    f["event_p_hop_max/counts"].attrs["meaning"] = (
        f"per species ({', '.join(species_names)}), number of events whose excursion maximum of p_hop "
        "falls in each bin")
    f["event_p_hop_max/edges_A2"] = EVENT_MAX_EDGES_A2
    f["event_p_hop_max/edges_A2"].attrs["unit"] = "angstrom^2"


def hops_file(cfg: dict, trajectory, out) -> None:
    """The ``softness hops`` stage: p_hop, labels and rearrangement events of every atom and frame.

    Args:
      cfg: resolved config (uses ``hops``).
      trajectory: H5MD trajectory with image flags.
      out: the HDF5 product to write. Datasets: ``/p_hop`` [F, N] float32 (A^2, NaN where
        the window does not fit), ``/labels`` [F, N] int8, ``/events`` [F, N] int8 (see
        :func:`rearrangement_events`), ``/frames``, ``/step``, ``/time_fs``, ``/species``,
        ``/species_names`` (the trajectory's), ``/thresholds/p_c_A2`` [S],
        ``/thresholds/p_quiet_A2`` [S], ``/n_events`` [S] (events), ``/rearrangement_rate_per_fs``
        [S] (events per atom per fs over the frames where an event can be located),
        ``/event_window_fraction`` [S] (share of atoms with an event per p_hop window),
        ``/event_p_hop_max/counts`` [S, K] and ``/event_p_hop_max/edges_A2`` [K + 1] (histogram
        of the excursion maxima, p_hop at the events), with S the number of species, indexed by
        species number; root attributes ``temperature_K``, ``t_R_fs`` and ``t_quiet_fs`` (as
        used, after rounding to frames), ``half_window_frames``, ``quiet_half_window_frames``,
        ``frame_interval_fs``, ``source`` and ``system`` (the trajectory's, when it has one).

    Raises:
      SoftnessError: ``hops.p_c_A2`` or ``hops.p_quiet_A2`` has no value for a species of the
        trajectory, or the trajectory is unusable (see the messages).
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
    names = tuple(traj.species_names)
    where = f"trajectory {trajectory}"
    p_c = species_thresholds(cfg, "p_c_A2", names, where)
    p_quiet = species_thresholds(cfg, "p_quiet_A2", names, where)
    system = system_attribute(traj.attrs)

    p = p_hop(traj.positions, h, images=traj.images, box=traj.box)
    labels = rearrangement_labels(p, traj.species, p_c, p_quiet, q)
    events = rearrangement_events(p, traj.species, p_c, h)
    stats = event_statistics(events, traj.species, dt, h, len(names))
    for s, name in enumerate(names):
        own = labels[h:n_frames - h + 1, traj.species == s]
        share = (100 * np.mean(own == REARRANGING), 100 * np.mean(own == QUIET)) if own.size else (0.0, 0.0)
        log.info("%s: %d rearrangement events, %.3g per atom per ps, %.3g%% of atoms with an event per "
                 "p_hop window of %g fs; labels %.3g%% rearranging, %.3g%% quiet", name,
                 stats["n_events"][s], stats["rate_per_fs"][s] * 1e3, 100 * stats["window_fraction"][s],
                 2 * h * dt, *share)

    with atomic_h5(out, "hops", cfg) as f:
        write_hops_datasets(f, p_hop_values=p, labels=labels, events=events, stats=stats,
                            species=traj.species, frames=np.arange(n_frames, dtype=np.int64), step=traj.step,
                            time_fs=traj.time_fs,
                            p_c=p_c, p_quiet=p_quiet, dt_fs=dt, half_window=h, quiet_half_window=q,
                            temperature_K=temperature, source=trajectory, species_names=names,
                            system=system)
    log.info("wrote %s", out)


# ---------------------------------------------------------------------------- p_hop histograms

def p_hop_histogram(p_hop_values, species, bins, n_species=None) -> np.ndarray:
    """Normalised histograms of log10 p_hop per species.

    Args:
      p_hop_values: [F, N] p_hop (NaN ignored).
      species: [N].
      bins: bin edges in Angstrom^2 (log-spaced for a log-x plot).
      n_species: number of species (default: one more than the largest species number).

    Returns:
      [n_species, len(bins) - 1] probability density in log10(p_hop) (each row integrates to
      the fraction of defined values inside the bins; zeros for a species without values).
    """
    p = np.asarray(p_hop_values)
    species = np.asarray(species)
    widths = np.diff(np.log10(bins))
    n = _n_species(species, n_species)
    out = np.zeros((n, len(bins) - 1))
    for s in range(n):
        v = p[:, species == s]
        v = v[np.isfinite(v)]
        if v.size:
            out[s] = np.histogram(v, bins=bins)[0] / (v.size * widths)
    return out


def event_max_histogram(p_hop_values, events, species, bins, n_species=None) -> np.ndarray:
    """Normalised histograms of log10 of the excursion maxima (p_hop at the events) per species.

    Args:
      p_hop_values: [F, N] p_hop; events: [F, N] (:func:`rearrangement_events`); species: [N].
      bins: bin edges in Angstrom^2 (log-spaced).
      n_species: number of species (default: one more than the largest species number).

    Returns:
      [n_species, len(bins) - 1] probability density in log10(max p_hop) over the species' events.
    """
    peaks = np.where(np.asarray(events) == EVENT, np.asarray(p_hop_values), np.nan)
    return p_hop_histogram(peaks, species, bins, n_species)


def plot_p_hop_histogram(hops_files, out=None, *, bins=None):
    """The p_hop calibration figure: per species, p_hop and the excursion maxima of the events.

    Top row: log-x histograms of p_hop over all frames, one curve per temperature. Bottom row:
    histograms of the maxima of the excursions that make the events (p_hop at each event),
    with the number of events in the legend. p_c (solid) and p_quiet (dashed) are marked on
    every panel. A good p_c lies beyond the vibrational peak of the top row and leaves the
    bottom row a tail of cage jumps clearly above p_c, not a pile-up just above it.

    Args:
      hops_files: products of :func:`hops_file` (one per temperature), all of the same species
        (their ``/species_names``).
      out: where to save the figure (any matplotlib format), or None.
      bins: log-spaced bin edges in Angstrom^2 (default 1e-3 ... 1e2).

    Returns:
      The matplotlib Figure with one column per species, in the files' species order (axes:
      the p_hop panel of every species, then the event-maxima panel of every species).

    Raises:
      SoftnessError: a file lacks a dataset, or the files name different species.
    """
    # The Figure API draws without pyplot, so no backend is chosen or changed (headless-safe).
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    bins = np.logspace(-3, 2, 101) if bins is None else np.asarray(bins)
    centres = np.sqrt(bins[1:] * bins[:-1])
    curves, names, first = [], None, None
    for path in hops_files:
        with open_input(path, "hops") as f:
            require(f, "p_hop", "events", "species", "species_names", "thresholds/p_c_A2",
                    "thresholds/p_quiet_A2", what="hops")
            own_names = decode_all(f["species_names"][()])
            if names is None:
                names, first = own_names, path
            elif own_names != names:
                raise SoftnessError(f"hops file {path} has species {', '.join(own_names)} but {first} has "
                                    f"{', '.join(names)}; one figure needs files of one system.")
            n = len(names)
            p, events, species = f["p_hop"][()], f["events"][()], f["species"][()]
            curves.append((float(f.attrs.get("temperature_K", np.nan)), p_hop_histogram(p, species, bins, n),
                           event_max_histogram(p, events, species, bins, n),
                           [int(np.sum(events[:, species == s] == EVENT)) for s in range(n)],
                           f["thresholds/p_c_A2"][()], f["thresholds/p_quiet_A2"][()]))
    names = () if names is None else names
    n_cols = max(len(names), 1)
    fig = Figure(figsize=(4 * n_cols, 6), layout="constrained")
    axes = fig.subplots(2, n_cols, sharex=True, squeeze=False)
    curves.sort(key=lambda c: c[0])
    cmap = colormaps["coolwarm"]
    for k, (temp, hist, peaks, n_events, _, _) in enumerate(curves):
        colour = cmap(k / max(1, len(curves) - 1))
        for s in range(len(names)):
            axes[0, s].plot(centres, hist[s], color=colour, label=f"{temp:g} K")
            label = f"{temp:g} K ({n_events[s]} event{'' if n_events[s] == 1 else 's'})"
            axes[1, s].plot(centres, peaks[s], color=colour, label=label)
    for row in range(2):
        for s, ax in enumerate(axes[row]):
            if curves and s < len(names):
                ax.axvline(curves[0][4][s], color="k", lw=1, label="$p_c$")
                ax.axvline(curves[0][5][s], color="k", lw=1, ls="--", label="$p_{quiet}$")
            ax.set_xscale("log")
            if any(np.any(c[1 + row][s] > 0) for c in curves if s < len(c[1 + row])):
                ax.set_yscale("log")  # (a species without events has nothing to show on a log axis)
            ax.legend(fontsize=6, frameon=False)
        axes[row, 0].set_ylabel([r"$P(\log_{10} p_{hop})$, all frames",
                                 r"$P(\log_{10} \max p_{hop})$, events"][row])
    for s, name in enumerate(names):
        axes[0, s].set_title(name)
        axes[1, s].set_title(f"{name} events: excursion maxima")
    for ax in axes[1]:
        ax.set_xlabel(r"$p_{hop}$ ($\AA^2$)")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=150)
    return fig
