"""Mutation check: plant plausible physics bugs in a copy of the repository and see which the
tests catch.

Each mutation is one text replacement in one source file of a fresh copy (made in a temporary
directory; the working tree is never touched), followed by the tests listed for it, run with
the copy first on the import path. A mutation is

* "caught" when those tests fail (pytest exit status 1),
* "SURVIVED" when they pass,
* "not applied" when its old text is not in the file (the code moved or changed: edit the
  table below), and
* "error" for anything else (the tests could not be collected or run).

Before the mutations, the same test selections run once on an unmutated copy ("baseline"), so
that a selection which fails anyway is not mistaken for a catch.

Run:  python benchmarks/mutation_check.py [--only NAME ...] [--skip-slow] [--list]

``--skip-slow`` leaves out the mutations whose tests need a whole workflow run (minutes).
Prints one line per mutation as it goes and a summary table at the end; exits non-zero if any
applied mutation survived. Not part of the test suite (pytest collects only tests/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    name: str
    file: str  # relative to the repository root
    old: str  # exact text to replace (must occur exactly once)
    new: str
    tests: list[str]  # pytest arguments (paths, -k expressions), run from the copy's root
    slow: bool = False
    note: str = field(default="")


# The table. Edit freely: when code moves (say the pressure to softness/engine.py), change
# ``file`` and ``old``; a stale entry reports "not applied" instead of failing the run.
MUTATIONS = [
    # -- the five from issue 15
    Mutation("rate barrier sign flipped", "softness/arrhenius.py",
             'r["crossover/E_app_rate_K"], r["crossover/E_app_rate_K_err"] = e_rate, e_rate_err',
             'r["crossover/E_app_rate_K"], r["crossover/E_app_rate_K_err"] = -e_rate, e_rate_err',
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("<S>(T) fit reads the other species", "softness/arrhenius.py",
             'mean = fit_mean_softness(temps, r["mean_softness/mean"][sp], r["mean_softness/err"][sp],',
             'mean = fit_mean_softness(temps, r["mean_softness/mean"][1 - sp], '
             'r["mean_softness/err"][1 - sp],',
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("tau_alpha fit reads the other species", "softness/arrhenius.py",
             'tcross = tau_alpha_crossover(temps, tau[sp], tau_err[sp], name)',
             'tcross = tau_alpha_crossover(temps, tau[1 - sp], tau_err[1 - sp], name)',
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("all-atom counts ignore frames where p_hop is undefined", "softness/arrhenius.py",
             'res["all_totals"][sp][f0:f1] = va.sum(axis=1)',
             'res["all_totals"][sp][f0:f1] = va.shape[1]',
             ["tests/test_arrhenius.py", "-k", "brute_force or species_model"]),
    Mutation("pressure virial sign flipped", "softness/md.py",
             "pressure = (2 * ke + virial) / (3 * volume)",
             "pressure = (2 * ke - virial) / (3 * volume)",
             ["tests/test_pressure.py"]),
    Mutation("species swapped in the p_hop histogram", "softness/hops.py",
             "v = p[:, species == s]",
             "v = p[:, species == 1 - s]",
             ["tests/test_hops.py", "-k", "histogram"]),
    # -- more like them
    Mutation("all-atom events counted on undefined frames", "softness/arrhenius.py",
             'res["all_events"][sp][f0:f1] = (ev & va).sum(axis=1)',
             'res["all_events"][sp][f0:f1] = ev.sum(axis=1)',
             ["tests/test_arrhenius.py", "-k", "brute_force"]),
    Mutation("binned counts ignore undefined frames", "softness/arrhenius.py",
             "inside = va & (ss >= e[0]) & (ss <= e[-1])",
             "inside = (ss >= e[0]) & (ss <= e[-1])",
             ["tests/test_arrhenius.py", "-k", "brute_force"]),
    Mutation("D barrier sign flipped", "softness/arrhenius.py",
             'r["crossover/E_app_D_K"], r["crossover/E_app_D_K_err"] = e_d, e_d_err',
             'r["crossover/E_app_D_K"], r["crossover/E_app_D_K_err"] = -e_d, e_d_err',
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("tau_alpha barrier with the rate's sign", "softness/arrhenius.py",
             'np.log(r["dynamics/tau_alpha_fs"]), ln_tau_err, sign=1.0)',
             'np.log(r["dynamics/tau_alpha_fs"]), ln_tau_err, sign=-1.0)',
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("predicted E_app curvature sign flipped", "softness/arrhenius.py",
             "e = e0 - e1 * a - s1 * b * t**2",
             "e = e0 - e1 * a + s1 * b * t**2",
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("T0 from the intercepts (e0 / Sigma0)", "softness/arrhenius.py",
             "    t0 = e1 / s1\n",
             "    t0 = lines.params[0] / lines.params[2]\n",
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("summary files each species under the other's name", "softness/arrhenius.py",
             'out["species"][name] = {',
             'out["species"][names[1 - sp]] = {',
             ["tests/test_arrhenius.py", "-k", "species_model"]),
    Mutation("pressure without the factor 2 on the kinetic energy", "softness/md.py",
             "pressure = (2 * ke + virial) / (3 * volume)",
             "pressure = (ke + virial) / (3 * volume)",
             ["tests/test_pressure.py"]),
    Mutation("pair-kernel virial sign flipped (fixed-volume engine)", "softness/engine.py",
             "virial=0.5 * virial)",
             "virial=-0.5 * virial)",
             ["tests/test_pressure.py"]),
    Mutation("pair-kernel virial without the 1/2 for double-counted pairs", "softness/engine.py",
             "virial=0.5 * virial)",
             "virial=virial)",
             ["tests/test_pressure.py"]),
    Mutation("Verlet list stores each row's own species instead of its neighbours'", "softness/engine.py",
             "species=jnp.asarray(slot_species)[idx]",
             "species=jnp.broadcast_to(jnp.asarray(slot_species)[:n_atoms, None], idx.shape)",
             ["tests/test_engine.py", "-k", "brute_force or melts"]),
    Mutation("counting build puts a word's last slot in the next word", "softness/engine.py",
             "jnp.where(inclusive[:, :, None] <= slot,",
             "jnp.where(inclusive[:, :, None] < slot,",
             ["tests/test_engine.py", "-k", "both_ways or brute_force"]),
    Mutation("Verlet list rebuilt only after a whole skin (misses pairs)", "softness/engine.py",
             "return jnp.max(jnp.sum(d * d, axis=-1)) > half_skin2",
             "return jnp.max(jnp.sum(d * d, axis=-1)) > 4 * half_skin2",
             ["tests/test_engine.py", "-k", "brute_force"]),
    Mutation("float32 erfc with a wrong Abramowitz-Stegun coefficient", "softness/systems/silica.py",
             "t * 1.061405429", "t * 1.06", ["tests/test_engine.py", "-k", "float32 or reference"]),
    Mutation("a group's replicas thermostatted to the first temperature", "softness/md.py",
             "sched=np.stack([schedule(m.T) for m in active])",
             "sched=np.stack([schedule(active[0].T) for m in active])",
             ["tests/test_md_groups.py", "-k", "alone"]),
    Mutation("strain-derivative virial sign flipped (constant-pressure engine)", "softness/md.py",
             "virial = -dU\n",
             "virial = dU\n",
             ["tests/test_pressure.py"]),
    Mutation("hops rate divided by the other species' atom count", "softness/hops.py",
             'out["observed_fs"][s] = np.sum(own != UNOBSERVED) * dt_fs',
             'out["observed_fs"][s] = np.sum(events[:, species == 1 - s] != UNOBSERVED) * dt_fs',
             ["tests/test_hops.py"]),
    Mutation("barrier figure draws the other species' DeltaE", "softness/plotting.py",
             "ax_e.errorbar(s[sp], _ev(de[sp]),",
             "ax_e.errorbar(s[sp], _ev(de[1 - sp]),",
             ["tests/test_plotting.py", "-k", "each_species"]),
    Mutation("dynamics of each species from the other's atoms", "softness/dynamics.py",
             "mine = traj.species == s\n",
             "mine = traj.species == 1 - s\n",
             ["tests/test_dynamics.py"]),
    Mutation("dynamics rule does not rerun when its config changes", "workflow/rules/dynamics.smk",
             'science=science("dynamics"),',
             'science=science(),',
             ["tests/test_workflow.py", "-k", "rerun"], slow=True),
]


def copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__", "*.egg-info",
                                    ".pytest_cache", ".ruff_cache")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def run_tests(root: Path, tests: list[str]) -> tuple[int, str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PJRT_NPROC", "1")  # one XLA:CPU thread per test process
    t0 = time.monotonic()
    # In one process: under xdist (pyproject's addopts) a failure with -x ends the session as
    # "interrupted" (exit 2), which would read as an error instead of a caught mutation.
    res = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
                          *tests], cwd=root, env=env, capture_output=True, text=True)
    return res.returncode, res.stdout + res.stderr, time.monotonic() - t0


def imports_from(root: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, "-c", "import softness; print(softness.__file__)"], cwd=root,
                         env=env, capture_output=True, text=True)
    return res.stdout.strip()


def failing_tests(output: str) -> list[str]:
    return [line.split(" ")[1] for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only mutations whose name contains one of these")
    ap.add_argument("--skip-slow", action="store_true", help="leave out mutations that need a workflow run")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = ap.parse_args(argv)
    todo = [m for m in MUTATIONS if not (args.skip_slow and m.slow)
            and (not args.only or any(o.lower() in m.name.lower() for o in args.only))]
    if args.list:
        for m in todo:
            print(f"{m.name}  [{m.file}]  tests: {' '.join(m.tests)}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        base = copy_repo(Path(tmp) / "baseline")
        where = imports_from(base)
        if not where.startswith(str(base)):
            print(f"the copy does not import its own sources (softness from {where}); giving up.")
            return 2
        for tests in {tuple(m.tests) for m in todo}:
            rc, out, secs = run_tests(base, list(tests))
            if rc != 0:
                print(f"baseline fails for {' '.join(tests)} (exit {rc}); fix that first:\n{out[-3000:]}")
                return 2
            print(f"baseline passes: {' '.join(tests)} ({secs:.0f} s)", flush=True)
        for k, m in enumerate(todo):
            root = copy_repo(Path(tmp) / f"m{k}")
            path = root / m.file
            text = path.read_text() if path.exists() else ""
            count = text.count(m.old)
            if count != 1:
                status, detail, secs = "not applied", ("file missing" if not path.exists()
                                                       else f"old text found {count} times"), 0.0
            else:
                path.write_text(text.replace(m.old, m.new))
                rc, out, secs = run_tests(root, m.tests)
                if rc == 1:
                    status, detail = "caught", ", ".join(failing_tests(out)[:2])
                elif rc == 0:
                    status, detail = "SURVIVED", ""
                else:
                    status, detail = "error", f"pytest exit {rc}: " + out.strip().splitlines()[-1][:120]
            rows.append((m, status, detail, secs))
            print(f"[{status}] {m.name} ({secs:.0f} s) {detail}", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    print("\n| mutation | file | tests | result | caught by |")
    print("|---|---|---|---|---|")
    for m, status, detail, secs in rows:
        print(f"| {m.name} | {m.file} | {' '.join(m.tests)} | {status} ({secs:.0f} s) | {detail} |")
    counts = {s: sum(r[1] == s for r in rows) for s in ("caught", "SURVIVED", "not applied", "error")}
    print("\n" + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if counts["SURVIVED"] or counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
