"""Softness where people look at atoms: frames with per-atom softness, p_hop and labels for OVITO.

:func:`export_frames` (``softness export``) joins three products of one run -- the trajectory,
its softness file (``softness apply``) and its hops file (``softness hops``) -- and writes the
chosen frames (by default every frame that has a softness, i.e. every feature frame) as

* **extended XYZ** (``format="extxyz"``), written by ASE (``ase.io.write(..., format="extxyz")``),
  which OVITO, ASE and most viewers read, or
* a **LAMMPS dump** (``format="lammps-dump"``, ``ITEM: ATOMS id type x y z ix iy iz ...``): ASE
  reads but does not write this format (its ``lammps-dump-text`` is read-only), so the few header
  and column lines are written here; OVITO, ASE and MDAnalysis read it.

Per atom (extxyz column / dump column):

* the species: in extxyz the chemical symbol column (``species``) when every species name of the
  files is a chemical symbol (silica: Si, O), otherwise symbol ``X`` and a string column
  ``species_name`` (Kob-Andersen: A, B); always an integer ``species_id`` (the species number,
  an index into the files' species names). In the dump, ``type`` = species number + 1 (LAMMPS
  types start at 1; the names are in the order of the products' ``/species_names``);
* positions in Angstrom, wrapped into the box [0, L) (``pos`` / ``x y z``); the image flags
  (``image`` / ``ix iy iz``) so that position + image * L is the exact unwrapped path; with
  ``unwrapped=True`` also the unwrapped positions (``unwrapped`` / ``xu yu zu``);
* ``softness`` (NaN at a frame that is not a softness frame), ``p_hop`` in Angstrom^2 (NaN where
  its window does not fit), ``rearranging`` (1 where the hops label is 1: p_hop > p_c) and
  ``quiet`` (1 where the label is 0), as integers;
* ``about_to_rearrange``: the definition of P_R in :mod:`softness.arrhenius` -- 1 if the atom
  starts a rearrangement (a hops event, ``/events`` == 1) at a trajectory frame g with
  f <= g < f + Delta, Delta = ``arrhenius.P_R_window_fs`` in whole frames
  (:func:`softness.arrhenius.P_R_window_frames`), 0 if it does not, and -1 where this cannot be
  decided, exactly where arrhenius leaves (f, i) out: the window runs past the hops frames, or an
  event cannot be located at one of its frames (``/events`` == -1).

Per frame (extxyz comment line): the cell (``Lattice``) and ``pbc``, ``time_fs``, ``step``,
``frame`` (the trajectory frame index), ``temperature_K``, ``P_R_window_fs`` and, when the
products name one, ``system``; the dump stores the step as its TIMESTEP and the box bounds.

Bad input -- a missing or unreadable file, products that describe different atoms, species,
times or temperatures, frames that the trajectory does not hold -- raises
:class:`~softness.errors.SoftnessError` with one sentence, and nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softness.errors import SoftnessError
from softness.io import decode, open_input, require, temporary_path

log = logging.getLogger(__name__)

#: Output formats of :func:`export_frames`.
FORMATS = ("extxyz", "lammps-dump")

#: Frames read and written together (bounds memory for long runs).
CHUNK_FRAMES = 64


# ---------------------------------------------------------------------------- the products

@dataclass
class ExportSource:
    """Three products of one run, checked against each other (see :func:`open_products`)."""

    trajectory: Path
    softness: Path
    hops: Path
    n_frames: int  #: trajectory frames
    species: np.ndarray  #: [N] species numbers
    species_names: tuple  #: names indexed by species number
    time_fs: np.ndarray  #: [F] trajectory frame times
    softness_frames: np.ndarray  #: [F_s] trajectory frame index of each softness row
    hops_frames: np.ndarray  #: [F_h] trajectory frame index of each hops row
    window_frames: int  #: Delta in hops frames
    window_fs: float  #: Delta as used (whole frames)
    temperature_K: float
    system: str | None = None
    attrs: dict = field(default_factory=dict)


@dataclass
class ExportFrames:
    """Per-atom data of some trajectory frames, ready to write or plot (every array in frame order)."""

    frames: np.ndarray  #: [K] trajectory frame indices
    step: np.ndarray  #: [K]
    time_fs: np.ndarray  #: [K]
    box: np.ndarray  #: [K, 3] Angstrom
    positions: np.ndarray  #: [K, N, 3] wrapped into [0, L), Angstrom
    images: np.ndarray  #: [K, N, 3] int image flags (unwrapped = positions + images * box)
    species: np.ndarray  #: [N]
    species_names: tuple
    softness: np.ndarray  #: [K, N] float64, NaN where the frame has no softness
    p_hop: np.ndarray  #: [K, N] float64 Angstrom^2, NaN where undefined
    labels: np.ndarray  #: [K, N] int8 hops labels (1 rearranging, 0 quiet, -1 neither)
    about_to_rearrange: np.ndarray  #: [K, N] int8: 1, 0, or -1 (undecided)
    temperature_K: float
    window_fs: float
    system: str | None = None

    @property
    def unwrapped(self) -> np.ndarray:
        """[K, N, 3] unwrapped positions (Angstrom)."""
        return self.positions + self.images * self.box[:, None, :]

    @property
    def rearranging(self) -> np.ndarray:
        """[K, N] int8, 1 where the hops label is rearranging."""
        return (self.labels == 1).astype(np.int8)

    @property
    def quiet(self) -> np.ndarray:
        """[K, N] int8, 1 where the hops label is quiet."""
        return (self.labels == 0).astype(np.int8)


def _attr_float(attrs, key) -> float:
    try:
        return float(attrs.get(key, np.nan))
    except (TypeError, ValueError):
        return np.nan


def _stored_window_fs(attrs) -> float | None:
    """``arrhenius.P_R_window_fs`` of the config a product stores, or None."""
    try:
        cfg = json.loads(decode(attrs.get("config", "{}")))
        return float(cfg["arrhenius"]["P_R_window_fs"])
    except (ValueError, KeyError, TypeError):
        return None


def _default_window_fs() -> float:
    from softness import config as config_mod

    return float(config_mod.load(None)["arrhenius"]["P_R_window_fs"])


def _check_times(times, traj_times, what: str, path, trajectory) -> None:
    if times is None:
        return
    if not np.allclose(times, traj_times, rtol=1e-9, atol=1e-6):
        k = int(np.argmax(~np.isclose(times, traj_times, rtol=1e-9, atol=1e-6)))
        raise SoftnessError(f"{what} file {path} has time {float(times[k]):g} fs where trajectory "
                            f"{trajectory} has {float(traj_times[k]):g} fs at the same frame; they come "
                            "from different runs.")


def _product_frames(f, what: str, path, trajectory, n_frames: int, traj_times) -> np.ndarray:
    frames = np.asarray(f["frames"][()], dtype=np.int64)
    if frames.size and (np.any(np.diff(frames) <= 0) or frames[0] < 0 or frames[-1] >= n_frames):
        raise SoftnessError(f"{what} file {path} refers to trajectory frames {int(frames.min())} to "
                            f"{int(frames.max())} (increasing) but trajectory {trajectory} has frames 0 to "
                            f"{n_frames - 1}; they come from different runs.")
    _check_times(f["time_fs"][()] if "time_fs" in f else None, traj_times[frames], what, path, trajectory)
    return frames


def _check_p_hop(trajectory, hops, hops_frames) -> None:
    """Refuse a hops file whose p_hop at one frame is not the trajectory's (made from another run).

    p_hop of every atom is recomputed from the 2 h trajectory frames around the first hops frame
    where it is defined for every atom (h: the file's ``half_window_frames``), a few frames of work.
    """
    from softness.hops import p_hop
    from softness.trajectory import read_trajectory

    with open_input(hops, "hops") as f:
        h = int(f.attrs.get("half_window_frames", 0))
        if h < 1 or hops_frames.size < 2 * h + 1:
            return
        row = h
        g = int(hops_frames[row])
        if not np.array_equal(hops_frames[row - h:row + h], np.arange(g - h, g + h)):
            return
        stored = np.asarray(f["p_hop"][row], dtype=np.float64)
    traj = read_trajectory(trajectory, frames=np.arange(g - h, g + h))
    if not np.all(np.isfinite(traj.positions)):
        return  # the trajectory's own problem, reported where its frames are read
    mine = p_hop(traj.positions, h, images=traj.images, box=traj.box)[h]
    ok = np.isclose(mine, stored, rtol=1e-3, atol=1e-6) | (np.isnan(mine) & np.isnan(stored))
    if not ok.all():
        i = int(np.argmin(ok))
        raise SoftnessError(f"hops file {hops} does not come from trajectory {trajectory}: its p_hop of atom "
                            f"{i} at frame {g} is {stored[i]:.4g} A^2 but the trajectory gives "
                            f"{mine[i]:.4g} A^2.")


def open_products(trajectory, softness, hops, *, window_fs: float | None = None) -> ExportSource:
    """Check that a trajectory, its softness file and its hops file describe the same run.

    Args:
      trajectory: H5MD trajectory (:mod:`softness.trajectory`).
      softness: product of ``softness apply`` made from that trajectory's features.
      hops: product of ``softness hops`` made from that trajectory.
      window_fs: Delta, the P_R window of ``about_to_rearrange`` in fs; default: the
        ``arrhenius.P_R_window_fs`` of the config stored in the hops (else softness) file, else
        the schema default.

    Returns:
      An :class:`ExportSource`.

    Raises:
      SoftnessError: a file is missing or of the wrong kind, or the files differ in atoms, species,
        frame times or temperature.
    """
    from softness.arrhenius import P_R_window_frames, hops_frame_interval_fs
    from softness.classifier import species_names_of
    from softness.trajectory import PARTICLES, read_trajectory

    trajectory, softness, hops = Path(trajectory), Path(softness), Path(hops)
    first = read_trajectory(trajectory, frames=np.array([0]))  # validates layout, species, images
    with open_input(trajectory, "trajectory") as f:
        traj_times = f[PARTICLES + "/position/time"][()].astype(np.float64)
        n_frames = int(f[PARTICLES + "/position/value"].shape[0])
    species, names = first.species, tuple(first.species_names)
    temps = {f"trajectory {trajectory}": _attr_float(first.attrs, "temperature_K")}
    system = first.attrs.get("system")
    stored_window = None
    frames = {}
    for what, path, needed in (("softness", softness, ("softness", "frames", "species")),
                               ("hops", hops, ("p_hop", "labels", "events", "frames", "time_fs", "species"))):
        with open_input(path, what) as f:
            require(f, *needed, what=what)
            own = species_names_of(f, what, path)
            if own != names:
                raise SoftnessError(f"{what} file {path} names the species ({', '.join(own)}) but "
                                    f"trajectory {trajectory} names ({', '.join(names)}); they come from "
                                    "different systems.")
            own_species = np.asarray(f["species"][()])
            if own_species.shape != species.shape or not np.array_equal(own_species, species):
                raise SoftnessError(f"{what} file {path} describes {own_species.size} atoms that are not the "
                                    f"{species.size} atoms of trajectory {trajectory} ('/species' differ).")
            data = f[needed[0]]
            if data.shape != (f["frames"].shape[0], species.size):
                raise SoftnessError(f"{what} file {path}: '/{needed[0]}' has shape {data.shape}, not one row "
                                    f"per frame of '/frames' and one column per atom.")
            if what == "hops" and (f["labels"].shape != data.shape or f["events"].shape != data.shape):
                raise SoftnessError(f"hops file {path}: '/p_hop', '/labels' and '/events' differ in shape.")
            frames[what] = _product_frames(f, what, path, trajectory, n_frames, traj_times)
            temps[f"{what} file {path}"] = _attr_float(f.attrs, "temperature_K")
            system = system if system is not None else f.attrs.get("system")
            if what == "hops":
                if window_fs is None:
                    stored_window = _stored_window_fs(f.attrs)
                dt_hops = hops_frame_interval_fs(f) if frames["hops"].size > 1 else np.nan
            elif window_fs is None and stored_window is None:
                stored_window = _stored_window_fs(f.attrs)
    known = {k: v for k, v in temps.items() if np.isfinite(v)}
    if known:
        (ref_what, ref), *rest = known.items()
        for other, value in rest:
            if not np.isclose(value, ref, rtol=1e-6, atol=0.0):
                raise SoftnessError(f"{other} is at {value:g} K but {ref_what} is at {ref:g} K; they come "
                                    "from different temperatures.")
    temperature = next(iter(known.values())) if known else np.nan
    if window_fs is None:
        window_fs = stored_window if stored_window is not None else _default_window_fs()
    if not np.isfinite(dt_hops):
        raise SoftnessError(f"hops file {hops} has {frames['hops'].size} frame(s); at least two are needed.")
    w = P_R_window_frames(float(window_fs), dt_hops, f"hops file {hops}")
    _check_p_hop(trajectory, hops, frames["hops"])
    return ExportSource(trajectory=trajectory, softness=softness, hops=hops, n_frames=n_frames,
                        species=species, species_names=names, time_fs=traj_times,
                        softness_frames=frames["softness"], hops_frames=frames["hops"], window_frames=w,
                        window_fs=w * dt_hops, temperature_K=temperature,
                        system=None if system is None else decode(system), attrs=dict(first.attrs))


def select_frames(source: ExportSource, frames=None) -> np.ndarray:
    """Trajectory frame indices to export: ``frames`` (sorted, unique), default the softness frames.

    Raises:
      SoftnessError: no frame selected, or a frame the trajectory does not hold.
    """
    if frames is None:
        sel = np.asarray(source.softness_frames, dtype=np.int64)
        if sel.size == 0:
            raise SoftnessError(f"softness file {source.softness} holds no frame to export.")
        return sel
    sel = np.unique(np.asarray(frames, dtype=np.int64).ravel())
    if sel.size == 0:
        raise SoftnessError("no frame was selected to export.")
    if sel[0] < 0 or sel[-1] >= source.n_frames:
        bad = int(sel[0] if sel[0] < 0 else sel[-1])
        raise SoftnessError(f"frame {bad} is not a frame of trajectory {source.trajectory} (frames 0 to "
                            f"{source.n_frames - 1}).")
    return sel


def about_to_rearrange(frames, hops_frames, events, window_frames: int) -> np.ndarray:
    """Whether each atom starts a rearrangement within the P_R window after each frame.

    The definition of :mod:`softness.arrhenius`: the window of frame f is trajectory frames
    f ... f + window_frames - 1; an atom is about to rearrange when an event (``events`` == 1) of
    the hops file falls in it. The answer is undecided (-1) where arrhenius does not count (f, i):
    the window is not wholly inside the hops frames, or an event cannot be located at one of its
    frames (``events`` == -1).

    Args:
      frames: [K] increasing trajectory frame indices.
      hops_frames: [F_h] increasing trajectory frame index of each row of ``events``.
      events: [F_h, N] ``/events`` of a hops file (array or h5py dataset).
      window_frames: Delta in frames.

    Returns:
      [K, N] int8: 1 (about to rearrange), 0 (not), -1 (undecided).
    """
    from softness.arrhenius import event_windows

    frames = np.asarray(frames, dtype=np.int64)
    lo, hi, complete = event_windows(frames, hops_frames, int(window_frames))
    out = np.full((frames.size, events.shape[1]), -1, dtype=np.int8)
    for k in np.flatnonzero(complete):
        ev = np.asarray(events[int(lo[k]):int(hi[k])])
        valid = ~np.any(ev < 0, axis=0)
        out[k] = np.where(valid, np.any(ev == 1, axis=0), -1)
    return out


def decided_frames(source: ExportSource) -> np.ndarray:
    """The softness frames at which ``about_to_rearrange`` is decided (0 or 1) for every atom."""
    from softness.arrhenius import event_windows

    with open_input(source.hops, "hops") as fh:
        events = fh["events"]
        bad = np.zeros(events.shape[0], dtype=bool)
        step = max(1, 2**22 // max(1, events.shape[1]))
        for r0 in range(0, events.shape[0], step):
            bad[r0:r0 + step] = np.any(events[r0:r0 + step] < 0, axis=1)
    n_bad = np.concatenate([[0], np.cumsum(bad)])
    lo, hi, complete = event_windows(source.softness_frames, source.hops_frames, source.window_frames)
    return source.softness_frames[complete & (n_bad[hi] == n_bad[lo])]


def _rows_of(frames, product_frames):
    """Row of each frame in a product (-1 where it has none)."""
    product_frames = np.asarray(product_frames, dtype=np.int64)
    if product_frames.size == 0:
        return np.full(np.shape(frames), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(product_frames, frames), product_frames.size - 1)
    return np.where(product_frames[pos] == frames, pos, -1)


def _gather(dset, rows, n_atoms: int, fill, dtype):
    out = np.full((rows.size, n_atoms), fill, dtype=dtype)
    have = rows >= 0
    if have.any():
        out[have] = dset[rows[have]]  # rows are increasing (frames and product frames both are)
    return out


def read_frames(source: ExportSource, frames) -> ExportFrames:
    """Per-atom data of trajectory ``frames`` (increasing indices from :func:`select_frames`)."""
    from softness.trajectory import read_trajectory

    frames = np.asarray(frames, dtype=np.int64)
    traj = read_trajectory(source.trajectory, frames=frames)
    positions = traj.positions.astype(np.float64)
    box = np.asarray(traj.box, dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        raise SoftnessError(f"trajectory {source.trajectory} holds non-finite positions in frames "
                            f"{int(frames[0])} to {int(frames[-1])}.")
    # Positions outside [0, L) (another writer's convention): wrap them, keeping the exact unwrapped path.
    shift = np.floor(positions / box[:, None, :])
    positions = positions - shift * box[:, None, :]
    at_edge = positions >= box[:, None, :]  # x - floor(x / L) L rounded up to exactly L
    positions[at_edge] = 0.0
    images = traj.images.astype(np.int64) + shift.astype(np.int64) + at_edge
    n_atoms = source.species.size
    s_rows = _rows_of(frames, source.softness_frames)
    h_rows = _rows_of(frames, source.hops_frames)
    with open_input(source.softness, "softness") as fs:
        softness = _gather(fs["softness"], s_rows, n_atoms, np.nan, np.float64)
    with open_input(source.hops, "hops") as fh:
        p = _gather(fh["p_hop"], h_rows, n_atoms, np.nan, np.float64)
        labels = _gather(fh["labels"], h_rows, n_atoms, -1, np.int8)
        ahead = about_to_rearrange(frames, source.hops_frames, fh["events"], source.window_frames)
    return ExportFrames(frames=frames, step=np.asarray(traj.step),
                        time_fs=np.asarray(traj.time_fs, np.float64),
                        box=box, positions=positions, images=images, species=source.species,
                        species_names=source.species_names, softness=softness, p_hop=p, labels=labels,
                        about_to_rearrange=ahead, temperature_K=source.temperature_K,
                        window_fs=source.window_fs, system=source.system)


def frame_data(trajectory, softness, hops, *, frames=None, window_fs: float | None = None) -> ExportFrames:
    """:func:`open_products`, :func:`select_frames` and :func:`read_frames` in one call (all in memory)."""
    source = open_products(trajectory, softness, hops, window_fs=window_fs)
    return read_frames(source, select_frames(source, frames))


# ---------------------------------------------------------------------------- writers

def symbols_are_elements(names) -> bool:
    """Whether every species name is a chemical symbol (so it can be the extxyz species column)."""
    from ase.data import chemical_symbols

    return all(n in chemical_symbols[1:] for n in names)


def _atoms(data: ExportFrames, k: int, *, unwrapped: bool, elements: bool):
    import ase

    names = np.asarray(data.species_names, dtype=object)[data.species]
    atoms = ase.Atoms(symbols=list(names) if elements else ["X"] * data.species.size,
                      positions=data.positions[k], cell=np.diag(data.box[k]), pbc=True)
    atoms.new_array("image", data.images[k].astype(np.int64))
    if unwrapped:
        atoms.new_array("unwrapped", data.unwrapped[k])
    atoms.new_array("species_id", data.species.astype(np.int64))
    if not elements:
        atoms.new_array("species_name", np.asarray(names, dtype=str))
    atoms.new_array("softness", data.softness[k])
    atoms.new_array("p_hop", data.p_hop[k])
    atoms.new_array("rearranging", data.rearranging[k].astype(np.int64))
    atoms.new_array("quiet", data.quiet[k].astype(np.int64))
    atoms.new_array("about_to_rearrange", data.about_to_rearrange[k].astype(np.int64))
    atoms.info.update({"time_fs": float(data.time_fs[k]), "step": int(data.step[k]),
                       "frame": int(data.frames[k]), "temperature_K": float(data.temperature_K),
                       "P_R_window_fs": float(data.window_fs)})
    if data.system is not None:
        atoms.info["system"] = str(data.system)
    return atoms


def _write_extxyz(fh, data: ExportFrames, *, unwrapped: bool, elements: bool) -> None:
    import ase.io

    images = [_atoms(data, k, unwrapped=unwrapped, elements=elements) for k in range(data.frames.size)]
    ase.io.write(fh, images, format="extxyz")


def _write_lammps_dump(fh, data: ExportFrames, *, unwrapped: bool) -> None:
    columns = ["id", "type", "x", "y", "z", "ix", "iy", "iz"]
    if unwrapped:
        columns += ["xu", "yu", "zu"]
    columns += ["softness", "p_hop", "rearranging", "quiet", "about_to_rearrange"]
    n = data.species.size
    ids = np.arange(1, n + 1)
    for k in range(data.frames.size):
        fh.write(f"ITEM: TIMESTEP\n{int(data.step[k])}\nITEM: NUMBER OF ATOMS\n{n}\n"
                 "ITEM: BOX BOUNDS pp pp pp\n")
        for edge in data.box[k]:
            fh.write(f"0.0 {float(edge)!r}\n")
        fh.write("ITEM: ATOMS " + " ".join(columns) + "\n")
        cols = [ids, data.species + 1, *data.positions[k].T, *data.images[k].T]
        if unwrapped:
            cols += list(data.unwrapped[k].T)
        cols += [data.softness[k], data.p_hop[k], data.rearranging[k], data.quiet[k],
                 data.about_to_rearrange[k]]
        fmt = ["%d", "%d", "%.9g", "%.9g", "%.9g", "%d", "%d", "%d"] + (["%.9g"] * 3 if unwrapped else []) + \
              ["%.9g", "%.9g", "%d", "%d", "%d"]
        table = np.empty((n, len(cols)), dtype=object)
        for j, c in enumerate(cols):
            table[:, j] = np.asarray(c).tolist()
        np.savetxt(fh, table, fmt=" ".join(fmt))


def export_frames(trajectory, softness, hops, out, *, frames=None, format: str = "extxyz",
                  window_fs: float | None = None, unwrapped: bool = False,
                  chunk_frames: int = CHUNK_FRAMES) -> dict:
    """Write frames with per-atom softness, p_hop and labels in a format OVITO opens.

    Args:
      trajectory: the H5MD trajectory of the run.
      softness: its softness product (``softness apply``).
      hops: its hops product (``softness hops``).
      out: the file to write (written atomically: it appears only when complete).
      frames: trajectory frame indices to write (any frames of the trajectory; softness is NaN at
        those that are not softness frames); default: every softness frame.
      format: ``"extxyz"`` (ASE) or ``"lammps-dump"``.
      window_fs: Delta of ``about_to_rearrange`` (see :func:`open_products` for the default).
      unwrapped: also write the unwrapped positions.
      chunk_frames: frames read and written together.

    Returns:
      dict: ``frames`` (written, trajectory indices), ``n_atoms``, ``species_names``, ``format``,
      ``P_R_window_fs``, ``temperature_K``, ``out``.

    Raises:
      SoftnessError: an unknown format, or bad input (see :func:`open_products`, :func:`select_frames`).
    """
    if format not in FORMATS:
        raise SoftnessError(f"export format {format!r} is not one of {', '.join(FORMATS)}.")
    source = open_products(trajectory, softness, hops, window_fs=window_fs)
    sel = select_frames(source, frames)
    elements = symbols_are_elements(source.species_names)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(out)
    try:
        with open(tmp, "w") as fh:
            for c0 in range(0, sel.size, max(1, int(chunk_frames))):
                data = read_frames(source, sel[c0:c0 + max(1, int(chunk_frames))])
                if format == "extxyz":
                    _write_extxyz(fh, data, unwrapped=unwrapped, elements=elements)
                else:
                    _write_lammps_dump(fh, data, unwrapped=unwrapped)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%d frames x %d atoms, %s; about_to_rearrange within %g fs)", out, sel.size,
             source.species.size, format, source.window_fs)
    if format == "lammps-dump":
        log.info("LAMMPS types in %s: %s", out,
                 ", ".join(f"{k + 1} = {n}" for k, n in enumerate(source.species_names)))
    return {"frames": sel, "n_atoms": int(source.species.size), "species_names": source.species_names,
            "format": format, "P_R_window_fs": source.window_fs, "temperature_K": source.temperature_K,
            "out": out}


def parse_frames(tokens) -> np.ndarray | None:
    """Frame selections of the command line: integers and ``start:stop[:step]`` ranges.

    Raises:
      SoftnessError: a token that is neither.
    """
    if not tokens:
        return None
    out = []
    for tok in tokens:
        for part in str(tok).replace(",", " ").split():
            try:
                if ":" in part:
                    bits = [int(b) if b else None for b in part.split(":")]
                    if len(bits) > 3 or bits[1] is None:
                        raise ValueError
                    start, stop, step = (bits + [None])[:3]
                    out.extend(range(start or 0, stop, step or 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise SoftnessError(f"--frames {part!r} is neither a frame index nor a range "
                                    "start:stop[:step].") from None
    return np.asarray(out, dtype=np.int64)
