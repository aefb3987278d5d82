"""The fast MD engine (softness.engine) against jax_md and brute force.

* BKS energy, forces and virial against jax_md's ``bks_silica_neighbor_list`` on a 3000-atom
  liquid (tests/data) and on random melts: float64 to 1e-10, float32 forces to 1e-5 of the
  float64 reference (jax_md's own float32 error is of that size).
* The Verlet list equals the brute-force pair set at every build and never misses a pair
  within the cutoff during a hot run; a list that is too short says so.
* NVE energy drift no worse than jax_md's on the same start; a batch of two replicas gives the
  trajectories of the two single runs; a replica that blows up is named alone.
"""

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import engine, md, units
from softness.systems import silica

DATA = Path(__file__).parent / "data"
BOX_3000 = 35.660930663857577


def _pairs_within(positions, box, r):
    d = positions[:, None, :] - positions[None, :, :]
    d -= box * np.round(d / box)
    r2 = np.sum(d * d, axis=-1)
    np.fill_diagonal(r2, np.inf)
    return r2 < r * r


def _jax_md_reference(positions, box, species, cutoff):
    """(energy, forces, virial) from jax_md's all-pairs BKS (no neighbour list), float64
    (inside precision_scope('float64')); the virial is -dU/d(strain) by autodiff."""
    import jax
    import jax.numpy as jnp
    from jax_md import energy, space

    displacement, _ = space.periodic(jnp.asarray(box))
    # A metric, not the displacement: bks_silica_pair misreads a displacement function.
    energy_fn = energy.bks_silica_pair(space.metric(displacement), jnp.asarray(species), cutoff=cutoff)

    @jax.jit
    def reference(R):
        e, g = jax.value_and_grad(energy_fn)(R)
        dU = jax.grad(lambda eps: energy_fn(R, perturbation=1 + eps))(jnp.zeros((), R.dtype))
        return e, -g, -dU

    e, f, w = reference(jnp.asarray(positions))
    return float(e), np.asarray(f), float(w)


def _ours(positions, box, species, cutoff, dtype):
    import jax
    import jax.numpy as jnp

    R = jnp.asarray(positions, dtype)
    nbrs = engine.verlet_list(box, cutoff, 1.0, species).allocate(R)
    assert not bool(nbrs.overflow)
    fn = jax.jit(engine.pair_forces(silica.bks_pair_potential(cutoff), box, species, energy=True))
    out = fn(R, nbrs)
    return float(out.energy), np.asarray(out.force, np.float64), float(out.virial)


def _melt(n_sio2, seed, jitter):
    """A random packing shaken so that close contacts (r^-24 core) and all pair types occur."""
    st = silica.random_packing(n_sio2, 2.2, np.random.default_rng(seed), min_distance=1.2)
    rng = np.random.default_rng(seed + 1)
    return np.mod(st.positions + rng.normal(0, jitter, st.positions.shape), st.box), st.species, st.box


def _relative(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


@pytest.fixture(scope="module")
def reference_liquid():
    positions = np.load(DATA / "silica_liquid_3000.npy")
    species = silica.species_for(1000)
    box = np.full(3, BOX_3000)
    with md.precision_scope("float64"):
        ref = _jax_md_reference(positions, box, species, 8.0)
    return positions, species, box, ref


def test_bks_matches_jax_md_on_the_reference_liquid_in_float64(reference_liquid):
    positions, species, box, (e_ref, f_ref, w_ref) = reference_liquid
    assert e_ref == pytest.approx(-857939.528386092, rel=1e-12)  # the documented jax_md value
    with md.precision_scope("float64") as dtype:
        e, f, w = _ours(positions, box, species, 8.0, dtype)
    assert e == pytest.approx(e_ref, rel=1e-10)
    assert _relative(f, f_ref) < 1e-10
    assert w == pytest.approx(w_ref, rel=1e-10)  # sum r.F = -dU/d(strain)


def test_bks_float32_forces_are_within_1e_5_of_the_float64_reference(reference_liquid):
    positions, species, box, (e_ref, f_ref, w_ref) = reference_liquid
    with md.precision_scope("float32") as dtype:
        e, f, w = _ours(positions, box, species, 8.0, dtype)
    assert _relative(f, f_ref) < 1e-5
    assert e == pytest.approx(e_ref, rel=1e-6)
    assert w == pytest.approx(w_ref, rel=1e-4)


def test_row_blocks_give_the_one_piece_forces_to_the_bit(monkeypatch):
    assert engine.rows_per_block(3000, 264, backend="gpu") == 3000  # a GPU sums all rows at once
    assert engine.rows_per_block(3000, 264, backend="cpu") < 3000  # N = 3000 is blocked on a CPU
    assert engine.rows_per_block(648, 264, backend="cpu") == 648  # N = 648 is one piece
    positions, species, box = _melt(64, 5, 0.1)  # a small melt, cut into blocks by a small block size
    n = len(species)
    with md.precision_scope("float32") as dtype:
        capacity = engine.verlet_list(box, 6.0, 1.0, species).allocate(positions.astype(dtype)).idx.shape[-1]
        monkeypatch.setattr(engine, "PAIRS_PER_BLOCK", 1 << 40)
        e1, f1, w1 = _ours(positions, box, species, 6.0, dtype)
        monkeypatch.setattr(engine, "PAIRS_PER_BLOCK", n * capacity // 7)  # 7 blocks, the last one padded
        e7, f7, w7 = _ours(positions, box, species, 6.0, dtype)
    block = engine.rows_per_block(n, capacity, backend="cpu")
    assert -(-n // block) == 7 and n % block != 0
    assert_array_equal(f7, f1)  # each row's sum is the same sum
    assert e7 == pytest.approx(e1, rel=1e-6)  # the totals are summed in another order
    assert w7 == pytest.approx(w1, rel=1e-6)


@pytest.mark.parametrize("seed, cutoff", [(1, 7.0), (2, 5.5)])
def test_bks_matches_jax_md_on_random_melts(seed, cutoff):
    positions, species, box = _melt(64, seed, 0.3)
    assert silica.minimum_distance(positions, box) < 1.3  # the r^-24 core is exercised
    with md.precision_scope("float64") as dtype:
        e_ref, f_ref, w_ref = _jax_md_reference(positions, box, species, cutoff)
        e, f, w = _ours(positions, box, species, cutoff, dtype)
    assert e == pytest.approx(e_ref, rel=1e-10)
    assert _relative(f, f_ref) < 1e-10
    assert w == pytest.approx(w_ref, rel=1e-10)
    with md.precision_scope("float32") as dtype:
        _, f32, _ = _ours(positions, box, species, cutoff, dtype)
    assert _relative(f32, f_ref) < 1e-5


def test_verlet_list_equals_brute_force_and_misses_no_pair_during_a_hot_run():
    """Every build holds exactly the pairs within cutoff + skin; between builds (atoms moving
    at 6000 K, 300 steps, a rebuild every few steps) every pair within the cutoff is listed."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax_md import simulate, space

    positions, species, box = _melt(64, 3, 0.05)
    cutoff, skin = 6.0, 0.8
    with md.precision_scope("float32") as dtype:
        R = jnp.asarray(positions, dtype)
        vl = engine.verlet_list(box, cutoff, skin, species)
        nbrs = vl.allocate(R, extra=16)
        forces = engine.pair_forces(silica.bks_pair_potential(cutoff), box, species)
        _, shift = space.periodic(jnp.asarray(box, dtype))
        init, apply = simulate.nvt_nose_hoover(lambda R, neighbor, **k: forces(R, neighbor), shift,
                                               units.fs_to_internal(1.0), units.kT(6000.0),
                                               tau=units.fs_to_internal(50.0))
        state = init(jax.random.PRNGKey(0), R, mass=jnp.asarray(silica.masses_for(species), dtype),
                     neighbor=nbrs)

        @jax.jit
        def run(state, nbrs):
            def step(c, _):
                s, n = c
                n = vl.update(s.position, n)
                s = apply(s, neighbor=n)
                return (s, n), (s.position, n.idx, n.species, n.reference, n.builds)
            return lax.scan(step, (state, nbrs), None, length=300)

        (_, last), (Rs, idxs, slot_species, refs, builds) = run(state, nbrs)
    assert not bool(last.overflow)
    Rs, idxs, slot_species, refs, builds = map(np.asarray, (Rs, idxs, slot_species, refs, builds))
    n = len(species)
    assert builds[-1] - builds[0] >= 10  # the hot run rebuilds often
    for t in range(0, 300, 7):
        listed = np.zeros((n, n), bool)
        rows = np.repeat(np.arange(n), idxs.shape[-1])
        cols = idxs[t].reshape(-1)
        listed[rows[cols < n], cols[cols < n]] = True
        # At the build: exactly the brute-force pairs within cutoff + skin.
        assert_array_equal(listed, _pairs_within(refs[t].astype(np.float64), box, cutoff + skin))
        # Now: no pair within the cutoff missing.
        missing = _pairs_within(Rs[t].astype(np.float64), box, cutoff) & ~listed
        assert not missing.any(), (t, np.argwhere(missing)[:3])
        # Ascending order, empty slots (N) at the end.
        assert np.all((np.diff(idxs[t], axis=1) > 0) | (idxs[t][:, 1:] == n))
        # Each slot carries its neighbour's species (0 when empty).
        assert_array_equal(slot_species[t], np.where(idxs[t] < n, species[np.minimum(idxs[t], n - 1)], 0))


@pytest.mark.parametrize("n_sio2, capacity", [(64, 96), (64, 28), (350, 64)])
def test_both_ways_of_finding_slots_give_the_brute_force_list(n_sio2, capacity):
    """Counting words (small N) and the running maximum (large N) fill the same slots: the
    brute-force neighbours in ascending order, cut at the capacity when a row overflows."""
    import jax
    import jax.numpy as jnp

    positions, species, box = _melt(n_sio2, 6, 0.1)
    n = len(species)
    r_list = 5.0
    want = _pairs_within(positions, box, r_list)
    with md.precision_scope("float32") as dtype:
        R, b = jnp.asarray(positions, dtype), jnp.asarray(box, dtype)
        lists = {c: jax.jit(lambda R, c=c: engine._build(R, b, r_list, capacity, counting=c))(R)
                 for c in (True, False)}
    for counting, (idx, count) in lists.items():
        idx, count = np.asarray(idx), np.asarray(count)
        assert_array_equal(count, want.sum(axis=1))
        for i in range(n):
            listed = np.flatnonzero(want[i])[:capacity]
            assert_array_equal(idx[i, :len(listed)], listed, err_msg=f"counting={counting}, row {i}")
            assert np.all(idx[i, len(listed):] == n)
    assert (count > capacity).any() == (capacity < want.sum(axis=1).max())


def test_a_list_too_short_reports_overflow_and_a_fresh_one_fits():
    import jax.numpy as jnp

    positions, species, box = _melt(64, 4, 0.1)
    vl = engine.verlet_list(box, 7.0, 1.0, species)
    with md.precision_scope("float32") as dtype:
        R = jnp.asarray(positions, dtype)
        fullest = _pairs_within(positions, box, 8.0).sum(axis=1).max()
        assert vl.fullest_row(R) == fullest
        short = vl.allocate(R, capacity=fullest - 1)
        assert bool(short.overflow) and int(short.max_neighbors) == fullest
        fresh = vl.allocate(R)
        assert not bool(fresh.overflow) and fresh.idx.shape[-1] >= fullest
        assert fresh.idx.shape[-1] % engine.CAPACITY_ALIGN == 0


def test_a_list_is_built_for_its_own_atoms():
    positions, species, box = _melt(64, 4, 0.1)
    with pytest.raises(ValueError, match="191 positions for a list of 192 atoms"):
        engine.verlet_list(box, 7.0, 1.0, species).allocate(positions[:-1])
    with pytest.raises(ValueError, match="from 0 to 127"):
        engine.verlet_list(box, 7.0, 1.0, np.full(len(species), 128))


@pytest.fixture(scope="module")
def small_liquid():
    """192 atoms of BKS liquid at ~4000 K (box 14.3 A, cutoff 7 A), equilibrated briefly."""
    import jax

    st = silica.random_packing(64, 2.2, np.random.default_rng(5))
    with md.precision_scope("float32") as dtype:
        e = md.Engine(st.species, st.masses, st.box, cutoff_A=7.0, dtype=dtype, frame_every=100,
                      frames_per_chunk=1, thermostat_tau_fs=50.0)
        positions = md.relax(e, st.positions, 300)
        c = e.init(positions, key=jax.random.PRNGKey(7), temperature_K=4000.0)
        c, _ = e.advance(c, md.schedule(4000.0), 0, 0, 2000)
        state = c["state"]
        return (np.mod(np.asarray(state.position, np.float64), st.box), np.asarray(state.velocity) /
                units.TIME_UNIT_FS, st.species, st.box)


def _nve_drift(make_engine, positions, velocities, dtype):
    """Slope (kcal/mol per atom per ps) of the total energy over 3 ps of NVE at 1 fs."""
    import jax

    e = make_engine(dtype)
    c = e.init(positions, key=jax.random.PRNGKey(0), velocities_A_fs=velocities)
    frames = []
    for k in range(6):
        c, fr = e.advance(c, md.schedule(4000.0), 0 if k == 0 else 20, 25, 0)
        frames.append(fr)
    fr = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}
    return np.polyfit(fr["step"] / 1000.0, fr["conserved_energy"] / e.n_atoms, 1)[0]


class _JaxMdNVE:
    """jax_md's own NVE on its own list, with the Engine's advance/init interface (frames: energy only)."""

    def __init__(self, species, masses, box, cutoff, dtype):
        import jax
        import jax.numpy as jnp
        from jax_md import simulate, space

        self.n_atoms = len(species)
        self.masses = np.asarray(masses)
        box_j = jnp.asarray(box, dtype)
        displacement, shift = space.periodic(box_j)
        self.neighbor_fn, energy_fn = silica.bks_energy(displacement, box_j, species, cutoff_A=cutoff)
        self.init_fn, apply = simulate.nve(energy_fn, shift, units.fs_to_internal(1.0))
        self.dtype = dtype
        self.steps = md.jax_md_steps(apply)
        self.total_energy = jax.jit(lambda s, nbrs: energy_fn(s.position, nbrs) + simulate.kinetic_energy(s))

    def init(self, positions, key, velocities_A_fs):
        import jax.numpy as jnp

        R = jnp.asarray(positions, self.dtype)
        nbrs = self.neighbor_fn.allocate(R, extra_capacity=64)
        p = jnp.asarray(self.masses[:, None] * velocities_A_fs * units.TIME_UNIT_FS, self.dtype)
        s = self.init_fn(key, R, 1.0, mass=jnp.asarray(self.masses, self.dtype), momenta=p, neighbor=nbrs)
        return {"s": s, "nbrs": nbrs, "step": 0}

    def advance(self, c, sched, n_first, n_frames, n_tail):
        steps, energies = [], []
        s, nbrs, step = c["s"], c["nbrs"], c["step"]
        for k in range(n_frames):
            n = n_first if k == 0 else 20
            s, nbrs = self.steps(s, nbrs, n)
            e = self.total_energy(s, nbrs)
            assert not nbrs.did_buffer_overflow
            step += n
            steps.append(step)
            energies.append(float(e))
        return {"s": s, "nbrs": nbrs, "step": step}, {"step": np.array(steps),
                                                       "conserved_energy": np.array(energies)}


def test_nve_drift_is_no_worse_than_jax_md(small_liquid):
    positions, velocities, species, box = small_liquid
    masses = silica.masses_for(species)
    with md.precision_scope("float32") as dtype:
        ours = _nve_drift(lambda dt: md.Engine(species, masses, box, ensemble="nve", cutoff_A=7.0, dtype=dt,
                                               frame_every=20, frames_per_chunk=25),
                          positions, velocities, dtype)
        theirs = _nve_drift(lambda dt: _JaxMdNVE(species, masses, box, 7.0, dt), positions, velocities, dtype)
    # Both integrate the same potential with velocity Verlet: the same truncation jumps (the
    # Buckingham terms are not shifted) and float32 rounding set the drift. A slope within
    # 2 x jax_md's, or below 2e-4 kcal/mol per atom per ps (a few hundredths of kT per ns), passes.
    assert abs(ours) <= max(2 * abs(theirs), 2e-4), (ours, theirs)


@pytest.mark.parametrize("replica_loop", ["map", "vmap"])
def test_two_replicas_in_one_program_give_the_two_single_runs(small_liquid, replica_loop):
    """Each replica of a batched run follows its own single run: the same steps and images,
    positions to 1e-4 A (float32) or 1e-9 A (float64) after 200 steps. Not bit for bit in
    general: the thermostat reads whole-system sums, which XLA may add in another order in
    another program, and the last-bit difference grows along the (chaotic) trajectory."""
    import jax

    positions, velocities, species, box = small_liquid
    masses = silica.masses_for(species)
    rng = np.random.default_rng(0)
    starts = [positions, np.mod(positions + rng.normal(0, 0.05, positions.shape), box)]
    temps = [3000.0, 4500.0]
    keys = [jax.random.PRNGKey(1), jax.random.PRNGKey(2)]
    for precision in ("float32", "float64"):
        with md.precision_scope(precision) as dtype:
            kw = dict(cutoff_A=7.0, dtype=dtype, frame_every=50, frames_per_chunk=4)
            single = md.Engine(species, masses, box, **kw)
            batched = md.Engine(species, masses, box, replicas=2, replica_loop=replica_loop, **kw)
            cb = batched.init(starts, key=keys, temperature_K=temps)
            cb, fb = batched.advance(cb, np.stack([md.schedule(T) for T in temps]), 0, 4, 0)
            mean_T = []
            for b in range(2):
                c = single.init(starts[b], key=keys[b], temperature_K=temps[b])
                c, f = single.advance(c, md.schedule(temps[b]), 0, 4, 0)
                g = batched.replica_frames(fb, b)
                assert sorted(f) == sorted(g)
                assert_array_equal(g["step"], f["step"])
                assert_array_equal(g["image"], f["image"])
                atol = 1e-4 if precision == "float32" else 1e-9
                assert_allclose(g["position"], f["position"], rtol=0, atol=atol)
                assert_allclose(g["potential_energy"], f["potential_energy"], rtol=atol / 10)
                mean_T.append(float(g["kinetic_temperature"].mean()))
            # Each replica is thermostatted to its own temperature (200 fs = 2 tau: not yet settled).
            assert mean_T[1] - mean_T[0] > 0.5 * (temps[1] - temps[0]), mean_T
            assert_allclose(mean_T, temps, rtol=0.25)


@pytest.mark.parametrize("replica_loop", ["map", "vmap"])
def test_a_replica_that_blows_up_is_named_alone(small_liquid, replica_loop):
    import jax

    positions, velocities, species, box = small_liquid
    masses = silica.masses_for(species)
    with md.precision_scope("float32") as dtype:
        e = md.Engine(species, masses, box, cutoff_A=7.0, dtype=dtype, frame_every=10, frames_per_chunk=2,
                      replicas=2, runaway_temperature_K=40000.0, replica_loop=replica_loop)
        c = e.init([positions, positions], key=[jax.random.PRNGKey(1), jax.random.PRNGKey(2)],
                   temperature_K=[3000.0, 3000.0])
        momentum = c["state"].momentum.at[1, 5, 0].set(np.nan)
        c = dict(c, state=c["state"].set(momentum=momentum))
        sched = np.stack([md.schedule(3000.0)] * 2)
        c, fr = e.advance(c, sched, 10, 2, 0)
        bad = e.failures(c, fr, names=["3000 K, seed 1", "3000 K, seed 2"])
    assert list(bad) == [1]
    assert bad[1].startswith("replica 1 (3000 K, seed 2): the MD run became unstable at step 1 ")
    assert "kinetic energy is not finite" in bad[1]
    good = e.replica_frames(fr, 0)
    assert np.isfinite(good["position"]).all() and np.isfinite(good["potential_energy"]).all()
