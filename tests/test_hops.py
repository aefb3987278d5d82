import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, config
from softness.errors import SoftnessError
from softness.hops import (
    event_max_histogram,
    event_statistics,
    hops_file,
    p_hop,
    p_hop_histogram,
    plot_p_hop_histogram,
    rearrangement_events,
    rearrangement_labels,
    write_hops_datasets,
)
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter


def write_trajectory(path, unwrapped, species, box, dt_fs, *, temperature_K=3000.0, dtype=np.float32,
                     species_names=("Si", "O"), attrs=None):
    """Write unwrapped positions [F, N, 3] as an H5MD trajectory (wrapped + image flags) of the
    species ``species_names`` (indexed by the numbers in ``species``), with extra root ``attrs``."""
    images = np.floor(unwrapped / box).astype(np.int32)
    wrapped = unwrapped - images * box
    n_frames = unwrapped.shape[0]
    with atomic_h5(path, "run", {}) as f:
        f.attrs["temperature_K"] = temperature_K
        f.attrs.update(attrs or {})
        w = H5MDWriter(f, species, np.full(len(species), 20.0), [box] * 3, species_names=species_names,
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
        n_events, rate = f["n_events"][()], f["rearrangement_rate_per_fs"][()]
        events, peak_counts = f["events"][()], f["event_p_hop_max/counts"][()]
        peak_edges, window_fraction = f["event_p_hop_max/edges_A2"][()], f["event_window_fraction"][()]
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
    # Events: the Si jump at its jump frame, no event for the O jumper (below its p_c) nor for
    # anyone else; no event can be located where p_hop is undefined nor on its first and last frame.
    located = (t > h) & (t < s["n_frames"] - h)
    expected = np.where(located[:, None], 0, -1) * np.ones((1, 6), int)
    expected[t0, 0] = 1
    assert events.dtype == np.int8
    assert_array_equal(events, expected)
    assert_array_equal(n_events, [1, 0])
    # One event among 2 Si atoms over the F - 2h - 1 frames where events are located.
    assert_allclose(rate, [1 / (2 * (s["n_frames"] - 2 * h - 1) * s["dt"]), 0.0])
    # Windows of 2h frames from frame h + 1: one of them holds the Si jump.
    assert_allclose(window_fraction, [1 / (2 * ((s["n_frames"] - 2 * h - 1) // (2 * h))), 0.0])
    assert_array_equal(peak_counts.sum(axis=1), [1, 0])
    assert peak_edges[np.argmax(peak_counts[0])] <= p[t0, 0] < peak_edges[np.argmax(peak_counts[0]) + 1]


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
    for title in ("Si", "Si events: excursion maxima"):
        assert_allclose(lines[title], [0.25, 0.05])
    for title in ("O", "O events: excursion maxima"):
        assert_allclose(lines[title], [1.0, 0.05])
    # The one Si event's maximum is the whole Si event histogram; O has no event.
    with h5py.File(tmp_path / "hops.h5") as f:
        events = f["events"][()]
    peaks = event_max_histogram(p, events, species, bins)
    assert_allclose(peaks[0] * np.diff(np.log10(bins)), np.histogram(p[60, 0], bins=bins)[0])
    assert_array_equal(peaks[1], 0.0)
    assert fig.axes[2].get_lines()[0].get_label() == "3000 K (1 event)"


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
    events = np.where(np.isfinite(p), (rng.random(p.shape) < 0.1).astype(np.int8), -1).astype(np.int8)
    with atomic_h5(path, "hops", {}) as f:
        f["p_hop"], f["species"], f["events"] = p32, species, events
        f["species_names"] = np.array(["Si", "O"], dtype="S")
        f["thresholds/p_c_A2"], f["thresholds/p_quiet_A2"] = [0.8, 1.0], [0.45, 0.6]
        f.attrs["temperature_K"] = 3000.0
    fig = plot_p_hop_histogram([path], bins=bins)
    panels = {ax.get_title(): ax for ax in fig.axes}
    expected = _brute_force_histograms(p32, species, bins)
    # Excursion maxima: p_hop at the events only.
    expected_peaks = _brute_force_histograms(np.where(events == 1, p32, np.nan), species, bins)
    assert_allclose(event_max_histogram(p32, events, species, bins), expected_peaks, rtol=1e-12)
    for s, name in enumerate(("Si", "O")):
        curve = panels[name].get_lines()[0]
        assert curve.get_label() == "3000 K"
        assert_allclose(curve.get_ydata(), expected[s], rtol=1e-12)
        assert_allclose(curve.get_xdata(), np.sqrt(bins[1:] * bins[:-1]))
        curve = panels[f"{name} events: excursion maxima"].get_lines()[0]
        assert curve.get_label() == f"3000 K ({np.sum(events[:, species == s] == 1)} events)"
        assert_allclose(curve.get_ydata(), expected_peaks[s], rtol=1e-12)


# ---------------------------------------------------------------------------- events


def test_flickering_excursion_is_one_event_at_its_peak():
    """p_hop of one jump (the noise-free profile a^2 (1 - |k|/h)^(3/2)) with a flicker across p_c
    on its flanks: one event, at the peak; excursions h or more frames apart are two events."""
    h, a2, p_c = 6, 2.0, 0.9
    k = np.arange(-h, h + 1)
    profile = a2 * (1 - np.abs(k) / h) ** 1.5
    p = np.full((120, 4), 0.05)
    p[:h] = p[-h + 1:] = np.nan
    p[30 + k, 0] = profile
    p[30 + np.array([-3, -5, 3, 5]), 0] = [0.8, 1.0, 0.85, 0.95]  # below, above, below, above p_c
    assert np.sum(np.diff((p[:, 0] > p_c).astype(int)) == 1) == 3  # three runs above p_c
    p[50, 1], p[50 + h, 1] = 1.5, 1.2  # runs h - 1 frames apart: one event, at the larger
    p[50, 2], p[50 + h + 1, 2] = 1.2, 1.5  # h frames apart: two events
    events = rearrangement_events(p, [0, 1, 1, 0], [p_c, p_c], h)
    assert_array_equal(np.flatnonzero(events[:, 0] == 1), [30])
    assert_array_equal(np.flatnonzero(events[:, 1] == 1), [50])
    assert_array_equal(np.flatnonzero(events[:, 2] == 1), [50, 50 + h + 1])
    assert not np.any(events[:, 3] == 1)
    # Never located where p_hop is undefined nor on its first and last defined frames.
    unobserved = np.zeros(120, bool)
    unobserved[:h + 1] = unobserved[-h:] = True
    assert_array_equal(events == -1, np.broadcast_to(unobserved[:, None], events.shape))
    # Chunks of atoms give the same answer.
    assert_array_equal(rearrangement_events(p, [0, 1, 1, 0], [p_c, p_c], h, atom_chunk=1), events)


def test_jump_outside_the_run_leaves_no_event_at_the_edge():
    """A jump just before the first frame with a defined p_hop leaves a falling tail above p_c
    whose largest value is on that first frame: its peak is outside, so no event is counted."""
    h, jump = 5, np.array([1.2, 0.0, 0.0])
    x = np.zeros((60, 3, 3))
    x[h - 2:, 0] += jump  # jump frame 3: not observable (p_hop defined from frame 5)
    x[h + 1:, 1] += jump  # jump frame 6: the first frame where an event is located
    x[60 - h - 1:, 2] += jump  # jump frame 54: the last one
    p = p_hop(x, h)
    assert p[h, 0] > 0.5 and np.nanargmax(p[:, 0]) == h
    events = rearrangement_events(p, [0, 0, 1], [0.5, 0.5], h)
    assert not np.any(events[:, 0] == 1)
    assert_array_equal(np.flatnonzero(events[:, 1] == 1), [h + 1])
    assert_array_equal(np.flatnonzero(events[:, 2] == 1), [60 - h - 1])


def jump_trajectory(rng, n_atoms, n_frames, q_per_frame, dead_frames, a=1.5, noise=0.05, box=20.0):
    """Atoms rattling (Gaussian noise per component) and jumping by ``a`` in random directions.

    Jump times form a Poisson process of ``q_per_frame`` per frame (per atom, from ``species``)
    with a dead time of ``dead_frames`` after each jump, so jumps never overlap in a p_hop window;
    the rate is r = 1 / (dead_frames + 1 / q) jumps per frame. The process starts long before
    frame 0, so it is stationary over the run. A jump at frame t moves the atom between frames
    t - 1 and t.

    Returns:
      unwrapped positions [F, N, 3] and a bool [F, N] with the jump frames.
    """
    q = np.broadcast_to(np.asarray(q_per_frame, float), (n_atoms,))
    jumps = np.zeros((n_frames, n_atoms), bool)
    x = rng.uniform(0, box, (1, n_atoms, 3)) + rng.normal(scale=noise, size=(n_frames, n_atoms, 3))
    for i in range(n_atoms):
        t = -int(20 * (dead_frames + 1 / q[i]))
        while True:
            t += dead_frames + rng.geometric(q[i])
            if t >= n_frames:
                break
            if t > 0:
                jumps[t, i] = True
                u = rng.normal(size=3)
                x[t:, i] += a * u / np.linalg.norm(u)
    return x, jumps


def hops_of_jumping_atoms(tmp_path, rng, species, n_frames, q_per_frame, dead_frames, dt=10.0, h=5, *,
                          species_names=("Si", "O"), p_c=None, attrs=None):
    """:func:`jump_trajectory` written as a trajectory (frames every ``dt`` fs) of the species
    ``species_names`` and run through the hops stage with t_R = 2 h dt, p_c = 0.6 A^2 for every
    species (or the mapping ``p_c``) and p_quiet = 0.1 A^2; returns the hops file and the true
    jumps [F, N]."""
    x, jumps = jump_trajectory(rng, species.size, n_frames, q_per_frame, dead_frames)
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, dt, species_names=species_names,
                            attrs=attrs)
    cfg = config.resolve({"hops": {"t_R_fs": 2 * h * dt, "t_quiet_fs": 100.0}})
    # (set after resolving: the thresholds are keyed by the trajectory's species, whatever the system)
    cfg["hops"]["p_c_A2"] = dict(p_c) if p_c is not None else {name: 0.6 for name in species_names}
    cfg["hops"]["p_quiet_A2"] = {name: 0.1 for name in species_names}
    hops_file(cfg, path, tmp_path / "hops.h5")
    return tmp_path / "hops.h5", jumps


def test_events_of_atoms_jumping_at_a_known_rate(tmp_path):
    """200 atoms x 2000 frames, Si and O jumping at different known rates: every jump is one event
    at its jump frame, and the stored rates equal the true ones within their Poisson error."""
    rng = np.random.default_rng(40)
    n_frames, dt, h, dead = 2000, 10.0, 5, 30
    species = np.r_[np.zeros(80, int), np.ones(120, int)]
    q = np.where(species == 0, 0.01, 0.03)
    _, jumps = hops_of_jumping_atoms(tmp_path, rng, species, n_frames, q, dead, dt, h)
    with h5py.File(tmp_path / "hops.h5") as f:
        assert f.attrs["half_window_frames"] == h
        events, p = f["events"][()], f["p_hop"][()]
        n_events, rate = f["n_events"][()], f["rearrangement_rate_per_fs"][()]
        window_fraction, peak_counts = f["event_window_fraction"][()], f["event_p_hop_max/counts"][()]
        peak_edges = f["event_p_hop_max/edges_A2"][()]
    located = np.zeros(n_frames, bool)
    located[h + 1:n_frames - h] = True
    assert_array_equal(events == 1, jumps & located[:, None])
    assert_array_equal(events == -1, np.broadcast_to(~located[:, None], events.shape))
    n_located = located.sum()  # F - 2h - 1
    for s in (0, 1):
        mine = species == s
        assert n_events[s] == np.sum(jumps[located][:, mine])
        r_true = 1 / (dead + 1 / q[mine][0]) / dt  # per fs
        expected = r_true * mine.sum() * n_located * dt
        assert abs(n_events[s] - expected) < 4 * np.sqrt(expected), (s, n_events[s], expected)
        assert_allclose(rate[s], n_events[s] / (mine.sum() * n_located * dt), rtol=1e-12)
        # Windows of 2h frames from frame h + 1 with a jump in them (at most one per window here).
        n_win = n_located // (2 * h)
        in_window = jumps[h + 1:h + 1 + n_win * 2 * h][:, mine].reshape(n_win, 2 * h, -1).any(axis=1)
        assert_allclose(window_fraction[s], in_window.mean(), rtol=1e-12)
        # Excursion maxima: near a^2 = 2.25 A^2, far above p_c, all within the stored edges.
        peaks = p[events == 1][species[np.nonzero(events == 1)[1]] == s]
        assert peak_counts[s].sum() == n_events[s]
        assert_array_equal(peak_counts[s], np.histogram(peaks, bins=peak_edges)[0])
        assert np.all(np.abs(peaks - 2.25) < 0.5)


def events_loops(p, p_c, h):
    """Events written out literally, one atom and one run at a time."""
    n_frames, n_atoms = p.shape
    out = np.where(np.isfinite(p), 0, -1)
    for i in range(n_atoms):
        above = [t for t in range(n_frames) if p[t, i] > p_c[i]]
        groups = []
        for t in above:
            if groups and t - groups[-1][-1] - 1 < h:  # fewer than h frames below p_c in between
                groups[-1].append(t)
            else:
                groups.append([t])
        for g in groups:
            span = range(g[0], g[-1] + 1)
            out[max(span, key=lambda t: (p[t, i], -t)), i] = 1
        defined = np.flatnonzero(np.isfinite(p[:, i]))
        out[[defined[0], defined[-1]], i] = -1
    return out


def test_events_agree_with_explicit_loops_on_noisy_p_hop():
    """Random p_hop crossing p_c often (many runs, gaps of every length): the vectorised events
    equal the literal definition for several merging distances h and atom chunks."""
    rng = np.random.default_rng(41)
    p = rng.exponential(0.5, size=(300, 9))
    p[:4] = p[-3:] = np.nan
    species = rng.integers(0, 2, 9)
    p_c = np.array([0.6, 1.2])
    for h in (1, 3, 8):
        expected = events_loops(p, p_c[species], h)
        assert_array_equal(rearrangement_events(p, species, p_c, h, atom_chunk=4), expected)


# ---------------------------------------------------------------------------- any species

NAMES3 = ("X", "Y", "Z")


def test_three_species_jumping_at_known_rates(tmp_path):
    """A made-up system of three species X, Y, Z (interleaved) jumping at different known Poisson
    rates, with thresholds given by name in another order than the species numbers: the hops
    stage finds each species' rate within its Poisson error, labels with each species' own p_c,
    stores the trajectory's names and system, and the calibration figure has one column per
    species."""
    rng = np.random.default_rng(60)
    n_frames, dt, h, dead = 1500, 10.0, 5, 30
    species = rng.permutation(np.repeat([0, 1, 2], [60, 80, 100]))
    q = np.array([0.005, 0.015, 0.04])[species]
    p_c = {"Z": 1.2, "X": 0.4, "Y": 0.8}  # all below a^2 = 2.25, above the rattle (~0.01 A^2)
    path, jumps = hops_of_jumping_atoms(tmp_path, rng, species, n_frames, q, dead, dt, h,
                                        species_names=NAMES3, p_c=p_c, attrs={"system": "made_up"})
    with h5py.File(path) as f:
        names = tuple(n.decode() for n in f["species_names"][()])
        system = f.attrs["system"]
        events, p, labels = f["events"][()], f["p_hop"][()], f["labels"][()]
        n_events, rate = f["n_events"][()], f["rearrangement_rate_per_fs"][()]
        thresholds, peak_counts = f["thresholds/p_c_A2"][()], f["event_p_hop_max/counts"][()]
    assert names == NAMES3 and system == "made_up"
    assert_array_equal(thresholds, [0.4, 0.8, 1.2])
    assert n_events.shape == rate.shape == (3,) and peak_counts.shape[0] == 3
    located = np.zeros(n_frames, bool)
    located[h + 1:n_frames - h] = True
    assert_array_equal(events == 1, jumps & located[:, None])
    n_located = located.sum()
    for s in range(3):
        mine = species == s
        r_true = 1 / (dead + 1 / q[mine][0]) / dt  # events per atom per fs
        expected = r_true * mine.sum() * n_located * dt
        assert abs(n_events[s] - expected) < 4 * np.sqrt(expected), (NAMES3[s], n_events[s], expected)
        assert abs(rate[s] - r_true) < 4 * np.sqrt(expected) / (mine.sum() * n_located * dt)
        assert peak_counts[s].sum() == n_events[s]
    # The rates are told apart: each differs from the next by many Poisson errors.
    assert rate[0] < rate[1] < rate[2]
    # Rearranging exactly where p_hop exceeds the atom's own species' threshold.
    p_c_atom = np.array([0.4, 0.8, 1.2])[species]
    assert_array_equal(labels == 1, np.nan_to_num(p, nan=-1.0) > p_c_atom.astype(np.float32))
    assert np.any((p > 0.4) & (p <= 1.2) & (labels != 1)) and np.any((p > 0.4) & (labels == 1))

    fig = plot_p_hop_histogram([path], bins=np.logspace(-4, 1, 51))
    panels = {ax.get_title(): ax for ax in fig.axes}
    for s, name in enumerate(NAMES3):
        assert_allclose([ln.get_xdata()[0] for ln in panels[name].get_lines()[1:]], [thresholds[s], 0.1])
        label = panels[f"{name} events: excursion maxima"].get_lines()[0].get_label()
        assert label == f"3000 K ({n_events[s]} events)"


def test_thresholds_missing_a_species_of_the_trajectory_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(61)
    species = np.array([0, 1, 2, 2])
    x, _ = jump_trajectory(rng, 4, 60, 0.05, 10)
    path = write_trajectory(tmp_path / "traj.h5", x, species, 20.0, 10.0, species_names=NAMES3)
    out = tmp_path / "hops.h5"
    for key in ("p_c_A2", "p_quiet_A2"):
        cfg = config.resolve({"hops": {"t_R_fs": 100.0, "t_quiet_fs": 100.0}})
        cfg["hops"]["p_c_A2"] = {"X": 0.6, "Y": 0.6, "Z": 0.6}
        cfg["hops"]["p_quiet_A2"] = {"X": 0.1, "Y": 0.1, "Z": 0.1}
        del cfg["hops"][key]["Z"]
        cfg["hops"][key]["Si"] = 0.5  # a value for a species the file does not have is no help
        with pytest.raises(SoftnessError) as err:
            hops_file(cfg, path, out)
        assert str(err.value) == f"config key 'hops.{key}' has no value for species 'Z' of trajectory {path}."
    assert not out.exists()


def test_hops_datasets_take_species_names_from_the_source_product(tmp_path):
    """write_hops_datasets called without species_names (as softness.planted does) names the
    species of the product it is made from: its /species_names and system."""
    source = tmp_path / "features.h5"
    with atomic_h5(source, "features", {}) as f:
        f["species_names"] = np.array(NAMES3, dtype=h5py.string_dtype("utf-8"))
        f.attrs["system"] = "made_up"
    species = np.array([2, 0, 1, 1])
    events = np.zeros((30, 4), np.int8)
    events[10, [0, 2]] = 1
    p = np.where(events == 1, 2.0, 0.01)
    stats = event_statistics(events, species, 10.0, 2, 3)
    assert_array_equal(stats["n_events"], [0, 1, 1])
    with atomic_h5(tmp_path / "hops.h5", "hops", {}) as f:
        write_hops_datasets(f, p_hop_values=p, labels=np.zeros_like(events), events=events, stats=stats,
                            species=species, frames=np.arange(30), step=np.arange(30),
                            time_fs=np.arange(30) * 10.0, p_c=np.array([0.5, 0.6, 0.7]),
                            p_quiet=np.array([0.1, 0.1, 0.1]), dt_fs=10.0, half_window=2, quiet_half_window=2,
                            temperature_K=300.0, source=source)
    with h5py.File(tmp_path / "hops.h5") as f:
        assert [n.decode() for n in f["species_names"][()]] == list(NAMES3)
        assert f.attrs["system"] == "made_up"
        assert_array_equal(f["n_events"][()], [0, 1, 1])
        assert_array_equal(f["event_p_hop_max/counts"][()].sum(axis=1), [0, 1, 1])
