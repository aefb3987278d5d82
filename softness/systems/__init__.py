"""Physical systems: species, masses, potentials, initial structures and their units.

A system is one module of this package, named in the config as ``system.name``:

* ``silica`` (:mod:`softness.systems.silica`): BKS silica, the strong liquid, in real units.
* ``kob_andersen`` (:mod:`softness.systems.kob_andersen`): the Kob-Andersen 80:20 binary
  Lennard-Jones liquid, the fragile reference, defined in reduced LJ units and mapped onto
  real units through argon (sigma_AA = 3.405 A, eps_AA / k_B = 119.8 K, m = 39.948 amu, so
  tau = 2156 fs); its study config and summaries also give the reduced values.

The pipeline works in one set of units for every system (length A, time fs, temperature K,
energy kcal/mol, mass amu; :mod:`softness.units`), so every product names its units the same
way. A system whose literature uses other units says how to convert in ``REDUCED_UNITS``.

To add a system, write one module here that defines the names below and add its name to
:data:`SYSTEMS` (see docs/ARCHITECTURE.md, "Adding a system"):

``NAME``
    its ``system.name``.
``SPECIES_NAMES``
    the species names, indexed by species number; every product carries them and every
    per-species config key (``hops.p_c_A2`` ...) is keyed by them.
``DESCRIPTION``
    one line for logs and products.
``REDUCED_UNITS``
    ``None``, or one natural unit in the pipeline's units: ``{"length_A", "time_fs",
    "temperature_K", "energy_kcal_mol", "mass_amu", "pressure_GPa"}`` and ``"name"`` (text).
``CONFIG_KEYS``
    the keys of the config's ``system`` section that it reads (the schema lists every
    system's keys; the others are ignored).
``POTENTIAL_KEYS``
    the keys of the config's ``potential`` section that it reads.
``ANALYSIS_DEFAULTS``
    config values of the analysis that suit it: radial grid and angular triples of the
    structure functions, the q of F_s, the p_hop window and thresholds. Its study config
    uses them (tests/test_config.py checks).
``masses_for(species)``
    [N] masses in amu.
``n_atoms(system_cfg)``
    the number of atoms of the config's ``system`` section.
``initial_box(system_cfg)``
    [3] box edges (A) of the initial structure, without building it (config checks).
``initial_problem(system_cfg)``
    ``None``, or the sentence saying why ``system_cfg`` cannot be built.
``initial_structure(system_cfg, rng)``
    an object with ``positions`` [N, 3] (A, wrapped), ``species`` [N] and ``box`` [3] (A).
``cutoff_A(potential_cfg)``
    the largest pair cutoff in A, without building the potential (config checks: cheap, no JAX).
``potential(potential_cfg)``
    the :class:`Potential` (the config's ``potential`` section; a system may ignore it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softness.errors import SoftnessError

#: Every system ``system.name`` may name (each one a module of this package).
SYSTEMS = ("silica", "kob_andersen")


@dataclass(frozen=True)
class Potential:
    """The interactions of a system, in kcal/mol and A.

    Attributes:
      name: what it is (every MD product stores it as ``potential``).
      cutoff_A: the largest pair cutoff.
      pair: the explicit kernel for :mod:`softness.engine` (:class:`softness.engine.PairPotential`).
      energy_neighbor_list: the jax_md reference, ``f(displacement, box, species, *, skin_A,
        fractional_coordinates=False, dense=False, capacity_multiplier=1.25) -> (neighbor_fn,
        energy_fn)``: what the constant-pressure quench integrates and tests compare against.
    """

    name: str
    cutoff_A: float
    pair: object
    energy_neighbor_list: Callable


def get(name: str):
    """The system module called ``name`` (config ``system.name``).

    Raises:
      SoftnessError: one sentence naming the known systems.
    """
    if name not in SYSTEMS:
        raise SoftnessError(f"unknown system {name!r}: the systems are {', '.join(SYSTEMS)}.")
    return importlib.import_module(f"softness.systems.{name}")


def of_config(cfg: dict):
    """The system module a (resolved) config names."""
    return get(cfg.get("system", {}).get("name", "silica"))


def check_box(box, cutoff_A: float, what: str = "the box", hint: str = "") -> None:
    """Raise a clear error when a box edge is shorter than twice the potential cutoff.

    A shorter edge would let an atom interact with two images of the same neighbour, which
    the minimum-image neighbour lists do not represent.
    """
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    if np.any(box < 2 * cutoff_A):
        raise SoftnessError(f"{what} edge {box.min():.2f} A is shorter than twice the potential cutoff "
                            f"(2 x {cutoff_A:g} A){'; ' + hint if hint else ''}.")
