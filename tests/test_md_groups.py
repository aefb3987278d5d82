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

from softness import cli, config, md
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
    box = data["particles/all/box/edges"]
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
