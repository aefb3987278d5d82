"""Training and applying softness at the default config's sizes: wall time and peak memory.

Sizes from the default config: N = 3 n_sio2 atoms, F = production_time / frame_interval frames
(every ``features.frame_stride``-th), and 2 x (radial centres) + 3 pairs x (angular triples)
features. The features and hops files are synthetic (Gaussian features with a hidden linear
softness direction and noisy labels; about 2 % of labels rearranging and half quiet) and are
written to a temporary directory first, so only the two stages are timed.

Prints (single shot):
  * ``softness train`` wall and CPU time (the CPU time is the steadier number on a shared
    machine), split into reading the training examples and the SVM
    (cross-validation over train.C_grid and the final fit), and its peak traced allocation;
  * ``softness apply`` wall time and its ratio to one plain streaming read of the features file
    (the floor of any method that must look at every feature once);
  * apply's peak traced allocation against the size of the features file and of its output,
    to show that memory stays bounded by the frame chunk, not by the run length;
  * the process's maximum resident set size (resource.getrusage).

Run: python benchmarks/softness_training.py [--frames F] [--atoms N]
"""

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

from softness import classifier, config
from softness.io import atomic_h5


def default_sizes(cfg):
    f = cfg["features"]
    n_radial = int(np.floor((f["radial_r_max_A"] - f["radial_r_min_A"]) / f["radial_dr_A"] + 1e-6)) + 1
    n_features = 2 * n_radial + 3 * len(f["angular"])
    production = config.run_time_fs(cfg, "production_time_fs", config.training_temperature(cfg))
    n_frames = int(round(production / cfg["run"]["frame_interval_fs"]))
    return 3 * cfg["system"]["n_sio2"], n_frames // f["frame_stride"], n_features, n_radial


def write_inputs(tmp, cfg, n_atoms, n_frames, n_features, n_radial, rng):
    species = np.r_[np.zeros(n_atoms // 3, np.int32), np.ones(n_atoms - n_atoms // 3, np.int32)]
    u = rng.normal(size=(2, n_features))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    labels = np.empty((n_frames, n_atoms), np.int8)
    names = [f"G_{s}({i})" for s in ("Si", "O") for i in range(n_radial)]
    names += [f"Psi_{i}" for i in range(n_features - len(names))]
    with atomic_h5(tmp / "features.h5", "features", cfg) as f:
        ds = f.create_dataset("features", shape=(n_frames, n_atoms, n_features), dtype=np.float32,
                              chunks=(1, n_atoms, n_features))
        for f0 in range(0, n_frames, 50):
            f1 = min(f0 + 50, n_frames)
            x = rng.normal(size=(f1 - f0, n_atoms, n_features)).astype(np.float32)
            ds[f0:f1] = x
            # Noisy labels (held-out accuracy about 0.85, as for real softness).
            z = np.einsum("fnk,nk->fn", x, u[species]) + rng.normal(size=(f1 - f0, n_atoms))
            labels[f0:f1] = np.where(z > 2.7, 1, np.where(z < 0.0, 0, -1))
        f["frames"] = np.arange(n_frames)
        f["step"] = np.arange(n_frames) * 50
        f["time_fs"] = np.arange(n_frames) * 50.0
        f["species"] = species
        f["feature_names"] = np.array(names, dtype=h5py.string_dtype())
        f["grid/radial_r_A"] = np.linspace(1.0, 6.0, n_radial)
        f.attrs["temperature_K"] = 3000.0
        f.attrs["cutoff_A"] = 6.5
    with atomic_h5(tmp / "hops.h5", "hops", cfg) as f:
        f["labels"] = labels
        f["p_hop"] = np.where(labels == 1, 1.0, 0.01).astype(np.float32)
        f["frames"] = np.arange(n_frames)
        f["species"] = species
        f.attrs["temperature_K"] = 3000.0
    return (tmp / "features.h5").stat().st_size


def timed(fn, *args, memory=True):
    """Result, wall seconds, CPU seconds of this process and peak traced allocation of ``fn(*args)``.

    Times come from a first call without tracing (tracemalloc slows Python allocations down);
    the peak allocation from a second, traced call.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = np.nan
    if memory:
        tracemalloc.start()
        fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out, wall, cpu, peak


def read_pass(path):
    with h5py.File(path, "r") as f:
        ds = f["features"]
        step = max(1, classifier.CHUNK_BYTES // (ds.shape[1] * ds.shape[2] * 4))
        total = 0.0
        for r0 in range(0, ds.shape[0], step):
            total += float(ds[r0:r0 + step][:, 0, 0].sum())
    return total


def main(argv=None):
    cfg = config.resolve({"temperatures_K": [3000.0], "quench": {"T_min_K": 3000.0}})
    n_atoms, n_frames, n_features, n_radial = default_sizes(cfg)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=n_frames)
    p.add_argument("--atoms", type=int, default=n_atoms)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        size = write_inputs(tmp, cfg, args.atoms, args.frames, n_features, n_radial, rng)
        n_triples = len(cfg["features"]["angular"])
        print(f"N = {args.atoms} atoms, F = {args.frames} frames, {n_features} features "
              f"({n_radial} radial centres x 2 species + 3 pairs x {n_triples} triples); "
              f"features file {size / 2**20:.0f} MiB; train.n_per_class = {cfg['train']['n_per_class']}, "
              f"{len(cfg['train']['C_grid'])} C values x {cfg['train']['cv_folds']} folds")

        # Training, in its two parts: drawing/reading the examples, and the SVMs.
        t0 = time.perf_counter()
        with h5py.File(tmp / "features.h5", "r") as ff, h5py.File(tmp / "hops.h5", "r") as fh:
            rows = classifier.label_to_feature_rows(fh["frames"][()], ff["frames"][()])
            masks = classifier.class_masks(fh["labels"], rows, ff["features"].shape[0])
            pairs = classifier.balanced_training_pairs(*masks, ff["species"][()], cfg["train"]["n_per_class"],
                                                       np.random.default_rng(1))
            for r, a, _, _ in pairs.values():
                classifier.read_feature_pairs(ff["features"], r, a)
        t_read = time.perf_counter() - t0
        model, t_train, cpu_train, peak_train = timed(classifier.train_file, cfg, tmp / "features.h5",
                                                      tmp / "hops.h5", tmp / "model.h5")
        acc = model.info["accuracy"]
        print(f"train: {t_train:.2f} s wall, {cpu_train:.2f} s CPU (reading examples {t_read:.2f} s, SVM "
              f"cross-validation and fit {t_train - t_read:.2f} s); held-out accuracy Si {acc[0]:.3f}, "
              f"O {acc[1]:.3f}; peak allocation {peak_train / 2**20:.0f} MiB")

        read_pass(tmp / "features.h5")  # both timings below start from a warm page cache
        _, t_read_all, _, _ = timed(read_pass, tmp / "features.h5", memory=False)
        _, t_apply, cpu_apply, peak_apply = timed(classifier.apply_file, cfg, tmp / "model.h5",
                                                  tmp / "features.h5", tmp / "softness.h5")
        out_mib = args.frames * args.atoms * 4 / 2**20
        rate = args.atoms * args.frames / t_apply / 1e6
        print(f"apply: {t_apply:.2f} s wall, {cpu_apply:.2f} s CPU = {t_apply / t_read_all:.2f} x one "
              f"streaming read of the features ({t_read_all:.2f} s); {rate:.2f} M atom-frames/s")
        print(f"apply peak allocation {peak_apply / 2**20:.0f} MiB against features {size / 2**20:.0f} MiB "
              f"(ratio {peak_apply / size:.2f}) and output {out_mib:.1f} MiB; chunk bound "
              f"{classifier.CHUNK_BYTES / 2**20:.0f} MiB of features")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
