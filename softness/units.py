"""Units.

Internally everything is in LAMMPS-style *real* units, the units of jax_md's BKS
silica potential: energy kcal/mol, length Angstrom, mass amu (g/mol), temperature K.
In those units the natural time unit is sqrt(amu A^2 / (kcal/mol)) = 48.888 fs; every
time that crosses an interface (config, files, plots) is in fs and is converted here,
once, at the boundary of the MD driver.

Barriers are reported both in eV and in K (E / k_B).
"""

import math

#: Boltzmann constant in kcal/(mol K) (CODATA 2018: 1.380649e-23 J/K * N_A / 4184).
KB = 1.380649e-23 * 6.02214076e23 / 4184.0  # = 0.0019872043 kcal/(mol K)

#: One kcal/mol in eV (per particle).
KCAL_PER_MOL_IN_EV = 4184.0 / 6.02214076e23 / 1.602176634e-19  # = 0.0433641

#: One eV in kcal/mol.
EV_IN_KCAL_PER_MOL = 1.0 / KCAL_PER_MOL_IN_EV

#: One internal time unit, sqrt(amu A^2 / (kcal/mol)), in fs.
TIME_UNIT_FS = math.sqrt(1e-3 / 6.02214076e23 * 1e-20 / (4184.0 / 6.02214076e23)) * 1e15

#: Atomic mass unit in g (for densities in g/cm^3).
AMU_IN_G = 1.0 / 6.02214076e23

#: Pressure: one kcal/(mol A^3) in GPa.
KCAL_PER_MOL_A3_IN_GPA = 4184.0 / 6.02214076e23 / 1e-30 / 1e9  # = 6.9477 GPa


def fs_to_internal(t_fs):
    """Convert a time (or time step) from fs to internal units."""
    return t_fs / TIME_UNIT_FS


def internal_to_fs(t):
    """Convert a time from internal units to fs."""
    return t * TIME_UNIT_FS


def kT(temperature_K):
    """Thermal energy k_B T in kcal/mol."""
    return KB * temperature_K


def kcal_per_mol_to_eV(e):
    return e * KCAL_PER_MOL_IN_EV


def kcal_per_mol_to_K(e):
    """An energy expressed as a temperature, E / k_B."""
    return e / KB


def eV_to_K(e):
    return e * EV_IN_KCAL_PER_MOL / KB


def pressure_to_GPa(p):
    """Convert a pressure from kcal/(mol A^3) to GPa."""
    return p * KCAL_PER_MOL_A3_IN_GPA


def GPa_to_pressure(p_GPa):
    """Convert a pressure from GPa to kcal/(mol A^3)."""
    return p_GPa / KCAL_PER_MOL_A3_IN_GPA


def mass_density(total_mass_amu, volume_A3):
    """Mass density in g/cm^3 of ``total_mass_amu`` in ``volume_A3``."""
    return total_mass_amu * AMU_IN_G / (volume_A3 * 1e-24)


def box_volume_for_density(total_mass_amu, density_g_cm3):
    """Volume in A^3 that holds ``total_mass_amu`` at ``density_g_cm3``."""
    return total_mass_amu * AMU_IN_G / density_g_cm3 * 1e24
