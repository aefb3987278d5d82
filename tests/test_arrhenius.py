import json
import logging

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from test_classifier import N_FEATURES, write_features, write_hops

from softness import arrhenius, classifier, config
from softness.cli import main
from softness.errors import SoftnessError
from softness.io import atomic_h5

# A softness model with known parameters (energies as temperatures, K).
E0, E1, SIGMA0, SIGMA1 = 20000.0, 4000.0, 3.0, 0.5
A_S, B_S = -1.5, 4e-4  # <S>(T) = a + b T
TEMPS = np.array([2800.0, 3100.0, 3500.0, 4000.0, 4700.0])


def ln_p_r(s, t):
    return SIGMA0 - SIGMA1 * s - (E0 - E1 * s) / t


def exact_fit(params):
    return arrhenius.Fit(np.asarray(params, float), np.zeros((len(params), len(params))), 0.0, 1)


def binned_counts(rng, s_bins, n_frames=400, atoms_per_bin=200, temps=TEMPS):
    """Per-frame events ~ Binomial(atoms, P_R(S_b, T)) for atoms sitting at the bin softness."""
    events, totals = [], []
    for t in temps:
        p = np.exp(ln_p_r(s_bins, t))
        totals.append(np.full((n_frames, s_bins.size), atoms_per_bin))
        events.append(rng.binomial(atoms_per_bin, np.broadcast_to(p, (n_frames, s_bins.size))))
    return events, totals


def probabilities(rng, events, totals, min_events=20, block=1):
    out = [arrhenius.bootstrap_ratio(e, n, block, 300, rng) for e, n in zip(events, totals, strict=True)]
    p = np.stack([o[0] for o in out])
    ln_err = np.stack([o[1] for o in out])
    usable = np.stack([e.sum(0) >= min_events for e in events])
    return p, ln_err, usable


def within(value, err, truth, n_sigma=3.0):
    assert np.isfinite(err) and err > 0
    assert abs(value - truth) < n_sigma * err, (value, err, truth)


def test_fits_recover_the_softness_model_from_counting_noise():
    rng = np.random.default_rng(10)
    s_bins = np.linspace(-2.0, 1.5, 6)
    events, totals = binned_counts(rng, s_bins)
    p, ln_err, usable = probabilities(rng, events, totals)
    assert usable.all()
    bins = arrhenius.fit_bins(TEMPS, np.log(p), ln_err, usable)
    for b, s in enumerate(s_bins):
        within(bins["Sigma"][b], bins["Sigma_err"][b], SIGMA0 - SIGMA1 * s)
        within(bins["DeltaE_K"][b], bins["DeltaE_K_err"][b], E0 - E1 * s)
    # The bootstrap error is the binomial counting error.
    n = 400 * 200
    assert_allclose(ln_err, np.sqrt((1 - p) / (n * p)), rtol=0.25)
    lines = arrhenius.fit_lines(s_bins, bins)
    for value, err, truth in zip(lines.params, lines.err, (E0, E1, SIGMA0, SIGMA1), strict=True):
        within(value, err, truth)
    assert lines.dof == 2 * s_bins.size - 4 and lines.chi2_dof < 3
    t0, t0_err = arrhenius.crossing_temperature(lines)
    assert t0 == pytest.approx(lines.params[1] / lines.params[3])
    within(t0, t0_err, E1 / SIGMA1)
    # The lines of ln P_R(1/T) of all bins do cross at T0: there ln P_R does not depend on S.
    ln_at_t0 = [bins["Sigma"][b] - bins["DeltaE_K"][b] / t0 for b in range(s_bins.size)]
    assert np.ptp(ln_at_t0) < 0.05 * np.ptp(np.log(p))


def test_mean_softness_fit_recovers_a_and_b_with_its_goodness_of_fit():
    rng = np.random.default_rng(11)
    mean, err = [], []
    for t in TEMPS:
        # Correlated per-frame means (AR(1), correlation 0.8) around a + b T.
        noise = np.zeros(1024)
        for i in range(1, noise.size):
            noise[i] = 0.8 * noise[i - 1] + rng.normal(scale=0.03)
        series = A_S + B_S * t + noise
        mean.append(series.mean())
        err.append(arrhenius.blocked_standard_error(series))
    fit = arrhenius.fit_mean_softness(TEMPS, mean, err)
    within(fit["fit"].params[0], fit["fit"].err[0], A_S)
    within(fit["fit"].params[1], fit["fit"].err[1], B_S)
    assert fit["chi2_dof"] < 4 and fit["R2"] > 0.9
    # Without usable errors (runs too short to block) the fit is unweighted and says so.
    unweighted = arrhenius.fit_mean_softness(TEMPS, mean, np.full(TEMPS.size, np.nan))
    assert_allclose(unweighted["fit"].params, np.polyfit(TEMPS, mean, 1)[::-1])
    assert np.isnan(unweighted["chi2_dof"]) and np.all(unweighted["fit"].err > 0)
    assert np.isnan(arrhenius.blocked_standard_error([1.0]))
    naive = np.std([1.0, 2.0, 3.0], ddof=1) / np.sqrt(3)
    assert arrhenius.blocked_standard_error([1.0, 2.0, 3.0]) == pytest.approx(naive)


def test_blocking_error_accounts_for_correlations():
    rng = np.random.default_rng(12)
    rho, n = 0.9, 2**14
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + rng.normal()
    naive = x.std() / np.sqrt(n)
    se = arrhenius.blocked_standard_error(x)
    assert se == pytest.approx(naive * np.sqrt((1 + rho) / (1 - rho)), rel=0.3)
    white = rng.normal(size=n)
    assert arrhenius.blocked_standard_error(white) == pytest.approx(1 / np.sqrt(n), rel=0.3)


def test_block_bootstrap_sees_events_repeated_over_frames():
    rng = np.random.default_rng(13)
    p, atoms, n_blocks, block = 0.02, 500, 400, 5
    independent = rng.binomial(atoms, p, size=n_blocks)
    repeated = np.repeat(independent, block)  # each event labelled on `block` consecutive frames
    totals = np.full(repeated.size, atoms)
    _, err_naive, _, _ = arrhenius.bootstrap_ratio(repeated, totals, 1, 500, rng)
    _, err_block, lo, hi = arrhenius.bootstrap_ratio(repeated, totals, block, 500, rng)
    binomial = np.sqrt((1 - p) / (p * atoms * n_blocks))
    assert err_block == pytest.approx(binomial, rel=0.2)
    assert err_naive == pytest.approx(binomial / np.sqrt(block), rel=0.2)
    assert lo < repeated.sum() / totals.sum() < hi


def test_bins_with_too_few_events_are_excluded_not_fitted(caplog):
    rng = np.random.default_rng(14)
    s_bins = np.linspace(-2.0, 1.5, 6)
    events, totals = binned_counts(rng, s_bins)
    # Hardest bin at the lowest temperature: few atoms, so few events (P_R ~ 0.0025 * 8000 ~ 20).
    totals[0][:, 0] = 20
    events[0][:, 0] = rng.binomial(20, np.exp(ln_p_r(s_bins[0], TEMPS[0])), size=400)
    # Its P_R there is also made absurd: if it were fitted the bin's numbers would move a lot.
    events[0][:3, 0] = 3
    min_events = 60
    p, ln_err, usable = probabilities(rng, events, totals, min_events=min_events)
    assert events[0][:, 0].sum() < min_events and not usable[0, 0] and usable[1:, 0].all()
    bins = arrhenius.fit_bins(TEMPS, np.log(p), ln_err, usable)
    assert bins["n_temperatures"][0] == 4
    alone = arrhenius.fit_bins(TEMPS[1:], np.log(p[1:]), ln_err[1:], usable[1:])
    assert bins["Sigma"][0] == pytest.approx(alone["Sigma"][0], rel=1e-12)
    within(bins["DeltaE_K"][0], bins["DeltaE_K_err"][0], E0 - E1 * s_bins[0])
    # A bin usable at only one temperature gets NaN and is left out of the lines.
    usable[1:, 1] = False
    bins = arrhenius.fit_bins(TEMPS, np.log(p), ln_err, usable)
    assert np.isnan(bins["Sigma"][1]) and np.isnan(bins["DeltaE_K_err"][1]) and bins["n_temperatures"][1] == 1
    lines = arrhenius.fit_lines(s_bins, bins)
    assert lines.dof == 2 * (s_bins.size - 1) - 4
    # Fewer than two fitted bins: NaN lines.
    usable[:, 2:] = False
    lines = arrhenius.fit_lines(s_bins, arrhenius.fit_bins(TEMPS, np.log(p), ln_err, usable))
    assert np.all(np.isnan(lines.params)) and np.all(np.isnan(lines.cov))


def test_predicted_apparent_barrier_is_the_slope_of_ln_p_r_at_the_mean_softness():
    lines, mean = exact_fit([E0, E1, SIGMA0, SIGMA1]), exact_fit([A_S, B_S])
    t = np.linspace(2500, 6000, 8)

    def ln_p_mean(t):
        return ln_p_r(A_S + B_S * t, t)

    x, h = 1 / t, 1e-9
    numeric = -(ln_p_mean(1 / (x + h)) - ln_p_mean(1 / (x - h))) / (2 * h)
    e, e_err = arrhenius.predicted_barrier(t, lines, mean)
    assert_allclose(e, numeric, rtol=1e-5)
    assert_allclose(e, (E0 - E1 * A_S) - SIGMA1 * B_S * t**2)
    assert_array_equal(e_err, 0.0)
    # The secant between two temperatures is the barrier at their geometric mean.
    t_mid, secant, _ = arrhenius.secant_barrier(t, ln_p_mean(t))
    assert_allclose(t_mid, np.sqrt(t[1:] * t[:-1]))
    assert_allclose(secant, arrhenius.predicted_barrier(t_mid, lines, mean)[0], rtol=1e-9)
    # Error propagation against a Monte Carlo of the parameters.
    rng = np.random.default_rng(15)
    cov_l = np.diag([300.0, 100.0, 0.05, 0.02]) ** 2
    cov_m = np.array([[0.02**2, -0.9 * 0.02 * 5e-6], [-0.9 * 0.02 * 5e-6, 5e-6**2]])
    lf, mf = arrhenius.Fit(lines.params, cov_l, 0, 1), arrhenius.Fit(mean.params, cov_m, 0, 1)
    _, err = arrhenius.predicted_barrier(4000.0, lf, mf)
    pl = rng.multivariate_normal(lines.params, cov_l, 20000)
    pm = rng.multivariate_normal(mean.params, cov_m, 20000)
    samples = pl[:, 0] - pl[:, 1] * pm[:, 0] - pl[:, 3] * pm[:, 1] * 4000.0**2
    assert err == pytest.approx(samples.std(), rel=0.05)


def test_tau_alpha_fits_and_crossover_temperature():
    e_a, ln_tau0_low = 60000.0, -5.0
    b, t_vft = 9000.0, 1500.0
    t_low = np.array([2600.0, 2800.0, 3000.0])
    t_high = np.array([3000.0, 3500.0, 4200.0, 5000.0])
    arr = arrhenius.fit_arrhenius_tau(t_low, np.exp(ln_tau0_low + e_a / t_low))
    assert arr["E_A_K"] == pytest.approx(e_a) and arr["ln_tau0"] == pytest.approx(ln_tau0_low)
    vft = arrhenius.fit_vft(t_high, np.exp(2.0 + b / (t_high - t_vft)))
    assert vft["B_K"] == pytest.approx(b, rel=1e-4) and vft["T_VFT_K"] == pytest.approx(t_vft, rel=1e-4)
    tx, _ = arrhenius.crossover_temperature(arr, vft)
    # There the VFT apparent barrier B T^2 / (T - T_VFT)^2 equals E_A.
    assert b * tx**2 / (tx - t_vft) ** 2 == pytest.approx(e_a, rel=1e-3)
    # With noise: uncertainties come from the scatter and cover the truth.
    rng = np.random.default_rng(16)
    t_all = np.array([2600.0, 2800.0, 3000.0, 3300.0, 3700.0, 4200.0, 4700.0, 5300.0])
    hits = 0
    for _ in range(20):
        tau = np.exp(2.0 + b / (t_all - t_vft) + rng.normal(scale=0.02, size=t_all.size))
        fit = arrhenius.fit_vft(t_all, tau)
        hits += abs(fit["T_VFT_K"] - t_vft) < 2 * fit["T_VFT_K_err"]
    assert hits >= 15


def test_tau_alpha_crossover_with_too_few_temperatures_is_nan_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        res = arrhenius.tau_alpha_crossover([3000.0, 3500.0], [1e4, 3e3], species="O")
    assert np.isnan(res["vft"]["B_K"]) and np.isnan(res["T_x_K"])
    assert np.isfinite(res["arrhenius"]["E_A_K"]) and np.isnan(res["arrhenius"]["E_A_K_err"])
    assert "at least 3 are needed for the VFT" in caplog.text
    # Purely Arrhenius data: the VFT fit sits at T_VFT = 0 and there is no crossover.
    t = np.array([3000.0, 3500.0, 4000.0, 4700.0, 5500.0])
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        res = arrhenius.tau_alpha_crossover(t, np.exp(2.0 + 30000.0 / t), species="Si")
    assert res["vft"]["at_bound"] and np.isnan(res["T_x_K"]) and "not super-Arrhenius" in caplog.text
    assert res["arrhenius"]["E_A_K"] == pytest.approx(30000.0)
    res = arrhenius.tau_alpha_crossover([3000.0, 3500.0, 4000.0], [np.nan, 3e3, 1e3], species="O")
    assert np.isnan(res["vft"]["B_K"]) and res["arrhenius"]["n"] == 2


def test_event_windows_follow_the_softness_frames():
    lo, hi, k = arrhenius.event_windows([0, 3, 6, 9], np.arange(11))
    assert k == 3
    assert_array_equal(lo, [0, 3, 6, 9])
    assert_array_equal(hi, [3, 6, 9, 11])  # the last window is cut by the end of the hops frames


def test_binned_counts_match_a_brute_force_count(tmp_path):
    rng = np.random.default_rng(19)
    n_atoms, n_traj, stride = 7, 23, 3
    species = np.array([0, 1, 1, 0, 1, 1, 1])
    s_frames = np.arange(1, n_traj, stride)  # softness on frames 1, 4, ..., 22
    softness = rng.normal(size=(s_frames.size, n_atoms))
    labels = rng.choice([-1, 0, 1], p=[0.3, 0.5, 0.2], size=(n_traj, n_atoms)).astype(np.int8)
    p_hop = rng.random((n_traj, n_atoms))
    p_hop[:2] = p_hop[-1:] = np.nan
    p_hop[10, 3] = np.nan
    with atomic_h5(tmp_path / "s.h5", "apply", {}) as f:
        f["softness"], f["frames"], f["species"] = softness.astype(np.float32), s_frames, species
    write_hops(tmp_path / "h.h5", labels, species, 3000.0, p_hop=p_hop)
    edges = np.array([[-3.0, -0.5, 0.0, 3.0], [-1.0, 0.0, 0.5, 1.0]])
    hist_edges = np.stack([np.linspace(-4, 4, arrhenius.N_HIST + 1)] * 2)
    item = arrhenius.TemperatureData(3000.0, tmp_path / "s.h5", tmp_path / "h.h5", tmp_path / "d.h5")
    counts = arrhenius.count_temperature(item, edges, hist_edges)
    s32 = softness.astype(np.float32).astype(np.float64)
    for sp in (0, 1):
        events, totals = np.zeros((s_frames.size, 3)), np.zeros((s_frames.size, 3))
        for k, f in enumerate(s_frames):
            window = range(f, min(f + stride, n_traj))
            for i in np.flatnonzero(species == sp):
                if not all(np.isfinite(p_hop[g, i]) for g in window):
                    continue
                e = edges[sp]
                if not e[0] <= s32[k, i] <= e[-1]:
                    continue
                b = min(int(np.searchsorted(e, s32[k, i], side="right")) - 1, 2)
                totals[k, b] += 1
                events[k, b] += any(labels[g, i] == 1 for g in window)
        assert_array_equal(counts["totals"][sp], totals)
        assert_array_equal(counts["events"][sp], events)
        assert_allclose(counts["mean_S"][sp], s32[:, species == sp].mean(axis=1))
    assert counts["totals"][0].sum() != counts["totals"][1].sum()  # the species differ
    # Every other count: all atoms (binned or not) and the softness of the events, brute force.
    event_s = [[], []]
    for sp in (0, 1):
        all_events, all_totals = np.zeros(s_frames.size), np.zeros(s_frames.size)
        s_sum = np.zeros(3)
        hist = np.zeros(arrhenius.N_HIST)
        for k, f in enumerate(s_frames):
            window = range(f, min(f + stride, n_traj))
            for i in np.flatnonzero(species == sp):
                hist[min(int(np.searchsorted(hist_edges[sp], s32[k, i], side="right")) - 1,
                         arrhenius.N_HIST - 1)] += 1
                if not all(np.isfinite(p_hop[g, i]) for g in window):
                    continue  # p_hop undefined somewhere in the window: the (frame, atom) is not counted
                event = any(labels[g, i] == 1 for g in window)
                all_totals[k] += 1
                all_events[k] += event
                if event:
                    event_s[sp].append(s32[k, i])
                e = edges[sp]
                if e[0] <= s32[k, i] <= e[-1]:
                    s_sum[min(int(np.searchsorted(e, s32[k, i], side="right")) - 1, 2)] += s32[k, i]
        assert_array_equal(counts["all_events"][sp], all_events)
        assert_array_equal(counts["all_totals"][sp], all_totals)
        assert all_totals.sum() < s_frames.size * np.sum(species == sp)  # undefined frames were dropped
        assert_allclose(counts["s_sum"][sp], s_sum, rtol=1e-12)
        assert_array_equal(counts["hist"][sp], hist)
    values, s_min, s_max = arrhenius._event_softness(item, np.random.default_rng(0))
    for sp in (0, 1):
        assert_array_equal(np.sort(values[sp]), np.sort(np.array(event_s[sp], np.float32)))
        assert s_min[sp] == s32[:, species == sp].min() and s_max[sp] == s32[:, species == sp].max()


# ---------------------------------------------------------------------------- end to end

def write_dynamics(path, temperature, tau, diff):
    with atomic_h5(path, "dynamics", {}) as f:
        f["lag_time_fs"] = np.geomspace(50, 5000, 10)
        f["msd_A2"] = np.ones((2, 10))
        f["F_s"] = np.ones((2, 10))
        f["D_A2_per_fs"] = np.asarray(diff, float)
        f["D_err_A2_per_fs"] = 0.02 * np.asarray(diff, float)
        f["tau_alpha_fs"] = np.asarray(tau, float)
        f["tau_alpha_reached"] = np.isfinite(tau)
        f["species_names"] = np.array(["Si", "O"], dtype="S")
        f.attrs["temperature_K"] = float(temperature)


def synthetic_temperature(tmp_path, rng, t, u, *, n_atoms=120, n_frames=80, stride=1):
    """Features whose hidden softness z = u . x has mean a + b T; labels drawn from P_R(z, T).

    Labels are drawn independently on every trajectory frame, so with ``stride`` > 1 the
    probability per softness interval is 1 - (1 - P_R)^stride, no longer Arrhenius where P_R is
    not small.
    """
    species = np.r_[np.zeros(n_atoms // 3, int), np.ones(n_atoms - n_atoms // 3, int)]
    frames = np.arange(0, n_frames, stride)
    x = rng.normal(size=(frames.size, n_atoms, N_FEATURES))
    x += (A_S + B_S * t) * u[species]  # shift along the softness direction
    z = np.einsum("rnf,nf->rn", x, u[species])
    z_traj = np.repeat(z, stride, axis=0)[:n_frames]
    p = np.minimum(np.exp(ln_p_r(z_traj, t)), 1.0)
    rearranging = rng.random(p.shape) < p
    labels = np.where(rearranging, 1, np.where(z_traj < A_S + B_S * t, 0, -1)).astype(np.int8)
    p_hop = np.where(rearranging, 1.0, 0.01)
    p_hop[:2] = p_hop[-2:] = np.nan  # undefined at the ends, as in softness.hops
    labels[:2] = labels[-2:] = -1
    write_features(tmp_path / f"features_{t:g}.h5", x.astype(np.float32), frames, species, t)
    write_hops(tmp_path / f"hops_{t:g}.h5", labels, species, t, p_hop=p_hop)
    mean_rate = np.exp(ln_p_r(A_S + B_S * t, t))
    write_dynamics(tmp_path / f"dynamics_{t:g}.h5", t, [50.0 / mean_rate, 30.0 / mean_rate],
                   [0.01 * mean_rate, 0.02 * mean_rate])
    return z


def test_train_apply_arrhenius_end_to_end(tmp_path):
    rng = np.random.default_rng(17)
    u = rng.normal(size=(2, N_FEATURES))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    temps = [2800.0, 3300.0, 4000.0, 4700.0]
    for t in temps:
        synthetic_temperature(tmp_path, rng, t, u, n_atoms=150, n_frames=120)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(json.dumps({"temperatures_K": temps, "quench": {"T_min_K": 2800},
                                    "train": {"n_per_class": 400, "C_grid": [0.01, 0.1, 1.0],
                                              "cv_folds": 3},
                                    "arrhenius": {"n_bins": 5, "min_events": 10, "n_bootstrap": 50}}))
    cfg = ["--config", str(cfg_path)]
    assert main(["train", *cfg, "--features", str(tmp_path / "features_2800.h5"),
                 "--hops", str(tmp_path / "hops_2800.h5"), "--out", str(tmp_path / "model.h5")]) == 0
    for t in temps:
        assert main(["apply", *cfg, "--model", str(tmp_path / "model.h5"),
                     "--features", str(tmp_path / f"features_{t:g}.h5"),
                     "--out", str(tmp_path / f"softness_{t:g}.h5")]) == 0
    # Files in a shuffled order: they are paired by temperature.
    order = [2, 0, 3, 1]
    args = ["arrhenius", *cfg,
            "--softness", *[str(tmp_path / f"softness_{temps[i]:g}.h5") for i in order],
            "--hops", *[str(tmp_path / f"hops_{t:g}.h5") for t in temps],
            "--dynamics", *[str(tmp_path / f"dynamics_{temps[i]:g}.h5") for i in order[::-1]],
            "--out", str(tmp_path / "arrhenius.h5"), "--summary", str(tmp_path / "summary.json")]
    assert main(args) == 0
    with h5py.File(tmp_path / "arrhenius.h5", "r") as f:
        assert f.attrs["stage"] == "arrhenius" and f.attrs["T_train_K"] == 2800.0
        assert_array_equal(f["temperature_K"][()], temps)
        assert f["P_R"].shape == (2, 4, 5) and f["bins/edges"].shape == (2, 6)
        p, usable, s_bin = f["P_R"][()], f["usable"][()], f["bins/S_mean"][()]
        ln_err = f["ln_P_R_err"][()]
        assert np.all(np.diff(s_bin, axis=1) > 0)
        for sp in range(2):
            for k in range(4):
                ok = usable[sp, k]
                # Softer atoms rearrange more (within the errors), hotter ones too.
                ln_p, err = np.log(p[sp, k, ok]), ln_err[sp, k, ok]
                assert ok.sum() >= 3
                assert np.all(np.diff(ln_p) > -3 * np.hypot(err[1:], err[:-1]))
                assert ln_p[-1] - ln_p[0] > 3 * np.hypot(err[-1], err[0])
            both = usable[sp, 0] & usable[sp, -1]
            assert np.all(p[sp, -1, both] > p[sp, 0, both])
        # Fitted: at least min_events events and P_R below saturation (the default max_P_R, 0.5).
        n_ev = f["n_events"][()]
        assert_array_equal(usable, (n_ev >= 10) & (p <= 0.5))
        assert f.attrs["max_P_R"] == 0.5
        # The learnt softness is a rescaled, shifted z: DeltaE falls and <S> rises with S and T.
        assert np.all(f["lines/e1_K"][()] > 0) and np.all(f["mean_softness/b_per_K"][()] > 0)
        t0 = f["lines/e1_K"][()] / f["lines/Sigma1"][()]
        assert_allclose(f["lines/T0_K"][()], t0)
        # T0 does not depend on the scale and offset of the learnt S: it is the model's e1 / Sigma1.
        assert np.all(np.abs(t0 - E1 / SIGMA1) < 3 * f["lines/T0_K_err"][()])
        assert_allclose(f["lines/e0_eV"][()], arrhenius.k_to_eV(f["lines/e0_K"][()]))
        assert f["crossover/E_app_predicted_K"].shape == (2, 4) and f["crossover/T_mid_K"].shape == (3,)
        assert np.all(np.isfinite(f["crossover/E_app_tau_K"][()]))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["temperatures_K"] == temps and set(s["species"]) == {"Si", "O"}
    assert s["species"]["O"]["e0"]["eV"]["unit"] == "eV" and s["species"]["O"]["T0"]["error"] > 0
    md = (tmp_path / "summary.md").read_text()
    assert "| T0 = e1/Sigma1 (K) |" in md and "±" in md


def test_arrhenius_refuses_a_single_temperature_and_mismatched_files(tmp_path, capsys):
    rng = np.random.default_rng(18)
    u = np.eye(N_FEATURES)[:2]
    for t in (4000.0, 4700.0):
        synthetic_temperature(tmp_path, rng, t, u, n_atoms=60, n_frames=40)
    cfg = config.resolve({"temperatures_K": [4000.0, 4700.0], "train": {"n_per_class": 50, "cv_folds": 2}})
    classifier.train_file(cfg, tmp_path / "features_4000.h5", tmp_path / "hops_4000.h5", tmp_path / "m.h5")
    for t in (4000.0, 4700.0):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / f"features_{t:g}.h5",
                              tmp_path / f"s_{t:g}.h5")
    softness = [tmp_path / "s_4000.h5", tmp_path / "s_4700.h5"]
    hops = [tmp_path / "hops_4000.h5", tmp_path / "hops_4700.h5"]
    dynamics = [tmp_path / "dynamics_4000.h5", tmp_path / "dynamics_4700.h5"]
    one = [tmp_path / "s_4000.h5"], [tmp_path / "hops_4000.h5"], [tmp_path / "dynamics_4000.h5"]
    with pytest.raises(SoftnessError, match="needs at least two"):
        arrhenius.arrhenius_file(cfg, *one, tmp_path / "a.h5")
    code = main(["arrhenius", "--softness", str(tmp_path / "s_4000.h5"), "--hops",
                 str(tmp_path / "hops_4000.h5"), "--dynamics", str(tmp_path / "dynamics_4000.h5"),
                 "--out", str(tmp_path / "a.h5")])
    assert code == 1 and "at least two" in capsys.readouterr().err and not (tmp_path / "a.h5").exists()
    with pytest.raises(SoftnessError, match="hops files are at"):
        arrhenius.arrhenius_file(cfg, softness, hops[:1], dynamics, tmp_path / "a.h5")
    with pytest.raises(SoftnessError, match="both at 4000 K"):
        arrhenius.arrhenius_file(cfg, softness[:1] * 2, hops, dynamics, tmp_path / "a.h5")
    # No bin with enough events at two temperatures: a clear error, nothing written.
    strict = config.resolve({**cfg, "arrhenius": {"min_events": 10**6}})
    with pytest.raises(SoftnessError, match="arrhenius.min_events"):
        arrhenius.arrhenius_file(strict, softness, hops, dynamics, tmp_path / "a.h5")
    assert not (tmp_path / "a.h5").exists()


def test_saturated_probabilities_are_excluded_from_the_fits():
    """Hot enough, the label p_hop > p_c is on for nearly every atom: P_R sticks near 1 whatever S.
    Those points, with their small counting errors, would drag every bin's fit; with
    max_P_R they are left out and the bins' Arrhenius parameters are recovered."""
    rng = np.random.default_rng(21)
    s_bins = np.linspace(-2.0, 1.5, 6)
    temps = np.array([2800.0, 3100.0, 3500.0, 4000.0, 4700.0, 9000.0, 12000.0])
    saturation = 0.95
    events, totals = [], []
    for t in temps:
        p = np.minimum(np.exp(ln_p_r(s_bins, t)), saturation)
        totals.append(np.full((400, s_bins.size), 200))
        events.append(rng.binomial(200, np.broadcast_to(p, (400, s_bins.size))))
    p, ln_err, _ = probabilities(rng, events, totals)
    n_events = np.stack([e.sum(0) for e in events])
    usable = arrhenius.usable_points(n_events, p, 20, 0.5)
    assert not usable[-1].any() and usable[:5].all()  # the saturated hottest are out
    bins = arrhenius.fit_bins(temps, np.log(p), ln_err, usable)
    for b, s in enumerate(s_bins):
        within(bins["DeltaE_K"][b], bins["DeltaE_K_err"][b], E0 - E1 * s)
    # Kept in, they bend the fits far beyond their errors.
    everything = arrhenius.fit_bins(temps, np.log(p), ln_err, n_events >= 20)
    pull = np.abs(everything["DeltaE_K"] - (E0 - E1 * s_bins)) / everything["DeltaE_K_err"]
    assert pull.max() > 5
    # No atoms: NaN P_R is never usable.
    assert not arrhenius.usable_points([50], [np.nan], 20, 0.5)[0]


# ---------------------------------------------------------------------------- species with different physics
# Softness is given (written straight into softness files), so every output of the analysis has a
# known value. The two species differ in every parameter by many times its error, so reading the
# other species' data anywhere shows. Energies as temperatures (K).

MODEL = {
    "Si": dict(e0=24000.0, e1=5000.0, Sigma0=3.0, Sigma1=0.6, a=-1.0, b=3.5e-4, sd=0.55,
               E_A=40000.0, B=6000.0, T_VFT=1500.0, ln_tau_vft=3.0, E_D=30000.0, D0=1.0),
    "O": dict(e0=15000.0, e1=2000.0, Sigma0=1.2, Sigma1=0.15, a=0.4, b=1.2e-4, sd=0.5,
              E_A=30000.0, B=3000.0, T_VFT=2000.0, ln_tau_vft=2.0, E_D=22000.0, D0=0.5),
}
SPECIES = ("Si", "O")
MODEL_TEMPS = np.array([2500.0, 2800.0, 3100.0, 3500.0, 4000.0, 4500.0])
#: The tau_alpha law is Arrhenius up to this temperature and VFT from it on (continuous there); the
#: analysis' default split of six temperatures is the same (Arrhenius on 3, VFT on 4).
T_BRANCH = 3100.0
N_SI, N_O, N_FRAMES, DT_FS = 500, 800, 800, 50.0
#: p_hop is undefined on the first and last UNDEFINED frames (a long t_R, so that counting those
#: frames would dilute the mean rate by 16 %, several times its error).
UNDEFINED = 64


def model_ln_p(m, s, t):
    return m["Sigma0"] - m["Sigma1"] * s - (m["e0"] - m["e1"] * s) / t


def model_mean_s(m, t):
    return m["a"] + m["b"] * np.asarray(t, float)


def model_ln_p_mean(m, t):
    """ln of P_R averaged over the Gaussian softness distribution at T."""
    c = m["Sigma1"] - m["e1"] / t
    return m["Sigma0"] - m["e0"] / t - c * model_mean_s(m, t) + 0.5 * c**2 * m["sd"] ** 2


def model_ln_tau(m, t):
    t = np.asarray(t, float)
    vft = m["ln_tau_vft"] + m["B"] / (t - m["T_VFT"])
    ln_tau_arr = m["ln_tau_vft"] + m["B"] / (T_BRANCH - m["T_VFT"]) - m["E_A"] / T_BRANCH
    return np.where(t <= T_BRANCH, ln_tau_arr + m["E_A"] / t, vft)


def model_ln_D(m, t):
    return np.log(m["D0"]) - m["E_D"] / np.asarray(t, float)


def model_T_x(m):
    return m["T_VFT"] / (1 - np.sqrt(m["B"] / m["E_A"]))


def write_model_temperature(tmp_path, rng, t):
    species = np.r_[np.zeros(N_SI, int), np.ones(N_O, int)]
    rng.shuffle(species)
    s = np.empty((N_FRAMES, species.size))
    p = np.empty_like(s)
    for k, name in enumerate(SPECIES):
        m, mine = MODEL[name], species == k
        s[:, mine] = rng.normal(model_mean_s(m, t), m["sd"], size=(N_FRAMES, mine.sum()))
        p[:, mine] = np.exp(model_ln_p(m, s[:, mine], t))
    assert p.max() < 0.6
    rearranging = rng.random(p.shape) < p
    labels = np.where(rearranging, 1, rng.choice([0, -1], size=p.shape)).astype(np.int8)
    p_hop = np.where(rearranging, 1.0, 0.01)
    p_hop[:UNDEFINED] = p_hop[-UNDEFINED:] = np.nan
    labels[:UNDEFINED] = labels[-UNDEFINED:] = -1
    frames = np.arange(N_FRAMES)
    with atomic_h5(tmp_path / f"softness_{t:g}.h5", "apply", {}) as f:
        f["softness"] = s.astype(np.float32)
        f["frames"], f["time_fs"], f["species"] = frames, frames * DT_FS, species
        f.attrs["temperature_K"], f.attrs["T_train_K"] = t, MODEL_TEMPS[0]
    write_hops(tmp_path / f"hops_{t:g}.h5", labels, species, t, p_hop=p_hop)
    with atomic_h5(tmp_path / f"dynamics_{t:g}.h5", "dynamics", {}) as f:
        diff = np.array([np.exp(model_ln_D(MODEL[n], t)) for n in SPECIES])
        f["D_A2_per_fs"], f["D_err_A2_per_fs"] = diff, 0.03 * diff
        f["diffusive"] = np.array([True, True])
        f["tau_alpha_fs"] = np.array([np.exp(model_ln_tau(MODEL[n], t)) for n in SPECIES])
        f["tau_alpha_reached"] = np.array([True, True])
        f.attrs["temperature_K"] = t


@pytest.fixture(scope="module")
def model_analysis(tmp_path_factory):
    """The arrhenius stage (command line) on data made from MODEL; the product and summary."""
    d = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(31)
    for t in MODEL_TEMPS:
        write_model_temperature(d, rng, t)
    cfg = d / "config.yaml"
    cfg.write_text(json.dumps({"temperatures_K": MODEL_TEMPS.tolist(), "seed": 3, "quench": {"T_min_K": 2500},
                               "arrhenius": {"n_bins": 8, "min_events": 20, "n_bootstrap": 200,
                                             "bootstrap_block_fs": DT_FS}}))
    files = {kind: [str(d / f"{kind}_{t:g}.h5") for t in MODEL_TEMPS[::-1]]
             for kind in ("softness", "hops", "dynamics")}
    assert main(["arrhenius", "--config", str(cfg), "--softness", *files["softness"],
                 "--hops", *files["hops"], "--dynamics", *files["dynamics"], "--out", str(d / "arrhenius.h5"),
                 "--summary", str(d / "summary.json")]) == 0
    with h5py.File(d / "arrhenius.h5") as f:
        r = {}
        f.visititems(lambda name, obj: r.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                     else None)
    r["_dir"] = d
    return r, json.loads((d / "summary.json").read_text()), (d / "summary.md").read_text()


def pulls(value, err, truth):
    """|value - truth| / err, checking the errors are usable."""
    value, err = np.asarray(value, float), np.asarray(err, float)
    assert np.all(np.isfinite(err) & (err > 0)), err
    return np.abs(value - truth) / err


def test_species_model_bins_and_lines(model_analysis):
    r, _, _ = model_analysis
    assert_array_equal(r["temperature_K"], MODEL_TEMPS)
    for sp, name in enumerate(SPECIES):
        m, other = MODEL[name], MODEL[SPECIES[1 - sp]]
        s_bin = r["bins/S_mean"][sp]
        fitted = np.isfinite(r["bin_fit/Sigma"][sp])
        assert fitted.sum() >= 5, name
        # Per bin: the Arrhenius parameters at the bin's mean softness.
        assert pulls(r["bin_fit/Sigma"][sp, fitted], r["bin_fit/Sigma_err"][sp, fitted],
                     m["Sigma0"] - m["Sigma1"] * s_bin[fitted]).max() < 4, name
        assert pulls(r["bin_fit/DeltaE_K"][sp, fitted], r["bin_fit/DeltaE_K_err"][sp, fitted],
                     m["e0"] - m["e1"] * s_bin[fitted]).max() < 4, name
        # The counts, recounted from the files: softness on every frame, so an atom rearranges at a
        # frame where its label is 1, and counts where p_hop is defined.
        for k, t in enumerate(MODEL_TEMPS):
            d = r["_dir"]
            with h5py.File(d / f"softness_{t:g}.h5") as fs, h5py.File(d / f"hops_{t:g}.h5") as fh:
                mine = fs["species"][()] == sp
                soft = fs["softness"][()][:, mine]
                defined = np.isfinite(fh["p_hop"][()][:, mine])
                event = fh["labels"][()][:, mine] == 1
            e = r["bins/edges"][sp]
            in_bin = [defined & (soft >= lo) & ((soft < hi) if j < e.size - 2 else (soft <= hi))
                      for j, (lo, hi) in enumerate(zip(e[:-1], e[1:], strict=True))]
            assert_array_equal(r["n_samples"][sp, k], [b.sum() for b in in_bin])
            assert_array_equal(r["n_events"][sp, k], [(b & event).sum() for b in in_bin])
            assert r["rate/P_R_mean"][sp, k] == pytest.approx(event[defined].mean(), rel=1e-12)
            assert r["mean_softness/mean"][sp, k] == pytest.approx(soft.astype(np.float64).mean(), rel=1e-9)
        # Per (T, bin): P_R against the model averaged over the atoms of that bin at that T.
        edges = r["bins/edges"][sp]
        for k, t in enumerate(MODEL_TEMPS):
            x = np.linspace(edges[0], edges[-1], 20001)
            w = np.exp(-0.5 * ((x - model_mean_s(m, t)) / m["sd"]) ** 2)
            ok = r["usable"][sp, k]
            b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
            expected = np.array([np.sum((w * np.exp(model_ln_p(m, x, t)))[b == j]) / np.sum(w[b == j])
                                 for j in range(edges.size - 1)])
            assert pulls(np.log(r["P_R"][sp, k, ok]), r["ln_P_R_err"][sp, k, ok],
                         np.log(expected[ok])).max() < 4, (name, t)
        # The lines DeltaE = e0 - e1 S, Sigma = Sigma0 - Sigma1 S and T0 = e1 / Sigma1.
        for key, truth in (("e0_K", m["e0"]), ("e1_K", m["e1"]), ("Sigma0", m["Sigma0"]),
                           ("Sigma1", m["Sigma1"]), ("T0_K", m["e1"] / m["Sigma1"])):
            value, err = r[f"lines/{key}"][sp], r[f"lines/{key}_err"][sp]
            assert pulls(value, err, truth) < 3.5, (name, key, value, err, truth)
            if key != "T0_K":  # a swap of species would show (T0, a ratio, is checked through e1, Sigma1)
                assert abs(other[key.removesuffix("_K")] - truth) > 6 * err, (name, key)
        assert r["lines/e1_eV"][sp] == pytest.approx(arrhenius.k_to_eV(r["lines/e1_K"][sp]))
        # T0 is where the lines cross, e1 / Sigma1 of the fit (the slopes, not the intercepts), with
        # the error of that ratio under the fit's 4 x 4 covariance (Monte Carlo, within 4 errors).
        e0, e1, sig0, sig1 = (r[f"lines/{k}"][sp] for k in ("e0_K", "e1_K", "Sigma0", "Sigma1"))
        assert r["lines/T0_K"][sp] == pytest.approx(e1 / sig1, rel=1e-12)
        rng = np.random.default_rng(sp)
        samples = rng.multivariate_normal([e0, e1, sig0, sig1], r["lines/cov"][sp], 20000)
        ratio = samples[:, 1] / samples[:, 3]
        t0_err = r["lines/T0_K_err"][sp]
        assert t0_err == pytest.approx(np.std(ratio[np.abs(ratio - e1 / sig1) < 4 * t0_err]), rel=0.15)


def test_species_model_mean_softness_and_predicted_barrier(model_analysis):
    r, _, _ = model_analysis
    t = MODEL_TEMPS
    for sp, name in enumerate(SPECIES):
        m, other = MODEL[name], MODEL[SPECIES[1 - sp]]
        assert pulls(r["mean_softness/mean"][sp], r["mean_softness/err"][sp], model_mean_s(m, t)).max() < 4
        # Independent frames: the blocked error is about the naive one, sd / sqrt(atoms x frames)
        # (the largest of the noisy estimates over block sizes, so somewhat above it).
        naive = m["sd"] / np.sqrt((N_SI if name == "Si" else N_O) * N_FRAMES)
        assert np.all((r["mean_softness/err"][sp] > 0.8 * naive) & (r["mean_softness/err"][sp] < 1.7 * naive))
        for key, truth in (("a", "a"), ("b_per_K", "b")):
            err = r[f"mean_softness/{key}_err"][sp]
            assert pulls(r[f"mean_softness/{key}"][sp], err, m[truth]) < 3.5, (name, key)
            assert abs(other[truth] - m[truth]) > 6 * err
        # E_app(T) = (e0 - e1 a) - Sigma1 b T^2, at every T and at the secants' mid-temperatures.
        def e_app(temps, m=m):
            return (m["e0"] - m["e1"] * m["a"]) - m["Sigma1"] * m["b"] * np.asarray(temps) ** 2

        assert pulls(r["crossover/E_app_predicted_K"][sp], r["crossover/E_app_predicted_K_err"][sp],
                     e_app(t)).max() < 3.5, name
        assert pulls(r["crossover/E_app_predicted_mid_K"][sp], r["crossover/E_app_predicted_mid_K_err"][sp],
                     e_app(r["crossover/T_mid_K"])).max() < 3.5, name
        assert pulls(r["crossover/E_inf_K"][sp], r["crossover/E_inf_K_err"][sp],
                     m["e0"] - m["e1"] * m["a"]) < 3.5
        assert pulls(r["crossover/Sigma1_b_per_K"][sp], r["crossover/Sigma1_b_per_K_err"][sp],
                     m["Sigma1"] * m["b"]) < 3.5
        assert np.all(np.abs(e_app(t) - e_app(t, other)) > 6 * r["crossover/E_app_predicted_K_err"][sp])


def test_species_model_measured_barriers_and_crossover(model_analysis):
    r, _, _ = model_analysis
    t = MODEL_TEMPS
    x = 1 / t
    assert_allclose(r["crossover/T_mid_K"], np.sqrt(t[1:] * t[:-1]))
    assert_array_equal(r["frame_interval_fs"], DT_FS)
    for sp, name in enumerate(SPECIES):
        m, other = MODEL[name], MODEL[SPECIES[1 - sp]]
        # The mean rearrangement rate per fs over the frames where p_hop is defined, and its barrier.
        ln_rate = model_ln_p_mean(m, t) - np.log(DT_FS)
        rate, ln_rate_err = r["rate/rate_per_fs"][sp], r["rate/ln_P_R_mean_err"][sp]
        assert pulls(np.log(rate), ln_rate_err, ln_rate).max() < 4, name
        assert_allclose(r["rate/rate_per_fs_err"][sp], rate * ln_rate_err)
        secant = -np.diff(model_ln_p_mean(m, t)) / np.diff(x)
        e_rate, e_rate_err = r["crossover/E_app_rate_K"][sp], r["crossover/E_app_rate_K_err"][sp]
        assert np.all(secant > 0)
        assert pulls(e_rate, e_rate_err, secant).max() < 4, (name, e_rate, e_rate_err, secant)
        assert np.all(np.abs(-np.diff(model_ln_p_mean(other, t)) / np.diff(x) - secant) > 6 * e_rate_err)
        # From tau_alpha (exact data: exact secants) and from D (Arrhenius: E_D at every pair).
        assert_allclose(r["crossover/E_app_tau_K"][sp], np.diff(model_ln_tau(m, t)) / np.diff(x), rtol=1e-6)
        assert_allclose(r["crossover/E_app_D_K"][sp], m["E_D"], rtol=1e-6)
        assert_allclose(r["crossover/E_app_D_K_err"][sp], np.hypot(0.03, 0.03) / np.abs(np.diff(x)),
                        rtol=1e-6)
        assert_allclose(r["crossover/E_app_tau_eV"][sp], arrhenius.k_to_eV(r["crossover/E_app_tau_K"][sp]))
        assert_allclose(r["dynamics/tau_alpha_fs"][sp], np.exp(model_ln_tau(m, t)))
        # tau_alpha(T): Arrhenius on the three lowest, VFT on the four highest, and T_x.
        assert r["tau_fit/arrhenius/E_A_K"][sp] == pytest.approx(m["E_A"], rel=1e-6)
        assert_array_equal(r["tau_fit/arrhenius/T_range_K"][sp], [2500.0, 3100.0])
        assert_array_equal(r["tau_fit/vft/T_range_K"][sp], [3100.0, 4500.0])
        assert r["tau_fit/vft/B_K"][sp] == pytest.approx(m["B"], rel=1e-3)
        assert r["tau_fit/vft/T_VFT_K"][sp] == pytest.approx(m["T_VFT"], rel=1e-3)
        assert r["tau_fit/vft/ln_tau0"][sp] == pytest.approx(m["ln_tau_vft"], abs=1e-3)
        assert r["tau_fit/T_x_K"][sp] == pytest.approx(model_T_x(m), rel=1e-3)
        assert abs(model_T_x(other) - model_T_x(m)) > 0.05 * model_T_x(m)


def test_species_model_summary_names_each_species_numbers(model_analysis):
    r, s, md = model_analysis
    assert s["temperatures_K"] == MODEL_TEMPS.tolist() and s["T_train_K"] == 2500.0
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ") and "quantity" not in line}
    assert md.splitlines()[2].startswith("| quantity | Si | O |")
    for sp, name in enumerate(SPECIES):
        m, entry = MODEL[name], s["species"][name]
        assert entry["T0"]["value"] == pytest.approx(r["lines/T0_K"][sp])
        assert entry["T0"]["error"] == pytest.approx(r["lines/T0_K_err"][sp])
        assert abs(entry["T0"]["value"] - m["e1"] / m["Sigma1"]) < 3.5 * entry["T0"]["error"]
        assert entry["e0"]["K"]["value"] == pytest.approx(r["lines/e0_K"][sp])
        assert entry["e1"]["eV"]["value"] == pytest.approx(r["lines/e1_eV"][sp])
        assert entry["Sigma1"]["value"] == pytest.approx(r["lines/Sigma1"][sp])
        assert entry["mean_softness"]["b"]["value"] == pytest.approx(r["mean_softness/b_per_K"][sp])
        assert entry["apparent_barrier"]["E_inf"]["K"]["value"] == pytest.approx(r["crossover/E_inf_K"][sp])
        assert entry["tau_alpha"]["arrhenius"]["E_A"]["K"]["value"] == pytest.approx(m["E_A"], rel=1e-6)
        assert entry["tau_alpha"]["vft"]["T_VFT"]["value"] == pytest.approx(m["T_VFT"], rel=1e-3)
        assert entry["tau_alpha"]["T_crossover"]["value"] == pytest.approx(model_T_x(m), rel=1e-3)
        # The Markdown table: one column per species, in the order of its header.
        assert rows["T0 = e1/Sigma1 (K)"][sp].startswith(f"{r['lines/T0_K'][sp]:.4g}")
        assert rows["crossover T_x (K)"][sp].startswith(f"{r['tau_fit/T_x_K'][sp]:.4g}")
        assert rows["b (1/K)"][sp].startswith(f"{r['mean_softness/b_per_K'][sp]:.4g}")
