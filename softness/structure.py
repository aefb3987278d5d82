"""Radial and angular structure functions: the per-atom descriptors that softness is learned from.

Definitions (Behler and Parrinello, PRL 98, 146401 (2007); as used for softness by Cubuk et al.,
PRL 114, 108001 (2015), Schoenholz et al., Nat. Phys. 12, 469 (2016) and, for silica, Cubuk, Liu,
Kaxiras and Schoenholz, arXiv:2008.09681). For an atom i, with R_ij the minimum-image distance:

The species and their names come from the trajectory (e.g. Si and O for silica, A and B for
the Kob-Andersen liquid); any number of species works.

* radial, one per neighbour species X and centre r::

      G_X(i; r, delta) = sum_{j != i, s_j = X, R_ij < r_c} exp(-(R_ij - r)^2 / (2 delta^2))

  (delta is a standard deviation: the factor is 2 delta^2, not delta^2);

* angular, one per unordered species pair XY (for silica SiSi, SiO, OO) and triple
  (xi, lambda, zeta)::

      Psi_XY(i; xi, lambda, zeta) = sum_{unordered pairs {j, k}, j != k, {s_j, s_k} = {X, Y},
                                         R_ij < r_c, R_ik < r_c}
                                    exp(-(R_ij^2 + R_ik^2 + R_jk^2) / xi^2) (1 + lambda cos theta_jik)^zeta

  Each unordered pair of neighbours counts once (for SiO: every Si neighbour with every O
  neighbour, once). R_jk is not cut: the hard cutoff r_c (``features.cutoff_A``) applies to
  R_ij and R_ik only, and no smooth cutoff function multiplies anything.

Compared with the atom-centred symmetry functions of Behler (J. Chem. Phys. 134, 074106 (2011))
as implemented in DScribe: G2 = exp(-eta (R - R_s)^2) f_c(R) is G_X with eta = 1 / (2 delta^2)
and f_c = 1; G4 = 2^(1 - zeta) sum (...) f_c(R_ij) f_c(R_ik) f_c(R_jk) is Psi_XY times
2^(1 - zeta) when the cosine cutoffs f_c are 1.

Implementation: neighbours of a chunk of atoms are found against all N atoms (minimum image,
so every box edge must be at least 2 r_c) and the nearest ``K_X`` of each species are kept
with ``lax.top_k``; ``K_X`` is sized from the data and grown when a frame needs more, so no
neighbour is ever dropped. The angular sums are dense over blocks of [K_X, K_Y] neighbour
pairs per atom and species pair (a long same-species list is split in halves so that most
unordered pairs are visited once), and the elementwise work fuses into one reduction per
triple. Memory is O(chunk (N + K^2)) whatever the number of atoms and frames; the cost is
O(N^2 / chunk) distance evaluations plus O(N K^2) for the angular part per frame. Everything
is plain ``jax.numpy`` and runs unchanged on a GPU.

Feature layout, for n species named s_0 ... s_{n-1} (species number order): the radial block
(species s_0, s_1, ...; centres in increasing r), then the angular block (unordered pairs
(a, b), a <= b, in the order s_0 s_0, s_0 s_1, ..., s_0 s_{n-1}, s_1 s_1, ...; triples in config
order). For silica that is G_Si, G_O, then Psi_SiSi, Psi_SiO, Psi_OO. :class:`StructureGrid`
holds the grid and the species names, names the features, and is written to and read back from
the features file, so that a model trained on one grid can refuse another.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import h5py
import numpy as np

from softness.errors import SoftnessError
from softness.io import atomic_h5, check_finite, decode, decode_all, open_input, require, system_attribute
from softness.trajectory import count_frames, read_species_names, read_trajectory

log = logging.getLogger(__name__)

RADIAL_CONVENTION = "G_X(i; r, delta) = sum_{j: s_j = X, R_ij < r_c} exp(-(R_ij - r)^2 / (2 delta^2))"
ANGULAR_CONVENTION = (
    "Psi_XY(i; xi, lambda, zeta) = sum over unordered pairs {j, k}, j != k, {s_j, s_k} = {X, Y}, "
    "R_ij < r_c and R_ik < r_c (R_jk not cut), each pair once, of "
    "exp(-(R_ij^2 + R_ik^2 + R_jk^2) / xi^2) (1 + lambda cos theta_jik)^zeta")


def species_pairs(n_species: int) -> list[tuple[int, int]]:
    """Unordered species pairs (a, b), a <= b, in feature order (for two species: 00, 01, 11)."""
    return [(a, b) for a in range(n_species) for b in range(a, n_species)]


def pair_names(species_names) -> list[str]:
    """The names of the unordered species pairs in feature order, e.g. ``SiSi, SiO, OO``."""
    return [species_names[a] + species_names[b] for a, b in species_pairs(len(species_names))]


def _fmt(x: float) -> str:
    """A number as written in feature names: shortest form, at least one decimal (2.0, 2.25)."""
    return np.format_float_positional(float(x), trim="0")


# ---------------------------------------------------------------------------- the grid

@dataclass(frozen=True)
class StructureGrid:
    """The complete definition of the features: species, centres, widths, angular triples, cutoff.

    Attributes:
      radial_r_A: centres r of the radial functions (Angstrom), per neighbour species.
      radial_width_A: Gaussian width delta of each centre (Angstrom), same length.
      angular_xi_A, angular_lambda, angular_zeta: the angular triples, per species pair.
      cutoff_A: hard cutoff r_c on R_ij and R_ik (Angstrom).
      species_names: the name of each species number, as the trajectory gives them (e.g.
        ``("A", "B")``); their number sets the number of radial and angular blocks.
    """

    radial_r_A: tuple
    radial_width_A: tuple
    angular_xi_A: tuple
    angular_lambda: tuple
    angular_zeta: tuple
    cutoff_A: float
    species_names: tuple

    def __post_init__(self):
        for name in ("radial_r_A", "radial_width_A", "angular_xi_A", "angular_lambda", "angular_zeta"):
            object.__setattr__(self, name, tuple(float(v) for v in np.atleast_1d(getattr(self, name))))
        object.__setattr__(self, "cutoff_A", float(self.cutoff_A))
        if isinstance(self.species_names, (str, bytes)):
            raise SoftnessError(f"species_names must be a sequence of names, not the string "
                                f"{self.species_names!r}.")
        object.__setattr__(self, "species_names", decode_all(self.species_names))
        species = self.species_names
        if len(species) == 0:
            raise SoftnessError("the structure-function grid names no species.")
        if any(not s or s != s.strip() for s in species):
            raise SoftnessError(f"species names must be non-empty without surrounding blanks, got {species}.")
        if len(set(species)) != len(species):
            raise SoftnessError(f"species names must differ from one another, got {species}.")
        pairs = pair_names(species)
        if len(set(pairs)) != len(pairs):
            raise SoftnessError(f"the species names {species} give the same pair name to two species pairs "
                                f"({', '.join(pairs)}); rename the species.")
        r, w = np.array(self.radial_r_A), np.array(self.radial_width_A)
        xi, lam = np.array(self.angular_xi_A), np.array(self.angular_lambda)
        zeta = np.array(self.angular_zeta)
        everything = np.concatenate([r, w, xi, lam, zeta, [self.cutoff_A]])
        if not np.all(np.isfinite(everything)):
            raise SoftnessError("the structure-function grid holds a non-finite value.")
        if r.size == 0:
            raise SoftnessError("the radial grid has no centres.")
        if w.shape != r.shape:
            raise SoftnessError(f"the radial grid has {r.size} centres but {w.size} widths.")
        if np.any(w <= 0):
            raise SoftnessError(f"radial widths must be positive, got {w.min():g} Angstrom.")
        if np.any(r < 0):
            raise SoftnessError(f"radial centres must not be negative, got {r.min():g} Angstrom.")
        if not (xi.shape == lam.shape == zeta.shape):
            raise SoftnessError("the angular xi, lambda and zeta lists differ in length.")
        if np.any(xi <= 0):
            raise SoftnessError(f"angular widths xi must be positive, got {xi.min():g} Angstrom.")
        if np.any(np.abs(lam) > 1):
            raise SoftnessError(f"angular lambda must lie in [-1, 1], got {lam[np.abs(lam) > 1][0]:g}.")
        if np.any(zeta < 0):
            raise SoftnessError(f"angular zeta must not be negative, got {zeta.min():g}.")
        if self.cutoff_A <= 0:
            raise SoftnessError(f"the structure-function cutoff must be positive, got {self.cutoff_A:g} A.")
        if r.max() > self.cutoff_A:
            raise SoftnessError(
                f"radial centre {r.max():g} A lies beyond the cutoff {self.cutoff_A:g} A; raise "
                "features.cutoff_A or lower features.radial_r_max_A.")

    @classmethod
    def from_config(cls, cfg: dict, species_names=None) -> StructureGrid:
        """The grid of a resolved config (its ``features`` section) for the given species.

        Radial centres run from ``radial_r_min_A`` to ``radial_r_max_A`` (included when it
        falls on the grid) in steps of ``radial_dr_A``, all with width ``radial_width_A``.

        Args:
          cfg: resolved config.
          species_names: the species of the data, indexed by species number (the stages pass
            those of the trajectory). Default: those of the system the config names
            (:func:`softness.systems.of_config`).
        """
        if species_names is None:
            from softness import systems

            species_names = systems.of_config(cfg).SPECIES_NAMES
        f = cfg["features"]
        r_min, r_max, dr = f["radial_r_min_A"], f["radial_r_max_A"], f["radial_dr_A"]
        if dr <= 0 or r_max < r_min:
            raise SoftnessError("config keys features.radial_*: need radial_dr_A > 0 and r_max >= r_min.")
        n = int(math.floor((r_max - r_min) / dr + 1e-6)) + 1
        r = np.round(r_min + dr * np.arange(n), 10)
        ang = f["angular"]
        grid = cls(
            radial_r_A=r,
            radial_width_A=np.full(n, f["radial_width_A"]),
            angular_xi_A=[a["xi_A"] for a in ang],
            angular_lambda=[a["lambda"] for a in ang],
            angular_zeta=[a["zeta"] for a in ang],
            cutoff_A=f["cutoff_A"],
            species_names=species_names,
        )
        tail = max(ri + 3 * wi for ri, wi in zip(grid.radial_r_A, grid.radial_width_A, strict=True))
        if tail > grid.cutoff_A:
            log.warning("the outermost radial Gaussians reach %.3g A (r + 3 delta), beyond the cutoff "
                        "features.cutoff_A = %.3g A, so they are truncated there.", tail, grid.cutoff_A)
        return grid

    @property
    def n_radial(self) -> int:
        """Number of radial centres (per neighbour species)."""
        return len(self.radial_r_A)

    @property
    def n_angular(self) -> int:
        """Number of angular triples (per species pair)."""
        return len(self.angular_xi_A)

    @property
    def n_species(self) -> int:
        """Number of species (radial blocks)."""
        return len(self.species_names)

    @property
    def n_pairs(self) -> int:
        """Number of unordered species pairs (angular blocks)."""
        return self.n_species * (self.n_species + 1) // 2

    @property
    def n_features(self) -> int:
        return self.n_species * self.n_radial + self.n_pairs * self.n_angular

    def pair_names(self) -> list[str]:
        """The species pairs of the angular blocks, in feature order (e.g. ``SiSi, SiO, OO``)."""
        return pair_names(self.species_names)

    def feature_names(self) -> list[str]:
        """Names like ``G_O(r=1.60)`` and ``Psi_SiO(xi=2.0,lambda=1,zeta=1)``, in feature order."""
        r = np.array(self.radial_r_A)
        digits = 2
        while len(np.unique(np.round(r, digits))) < len(r) and digits < 10:
            digits += 1
        names = [f"G_{s}(r={ri:.{digits}f})" for s in self.species_names for ri in r]
        for pair in self.pair_names():
            for xi, lam, zeta in zip(self.angular_xi_A, self.angular_lambda, self.angular_zeta, strict=True):
                lam_s = str(int(lam)) if float(lam).is_integer() else _fmt(lam)
                zeta_s = str(int(zeta)) if float(zeta).is_integer() else _fmt(zeta)
                names.append(f"Psi_{pair}(xi={_fmt(xi)},lambda={lam_s},zeta={zeta_s})")
        return names

    def write(self, f: h5py.File) -> None:
        """Store the grid in ``f['grid']`` and ``f.attrs['cutoff_A']``, with the conventions; the
        species are ``grid/radial_species`` (the species names) and ``grid/angular_pair``."""
        g = f.create_group("grid")
        g["radial_r_A"] = np.array(self.radial_r_A)
        g["radial_width_A"] = np.array(self.radial_width_A)
        g["radial_species"] = np.array(self.species_names, dtype=h5py.string_dtype("utf-8"))
        g["angular_xi_A"] = np.array(self.angular_xi_A)
        g["angular_lambda"] = np.array(self.angular_lambda)
        g["angular_zeta"] = np.array(self.angular_zeta)
        g["angular_pair"] = np.array(self.pair_names(), dtype=h5py.string_dtype("utf-8"))
        g.attrs["cutoff_A"] = self.cutoff_A
        g.attrs["radial_convention"] = RADIAL_CONVENTION
        g.attrs["angular_convention"] = ANGULAR_CONVENTION
        f.attrs["cutoff_A"] = self.cutoff_A

    @classmethod
    def read(cls, f: h5py.File) -> StructureGrid:
        """The grid stored by :meth:`write` (e.g. in a features file or a model)."""
        if "grid" not in f:
            raise SoftnessError(f"{f.filename} has no '/grid'; is it a features file?")
        g = f["grid"]
        if "radial_species" in g:
            species_names = decode_all(g["radial_species"][()])
        elif "species_names" in f:
            species_names = decode_all(f["species_names"][()])
        else:
            raise SoftnessError(f"{f.filename} does not name the species of its grid "
                                "('/grid/radial_species').")
        grid = cls(radial_r_A=g["radial_r_A"][()], radial_width_A=g["radial_width_A"][()],
                   angular_xi_A=g["angular_xi_A"][()], angular_lambda=g["angular_lambda"][()],
                   angular_zeta=g["angular_zeta"][()], cutoff_A=g.attrs.get("cutoff_A", f.attrs["cutoff_A"]),
                   species_names=species_names)
        if "angular_pair" in g and list(decode_all(g["angular_pair"][()])) != grid.pair_names():
            raise SoftnessError(f"{f.filename}: '/grid/angular_pair' does not list the pairs of the species "
                                f"{', '.join(species_names)} in feature order "
                                f"({', '.join(grid.pair_names())}).")
        return grid


# ---------------------------------------------------------------------------- neighbours

class Neighbors(NamedTuple):
    """The neighbours of one species around a chunk of C central atoms.

    Attributes:
      dR: [C, K, 3] vectors r_j - r_i (minimum image); zero in empty slots.
      mask: [C, K] True where the slot holds a neighbour (R_ij < r_c, j != i).
      count: [C] number of such neighbours; more than K means the list overflowed.
    """

    dR: object
    mask: object
    count: object


def local_environments(cutoff_A: float, max_neighbors: tuple[int, ...]) -> Callable:
    """Build a function finding, per species, the neighbours of selected atoms.

    Cell-free: each central atom is compared with all N atoms (minimum image), and the
    ``max_neighbors[X]`` nearest of species X inside the cutoff are kept. Valid when every
    box edge is at least twice the cutoff (checked by :func:`compute_features`).

    Args:
      cutoff_A: hard cutoff r_c.
      max_neighbors: slots per species, K_X.

    Returns:
      ``fn(positions [N, 3], box [3], species [N], atoms [C]) -> tuple of Neighbors``, one
      per species, jittable.
    """
    import jax.numpy as jnp
    from jax import lax

    rc2 = float(cutoff_A) ** 2

    def fn(positions, box, species, atoms):
        d = positions[None, :, :] - positions[atoms][:, None, :]
        d = d - box * jnp.round(d / box)
        d2 = jnp.sum(d * d, axis=-1)
        inside = (d2 < rc2) & (jnp.arange(positions.shape[0])[None, :] != atoms[:, None])
        out = []
        for x, k in enumerate(max_neighbors):
            ok = inside & (species == x)[None, :]
            # Any order of the keys would do (K >= count keeps every neighbour); float32 keys
            # because XLA:CPU's top_k is fast only for float32.
            value, idx = lax.top_k(jnp.where(ok, -d2, -jnp.inf).astype(jnp.float32), k)
            mask = value > -jnp.inf
            dR = jnp.take_along_axis(d, idx[..., None], axis=1, mode="clip")
            out.append(Neighbors(jnp.where(mask[..., None], dR, 0.0), mask, jnp.sum(ok, axis=1)))
        return tuple(out)

    return fn


# ---------------------------------------------------------------------------- structure functions

def _sum_over(x, axis: int):
    """``x.sum(axis)`` for a neighbour axis, written so that XLA fuses it with the
    computation of ``x``.

    XLA:CPU rewrites a reduction over more than 32 elements along one dimension into a
    separate reduce-window pass, which first materialises ``x``; for the [chunk, K, K] pair
    blocks that costs one full memory pass per feature. Summing first over a divisor d <= 32
    of the axis (a reshape), then over the rest behind an optimisation barrier (so that the
    two sums are not merged back into one), keeps the elementwise work fused with the first
    sum. Same result up to the order of additions.
    """
    import jax.numpy as jnp
    from jax import lax

    axis = axis % x.ndim
    n = x.shape[axis]
    d = max(d for d in range(1, min(n, 32) + 1) if n % d == 0)
    if d in (1, n):
        return jnp.sum(x, axis=axis)
    part = jnp.sum(x.reshape(x.shape[:axis] + (n // d, d) + x.shape[axis + 1:]), axis=axis + 1)
    return jnp.sum(lax.optimization_barrier(part), axis=axis)


def radial_structure_functions(radial_r_A, radial_width_A) -> Callable:
    """Build the radial structure functions G_X(i; r, delta) of every neighbour species.

    Args:
      radial_r_A: [n_r] centres r.
      radial_width_A: [n_r] (or scalar) Gaussian widths delta, in exp(-(R - r)^2 / (2 delta^2)).

    Returns:
      ``fn(neighbors) -> [C, n_species * n_r]`` with ``neighbors`` the tuple from
      :func:`local_environments` (one block per species, in species order).
    """
    import jax.numpy as jnp

    r0 = np.asarray(radial_r_A, dtype=np.float64)
    w = np.broadcast_to(np.asarray(radial_width_A, dtype=np.float64), r0.shape)
    if np.any(w <= 0):
        raise SoftnessError(f"radial widths must be positive, got {w.min():g} Angstrom.")
    inv_two_w2 = 1.0 / (2.0 * w * w)

    def fn(neighbors):
        out = []
        for nb in neighbors:
            dtype = nb.dR.dtype
            r = jnp.sqrt(jnp.sum(nb.dR * nb.dR, axis=-1))
            x = r[..., None] - jnp.asarray(r0, dtype)
            g = jnp.where(nb.mask[..., None], jnp.exp(-x * x * jnp.asarray(inv_two_w2, dtype)), 0.0)
            out.append(jnp.sum(g, axis=1))
        return jnp.concatenate(out, axis=-1)

    return fn


def angular_structure_functions(angular_xi_A, angular_lambda, angular_zeta, *,
                                min_block: int = 20) -> Callable:
    """Build the angular structure functions Psi_XY(i; xi, lambda, zeta) of every species pair.

    Each unordered pair of neighbours {j, k} (j != k) counts once; see the module docstring.

    Args:
      angular_xi_A, angular_lambda, angular_zeta: [n_a] triples.
      min_block: same-species neighbour slots are split in halves while there are at least
        ``2 min_block`` of them (the result does not depend on it, only the work does).

    Returns:
      ``fn(neighbors) -> [C, n_pairs * n_a]``, pairs in the order of :func:`species_pairs`
      (for silica SiSi, SiO, OO), triples in the given order.
    """
    import jax.numpy as jnp
    from jax import lax

    xi = [float(v) for v in np.asarray(angular_xi_A, dtype=np.float64).reshape(-1)]
    lam = [float(v) for v in np.asarray(angular_lambda, dtype=np.float64).reshape(-1)]
    zeta = [float(v) for v in np.asarray(angular_zeta, dtype=np.float64).reshape(-1)]
    if min(xi, default=1.0) <= 0:
        raise SoftnessError(f"angular widths xi must be positive, got {min(xi):g} Angstrom.")

    def power(base, z):
        if float(z).is_integer():
            return lax.integer_pow(base, int(z))
        return jnp.power(jnp.maximum(base, 0.0), z)

    def pair_block(a: Neighbors, b: Neighbors, same: bool):
        dtype = a.dR.dtype
        r2a = jnp.where(a.mask, jnp.sum(a.dR * a.dR, -1), 1.0)
        r2b = jnp.where(b.mask, jnp.sum(b.dR * b.dR, -1), 1.0)
        dot = jnp.einsum("cjd,ckd->cjk", a.dR, b.dR)
        cos = dot * lax.rsqrt(r2a)[:, :, None] * lax.rsqrt(r2b)[:, None, :]
        # R_ij^2 + R_ik^2 + R_jk^2 = 2 (R_ij^2 + R_ik^2 - r_ij . r_ik)
        s = 2.0 * (r2a[:, :, None] + r2b[:, None, :] - dot)
        pair = a.mask[:, :, None] & b.mask[:, None, :]
        if same:  # j != k, and each unordered pair once: half the ordered sum
            pair = pair & ~jnp.eye(a.dR.shape[1], dtype=bool)
        half = 0.5 if same else 1.0
        # One exponential per distinct xi, shared by every (lambda, zeta) with that xi.
        gauss = {x: jnp.where(pair, jnp.exp(s * jnp.asarray(-1.0 / (x * x), dtype)), 0.0)
                 for x in dict.fromkeys(xi)}
        out = [half * jnp.sum(_sum_over(gauss[x] * power(1.0 + l * cos, z), 2), axis=1)
               for x, l, z in zip(xi, lam, zeta, strict=True)]
        return jnp.stack(out, axis=-1)

    def same_species(a: Neighbors):
        # The unordered pairs of one list = those within each half + every pair across the
        # halves: 3/4 of the [K, K] work at each level of splitting (symmetry, without gathers).
        k = a.dR.shape[1]
        if k < 2 * min_block:
            return pair_block(a, a, True)
        lo = Neighbors(a.dR[:, : k // 2], a.mask[:, : k // 2], None)
        hi = Neighbors(a.dR[:, k // 2:], a.mask[:, k // 2:], None)
        return same_species(lo) + pair_block(lo, hi, False) + same_species(hi)

    def fn(neighbors):
        if len(xi) == 0:
            return jnp.zeros((neighbors[0].dR.shape[0], 0), neighbors[0].dR.dtype)
        blocks = [same_species(neighbors[a]) if a == b else pair_block(neighbors[a], neighbors[b], False)
                  for a, b in species_pairs(len(neighbors))]
        return jnp.concatenate(blocks, axis=-1)

    return fn


@functools.lru_cache(maxsize=32)
def structure_functions(grid: StructureGrid, max_neighbors: tuple[int, ...], chunk_atoms: int) -> Callable:
    """Build the jitted function computing every feature of selected atoms in one frame.

    Args:
      grid: the feature definition.
      max_neighbors: neighbour slots per species (see :func:`local_environments`).
      chunk_atoms: atoms processed together; memory is O(chunk_atoms (N + K^2)).

    Cached: the same arguments return the same compiled function.

    Returns:
      ``fn(positions [N, 3], box [3], species [N], atoms [M]) -> (features [M, F],
      max_count [n_species])``, M a multiple of ``chunk_atoms``; ``max_count`` exceeding
      ``max_neighbors`` means neighbours were dropped and the frame must be recomputed.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    env = local_environments(grid.cutoff_A, max_neighbors)
    radial = radial_structure_functions(grid.radial_r_A, grid.radial_width_A)
    angular = angular_structure_functions(grid.angular_xi_A, grid.angular_lambda, grid.angular_zeta)

    def chunk(args, atoms):
        positions, box, species = args
        nbrs = env(positions, box, species, atoms)
        feats = jnp.concatenate([radial(nbrs), angular(nbrs)], axis=-1)
        return feats, jnp.stack([jnp.max(nb.count) for nb in nbrs])

    @jax.jit
    def fn(positions, box, species, atoms):
        feats, counts = lax.map(lambda a: chunk((positions, box, species), a), atoms.reshape(-1, chunk_atoms))
        return feats.reshape(-1, feats.shape[-1]), jnp.max(counts, axis=0)

    return fn


@functools.lru_cache(maxsize=32)
def neighbor_counts(cutoff_A: float, n_species: int, chunk_atoms: int) -> Callable:
    """Build a jitted ``fn(positions, box, species, atoms) -> [n_species]``: the largest number
    of neighbours of each species inside the cutoff over the given atoms (M a multiple of
    ``chunk_atoms``). Used to size the neighbour slots."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rc2 = float(cutoff_A) ** 2

    def chunk(args, atoms):
        positions, box, species = args
        d = positions[None, :, :] - positions[atoms][:, None, :]
        d = d - box * jnp.round(d / box)
        inside = (jnp.sum(d * d, -1) < rc2) & (jnp.arange(positions.shape[0])[None, :] != atoms[:, None])
        per_species = [jnp.sum(inside & (species == x)[None, :], axis=1) for x in range(n_species)]
        return jnp.stack([jnp.max(c) for c in per_species])

    @jax.jit
    def fn(positions, box, species, atoms):
        counts = lax.map(lambda a: chunk((positions, box, species), a), atoms.reshape(-1, chunk_atoms))
        return jnp.max(counts, axis=0)

    return fn


def _slots(count: int, available: int) -> int:
    """Neighbour slots for a largest count: a 5 % margin (at least 2), a multiple of 4."""
    k = int(math.ceil((count + max(2, 0.05 * count)) / 4.0)) * 4
    return max(1, min(k, available))


class _Engine:
    """Holds the compiled functions of one (grid, system, selection, dtype) and grows the
    neighbour slots when a frame needs more."""

    def __init__(self, grid, species, atoms, chunk_atoms, dtype):
        import jax.numpy as jnp

        self.grid = grid
        self.dtype = dtype
        self.species_np = np.asarray(species, dtype=np.int32)
        self.n_species = grid.n_species
        self.available = [max(1, int(np.sum(self.species_np == x))) for x in range(self.n_species)]
        n_sel = len(atoms)
        self.chunk = int(min(chunk_atoms, -(-n_sel // 8) * 8))
        n_pad = -(-n_sel // self.chunk) * self.chunk
        padded = np.concatenate([atoms, np.full(n_pad - n_sel, atoms[0] if n_sel else 0)]).astype(np.int32)
        self.n_sel = n_sel
        self.species = jnp.asarray(self.species_np)
        self.atoms = jnp.asarray(padded)
        self.k = None
        self.fns = {}

    def _fn(self):
        if self.k not in self.fns:
            log.debug("compiling structure functions for %s neighbour slots", self.k)
            self.fns[self.k] = structure_functions(self.grid, self.k, self.chunk)
        return self.fns[self.k]

    def submit(self, positions, box):
        """Start the computation of one frame (asynchronous); returns device arrays."""
        import jax.numpy as jnp

        positions = jnp.asarray(positions, self.dtype)
        box = jnp.asarray(box, self.dtype)
        if self.k is None:
            counts = neighbor_counts(self.grid.cutoff_A, self.n_species, self.chunk)(
                positions, box, self.species, self.atoms)
            self.k = tuple(_slots(int(c), a) for c, a in zip(np.asarray(counts), self.available, strict=True))
        return positions, box, self._fn()(positions, box, self.species, self.atoms)

    def result(self, submitted):
        """The features of a submitted frame, recomputed with more slots if they overflowed."""
        positions, box, (feats, counts) = submitted
        counts = np.asarray(counts)
        while any(int(c) > k for c, k in zip(counts, self.k, strict=True)):
            self.k = tuple(max(k, _slots(int(c), a)) for c, k, a in zip(counts, self.k, self.available,
                                                                           strict=True))
            log.info("neighbour slots grown to %s", dict(zip(self.grid.species_names, self.k, strict=True)))
            feats, counts = self._fn()(positions, box, self.species, self.atoms)
            counts = np.asarray(counts)
        return np.asarray(feats)[: self.n_sel]


def _x64_context(dtype):
    import jax

    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _check_box(box, cutoff_A: float, where: str) -> None:
    box = np.asarray(box, dtype=np.float64)
    if not np.all(np.isfinite(box)) or np.any(box <= 0):
        raise SoftnessError(f"{where}: the box edges must be positive and finite, got {box.tolist()}.")
    if np.any(box < 2 * cutoff_A):
        raise SoftnessError(
            f"{where}: box edge {box.min():.4g} A is shorter than twice the structure-function cutoff "
            f"({cutoff_A:g} A); lower features.cutoff_A or simulate a larger system.")


def compute_features(grid: StructureGrid, positions, box, species, *, frames=None, atoms=None,
                     chunk_atoms: int = 128, dtype=np.float32) -> np.ndarray:
    """Structure functions of selected atoms in selected frames.

    Args:
      grid: the feature definition.
      positions: [F, N, 3] or [N, 3] positions (Angstrom), wrapped or not.
      box: [F, 3], [3] or scalar orthorhombic box edges (Angstrom); each edge >= 2 cutoff.
      species: [N] species numbers, indices into ``grid.species_names``.
      frames: indices into the first axis of ``positions`` (default: all).
      atoms: indices of the central atoms (default: all); every atom is still a neighbour.
      chunk_atoms: central atoms per chunk (memory ~ chunk_atoms (N + K^2) floats).
      dtype: float32 or float64 arithmetic (float64 turns on ``jax_enable_x64`` for the call).

    Returns:
      [len(frames), len(atoms), n_features] in ``dtype`` (a single frame gives [len(atoms), F]).
    """
    positions = np.asarray(positions)
    single = positions.ndim == 2
    if single:
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise SoftnessError(f"positions must have shape [frames, atoms, 3], got {positions.shape}.")
    n_frames, n_atoms = positions.shape[:2]
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (n_frames, 3)) if np.ndim(box) < 2 \
        else np.asarray(box, dtype=np.float64)
    species = np.asarray(species)
    if species.shape != (n_atoms,) or not np.all(np.isin(species, range(grid.n_species))):
        legend = ", ".join(f"{i} = {s}" for i, s in enumerate(grid.species_names))
        raise SoftnessError(f"species must be [N] = [{n_atoms}] species numbers of the grid's "
                            f"{grid.n_species} species ({legend}).")
    frames = np.arange(n_frames) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
    atoms = np.arange(n_atoms) if atoms is None else np.asarray(atoms, dtype=np.int64).reshape(-1)
    if np.any((frames < 0) | (frames >= n_frames)):
        raise SoftnessError(f"frame indices must lie in [0, {n_frames}).")
    if np.any((atoms < 0) | (atoms >= n_atoms)):
        raise SoftnessError(f"atom indices must lie in [0, {n_atoms}).")
    if int(chunk_atoms) < 1:
        raise SoftnessError(f"chunk_atoms must be a positive number of atoms, got {chunk_atoms}.")
    dtype = np.dtype(dtype)
    out = np.empty((len(frames), len(atoms), grid.n_features), dtype=dtype)
    if len(frames) and len(atoms):
        for f in frames:
            _check_box(box[f], grid.cutoff_A, f"frame {f}")
        with _x64_context(dtype):
            engine = _Engine(grid, species, atoms, chunk_atoms, dtype)
            pending = [engine.submit(positions[f], box[f]) for f in frames]
            for i, p in enumerate(pending):
                out[i] = engine.result(p)
    return out[0] if single else out


# ---------------------------------------------------------------------------- the stage

def features_file(cfg: dict, trajectory, out, *, chunk_atoms: int = 128, frames_per_block: int = 16) -> None:
    """The ``softness features`` stage: structure functions of every atom in every
    ``features.frame_stride``-th frame of a trajectory.

    Args:
      cfg: resolved config (uses ``features`` and ``precision``).
      trajectory: H5MD trajectory (read with :func:`softness.trajectory.read_trajectory`).
      out: the HDF5 product. Datasets: ``/features`` [frame, atom, feature] float32,
        ``/frames`` (trajectory frame indices), ``/step``, ``/time_fs``, ``/species`` [N],
        ``/species_names`` (the trajectory's, indexed by species number), ``/feature_names``
        (utf-8), ``/grid/...`` (see :meth:`StructureGrid.write`); root attributes ``cutoff_A``,
        ``temperature_K``, ``frame_stride``, ``source`` and, when the trajectory has it,
        ``system``.
      chunk_atoms: central atoms per chunk (memory, not results).
      frames_per_block: trajectory frames read and computed together.
    """
    from softness import config as config_mod

    cfg = config_mod.resolve(cfg)
    species_names = read_species_names(trajectory)
    grid = StructureGrid.from_config(cfg, species_names=species_names)
    stride = cfg["features"]["frame_stride"]
    dtype = np.float64 if cfg["precision"] == "float64" else np.float32
    n_total = count_frames(trajectory)
    frames = np.arange(0, n_total, stride, dtype=np.int64)
    if len(frames) == 0:
        raise SoftnessError(f"trajectory {trajectory} holds no frames.")
    head = read_trajectory(trajectory, frames=frames[:1], require_images=False)
    n_atoms = head.n_atoms
    temperature = float(head.attrs.get("temperature_K", np.nan))
    if np.isnan(temperature):
        log.warning("trajectory %s has no temperature_K attribute; features carry NaN.", trajectory)
    species = head.species
    unnamed = sorted(set(np.unique(species).tolist()) - set(range(len(species_names))))
    if unnamed:
        raise SoftnessError(f"trajectory {trajectory} holds species number {unnamed[0]}, but names only the "
                            f"{len(species_names)} species {', '.join(species_names)} (numbers 0 to "
                            f"{len(species_names) - 1}).")
    system = head.attrs.get("system")
    names = grid.feature_names()
    log.info("%d features (%d radial, %d angular) of %d atoms (species %s) in %d frames (frame_stride %d)",
             len(names), grid.n_species * grid.n_radial, grid.n_pairs * grid.n_angular, n_atoms,
             ", ".join(species_names), len(frames), stride)

    with atomic_h5(out, "features", cfg) as f:
        f.attrs["temperature_K"] = temperature
        f.attrs["frame_stride"] = stride
        f.attrs["source"] = str(trajectory)
        if system is not None:
            f.attrs["system"] = decode(system)
        grid.write(f)
        ds = f.create_dataset("features", shape=(len(frames), n_atoms, len(names)), dtype=np.float32,
                              chunks=(1, n_atoms, len(names)))
        ds.attrs["layout"] = "[frame, atom, feature]"
        f["feature_names"] = np.array(names, dtype=h5py.string_dtype("utf-8"))
        f["frames"] = frames
        f["species"] = species
        f["species_names"] = np.array(species_names, dtype=h5py.string_dtype("utf-8"))
        steps, times = [], []
        t0 = time.perf_counter()
        for start in range(0, len(frames), frames_per_block):
            block = frames[start:start + frames_per_block]
            traj = read_trajectory(trajectory, frames=block, require_images=False)
            check_finite("position", traj.positions, f"trajectory {trajectory}")
            if not np.array_equal(traj.species, species):
                raise SoftnessError(f"trajectory {trajectory}: species changed between frames.")
            ds[start:start + len(block)] = compute_features(
                grid, traj.positions, traj.box, species, chunk_atoms=chunk_atoms, dtype=dtype)
            steps.append(traj.step)
            times.append(traj.time_fs)
            done = start + len(block)
            rate = done * n_atoms * len(names) / (time.perf_counter() - t0)
            log.info("features: %d / %d frames (%.3g features/s)", done, len(frames), rate)
        f["step"] = np.concatenate(steps)
        f["time_fs"] = np.concatenate(times)
        f["time_fs"].attrs["unit"] = "fs"
    log.info("wrote %s", out)


def read_features(path) -> tuple[np.ndarray, StructureGrid, dict]:
    """Read a features file: ([frame, atom, feature] array, grid, the other datasets).

    The other datasets: ``frames``, ``step``, ``time_fs``, ``species``, ``feature_names``,
    ``temperature_K``, ``species_names`` (tuple; ``/species_names``, else the grid's) and
    ``system`` (the root attribute, or None).
    """
    with open_input(path, "features") as f:
        require(f, "features", "feature_names", "frames", "species", "grid", what="features")
        grid = StructureGrid.read(f)
        extra = {k: f[k][()] for k in ("frames", "step", "time_fs", "species") if k in f}
        extra["feature_names"] = list(decode_all(f["feature_names"][()]))
        extra["temperature_K"] = float(f.attrs.get("temperature_K", np.nan))
        extra["species_names"] = (decode_all(f["species_names"][()]) if "species_names" in f
                                  else grid.species_names)
        extra["system"] = system_attribute(f.attrs)
        return f["features"][()], grid, extra
