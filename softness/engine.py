"""Fast MD building blocks: dense Verlet lists built without N^2 gathers, explicit pair forces.

JAX MD stays the reference (its energy functions are what the tests compare against) and
provides the integrators (``jax_md.simulate``); this module replaces what is slow in it on
XLA:CPU (see docs/ARCHITECTURE.md, "MD engine", for the measurements):

* :func:`verlet_list` builds a *dense, full* neighbour list ``idx[N, K]`` (every neighbour of
  every atom, the empty marker N in the unused slots) from all N^2 minimum-image distances,
  computed by broadcasting with a ``round``-based minimum image. The [N, N] mask is packed 32
  columns per uint32 word; per-word population counts and an associative scan give each
  word's offset; counting the words that end before a slot (small N), or one small scatter
  and a running maximum, give the word of every slot, and a five-step bit search the column
  inside it. No N^2 gather, cumsum or scatter. The list is
  rebuilt when an atom has moved half the skin since the last build (``update``). A build
  also stores each slot's neighbour species, so that the force needs no per-pair gather of
  species (a gather of one int per pair cost 15 % of the force on a CPU).
* :class:`PairPotential` is a pair potential as an explicit kernel, ``(r^2, pair) -> (u,
  -u'(r)/r)``, with per-species-pair coefficients; :func:`pair_forces` sums it over the dense
  list: forces with no scatter (each row sums its own neighbours), and, when asked, the
  energy and the virial sum_pairs r_ij . F_ij (the pressure's interaction part), so that
  frames need no ``jax.grad``. The same code serves any pair potential (BKS silica and
  Lennard-Jones mixtures).

Everything here is pure and jittable, has a fixed shape, and runs unchanged on a GPU; a
leading replica axis is added with ``jax.vmap`` (see :class:`softness.md.Engine`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

#: Spare room of a freshly built list over its fullest row. The force costs in proportion to
#: the slots: in liquid silica (N = 648, 9 A list) rows hold 202 +- 10 neighbours and the
#: fullest ~230, so 1.05 gives 240-248 slots where 1.15 gave 264-272 (a step 1.11 x faster);
#: a list that later overflows is regrown and its chunk redone (once in 60000 steps at 5000 K).
CAPACITY_MULTIPLIER = 1.05
#: Slots per row are rounded up to a multiple of this (aligned vector loops).
CAPACITY_ALIGN = 8


class VerletList(NamedTuple):
    """A dense, full neighbour list (a pytree; ``idx.shape[-1]`` is its capacity K).

    Attributes:
      idx: [N, K] int32 neighbours of each atom in ascending order, N in empty slots.
      species: [N, K] int8 species of each slot's neighbour (0 in empty slots).
      reference: [N, 3] positions at the last build (for the skin test).
      overflow: bool, set when a build found a row with more than K neighbours (sticky until
        the list is reallocated: the steps after it are wrong and must be redone).
      max_neighbors: int32, the fullest row seen by any build since allocation.
      builds: int32, builds since allocation.
    """

    idx: object
    species: object
    reference: object
    overflow: object
    max_neighbors: object
    builds: object


def minimum_image(d, box):
    """Minimum-image displacement in an orthorhombic box (``round``, not ``mod``: cheaper)."""
    import jax.numpy as jnp

    return d - box * jnp.round(d * (1 / box))


def _select_bit(word, rank):
    """Position of the ``rank``-th (0-based) set bit of each uint32 ``word`` (binary search)."""
    import jax.numpy as jnp
    from jax import lax

    pos = jnp.zeros(word.shape, jnp.uint32)
    rank = rank.astype(jnp.int32)
    for width in (16, 8, 4, 2, 1):
        low = (word >> pos) & jnp.uint32((1 << width) - 1)
        c = lax.population_count(low).astype(jnp.int32)
        go = rank >= c
        rank = jnp.where(go, rank - c, rank)
        pos = jnp.where(go, pos + jnp.uint32(width), pos)
    return pos.astype(jnp.int32)


#: Rows of at most this many 32-column words (N <= 1024) find each slot's word by counting
#: the words that end before it, an [N, W, K] sum that XLA fuses into one pass; longer rows
#: use a scatter and a running maximum along the slots, O(N K log K). Measured on one CPU
#: thread (whole builds): counting is 1.85 x faster at N = 648, 1.05 x at N = 972, and
#: 0.65 x at N = 1296 and 0.5 x at N = 3000, where the N K W work dominates.
COUNTING_MAX_WORDS = 32


def _build(R, box, r_list, capacity: int, counting: bool | None = None):
    """Neighbours within ``r_list`` of every atom (minimum image), at most ``capacity`` per row.

    Args:
      counting: find each slot's word by counting (default: rows of at most
        :data:`COUNTING_MAX_WORDS` words) or by a running maximum; the lists are the same.

    Returns:
      (idx [N, capacity], count [N]): the neighbours in ascending order and how many each
      atom has (which may exceed ``capacity``: overflow).
    """
    import jax.numpy as jnp
    from jax import lax

    n = R.shape[0]
    n_words = -(-n // 32)
    cols = n_words * 32
    if counting is None:
        counting = n_words <= COUNTING_MAX_WORDS
    Rp = jnp.concatenate([R, jnp.zeros((cols - n, 3), R.dtype)]) if cols > n else R
    # One [N, cols] plane per component: twice as fast on XLA:CPU as an [N, cols, 3] array.
    r2 = 0
    for c in range(3):
        d = minimum_image(R[:, c, None] - Rp[None, :, c], box[c])
        r2 = r2 + d * d
    j = jnp.arange(cols)
    near = (r2 < r_list * r_list) & (j[None, :] < n) & (j[None, :] != jnp.arange(n)[:, None])
    shifts = jnp.arange(32, dtype=jnp.uint32)
    words = jnp.sum(near.reshape(n, n_words, 32).astype(jnp.uint32) << shifts, axis=-1, dtype=jnp.uint32)
    counts = lax.population_count(words).astype(jnp.int32)  # [N, W]
    inclusive = lax.associative_scan(jnp.add, counts, axis=1)
    total = inclusive[:, -1]
    slot = jnp.arange(capacity, dtype=jnp.int32)
    if counting:
        # Slot s lies in the word after those that end at or before it: count them and the
        # slots they fill, packed into one sum (high and low 16 bits) so that XLA fuses it.
        packed = jnp.sum(jnp.where(inclusive[:, :, None] <= slot, (counts + (1 << 16))[:, :, None], 0),
                         axis=1)
        word_of, before = packed >> 16, packed & 0xFFFF
        word = jnp.take_along_axis(words, jnp.minimum(word_of, n_words - 1), axis=1)
    else:
        exclusive = inclusive - counts
        # Each non-empty word's first slot gets the word's number; a running maximum along
        # the slots then gives every slot its word (empty words go to a discarded column).
        start = jnp.where(counts > 0, jnp.minimum(exclusive, capacity), capacity)
        rows = jnp.broadcast_to(jnp.arange(n)[:, None], start.shape)
        word_of = jnp.zeros((n, capacity + 1), jnp.int32).at[rows, start].max(
            jnp.broadcast_to(jnp.arange(n_words, dtype=jnp.int32), start.shape))[:, :capacity]
        word_of = lax.associative_scan(jnp.maximum, word_of, axis=1)
        before = jnp.take_along_axis(exclusive, word_of, axis=1)
        word = jnp.take_along_axis(words, word_of, axis=1)
    bit = _select_bit(word, slot[None, :] - before)
    idx = jnp.where(slot[None, :] < total[:, None], 32 * word_of + bit, n).astype(jnp.int32)
    return idx, total


@dataclasses.dataclass(frozen=True)
class VerletListFns:
    """The functions of a Verlet list of fixed capacity (see :func:`verlet_list`).

    ``allocate`` is host-side (it sizes the list); ``build`` and ``update`` are jittable.
    """

    allocate: Callable
    build: Callable
    update: Callable
    needs_rebuild: Callable
    fullest_row: Callable
    cutoff: float
    skin: float


def capacity_for(max_neighbors: int, extra: int = 0, multiplier: float = CAPACITY_MULTIPLIER) -> int:
    """Slots per row for a fullest row of ``max_neighbors``: spare room, aligned."""
    k = int(math.ceil(max_neighbors * multiplier)) + int(extra)
    return max(CAPACITY_ALIGN, -(-k // CAPACITY_ALIGN) * CAPACITY_ALIGN)


def verlet_list(box, cutoff: float, skin: float, species) -> VerletListFns:
    """A dense full neighbour list for an orthorhombic periodic box.

    Args:
      box: [3] box edges (or a scalar for a cube), in the units of the positions.
      cutoff: interaction cutoff, at most half the shortest box edge (one image per pair).
      skin: the list holds pairs within ``cutoff + skin`` and is rebuilt once an atom has
        moved ``skin / 2`` since the last build (minimum-image distances obey the triangle
        inequality on the torus, so no pair within the cutoff is missed).
      species: [N] species numbers (at most 127) of the atoms, stored per slot at each build.

    Returns:
      :class:`VerletListFns`. ``allocate(R, capacity=None, extra=0)`` builds a list sized to
      the fullest row of ``R`` plus ``extra`` slots (negative: fewer), or of the given
      capacity; ``build(R, nbrs)`` and
      ``update(R, nbrs)`` (rebuild only when needed) keep the capacity.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    r_list = float(cutoff) + float(skin)
    half_skin2 = (0.5 * float(skin)) ** 2
    box_np = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    if np.any(box_np < 2 * float(cutoff)):
        raise ValueError(f"every box edge must be at least 2 cutoffs = {2 * cutoff:g}, got {box_np.min():g}")
    species_np = np.asarray(species)
    if species_np.ndim != 1 or species_np.min(initial=0) < 0 or species_np.max(initial=0) > 127:
        raise ValueError("species must be one number from 0 to 127 per atom")
    n_atoms = len(species_np)
    # One slot past the atoms holds the empty marker's species.
    slot_species = np.append(species_np, 0).astype(np.int8)

    def build(R, nbrs):
        b = jnp.asarray(box_np, R.dtype)
        idx, count = _build(R, b, r_list, nbrs.idx.shape[-1])
        fullest = jnp.max(count).astype(jnp.int32)
        return VerletList(idx=idx, species=jnp.asarray(slot_species)[idx], reference=R,
                          overflow=nbrs.overflow | (fullest > idx.shape[-1]),
                          max_neighbors=jnp.maximum(nbrs.max_neighbors, fullest), builds=nbrs.builds + 1)

    _build_jit = jax.jit(build)

    def needs_rebuild(R, nbrs):
        b = jnp.asarray(box_np, R.dtype)
        d = minimum_image(R - nbrs.reference, b)
        return jnp.max(jnp.sum(d * d, axis=-1)) > half_skin2

    def update(R, nbrs):
        return lax.cond(needs_rebuild(R, nbrs), build, lambda R, nbrs: nbrs, R, nbrs)

    @jax.jit
    def _fullest(R):
        return jnp.max(_build(R, jnp.asarray(box_np, R.dtype), r_list, CAPACITY_ALIGN)[1])

    def fullest_row(R) -> int:
        return int(_fullest(jnp.asarray(R)))

    def allocate(R, capacity: int | None = None, extra: int = 0):
        R = jnp.asarray(R)
        n = R.shape[0]
        if n != n_atoms:
            raise ValueError(f"{n} positions for a list of {n_atoms} atoms")
        if capacity is None:
            capacity = capacity_for(fullest_row(R), extra)
        capacity = max(1, min(int(capacity), n - 1))
        empty = VerletList(idx=jnp.full((n, capacity), n, jnp.int32),
                           species=jnp.zeros((n, capacity), jnp.int8), reference=R,
                           overflow=jnp.zeros((), bool), max_neighbors=jnp.zeros((), jnp.int32),
                           builds=jnp.zeros((), jnp.int32))
        return _build_jit(R, empty)

    return VerletListFns(allocate=allocate, build=build, update=update, needs_rebuild=needs_rebuild,
                         fullest_row=fullest_row, cutoff=float(cutoff), skin=float(skin))


def update_replicas(fns: VerletListFns, R, nbrs):
    """``update`` for replicas stacked on a leading axis ([B, N, 3] positions), under ``vmap``.

    On a step where any replica needs a rebuild, every replica's list is rebuilt (a
    ``lax.cond`` under ``vmap`` would run both branches on every step, and choosing per
    replica costs a pass over every list). A list rebuilt early holds the same pairs within
    the cutoff in the same order, so the forces are the same to the bit.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    need = jax.vmap(fns.needs_rebuild)(R, nbrs)
    return lax.cond(jnp.any(need), jax.vmap(fns.build), lambda R, nbrs: nbrs, R, nbrs)


# ---------------------------------------------------------------------------- pair potentials

@dataclasses.dataclass(frozen=True)
class PairPotential:
    """A pair potential between species as an explicit kernel.

    Attributes:
      name: what it is, for products and logs.
      n_species: number of species.
      cutoff: interaction cutoff (every pair is cut at or below it; per-pair cutoffs live in
        ``kernel``).
      kernel: ``kernel(r2, pair, dtype) -> (u, f_over_r)``, the pair energy u(r) and
        -u'(r) / r at squared distances ``r2`` for the species-pair numbers ``pair = s_i *
        n_species + s_j``, zero beyond the cutoff. Must be finite for r2 > 0 and whatever
        ``r2`` is given in masked slots (the caller feeds a safe value there).
      self_energy: [n_species] constant energy per atom of each species (e.g. the DSF
        Coulomb self term), added to the total.
    """

    name: str
    n_species: int
    cutoff: float
    kernel: Callable
    self_energy: tuple = ()


class PairSums(NamedTuple):
    """Results of :func:`pair_forces`."""

    force: object  #: [N, 3]
    energy: object  #: scalar, total potential energy (pairs + self terms)
    virial: object  #: scalar, sum over pairs of r_ij . F_ij (P V = N k T + virial / 3)


#: Pair slots per row block of :func:`pair_forces` on a CPU. Summing the list in blocks of
#: rows keeps the [rows, K] intermediates in cache: at N = 3000 (K = 264) the force is 1.4-2 x
#: faster in blocks of 500-1000 rows than in one piece, and the same to the bit (each row's
#: sum is unchanged); at N = 648 one piece is best. A GPU takes all rows at once.
PAIRS_PER_BLOCK = 1 << 18


def rows_per_block(n_atoms: int, capacity: int, backend: str | None = None) -> int:
    """Rows of the neighbour list summed at once by :func:`pair_forces` (all of them on a GPU)."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    if backend != "cpu":
        return n_atoms
    n_blocks = max(1, round(n_atoms * capacity / PAIRS_PER_BLOCK))
    return -(-n_atoms // n_blocks)


def pair_forces(potential: PairPotential, box, species, *, energy: bool = False) -> Callable:
    """``fn(R, nbrs) -> force [N, 3]`` (or :class:`PairSums` with ``energy=True``).

    Forces come from the explicit kernel summed along each row of the full list, so no
    scatter is needed; each pair is evaluated from both ends, which on a CPU costs less than
    the scatter-add that Newton's third law would need. On a CPU the rows are summed in
    blocks (:func:`rows_per_block`). The neighbours' species are read from the list
    (``nbrs.species``), which must therefore be built for the same ``species``.

    Args:
      potential: the :class:`PairPotential`.
      box: [3] box edges.
      species: [N] int species numbers.
      energy: also return the energy and the virial.
    """
    import jax.numpy as jnp
    from jax import lax

    species_np = np.asarray(species, dtype=np.int32)
    n = len(species_np)
    box_np = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    self_total = float(sum(potential.self_energy[s] * np.count_nonzero(species_np == s)
                           for s in range(potential.n_species))) if potential.self_energy else 0.0
    rc2 = potential.cutoff ** 2

    def rows(R, R_rows, idx, sp_idx, sp_rows):
        """Force on some rows of the list, and (``energy``) their pair energy and virial sums
        (each pair counted once per end)."""
        dtype = R.dtype
        valid = idx < n
        j = jnp.where(valid, idx, 0)
        d = minimum_image(R_rows[:, None, :] - R[j], jnp.asarray(box_np, dtype))
        r2 = jnp.sum(d * d, axis=-1)
        inside = valid & (r2 < rc2)
        pair = sp_rows[:, None] * potential.n_species + sp_idx.astype(jnp.int32)
        u, f_over_r = potential.kernel(jnp.where(inside, r2, rc2), pair, dtype)
        f_over_r = jnp.where(inside, f_over_r, 0)
        force = jnp.sum(f_over_r[..., None] * d, axis=1)
        if not energy:  # the sums are not computed
            return force, jnp.zeros((), dtype), jnp.zeros((), dtype)
        return force, jnp.sum(jnp.where(inside, u, 0)), jnp.sum(f_over_r * r2)

    def fn(R, nbrs):
        idx = nbrs.idx
        block = rows_per_block(n, idx.shape[-1])
        sp = jnp.asarray(species_np)
        if block >= n:
            force, u, virial = rows(R, R, idx, nbrs.species, sp)
        else:
            n_blocks = -(-n // block)
            pad = n_blocks * block - n

            def blocks(x, fill):
                x = jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], fill, x.dtype)]) if pad else x
                return x.reshape((n_blocks, block) + x.shape[1:])

            force, u, virial = lax.map(lambda a: rows(R, *a),
                                       (blocks(R, 0), blocks(idx, n), blocks(nbrs.species, 0), blocks(sp, 0)))
            force, u, virial = force.reshape(n_blocks * block, 3)[:n], jnp.sum(u), jnp.sum(virial)
        if not energy:
            return force
        return PairSums(force=force, energy=0.5 * u + jnp.asarray(self_total, R.dtype), virial=0.5 * virial)

    return fn


def coefficient(table, pair, dtype):
    """Per-pair coefficient from a flat table [n_species^2] by ``where`` (no gather)."""
    import jax.numpy as jnp

    table = np.asarray(table, dtype=np.float64).reshape(-1)
    if np.all(table == table[0]):
        return jnp.asarray(table[0], dtype)
    out = jnp.asarray(table[-1], dtype)
    for k in range(len(table) - 2, -1, -1):
        out = jnp.where(pair == k, jnp.asarray(table[k], dtype), out)
    return out
