"""The Kob-Andersen 80:20 binary Lennard-Jones liquid: species, masses, potential, structures.

The fragile reference glass former of the softness literature [#ka1]_ [#ka2]_. Two species,
0 = A (80 %) and 1 = B (20 %), of equal mass, interacting by

    u_ab(r) = 4 eps_ab [(sigma_ab / r)^12 - (sigma_ab / r)^6] - u_ab^LJ(r_c,ab)   for r < r_c,ab,
    u_ab(r) = 0                                                                    otherwise,

with sigma_AA = 1, sigma_AB = 0.8, sigma_BB = 0.88, eps_AA = 1, eps_AB = 1.5, eps_BB = 0.5 and
every pair truncated *and shifted* at its own cutoff r_c,ab = 2.5 sigma_ab (so the energy is
continuous there; the force jumps, as in the standard model). The usual state is number
density 1.2. This is not jax_md's ``lennard_jones_neighbor_list``, which cuts every pair at one
scalar times max(sigma) with a multiplicative smoothing between r_onset and r_cutoff.

The model is defined here in reduced Lennard-Jones units of the A particles: lengths in
sigma_AA, energies in eps_AA, masses in m, time in tau = sigma_AA sqrt(m / eps_AA), temperature
in eps_AA / k_B (k_B = 1), pressure in eps_AA / sigma_AA^3: the units the KA literature reports
in. The pipeline runs every system in the same real units (A, fs, K, kcal/mol, amu), so the
system-layer functions (:func:`initial_structure`, :func:`potential`, :func:`masses_for`) map
the model onto argon, the usual mapping of Lennard-Jones units [#argon]_: sigma_AA = 3.405 A,
eps_AA / k_B = 119.8 K, m = 39.948 amu, hence tau = 2156.3 fs (:data:`REDUCED_UNITS`). A
temperature T* = 0.47 is 56.3 K, a time of 10 tau is 21.56 ps, p_c = 0.2 sigma^2 is 2.32 A^2.
Convert back with :data:`REDUCED_UNITS`; summaries give the reduced values.

Species are ordered A first, then B (:func:`species_for`), so ``species[:n_A]`` are the A
particles; random initial structures shuffle the *sites*, not the species array.

All functions here are NumPy or return jittable JAX functions; jax_md is imported lazily so
that :func:`softness.md.precision_scope` can set float64 first.

.. [#ka1] W. Kob and H. C. Andersen, Phys. Rev. Lett. 73, 1376 (1994).
.. [#ka2] W. Kob and H. C. Andersen, Phys. Rev. E 51, 4626 (1995).
.. [#argon] A. Rahman, Phys. Rev. 136, A405 (1964) (sigma = 3.4 A, eps / k_B = 120 K); the
   values used are 3.405 A and 119.8 K.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from softness import units
from softness.errors import SoftnessError
from softness.systems.silica import minimum_distance as minimum_distance  # re-exported, generic

#: ``system.name`` of this system.
NAME = "kob_andersen"
#: One line for logs and products.
DESCRIPTION = "Kob-Andersen 80:20 binary Lennard-Jones liquid, the fragile reference (argon units)"
#: The keys of the config's ``system`` section read here.
CONFIG_KEYS = ("n_particles", "number_density", "initial_structure")
#: The keys of the config's ``potential`` section read here: none (the cutoffs are the model's).
POTENTIAL_KEYS = ()

#: sigma_AA in A, eps_AA / k_B in K and m in amu: the argon mapping of the reduced units.
SIGMA_A = 3.405
EPSILON_K = 119.8
MASS_AMU = 39.948
_EPSILON_KCAL_MOL = EPSILON_K * units.KB
#: One reduced unit in the pipeline's units (tau = sigma sqrt(m / eps); pressure eps / sigma^3).
REDUCED_UNITS = {
    "name": "Lennard-Jones units of A (sigma_AA, eps_AA, m, tau), mapped onto argon",
    "length_A": SIGMA_A,
    "temperature_K": EPSILON_K,
    "energy_kcal_mol": _EPSILON_KCAL_MOL,
    "mass_amu": MASS_AMU,
    "time_fs": float(units.internal_to_fs(SIGMA_A * np.sqrt(MASS_AMU / _EPSILON_KCAL_MOL))),
    "pressure_GPa": units.pressure_to_GPa(_EPSILON_KCAL_MOL / SIGMA_A**3),
}

A, B = 0, 1
#: Species names indexed by species number.
SPECIES_NAMES = ("A", "B")
#: Fraction of B particles.
X_B = 0.2
#: Masses (in m) indexed by species number.
MASSES = np.array([1.0, 1.0])
#: sigma_ab (in sigma_AA), indexed [a, b].
SIGMA = np.array([[1.0, 0.8], [0.8, 0.88]])
#: eps_ab (in eps_AA), indexed [a, b].
EPSILON = np.array([[1.0, 1.5], [1.5, 0.5]])
#: Each pair is cut at this many of its own sigma_ab.
CUTOFF_FACTOR = 2.5
#: The standard number density (particles per sigma_AA^3).
DENSITY = 1.2
#: What every product says about its units.
UNITS = "reduced Lennard-Jones units of A: sigma_AA, eps_AA, m, tau = sigma_AA sqrt(m/eps_AA), k_B = 1"

#: Closest approach allowed in a random packing (sigma_AA): below sigma_AB = 0.8, so a few
#: contacts are compressed, but no pair energy exceeds ~1e2 eps before the first relaxation.
RANDOM_PACKING_MIN_DISTANCE = 0.7


def potential_name(cutoff_factor: float = CUTOFF_FACTOR) -> str:
    """The name of the potential as stored in every MD product (``potential`` attribute)."""
    return ("Kob-Andersen 80:20 binary Lennard-Jones (PRL 73, 1376 (1994)): sigma_AB 0.8, sigma_BB 0.88, "
            f"eps_AB 1.5, eps_BB 0.5, each pair truncated and shifted at {cutoff_factor:g} sigma_ab")


def pair_cutoffs(cutoff_factor: float = CUTOFF_FACTOR) -> np.ndarray:
    """[2, 2] cutoff of each species pair, ``cutoff_factor * sigma_ab`` (in sigma_AA)."""
    return cutoff_factor * SIGMA


def lj(r, sigma, epsilon):
    """The untruncated Lennard-Jones energy 4 eps [(sigma/r)^12 - (sigma/r)^6] (NumPy)."""
    s6 = (np.asarray(sigma) / np.asarray(r)) ** 6
    return 4 * np.asarray(epsilon) * (s6 * s6 - s6)


def energy_shifts(cutoff_factor: float = CUTOFF_FACTOR) -> np.ndarray:
    """[2, 2] u^LJ_ab(r_c,ab), subtracted inside the cutoff so that u_ab(r_c,ab) = 0.

    The same for every pair in units of eps_ab: 4 (2.5^-12 - 2.5^-6) = -0.016316 at 2.5.
    """
    return lj(pair_cutoffs(cutoff_factor), SIGMA, EPSILON)


def n_b_for(n: int) -> int:
    """Number of B particles in an ``n``-particle 80:20 mixture.

    Raises:
      SoftnessError: if ``n`` is not a positive multiple of 5 (no exact 80:20 split).
    """
    if n <= 0 or n % 5:
        raise SoftnessError(
            f"{n} particles cannot form the Kob-Andersen 80:20 mixture exactly: use a multiple of 5.")
    return n // 5


def species_for(n: int) -> np.ndarray:
    """[n] species, the 0.8 n A particles (0) first, then the 0.2 n B particles (1).

    Raises:
      SoftnessError: if ``n`` is not a positive multiple of 5.
    """
    n_b = n_b_for(n)
    return np.concatenate([np.full(n - n_b, A, np.int32), np.full(n_b, B, np.int32)])


def masses_for(species) -> np.ndarray:
    """[N] masses in amu (argon mapping) of the given species."""
    return MASS_AMU * MASSES[np.asarray(species)]


def box_for(n: int, density: float = DENSITY) -> np.ndarray:
    """[3] edges of the cubic box holding ``n`` particles at number ``density``."""
    return np.full(3, (n / float(density)) ** (1 / 3))


def number_density(n: int, box_edges) -> float:
    """Particles per sigma_AA^3 in an orthorhombic box."""
    return n / float(np.prod(box_edges))


@dataclass
class Structure:
    """Particles in an orthorhombic periodic box (reduced LJ units)."""

    positions: np.ndarray  #: [N, 3] float64, wrapped into [0, box)
    species: np.ndarray  #: [N] int32, 0 = A, 1 = B
    box: np.ndarray  #: [3] box edges, sigma_AA

    @property
    def number_density(self) -> float:
        return number_density(len(self.species), self.box)


def check_box(box, cutoff: float = CUTOFF_FACTOR * float(SIGMA.max()), what: str = "the box") -> None:
    """Raise a clear error when a box edge is shorter than twice the largest cutoff.

    A shorter edge would let a particle interact with two images of the same neighbour,
    which the minimum-image neighbour list does not represent. At density 1.2 and the
    standard cutoff (2.5 sigma_AA) this needs at least 150 particles.

    Args:
      box: [3] box edges (sigma_AA).
      cutoff: the largest pair cutoff (default 2.5 sigma_AA, that of the A-A pair).
      what: how the message names the box.

    Raises:
      SoftnessError: naming the edge and the cutoff.
    """
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    if np.any(box < 2 * cutoff):
        raise SoftnessError(
            f"{what} edge {box.min():.3f} sigma is shorter than twice the Kob-Andersen A-A cutoff "
            f"(2 x {cutoff:g} sigma); use more particles (at density 1.2, at least 150) or a lower density.")


def random_packing(n: int, density: float, rng: np.random.Generator,
                   min_distance: float = RANDOM_PACKING_MIN_DISTANCE) -> Structure:
    """A random, non-overlapping packing of the ``n``-particle 80:20 mixture in a cubic box.

    Particles sit on randomly chosen sites of the smallest simple-cubic lattice with at least
    n sites, each displaced by a uniform random vector small enough that no two come closer
    than ``min_distance``; which sites the B particles take is random. Melting at T ~ 2-5
    erases the lattice within a few tau.

    Args:
      n: number of particles, a multiple of 5.
      density: number density (sigma_AA^-3), 1.2 for the standard model.
      rng: the random generator (the run's seed).
      min_distance: closest approach allowed (sigma_AA).

    Returns:
      :class:`Structure`, species ordered as :func:`species_for`.

    Raises:
      SoftnessError: if ``n`` is not a multiple of 5 or the density leaves less than
        ``min_distance`` between sites.
    """
    species = species_for(n)
    edge = float(box_for(n, density)[0])
    per_side = int(np.ceil(n ** (1 / 3) - 1e-9))
    spacing = edge / per_side
    if spacing < min_distance:
        raise SoftnessError(
            f"number density {density:g} is impossible for a random packing of {n} particles: they "
            f"cannot all be {min_distance:g} sigma apart; lower the density.")
    jitter = min(0.3 * spacing, (spacing - min_distance) / 2)
    sites = np.array(list(itertools.product(range(per_side), repeat=3)), dtype=np.float64) * spacing
    chosen = sites[rng.choice(len(sites), size=n, replace=False)]
    # Each coordinate moves by at most jitter / sqrt(3), so any pair moves by at most 2 jitter.
    positions = chosen + rng.uniform(-1, 1, size=(n, 3)) * jitter / np.sqrt(3)
    return Structure(np.mod(positions, edge), species, np.full(3, edge))


# ---------------------------------------------------------------------------- the system layer

def _sigma(x: float) -> str:
    return f"{x:g} A ({x / SIGMA_A:.4g} sigma)"


#: Analysis settings that suit the KA liquid (the values of config/kob_andersen.yaml), in A and fs
#: through the argon mapping: radial centres 0.7-3.0 sigma every 0.1 sigma (width 0.1 sigma),
#: angular xi 1.0, 1.5, 2.0 sigma with lambda +-1, zeta 1, 2, cutoff 3.2 sigma (Schoenholz et al.
#: 2016 use radial shells to ~3 sigma); F_s at q = 7.25 / sigma_AA (the first peak of S(q) of A);
#: t_R = 10 tau, p_c = 0.2 sigma^2, quiet below 0.05 sigma^2 (the softness papers' KA choices).
ANALYSIS_DEFAULTS = {
    "features": {
        "radial_r_min_A": round(0.7 * SIGMA_A, 4), "radial_r_max_A": round(3.0 * SIGMA_A, 4),
        "radial_dr_A": round(0.1 * SIGMA_A, 4), "radial_width_A": round(0.1 * SIGMA_A, 4),
        "angular": [{"xi_A": round(xi * SIGMA_A, 4), "lambda": lam, "zeta": zeta}
                    for xi in (1.0, 1.5, 2.0) for zeta in (1, 2) for lam in (1, -1)],
        "cutoff_A": round(3.2 * SIGMA_A, 4),
    },
    "dynamics": {"q_inv_A": round(7.25 / SIGMA_A, 4)},
    # 2000 and 8000 steps of 0.005 tau rounded to 10.78 fs (config/kob_andersen.yaml's time step)
    "hops": {"t_R_fs": 21560.0,
             "p_c_A2": {"A": round(0.2 * SIGMA_A**2, 4), "B": round(0.2 * SIGMA_A**2, 4)},
             "p_quiet_A2": {"A": round(0.05 * SIGMA_A**2, 4), "B": round(0.05 * SIGMA_A**2, 4)},
             "t_quiet_fs": 86240.0},
}


@dataclass
class RealStructure:
    """Particles in an orthorhombic periodic box in the pipeline's units (A)."""

    positions: np.ndarray  #: [N, 3] float64, wrapped into [0, box), A
    species: np.ndarray  #: [N] int32, 0 = A, 1 = B
    box: np.ndarray  #: [3] box edges, A


def n_atoms(system_cfg: dict) -> int:
    """Number of particles of the config's ``system`` section."""
    return int(system_cfg["n_particles"])


def initial_box(system_cfg: dict) -> np.ndarray:
    """[3] edges (A) of the cubic box of ``system.n_particles`` at ``system.number_density``."""
    return SIGMA_A * box_for(int(system_cfg["n_particles"]), float(system_cfg["number_density"]))


def initial_problem(system_cfg: dict) -> str | None:
    """Why the config's ``system`` section cannot be built (one sentence), or None."""
    n, rho = int(system_cfg["n_particles"]), float(system_cfg["number_density"])
    if system_cfg.get("initial_structure", "random") != "random":
        return (f"config key 'system.initial_structure' ({system_cfg['initial_structure']}) is not "
                "available for kob_andersen: its only initial structure is random.")
    if n % 5:
        return (f"config key 'system.n_particles' ({n}) cannot form the Kob-Andersen 80:20 mixture "
                "exactly: use a multiple of 5.")
    edge = float(box_for(n, rho)[0])
    rc = CUTOFF_FACTOR * float(SIGMA.max())
    if edge < 2 * rc:
        return (f"config keys 'system.n_particles' ({n}) and 'system.number_density' ({rho:g}) give a box "
                f"edge of {edge:.3f} sigma, shorter than twice the A-A cutoff (2 x {rc:g} sigma): use more "
                "particles or a lower density.")
    if edge / np.ceil(n ** (1 / 3) - 1e-9) < RANDOM_PACKING_MIN_DISTANCE:
        return (f"config key 'system.number_density' ({rho:g}) is impossible for a random packing of {n} "
                f"particles: they cannot all be {RANDOM_PACKING_MIN_DISTANCE:g} sigma apart.")
    return None


def initial_structure(system_cfg: dict, rng: np.random.Generator) -> RealStructure:
    """The random packing of the config's ``system`` section, in A (argon mapping)."""
    st = random_packing(int(system_cfg["n_particles"]), float(system_cfg["number_density"]), rng)
    return RealStructure(st.positions * SIGMA_A, st.species, st.box * SIGMA_A)


def cutoff_A(potential_cfg: dict | None = None) -> float:
    """The largest pair cutoff in A (2.5 sigma_AA, argon mapping); no config key applies."""
    return CUTOFF_FACTOR * float(SIGMA.max()) * SIGMA_A


def potential(potential_cfg: dict | None = None):
    """The KA potential in kcal/mol and A (argon mapping); the config's ``potential`` keys do not apply.

    Each pair is cut at 2.5 sigma_ab, part of the model.
    """
    from softness.systems import Potential

    def reference(displacement, box, species, *, skin_A, **kwargs):
        return ka_energy_neighbor_list(displacement, box, species, skin=skin_A, length=SIGMA_A,
                                       energy=_EPSILON_KCAL_MOL, **kwargs)

    mapping = f"; argon units (sigma_AA {SIGMA_A} A, eps_AA/k_B {EPSILON_K} K, m {MASS_AMU} amu)"
    return Potential(name=potential_name() + mapping, cutoff_A=cutoff_A(),
                     pair=ka_pair_potential(length=SIGMA_A, energy=_EPSILON_KCAL_MOL),
                     energy_neighbor_list=reference)


# ---------------------------------------------------------------------------- potentials

def ka_pair_potential(cutoff_factor: float = CUTOFF_FACTOR, *, length: float = 1.0, energy: float = 1.0):
    """The Kob-Andersen potential as an explicit kernel for :mod:`softness.engine`.

    For the species pair ab (``pair = a * 2 + b``) and r < r_c,ab = ``cutoff_factor`` sigma_ab:
    u = 4 eps_ab (s^2 - s) - u_ab^LJ(r_c,ab) with s = (sigma_ab^2 / r^2)^3, and
    -u'(r) / r = 24 eps_ab (2 s^2 - s) / r^2; both are zero beyond r_c,ab. Only r^2 is
    needed (no square root). The coefficients and shifts are computed in float64 and rounded
    once to the run's dtype.

    Args:
      cutoff_factor: each pair's cutoff in units of its sigma_ab (2.5 in the standard model).
      length, energy: sigma_AA and eps_AA in the units wanted (1: reduced units).

    Returns:
      :class:`softness.engine.PairPotential` with ``cutoff`` = the largest pair cutoff
      (``cutoff_factor`` sigma_AA) and no self energy.
    """
    import jax.numpy as jnp

    from softness.engine import PairPotential, coefficient

    sigma2 = (SIGMA ** 2).reshape(-1) * length**2
    eps4 = (4 * EPSILON).reshape(-1) * energy
    eps24 = (24 * EPSILON).reshape(-1) * energy
    rc2 = (pair_cutoffs(cutoff_factor) ** 2).reshape(-1) * length**2
    shift = energy_shifts(cutoff_factor).reshape(-1) * energy

    def kernel(r2, pair, dtype):
        c = lambda table: coefficient(table, pair, dtype)  # noqa: E731
        # r2 is at most the global cutoff squared in masked slots and > 0 elsewhere: finite.
        inv_r2 = 1 / r2
        s2 = c(sigma2) * inv_r2
        s6 = s2 * s2 * s2
        s12 = s6 * s6
        inside = r2 < c(rc2)
        u = jnp.where(inside, c(eps4) * (s12 - s6) - c(shift), 0)
        f_over_r = jnp.where(inside, c(eps24) * (2 * s12 - s6) * inv_r2, 0)
        return u, f_over_r

    return PairPotential(name=potential_name(cutoff_factor), n_species=2,
                         cutoff=float(cutoff_factor * SIGMA.max() * length), kernel=kernel, self_energy=())


def _truncated_shifted_lj(dr, sigma, epsilon, r_cut, shift, **unused_kwargs):
    """jax_md's Lennard-Jones, truncated at ``r_cut`` and shifted by ``shift`` (per pair).

    The self pair (dr = 0) and pairs beyond the cutoff are evaluated at a safe distance and
    then zeroed, so gradients stay finite.
    """
    import jax.numpy as jnp
    from jax_md import energy

    inside = (dr < r_cut) & (dr > 0)
    safe = jnp.where(inside, dr, r_cut)
    return jnp.where(inside, energy.lennard_jones(safe, sigma, epsilon) - shift, 0)


def _smap_params(cutoff_factor: float, length: float = 1.0, energy: float = 1.0):
    """[2, 2] tables as JAX arrays (smap indexes them with traced species), in the run's dtype."""
    import jax.numpy as jnp

    tables = dict(sigma=SIGMA * length, epsilon=EPSILON * energy, r_cut=pair_cutoffs(cutoff_factor) * length,
                  shift=energy_shifts(cutoff_factor) * energy)
    return {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in tables.items()}


def ka_energy(displacement, species, *, cutoff_factor: float = CUTOFF_FACTOR):
    """All-pairs Kob-Andersen energy on ``jax_md.smap.pair``: the independent reference.

    Built from jax_md's ``energy.lennard_jones`` with per-pair [2, 2] sigma, epsilon, cutoff and
    shift tables (``smap.pair`` with a species array picks each pair's entries). O(N^2):
    meant for tests and small systems.

    Args:
      displacement: a jax_md displacement function (e.g. from ``space.periodic``).
      species: [N] int species, 0 = A, 1 = B.
      cutoff_factor: each pair's cutoff in units of its sigma_ab.

    Returns:
      ``energy_fn(R, **kwargs)``: total potential energy (eps_AA); kwargs go to the
      displacement (e.g. ``perturbation`` for the virial by autodiff).
    """
    import jax.numpy as jnp
    from jax_md import smap, space

    # An explicit metric: smap.pair's own displacement-or-metric guess misreads a
    # space.periodic displacement with per-axis box edges (energies off by 60 orders).
    return smap.pair(_truncated_shifted_lj, space.metric(displacement), species=jnp.asarray(species),
                     **_smap_params(cutoff_factor))


def ka_energy_neighbor_list(displacement, box, species, *, cutoff_factor: float = CUTOFF_FACTOR,
                            skin: float = 0.3, fractional_coordinates: bool = False, dense: bool = False,
                            capacity_multiplier: float = 1.25, length: float = 1.0, energy: float = 1.0):
    """Neighbour-list function and energy of the Kob-Andersen liquid on jax_md.

    The same pair function as :func:`ka_energy` through ``smap.pair_neighbor_list`` and a
    ``partition.neighbor_list`` of cutoff ``cutoff_factor`` sigma_AA (the largest pair cutoff).

    Args:
      displacement: a jax_md displacement function.
      box: box edges [3] (or matrix for fractional coordinates).
      species: [N] int species, 0 = A, 1 = B.
      cutoff_factor: each pair's cutoff in units of its sigma_ab.
      skin: neighbour-list skin; the list is rebuilt when a particle has moved skin / 2.
      fractional_coordinates: positions in the unit cube (constant-pressure runs).
      dense: Dense neighbour-list format (default OrderedSparse, each pair once).
      capacity_multiplier: spare room in the neighbour list.
      length, energy: sigma_AA and eps_AA in the units wanted (1: reduced units).

    Returns:
      (neighbor_fn, energy_fn) with ``energy_fn(R, neighbor, **kwargs)`` in eps_AA (times ``energy``).
    """
    import jax.numpy as jnp
    from jax_md import partition, smap, space

    fmt = partition.Dense if dense else partition.OrderedSparse
    neighbor_fn = partition.neighbor_list(
        displacement, box, float(cutoff_factor * SIGMA.max() * length), skin,
        fractional_coordinates=fractional_coordinates, format=fmt, capacity_multiplier=capacity_multiplier)
    # Fractional coordinates are the displacement's business; the pair function sees distances
    # (an explicit metric, as in ka_energy).
    energy_fn = smap.pair_neighbor_list(_truncated_shifted_lj, space.metric(displacement),
                                        species=jnp.asarray(species),
                                        **_smap_params(cutoff_factor, length, energy))
    return neighbor_fn, energy_fn
