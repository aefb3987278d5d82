"""``softness <stage>``: the command line the workflow rules call.

Each stage reads explicit inputs, writes one HDF5 product with ``--out`` (atomically),
and takes the config with ``--config`` (defaults from the schema when omitted). Bad
input exits with status 1 and one sentence on stderr; nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from softness import __version__, interrupts
from softness import config as config_mod
from softness.errors import SoftnessError

log = logging.getLogger("softness")


# ---------------------------------------------------------------------------- stages
# Imports are inside the commands so that `softness --help` and the CPU-only stages
# do not pay for importing JAX.

def cmd_quench(args, cfg):
    from softness import md

    md.quench(cfg, out=args.out, resume=args.resume)


def cmd_run(args, cfg):
    from pathlib import Path

    from softness import md
    from softness.io import write_text_atomic

    failed = md.run_temperatures(cfg, start=args.start, temperatures_K=args.temperature, outs=args.out,
                                 resume=args.resume, work=args.work, keep_going=args.keep_going,
                                 run_index=args.run_index)
    if failed and len(failed) == len(args.temperature):
        raise SoftnessError(" ".join(failed.values()))
    for T, out in zip(args.temperature, args.out, strict=True):
        if T in failed:  # --keep-going: the reason stands in for the product
            print(f"softness run: error: {failed[T]}", file=sys.stderr)
            write_text_atomic(Path(f"{out}.failed"), failed[T] + "\n")


def cmd_features(args, cfg):
    from softness import structure

    structure.features_file(cfg, trajectory=args.trajectory, out=args.out, chunk_atoms=args.chunk_atoms)


def cmd_hops(args, cfg):
    from softness import hops

    hops.hops_file(cfg, trajectory=args.trajectory, out=args.out)


def cmd_dynamics(args, cfg):
    from softness import dynamics

    dynamics.dynamics_file(cfg, trajectory=args.trajectory, out=args.out)


def cmd_train(args, cfg):
    from softness import classifier

    classifier.train_file(cfg, features=args.features, hops=args.hops, out=args.out)


def cmd_apply(args, cfg):
    from softness import classifier

    classifier.apply_file(cfg, model=args.model, features=args.features, out=args.out)


def cmd_stability(args, cfg):
    from softness import classifier

    classifier.stability_file(cfg, model=args.model, features=args.features, hops=args.hops, out=args.out,
                              train_features=args.train_features)


def cmd_arrhenius(args, cfg):
    from softness import arrhenius

    arrhenius.arrhenius_file(cfg, softness=args.softness, hops=args.hops, dynamics=args.dynamics,
                             out=args.out, summary=args.summary, model=args.model, stability=args.stability)


def cmd_planted(args, cfg):
    from softness import planted

    planted.planted_file(cfg, features=args.features, dynamics=args.dynamics, out=args.out, work=args.work,
                         summary_json=args.summary, model=args.model, seed=args.seed,
                         P_min=cfg["planted"]["P_min"] if args.P_min is None else args.P_min,
                         P_max=cfg["planted"]["P_max"] if args.P_max is None else args.P_max,
                         softness_share=args.softness_share, curvature_lnP=args.curvature,
                         E0_K=args.E0_K, e_K=args.e_K, Sigma=args.Sigma)


def cmd_compare(args, cfg):
    from softness import compare

    compare.compare_files(args.study, out=args.out, json_path=args.json, tau_ref_fs=args.tau_ref_fs)


def cmd_export(args, cfg):
    from softness import export

    window_fs = args.window_fs
    if window_fs is None and args.config is not None:
        window_fs = cfg["arrhenius"]["P_R_window_fs"]
    export.export_frames(args.trajectory, args.softness, args.hops, args.out,
                         frames=export.parse_frames(args.frames), format=args.format, window_fs=window_fs,
                         unwrapped=args.unwrapped)


def cmd_import(args, cfg):
    from softness import hops, importer

    def pairs(items, what, convert=str):
        out = {}
        for item in items or ():
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise SoftnessError(f"{what} {item!r} is not of the form KEY=VALUE.")
            try:
                out[key] = convert(value)
            except ValueError:
                raise SoftnessError(f"{what} {item!r} does not give a number.") from None
        return out

    min_frames = None
    if args.config is not None:
        t_R = cfg["hops"]["t_R_fs"]

        def min_frames(dt_fs):
            return 2 * hops.half_window_frames(t_R, dt_fs, "hops.t_R_fs")

    importer.import_trajectory(args.trajectory, out=args.out, species_map=pairs(args.species, "--species"),
                               temperature_K=args.temperature, frame_interval_fs=args.frame_interval_fs,
                               topology=args.topology, format=args.format,
                               masses=pairs(args.masses, "--masses", float) or None, system=args.system,
                               min_frames=min_frames, length_unit_A=args.length_unit_A,
                               config=cfg if args.config is not None else None)


# ---------------------------------------------------------------------------- parser

def _stage(sub, name, func, help_text, out_help="output HDF5 file", out_nargs=None):
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--config", metavar="YAML", help="config file (default: built-in defaults)")
    p.add_argument("--out", required=True, metavar="H5", help=out_help, nargs=out_nargs)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=func, command=name)
    return p


RESUME_HELP = ("continue from this run's last checkpoint; a checkpoint left by a different run "
               "(config, temperature or start file changed) is set aside with a warning and the "
               "stage starts over")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softness",
        description="Glass-forming liquids with JAX MD, softness, and the strong-to-fragile crossover.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(uses_config=True)
    sub = parser.add_subparsers(title="stages", metavar="<stage>", required=True)

    p = _stage(sub, "quench", cmd_quench,
               "Melt at T_melt and cool linearly to T_min, keeping a snapshot at each temperature.")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)

    p = _stage(sub, "run", cmd_run,
               "NVT equilibration and production at one temperature from a quench snapshot; several "
               "temperatures run together as replicas of one program (one product each).",
               out_help="output HDF5 file, one per temperature", out_nargs="+")
    p.add_argument("--start", required=True, metavar="H5", help="quench product with the snapshots")
    p.add_argument("--temperature", required=True, type=float, nargs="+", metavar="K",
                   help="temperature(s) in K")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--work", nargs="+", metavar="H5", default=None,
                   help="keep each temperature's partial trajectory and checkpoint next to these paths "
                        "instead of next to --out (the workflow names the per-temperature products, so a "
                        "run resumes whether it ran alone or in a group)")
    p.add_argument("--run-index", type=int, default=0, metavar="R",
                   help="which independent run at each temperature (run.replicas_per_temperature): 0 "
                        "(default) continues the quench snapshot, R >= 1 starts from its positions with "
                        "velocities drawn from (seed, T, R)")
    p.add_argument("--keep-going", action="store_true",
                   help="when some temperatures fail (NaN, runaway), finish the others, write the reason to "
                        "OUT.failed in place of each failed product and exit 0 (1 if all failed)")

    for name, func, text in [
        ("features", cmd_features, "Radial and angular structure functions of every atom."),
        ("hops", cmd_hops, "p_hop and rearranging / quiet labels of every atom."),
        ("dynamics", cmd_dynamics, "MSD, D, F_s(q, t) and tau_alpha per species."),
    ]:
        p = _stage(sub, name, func, text)
        p.add_argument("--trajectory", required=True, metavar="H5", help="H5MD trajectory")
        if name == "features":
            p.add_argument("--chunk-atoms", type=int, default=128, metavar="N",
                           help="central atoms computed together; memory grows in proportion "
                                "(default 128; larger suits a GPU)")

    p = _stage(sub, "train", cmd_train, "Train the linear-SVM softness model at T_train.")
    p.add_argument("--features", required=True, metavar="H5")
    p.add_argument("--hops", required=True, metavar="H5")

    p = _stage(sub, "apply", cmd_apply, "Softness of every atom and frame from a trained model.")
    p.add_argument("--model", required=True, metavar="H5")
    p.add_argument("--features", required=True, metavar="H5")

    p = _stage(sub, "stability", cmd_stability,
               "Retrain the softness model at a second temperature (same labels, same choice of C) and "
               "compare: cosine of the hyperplane normals and correlation of the two softnesses.")
    p.add_argument("--model", required=True, metavar="H5", help="model trained at T_train")
    p.add_argument("--features", required=True, metavar="H5", help="features at the second temperature")
    p.add_argument("--hops", required=True, metavar="H5", help="hops at the second temperature")
    p.add_argument("--train-features", metavar="H5",
                   help="features at T_train: also correlate the two softnesses on its configurations")

    p = _stage(sub, "arrhenius", cmd_arrhenius,
               "P_R(S, T), Arrhenius fits per softness bin, <S>(T) and the crossover.")
    runs = ("one per temperature, or one per independent run at a temperature (paired with the other "
            "files by the trajectory it comes from)")
    p.add_argument("--softness", required=True, nargs="+", metavar="H5", help=runs)
    p.add_argument("--hops", required=True, nargs="+", metavar="H5", help=runs)
    p.add_argument("--dynamics", required=True, nargs="+", metavar="H5", help=runs)
    p.add_argument("--summary", metavar="JSON",
                   help="also write the fitted numbers with uncertainties as JSON, and as a Markdown table "
                        "next to it (same name, .md)")
    p.add_argument("--model", metavar="H5",
                   help="the model file: its held-out numbers decide the accuracy claim in the summary")
    p.add_argument("--stability", metavar="H5",
                   help="the stability file: the hyperplane retrained at another temperature, in the summary")

    p = _stage(sub, "planted", cmd_planted,
               "Planted-barrier test: synthetic rearrangements from a known barrier on the real features, "
               "through the unchanged train / apply / arrhenius code; planted vs recovered e1, Sigma1, 1/T0.")
    p.add_argument("--features", required=True, nargs="+", metavar="H5", help="one per temperature")
    p.add_argument("--dynamics", required=True, nargs="+", metavar="H5", help="one per temperature")
    p.add_argument("--model", metavar="H5",
                   help="plant along this model's normal (default: a seeded random direction)")
    p.add_argument("--work", metavar="DIR",
                   help="keep the planted hops, model and softness files here (default: a temporary "
                        "directory)")
    p.add_argument("--summary", metavar="JSON", help="also write the headline numbers as JSON")
    p.add_argument("--seed", type=int,
                   help="seed of the direction and the events (default: the config's seed)")
    p.add_argument("--P-min", dest="P_min", type=float,
                   help="planted P at the hardest atoms and the coldest temperature (default: planted.P_min)")
    p.add_argument("--P-max", dest="P_max", type=float,
                   help="planted P at the softest atoms and the hottest temperature (default: planted.P_max)")
    p.add_argument("--softness-share", type=float, default=0.5,
                   help="share of ln(P_max / P_min) spanned by the softness, the rest by temperature "
                        "(default 0.5)")
    p.add_argument("--curvature", type=float, default=0.0,
                   help="non-Arrhenius plant: largest departure of ln P from a line in 1/T (default 0: "
                        "Arrhenius)")
    p.add_argument("--E0-K", dest="E0_K", type=float, help="planted E0 in K (with --e-K and --Sigma)")
    p.add_argument("--e-K", dest="e_K", type=float, help="planted slope e in K per unit of the coordinate")
    p.add_argument("--Sigma", type=float, help="planted constant Sigma")

    text = ("Strong and fragile side by side: several studies' tau_alpha(T) on one figure (Angell plot "
            "against T_ref / T, apparent activation energy, softness barrier lines) and the fragility "
            "index m.")
    p = sub.add_parser("compare", help=text, description=text)
    p.add_argument("--study", required=True, action="append", metavar="NAME=RESULTS_DIR",
                   help="a study's name and its results directory (T<T>/dynamics.h5, arrhenius.h5, "
                        "summary.json); give one per study, each name once")
    p.add_argument("--out", required=True, nargs="+", metavar="FIG",
                   help="figure file(s), the format from the suffix (e.g. FIG.png FIG.pdf)")
    p.add_argument("--json", metavar="JSON", help="also write the numbers plotted (T_ref, m, ...) as JSON")
    p.add_argument("--tau-ref-fs", type=float, metavar="FS",
                   help="tau_alpha of each study's first species that sets its T_ref (default: the slowest "
                        "value that every study spans)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_compare, command="compare", uses_config=False)

    p = _stage(sub, "export", cmd_export,
               "Frames with per-atom softness, p_hop, labels and about-to-rearrange flags for OVITO "
               "(extended XYZ via ASE, or a LAMMPS dump).",
               out_help="output file (.extxyz, or a LAMMPS dump with --format lammps-dump)")
    p.add_argument("--trajectory", required=True, metavar="H5", help="H5MD trajectory of the run")
    p.add_argument("--softness", required=True, metavar="H5", help="its softness file (softness apply)")
    p.add_argument("--hops", required=True, metavar="H5", help="its hops file (softness hops)")
    p.add_argument("--frames", nargs="+", metavar="F",
                   help="trajectory frame indices and start:stop[:step] ranges (default: every softness "
                        "frame)")
    p.add_argument("--format", choices=("extxyz", "lammps-dump"), default="extxyz",
                   help="extxyz (default) or lammps-dump")
    p.add_argument("--window-fs", type=float, metavar="FS",
                   help="P_R window Delta of about_to_rearrange (default: arrhenius.P_R_window_fs of "
                        "--config, else of the config stored in the hops file)")
    p.add_argument("--unwrapped", action="store_true", help="also write unwrapped positions")

    p = _stage(sub, "import", cmd_import,
               "A trajectory made elsewhere (LAMMPS dump, GSD, XTC/TRR with a topology, extended XYZ, H5MD) "
               "as our H5MD trajectory with unwrapped paths, ready for features, hops and dynamics.",
               out_help="output H5MD trajectory")
    p.add_argument("trajectory", metavar="TRAJ", help="the trajectory file")
    p.add_argument("--species", required=True, nargs="+", metavar="TYPE=NAME",
                   help="species name of each atom type (LAMMPS type number, GSD type, topology type or "
                        "name, element); species are numbered in this order (or the --system's)")
    p.add_argument("--temperature", required=True, type=float, metavar="K", help="temperature of the run")
    p.add_argument("--topology", metavar="FILE", help="topology naming the atoms (needed for XTC, TRR, DCD)")
    p.add_argument("--format", metavar="FMT",
                   help="LAMMPSDUMP, GSD, XTC, TRR, EXTXYZ, H5MD or another MDAnalysis format (default: from "
                        "the suffix)")
    p.add_argument("--frame-interval-fs", type=float, metavar="DT",
                   help="time between frames in fs (needed when the file stores no times: LAMMPS dump, GSD, "
                        "extended XYZ; checked against the file's otherwise)")
    p.add_argument("--length-unit-A", type=float, metavar="A",
                   help="length of the file's length unit in Angstrom, for lengths without a unit (GSD, "
                        "LAMMPS units lj; e.g. 3.405 for argon's sigma); default: the lengths are Angstrom")
    p.add_argument("--system", metavar="NAME", help="the system (silica, kob_andersen) the trajectory is of")
    p.add_argument("--masses", nargs="+", metavar="NAME=AMU",
                   help="mass of each species (default: the system's, else the elements')")
    return parser


#: XLA:CPU compiles for 256-bit vectors unless told otherwise; on a CPU with AVX-512 the MD
#: step is 1.08-1.15 x faster with 512-bit ones (N = 648 silica, one thread, paired runs) and
#: the forces are the same to the bit. Elsewhere the setting changes nothing.
XLA_CPU_FLAGS = "--xla_cpu_prefer_vector_width=512"


def set_up_xla() -> None:
    """Settings for XLA that must be made before JAX starts (the command line makes them first).

    * The CPU thread pool gets ``OMP_NUM_THREADS`` threads when that is set (Snakemake sets it
      to the rule's ``threads``, as cluster scripts commonly do). XLA:CPU otherwise runs a pool
      as large as the machine whatever ``XLA_FLAGS`` say: one MD run "on one thread" kept 1.9
      of 2 cores busy, and two such jobs side by side ran 1.2 x slower each than two jobs on
      one thread. The pool's size is read from ``PJRT_NPROC``; an explicit value wins.
    * :data:`XLA_CPU_FLAGS` is added to ``XLA_FLAGS`` unless those already set the vector width.
    """
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        os.environ.setdefault("PJRT_NPROC", threads)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_prefer_vector_width" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FLAGS}".strip()


def main(argv=None) -> int:
    set_up_xla()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # A cluster's wall-time SIGTERM is handled like Ctrl-C: stages checkpoint and remove
    # partial output on KeyboardInterrupt.
    interrupts.install()
    try:
        # (a command without a config, such as compare, skips resolving the defaults: that builds
        # the default system's potential and so imports JAX)
        cfg = config_mod.load(args.config) if args.uses_config else None
        args.func(args, cfg)
    except SoftnessError as exc:
        print(f"softness {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"softness {args.command}: interrupted; no output written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
