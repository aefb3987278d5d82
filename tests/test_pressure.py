"""The MD frame pressure against an independent value: the volume derivative of the energy.

P = (2 KE - dU/d(eps)) / (3 V) with U(eps) the energy of positions and box scaled by 1 + eps
(an isotropic strain, V -> V (1 + eps)^3). The virial part is checked here against a central
finite difference of the potential energy an Engine reports for the strained configuration
(positions and box scaled, handed to a constant-pressure Engine, whose box is part of its
state); the kinetic part against sum m v^2 / (3 V) from the velocities handed in, converted
with SI constants written out here. Both the fixed-volume Engine and the constant-pressure one
are checked. Only the public Engine API is used (constructor, ``init``, ``record``), so the
check holds for whatever computes forces and virials inside it.
"""

import numpy as np
import pytest

from softness import md
from softness.systems import silica

#: SI constants, written out (not taken from softness.units).
AVOGADRO = 6.02214076e23
KCAL_J = 4184.0
AMU_KG = 1e-3 / AVOGADRO
#: 1 amu A^2 / fs^2 per particle in kcal/mol, and 1 kcal/(mol A^3) in GPa.
AMU_A2_FS2_IN_KCAL_MOL = AMU_KG * 1e-20 / 1e-30 * AVOGADRO / KCAL_J
KCAL_MOL_A3_IN_GPA = KCAL_J / AVOGADRO / 1e-30 / 1e9

CUTOFF_A = 8.0


def _liquid_configuration():
    """300 atoms of silica at 2.2 g/cm^3 (box 16.55 A, two cutoffs): a random packing taken
    down 200 steepest-descent steps (each atom moves at most 0.05 A per step) on jax_md's own
    BKS energy to a bonded amorphous structure (about -290 kcal/mol per atom), displaced by
    0.05 A so that forces do not vanish, with Maxwell-Boltzmann velocities at 3000 K."""
    import jax
    import jax.numpy as jnp
    from jax_md import energy, space

    rng = np.random.default_rng(5)
    st = silica.random_packing(100, 2.2, rng)
    box = jnp.asarray(st.box)
    displacement, shift = space.periodic(box)
    neighbor_fn, energy_fn = energy.bks_silica_neighbor_list(
        displacement, box, jnp.asarray(st.species), cutoff=CUTOFF_A, dr_threshold=1.0)
    nbrs = neighbor_fn.allocate(jnp.asarray(st.positions), extra_capacity=32)

    @jax.jit
    def descend(R, nbrs):
        def body(i, c):
            R, nbrs = c
            nbrs = nbrs.update(R)
            step = -0.002 * jax.grad(energy_fn)(R, neighbor=nbrs)
            step = step * jnp.minimum(1.0, 0.05 / jnp.linalg.norm(step, axis=1, keepdims=True))
            return shift(R, step), nbrs
        return jax.lax.fori_loop(0, 200, body, (R, nbrs))

    R, nbrs = descend(jnp.asarray(st.positions), nbrs)
    assert not nbrs.did_buffer_overflow
    positions = np.asarray(R, np.float64) + rng.normal(scale=0.05, size=st.positions.shape)
    positions = np.mod(positions, st.box)
    masses = silica.masses_for(st.species)
    kT_amu_A2_fs2 = 1.380649e-23 * 3000.0 / (AMU_KG * 1e-20 / 1e-30)  # k_B T in amu A^2/fs^2
    v = rng.normal(size=positions.shape) * np.sqrt(kT_amu_A2_fs2 / masses)[:, None]
    v -= (masses[:, None] * v).sum(0) / masses.sum()
    return positions, st.species, masses, np.asarray(st.box, np.float64), v


def _pair_distances(positions, box):
    d = positions[:, None] - positions[None]
    d -= box * np.round(d / box)
    r = np.sqrt((d**2).sum(-1))
    return r[np.triu_indices(len(positions), 1)]


def _record(engine, positions, velocities, box=None):
    import jax

    kw = {} if box is None else {"box": box}
    c = engine.init(positions, key=jax.random.PRNGKey(0), velocities_A_fs=velocities, **kw)
    rec = engine.record(c, np.asarray(md.schedule(3000.0)))
    return {k: np.asarray(v) for k, v in rec.items()}


@pytest.fixture(scope="module")
def pressure_check():
    with md.precision_scope("float64"):
        positions, species, masses, box, v = _liquid_configuration()
        # The Buckingham terms are cut without a shift: a pair crossing the cutoff under the
        # strain would put a jump into the difference. Keep every pair farther than 4 eps r_c
        # from it (a pair within the cutoff moves by at most r_c eps).
        gap = np.min(np.abs(_pair_distances(positions, box) - CUTOFF_A))
        eps = min(1e-5, gap / CUTOFF_A / 4)
        engines = {e: md.Engine(species, masses, box, ensemble=e, dtype="float64", cutoff_A=CUTOFF_A)
                   for e in ("nvt", "npt")}
        frames = {e: _record(engine, positions, v) for e, engine in engines.items()}
        # The strained configurations: the constant-pressure engine takes a box of its own.
        energies = {s: float(_record(engines["npt"], positions * (1 + s), np.zeros_like(v),
                                     box * (1 + s))["potential_energy"])
                    for s in (eps, -eps, eps / 2, -eps / 2)}
    volume = float(np.prod(box))
    dU_deps = (energies[eps] - energies[-eps]) / (2 * eps)  # kcal/mol
    dU_deps_half = (energies[eps / 2] - energies[-eps / 2]) / eps
    virial_GPa = -dU_deps / (3 * volume) * KCAL_MOL_A3_IN_GPA
    kinetic_GPa = np.sum(masses[:, None] * v**2) * AMU_A2_FS2_IN_KCAL_MOL / (3 * volume) * KCAL_MOL_A3_IN_GPA
    return dict(frames=frames, virial_GPa=virial_GPa, kinetic_GPa=kinetic_GPa, n_atoms=len(species),
                dU_deps=(dU_deps, dU_deps_half))


@pytest.mark.parametrize("ensemble", ["nvt", "npt"])
def test_frame_pressure_is_the_volume_derivative_of_the_energy(pressure_check, ensemble):
    frame = pressure_check["frames"][ensemble]
    virial, kinetic = pressure_check["virial_GPa"], pressure_check["kinetic_GPa"]
    # A liquid at 2.2 g/cm^3 in a fixed box: a virial of GPa, so a wrong sign or factor shows.
    assert 0.3 < abs(virial) < 50, virial
    # The kinetic part is the velocities handed in (3000 K): ~2.7 GPa for 300 atoms in 4535 A^3.
    kT_kcal = 1.380649e-23 * 6.02214076e23 / KCAL_J
    temperature = float(frame["kinetic_temperature"])
    expected_T = kinetic * (3 * np.prod(frame["box"])) / KCAL_MOL_A3_IN_GPA / (3 * pressure_check["n_atoms"])
    assert temperature == pytest.approx(expected_T / kT_kcal, rel=1e-6)
    pressure = float(frame["pressure"])
    assert pressure - kinetic == pytest.approx(virial, rel=1e-3)
    assert pressure == pytest.approx(virial + kinetic, rel=1e-3)


def test_frame_energy_is_the_energy_of_the_configuration(pressure_check):
    """Both ensembles report the same potential energy for the same atoms (the NPT engine works in
    fractional coordinates), and it is a liquid's: a few hundred kcal/mol per atom below zero
    (BKS with DSF Coulomb), not the +1000 kcal/mol of overlapping atoms."""
    nvt, npt = pressure_check["frames"]["nvt"], pressure_check["frames"]["npt"]
    assert float(npt["potential_energy"]) == pytest.approx(float(nvt["potential_energy"]), rel=1e-9)
    per_atom = float(nvt["potential_energy"]) / pressure_check["n_atoms"]
    assert -400 < per_atom < -200, per_atom
    # The difference has converged: halving the strain gives the same derivative (no pair
    # crossed the cutoff, rounding is negligible).
    full, half = pressure_check["dU_deps"]
    assert half == pytest.approx(full, rel=1e-5)
