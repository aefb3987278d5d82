"""Structure functions: features per second against DScribe's C++ ACSF, measured in the same run.

System: N = 3000 liquid silica atoms (``tests/data/silica_liquid_3000.npy`` when present: a
BKS liquid at 2.2 g/cm^3 in a cubic box of 35.66 A; otherwise uniform random positions at the
same density, which have somewhat more crowded neighbourhoods). Grid: the default config
(51 radial centres x 2 species + 12 angular triples x 3 species pairs = 138 features,
cutoff 6.5 A).

Reference: DScribe's ACSF (``pip install dscribe``; a benchmark-only dependency, not one of the
package's), C++, with the same functions: G2 with eta = 1 / (2 delta^2) and R_s = r, G4 with
eta = 1 / xi^2 and the same (zeta, lambda). DScribe multiplies by its cosine cutoff f_c on every
distance (and cuts R_jk too), puts 2^(1 - zeta) before G4 and adds one G1 per species, so it
computes 140 numbers to our 138 on the same neighbour pairs and triplets.

Prints:
  * agreement on a free cluster (40 atoms, all distances below 6 A, DScribe's cutoff set to
    10^4 A so f_c = 1 to within 1e-6, non-periodic): max relative difference of G2 and of
    2^(zeta - 1) G4 against ours (float64 and float32);
  * wall and CPU time per frame of ours (float32, the config default, and float64) and of
    DScribe, repeats interleaved (the machine is shared), their medians, the ratio of medians
    and features per second (atoms x features / s).

Run: python benchmarks/structure_functions.py [--repeats R] [--atoms N] [--chunk-atoms C]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from softness import config
from softness.structure import StructureGrid, compute_features

SHARED = Path(__file__).resolve().parents[1] / "tests" / "data" / "silica_liquid_3000.npy"
BOX_3000 = 35.660930663857577


def silica(n_atoms, seed=0):
    """Positions [N, 3], species [N] (Si, O, O, ...), box edge; the stored liquid when possible."""
    species = np.tile([0, 1, 1], n_atoms // 3 + 1)[:n_atoms].astype(np.int32)
    if n_atoms == 3000 and SHARED.exists():
        return np.load(SHARED), species, BOX_3000, f"BKS liquid from {SHARED.name}"
    box = BOX_3000 * (n_atoms / 3000) ** (1 / 3)
    pos = np.random.default_rng(seed).uniform(0, box, size=(n_atoms, 3))
    return pos, species, box, "uniform random positions at 2.2 g/cm^3"


def dscribe_acsf(grid, r_cut, periodic):
    from dscribe.descriptors import ACSF

    g2 = [[1.0 / (2.0 * w * w), r] for r, w in zip(grid.radial_r_A, grid.radial_width_A, strict=True)]
    g4 = [[1.0 / (xi * xi), z, lam]
          for xi, lam, z in zip(grid.angular_xi_A, grid.angular_lambda, grid.angular_zeta, strict=True)]
    return ACSF(species=["Si", "O"], r_cut=r_cut, g2_params=g2, g4_params=g4, periodic=periodic)


def dscribe_columns(acsf, grid):
    """Indices of DScribe's output in our feature order, read off its documented layout:
    per species (sorted by atomic number) [G1, G2...], then per species pair [G4...]."""
    z = [int(v) for v in acsf._atomic_numbers]  # sorted atomic numbers, DScribe's type order
    t = {0: z.index(14), 1: z.index(8)}  # our species -> DScribe type index
    n2, n4, n_t = grid.n_radial, grid.n_angular, len(z)
    cols = [t[s] * (1 + n2) + 1 + k for s in (0, 1) for k in range(n2)]
    for a, b in ((0, 0), (0, 1), (1, 1)):
        hi, lo = max(t[a], t[b]), min(t[a], t[b])
        pair = hi * (hi + 1) // 2 + lo
        cols += [n_t * (1 + n2) + pair * n4 + k for k in range(n4)]
    return np.array(cols)


def agreement(grid):
    from ase import Atoms

    rng = np.random.default_rng(1)
    n = 40
    direction = rng.normal(size=(n, 3))
    radius = 2.9 * rng.uniform(size=(n, 1)) ** (1 / 3)  # every distance below 5.8 A < cutoff
    cluster = radius * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    species = (np.arange(n) % 3 != 0).astype(np.int32)
    acsf = dscribe_acsf(grid, r_cut=1e4, periodic=False)
    ref = acsf.create(Atoms(numbers=np.where(species == 0, 14, 8), positions=cluster))
    ref = ref[:, dscribe_columns(acsf, grid)]
    n_r = 2 * grid.n_radial
    ref[:, n_r:] *= np.tile(2.0 ** (np.array(grid.angular_zeta) - 1.0), 3)  # undo 2^(1 - zeta)
    lines = []
    for dtype in (np.float64, np.float32):
        ours = compute_features(grid, cluster + 50.0, 100.0, species, dtype=dtype).astype(np.float64)
        scale = np.abs(ref).max(axis=0)  # relative to each feature's largest value
        rel = np.abs(ours - ref) / scale
        lines.append(f"  ours {np.dtype(dtype).name}: max |diff| / max|value| per feature: radial "
                     f"{rel[:, :n_r].max():.1e}, angular {rel[:, n_r:].max():.1e}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--atoms", type=int, default=3000)
    ap.add_argument("--chunk-atoms", type=int, default=128)
    args = ap.parse_args()

    try:
        from importlib.metadata import version

        from ase import Atoms
        dscribe_version = version("dscribe")
    except ImportError:
        sys.exit("this benchmark needs DScribe: pip install dscribe (benchmark only)")

    grid = StructureGrid.from_config(config.resolve({}))
    pos, species, box, what = silica(args.atoms)
    n_feat = grid.n_features
    print(f"N = {len(pos)} ({what}), box {box:.3f} A, {n_feat} features (cutoff {grid.cutoff_A} A), "
          f"DScribe {dscribe_version}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("agreement with DScribe on a free 40-atom cluster (f_c = 1 to 1e-6, 2^(1 - zeta) undone):")
    for line in agreement(grid):
        print(line)

    acsf = dscribe_acsf(grid, r_cut=grid.cutoff_A, periodic=True)
    atoms = Atoms(numbers=np.where(species == 0, 14, 8), positions=pos, cell=[box] * 3, pbc=True)

    def ours(dtype):
        return lambda: compute_features(grid, pos, box, species, chunk_atoms=args.chunk_atoms, dtype=dtype)

    runs = {"ours float32": ours(np.float32), "ours float64": ours(np.float64),
            "DScribe (C++, float64)": lambda: acsf.create(atoms)}
    for fn in runs.values():  # compile / warm up
        fn()
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    names = list(runs)
    for rep in range(args.repeats):
        for k in names[rep % len(names):] + names[:rep % len(names)]:  # rotate the order
            c0, t0 = time.process_time(), time.perf_counter()
            runs[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    ref = "DScribe (C++, float64)"
    print(f"per frame, median of {args.repeats} interleaved repeats (wall / CPU):")
    for k in names:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        print(f"  {k:24s} {w:7.3f} s / {c:7.3f} s   {len(pos) * n_feat / w:10.3g} features/s   "
              f"DScribe / this: wall {statistics.median(wall[ref]) / w:5.2f}, "
              f"CPU {statistics.median(cpu[ref]) / c:5.2f}")


if __name__ == "__main__":
    main()
