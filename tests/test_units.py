import math

from numpy.testing import assert_allclose

from softness import units


def test_boltzmann_constant_in_kcal_per_mol():
    assert_allclose(units.KB, 0.00198720426, rtol=1e-9)


def test_time_unit_of_real_units_is_48_9_fs():
    # sqrt(amu A^2 / (kcal/mol)) = 48.888 fs is the LAMMPS/real-units time unit.
    assert_allclose(units.TIME_UNIT_FS, 48.888, rtol=1e-4)
    assert_allclose(units.internal_to_fs(units.fs_to_internal(7.5)), 7.5)


def test_energy_conversions_round_trip():
    assert_allclose(units.kcal_per_mol_to_eV(23.0605), 1.0, rtol=1e-5)
    assert_allclose(units.eV_to_K(1.0), 11604.518, rtol=1e-6)
    assert_allclose(units.kcal_per_mol_to_K(units.KB * 300.0), 300.0)


def test_density_and_volume_are_inverse():
    mass = 1000 * (28.0855 + 2 * 15.9994)
    volume = units.box_volume_for_density(mass, 2.2)
    assert_allclose(units.mass_density(mass, volume), 2.2)
    # The reference liquid: 1000 SiO2 at 2.20 g/cm^3 sits in a cube of edge 35.6609 A.
    assert_allclose(volume ** (1 / 3), 35.660930663857577, rtol=1e-5)


def test_pressure_unit():
    # 1 kcal/(mol A^3) = 4184 J / 6.022e23 / 1e-30 m^3 = 6.9477 GPa
    assert math.isclose(units.pressure_to_GPa(1.0), 6.9477, rel_tol=1e-4)
    assert_allclose(units.GPa_to_pressure(units.pressure_to_GPa(0.3)), 0.3)
