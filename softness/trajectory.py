"""Trajectories in H5MD 1.1 (https://www.nongnu.org/h5md/h5md.html).

Layout written and read here (units in each dataset's ``unit`` attribute)::

    /h5md                       version = [1, 1]; author/, creator/ (name, version)
    /particles/all/
        box/                    dimension = 3, boundary = [periodic]*3; variable_box = 0 or 1
            edges/{step,time,value}  value [frame, 3], a time-dependent element always (the
                                fixed box repeated per frame), as MDAnalysis's H5MD reader needs
        position/{step,time,value}   value [frame, atom, 3], wrapped into [0, L), Angstrom
        image/{step,time,value}      value [frame, atom, 3], int32 image flags
        velocity/{step,time,value}   optional, Angstrom/fs (unit "Angstrom fs-1")
        species                 [atom] int32 species numbers; attribute ``names``: the
                                species names indexed by number (e.g. Si, O or A, B)
        mass                    [atom] amu
    /observables/<name>/{step,time,value}   e.g. potential_energy (kcal/mol),
                                kinetic_temperature (K), pressure (GPa)

Unwrapped positions are exact: ``position + image * edges``. ``step`` and ``time``
(fs) are stored once under ``position`` and hard-linked into every other
time-dependent element sampled at the same frames, as H5MD allows.

Files written before the box became a time-dependent element hold a fixed ``box/edges``
dataset [3]; they are still read (and resumed) as before. ``variable_box`` says whether the
box changes (constant pressure) or is the fixed box repeated.

Opening a trajectory in MDAnalysis (2.7+; positions wrapped in A, box in A, time in ps)::

    u = MDAnalysis.Universe.empty(n_atoms, trajectory=True)
    u.load_new("trajectory.h5", format="H5MD")

(``format="H5MD"`` is needed because MDAnalysis takes ``.h5`` for a generic HDF5 file;
:func:`softness.importer.universe` does this and adds the species as atom types and names,
and the masses.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from softness import __version__
from softness.errors import SoftnessError
from softness.io import decode_all, open_input

PARTICLES = "particles/all"

#: Units of the observables the MD driver records.
OBSERVABLE_UNITS = {
    "potential_energy": "kcal/mol",
    "kinetic_energy": "kcal/mol",
    "total_energy": "kcal/mol",
    "conserved_energy": "kcal/mol",
    "kinetic_temperature": "K",
    "pressure": "GPa",
    "volume": "angstrom^3",
    "density": "g/cm^3",
}


def _time_element(group: h5py.Group, name: str, frame_shape, dtype, unit, step_time=None):
    """Create an empty, growable H5MD time-dependent element."""
    el = group.create_group(name)
    if step_time is None:
        el.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
        t = el.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        t.attrs["unit"] = "fs"
    else:
        el["step"], el["time"] = step_time
    chunk = (max(1, min(64, 2**20 // max(1, int(np.prod(frame_shape)) * 4))), *frame_shape)
    v = el.create_dataset("value", shape=(0, *frame_shape), maxshape=(None, *frame_shape),
                          dtype=dtype, chunks=chunk)
    if unit:
        v.attrs["unit"] = unit
    return el


class H5MDWriter:
    """Appends frames to the H5MD layout above in an open, writable HDF5 file.

    Args:
      f: an open ``h5py.File`` (typically from :func:`softness.io.atomic_h5`).
      species: [N] integer species numbers (indices into ``species_names``).
      species_names: the name of each species number (the system's, e.g. ``("A", "B")``).
      masses: [N] masses in amu.
      box_edges: [3] box edges in Angstrom (orthorhombic).
      dtype: floating dtype of positions and velocities on disk.
      variable_box: store the box per frame (constant-pressure runs).
      observables: names of per-frame scalar observables to record.
      velocities: also store velocities with each frame.
    """

    def __init__(self, f: h5py.File, species, masses, box_edges, *, species_names, dtype=np.float32,
                 variable_box=False, observables=(), velocities=False):
        self.f = f
        species = np.asarray(species, dtype=np.int32)
        n = species.shape[0]
        species_names = tuple(str(s) for s in species_names)
        if n and not (0 <= species.min() and species.max() < len(species_names)):
            raise SoftnessError(f"species numbers {sorted(set(species.tolist()))} do not all name one of "
                                f"the {len(species_names)} species {', '.join(species_names)}.")
        h5md = f.require_group("h5md")
        h5md.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h5md.require_group("author").attrs["name"] = "glass-softness"
        creator = h5md.require_group("creator")
        creator.attrs["name"] = "glass-softness"
        creator.attrs["version"] = __version__

        part = f.require_group(PARTICLES)
        part["species"] = species
        part["species"].attrs["names"] = np.array(species_names, dtype=h5py.string_dtype("utf-8"))
        part["mass"] = np.asarray(masses, dtype=np.float64)
        part["mass"].attrs["unit"] = "amu"
        box = part.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array([b"periodic"] * 3)
        box.attrs["variable_box"] = np.int8(bool(variable_box))
        pos = _time_element(part, "position", (n, 3), dtype, "angstrom")
        st = (pos["step"], pos["time"])
        _time_element(part, "image", (n, 3), np.int32, None, st)
        if velocities:
            _time_element(part, "velocity", (n, 3), dtype, "Angstrom fs-1", st)
        # Always a time-dependent element (MDAnalysis reads box/edges/value); a fixed box is
        # repeated per frame by append() and also kept as an attribute for resuming.
        edges = _time_element(box, "edges", (3,), np.float64, "angstrom", st)
        self.fixed_box = None
        if not variable_box:
            self.fixed_box = np.asarray(box_edges, dtype=np.float64).reshape(3)
            edges.attrs["fixed_value"] = self.fixed_box
        obs = f.require_group("observables")
        for name in observables:
            _time_element(obs, name, (), np.float64, OBSERVABLE_UNITS.get(name, ""), st)
        self.variable_box = bool(variable_box)
        self.box_element = True
        self.observables = tuple(observables)
        self.velocities = velocities

    @classmethod
    def reopen(cls, f: h5py.File, n_frames: int) -> H5MDWriter:
        """Continue writing a file made by this class, keeping only its first ``n_frames``.

        Used to resume after an interruption: frames written after the last
        checkpoint are dropped, then the run appends exactly what it would have.
        """
        self = cls.__new__(cls)
        self.f = f
        part = f[PARTICLES]
        edges = part["box/edges"]
        self.box_element = isinstance(edges, h5py.Group)
        if self.box_element:
            self.variable_box = bool(part["box"].attrs.get("variable_box", "fixed_value" not in edges.attrs))
            self.fixed_box = None if self.variable_box else np.asarray(edges.attrs["fixed_value"], np.float64)
        else:  # written before the box was a time-dependent element: a fixed [3] dataset
            self.variable_box = False
            self.fixed_box = np.asarray(edges[()], np.float64)
        self.observables = tuple(f["observables"].keys()) if "observables" in f else ()
        self.velocities = "velocity" in part
        if self.n_frames < n_frames:
            raise SoftnessError(
                f"{f.filename} holds {self.n_frames} frames, fewer than the checkpoint's {n_frames}.")
        for ds in self._datasets():
            ds.resize(n_frames, axis=0)
        return self

    def _elements(self):
        part = self.f[PARTICLES]
        els = [part["position"], part["image"]]
        if self.velocities:
            els.append(part["velocity"])
        if self.box_element:
            els.append(part["box/edges"])
        els += [self.f["observables"][k] for k in self.observables]
        return els

    def _datasets(self):
        pos = self.f[PARTICLES]["position"]
        return [pos["step"], pos["time"]] + [el["value"] for el in self._elements()]

    @property
    def n_frames(self) -> int:
        return self.f[PARTICLES]["position/step"].shape[0]

    def append(self, step, time_fs, positions, images, *, observables=None, box_edges=None,
               velocities=None):
        """Append ``k`` frames.

        Args:
          step: [k] MD step numbers.
          time_fs: [k] times in fs.
          positions: [k, N, 3] wrapped positions (Angstrom).
          images: [k, N, 3] integer image flags.
          observables: dict name -> [k] values, for every name given at creation.
          box_edges: [k, 3], required for a variable box; for a fixed box the box given at
            creation is repeated when omitted.
          velocities: [k, N, 3] in Angstrom/fs, required if velocities are stored.
        """
        step = np.atleast_1d(np.asarray(step, dtype=np.int64))
        k = step.shape[0]
        values = [np.asarray(positions).reshape(k, -1, 3), np.asarray(images).reshape(k, -1, 3)]
        if self.velocities:
            values.append(np.asarray(velocities).reshape(k, -1, 3))
        if self.box_element:
            if box_edges is None:
                if self.variable_box:
                    raise ValueError("append() needs box_edges for a variable box")
                box_edges = np.broadcast_to(self.fixed_box, (k, 3))
            values.append(np.asarray(box_edges, dtype=np.float64).reshape(k, 3))
        observables = observables or {}
        missing = set(self.observables) - set(observables)
        if missing:
            raise ValueError(f"append() is missing observables {sorted(missing)}")
        values += [np.asarray(observables[name], dtype=np.float64).reshape(k) for name in self.observables]
        data = [step, np.asarray(time_fs, dtype=np.float64).reshape(k)] + values
        n0 = self.n_frames
        for ds, v in zip(self._datasets(), data, strict=True):
            ds.resize(n0 + k, axis=0)
            ds[n0:] = v


@dataclass
class Trajectory:
    """A trajectory read back into memory (NumPy arrays, real units, times in fs)."""

    positions: np.ndarray  #: [F, N, 3] wrapped, Angstrom
    images: np.ndarray  #: [F, N, 3] int image flags
    box: np.ndarray  #: [F, 3] box edges, Angstrom
    species: np.ndarray  #: [N] species numbers, indices into ``species_names``
    species_names: tuple  #: the name of each species number
    masses: np.ndarray  #: [N] amu
    step: np.ndarray  #: [F]
    time_fs: np.ndarray  #: [F]
    observables: dict = field(default_factory=dict)  #: name -> [F]
    velocities: np.ndarray | None = None  #: [F, N, 3] Angstrom/fs, if stored
    attrs: dict = field(default_factory=dict)  #: root attributes (provenance)

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[1]

    def unwrapped(self) -> np.ndarray:
        """[F, N, 3] positions with periodic jumps removed (exact, from the image flags)."""
        return self.positions.astype(np.float64) + self.images * self.box[:, None, :]


def read_trajectory(path, frames=slice(None), *, require_images=True) -> Trajectory:
    """Read an H5MD trajectory written by :class:`H5MDWriter` (or any H5MD 1.1 file
    with the same element names).

    Args:
      path: the ``.h5`` file.
      frames: which frames to read (slice or index array).
      require_images: fail with a clear message when image flags are absent.

    Returns:
      A :class:`Trajectory`.
    """
    with open_input(path, "trajectory") as f:
        if "h5md" not in f or PARTICLES not in f or "position" not in f[PARTICLES]:
            raise SoftnessError(f"trajectory file {path} is not an H5MD file with /particles/all/position.")
        part = f[PARTICLES]
        if "image" not in part:
            if require_images:
                raise SoftnessError(
                    f"trajectory file {path} has no image flags (/particles/all/image), so unwrapped "
                    "paths cannot be reconstructed.")
        if "species" not in part:
            raise SoftnessError(f"trajectory file {path} has no /particles/all/species.")
        pos = part["position"]
        if isinstance(frames, slice):
            sel = frames
        else:
            sel = np.sort(np.unique(np.asarray(frames, dtype=np.int64)))
        positions = pos["value"][sel]
        n_frames = positions.shape[0]
        images = part["image/value"][sel] if "image" in part else np.zeros(positions.shape, np.int32)
        edges = part["box/edges"]
        if isinstance(edges, h5py.Group):
            box = edges["value"][sel]
        else:
            box = np.broadcast_to(np.asarray(edges[()], dtype=np.float64), (n_frames, 3)).copy()
        observables = {}
        if "observables" in f:
            n_all = pos["value"].shape[0]
            for name, el in f["observables"].items():
                if isinstance(el, h5py.Group) and "value" in el and el["value"].shape[0] == n_all:
                    observables[name] = el["value"][sel]
        velocities = part["velocity/value"][sel] if "velocity" in part else None
        return Trajectory(
            positions=positions,
            images=images,
            box=box,
            species=part["species"][()].astype(np.int32),
            species_names=_species_names(f, path),
            masses=part["mass"][()] if "mass" in part else np.full(positions.shape[1], np.nan),
            step=pos["step"][sel],
            time_fs=pos["time"][sel],
            observables=observables,
            velocities=velocities,
            attrs=dict(f.attrs),
        )


def _species_names(f: h5py.File, path) -> tuple:
    """The species names of an open trajectory (see :func:`read_species_names`)."""
    species = f[PARTICLES + "/species"]
    if "names" in species.attrs:
        return decode_all(species.attrs["names"])
    # Trajectories written before species were named were all BKS silica (0 = Si, 1 = O).
    if "BKS" in str(f.attrs.get("potential", "")):
        from softness.systems import silica

        return silica.SPECIES_NAMES
    raise SoftnessError(f"trajectory file {path} does not name its species (attribute 'names' of "
                        "/particles/all/species).")


def read_species_names(path) -> tuple:
    """The species names of a trajectory, indexed by species number (e.g. ``("A", "B")``).

    Every analysis stage takes species names and counts from here (or from the products made
    from it), never from a constant.
    """
    with open_input(path, "trajectory") as f:
        if PARTICLES + "/species" not in f:
            raise SoftnessError(f"trajectory file {path} has no /particles/all/species.")
        return _species_names(f, path)


def count_frames(path) -> int:
    """Number of frames in a trajectory without reading it."""
    with open_input(path, "trajectory") as f:
        if PARTICLES + "/position/value" not in f:
            raise SoftnessError(f"trajectory file {path} is not an H5MD file with /particles/all/position.")
        return int(f[PARTICLES + "/position/value"].shape[0])
