"""Strong and fragile side by side (softness/compare.py, `softness compare`, workflow/compare.smk):
the numbers against closed forms on synthetic products (an Arrhenius liquid, a VFT liquid, a
made-up three-species one), bad inputs, and a dry run of the study that runs both systems."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

from softness import cli, compare, systems
from softness.arrhenius import mean_over_runs
from softness.errors import SoftnessError

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LN10 = math.log(10.0)


# ---------------------------------------------------------------------------- synthetic products

def arrhenius_tau(T, tau0_fs, E_K):
    return tau0_fs * np.exp(E_K / np.asarray(T, dtype=float))


def vft_tau(T, tau0_fs, D, T0_K):
    T = np.asarray(T, dtype=float)
    return tau0_fs * np.exp(D * T0_K / (T - T0_K))


def write_dynamics(path, T, tau, tau_err, names, system=None, reached=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    tau = np.asarray(tau, dtype=float)
    with h5py.File(path, "w") as f:
        f.attrs["temperature_K"] = float(T)
        if system is not None:
            f.attrs["system"] = system
        f["tau_alpha_fs"] = tau
        f["tau_alpha_err_fs"] = np.asarray(tau_err, dtype=float)
        f["tau_alpha_reached"] = np.isfinite(tau) if reached is None else np.asarray(reached)
        f["species_names"] = np.array([n.encode() for n in names], dtype="S")


def write_study(root, temperatures, taus, names, *, rel_err=0.02, system=None, lines=None, summary=None):
    """results/T<T>/dynamics.h5 with tau_alpha [S, T] and a relative error; optionally arrhenius.h5
    with the softness lines {"e0_K": [S], "e1_K": [S], "cov": [S, 4, 4]} and summary.json."""
    taus = np.atleast_2d(np.asarray(taus, dtype=float))
    for k, T in enumerate(temperatures):
        label = str(int(T)) if float(T).is_integer() else repr(float(T))
        write_dynamics(root / f"T{label}" / "dynamics.h5", T, taus[:, k], rel_err * taus[:, k], names, system)
    if lines is not None:
        with h5py.File(root / "arrhenius.h5", "w") as f:
            f["lines/e0_K"] = np.asarray(lines["e0_K"], dtype=float)
            f["lines/e1_K"] = np.asarray(lines["e1_K"], dtype=float)
            f["lines/cov"] = np.asarray(lines["cov"], dtype=float)
            f["species_names"] = np.array([n.encode() for n in names], dtype="S")
            if system is not None:
                f.attrs["system"] = system
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    return root


TEMPS_STRONG = np.array([2600.0, 2800.0, 3000.0, 3300.0, 3600.0, 4000.0, 4500.0])
TEMPS_FRAGILE = np.array([60.0, 61.5, 63.0, 66.0, 70.0, 75.0, 80.0, 90.0, 100.0])
TAU0 = 50.0
E_STRONG = 20000.0              # K: tau 4e3-1e5 fs, the VFT study 4e2-2e4 fs
VFT = {"D": 3.0, "T0_K": 40.0}  # tau0 exp(D T0 / (T - T0))


@pytest.fixture
def strong_and_fragile(tmp_path):
    """An Arrhenius study (species Si, O: O 3x slower) and a VFT study (A, B), both with tau0 = 50 fs."""
    tau = arrhenius_tau(TEMPS_STRONG, TAU0, E_STRONG)
    strong = write_study(tmp_path / "strong", TEMPS_STRONG, [tau, 3 * tau], ("Si", "O"))
    fragile_tau = vft_tau(TEMPS_FRAGILE, TAU0, **VFT)
    fragile = write_study(tmp_path / "fragile", TEMPS_FRAGILE, [fragile_tau, 2 * fragile_tau], ("A", "B"),
                          system="kob_andersen")
    return strong, fragile


# ---------------------------------------------------------------------------- the numbers

def test_reference_temperature_inverts_an_arrhenius_law_exactly():
    T = np.array([500.0, 600.0, 800.0, 1000.0])
    tau = arrhenius_tau(T, 10.0, 4000.0)
    for tau_ref in (tau[1], np.sqrt(tau[1] * tau[2]), tau[-1], tau[0]):
        T_ref, err = compare.reference_temperature(T, tau, tau_ref, 0.01 * tau)
        # ln tau is linear in 1/T: the interpolation is exact
        assert T_ref == pytest.approx(4000.0 / math.log(tau_ref / 10.0), rel=1e-12)
        # the error: d(ln tau) = 0.01 at the crossing moves 1/T_ref by 0.01 / E (both neighbours 1%)
        assert 0 < err < T_ref**2 * 0.0101 / 4000.0
    assert compare.reference_temperature(T, tau, tau.max() * 1.01) is None
    assert compare.reference_temperature(T, tau, tau.min() * 0.99) is None


def test_common_tau_is_the_slowest_value_every_study_spans():
    assert compare.common_tau([(10.0, 1e4), (100.0, 1e3)]) == 1e3
    assert compare.common_tau([(10.0, 1e4), (3e3, 1e5)]) == 1e4
    assert compare.common_tau([(10.0, 100.0), (1e3, 1e4)]) is None
    assert compare.common_tau([(10.0, 100.0), None]) is None


def test_apparent_barrier_of_arrhenius_is_flat_and_of_vft_grows_on_cooling():
    T = np.array([400.0, 450.0, 500.0, 600.0, 800.0])
    flat = compare.apparent_barrier(T, arrhenius_tau(T, 1.0, 5000.0))
    assert_allclose(flat["E_K"], 5000.0, rtol=1e-12)
    assert np.all(np.diff(flat["inverse_T"]) > 0)
    vft = compare.apparent_barrier(T, vft_tau(T, 1.0, 5.0, 300.0))
    # E_app = D T0 T^2 / (T - T0)^2 rises on cooling, and the secant lies between its end values
    assert np.all(np.diff(vft["E_K"]) > 0)
    exact = 5.0 * 300.0 * vft["T_pair_K"] ** 2 / (vft["T_pair_K"] - 300.0) ** 2
    assert np.all((vft["E_K"] > exact.min(axis=1)) & (vft["E_K"] < exact.max(axis=1)))


def test_fragility_index_against_brute_force_secant():
    rng = np.random.default_rng(3)
    T = np.sort(rng.uniform(300.0, 900.0, 7))
    tau = np.exp(rng.uniform(2, 12, 7))
    err = 0.05 * tau
    T_ref = 470.0
    m = compare.fragility_index(T, tau, T_ref, err)
    # the two temperatures nearest T_ref in 1/T, by brute force
    i, j = sorted(np.argsort([abs(1 / t - 1 / T_ref) for t in T])[:2])
    x = T_ref / T
    slope = (np.log10(tau[j]) - np.log10(tau[i])) / (x[j] - x[i])
    assert m["value"] == pytest.approx(slope, rel=1e-12)
    assert sorted(m["temperatures_K"]) == sorted([T[i], T[j]])
    assert m["error"] == pytest.approx(math.sqrt(2) * 0.05 / LN10 / abs(x[j] - x[i]), rel=1e-12)


# ---------------------------------------------------------------------------- the stage on products

def test_arrhenius_study_gives_the_strong_limit_and_vft_a_larger_m(strong_and_fragile, tmp_path):
    strong, fragile = strong_and_fragile
    out = tmp_path / "fig"
    numbers = compare.compare_files([f"strong={strong}", f"fragile={fragile}"],
                                    out=[out.with_suffix(".png"), out.with_suffix(".pdf")],
                                    json_path=tmp_path / "cmp.json")
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert out.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert json.loads((tmp_path / "cmp.json").read_text()) == numbers

    # the common tau_alpha: the slowest that both first species (Si, A) reach
    tau_si, tau_a = arrhenius_tau(TEMPS_STRONG, TAU0, E_STRONG), vft_tau(TEMPS_FRAGILE, TAU0, **VFT)
    tau_ref = min(tau_si.max(), tau_a.max())
    assert numbers["tau_ref_fs"] == pytest.approx(tau_ref)
    s, f = numbers["studies"]["strong"], numbers["studies"]["fragile"]
    assert s["species"] == ["Si", "O"] and f["species"] == ["A", "B"]
    T_ref = E_STRONG / math.log(tau_ref / TAU0)
    assert s["T_ref_K"] == pytest.approx(T_ref, rel=1e-10)
    # VFT: T_ref where D T0 / (T - T0) = ln(tau_ref / tau0), up to the interpolation in 1/T
    T_ref_vft = VFT["T0_K"] + VFT["D"] * VFT["T0_K"] / math.log(tau_ref / TAU0)
    assert f["T_ref_K"] == pytest.approx(T_ref_vft, rel=0.01)
    assert f["T_ref_reduced"] == pytest.approx(f["T_ref_K"] / systems.get("kob_andersen").REDUCED_UNITS[
        "temperature_K"])

    # Arrhenius: m = E / (T_ref ln 10) = log10(tau_ref / tau0) within its error, for both species
    m_strong = s["per_species"]["Si"]["fragility_m"]
    assert abs(m_strong["value"] - E_STRONG / (T_ref * LN10)) <= m_strong["error"]
    assert m_strong["value"] == pytest.approx(math.log10(tau_ref / TAU0), rel=1e-9)
    assert s["per_species"]["O"]["fragility_m"]["value"] == pytest.approx(m_strong["value"], rel=1e-9)
    # ... a straight Angell line of slope m everywhere, and a flat E_app / T_ref = m ln 10
    a = s["per_species"]["Si"]["angell"]
    fit = np.polyfit(a["T_ref_over_T"], a["log10_tau_alpha_fs"], 1, full=True)
    assert fit[1][0] < 1e-20 and fit[0][0] == pytest.approx(m_strong["value"], rel=1e-9)
    e_app = s["per_species"]["Si"]["apparent_barrier"]["E_app_over_T_ref"]
    assert len(e_app) == TEMPS_STRONG.size - 1
    assert_allclose(e_app, E_STRONG / T_ref, rtol=1e-9)

    # VFT: larger m, close to the closed form D T0 T_ref / (T_ref - T0)^2 / ln 10 (a secant of the
    # two nearest temperatures), and an Angell line that bends upwards
    m_fragile = f["per_species"]["A"]["fragility_m"]
    exact = VFT["D"] * VFT["T0_K"] * f["T_ref_K"] / (f["T_ref_K"] - VFT["T0_K"]) ** 2 / LN10
    assert m_fragile["value"] > m_strong["value"] + 5 * (m_fragile["error"] + m_strong["error"])
    assert m_fragile["value"] == pytest.approx(exact, rel=0.1)
    a = f["per_species"]["A"]["angell"]
    order = np.argsort(a["T_ref_over_T"])
    x, y = np.asarray(a["T_ref_over_T"])[order], np.asarray(a["log10_tau_alpha_fs"])[order]
    assert np.all(np.diff(np.diff(y) / np.diff(x)) > 0)
    e = f["per_species"]["A"]["apparent_barrier"]
    order = np.argsort(e["T_ref_over_T"])
    assert np.all(np.diff(np.asarray(e["E_app_over_T_ref"])[order]) > 0)
    # no arrhenius.h5: two panels and no barrier lines
    assert all("softness_barrier" not in item for item in s["per_species"].values())


def test_arrhenius_m_is_recovered_within_errors_from_noisy_tau(tmp_path):
    rng = np.random.default_rng(11)
    T = np.linspace(2400.0, 4800.0, 9)
    exact = arrhenius_tau(T, TAU0, E_STRONG)
    noisy = exact * np.exp(rng.normal(0.0, 0.03, T.size))
    study = write_study(tmp_path / "noisy", T, [noisy], ("X",), rel_err=0.03)
    other = write_study(tmp_path / "other", T, [exact], ("Y",), rel_err=0.03)
    numbers = compare.compare_files([f"noisy={study}", f"other={other}"], out=tmp_path / "f.png")
    entry = numbers["studies"]["noisy"]
    m = entry["per_species"]["X"]["fragility_m"]
    expected = E_STRONG / (entry["T_ref_K"] * LN10)
    assert abs(m["value"] - expected) < 3 * m["error"]
    assert m["error"] > 0


def test_three_species_names_from_the_files_and_runs_pooled(tmp_path):
    names = ("Xa", "Yb", "Zc")
    T = np.array([300.0, 350.0, 400.0, 500.0])
    base = arrhenius_tau(T, 10.0, 3000.0)
    root = write_study(tmp_path / "xyz", T, [base, 2 * base, 5 * base], names)
    # a second independent run at 350 K (results/T350/run1/): pooled as the arrhenius stage pools
    run1 = 1.1 * base[1] * np.array([1, 2, 5])
    write_dynamics(root / "T350" / "run1" / "dynamics.h5", 350.0, run1, 0.02 * run1, names)
    study = compare.read_study("xyz", root)
    assert study.species_names == names and list(study.n_runs) == [1, 2, 1, 1]
    mean, err = mean_over_runs([base[1] * np.array([1, 2, 5]), run1],
                               [0.02 * base[1] * np.array([1, 2, 5]), 0.02 * run1])
    assert_allclose(study.tau_fs[:, 1], mean)
    assert_allclose(study.tau_err_fs[:, 1], err)
    numbers = compare.compare_files([f"xyz={root}"], out=tmp_path / "xyz.png")
    assert list(numbers["studies"]["xyz"]["per_species"]) == list(names)
    # alone, a study spans its own range: T_ref at its slowest tau_alpha of Xa, the lowest temperature
    assert numbers["studies"]["xyz"]["T_ref_K"] == pytest.approx(300.0)


def test_no_common_tau_falls_back_to_the_lowest_temperature(tmp_path):
    T = np.array([1000.0, 1200.0, 1500.0])
    fast = write_study(tmp_path / "fast", T, [arrhenius_tau(T, 1.0, 1000.0)], ("P",))
    slow = write_study(tmp_path / "slow", T, [arrhenius_tau(T, 1e6, 1000.0)], ("Q",))
    numbers = compare.compare_files([f"fast={fast}", f"slow={slow}"], out=tmp_path / "f.png")
    assert numbers["tau_ref_fs"] is None and numbers["tau_ref_choice"] == "none"
    for entry in numbers["studies"].values():
        assert entry["T_ref_K"] == 1000.0 and entry["T_ref_method"].startswith("lowest temperature")
    # a tau_ref given by hand: the study that spans it interpolates, the other falls back
    numbers = compare.compare_files([f"fast={fast}", f"slow={slow}"], out=tmp_path / "f.png", tau_ref_fs=2.0)
    assert numbers["tau_ref_choice"] == "given"
    assert numbers["studies"]["fast"]["T_ref_K"] == pytest.approx(1000.0 / math.log(2.0))
    assert numbers["studies"]["slow"]["T_ref_method"].startswith("lowest temperature")


def test_barrier_lines_and_fit_numbers_from_arrhenius_products(tmp_path):
    T = np.array([2500.0, 3000.0, 3500.0, 4000.0])
    cov = np.zeros((2, 4, 4))
    cov[:, 0, 0], cov[:, 1, 1], cov[:, 0, 1], cov[:, 1, 0] = 400.0, 100.0, -50.0, -50.0
    summary = {"species": {"Si": {"tau_alpha": {"T_crossover": {"value": 3200.0, "error": 100.0, "unit": "K"},
                                                "E_low": {"K": {"value": 40000.0, "error": 900.0}}},
                                  "T0": {"value": 5000.0, "error": 300.0}}}}
    root = write_study(tmp_path / "silica", T, [arrhenius_tau(T, TAU0, E_STRONG)] * 2, ("Si", "O"),
                       system="silica", summary=summary,
                       lines={"e0_K": [20000.0, 15000.0], "e1_K": [3000.0, 2000.0], "cov": cov})
    numbers = compare.compare_files([f"silica={root}"], out=tmp_path / "f.png", json_path=tmp_path / "f.json")
    entry = numbers["studies"]["silica"]
    assert entry["system"] == "silica" and entry["reduced_units"] is None
    sb = entry["per_species"]["O"]["softness_barrier"]
    assert sb["e0_over_T_ref"] == pytest.approx(15000.0 / entry["T_ref_K"])
    assert sb["e1_over_T_ref"] == pytest.approx(2000.0 / entry["T_ref_K"])
    assert sb["e0_K_err"] == pytest.approx(20.0) and sb["cov_e0_e1_K2"] == -50.0
    fit = entry["per_species"]["Si"]["fit"]
    assert fit["T_crossover_K"] == {"value": 3200.0, "error": 100.0}
    assert fit["E_low_K"]["value"] == 40000.0 and fit["T0_K"]["value"] == 5000.0
    study = compare.read_study("silica", root)
    fig = compare.comparison_figure(numbers, [study])
    assert len(fig.axes) == 3  # Angell, E_app, barrier lines


# ---------------------------------------------------------------------------- bad input

def run_cli(*args):
    return cli.main(["compare", *map(str, args)])


def test_bad_inputs_exit_1_with_one_sentence(strong_and_fragile, tmp_path, capsys):
    strong, fragile = strong_and_fragile
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ((f"--study=a={empty}",), r"results directory .*empty of study a holds no dynamics products"),
        ((f"--study=a={tmp_path / 'nowhere'}",), r"results directory .*nowhere of study a does not exist"),
        ((f"--study=a={strong}", f"--study=a={fragile}"), r"study name 'a' is given twice"),
        ((f"--study={strong}",), r"must be NAME=RESULTS_DIR"),
    ]
    for study_args, pattern in cases:
        out = tmp_path / "bad.png"
        assert run_cli(*study_args, "--out", out) == 1
        err = capsys.readouterr().err.strip()
        assert re.search(pattern, err), err
        assert err.startswith("softness compare: error: ") and err.count("\n") == 0
        assert not out.exists()
    assert run_cli(f"--study=a={strong}", "--out", tmp_path / "fig.xyz") == 1
    assert "no known image suffix" in capsys.readouterr().err
    # files of one study that name different species
    write_dynamics(strong / "T5000" / "dynamics.h5", 5000.0, [1.0, 2.0], [0.1, 0.1], ("A", "B"))
    with pytest.raises(SoftnessError, match=r"names the species \(A, B\) but .* names \(Si, O\)"):
        compare.read_study("strong", strong)


def test_cli_writes_figures_and_json(strong_and_fragile, tmp_path):
    strong, fragile = strong_and_fragile
    res = subprocess.run([sys.executable, "-m", "softness", "compare", "--study", f"strong={strong}",
                          "--study", f"fragile={fragile}", "--out", tmp_path / "c.png", tmp_path / "c.pdf",
                          "--json", tmp_path / "c.json"], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC and (tmp_path / "c.pdf").stat().st_size > 1000
    assert set(json.loads((tmp_path / "c.json").read_text())["studies"]) == {"strong", "fragile"}
    assert not list(tmp_path.glob(".*partial"))


# ---------------------------------------------------------------------------- the study DAG

def test_study_dag_plans_both_systems_and_the_comparison(tmp_path):
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "compare.smk"),
                          "--directory", str(tmp_path), "-n", "-p", "--configfile",
                          str(ROOT / "tests" / "strong_and_fragile_ci.yaml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    counts = {m.group(1): int(m.group(2))
              for m in re.finditer(r"^\s*([A-Za-z_]\w*)\s+(\d+)\s*$", text.split("Job stats:")[-1], re.M)}
    for study in ("silica", "kob_andersen"):
        for rule in ("md_run", "features", "hops", "dynamics", "apply"):
            assert counts[f"{study}_{rule}"] == 3, (study, rule, counts)
        for rule in ("quench", "train", "stability", "arrhenius", "planted", "figure_relaxation"):
            assert counts[f"{study}_{rule}"] == 1
    assert counts["compare"] == 1 and counts["all"] == 1
    # every job of a study reads that study's resolved config, under its prefix
    configs = set(re.findall(r"--config (\S+)", text))
    assert configs == {f"studies/{s}/results/config.{k}.yaml" for s in ("silica", "kob_andersen")
                       for k in ("resolved", "quench")}
    assert re.search(r"softness compare --study silica=studies/silica/results "
                     r"--study kob_andersen=studies/kob_andersen/results", text)
    assert not (tmp_path / "studies").exists()


def test_study_dag_lint_is_clean(tmp_path):
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "compare.smk"),
                          "--directory", str(tmp_path), "--lint", "--configfile",
                          str(ROOT / "tests" / "strong_and_fragile_ci.yaml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "good condition" in res.stdout + res.stderr, res.stdout + res.stderr


def study_dry_run(tmp_path, studies: str):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(studies)
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "compare.smk"),
                           "--directory", str(tmp_path), "-n", "-p", "--configfile", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_study_md_groups_keep_their_work_files_under_the_study(tmp_path):
    # params that name files under results/ (the MD groups' work files and checkpoints) get the prefix
    (tmp_path / "groups.yaml").write_text("execution:\n  md_replicas_per_job: 2\n")
    res = study_dry_run(tmp_path, f"studies:\n  grouped: [config/test.yaml, {tmp_path / 'groups.yaml'}]\n")
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    work = "studies/grouped/results/T{}/trajectory.h5"
    assert f"--work {work.format(3500)} {work.format(4500)}" in text
    assert "for c in studies/grouped/results/T3500/.trajectory.h5.checkpoint.h5" in text
    # every path under results/ in every job is the study's
    assert "results/" not in text.replace("studies/grouped/results/", "")


@pytest.mark.parametrize("studies, message", [
    ("studies:\n  silica: [config/test.yaml]\n  ka: [config/no_such.yaml]\n", "study ka: config file"),
    ("studies:\n  Bad-Name: [config/test.yaml]\n", "study name 'Bad-Name'"),
    ("studies:\n  os: [config/test.yaml]\n", "study name 'os'"),
    ("studies:\n  ka: [config/kob_andersen.yaml, config/test.yaml]\n", "study ka: invalid config"),
], ids=["missing config file", "bad name", "name the workflow uses", "invalid config"])
def test_study_config_errors_name_the_study(tmp_path, studies, message):
    res = study_dry_run(tmp_path, studies)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
