import logging

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import classifier, config
from softness.cli import main
from softness.errors import SoftnessError
from softness.io import atomic_h5

N_R = 4
STR = h5py.string_dtype("utf-8")


def small_grid(r_max=2.5):
    """A grid in the layout of softness.structure (radial species-major, then angular pair-major)."""
    return {
        "radial_r_A": np.linspace(1.0, r_max, N_R), "radial_width_A": np.full(N_R, 0.1),
        "radial_species": np.array(["Si", "O"], dtype=STR),
        "angular_xi_A": np.array([2.0, 3.0]), "angular_lambda": np.array([1.0, -1.0]),
        "angular_zeta": np.array([1.0, 2.0]), "angular_pair": np.array(["SiSi", "SiO", "OO"], dtype=STR),
    }


N_FEATURES = 2 * N_R + 3 * 2


SILICA = ("Si", "O")


def write_features(path, x, frames, species, temperature, grid=None, cfg=None, species_names=SILICA,
                   system=None):
    grid = small_grid() if grid is None else grid
    with atomic_h5(path, "features", cfg or {}) as f:
        f["species_names"] = np.array(species_names, dtype="S")
        if system is not None:
            f.attrs["system"] = system
        f["features"] = np.asarray(x, np.float32)
        f["frames"] = np.asarray(frames, np.int64)
        f["step"] = np.asarray(frames, np.int64) * 50
        f["time_fs"] = np.asarray(frames, np.float64) * 50.0
        f["species"] = np.asarray(species, np.int32)
        f["feature_names"] = np.array([f"g{i}" for i in range(x.shape[2])], dtype=h5py.string_dtype())
        for k, v in grid.items():
            f[f"grid/{k}"] = v
        f["grid"].attrs["cutoff_A"] = 6.5
        f["grid"].attrs["radial_convention"] = "G_X(i; r, delta) = sum exp(-(R_ij - r)^2 / (2 delta^2))"
        f.attrs["cutoff_A"] = 6.5
        f.attrs["temperature_K"] = float(temperature)


def write_hops(path, labels, species, temperature, p_hop=None, species_names=SILICA, system=None):
    n_frames = labels.shape[0]
    with atomic_h5(path, "hops", {}) as f:
        f["species_names"] = np.array(species_names, dtype="S")
        if system is not None:
            f.attrs["system"] = system
        f["labels"] = np.asarray(labels, np.int8)
        f["p_hop"] = (np.where(labels == 1, 1.0, 0.01) if p_hop is None else p_hop).astype(np.float32)
        f["frames"] = np.arange(n_frames)
        f["step"] = np.arange(n_frames) * 50
        f["time_fs"] = np.arange(n_frames) * 50.0
        f["species"] = np.asarray(species, np.int32)
        f.attrs["temperature_K"] = float(temperature)
        f.attrs["t_R_fs"] = 100.0
        f.attrs["t_quiet_fs"] = 500.0


def synthetic_run(tmp_path, rng, *, n_atoms=60, n_traj_frames=80, stride=2, temperature=3000.0, u=None,
                  spread=None, name=""):
    """Features every ``stride`` frames; labels on every frame from a hidden linear rule.

    The features are normal with per-feature standard deviations ``spread`` (default 1); an
    atom rearranges when z = u . x (u [2, F] per species, unit rows; random by default) exceeds
    0.8 standard deviations of z and is quiet below -0.8. Files: features{name}.h5, hops{name}.h5.
    """
    species = np.r_[np.zeros(n_atoms // 3, int), np.ones(n_atoms - n_atoms // 3, int)]
    frames = np.arange(0, n_traj_frames, stride)
    spread = np.ones(N_FEATURES) if spread is None else np.asarray(spread)
    x = (rng.normal(size=(frames.size, n_atoms, N_FEATURES)) * spread).astype(np.float32)
    if u is None:
        u = rng.normal(size=(2, N_FEATURES))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
    z = np.einsum("rnf,nf->rn", x, u[species])
    threshold = 0.8 * np.linalg.norm(u * spread, axis=1)[species]  # 0.8 standard deviations of z
    z_traj = np.repeat(z, stride, axis=0)[:n_traj_frames]  # structure of the latest feature frame
    labels = np.where(z_traj > threshold, 1, np.where(z_traj < -threshold, 0, -1)).astype(np.int8)
    labels[:2] = -1  # like p_hop, undefined at the ends
    write_features(tmp_path / f"features{name}.h5", x, frames, species, temperature)
    write_hops(tmp_path / f"hops{name}.h5", labels, species, temperature)
    return species, frames, x, u, labels


def anisotropic_data(rng, n, normal, offset, noise=0.0):
    scale = np.array([1.0, 3.0, 0.5, 2.0, 1.0, 0.2])
    x = rng.normal(size=(n, scale.size)) * scale + np.array([5.0, -2.0, 0.0, 1.0, 0.0, 3.0])
    d = (x @ normal + offset) / np.linalg.norm(normal)
    p_flip = 0.5 * np.exp(-np.abs(d) / noise) if noise > 0 else np.zeros(n)
    y = ((d > 0) ^ (rng.random(n) < p_flip)).astype(int)
    return x, y, 1.0 - p_flip.mean()


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_svm_recovers_the_true_hyperplane(noise):
    rng = np.random.default_rng(1)
    normal = np.array([1.0, -0.5, 2.0, 0.3, 0.0, 4.0])
    offset = -(np.array([5.0, -2.0, 0.0, 1.0, 0.0, 3.0]) @ normal) + 0.5
    x, y, bayes_accuracy = anisotropic_data(rng, 3000, normal, offset, noise)
    fit = classifier.fit_linear_svm(x, y, [0.1, 1.0, 10.0, 100.0], cv_folds=3, seed=0)
    w_raw = fit["weights"] / fit["scale"]  # normal of the fitted plane in raw feature space
    cosine = w_raw @ normal / np.linalg.norm(w_raw) / np.linalg.norm(normal)
    assert cosine > 0.99
    # As accurate as the true plane (the best any classifier can do) within the counting error.
    assert fit["accuracy"] > bayes_accuracy - 3 * fit["accuracy_err"] - 0.01
    assert fit["cv_accuracy_mean"].shape == (4,) and np.all(fit["cv_accuracy_std"] >= 0)
    n_test = fit["n_test"]
    assert n_test == 600 and fit["is_test"].sum() == n_test
    assert_allclose(fit["accuracy_err"], np.sqrt(fit["accuracy"] * (1 - fit["accuracy"]) / n_test))


def test_an_optimum_at_the_edge_of_the_C_grid_is_reported(caplog):
    folds = np.array([[0.70, 0.71, 0.69], [0.75, 0.76, 0.74], [0.77, 0.78, 0.77]])  # [C, fold]
    assert classifier.grid_edge_optimum([0.1, 1.0, 10.0], folds) == "upper"
    assert classifier.grid_edge_optimum([10.0, 0.1, 1.0], folds[[2, 0, 1]]) == "upper"  # any order
    assert classifier.grid_edge_optimum([0.1, 1.0, 10.0], folds[::-1]) == "lower"
    plateau = np.array([[0.70, 0.71, 0.69], [0.77, 0.78, 0.76], [0.77, 0.78, 0.76]])
    assert classifier.grid_edge_optimum([0.1, 1.0, 10.0], plateau) is None
    assert classifier.grid_edge_optimum([0.1, 1.0, 10.0], folds[[0, 2, 1]]) is None  # inner optimum
    # Higher on average, but only through one fold: within the noise of the paired difference.
    noisy = np.array([[0.70, 0.71, 0.69], [0.77, 0.78, 0.76], [0.76, 0.77, 0.80]])
    assert classifier.grid_edge_optimum([0.1, 1.0, 10.0], noisy) is None
    assert classifier.grid_edge_optimum([1.0], [[0.9, 0.8]]) is None
    # A separable problem over-regularised by its grid: accuracy climbs to the largest C.
    rng = np.random.default_rng(3)
    normal = np.array([1.0, -0.5, 2.0, 0.3, 0.0, 4.0])
    offset = -(np.array([5.0, -2.0, 0.0, 1.0, 0.0, 3.0]) @ normal)
    x, y, _ = anisotropic_data(rng, 600, normal, offset)
    with caplog.at_level(logging.WARNING, logger="softness.classifier"):
        fit = classifier.fit_linear_svm(x, y, [1e-5, 1e-4, 1e-3], cv_folds=3, seed=0, what="toy set")
    assert np.all(np.diff(fit["cv_accuracy_mean"]) > 0) and fit["C"] == 1e-3
    assert any("toy set" in r.getMessage() and "upper end of train.C_grid" in r.getMessage()
               for r in caplog.records)
    # With label noise the accuracy peaks inside a wide grid: nothing to report.
    x, y, _ = anisotropic_data(rng, 600, normal, offset, noise=0.3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="softness.classifier"):
        fit = classifier.fit_linear_svm(x, y, [1e-5, 1e-3, 1e-1, 1.0, 100.0], cv_folds=3, seed=0)
    assert 1e-5 < fit["C"] < 100.0
    assert not any("C_grid" in r.getMessage() for r in caplog.records)


def _model_from_fit(fit, n_features, softness_scale=(1.0, 1.0)):
    m = classifier.SoftnessModel(mean=np.zeros((2, n_features)), scale=np.ones((2, n_features)),
                                 weights=np.zeros((2, n_features)), intercept=np.zeros(2), C=np.ones(2),
                                 feature_names=[f"g{i}" for i in range(n_features)], grid={}, T_train_K=1.0,
                                 softness_scale=np.asarray(softness_scale, dtype=float), species_names=SILICA)
    for s in range(2):
        m.mean[s], m.scale[s], m.weights[s], m.intercept[s] = (fit["mean"], fit["scale"], fit["weights"],
                                                               fit["intercept"])
    return m


def test_softness_is_the_signed_distance_in_standardised_space_in_units_of_sigma_S():
    rng = np.random.default_rng(2)
    normal = np.array([2.0, 1.0, -1.0, 0.5, 0.0, 1.0])
    x, y, _ = anisotropic_data(rng, 2000, normal, -(np.array([5.0, -2.0, 0.0, 1.0, 0.0, 3.0]) @ normal))
    fit = classifier.fit_linear_svm(x, y, [1.0, 10.0], cv_folds=3, seed=0)
    sigma = np.array([0.25, 2.0])
    model = _model_from_fit(fit, x.shape[1], sigma)
    species = np.array([0, 1])
    w, b = fit["weights"], fit["intercept"]
    n_hat = w / np.linalg.norm(w)
    # A point on the plane (standardised space), mapped back to raw features, has S = 0; moving
    # it by t along the unit normal (in standardised space) gives S = t / sigma_S.
    v = rng.normal(size=n_hat.size)
    x_std_on = -b / np.linalg.norm(w) * n_hat + v - (v @ n_hat) * n_hat
    for t in (0.0, 1.5, -2.25):
        raw = (x_std_on + t * n_hat) * fit["scale"] + fit["mean"]
        s = model.softness(np.stack([raw, raw]), species)
        assert_allclose(s, t / sigma, atol=1e-9)
    # The same as the brute-force signed distance of the standardised points, over sigma_S.
    s = model.softness(x[:, None, :], np.array([0]))[:, 0]
    assert_allclose(s * sigma[0], classifier.signed_distance((x - fit["mean"]) / fit["scale"], w, b),
                    rtol=1e-10)
    # Positive on the rearranging side.
    assert np.mean((s > 0) == (y == 1)) > 0.97


def test_softness_matches_the_true_geometric_distance_for_isotropic_features():
    rng = np.random.default_rng(3)
    n_hat = rng.normal(size=8)
    n_hat /= np.linalg.norm(n_hat)
    x = rng.normal(size=(4000, 8))
    d_true = x @ n_hat + 0.3
    fit = classifier.fit_linear_svm(x, (d_true > 0).astype(int), [10.0, 100.0], cv_folds=3, seed=0)
    s = _model_from_fit(fit, 8).softness(x[:, None, :], np.array([0]))[:, 0]
    near = np.abs(d_true) < 2
    assert np.max(np.abs(s - d_true)[near]) < 0.1


def test_label_frames_use_the_latest_feature_frame_at_or_before_them():
    feature_frames = np.array([3, 6, 9, 12])
    label_frames = np.arange(0, 17)
    rows = classifier.label_to_feature_rows(label_frames, feature_frames)
    expected = [-1 if g < 3 or g >= 15 else max(i for i, f in enumerate(feature_frames) if f <= g)
                for g in label_frames]
    assert_array_equal(rows, expected)


def test_balanced_training_pairs_are_distinct_members_of_their_class():
    rng = np.random.default_rng(4)
    labels = rng.choice([-1, 0, 1], p=[0.5, 0.4, 0.1], size=(40, 30)).astype(np.int8)
    species = np.arange(30) % 2
    rows = classifier.label_to_feature_rows(np.arange(40), np.arange(0, 40, 2))
    rearranging, quiet = classifier.class_masks(labels, rows, 20, chunk=7)
    # Brute force: a (row, atom) pair is rearranging if any of its two frames says so.
    pairs = labels.reshape(20, 2, 30)
    r_ref, q_ref = (pairs == 1).any(axis=1), (pairs == 0).any(axis=1)
    assert_array_equal(rearranging, r_ref & ~q_ref)
    assert_array_equal(quiet, q_ref & ~r_ref)
    out = classifier.balanced_training_pairs(rearranging, quiet, species, 25, np.random.default_rng(0))
    again = classifier.balanced_training_pairs(rearranging, quiet, species, 25, np.random.default_rng(0))
    for s in (0, 1):
        r, a, lab, available = out[s]
        assert_array_equal(r, again[s][0])
        assert_array_equal(a, again[s][1])
        n = min(25, *available)
        assert (lab == 1).sum() == (lab == 0).sum() == n
        assert np.all(species[a] == s)
        assert np.all(np.where(lab == 1, rearranging[r, a], quiet[r, a]))
        assert len(set(zip(r.tolist(), a.tolist(), strict=True))) == 2 * n
        assert available == (int(rearranging[:, species == s].sum()), int(quiet[:, species == s].sum()))


def test_train_apply_round_trip_through_files(tmp_path):
    rng = np.random.default_rng(5)
    species, frames, x, u, labels = synthetic_run(tmp_path, rng)
    cfg = config.resolve({"temperatures_K": [3000], "train": {"n_per_class": 300, "C_grid": [0.1, 1.0],
                                                              "cv_folds": 3}})
    model = classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "model.h5")
    with h5py.File(tmp_path / "model.h5", "r") as f:
        assert f.attrs["stage"] == "train" and f.attrs["T_train_K"] == 3000.0
        assert f["weights"].shape == (2, N_FEATURES) and f["cv_accuracy_mean"].shape == (2, 2)
        assert np.all(f["accuracy"][()] > 0.9)
        t = {k: f["training"][k][()] for k in f["training"]}
        assert set(np.unique(t["frame"])) <= set(frames)  # structure only from feature frames
        assert_array_equal(f["n_train"][()] + f["n_test"][()], [np.sum(t["species"] == s) for s in (0, 1)])
        for s in (0, 1):
            mine = t["species"] == s
            assert np.sum(mine & (t["label"] == 1)) == np.sum(mine & (t["label"] == 0))
        # Each example's label occurs at a labelled frame that uses that feature frame.
        for fr, a, lab in zip(t["frame"][:50], t["atom"][:50], t["label"][:50], strict=True):
            assert lab in labels[fr:fr + 2, a]
        assert f["grid/radial_r_A"].shape == (N_R,) and f["grid"].attrs["cutoff_A"] == 6.5
        assert f.attrs["cutoff_A"] == 6.5 and "radial_convention" in f["grid"].attrs
        top = f["top_features"]
        assert top["index"].shape == top["r_A"].shape == (2, min(N_FEATURES, classifier.N_TOP_FEATURES))
        kinds = top["kind"].asstr()[()]
        assert set(kinds.ravel()) <= {"radial", "angular"}
        assert np.all(np.isfinite(top["r_A"][()]) == (kinds == "radial"))
    # Learnt direction matches the hidden rule for both species.
    for s in (0, 1):
        w = model.weights[s] / model.scale[s]
        assert w @ u[s] / np.linalg.norm(w) > 0.95
    # Round trip: the loaded model and the apply stage give the in-memory model's softness.
    loaded = classifier.load_model(tmp_path / "model.h5")
    for key in ("mean", "scale", "weights", "intercept"):
        assert_array_equal(getattr(loaded, key), getattr(model, key))
    assert main(["apply", "--model", str(tmp_path / "model.h5"), "--features", str(tmp_path / "features.h5"),
                 "--out", str(tmp_path / "soft.h5")]) == 0
    expected = model.softness(x, species)
    with h5py.File(tmp_path / "soft.h5", "r") as f:
        assert f["softness"].dtype == np.float32 and f.attrs["temperature_K"] == 3000.0
        assert_array_equal(f["frames"][()], frames)
        assert_array_equal(f["species"][()], species)
        assert_allclose(f["softness"][()], expected.astype(np.float32), rtol=1e-6, atol=1e-6)
        assert_array_equal(f["softness"][()], loaded.softness(x, species).astype(np.float32))
    # Softness tracks the hidden linear variable and its sign the labels.
    z = np.einsum("rnf,nf->rn", x, u[species])
    assert np.corrcoef(z.ravel(), expected.ravel())[0, 1] > 0.95


def test_apply_streams_in_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    species, frames, x, _, _ = synthetic_run(tmp_path, rng, n_atoms=30, n_traj_frames=40)
    cfg = config.resolve({"temperatures_K": [3000], "train": {"n_per_class": 100, "cv_folds": 3}})
    model = classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "m.h5")
    monkeypatch.setattr(classifier, "CHUNK_BYTES", 3 * 30 * N_FEATURES * 4)  # three frames at a time
    classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "features.h5", tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert_allclose(f["softness"][()], model.softness(x, species), rtol=1e-5, atol=1e-5)


def test_model_refuses_features_with_another_grid(tmp_path, capsys):
    rng = np.random.default_rng(7)
    species, frames, x, _, _ = synthetic_run(tmp_path, rng, n_atoms=30, n_traj_frames=40)
    cfg = config.resolve({"temperatures_K": [3000], "train": {"n_per_class": 100, "cv_folds": 3}})
    classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "m.h5")
    write_features(tmp_path / "other.h5", x, frames, species, 3500.0, grid=small_grid(r_max=3.0))
    with pytest.raises(SoftnessError, match="different structure-function grid.*radial_r_A"):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "other.h5", tmp_path / "s.h5")
    code = main(["apply", "--model", str(tmp_path / "m.h5"), "--features", str(tmp_path / "other.h5"),
                 "--out", str(tmp_path / "s.h5")])
    assert code == 1 and "radial_r_A" in capsys.readouterr().err
    assert not (tmp_path / "s.h5").exists() and not list(tmp_path.glob(".*partial"))
    fewer = x[:, :, :-1]
    write_features(tmp_path / "fewer.h5", fewer, frames, species, 3500.0)
    with pytest.raises(SoftnessError, match="different features"):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "fewer.h5", tmp_path / "s.h5")


def test_a_model_is_refused_on_features_that_name_other_species(tmp_path, capsys):
    """Species come from the files: a model trained on (Si, O) does not apply to features of another
    system, even with the same count of species, the same grid and the same atoms."""
    rng = np.random.default_rng(9)
    species, frames, x, _, _ = synthetic_run(tmp_path, rng, n_atoms=30, n_traj_frames=40)
    cfg = config.resolve({"temperatures_K": [3000], "train": {"n_per_class": 100, "cv_folds": 3}})
    model = classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "m.h5")
    assert model.species_names == SILICA and classifier.load_model(tmp_path / "m.h5").species_names == SILICA
    write_features(tmp_path / "ka.h5", x, frames, species, 3000.0, species_names=("A", "B"))
    sentence = r"ka.h5 names the species \(A, B\) but model .*m.h5 was trained on \(Si, O\)"
    with pytest.raises(SoftnessError, match=sentence):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "ka.h5", tmp_path / "s.h5")
    with pytest.raises(SoftnessError, match=sentence):
        classifier.softness_of(tmp_path / "m.h5", tmp_path / "ka.h5")
    code = main(["apply", "--model", str(tmp_path / "m.h5"), "--features", str(tmp_path / "ka.h5"),
                 "--out", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err
    assert code == 1 and "names the species (A, B)" in err and err.count("\n") <= 2
    assert not (tmp_path / "s.h5").exists()
    # The same names in another order are other species too.
    write_features(tmp_path / "swapped.h5", x, frames, species, 3000.0, species_names=("O", "Si"))
    with pytest.raises(SoftnessError, match=r"names the species \(O, Si\)"):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "swapped.h5", tmp_path / "s.h5")
    # A third species.
    write_features(tmp_path / "three.h5", x, frames, species, 3000.0, species_names=("Si", "O", "Na"))
    with pytest.raises(SoftnessError, match=r"names the species \(Si, O, Na\)"):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "three.h5", tmp_path / "s.h5")
    # Training needs features and hops of the same species; a features file without names is refused.
    write_hops(tmp_path / "hops_ka.h5", np.zeros((40, 30), np.int8), species, 3000.0,
               species_names=("A", "B"))
    with pytest.raises(SoftnessError, match=r"hops file .*hops_ka.h5 names the species \(A, B\) but "
                                            "features"):
        classifier.train(cfg, tmp_path / "features.h5", tmp_path / "hops_ka.h5")
    with h5py.File(tmp_path / "ka.h5", "a") as f:
        del f["species_names"]
    with pytest.raises(SoftnessError, match="ka.h5 has no '/species_names'"):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "ka.h5", tmp_path / "s.h5")
    # Names that do not cover the species numbers of the file.
    write_features(tmp_path / "one.h5", x, frames, species, 3000.0, species_names=("Si",))
    with pytest.raises(SoftnessError, match="species numbers up to 1 but '/species_names' names only 1"):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / "one.h5", tmp_path / "s.h5")


def test_training_refuses_too_few_examples_and_mismatched_files(tmp_path):
    rng = np.random.default_rng(8)
    species, frames, x, _, labels = synthetic_run(tmp_path, rng, n_atoms=30, n_traj_frames=40)
    cfg = config.resolve({"temperatures_K": [3000]})
    labels = labels.copy()
    labels[labels == 1] = -1
    labels[4:6, 0] = 1  # one rearranging Si (both frames of one feature frame)
    write_hops(tmp_path / "few.h5", labels, species, 3000.0)
    with pytest.raises(SoftnessError, match="Si training set at 3000 K has 1 rearranging"):
        classifier.train(cfg, tmp_path / "features.h5", tmp_path / "few.h5")
    write_hops(tmp_path / "hot.h5", labels, species, 4000.0)
    with pytest.raises(SoftnessError, match="4000 K"):
        classifier.train(cfg, tmp_path / "features.h5", tmp_path / "hot.h5")
    with pytest.raises(SoftnessError, match="does not exist"):
        classifier.train(cfg, tmp_path / "nope.h5", tmp_path / "hot.h5")


def test_top_features_name_the_structure_functions():
    grid = small_grid()
    table = classifier.feature_table([f"g{i}" for i in range(N_FEATURES)], grid)
    assert table["kind"][N_R] == "radial" and table["species"][N_R] == "O" and table["r_A"][N_R] == 1.0
    j = 2 * N_R + 3  # second triple of the second pair
    assert (table["kind"][j], table["species"][j]) == ("angular", "SiO")
    assert (table["xi_A"][j], table["lambda"][j], table["zeta"][j]) == (3.0, -1.0, 2.0)
    assert np.isnan(table["r_A"][j]) and np.isnan(table["xi_A"][0])
    assert table["description"][j] == "g11: SiO neighbour pairs, xi = 3 A, lambda = -1, zeta = 2"
    w = np.zeros(N_FEATURES)
    w[[2, 9]] = [0.5, -2.0]
    idx, weights, names = classifier.top_features(w, table["description"], k=2)
    assert_array_equal(idx, [9, 2])
    assert list(weights) == [-2.0, 0.5] and names[0].startswith("g9: SiSi")
    # An unknown layout falls back to the stored names.
    other = classifier.feature_table(["a", "b"], grid)
    assert other["description"] == ["a", "b"] and other["kind"] == ["unknown"] * 2


def test_feature_table_reads_the_grid_of_a_real_features_file(tmp_path):
    from softness.structure import StructureGrid

    grid = StructureGrid.from_config(config.resolve({}))
    names = grid.feature_names()
    with h5py.File(tmp_path / "f.h5", "w") as f:
        grid.write(f)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        stored = classifier.read_grid(f)
    table = classifier.feature_table(names, stored)
    n_rad = 2 * grid.n_radial
    assert table["kind"] == ["radial"] * n_rad + ["angular"] * (len(names) - n_rad)
    for i, name in enumerate(names):
        assert table["description"][i].startswith(name + ": ")
        if i < n_rad:  # names like G_O(r=1.60)
            assert name.startswith(f"G_{table['species'][i]}(r=")
            assert float(name.split("r=")[1].rstrip(")")) == pytest.approx(table["r_A"][i])
        else:  # names like Psi_SiO(xi=3.5,lambda=1,zeta=1)
            assert name.startswith(f"Psi_{table['species'][i]}(xi=")
            assert float(name.split("xi=")[1].split(",")[0]) == pytest.approx(table["xi_A"][i])
    assert classifier.grid_difference(stored, stored) is None


def test_an_empty_shell_in_training_cannot_blow_up_softness():
    """A radial shell inside the hard core holds only Gaussian tails (~1e-30) at T_train; a
    close contact at a higher temperature puts about one neighbour there. Its softness must
    stay of the order of the training softness, not (1 neighbour / 1e-30) x weight."""
    rng = np.random.default_rng(3)
    normal = np.array([1.0, -0.5, 2.0, 0.3, 0.0, 4.0])
    x, y, _ = anisotropic_data(rng, 2000, normal, -(np.array([5.0, -2.0, 0.0, 1.0, 0.0, 3.0]) @ normal))
    tail = np.abs(rng.normal(size=(x.shape[0], 1))) * 1e-30
    x = np.hstack([x, tail])
    fit = classifier.fit_linear_svm(x, y, [1.0, 10.0], cv_folds=3, seed=0)
    assert fit["scale"][-1] == classifier.MIN_FEATURE_SCALE
    assert_allclose(fit["scale"][:-1], np.std(x[fit["is_test"] == 0, :-1], axis=0), rtol=1e-9)
    model = _model_from_fit(fit, x.shape[1])
    s_train = model.softness(x[:, None, :], np.array([0]))[:, 0]
    contact = x[:50].copy()
    contact[:, -1] = 1.0  # one neighbour in the shell
    s_contact = model.softness(contact[:, None, :], np.array([0]))[:, 0]
    # A shift of one neighbour moves S by at most |w_shell| / |w| / MIN_FEATURE_SCALE <= 100, and
    # the SVM gives the uninformative shell a small weight: S stays within the training range.
    assert np.max(np.abs(s_contact - s_train[:50])) < 0.5 * np.ptp(s_train)


# ---------------------------------------------------------------------------- softness unit

def _small_config(tmp_path, temperatures=(3000,), **train):
    train = {"n_per_class": 300, "C_grid": [0.1, 1.0], "cv_folds": 3, **train}
    cfg = {"temperatures_K": list(temperatures), "train": train}
    path = tmp_path / "config.yaml"
    path.write_text(__import__("yaml").safe_dump(cfg))
    return config.resolve(cfg), path


def test_softness_has_unit_standard_deviation_over_all_atoms_at_T_train(tmp_path):
    rng = np.random.default_rng(11)
    species, frames, x, _, _ = synthetic_run(tmp_path, rng)
    cfg, _ = _small_config(tmp_path)
    model = classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "model.h5")
    classifier.apply_file(cfg, tmp_path / "model.h5", tmp_path / "features.h5", tmp_path / "soft.h5")
    with h5py.File(tmp_path / "soft.h5", "r") as f:
        soft = f["softness"][()].astype(np.float64)
        assert_allclose(f.attrs["softness_scale"], model.softness_scale)
        assert "standard deviation" in f["softness"].attrs["meaning"]
    with h5py.File(tmp_path / "model.h5", "r") as f:
        stored = f["softness_scale"][()]
        assert "every atom" in f["softness_scale"].attrs["meaning"]
        assert "sigma_S" in f.attrs["softness_definition"]
        t = {k: f["training"][k][()] for k in ("species", "frame", "atom")}
    assert_allclose(stored, model.softness_scale)
    row_of = {int(fr): i for i, fr in enumerate(frames)}
    for s in (0, 1):
        mine = species == s
        # Brute force: sigma_S is the spread of the bare distance over every atom and frame.
        x_std = (x[:, mine].astype(np.float64) - model.mean[s]) / model.scale[s]
        distance = classifier.signed_distance(x_std, model.weights[s], model.intercept[s])
        assert_allclose(model.softness_scale[s], distance.std(), rtol=1e-10)
        assert_allclose(soft[:, mine], distance / distance.std(), rtol=1e-5, atol=1e-5)
        # So the applied softness has unit standard deviation at T_train, S = 0 still the plane.
        assert_allclose(soft[:, mine].std(), 1.0, rtol=1e-5)
        assert_array_equal(soft[:, mine] > 0, distance > 0)
        # Not the spread over the training set, whose classes sit beyond +-0.8 sigma of the rule.
        ex = t["species"] == s
        rows = [row_of[int(fr)] for fr in t["frame"][ex]]
        train_distance = classifier.signed_distance((x[rows, t["atom"][ex]] - model.mean[s]) / model.scale[s],
                                                    model.weights[s], model.intercept[s])
        assert train_distance.std() > 1.2 * distance.std()


def test_a_model_without_a_softness_scale_is_refused(tmp_path):
    fit = {"mean": np.zeros(3), "scale": np.ones(3), "weights": np.ones(3), "intercept": 0.0}
    model = _model_from_fit(fit, 3)
    with h5py.File(tmp_path / "old.h5", "w") as f:
        classifier.write_model(f, model)
        del f["softness_scale"]
    with pytest.raises(SoftnessError, match="old.h5 has no 'softness_scale'.*retrain"):
        classifier.load_model(tmp_path / "old.h5")


# ---------------------------------------------------------------------------- quality

def _two_gaussians(rng, n, d):
    """Softness of quiet atoms ~ N(-d/2, 1) and of rearranging ones ~ N(d/2, 1)."""
    s = np.r_[rng.normal(d / 2, 1.0, n), rng.normal(-d / 2, 1.0, n)]
    return s, np.r_[np.ones(n, int), np.zeros(n, int)]


def test_quality_metrics_of_two_gaussians_with_a_known_separation():
    from scipy.special import expit
    from scipy.stats import norm
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(12)
    d = 1.2
    s, y = _two_gaussians(rng, 4000, d)
    q = classifier.classifier_quality(s, y, rng=0)
    # Against sklearn and direct counts on the same examples.
    assert_allclose(q["roc_auc"], roc_auc_score(y, s), rtol=1e-12)
    assert_allclose(q["balanced_accuracy"], balanced_accuracy_score(y, s > 0), rtol=1e-12)
    assert_allclose(q["P_S_positive_given_rearranging"], np.mean(s[y == 1] > 0), rtol=1e-12)
    # Against the known answers: AUC = Phi(d / sqrt 2); both class rates Phi(d / 2).
    assert abs(q["roc_auc"] - norm.cdf(d / np.sqrt(2))) < 3 * q["roc_auc_err"]
    assert abs(q["balanced_accuracy"] - norm.cdf(d / 2)) < 3 * q["balanced_accuracy_err"]
    assert abs(q["P_S_positive_given_rearranging"] - norm.cdf(d / 2)) < \
        3 * q["P_S_positive_given_rearranging_err"]
    # Calibration: with equal priors P(rearranging | S) = 1 / (1 + exp(-d S)); each bin holds the
    # mean of that over its examples, within its binomial error.
    cal = q["calibration"]
    nb = classifier.N_CALIBRATION_BINS
    index = np.clip(np.searchsorted(cal["S_edges"], s, side="right") - 1, 0, nb - 1)
    assert cal["n"].sum() == s.size and np.all(np.diff(cal["S"]) > 0)
    for k in range(nb):
        assert_allclose(cal["S"][k], s[index == k].mean(), rtol=1e-12)
        assert_allclose(cal["fraction_rearranging"][k], y[index == k].mean(), rtol=1e-12)
        assert abs(cal["fraction_rearranging"][k] - expit(d * s[index == k]).mean()) < \
            4 * cal["fraction_rearranging_err"][k] + 1e-3
    # The reported errors are the spread of the metrics over independent samples.
    reps = [classifier.classifier_quality(*_two_gaussians(rng, 300, d), rng=k, n_bootstrap=100)
            for k in range(20)]
    for key in ("roc_auc", "balanced_accuracy", "P_S_positive_given_rearranging"):
        spread = np.std([r[key] for r in reps], ddof=1)
        assert_allclose(np.mean([r[f"{key}_err"] for r in reps]), spread, rtol=0.5)


def test_model_file_holds_the_quality_of_its_held_out_examples(tmp_path):
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(13)
    species, frames, x, _, _ = synthetic_run(tmp_path, rng)
    cfg, _ = _small_config(tmp_path)
    model = classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "model.h5")
    soft_all = model.softness(x, species)
    row_of = {int(fr): i for i, fr in enumerate(frames)}
    nb = classifier.N_CALIBRATION_BINS
    with h5py.File(tmp_path / "model.h5", "r") as f:
        q = {k: f["quality"][k][()] for k in ("roc_auc", "roc_auc_err", "balanced_accuracy",
                                               "balanced_accuracy_err", "P_S_positive_given_rearranging",
                                               "P_S_positive_given_rearranging_err", "P_S_positive")}
        cal = {k: f["quality/calibration"][k][()] for k in ("S", "fraction_rearranging", "n")}
        assert "bootstrap" in f["quality/roc_auc_err"].attrs["method"]
        assert "binomial" in f["quality/balanced_accuracy_err"].attrs["method"]
        t = {k: f["training"][k][()] for k in ("species", "frame", "atom", "label", "is_test")}
        n_test = f["n_test"][()]
    assert all(v.shape == (2,) for v in q.values()) and all(v.shape == (2, nb) for v in cal.values())
    for s in (0, 1):
        test = (t["species"] == s) & t["is_test"].astype(bool)
        s_test = soft_all[[row_of[int(fr)] for fr in t["frame"][test]], t["atom"][test]]
        y = t["label"][test]
        assert cal["n"][s].sum() == n_test[s] == y.size
        assert_allclose(q["roc_auc"][s], roc_auc_score(y, s_test), rtol=1e-9)
        assert_allclose(q["balanced_accuracy"][s], balanced_accuracy_score(y, s_test > 0), rtol=1e-9)
        assert_allclose(q["P_S_positive_given_rearranging"][s], np.mean(s_test[y == 1] > 0), rtol=1e-9)
        assert_allclose(q["P_S_positive"][s], np.mean(soft_all[:, species == s] > 0), rtol=1e-9)
        # The rule is learnable (labels beyond +-0.8 sigma of a linear variable): near-perfect.
        assert q["roc_auc"][s] > 0.95 and 0 <= q["roc_auc_err"][s] < 0.05
        assert_allclose(np.nansum(cal["fraction_rearranging"][s] * cal["n"][s]), np.sum(y == 1))


# ---------------------------------------------------------------------------- hyperplane stability

def test_stability_temperature_is_the_geometric_middle_or_a_listed_one():
    for temps in ([3000, 3300, 3700, 4200, 5000], [3500, 4500, 6000], [4200, 3000, 3700]):
        cfg = config.resolve({"temperatures_K": temps})
        distance = np.abs(np.log(np.array(temps) / np.sqrt(min(temps) * max(temps))))
        assert classifier.stability_temperature(cfg) == temps[int(np.argmin(distance))]
    # Two temperatures tie: the one that is not T_train, so the check compares two models.
    assert classifier.stability_temperature(config.resolve({"temperatures_K": [3000, 5000]})) == 5000
    cfg = config.resolve({"temperatures_K": [3000, 5000], "train": {"T_train_K": 5000}})
    assert classifier.stability_temperature(cfg) == 3000
    cfg = config.resolve({"temperatures_K": [3000, 3300, 3700], "train": {"stability_T_K": 3300}})
    assert classifier.stability_temperature(cfg) == 3300
    # A temperature that is not simulated: refused by the config, and by the stage itself.
    with pytest.raises(SoftnessError, match=r"'train.stability_T_K' \(3500 K\) is not one of"):
        config.resolve({"temperatures_K": [3000, 3300, 3700], "train": {"stability_T_K": 3500}})
    cfg["train"]["stability_T_K"] = 3500
    with pytest.raises(SoftnessError, match=r"'train.stability_T_K' \(3500 K\) is not one of"):
        classifier.stability_temperature(cfg)


def test_normals_map_into_the_reference_standardisation():
    rng = np.random.default_rng(14)
    f = 5

    def model(scale):
        fit = {"mean": rng.normal(size=f), "scale": scale, "weights": rng.normal(size=f),
               "intercept": rng.normal()}
        return _model_from_fit(fit, f)

    a, b = model(rng.uniform(0.5, 2, f)), model(rng.uniform(0.5, 2, f))
    mapped = classifier.normals_in_standardisation(b, a)
    # b's plane function w . (x - m) / s changes between two raw points as mapped . (dx / s_a).
    x1, x2 = rng.normal(size=(2, f))
    assert_allclose(((x1 - x2) / b.scale[0]) @ b.weights[0], ((x1 - x2) / a.scale[0]) @ mapped[0], rtol=1e-12)
    cos = classifier.hyperplane_cosine(a, b)
    assert_allclose(cos, np.sum(a.weights * mapped, 1) / np.linalg.norm(a.weights, axis=1)
                    / np.linalg.norm(mapped, axis=1), rtol=1e-12)
    assert_allclose(classifier.hyperplane_cosine(a, a), 1.0, rtol=1e-12)


def _stability(tmp_path, cfg_path, name, model="model.h5"):
    out = tmp_path / f"stability{name}.h5"
    assert main(["stability", "--config", str(cfg_path), "--model", str(tmp_path / model),
                 "--features", str(tmp_path / f"features{name}.h5"),
                 "--hops", str(tmp_path / f"hops{name}.h5"),
                 "--train-features", str(tmp_path / "features.h5"), "--out", str(out)]) == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["stage"] == "stability" and f.attrs["T_train_K"] == 3000.0
        assert "standardised feature space of the T_train model" in f.attrs["cosine_space"]
        assert f["retrained/softness_scale"].shape == (2,) and f["retrained"].attrs["T_train_K"] == 3500.0
        return {k: f[k][()] for k in ("cosine", "pearson_S", "pearson_S_T_train")}


def test_hyperplane_stability_separates_one_planted_direction_from_two(tmp_path):
    rng = np.random.default_rng(15)
    u = rng.normal(size=(2, N_FEATURES))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    other = rng.normal(size=(2, N_FEATURES))
    other -= np.sum(other * u, axis=1, keepdims=True) * u  # orthogonal to u, per species
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    # The same raw direction at a second temperature whose features have other spreads: the
    # standardised normals differ (v * spread), the planes in the same standardisation do not.
    spread = rng.uniform(0.4, 2.5, N_FEATURES)
    species, *_ = synthetic_run(tmp_path, rng, u=u)
    synthetic_run(tmp_path, rng, u=u, spread=spread, temperature=3500.0, name="_same")
    synthetic_run(tmp_path, rng, u=other, temperature=3500.0, name="_other")
    cfg, cfg_path = _small_config(tmp_path, (3000, 3500))
    model = classifier.train_file(cfg, tmp_path / "features.h5", tmp_path / "hops.h5", tmp_path / "model.h5")
    same = _stability(tmp_path, cfg_path, "_same")
    assert np.all(same["cosine"] > 0.95)
    assert np.all(same["pearson_S"] > 0.95) and np.all(same["pearson_S_T_train"] > 0.95)
    with h5py.File(tmp_path / "stability_same.h5", "r") as f:
        w2 = f["retrained/weights"][()]
    naive = np.sum(model.weights * w2, 1) / np.linalg.norm(model.weights, axis=1) / np.linalg.norm(w2, axis=1)
    expected_naive = (u * spread) @ u.T / np.linalg.norm(u * spread, axis=1)  # cos(u, u * spread), diagonal
    assert_allclose(naive, np.diag(expected_naive), atol=0.05)
    different = _stability(tmp_path, cfg_path, "_other")
    assert np.all(np.abs(different["cosine"]) < 0.5)
    assert np.all(np.abs(different["pearson_S"]) < 0.5)
    assert np.all(np.abs(different["pearson_S_T_train"]) < 0.5)
    # The correlation is that of the two models' softness on the same atoms, by brute force.
    with h5py.File(tmp_path / "stability_other.h5", "r") as f:
        g = f["retrained"]
        retrained = classifier.SoftnessModel(
            mean=g["mean"][()], scale=g["scale"][()], weights=g["weights"][()], intercept=g["intercept"][()],
            C=g["C"][()], feature_names=[], grid={}, T_train_K=3500.0, softness_scale=g["softness_scale"][()])
    for name, key in (("_other", "pearson_S"), ("", "pearson_S_T_train")):
        with h5py.File(tmp_path / f"features{name}.h5", "r") as f:
            x = f["features"][()]
        s_a, s_b = model.softness(x, species), retrained.softness(x, species)
        for sp in (0, 1):
            r = np.corrcoef(s_a[:, species == sp].ravel(), s_b[:, species == sp].ravel())[0, 1]
            assert_allclose(different[key][sp], r, rtol=1e-9)
