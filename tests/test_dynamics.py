import logging

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, config
from softness.dynamics import (
    DRIFT_SIGMAS,
    MIN_BLOCK_TAU_ALPHA,
    block_bounds,
    block_dynamics,
    correlated_mean_error,
    diffusion_constant,
    dynamics_file,
    energy_drift,
    log_lags,
    relaxation_time,
    self_displacements,
    standard_error,
)
from softness.errors import SoftnessError
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter

Q = 1.7  # 1/A, the default dynamics.q_inv_A


def write_trajectory(path, unwrapped, species, box, dt_fs, *, temperature_K=3500.0, time_fs=None,
                     attrs=None, potential_energy=None, species_names=("Si", "O")):
    """Write unwrapped positions [F, N, 3] as an H5MD trajectory (wrapped + image flags) of the
    species ``species_names``, with extra root ``attrs`` and a per-frame ``potential_energy``
    observable (kcal/mol) if given."""
    images = np.floor(unwrapped / box).astype(np.int32)
    n_frames = unwrapped.shape[0]
    time_fs = np.arange(n_frames) * dt_fs if time_fs is None else time_fs
    observables = {} if potential_energy is None else {"potential_energy": potential_energy}
    with atomic_h5(path, "run", {}) as f:
        f.attrs["temperature_K"] = temperature_K
        f.attrs.update(attrs or {})
        w = H5MDWriter(f, species, np.full(len(species), 20.0), [box] * 3, species_names=species_names,
                       observables=tuple(observables))
        w.append(np.arange(n_frames), time_fs, unwrapped - images * box, images, observables=observables)
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
    # Two blocks of 1000 fs: 5.8 tau_alpha of the slower species (173 fs), so nothing to warn about.
    with caplog.at_level(logging.WARNING):
        dynamics_file(config.resolve({"dynamics": {"n_blocks": 2}}), path, tmp_path / "dyn.h5")
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


# ---------------------------------------------------------------------------- errors from blocks

#: Random walks of known D: F_s(q, t) = exp(-q^2 D t), so tau_alpha = 1 / (q^2 D) exactly.
D_WALK = np.array([0.002, 0.005])  # A^2/fs: tau_alpha = 173 and 69 fs
TAU_WALK = 1 / (Q**2 * D_WALK)
DT_WALK, FRAMES_WALK = 10.0, 400  # 4 blocks of 990 fs: 5.7 tau_alpha of the slower species


def walk_tau_and_error(seed, n_per_species, n_blocks=4):
    """tau_alpha of a whole random-walk run and its block error, as dynamics_file computes them."""
    rng = np.random.default_rng(seed)
    species = np.repeat([0, 1], n_per_species)
    x = random_walk(rng, FRAMES_WALK, species, D_WALK, DT_WALK, 20.0)
    lags = log_lags(FRAMES_WALK, 40)
    _, fs, _ = self_displacements(x, lags, Q)
    tau = np.array([relaxation_time(lags * DT_WALK, fs[:, species == s].mean(axis=1))[0] for s in range(2)])
    blocks = block_dynamics(x, species, DT_WALK, n_blocks, q_inv_A=Q, n_lags=40)
    return tau, np.array([standard_error(blocks["tau_fs"][s]) for s in range(2)])


def test_block_error_of_tau_alpha_is_the_spread_of_independent_runs():
    """16 independent runs at two sizes: the block error matches the run-to-run scatter of
    tau_alpha; the true tau_alpha lies within a run's error about as often as Student's t with 3
    degrees of freedom says (61 % within 1 error, 95 % within 3.18); 4x the atoms halve the error."""
    seeds = range(16)
    small = [walk_tau_and_error(seed, 30) for seed in seeds]
    big = [walk_tau_and_error(100 + seed, 120) for seed in seeds]
    pulls = []
    for runs in (small, big):
        tau, err = (np.array(a) for a in zip(*runs, strict=True))
        scatter = tau.std(axis=0, ddof=1)
        rms_err = np.sqrt(np.mean(err**2, axis=0))
        assert_allclose(rms_err / scatter, 1.0, atol=0.3)
        assert np.all(np.abs(tau.mean(axis=0) - TAU_WALK) < 3 * scatter / np.sqrt(len(seeds)))
        pulls.append(np.abs(tau - TAU_WALK) / err)
    pulls = np.concatenate(pulls).ravel()  # 64 runs and species
    assert 0.4 < np.mean(pulls < 1.0) < 0.8 and np.mean(pulls < 3.18) > 0.85
    ratio = np.sqrt(np.mean(np.array([e for _, e in big]) ** 2, axis=0)
                    / np.mean(np.array([e for _, e in small]) ** 2, axis=0))
    # 1 / sqrt(4) = 0.5; the rms of 16 errors of 3 degrees of freedom each scatters by ~10 %.
    assert np.all((ratio > 0.3) & (ratio < 0.75)), ratio


def test_block_bounds_are_equal_and_consecutive():
    bounds = block_bounds(403, 4)
    assert_array_equal(bounds, [[0, 100], [100, 200], [200, 300], [300, 400]])
    with pytest.raises(SoftnessError, match="dynamics.n_blocks"):
        block_bounds(7, 4)
    assert np.isnan(standard_error([1.0, np.nan])) and standard_error([1.0, 3.0]) == pytest.approx(1.0)


def test_dynamics_file_stores_block_errors_and_flags_short_blocks(tmp_path, caplog):
    rng = np.random.default_rng(7)
    species = np.repeat([0, 1], [40, 40])
    x = random_walk(rng, FRAMES_WALK, species, D_WALK, DT_WALK, 20.0)
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, DT_WALK,
                            attrs={"equilibration_time_fs": 20000.0})
    with caplog.at_level(logging.WARNING):
        dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    assert not caplog.records
    r = read(tmp_path / "dyn.h5")
    assert r["tau_alpha_blocks_fs"].shape == (2, 4) and r["D_blocks_A2_per_fs"].shape == (2, 4)
    for s in range(2):
        assert_allclose(r["tau_alpha_err_fs"][s], standard_error(r["tau_alpha_blocks_fs"][s]), rtol=1e-12)
        assert_allclose(r["D_block_err_A2_per_fs"][s], standard_error(r["D_blocks_A2_per_fs"][s]), rtol=1e-12)
    assert np.all(np.abs(r["tau_alpha_fs"] - TAU_WALK) < 5.84 * r["tau_alpha_err_fs"])
    assert np.all(np.abs(r["D_blocks_A2_per_fs"] / D_WALK[:, None] - 1) < 0.2)
    assert np.all(r["D_err_A2_per_fs"] >= r["D_block_err_A2_per_fs"])
    attrs = r["attrs"]
    assert attrs["n_blocks"] == 4 and attrs["block_length_fs"] == 99 * DT_WALK
    assert_allclose(attrs["block_length_tau_alpha"], 990.0 / r["tau_alpha_fs"], rtol=1e-12)
    assert_array_equal(attrs["blocks_too_short"], [False, False])
    assert attrs["min_block_tau_alpha"] == MIN_BLOCK_TAU_ALPHA

    # 20 blocks of 190 fs: about one tau_alpha of Si, 2.7 of O; both flagged, in the log and the file.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dynamics_file(config.resolve({"dynamics": {"n_blocks": 20}}), path, tmp_path / "short.h5")
    r = read(tmp_path / "short.h5")
    assert_array_equal(r["attrs"]["blocks_too_short"], [True, True])
    warned = [m.getMessage() for m in caplog.records]
    assert len(warned) == 2 and all("shorter than 5 tau_alpha" in m for m in warned)
    assert warned[0].startswith("Si:") and warned[1].startswith("O:")


def test_tau_alpha_error_is_nan_when_fewer_than_two_blocks_reach_it(tmp_path):
    """Si diffuses so slowly that F_s of a 990 fs block stays above 1/e; O relaxes in every block."""
    rng = np.random.default_rng(8)
    species = np.repeat([0, 1], [30, 30])
    x = random_walk(rng, FRAMES_WALK, species, [2e-5, 0.005], DT_WALK, 20.0)
    blocks = block_dynamics(x, species, DT_WALK, 4, q_inv_A=Q, n_lags=40)
    assert np.all(np.isnan(blocks["tau_fs"][0])) and np.all(np.isfinite(blocks["tau_fs"][1]))
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, DT_WALK)
    dynamics_file(config.resolve({}), path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert np.isnan(r["tau_alpha_err_fs"][0]) and np.isfinite(r["tau_alpha_err_fs"][1])
    assert_array_equal(r["attrs"]["blocks_too_short"], [True, False])


# ---------------------------------------------------------------------------- equilibration and drift

def test_short_equilibration_is_warned_about_and_stored(tmp_path, caplog):
    rng = np.random.default_rng(9)
    species = np.repeat([0, 1], [30, 30])
    x = random_walk(rng, FRAMES_WALK, species, D_WALK, DT_WALK, 20.0)
    cfg = config.resolve({"dynamics": {"min_equilibration_tau_alpha": 5.0}})
    # 500 fs: 2.9 tau_alpha of Si (173 fs), 7.2 of O (69 fs): only Si is too short.
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, DT_WALK,
                            attrs={"equilibration_time_fs": 500.0})
    with caplog.at_level(logging.WARNING):
        dynamics_file(cfg, path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert_allclose(r["equilibration_tau_alpha"], 500.0 / r["tau_alpha_fs"], rtol=1e-12)
    assert_allclose(r["equilibration_tau_alpha"], 500.0 / TAU_WALK, rtol=0.1)
    assert_array_equal(r["equilibration_too_short"], [True, False])
    assert r["attrs"]["equilibration_time_fs"] == 500.0 and r["attrs"]["min_equilibration_tau_alpha"] == 5.0
    warned = [m.getMessage() for m in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("Si:") and "min_equilibration_tau_alpha" in warned[0]
    # A trajectory that does not say how long it was equilibrated: NaN, nothing flagged.
    caplog.clear()
    path = write_trajectory(tmp_path / "bare.h5", x, species, 20.0, DT_WALK)
    with caplog.at_level(logging.WARNING):
        dynamics_file(cfg, path, tmp_path / "bare_dyn.h5")
    r = read(tmp_path / "bare_dyn.h5")
    assert np.all(np.isnan(r["equilibration_tau_alpha"])) and not r["equilibration_too_short"].any()
    assert not caplog.records


def ar1(rng, n_series, n, phi):
    """Stationary AR(1) series x_t = phi x_(t-1) + e_t with unit-variance noise, [n_series, n]."""
    x = np.empty((n_series, n))
    x[:, 0] = rng.normal(size=n_series) / np.sqrt(1 - phi**2)
    noise = rng.normal(size=(n_series, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def test_blocking_error_of_a_correlated_mean_is_the_spread_of_means():
    """AR(1) with a correlation time of ~10 samples: the naive error is 4.4x too small; blocking
    gives the scatter of the means of independent series (analytically sqrt((1 + phi) /
    ((1 - phi) (1 - phi^2) n)))."""
    phi, n = 0.9, 2000
    x = ar1(np.random.default_rng(10), 200, n, phi)
    estimated = np.sqrt(np.mean([correlated_mean_error(row) ** 2 for row in x]))
    scatter = x.mean(axis=1).std(ddof=1)
    assert_allclose(estimated, scatter, rtol=0.15)
    assert_allclose(scatter, np.sqrt((1 + phi) / ((1 - phi) * (1 - phi**2) * n)), rtol=0.15)
    assert np.mean(x.std(axis=1, ddof=1)) / np.sqrt(n) < 0.3 * estimated


def test_energy_drift_flags_ageing_and_spares_stationary_runs():
    phi, n = 0.9, 2000
    x = ar1(np.random.default_rng(11), 200, n, phi)
    stationary = [energy_drift(row, 4) for row in x]
    # A false alarm at 3 combined errors: ideally 0.3 %; the blocking errors of 500 samples are a
    # little small, so ~1 % here.
    assert np.mean([d["drift"] for d in stationary]) <= 0.03
    one = stationary[0]
    assert_allclose(one["means"], x[0].reshape(4, -1).mean(axis=1), rtol=1e-12)
    combined = np.hypot(one["errors"][0], one["errors"][-1])
    assert_allclose(one["deviation"], (one["means"][-1] - one["means"][0]) / combined)
    # Ageing: the energy falls linearly by 8 block errors between the first and the last block.
    slope = -8 * combined / (0.75 * n)
    aged = energy_drift(x[0] + slope * np.arange(n), 4)
    assert aged["drift"] and aged["deviation"] < -DRIFT_SIGMAS


def test_dynamics_file_flags_a_drifting_potential_energy(tmp_path, caplog):
    rng = np.random.default_rng(12)
    species = np.repeat([0, 1], [30, 30])
    x = random_walk(rng, FRAMES_WALK, species, D_WALK, DT_WALK, 20.0)
    noise = ar1(rng, 1, FRAMES_WALK, 0.5)[0] * 0.5  # kcal/mol for the 60 atoms
    steady = -17400.0 + noise
    ageing = steady - 0.02 * np.arange(FRAMES_WALK)
    for name, pe, drifts in (("steady", steady, False), ("ageing", ageing, True)):
        path = write_trajectory(tmp_path / f"{name}.h5", x, species, 20.0, DT_WALK, potential_energy=pe,
                                attrs={"equilibration_time_fs": 20000.0})
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            dynamics_file(config.resolve({}), path, tmp_path / f"{name}_dyn.h5")
        r = read(tmp_path / f"{name}_dyn.h5")
        assert r["attrs"]["potential_energy_drift"] == drifts
        assert_allclose(r["potential_energy_blocks_kcal_mol_per_atom"], pe.reshape(4, -1).mean(axis=1) / 60,
                        rtol=1e-12)
        assert (abs(r["attrs"]["potential_energy_drift_sigmas"]) > DRIFT_SIGMAS) == drifts
        assert [("not stationary" in m.getMessage()) for m in caplog.records] == ([True] if drifts else [])


# ---------------------------------------------------------------------------- any species

def test_three_species_random_walkers(tmp_path):
    """A made-up system of three species X, Y, Z (interleaved) walking with different known D:
    D, tau_alpha = 1 / (q^2 D) and the MSD of each species come out per species in the file's
    species order; the product stores the trajectory's names and system."""
    rng = np.random.default_rng(20)
    names = ("X", "Y", "Z")
    species = rng.permutation(np.repeat([0, 1, 2], [120, 150, 180]))
    d_true = np.array([0.003, 0.0015, 0.006])  # A^2/fs, not in order of species number
    dt, n_frames, box = 10.0, 201, 20.0
    x = random_walk(rng, n_frames, species, d_true, dt, box)
    path = write_trajectory(tmp_path / "traj.h5", x, species, box, dt, species_names=names,
                            attrs={"system": "made_up"})
    dynamics_file(config.resolve({"dynamics": {"n_blocks": 2}}), path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert [n.decode() for n in r["species_names"]] == list(names) and r["attrs"]["system"] == "made_up"
    n_lags = len(r["lag_time_fs"])
    assert r["msd_A2"].shape == r["F_s"].shape == (3, n_lags)
    assert r["D_blocks_A2_per_fs"].shape == r["tau_alpha_blocks_fs"].shape == (3, 2)
    assert r["attrs"]["blocks_too_short"].shape == (3,)
    lag_t = r["lag_time_fs"]
    half = lag_t <= lag_t[-1] / 2
    for s in range(3):
        rel_err = np.sqrt(4 * lag_t[half] / (9 * lag_t[-1] * np.sum(species == s)))
        assert np.all(np.abs(r["msd_A2"][s][half] / (6 * d_true[s] * lag_t[half]) - 1) < 4 * rel_err)
    # (the error of 2 blocks scatters widely: a loose bound on it, and the values to 3 errors)
    assert np.all(r["D_err_A2_per_fs"] < 0.2 * d_true)
    assert np.all(np.abs(r["D_A2_per_fs"] - d_true) < 3 * r["D_err_A2_per_fs"])
    assert_array_equal(r["diffusive"], [True, True, True])
    assert_array_equal(r["tau_alpha_reached"], [True, True, True])
    assert_allclose(r["tau_alpha_fs"], 1 / (Q**2 * d_true), rtol=0.06)


def test_one_species_liquid(tmp_path, caplog):
    """A one-species liquid: every per-species result has one entry, named after the species."""
    rng = np.random.default_rng(21)
    species = np.zeros(200, int)
    x = random_walk(rng, FRAMES_WALK, species, [0.004], DT_WALK, 20.0)
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, DT_WALK, species_names=("A",))
    cfg = config.resolve({"dynamics": {"n_blocks": 20}})  # blocks too short: warned, naming A
    with caplog.at_level(logging.WARNING):
        dynamics_file(cfg, path, tmp_path / "dyn.h5")
    r = read(tmp_path / "dyn.h5")
    assert [n.decode() for n in r["species_names"]] == ["A"] and "system" not in r["attrs"]
    assert r["D_A2_per_fs"].shape == (1,) and r["msd_A2"].shape == (1, len(r["lag_time_fs"]))
    assert abs(r["D_A2_per_fs"][0] - 0.004) < 3 * r["D_err_A2_per_fs"][0]
    assert_allclose(r["tau_alpha_fs"], [1 / (Q**2 * 0.004)], rtol=0.06)
    warned = [m.getMessage() for m in caplog.records]
    assert warned and all(m.startswith("A:") for m in warned)
