"""The workflow on a real SLURM: a one-node cluster on this machine (tests/slurm_cluster.py),
driven through profiles/slurm exactly as users run it, every job submitted with sbatch.

One module fixture runs the whole DAG of config/test.yaml + tests/slurm_ci.yaml through
SLURM, with the partition and account given on the command line (the profile's documented
override). Both temperatures run in one MD job (execution.md_replicas_per_job: 2, as on a GPU
cluster). While it runs, that job is sent SIGTERM, the signal SLURM sends at a job's wall
time, once it has a checkpoint; the profile's one retry continues it, and is stopped the same
way; the command fails, and rerunning it continues both runs from their checkpoints.
Meanwhile the same config runs locally (--cores 1) as the reference. If SLURM cannot start
here, the tests fail with one line saying why.
"""

import importlib.metadata
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from slurm_cluster import ACCOUNT, CPU_PARTITION, LocalSlurm, SlurmUnavailable

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TEST_CONFIG = ROOT / "config" / "test.yaml"
SLURM_CONFIG = Path(__file__).with_name("slurm_ci.yaml")
PROFILE = ROOT / "profiles" / "slurm"
STOPPED_T = "3500"  # a temperature of the MD job that is stopped as at its wall time
MD_GROUP = "T3500_4500"  # that job: both temperatures as replicas
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def snakemake_args(workdir, *args):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
            "--configfile", str(TEST_CONFIG), str(SLURM_CONFIG), *map(str, args)]


def slurm_command(workdir):
    """The users' command: the profile, partition and account given on the command line.

    One setting differs from the profile, for test time: the first status check after 2 s
    (the profile: 10 s).
    """
    return snakemake_args(workdir, "--workflow-profile", PROFILE, "--default-resources",
                          f"slurm_partition={CPU_PARTITION}", f"slurm_account={ACCOUNT}",
                          "--slurm-init-seconds-before-status-checks", 2)


def rule_of(job: dict) -> str:
    m = re.match(r"rule_([A-Za-z_]\w*?)(_wildcards_.*)?$", job.get("Comment", ""))
    return m.group(1) if m else ""


def planned_resources(dry_run_output: str) -> dict:
    """Rule -> {resource: value} from the `resources:` lines of a dry run."""
    out, rule = {}, None
    for line in dry_run_output.splitlines():
        if m := re.match(r"\s*(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"\s*resources: (.*)", line)):
            out[rule] = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
    return out


def minutes(limit: str) -> int:
    """Minutes of a SLURM time limit ([days-]hours:minutes:seconds)."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except SlurmUnavailable as exc:
        c.stop()
        pytest.fail(f"SLURM cannot start on this machine: {exc}", pytrace=False)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    work, ref = tmp_path_factory.mktemp("on_slurm"), tmp_path_factory.mktemp("local")
    t0 = time.monotonic()
    plan = subprocess.run([*slurm_command(work), "-n", "-p"], cwd=ROOT, env=cluster.env, capture_output=True,
                          text=True, timeout=120)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    targets = ("results/arrhenius.h5", "results/summary.json")  # every product but the figures
    local_log = open(ref / "local.log", "w")  # noqa: SIM115
    local = subprocess.Popen(snakemake_args(ref, "--cores", 1, *targets), cwd=ROOT, stdout=local_log,
                             stderr=subprocess.STDOUT)
    try:
        checkpoint = work / "results" / f"T{STOPPED_T}" / ".trajectory.h5.checkpoint.h5"
        md_log = work / "results" / "logs" / "md_groups" / f"{MD_GROUP}.log"
        log = open(work / "first.log", "w")  # noqa: SIM115
        first = subprocess.Popen(slurm_command(work), cwd=ROOT, env=cluster.env, stdout=log,
                                 stderr=subprocess.STDOUT)
        stopped = []  # the job, once it has a checkpoint, then its retry once it has started
        while first.poll() is None and len(stopped) < 2:
            running = [j for j in cluster.jobs() if j["Comment"] == f"rule_md_run_group_wildcards_{MD_GROUP}"
                       and j["JobState"] == "RUNNING" and j["JobId"] not in {s["JobId"] for s in stopped}]
            ready = (checkpoint.exists() if not stopped
                     else md_log.exists() and "resuming from" in md_log.read_text(errors="replace"))
            if running and ready:
                stopped.append(running[0])
                cluster.run("scancel", "--signal=TERM", "--full", running[0]["JobId"])
            time.sleep(0.2)
        first.wait(timeout=900)
        log.close()
        jobs_first = cluster.jobs()
        second = subprocess.run(slurm_command(work), cwd=ROOT, env=cluster.env, capture_output=True,
                                text=True, timeout=900)
        slurm_s = time.monotonic() - t0
        local.wait(timeout=900)
    finally:
        if local.poll() is None:
            local.kill()
        local_log.close()
    return {"work": work, "ref": ref, "plan": plan.stdout + plan.stderr, "stopped": stopped,
            "first_rc": first.returncode, "first_out": (work / "first.log").read_text(),
            "second": second, "local_rc": local.returncode, "local_out": (ref / "local.log").read_text(),
            "jobs_first": jobs_first, "jobs": cluster.jobs(), "seconds": slurm_s}


def test_slurm_run_finishes_every_product_and_figure(slurm_run):
    second = slurm_run["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    results = slurm_run["work"] / "results"
    for name in ("relaxation", "rearrangement_probability", "barriers", "crossover", "pair_correlation",
                 "p_hop", "softness_distributions", "classifier"):
        assert (results / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert (results / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    print(f"SLURM end-to-end (both commands, local reference alongside): {slurm_run['seconds']:.0f} s")


def _datasets(path) -> dict:
    out = {}

    def keep(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(keep)
    return out


def _products(results: Path, temperatures) -> list:
    per_t = ("trajectory", "features", "hops", "dynamics", "softness")
    return (["quench/quench.h5", "model.h5", "arrhenius.h5"]
            + [f"T{t}/{p}.h5" for t in temperatures for p in per_t])


def test_products_equal_those_of_a_local_run(slurm_run):
    assert slurm_run["local_rc"] == 0, slurm_run["local_out"]
    assert slurm_run["second"].returncode == 0
    work, ref = slurm_run["work"] / "results", slurm_run["ref"] / "results"
    temps = yaml.safe_load(SLURM_CONFIG.read_text())["temperatures_K"]
    for product in _products(work, temps):
        mine, theirs = _datasets(work / product), _datasets(ref / product)
        assert mine.keys() == theirs.keys(), product
        for name, value in theirs.items():
            if value.dtype.kind in "fc":
                np.testing.assert_array_equal(mine[name], value, err_msg=f"{product}:{name}")
            else:
                assert np.array_equal(mine[name], value), f"{product}:{name}"
    assert json.loads((work / "summary.json").read_text()) == json.loads((ref / "summary.json").read_text())


def test_every_job_went_through_sbatch_with_its_rules_resources(slurm_run):
    planned = planned_resources(slurm_run["plan"])
    jobs = [j for j in slurm_run["jobs"] if rule_of(j)]
    by_rule = {}
    for j in jobs:
        by_rule.setdefault(rule_of(j), []).append(j)
    # every rule but the local ones (the target `all`, md_run_member's hard links) ran as SLURM
    # jobs (the MD group twice more: the stopped job's retry and its continuation by the rerun)
    assert set(by_rule) == set(planned) - {"all", "md_run_member"}
    temps = yaml.safe_load(SLURM_CONFIG.read_text())["temperatures_K"]
    assert len(by_rule["md_run_group"]) == 1 + 2
    assert all(len(by_rule[r]) == len(temps) for r in ("features", "hops", "dynamics", "apply"))
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]
    for rule, js in by_rule.items():
        want = planned[rule]
        for j in js:
            assert j["Partition"] == CPU_PARTITION and j["Account"] == ACCOUNT, j
            assert minutes(j["TimeLimit"]) == int(want["runtime"]), (rule, j["TimeLimit"], want)
            assert j["MinMemoryNode"] == f"{int(want['mem_mb'])}M", (rule, j["MinMemoryNode"], want)
            assert j["JobState"] in ("COMPLETED", "FAILED"), (rule, j["JobState"])
        if rule in profile:  # the profile's per-rule settings reached sbatch
            for key in ("runtime", "mem_mb"):
                if key in profile[rule]:
                    assert int(want[key]) == profile[rule][key], (rule, key)


def test_a_job_stopped_at_its_wall_time_continues_on_rerun(slurm_run):
    stopped = slurm_run["stopped"]
    assert len(stopped) == 2, f"stopped {len(stopped)} MD job(s) instead of the job and its retry"
    assert slurm_run["first_rc"] != 0, slurm_run["first_out"]
    for job in stopped:
        killed = next(j for j in slurm_run["jobs_first"] if j["JobId"] == job["JobId"])
        assert killed["JobState"] == "FAILED", killed
        assert f"SLURM-job '{job['JobId']}' failed" in slurm_run["first_out"]
    results = slurm_run["work"] / "results"
    log = (results / "logs" / "md_groups" / f"{MD_GROUP}.log").read_text()
    # (the retry was stopped once its log said so; Snakemake restarts the log of a rerun job)
    assert log.startswith("resuming from")  # the rerun of the command continued the runs
    # (at the step of the checkpoint the stopped job left: 0 if it was stopped right after its first)
    assert re.search(r"resuming the runs at 3500, 4500 K at step \d+", log), log
    # each continued run has exactly the frames of the uninterrupted local one
    for T in yaml.safe_load(SLURM_CONFIG.read_text())["temperatures_K"]:
        mine = _datasets(results / f"T{T}" / "trajectory.h5")
        theirs = _datasets(slurm_run["ref"] / "results" / f"T{T}" / "trajectory.h5")
        pos = "particles/all/position/value"
        assert mine[pos].shape == theirs[pos].shape and mine[pos].shape[0] == 101
        np.testing.assert_array_equal(mine[pos], theirs[pos])
        assert not (results / f"T{T}" / ".trajectory.h5.checkpoint.h5").exists()
        # md_run_member gave the group's product its place as a hard link
        assert (results / f"T{T}" / "trajectory.h5").stat().st_nlink == 2


def test_a_machine_without_slurm_gets_one_line_saying_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("slurm_cluster._which", lambda name: None)
    with pytest.raises(SlurmUnavailable) as err:
        LocalSlurm(tmp_path).start()
    message = str(err.value)
    assert "\n" not in message and "not installed" in message and "slurmctld" in message


def test_the_plugin_version_tested_is_the_one_pinned():
    pinned = re.search(r'"snakemake-executor-plugin-slurm==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml pins no exact snakemake-executor-plugin-slurm version"
    assert importlib.metadata.version("snakemake-executor-plugin-slurm") == pinned.group(1)
