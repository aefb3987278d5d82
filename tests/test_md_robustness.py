"""MD robustness: checkpoints and resume (in process and after a real SIGTERM), neighbour-list
overflow recovery, the NaN / runaway guard, bad input, constant-pressure quenches.

A 90-atom system with a 5.5 A cutoff (box 11.1 A) keeps these fast; only the mechanics
are tested here, the physics is in test_md.py.
"""

import io
import logging
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml
from numpy.testing import assert_array_equal

from softness import cli, config, interrupts, md
from softness.errors import SoftnessError
from softness.io import temporary_path
from softness.progress import Progress
from softness.systems import silica

MECH = {
    "seed": 7,
    "temperatures_K": [3500.0, 4500.0],
    "system": {"n_sio2": 30},
    "potential": {"cutoff_A": 5.5},
    "md": {"chunk_steps": 200, "checkpoint_every_steps": 2000},
    "quench": {"T_melt_K": 4500.0, "melt_time_fs": 200.0, "T_min_K": 3500.0,
               "cooling_rate_K_per_ps": 5000.0, "frame_interval_fs": 100.0, "relax_steps": 200},
    "run": {"equilibration_time_fs": 400.0, "production_time_fs": 12000.0, "frame_interval_fs": 20.0},
    # Not used by MD, but a config must be consistent as a whole (the 11 A box of 30 SiO2).
    "features": {"cutoff_A": 5.5, "radial_r_max_A": 5.0, "frame_stride": 1},
    "hops": {"t_R_fs": 100.0, "t_quiet_fs": 100.0},
}


def _datasets(path):
    """Every dataset of an HDF5 file as name -> array (for bit-for-bit comparisons)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        f.visititems(visit)
    return out


def _assert_same_frames(a, b):
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        assert_array_equal(da[name], db[name], err_msg=name)


@pytest.fixture(scope="module")
def mech(tmp_path_factory):
    """The quench and an uninterrupted run at 3500 K (the reference for resumed runs)."""
    cfg = config.resolve(MECH)
    d = tmp_path_factory.mktemp("mech")
    md.quench(cfg, d / "quench.h5")
    md.run_temperature(cfg, d / "quench.h5", 3500.0, d / "reference.h5")
    (d / "config.yaml").write_text(yaml.safe_dump(MECH))
    return cfg, d


def test_plan_chunk_puts_every_frame_on_its_grid_point():
    rng = np.random.default_rng(0)
    for _ in range(200):
        every, capacity = int(rng.integers(1, 7)), int(rng.integers(1, 5))
        start, total = int(rng.integers(0, 10)), int(rng.integers(10, 80))
        grid = md.FrameGrid(start, every, total)
        events = sorted(set(rng.integers(1, total, size=3).tolist()))
        step, next_frame, got = 0, grid.next_at_or_after(0), []
        while step < total:
            limit = min([total, step + capacity * every] + [e for e in events if e > step])
            n_first, n_frames, n_tail = md.plan_chunk(step, limit, next_frame, every, capacity)
            assert n_frames <= capacity
            frames = [step + n_first + k * every for k in range(n_frames)]
            got += frames
            step = step + n_first + max(n_frames - 1, 0) * every + n_tail
            assert step <= limit  # no chunk runs past an event or the end
            if frames:
                next_frame = grid.next_at_or_after(frames[-1] + 1)
        assert got == list(range(start, total + 1, every))


def _stopped_run(cfg, d, out, monkeypatch, *, at_step: int, stop: BaseException):
    """Run at 3500 K until the first progress report at or past ``at_step``, then raise ``stop``."""
    update = Progress.update

    def interrupt(self, step):
        update(self, step)
        if step >= at_step:
            raise stop

    monkeypatch.setattr(Progress, "update", interrupt)
    with pytest.raises(type(stop)):
        md.run_temperature(cfg, d / "quench.h5", 3500.0, out)
    monkeypatch.setattr(Progress, "update", update)


class _SignalInDel:
    """An object whose ``__del__`` receives SIGTERM: Python drops the handler's exception there,
    as it does when a signal lands in JAX's garbage-collection callback."""

    def __del__(self):
        interrupts.on_signal(signal.SIGTERM, None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_whose_interrupt_was_dropped_still_stops_the_run(mech, tmp_path, monkeypatch):
    # A wall-time SIGTERM that arrives inside a __del__ or a GC callback raises nothing where
    # it lands; the run must still stop, at the next chunk, keeping its checkpoint.
    monkeypatch.setattr(interrupts, "_received", [])
    cfg, d = mech
    out = tmp_path / "T3500.h5"
    update, seen = Progress.update, []

    def signal_dropped(self, step):
        update(self, step)
        if step >= 5000 and not seen:
            seen.append(step)
            _SignalInDel()  # dies at once; its KeyboardInterrupt is printed and dropped

    monkeypatch.setattr(Progress, "update", signal_dropped)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        md.run_temperature(cfg, d / "quench.h5", 3500.0, out)
    assert seen and not out.exists()
    with h5py.File(md.checkpoint_path(out), "r") as f:
        assert f.attrs["step"] == 4000
    interrupts.check()  # the signal was raised once, not again


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), OSError(28, "No space left on device")],
                         ids=["interrupted", "crashed"])
def test_resume_gives_the_frames_of_an_uninterrupted_run(mech, tmp_path, monkeypatch, caplog, stop):
    # Ctrl-C, a wall-time SIGTERM, or a failure outside the physics (here a full disk) keep
    # the checkpoint and the partial trajectory: --resume continues as if nothing happened.
    cfg, d = mech
    out = tmp_path / "T3500.h5"
    with caplog.at_level(logging.WARNING, logger="softness.md"):
        _stopped_run(cfg, d, out, monkeypatch, at_step=5000, stop=stop)
    assert not out.exists()
    why = "interrupted" if isinstance(stop, KeyboardInterrupt) else "stopped by OSError"
    assert any(r.getMessage().startswith(why) and "holds the run at step 4000 (4 ps)" in r.getMessage()
               and "--resume" in r.getMessage() for r in caplog.records), caplog.text
    ckpt = md.checkpoint_path(out)
    with h5py.File(ckpt, "r") as f:
        assert f.attrs["step"] == 4000  # checkpoints every 2000 steps
        assert "rng_key" in f and "image" in f and len(f["state"]) > 0
    with h5py.File(temporary_path(out), "r") as f:
        assert f["particles/all/position/value"].shape[0] > 0
    md.run_temperature(cfg, d / "quench.h5", 3500.0, out, resume=True)
    _assert_same_frames(out, d / "reference.h5")
    assert not ckpt.exists() and not temporary_path(out).exists()


def test_resume_after_a_config_change_starts_over_and_says_why(mech, tmp_path, monkeypatch, caplog):
    # A workflow rerun after Ctrl-C and a config edit passes --resume: the old checkpoint
    # belongs to another run and must be set aside, not continued and not a hard error.
    cfg, d = mech
    out = tmp_path / "T3500.h5"
    _stopped_run(cfg, d, out, monkeypatch, at_step=3000, stop=KeyboardInterrupt())
    assert md.checkpoint_path(out).exists()
    shorter = config.resolve({**MECH, "run": {**MECH["run"], "production_time_fs": 2000.0}})
    with caplog.at_level(logging.INFO, logger="softness.md"):
        md.run_temperature(shorter, d / "quench.h5", 3500.0, out, resume=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any("made by a different run (run.production_time_fs differs)" in m
               and "starting the run at 3500 K from the beginning" in m for m in messages), messages
    assert not any("resuming the run" in m for m in messages)
    assert not md.checkpoint_path(out).exists()
    # Started from the quench snapshot: the frames are the first 2 ps of the uninterrupted run.
    new, ref = _datasets(out), _datasets(d / "reference.h5")
    n = int(2000.0 / MECH["run"]["frame_interval_fs"]) + 1
    for name in ("particles/all/position/value", "particles/all/image/value",
                 "observables/conserved_energy/time", "observables/potential_energy/value"):
        assert new[name].shape[0] == n
        assert_array_equal(new[name], ref[name][:n], err_msg=name)


def test_sigterm_then_resume_equals_an_uninterrupted_run(mech, tmp_path):
    cfg, d = mech
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "softness", "run", "--config", str(d / "config.yaml"),
           "--start", str(d / "quench.h5"), "--temperature", "3500", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = md.checkpoint_path(out)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                with h5py.File(ckpt, "r") as f:
                    if f.attrs["step"] >= 2000:
                        break
            except OSError:
                pass
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not out.exists()
    assert ckpt.exists()
    assert "--resume" in err and "interrupted" in err
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    _assert_same_frames(out, d / "reference.h5")
    assert not ckpt.exists()


@pytest.fixture(scope="module")
def engine(mech):
    cfg, d = mech
    snap = md.read_snapshot(d / "quench.h5", 4500.0)
    with md.precision_scope("float32") as dtype:
        e = md.Engine(snap["species"], snap["mass"], snap["box_edges"], cutoff_A=5.5, dtype=dtype,
                      frame_every=10, frames_per_chunk=5, runaway_temperature_K=45000.0)
    return e, snap


def test_neighbor_list_overflow_is_redone_and_changes_nothing(engine):
    e, snap = engine
    import jax

    def simulate(extra_capacity):
        e.extra_capacity, e.reallocations = 0, 0
        with md.precision_scope("float32"):
            c = e.init(snap["position"], key=jax.random.PRNGKey(1), temperature_K=4500.0,
                       velocities_A_fs=snap["velocity"])
            # The list the first chunk starts from (the forces in the state are exact).
            e.extra_capacity = extra_capacity
            c = e.rebuild(c)
            capacity = c["nbrs"].idx.shape[-1]
            frames = []
            for k in range(3):
                c, fr = e.advance(c, md.schedule(4500.0), 0 if k == 0 else 10, 5, 0)
                e.check(c, fr)
                frames.append(fr)
        return capacity, e.reallocations, {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}

    cap_ok, n_ok, ok = simulate(0)
    # A list a third shorter than a fresh one (capacity counts neighbours per atom): overflows at once.
    cap_small, n_small, recovered = simulate(-(cap_ok // 3))
    assert n_ok == 0 and n_small >= 1
    assert cap_small < cap_ok
    assert sorted(ok) == sorted(recovered)
    for k in ok:
        assert_array_equal(ok[k], recovered[k], err_msg=k)


def test_nan_and_runaway_stop_the_run_naming_step_and_quantity(engine):
    e, snap = engine
    import jax

    with md.precision_scope("float32"):
        c = e.init(snap["position"], key=jax.random.PRNGKey(1), temperature_K=4500.0,
                   velocities_A_fs=snap["velocity"])
        c, fr = e.advance(c, md.schedule(4500.0), 0, 2, 0)  # steps 0..10, healthy
        e.check(c, fr)
        bad = dict(c, state=c["state"].set(momentum=c["state"].momentum.at[5, 0].set(np.nan)))
        new, fr = e.advance(bad, md.schedule(4500.0), 10, 2, 0)
        with pytest.raises(SoftnessError, match=r"step 11 \(t = 11 fs\): the kinetic energy is not finite"):
            e.check(new, fr)
        hot = dict(c, state=c["state"].set(momentum=c["state"].momentum * 10))  # ~450000 K
        new, fr = e.advance(hot, md.schedule(4500.0), 10, 2, 0)
        with pytest.raises(SoftnessError, match=r"step 11 .*kinetic temperature ran away to .* K"):
            e.check(new, fr)


def test_an_unstable_run_leaves_no_files(mech, tmp_path, monkeypatch):
    cfg, d = mech
    calls = []

    def fail(self, c, frames, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise SoftnessError("the MD run became unstable at step 600 (t = 600 fs): test.")

    monkeypatch.setattr(md.Engine, "check", fail)
    out = tmp_path / "bad.h5"
    with pytest.raises(SoftnessError, match="step 600"):
        md.run_temperature(cfg, d / "quench.h5", 3500.0, out)
    assert list(tmp_path.iterdir()) == []


def _cli(args, capsys):
    rc = cli.main(args)
    return rc, capsys.readouterr().err


def test_bad_input_exits_nonzero_with_one_sentence_and_writes_nothing(mech, tmp_path, capsys):
    cfg, d = mech
    out = tmp_path / "out"
    out.mkdir()
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(MECH))
    run = ["run", "--config", str(good), "--start", str(d / "quench.h5"), "--out", str(out / "T.h5")]

    rc, err = _cli(["run", "--config", str(good), "--start", str(tmp_path / "missing.h5"),
                    "--temperature", "3500", "--out", str(out / "T.h5")], capsys)
    assert rc == 1 and "does not exist" in err
    rc, err = _cli(run + ["--temperature", "3600"], capsys)
    assert rc == 1 and "no snapshot at 3600 K" in err and "3500, 4500" in err
    rc, err = _cli(run + ["--temperature", "0"], capsys)
    assert rc == 1 and "temperature must be positive" in err
    rc, err = _cli(run + ["--temperature", "-5"], capsys)
    assert rc == 1 and "temperature must be positive" in err

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({**MECH, "md": {**MECH["md"], "thermostat": "berendsen"}}))
    rc, err = _cli(["quench", "--config", str(unknown), "--out", str(out / "q.h5")], capsys)
    assert rc == 1 and "unknown config key 'md.thermostat'" in err

    dense = tmp_path / "dense.yaml"
    dense.write_text(yaml.safe_dump({**MECH, "system": {"n_sio2": 30, "density_g_cm3": 4.5}}))
    rc, err = _cli(["quench", "--config", str(dense), "--out", str(out / "q.h5")], capsys)
    assert rc == 1 and "impossible" in err

    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump({**MECH, "run": {**MECH["run"], "frame_interval_fs": 2.5}}))
    rc, err = _cli(["run", "--config", str(odd), "--start", str(d / "quench.h5"), "--temperature", "3500",
                    "--out", str(out / "T.h5")], capsys)
    assert rc == 1 and "run.frame_interval_fs" in err and "whole" in err

    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({**MECH, "potential": {"cutoff_A": 8.0}}))
    rc, err = _cli(["quench", "--config", str(small), "--out", str(out / "q.h5")], capsys)
    assert rc == 1 and "twice the potential cutoff" in err

    for message in err.strip().splitlines():
        assert message.startswith("softness quench: error:")
    assert list(out.iterdir()) == []


def test_constant_pressure_quench_and_a_run_in_its_snapshot_box(tmp_path):
    cfg = config.resolve({**MECH, "system": {"n_sio2": 40},
                          "quench": {**MECH["quench"], "ensemble": "npt", "pressure_GPa": 0.0,
                                     "frame_interval_fs": 50.0},
                          "run": {"equilibration_time_fs": 100.0, "production_time_fs": 200.0,
                                  "frame_interval_fs": 50.0}})
    md.quench(cfg, tmp_path / "q.h5")
    with h5py.File(tmp_path / "q.h5", "r") as f:
        edges = f["particles/all/box/edges"]
        assert isinstance(edges, h5py.Group)  # a box per frame
        box = edges["value"][()]
        assert box.shape == (f["particles/all/position/value"].shape[0], 3)
        assert np.ptp(box[:, 0]) > 0  # the barostat moved it
        assert np.allclose(box[:, 0], box[:, 1]) and np.allclose(box[:, 0], box[:, 2])
        n = len(f["particles/all/species"])
        rho_last = silica.density_g_cm3(silica.species_for(n // 3), box[-1])
        assert f.attrs["final_density_g_cm3"] == pytest.approx(rho_last, rel=1e-6)
        snap_box = f["snapshots/3500/box_edges"][()]
        assert_array_equal(snap_box, box[-1])  # T_min is reached at the last frame
        pos = f["particles/all/position/value"][()]
        assert np.all((pos >= 0) & (pos < box[:, None, :]))
    md.run_temperature(cfg, tmp_path / "q.h5", 3500.0, tmp_path / "T.h5")
    with h5py.File(tmp_path / "T.h5", "r") as f:
        edges = f["particles/all/box/edges/value"]
        assert_array_equal(edges[()], np.broadcast_to(snap_box, edges.shape))
        assert f.attrs["density_g_cm3"] == pytest.approx(rho_last, rel=1e-6)


def test_float64_quench_writes_float64(tmp_path):
    cfg = config.resolve({**MECH, "precision": "float64",
                          "quench": {**MECH["quench"], "melt_time_fs": 100.0,
                                     "cooling_rate_K_per_ps": 10000.0}})
    md.quench(cfg, tmp_path / "q.h5")
    with h5py.File(tmp_path / "q.h5", "r") as f:
        assert f.attrs["precision"] == "float64"
        assert f["particles/all/position/value"].dtype == np.float64
        assert f["snapshots/3500/velocity"].dtype == np.float64
    import jax

    assert not jax.config.read("jax_enable_x64")  # the scope restored float32 for what follows


def test_progress_bar_on_a_terminal_and_log_lines_in_a_batch_job(caplog):
    stream = io.StringIO()
    p = Progress("run 3000 K", 1000, 1.0, stream=stream, tty=True)
    p.update(500)
    p.close()
    text = stream.getvalue()
    assert "\r[###############" in text and "0.5/1.0 ps" in text and "ns/day" in text and "ETA" in text
    with caplog.at_level(logging.INFO, logger="softness.md"):
        p = Progress("quench", 1000, 2.0, stream=io.StringIO(), tty=False, log_every_s=0.0)
        p.update(10)
        p.update(500)
        p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("quench: 1.0/2.0 ps (50%)" in m and "ns/day" in m for m in lines)
