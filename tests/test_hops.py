import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, config
from softness.errors import SoftnessError
from softness.hops import (
    hops_file,
    p_hop,
    p_hop_histogram,
    plot_p_hop_histogram,
    rearrangement_labels,
)
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter


def write_trajectory(path, unwrapped, species, box, dt_fs, *, temperature_K=3000.0, dtype=np.float32):
    """Write unwrapped positions [F, N, 3] as an H5MD trajectory (wrapped + image flags)."""
    images = np.floor(unwrapped / box).astype(np.int32)
    wrapped = unwrapped - images * box
    n_frames = unwrapped.shape[0]
    with atomic_h5(path, "run", {}) as f:
        f.attrs["temperature_K"] = temperature_K
        w = H5MDWriter(f, species, np.where(np.asarray(species) == 0, 28.0855, 15.9994), [box] * 3,
                       dtype=dtype)
        w.append(np.arange(n_frames) * 10, np.arange(n_frames) * dt_fs, wrapped, images)
    return path


def p_hop_loops(x, h):
    """Candelier's formula written out literally, one frame at a time."""
    n_frames, n_atoms = x.shape[:2]
    out = np.full((n_frames, n_atoms), np.nan)
    for t in range(h, n_frames - h + 1):
        a, b = x[t - h:t], x[t:t + h]
        mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
        term_a = np.mean(np.sum((a - mean_b) ** 2, axis=-1), axis=0)
        term_b = np.mean(np.sum((b - mean_a) ** 2, axis=-1), axis=0)
        out[t] = np.sqrt(term_a * term_b)
    return out


def test_static_atom_has_zero_p_hop_and_nan_outside_the_window():
    x = np.broadcast_to(np.random.default_rng(0).uniform(0, 20, (1, 4, 3)), (30, 4, 3))
    p = p_hop(x, 5)
    assert np.all(np.isnan(p[:5])) and np.all(np.isnan(p[26:]))
    assert_array_equal(p[5:26], 0.0)


def test_step_jump_gives_jump_length_squared():
    jump = np.array([0.6, -1.2, 0.9])
    x = np.zeros((40, 1, 3)) + 7.3
    x[20:] += jump  # frames 0..19 in the old cage, 20..39 in the new one
    p = p_hop(x, 8)[:, 0]
    assert_allclose(p[20], jump @ jump, rtol=1e-12)
    assert np.nanargmax(p) == 20
    # Away from the jump by k frames: a^2 (1 - k/h)^(3/2) (variance of the mixed half plus shift).
    k = np.arange(-7, 8)
    assert_allclose(p[20 + k], (jump @ jump) * (1 - np.abs(k) / 8) ** 1.5, rtol=1e-12, atol=1e-14)


def test_agrees_with_explicit_loops_on_random_walks():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(scale=0.3, size=(57, 7, 3)), axis=0) + rng.uniform(-50, 50, (7, 3))
    for h in (1, 4, 13):
        assert_allclose(p_hop(x, h, atom_chunk=3), p_hop_loops(x, h), rtol=1e-9, atol=1e-12)


def test_p_hop_is_unchanged_by_crossing_the_periodic_boundary(tmp_path):
    box, dt = 12.0, 10.0
    rng = np.random.default_rng(2)
    rattle = rng.normal(scale=0.05, size=(50, 1, 3))
    jump = np.array([1.1, 0.4, -0.3])
    start = np.array([[box - 0.4, 6.0, 0.2], [6.0, 6.0, 6.0]])  # first one crosses x = L and z = 0
    x = start[None] + rattle
    x[25:] += jump
    path = write_trajectory(tmp_path / "traj.h5", x, [1, 1], box, dt)
    with h5py.File(path) as f:
        assert np.any(np.diff(f["particles/all/image/value"][:, 0], axis=0) != 0)
    cfg = config.resolve({"hops": {"t_R_fs": 200.0, "t_quiet_fs": 100.0}})
    hops_file(cfg, path, tmp_path / "hops.h5")
    with h5py.File(tmp_path / "hops.h5") as f:
        p = f["p_hop"][()]
    assert_allclose(p[:, 0], p[:, 1], rtol=1e-4, atol=1e-6, equal_nan=True)
    assert_allclose(p[25, 0], p_hop_loops(x, 10)[25, 0], rtol=1e-4)


def _labelled_system(tmp_path):
    """Six atoms rattling with 0.005 A noise; atom 0 (Si) and atom 1 (O) jump by 0.8 A at frame 60."""
    dt, n_frames, t0, a = 10.0, 121, 60, 0.8
    species = np.array([0, 1, 0, 1, 1, 1])
    rng = np.random.default_rng(3)
    x = rng.uniform(2, 18, (1, 6, 3)) + rng.normal(scale=0.005, size=(n_frames, 6, 3))
    x[t0:, :2] += a * np.array([0.6, 0.0, 0.8])
    hcfg = {"t_R_fs": 200.0, "t_quiet_fs": 200.0, "p_c_A2": {"Si": 0.25, "O": 1.0},
            "p_quiet_A2": {"Si": 0.05, "O": 0.05}}
    cfg = config.resolve({"hops": hcfg})
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, dt)
    return cfg, path, dict(dt=dt, n_frames=n_frames, t0=t0, a=a, h=10, q=10, species=species)


def test_labels_per_species_for_one_jump_among_quiet_atoms(tmp_path):
    cfg, path, s = _labelled_system(tmp_path)
    hops_file(cfg, path, tmp_path / "hops.h5")
    with h5py.File(tmp_path / "hops.h5") as f:
        labels, p = f["labels"][()], f["p_hop"][()]
        assert f.attrs["temperature_K"] == 3000.0
        assert f.attrs["t_R_fs"] == 200.0 and f.attrs["t_quiet_fs"] == 200.0
        assert_array_equal(f["thresholds/p_c_A2"][()], [0.25, 1.0])
        assert_array_equal(f["thresholds/p_quiet_A2"][()], [0.05, 0.05])
        assert_array_equal(f["species"][()], s["species"])
        assert_array_equal(f["frames"][()], np.arange(s["n_frames"]))
        assert_allclose(f["time_fs"][()], np.arange(s["n_frames"]) * s["dt"])
        events, rate = f["n_events"][()], f["rearrangement_rate_per_fs"][()]
    assert labels.dtype == np.int8 and p.dtype == np.float32
    t = np.arange(s["n_frames"])
    h, q, t0, a = s["h"], s["q"], s["t0"], s["a"]
    # Noise-free profile of a step jump, a^2 (1 - |k|/h)^(3/2); thresholds are far from its values.
    k = np.abs(t - t0)
    jump_profile = np.where(k < h, a**2 * np.clip(1 - k / h, 0, None) ** 1.5, 0.0)
    window_fits = (t >= h + q) & (t <= s["n_frames"] - h - q)
    loud = jump_profile > 0.05
    quiet_jumper = window_fits & np.array([not loud[max(0, i - q):i + q + 1].any() for i in t])
    # Si jumper: rearranging near the jump, quiet far from it, neither in between.
    expected_si = np.where(jump_profile > 0.25, 1, np.where(quiet_jumper, 0, -1))
    assert_array_equal(labels[:, 0], expected_si)
    # O jumper: p_hop never exceeds the O threshold (1 A^2), so never rearranging.
    assert_array_equal(labels[:, 1], np.where(quiet_jumper, 0, -1))
    # Quiet atoms: quiet wherever the whole quiet window has a defined p_hop.
    for i in range(2, 6):
        assert_array_equal(labels[:, i], np.where(window_fits, 0, -1))
    assert_array_equal(events, [1, 0])
    assert_allclose(rate, [1 / (2 * (s["n_frames"] - 2 * h + 1) * s["dt"]), 0.0])


def test_labels_reject_quiet_threshold_above_rearrangement_threshold():
    with pytest.raises(SoftnessError, match="p_quiet_A2"):
        rearrangement_labels(np.zeros((5, 2)), [0, 1], [0.2, 0.2], [0.3, 0.1], 1)


def test_t_R_is_rounded_to_whole_frames(tmp_path):
    cfg, path, _ = _labelled_system(tmp_path)
    cfg["hops"]["t_R_fs"] = 226.0  # 11.3 frame intervals per half -> 11
    hops_file(cfg, path, tmp_path / "hops.h5")
    with h5py.File(tmp_path / "hops.h5") as f:
        assert f.attrs["t_R_fs"] == 220.0 and f.attrs["half_window_frames"] == 11
        assert np.isnan(f["p_hop"][10, 0]) and np.isfinite(f["p_hop"][11, 0])


def test_missing_image_flags_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    cfg, path, _ = _labelled_system(tmp_path)
    with h5py.File(path, "a") as f:
        del f["particles/all/image"]
    out = tmp_path / "hops.h5"
    with pytest.raises(SoftnessError, match="no image flags"):
        hops_file(cfg, path, out)
    assert cli.main(["hops", "--trajectory", str(path), "--out", str(out)]) == 1
    assert "no image flags" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["traj.h5"]


def test_too_few_frames_for_t_R_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    cfg, path, s = _labelled_system(tmp_path)
    out = tmp_path / "hops.h5"
    cfg["hops"]["t_R_fs"] = 5000.0
    with pytest.raises(SoftnessError, match=r"too short for the p_hop window hops\.t_R_fs = 5000 fs"):
        hops_file(cfg, path, out)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text("hops: {t_R_fs: 5000.0}\n")
    assert cli.main(["hops", "--config", str(cfg_path), "--trajectory", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "t_R_fs" in err and f"{s['n_frames']} frames" in err
    assert not out.exists()


def test_p_hop_histogram_and_calibration_figure(tmp_path):
    cfg, path, _ = _labelled_system(tmp_path)
    hops_file(cfg, path, tmp_path / "hops.h5")
    with h5py.File(tmp_path / "hops.h5") as f:
        p, species = f["p_hop"][()], f["species"][()]
    bins = np.logspace(-8, 1, 91)
    hist = p_hop_histogram(p, species, bins)
    assert_allclose(hist @ np.diff(np.log10(bins)), [1.0, 1.0])  # every defined value is in range
    fig = plot_p_hop_histogram([tmp_path / "hops.h5"], tmp_path / "fig" / "p_hop.png", bins=bins)
    assert (tmp_path / "fig" / "p_hop.png").stat().st_size > 0
    lines = {ax.get_title(): [ln.get_xdata()[0] for ln in ax.get_lines()[1:]] for ax in fig.axes}
    assert_allclose(lines["Si"], [0.25, 0.05])
    assert_allclose(lines["O"], [1.0, 0.05])


def _brute_force_histograms(p, species, bins):
    widths = np.diff(np.log10(bins))
    out = []
    for s in (0, 1):
        own = p[:, species == s]
        own = own[np.isfinite(own)]
        counts = [np.sum((own >= lo) & (own < hi)) for lo, hi in zip(bins[:-1], bins[1:], strict=True)]
        out.append(np.array(counts) / (own.size * widths))
    return np.array(out)


def test_p_hop_histograms_are_per_species(tmp_path):
    """Si and O with p_hop from different distributions (and NaN where undefined): each species'
    histogram, and the curve of its panel in the figure, is the brute-force histogram of its
    own defined values."""
    rng = np.random.default_rng(7)
    species = rng.permutation(np.r_[np.zeros(30, int), np.ones(60, int)])
    p = np.where(species == 0, 10 ** rng.normal(-1.5, 0.3, (200, 90)), 10 ** rng.normal(0.2, 0.5, (200, 90)))
    p[:6] = p[-5:] = np.nan
    p[50:60, species == 1] = np.nan  # O undefined on more frames than Si
    bins = np.logspace(-3, 2, 51)
    hist = p_hop_histogram(p, species, bins)
    assert_allclose(hist, _brute_force_histograms(p, species, bins), rtol=1e-12)
    # The species' distributions barely overlap, so a swap of rows could not pass.
    assert np.sum(np.minimum(hist[0], hist[1]) * np.diff(np.log10(bins))) < 0.1
    path = tmp_path / "hops.h5"
    p32 = p.astype(np.float32)
    with atomic_h5(path, "hops", {}) as f:
        f["p_hop"], f["species"] = p32, species
        f["thresholds/p_c_A2"], f["thresholds/p_quiet_A2"] = [0.8, 1.0], [0.45, 0.6]
        f.attrs["temperature_K"] = 3000.0
    fig = plot_p_hop_histogram([path], bins=bins)
    panels = {ax.get_title(): ax for ax in fig.axes}
    expected = _brute_force_histograms(p32, species, bins)
    for s, name in enumerate(("Si", "O")):
        curve = panels[name].get_lines()[0]
        assert curve.get_label() == "3000 K"
        assert_allclose(curve.get_ydata(), expected[s], rtol=1e-12)
        assert_allclose(curve.get_xdata(), np.sqrt(bins[1:] * bins[:-1]))
