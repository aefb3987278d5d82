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

Units are reduced Lennard-Jones units of the A particles: lengths in sigma_AA, energies in
eps_AA, masses in m, time in tau = sigma_AA sqrt(m / eps_AA), temperature in eps_AA / k_B
(k_B = 1), pressure in eps_AA / sigma_AA^3: the units the KA literature reports in.

Species are ordered A first, then B (:func:`species_for`), so ``species[:n_A]`` are the A
particles; random initial structures shuffle the *sites*, not the species array.

All functions here are NumPy or return jittable JAX functions; jax_md is imported lazily so
that :func:`softness.md.precision_scope` can set float64 first.

.. [#ka1] W. Kob and H. C. Andersen, Phys. Rev. Lett. 73, 1376 (1994).
.. [#ka2] W. Kob and H. C. Andersen, Phys. Rev. E 51, 4626 (1995).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from softness.errors import SoftnessError
from softness.systems.silica import minimum_distance as minimum_distance  # re-exported, generic

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
    """[N] masses (in m) of the given species."""
    return MASSES[np.asarray(species)]


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
    def masses(self) -> np.ndarray:
        return masses_for(self.species)

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


# ---------------------------------------------------------------------------- potentials

def ka_pair_potential(cutoff_factor: float = CUTOFF_FACTOR):
    """The Kob-Andersen potential as an explicit kernel for :mod:`softness.engine`.

    For the species pair ab (``pair = a * 2 + b``) and r < r_c,ab = ``cutoff_factor`` sigma_ab:
    u = 4 eps_ab (s^2 - s) - u_ab^LJ(r_c,ab) with s = (sigma_ab^2 / r^2)^3, and
    -u'(r) / r = 24 eps_ab (2 s^2 - s) / r^2; both are zero beyond r_c,ab. Only r^2 is
    needed (no square root). The coefficients and shifts are computed in float64 and rounded
    once to the run's dtype.

    Args:
      cutoff_factor: each pair's cutoff in units of its sigma_ab (2.5 in the standard model).

    Returns:
      :class:`softness.engine.PairPotential` with ``cutoff`` = the largest pair cutoff
      (``cutoff_factor`` sigma_AA) and no self energy.
    """
    import jax.numpy as jnp

    from softness.engine import PairPotential, coefficient

    sigma2 = (SIGMA ** 2).reshape(-1)
    eps4 = (4 * EPSILON).reshape(-1)
    eps24 = (24 * EPSILON).reshape(-1)
    rc2 = (pair_cutoffs(cutoff_factor) ** 2).reshape(-1)
    shift = energy_shifts(cutoff_factor).reshape(-1)

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
                         cutoff=float(cutoff_factor * SIGMA.max()), kernel=kernel, self_energy=())


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


def _smap_params(cutoff_factor: float):
    """[2, 2] tables as JAX arrays (smap indexes them with traced species), in the run's dtype."""
    import jax.numpy as jnp

    tables = dict(sigma=SIGMA, epsilon=EPSILON, r_cut=pair_cutoffs(cutoff_factor),
                  shift=energy_shifts(cutoff_factor))
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
                            capacity_multiplier: float = 1.25):
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

    Returns:
      (neighbor_fn, energy_fn) with ``energy_fn(R, neighbor, **kwargs)`` in eps_AA.
    """
    import jax.numpy as jnp
    from jax_md import partition, smap, space

    fmt = partition.Dense if dense else partition.OrderedSparse
    neighbor_fn = partition.neighbor_list(
        displacement, box, float(cutoff_factor * SIGMA.max()), skin,
        fractional_coordinates=fractional_coordinates, format=fmt, capacity_multiplier=capacity_multiplier)
    # Fractional coordinates are the displacement's business; the pair function sees distances
    # (an explicit metric, as in ka_energy).
    energy_fn = smap.pair_neighbor_list(_truncated_shifted_lj, space.metric(displacement),
                                        species=jnp.asarray(species), **_smap_params(cutoff_factor))
    return neighbor_fn, energy_fn
