"""Molecular dynamics of a model liquid (softness.systems): the quench and the runs at each temperature.

Two stages, each a plain function the command line calls:

* :func:`quench` (``softness quench``): relax the initial structure (FIRE), melt at
  ``quench.T_melt_K`` for ``quench.melt_time_fs``, then cool linearly at
  ``quench.cooling_rate_K_per_ps`` to ``quench.T_min_K``, at fixed density (NVT Nose-Hoover)
  or at constant pressure (jax_md's ``npt_nose_hoover``), keeping a snapshot as the
  target temperature passes each of ``temperatures_K``.
* :func:`run_temperature` (``softness run``): NVT Nose-Hoover at one temperature from
  that temperature's snapshot, in the snapshot's box: equilibration, then production
  with a frame every ``run.frame_interval_fs``. A study may ask for several independent
  runs per temperature (``run.replicas_per_temperature``, ``--run-index``): all start from
  that snapshot's positions; run 0 keeps its velocities, run r >= 1 draws new ones from
  (seed, T, r) (:func:`run_key`), and equilibration makes the runs independent.

How it runs. An :class:`Engine` holds the jitted pieces for one system: the neighbour
list and explicit pair forces of :mod:`softness.engine` (fixed volume; the constant-pressure
quench uses jax_md's own neighbour list and energy), the integrator (jax_md.simulate) and a
*chunk* function that advances the state
many steps on the device in ``lax.fori_loop``/``lax.scan``, tracking the image flags and
collecting frames (positions, images, observables) in a device buffer. The host only
touches data between chunks: it writes frames, checks the neighbour list for overflow
(and then redoes the chunk with a bigger list), checks for NaN / runaway temperature
(and then stops with one sentence naming the step and the quantity), writes checkpoints
and reports progress.

Checkpoints and resume. Every ``md.checkpoint_every_steps`` (rounded up to whole chunks)
the neighbour list is rebuilt from scratch and, for stages run with an output path, the
full integrator state is written to an HDF5 checkpoint next to the output
(``.<name>.checkpoint.h5``: every leaf of the state pytree, the rng key, the step, the
image flags, the frames written, the neighbour-list spare capacity). Because the list is
rebuilt at the same steps whether or not the run was interrupted, a resumed run
(``--resume``) produces bit-for-bit the frames of an uninterrupted one on the same machine
and precision. The trajectory grows in ``.<name>.partial`` (opened and closed for each
chunk, so even a hard kill leaves a readable file) and is renamed into place at the end.

Units: real units inside (kcal/mol, A, amu, K; time in units of
:data:`softness.units.TIME_UNIT_FS`); every time at the interface is in fs.

Precision: float32 by default; float64 (config ``precision``) switches on
``jax_enable_x64`` in :func:`precision_scope` before jax_md is first imported here.

References: Nose-Hoover chains as in jax_md.simulate (Martyna, Klein, Tuckerman, J. Chem.
Phys. 97, 2635 (1992); Tuckerman et al., J. Phys. A 39, 5629 (2006)); FIRE (Bitzek et al.,
Phys. Rev. Lett. 97, 170201 (2006)).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import warnings
from pathlib import Path

import h5py
import numpy as np

from softness import config as config_rules
from softness import engine as fast
from softness import interrupts, systems, units
from softness.errors import SoftnessError
from softness.io import open_input, place_product, provenance, temporary_path
from softness.progress import Progress
from softness.systems import silica
from softness.trajectory import PARTICLES, H5MDWriter

log = logging.getLogger("softness.md")

#: A run stops when the kinetic temperature exceeds this multiple of the highest target.
RUNAWAY_TEMPERATURE_FACTOR = 10.0
#: A run stops when the potential energy per atom exceeds this (kcal/mol); the liquid sits
#: near -290 kcal/mol per atom.
RUNAWAY_POTENTIAL_ENERGY_PER_ATOM = 1.0e3
#: Frame observables written by the MD stages.
OBSERVABLES = ("potential_energy", "kinetic_temperature", "pressure", "conserved_energy",
               "target_temperature")
#: Codes for the quantity that went bad inside a chunk.
_BAD = {1: "the kinetic energy is not finite", 2: "the kinetic temperature ran away",
        3: "the box is not finite", 4: "the positions are not finite"}
#: Stage codes folded into the seed.
_STAGE_QUENCH, _STAGE_RUN = 1, 2
#: Times the neighbour list may be reallocated for one chunk before giving up.
_MAX_REALLOCATIONS = 8


# ---------------------------------------------------------------------------- precision

@contextlib.contextmanager
def precision_scope(precision: str):
    """Run MD in ``precision`` ('float32' or 'float64').

    float64 needs ``jax_enable_x64``; it is switched on here (jax_md is imported lazily,
    inside this scope, so this comes first in a fresh process) and restored on exit, so
    a float64 stage does not change the precision of code that runs after it. jax_md's
    harmless dtype warnings (float64 sums truncated in float32 mode, int64 indices scattered
    into int32 under x64) are silenced.

    Yields:
      The NumPy dtype of positions, momenta and energies.
    """
    import jax

    want = precision == "float64"
    old = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", want)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")
            # jax_md's neighbour list scatters int64 indices into int32 buffers under x64.
            warnings.filterwarnings("ignore", message="scatter inputs have incompatible types")
            yield np.dtype(np.float64 if want else np.float32)
    finally:
        jax.config.update("jax_enable_x64", old)


def steps_for(time_fs: float, timestep_fs: float, key: str, *, exact: bool = True) -> int:
    """Number of MD steps in ``time_fs``; with ``exact`` it must be a whole number."""
    n = time_fs / timestep_fs
    k = int(round(n))
    if exact and (k < 1 or abs(n - k) > 1e-6 * max(1.0, n)):
        raise SoftnessError(
            f"config key '{key}' ({time_fs:g} fs) is not a whole, positive number of md.timestep_fs "
            f"({timestep_fs:g} fs) steps.")
    return k


def schedule(T_start_K: float, T_end_K: float | None = None, ramp_start_step: int = 0,
             rate_K_per_step: float = 0.0) -> np.ndarray:
    """Target temperature T(step): ``T_start_K`` until ``ramp_start_step``, then changing by
    ``rate_K_per_step`` per step (negative to cool) until it reaches ``T_end_K``.

    Returns:
      The four numbers the chunk function takes (a device argument, so one compiled
      chunk serves every temperature).
    """
    T_end_K = T_start_K if T_end_K is None else T_end_K
    return np.array([T_start_K, T_end_K, ramp_start_step, rate_K_per_step], dtype=np.float64)


def _target_temperature(step, sched):
    """Device version of :func:`schedule` (step is an integer array)."""
    import jax.numpy as jnp

    T0, T1, s0, rate = sched[0], sched[1], sched[2], sched[3]
    t = T0 + rate * jnp.maximum(step.astype(sched.dtype) - s0, 0)
    return jnp.where(rate < 0, jnp.maximum(t, T1), jnp.where(rate > 0, jnp.minimum(t, T1), t))


# ---------------------------------------------------------------------------- engine

class Engine:
    """Jitted MD of one system (fixed N, species and, except for NPT, box).

    Args:
      species: [N] species numbers of the potential.
      masses: [N] amu.
      box: [3] box edges in A (the initial box for 'npt').
      ensemble: 'nvt' (Nose-Hoover chain), 'npt' (jax_md.simulate.npt_nose_hoover, fractional
        coordinates, isotropic box) or 'nve' (velocity Verlet).
      timestep_fs: MD time step.
      thermostat_tau_fs, barostat_tau_fs: Nose-Hoover time constants (absolute time).
      pressure_GPa: target pressure for 'npt'.
      potential: the system's :class:`softness.systems.Potential` (default: BKS silica with
        cutoff ``cutoff_A``).
      cutoff_A: BKS silica's cutoff when no ``potential`` is given.
      skin_A: neighbour-list skin.
      dense: 'npt' only: jax_md's Dense neighbour-list format instead of OrderedSparse (the
        fixed-volume ensembles always use the dense lists of :mod:`softness.engine`).
      dtype: 'float32' or 'float64' (float64 only inside :func:`precision_scope`).
      frame_every: steps between frames.
      frames_per_chunk: size of the device frame buffer.
      runaway_temperature_K: the chunk flags a kinetic temperature above this (with
        replicas: one value, or one per replica).
      velocities: also collect velocities in frames.
      capacity_multiplier: 'npt' only: spare room of a freshly allocated jax_md list.
      replicas: None for one system; an integer B for B independent replicas of it (same
        species and box; own positions, velocities, thermostat and target temperature)
        advanced in one jitted program ('nvt' and 'nve'). Every leaf of the carry and of
        the frames then has a leading replica axis (frames: [frames, B, ...]), except the
        step, which all replicas share; :meth:`init` takes per-replica arguments and
        :meth:`advance` a [B, 4] schedule.
      replica_loop: how replicas share the program: 'vmap' (all at once, step by step; what
        pays on a GPU) or 'map' (each replica's chunk in turn; on a CPU the cost of separate
        runs). Default: 'map' on a CPU, 'vmap' elsewhere.

    Fixed volume ('nvt', 'nve'): forces from :func:`softness.engine.pair_forces` over a
    dense Verlet list (:func:`softness.engine.verlet_list`), energy and virial from the same
    kernel at frames. 'npt': jax_md's neighbour list and ``jax.grad`` of its energy, which its
    barostat needs.
    """

    def __init__(self, species, masses, box, *, ensemble="nvt", timestep_fs=1.0, thermostat_tau_fs=100.0,
                 barostat_tau_fs=1000.0, pressure_GPa=0.0, cutoff_A=8.0, skin_A=1.0, dense=False,
                 dtype="float32", frame_every=1, frames_per_chunk=1, runaway_temperature_K=math.inf,
                 velocities=False, capacity_multiplier=1.25, replicas=None, replica_loop=None,
                 potential=None):
        import jax
        import jax.numpy as jnp
        from jax_md import simulate, space

        self.dtype = np.dtype(dtype)
        if self.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
            raise RuntimeError("float64 MD must run inside softness.md.precision_scope('float64').")
        if ensemble not in ("nvt", "npt", "nve"):
            raise ValueError(f"unknown ensemble {ensemble!r}")
        self.species = np.asarray(species, dtype=np.int32)
        self.n_atoms = len(self.species)
        self.masses = np.asarray(masses, dtype=np.float64)
        self.box0 = np.asarray(box, dtype=np.float64).reshape(3)
        self.ensemble = ensemble
        self.fractional = ensemble == "npt"
        self.timestep_fs = float(timestep_fs)
        if potential is None:
            potential = silica.potential({"cutoff_A": cutoff_A})
        self.potential = potential
        self.cutoff_A = float(potential.cutoff_A)
        self.skin_A = float(skin_A)
        self.dense = bool(dense)
        self.frame_every = int(frame_every)
        self.frames_per_chunk = int(frames_per_chunk)
        self.velocities = bool(velocities)
        self.runaway_temperature_K = np.asarray(runaway_temperature_K, dtype=np.float64)
        self.extra_capacity = 0
        self.reallocations = 0
        self._cell_list_fn = None
        self.fast = not self.fractional
        self.replicas = None if replicas is None else int(replicas)
        if self.replicas is not None and (not self.fast or self.replicas < 1):
            raise ValueError("replicas need a fixed-volume ensemble (nvt or nve) and at least one replica")
        if replica_loop is None:
            replica_loop = "map" if jax.default_backend() == "cpu" else "vmap"
        if replica_loop not in ("map", "vmap"):
            raise ValueError(f"replica_loop must be 'map' or 'vmap', got {replica_loop!r}")
        self.replica_loop = replica_loop
        if self.replicas is not None:
            self.runaway_temperature_K = np.broadcast_to(self.runaway_temperature_K, (self.replicas,)).copy()
        elif self.runaway_temperature_K.ndim:
            raise ValueError("one runaway temperature per replica needs replicas")

        dt = units.fs_to_internal(self.timestep_fs)
        box_j = jnp.asarray(self.box0, self.dtype)
        if self.fractional:
            displacement, shift = space.periodic_general(jnp.diag(box_j), fractional_coordinates=True)
            self.neighbor_fn, self.energy_fn = potential.energy_neighbor_list(
                displacement, jnp.diag(box_j), self.species, skin_A=skin_A,
                fractional_coordinates=True, dense=dense, capacity_multiplier=capacity_multiplier)
            forces = self.energy_fn
        else:
            _, shift = space.periodic(box_j)
            self.verlet = fast.verlet_list(self.box0, self.cutoff_A, skin_A, self.species)
            pair_force = fast.pair_forces(potential.pair, self.box0, self.species)
            self.pair_sums = fast.pair_forces(potential.pair, self.box0, self.species, energy=True)

            def forces(R, neighbor, **unused):
                return pair_force(R, neighbor)
        kT0 = units.kT(1000.0)  # replaced by the schedule at every step
        if ensemble == "nvt":
            self._init, self._apply = simulate.nvt_nose_hoover(
                forces, shift, dt, kT0, tau=units.fs_to_internal(thermostat_tau_fs))
        elif ensemble == "npt":
            self.pressure = units.GPa_to_pressure(pressure_GPa)
            self._init, self._apply = simulate.npt_nose_hoover(
                self.energy_fn, shift, dt, self.pressure, kT0,
                barostat_kwargs={"tau": units.fs_to_internal(barostat_tau_fs)},
                thermostat_kwargs={"tau": units.fs_to_internal(thermostat_tau_fs)})
        else:
            self._init, self._apply = simulate.nve(forces, shift, dt)
        self._jnp = jnp
        self.chunk = jax.jit(self._chunk)
        self.record = jax.jit(self._record)

    # -- helpers on the device ------------------------------------------------------
    def box_of(self, state):
        """Box edges [3] of a state (the fixed box except for 'npt')."""
        jnp = self._jnp
        if self.fractional:
            from jax_md import simulate

            return jnp.diag(simulate.npt_box(state))
        return jnp.asarray(self.box0, self.dtype)

    def _kinetic(self, state):
        from jax_md import simulate

        return simulate.kinetic_energy(state)

    def _force_kwargs(self, state):
        if self.fractional:
            return {"box": self._jnp.diag(self.box_of(state))}
        return {}

    def _axes(self, c):
        """vmap axes of a carry: the replica axis everywhere but the shared step."""
        return {k: None if k == "step" else 0 for k in c}

    def _step(self, c, sched):
        import jax

        state, nbrs = c["state"], c["nbrs"]
        if self.replicas is not None:
            c = dict(c, nbrs=fast.update_replicas(self.verlet, state.position, nbrs))
            axes = self._axes(c)
            runaway = self._jnp.asarray(self.runaway_temperature_K, self.dtype)
            return jax.vmap(self._integrate, in_axes=(axes, 0, 0), out_axes=axes)(c, sched, runaway)
        return self._step_one(c, sched, float(self.runaway_temperature_K))

    def _step_one(self, c, sched, runaway_K):
        """One step of one system: its neighbour list updated, then integrated."""
        state, nbrs = c["state"], c["nbrs"]
        if self.fast:
            nbrs = self.verlet.update(state.position, nbrs)
        else:
            nbrs = nbrs.update(state.position, **self._force_kwargs(state))
        return self._integrate(dict(c, nbrs=nbrs), sched, runaway_K)

    def _integrate(self, c, sched, runaway_K):
        """One step of one system whose neighbour list is up to date."""
        jnp = self._jnp
        state, nbrs = c["state"], c["nbrs"]
        step = c["step"] + 1
        kT = units.KB * _target_temperature(step, sched)
        old = state.position
        if self.ensemble == "nve":
            state = self._apply(state, neighbor=nbrs)
        else:
            state = self._apply(state, neighbor=nbrs, kT=kT.astype(self.dtype))
        jump = old - state.position
        if not self.fractional:
            jump = jump / jnp.asarray(self.box0, self.dtype)
        image = c["image"] + jnp.round(jump).astype(jnp.int32)
        kinetic_T = 2 * self._kinetic(state) / (3 * self.n_atoms * units.KB)
        code = jnp.where(~jnp.isfinite(kinetic_T), 1,
                         jnp.where(kinetic_T > runaway_K, 2, 0))
        if self.fractional:
            code = jnp.where((code == 0) & ~jnp.isfinite(state.box_position), 3, code)
        first = (c["bad_code"] == 0) & (code > 0)
        return dict(state=state, nbrs=nbrs, image=image, step=step,
                    bad_code=jnp.where(first, code, c["bad_code"]).astype(jnp.int32),
                    bad_step=jnp.where(first, step, c["bad_step"]),
                    bad_value=jnp.where(first, kinetic_T, c["bad_value"]).astype(self.dtype))

    def _record(self, c, sched):
        """One frame: wrapped positions, images, box and observables (units of the files)."""
        import jax

        if self.replicas is not None:
            return jax.vmap(self._record_one, in_axes=(self._axes(c), 0))(c, sched)
        return self._record_one(c, sched)

    def _record_one(self, c, sched):
        import jax
        from jax_md import simulate

        jnp = self._jnp
        state, nbrs = c["state"], c["nbrs"]
        edges = self.box_of(state)
        if self.fractional:
            position = state.position * edges
            box_kw = {"box": jnp.diag(edges)}
        else:
            position = state.position
            box_kw = {}
        # mod() can return exactly L in floating point; keep positions in [0, L).
        over = (position >= edges).astype(jnp.int32)
        position = position - over * edges
        image = c["image"] + over

        if self.fast:  # energy and virial sum_pairs r . F from the pair kernel
            sums = self.pair_sums(state.position, nbrs)
            pe, virial = sums.energy, sums.virial
        else:  # virial = -dU/d(eps) under the isotropic strain 1 + eps
            def U(eps):
                return self.energy_fn(state.position, neighbor=nbrs, perturbation=1 + eps, **box_kw)

            pe, dU = jax.value_and_grad(U)(jnp.zeros((), self.dtype))
            virial = -dU
        ke = self._kinetic(state)
        volume = jnp.prod(edges)
        pressure = (2 * ke + virial) / (3 * volume)
        T_target = _target_temperature(c["step"], sched)
        kT = units.KB * T_target

        def constant(*args, **kwargs):
            return pe

        if self.ensemble == "nvt":
            conserved = simulate.nvt_nose_hoover_invariant(constant, state, kT)
        elif self.ensemble == "npt":
            conserved = simulate.npt_nose_hoover_invariant(constant, state, self.pressure, kT)
        else:
            conserved = pe + ke
        rec = dict(
            step=c["step"], position=position, image=image, box=edges,
            potential_energy=pe, pressure=pressure * units.KCAL_PER_MOL_A3_IN_GPA,
            kinetic_temperature=2 * ke / (3 * self.n_atoms * units.KB),
            conserved_energy=conserved, target_temperature=T_target)
        if self.velocities:
            rec["velocity"] = state.velocity / units.TIME_UNIT_FS
        return rec

    def _chunk(self, c, sched, n_first, n_frames, n_tail):
        """Advance: ``n_frames`` frames, the first after ``n_first`` steps and the others
        ``frame_every`` steps apart, then ``n_tail`` steps without frames."""
        if self.replicas is not None and self.replica_loop == "map":
            return self._chunk_replicas_in_turn(c, sched, n_first, n_frames, n_tail)
        return self._chunk_with(self._step, self._record, c, sched, n_first, n_frames, n_tail)

    def _chunk_with(self, step_fn, record_fn, c, sched, n_first, n_frames, n_tail):
        import jax
        from jax import lax

        jnp = self._jnp

        def advance(c, n):
            return lax.fori_loop(0, n, lambda i, c: step_fn(c, sched), c)

        def slot(c, i):
            active = i < n_frames
            n = jnp.where(active, jnp.where(i == 0, n_first, self.frame_every), 0)
            c = advance(c, n)
            rec = lax.cond(active, lambda c: record_fn(c, sched),
                           lambda c: jax.tree.map(jnp.zeros_like, record_fn(c, sched)), c)
            return c, rec

        c, frames = lax.scan(slot, c, jnp.arange(self.frames_per_chunk))
        return advance(c, n_tail), frames

    def _chunk_replicas_in_turn(self, c, sched, n_first, n_frames, n_tail):
        """The chunk of each replica in turn (``lax.map``), each on its own carry: on a CPU
        this costs what separate runs cost, where ``vmap``'s [B, N, K] working set falls out
        of cache (0.34 x at B = 16, N = 648)."""
        from jax import lax

        jnp = self._jnp
        runaway = jnp.asarray(self.runaway_temperature_K, self.dtype)

        def one(args):
            cb, sb, rb = args
            cb = dict(cb, step=c["step"])
            out, frames = self._chunk_with(lambda c, s: self._step_one(c, s, rb), self._record_one, cb, sb,
                                           n_first, n_frames, n_tail)
            return out, frames

        rest = {k: v for k, v in c.items() if k != "step"}
        out, frames = lax.map(one, (rest, sched, runaway))
        out = dict(out, step=out["step"][0])
        return out, {k: jnp.swapaxes(v, 0, 1) for k, v in frames.items()}  # frames: [F, B, ...]

    # -- host side ------------------------------------------------------------------
    def to_internal_positions(self, positions, box=None):
        """Real wrapped positions (A) to the coordinates the integrator uses."""
        positions = np.asarray(positions, dtype=np.float64)
        if self.fractional:
            box = self.box0 if box is None else np.asarray(box, dtype=np.float64)
            positions = np.mod(positions / box, 1.0)
        return self._jnp.asarray(positions, self.dtype)

    def allocate(self, state):
        """A fresh neighbour list for ``state`` with the current spare capacity."""
        if self.replicas is not None:
            return self._allocate_replicas(state.position)
        box = self._jnp.diag(self.box_of(state)) if self.fractional else None
        return self._allocate(state.position, box)

    def _allocate_replicas(self, R):
        """Lists of one capacity (the fullest replica's) for replicas stacked on axis 0."""
        import jax

        capacity = max(fast.capacity_for(self.verlet.fullest_row(r), self.extra_capacity) for r in R)
        lists = [self.verlet.allocate(r, capacity=capacity) for r in R]
        return jax.tree.map(lambda *a: self._jnp.stack(a), *lists)

    def _allocate(self, R, box=None):
        if self.fast:
            return self.verlet.allocate(R, extra=self.extra_capacity)
        kw = {} if box is None else {"box": box}
        nbrs = _static_cell_size(self.neighbor_fn.allocate(R, extra_capacity=self.extra_capacity, **kw))
        nbrs = _pad_capacity(nbrs, self.n_atoms)
        # A new allocation makes a new (equivalent) cell-list function object; reuse the
        # first one so that the compiled chunk is not traced again.
        if nbrs.cell_list_fn is not None and isinstance(nbrs.cell_size, float):
            if self._cell_list_fn is not None and self._cell_list_fn[0] == nbrs.cell_size:
                nbrs = nbrs.set(cell_list_fn=self._cell_list_fn[1])
            else:
                self._cell_list_fn = (nbrs.cell_size, nbrs.cell_list_fn)
        return nbrs

    def init(self, positions, *, key, temperature_K=None, velocities_A_fs=None, box=None):
        """A new carry (integrator state, neighbour list, image flags, step 0).

        Args:
          positions: [N, 3] real positions (A), wrapped.
          key: jax PRNG key for Maxwell-Boltzmann velocities.
          temperature_K: temperature of the initial velocities (and of the thermostat mass).
          velocities_A_fs: [N, 3] initial velocities instead (A/fs); momenta are m v.
          box: box edges for 'npt' (default: the engine's box).

        With replicas, every argument but ``box`` is a sequence over replicas (velocities
        and temperatures may be None).
        """
        if self.replicas is not None:
            return self._init_replicas(positions, key, temperature_K, velocities_A_fs)
        state = self._init_state(positions, key, temperature_K, velocities_A_fs, box)
        return self.carry(state, np.zeros((self.n_atoms, 3), np.int32), 0)

    def _init_replicas(self, positions, keys, temperatures, velocities):
        import jax

        b = self.replicas
        if len(positions) != b or len(keys) != b:
            raise ValueError(f"init needs positions and keys for each of the {b} replicas")
        temperatures = [None] * b if temperatures is None else list(temperatures)
        velocities = [None] * b if velocities is None else list(velocities)
        states = [self._init_state(positions[i], keys[i], temperatures[i], velocities[i], None)
                  for i in range(b)]
        state = jax.tree.map(lambda *a: self._jnp.stack(a), *states)
        return self.carry(state, np.zeros((b, self.n_atoms, 3), np.int32), 0)

    def _init_state(self, positions, key, temperature_K, velocities_A_fs, box):
        jnp = self._jnp
        R = self.to_internal_positions(positions, box)
        mass = jnp.asarray(self.masses, self.dtype)
        # An array of the run's dtype, so the thermostat masses keep that dtype under x64.
        kT = jnp.asarray(units.kT(temperature_K if temperature_K is not None else 1.0), self.dtype)
        momenta = None
        if velocities_A_fs is not None:
            v = np.asarray(velocities_A_fs, dtype=np.float64) * units.TIME_UNIT_FS
            momenta = jnp.asarray(self.masses[:, None] * v, self.dtype)
        if self.fractional:
            box_m = jnp.diag(jnp.asarray(self.box0 if box is None else box, self.dtype))
            nbrs = self._allocate(R, box_m)
            state = self._init(key, R, box_m, mass=mass, momenta=momenta, neighbor=nbrs, kT=kT)
        elif self.ensemble == "nvt":
            nbrs = self._allocate(R)
            state = self._init(key, R, mass=mass, momenta=momenta, neighbor=nbrs, kT=kT)
        else:
            nbrs = self._allocate(R)
            state = self._init(key, R, kT, mass=mass, momenta=momenta, neighbor=nbrs)
        return state

    def carry(self, state, image, step):
        """The loop carry for ``state`` with a freshly built neighbour list."""
        jnp = self._jnp
        shape = () if self.replicas is None else (self.replicas,)
        return dict(state=state, nbrs=self.allocate(state), image=jnp.asarray(image, jnp.int32),
                    step=jnp.asarray(step, jnp.int32), bad_code=jnp.zeros(shape, jnp.int32),
                    bad_step=jnp.zeros(shape, jnp.int32), bad_value=jnp.zeros(shape, self.dtype))

    def replica(self, c, b: int):
        """Replica ``b`` of a batched carry, as the carry of a single run (e.g. a checkpoint)."""
        import jax

        return {k: v if k == "step" else jax.tree.map(lambda a: a[b], v) for k, v in c.items()}

    def rebuild(self, c):
        """``c`` with its neighbour list rebuilt from scratch (checkpoint boundaries)."""
        return dict(c, nbrs=self.allocate(c["state"]))

    @staticmethod
    def _overflowed(nbrs) -> bool:
        from jax_md import partition

        if isinstance(nbrs, fast.VerletList):
            return bool(np.any(np.asarray(nbrs.overflow)))
        pec = partition.PartitionErrorCode
        bits = pec.NEIGHBOR_LIST_OVERFLOW | pec.CELL_LIST_OVERFLOW | pec.CELL_SIZE_TOO_SMALL
        return bool(int(nbrs.error.code) & int(bits))

    def advance(self, c, sched, n_first, n_frames, n_tail):
        """Run one chunk; on neighbour-list overflow redo it with a bigger list.

        Returns:
          (new carry, frames as NumPy arrays cut to ``n_frames``).
        """
        jnp = self._jnp
        sched_j = jnp.asarray(sched, self.dtype)
        args = (jnp.int32(n_first), jnp.int32(n_frames), jnp.int32(n_tail))
        for _ in range(_MAX_REALLOCATIONS):
            new, frames = self.chunk(c, sched_j, *args)
            if not self._overflowed(new["nbrs"]):
                break
            old_capacity = c["nbrs"].idx.shape[-1]
            while True:
                # A deliberately negative spare capacity first returns to the natural one.
                grow = max(8, self.extra_capacity)
                self.extra_capacity = 0 if self.extra_capacity < 0 else self.extra_capacity + grow
                c = self.rebuild(c)
                if c["nbrs"].idx.shape[-1] > old_capacity:
                    break
            self.reallocations += 1
            log.debug("neighbour list overflowed at step %d; reallocated with capacity %d",
                      int(c["step"]), c["nbrs"].idx.shape[-1])
        else:
            raise SoftnessError(
                f"the neighbour list kept overflowing at step {int(c['step'])}; the system is probably "
                "collapsing (check the density and md.timestep_fs).")
        frames = {k: np.asarray(v[:n_frames]) for k, v in frames.items()}
        return new, frames

    @staticmethod
    def replica_frames(frames, b: int) -> dict:
        """Replica ``b``'s frames from the frames of a batched chunk."""
        return {k: v[:, b] for k, v in frames.items()}

    def failures(self, c, frames, *, names=None, step_to_fs=None) -> dict:
        """{replica: one sentence} for every replica whose chunk went bad (batched engines).

        A replica that blows up does not touch the others: each integrates on its own, so
        their frames and states stay valid and they can go on without it.
        """
        out = {}
        for b in range(self.replicas):
            try:
                self._check_one(self.replica(c, b), self.replica_frames(frames, b), step_to_fs,
                                self.runaway_temperature_K[b])
            except SoftnessError as exc:
                name = f"replica {b}" + (f" ({names[b]})" if names is not None else "")
                out[b] = f"{name}: {exc}"
        return out

    def check(self, c, frames, *, step_to_fs=None, names=None) -> None:
        """Raise a SoftnessError naming the step and quantity (and replica) if the chunk went bad."""
        if self.replicas is not None:
            bad = self.failures(c, frames, names=names, step_to_fs=step_to_fs)
            if bad:
                raise SoftnessError(next(iter(bad.values())))
            return
        self._check_one(c, frames, step_to_fs, self.runaway_temperature_K)

    def _check_one(self, c, frames, step_to_fs, runaway_K) -> None:
        step_to_fs = step_to_fs or (lambda s: s * self.timestep_fs)
        code = int(c["bad_code"])
        if code:
            step = int(c["bad_step"])
            what = _BAD[code]
            if code == 2:
                what += f" to {float(c['bad_value']):.3g} K (over {float(runaway_K):.3g} K)"
            raise SoftnessError(
                f"the MD run became unstable at step {step} (t = {step_to_fs(step):g} fs): {what}; "
                "a smaller md.timestep_fs or a gentler start may help.")
        for name in ("potential_energy", "pressure", "position"):
            values = frames.get(name)
            if values is None or len(values) == 0:
                continue
            bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            if name == "potential_energy":
                bad |= values / self.n_atoms > RUNAWAY_POTENTIAL_ENERGY_PER_ATOM
            if bad.any():
                step = int(frames["step"][np.argmax(bad)])
                label = name.replace("_", " ")
                why = "is not finite" if not np.isfinite(values[np.argmax(bad)]).all() else (
                    f"ran away above {RUNAWAY_POTENTIAL_ENERGY_PER_ATOM:g} kcal/mol per atom")
                raise SoftnessError(
                    f"the MD run became unstable at step {step} (t = {step_to_fs(step):g} fs): the "
                    f"{label} {why}; a smaller md.timestep_fs or a gentler start may help.")
        if self.fractional:
            edges = np.asarray(self.box_of(c["state"]))
            if np.any(edges < 2 * self.cutoff_A):
                raise SoftnessError(
                    f"the box shrank to {edges.min():.2f} A at step {int(c['step'])}, less than twice the "
                    f"cutoff ({self.cutoff_A:g} A); use more atoms or a lower pressure.")


def _static_cell_size(nbrs):
    """jax_md keeps the cell size, a static (metadata) field, as a 0-d array; two equal arrays
    compare to an array, which jit's pytree equality cannot use (a loop over a list allocated
    outside fails once jax_md has traced its cell size elsewhere). A float can."""
    if nbrs.cell_size is not None and np.ndim(nbrs.cell_size) == 0:
        nbrs = nbrs.set(cell_size=float(nbrs.cell_size))
    return nbrs


def _pad_capacity(nbrs, n_atoms: int):
    """Round the neighbour-list capacity up to a multiple of 64 (pairs) or 8 (slots per atom).

    jax_md sizes a list as 1.25 x the occupancy, an arbitrary number; XLA:CPU runs the pair
    sums markedly slower on some of them (measured: 81611 pairs at N = 648 cost 40 % more per
    step than 81532). The padding holds the empty marker N, which every pair function skips;
    the capacity stays within what jax_md's update can fill.
    """
    from jax_md import partition

    idx = nbrs.idx
    capacity = idx.shape[-1]
    if partition.is_sparse(nbrs.format):
        target = -(-capacity // 64) * 64
        limit = n_atoms * n_atoms if nbrs.cell_list_fn is None else n_atoms * 27 * nbrs.cell_list_capacity
    else:
        target = -(-capacity // 8) * 8
        limit = n_atoms - 1 if nbrs.cell_list_fn is None else 27 * nbrs.cell_list_capacity
    if target == capacity or target > limit:
        return nbrs
    pad = [(0, 0)] * (idx.ndim - 1) + [(0, target - capacity)]
    import jax.numpy as jnp

    return nbrs.set(idx=jnp.pad(idx, pad, constant_values=n_atoms), max_occupancy=target)


# ---------------------------------------------------------------------------- the host loop

def _frames_per_chunk(chunk_steps: int, frame_every: int) -> int:
    return max(1, int(round(chunk_steps / frame_every)))


class FrameGrid:
    """Steps at which frames are taken: ``start, start + every, ...`` up to ``stop``."""

    def __init__(self, start: int, every: int, stop: int):
        self.start, self.every, self.stop = start, every, stop

    def next_at_or_after(self, step: int):
        if step > self.stop:
            return None
        k = max(0, -(-(step - self.start) // self.every))
        s = self.start + k * self.every
        return s if s <= self.stop else None


def plan_chunk(step: int, limit: int, next_frame, every: int, capacity: int):
    """Split the steps from ``step`` to ``limit`` into (n_first, n_frames, n_tail) for one chunk.

    Frames are due at ``next_frame, next_frame + every, ...``; at most ``capacity`` fit
    in one chunk, and a chunk stops at the last frame when its buffer is full.
    """
    if next_frame is None or next_frame > limit:
        return 0, 0, limit - step
    n_first = next_frame - step
    possible = (limit - next_frame) // every + 1
    k = min(capacity, possible)
    last = next_frame + (k - 1) * every
    n_tail = limit - last if k == possible else 0
    return n_first, k, n_tail


class _ForeignCheckpoint(SoftnessError):
    """A checkpoint that was made by a different run than the one resuming."""


def _differences(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested identity dicts."""
    out = []
    for k in sorted(set(stored) | set(current), key=str):
        a, b = stored.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


class _Checkpoint:
    """HDF5 checkpoint of an MD stage (no pickles): every leaf of the carry, plus metadata."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, engine: Engine, c, *, key, meta: dict) -> None:
        import jax

        leaves, _ = jax.tree_util.tree_flatten_with_path(c["state"])
        tmp = self.path.with_name(self.path.name + ".tmp")
        with _deferred_interrupts():
            with h5py.File(tmp, "w") as f:
                g = f.create_group("state")
                for i, (path, leaf) in enumerate(leaves):
                    ds = g.create_dataset(f"{i:03d}", data=np.asarray(leaf))
                    ds.attrs["path"] = jax.tree_util.keystr(path)
                f["image"] = np.asarray(c["image"])
                f["rng_key"] = np.asarray(jax.random.key_data(key) if _is_typed_key(key) else key)
                f.attrs["step"] = int(c["step"])
                f.attrs["extra_capacity"] = int(engine.extra_capacity)
                f.attrs["meta"] = json.dumps(meta, sort_keys=True)
            os.replace(tmp, self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def resume(self, engine: Engine, make_template, *, identity: dict, what: str):
        """The stored (carry, key, meta) to continue from, or None to start from the beginning.

        A checkpoint left by a different run (another config, temperature or start file, or
        an integrator state of another shape) cannot continue this one: it is set aside with a
        warning naming what differs, so that rerunning a workflow after a config change starts
        the stage over instead of failing on its old checkpoint.

        Args:
          engine: the stage's Engine (its neighbour-list capacity is restored).
          make_template: callable returning a carry with this run's pytree structure.
          identity: what makes two runs the same run (see :func:`_identity`).
          what: the stage in words, for the log ("the quench", "the run at 3500 K").
        """
        if not self.exists():
            log.info("no checkpoint at %s; starting %s from the beginning", self.path, what)
            return None
        try:
            return self.read(engine, make_template(), identity=identity)
        except _ForeignCheckpoint as exc:
            log.warning("%s; starting %s from the beginning", exc, what)
            return None

    def read(self, engine: Engine, template, *, identity: dict):
        """The carry and metadata stored at ``path``; ``template`` gives the pytree structure.

        Raises:
          _ForeignCheckpoint: the checkpoint belongs to a different run.
        """
        state, image, step, extra, key, meta = self.read_state(engine, template["state"], identity=identity)
        engine.extra_capacity = extra
        return engine.carry(state, image, step), key, meta

    def read_state(self, engine: Engine, template_state, *, identity: dict):
        """(integrator state, image, step, spare list capacity, key, meta) stored at ``path``."""
        import jax

        with h5py.File(self.path, "r") as f:
            meta = json.loads(f.attrs["meta"])
            differ = _differences(meta.get("identity", {}), identity)
            if differ:
                raise _ForeignCheckpoint(
                    f"the checkpoint {self.path} was made by a different run ({', '.join(differ)} "
                    f"differ{'s' if len(differ) == 1 else ''})")
            leaves, treedef = jax.tree_util.tree_flatten(template_state)
            stored = [f["state"][k][()] for k in sorted(f["state"].keys())]
            if len(stored) != len(leaves) or any(
                    np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.asarray(b).dtype
                    for a, b in zip(stored, leaves, strict=True)):
                raise _ForeignCheckpoint(
                    f"the checkpoint {self.path} does not match this run's integrator state")
            state = jax.tree_util.tree_unflatten(treedef, [engine._jnp.asarray(a) for a in stored])
            image = f["image"][()]
            step = int(f.attrs["step"])
            extra = int(f.attrs["extra_capacity"])
            key = f["rng_key"][()]
        return state, image, step, extra, key, meta

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)


def _is_typed_key(key) -> bool:
    import jax

    return hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def checkpoint_path(out) -> Path:
    """Where the checkpoint of the product ``out`` lives."""
    out = Path(out)
    return out.with_name(f".{out.name}.checkpoint.h5")


@contextlib.contextmanager
def _deferred_interrupts():
    """Hold SIGINT/SIGTERM until the block ends, so files are never left half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for signum in received[:1]:
            handler = old[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


class _Run:
    """The host loop shared by both stages: chunks, frames, checkpoints, progress."""

    def __init__(self, engine: Engine, *, sched, total_steps: int, grid: FrameGrid | None,
                 chunk_len: int, checkpoint_every: int, save, progress: Progress | None, events=(),
                 on_frames=None, on_event=None, check=None):
        """``save(c, next_frame)`` writes the checkpoint (or nothing: None); ``check(c,
        frames)`` raises when a chunk went bad (default: ``engine.check``)."""
        self.engine = engine
        self.sched = sched
        self.total = total_steps
        self.grid = grid
        self.chunk_len = chunk_len
        self.every = -(-checkpoint_every // chunk_len) * chunk_len
        self.progress = progress
        self.events = sorted(set(events))
        self.on_frames = on_frames
        self.on_event = on_event
        self.check = engine.check if check is None else check
        self.save = save
        self.next_frame = None

    def run(self, c, *, step: int, next_frame):
        """Advance ``c`` from ``step`` to the end; returns the final carry.

        ``next_frame`` (the step of the next frame to record) is kept in ``self.next_frame``
        as it advances, for a caller that takes over after an exception.
        """
        engine = self.engine
        if step % self.every == 0:
            c = engine.rebuild(c)
            self._checkpoint(c, next_frame)
        for s in self.events:
            if s == step and self.on_event is not None:
                self.on_event(s, c)
        while step < self.total:
            boundary = (step // self.every + 1) * self.every
            stops = [self.total, boundary, step + self.chunk_len] + [e for e in self.events if e > step]
            limit = min(stops)
            every = self.grid.every if self.grid is not None else 1
            n_first, n_frames, n_tail = plan_chunk(step, limit, next_frame, every, engine.frames_per_chunk)
            self.next_frame = next_frame
            c, frames = engine.advance(c, self.sched, n_first, n_frames, n_tail)
            interrupts.check()  # a signal whose KeyboardInterrupt was dropped stops the run here
            self.check(c, frames)
            step = step + n_first + max(n_frames - 1, 0) * every + n_tail
            assert int(c["step"]) == step
            if n_frames:
                if self.on_frames is not None:
                    self.on_frames(frames)
                # (batched engines record the shared step once per replica)
                next_frame = self.grid.next_at_or_after(int(np.ravel(frames["step"][-1])[0]) + 1)
            if self.on_event is not None and step in self.events:
                self.on_event(step, c)
            if step % self.every == 0 and step < self.total:
                c = engine.rebuild(c)
                self._checkpoint(c, next_frame)
            if self.progress is not None:
                self.progress.update(step)
        return c

    def _checkpoint(self, c, next_frame):
        if self.save is not None:
            self.save(c, next_frame)


# ---------------------------------------------------------------------------- partial files

def mass_density(masses, box) -> float:
    """Mass density (g/cm^3) of atoms of ``masses`` (amu) in an orthorhombic ``box`` (A)."""
    return units.mass_density(float(np.sum(masses)), float(np.prod(np.asarray(box, dtype=np.float64))))


class _PartialTrajectory:
    """The in-progress H5MD file, opened and closed around every write."""

    def __init__(self, path: Path):
        self.path = path
        self.n_frames = 0

    def create(self, stage, cfg, species, masses, box, *, dtype, variable_box, attrs):
        system = systems.of_config(cfg)
        with _deferred_interrupts(), h5py.File(self.path, "w") as f:
            f.attrs.update(provenance(stage, cfg))
            f.attrs.update(attrs)
            f.attrs["system"] = system.NAME
            f.attrs["potential"] = system.potential(cfg["potential"]).name
            f.attrs["density_g_cm3"] = mass_density(masses, box)
            H5MDWriter(f, species, masses, box, species_names=system.SPECIES_NAMES, dtype=dtype,
                       variable_box=variable_box, observables=OBSERVABLES)
        self.n_frames = 0

    def reopen(self, n_frames: int):
        if not self.path.exists():
            raise SoftnessError(
                f"the checkpoint has no partial trajectory {self.path} next to it; run without --resume.")
        with _deferred_interrupts(), h5py.File(self.path, "a") as f:
            H5MDWriter.reopen(f, n_frames)
        self.n_frames = n_frames

    def append(self, frames, *, step_offset: int, timestep_fs: float):
        step = frames["step"].astype(np.int64) - step_offset
        with _deferred_interrupts(), h5py.File(self.path, "a") as f:
            w = H5MDWriter.reopen(f, self.n_frames)
            w.append(step, step * timestep_fs, frames["position"], frames["image"],
                     observables={k: frames[k] for k in OBSERVABLES},
                     box_edges=frames["box"] if w.variable_box else None)
        self.n_frames += len(step)

    def update(self, fn):
        with _deferred_interrupts(), h5py.File(self.path, "a") as f:
            fn(f)

    def finish(self, out: Path):
        os.replace(self.path, out)


def _identity(cfg: dict, sections, **extra) -> dict:
    ident = {k: cfg[k] for k in sections}
    ident.update(extra)
    return json.loads(json.dumps(ident, sort_keys=True))


def _resume_hint(command: str, ckpt: Path, dt_fs: float, why: str) -> str:
    try:
        with h5py.File(ckpt, "r") as f:
            step = int(f.attrs["step"])
        where = f"holds the run at step {step} ({step * dt_fs / 1000:g} ps)"
    except (OSError, KeyError):
        where = "is kept"
    return (f"{why}; the checkpoint {ckpt} {where}; "
            f"run the same command with --resume to continue: {command} --resume")


def _stage(cfg, works, body, *, command: str):
    """Common frame of the stages: what is kept when ``body()`` does not finish.

    ``works`` are the paths next to which the stage keeps its partial trajectories and
    checkpoints (one per product; several for a group of runs). A physics or input failure
    (SoftnessError: NaN, runaway, bad input) removes them all, since resuming would only repeat
    it. Anything else, an interruption (Ctrl-C, a wall-time SIGTERM) or a failure outside the
    physics (I/O, a crash, a signal that surfaces as another error), keeps each checkpoint and
    its partial trajectory, so --resume continues.
    """
    files = [(temporary_path(Path(w)), _Checkpoint(checkpoint_path(Path(w)))) for w in works]
    try:
        return body()
    except SoftnessError:
        for partial, ckpt in files:
            partial.unlink(missing_ok=True)
            ckpt.remove()
        raise
    except BaseException as exc:
        why = ("interrupted" if isinstance(exc, KeyboardInterrupt)
               else f"stopped by {type(exc).__name__}: {exc}")
        for partial, ckpt in files:
            if ckpt.exists():
                log.warning(_resume_hint(command, ckpt.path, cfg["md"]["timestep_fs"], why))
            else:
                partial.unlink(missing_ok=True)
        raise


def _key(seed: int, stage: int, temperature_K: float | None = None):
    import jax

    key = jax.random.fold_in(jax.random.PRNGKey(seed), stage)
    if temperature_K is not None:
        key = jax.random.fold_in(key, int(round(temperature_K * 1000)))
    return key


def run_key(seed: int, temperature_K: float, run_index: int = 0):
    """The random key of independent run ``run_index`` at one temperature.

    Run 0's key is the one a temperature's run has always had (seed, stage, T), so its
    trajectory and checkpoint do not depend on how many runs the study asks for; run r >= 1
    folds r into it, so its velocities are drawn from (seed, T, r).
    """
    import jax

    key = _key(seed, _STAGE_RUN, temperature_K)
    return key if run_index == 0 else jax.random.fold_in(key, int(run_index))


_ENGINES: dict = {}


def _engine_for(cfg: dict, species, masses, box, *, ensemble, frame_every, dtype, runaway_K,
                velocities=False, replicas=None):
    """The Engine for a stage; engines are kept (a few) so that repeated stages in one
    process, e.g. a run and its resumption, reuse the compiled chunk."""
    md = cfg["md"]
    kwargs = dict(
        ensemble=ensemble, timestep_fs=md["timestep_fs"],
        thermostat_tau_fs=md["thermostat_tau_fs"], barostat_tau_fs=md["barostat_tau_fs"],
        pressure_GPa=cfg["quench"]["pressure_GPa"],
        skin_A=md["neighbor_skin_A"], dense=md["neighbor_format"] == "dense", dtype=str(np.dtype(dtype)),
        frame_every=frame_every, frames_per_chunk=_frames_per_chunk(md["chunk_steps"], frame_every),
        runaway_temperature_K=runaway_K, velocities=velocities, replicas=replicas)
    potential = systems.of_config(cfg).potential(cfg["potential"])
    key = (np.asarray(species).tobytes(), np.asarray(masses, np.float64).tobytes(),
           np.asarray(box, np.float64).tobytes(), json.dumps(kwargs, sort_keys=True), potential.name)
    engine = _ENGINES.pop(key, None)
    if engine is None:
        engine = Engine(species, masses, box, potential=potential, **kwargs)
    engine.extra_capacity = 0
    engine.reallocations = 0
    _ENGINES[key] = engine
    while len(_ENGINES) > 4:
        _ENGINES.pop(next(iter(_ENGINES)))
    return engine


# ---------------------------------------------------------------------------- relaxation

def jax_md_steps(apply):
    """``fn(state, nbrs, n) -> (state, nbrs)``, jitted: ``n`` steps of a jax_md integrator or
    minimiser ``apply``, its neighbour list updated before each (jax_md's own loop: the FIRE
    relaxation, and the reference the engine is tested and benchmarked against). Overflow is
    the caller's to check."""
    import jax
    from jax import lax

    @jax.jit
    def run(state, nbrs, n):
        def body(i, c):
            s, nb = c
            nb = nb.update(s.position)
            return apply(s, neighbor=nb), nb
        return lax.fori_loop(0, n, body, (state, nbrs))

    return run


def relax(engine: Engine, positions, n_steps: int) -> np.ndarray:
    """FIRE minimisation (jax_md.minimize.fire_descent) of ``positions`` in the engine's box.

    A random packing starts far from any minimum; melting it directly would release
    ~200 kcal/mol per atom as heat. Returns the relaxed real positions.
    """
    from jax_md import minimize, space

    if n_steps <= 0:
        return np.asarray(positions, dtype=np.float64)
    jnp = engine._jnp
    box = jnp.asarray(engine.box0, engine.dtype)
    displacement, shift = space.periodic(box)
    neighbor_fn, energy_fn = engine.potential.energy_neighbor_list(displacement, box, engine.species,
                                                                   skin_A=engine.skin_A)
    dt0 = units.fs_to_internal(0.5)
    init, apply = minimize.fire_descent(energy_fn, shift, dt_start=dt0, dt_max=4 * dt0)
    run = jax_md_steps(apply)

    R = jnp.asarray(np.asarray(positions), engine.dtype)
    mass = jnp.asarray(engine.masses, engine.dtype)
    nbrs = _static_cell_size(neighbor_fn.allocate(R))
    s = init(R, neighbor=nbrs, mass=mass)
    done, extra = 0, 0
    while done < n_steps:
        n = min(200, n_steps - done)
        new, new_nbrs = run(s, nbrs, n)
        if Engine._overflowed(new_nbrs):
            extra += 8
            nbrs = _static_cell_size(neighbor_fn.allocate(s.position, extra_capacity=extra))
            continue
        s, nbrs = new, new_nbrs
        done += n
    out = np.asarray(s.position, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise SoftnessError("the FIRE relaxation of the initial structure produced non-finite positions.")
    return np.mod(out, engine.box0)


# ---------------------------------------------------------------------------- quench

def _snapshot_name(T: float) -> str:
    return f"{T:g}"


def quench_plan(cfg: dict) -> dict:
    """Step counts of the quench (validated): melt, cooling, snapshot steps, frames."""
    q, md = cfg["quench"], cfg["md"]
    dt = md["timestep_fs"]
    temps = sorted(set(float(t) for t in cfg["temperatures_K"]), reverse=True)
    if max(temps) > q["T_melt_K"]:
        raise SoftnessError(
            f"temperatures_K includes {max(temps):g} K, above quench.T_melt_K ({q['T_melt_K']:g} K); the "
            "quench cannot pass it.")
    if q["T_min_K"] > q["T_melt_K"]:
        raise SoftnessError("config key 'quench.T_min_K' is above quench.T_melt_K.")
    frame_every = steps_for(q["frame_interval_fs"], dt, "quench.frame_interval_fs")
    n_melt = steps_for(q["melt_time_fs"], dt, "quench.melt_time_fs", exact=False)
    rate = q["cooling_rate_K_per_ps"] / 1000 * dt  # K per step
    n_cool = int(math.ceil((q["T_melt_K"] - q["T_min_K"]) / rate - 1e-9))
    snaps = {T: n_melt + int(round((q["T_melt_K"] - T) / rate)) for T in temps}
    return dict(frame_every=frame_every, n_melt=n_melt, rate=rate, total=n_melt + n_cool,
                snapshots=snaps, temperatures=temps)


def quench(cfg: dict, out, resume: bool = False) -> None:
    """``softness quench``: melt, cool, and keep a snapshot at every temperature.

    Writes ``out`` (e.g. results/quench/quench.h5): the quench trajectory (H5MD; frames
    every quench.frame_interval_fs; a per-frame box for 'npt'), ``/snapshots/<T>`` groups
    (position, image, velocity in A/fs, box_edges, species, mass; attrs temperature_K, step,
    time_fs) and the root attribute ``final_density_g_cm3``.
    """
    out = Path(out)
    plan = quench_plan(cfg)
    q, md = cfg["quench"], cfg["md"]
    rng = np.random.default_rng([cfg["seed"], _STAGE_QUENCH])
    system = systems.of_config(cfg)
    structure = system.initial_structure(cfg["system"], rng)
    masses = system.masses_for(structure.species)
    systems.check_box(structure.box, system.potential(cfg["potential"]).cutoff_A, "the initial box")
    command = f"softness quench --out {out}"

    def body():
        ckpt = _Checkpoint(checkpoint_path(out))
        with precision_scope(cfg["precision"]) as dtype:
            engine = _engine_for(cfg, structure.species, masses, structure.box,
                                 ensemble=q["ensemble"], frame_every=plan["frame_every"], dtype=dtype,
                                 runaway_K=RUNAWAY_TEMPERATURE_FACTOR * q["T_melt_K"])
            key = _key(cfg["seed"], _STAGE_QUENCH)
            identity = _identity(cfg, ["seed", "precision", "temperatures_K", "system", "potential", "md",
                                       "quench"])
            partial = _PartialTrajectory(temporary_path(out))
            sched = schedule(q["T_melt_K"], q["T_min_K"], plan["n_melt"], -plan["rate"])
            grid = FrameGrid(0, plan["frame_every"], plan["total"])
            resumed = ckpt.resume(
                engine, lambda: engine.init(structure.positions, key=key, temperature_K=q["T_melt_K"]),
                identity=identity, what="the quench") if resume else None
            if resumed is not None:
                c, key, meta = resumed
                partial.reopen(meta["n_frames"])
                step, next_frame = int(c["step"]), meta["next_frame"]
                log.info("resuming the quench at step %d", step)
            else:
                ckpt.remove()  # a stale one must not pair with the new partial file
                positions = relax(engine, structure.positions, q["relax_steps"])
                c = engine.init(positions, key=key, temperature_K=q["T_melt_K"])
                partial.create("quench", cfg, structure.species, masses, structure.box,
                               dtype=dtype, variable_box=q["ensemble"] == "npt", attrs={
                                   "precision": cfg["precision"], "ensemble": q["ensemble"],
                                   "initial_density_g_cm3": mass_density(masses, structure.box),
                                   "T_melt_K": float(q["T_melt_K"]), "T_min_K": float(q["T_min_K"]),
                                   "cooling_rate_K_per_ps": float(q["cooling_rate_K_per_ps"])})
                step, next_frame = 0, 0
            snap_steps = {s: T for T, s in plan["snapshots"].items()}

            def on_event(s, c):
                T = snap_steps[s]
                snap = _snapshot_arrays(engine, c)
                partial.update(lambda f: _write_snapshot(f, T, snap, s, s * md["timestep_fs"]))

            progress = Progress("quench", plan["total"], md["timestep_fs"], start_step=step)
            loop = _Run(engine, sched=sched, total_steps=plan["total"], grid=grid,
                        chunk_len=engine.frames_per_chunk * plan["frame_every"],
                        checkpoint_every=md["checkpoint_every_steps"], progress=progress,
                        events=list(snap_steps),
                        on_frames=lambda fr: partial.append(fr, step_offset=0, timestep_fs=md["timestep_fs"]),
                        on_event=on_event,
                        save=lambda c, nf: ckpt.write(engine, c, key=key, meta={
                            "identity": identity, "n_frames": partial.n_frames, "next_frame": nf}))
            c = loop.run(c, step=step, next_frame=next_frame)
            progress.close()
            final_box = np.asarray(engine.box_of(c["state"]), dtype=np.float64)
            rho = mass_density(masses, final_box)

            def finish(f):
                f.attrs["final_density_g_cm3"] = rho
                f.attrs["density_g_cm3"] = rho
                missing = [T for T in plan["temperatures"] if f"snapshots/{_snapshot_name(T)}" not in f]
                assert not missing, missing

            partial.update(finish)
            partial.finish(out)
            ckpt.remove()
            log.info("quench done: %d frames, final density %.4f g/cm^3 -> %s", partial.n_frames, rho, out)

    _stage(cfg, [out], body, command=command)


def _snapshot_arrays(engine: Engine, c) -> dict:
    rec = engine.record(c, engine._jnp.asarray(schedule(1.0), engine.dtype))
    state = c["state"]
    return dict(position=np.asarray(rec["position"]), image=np.asarray(rec["image"]),
                velocity=np.asarray(state.velocity) / units.TIME_UNIT_FS,
                box_edges=np.asarray(rec["box"], dtype=np.float64),
                species=engine.species, mass=engine.masses)


def _write_snapshot(f: h5py.File, T: float, snap: dict, step: int, time_fs: float) -> None:
    name = f"snapshots/{_snapshot_name(T)}"
    if name in f:  # retaken after a resume
        del f[name]
    g = f.create_group(name)
    for k, v in snap.items():
        g[k] = v
    g["position"].attrs["unit"] = "angstrom"
    g["velocity"].attrs["unit"] = "angstrom/fs"
    g["box_edges"].attrs["unit"] = "angstrom"
    g["mass"].attrs["unit"] = "amu"
    g.attrs["temperature_K"] = float(T)
    g.attrs["step"] = int(step)
    g.attrs["time_fs"] = float(time_fs)


def snapshot_temperatures(path) -> list[float]:
    """Temperatures (K) of the snapshots in a quench product."""
    with open_input(path, "quench") as f:
        if "snapshots" not in f:
            raise SoftnessError(f"quench file {path} has no /snapshots; is it the output of softness quench?")
        return sorted(float(g.attrs["temperature_K"]) for g in f["snapshots"].values())


def read_snapshot(path, temperature_K: float) -> dict:
    """The snapshot at ``temperature_K`` (exact within 1e-6 K) from a quench product."""
    with open_input(path, "quench") as f:
        if "snapshots" not in f:
            raise SoftnessError(f"quench file {path} has no /snapshots; is it the output of softness quench?")
        for g in f["snapshots"].values():
            if abs(float(g.attrs["temperature_K"]) - temperature_K) <= 1e-6:
                names = ("position", "image", "velocity", "box_edges", "species", "mass")
                snap = {k: g[k][()] for k in names}
                snap.update({k: g.attrs[k] for k in ("temperature_K", "step", "time_fs")})
                snap["file_created_utc"] = str(f.attrs.get("created_utc", ""))
                return snap
        have = ", ".join(f"{T:g}" for T in sorted(float(g.attrs["temperature_K"])
                                                  for g in f["snapshots"].values()))
        raise SoftnessError(
            f"quench file {path} has no snapshot at {temperature_K:g} K (it has: {have} K).")


# ---------------------------------------------------------------------------- run

def run_plan(cfg: dict, temperature_K: float | None = None) -> dict:
    """Step counts of a run at one temperature (validated).

    Args:
      cfg: resolved config.
      temperature_K: the run's temperature; needed when ``run.equilibration_time_fs`` or
        ``run.production_time_fs`` is a mapping from temperature to time.
    """
    md = cfg["md"]
    per_temperature = [k for k in config_rules.RUN_LENGTH_KEYS if isinstance(cfg["run"][k], dict)]
    if temperature_K is None and per_temperature:
        raise SoftnessError(f"config key 'run.{per_temperature[0]}' is given per temperature, so the run "
                            "plan needs the temperature.")
    r = cfg["run"] if temperature_K is None else config_rules.run_section(cfg, temperature_K)
    dt = md["timestep_fs"]
    frame_every = steps_for(r["frame_interval_fs"], dt, "run.frame_interval_fs")
    n_eq = steps_for(r["equilibration_time_fs"], dt, "run.equilibration_time_fs", exact=False)
    n_prod = steps_for(r["production_time_fs"], dt, "run.production_time_fs", exact=False)
    n_prod = max(frame_every, n_prod - n_prod % frame_every)
    return dict(frame_every=frame_every, n_eq=n_eq, n_prod=n_prod, total=n_eq + n_prod)


class _Member:
    """One temperature of ``softness run``: its start snapshot, key, identity, files and the
    running means of its equilibration.

    ``run_index`` numbers the independent runs at one temperature (``run.replicas_per_temperature``).
    Run 0 continues the quench: the snapshot's positions and velocities, the key (seed, T) and
    the checkpoint identity a run has always had. Run r >= 1 starts from the same positions with
    Maxwell-Boltzmann velocities at T drawn from its own key (:func:`run_key`); its identity
    also names r, so the checkpoints of two runs never pass for each other.
    """

    def __init__(self, cfg: dict, plan: dict, start, T: float, out, work, run_index: int = 0):
        self.T = T
        self.run_index = int(run_index)
        # how messages name it: as always for run 0, with its index for the others
        self.label = f"{T:g} K" if self.run_index == 0 else f"{T:g} K (run {self.run_index})"
        self.out = Path(out)
        self.work = self.out if work is None else Path(work)  # where its partial file and checkpoint live
        self.work.parent.mkdir(parents=True, exist_ok=True)
        self.partial = _PartialTrajectory(temporary_path(self.work))
        self.ckpt = _Checkpoint(checkpoint_path(self.work))
        self.snap = read_snapshot(start, T)
        self.key = run_key(cfg["seed"], T, self.run_index)
        self.velocities = self.snap["velocity"] if self.run_index == 0 else None  # None: drawn from the key
        # The run section as this run sees it: another temperature's length, or how many runs there
        # are, is not its business.
        self.identity = _identity({**cfg, "run": config_rules.one_run_section(cfg, T)},
                                  ["seed", "precision", "system", "potential", "md", "run"],
                                  temperature_K=T, start=str(Path(start).resolve()),
                                  start_step=int(self.snap["step"]),
                                  start_created=self.snap["file_created_utc"],
                                  **({"run_index": self.run_index} if self.run_index else {}))
        self.plan = plan
        self.sums = {"n": 0, "T": 0.0, "pe": 0.0}

    def create(self, cfg, start, dtype, box):
        """A fresh partial trajectory (and no stale checkpoint)."""
        self.ckpt.remove()  # a stale one must not pair with the new partial file
        dt = cfg["md"]["timestep_fs"]
        snap = self.snap
        self.partial.create("run", cfg, snap["species"], snap["mass"], box, dtype=dtype, variable_box=False,
                            attrs={"temperature_K": self.T,
                                   "precision": cfg["precision"], "ensemble": "nvt",
                                   "start_file": str(start), "start_step": int(snap["step"]),
                                   "run_index": self.run_index,
                                   "initial_velocities": (
                                       "the quench snapshot's" if self.run_index == 0 else
                                       "Maxwell-Boltzmann at temperature_K, drawn from "
                                       "(seed, temperature_K, run_index)"),
                                   "equilibration_time_fs": self.plan["n_eq"] * dt,
                                   "production_time_fs": self.plan["n_prod"] * dt})
        self.sums = {"n": 0, "T": 0.0, "pe": 0.0}

    def resumed(self, meta):
        self.partial.reopen(meta["n_frames"])
        self.sums = meta["equilibration"]

    def on_frames(self, fr, dt):
        """Equilibration frames feed its means; production frames go to the file (time 0 at
        the start of production)."""
        n_eq = self.plan["n_eq"]
        eq = fr["step"] < n_eq
        if eq.any():
            self.sums["n"] += int(eq.sum())
            self.sums["T"] += float(fr["kinetic_temperature"][eq].sum())
            self.sums["pe"] += float(fr["potential_energy"][eq].sum())
        if (~eq).any():
            self.partial.append({k: v[~eq] for k, v in fr.items()}, step_offset=n_eq, timestep_fs=dt)

    def meta(self, next_frame):
        return {"identity": self.identity, "n_frames": self.partial.n_frames,
                "equilibration": dict(self.sums),
                "next_frame": next_frame}

    def finish(self):
        def attrs(f):
            n = self.sums["n"]
            f.attrs["equilibration_mean_temperature_K"] = self.sums["T"] / n if n else np.nan
            f.attrs["equilibration_mean_potential_energy_kcal_mol"] = self.sums["pe"] / n if n else np.nan
            f.attrs["equilibration_samples"] = n

        self.partial.update(attrs)
        self.partial.finish(self.out)
        self.ckpt.remove()
        log.info("run at %s done: %d frames -> %s", self.label, self.partial.n_frames, self.out)

    def discard(self):
        self.partial.path.unlink(missing_ok=True)
        self.ckpt.remove()


class _RunGrid:
    """Frame steps of a run: every frame_every steps during equilibration (they feed only its
    means), then the production grid from n_eq (time 0 of the product)."""

    def __init__(self, plan):
        self.every = plan["frame_every"]
        self.eq = FrameGrid(0, plan["frame_every"], plan["n_eq"] - 1)
        self.prod = FrameGrid(plan["n_eq"], plan["frame_every"], plan["total"])

    def next_at_or_after(self, s):
        nxt = self.eq.next_at_or_after(s)
        return nxt if nxt is not None else self.prod.next_at_or_after(s)


class _ReplicasFailed(Exception):
    """Some replicas of a batched chunk went bad (the others' chunk is valid)."""

    def __init__(self, bad: dict, c, frames):
        super().__init__("; ".join(bad.values()))
        self.bad, self.c, self.frames = bad, c, frames


def run_temperature(cfg: dict, start, temperature_K: float, out, resume: bool = False,
                    run_index: int = 0) -> None:
    """``softness run`` at one temperature: NVT equilibration and production.

    Starts from the quench snapshot at that temperature, in the snapshot's box. Writes
    ``out``: an H5MD trajectory of the production part only (time 0 at its start) with
    root attributes temperature_K, run_index, potential, density_g_cm3, precision and the
    equilibration means. ``run_index`` > 0: an independent run with its own velocities
    (:class:`_Member`).
    """
    run_temperatures(cfg, start, [temperature_K], [out], resume=resume, run_index=run_index)


def run_temperatures(cfg: dict, start, temperatures_K, outs, resume: bool = False, work=None,
                     keep_going: bool = False, run_index: int = 0) -> dict:
    """``softness run``: the runs at several temperatures, advanced together as replicas of
    one jitted program (one temperature: a plain run).

    Each temperature's run is what it would be alone: the same start snapshot, random key,
    schedule, frames, product and checkpoint (a checkpoint written by a run alone continues
    in a group and the other way round). Alone and in a group the trajectories agree to
    float rounding only: the thermostat's whole-system sums are added in another order.

    Args:
      cfg: resolved config.
      start: quench product with the snapshots.
      temperatures_K: one temperature per product.
      outs: the products, one per temperature.
      resume: continue from the checkpoints (each temperature from its own).
      work: paths next to which each temperature keeps its partial trajectory and
        checkpoint (default: ``outs``); the workflow points them at the per-temperature
        products, so that a run resumes whether it ran alone or in a group.
      keep_going: when some temperatures of a group fail (NaN, runaway), finish the others
        and return the failures instead of raising.
      run_index: which of the independent runs at each temperature (``run.replicas_per_temperature``)
        these are: 0 continues the quench snapshot, r >= 1 draws its velocities from (seed, T, r).
        One index for all the temperatures of a command, so a group holds each temperature once.

    Returns:
      {temperature: one sentence} for every temperature that failed (``keep_going`` only).

    Raises:
      SoftnessError: bad input, or a failed run (naming the temperature, step and quantity).
    """
    temps = [float(T) for T in np.atleast_1d(temperatures_K)]
    outs = [Path(o) for o in outs]
    works = [None] * len(outs) if work is None else [Path(w) for w in work]
    if len(outs) != len(temps) or len(works) != len(temps):
        raise SoftnessError(f"softness run needs one --out per temperature: {len(temps)} temperatures, "
                            f"{len(outs)} outputs.")
    for T in temps:
        if not (T > 0 and math.isfinite(T)):
            raise SoftnessError(f"the temperature must be positive, got {T:g} K.")
    if int(run_index) != run_index or run_index < 0:
        raise SoftnessError(f"the run index must be a whole number >= 0, got {run_index}.")
    if len(set(temps)) != len(temps):
        raise SoftnessError(f"a temperature is given twice: {', '.join(f'{T:g}' for T in temps)} K.")
    plans = [run_plan(cfg, T) for T in temps]
    if any(p != plans[0] for p in plans[1:]):
        # Replicas advance in lockstep chunks over one schedule (the workflow groups only equal
        # lengths: softness.config.md_run_groups).
        raise SoftnessError(
            f"the runs at {', '.join(f'{T:g}' for T in temps)} K have different lengths "
            "(run.equilibration_time_fs / run.production_time_fs per temperature), and runs in one group "
            "advance together: run them in separate commands.")
    members = [_Member(cfg, plan, start, T, out, w, run_index)
               for T, out, w, plan in zip(temps, outs, works, plans, strict=True)]
    first = members[0].snap
    box = np.asarray(first["box_edges"], dtype=np.float64)
    for m in members[1:]:
        if not np.array_equal(np.asarray(m.snap["box_edges"], np.float64), box):
            raise SoftnessError(
                f"the snapshots at {temps[0]:g} K and {m.T:g} K have different boxes (a constant-pressure "
                "quench); runs in one group share one box: run them one per job.")
    systems.check_box(box, systems.of_config(cfg).potential(cfg["potential"]).cutoff_A, "the snapshot's box")
    command = (f"softness run --start {start} --temperature {' '.join(f'{T:g}' for T in temps)} "
               f"--out {' '.join(str(o) for o in outs)}" + (f" --run-index {run_index}" if run_index else ""))
    works = [m.work for m in members]
    if len(members) == 1:
        _stage(cfg, works, lambda: _run_alone(cfg, start, members[0], resume), command=command)
        return {}

    def body():
        with precision_scope(cfg["precision"]) as dtype:
            return _run_group(cfg, start, members, box, resume, dtype)

    failed = _stage(cfg, works, body, command=command)
    if failed and not keep_going:
        raise SoftnessError(" ".join(failed.values())
                            + (" The other temperatures finished." if len(failed) < len(members) else ""))
    return failed


def _run_alone(cfg, start, m: _Member, resume: bool) -> None:
    """One temperature on an unbatched engine."""
    plan, md = m.plan, cfg["md"]
    dt = md["timestep_fs"]
    box = np.asarray(m.snap["box_edges"], dtype=np.float64)
    with precision_scope(cfg["precision"]) as dtype:
        engine = _engine_for(cfg, m.snap["species"], m.snap["mass"], box, ensemble="nvt",
                             frame_every=plan["frame_every"], dtype=dtype,
                             runaway_K=RUNAWAY_TEMPERATURE_FACTOR * m.T)

        def start_state():  # the quench snapshot: a fresh start, or the template of a resume
            return engine.init(m.snap["position"], key=m.key, temperature_K=m.T,
                               velocities_A_fs=m.velocities)

        resumed = m.ckpt.resume(engine, start_state, identity=m.identity,
                                what=f"the run at {m.label}") if resume else None
        if resumed is not None:
            c, _, meta = resumed
            m.resumed(meta)
            step, next_frame = int(c["step"]), meta["next_frame"]
            log.info("resuming the run at %s at step %d", m.label, step)
        else:
            c = start_state()
            m.create(cfg, start, dtype, box)
            step, next_frame = 0, 0
        grid = _RunGrid(plan)
        if next_frame is None and step < plan["total"]:
            next_frame = grid.next_at_or_after(step)
        progress = Progress(f"run {m.label}", plan["total"], dt, start_step=step)
        loop = _Run(engine, sched=schedule(m.T), total_steps=plan["total"], grid=grid,
                    chunk_len=engine.frames_per_chunk * plan["frame_every"],
                    checkpoint_every=md["checkpoint_every_steps"], progress=progress, events=[plan["n_eq"]],
                    on_frames=lambda fr: m.on_frames(fr, dt),
                    save=lambda c, nf: m.ckpt.write(engine, c, key=m.key, meta=m.meta(nf)))
        loop.run(c, step=step, next_frame=next_frame)
        progress.close()
        m.finish()


def _group_label(members: list) -> str:
    """'3000, 3100 K' (run 0) or '3000, 3100 K (run 1)': the temperatures of a group, in messages."""
    r = members[0].run_index
    return ", ".join(f"{m.T:g}" for m in members) + " K" + (f" (run {r})" if r else "")


def _run_group(cfg, start, members: list, box, resume: bool, dtype) -> dict:
    """Several temperatures as replicas of one program; a replica that fails is dropped and
    the others go on. Returns {temperature: sentence} of the failed ones."""
    import jax

    plan, md = members[0].plan, cfg["md"]
    dt = md["timestep_fs"]
    snap = members[0].snap
    grid = _RunGrid(plan)

    def engine_for(ms):
        return _engine_for(cfg, snap["species"], snap["mass"], box, ensemble="nvt",
                           frame_every=plan["frame_every"], dtype=dtype,
                           runaway_K=[RUNAWAY_TEMPERATURE_FACTOR * m.T for m in ms], replicas=len(ms))

    engine = engine_for(members)
    fresh = engine.init([m.snap["position"] for m in members], key=[m.key for m in members],
                        temperature_K=[m.T for m in members],
                        velocities_A_fs=[m.velocities for m in members])
    stored = [None] * len(members)
    if resume:
        for b, m in enumerate(members):
            if not m.ckpt.exists():
                log.info("no checkpoint at %s; starting the run at %s from the beginning", m.ckpt.path,
                         m.label)
                continue
            try:
                stored[b] = m.ckpt.read_state(engine, engine.replica(fresh, b)["state"], identity=m.identity)
            except _ForeignCheckpoint as exc:
                log.warning("%s; starting the run at %s from the beginning", exc, m.label)
    steps = {0 if s is None else s[2] for s in stored}
    if len(steps) > 1:
        # Checkpoints at different steps (the group was run otherwise before): alone, one by one.
        log.info("the checkpoints of %s are at different steps; running them one after the other",
                 _group_label(members))
        failed = {}
        for m in members:
            try:
                _run_alone(cfg, start, m, resume)
            except SoftnessError as exc:
                m.discard()
                failed[m.T] = f"the run at {m.label}: {exc}"
        return failed
    step = steps.pop()
    if all(s is not None for s in stored):  # (at step 0 too: a kill right after the first checkpoint)
        states, images = [], []
        for m, (state, image, _, _, _, meta) in zip(members, stored, strict=True):
            m.resumed(meta)
            states.append(state)
            images.append(image)
        engine.extra_capacity = max(s[3] for s in stored)
        c = engine.carry(jax.tree.map(lambda *a: engine._jnp.stack(a), *states), np.stack(images), step)
        next_frame = stored[0][5]["next_frame"]
        log.info("resuming the runs at %s at step %d", _group_label(members), step)
    else:
        c = fresh
        for m in members:
            m.create(cfg, start, dtype, box)
        next_frame = 0
    if next_frame is None and step < plan["total"]:
        next_frame = grid.next_at_or_after(step)

    active = list(members)
    failed = {}
    progress = Progress(f"run {_group_label(members)}", plan["total"], dt, start_step=step)

    def on_frames(ms, frames):
        for b, m in enumerate(ms):
            m.on_frames(Engine.replica_frames(frames, b), dt)

    while active:
        names = [m.label for m in active]

        def check(c, frames, engine=engine, names=names):
            bad = engine.failures(c, frames, names=names)
            if bad:
                raise _ReplicasFailed(bad, c, frames)

        def save(c, nf, engine=engine, ms=tuple(active)):
            for b, m in enumerate(ms):
                m.ckpt.write(engine, engine.replica(c, b), key=m.key, meta=m.meta(nf))

        loop = _Run(engine, sched=np.stack([schedule(m.T) for m in active]), total_steps=plan["total"],
                    grid=grid,
                    chunk_len=engine.frames_per_chunk * plan["frame_every"],
                    checkpoint_every=md["checkpoint_every_steps"], progress=progress, events=[plan["n_eq"]],
                    on_frames=lambda fr, ms=tuple(active): on_frames(ms, fr),
                    check=check, save=save)
        try:
            loop.run(c, step=step, next_frame=next_frame)
        except _ReplicasFailed as exc:
            keep = [b for b in range(len(active)) if b not in exc.bad]
            for b, sentence in exc.bad.items():
                m = active[b]
                m.discard()
                failed[m.T] = f"the run at {m.label} stopped: {sentence.split(': ', 1)[1]}"
                log.error("%s", failed[m.T])
            on_frames([active[b] for b in keep], {k: v[:, keep] for k, v in exc.frames.items()})
            active = [active[b] for b in keep]
            step = int(exc.c["step"])
            next_frame = (grid.next_at_or_after(int(exc.frames["step"][-1, 0]) + 1) if len(exc.frames["step"])
                          else loop.next_frame)
            if active:
                idx = np.asarray(keep)
                extra = engine.extra_capacity
                engine = engine_for(active)
                engine.extra_capacity = extra
                state = jax.tree.map(lambda a, idx=idx: a[idx], exc.c["state"])
                c = engine.carry(state, np.asarray(exc.c["image"])[idx], step)
            continue
        break
    progress.close()
    for m in active:
        m.finish()
    return failed


def take_group_product(src, out) -> None:
    """Give one temperature's product of a group run (``softness run`` with several
    temperatures and --keep-going) its place at ``out``.

    Raises:
      SoftnessError: that temperature's run failed (the sentence of its ``.failed`` record),
        or the group made no such product.
    """
    src = Path(src)
    failed = Path(f"{src}.failed")
    if failed.exists():
        raise SoftnessError(failed.read_text().strip())
    if not src.exists():
        raise SoftnessError(f"the group run made no {src}.")
    place_product(src, out)


def trajectory_density(path) -> float:
    """``density_g_cm3`` root attribute of an MD product."""
    with open_input(path, "trajectory") as f:
        if PARTICLES not in f:
            raise SoftnessError(f"{path} is not an MD trajectory.")
        return float(f.attrs["density_g_cm3"])
