"""The Snakemake workflow: lint, dry runs of every config, config validation before any job,
and one end-to-end run of config/test.yaml (interrupted during MD and resumed) in a temporary
directory, shared by the checks of its products, of "nothing to do" and of what a config
change reruns."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from softness import config as config_mod
from softness.trajectory import read_trajectory

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TEST_CONFIG = ROOT / "config" / "test.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def snakemake_command(workdir, *args):
    """snakemake on this repository's Snakefile, with its products in ``workdir``.

    Run from the repository root, so profiles/default applies as it does for users.
    """
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
            *map(str, args)]


def snakemake(workdir, *args, timeout=600):
    return subprocess.run(snakemake_command(workdir, *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def job_counts(output: str) -> dict:
    """Rule -> number of jobs, from the "Job stats" table of a (dry) run."""
    counts = {}
    table = output.split("Job stats:")[-1] if "Job stats:" in output else ""
    for line in table.splitlines():
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s+(\d+)\s*", line)
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def dry_run(workdir, *args) -> dict:
    res = snakemake(workdir, "-n", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    if "Nothing to be done" in res.stdout + res.stderr:
        return {}
    return job_counts(res.stdout + res.stderr)


def schema_key_paths(schema: dict, prefix="") -> set:
    """Every key of the config schema, as dotted paths (objects descended, arrays not)."""
    keys = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        keys.add(path)
        if sub.get("type") == "object" and "properties" in sub:
            keys |= schema_key_paths(sub, path + ".")
    return keys


def config_key_paths(cfg: dict, prefix="", schema: dict | None = None) -> set:
    """Every key of a config, as dotted paths; mappings whose keys are data (per-species values,
    per-temperature run lengths: no ``properties`` in the schema) are not descended."""
    schema = config_mod.schema() if schema is None else schema
    keys = set()
    for key, value in cfg.items():
        keys.add(f"{prefix}{key}")
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            keys |= config_key_paths(value, f"{prefix}{key}.", sub)
    return keys


# ---------------------------------------------------------------------------- configs

def test_default_config_is_the_schema_defaults_written_out():
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert config_mod.resolve(raw) == config_mod.resolve({})
    # every science key is listed explicitly, so the file documents the whole default
    missing = schema_key_paths(config_mod.schema()) - config_key_paths(raw)
    assert not missing, f"config/config.yaml does not list {sorted(missing)}"


@pytest.mark.parametrize("name", ["test", "paper", "kob_andersen"])
def test_other_configs_are_valid_overrides(name):
    raw = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = config_mod.resolve({**base, **{k: ({**base[k], **v} if isinstance(v, dict) else v)
                                         for k, v in raw.items()}})
    assert cfg["temperatures_K"] == raw["temperatures_K"]
    assert not (config_key_paths(raw) - schema_key_paths(config_mod.schema()))


def test_paper_config_is_the_paper_protocol():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert 2900 <= 3 * cfg["system"]["n_sio2"] <= 3100
    assert cfg["quench"]["T_melt_K"] == 6000 and cfg["quench"]["cooling_rate_K_per_ps"] == 5.0
    assert cfg["train"]["T_train_K"] == 2500 == min(cfg["temperatures_K"])
    assert max(cfg["temperatures_K"]) == 6000


@pytest.mark.parametrize("name", ["config", "test", "paper", "kob_andersen", "import"])
def test_report_captions_describe_the_system_of_the_config(name):
    # `snakemake --report` renders each caption with Jinja on the resolved config: a caption that
    # reads another system's keys fails the whole report, and one that names Si and O misleads.
    from jinja2 import Environment
    from snakemake.utils import update_config

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    if name == "import":
        change = {"temperatures_K": [3000.0, 4000.0], "import": {
            "trajectories": {3000.0: "cold.lammpstrj", 4000.0: "hot.lammpstrj"}, "species": {1: "Si", 2: "O"},
            "frame_interval_fs": 20.0, "system": "silica"}}
    else:
        change = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    update_config(cfg, change)
    cfg = config_mod.resolve(config_mod.replace_run_length_mappings(cfg, change))

    class Snakemake:  # what a caption sees (the figures' rules have no params or wildcards)
        config, params, wildcards = cfg, {}, {}

    env = Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report renders them
    studies = {"strong_and_fragile.rst", "strong_vs_fragile.rst"}  # workflow/compare.smk's
    text = {p.stem: env.from_string(p.read_text()).render(snakemake=Snakemake)
            for p in (ROOT / "workflow" / "report").glob("*.rst") if p.name not in studies}
    assert len(text) == 9
    summary = " ".join(text["workflow"].split())
    if name == "import":
        assert "trajectories of the config's ``import`` section" in summary and "species Si, O" in summary
        assert "quenched" not in summary
    elif name == "kob_andersen":
        assert "Kob-Andersen 80:20 Lennard-Jones mixture" in summary
        assert f"N = {cfg['system']['n_particles']} particles" in summary
        assert not [k for k, t in text.items() if re.search(r"\b(Si|O)\b|silica", t)]
    else:
        assert "liquid silica (BKS, JAX MD)" in summary
        assert f"N = {3 * cfg['system']['n_sio2']} atoms" in summary
        assert "Si-O peak near 1.6 A" in text["pair_correlation"]


def test_science_config_holds_no_compute_settings():
    keys = set()
    for n in ("config", "test", "paper", "kob_andersen"):
        keys |= config_key_paths(yaml.safe_load((ROOT / "config" / f"{n}.yaml").read_text()))
    assert not [k for k in keys if re.search(r"thread|gpu|cores|mem|partition|account", k, re.I)]


# ---------------------------------------------------------------------------- static checks

def test_lint_is_clean(tmp_path):
    res = snakemake(tmp_path, "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "good condition" in res.stdout + res.stderr


@pytest.mark.parametrize("name", ["config", "test", "paper", "kob_andersen"])
def test_dry_run_plans_every_stage(tmp_path, name):
    path = ROOT / "config" / f"{name}.yaml"
    n_t = len(yaml.safe_load(path.read_text())["temperatures_K"])
    counts = dry_run(tmp_path, "--configfile", path)
    per_temperature = {"md_run", "features", "hops", "dynamics", "apply"}
    once = {"quench", "train", "arrhenius", "all"}
    figures = {r for r in counts if r.startswith("figure_")}
    assert {r: counts[r] for r in per_temperature} == dict.fromkeys(per_temperature, n_t)
    assert {r: counts[r] for r in once} == dict.fromkeys(once, 1)
    assert len(figures) == 8 and all(counts[r] == 1 for r in figures)
    assert not (tmp_path / "results").exists()


def test_dry_run_packs_temperatures_into_md_groups(tmp_path):
    # config/test.yaml's 3500, 4500, 6000 K two per job: a group of two and a group of one,
    # and each temperature's trajectory made from its group by md_run_member.
    packing = tmp_path / "packing.yaml"
    packing.write_text("execution:\n  md_replicas_per_job: 2\n")
    res = snakemake(tmp_path, "-n", "--configfile", TEST_CONFIG, packing)
    assert res.returncode == 0, res.stdout + res.stderr
    counts = job_counts(res.stdout)
    assert "md_run" not in counts and counts["md_run_group"] == 2 and counts["md_run_member"] == 3
    assert all(counts[r] == 3 for r in ("features", "hops", "dynamics", "apply"))
    out = res.stdout
    assert "results/md_groups/T3500_4500" in out and "results/md_groups/T6000" in out
    assert re.search(r"--temperature 3500 4500 --out results/md_groups/T3500_4500/T3500.h5 "
                     r"results/md_groups/T3500_4500/T4500.h5 --work results/T3500/trajectory.h5 "
                     r"results/T4500/trajectory.h5 --keep-going", out), out[-3000:]
    assert not (tmp_path / "results").exists()


def test_a_run_length_mapping_on_the_command_line_replaces_the_default_one(tmp_path):
    # config/config.yaml maps 2850-4500 K to production times (50 ps at 3450-4500 K). A study
    # that maps only 3000 K, to 10 ps, runs every temperature for 10 ps (the nearest end of its
    # mapping): Snakemake's key-by-key merge would keep the default's entries and give 3500 and
    # 4000 K 50 ps. Groups pack temperatures of equal run lengths, so all three share one group
    # only when the study's mapping is taken whole.
    study = tmp_path / "lengths.yaml"
    study.write_text("temperatures_K: [3000, 3500, 4000]\n"
                     "run:\n  production_time_fs: {3000: 10000.0}\n  equilibration_time_fs: 5000.0\n"
                     "execution:\n  md_replicas_per_job: 3\n")
    res = snakemake(tmp_path, "-n", "--configfile", study)
    assert res.returncode == 0, res.stdout + res.stderr
    assert job_counts(res.stdout)["md_run_group"] == 1
    assert "results/md_groups/T3000_3500_4000" in res.stdout


def test_dry_run_plans_every_independent_run(tmp_path):
    # config/test.yaml's 3500, 4500, 6000 K with 2 independent runs each: every per-temperature rule
    # runs once per run, run 0 in results/T<T>/ as with one run and run 1 in results/T<T>/run1/;
    # training, the stability check and the planted test read run 0, the Arrhenius analysis all runs.
    runs = tmp_path / "runs.yaml"
    runs.write_text("run:\n  replicas_per_temperature: 2\n")
    res = snakemake(tmp_path, "-n", "--configfile", TEST_CONFIG, runs)
    assert res.returncode == 0, res.stdout + res.stderr
    counts, out = job_counts(res.stdout), res.stdout
    assert {r: counts[r] for r in PER_TEMPERATURE_RULES} == dict.fromkeys(PER_TEMPERATURE_RULES, 6)
    assert all(counts[r] == 1 for r in ("quench", "train", "stability", "planted", "arrhenius", "all"))
    for T in (3500, 4500, 6000):
        assert f"--temperature {T} --out results/T{T}/trajectory.h5 --run-index 0 " in out
        assert f"--temperature {T} --out results/T{T}/run1/trajectory.h5 --run-index 1 " in out
        for product in ("features", "hops", "dynamics", "softness"):
            assert f"output: results/T{T}/run1/{product}.h5" in out
            assert f"log: results/logs/T{T}/run1/" in out
    pooled = " ".join(f"results/T{T}/softness.h5 results/T{T}/run1/softness.h5" for T in (3500, 4500, 6000))
    assert f"softness arrhenius --config results/config.resolved.yaml --softness {pooled} --hops" in out
    assert "--features results/T3500/features.h5 --hops results/T3500/hops.h5 --out results/model.h5" in out
    assert ("softness planted --config results/config.resolved.yaml --features results/T3500/features.h5 "
            "results/T4500/features.h5 results/T6000/features.h5 --dynamics") in out
    assert not re.search(r"(train|stability|planted) .*run1/", out)
    # With MD groups of two temperatures: each group holds one run index (softness run --run-index).
    packing = tmp_path / "packing.yaml"
    packing.write_text("execution:\n  md_replicas_per_job: 2\n")
    res = snakemake(tmp_path, "-n", "--configfile", TEST_CONFIG, runs, packing)
    assert res.returncode == 0, res.stdout + res.stderr
    counts, out = job_counts(res.stdout), res.stdout
    assert counts["md_run_group"] == 4 and counts["md_run_member"] == 6 and "md_run" not in counts
    assert re.search(r"--temperature 3500 4500 --out results/md_groups/T3500_4500_run1/T3500.h5 "
                     r"results/md_groups/T3500_4500_run1/T4500.h5 --work results/T3500/run1/trajectory.h5 "
                     r"results/T4500/run1/trajectory.h5 --keep-going --run-index 1 ", out), out[-3000:]
    assert "--work results/T6000/trajectory.h5 --keep-going --run-index 0 " in out
    assert not (tmp_path / "results").exists()


def test_slurm_profiles_dry_run(tmp_path):
    for profile in ("slurm", "slurm-gpu"):
        res = snakemake(tmp_path, "-n", "-p", "--workflow-profile", ROOT / "profiles" / profile,
                        "--configfile", TEST_CONFIG)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        md_resources = [line for line in out.splitlines() if "resources:" in line and "runtime=" in line]
        assert md_resources
        if profile == "slurm-gpu":
            assert any("gpu=1" in line for line in md_resources)
        else:
            assert not any("gpu=" in line for line in md_resources)


@pytest.mark.parametrize("bad, key", [
    ({"temperature_K": [3000]}, "temperature_K"),
    ({"system": {"n_sio2": "many"}}, "system.n_sio2"),
    ({"temperatures_K": []}, "temperatures_K"),
])
def test_broken_config_fails_before_any_job_naming_the_key(tmp_path, bad, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    res = snakemake(tmp_path, "--cores", 1, "--configfile", path)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"'{key}'" in out and "invalid config" in out
    assert not (tmp_path / "results").exists()  # no job ran


# ---------------------------------------------------------------------------- end to end

def _wait_for(predicate, proc, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _checkpoint_step(path) -> int:
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs["step"])
    except (OSError, KeyError):  # replaced or not yet complete
        return 0


def _interrupt_during_md(workdir, config) -> dict:
    """Start the pipeline and press Ctrl-C (SIGINT to the whole process group, as a terminal
    does) as soon as an MD run has checkpointed progress (a checkpoint past step 0).

    Returns what the interruption left: the checkpoint steps seen just before it and found
    after it, the md_run logs, the return code and Snakemake's output.
    """
    # A test runner started in the background (CI, nohup) ignores SIGINT, and Snakemake and
    # every job would inherit that. A Python handler here becomes the default disposition in
    # the exec'd child (no preexec_fn: forking a process that runs JAX threads must not run
    # Python in the child).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(snakemake_command(workdir, "--cores", 2, "--configfile", config), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    seen = {}

    def progressed():
        seen.clear()
        seen.update({p.parent.name: _checkpoint_step(p) for p in _md_checkpoints(workdir)})
        return any(step > 0 for step in seen.values())

    caught = _wait_for(progressed, proc, timeout=400)
    if caught:
        os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    return {
        "interrupted": caught, "output": out, "returncode": proc.returncode, "seen": dict(seen),
        "checkpoints": {p.parent.name: _checkpoint_step(p) for p in _md_checkpoints(workdir)},
        "trajectories": sorted(workdir.glob("results/T*/trajectory.h5")),
        "logs": {p.parent.name: p.read_text() for p in workdir.glob("results/logs/T*/md_run.log")},
    }


def _md_checkpoints(workdir):
    return sorted(workdir.glob("results/T*/.trajectory.h5.checkpoint.h5"))


def run_test_study(tmp_path_factory):
    """config/test.yaml run end to end, interrupted (Ctrl-C) during an MD run and rerun: the
    session fixture ``finished_run`` (tests/conftest.py), shared with tests/test_import_workflow.py.

    Returns (workdir, info): info["interruptions"] lists what each Ctrl-C left behind.
    """
    workdir = tmp_path_factory.mktemp("workflow")
    config = workdir / "test.yaml"
    config.write_text(TEST_CONFIG.read_text())
    # 1. Ctrl-C during an MD run. A run that was seen past step 0 can still finish in the
    #    instant before the signal lands; then no progress was at stake, so press Ctrl-C once
    #    more on the rerun (which continues from whatever checkpoints there are).
    interruptions = []
    for _ in range(2):
        interruptions.append(_interrupt_during_md(workdir, config))
        last = interruptions[-1]
        if not last["interrupted"] or any(step > 0 for step in last["checkpoints"].values()):
            break
    # 2. Rerun the same command: it must continue and finish.
    res = snakemake(workdir, "--cores", 2, "--configfile", config)
    info = {"interruptions": interruptions, "second_output": res.stdout + res.stderr}
    assert res.returncode == 0, (interruptions[-1]["output"][-3000:] + "\n-----\n"
                                 + info["second_output"][-5000:])
    return workdir, info


def test_interrupted_md_run_resumes_and_completes(finished_run):
    workdir, info = finished_run
    for kill in info["interruptions"]:
        assert kill["interrupted"], kill["output"][-3000:]
        assert kill["returncode"] != 0
        # Ctrl-C never loses a checkpoint: a run seen past step 0 kept a checkpoint at least
        # that far, unless it had already finished.
        for name, step in kill["seen"].items():
            if step > 0 and kill["checkpoints"].get(name, -1) < step:
                assert f"run at {name[1:]} K done" in kill["logs"].get(name, ""), (name, kill)
        # the killed jobs left no declared output behind, only their checkpoints
        assert not [p for p in kill["trajectories"] if p.parent.name in kill["checkpoints"]]
    last = info["interruptions"][-1]
    interrupted = sorted(last["checkpoints"])
    assert interrupted, "the checkpoint did not survive the interruption"
    assert max(last["checkpoints"].values()) > 0, info["interruptions"]
    for name in interrupted:
        log = (workdir / "results" / "logs" / name / "md_run.log").read_text()
        assert "resuming from" in log
        # it continued where its checkpoint was, not from the start
        resumed_at = re.findall(r"resuming the run at \S+ K at step (\d+)", log)
        assert resumed_at and int(resumed_at[-1]) == last["checkpoints"][name], log
        assert not (workdir / "results" / name / ".trajectory.h5.checkpoint.h5").exists()
        cfg = config_mod.load(workdir / "results" / "config.resolved.yaml")
        traj = read_trajectory(workdir / "results" / name / "trajectory.h5")
        interval = cfg["run"]["frame_interval_fs"]
        n_expected = int(round(cfg["run"]["production_time_fs"] / interval)) + 1
        assert traj.n_frames == n_expected
        np.testing.assert_allclose(np.diff(traj.time_fs), interval)
        assert np.all(np.diff(traj.step) > 0)
        assert np.all(np.isfinite(traj.positions))


def test_products_are_well_formed(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    cfg = config_mod.load(results / "config.resolved.yaml")
    temps = cfg["temperatures_K"]
    n_atoms = 3 * cfg["system"]["n_sio2"]
    with h5py.File(results / "quench" / "quench.h5") as f:
        assert f["particles/all/position/value"].shape[1:] == (n_atoms, 3)
    for t in temps:
        d = results / f"T{t:g}"
        traj = read_trajectory(d / "trajectory.h5")
        assert traj.n_atoms == n_atoms and np.all(np.isfinite(traj.positions))
        assert traj.attrs["temperature_K"] == pytest.approx(t)
        with h5py.File(d / "features.h5") as f:
            x = f["features"]
            assert x.shape[1] == n_atoms and x.shape[2] == f["feature_names"].shape[0]
            assert np.all(np.isfinite(x[()]))
            assert f.attrs["temperature_K"] == pytest.approx(t)
        with h5py.File(d / "hops.h5") as f:
            assert f["p_hop"].shape == (traj.n_frames, n_atoms) == f["labels"].shape
            assert set(np.unique(f["labels"][()])) <= {-1, 0, 1}
            assert f.attrs["temperature_K"] == pytest.approx(t)
        with h5py.File(d / "dynamics.h5") as f:
            assert f["msd_A2"].shape == f["F_s"].shape == (2, f["lag_time_fs"].shape[0])
            assert np.all(np.isfinite(f["msd_A2"][()])) and np.all(f["D_A2_per_fs"][()] > 0)
        with h5py.File(d / "softness.h5") as f:
            with h5py.File(d / "features.h5") as ff:
                assert f["softness"].shape == ff["features"].shape[:2]
            assert np.all(np.isfinite(f["softness"][()]))
            assert f.attrs["temperature_K"] == pytest.approx(t)
    _check_model_against_its_examples(results, cfg)
    with h5py.File(results / "arrhenius.h5") as f:
        np.testing.assert_allclose(f["temperature_K"][()], sorted(temps))
        t0, t0_err = f["lines/T0_K"][()], f["lines/T0_K_err"][()]
        n_fitted = f["lines/n_bins_fitted"][()]
    summary = json.loads((results / "summary.json").read_text())
    assert list(summary["species"]) == ["Si", "O"]
    for sp, name in enumerate(("Si", "O")):  # each species' numbers under its own name
        entry = summary["species"][name]
        assert entry["n_bins_fitted"] == n_fitted[sp]
        for got, want in ((entry["T0"]["value"], t0[sp]), (entry["T0"].get("error"), t0_err[sp])):
            assert (got is None) if not np.isfinite(want) else got == pytest.approx(want)
    assert "| T0 = e1/Sigma1 (K) |" in (results / "summary.md").read_text()
    for name in ("relaxation", "rearrangement_probability", "barriers", "crossover", "pair_correlation",
                 "p_hop", "softness_distributions", "classifier"):
        png = results / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000, name
        assert (results / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        executed = json.loads((results / "logs" / "figures" / f"{name}.ipynb").read_text())
        outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), name
    for rule in ("quench", "train", "arrhenius"):
        assert (results / "benchmarks" / f"{rule}.tsv").exists()


def _check_model_against_its_examples(results, cfg):
    """The model's held-out accuracy recounted from its stored examples, the features at T_train
    and its hyperplanes; and the softness at T_train recomputed from the same hyperplanes."""
    t_train = config_mod.training_temperature(cfg)
    with h5py.File(results / "model.h5") as m, h5py.File(results / f"T{t_train:g}" / "features.h5") as ff, \
            h5py.File(results / f"T{t_train:g}" / "softness.h5") as fs:
        w, b, mean, scale = (m[k][()] for k in ("weights", "intercept", "mean", "scale"))
        ex = {k: m["training"][k][()] for k in ("species", "frame", "atom", "label", "is_test")}
        row_of = {int(f): i for i, f in enumerate(ff["frames"][()])}
        x = ff["features"][()].astype(np.float64)
        species = ff["species"][()]
        for sp in (0, 1):
            mine = ex["species"] == sp
            assert np.all(species[ex["atom"][mine]] == sp)
            # Balanced classes, split into the stored training and held-out counts.
            assert np.sum(ex["label"][mine] == 1) == np.sum(ex["label"][mine] == 0) > 0
            test = mine & ex["is_test"].astype(bool)
            assert m["n_test"][sp] == test.sum() and m["n_train"][sp] == mine.sum() - test.sum()
            feats = x[[row_of[int(f)] for f in ex["frame"][test]], ex["atom"][test]]
            predicted = ((feats - mean[sp]) / scale[sp]) @ w[sp] + b[sp] > 0
            correct = np.sum(predicted == (ex["label"][test] == 1))
            acc, n = m["accuracy"][sp], test.sum()
            assert abs(acc * n - correct) <= 1  # float32 features: one example may sit on the plane
            assert m["accuracy_err"][sp] == pytest.approx(np.sqrt(acc * (1 - acc) / n))
            # The chosen C has the best cross-validated accuracy of the grid.
            assert m["C"][sp] == m["C_grid"][int(np.argmax(m["cv_accuracy_mean"][sp]))]
            # S = (w . x_std + b) / (|w| sigma_S) on every atom of this species and frame, with
            # sigma_S the spread of the plain distance over all of them: S has std 1 at T_train.
            x_std = (x[:, species == sp] - mean[sp]) / scale[sp]
            distance = (x_std @ w[sp] + b[sp]) / np.linalg.norm(w[sp])
            assert m["softness_scale"][sp] == pytest.approx(distance.std(), rel=1e-3)
            np.testing.assert_allclose(fs["softness"][()][:, species == sp],
                                       distance / m["softness_scale"][sp], rtol=1e-4, atol=1e-4)


def test_report_has_every_figure_and_caption(finished_run, tmp_path):
    workdir, _ = finished_run
    report = tmp_path / "report.html"
    res = snakemake(workdir, "--configfile", workdir / "test.yaml", "--report", report)
    assert res.returncode == 0, res.stdout + res.stderr
    html = report.read_text()
    for name in ("relaxation", "rearrangement_probability", "barriers", "crossover", "pair_correlation",
                 "p_hop", "softness_distributions", "classifier"):
        assert f"{name}.png" in html
        caption = (ROOT / "workflow" / "report" / f"{name}.rst").read_text()
        first_words = " ".join(caption.split()[:3])
        assert first_words in " ".join(html.split()), name
    # captions are rendered with the run's config
    assert "at temperatures [3500, 4500, 6000]" in html


def test_rerun_with_nothing_changed_does_nothing(finished_run):
    workdir, _ = finished_run
    assert dry_run(workdir, "--configfile", workdir / "test.yaml") == {}


def test_changing_one_temperature_reruns_only_what_depends_on_it(finished_run, tmp_path):
    workdir, _ = finished_run
    cfg = yaml.safe_load((workdir / "test.yaml").read_text())
    temps = sorted(cfg["temperatures_K"])
    middle = temps[len(temps) // 2]
    cfg["temperatures_K"] = [t if t != middle else middle + 100 for t in cfg["temperatures_K"]]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    counts = dry_run(workdir, "--configfile", changed)
    per_temperature = {"md_run", "features", "hops", "dynamics", "apply"}
    # the new temperature's own jobs, once each; nothing for the quench, the model, or the others
    assert {r: counts.get(r) for r in per_temperature} == dict.fromkeys(per_temperature, 1)
    assert "quench" not in counts and "train" not in counts
    # the aggregates over temperatures, and only the figures drawn from them
    assert counts["arrhenius"] == 1
    assert "figure_classifier" not in counts
    assert counts["figure_pair_correlation"] == counts["figure_relaxation"] == 1
    res = snakemake(workdir, "-n", "--configfile", changed)
    assert f"T{middle + 100:g}" in res.stdout and f"T{middle:g}/" not in res.stdout


def test_changing_an_analysis_key_reruns_only_the_analysis(finished_run, tmp_path):
    workdir, _ = finished_run
    cfg = yaml.safe_load((workdir / "test.yaml").read_text())
    cfg["arrhenius"]["n_bootstrap"] += 1
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    counts = dry_run(workdir, "--configfile", changed)
    assert counts["arrhenius"] == 1
    assert not {"quench", "md_run", "features", "hops", "dynamics", "train", "apply"} & set(counts)


# ---------------------------------------------------------------------------- rerun triggers
# What each stage's command reads from the config, written down from the code (softness/md.py,
# structure.py, hops.py, dynamics.py, classifier.py, arrhenius.py), not from the rules: a rule
# whose params leave out a section its command reads would keep a stale product when that
# section changes. (temperatures_K is checked above: it reruns only the new temperature.)
STAGE_READS = {
    "quench": {"seed", "precision", "system", "potential", "md", "quench"},
    "md_run": {"seed", "precision", "system", "potential", "md", "run"},
    "features": {"precision", "features"},
    "hops": {"hops"},
    "dynamics": {"dynamics"},
    "train": {"seed", "train"},
    "stability": {"seed", "train"},
    "planted": {"seed", "train", "hops", "arrhenius", "planted"},
    "apply": set(),
    "arrhenius": {"seed", "arrhenius"},
}
#: The rules whose products each rule reads.
RULE_INPUTS = {
    "quench": set(), "md_run": {"quench"}, "features": {"md_run"}, "hops": {"md_run"}, "dynamics": {"md_run"},
    "train": {"features", "hops"}, "stability": {"train", "features", "hops"},
    "planted": {"features", "dynamics", "train"},
    "apply": {"train", "features"}, "arrhenius": {"apply", "hops", "dynamics", "train", "stability"},
    "figure_relaxation": {"dynamics", "arrhenius"}, "figure_rearrangement_probability": {"arrhenius"},
    "figure_barriers": {"arrhenius"}, "figure_crossover": {"arrhenius"},
    "figure_pair_correlation": {"md_run"},
    "figure_p_hop": {"hops"}, "figure_softness_distributions": {"apply"}, "figure_classifier": {"train"},
}
PER_TEMPERATURE_RULES = {"md_run", "features", "hops", "dynamics", "apply"}

#: One key per config section changed to another valid value (on top of config/test.yaml).
SECTION_CHANGES = {
    "seed": ("seed", None, 2021),
    "precision": ("precision", None, "float64"),
    "system": ("system", "density_g_cm3", 2.15),
    "potential": ("potential", "cutoff_A", 6.9),
    "md": ("md", "thermostat_tau_fs", 110.0),
    "quench": ("quench", "cooling_rate_K_per_ps", 2100.0),
    "run": ("run", "production_time_fs", 4200.0),
    "features": ("features", "radial_dr_A", 0.2),
    "hops": ("hops", "t_R_fs", 240.0),
    "dynamics": ("dynamics", "q_inv_A", 1.8),
    "train": ("train", "n_per_class", 110),
    "arrhenius": ("arrhenius", "n_bins", 5),
    "planted": ("planted", "P_max", 0.25),
}


def expected_reruns(section: str) -> tuple[set, set]:
    """The rules that read ``section`` and all the rules a change of it makes stale."""
    direct = {rule for rule, reads in STAGE_READS.items() if section in reads}
    stale = set(direct)
    while True:
        more = {rule for rule, inputs in RULE_INPUTS.items() if inputs & stale} - stale
        if not more:
            break
        stale |= more
    return direct, stale


def summary_table(output: str) -> dict:
    """Rule -> [(output file, status, plan)] from ``snakemake --summary``."""
    rows = {}
    for line in output.splitlines():
        cols = line.split("\t")
        if len(cols) == 6 and cols[0] != "output_file":
            rows.setdefault(cols[2], []).append((cols[0], cols[4], cols[5]))
    return rows


def test_every_section_has_a_change_and_every_rule_an_entry(tmp_path):
    # (execution is not science: it packs the same runs into jobs, tests/test_md_groups.py; import
    # is off in these runs: tests/test_import_workflow.py covers its reruns)
    assert set(SECTION_CHANGES) == set(config_mod.resolve({})) - {"temperatures_K", "execution", "import"}
    counts = dry_run(tmp_path, "--configfile", TEST_CONFIG)
    assert set(counts) - {"all"} == set(RULE_INPUTS)
    assert set(STAGE_READS) <= set(RULE_INPUTS)


@pytest.fixture(scope="module")
def section_summaries(finished_run, tmp_path_factory):
    """``snakemake --summary`` of the finished workflow with one key of each config section changed
    (all at once, as separate Snakemake processes: a summary only reads the workflow's state)."""
    workdir, _ = finished_run
    base = yaml.safe_load((workdir / "test.yaml").read_text())
    d = tmp_path_factory.mktemp("sections")
    procs = {}
    for section, (top, key, value) in SECTION_CHANGES.items():
        cfg = json.loads(json.dumps(base))
        if key is None:
            cfg[top] = value
        else:
            cfg.setdefault(top, {})[key] = value
        path = d / f"{section}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        command = snakemake_command(workdir, "--summary", "--configfile", path)
        procs[section] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True)
    out = {}
    for section, proc in procs.items():
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (section, text[-3000:])
        out[section] = text
    return out


@pytest.mark.parametrize("section", sorted(SECTION_CHANGES))
def test_changing_one_key_of_a_section_reruns_exactly_its_dependants(section_summaries, section):
    """Every product of a rule that reads the section has its params changed, no other; and
    exactly those and everything made from them are planned for an update."""
    table = summary_table(section_summaries[section])
    assert set(table) == set(RULE_INPUTS), section_summaries[section][-3000:]
    direct, stale = expected_reruns(section)
    assert direct, section
    for rule, rows in table.items():
        for path, status, plan in rows:
            assert (status == "params changed") == (rule in direct), (section, rule, path, status)
            assert (plan != "no update") == (rule in stale), (section, rule, path, plan)
