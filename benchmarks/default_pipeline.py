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


def _pm(entry, unit="", digits=3):
    if not entry or entry.get("value") is None:
        return "n/a"
    err = entry.get("error")
    return f"{entry['value']:.{digits}g}" + (f" ± {err:.2g}" if err is not None else "") + unit


def key_numbers(summary: dict) -> list[str]:
    """The fitted softness picture and the tau_alpha crossover per species."""
    lines = []
    for sp, d in summary["species"].items():
        tau = d.get("tau_alpha", {})
        lines.append(
            f"{sp}: DeltaE(S) = ({_pm(d['e0']['eV'])}) - ({_pm(d['e1']['eV'])}) S eV, "
            f"Sigma(S) = ({_pm(d['Sigma0'])}) - ({_pm(d['Sigma1'])}) S (S in units of its standard "
            f"deviation at T_train), T0 = {_pm(d['T0'], ' K')}"
            + (" (inside the fitted temperatures)" if d["T0"].get("inside_fitted_range") else "")
            + f"; bins fitted / populated (curved): {d['n_bins_fitted']} / {d['n_bins_populated']} "
              f"({d['n_bins_curved']}); <S>(T) slope b = {_pm(d['mean_softness']['b'], ' 1/K')}")
        if tau:
            lines.append(
                f"{sp}: tau_alpha kinked fit: E_low = {_pm(tau['E_low']['eV'], ' eV')} below T_x = "
                f"{_pm(tau['T_crossover'], ' K', 4)}, E_high = {_pm(tau['E_high']['eV'], ' eV')} above "
                f"({tau['n_below']} / {tau['n_above']} temperatures, "
                f"chi2/dof {_pm({'value': tau['chi2_dof']})}, kink: {tau['kink']})")
        rel = d.get("relaxation_from_softness")
        if rel:
            closures = [(k, rel[k]) for k in ("tau_alpha", "inverse_D") if rel[k]["chi2"] is not None]
            parts = [f"{label.replace('_', ' ')}: chi2 = {c['chi2']:.3g} for {c['dof']} dof"
                     + (f" (p = {c['p_value']:.2g})" if c["p_value"] is not None else "")
                     for label, c in closures]
            lines.append(f"{sp}: relaxation time predicted from softness, tau_S = Delta / <P_R>, against "
                         + "; ".join(parts))
        flagged = d.get("flagged_temperatures", [])
        if flagged:
            lines.append(f"{sp}: temperatures left out of the P_R fits: "
                         + "; ".join(f"{x['T_K']:g} K ({x['reason']})" for x in flagged))
    return lines


def verdicts(summary: dict) -> list[str]:
    """The four claims, one line each: status and statement."""
    out = []
    for claim, v in summary.get("verdicts", {}).items():
        if isinstance(v, dict) and "status" in v:
            out.append(f"claim ({claim}): **{v['status']}**. {v.get('statement', '')}")
    return out


def per_temperature(arrhenius_h5: Path) -> list[str]:
    """Per species: mean P_R at each temperature, and the softness bins whose P_R entered the fits."""
    import h5py
    import numpy as np

    with h5py.File(arrhenius_h5, "r") as f:
        t, usable = f["temperature_K"][()], f["usable"][()]  # [T], [2, T, B]
        p_mean = f["rate/P_R_mean"][()]
        tau = f["dynamics/tau_alpha_fs"][()]
        key = "dynamics/tau_alpha_err_fs"
        tau_err = f[key][()] if key in f else np.full_like(tau, np.nan)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["species_names"][()]]
    lines = []
    for k, sp in enumerate(names):
        lines.append(f"{sp}: tau_alpha (ps): " + ", ".join(
            f"{temp:g} K {tau[k, i] / 1e3:.3g} ± {tau_err[k, i] / 1e3:.1g}" for i, temp in enumerate(t)))
        lines.append(f"{sp}: mean P_R per window: " + ", ".join(
            f"{temp:g} K {p_mean[k, i]:.3g}" for i, temp in enumerate(t)))
        lines.append(f"{sp}: bins with usable P_R per temperature: " + ", ".join(
            f"{temp:g} K {n}/{usable.shape[2]}" for temp, n in zip(t, usable[k].sum(axis=1), strict=True)))
    return lines


def classifier_numbers(results: Path) -> list[str]:
    """Held-out quality of the model, its stability at a second temperature, the planted-barrier test."""
    import h5py

    lines = []
    model = results / "model.h5"
    if model.exists():
        with h5py.File(model, "r") as f:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["species_names"][()]]
            q = f["quality"] if "quality" in f else None
            for k, sp in enumerate(names):
                text = f"{sp}: held-out accuracy {f['accuracy'][k]:.3f} ± {f['accuracy_err'][k]:.3f}"
                if q is not None:
                    text += (f", ROC AUC {q['roc_auc'][k]:.3f} ± {q['roc_auc_err'][k]:.3f}, balanced "
                             f"accuracy {q['balanced_accuracy'][k]:.3f}, P(S > 0 | rearranging) "
                             f"{q['P_S_positive_given_rearranging'][k]:.3f}, "
                             f"P(S > 0) {q['P_S_positive'][k]:.3f}")
                lines.append(text + f" (T_train {f.attrs['T_train_K']:g} K)")
    stab = results / "stability.h5"
    if stab.exists():
        with h5py.File(stab, "r") as f:
            lines.append(f"hyperplane retrained at {f.attrs['temperature_K']:g} K: cosine of the normals "
                         + ", ".join(f"{c:.3f}" for c in f["cosine"][()]) + "; correlation of S "
                         + ", ".join(f"{c:.3f}" for c in f["pearson_S"][()]) + " (Si, O)")
    planted = results / "planted.json"
    if planted.exists():
        p = json.loads(planted.read_text())
        for sp, d in p["species"].items():
            for run in ("learned", "oracle"):
                parts = []
                for key in ("e1_K", "Sigma1", "inv_T0_per_K"):
                    q = d[run][key]
                    if q.get("recovered") is None:
                        continue
                    parts.append(f"{key} {q['planted']:.3g} -> {q['recovered']:.3g} ± {q['error']:.2g} "
                                 f"(pull {q['pull']:+.1f})" if q.get("pull") is not None else f"{key} n/a")
                lines.append(f"{sp}: planted-barrier test, {run} softness ({d[run]['n_bins_in_lines']} bins, "
                             f"{d[run]['n_bins_curved']} curved): " + "; ".join(parts)
                             + (f"; cosine(planted, learned) {d['alignment'].get('cosine', float('nan')):.3f}"
                                if run == "learned" and "cosine" in d["alignment"] else ""))
    return lines


def markdown(wall_s, cores, load, stages, figures, numbers, command, study) -> str:
    total = sum(sum(v) for v in stages.values())
    lines = [
        "## Default pipeline",
        "",
        f"`benchmarks/default_pipeline.py`: the default config (`config/config.yaml`: {study}) run as",
        "the README says, `snakemake --cores 2`, on the 2-core development machine (no GPU).",
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
              + ", ".join(f"`{f}`" for f in figures) + ".", "",
              "Key numbers (`results/summary.json`, `results/arrhenius.h5`, `results/model.h5`, "
              "`results/stability.h5`, `results/planted.json`):", ""]
    lines += [f"* {n}" for n in numbers]
    return "\n".join(lines) + "\n"


def study_description(results: Path) -> str:
    """The default study in one phrase, from the run's resolved config."""
    import yaml

    cfg = yaml.safe_load((results / "config.resolved.yaml").read_text())
    temps = cfg["temperatures_K"]
    prod = cfg["run"]["production_time_fs"]
    prod_text = (f"{min(prod.values()) / 1e3:g}-{max(prod.values()) / 1e3:g} ps production per temperature"
                 if isinstance(prod, dict) else f"{prod / 1e3:g} ps production each")
    return (f"N = {3 * cfg['system']['n_sio2']}, {len(temps)} temperatures {min(temps):g}-{max(temps):g} K, "
            f"{prod_text}, frames every {cfg['run']['frame_interval_fs']:g} fs, softness trained at the "
            "lowest")


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
    numbers = (verdicts(summary) + key_numbers(summary) + per_temperature(results / "arrhenius.h5")
               + classifier_numbers(results))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = "python benchmarks/default_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = markdown(wall, args.cores, load, stages, figures, numbers, command.strip(),
                       study_description(results))
    print(section)
    if args.update_docs:
        replace_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
