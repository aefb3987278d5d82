"""``softness <stage>``: the command line the workflow rules call.

Each stage reads explicit inputs, writes one HDF5 product with ``--out`` (atomically),
and takes the config with ``--config`` (defaults from the schema when omitted). Bad
input exits with status 1 and one sentence on stderr; nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from softness import __version__
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
                                 resume=args.resume, work=args.work, keep_going=args.keep_going)
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


def cmd_arrhenius(args, cfg):
    from softness import arrhenius

    arrhenius.arrhenius_file(cfg, softness=args.softness, hops=args.hops, dynamics=args.dynamics,
                             out=args.out, summary=args.summary)


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
        description="Liquid silica with JAX MD, softness, and the strong-to-fragile crossover.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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

    p = _stage(sub, "arrhenius", cmd_arrhenius,
               "P_R(S, T), Arrhenius fits per softness bin, <S>(T) and the crossover.")
    p.add_argument("--softness", required=True, nargs="+", metavar="H5", help="one per temperature")
    p.add_argument("--hops", required=True, nargs="+", metavar="H5", help="one per temperature")
    p.add_argument("--dynamics", required=True, nargs="+", metavar="H5", help="one per temperature")
    p.add_argument("--summary", metavar="JSON",
                   help="also write the fitted numbers with uncertainties as JSON, and as a Markdown table "
                        "next to it (same name, .md)")
    return parser


def _raise_keyboard_interrupt(signum, frame):
    # A cluster's wall-time SIGTERM is handled like Ctrl-C: stages checkpoint and
    # remove partial output on KeyboardInterrupt.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        cfg = config_mod.load(args.config)
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
