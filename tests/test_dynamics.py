import logging

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, config
from softness.dynamics import (
    diffusion_constant,
    dynamics_file,
    log_lags,
    relaxation_time,
    self_displacements,
)
from softness.errors import SoftnessError
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter

Q = 1.7  # 1/A, the default dynamics.q_inv_A


def write_trajectory(path, unwrapped, species, box, dt_fs, *, temperature_K=3500.0, time_fs=None):
    """Write unwrapped positions [F, N, 3] as an H5MD trajectory (wrapped + image flags)."""
    images = np.floor(unwrapped / box).astype(np.int32)
    n_frames = unwrapped.shape[0]
    time_fs = np.arange(n_frames) * dt_fs if time_fs is None else time_fs
    with atomic_h5(path, "run", {}) as f:
        f.attrs["temperature_K"] = temperature_K
        w = H5MDWriter(f, species, np.where(np.asarray(species) == 0, 28.0855, 15.9994), [box] * 3)
        w.append(np.arange(n_frames), time_fs, unwrapped - images * box, images)
    return path


def read(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in f} | {"attrs": dict(f.attrs)}


def random_walk(rng, n_frames, species, d_per_species, dt, box):
    """Gaussian random walk: each Cartesian step has variance 2 D dt."""
    scale = np.sqrt(2 * np.asarray(d_per_species)[species] * dt)
    steps = rng.normal(size=(n_frames - 1, len(species), 3)) * scale[None, :, None]
    start = rng.uniform(0, box, (1, len(species), 3))
    return start + np.concatenate([np.zeros((1, len(species), 3)), np.cumsum(steps, axis=0)])


def test_log_lags_are_distinct_and_span_the_run():
    lags = log_lags(201, 40)
    assert lags[0] == 1 and lags[-1] == 200 and np.all(np.diff(lags) > 0) and len(lags) <= 40


def test_ballistic_limit(tmp_path):
    rng = np.random.default_rng(0)
    species = np.array([0] * 10 + [1] * 20)
    speed = np.where(species == 0, 0.01, 0.02)  # A/fs
    u = rng.normal(size=(30, 3))
    v = speed[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True)
    dt, n_frames, box = 5.0, 60, 10.0
    t = np.arange(n_frames) * dt
    x = rng.uniform(0, box, (1, 30, 3)) + t[:, None, None] * v[None]  # crosses the box
    path = write_trajectory(tmp_path / "traj.h5", x, species, box, dt)
    dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    lag_t = r["lag_time_fs"]
    for s, v0 in enumerate([0.01, 0.02]):
        assert_allclose(r["msd_A2"][s], (v0 * lag_t) ** 2, rtol=2e-4)
        # Every atom has moved exactly v0 t: F_s = sin(q v0 t) / (q v0 t).
        assert_allclose(r["F_s"][s], np.sinc(Q * v0 * lag_t / np.pi), atol=1e-4)
    assert_allclose(r["msd_exponent"], [2.0, 2.0], atol=0.05)
    assert_allclose(r["msd_growth_exponent"], [2.0, 2.0], atol=0.1)
    assert_array_equal(r["diffusive"], [False, False])


def test_diffusive_limit_and_gaussian_f_s(tmp_path, caplog):
    rng = np.random.default_rng(1)
    species = np.array([0] * 150 + [1] * 300)
    d_true = np.array([0.002, 0.005])  # A^2/fs
    dt, n_frames, box = 10.0, 201, 20.0
    x = random_walk(rng, n_frames, species, d_true, dt, box)
    path = write_trajectory(tmp_path / "traj.h5", x, species, box, dt)
    with caplog.at_level(logging.WARNING):
        dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    assert not caplog.records
    r = read(tmp_path / "dyn.h5")
    lag_t = r["lag_time_fs"]
    half = lag_t <= lag_t[-1] / 2
    for s in range(2):
        # Relative scatter of a time- and atom-averaged random-walk MSD: sqrt(4 tau / (9 T N)).
        rel_err = np.sqrt(4 * lag_t[half] / (9 * lag_t[-1] * np.sum(species == s)))
        assert np.all(np.abs(r["msd_A2"][s][half] / (6 * d_true[s] * lag_t[half]) - 1) < 4 * rel_err)
        assert_allclose(r["F_s"][s][half], np.exp(-Q**2 * d_true[s] * lag_t[half]), atol=0.02)
    assert_array_equal(r["diffusive"], [True, True])
    assert_allclose(r["msd_growth_exponent"], [1.0, 1.0], atol=0.15)
    assert np.all(r["D_err_A2_per_fs"] > 0) and np.all(r["D_err_A2_per_fs"] < 0.1 * d_true)
    assert np.all(np.abs(r["D_A2_per_fs"] - d_true) < 3 * r["D_err_A2_per_fs"])
    assert_array_equal(r["tau_alpha_reached"], [True, True])
    assert_allclose(r["tau_alpha_fs"], 1 / (Q**2 * d_true), rtol=0.05)
    assert r["attrs"]["q_inv_A"] == Q and r["attrs"]["temperature_K"] == 3500.0
    assert [n.decode() for n in r["species_names"]] == ["Si", "O"]
    assert_array_equal(r["n_origins"], n_frames - r["lag_frames"])


def test_cage_offset_does_not_hide_diffusion(tmp_path):
    # A random walk of cage centres plus a 0.4 A rattle: MSD = 6 D t + 6 (0.4 A)^2. The offset bends
    # the log-log slope well below 1, yet the motion is diffusive and D is the walk's.
    rng = np.random.default_rng(5)
    species = np.array([0] * 100 + [1] * 200)
    d_true = np.array([0.0005, 0.0005])
    dt, n_frames, box = 10.0, 201, 20.0
    x = random_walk(rng, n_frames, species, d_true, dt, box) + rng.normal(scale=0.4, size=(n_frames, 300, 3))
    path = write_trajectory(tmp_path / "traj.h5", x, species, box, dt)
    dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert np.all(r["msd_exponent"] < 0.8)
    assert_array_equal(r["diffusive"], [True, True])
    assert np.all(np.abs(r["D_A2_per_fs"] - d_true) < 3 * r["D_err_A2_per_fs"])


def test_subdiffusive_growth_is_flagged():
    t = log_lags(201, 40) * 10.0
    fit = diffusion_constant(t, 0.3 * t**0.5, (100.0, 1000.0))
    assert not fit["diffusive"]
    assert_allclose(fit["growth_exponent"], 0.5, atol=0.02)
    assert_allclose(fit["exponent"], 0.5, atol=1e-9)


def test_self_displacements_agree_with_explicit_loops():
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=(23, 5, 3)), axis=0)
    lags = np.array([1, 3, 10, 22])
    msd, fs, n_origins = self_displacements(x, lags, 0.9, atom_chunk=2)
    for k, lag in enumerate(lags):
        for i in range(5):
            r = np.array([np.linalg.norm(x[t0 + lag, i] - x[t0, i]) for t0 in range(23 - lag)])
            assert_allclose(msd[k, i], np.mean(r**2), rtol=1e-12)
            assert_allclose(fs[k, i], np.mean(np.sin(0.9 * r) / (0.9 * r)), rtol=1e-12)
    assert_array_equal(n_origins, 23 - lags)


def test_tau_alpha_of_an_exponential_decay():
    t = np.geomspace(10.0, 1e5, 40)
    for tau in (30.0, 850.0, 2e4):
        got, reached = relaxation_time(t, np.exp(-t / tau))
        assert reached
        assert_allclose(got, tau, rtol=0.01)
    got, reached = relaxation_time(t, np.exp(-t / 4.0))  # decayed before the first lag
    assert reached and got == pytest.approx(4.0)


def test_too_short_run_flags_tau_alpha_and_diffusion(tmp_path, caplog):
    rng = np.random.default_rng(3)
    species = np.array([0] * 20 + [1] * 40)
    dt, n_frames, box = 10.0, 50, 15.0
    # Atoms rattle around fixed sites: F_s stays near its plateau and the MSD never grows.
    x = rng.uniform(0, box, (1, 60, 3)) + rng.normal(scale=0.1, size=(n_frames, 60, 3))
    path = write_trajectory(tmp_path / "traj.h5", x, species, box, dt)
    with caplog.at_level(logging.WARNING):
        dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert np.all(np.isnan(r["tau_alpha_fs"]))
    assert_array_equal(r["tau_alpha_reached"], [False, False])
    assert_array_equal(r["diffusive"], [False, False])
    assert_allclose(r["msd_exponent"], [0.0, 0.0], atol=0.2)
    text = caplog.text
    assert "too short to reach tau_alpha" in text and "not diffusive" in text


def test_bad_trajectories_are_clear_errors_and_write_nothing(tmp_path, capsys):
    rng = np.random.default_rng(4)
    species = np.array([0, 1, 1])
    x = random_walk(rng, 10, species, [0.01, 0.01], 10.0, 10.0)
    out = tmp_path / "dyn.h5"
    cfg = config.resolve({})

    no_images = write_trajectory(tmp_path / "no_images.h5", x, species, 10.0, 10.0)
    with h5py.File(no_images, "a") as f:
        del f["particles/all/image"]
    with pytest.raises(SoftnessError, match="no image flags"):
        dynamics_file(cfg, no_images, out)
    assert cli.main(["dynamics", "--trajectory", str(no_images), "--out", str(out)]) == 1
    assert "no image flags" in capsys.readouterr().err

    one_frame = write_trajectory(tmp_path / "one.h5", x[:1], species, 10.0, 10.0)
    with pytest.raises(SoftnessError, match="at least two"):
        dynamics_file(cfg, one_frame, out)

    uneven = write_trajectory(tmp_path / "uneven.h5", x, species, 10.0, 10.0,
                              time_fs=np.r_[0.0, np.arange(2, 11) * 10.0])
    with pytest.raises(SoftnessError, match="not evenly spaced"):
        dynamics_file(cfg, uneven, out)
    assert not out.exists() and not any(p.name.startswith(".dyn") for p in tmp_path.iterdir())


def test_flags_and_warnings_are_per_species(tmp_path, caplog):
    """Si caged (rattling about fixed sites), O diffusing, atoms of both species interleaved: only
    O is diffusive and reaches tau_alpha, and the warnings name Si alone."""
    rng = np.random.default_rng(6)
    species = rng.permutation(np.repeat([0, 1], [60, 120]))
    dt, n_frames, box = 10.0, 201, 20.0
    walk = random_walk(rng, n_frames, species, [0.0, 0.004], dt, box)
    x = walk + np.where(species == 0, 1.0, 0.0)[None, :, None] * rng.normal(scale=0.1, size=walk.shape)
    path = write_trajectory(tmp_path / "traj.h5", x, species, box, dt)
    with caplog.at_level(logging.WARNING):
        dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert_array_equal(r["diffusive"], [False, True])
    assert_array_equal(r["tau_alpha_reached"], [False, True])
    assert np.isnan(r["tau_alpha_fs"][0])
    assert r["tau_alpha_fs"][1] == pytest.approx(1 / (Q**2 * 0.004), rel=0.1)
    assert abs(r["D_A2_per_fs"][1] - 0.004) < 3 * r["D_err_A2_per_fs"][1]
    assert abs(r["D_A2_per_fs"][0]) < 0.01 * 0.004
    # The caged species' MSD is its plateau, 3 x 2 x (0.1 A)^2; the other's grows as 6 D t.
    assert_allclose(r["msd_A2"][0][r["lag_frames"] > 5], 0.06, rtol=0.1)
    assert r["msd_A2"][1][-1] > 10 * r["msd_A2"][0][-1]
    warned = [rec.getMessage() for rec in caplog.records]
    assert warned and all(m.startswith("Si:") for m in warned)
