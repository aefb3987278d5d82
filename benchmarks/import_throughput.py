"""`softness import` throughput: frames per second for N = 3000 atoms and 1000 frames.

Writes one trajectory (a random walk in a 33 A box, 0.1 A steps, atoms crossing the box) as
  * a LAMMPS dump with image flags (``id type x y z ix iy iz``, 6 decimals),
  * a LAMMPS dump with wrapped coordinates only (minimum-image unwrapping),
  * GSD with image flags (gsd.hoomd),
  * XTC + GRO (MDAnalysis),
then times :func:`softness.importer.import_trajectory` on each (one thread: the BLAS/OpenMP
thread counts are set to 1 before NumPy loads), checks the unwrapped displacements against the truth,
and prints a Markdown table (file size, wall and CPU seconds of the import, frames per second
of each: on a shared machine the CPU time is the steadier measure).

Run: python benchmarks/import_throughput.py [N] [F] [--keep DIR]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from softness.importer import import_trajectory  # noqa: E402
from softness.trajectory import read_trajectory  # noqa: E402

BOX = 33.0
DT_FS = 50.0


def true_paths(n, f, seed=0):
    rng = np.random.default_rng(seed)
    u = np.cumsum(rng.normal(scale=0.1, size=(f, n, 3)).astype(np.float32), axis=0)
    u[:, ::10] += np.linspace(0, BOX, f, dtype=np.float32)[:, None, None]  # a tenth drift one box
    return u + rng.uniform(0, BOX, (1, n, 3)).astype(np.float32)


def write_lammps(path, u, species, images=True):
    f, n = u.shape[:2]
    img = np.floor(u / BOX).astype(np.int64)
    w = u - img * BOX
    ids = np.arange(1, n + 1)
    with open(path, "w") as fh:
        for k in range(f):
            fh.write(f"ITEM: TIMESTEP\n{k * 50}\nITEM: NUMBER OF ATOMS\n{n}\nITEM: BOX BOUNDS pp pp pp\n"
                     + f"0 {BOX}\n" * 3)
            if images:
                fh.write("ITEM: ATOMS id type x y z ix iy iz\n")
                rows = np.column_stack([ids, species + 1, w[k], img[k]])
                np.savetxt(fh, rows, fmt="%d %d %.6f %.6f %.6f %d %d %d")
            else:
                fh.write("ITEM: ATOMS id type x y z\n")
                np.savetxt(fh, np.column_stack([ids, species + 1, w[k]]), fmt="%d %d %.6f %.6f %.6f")


def write_gsd(path, u, species):
    import gsd.hoomd

    img = np.floor(u / BOX).astype(np.int32)
    with gsd.hoomd.open(str(path), "w") as t:
        for k in range(u.shape[0]):
            fr = gsd.hoomd.Frame()
            fr.configuration.step = k * 50
            fr.configuration.box = [BOX, BOX, BOX, 0, 0, 0]
            fr.particles.N = u.shape[1]
            fr.particles.types = ["A", "B"]
            fr.particles.typeid = species
            fr.particles.position = u[k] - img[k] * BOX - BOX / 2
            fr.particles.image = img[k]
            t.append(fr)


def write_xtc(d, u, species):
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    n = u.shape[1]
    m = mda.Universe.empty(n, n_residues=n, atom_resindex=np.arange(n), trajectory=True)
    m.add_TopologyAttr("names", np.array(["A", "B"])[species])
    m.add_TopologyAttr("resnames", ["X"] * n)
    m.add_TopologyAttr("resids", np.arange(1, n + 1))
    m.load_new(u - np.floor(u / BOX) * BOX, format=MemoryReader, dimensions=[BOX] * 3 + [90] * 3,
               dt=DT_FS / 1000)
    m.atoms.write(str(d / "top.gro"))
    with mda.Writer(str(d / "t.xtc"), n) as w:
        for _ in m.trajectory:
            w.write(m.atoms)
    return d / "t.xtc", d / "top.gro"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=3000)
    ap.add_argument("f", nargs="?", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="write the files here instead of a temporary directory")
    ap.add_argument("--formats", default="lammps-images,lammps-wrapped,gsd,xtc")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    import gsd.hoomd  # noqa: F401 -- imported before the clock starts
    import MDAnalysis  # noqa: F401
    n, f = args.n, args.f
    species = (np.arange(n) % 5 == 0).astype(np.int32)  # 80:20
    u = true_paths(n, f)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = args.keep or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        for name in args.formats.split(","):
            topology, dt, smap, tol = None, DT_FS, {"1": "A", "2": "B"}, 2e-4
            if name == "lammps-images":
                path = d / "images.lammpstrj"
                write_lammps(path, u, species)
            elif name == "lammps-wrapped":
                path = d / "wrapped.lammpstrj"
                write_lammps(path, u, species, images=False)
            elif name == "gsd":
                path, smap, tol = d / "t.gsd", {"A": "A", "B": "B"}, 1e-4
                write_gsd(path, u, species)
            elif name == "xtc":
                (path, topology), smap, dt, tol = write_xtc(d, u, species), {"A": "A", "B": "B"}, None, 1.2e-2
            else:
                raise SystemExit(f"unknown format {name}")
            out = d / f"{name}.h5"
            t0, c0 = time.perf_counter(), time.process_time()
            s = import_trajectory(path, out=out, species_map=smap, temperature_K=1.0, frame_interval_fs=dt,
                                  topology=topology, system="kob_andersen")
            t_import, cpu = time.perf_counter() - t0, time.process_time() - c0
            # Without image flags the path starts where frame 0 is in the file (here wrapped): compare
            # displacements from frame 0.
            got = read_trajectory(out).unwrapped()
            err = float(np.abs((got - got[0]) - (u - u[0])).max())
            assert err < tol, (name, err)
            rows.append((name, s["coordinates"], path.stat().st_size / 2**20, cpu, t_import, err))
            out.unlink()
    print(f"N = {n}, F = {f}, one thread, {platform.processor() or platform.machine()}, "
          f"Python {sys.version.split()[0]}")
    print("| input | unwrapped from | file (MiB) | wall (s) | CPU (s) | frames/s (wall) | frames/s (CPU) "
          "| max displacement error (A) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, how, size, cpu, t, err in rows:
        print(f"| {name} | {how} | {size:.0f} | {t:.1f} | {cpu:.1f} | {f / t:.0f} | {f / cpu:.0f} "
              f"| {err:.1e} |")


if __name__ == "__main__":
    main()
