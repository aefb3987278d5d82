"""The default pipeline as the README runs it: wall time, time per stage, figures, key numbers.

With ``--run`` the script times ``snakemake --cores N`` (the default config) in ``--workdir``,
a checkout with the package installed; without it, it reads a finished run there and takes
the wall time from ``--wall-s`` (or leaves it out). Either way it then reads the run's own
records (every rule writes ``results/benchmarks/<rule>.tsv``, snakemake's ``benchmark:``
files) and prints:

* the wall time, and the machine (cores, load average at the end);
* seconds per stage, summed over temperatures, and the share of the whole;
* the figures made (PNG and PDF under results/figures/);
* the numbers of results/summary.json the figures are about (softness-model fits,
  tau_alpha crossover).

Run: python benchmarks/default_pipeline.py --workdir DIR [--run] [--cores 2] [--wall-s S]
         [--update-docs]
(--update-docs rewrites the "Default pipeline" section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchmark_docs import replace_section


def stage_seconds(results: Path) -> dict[str, list[float]]:
    """Wall seconds of every job, grouped by rule (results/benchmarks/**/<rule>.tsv)."""
    out = defaultdict(list)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        with tsv.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        rule = f"figure {tsv.stem}" if tsv.parent.name == "figures" else tsv.stem
        out[rule] += [float(r["s"]) for r in rows[-1:]]  # the last record is this run's
    return dict(out)


def key_numbers(summary: dict) -> list[str]:
    lines = []
    for sp, d in summary["species"].items():
        def pm(entry, unit=""):
            return f"{entry['value']:.3g} ± {entry['error']:.2g}{unit}"

        tx = d.get("tau_alpha", {}).get("T_crossover", {})
        lines.append(
            f"{sp}: DeltaE(S) = ({pm(d['e0']['eV'])}) - ({pm(d['e1']['eV'])}) S eV, "
            f"Sigma(S) = ({pm(d['Sigma0'])}) - ({pm(d['Sigma1'])}) S, T0 = {pm(d['T0'], ' K')}; "
            f"<S>(T) slope b = {pm(d['mean_softness']['b'], ' 1/K')}"
            + (f"; tau_alpha crossover T_x = {tx['value']:.0f} K" if tx.get("value") is not None else ""))
    return lines


def usable_temperatures(arrhenius_h5: Path) -> list[str]:
    """Per species, the softness bins whose P_R entered the Arrhenius fits, at each temperature."""
    import h5py

    with h5py.File(arrhenius_h5, "r") as f:
        t, usable = f["temperature_K"][()], f["usable"][()]  # [T], [2, T, B]
    return [f"{sp}: bins with usable P_R (not saturated, enough events) per temperature: "
            + ", ".join(f"{temp:g} K {n}/{usable.shape[2]}" for temp, n in zip(t, usable[k].sum(axis=1),
                                                                              strict=True))
            for k, sp in enumerate(("Si", "O"))]


def markdown(wall_s, cores, load, stages, figures, numbers, command) -> str:
    total = sum(sum(v) for v in stages.values())
    lines = [
        "## Default pipeline",
        "",
        "`benchmarks/default_pipeline.py`: the default config (`config/config.yaml`: N = 648, five",
        "temperatures 3000-5000 K, 50 ps production each, softness trained at 3000 K) run as the",
        "README says, `snakemake --cores 2`, on the 2-core development machine (no GPU).",
        "",
        f"Command: `{command}`; cores {cores}; load average at the end {load}.",
        "",
        f"**Wall time: {wall_s / 60:.1f} min** for `snakemake --cores {cores}` "
        "(installing the package first, `pip install -e '.[dev]'`, adds about 1.5 min)."
        if wall_s else "Wall time: not measured in this invocation.",
        "",
        "| stage | jobs | seconds (sum over jobs) | share of the summed job time |",
        "|---|---|---|---|",
    ]
    for rule, secs in sorted(stages.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| {rule} | {len(secs)} | {sum(secs):.0f} | {100 * sum(secs) / total:.0f} % |")
    lines += ["", f"Jobs ran two at a time: summed job time {total / 60:.1f} min.", "",
              "Figures made (each as PNG and PDF in `results/figures/`): "
              + ", ".join(f"`{f}`" for f in figures) + ".", "", "Key numbers (`results/summary.json`):", ""]
    lines += [f"* {n}" for n in numbers]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="checkout to run in or read from")
    parser.add_argument("--run", action="store_true", help="run snakemake there and time it")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--wall-s", type=float, default=None, help="wall time of a finished run")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    wall = args.wall_s
    if args.run:
        snakemake = Path(sys.executable).with_name("snakemake")
        t0 = time.perf_counter()
        subprocess.run([str(snakemake), "--cores", str(args.cores)], cwd=args.workdir, check=True)
        wall = time.perf_counter() - t0
    results = args.workdir / "results"
    summary = json.loads((results / "summary.json").read_text())
    stages = stage_seconds(results)
    figures = sorted(p.stem for p in (results / "figures").glob("*.png"))
    missing = [f for f in figures if not (results / "figures" / f"{f}.pdf").exists()]
    if missing:
        print(f"figures without a PDF: {missing}", file=sys.stderr)
        return 1
    numbers = key_numbers(summary) + usable_temperatures(results / "arrhenius.h5")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = "python benchmarks/default_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = markdown(wall, args.cores, load, stages, figures, numbers, command.strip())
    print(section)
    if args.update_docs:
        replace_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
