import json
import logging

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from test_classifier import N_FEATURES, SILICA, write_features
from test_classifier import write_hops as write_hops_labels

from softness import arrhenius, classifier, config, units
from softness.cli import main
from softness.errors import SoftnessError
from softness.io import atomic_h5


def write_hops(path, labels, species, temperature, p_hop=None, events=None, species_names=SILICA,
               system=None):
    """A hops file (frames every 50 fs) with ``/events``: by default an event wherever the label is
    1, so that with a P_R window of one frame an atom rearranges at a frame where its label is 1;
    -1 (no event can be located) wherever p_hop is undefined."""
    write_hops_labels(path, labels, species, temperature, p_hop=p_hop, species_names=species_names,
                      system=system)
    with h5py.File(path, "a") as f:
        p = f["p_hop"][()]
        if events is None:
            events = np.where(np.isfinite(p), np.asarray(labels) == 1, -1)
        f["events"] = np.asarray(events, np.int8)


# A softness model with known parameters (energies as temperatures, K).
E0, E1, SIGMA0, SIGMA1 = 20000.0, 4000.0, 3.0, 0.5
A_S, B_S = -1.5, 4e-4  # <S>(T) = a + b T
TEMPS = np.array([2800.0, 3100.0, 3500.0, 4000.0, 4700.0])


def ln_p_r(s, t, law=(E0, E1, SIGMA0, SIGMA1)):
    e0, e1, sigma0, sigma1 = law
    return sigma0 - sigma1 * s - (e0 - e1 * s) / t


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


# A tau_alpha(T) with a strong-to-fragile crossover: Arrhenius E_low below T_x, a smaller barrier above.
TAU_TRUTH = {"ln_tau0": -4.0, "E_low_K": 60000.0, "E_high_K": 25000.0, "T_x_K": 3400.0}
TAU_TEMPS = np.array([2600.0, 2800.0, 3000.0, 3250.0, 3500.0, 3800.0, 4200.0, 4700.0, 5300.0])
TAU_PARAMS = arrhenius.TAU_PARAMS


def test_tau_alpha_crossover_recovers_a_planted_kink_within_its_errors():
    ln_tau = arrhenius.kinked_arrhenius(TAU_TEMPS, **TAU_TRUTH)
    # The law itself: Arrhenius with E_low below T_x, slope E_high above, continuous at T_x.
    x = 1 / TAU_TEMPS
    cold = TAU_TEMPS <= TAU_TRUTH["T_x_K"]
    assert_allclose(ln_tau[cold], TAU_TRUTH["ln_tau0"] + TAU_TRUTH["E_low_K"] * x[cold])
    at_tx = TAU_TRUTH["ln_tau0"] + TAU_TRUTH["E_low_K"] / TAU_TRUTH["T_x_K"]
    assert_allclose(ln_tau[~cold], at_tx + TAU_TRUTH["E_high_K"] * (x[~cold] - 1 / TAU_TRUTH["T_x_K"]))
    # Exact data: exact parameters.
    exact = arrhenius.tau_alpha_crossover(TAU_TEMPS, np.exp(ln_tau), species="Si")
    for key, truth in TAU_TRUTH.items():
        assert exact[key] == pytest.approx(truth, rel=1e-8), key
    assert exact["dof"] == TAU_TEMPS.size - 4 and exact["n_below"] == 4 and exact["n_above"] == 5
    assert exact["strong_to_fragile"] and not exact["at_bound"] and exact["kink"] == "strong-to-fragile"
    # Noisy data with block errors (8 % in tau): the reported errors cover the truth about as often as
    # they should (the chi^2 / dof inflation makes them, if anything, conservative).
    rng = np.random.default_rng(40)
    n_seeds, within_1, within_2, chi2 = 100, np.zeros(4), np.zeros(4), []
    for _ in range(n_seeds):
        tau = np.exp(ln_tau + rng.normal(scale=0.08, size=TAU_TEMPS.size))
        res = arrhenius.tau_alpha_crossover(TAU_TEMPS, tau, 0.08 * tau, species="Si")
        assert res["weighted"]
        pull = np.array([abs(res[k] - t) / res[f"{k}_err"] for k, t in TAU_TRUTH.items()])
        within_1 += pull < 1
        within_2 += pull < 2
        chi2.append(res["chi2_dof"])
        g = np.array([0.0, 1.0, -1.0, 0.0])  # E_low - E_high and its error from the covariance
        assert res["E_low_minus_E_high_K"] == pytest.approx(res["E_low_K"] - res["E_high_K"])
        assert res["E_low_minus_E_high_K_err"] == pytest.approx(np.sqrt(g @ res["cov"] @ g))
    assert np.all(within_1 / n_seeds > 0.55) and np.all(within_1 / n_seeds < 0.95), within_1
    assert np.all(within_2 / n_seeds > 0.88), within_2
    assert np.mean(chi2) == pytest.approx(1.0, abs=0.3)  # weights right: chi^2 / dof about 1


def test_tau_alpha_crossover_refuses_too_few_temperatures_and_reports_the_wrong_sign(caplog):
    ln_tau = arrhenius.kinked_arrhenius(TAU_TEMPS, **TAU_TRUTH)
    # Four temperatures (2 + 2 around the kink) leave no degree of freedom for 4 parameters.
    four = [0, 1, 5, 6]
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        res = arrhenius.tau_alpha_crossover(TAU_TEMPS[four], np.exp(ln_tau[four]), species="O")
    assert all(np.isnan(res[k]) and np.isnan(res[f"{k}_err"]) for k in TAU_PARAMS)
    assert res["n"] == 4 and "at most 2 below and 2 above" in caplog.text and "O:" in caplog.text
    # A temperature where tau_alpha was not reached does not count.
    tau = np.exp(ln_tau[:5])
    tau[2] = np.nan
    assert np.isnan(arrhenius.tau_alpha_crossover(TAU_TEMPS[:5], tau, species="O")["T_x_K"])
    # Five: the kink may sit anywhere that leaves two temperatures on each side.
    five = [0, 1, 4, 6, 7]
    res = arrhenius.tau_alpha_crossover(TAU_TEMPS[five], np.exp(ln_tau[five]), species="O")
    assert res["dof"] == 1 and res["n_below"] >= 2 and res["n_above"] >= 2
    assert TAU_TEMPS[1] <= res["T_x_K"] <= TAU_TEMPS[6]
    assert res["E_low_K"] == pytest.approx(TAU_TRUTH["E_low_K"], rel=1e-6)
    # Missing block errors at one temperature: unweighted, with a warning.
    err = 0.05 * np.exp(ln_tau)
    err[3] = np.nan
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        res = arrhenius.tau_alpha_crossover(TAU_TEMPS, np.exp(ln_tau), err, species="Si")
    assert not res["weighted"] and "unweighted" in caplog.text
    # A barrier that grows on heating is not a strong-to-fragile crossover: fitted, and said so.
    caplog.clear()
    upside = {**TAU_TRUTH, "E_low_K": 25000.0, "E_high_K": 60000.0}
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        tau = np.exp(arrhenius.kinked_arrhenius(TAU_TEMPS, **upside))
        res = arrhenius.tau_alpha_crossover(TAU_TEMPS, tau, species="Si")
    assert res["T_x_K"] == pytest.approx(3400.0, rel=1e-6) and not res["strong_to_fragile"]
    assert res["kink"] == "fragile-to-strong" and "no strong-to-fragile crossover" in caplog.text
    # Plain Arrhenius with noise: a kink is fitted somewhere, but E_low and E_high agree within
    # their errors and the fit says it measured no crossover.
    caplog.clear()
    noise = np.random.default_rng(44).normal(scale=0.05, size=TAU_TEMPS.size)
    tau = np.exp(2.0 + 45000.0 / TAU_TEMPS + noise)
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        res = arrhenius.tau_alpha_crossover(TAU_TEMPS, tau, 0.05 * tau, species="O")
    assert abs(res["E_low_minus_E_high_K"]) < 2 * res["E_low_minus_E_high_K_err"]
    assert res["kink"] == "none" and "no significant kink" in caplog.text
    assert arrhenius.kink_kind(np.nan, 1.0) == ""



def test_curvature_test_flags_a_curved_ln_p_r_and_rarely_a_straight_one():
    """ln P_R = Sigma - DeltaE / T (+ c / T^2) at six temperatures with 5 % errors in P_R."""
    t = np.array([2600.0, 2900.0, 3200.0, 3600.0, 4000.0, 4500.0])
    x = 1 / t
    err = np.full(t.size, 0.05)
    straight = 3.0 - 20000.0 * x
    c_true = 1.2e8  # K^2: bends ln P_R by ~0.3 over the range against its line
    curved = straight + c_true * x**2
    rng = np.random.default_rng(41)
    false_flags = hits = 0
    n_seeds = 200
    for _ in range(n_seeds):
        noise = rng.normal(scale=err)
        false_flags += arrhenius.curvature_test(x, straight + noise, err, p_value=0.01)["curved"]
        res = arrhenius.curvature_test(x, curved + noise, err, p_value=0.01)
        hits += res["curved"]
    assert false_flags <= 0.05 * n_seeds  # 1 % expected
    assert hits >= 0.9 * n_seeds
    # One seeded case, against a brute-force likelihood ratio: Delta chi^2 of weighted polynomial fits.
    noise = np.random.default_rng(42).normal(scale=err)
    res = arrhenius.curvature_test(x, curved + noise, err)

    def chi2(deg):
        p = np.polyfit(x, curved + noise, deg, w=1 / err)
        return np.sum(((curved + noise - np.polyval(p, x)) / err) ** 2)

    delta, chi2_quad = chi2(1) - chi2(2), chi2(2)
    if chi2_quad / (t.size - 3) <= 1:
        assert res["p_value"] == pytest.approx(stats.chi2.sf(delta, 1), rel=1e-6)
    else:
        assert res["p_value"] == pytest.approx(stats.f.sf(delta / (chi2_quad / (t.size - 3)), 1, t.size - 3),
                                               rel=1e-6)
    assert res["curved"] and abs(res["c"] - c_true) < 3 * res["c_err"]
    assert_allclose(res["c"], np.polyfit(x, curved + noise, 2, w=1 / err)[0], rtol=1e-6)
    # Scatter beyond the errors (errors 4x too small): the F-test, not the likelihood ratio, so the
    # straight line is still not flagged more often than the level says.
    false_flags = sum(arrhenius.curvature_test(x, straight + rng.normal(scale=4 * err), err)["curved"]
                      for _ in range(n_seeds))
    assert false_flags <= 0.05 * n_seeds
    # Unweighted with no degree of freedom left: no test.
    assert np.isnan(arrhenius.curvature_test(x[:3], straight[:3])["p_value"])


def test_a_bin_needs_min_temperatures_and_a_curved_bin_stays_out_of_the_lines():
    rng = np.random.default_rng(43)
    s_bins = np.linspace(-2.0, 1.5, 6)
    events, totals = binned_counts(rng, s_bins)
    p, ln_err, usable = probabilities(rng, events, totals)
    ln_p = np.log(p)
    # Bin 0 usable at three temperatures only: reported, not fitted (two points always lie on a line,
    # three leave a single degree of freedom).
    usable[:2, 0] = False
    # Bin 3 bends: ln P_R gets a large 1/T^2 term.
    x = 1 / TEMPS
    ln_p[:, 3] += 4e8 * (x - x.mean()) ** 2
    bins = arrhenius.fit_bins(TEMPS, ln_p, ln_err, usable, min_temperatures=4, curvature_p_value=0.01)
    assert_array_equal(bins["n_temperatures"], [3, 5, 5, 5, 5, 5])
    assert not bins["fitted"][0] and np.isnan(bins["Sigma"][0]) and np.isnan(bins["curvature_p_value"][0])
    assert bins["fitted"][1:].all()
    assert bins["curved"][3] and bins["curvature_p_value"][3] < 1e-6
    assert not bins["curved"][[1, 2, 4, 5]].any()
    assert_array_equal(bins["in_lines"], [False, True, True, False, True, True])
    # chi^2 / dof of each bin's line, brute force.
    for b in range(1, 6):
        coef = np.polyfit(-x, ln_p[:, b], 1, w=1 / ln_err[:, b])
        chi2 = np.sum(((ln_p[:, b] - np.polyval(coef, -x)) / ln_err[:, b]) ** 2)
        assert bins["chi2_dof"][b] == pytest.approx(chi2 / 3, rel=1e-6)
        assert bins["chi2_p_value"][b] == pytest.approx(stats.chi2.sf(chi2, 3), rel=1e-6)
    # The lines rest on the four straight bins only: the same as fitting those alone.
    lines = arrhenius.fit_lines(s_bins, bins)
    keep = bins["in_lines"]
    alone = arrhenius.fit_lines(s_bins[keep], {k: v[keep] for k, v in bins.items()})
    assert lines.dof == 2 * 4 - 4
    assert_allclose(lines.params, alone.params, rtol=1e-12)
    for value, err, truth in zip(lines.params, lines.err, (E0, E1, SIGMA0, SIGMA1), strict=True):
        within(value, err, truth)
    # Holm's step-down adjustment, by hand: sorted p 0.001, 0.01, 0.02, 0.5 over 4 tests.
    assert_allclose(arrhenius.holm_adjusted([0.02, np.nan, 0.001, 0.5, 0.01]),
                    [max(0.04, 0.03), np.nan, 0.004, 0.5, 0.03])
    # Over many straight data sets with six bins each, a species shows a curved bin at most about
    # as often as the level (per bin at 0.01 it would be ~6 %).
    any_flag = 0
    for _ in range(100):
        noisy = ln_p_r(s_bins[None, :], TEMPS[:, None]) + rng.normal(scale=ln_err)
        any_flag += arrhenius.fit_bins(TEMPS, noisy, ln_err, np.ones_like(usable))["curved"].any()
    assert any_flag <= 4
    # With three as the minimum, bin 0 is fitted (one degree of freedom; curvature still testable
    # from its given errors).
    relaxed = arrhenius.fit_bins(TEMPS, ln_p, ln_err, usable, min_temperatures=3)
    assert relaxed["fitted"][0] and np.isfinite(relaxed["curvature_p_value"][0])


def test_temperatures_without_cage_jumps_are_flagged():
    tau = np.array([[5000.0, 900.0, 250.0, np.nan], [4000.0, 1200.0, 700.0, 200.0]])
    t_R = np.array([200.0, 200.0, 200.0, np.nan])
    flagged, reason, ratio = arrhenius.flag_temperatures(tau, t_R, 3.0)
    # tau < 3 t_R: 250 fs (Si) at the third; unknown t_R: nothing can be said, not flagged.
    assert_array_equal(flagged, [[False, False, True, False], [False, False, False, False]])
    assert_allclose(ratio[:, :3], tau[:, :3] / 200.0)
    assert "250 fs < 3 t_R (600 fs)" in reason[0, 2] and reason[1, 2] == ""
    flagged, reason, _ = arrhenius.flag_temperatures(tau, np.full(4, 200.0), 3.0)
    assert flagged[0, 3] and reason[0, 3] == "tau_alpha not reached"
    assert flagged[1, 3] and "no cage jumps" in reason[1, 3]
    # Not reached in a run whose F_s was followed to 5 ps: tau_alpha > 5 ps >= 3 t_R, a slow
    # temperature with rare jumps, not flagged; followed only to 500 fs, it cannot be told.
    flagged, reason, _ = arrhenius.flag_temperatures(tau, np.full(4, 200.0), 3.0, [5e3, 5e3, 5e3, 5e3])
    assert not flagged[0, 3] and reason[0, 3] == "" and flagged[0, 2]
    flagged, _, _ = arrhenius.flag_temperatures(tau, np.full(4, 200.0), 3.0, np.full(4, 500.0))
    assert flagged[0, 3]


def test_event_windows_follow_the_softness_frames():
    # Windows of 4 frames from softness frames 0, 3, 6, 9 in hops frames 0..10 (overlapping).
    lo, hi, complete = arrhenius.event_windows([0, 3, 6, 9], np.arange(11), 4)
    assert_array_equal(lo, [0, 3, 6, 9])
    assert_array_equal(hi, [4, 7, 10, 11])
    assert_array_equal(complete, [True, True, True, False])  # the last window runs past the end
    # A hops frame missing inside a window makes it incomplete; hops may start later.
    lo, hi, complete = arrhenius.event_windows([0, 2, 5], np.r_[2:6, 7:12], 2)
    assert_array_equal(hi - lo, [0, 2, 1])
    assert_array_equal(complete, [False, True, False])
    assert arrhenius.P_R_window_frames(200.0, 50.0, "h.h5") == 4
    assert arrhenius.P_R_window_frames(50.0, 50.0, "h.h5") == 1
    with pytest.raises(SoftnessError, match=r"'arrhenius\.P_R_window_fs' \(40 fs\).*h\.h5 \(50 fs\)"):
        arrhenius.P_R_window_frames(40.0, 50.0, "h.h5")


def test_binned_counts_match_a_brute_force_count(tmp_path):
    rng = np.random.default_rng(19)
    n_atoms, n_traj, stride, n_window = 7, 23, 3, 4
    species = np.array([0, 1, 1, 0, 1, 1, 1])
    s_frames = np.arange(1, n_traj, stride)  # softness on frames 1, 4, ..., 22; windows of 4 overlap
    softness = rng.normal(size=(s_frames.size, n_atoms))
    labels = rng.choice([-1, 0, 1], p=[0.3, 0.5, 0.2], size=(n_traj, n_atoms)).astype(np.int8)
    p_hop = rng.random((n_traj, n_atoms))
    p_hop[:2] = np.nan
    p_hop[10, 3] = np.nan
    events = np.where(np.isfinite(p_hop), rng.random(p_hop.shape) < 0.2, -1).astype(np.int8)
    events[17:21, 2] = 1  # several events in one window
    with atomic_h5(tmp_path / "s.h5", "apply", {}) as f:
        f["species_names"] = np.array(SILICA, dtype="S")
        f["softness"], f["frames"], f["species"] = softness.astype(np.float32), s_frames, species
    write_hops(tmp_path / "h.h5", labels, species, 3000.0, p_hop=p_hop, events=events)
    edges = np.array([[-3.0, -0.5, 0.0, 3.0], [-1.0, 0.0, 0.5, 1.0]])
    hist_edges = np.stack([np.linspace(-4, 4, arrhenius.N_HIST + 1)] * 2)
    item = arrhenius.TemperatureData(3000.0, tmp_path / "s.h5", tmp_path / "h.h5", tmp_path / "d.h5")
    counts = arrhenius.count_temperature(item, edges, hist_edges, n_window)
    s32 = softness.astype(np.float32).astype(np.float64)

    def counted(f, i):
        """The whole window is in the run, and an event is located or ruled out at every frame."""
        return f + n_window <= n_traj and all(events[g, i] >= 0 for g in range(f, f + n_window))

    def rearranges(f, i):
        return any(events[g, i] == 1 for g in range(f, f + n_window))

    for sp in (0, 1):
        binned_events, totals = np.zeros((s_frames.size, 3)), np.zeros((s_frames.size, 3))
        for k, f in enumerate(s_frames):
            for i in np.flatnonzero(species == sp):
                if not counted(f, i):
                    continue
                e = edges[sp]
                if not e[0] <= s32[k, i] <= e[-1]:
                    continue
                b = min(int(np.searchsorted(e, s32[k, i], side="right")) - 1, 2)
                totals[k, b] += 1
                binned_events[k, b] += rearranges(f, i)
        assert_array_equal(counts["totals"][sp], totals)
        assert_array_equal(counts["events"][sp], binned_events)
        assert_allclose(counts["mean_S"][sp], s32[:, species == sp].mean(axis=1))
    assert counts["totals"][0].sum() != counts["totals"][1].sum()  # the species differ
    # Every other count: all atoms (binned or not) and the softness of the events, brute force.
    event_s = [[], []]
    for sp in (0, 1):
        all_events, all_totals, all_counts = (np.zeros(s_frames.size) for _ in range(3))
        s_sum = np.zeros(3)
        hist = np.zeros(arrhenius.N_HIST)
        for k, f in enumerate(s_frames):
            for i in np.flatnonzero(species == sp):
                hist[min(int(np.searchsorted(hist_edges[sp], s32[k, i], side="right")) - 1,
                         arrhenius.N_HIST - 1)] += 1
                if not counted(f, i):
                    continue
                all_totals[k] += 1
                all_events[k] += rearranges(f, i)
                all_counts[k] += sum(events[g, i] == 1 for g in range(f, f + n_window))
                if rearranges(f, i):
                    event_s[sp].append(s32[k, i])
                e = edges[sp]
                if e[0] <= s32[k, i] <= e[-1]:
                    s_sum[min(int(np.searchsorted(e, s32[k, i], side="right")) - 1, 2)] += s32[k, i]
        assert_array_equal(counts["all_events"][sp], all_events)
        assert_array_equal(counts["all_totals"][sp], all_totals)
        assert_array_equal(counts["all_counts"][sp], all_counts)
        # The first window (p_hop undefined) and the last (past the end of the run) are dropped.
        assert all_totals[0] == all_totals[-1] == 0 and all_totals[1:-1].min() > 0
        assert_allclose(counts["s_sum"][sp], s_sum, rtol=1e-12)
        assert_array_equal(counts["hist"][sp], hist)
    assert np.any(counts["all_counts"][1] > counts["all_events"][1])  # several events in one window
    values, s_min, s_max = arrhenius._event_softness(item, np.random.default_rng(0), n_window)
    for sp in (0, 1):
        assert_array_equal(np.sort(values[sp]), np.sort(np.array(event_s[sp], np.float32)))
        assert s_min[sp] == s32[:, species == sp].min() and s_max[sp] == s32[:, species == sp].max()


# ---------------------------------------------------------------------------- end to end

def write_dynamics(path, temperature, tau, diff, species_names=SILICA, system=None):
    n_species = len(species_names)
    with atomic_h5(path, "dynamics", {}) as f:
        if system is not None:
            f.attrs["system"] = system
        f["lag_time_fs"] = np.geomspace(50, 5000, 10)
        f["msd_A2"] = np.ones((n_species, 10))
        f["F_s"] = np.ones((n_species, 10))
        f["D_A2_per_fs"] = np.asarray(diff, float)
        f["D_err_A2_per_fs"] = 0.02 * np.asarray(diff, float)
        f["tau_alpha_fs"] = np.asarray(tau, float)
        f["tau_alpha_reached"] = np.isfinite(tau)
        f["species_names"] = np.array(species_names, dtype="S")
        f.attrs["temperature_K"] = float(temperature)


def synthetic_temperature(tmp_path, rng, t, u, *, n_atoms=120, n_frames=80, stride=1, species_names=SILICA,
                          laws=None, system=None):
    """Features whose hidden softness z = u . x has mean a + b T; labels drawn from P_R(z, T).

    Labels are drawn independently on every trajectory frame, so with ``stride`` > 1 the
    probability per softness interval is 1 - (1 - P_R)^stride, no longer Arrhenius where P_R is
    not small. ``u`` [S, F] holds one direction per species of ``species_names``; ``laws`` one
    (E0, E1, SIGMA0, SIGMA1) per species (default: the module's for every species); every file
    carries ``system`` as its root attribute when given.
    """
    n_sp = len(species_names)
    if n_sp == 2:
        species = np.r_[np.zeros(n_atoms // 3, int), np.ones(n_atoms - n_atoms // 3, int)]
    else:
        species = np.arange(n_atoms) * n_sp // n_atoms
    frames = np.arange(0, n_frames, stride)
    x = rng.normal(size=(frames.size, n_atoms, N_FEATURES))
    x += (A_S + B_S * t) * u[species]  # shift along the softness direction
    z = np.einsum("rnf,nf->rn", x, u[species])
    z_traj = np.repeat(z, stride, axis=0)[:n_frames]
    if laws is None:
        ln_p = ln_p_r(z_traj, t)
    else:
        ln_p = np.empty_like(z_traj)
        for sp, law in enumerate(laws):
            ln_p[:, species == sp] = ln_p_r(z_traj[:, species == sp], t, law)
    p = np.minimum(np.exp(ln_p), 1.0)
    rearranging = rng.random(p.shape) < p
    labels = np.where(rearranging, 1, np.where(z_traj < A_S + B_S * t, 0, -1)).astype(np.int8)
    p_hop = np.where(rearranging, 1.0, 0.01)
    p_hop[:2] = p_hop[-2:] = np.nan  # undefined at the ends, as in softness.hops
    labels[:2] = labels[-2:] = -1
    write_features(tmp_path / f"features_{t:g}.h5", x.astype(np.float32), frames, species, t,
                   species_names=species_names, system=system)
    write_hops(tmp_path / f"hops_{t:g}.h5", labels, species, t, p_hop=p_hop, species_names=species_names,
               system=system)
    mean_rate = np.exp(ln_p_r(A_S + B_S * t, t))
    # tau_alpha far above 3 t_R (t_R = 100 fs in the hops files): every temperature has jumps to count.
    write_dynamics(tmp_path / f"dynamics_{t:g}.h5", t, np.linspace(5000.0, 3000.0, n_sp) / mean_rate,
                   np.linspace(0.01, 0.02, n_sp) * mean_rate, species_names=species_names, system=system)
    return z


def test_train_apply_arrhenius_end_to_end(tmp_path):
    rng = np.random.default_rng(17)
    u = rng.normal(size=(2, N_FEATURES))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    temps = [2800.0, 3300.0, 4000.0, 4700.0]
    for t in temps:
        synthetic_temperature(tmp_path, rng, t, u, n_atoms=150, n_frames=120, system="silica")
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(json.dumps({"temperatures_K": temps, "quench": {"T_min_K": 2800},
                                    "train": {"n_per_class": 400, "C_grid": [0.01, 0.1, 1.0],
                                              "cv_folds": 3},
                                    "arrhenius": {"n_bins": 5, "min_events": 10, "n_bootstrap": 50,
                                                  "P_R_window_fs": 50.0, "min_temperatures": 3}}))
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
        assert f.attrs["system"] == "silica"
        assert [n.decode() for n in f["species_names"][()]] == ["Si", "O"]
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
    # The system travels with the products; silica has no reduced units, so the summary has none.
    for path in (tmp_path / "model.h5", tmp_path / "softness_3300.h5"):
        with h5py.File(path) as f:
            assert f.attrs["system"] == "silica"
    assert "reduced_units" not in s and not any("reduced" in x for x in s["species"].values())
    assert "reduced" not in md


#: Three made-up species with different laws P_R(z, T) (E0, E1, SIGMA0, SIGMA1): T0 = E1 / SIGMA1 is
#: 8000 K for X, 5000 K for Y and 10000 K for Z.
XYZ = ("X", "Y", "Z")
XYZ_LAWS = ((E0, E1, SIGMA0, SIGMA1), (E0, 3000.0, SIGMA0, 0.6), (E0, 4500.0, SIGMA0, 0.45))


def test_three_species_train_apply_arrhenius_end_to_end(tmp_path):
    """Any number of species: the names come from the files, every stage keeps one row per species
    in the files' order, and each species' own law comes back (T0 = E1 / SIGMA1 within its error)."""
    rng = np.random.default_rng(23)
    u = rng.normal(size=(3, N_FEATURES))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    temps = [2800.0, 3300.0, 4000.0, 4700.0]
    for t in temps:
        synthetic_temperature(tmp_path, rng, t, u, n_atoms=240, n_frames=120, species_names=XYZ,
                              laws=XYZ_LAWS)
    cfg = config.resolve({"temperatures_K": temps, "quench": {"T_min_K": 2800},
                          "train": {"n_per_class": 400, "C_grid": [0.01, 0.1, 1.0], "cv_folds": 3},
                          "arrhenius": {"n_bins": 5, "min_events": 10, "n_bootstrap": 50,
                                        "P_R_window_fs": 50.0, "min_temperatures": 3}})
    model = classifier.train_file(cfg, tmp_path / "features_2800.h5", tmp_path / "hops_2800.h5",
                                  tmp_path / "model.h5")
    assert model.species_names == XYZ and model.weights.shape == (3, N_FEATURES)
    softness = [tmp_path / f"softness_{t:g}.h5" for t in temps]
    for t, out in zip(temps, softness, strict=True):
        classifier.apply_file(cfg, tmp_path / "model.h5", tmp_path / f"features_{t:g}.h5", out)
    with h5py.File(tmp_path / "model.h5") as f:
        assert [n.decode() for n in f["species_names"][()]] == list(XYZ)
        assert f["accuracy"].shape == (3,) and f["quality/roc_auc"].shape == (3,)
        assert np.all(f["accuracy"][()] > 0.6)
    with h5py.File(softness[0]) as f:
        assert [n.decode() for n in f["species_names"][()]] == list(XYZ)
        assert f.attrs["softness_scale"].shape == (3,) and "system" not in f.attrs
        species = f["species"][()]
        for sp in range(3):  # softness in units of its own spread at T_train, per species
            assert f["softness"][()][:, species == sp].std() == pytest.approx(1.0, rel=1e-4)
    s = arrhenius.arrhenius_file(cfg, softness, [tmp_path / f"hops_{t:g}.h5" for t in temps],
                                 [tmp_path / f"dynamics_{t:g}.h5" for t in temps], tmp_path / "arrhenius.h5",
                                 summary=tmp_path / "summary.json", model=tmp_path / "model.h5")
    with h5py.File(tmp_path / "arrhenius.h5") as f:
        assert [n.decode() for n in f["species_names"][()]] == list(XYZ)
        assert f["P_R"].shape == (3, 4, 5) and f["bins/edges"].shape == (3, 6)
        assert f["dynamics/tau_alpha_fs"].shape == (3, 4) and f["tau_fit/T_x_K"].shape == (3,)
        p, ln_err, usable = f["P_R"][()], f["ln_P_R_err"][()], f["usable"][()]
        t0, t0_err = f["lines/T0_K"][()], f["lines/T0_K_err"][()]
        e1, b = f["lines/e1_K"][()], f["mean_softness/b_per_K"][()]
        # tau_alpha of each species is its own (the dynamics files give 5000, 4000 and 3000 / rate).
        tau = f["dynamics/tau_alpha_fs"][()]
        assert_allclose(tau[0] / tau[2], 5 / 3)
        assert_allclose(tau[1] / tau[2], 4 / 3)
    for sp, (_, e1_law, _, sigma1_law) in enumerate(XYZ_LAWS):
        for k in range(4):  # softer atoms rearrange more, at every temperature
            ok = usable[sp, k]
            assert ok.sum() >= 3
            ln_p, err = np.log(p[sp, k, ok]), ln_err[sp, k, ok]
            assert ln_p[-1] - ln_p[0] > 3 * np.hypot(err[-1], err[0])
        assert e1[sp] > 0 and b[sp] > 0
        within(t0[sp], t0_err[sp], e1_law / sigma1_law)
    assert json.loads((tmp_path / "summary.json").read_text()) == s
    assert list(s["species"]) == list(XYZ)
    for sp, name in enumerate(XYZ):
        x = s["species"][name]
        assert x["T0"]["value"] == pytest.approx(t0[sp]) and x["n_bins_fitted"] >= 3
        assert x["classifier"]["accuracy"] > 0.6
    for claim in "abcd":
        assert list(s["verdicts"][claim]["species"]) == list(XYZ)
    assert s["verdicts"]["a"]["status"] == "pass"
    md = (tmp_path / "summary.md").read_text()
    assert "| quantity | X | Y | Z |" in md


def two_temperature_products(tmp_path, seed):
    """Synthetic products at 4000 and 4700 K, a model m.h5 trained at 4000 K and applied to both:
    (cfg, softness files, hops files, dynamics files)."""
    rng = np.random.default_rng(seed)
    u = np.eye(N_FEATURES)[:2]
    temps = (4000.0, 4700.0)
    for t in temps:
        synthetic_temperature(tmp_path, rng, t, u, n_atoms=60, n_frames=40)
    cfg = config.resolve({"temperatures_K": list(temps), "train": {"n_per_class": 50, "cv_folds": 2}})
    classifier.train_file(cfg, tmp_path / "features_4000.h5", tmp_path / "hops_4000.h5", tmp_path / "m.h5")
    softness = [tmp_path / f"s_{t:g}.h5" for t in temps]
    for t, out in zip(temps, softness, strict=True):
        classifier.apply_file(cfg, tmp_path / "m.h5", tmp_path / f"features_{t:g}.h5", out)
    hops = [tmp_path / f"hops_{t:g}.h5" for t in temps]
    dynamics = [tmp_path / f"dynamics_{t:g}.h5" for t in temps]
    return cfg, softness, hops, dynamics


def test_species_names_must_agree_across_the_files_pooled(tmp_path):
    cfg, softness, hops, dynamics = two_temperature_products(tmp_path, 24)

    def renamed(path, names):
        with h5py.File(path, "a") as f:
            del f["species_names"]
            f["species_names"] = np.array(names, dtype="S")

    # Another temperature of another system (the same count, other names) is refused, naming the file.
    renamed(dynamics[1], ("A", "B"))
    with pytest.raises(SoftnessError, match=r"dynamics file .*dynamics_4700.h5 names the species \(A, B\) "
                                            r"but softness file .*s_4000.h5 names \(Si, O\)"):
        arrhenius.arrhenius_file(cfg, softness, hops, dynamics, tmp_path / "a.h5")
    renamed(dynamics[1], SILICA)
    # ... and so are files of one run that disagree, and products of two systems.
    renamed(hops[1], ("O", "Si"))
    with pytest.raises(SoftnessError, match="hops file .*hops_4700.h5 names the species"):
        arrhenius.arrhenius_file(cfg, softness, hops, dynamics, tmp_path / "a.h5")
    renamed(hops[1], SILICA)
    with h5py.File(dynamics[0], "a") as f:
        f.attrs["system"] = "silica"
    with h5py.File(softness[1], "a") as f:
        f.attrs["system"] = "kob_andersen"
    with pytest.raises(SoftnessError, match="from system 'kob_andersen' but .* from 'silica'"):
        arrhenius.arrhenius_file(cfg, softness, hops, dynamics, tmp_path / "a.h5")
    with h5py.File(softness[1], "a") as f:
        del f.attrs["system"]
    # A model of other species than the softness files cannot decide claim (a).
    renamed(tmp_path / "m.h5", ("A", "B"))
    with pytest.raises(SoftnessError, match=r"model file .*m.h5 names the species \(A, B\) but the "
                                            "softness files"):
        arrhenius.arrhenius_file(cfg, softness, hops, dynamics, tmp_path / "a.h5", model=tmp_path / "m.h5")
    assert not (tmp_path / "a.h5").exists()
    # A product without species names is refused in one sentence.
    with h5py.File(softness[0], "a") as f:
        del f["species_names"]
    with pytest.raises(SoftnessError, match="s_4000.h5 has no '/species_names'"):
        arrhenius.arrhenius_file(cfg, softness, hops, dynamics, tmp_path / "a.h5")


def test_arrhenius_refuses_a_single_temperature_and_mismatched_files(tmp_path, capsys, caplog):
    cfg, softness, hops, dynamics = two_temperature_products(tmp_path, 18)
    one = [tmp_path / "s_4000.h5"], [tmp_path / "hops_4000.h5"], [tmp_path / "dynamics_4000.h5"]
    with pytest.raises(SoftnessError, match="needs at least two"):
        arrhenius.arrhenius_file(cfg, *one, tmp_path / "a.h5")
    code = main(["arrhenius", "--softness", str(tmp_path / "s_4000.h5"), "--hops",
                 str(tmp_path / "hops_4000.h5"), "--dynamics", str(tmp_path / "dynamics_4000.h5"),
                 "--out", str(tmp_path / "a.h5")])
    assert code == 1 and "at least two" in capsys.readouterr().err and not (tmp_path / "a.h5").exists()
    with pytest.raises(SoftnessError, match="hops files are at"):
        arrhenius.arrhenius_file(cfg, softness, hops[:1], dynamics, tmp_path / "a.h5")
    with pytest.raises(SoftnessError, match="is given twice"):
        arrhenius.arrhenius_file(cfg, softness[:1] * 2, hops, dynamics, tmp_path / "a.h5")
    # No bin with enough events: nothing of the softness picture is fitted, and the product and the
    # summary say so (P_R, tau_alpha and D are still worth having) instead of failing.
    strict = config.resolve({**cfg, "arrhenius": {"min_events": 10**6}})
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        s = arrhenius.arrhenius_file(strict, softness, hops, dynamics, tmp_path / "a.h5")
    assert "nothing of the softness picture can be tested" in caplog.text
    assert "arrhenius.min_events" in caplog.text
    with h5py.File(tmp_path / "a.h5") as f:
        assert np.all(np.isnan(f["lines/T0_K"][()])) and not f["usable"][()].any()
    assert s["species"]["Si"]["T0"]["value"] is None
    assert s["verdicts"]["b"]["status"] == "not testable"
    assert "only 0 of the 0" in s["verdicts"]["b"]["statement"]
    assert s["verdicts"]["d"]["status"] == "not testable"


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


# ---------------------------------------------------------------------------- fits, flags and verdicts
# The counted results the fits start from, made directly from the softness model (no files), so
# every fitted number and every verdict has a known answer.

ACFG = {"min_events": 20, "max_P_R": 0.5, "min_temperatures": 4, "curvature_p_value": 0.01,
        "min_tau_alpha_over_t_R": 3.0}
FIT_TEMPS = np.array([2600.0, 2900.0, 3200.0, 3500.0, 3900.0, 4400.0, 5000.0])
FIT_S = np.linspace(-2.0, 1.5, 6)


def counted_results(rng, *, model=(E0, E1, SIGMA0, SIGMA1), ln_tau=None, mean_s_t2=0.0, noise=0.03,
                    t_R=100.0):
    """What the counting part of analyse gives, for both species from one softness model.

    P_R per bin and the mean rate at <S>(T) carry Gaussian noise of ``noise`` in ln with that error;
    tau_alpha defaults to 1e4 fs / P_R(<S>(T), T), so its apparent barrier is the predicted one.
    """
    e0, e1, sig0, sig1 = model
    temps = FIT_TEMPS

    def ln_p(s, t):
        return sig0 - sig1 * s - (e0 - e1 * s) / t

    mean_s = A_S + B_S * temps + mean_s_t2 * (temps - temps.mean()) ** 2
    shape = (2, temps.size, FIT_S.size)
    ln_p_true = ln_p(FIT_S[None, :], temps[:, None])
    if ln_tau is None:
        ln_tau = np.log(1e4) - ln_p(A_S + B_S * temps, temps)
    ln_tau = np.broadcast_to(ln_tau, (2, temps.size))
    r = {"species_names": np.array(SILICA), "temperature_K": temps,
         "P_R": np.exp(ln_p_true + rng.normal(scale=noise, size=shape)),
         "ln_P_R_err": np.full(shape, noise), "usable": np.ones(shape, bool),
         "bins/S_mean": np.stack([FIT_S] * 2),
         "mean_softness/mean": mean_s + rng.normal(scale=0.002, size=(2, temps.size)),
         "mean_softness/err": np.full((2, temps.size), 0.002),
         "rate/rate_per_fs": np.exp(ln_p(A_S + B_S * temps, temps)
                                    + rng.normal(scale=noise, size=(2, temps.size))) / 50.0,
         "rate/ln_rate_err": np.full((2, temps.size), noise),
         "dynamics/tau_alpha_fs": np.exp(ln_tau + rng.normal(scale=noise, size=(2, temps.size))),
         "dynamics/D_A2_per_fs": np.exp(-20000.0 / temps) * np.ones((2, 1)),
         "dynamics/D_err_A2_per_fs": 0.02 * np.exp(-20000.0 / temps) * np.ones((2, 1)),
         "t_R_fs": np.full(temps.size, t_R)}
    r["dynamics/tau_alpha_err_fs"] = noise * r["dynamics/tau_alpha_fs"]
    r["attrs"] = {"T_train_K": temps[0], "min_temperatures": ACFG["min_temperatures"],
                  "consistency_p_value": 0.01}
    return r


def fitted(r, **acfg):
    arrhenius.fit_results(r, {**ACFG, **acfg})
    s = arrhenius.make_summary(r)
    json.dumps(s, allow_nan=False)  # plain JSON: no NaN anywhere
    return s


def test_fit_results_pass_every_claim_on_data_that_follow_the_softness_picture():
    r = counted_results(np.random.default_rng(50))
    s = fitted(r)
    assert not r["flagged_temperature"].any() and r["usable"].all()
    for sp in range(2):
        assert r["bin_fit/fitted"][sp].all() and not r["bin_fit/curved"][sp].any()
        assert_array_equal(r["bin_fit/n_temperatures"][sp], FIT_TEMPS.size)
        for key, truth in (("e0_K", E0), ("e1_K", E1), ("Sigma0", SIGMA0), ("Sigma1", SIGMA1)):
            within(r[f"lines/{key}"][sp], r[f"lines/{key}_err"][sp], truth)
        # T0 = e1 / Sigma1 = 8000 K, far above the data: not flagged.
        assert not r["lines/T0_inside_fitted_range"][sp]
        assert_array_equal(r["lines/fitted_T_range_K"][sp], [FIT_TEMPS[0], FIT_TEMPS[-1]])
        # The tau_alpha secants carry errors from tau_alpha_err_fs.
        assert_allclose(r["crossover/E_app_tau_K_err"][sp],
                        np.hypot(0.03, 0.03) / np.abs(np.diff(1 / FIT_TEMPS)), rtol=1e-9)
        assert r["tau_fit/strong_to_fragile"][sp] and r["tau_fit/dof"][sp] == FIT_TEMPS.size - 4
        assert r["closure/tau/dof"][sp] == FIT_TEMPS.size - 1
        assert r["closure/tau/n_below"][sp] + r["closure/tau/n_above"][sp] == FIT_TEMPS.size - 1
    v = s["verdicts"]
    assert [v[k]["status"] for k in "abcd"] == ["not evaluated", "pass", "pass", "pass"], v
    assert v["b"]["species"]["Si"]["bins_fitted"] == v["b"]["species"]["Si"]["bins_populated"] == FIT_S.size
    assert s["species"]["O"]["tau_alpha"]["T_crossover"]["error"] > 0
    md = arrhenius.summary_markdown(s)
    assert "**(b) ln P_R is linear in 1/T" in md and ": PASS.**" in md and "(inside" not in md


def test_barrier_closure_chi2_against_a_brute_force_computation():
    r = counted_results(np.random.default_rng(51))
    fitted(r)
    sp = 1
    t_mid = r["crossover/T_mid_K"]
    # Monte Carlo of the measured secants (from tau_alpha with its errors) and of the prediction
    # (from the fits' parameter covariances) gives the covariance the chi^2 uses.
    rng = np.random.default_rng(0)
    ln_tau = np.log(r["dynamics/tau_alpha_fs"][sp])
    samples = ln_tau + rng.normal(size=(20000, ln_tau.size)) * 0.03
    sec = np.diff(samples, axis=1) / np.diff(1 / FIT_TEMPS)
    lines = rng.multivariate_normal(np.r_[r["lines/e0_K"][sp], r["lines/e1_K"][sp], r["lines/Sigma0"][sp],
                                          r["lines/Sigma1"][sp]], r["lines/cov"][sp], 20000)
    mean = rng.multivariate_normal([r["mean_softness/a"][sp], r["mean_softness/b_per_K"][sp]],
                                   r["mean_softness/cov"][sp], 20000)
    pred = lines[:, [0]] - lines[:, [1]] * mean[:, [0]] - lines[:, [3]] * mean[:, [1]] * t_mid**2
    cov = np.cov(sec.T) + np.cov(pred.T)
    d = r["crossover/E_app_tau_K"][sp] - r["crossover/E_app_predicted_mid_K"][sp]
    chi2 = d @ np.linalg.solve(cov, d)
    assert r["closure/tau/chi2"][sp] == pytest.approx(chi2, rel=0.05)
    assert r["closure/tau/p_value"][sp] == pytest.approx(stats.chi2.sf(r["closure/tau/chi2"][sp], d.size))
    assert_allclose(arrhenius.secant_covariance(FIT_TEMPS, np.full(FIT_TEMPS.size, 0.03)), np.cov(sec.T),
                    rtol=0.05, atol=0.05 * np.cov(sec.T).max())


def test_fit_results_say_when_claims_fail():
    rng = np.random.default_rng(52)
    # tau_alpha Arrhenius with a barrier far from the softness prediction; <S>(T) with a T^2 term;
    # ln P_R of one O bin bent.
    r = counted_results(rng, ln_tau=2.0 + 45000.0 / FIT_TEMPS, mean_s_t2=2e-7)
    x = 1 / FIT_TEMPS
    r["P_R"][1, :, 2] *= np.exp(6e8 * (x - x.mean()) ** 2)
    s = fitted(r)
    v = s["verdicts"]
    assert v["b"]["status"] == "fail" and v["b"]["species"]["Si"]["status"] == "pass"
    assert v["b"]["species"]["O"]["bins_curved"] == [2] and "bins [2]" in v["b"]["statement"]
    assert not r["bin_fit/in_lines"][1, 2] and r["lines/n_bins_in_lines"][1] == FIT_S.size - 1
    assert v["c"]["status"] == "fail" and "T^2 term is significant" in v["c"]["species"]["Si"]["statement"]
    assert v["d"]["status"] == "fail" and "disagrees" in v["d"]["species"]["O"]["statement"]
    md = arrhenius.summary_markdown(s)
    assert ": FAIL.**" in md and "bend significantly" in md
    kinks = [s["species"][n]["tau_alpha"]["kink"] for n in SPECIES]
    if "none" in kinks:  # Arrhenius tau_alpha: any kink the fit finds is within its errors
        assert "no significant kink, so T_x is not measured" in md
    assert "strong-to-fragile" not in kinks


def test_t0_inside_the_fitted_temperatures_is_flagged():
    # e1 / Sigma1 = 4000 / 1.25 = 3200 K: the lines of ln P_R(1/T) cross among the data.
    r = counted_results(np.random.default_rng(53), model=(E0, E1, 4.0, 1.25))
    s = fitted(r)
    for sp, name in enumerate(SPECIES):
        within(r["lines/T0_K"][sp], r["lines/T0_K_err"][sp], 3200.0)
        assert r["lines/T0_inside_fitted_range"][sp]
        assert s["species"][name]["T0"]["inside_fitted_range"]
    md = arrhenius.summary_markdown(s)
    row = next(line for line in md.splitlines() if line.startswith("| T0 = e1/Sigma1 (K) |"))
    assert row.count("(inside the fitted temperatures)") == 2


def test_temperatures_without_cage_jumps_are_left_out_of_the_fits(caplog):
    rng = np.random.default_rng(54)
    r = counted_results(rng)
    # O at the hottest temperature: tau_alpha 250 fs < 3 t_R = 300 fs.
    r["dynamics/tau_alpha_fs"][1, -1] = 250.0
    r["dynamics/tau_alpha_err_fs"][1, -1] = 7.5
    before = {k: np.array(v) for k, v in r.items() if k != "attrs"}
    with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
        s = fitted(r)
    assert_array_equal(r["flagged_temperature"], [[False] * 7, [False] * 6 + [True]])
    assert "no cage jumps" in r["flagged_temperature_reason"][1, -1]
    assert r["flagged_temperature_reason"][0, -1] == ""
    assert "O: 5000 K: tau_alpha 250 fs < 3 t_R" in caplog.text
    assert not r["usable"][1, -1].any() and r["usable"][0, -1].all()
    assert_array_equal(r["bin_fit/n_temperatures"][1], FIT_TEMPS.size - 1)
    # The O fits are those of the other six temperatures, the Si ones use all seven.
    alone = arrhenius.fit_bins(FIT_TEMPS[:-1], np.log(before["P_R"][1, :-1]), before["ln_P_R_err"][1, :-1],
                               before["usable"][1, :-1])
    assert_allclose(r["bin_fit/DeltaE_K"][1], alone["DeltaE_K"], rtol=1e-12)
    assert_array_equal(r["lines/fitted_T_range_K"], [[2600.0, 5000.0], [2600.0, 4400.0]])
    # The mean rate's secant into the flagged temperature is not compared; tau_alpha's still is.
    assert r["closure/rate/dof"][1] == FIT_TEMPS.size - 2 and r["closure/rate/dof"][0] == FIT_TEMPS.size - 1
    assert r["closure/tau/dof"][1] == FIT_TEMPS.size - 1
    assert s["species"]["O"]["flagged_temperatures"] == [
        {"T_K": 5000.0, "reason": r["flagged_temperature_reason"][1, -1]}]
    assert "Left out of the P_R fits: O at 5000 K" in arrhenius.summary_markdown(s)


def test_verdict_logic():
    bins = {"fitted": np.array([True, True, True, False]), "populated": np.array([True, True, True, False]),
            "curved": np.zeros(4, bool), "curvature_p_value": np.array([0.3, 0.5, 0.02, np.nan]),
            "chi2_dof": np.array([1.2, 0.8, 2.5, np.nan]), "n_temperatures": np.array([5, 5, 4, 1])}
    v = arrhenius.linearity_verdict("Si", bins, 4)
    assert v["status"] == "pass" and v["worst_chi2_dof"] == 2.5
    assert v["bins_fitted"] == v["bins_populated"] == 3
    # A populated bin that cannot be fitted: linearity is not shown in every bin.
    v = arrhenius.linearity_verdict("Si", {**bins, "populated": np.ones(4, bool)}, 4)
    assert v["status"] == "not testable" and "bins [3]" in v["statement"] and "fewer than 4" in v["statement"]
    v = arrhenius.linearity_verdict("Si", {**bins, "curved": np.array([False, False, True, False])}, 4)
    assert v["status"] == "fail" and v["bins_curved"] == [2] and "p = 0.02" in v["statement"]
    v = arrhenius.linearity_verdict("O", {**bins, "fitted": np.array([True, False, False, False])}, 4)
    assert v["status"] == "not testable" and "only 1 of the 3" in v["statement"]

    assert arrhenius.mean_softness_verdict("Si", 5, False, 0.4, 0.0, 1.0)["status"] == "pass"
    assert arrhenius.mean_softness_verdict("Si", 5, True, 0.001, 0.0, 1.0)["status"] == "fail"
    assert arrhenius.mean_softness_verdict("Si", 2, False, np.nan, np.nan, np.nan)["status"] == "not testable"

    good = {"chi2": 4.0, "dof": 5, "p_value": 0.55, "n_below": 2, "n_above": 3}
    bad = {**good, "chi2": 40.0, "p_value": 1e-7}
    few = {**good, "dof": 2, "n_below": 0, "n_above": 2}
    closures = {"tau_alpha": good, "mean_rate": few}
    assert arrhenius.barrier_verdict("Si", closures, 3500.0, True)["status"] == "pass"
    v = arrhenius.barrier_verdict("Si", {"tau_alpha": bad, "mean_rate": good}, 3500.0, True)
    assert v["status"] == "fail" and "disagrees" in v["statement"]
    v = arrhenius.barrier_verdict("Si", {"tau_alpha": few, "mean_rate": few}, 3500.0, True)
    assert v["status"] == "not testable" and "0 below, 2 above" in v["statement"]
    assert arrhenius.barrier_verdict("Si", closures, np.nan, True)["status"] == "not testable"
    assert arrhenius.barrier_verdict("Si", closures, 3500.0, False)["status"] == "not testable"

    per = {"Si": {"status": "pass", "statement": "a."}, "O": {"status": "not testable", "statement": "b."}}
    assert arrhenius.combine_verdicts("b", per)["status"] == "not testable"
    failed = {**per, "O": {"status": "fail", "statement": "c."}}
    assert arrhenius.combine_verdicts("b", failed)["status"] == "fail"
    both = arrhenius.combine_verdicts("b", {"Si": per["Si"], "O": per["Si"]}, min_temperatures=5)
    assert both["status"] == "pass" and "over at least 5 temperatures" in both["claim"]
    assert both["statement"] == "a. a."


def test_accuracy_verdict_reads_the_model_file(tmp_path):
    with atomic_h5(tmp_path / "model.h5", "train", {}) as f:
        f["species_names"] = np.array(SILICA, dtype="S")
        f["accuracy"], f["accuracy_err"] = np.array([0.82, 0.52]), np.array([0.01, 0.02])
        f["quality/roc_auc"] = np.array([0.9, 0.55])
        f["quality/calibration/S"] = np.zeros((2, 5))
    metrics = arrhenius.read_model_metrics(tmp_path / "model.h5")
    assert metrics == {"Si": {"accuracy": 0.82, "accuracy_err": 0.01, "roc_auc": 0.9},
                       "O": {"accuracy": 0.52, "accuracy_err": 0.02, "roc_auc": 0.55}}
    r = counted_results(np.random.default_rng(55))
    arrhenius.fit_results(r, ACFG)
    v = arrhenius.make_summary(r, metrics)["verdicts"]["a"]
    assert v["status"] == "fail" and v["species"]["Si"]["status"] == "pass"
    assert "0.520 ± 0.02 is not above chance" in v["species"]["O"]["statement"]
    assert v["species"]["O"]["roc_auc"] == 0.55
    assert arrhenius.make_summary(r)["verdicts"]["a"]["status"] == "not evaluated"
    # The stability file's numbers join the model's, and the summary table shows them.
    with atomic_h5(tmp_path / "stability.h5", "stability", {}) as f:
        f["species_names"] = np.array(SILICA, dtype="S")
        f.attrs["temperature_K"] = 3600.0
        f["cosine"], f["pearson_S"] = np.array([0.61, 0.72]), np.array([0.57, 0.78])
    metrics = arrhenius.read_model_metrics(tmp_path / "model.h5", tmp_path / "stability.h5")
    assert metrics["O"] == {"accuracy": 0.52, "accuracy_err": 0.02, "roc_auc": 0.55, "stability_T_K": 3600.0,
                            "stability_cosine": 0.72, "stability_pearson_S": 0.78}
    md = arrhenius.summary_markdown(arrhenius.make_summary(r, metrics))
    assert "| ROC AUC (held out) | 0.9 | 0.55 |" in md
    assert "| hyperplane at the stability T: cosine / corr(S) | 0.61 / 0.57 | 0.72 / 0.78 |" in md


def test_reduced_units_in_the_summary_follow_the_systems_units(caplog):
    """Kob-Andersen products: every key number also in the system's reduced units (from its
    REDUCED_UNITS); silica, an unnamed system or an unknown one: no reduced block."""
    from softness import systems

    ka = systems.get("kob_andersen").REDUCED_UNITS
    t_u, time_u = ka["temperature_K"], ka["time_fs"]
    r = counted_results(np.random.default_rng(57))
    arrhenius.fit_results(r, ACFG)
    plain = arrhenius.make_summary(r)
    assert "reduced_units" not in plain
    for system in ("silica", "no_such_system"):
        r["attrs"]["system"] = system
        with caplog.at_level(logging.WARNING, logger="softness.arrhenius"):
            assert arrhenius.make_summary(r) == plain
    assert "unknown system 'no_such_system'" in caplog.text
    r["attrs"]["system"] = "kob_andersen"
    s = arrhenius.make_summary(r)
    json.dumps(s, allow_nan=False)
    block = s["reduced_units"]
    assert block["system"] == "kob_andersen" and block["temperature_K"] == t_u and block["time_fs"] == time_u
    assert_allclose(block["temperatures"], FIT_TEMPS / t_u, rtol=1e-12)
    assert block["T_train"] == pytest.approx(FIT_TEMPS[0] / t_u, rel=1e-12)
    for sp, name in enumerate(SILICA):
        x, red = s["species"][name], s["species"][name]["reduced"]
        assert {k: v for k, v in x.items() if k != "reduced"} == plain["species"][name]  # the rest as before
        for key, value in (("T0", x["T0"]), ("e0", x["e0"]["K"]), ("e1", x["e1"]["K"]),
                           ("E_inf", x["apparent_barrier"]["E_inf"]["K"])):
            assert red[key]["value"] == pytest.approx(value["value"] / t_u, rel=1e-12), key
            assert red[key]["error"] == pytest.approx(value["error"] / t_u, rel=1e-12), key
        assert red["T0"]["value"] == pytest.approx(r["lines/T0_K"][sp] / t_u, rel=1e-12)
        # An energy E / k_B in K over eps / k_B is E / eps: the same number from kcal/mol.
        e0_kcal = r["lines/e0_K"][sp] * units.KB
        assert red["e0"]["value"] == pytest.approx(e0_kcal / ka["energy_kcal_mol"], rel=1e-6)
        tau = red["tau_alpha"]
        assert tau["T_crossover"]["value"] == pytest.approx(x["tau_alpha"]["T_crossover"]["value"] / t_u)
        assert tau["E_low"]["value"] == pytest.approx(x["tau_alpha"]["E_low"]["K"]["value"] / t_u)
        assert tau["E_high"]["error"] == pytest.approx(x["tau_alpha"]["E_high"]["K"]["error"] / t_u)
        ln_tau0 = x["tau_alpha"]["ln_tau0_fs"]["value"]
        assert tau["ln_tau0"]["value"] == pytest.approx(ln_tau0 - np.log(time_u))
        assert_allclose([v["value"] for v in tau["tau_alpha"]], r["dynamics/tau_alpha_fs"][sp] / time_u,
                        rtol=1e-12)
        assert_allclose([v["error"] for v in tau["tau_alpha"]], r["dynamics/tau_alpha_err_fs"][sp] / time_u,
                        rtol=1e-12)
        assert red["tau_S"] == [None if v is None else pytest.approx(v / time_u, rel=1e-12)
                                for v in x["relaxation_from_softness"]["tau_S_fs"]]
        # A slope per K is, per unit of reduced temperature, t_u times larger.
        assert red["mean_softness_b"]["value"] == pytest.approx(x["mean_softness"]["b"]["value"] * t_u)
        assert red["Sigma1_b"]["value"] == pytest.approx(x["apparent_barrier"]["Sigma1_b"]["value"] * t_u)
    md = arrhenius.summary_markdown(s)
    assert "## In reduced units" in md and "| quantity (reduced) | Si | O |" in md
    t0 = s["species"]["Si"]["reduced"]["T0"]
    assert f"| T0 = e1/Sigma1 (T*) | {t0['value']:.4g} ± {t0['error']:.2g} |" in md
    assert "## In reduced units" not in arrhenius.summary_markdown(plain)


def test_a_kob_andersen_product_set_gets_reduced_units_in_its_summary(tmp_path):
    """The system attribute travels from the features through the model and the softness to the
    arrhenius product, and its summary gives T0 and tau_alpha in the reduced units too."""
    from softness import systems

    ka = systems.get("kob_andersen").REDUCED_UNITS
    rng = np.random.default_rng(25)
    u = rng.normal(size=(2, N_FEATURES))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    temps = [2800.0, 3300.0, 4000.0, 4700.0]
    for t in temps:
        synthetic_temperature(tmp_path, rng, t, u, n_atoms=150, n_frames=120, species_names=("A", "B"),
                              system="kob_andersen")
    cfg = config.resolve({"temperatures_K": temps, "quench": {"T_min_K": 2800},
                          "train": {"n_per_class": 400, "C_grid": [0.01, 0.1, 1.0], "cv_folds": 3},
                          "arrhenius": {"n_bins": 5, "min_events": 10, "n_bootstrap": 50,
                                        "P_R_window_fs": 50.0, "min_temperatures": 3}})
    classifier.train_file(cfg, tmp_path / "features_2800.h5", tmp_path / "hops_2800.h5",
                          tmp_path / "model.h5")
    softness = [tmp_path / f"softness_{t:g}.h5" for t in temps]
    for t, out in zip(temps, softness, strict=True):
        classifier.apply_file(cfg, tmp_path / "model.h5", tmp_path / f"features_{t:g}.h5", out)
    s = arrhenius.arrhenius_file(cfg, softness, [tmp_path / f"hops_{t:g}.h5" for t in temps],
                                 [tmp_path / f"dynamics_{t:g}.h5" for t in temps], tmp_path / "arrhenius.h5",
                                 summary=tmp_path / "summary.json")
    for path in (tmp_path / "model.h5", softness[0], tmp_path / "arrhenius.h5"):
        with h5py.File(path) as f:
            assert f.attrs["system"] == "kob_andersen", path
    with h5py.File(tmp_path / "arrhenius.h5") as f:
        t0_K, tau_fs = f["lines/T0_K"][()], f["dynamics/tau_alpha_fs"][()]
    assert json.loads((tmp_path / "summary.json").read_text()) == s
    assert s["reduced_units"]["temperature_K"] == ka["temperature_K"]
    assert list(s["species"]) == ["A", "B"]
    for sp, name in enumerate(("A", "B")):
        red = s["species"][name]["reduced"]
        assert np.isfinite(t0_K[sp])
        assert red["T0"]["value"] == pytest.approx(t0_K[sp] / ka["temperature_K"], rel=1e-12)
        assert red["T0"]["value"] == pytest.approx(s["species"][name]["T0"]["value"] / ka["temperature_K"],
                                                   rel=1e-12)
        assert_allclose([v["value"] for v in red["tau_alpha"]["tau_alpha"]], tau_fs[sp] / ka["time_fs"],
                        rtol=1e-12)
    assert "## In reduced units" in (tmp_path / "summary.md").read_text()


def test_a_config_that_sets_the_removed_T_split_K_is_refused():
    removed = r"'arrhenius.T_split_K' has been removed \(tau_alpha\(T\) is no longer"
    with pytest.raises(SoftnessError, match=removed):
        config.resolve({"arrhenius": {"T_split_K": 3300.0}})


# ---------------------------------------------------------------------------- species with different physics
# Softness is given (written straight into softness files), so every output of the analysis has a
# known value. The two species differ in every parameter by many times its error, so reading the
# other species' data anywhere shows. Energies as temperatures (K).

#: tau_alpha follows arrhenius.kinked_arrhenius (ln_tau0, E_low, E_high, T_x), with block errors of
#: TAU_ERR in tau. O's tau_alpha at 4500 K (245 fs) is below 3 t_R (t_R = 100 fs in the hops files):
#: that temperature has no cage jumps to count for O, and only for O.
MODEL = {
    "Si": dict(e0=24000.0, e1=5000.0, Sigma0=3.0, Sigma1=0.6, a=-1.0, b=3.5e-4, sd=0.55,
               ln_tau0=-3.0, E_low=40000.0, E_high=20000.0, T_x=3300.0, E_D=30000.0, D0=1.0),
    "O": dict(e0=15000.0, e1=2000.0, Sigma0=1.2, Sigma1=0.15, a=0.4, b=1.2e-4, sd=0.5,
              ln_tau0=-1.9, E_low=30000.0, E_high=12000.0, T_x=3800.0, E_D=22000.0, D0=0.5),
}
SPECIES = ("Si", "O")
MODEL_TEMPS = np.array([2500.0, 2800.0, 3100.0, 3500.0, 4000.0, 4500.0])
TAU_ERR = 0.05
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
    return arrhenius.kinked_arrhenius(t, m["ln_tau0"], m["E_low"], m["E_high"], m["T_x"])


def model_ln_D(m, t):
    return np.log(m["D0"]) - m["E_D"] / np.asarray(t, float)


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
        f["species_names"] = np.array(SILICA, dtype="S")
        f["softness"] = s.astype(np.float32)
        f["frames"], f["time_fs"], f["species"] = frames, frames * DT_FS, species
        f.attrs["temperature_K"], f.attrs["T_train_K"] = t, MODEL_TEMPS[0]
    write_hops(tmp_path / f"hops_{t:g}.h5", labels, species, t, p_hop=p_hop)
    with atomic_h5(tmp_path / f"dynamics_{t:g}.h5", "dynamics", {}) as f:
        f["species_names"] = np.array(SPECIES, dtype="S")
        diff = np.array([np.exp(model_ln_D(MODEL[n], t)) for n in SPECIES])
        f["D_A2_per_fs"], f["D_err_A2_per_fs"] = diff, 0.03 * diff
        f["diffusive"] = np.array([True, True])
        f["tau_alpha_fs"] = np.array([np.exp(model_ln_tau(MODEL[n], t)) for n in SPECIES])
        f["tau_alpha_err_fs"] = TAU_ERR * f["tau_alpha_fs"][()]
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
                               "arrhenius": {"P_R_window_fs": DT_FS, "n_bins": 8, "min_events": 20,
                                             "n_bootstrap": 200,
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
        # The counts, recounted from the files: softness on every frame and a P_R window of one
        # frame, so an atom rearranges at a frame where it has an event, and counts where p_hop is
        # defined.
        for k, t in enumerate(MODEL_TEMPS):
            d = r["_dir"]
            with h5py.File(d / f"softness_{t:g}.h5") as fs, h5py.File(d / f"hops_{t:g}.h5") as fh:
                mine = fs["species"][()] == sp
                soft = fs["softness"][()][:, mine]
                defined = np.isfinite(fh["p_hop"][()][:, mine])
                event = fh["events"][()][:, mine] == 1
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
            # Enough events (a flagged temperature's P_R is counted too, only not fitted).
            ok = r["n_events"][sp, k] >= 20
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
        # From tau_alpha (exact data: exact secants, errors from its block errors) and from D
        # (Arrhenius: E_D at every pair).
        assert_allclose(r["crossover/E_app_tau_K"][sp], np.diff(model_ln_tau(m, t)) / np.diff(x), rtol=1e-6)
        assert_allclose(r["crossover/E_app_tau_K_err"][sp], np.hypot(TAU_ERR, TAU_ERR) / np.abs(np.diff(x)),
                        rtol=1e-6)
        assert_allclose(r["crossover/E_app_D_K"][sp], m["E_D"], rtol=1e-6)
        assert_allclose(r["crossover/E_app_D_K_err"][sp], np.hypot(0.03, 0.03) / np.abs(np.diff(x)),
                        rtol=1e-6)
        assert_allclose(r["crossover/E_app_tau_eV"][sp], arrhenius.k_to_eV(r["crossover/E_app_tau_K"][sp]))
        assert_allclose(r["dynamics/tau_alpha_fs"][sp], np.exp(model_ln_tau(m, t)))
        # tau_alpha(T): one weighted fit with a kink at T_x, on all six temperatures (a flagged one
        # too: tau_alpha is measured there, only P_R has nothing to count).
        for key, truth in (("ln_tau0", m["ln_tau0"]), ("E_low_K", m["E_low"]), ("E_high_K", m["E_high"]),
                           ("T_x_K", m["T_x"])):
            assert r[f"tau_fit/{key}"][sp] == pytest.approx(truth, rel=1e-6), (name, key)
            assert 0 < r[f"tau_fit/{key}_err"][sp] < 0.3 * abs(truth)
        assert r["tau_fit/weighted"][sp] and r["tau_fit/dof"][sp] == 2 and r["tau_fit/strong_to_fragile"][sp]
        assert r["tau_fit/n_below"][sp] == np.sum(t <= m["T_x"])
        assert r["tau_fit/n_above"][sp] == np.sum(t >= m["T_x"])
        assert_array_equal(r["tau_fit/T_range_K"][sp], [2500.0, 4500.0])
        assert r["tau_fit/E_low_eV"][sp] == pytest.approx(arrhenius.k_to_eV(m["E_low"]), rel=1e-6)
        assert abs(other["T_x"] - m["T_x"]) > 0.05 * m["T_x"]
    # O at 4500 K: tau_alpha 245 fs < 3 t_R; flagged, shown, and left out of O's P_R fits only.
    assert_array_equal(r["t_R_fs"], 100.0)
    assert_array_equal(r["flagged_temperature"], [[False] * 6, [False] * 5 + [True]])
    assert r["flagged_temperature_reason"][1, -1].decode().startswith("tau_alpha 245")
    assert not r["usable"][1, -1].any() and r["usable"][0, -1].any()
    assert np.all(r["bin_fit/n_temperatures"][1] <= 5)


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
        tau = entry["tau_alpha"]
        assert tau["E_low"]["K"]["value"] == pytest.approx(m["E_low"], rel=1e-6)
        assert tau["E_high"]["eV"]["value"] == pytest.approx(arrhenius.k_to_eV(m["E_high"]), rel=1e-6)
        assert tau["T_crossover"]["value"] == pytest.approx(m["T_x"], rel=1e-6)
        assert tau["T_crossover"]["error"] == pytest.approx(r["tau_fit/T_x_K_err"][sp])
        assert tau["dof"] == 2 and tau["weighted"] and tau["strong_to_fragile"]
        assert entry["n_bins_fitted"] == r["bin_fit/fitted"][sp].sum()
        assert not entry["T0"]["inside_fitted_range"]
        assert [f["T_K"] for f in entry["flagged_temperatures"]] == ([] if name == "Si" else [4500.0])
        # A verdict on each claim, per species, with its numbers.
        for claim in "abcd":
            assert s["verdicts"][claim]["species"][name]["status"] in ("pass", "fail", "not testable",
                                                                       "not evaluated")
        assert s["verdicts"]["a"]["status"] == "not evaluated"
        assert s["verdicts"]["c"]["species"][name]["status"] == "pass"
        assert s["verdicts"]["b"]["species"][name]["bins_fitted"] == entry["n_bins_fitted"]
        # The Markdown table: one column per species, in the order of its header.
        assert rows["T0 = e1/Sigma1 (K)"][sp].startswith(f"{r['lines/T0_K'][sp]:.4g}")
        assert rows["crossover T_x (K)"][sp].startswith(f"{r['tau_fit/T_x_K'][sp]:.4g}")
        assert rows["b (1/K)"][sp].startswith(f"{r['mean_softness/b_per_K'][sp]:.4g}")
    assert "## The claims" in md and "Left out of the P_R fits: O at 4500 K (tau_alpha 245" in md
    assert json.loads(json.dumps(s, allow_nan=False)) == s


# ---------------------------------------------------------------------------- P_R within Delta

def count_P_R(tmp_path, name, events_or_hops, species, s_frames, window_frames, p_hop=None):
    """P_R and the mean number of events per window counted by ``count_temperature`` for all atoms
    (one wide softness bin), with softness on ``s_frames``; also the per-frame totals.
    ``events_or_hops`` is an events array (written with ``write_hops``) or a hops file."""
    n_atoms = species.size
    if isinstance(events_or_hops, np.ndarray):
        hops = tmp_path / f"hops_{name}.h5"
        write_hops(hops, np.zeros(events_or_hops.shape, np.int8), species, 3000.0,
                   p_hop=np.where(events_or_hops >= 0, 0.01, np.nan) if p_hop is None else p_hop,
                   events=events_or_hops)
    else:
        hops = events_or_hops
    soft = tmp_path / f"softness_{name}.h5"
    with atomic_h5(soft, "apply", {}) as f:
        f["species_names"] = np.array(SILICA, dtype="S")
        f["softness"] = np.zeros((s_frames.size, n_atoms), np.float32)
        f["frames"], f["species"] = s_frames, species
    item = arrhenius.TemperatureData(3000.0, soft, hops, tmp_path / "none.h5")
    edges = np.array([[-1.0, 1.0], [-1.0, 1.0]])
    c = arrhenius.count_temperature(item, edges, np.stack([np.linspace(-1, 1, arrhenius.N_HIST + 1)] * 2),
                                    window_frames)
    totals = sum(c["all_totals"])
    p_r = sum(c["all_events"]).sum() / totals.sum()
    assert_array_equal(sum(c["events"]).ravel(), sum(c["all_events"]))  # the one bin holds everyone
    return p_r, sum(c["all_counts"]).sum() / totals.sum(), totals


def test_P_R_is_the_probability_to_start_a_rearrangement_within_the_window(tmp_path):
    """Events at Poisson times (independent on every 50 fs frame with probability q, a rate
    r = -ln(1 - q) / dt): P_R over Delta = 4 frames is 1 - exp(-r Delta), whether softness is on
    every frame (overlapping windows) or every 4th (adjacent windows), and the end of the run,
    where the window is incomplete, is left out."""
    rng = np.random.default_rng(50)
    n_atoms, n_frames, dt, q, n_window = 300, 2000, 50.0, 0.01, 4
    species = np.r_[np.zeros(100, int), np.ones(200, int)]
    events = (rng.random((n_frames, n_atoms)) < q).astype(np.int8)
    events[:3] = -1  # p_hop undefined at the start
    rate = -np.log1p(-q) / dt
    expected = 1 - np.exp(-rate * n_window * dt)
    results = {}
    for stride in (1, 4):
        s_frames = np.arange(0, n_frames, stride)
        p_r, mean_count, totals = count_P_R(tmp_path, f"every{stride}", events, species, s_frames, n_window)
        complete = s_frames + n_window <= n_frames
        # Counted: complete windows (the last 3 softness frames' run past the end of the run) with
        # every event located (not touching the first 3 frames).
        assert_array_equal(totals, np.where(complete & (s_frames >= 3), n_atoms, 0))
        n = totals.sum()
        # Overlapping windows (stride 1) are correlated over 2 Delta - 1 softness frames at most.
        correlated = 2 * n_window - 1 if stride == 1 else 1
        err = np.sqrt(correlated * expected * (1 - expected) / n)
        assert abs(p_r - expected) < 4 * err, (stride, p_r, expected, err)
        # The rate that gives P_R, -ln(1 - P_R) / Delta, is r; events per window / Delta too.
        assert abs(-np.log1p(-p_r) / (n_window * dt) - rate) < 4 * err / ((1 - expected) * n_window * dt)
        assert abs(mean_count - n_window * q) < 4 * np.sqrt(n_window * q / n) * np.sqrt(2 * n_window)
        results[stride] = p_r, err
    # The same P_R with softness on every frame and on every 4th.
    (p1, e1), (p4, e4) = results[1], results[4]
    assert abs(p1 - p4) < 4 * np.hypot(e1, e4)


def test_P_R_of_atoms_jumping_at_a_known_rate_through_hops(tmp_path):
    """Atoms jumping at a known rate (after each jump a dead time longer than Delta) through the
    hops stage: every window holds at most one jump, so P_R = r Delta, and the mean number of
    events per window is r Delta too, with softness on every frame or on every 4th."""
    from test_hops import hops_of_jumping_atoms

    rng = np.random.default_rng(51)
    n_frames, dt, h, dead, q = 2000, 10.0, 5, 30, 0.02
    species = np.r_[np.zeros(50, int), np.ones(100, int)]
    _, jumps = hops_of_jumping_atoms(tmp_path, rng, species, n_frames, q, dead, dt, h)
    with h5py.File(tmp_path / "hops.h5") as fh:
        n_window = arrhenius.P_R_window_frames(200.0, arrhenius.hops_frame_interval_fs(fh), "hops.h5")
    assert n_window == 20 <= dead
    r_frame = 1 / (dead + 1 / q)  # jumps per frame
    for stride in (1, 4):
        s_frames = np.arange(0, n_frames, stride)
        p_r, mean_count, totals = count_P_R(tmp_path, f"jumps{stride}", tmp_path / "hops.h5", species,
                                            s_frames, n_window)
        # Events are located on frames h + 1 ... F - h - 1, so windows from h + 1 to F - h - n_window.
        counted = (s_frames >= h + 1) & (s_frames + n_window <= n_frames - h)
        assert_array_equal(totals, np.where(counted, species.size, 0))
        # Exactly: the windows that hold a jump frame.
        starts = s_frames[counted]
        in_window = np.array([jumps[f:f + n_window].any(axis=0) for f in starts])
        assert p_r == pytest.approx(in_window.mean(), rel=1e-12)
        assert mean_count == pytest.approx(p_r, rel=1e-12)  # never two jumps in one window
        # And statistically: r Delta, within the error of windows correlated over 2 Delta.
        expected = r_frame * n_window
        err = np.sqrt(2 * n_window / stride * expected * (1 - expected) / totals.sum())
        assert abs(p_r - expected) < 4 * err, (stride, p_r, expected, err)


def test_species_model_stores_the_P_R_window_and_rate(model_analysis):
    r, _, _ = model_analysis
    assert_array_equal(r["P_R_window_fs"], DT_FS)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_allclose(r["P_R_rate_per_fs"], -np.log1p(-r["P_R"]) / DT_FS, rtol=1e-12)
    # With one-frame windows the mean number of events per window is the mean P_R.
    assert_allclose(r["rate/rate_per_fs"], r["rate/P_R_mean"] / DT_FS, rtol=1e-12)
    with h5py.File(r["_dir"] / "arrhenius.h5") as f:
        assert f.attrs["P_R_window_fs"] == DT_FS
        assert "P_R_window_fs" in f.attrs["rearrangement_definition"]


# ---------------------------------------------------------------------------- relaxation from softness

def test_predicted_mean_P_R_is_the_gaussian_average_of_the_arrhenius_lines():
    # S ~ N(mu(T), sigma^2) and ln P_R = Sigma0 - Sigma1 S - (e0 - e1 S) / T = a + b S, so
    # <P_R> = exp(a + b mu + b^2 sigma^2 / 2) (P_R stays far below 1 here).
    temps = np.array([2800.0, 3000.0, 3300.0, 3600.0])
    e0, e1, s0, s1 = 30000.0, 4000.0, 2.0, 0.5
    mu, sigma = 0.2 * (temps - 3000) / 600, 1.0
    edges = np.linspace(-8, 8, 4001)
    centre = 0.5 * (edges[1:] + edges[:-1])
    density = np.exp(-0.5 * ((centre[None] - mu[:, None]) / sigma) ** 2) / np.sqrt(2 * np.pi) / sigma
    cov = np.diag([1e4, 1e4, 1e-2, 1e-2])
    lines = arrhenius.Fit(np.array([e0, e1, s0, s1]), cov, 1.0, 4)
    ln_p, ln_p_err = arrhenius.predicted_mean_P_R(temps, density, edges, lines, n_samples=2000)
    a, b = s0 - e0 / temps, e1 / temps - s1
    np.testing.assert_allclose(ln_p, a + b * mu + 0.5 * b**2 * sigma**2, atol=1e-4)
    # The error from the parameters' covariance: d ln<P_R> / d(params), linearised.
    slope = mu + b * sigma**2
    grad = np.stack([-1 / temps, slope / temps, np.ones_like(temps), -slope], axis=1)
    linear = np.sqrt(np.einsum("ti,ij,tj->t", grad, cov, grad))
    np.testing.assert_allclose(ln_p_err, linear, rtol=0.1)


def test_relaxation_closure_fits_one_offset_and_fails_a_different_law():
    rng = np.random.default_rng(11)
    temps = np.array([2800.0, 2900, 3000, 3100, 3200, 3300, 3450, 3600])
    ln_tau_s = 35000.0 / temps - 3.0
    err = np.full(temps.size, 0.05)
    ln_tau = ln_tau_s + 1.7 + rng.normal(0, 0.05, temps.size)
    c = arrhenius.relaxation_closure(ln_tau_s, np.zeros_like(err), ln_tau, err)
    assert c["n"] == 8 and c["dof"] == 7
    assert abs(c["offset"] - 1.7) < 3 * c["offset_err"]
    assert c["p_value"] > 0.01
    # A relaxation time with another barrier (5000 K more) is not the prediction plus a constant.
    bad = arrhenius.relaxation_closure(ln_tau_s, np.zeros_like(err), ln_tau + 5000.0 / temps, err)
    assert bad["p_value"] < 1e-6
    # NaN temperatures (tau_alpha not reached) are left out.
    ln_tau[0] = np.nan
    assert arrhenius.relaxation_closure(ln_tau_s, err, ln_tau, err)["n"] == 7


# ---------------------------------------------------------------------------- independent runs

RUN_TAU = {"A": ([1000.0, 800.0], [50.0, 40.0]), "B": ([1400.0, 900.0], [60.0, 30.0]),
           "C": ([500.0, 400.0], [20.0, 10.0])}
RUN_D = {"A": [1e-3, 2e-3], "B": [3e-3, 2e-3], "C": [5e-3, 6e-3]}


def write_run(d, name, rng, t, n_traj, species):
    """Independent run ``name`` at temperature t: softness (every other frame, with the features file
    it names), hops (frames every 50 fs, random events) and dynamics files, all naming the run's
    trajectory (never opened: its name is what pairs them)."""
    trajectory = str(d / f"T{t:g}" / name / "trajectory.h5")
    s_frames = np.arange(1, n_traj, 2)
    softness = rng.normal(size=(s_frames.size, species.size)).astype(np.float32)
    events = (rng.random((n_traj, species.size)) < 0.25).astype(np.int8)
    events[:2] = -1  # p_hop undefined at the start
    p_hop = np.where(events == 1, 1.0, 0.01)
    p_hop[:2] = np.nan
    with atomic_h5(d / f"features_{name}.h5", "features", {}) as f:
        f.attrs["source"], f.attrs["temperature_K"] = trajectory, t
    with atomic_h5(d / f"softness_{name}.h5", "apply", {}) as f:
        f["species_names"] = np.array(SILICA, dtype="S")
        f["softness"], f["frames"], f["time_fs"], f["species"] = softness, s_frames, s_frames * 50.0, species
        f.attrs["temperature_K"], f.attrs["T_train_K"] = t, 3000.0
        f.attrs["features_source"] = str(d / f"features_{name}.h5")
    write_hops(d / f"hops_{name}.h5", events.clip(0, 1), species, t, p_hop=p_hop, events=events)
    tau, tau_err = RUN_TAU[name]
    write_dynamics(d / f"dynamics_{name}.h5", t, tau, RUN_D[name])
    for kind in ("hops", "dynamics"):
        with h5py.File(d / f"{kind}_{name}.h5", "a") as f:
            f.attrs["source"] = trajectory
            if kind == "dynamics":
                f["tau_alpha_err_fs"] = np.asarray(tau_err)
    return {"softness": softness.astype(np.float64), "frames": s_frames, "events": events}


RUN_CONFIG = {"temperatures_K": [3000.0, 3500.0], "quench": {"T_min_K": 3000.0},
              "arrhenius": {"P_R_window_fs": 50.0, "n_bins": 3, "min_events": 1, "n_bootstrap": 50,
                            "min_tau_alpha_over_t_R": 0.0}}


@pytest.fixture
def two_runs(tmp_path):
    """Two runs of different lengths at 3000 K (A, B) and one at 3500 K (C)."""
    rng = np.random.default_rng(41)
    species = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1])
    runs = {"A": write_run(tmp_path, "A", rng, 3000.0, 30, species),
            "B": write_run(tmp_path, "B", rng, 3000.0, 41, species),
            "C": write_run(tmp_path, "C", rng, 3500.0, 35, species)}
    return tmp_path, species, runs


def test_runs_at_one_temperature_are_paired_by_trajectory_and_pooled(two_runs, caplog):
    d, species, runs = two_runs
    files = {kind: {n: d / f"{kind}_{n}.h5" for n in "ABC"} for kind in ("softness", "hops", "dynamics")}
    # Shuffled: the runs of 3000 K are told apart by their trajectories, not by their order.
    r = arrhenius.analyse(config.resolve(RUN_CONFIG), [files["softness"][n] for n in "ACB"],
                          [files["hops"][n] for n in "BCA"], [files["dynamics"][n] for n in "CBA"])
    assert_array_equal(r["n_runs"], [2, 1])
    assert json.loads(r["attrs"]["sources_softness"]) == [str(files["softness"][n]) for n in "ABC"]
    assert json.loads(r["attrs"]["sources_hops"]) == [str(files["hops"][n]) for n in "ABC"]
    # Brute force, with a window of one hops frame: (frame, atom) counts where an event is located
    # there, and rearranges where it is an event; 3000 K sums runs A and B.
    per_t = {0: "AB", 1: "C"}
    def at_softness_frames(n, sp):  # S and the event flag of one species at the softness frames of run n
        return (runs[n]["softness"][:, species == sp], runs[n]["events"][runs[n]["frames"]][:, species == sp])

    event_s = [np.concatenate([s[ev == 1] for s, ev in (at_softness_frames(n, sp) for n in "ABC")])
               for sp in (0, 1)]
    for sp in (0, 1):
        assert_allclose(r["bins/edges"][sp], arrhenius.softness_bin_edges(event_s[sp], 3))
        e = r["bins/edges"][sp]
        for k, names in per_t.items():
            n_ev, n_tot, frame_means = np.zeros(3), np.zeros(3), []
            for n in names:
                s, ev = at_softness_frames(n, sp)
                inside = (ev >= 0) & (s >= e[0]) & (s <= e[-1])
                b = np.searchsorted(e[1:-1], s[inside], side="right")
                n_tot += np.bincount(b, minlength=3)
                n_ev += np.bincount(b, weights=ev[inside] == 1, minlength=3)
                frame_means.append(s.mean(axis=1))
            assert_array_equal(r["n_samples"][sp, k], n_tot)
            assert_array_equal(r["n_events"][sp, k], n_ev)
            assert_allclose(r["P_R"][sp, k], n_ev / n_tot)
            # <S> over every frame of every run; its error from each run's blocking error.
            assert_allclose(r["mean_softness/mean"][sp, k], np.concatenate(frame_means).mean())
            n = np.array([m.size for m in frame_means], float)
            se = np.array([arrhenius.blocked_standard_error(m) for m in frame_means])
            assert_allclose(r["mean_softness/err"][sp, k], np.sqrt(np.sum((n / n.sum()) ** 2 * se**2)))
    assert r["n_samples"][:, 0].sum() > r["n_samples"][:, 1].sum()  # 3000 K holds two runs
    # tau_alpha and D: the mean over the runs; with two runs the error is the larger of the block
    # error of the mean and the spread |x_A - x_B| / 2; one run keeps its own.
    assert_allclose(r["dynamics/tau_alpha_fs"][:, 0], [1200.0, 850.0])
    assert_allclose(r["dynamics/tau_alpha_err_fs"][:, 0], [200.0, 50.0])  # spreads 200, 50 > 39, 25
    assert_allclose(r["dynamics/tau_alpha_fs"][:, 1], RUN_TAU["C"][0])
    assert_allclose(r["dynamics/tau_alpha_err_fs"][:, 1], RUN_TAU["C"][1])
    assert_allclose(r["dynamics/D_A2_per_fs"][:, 0], [2e-3, 2e-3])
    assert_allclose(r["dynamics/D_err_A2_per_fs"][:, 0], [1e-3, np.sqrt(2) * 0.02 * 2e-3 / 2])  # O: blocks
    assert_allclose(r["dynamics/tau_alpha_runs_fs"][:, 0],
                    np.transpose([RUN_TAU["A"][0], RUN_TAU["B"][0]]))
    assert np.isnan(r["dynamics/tau_alpha_runs_fs"][:, 1, 1]).all()


def test_runs_that_do_not_pair_up_are_refused(two_runs):
    d, _, _ = two_runs
    cfg = config.resolve(RUN_CONFIG)

    def files(kind, names="ABC"):
        return [d / f"{kind}_{n}.h5" for n in names]

    with pytest.raises(SoftnessError) as err:
        arrhenius.analyse(cfg, files("softness"), files("hops", "AC"), files("dynamics"))
    assert str(err.value) == ("at 3000 K there are 2 softness, 1 hops and 2 dynamics files; give one of each "
                              "kind per run.")
    # A hops file of another run, one that names no trajectory, two of the same run.
    for name, change in (("other", lambda f: f.attrs.__setitem__("source", str(d / "elsewhere.h5"))),
                         ("nameless", lambda f: f.attrs.__delitem__("source")), ("twin", lambda f: None)):
        other = d / f"hops_{name}.h5"
        other.write_bytes((d / ("hops_A.h5" if name == "twin" else "hops_B.h5")).read_bytes())
        with h5py.File(other, "a") as f:
            change(f)
        with pytest.raises(SoftnessError) as err:
            arrhenius.analyse(cfg, files("softness"), [d / "hops_A.h5", other, d / "hops_C.h5"],
                              files("dynamics"))
        assert {"other": "the hops and softness files at 3000 K come from different trajectories",
                "nameless": f"hops file {other} does not name the trajectory it comes from",
                "twin": f"hops files {d / 'hops_A.h5'} and {other} at 3000 K both come from",
                }[name] in str(err.value)
    (d / "features_B.h5").unlink()
    with pytest.raises(SoftnessError, match=r"features file .*features_B\.h5, which cannot be read"):
        arrhenius.analyse(cfg, files("softness"), files("hops"), files("dynamics"))


def test_the_pooled_bootstrap_resamples_blocks_within_each_run():
    rng = np.random.default_rng(42)
    # Within each run every block is the same (P = 0.1 in run A, 0.3 in run B): resampling blocks
    # within each run always gives the pooled P; drawing blocks from both runs together would move
    # the share of the two runs and spread P.
    a_ev, a_tot = np.full((20, 1), 10.0), np.full((20, 1), 100.0)
    b_ev, b_tot = np.full((30, 1), 30.0), np.full((30, 1), 100.0)
    p, ln_err, lo, hi = arrhenius.pooled_bootstrap_ratio([a_ev, b_ev], [a_tot, b_tot], [5, 5], 300, rng)
    assert_allclose(p, (200 + 900) / 5000)
    assert_allclose(ln_err, 0.0, atol=1e-12) and assert_allclose([lo, hi], [p, p])
    _, mixed, _, _ = arrhenius.bootstrap_ratio(np.r_[a_ev, b_ev], np.r_[a_tot, b_tot], 5, 300, rng)
    assert mixed > 0.05
    # One run: bootstrap_ratio itself, draw for draw.
    ev = rng.poisson(3.0, size=(40, 4)).astype(float)
    tot = np.full((40, 4), 50.0)
    one = arrhenius.pooled_bootstrap_ratio([ev], [tot], [4], 100, np.random.default_rng(1))
    for got, want in zip(one, arrhenius.bootstrap_ratio(ev, tot, 4, 100, np.random.default_rng(1)),
                         strict=True):
        assert_array_equal(got, want)
    # Counts correlated over blocks of 5 frames, in two runs of 300 and 200 blocks: the error is the
    # binomial one of all 500 independent blocks.
    p_true, atoms, block = 0.02, 500, 5
    runs = [np.repeat(rng.binomial(atoms, p_true, size=n), block)[:, None].astype(float) for n in (300, 200)]
    totals = [np.full(x.shape, float(atoms)) for x in runs]
    _, err, lo, hi = arrhenius.pooled_bootstrap_ratio(runs, totals, [block, block], 1000, rng)
    assert err[0] == pytest.approx(np.sqrt((1 - p_true) / (p_true * atoms * 500)), rel=0.15)
    assert lo[0] < sum(x.sum() for x in runs) / sum(t.sum() for t in totals) < hi[0]


def test_tau_alpha_over_runs_is_their_mean_with_the_spread_as_error():
    # One run: its value and block error, as they are.
    mean, err = arrhenius.mean_over_runs([[1000.0, np.nan]], [[50.0, 30.0]])
    assert_array_equal(mean, [1000.0, np.nan]) and assert_array_equal(err, [50.0, 30.0])
    # Two runs: the larger of the block error of the mean and the spread; unknown block errors
    # leave the spread; a run that did not reach tau_alpha leaves none.
    mean, err = arrhenius.mean_over_runs([[10.0, 20.0, 5.0, 1.0], [14.0, 20.0, 7.0, np.nan]],
                                         [[1.0, 3.0, np.nan, 1.0], [1.0, 4.0, np.nan, 1.0]])
    assert_allclose(mean, [12.0, 20.0, 6.0, np.nan])
    assert_allclose(err, [2.0, 2.5, 1.0, np.nan])
    # Three or more: the standard error over the runs alone.
    x = np.array([[3.0], [5.0], [10.0], [6.0]])
    mean, err = arrhenius.mean_over_runs(x, np.full_like(x, 100.0))
    assert_allclose(mean, [6.0]) and assert_allclose(err, [x.std(ddof=1) / 2])
    # ... which is right on average: E[err^2] = sigma^2 / n for 4 runs of scatter sigma.
    rng = np.random.default_rng(43)
    draws = rng.normal(800.0, 60.0, size=(4, 20000))
    mean, err = arrhenius.mean_over_runs(draws, np.zeros_like(draws))
    assert np.mean(err**2) == pytest.approx(60.0**2 / 4, rel=0.03)
    assert np.std(mean) == pytest.approx(30.0, rel=0.03)
    # <S>: the pooled mean of per-frame values, white noise: sigma / sqrt(all frames).
    series = [rng.normal(0.3, 1.0, size=n) for n in (4096, 8192)]
    mean_s, err_s = arrhenius.pooled_mean(series + [np.zeros(0)])
    assert mean_s == pytest.approx(np.concatenate(series).mean())
    assert err_s == pytest.approx(1 / np.sqrt(12288), rel=0.3)
    one_run = series[0]
    assert arrhenius.pooled_mean([one_run]) == (one_run.mean(), arrhenius.blocked_standard_error(one_run))
