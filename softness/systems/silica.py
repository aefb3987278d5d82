"""BKS silica: species, masses, the potential and initial structures.

Species are 0 = Si and 1 = O everywhere (the convention of jax_md's BKS functions).
The potential is the JAX MD BKS silica parameterisation,
:func:`jax_md.energy.bks_silica_neighbor_list`: the Buckingham terms of van Beest, Kramer
and van Santen [#bks]_ with the charges and short-range coefficients of that module, a
damped-shifted-force Coulomb term (alpha = 0.25 1/A, Fennell and Gezelter [#dsf]_), an
r^-24 core that stops the Buckingham collapse at short range, and one cutoff (8 A by
default) for every term. It is *not* the 1990 BKS parameter set with Ewald sums and its
outputs say so (:func:`potential_name`).

All functions here are NumPy or return jittable JAX functions; jax_md is imported
lazily so that :func:`softness.md.precision_scope` can set float64 first.

.. [#bks] B. W. H. van Beest, G. J. Kramer, R. A. van Santen, Phys. Rev. Lett. 64, 1955 (1990).
.. [#dsf] C. J. Fennell, J. D. Gezelter, J. Chem. Phys. 124, 234104 (2006).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from softness import units
from softness.errors import SoftnessError

#: ``system.name`` of this system.
NAME = "silica"
#: One line for logs and products.
DESCRIPTION = "BKS silica (SiO2), the strong liquid, in real units"
#: Real units are this system's own: nothing to convert.
REDUCED_UNITS = None
#: The keys of the config's ``system`` section read here.
CONFIG_KEYS = ("n_sio2", "density_g_cm3", "initial_structure")
#: The keys of the config's ``potential`` section read here.
POTENTIAL_KEYS = ("cutoff_A",)

SI, O = 0, 1
#: Species names indexed by species number.
SPECIES_NAMES = ("Si", "O")
#: Masses in amu indexed by species number.
MASSES_AMU = np.array([28.0855, 15.9994])
#: Mass of one SiO2 formula unit in amu.
SIO2_MASS_AMU = MASSES_AMU[SI] + 2 * MASSES_AMU[O]

#: Closest approach allowed in a random packing (A). Shorter than any bond of the melt
#: (Si-O 1.6 A is the only shorter one and it forms in the first femtoseconds of melting).
RANDOM_PACKING_MIN_DISTANCE_A = 1.9

#: Closest approach allowed in a compressed quartz crystal (A).
QUARTZ_MIN_DISTANCE_A = 1.2

# alpha-quartz, space group P3_221 (No. 154), at ambient conditions: lattice constants
# and atomic coordinates from Levien, Prewitt and Weidner, Am. Mineral. 65, 920 (1980).
QUARTZ_A_A = 4.916
QUARTZ_C_A = 5.4054
_QUARTZ_SI_X = 0.4697
_QUARTZ_O_XYZ = (0.4135, 0.2669, 0.1191)


def potential_name(cutoff_A: float = 8.0) -> str:
    """The name of the potential as stored in every MD product (``potential`` attribute)."""
    return ("JAX MD BKS silica parameterisation (jax_md.energy.bks_silica_neighbor_list): BKS "
            f"Buckingham + DSF-damped Coulomb (alpha=0.25/A) + r^-24 core, cutoff {cutoff_A:g} A")


def species_for(n_sio2: int) -> np.ndarray:
    """[3 n_sio2] species, Si O O repeated."""
    return np.tile(np.array([SI, O, O], dtype=np.int32), n_sio2)


def masses_for(species) -> np.ndarray:
    """[N] masses in amu of the given species."""
    return MASSES_AMU[np.asarray(species)]


def density_g_cm3(species, box_edges) -> float:
    """Mass density in g/cm^3 of atoms ``species`` in an orthorhombic box."""
    return units.mass_density(float(np.sum(masses_for(species))), float(np.prod(box_edges)))


@dataclass
class Structure:
    """Atoms in an orthorhombic periodic box (real units)."""

    positions: np.ndarray  #: [N, 3] float64, wrapped into [0, box)
    species: np.ndarray  #: [N] int32, 0 = Si, 1 = O
    box: np.ndarray  #: [3] box edges, Angstrom

    @property
    def masses(self) -> np.ndarray:
        return masses_for(self.species)

    @property
    def density_g_cm3(self) -> float:
        return density_g_cm3(self.species, self.box)


def minimum_distance(positions, box) -> float:
    """Smallest minimum-image distance between two atoms (brute force, NumPy)."""
    positions = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    best = np.inf
    for i0 in range(0, len(positions), 512):  # blocks bound the memory, not per-atom work
        d = positions[i0:i0 + 512, None, :] - positions[None, :, :]
        d -= box * np.round(d / box)
        r2 = np.sum(d * d, axis=-1)
        idx = np.arange(i0, min(i0 + 512, len(positions)))
        r2[idx - i0, idx] = np.inf
        best = min(best, float(r2.min()))
    return float(np.sqrt(best))


def quartz_unit_cell():
    """The orthorhombic (orthohexagonal) cell of alpha-quartz: 6 SiO2, 18 atoms.

    Returns:
      (positions [18, 3] in A, species [18], edges [3] = (a, a sqrt 3, c)).
    """
    # Symmetry operations of P3_221 in the setting of the structure refinement (AMCSD 0000789).
    ops = [lambda x, y, z: (x, y, z), lambda x, y, z: (y, x, 2 / 3 - z),
           lambda x, y, z: (-y, x - y, 2 / 3 + z), lambda x, y, z: (-x, -x + y, 1 / 3 - z),
           lambda x, y, z: (-x + y, -x, 1 / 3 + z), lambda x, y, z: (x - y, -y, -z)]

    def orbit(xyz):
        images = np.mod(np.array([op(*xyz) for op in ops]), 1.0)
        return np.unique(np.round(images, 10), axis=0)

    si = list(orbit((_QUARTZ_SI_X, 0.0, 0.0)))
    o = list(orbit(_QUARTZ_O_XYZ))
    assert len(si) == 3 and len(o) == 6
    frac = np.array(si + o)
    species = np.array([SI] * 3 + [O] * 6, dtype=np.int32)
    a, c = QUARTZ_A_A, QUARTZ_C_A
    lattice = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
    edges = np.array([a, a * np.sqrt(3), c])
    # The orthohexagonal cell (a1, a1 + 2 a2, a3) holds two hexagonal cells: 0 and a2.
    cart = np.concatenate([frac @ lattice, (frac + [0, 1, 0]) @ lattice])
    cart = np.mod(cart, edges)
    return cart, np.concatenate([species, species]), edges


def _most_cubic_supercell(n_cells: int, edges) -> tuple[int, int, int]:
    best, best_ratio = None, np.inf
    for nx in range(1, n_cells + 1):
        if n_cells % nx:
            continue
        for ny in range(1, n_cells // nx + 1):
            if (n_cells // nx) % ny:
                continue
            nz = n_cells // nx // ny
            lengths = np.array([nx, ny, nz]) * edges
            ratio = lengths.max() / lengths.min()
            if ratio < best_ratio - 1e-12:
                best, best_ratio = (nx, ny, nz), ratio
    return best


def alpha_quartz(n_sio2: int, density: float) -> Structure:
    """An alpha-quartz supercell of ``n_sio2`` formula units scaled isotropically to ``density``.

    The supercell of orthohexagonal cells (6 SiO2 each) is chosen as close to cubic as the
    factorisation of n_sio2 / 6 allows.

    Raises:
      SoftnessError: if n_sio2 is not a multiple of 6 or the density squeezes atoms closer
        than :data:`QUARTZ_MIN_DISTANCE_A`.
    """
    if n_sio2 % 6:
        raise SoftnessError(
            f"system.n_sio2 = {n_sio2} cannot form an alpha-quartz supercell: it must be a multiple of 6 "
            "(orthorhombic cells of 6 SiO2); use another n_sio2 or initial_structure: random.")
    cell, cell_species, edges = quartz_unit_cell()
    reps = _most_cubic_supercell(n_sio2 // 6, edges)
    shifts = np.array(list(itertools.product(*(range(r) for r in reps)))) * edges
    positions = (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 3)
    species = np.tile(cell_species, len(shifts))
    box = edges * np.array(reps)
    volume = units.box_volume_for_density(float(np.sum(masses_for(species))), density)
    scale = (volume / np.prod(box)) ** (1 / 3)
    box = box * scale
    positions = np.mod(positions * scale, box)
    d = minimum_distance(positions, box)
    if d < QUARTZ_MIN_DISTANCE_A:
        raise SoftnessError(
            f"system.density_g_cm3 = {density:g} is impossible for quartz: atoms would be {d:.2f} A apart "
            f"(less than {QUARTZ_MIN_DISTANCE_A} A).")
    # Order as Si O O repeated, like the random packing, so species_for(n_sio2) describes both.
    si = np.flatnonzero(species == SI)
    o = np.flatnonzero(species == O)
    order = np.stack([si, o[0::2], o[1::2]], axis=1).reshape(-1)
    return Structure(positions[order], species[order], box)


def random_packing(n_sio2: int, density: float, rng: np.random.Generator,
                   min_distance: float = RANDOM_PACKING_MIN_DISTANCE_A) -> Structure:
    """A random, non-overlapping packing of ``n_sio2`` SiO2 units in a cubic box at ``density``.

    Atoms sit on randomly chosen sites of the smallest simple-cubic lattice with at least N
    sites, each displaced by a uniform random vector small enough that no two atoms come
    closer than ``min_distance``; species are shuffled over the sites. Melting erases the
    lattice within a few hundred femtoseconds.

    Raises:
      SoftnessError: if the density leaves less than ``min_distance`` between sites.
    """
    species = species_for(n_sio2)
    n = len(species)
    volume = units.box_volume_for_density(n_sio2 * SIO2_MASS_AMU, density)
    edge = volume ** (1 / 3)
    per_side = int(np.ceil(n ** (1 / 3) - 1e-9))
    spacing = edge / per_side
    if spacing < min_distance:
        raise SoftnessError(
            f"system.density_g_cm3 = {density:g} is impossible for a random packing of {n} atoms: they "
            f"cannot all be {min_distance} A apart; lower the density or use initial_structure: quartz.")
    jitter = min(0.3 * spacing, (spacing - min_distance) / 2)
    sites = np.array(list(itertools.product(range(per_side), repeat=3)), dtype=np.float64) * spacing
    chosen = sites[rng.choice(len(sites), size=n, replace=False)]
    # Each coordinate moves by at most jitter / sqrt(3), so any pair moves by at most 2 jitter.
    positions = chosen + rng.uniform(-1, 1, size=(n, 3)) * jitter / np.sqrt(3)
    return Structure(np.mod(positions, edge), species, np.full(3, edge))


#: Analysis settings that suit silica (the values of config/config.yaml; see its comments).
ANALYSIS_DEFAULTS = {
    "features": {
        "radial_r_min_A": 1.0, "radial_r_max_A": 6.0, "radial_dr_A": 0.1, "radial_width_A": 0.1,
        "angular": [{"xi_A": xi, "lambda": lam, "zeta": zeta}
                    for xi in (3.5, 4.5, 6.5) for zeta in (1, 4) for lam in (1, -1)],
        "cutoff_A": 6.5,
    },
    "dynamics": {"q_inv_A": 1.7},
    "hops": {"t_R_fs": 200.0, "p_c_A2": {"Si": 1.5, "O": 2.0}, "p_quiet_A2": {"Si": 1.0, "O": 1.4},
             "t_quiet_fs": 4000.0},
}


def n_atoms(system_cfg: dict) -> int:
    """Number of atoms of the config's ``system`` section."""
    return 3 * int(system_cfg["n_sio2"])


def initial_box(system_cfg: dict) -> np.ndarray:
    """The three edges (A) of the initial box of the config's ``system`` section, built from nothing.

    A cube for the random packing, the most cubic alpha-quartz supercell for quartz.
    """
    n, rho = system_cfg["n_sio2"], system_cfg["density_g_cm3"]
    volume = units.box_volume_for_density(n * SIO2_MASS_AMU, rho)
    if system_cfg["initial_structure"] == "quartz" and n % 6 == 0:
        _, _, cell = quartz_unit_cell()
        box = cell * np.array(_most_cubic_supercell(n // 6, cell))
        return box * (volume / np.prod(box)) ** (1 / 3)
    return np.full(3, volume ** (1 / 3))


def initial_problem(system_cfg: dict) -> str | None:
    """Why the config's ``system`` section cannot be built (one sentence), or None."""
    n, rho = system_cfg["n_sio2"], system_cfg["density_g_cm3"]
    if system_cfg["initial_structure"] == "quartz":
        if n % 6:
            return (f"config key 'system.n_sio2' ({n}) must be a multiple of 6 for "
                    "'system.initial_structure' quartz (orthorhombic cells of 6 SiO2).")
        return None
    n_atoms = 3 * n
    spacing = initial_box(system_cfg)[0] / np.ceil(n_atoms ** (1 / 3) - 1e-9)
    if spacing < RANDOM_PACKING_MIN_DISTANCE_A:
        return (f"config keys 'system.density_g_cm3' ({rho:g}) and 'system.n_sio2' ({n}) are impossible "
                f"together for a random packing: its {n_atoms} atoms cannot all be "
                f"{RANDOM_PACKING_MIN_DISTANCE_A} A apart.")
    return None


def cutoff_A(potential_cfg: dict) -> float:
    """The cutoff of every BKS pair term (config ``potential.cutoff_A``)."""
    return float(potential_cfg.get("cutoff_A", 8.0))


def potential(potential_cfg: dict):
    """The BKS potential of the config's ``potential`` section (its ``cutoff_A``)."""
    from softness.systems import Potential

    cutoff = cutoff_A(potential_cfg)

    def reference(displacement, box, species, *, skin_A, **kwargs):
        return bks_energy(displacement, box, species, cutoff_A=cutoff, skin_A=skin_A, **kwargs)

    return Potential(name=potential_name(cutoff), cutoff_A=cutoff, pair=bks_pair_potential(cutoff),
                     energy_neighbor_list=reference)


def initial_structure(system_cfg: dict, rng: np.random.Generator) -> Structure:
    """The initial structure described by the config's ``system`` section."""
    n, rho = system_cfg["n_sio2"], system_cfg["density_g_cm3"]
    if system_cfg["initial_structure"] == "quartz":
        return alpha_quartz(n, rho)
    return random_packing(n, rho, rng)


def check_box(box, cutoff_A: float, what: str = "the box") -> None:
    """Raise a clear error when a box edge is shorter than twice the cutoff.

    A shorter edge would let an atom interact with two images of the same neighbour,
    which the minimum-image neighbour list does not represent.
    """
    box = np.asarray(box, dtype=np.float64)
    if np.any(box < 2 * cutoff_A):
        raise SoftnessError(
            f"{what} edge {box.min():.2f} A is shorter than twice the potential cutoff "
            f"(2 x {cutoff_A:g} A); use more atoms (system.n_sio2) or a smaller potential.cutoff_A.")


def bks_energy(displacement, box, species, *, cutoff_A: float = 8.0, skin_A: float = 1.0,
               fractional_coordinates: bool = False, dense: bool = False, capacity_multiplier=1.25):
    """Neighbour-list function and energy of BKS silica (jax_md.energy.bks_silica_neighbor_list).

    Args:
      displacement: a jax_md displacement function.
      box: box edges [3] (or matrix for fractional coordinates).
      species: [N] int array, 0 = Si, 1 = O.
      cutoff_A: cutoff of every pair term.
      skin_A: neighbour-list skin; the list is rebuilt when an atom has moved skin / 2.
      fractional_coordinates: positions in the unit cube (constant-pressure runs).
      dense: Dense neighbour-list format (default OrderedSparse, each pair once).
      capacity_multiplier: spare room in the neighbour list.

    Returns:
      (neighbor_fn, energy_fn) with ``energy_fn(R, neighbor, **kwargs)`` in kcal/mol.
    """
    import jax.numpy as jnp
    from jax_md import energy, partition

    fmt = partition.Dense if dense else partition.OrderedSparse
    return energy.bks_silica_neighbor_list(
        displacement, box, jnp.asarray(species), cutoff=cutoff_A, dr_threshold=skin_A,
        fractional_coordinates=fractional_coordinates, format=fmt,
        capacity_multiplier=capacity_multiplier)


#: jax_md's Coulomb conversion factor (kcal/mol A / e^2) and DSF damping (1/A).
_QQR2E = 332.06371
_DSF_ALPHA = 0.25


def _erfc_as(x, exp_minus_x2):
    """erfc(x) for x >= 0 by Abramowitz and Stegun 7.1.26, given exp(-x^2)."""
    t = 1 / (1 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return poly * exp_minus_x2


def bks_pair_potential(cutoff_A: float = 8.0):
    """The same potential as :func:`bks_energy` as an explicit kernel for :mod:`softness.engine`.

    u(r) = k Q_ij (erfc(a r)/r - e_s - r f_s) + A_ij exp(-r/rho_ij) + C6_ij/r^6 + C24_ij/r^24
    for r < cutoff (DSF Coulomb of Fennell and Gezelter with a = 0.25 1/A; jax_md's shifts),
    and its -u'(r)/r in closed form. The coefficients are jax_md's ``BKS_SILICA_DICT``
    rounded to float32 as jax_md does (also in float64 runs; k Q_ij too, which jax_md forms
    in float32), and the self term uses the unrounded charges as jax_md does, so that in
    float64 both give the same energy.
    """
    import jax.numpy as jnp
    from jax.scipy.special import erfc as jerfc
    from jax_md import energy as jenergy
    from scipy.special import erfc

    from softness.engine import PairPotential, coefficient

    p = jenergy.BKS_SILICA_DICT
    f32 = lambda name: np.asarray(p[name], dtype=np.float32).astype(np.float64).reshape(-1)  # noqa: E731
    # jax_md multiplies the float32 Q_sq by the Python constant in float32 (weak typing).
    kq = (np.float32(_QQR2E) * np.asarray(p["Q_sq"], np.float32)).astype(np.float64).reshape(-1)
    a_exp, inv_rho = f32("exp_coeff"), 1.0 / f32("exp_decay")
    c6, c24 = f32("attractive_coeff"), f32("repulsive_coeff")
    a, rc = _DSF_ALPHA, float(cutoff_A)
    erfc_c = erfc(a * rc)
    f_shift = -(erfc_c / rc**2 + 2 / np.sqrt(np.pi) * a * np.exp(-a * a * rc * rc) / rc)
    e_shift = erfc_c / rc - f_shift * rc
    two_a_sqrt_pi = 2 * a / np.sqrt(np.pi)
    charges = (jenergy.CHARGE_SILICON, jenergy.CHARGE_OXYGEN)
    self_energy = tuple(-(e_shift / 2 + a / np.sqrt(np.pi)) * q * q * _QQR2E for q in charges)

    def kernel(r2, pair, dtype):
        c = lambda table: coefficient(table, pair, dtype)  # noqa: E731
        r = jnp.sqrt(r2)
        inv_r = 1 / r
        inv_r2 = inv_r * inv_r
        inv_r6 = inv_r2 * inv_r2 * inv_r2
        g = jnp.exp(-(a * a) * r2)
        # float32: erfc by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7, as LAMMPS coul/dsf),
        # sharing exp(-a^2 r^2) with the force; float64: the exact function.
        erfc_r = jerfc(a * r) if np.dtype(dtype) == np.float64 else _erfc_as(a * r, g)
        kQ = c(kq)
        u_c = kQ * (erfc_r * inv_r - e_shift - r * f_shift)
        f_c = kQ * (erfc_r * inv_r2 * inv_r + two_a_sqrt_pi * g * inv_r2 + f_shift * inv_r)
        ir = c(inv_rho)
        u_b = c(a_exp) * jnp.exp(-r * ir)
        u6 = c(c6) * inv_r6
        u24 = c(c24) * (inv_r6 * inv_r6) * (inv_r6 * inv_r6)
        u = u_c + u_b + u6 + u24
        f_over_r = f_c + u_b * ir * inv_r + (6 * u6 + 24 * u24) * inv_r2
        return u, f_over_r

    return PairPotential(name=potential_name(cutoff_A), n_species=2, cutoff=rc, kernel=kernel,
                         self_energy=self_energy)
