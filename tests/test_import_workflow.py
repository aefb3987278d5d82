"""The DAG in import mode (config section `import`): it starts from the user's trajectories, one per
temperature, through `softness import`, instead of the quench and the MD runs, and runs everything
downstream unchanged.

* a dry run plans one import per temperature and no quench or MD job;
* bad import configs are refused in one sentence before any job (softness.config and the Snakefile);
* the must-show of issue 13: config/test.yaml's native run, its trajectories written out as LAMMPS
  dumps with image flags and run again in import mode, gives the same softness (float32 tolerance)
  and the same Arrhenius summary (relative 1e-5). The native run is test_workflow's (the session
  fixture finished_run); the import-mode run is restricted to the targets results/arrhenius.h5 and
  results/summary.json (which also make the model and the stability check), leaving out the
  figures and the planted test, to keep the test at a few minutes.
"""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from softness import config as config_mod
from softness.errors import SoftnessError
from softness.trajectory import read_trajectory

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TEST_CONFIG = ROOT / "config" / "test.yaml"
TEMPERATURES = (3500, 4500, 6000)  # config/test.yaml's
TARGETS = ("results/arrhenius.h5", "results/summary.json")


def snakemake(workdir, *args, timeout=900):
    """snakemake on this repository's Snakefile with its products in ``workdir`` (run from the
    repository root, so profiles/default applies as for users)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
               *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict:
    """Rule -> number of jobs, from the "Job stats" table of a (dry) run."""
    counts = {}
    for line in output.split("Job stats:")[-1].splitlines() if "Job stats:" in output else ():
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s+(\d+)\s*", line)
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"[.;:]\s+[A-Z]", message)


def read_yaml(path):
    return yaml.safe_load(Path(path).read_text())


def merged(base: dict, change: dict) -> dict:
    """``change`` merged on top of ``base`` (dicts recursively), as snakemake --configfile does."""
    out = json.loads(json.dumps(base))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def import_section(files, **extra) -> dict:
    """An `import` section: the LAMMPS types 1 = Si, 2 = O of silica, 20 fs between frames."""
    return {"import": {"trajectories": {T: str(p) for T, p in files.items()}, "species": {1: "Si", 2: "O"},
                       "frame_interval_fs": 20.0, "system": "silica", **extra}}


def study_config(change: dict | None = None) -> dict:
    """config/test.yaml on top of config/config.yaml, with ``change`` on top (unresolved)."""
    cfg = merged(read_yaml(ROOT / "config" / "config.yaml"), read_yaml(TEST_CONFIG))
    return merged(cfg, change or {})


@pytest.fixture
def dummy_files(tmp_path):
    """One (empty, never read) LAMMPS dump per temperature of config/test.yaml, in tmp_path/dumps."""
    d = tmp_path / "dumps"
    d.mkdir()
    files = {}
    for T in TEMPERATURES:
        files[T] = d / f"T{T}.lammpstrj"
        files[T].write_text("")
    return files


# ---------------------------------------------------------------------------- dry run

def test_dry_run_plans_an_import_per_temperature_and_no_quench_or_md(tmp_path, dummy_files):
    relative = {T: p.relative_to(tmp_path) for T, p in dummy_files.items()}  # from the working directory
    path = tmp_path / "import.yaml"
    path.write_text(yaml.safe_dump(import_section(relative, length_unit_A=1.5)))
    # md_replicas_per_job would pack MD runs into groups: in import mode there are none
    packing = tmp_path / "packing.yaml"
    packing.write_text("execution:\n  md_replicas_per_job: 2\n")
    res = snakemake(tmp_path, "-n", "-p", "--configfile", TEST_CONFIG, path, packing)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    counts = job_counts(out)
    assert not {"quench", "md_run", "md_run_group", "md_run_member"} & set(counts), counts
    per_temperature = {"import_trajectory", "features", "hops", "dynamics", "apply"}
    assert {r: counts.get(r) for r in per_temperature} == dict.fromkeys(per_temperature, 3)
    once = {"train", "stability", "arrhenius", "planted", "all"}
    assert {r: counts.get(r) for r in once} == dict.fromkeys(once, 1)
    assert len([r for r in counts if r.startswith("figure_")]) == 8
    for T, p in dummy_files.items():
        # the user's file, by absolute path, is the input; the import reads the resolved config
        assert (f"softness import {p} --config results/config.resolved.yaml --out results/T{T}/trajectory.h5 "
                f"--temperature {T} --species 1=Si 2=O --frame-interval-fs 20.0 --length-unit-A 1.5 "
                "--system silica") in out
        assert f"log: results/logs/T{T}/import_trajectory.log" in out
    assert not (tmp_path / "results").exists()


def test_import_mode_resolves_with_the_imported_species_and_without_md_rules(dummy_files):
    # Kob-Andersen-like types named A and B, no system of ours: per-species keys by those names
    # (silica's Si and O, merged in from config/config.yaml, are dropped); the quench keys, which
    # would refuse these temperatures natively (above quench.T_melt_K), are unused.
    change = import_section(dummy_files, species={"1": "A", "2": "B"}, system=None)
    change["hops"] = {"p_c_A2": {"A": 0.5, "B": 0.6}, "p_quiet_A2": {"A": 0.1, "B": 0.2}}
    change["quench"] = {"T_melt_K": 5000.0}
    with pytest.raises(SoftnessError, match="quench.T_melt_K"):
        config_mod.resolve(study_config({"quench": {"T_melt_K": 5000.0}}))
    cfg = config_mod.resolve(study_config(change))
    assert config_mod.import_mode(cfg)
    assert config_mod.import_species_names(cfg) == ("A", "B") == config_mod.species_names(cfg)
    assert cfg["hops"]["p_c_A2"] == {"A": 0.5, "B": 0.6}
    assert cfg["hops"]["p_quiet_A2"] == {"A": 0.1, "B": 0.2}
    assert cfg["import"]["trajectories"] == {float(T): str(p) for T, p in dummy_files.items()}
    assert cfg["import"]["species"] == {"1": "A", "2": "B"}
    assert config_mod.import_trajectory_file(cfg, 4500) == str(dummy_files[4500])
    config_mod.check_import_files(cfg)
    # the resolved config, as the jobs read it back, resolves to itself
    assert config_mod.resolve(yaml.safe_load(yaml.safe_dump(cfg))) == cfg
    # native mode (no trajectories) is unchanged: the system's species
    native = config_mod.resolve(study_config())
    assert not config_mod.import_mode(native) and config_mod.species_names(native) == ("Si", "O")


# ---------------------------------------------------------------------------- bad import configs

def _bad_import_cases(files, tmp):
    missing = dict(files)
    missing[4500] = tmp / "dumps" / "nowhere.lammpstrj"
    return [
        # (change, words in the message)
        (import_section(missing), ("import.trajectories", "4500 K", "nowhere.lammpstrj", "does not exist")),
        (import_section({T: p for T, p in files.items() if T != 6000}),
         ("temperatures_K", "6000 K", "import.trajectories", "no trajectory file")),
        (import_section({**files, 5000: files[3500]}), ("import.trajectories", "5000 K", "temperatures_K")),
        ({**import_section(files), "run": {"replicas_per_temperature": 2}},
         ("run.replicas_per_temperature", "import")),
        (import_section(files, species={}), ("import.species", "empty")),
        (import_section(files, system="kob_andersen"), ("import.system", "system.name", "kob_andersen")),
        (import_section(files, species={1: "Si", 2: "Ox"}), ("import.species", "'Ox'", "silica")),
        (import_section(files, species={1: "X", 2: "Y"}, system=None),
         ("hops.p_c_A2", "X, Y", "import.species")),
        ({**import_section(files, species={1: "X", 2: "Y"}, system=None),
          "hops": {"p_c_A2": {"X": 1.0, "Y": 1.0, "Zz": 1.0}}}, ("hops.p_c_A2", "'Zz'")),
        (import_section(files, masses={"Si": 28.0855}), ("import.masses", "O")),
        (import_section({**files, 3500: files[3500].with_suffix(".traj")}), ("3500 K", "import.format")),
        (import_section(files, format="XTC"), ("import.topology", "XTC")),
        (import_section(files, topology=str(tmp / "none.gro")),
         ("import.topology", "none.gro", "does not exist")),
        ({"import": {"trajectories": {"hot": str(files[3500])}}}, ("import.trajectories", "'hot'")),
        (import_section(files, frame_interval_fs=250.0),  # the p_hop window, 200 fs, spans less than 2 frames
         ("hops.t_R_fs", "import.frame_interval_fs")),
        (import_section(files, frame_interval_fs=-20.0), ("import.frame_interval_fs",)),
    ]


def test_bad_import_configs_are_refused_in_one_sentence(tmp_path, dummy_files):
    dummy_files[3500].with_suffix(".traj").write_text("")
    for change, words in _bad_import_cases(dummy_files, tmp_path):
        with pytest.raises(SoftnessError) as err:
            cfg = config_mod.resolve(study_config(change))
            config_mod.check_import_files(cfg)  # as the Snakefile does
        message = str(err.value)
        assert one_sentence(message), message
        for w in words:
            assert w in message, (w, message)


@pytest.mark.parametrize("case", [0, 1])
def test_snakemake_refuses_bad_import_configs_before_any_job(tmp_path, dummy_files, case):
    change, words = _bad_import_cases(dummy_files, tmp_path)[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(change))
    res = snakemake(tmp_path, "--cores", 1, "--configfile", TEST_CONFIG, path)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "invalid config" in out and all(w in out for w in words), out[-2000:]
    assert not (tmp_path / "results").exists()  # no job ran


# ---------------------------------------------------------------------------- native vs import

def write_lammps_dump(trajectory, out):
    """One of our trajectories as a LAMMPS dump (``id type x y z ix iy iz``; type = species + 1):
    wrapped positions to float32 round-trip precision ("%.9g"), image flags, the box at full precision,
    the MD step of each frame."""
    t = read_trajectory(trajectory)
    ids = np.arange(1, t.n_atoms + 1)
    with open(out, "w") as f:
        for k in range(t.n_frames):
            f.write(f"ITEM: TIMESTEP\n{int(t.step[k])}\nITEM: NUMBER OF ATOMS\n{t.n_atoms}\n"
                    "ITEM: BOX BOUNDS pp pp pp\n")
            f.writelines(f"0 {float(edge)!r}\n" for edge in t.box[k])
            f.write("ITEM: ATOMS id type x y z ix iy iz\n")
            rows = np.column_stack([ids, t.species + 1, t.positions[k].astype(np.float64), t.images[k]])
            np.savetxt(f, rows, fmt=["%d", "%d", "%.9g", "%.9g", "%.9g", "%d", "%d", "%d"])


@pytest.fixture(scope="module")
def native_and_imported(tmp_path_factory, finished_run):
    """config/test.yaml run natively (the whole DAG, shared with tests/test_workflow.py: the session
    fixture finished_run); its trajectories written out as LAMMPS dumps and run again in import mode
    in a second working directory. Returns (native results, imported results, Snakemake's output of
    the import-mode run, the import-mode working directory, its import config)."""
    native, _ = finished_run
    imported = tmp_path_factory.mktemp("imported")
    (imported / "dumps").mkdir()
    files = {}
    for T in TEMPERATURES:
        files[T] = Path("dumps") / f"T{T}.lammpstrj"
        write_lammps_dump(native / "results" / f"T{T}" / "trajectory.h5", imported / files[T])
    config = imported / "import.yaml"
    config.write_text(yaml.safe_dump(import_section(files)))
    res2 = snakemake(imported, *TARGETS, "--cores", 2, "--configfile", TEST_CONFIG, config)
    assert res2.returncode == 0, (res2.stdout + res2.stderr)[-5000:]
    return native / "results", imported / "results", res2.stdout + res2.stderr, imported, config


def test_import_mode_runs_no_md(native_and_imported):
    _, imported, output, _, _ = native_and_imported
    counts = job_counts(output)
    assert counts["import_trajectory"] == 3 and not {"quench", "md_run"} & set(counts), counts
    assert not (imported / "quench").exists()
    for T in TEMPERATURES:
        assert (imported / "benchmarks" / f"T{T}" / "import_trajectory.tsv").exists()


def bit_identical_trajectories(native, imported) -> bool:
    """Whether the imported trajectories are the native ones bit for bit (positions, images, box):
    so they are when the native box edges are float32 numbers (MDAnalysis reads the dump's box in
    float32; positions are float32 on both sides), as in config/test.yaml's fixed-density runs, and
    then every product made from them must be identical too."""
    for T in TEMPERATURES:
        a = read_trajectory(native / f"T{T}" / "trajectory.h5")
        b = read_trajectory(imported / f"T{T}" / "trajectory.h5")
        if not all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("positions", "images", "box")):
            return False
    return True


def test_imported_trajectories_are_the_native_ones(native_and_imported):
    native, imported, *_ = native_and_imported
    for T in TEMPERATURES:
        a = read_trajectory(native / f"T{T}" / "trajectory.h5")
        b = read_trajectory(imported / f"T{T}" / "trajectory.h5")
        if np.array_equal(a.box.astype(np.float32), a.box):
            np.testing.assert_array_equal(b.box, a.box)
            np.testing.assert_array_equal(b.positions, a.positions)
            np.testing.assert_array_equal(b.images, a.images)
        assert b.species_names == a.species_names == ("Si", "O")
        np.testing.assert_array_equal(b.species, a.species)
        np.testing.assert_array_equal(b.step, a.step)
        np.testing.assert_allclose(np.diff(b.time_fs), np.diff(a.time_fs))
        np.testing.assert_allclose(b.box, a.box, rtol=1e-6)  # the dump is read in float32
        np.testing.assert_allclose(b.unwrapped(), a.unwrapped(), rtol=0, atol=2e-5)
        assert b.attrs["temperature_K"] == pytest.approx(T)
        assert b.attrs["system"] == a.attrs["system"] == "silica"


def test_import_mode_gives_the_native_softness_and_hops(native_and_imported):
    native, imported, *_ = native_and_imported
    exact = bit_identical_trajectories(native, imported)
    for T in TEMPERATURES:
        for name, key in (("softness", "softness"), ("hops", "p_hop"), ("features", "features")):
            with h5py.File(native / f"T{T}" / f"{name}.h5") as fa:
                a = fa[key][()]
            with h5py.File(imported / f"T{T}" / f"{name}.h5") as fb:
                b = fb[key][()]
            assert a.shape == b.shape
            finite = np.isfinite(a)
            np.testing.assert_array_equal(np.isfinite(b), finite)
            np.testing.assert_allclose(b[finite], a[finite], rtol=1e-5, atol=1e-5, err_msg=f"{name}, {T} K")
            if exact:
                np.testing.assert_array_equal(b, a, err_msg=f"{name}, {T} K")
        with h5py.File(native / f"T{T}" / "hops.h5") as fa, h5py.File(imported / f"T{T}" / "hops.h5") as fb:
            np.testing.assert_array_equal(fb["labels"][()], fa["labels"][()])
    with h5py.File(native / "model.h5") as ma, h5py.File(imported / "model.h5") as mb:
        np.testing.assert_array_equal(mb["C"][()], ma["C"][()])
        np.testing.assert_allclose(mb["weights"][()], ma["weights"][()], rtol=1e-4, atol=1e-5)


def _compare_json(a, b, where="summary"):
    """Every number of ``a`` and ``b`` equal to relative 1e-5 (None and NaN as themselves), every
    string and key equal."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(b) == list(a), where
        for k in a:
            _compare_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(b) == len(a), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare_json(x, y, f"{where}[{i}]")
    elif isinstance(a, bool) or a is None or isinstance(a, str):
        assert b == a, (where, a, b)
    elif isinstance(a, (int, float)):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), where
        if math.isnan(a):
            assert math.isnan(b), (where, a, b)
        else:
            assert b == pytest.approx(a, rel=1e-5, abs=1e-12), (where, a, b)
    else:
        raise AssertionError(f"{where}: unexpected {type(a)}")


def test_import_mode_gives_the_native_arrhenius_summary(native_and_imported):
    native, imported, *_ = native_and_imported
    a = json.loads((native / "summary.json").read_text())
    b = json.loads((imported / "summary.json").read_text())
    _compare_json(a, b)
    if bit_identical_trajectories(native, imported):
        assert b == a
    with h5py.File(native / "arrhenius.h5") as fa, h5py.File(imported / "arrhenius.h5") as fb:
        np.testing.assert_array_equal(fb["temperature_K"][()], fa["temperature_K"][()])
        for key in ("lines/T0_K", "lines/n_bins_fitted"):
            np.testing.assert_allclose(fb[key][()], fa[key][()], rtol=1e-5, equal_nan=True)


def test_a_newer_file_reruns_only_its_temperature(native_and_imported):
    *_, workdir, config = native_and_imported
    res = snakemake(workdir, "-n", *TARGETS, "--configfile", TEST_CONFIG, config)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout + res.stderr
    (workdir / "dumps" / "T4500.lammpstrj").touch()
    res = snakemake(workdir, "-n", "-p", *TARGETS, "--configfile", TEST_CONFIG, config)
    counts = job_counts(res.stdout + res.stderr)
    assert counts["import_trajectory"] == 1 and "--out results/T4500/trajectory.h5" in res.stdout, counts
    assert counts["features"] == counts["hops"] == counts["dynamics"] == counts["apply"] == 1
    assert "train" not in counts  # (trained at 3500 K)
