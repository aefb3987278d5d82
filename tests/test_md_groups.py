"""Runs at several temperatures as replicas of one program (``softness run`` with several
temperatures, the workflow's execution.md_replicas_per_job): each temperature's product is
its run alone (to float rounding), a killed group resumes every replica bit for bit, and a
replica that blows up stops alone, named, without touching the others' products.

The 90-atom system of test_md_robustness.py, with short runs: the replicas agree with the
runs alone only to float rounding (the thermostat's whole-system sums are added in another
order), and a hot liquid's trajectories part exponentially (1e-4 A after 0.4 ps, 1 A after
1 ps here), so positions are compared at the first frame and observables as means.
"""

import logging
import shutil

import h5py
import numpy as np
import pytest
import yaml
from numpy.testing import assert_allclose, assert_array_equal
from test_md_robustness import MECH, _datasets

from softness import cli, config, md, units
from softness.errors import SoftnessError
from softness.io import temporary_path
from softness.progress import Progress

# The 90-atom system of test_md_robustness.py with a short run and a checkpoint every 400 steps.
GROUP = {**MECH, "md": {"chunk_steps": 200, "checkpoint_every_steps": 400},
         "run": {"equilibration_time_fs": 400.0, "production_time_fs": 1200.0, "frame_interval_fs": 20.0}}
TEMPS = (3500.0, 4500.0)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """The quench, the two runs alone, and the two as one group."""
    cfg = config.resolve(GROUP)
    d = tmp_path_factory.mktemp("group")
    md.quench(cfg, d / "quench.h5")
    for T in TEMPS:
        md.run_temperature(cfg, d / "quench.h5", T, d / f"alone{T:g}.h5")
    failed = md.run_temperatures(cfg, d / "quench.h5", TEMPS, [d / f"group{T:g}.h5" for T in TEMPS])
    assert failed == {}
    return cfg, d


def _unwrapped(data):
    box = data["particles/all/box/edges/value"][:, None, :]
    return data["particles/all/position/value"] + data["particles/all/image/value"] * box


def _same_run(grouped, alone, T):
    """The same start, temperature and frames; positions equal to rounding at the first
    production frame (400 steps in: 2e-4 A measured; another start or key would be ~0.1 A off),
    statistics equal after (the rounding difference has grown to a different trajectory)."""
    assert sorted(alone) == sorted(grouped)
    for name in alone:
        if name.endswith(("/step", "/time")) or "species" in name or "mass" in name or "box" in name:
            assert_array_equal(grouped[name], alone[name], err_msg=name)
    assert len(grouped["particles/all/position/value"]) == 61
    assert_allclose(_unwrapped(grouped)[0], _unwrapped(alone)[0], rtol=0, atol=1e-3, err_msg=f"{T:g} K")
    kinetic = "observables/kinetic_temperature/value"
    assert_allclose(grouped[kinetic].mean(), alone[kinetic].mean(), rtol=0.05, err_msg=f"{T:g} K")


def test_each_replica_of_a_group_is_its_run_alone(group):
    cfg, d = group
    for T in TEMPS:
        _same_run(_datasets(d / f"group{T:g}.h5"), _datasets(d / f"alone{T:g}.h5"), T)
        with h5py.File(d / f"group{T:g}.h5") as g, h5py.File(d / f"alone{T:g}.h5") as a:
            assert g.attrs["temperature_K"] == a.attrs["temperature_K"] == T
            assert_allclose(g.attrs["equilibration_mean_temperature_K"],
                            a.attrs["equilibration_mean_temperature_K"], rtol=0.05)
    # The two replicas are two different runs.
    a, b = (_datasets(d / f"group{T:g}.h5")["observables/kinetic_temperature/value"] for T in TEMPS)
    assert b.mean() - a.mean() > 500


def test_a_killed_group_resumes_every_replica_bit_for_bit(group, tmp_path, monkeypatch, caplog):
    cfg, d = group
    outs = [tmp_path / f"T{T:g}.h5" for T in TEMPS]
    update = Progress.update

    def interrupt(self, step):
        update(self, step)
        if step >= 1000:
            raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "update", interrupt)
    with caplog.at_level(logging.WARNING, logger="softness.md"), pytest.raises(KeyboardInterrupt):
        md.run_temperatures(cfg, d / "quench.h5", TEMPS, outs)
    monkeypatch.setattr(Progress, "update", update)
    assert not any(o.exists() for o in outs)
    for o in outs:  # each temperature keeps its own checkpoint (at step 800) and partial file
        with h5py.File(md.checkpoint_path(o)) as f:
            assert int(f.attrs["step"]) == 800
        assert temporary_path(o).exists()
    assert "--resume" in caplog.text and "interrupted" in caplog.text
    md.run_temperatures(cfg, d / "quench.h5", TEMPS, outs, resume=True)
    for T, o in zip(TEMPS, outs, strict=True):
        ref = _datasets(d / f"group{T:g}.h5")
        got = _datasets(o)
        assert sorted(got) == sorted(ref)
        for name in ref:
            assert_array_equal(got[name], ref[name], err_msg=f"{T:g} K: {name}")
        assert not md.checkpoint_path(o).exists() and not temporary_path(o).exists()


def test_a_group_stopped_right_after_its_first_checkpoint_resumes_at_step_0(group, tmp_path, monkeypatch,
                                                                             caplog):
    cfg, d = group
    outs = [tmp_path / f"T{T:g}.h5" for T in TEMPS]
    write, written = md._Checkpoint.write, []

    def write_then_stop(self, *args, **kwargs):
        write(self, *args, **kwargs)
        written.append(self.path)
        if len(written) == len(TEMPS):  # both step-0 checkpoints written, as a wall-time kill may land
            raise KeyboardInterrupt

    monkeypatch.setattr(md._Checkpoint, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        md.run_temperatures(cfg, d / "quench.h5", TEMPS, outs)
    monkeypatch.setattr(md._Checkpoint, "write", write)
    with caplog.at_level(logging.INFO, logger="softness.md"):
        md.run_temperatures(cfg, d / "quench.h5", TEMPS, outs, resume=True)
    assert "resuming the runs at 3500, 4500 K at step 0" in caplog.text
    for T, o in zip(TEMPS, outs, strict=True):
        ref, got = _datasets(d / f"group{T:g}.h5"), _datasets(o)
        for name in ref:
            assert_array_equal(got[name], ref[name], err_msg=f"{T:g} K: {name}")


def _quench_with_bad_velocity(d, tmp_path, T):
    q = tmp_path / "quench.h5"
    shutil.copy(d / "quench.h5", q)
    with h5py.File(q, "a") as f:
        v = f[f"snapshots/{T:g}/velocity"]
        bad = v[()]
        bad[5, 0] = np.nan
        v[...] = bad
    return q


def test_a_replica_that_blows_up_stops_alone(group, tmp_path):
    cfg, d = group
    q = _quench_with_bad_velocity(d, tmp_path, 4500.0)
    outs = [tmp_path / f"T{T:g}.h5" for T in TEMPS]
    failed = md.run_temperatures(cfg, q, TEMPS, outs, keep_going=True)
    assert list(failed) == [4500.0]
    assert failed[4500.0].startswith("the run at 4500 K stopped: the MD run became unstable at step 1 ")
    assert "the kinetic energy is not finite" in failed[4500.0]
    # Nothing of the failed run is left; the other run is whole and is its run alone.
    assert not outs[1].exists() and not temporary_path(outs[1]).exists()
    assert not md.checkpoint_path(outs[1]).exists()
    _same_run(_datasets(outs[0]), _datasets(d / "alone3500.h5"), 3500.0)
    # Without keep_going the failure is raised (one sentence per failed temperature), after the
    # other temperatures finished.
    outs = [tmp_path / f"again{T:g}.h5" for T in TEMPS]
    with pytest.raises(SoftnessError,
                       match=r"^the run at 4500 K stopped: .* The other temperatures finished\.$"):
        md.run_temperatures(cfg, q, TEMPS, outs)
    assert outs[0].exists() and not outs[1].exists()


def test_the_command_line_keeps_going_and_the_workflow_reports_the_failure(group, tmp_path, capsys):
    cfg, d = group
    q = _quench_with_bad_velocity(d, tmp_path, 4500.0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(GROUP))
    group_dir = tmp_path / "T3500_4500"
    group_dir.mkdir()
    outs = [str(group_dir / f"T{T:g}.h5") for T in TEMPS]
    work = [str(tmp_path / f"T{T:g}" / "trajectory.h5") for T in TEMPS]
    argv = ["run", "--config", str(tmp_path / "config.yaml"), "--start", str(q), "--temperature", "3500",
            "4500", "--out", *outs, "--work", *work, "--keep-going"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "softness run: error: the run at 4500 K stopped: the MD run became unstable at step 1 " in err
    # The workflow's md_run_member: the product gets its place (a hard link), the failure its sentence.
    md.take_group_product(outs[0], work[0])
    with h5py.File(work[0]) as f:
        assert f.attrs["temperature_K"] == 3500.0
    assert (tmp_path / "T3500" / "trajectory.h5").stat().st_nlink == 2
    with pytest.raises(SoftnessError,
                       match="^the run at 4500 K stopped: the MD run became unstable at step 1 "):
        md.take_group_product(outs[1], work[1])
    # One temperature's checkpoint and partial file live next to its product in --work.
    assert not any(p.name.startswith(".") for p in group_dir.iterdir())
    # A temperature failing alone is a failed command.
    assert cli.main(["run", "--config", str(tmp_path / "config.yaml"), "--start", str(q), "--temperature",
                     "4500", "--out", str(tmp_path / "x.h5")]) == 1
    assert "the MD run became unstable at step 1 " in capsys.readouterr().err


def test_temperatures_and_outputs_must_pair_up(group, tmp_path):
    cfg, d = group
    with pytest.raises(SoftnessError, match="one --out per temperature: 2 temperatures, 1 outputs"):
        md.run_temperatures(cfg, d / "quench.h5", TEMPS, [tmp_path / "a.h5"])
    with pytest.raises(SoftnessError, match="a temperature is given twice: 3500, 3500 K"):
        md.run_temperatures(cfg, d / "quench.h5", [3500.0, 3500.0], [tmp_path / "a.h5", tmp_path / "b.h5"])


def test_each_temperature_runs_its_own_length(group, tmp_path):
    """run.production_time_fs per temperature: a run takes its own length (the run of the shared
    length cut short, frame for frame), a group of unequal lengths is refused before any work, and
    a temperature whose length is unchanged keeps its identity (its checkpoint continues)."""
    cfg, d = group
    per_T = config.resolve({**GROUP, "run": {**GROUP["run"],
                                             "production_time_fs": {3500: 600.0, 4500: 1200.0}}})
    outs = [tmp_path / f"T{T:g}.h5" for T in TEMPS]
    with pytest.raises(SoftnessError, match=r"^the runs at 3500, 4500 K have different lengths"):
        md.run_temperatures(per_T, d / "quench.h5", TEMPS, outs)
    assert not any(tmp_path.iterdir())
    md.run_temperature(per_T, d / "quench.h5", 3500.0, outs[0])
    got, full = _datasets(outs[0]), _datasets(d / "alone3500.h5")
    assert len(got["particles/all/position/value"]) == 600 // 20 + 1
    for name in ("particles/all/position/value", "particles/all/image/value",
                 "observables/potential_energy/value"):
        assert_array_equal(got[name], full[name][:31], err_msg=name)
    with h5py.File(outs[0]) as f:
        assert f.attrs["production_time_fs"] == 600.0 and f.attrs["equilibration_time_fs"] == 400.0

    def identity(c, T):
        return md._Member(c, md.run_plan(c, T), d / "quench.h5", T, tmp_path / "id.h5", None).identity

    assert identity(per_T, 4500.0) == identity(cfg, 4500.0)
    assert identity(per_T, 3500.0) != identity(cfg, 3500.0)


# ---------------------------------------------------------------------------- independent runs
# run.replicas_per_temperature: run r >= 1 at a temperature starts from run 0's snapshot positions
# with its own Maxwell-Boltzmann velocities at T (key (seed, T, r)); run 0 is the run it always was.

#: No equilibration and 200 fs of production: the first frame is the start (step 0).
START = {**GROUP, "run": {**GROUP["run"], "equilibration_time_fs": 0.0, "production_time_fs": 200.0}}


@pytest.fixture(scope="module")
def independent_runs(group, tmp_path_factory):
    """Runs 0 and 1 at each temperature alone (run 1 at 3500 K through the command line), and run 1
    of both temperatures as one group."""
    _, d = group
    cfg = config.resolve(START)
    out = tmp_path_factory.mktemp("runs")
    (out / "start.yaml").write_text(yaml.safe_dump(START))
    for T in TEMPS:
        md.run_temperature(cfg, d / "quench.h5", T, out / f"run0_{T:g}.h5")
    assert cli.main(["run", "--config", str(out / "start.yaml"), "--start", str(d / "quench.h5"),
                     "--temperature", "3500", "--run-index", "1", "--out", str(out / "run1_3500.h5")]) == 0
    md.run_temperature(cfg, d / "quench.h5", 4500.0, out / "run1_4500.h5", run_index=1)
    assert md.run_temperatures(cfg, d / "quench.h5", TEMPS, [out / f"group1_{T:g}.h5" for T in TEMPS],
                               run_index=1) == {}
    return cfg, d, out


def _kinetic_temperature(velocity_A_fs, mass_amu):
    """2 KE / (3 N k_B), as the engine records it."""
    v = np.asarray(velocity_A_fs, np.float64) * units.TIME_UNIT_FS
    return float(np.sum(np.asarray(mass_amu)[:, None] * v**2) / (3 * len(mass_amu) * units.KB))


def test_run_1_starts_where_run_0_does_with_its_own_velocities(independent_runs):
    cfg, d, out = independent_runs
    pos, kin = "particles/all/position/value", "observables/kinetic_temperature/value"
    for T in TEMPS:
        run0, run1 = _datasets(out / f"run0_{T:g}.h5"), _datasets(out / f"run1_{T:g}.h5")
        snap = md.read_snapshot(d / "quench.h5", T)
        # The same start: the quench snapshot's positions.
        assert_allclose(run0[pos][0], snap["position"], rtol=0, atol=1e-4)
        assert_array_equal(run1[pos][0], run0[pos][0])
        # Run 0 keeps the snapshot's velocities; run 1 draws others at T (90 atoms: the kinetic
        # temperature of one draw scatters by sqrt(2 / 270) = 9 %).
        t_snap = _kinetic_temperature(snap["velocity"], snap["mass"])
        assert run0[kin][0] == pytest.approx(t_snap, rel=1e-4)
        assert abs(run1[kin][0] - t_snap) > 1e-3 * T and abs(run1[kin][0] / T - 1) < 0.35
        # ... so the two part at once: 20 fs on, atoms are ~0.4 A apart (rounding would be 1e-5 A).
        apart = np.linalg.norm(_unwrapped(run1)[1] - _unwrapped(run0)[1], axis=1)
        assert np.sqrt(np.mean(apart**2)) > 0.1
        with h5py.File(out / f"run1_{T:g}.h5") as f1, h5py.File(out / f"run0_{T:g}.h5") as f0:
            assert f0.attrs["run_index"] == 0 and f1.attrs["run_index"] == 1
            assert f1.attrs["initial_velocities"].startswith("Maxwell-Boltzmann")
    # Each run's key: run 0's is the (seed, T) key every run had; the others fold in their index.
    import jax

    keys = {(T, r): np.asarray(jax.random.key_data(md.run_key(7, T, r))) for T in TEMPS for r in range(3)}
    for T in TEMPS:
        assert_array_equal(keys[T, 0], np.asarray(jax.random.key_data(md._key(7, md._STAGE_RUN, T))))
    assert len({k.tobytes() for k in keys.values()}) == len(keys)


def test_a_group_runs_one_run_index_of_several_temperatures(independent_runs):
    """A group with --run-index 1 gives each temperature its run 1 alone (to float rounding: 20 fs in,
    1e-5 A, against 0.4 A between runs 0 and 1)."""
    _, _, out = independent_runs
    kin = "observables/kinetic_temperature/value"
    for T in TEMPS:
        grouped, alone = _datasets(out / f"group1_{T:g}.h5"), _datasets(out / f"run1_{T:g}.h5")
        assert_allclose(_unwrapped(grouped)[:2], _unwrapped(alone)[:2], rtol=0, atol=1e-3)
        assert grouped[kin][0] == pytest.approx(alone[kin][0], rel=1e-5)


def test_run_0_does_not_depend_on_the_number_of_runs(group, tmp_path):
    """The count of runs is in no run's identity: run 0's frames and checkpoint identity are those
    of a study with one run; run 1's identity names its index, so neither takes the other's checkpoint."""
    cfg, d = group
    many = config.resolve({**GROUP, "run": {**GROUP["run"], "replicas_per_temperature": 3}})
    md.run_temperature(many, d / "quench.h5", 3500.0, tmp_path / "run0.h5")
    got, ref = _datasets(tmp_path / "run0.h5"), _datasets(d / "alone3500.h5")
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert_array_equal(got[name], ref[name], err_msg=name)

    def identity(c, r):
        return md._Member(c, md.run_plan(c, 3500.0), d / "quench.h5", 3500.0, tmp_path / "id.h5", None,
                          r).identity

    run0 = identity(many, 0)
    assert run0 == identity(cfg, 0)
    assert set(run0) == {"seed", "precision", "system", "potential", "md", "run", "temperature_K", "start",
                         "start_step", "start_created"}
    assert run0["run"] == {k: v for k, v in cfg["run"].items() if k != "replicas_per_temperature"}
    assert identity(many, 1) == {**run0, "run_index": 1} != identity(many, 2)
    with pytest.raises(SoftnessError, match="the run index must be a whole number >= 0, got -1"):
        md.run_temperature(many, d / "quench.h5", 3500.0, tmp_path / "bad.h5", run_index=-1)
