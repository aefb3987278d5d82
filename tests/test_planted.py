import json

import h5py
import numpy as np
import pytest
import yaml
from numpy.testing import assert_allclose, assert_array_equal
from test_arrhenius import write_dynamics
from test_classifier import N_FEATURES, write_features

from softness import classifier, config, planted
from softness.cli import main

TEMPS = [2800.0, 3000.0, 3300.0, 3700.0, 4200.0, 4700.0]
N_SI, N_O, N_FRAMES, DT_FS = 150, 300, 300, 50.0


# ---------------------------------------------------------------------------- the barrier

@pytest.mark.parametrize("delta", [0.0, 0.5, -0.5])
def test_plant_parameters_put_the_bounds_at_the_corners_with_the_asked_curvature(delta):
    y_lo, y_hi, share = -2.4, 2.7, 0.4
    p = planted.plant_parameters(TEMPS, y_lo, y_hi, P_min=1e-4, P_max=0.3, softness_share=share,
                                 curvature_lnP=delta)
    t = np.linspace(min(TEMPS), max(TEMPS), 301)
    y = np.linspace(y_lo, y_hi, 201)
    ln_p = np.array([planted.ln_probability(y, temp, p) for temp in t])  # [T, y]
    # Brute force over the box: the bounds are reached, never passed.
    assert ln_p.max() == pytest.approx(np.log(0.3), abs=1e-9)
    assert ln_p.min() == pytest.approx(np.log(1e-4), abs=1e-9)
    assert ln_p[-1, -1] == pytest.approx(np.log(0.3)) and ln_p[0, 0] == pytest.approx(np.log(1e-4))
    # The softness takes its share of the log range: e (y_hi / T_max - y_lo / T_min) = share ln(P_max/P_min).
    assert p["e_K"] * (y_hi / max(TEMPS) - y_lo / min(TEMPS)) == pytest.approx(share * np.log(3000.0))
    # At fixed y, ln P departs from its chord in 1/T by delta at most (in the middle).
    x = 1.0 / t
    for col in (0, 100, 200):
        chord = ln_p[0, col] + (ln_p[-1, col] - ln_p[0, col]) * (x - x[0]) / (x[-1] - x[0])
        departure = ln_p[:, col] - chord
        assert departure[np.argmax(np.abs(departure))] == pytest.approx(delta, abs=1e-3 * max(1, abs(delta)))
    # The form itself: Sigma - (E0 - e y) / T + c / T^2, P capped at 1.
    assert_allclose(planted.ln_probability(1.0, 3000.0, p),
                    p["Sigma"] - (p["E0_K"] - p["e_K"]) / 3000.0
                    + p["c_K2"] * (1 / 3000.0 - 1 / p["T_mid_K"]) ** 2)
    assert p["T_mid_K"] == pytest.approx(2 / (1 / 2800 + 1 / 4700))
    assert planted.probability(50.0, 4700.0, p) == 1.0


def test_plant_parameters_refuse_what_cannot_be_planted():
    with pytest.raises(planted.SoftnessError, match="0 < P_min < P_max"):
        planted.plant_parameters(TEMPS, -2, 2, P_min=0.3, P_max=0.1)
    with pytest.raises(planted.SoftnessError, match="straddle"):
        planted.plant_parameters(TEMPS, 0.5, 2)
    with pytest.raises(planted.SoftnessError, match="apparent barrier falls"):
        planted.plant_parameters(TEMPS, -2, 2, softness_share=0.99)
    with pytest.raises(planted.SoftnessError, match="apparent barrier falls"):
        planted.plant_parameters(TEMPS, -2, 2, curvature_lnP=1.5)


def test_planted_events_start_a_rearrangement_within_the_window_with_probability_P():
    rng = np.random.default_rng(1)
    window, stride, n_rows, n_atoms = 3, 4, 400, 600
    levels = np.array([0.02, 0.15, 0.5])
    P = levels[rng.integers(0, 3, size=(n_rows, n_atoms))]
    q = planted.frame_probability(P, window)
    assert_allclose(1 - (1 - q) ** window, P, rtol=1e-12)
    feature_frames = 10 + stride * np.arange(n_rows)
    frames, events = planted.planted_events(P, feature_frames, window, rng)
    assert_array_equal(frames, np.arange(10, 10 + stride * n_rows))
    # Brute force: the window of each feature frame is its first `window` trajectory frames.
    per_row = events.reshape(n_rows, stride, n_atoms)
    hit = per_row[:, :window].any(axis=1)
    for p in levels:
        sel = P == p
        assert abs(hit[sel].mean() - p) < 4 * np.sqrt(p * (1 - p) / sel.sum())
    # Events are independent frame by frame: the frame after the window has probability q.
    later = per_row[:, window]
    for p in levels:
        sel = P == p
        qq = planted.frame_probability(p, window)
        assert abs(later[sel].mean() - qq) < 4 * np.sqrt(qq * (1 - qq) / sel.sum())


def test_streamed_moments_and_projection_match_numpy(monkeypatch):
    rng = np.random.default_rng(4)
    species = np.r_[np.zeros(7, int), np.ones(11, int)]
    # A large offset: a naive sum of squares would lose the variance.
    x = 1e4 + rng.normal(size=(23, species.size, 5)) * np.array([1.0, 0.1, 3.0, 1e-3, 2.0])
    monkeypatch.setattr(classifier, "CHUNK_BYTES", 3 * species.size * 5 * 8)  # three frames per chunk
    mean, std = planted.feature_moments(x, species, "toy")
    u = planted.random_directions(5, rng)
    assert_allclose(np.linalg.norm(u, axis=1), 1.0)
    z = planted.projection(x, species, u, mean, std, "toy")
    for s in (0, 1):
        xs = x[:, species == s].reshape(-1, 5)
        assert_allclose(mean[s], xs.mean(axis=0), rtol=1e-12)
        assert_allclose(std[s], xs.std(axis=0), rtol=1e-7)
        assert_allclose(z[:, species == s], ((x[:, species == s] - mean[s]) / std[s]) @ u[s], atol=1e-8)


def test_window_correlation_of_a_coordinate_that_decorrelates_frame_by_frame():
    rng = np.random.default_rng(8)
    rho, n_rows, species = 0.7, 4000, np.r_[np.zeros(50, int), np.ones(50, int)]
    y = np.empty((n_rows, species.size))
    y[0] = rng.normal(size=species.size)
    for i in range(1, n_rows):  # AR(1): correlation rho ** lag between feature rows
        y[i] = rho * y[i - 1] + np.sqrt(1 - rho**2) * rng.normal(size=species.size)
    # Features on every frame, a window of 4 frames: lags 0, 1, 2, 3 rows.
    assert_allclose(planted.window_correlation(y, species, 1, 4), np.mean(rho ** np.arange(4)), atol=0.01)
    # Features every 2 frames: the window's frames see rows 0, 0, 1, 1.
    assert_allclose(planted.window_correlation(y, species, 2, 4), (2 + 2 * rho) / 4, atol=0.01)
    # Features at least a window apart: the structure is the same over every window.
    assert_array_equal(planted.window_correlation(y, species, 4, 4), [1.0, 1.0])


def test_inverse_T0_error_is_the_propagated_error_of_Sigma1_over_e1():
    rng = np.random.default_rng(6)
    params = np.array([[2e4, 3e3, 2.0, 0.4], [1.5e4, 2e3, 1.0, -0.1]])
    cov = np.stack([np.diag([300.0, 150.0, 0.1, 0.05]) ** 2] * 2)
    cov[:, 1, 3] = cov[:, 3, 1] = 0.8 * 150.0 * 0.05  # e1 and Sigma1 correlated, as in real fits
    names = ("e0_K", "e1_K", "Sigma0", "Sigma1")
    r = {f"lines/{k}": params[:, i] for i, k in enumerate(names)}
    r.update({f"lines/{k}_err": np.sqrt(cov[:, i, i]) for i, k in enumerate(names)})
    r.update({"lines/cov": cov, "lines/T0_K": params[:, 1] / params[:, 3], "lines/T0_K_err": np.ones(2),
              "bin_fit/fitted": np.ones((2, 3), bool), "bin_fit/curved": np.zeros((2, 3), bool),
              "bin_fit/in_lines": np.ones((2, 3), bool), "bin_fit/curvature_c_K2": np.zeros((2, 3)),
              "bin_fit/curvature_c_K2_err": np.ones((2, 3))})
    rec = planted.recovery(r, {"e1_K": np.array([3e3, 2.5e3]), "e0_K": np.array([2e4, 1.4e4]),
                               "Sigma0": np.array([2.0, 1.0])})
    for s in (0, 1):
        samples = rng.multivariate_normal(params[s], cov[s], 200000)
        inv_t0 = samples[:, 3] / samples[:, 1]
        assert rec["inv_T0_per_K"]["error"][s] == pytest.approx(np.std(inv_t0), rel=0.03)
    assert_allclose(rec["inv_T0_per_K"]["recovered"], params[:, 3] / params[:, 1])
    inv = rec["inv_T0_per_K"]
    assert_allclose(inv["pull"], inv["recovered"] / inv["error"])
    assert_allclose(rec["e1_K"]["pull"], (params[:, 1] - [3e3, 2.5e3]) / [150.0, 150.0])
    assert_allclose(rec["Sigma1"]["pull"], params[:, 3] / 0.05)
    assert_array_equal(rec["n_bins_fitted"], [3, 3])


def _config(tmp_path, **arrhenius):
    cfg = {"temperatures_K": TEMPS, "seed": 5, "quench": {"T_min_K": min(TEMPS)},
           "run": {"frame_interval_fs": DT_FS, "production_time_fs": N_FRAMES * DT_FS,
                   "equilibration_time_fs": 1000.0},
           "hops": {"t_R_fs": 100.0, "t_quiet_fs": 500.0},
           "train": {"n_per_class": 800, "C_grid": [0.001, 0.01, 0.1, 1.0], "cv_folds": 3},
           "arrhenius": {"P_R_window_fs": DT_FS, "n_bins": 6, "min_events": 15, "n_bootstrap": 100,
                         **arrhenius}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return config.resolve(cfg), path


def test_planted_hops_file_labels_events_as_the_hops_stage_does(tmp_path):
    cfg, _ = _config(tmp_path)
    rng = np.random.default_rng(2)
    species = np.r_[np.zeros(20, int), np.ones(40, int)]
    events = (rng.random((120, 60)) < 0.03).astype(np.int8)
    frames = np.arange(120)
    params = [{"E0_K": 1.0, "e_K": 2.0, "Sigma": 3.0, "c_K2": 0.0, "T_mid_K": 3500.0}] * 2
    stats = planted.write_planted_hops(cfg, tmp_path / "h.h5", events, frames, frames * DT_FS, species,
                                       3000.0, params, "features.h5", species_names=("Si", "O"),
                                       system="silica")
    q = 5  # t_quiet 500 fs = 2 q frames of 50 fs
    with h5py.File(tmp_path / "h.h5") as f:
        labels, ev = f["labels"][()], f["events"][()]
        assert f.attrs["t_R_fs"] == 100.0 and f.attrs["t_quiet_fs"] == 500.0
        assert f.attrs["temperature_K"] == 3000.0
        assert np.all(np.isfinite(f["p_hop"][()]))
        assert_array_equal(f["n_events"][()], [events[:, :20].sum(), events[:, 20:].sum()])
        assert_array_equal(f.attrs["planted_e_K"], [2.0, 2.0])
        assert [n.decode() for n in f["species_names"][()]] == ["Si", "O"] and f.attrs["system"] == "silica"
    assert_array_equal(ev, events)
    assert_array_equal(stats["n_events"], [events[:, :20].sum(), events[:, 20:].sum()])
    # Brute force: 1 at the events; 0 where the 2 q + 1 frames centred on the frame hold no event.
    for g in range(120):
        for i in range(60):
            if events[g, i]:
                want = 1
            elif q <= g < 120 - q and not events[g - q:g + q + 1, i].any():
                want = 0
            else:
                want = -1
            assert labels[g, i] == want, (g, i)


# ---------------------------------------------------------------------------- end to end

def write_temperature(tmp_path, rng, t, drift):
    """Features: standard normal per feature, shifted with T along ``drift`` (so <y>(T) moves)."""
    species = np.r_[np.zeros(N_SI, int), np.ones(N_O, int)]
    rng.shuffle(species)
    x = rng.normal(size=(N_FRAMES, species.size, N_FEATURES))
    x += (t - 3500.0) / 1000.0 * drift[species]
    write_features(tmp_path / f"features_{t:g}.h5", x.astype(np.float32), np.arange(N_FRAMES), species, t)
    # tau_alpha far above 3 t_R (100 fs) everywhere: no temperature is flagged.
    tau = 1e3 * np.exp(2e4 / t)
    write_dynamics(tmp_path / f"dynamics_{t:g}.h5", t, [tau, 0.7 * tau], [1e-4 * np.exp(-2e4 / t)] * 2)
    with h5py.File(tmp_path / f"dynamics_{t:g}.h5", "a") as f:
        f["tau_alpha_err_fs"] = 0.05 * f["tau_alpha_fs"][()]


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory):
    """An Arrhenius plant through the command line, then a curved one along the first model's normal."""
    d = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(7)
    drift = 0.3 * rng.normal(size=(2, N_FEATURES)) / np.sqrt(N_FEATURES)
    for t in TEMPS:
        write_temperature(d, rng, t, drift)
    cfg, cfg_path = _config(d)
    features = [str(d / f"features_{t:g}.h5") for t in TEMPS[::-1]]
    dynamics = [str(d / f"dynamics_{t:g}.h5") for t in TEMPS]
    assert main(["planted", "--config", str(cfg_path), "--features", *features, "--dynamics", *dynamics,
                 "--P-min", "3e-3", "--work", str(d / "straight"), "--out", str(d / "straight.h5"),
                 "--summary", str(d / "straight.json")]) == 0
    curved = planted.planted_file(cfg, features, dynamics, d / "curved.h5", work=d / "curved",
                                  model=d / "straight" / "model_planted.h5", P_min=3e-3, softness_share=0.2,
                                  curvature_lnP=0.8)
    return d, cfg, curved


def read_group(f, name):
    out = {}
    f[name].visititems(lambda k, obj: out.__setitem__(k, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_planted_slope_comes_back_within_its_error_and_the_lines_do_not_cross(planted_runs):
    d, _, _ = planted_runs
    with h5py.File(d / "straight.h5") as f:
        assert f.attrs["stage"] == "planted" and f.attrs["curvature_lnP"] == 0.0
        learned, oracle = read_group(f, "recovery/learned"), read_group(f, "recovery/oracle")
        plant, align = read_group(f, "planted"), read_group(f, "alignment")
        assert_array_equal(f["temperature_K"][()], TEMPS)
        summary = json.loads(f.attrs["summary"])
    assert summary == json.loads((d / "straight.json").read_text())
    assert_array_equal(plant["c_K2"], 0.0)
    # Features on every frame and a P_R window of one frame: each window has one structure.
    assert_array_equal(plant["window_frames"], 1)
    assert_array_equal(plant["window_y_correlation"], 1.0)
    # The plant spans the asked range and every temperature has events to count.
    assert np.all(plant["mean_P"] > 3e-3) and np.all(plant["mean_P"] < 0.3)
    assert np.all(plant["n_events"] > 500)
    # A learned direction close to the planted one.
    assert np.all(align["cosine"] > 0.8) and np.all(align["pearson_S_y"] > 0.8)
    for rec in (learned, oracle):
        assert np.all(rec["n_bins_fitted"] >= 5) and np.all(rec["n_bins_curved"] == 0)
        assert_allclose(rec["e1_K/planted"], plant["e_K"])
        for key in ("e1_K", "Sigma1", "inv_T0_per_K"):
            assert np.all(np.isfinite(rec[f"{key}/error"]) & (rec[f"{key}/error"] > 0)), key
            assert np.all(np.abs(rec[f"{key}/pull"]) < 3), (key, rec[f"{key}/pull"])
            assert_allclose(rec[f"{key}/pull"], (rec[f"{key}/recovered"] - rec[f"{key}/planted"])
                            / rec[f"{key}/error"])
        # A recovery, not a shrug: the slope is measured to better than half its value.
        assert np.all(rec["e1_K/error"] < 0.5 * plant["e_K"])
        assert_allclose(rec["inv_T0_per_K/recovered"], rec["Sigma1/recovered"] / rec["e1_K/recovered"])
    # With y itself as the softness, the offsets come back too.
    for key in ("e0_K", "Sigma0"):
        assert np.all(np.abs(oracle[f"{key}/pull"]) < 3), (key, oracle[f"{key}/pull"])
    assert_allclose(oracle["e0_K/planted"], plant["E0_K"])
    assert_allclose(oracle["Sigma0/planted"], plant["Sigma"])
    s = summary["species"]["O"]
    assert s["learned"]["e1_K"]["planted"] == pytest.approx(plant["e_K"][1])
    assert s["planted"]["e_eV"] == pytest.approx(plant["e_K"][1] * 8.617333e-5, rel=1e-4)


def test_planted_coordinate_has_unit_variance_at_T_train_and_follows_a_given_model(planted_runs):
    d, _, curved = planted_runs
    model = d / "straight" / "model_planted.h5"
    for t, path in zip(TEMPS, curved["files"]["oracle"], strict=True):
        with h5py.File(path) as f:
            y, species = f["softness"][()].astype(np.float64), f["species"][()]
        # Along a model's normal, in its standardisation, y is that model's softness less its mean at T_train.
        s = classifier.softness_of(model, d / f"features_{t:g}.h5")
        if t == TEMPS[0]:
            s_mean = [s[:, species == k].mean() for k in (0, 1)]
            for k in (0, 1):
                assert y[:, species == k].mean() == pytest.approx(0.0, abs=1e-6)
                assert y[:, species == k].std() == pytest.approx(1.0, rel=1e-6)
        for k in (0, 1):
            assert_allclose(y[:, species == k], s[:, species == k] - s_mean[k], atol=2e-5)
    m = classifier.load_model(model)
    assert_allclose(curved["planted"]["u"], m.weights / np.linalg.norm(m.weights, axis=1, keepdims=True))
    assert "normal of model" in curved["planted"]["direction"]


def test_a_planted_non_arrhenius_P_R_is_flagged_by_the_curvature_test(planted_runs):
    _, _, res = planted_runs
    c = res["planted"]["c_K2"]
    # delta = 0.8 in ln P between 2800 and 4700 K: c = -4 delta / (1/2800 - 1/4700)^2.
    assert_allclose(c, -3.2 / (1 / 2800 - 1 / 4700) ** 2)
    for run in ("learned", "oracle"):
        rec = res[run]
        for s in (0, 1):
            fitted = rec["fitted"][s]
            assert fitted.sum() >= 5
            # Each bin's fitted coefficient of 1/T^2 is the planted one (the misalignment of the
            # learned S adds e^2 (1 - r^2) / 2, a thousandth of it).
            pull = (rec["curvature_c_K2"][s, fitted] - c[s]) / rec["curvature_c_K2_err"][s, fitted]
            assert np.all(np.abs(pull) < 3.5), (run, s, pull)
            # ... and flagged (Holm-corrected, with 3 degrees of freedom per bin): every species at
            # least once, with y itself as the softness in most bins.
            least = 0.6 * fitted.sum() if run == "oracle" else 1
            assert rec["curved"][s].sum() >= least, (run, s, rec["curved"])
        assert rec["curved"].sum() >= 0.5 * rec["fitted"].sum()


XYZ = ("X", "Y", "Z")


def test_a_plant_on_three_species_comes_back_for_each(tmp_path, caplog):
    """Species come from the features files: three made-up species, each with its own planted
    barrier (from its own range of y), each recovered by the oracle and the learned softness; the
    per-species thresholds are looked up by name, and a species without one is refused."""
    rng = np.random.default_rng(11)
    temps = TEMPS[::2] + [TEMPS[-1]]  # 2800, 3300, 4200, 4700 K
    n_atoms, n_frames = 240, 200
    species = np.arange(n_atoms) * 3 // n_atoms
    for t in temps:
        spread = np.array([1.0, 1.5, 0.7])[species][None, :, None]
        x = rng.normal(size=(n_frames, n_atoms, N_FEATURES)) * spread
        write_features(tmp_path / f"features_{t:g}.h5", x.astype(np.float32), np.arange(n_frames), species, t,
                       species_names=XYZ, system="made_up")
        tau = 1e3 * np.exp(2e4 / t)
        write_dynamics(tmp_path / f"dynamics_{t:g}.h5", t, [tau, 0.7 * tau, 0.5 * tau],
                       [1e-4 * np.exp(-2e4 / t)] * 3, species_names=XYZ)
    cfg, _ = _config(tmp_path)
    cfg = {**cfg, "temperatures_K": temps,
           "hops": {**cfg["hops"], "p_c_A2": {"X": 1.0, "Y": 2.0, "Z": 3.0},
                    "p_quiet_A2": {"X": 0.5, "Y": 1.0, "Z": 1.5}}}
    features = [tmp_path / f"features_{t:g}.h5" for t in temps]
    dynamics = [tmp_path / f"dynamics_{t:g}.h5" for t in temps]
    res = planted.planted_file(cfg, features, dynamics, tmp_path / "p.h5", work=tmp_path / "work",
                               summary_json=tmp_path / "p.json", P_min=3e-3)
    assert res["species_names"] == XYZ
    plant = res["planted"]
    assert plant["u"].shape == (3, N_FEATURES) and plant["n_events"].shape == (3, len(temps))
    assert np.all(plant["n_events"] > 200)
    # Each species' y has zero mean and unit variance at T_train, whatever its features' spread.
    with h5py.File(res["files"]["oracle"][0]) as f:
        y = f["softness"][()]
        assert [n.decode() for n in f["species_names"][()]] == list(XYZ) and f.attrs["system"] == "made_up"
    for sp in range(3):
        assert y[:, species == sp].mean() == pytest.approx(0.0, abs=1e-5)
        assert y[:, species == sp].std() == pytest.approx(1.0, rel=1e-5)
    # The planted hops files carry the names and each species' own thresholds.
    with h5py.File(res["files"]["hops"][0]) as f:
        assert [n.decode() for n in f["species_names"][()]] == list(XYZ)
        assert_array_equal(f["thresholds/p_c_A2"][()], [1.0, 2.0, 3.0])
        p_hop, events = f["p_hop"][()], f["events"][()]
        atoms = np.nonzero(events == 1)[1]
        assert_allclose(p_hop[events == 1], 2 * np.array([1.0, 2.0, 3.0])[species[atoms]])
    for run in ("oracle", "learned"):
        rec = res[run]
        assert np.all(rec["n_bins_fitted"] >= 4), run
        assert np.all(np.abs(rec["e1_K"]["pull"]) < 3.5), (run, rec["e1_K"]["pull"])
        assert np.all(rec["e1_K"]["error"] < 0.5 * plant["e_K"])
    assert np.all(res["alignment"]["cosine"] > 0.8)
    summary = json.loads((tmp_path / "p.json").read_text())
    assert list(summary["species"]) == list(XYZ)
    with h5py.File(tmp_path / "p.h5") as f:
        assert [n.decode() for n in f["species_names"][()]] == list(XYZ) and f.attrs["system"] == "made_up"
    # A species of the files without a threshold: one sentence naming the key, the species and the file.
    cfg["hops"]["p_quiet_A2"] = {"X": 0.5, "Y": 1.0}
    with pytest.raises(planted.SoftnessError, match="config key 'hops.p_quiet_A2' has no value for species "
                                                    "'Z' of features file"):
        planted.planted_barrier_test(cfg, features, dynamics, tmp_path / "work2")


def test_planted_refuses_features_without_T_train(tmp_path, capsys):
    rng = np.random.default_rng(3)
    drift = np.zeros((2, N_FEATURES))
    for t in TEMPS[1:3]:
        write_temperature(tmp_path, rng, t, drift)
    _, cfg_path = _config(tmp_path)
    args = ["planted", "--config", str(cfg_path), "--features",
            *[str(tmp_path / f"features_{t:g}.h5") for t in TEMPS[1:3]],
            "--dynamics", *[str(tmp_path / f"dynamics_{t:g}.h5") for t in TEMPS[1:3]],
            "--out", str(tmp_path / "p.h5")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "T_train = 2800 K" in err and "train.T_train_K" in err
    assert not (tmp_path / "p.h5").exists()
    assert main([*args, "--E0-K", "1e4"]) == 1
    assert "all three" in capsys.readouterr().err
