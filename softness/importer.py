"""Trajectories made elsewhere, in: ``softness import`` (and our trajectories out to MDAnalysis).

:func:`import_trajectory` reads a trajectory written by another code and writes the H5MD
trajectory of :mod:`softness.trajectory`, so that every analysis stage (features, hops,
dynamics, train, apply, arrhenius) runs on it unchanged. The formats and their readers (no
hand-written parsers):

==============  ============================  =========================  =================
format          reader                        unwrapped paths from       frame times from
==============  ============================  =========================  =================
LAMMPSDUMP      MDAnalysis ``DumpReader``     ``ix iy iz`` columns, or   ``frame_interval_fs``
(.lammpstrj,                                  ``xu yu zu`` / ``xsu ...``,  (steps checked)
.dump)                                        else minimum image
GSD (.gsd)      ``gsd.hoomd`` (what           ``particles/image`` when   ``frame_interval_fs``
                MDAnalysis's reader uses;     stored in every frame,     (steps checked)
                it drops the image flags)     else minimum image
XTC, TRR, DCD,  MDAnalysis, with a topology   minimum image              the file
NCDF, TNG       (``topology=``, e.g. GRO,
                PDB, TPR, LAMMPS data)
EXTXYZ (.xyz,   ASE (MDAnalysis's XYZ reader  minimum image              ``frame_interval_fs``
.extxyz)        ignores the box)
H5MD (.h5md,    MDAnalysis ``H5MDReader``     the ``image`` element if   the file
.h5, .hdf5)     (+ h5py for ``species`` and   present, else minimum
                ``image``)                    image
==============  ============================  =========================  =================

Lengths are taken in MDAnalysis's units (A; XTC's nm are converted). A format whose lengths
carry no unit (GSD, a LAMMPS dump of ``units lj``) is read in A unless ``length_unit_A`` gives
the length of its unit (e.g. sigma = 3.405 A for argon): positions and box are multiplied by it.

Species: each atom's type (``types``, else ``names`` of the topology; GSD type names;
LAMMPS type numbers as text, e.g. ``"1"``; extended-XYZ element symbols; H5MD ``species``
numbers or their names) is looked up in ``species_map`` (type -> species name). Species
numbers follow the order of the names in ``species_map`` (names no atom has are left out), or
the order of the system's species when ``system`` is given (so products compare with native
runs of that system).

Unwrapping. With image flags, ``unwrapped = wrapped + image * box`` exactly; with unwrapped
coordinates they are used as they are. Otherwise each atom's path is rebuilt from the
minimum-image displacement between consecutive frames, ``d - L round(d / L)``, starting from
frame 0's coordinates as the file gives them (so wrapped input starts in the box; the true
image of an atom at frame 0 is unknowable without flags and irrelevant to displacements). That is right
only while every true displacement between two frames is below L/2; a larger one is
silently folded back. The import therefore refuses frames in which any minimum-image
displacement component exceeds :data:`SAFE_STEP_FRACTION` = 0.25 of the box edge: a true
step between L/2 and 3L/4 then shows up (as a folded step between L/4 and L/2) and is
refused, and a step that could slip through undetected would have to exceed 3L/4 while
every other step of every atom in the file stays below L/4 -- an isolated jump three times
longer than any other, which dense frames of a liquid do not produce. (In a glass former
the steps between frames are a fraction of an Angstrom, so real data sits far below the
limit; reaching it means the frames are too sparse to follow the atoms.)

Bad input -- a file that is not a trajectory, a format nothing here reads, atom types
missing from the mapping, a changing number of atoms, a non-orthorhombic or missing box, NaN
coordinates, non-increasing times (or steps), frames too sparse to unwrap, fewer frames than
``min_frames`` -- raises :class:`SoftnessError` with one sentence naming the file and the
problem; the product is written atomically, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softness.errors import SoftnessError

log = logging.getLogger(__name__)

#: Largest minimum-image displacement component between consecutive frames, as a fraction
#: of the box edge, that unwrapping without image flags accepts (see the module docstring).
SAFE_STEP_FRACTION = 0.25

#: Formats by file suffix (lower case); ``format=`` overrides.
SUFFIX_FORMATS = {
    ".lammpstrj": "LAMMPSDUMP", ".lammpsdump": "LAMMPSDUMP", ".dump": "LAMMPSDUMP",
    ".gsd": "GSD",
    ".xtc": "XTC", ".trr": "TRR", ".dcd": "DCD", ".nc": "NCDF", ".ncdf": "NCDF", ".tng": "TNG",
    ".xyz": "EXTXYZ", ".extxyz": "EXTXYZ",
    ".h5md": "H5MD", ".h5": "H5MD", ".hdf5": "H5MD",
}
_ALIASES = {"LAMMPS": "LAMMPSDUMP", "LAMMPSTRJ": "LAMMPSDUMP", "DUMP": "LAMMPSDUMP", "XYZ": "EXTXYZ",
            "NC": "NCDF", "HDF5": "H5MD", "H5": "H5MD"}
#: MDAnalysis coordinate formats whose files store the time of each frame.
_TIMED = {"XTC", "TRR", "DCD", "NCDF", "TNG", "H5MD"}
#: Relative tolerance on orthorhombic angles (degrees from 90) and on frame_interval_fs vs file times.
_ANGLE_TOL_DEG = 1e-3
_DT_RTOL = 1e-3
_CHUNK = 64


@dataclass
class _Frame:
    positions: np.ndarray  # [N, 3] float64, wrapped or unwrapped (see _Source.coordinates)
    box: np.ndarray  # [3] edges, A
    step: int | None
    time_fs: float | None
    images: np.ndarray | None = None  # [N, 3] int


@dataclass
class _Source:
    """An open foreign trajectory: per-atom types and a frame iterator."""

    format: str
    types: np.ndarray  # [N] str
    coordinates: str  # "image flags", "unwrapped coordinates" or "minimum image"
    frames: Iterator[_Frame]
    n_frames: int | None = None
    has_times: bool = False


def _reason(exc: BaseException) -> str:
    """A library's exception as a short clause (first line, no final period)."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


def guess_format(path, format: str | None = None) -> str:
    """The format name of a trajectory (``format`` if given, else from its suffix)."""
    if format:
        fmt = format.upper()
        return _ALIASES.get(fmt, fmt)
    suffixes = [s.lower() for s in Path(path).suffixes]
    for s in reversed(suffixes):
        if s in SUFFIX_FORMATS:
            return SUFFIX_FORMATS[s]
    raise SoftnessError(f"cannot tell the format of trajectory file {path} from its name; give the format "
                        f"(one of {', '.join(sorted(set(SUFFIX_FORMATS.values())))}, or any MDAnalysis "
                        "coordinate format).")


# ---------------------------------------------------------------------------- readers

def _box_of_dimensions(dims, path, k) -> np.ndarray:
    """[3] edges from MDAnalysis dimensions (A, B, C, alpha, beta, gamma); refuses others."""
    if dims is None or not np.all(np.isfinite(dims)) or np.any(np.asarray(dims[:3]) <= 0):
        raise SoftnessError(f"trajectory file {path} has no periodic box at frame {k}.")
    if np.any(np.abs(np.asarray(dims[3:6], dtype=np.float64) - 90.0) > _ANGLE_TOL_DEG):
        raise SoftnessError(f"trajectory file {path} has a non-orthorhombic box at frame {k} (angles "
                            f"{', '.join(f'{a:g}' for a in dims[3:6])} degrees); only orthorhombic boxes "
                            "are supported.")
    return np.asarray(dims[:3], dtype=np.float64)


def _mda_frames(reader, path, fmt, images_of=None) -> Iterator[_Frame]:
    k = -1
    try:
        for ts in reader:
            k = ts.frame
            box = _box_of_dimensions(ts.dimensions, path, k)
            step = ts.data.get("step")
            images = images_of(ts, k) if images_of else None
            yield _Frame(positions=np.array(ts.positions, dtype=np.float64), box=box,
                         step=None if step is None else int(step),
                         time_fs=float(ts.time) * 1000.0 if fmt in _TIMED else None, images=images)
    except SoftnessError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any reader failure is the file's problem
        raise _frame_error(path, fmt, k + 1, exc) from None
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def _frame_error(path, fmt, k, exc) -> SoftnessError:
    text = _reason(exc)
    if "number of atoms" in text.lower() or "variable topology" in text.lower() or "atoms but" in text:
        return SoftnessError(f"trajectory file {path} changes its number of atoms at frame {k}; "
                             "only a fixed number of atoms is supported.")
    return SoftnessError(f"trajectory file {path} could not be read as {fmt} at frame {k} ({text}).")


def _atom_types(atoms, path, species_map) -> np.ndarray:
    """The per-atom labels (``types``, else ``names``) that the mapping names."""
    candidates = []
    for attr in ("types", "names", "elements"):
        with contextlib.suppress(Exception):
            candidates.append(np.asarray(getattr(atoms, attr)).astype(str))
    if not candidates:
        raise SoftnessError(f"trajectory file {path} gives its atoms neither types nor names; give a "
                            "topology that does.")
    for labels in candidates:
        if set(labels) <= set(species_map):
            return labels
    return candidates[0]


def _open_lammps(path, topology, species_map) -> _Source:
    import MDAnalysis as mda

    def universe(convention):
        kw = dict(format="LAMMPSDUMP", lammps_coordinate_convention=convention,
                  additional_columns=["ix", "iy", "iz"])
        if topology is None:
            return mda.Universe(str(path), topology_format="LAMMPSDUMP", **kw)
        return mda.Universe(str(topology), str(path), **kw)

    u = universe("auto")
    reader = u.trajectory
    has_images = all(c in reader.ts.data for c in ("ix", "iy", "iz"))
    convention = reader.lammps_coordinate_convention
    if convention in ("unwrapped", "scaled_unwrapped"):
        coordinates = "unwrapped coordinates"
    elif has_images:
        coordinates = "image flags"
    else:  # wrapped coordinates without images: unwrapped columns as well?
        coordinates = "minimum image"
        for other in ("unwrapped", "scaled_unwrapped"):
            try:
                u = universe(other)
            except ValueError:
                continue
            reader, coordinates = u.trajectory, "unwrapped coordinates"
            break

    def images_of(ts, k):
        if coordinates != "image flags":
            return None
        if not all(c in ts.data for c in ("ix", "iy", "iz")):
            raise SoftnessError(f"trajectory file {path} has image flags in some frames only (none at "
                                f"frame {k}).")
        return np.stack([ts.data["ix"], ts.data["iy"], ts.data["iz"]], axis=1).astype(np.int64)

    return _Source("LAMMPSDUMP", _atom_types(u.atoms, path, species_map), coordinates,
                   _mda_frames(reader, path, "LAMMPSDUMP", images_of), n_frames=reader.n_frames)


def _open_mdanalysis(path, fmt, topology, species_map) -> _Source:
    import MDAnalysis as mda

    if topology is None:
        raise SoftnessError(f"trajectory file {path} ({fmt}) does not name its atoms; give a topology "
                            "(a GRO, PDB, TPR or LAMMPS data file, for instance).")
    if not Path(topology).exists():
        raise SoftnessError(f"topology file {topology} does not exist.")
    u = mda.Universe(str(topology), str(path), format=fmt)
    return _Source(fmt, _atom_types(u.atoms, path, species_map), "minimum image",
                   _mda_frames(u.trajectory, path, fmt), n_frames=u.trajectory.n_frames, has_times=True)


def _open_h5md(path, topology, species_map) -> _Source:
    import h5py
    import MDAnalysis as mda
    from MDAnalysis.coordinates.H5MD import H5MDReader

    from softness.io import decode_all

    try:
        with h5py.File(path, "r") as f:
            groups = list(f["particles"]) if "particles" in f else []
            if not groups or "position" not in f["particles"][groups[0]]:
                raise SoftnessError(f"trajectory file {path} is not an H5MD trajectory (no "
                                    "/particles/<group>/position).")
            part = f["particles"][groups[0]]
            if "edges" in part["box"] and not isinstance(part["box/edges"], h5py.Group):
                raise SoftnessError(f"trajectory file {path} stores a fixed box (box/edges dataset), which "
                                    "MDAnalysis cannot read; it is one of ours already, use it as it is.")
            species = part["species"][()] if "species" in part else None
            names = part["species"].attrs.get("names") if species is not None else None
            has_images = "image" in part and isinstance(part["image"], h5py.Group)
    except OSError as exc:
        raise SoftnessError(f"trajectory file {path} is not a readable HDF5 file ({_reason(exc)}).") from None

    if topology is not None:
        if not Path(topology).exists():
            raise SoftnessError(f"topology file {topology} does not exist.")
        u = mda.Universe(str(topology), str(path), format="H5MD")
        reader, types = u.trajectory, _atom_types(u.atoms, path, species_map)
    else:
        if species is None:
            raise SoftnessError(f"trajectory file {path} has no species dataset to name its atoms; give a "
                                "topology.")
        if names is not None:
            names = decode_all(names)
            types = np.array([names[s] for s in species], dtype=str)
        else:
            types = species.astype(str)
        reader = H5MDReader(str(path))
    h5 = h5py.File(path, "r") if has_images else None
    group = f"particles/{groups[0]}/image/value"

    def images_of(ts, k):
        return h5[group][k].astype(np.int64)

    def frames():
        try:
            yield from _mda_frames(reader, path, "H5MD", images_of if has_images else None)
        finally:
            if h5 is not None:
                h5.close()

    return _Source("H5MD", types, "image flags" if has_images else "minimum image", frames(),
                   n_frames=reader.n_frames, has_times=True)


def _open_gsd(path, species_map) -> _Source:
    import gsd.hoomd

    traj = gsd.hoomd.open(str(path), "r")
    n_frames = len(traj)
    if n_frames == 0:
        raise SoftnessError(f"trajectory file {path} holds no frames.")
    first = traj[0]
    types = np.asarray(first.particles.types, dtype=str)[np.asarray(first.particles.typeid)]
    # Image flags are in the file when any frame stores them (a frame without the chunk has frame 0's,
    # or zero if frame 0 has none either: GSD's rule for unchanged or default values).
    has_images = any(traj.file.chunk_exists(frame=k, name="particles/image") for k in range(n_frames))

    def frames():
        k = -1
        try:
            for k, fr in enumerate(traj):
                b = np.asarray(fr.configuration.box, dtype=np.float64)
                if np.any(np.abs(b[3:6]) > 1e-9):
                    raise SoftnessError(f"trajectory file {path} has a non-orthorhombic box at frame {k} "
                                        f"(tilts {', '.join(f'{t:g}' for t in b[3:6])}); only orthorhombic "
                                        "boxes are supported.")
                if np.any(b[:3] <= 0) or not np.all(np.isfinite(b[:3])):
                    raise SoftnessError(f"trajectory file {path} has no periodic box at frame {k}.")
                x = np.asarray(fr.particles.position, dtype=np.float64)
                if x.shape[0] != len(types):
                    raise SoftnessError(f"trajectory file {path} changes its number of atoms at frame {k}; "
                                        "only a fixed number of atoms is supported.")
                # HOOMD boxes span [-L/2, L/2); ours [0, L).
                yield _Frame(positions=x + b[:3] / 2, box=b[:3], step=int(fr.configuration.step),
                             time_fs=None,
                             images=np.asarray(fr.particles.image, np.int64) if has_images else None)
        except SoftnessError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _frame_error(path, "GSD", k + 1, exc) from None
        finally:
            traj.close()

    return _Source("GSD", types, "image flags" if has_images else "minimum image", frames(),
                   n_frames=n_frames)


def _open_extxyz(path) -> _Source:
    import ase.io

    it = ase.io.iread(str(path), index=":", format="extxyz")
    try:
        first = next(it)
    except StopIteration:
        raise SoftnessError(f"trajectory file {path} holds no frames.") from None
    types = np.asarray(first.get_chemical_symbols(), dtype=str)

    def frames():
        k = 0
        try:
            atoms = first
            while True:
                cell = np.asarray(atoms.cell[:], dtype=np.float64)
                if not np.all(atoms.pbc) or np.any(np.diag(cell) <= 0):
                    raise SoftnessError(f"trajectory file {path} has no periodic box at frame {k}.")
                if np.any(np.abs(cell - np.diag(np.diag(cell))) > 1e-9 * np.max(np.diag(cell))):
                    raise SoftnessError(f"trajectory file {path} has a non-orthorhombic box at frame {k}; "
                                        "only orthorhombic boxes are supported.")
                if len(atoms) != len(types):
                    raise SoftnessError(f"trajectory file {path} changes its number of atoms at frame {k}; "
                                        "only a fixed number of atoms is supported.")
                yield _Frame(positions=np.asarray(atoms.positions, np.float64), box=np.diag(cell).copy(),
                             step=None, time_fs=None)
                k += 1
                atoms = next(it)
        except StopIteration:
            return
        except SoftnessError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _frame_error(path, "EXTXYZ", k, exc) from None

    return _Source("EXTXYZ", types, "minimum image", frames())


def _open(path, fmt, topology, species_map) -> _Source:
    """Open ``path`` as ``fmt``; a reader's failure to open becomes one sentence."""
    import MDAnalysis as mda

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "LAMMPSDUMP":
                return _open_lammps(path, topology, species_map)
            if fmt == "GSD":
                return _open_gsd(path, species_map)
            if fmt == "EXTXYZ":
                return _open_extxyz(path)
            if fmt == "H5MD":
                return _open_h5md(path, topology, species_map)
            try:
                mda.coordinates.core.get_reader_for(str(path), format=fmt)
            except (ValueError, TypeError):
                raise SoftnessError(f"trajectory file {path}: format {fmt!r} is not one MDAnalysis reads "
                                    f"(give one of {', '.join(sorted(set(SUFFIX_FORMATS.values())))}, or "
                                    "another MDAnalysis coordinate format).") from None
            return _open_mdanalysis(path, fmt, topology, species_map)
    except SoftnessError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure to open is the file's problem
        raise SoftnessError(f"trajectory file {path} could not be read as {fmt} ({_reason(exc)}).") from None


# ---------------------------------------------------------------------------- species

def _species(types, species_map: Mapping, path, system) -> tuple[np.ndarray, tuple]:
    """Species numbers [N] and names from per-atom types through ``species_map``."""
    species_map = {str(k): str(v) for k, v in species_map.items()}
    if not species_map:
        raise SoftnessError("the species mapping is empty; give TYPE=NAME for every atom type.")
    missing = sorted(set(types) - set(species_map))
    if missing:
        raise SoftnessError(f"atom types {', '.join(missing)} of trajectory file {path} are missing from the "
                            f"species mapping (which maps {', '.join(sorted(species_map))}).")
    present = {species_map[t] for t in set(types)}
    names = tuple(n for n in dict.fromkeys(species_map.values()) if n in present)  # unused types dropped
    if system is not None:
        from softness import systems

        own = tuple(systems.get(system).SPECIES_NAMES)
        foreign = [n for n in names if n not in own]
        if foreign:
            raise SoftnessError(f"species {', '.join(foreign)} of the mapping are not species of the system "
                                f"{system!r} ({', '.join(own)}).")
        names = own
    number = {name: i for i, name in enumerate(names)}
    lookup = {t: number[species_map[t]] for t in set(types)}
    return np.array([lookup[t] for t in types], dtype=np.int32), names


def _masses(species, names, masses, system, path) -> np.ndarray:
    """[N] amu: ``masses`` (name -> amu), else the system's, else the element's, else NaN."""
    if masses is not None:
        masses = {str(k): float(v) for k, v in masses.items()}
        missing = [n for n in names if n not in masses]
        if missing:
            raise SoftnessError(f"no mass is given for species {', '.join(missing)} of trajectory file "
                                f"{path}.")
        return np.array([masses[n] for n in names])[species]
    if system is not None:
        from softness import systems

        return np.asarray(systems.get(system).masses_for(species), dtype=np.float64)
    from ase.data import atomic_masses, atomic_numbers

    # Element masses only when every name is an element (Kob-Andersen's "B" is not boron).
    if all(n in atomic_numbers for n in names):
        return np.array([atomic_masses[atomic_numbers[n]] for n in names])[species]
    log.warning("no masses for the species %s of %s (not all elements, no masses or system given); "
                "stored as NaN", ", ".join(names), path)
    return np.full(len(species), np.nan)


# ---------------------------------------------------------------------------- import

def import_trajectory(path, *, out, species_map: Mapping, temperature_K: float, frame_interval_fs=None,
                      topology=None, format: str | None = None, masses: Mapping | None = None,
                      system: str | None = None, min_frames: int | Callable[[float], int] | None = None,
                      length_unit_A: float | None = None, config: dict | None = None,
                      dtype=np.float32) -> dict:
    """Read a trajectory made elsewhere and write it as our H5MD trajectory.

    Args:
      path: the trajectory (LAMMPS dump, GSD, XTC/TRR/DCD/..., extended XYZ, H5MD).
      out: the H5MD trajectory to write (atomically).
      species_map: atom type (as text: LAMMPS type number, GSD type name, topology type or
        name, element symbol, H5MD species number or name) -> species name.
      temperature_K: the temperature of the run (root attribute ``temperature_K``).
      frame_interval_fs: time between frames, for files that do not store times (LAMMPS
        dump, GSD, extended XYZ; their steps, when stored, must then be evenly spaced); for
        files that do, it is checked against them when given.
      topology: a topology file naming the atoms (required for XTC, TRR, DCD, ...).
      format: the format name (default: from the suffix; see :data:`SUFFIX_FORMATS`).
      masses: species name -> amu (default: the system's masses, else the element's, else NaN).
      system: the system the trajectory is of (e.g. ``"kob_andersen"``; root attribute
        ``system``); its species order is then used.
      min_frames: refuse fewer frames than this (e.g. the p_hop window): a number, or a
        function of the frame interval in fs returning one.
      length_unit_A: the length of the file's length unit in A, for files whose lengths carry
        no unit (GSD, LAMMPS ``units lj``): positions and box are multiplied by it (default:
        the file's lengths are A).
      config: the resolved config, stored as provenance.
      dtype: floating dtype of the positions on disk.

    Returns:
      A summary dict (``n_frames``, ``n_atoms``, ``frame_interval_fs``, ``coordinates``, ``format``).

    Raises:
      SoftnessError: one sentence naming the file and the problem; nothing is written.
    """
    from softness.io import atomic_h5
    from softness.trajectory import PARTICLES, H5MDWriter

    path = Path(path)
    if not path.exists():
        raise SoftnessError(f"trajectory file {path} does not exist.")
    if frame_interval_fs is not None and not float(frame_interval_fs) > 0:
        raise SoftnessError(f"the frame interval must be positive (got {frame_interval_fs} fs).")
    if not np.isfinite(float(temperature_K)) or float(temperature_K) <= 0:
        raise SoftnessError(f"the temperature must be positive (got {temperature_K} K).")
    scale = 1.0 if length_unit_A is None else float(length_unit_A)
    if not (np.isfinite(scale) and scale > 0):
        raise SoftnessError(f"the length unit must be a positive number of Angstrom (got {length_unit_A}).")
    if system is not None:
        from softness import systems

        systems.get(system)
    fmt = guess_format(path, format)
    src = _open(path, fmt, topology, species_map)
    species, names = _species(src.types, species_map, path, system)
    mass = _masses(species, names, masses, system, path)
    n = len(species)
    if n == 0:
        raise SoftnessError(f"trajectory file {path} holds no atoms.")
    has_times = src.has_times
    if not has_times and frame_interval_fs is None:
        raise SoftnessError(f"trajectory file {path} ({fmt}) does not store the time of its frames; give the "
                            "frame interval in fs.")

    attrs = {"temperature_K": float(temperature_K), "source_file": str(path.resolve()), "source_format": fmt,
             "source_coordinates": src.coordinates, "species_map": json.dumps(dict(species_map))}
    if topology is not None:
        attrs["source_topology"] = str(Path(topology).resolve())
    if system is not None:
        attrs["system"] = system
    if length_unit_A is not None:
        attrs["source_length_unit_A"] = scale

    state = {"k": 0, "prev_x": None, "u": None, "steps": [], "times": [], "box0": None, "variable": False}
    with warnings.catch_warnings(), atomic_h5(out, "import", config) as f:
        warnings.simplefilter("ignore")  # the readers' (e.g. "no dt information": times come from here)
        f.attrs.update(attrs)
        w = None
        buf = []

        def flush():
            if buf:
                w.append([b[0] for b in buf], [b[1] for b in buf], np.stack([b[2] for b in buf]),
                         np.stack([b[3] for b in buf]), box_edges=np.stack([b[4] for b in buf]))
                buf.clear()

        for fr in src.frames:
            k = state["k"]
            x = fr.positions * scale if scale != 1.0 else fr.positions
            if x.shape != (n, 3):
                raise SoftnessError(f"trajectory file {path} changes its number of atoms at frame {k}; "
                                    "only a fixed number of atoms is supported.")
            if not np.all(np.isfinite(x)):
                bad = int(np.flatnonzero(~np.all(np.isfinite(x), axis=1))[0])
                raise SoftnessError(f"trajectory file {path} has NaN or infinite coordinates at frame {k} "
                                    f"(atom {bad}).")
            L = fr.box * scale if scale != 1.0 else fr.box
            u = _unwrap(src.coordinates, x, fr.images, L, state, path, k)
            images = np.floor(u / L).astype(np.int64)
            wrapped = (u - images * L).astype(dtype)
            over = wrapped >= L.astype(dtype)  # rounding to dtype can reach L exactly
            wrapped[over] = 0
            images[over] += 1
            if np.any(np.abs(images) > np.iinfo(np.int32).max):
                raise SoftnessError(f"trajectory file {path} has atoms more than 2^31 boxes away at "
                                    f"frame {k}.")
            state["steps"].append(fr.step)
            state["times"].append(fr.time_fs)
            if state["box0"] is None:
                state["box0"] = L.copy()
                w = H5MDWriter(f, species, mass, L, species_names=names, dtype=dtype, variable_box=True)
            elif not np.array_equal(L, state["box0"]):
                state["variable"] = True
            buf.append((k, 0.0, wrapped, images.astype(np.int32), L))
            if len(buf) == _CHUNK:
                flush()
            state["k"] = k + 1
        flush()

        n_frames = state["k"]
        if n_frames < 2:
            raise SoftnessError(f"trajectory file {path} holds {n_frames} frame(s); at least two are needed.")
        step, time_fs = _clock(path, fmt, has_times, state["steps"], state["times"], frame_interval_fs)
        dt = float(np.median(np.diff(time_fs)))
        need = min_frames(dt) if callable(min_frames) else min_frames
        if need is not None and n_frames < need:
            raise SoftnessError(f"trajectory file {path} holds {n_frames} frames, fewer than the {need} of "
                                f"the p_hop window at {dt:g} fs per frame.")
        pos = f[PARTICLES]["position"]
        pos["step"][:] = step
        pos["time"][:] = time_fs
        f[PARTICLES]["box"].attrs["variable_box"] = np.int8(state["variable"])
        f.attrs["frame_interval_fs"] = dt
    log.info("imported %s (%s, %s): %d frames of %d atoms every %g fs -> %s", path, fmt, src.coordinates,
             n_frames, n, dt, out)
    return {"n_frames": n_frames, "n_atoms": n, "frame_interval_fs": dt, "coordinates": src.coordinates,
            "format": fmt}


def _unwrap(coordinates, x, images, L, state, path, k) -> np.ndarray:
    """[N, 3] unwrapped positions of frame ``k``."""
    if coordinates == "image flags":
        return x + images * L
    if coordinates == "unwrapped coordinates":
        return x
    if state["prev_x"] is None:
        u = x.copy()
    else:
        d = x - state["prev_x"]
        d -= L * np.round(d / L)
        ratio = np.abs(d) / L
        worst = float(ratio.max())
        if worst > SAFE_STEP_FRACTION:
            atom = int(np.unravel_index(np.argmax(ratio), ratio.shape)[0])
            raise SoftnessError(
                f"trajectory file {path} has no image flags and its frames are too sparse to unwrap: atom "
                f"{atom} moves {worst:.2f} of the box edge between frames {k - 1} and {k} (more than "
                f"{SAFE_STEP_FRACTION:g}).")
        u = state["u"] + d
    state["prev_x"], state["u"] = x, u
    return u


def _clock(path, fmt, has_times, steps, times, frame_interval_fs):
    """Steps [F] and times [F] (fs) of the frames; refuses non-increasing ones."""
    n = len(steps)
    if has_times:
        time_fs = np.asarray(times, dtype=np.float64)
        bad = np.flatnonzero(np.diff(time_fs) <= 0)
        if bad.size:
            k = int(bad[0]) + 1
            raise SoftnessError(f"trajectory file {path} has non-increasing times: frame {k} is at "
                                f"{time_fs[k]:g} fs, frame {k - 1} at {time_fs[k - 1]:g} fs.")
        if frame_interval_fs is not None:
            dt = float(np.median(np.diff(time_fs)))
            if abs(dt - float(frame_interval_fs)) > _DT_RTOL * float(frame_interval_fs):
                raise SoftnessError(f"trajectory file {path} stores frames every {dt:g} fs, not the "
                                    f"{float(frame_interval_fs):g} fs given.")
        step = np.array([s if s is not None else i for i, s in enumerate(steps)], dtype=np.int64)
        return step, time_fs
    known = all(s is not None for s in steps) and len(set(steps)) > 1
    step = np.asarray(steps if known else range(n), dtype=np.int64)
    diff = np.diff(step)
    bad = np.flatnonzero(diff <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        raise SoftnessError(f"trajectory file {path} has non-increasing times: frame {k} is at step "
                            f"{step[k]}, frame {k - 1} at step {step[k - 1]}.")
    if np.any(diff != diff[0]):
        raise SoftnessError(f"trajectory file {path} stores frames at unevenly spaced steps ({diff.min()} to "
                            f"{diff.max()} apart), so one frame interval cannot date them.")
    return step, np.arange(n, dtype=np.float64) * float(frame_interval_fs)


# ---------------------------------------------------------------------------- MDAnalysis

def universe(path):
    """One of our H5MD trajectories as an ``MDAnalysis.Universe``: species names as atom types
    and names, masses in amu, positions (wrapped, A), box (A) and times (ps) per frame.

    The same as ``Universe.empty(n, trajectory=True).load_new(path, format="H5MD")`` plus the
    topology attributes (MDAnalysis reads no topology from H5MD).
    """
    import MDAnalysis as mda

    from softness.io import open_input
    from softness.trajectory import PARTICLES, read_species_names

    names = read_species_names(path)
    with open_input(path, "trajectory") as f:
        species = f[PARTICLES + "/species"][()]
        masses = f[PARTICLES + "/mass"][()] if PARTICLES + "/mass" in f else np.full(len(species), np.nan)
    labels = np.array(names, dtype=object)[species]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe.empty(len(species), trajectory=True)
        u.add_TopologyAttr("types", labels)
        u.add_TopologyAttr("names", labels)
        u.add_TopologyAttr("masses", masses)
        u.load_new(str(path), format="H5MD")
    return u
