"""Do longer-range radial functions or more angular functions raise the held-out accuracy?

Medium-range order (2.8-6 A and beyond) carries information on the stability of silica (Yu et
al., PRL 129, 018003 (2022)); the default grid stops at 6 A with 12 angular triples per pair.
This script computes the features of one trajectory (the training temperature of a study) with
four grids, trains the unchanged softness model on each with the same hops labels, and prints
per species the held-out accuracy, ROC AUC and P(S > 0 | rearranging) with their errors:

* ``default``: the config's grid;
* ``radial8``: radial functions to 8 A (and the features cutoff at 8 A);
* ``angular_more``: 40 angular triples per pair (xi 2.5-6.5 A, lambda +-1, zeta 1, 2, 4, 16);
* ``both``.

Run: python benchmarks/feature_sets.py --config results/config.resolved.yaml
         --trajectory results/T2850/trajectory.h5 [--workdir DIR]
(the hops file is recomputed from the trajectory with the config's hops section).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from softness import classifier, config, hops, structure

ANGULAR_MORE = [{"xi_A": xi, "lambda": lam, "zeta": zeta}
                for xi in (2.5, 3.5, 4.5, 5.5, 6.5) for lam in (1, -1) for zeta in (1, 2, 4, 16)]
VARIANTS = {
    "default": {},
    "radial8": {"radial_r_max_A": 8.0, "cutoff_A": 8.0},
    "angular_more": {"angular": ANGULAR_MORE},
    "both": {"radial_r_max_A": 8.0, "cutoff_A": 8.0, "angular": ANGULAR_MORE},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--trajectory", required=True, type=Path)
    parser.add_argument("--workdir", type=Path,
                        help="keep the features files here (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    base = config.load(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        hops_path = work / "hops.h5"
        hops.hops_file(base, args.trajectory, hops_path)
        rows = []
        for name, change in VARIANTS.items():
            cfg = copy.deepcopy(base)
            cfg["features"].update(change)
            cfg = config.resolve(cfg)
            features = work / f"features_{name}.h5"
            structure.features_file(cfg, args.trajectory, features)
            model = classifier.train(cfg, features, hops_path)
            n_features = len(model.feature_names)
            for sp, species in enumerate(("Si", "O")):
                q = model.info["quality"][sp]
                rows.append((name, n_features, species, model.info["accuracy"][sp],
                             model.info["accuracy_err"][sp], q["roc_auc"], q["roc_auc_err"],
                             q["P_S_positive_given_rearranging"], q["P_S_positive_given_rearranging_err"]))
    print(f"trajectory {args.trajectory}; held-out numbers of the softness model per feature grid\n")
    print("| grid | features | species | accuracy | ROC AUC | P(S > 0 given rearranging) |")
    print("|---|---|---|---|---|---|")
    for name, n, sp, acc, acc_e, auc, auc_e, pos, pos_e in rows:
        print(f"| {name} | {n} | {sp} | {acc:.3f} ± {acc_e:.3f} | {auc:.3f} ± {auc_e:.3f} "
              f"| {pos:.3f} ± {pos_e:.3f} |")
    best = {sp: max((r for r in rows if r[2] == sp), key=lambda r: r[5]) for sp in ("Si", "O")}
    for sp, r in best.items():
        base_row = next(x for x in rows if x[0] == "default" and x[2] == sp)
        gain = r[5] - base_row[5]
        print(f"\n{sp}: best AUC with '{r[0]}', {gain:+.3f} over the default grid "
              f"({gain / np.hypot(r[6], base_row[6]):+.1f} combined errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
