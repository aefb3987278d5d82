"""BKS silica: initial structures and the potential against brute force."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import md, units
from softness.errors import SoftnessError
from softness.systems import silica


def _pair_distances(positions, box):
    d = positions[:, None, :] - positions[None, :, :]
    d -= box * np.round(d / box)
    r = np.linalg.norm(d, axis=-1)
    np.fill_diagonal(r, np.inf)
    return r


def test_alpha_quartz_is_tetrahedral_at_its_own_density():
    st = silica.alpha_quartz(36, 2.646)
    assert_array_equal(st.species, silica.species_for(36))
    assert st.density_g_cm3 == pytest.approx(2.646, rel=1e-12)
    r = _pair_distances(st.positions, st.box)
    si = st.species == silica.SI
    si_o = r[si][:, ~si]
    # Levien et al. (1980): Si-O 1.605 and 1.614 A, every Si bonded to 4 O, every O to 2 Si.
    assert_array_equal((si_o < 2.0).sum(axis=1), 4)
    assert_array_equal((r[~si][:, si] < 2.0).sum(axis=1), 2)
    bonds = np.sort(si_o, axis=1)[:, :4]
    assert_allclose(bonds.min(), 1.605, atol=2e-3)
    assert_allclose(bonds.max(), 1.614, atol=2e-3)
    assert np.all((st.positions >= 0) & (st.positions < st.box))


def test_quartz_scales_to_the_requested_density_and_rejects_bad_sizes():
    st = silica.alpha_quartz(216, 2.2)
    assert st.density_g_cm3 == pytest.approx(2.2, rel=1e-12)
    assert len(st.species) == 648
    with pytest.raises(SoftnessError, match="multiple of 6"):
        silica.alpha_quartz(100, 2.2)


def test_random_packing_keeps_atoms_apart_at_the_density():
    rng = np.random.default_rng(3)
    st = silica.random_packing(100, 2.2, rng)
    assert st.density_g_cm3 == pytest.approx(2.2, rel=1e-12)
    assert np.count_nonzero(st.species == silica.SI) == 100
    assert np.count_nonzero(st.species == silica.O) == 200
    assert _pair_distances(st.positions, st.box).min() >= silica.RANDOM_PACKING_MIN_DISTANCE_A
    assert silica.minimum_distance(st.positions, st.box) == pytest.approx(
        _pair_distances(st.positions, st.box).min())
    with pytest.raises(SoftnessError, match="impossible"):
        silica.random_packing(100, 4.5, rng)


def test_potential_is_named_honestly():
    name = silica.potential_name(8.0)
    assert "jax_md.energy.bks_silica_neighbor_list" in name
    assert "DSF" in name and "cutoff 8 A" in name
    assert "1990" not in name


def test_box_shorter_than_twice_the_cutoff_is_refused():
    with pytest.raises(SoftnessError, match="twice the potential cutoff"):
        silica.check_box([15.0, 15.0, 15.0], 8.0)
    silica.check_box([16.0, 16.0, 16.0], 8.0)


@pytest.mark.parametrize("dense", [False, True])
def test_neighbor_list_energy_and_forces_equal_the_direct_pair_sum(dense):
    """float64: energy and forces through the neighbour list equal jax_md's all-pairs BKS
    (with space.metric, the correct way to call bks_silica_pair)."""
    st = silica.random_packing(40, 1.2, np.random.default_rng(5))
    cutoff = 7.0
    with md.precision_scope("float64"):
        import jax.numpy as jnp
        from jax_md import energy, quantity, space

        box = jnp.asarray(st.box)
        displacement, _ = space.periodic(box)
        neighbor_fn, energy_fn = silica.bks_energy(displacement, box, st.species, cutoff_A=cutoff,
                                                   dense=dense)
        R = jnp.asarray(st.positions)
        nbrs = neighbor_fn.allocate(R)
        direct = energy.bks_silica_pair(space.metric(displacement), jnp.asarray(st.species), cutoff=cutoff)
        assert R.dtype == jnp.float64
        assert_allclose(float(energy_fn(R, nbrs)), float(direct(R)), rtol=1e-12)
        assert_allclose(np.asarray(quantity.force(energy_fn)(R, neighbor=nbrs)),
                        np.asarray(quantity.force(direct)(R)), rtol=1e-9, atol=1e-9)
        # And against a sum of the same pair terms over NumPy minimum-image distances. jax_md
        # rounds the BKS coefficients to float32 (util.maybe_downcast) even in float64 runs, so
        # this agrees to ~1e-9 (a missing or wrong term would be off by 1e-5 or more).
        r = _pair_distances(st.positions, st.box)
        i, j = np.triu_indices(len(st.species), 1)
        keep = r[i, j] < cutoff
        a, b = st.species[i][keep], st.species[j][keep]
        p = {k: jnp.asarray(np.asarray(energy.BKS_SILICA_DICT[k], np.float32).astype(np.float64)[a, b])
             for k in ("Q_sq", "exp_coeff", "exp_decay", "attractive_coeff", "repulsive_coeff")}
        e = energy.bks(jnp.asarray(r[i, j][keep]), cutoff=cutoff, coulomb_alpha=0.25, **p)
        n_si = np.count_nonzero(st.species == 0)
        n_o = len(st.species) - n_si
        self_e = (n_si * energy._bks_silica_self(energy.CHARGE_SILICON ** 2, 0.25, cutoff)
                  + n_o * energy._bks_silica_self(energy.CHARGE_OXYGEN ** 2, 0.25, cutoff))
        assert_allclose(float(energy_fn(R, nbrs)), float(jnp.sum(e) + self_e), rtol=1e-8)


def test_masses_and_units():
    assert_array_equal(silica.masses_for([0, 1, 1]), [28.0855, 15.9994, 15.9994])
    # One internal time unit is sqrt(amu A^2 / (kcal/mol)) = 48.888 fs.
    assert units.TIME_UNIT_FS == pytest.approx(48.888, abs=1e-3)
