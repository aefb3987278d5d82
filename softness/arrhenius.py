"""P_R(S, T), Arrhenius fits at fixed softness, <S>(T), and the strong-to-fragile crossover.

The softness picture of Cubuk, Liu, Kaxiras and Schoenholz (arXiv:2008.09681; Schoenholz et al.,
Nat. Phys. 12, 469 (2016) for the Arrhenius form at fixed S):

* at fixed softness S the probability to rearrange is Arrhenius,
  P_R(S, T) = exp(Sigma(S) - DeltaE(S) / T), with DeltaE(S) = e0 - e1 S and
  Sigma(S) = Sigma0 - Sigma1 S (energies as temperatures, in K);
* the lines ln P_R vs 1/T of all S cross at T0 = e1 / Sigma1;
* the mean softness is linear in T, <S>(T) = a + b T; so at <S> the apparent barrier is
  E_app(T) = -d ln P_R / d(1/T) = (e0 - e1 a) - Sigma1 b T^2, which falls as T rises.

Definitions used here (all per species):

* **Rearrangement.** Atom i *rearranges at softness frame f* if it starts a rearrangement
  within Delta = ``arrhenius.P_R_window_fs`` (rounded to whole frames) after its structure is
  taken: it has an event (``/events`` of the hops file: the jump frame, where one excursion of
  p_hop above p_c peaks; see :mod:`softness.hops`) at a hops frame g with
  t_f <= t_g < t_f + Delta. (f, i) counts only if every hops frame of that window exists and an
  event can be located at each (p_hop defined there; ``/events`` != -1), so the end of the run,
  where the window is incomplete, drops out. P_R(S, T) is thus the probability that an atom of
  softness S starts a rearrangement within Delta; for a constant rate r it is 1 - exp(-r Delta),
  and ``P_R_rate_per_fs`` = -ln(1 - P_R) / Delta is that rate per bin. Why: the share of frames
  with p_hop > p_c (the older definition) counts how long an atom stays above p_c, and it
  saturates near 1 in the hot liquid, where the p_hop window is several relaxation times long;
  counting onsets inside a fixed short window measures a rate and does not depend on the
  spacing of the softness frames (windows may overlap or leave gaps between them).
* **Bins.** Per species, ``arrhenius.n_bins`` bins of S whose edges are quantiles of the softness
  of all rearranging (f, i), pooled over temperatures, from the 0.5 % to the 99.5 % quantile, so
  every bin holds about the same number of events overall. Atoms outside the outer edges are not
  binned (they still count in <S> and in the mean rate). A bin is *usable* at a temperature when
  it holds at least ``arrhenius.min_events`` events there and its P_R is at most
  ``arrhenius.max_P_R``: hot enough, nearly every atom's p_hop exceeds p_c, P_R saturates near 1
  and ln P_R no longer measures a rate (with its small counting error, such a point would pull
  every fit through itself). Unusable (bin, T) are stored but never fitted. The softness of a
  bin is the mean S of its atoms over all temperatures.
* **Errors of P_R.** Block bootstrap over softness frames (``arrhenius.n_bootstrap`` resamples)
  in blocks of ``arrhenius.bootstrap_block_fs`` (default: the longer of the hops file's t_R and
  Delta, over which the counts of one jump are correlated). ``ln_P_R_err`` is the bootstrap
  standard deviation of ln P_R, the interval is its 15.9-84.1 % percentiles.
* **Independent runs.** A temperature may come with several runs (``run.replicas_per_temperature``:
  one softness, hops and dynamics file per run, paired by the trajectory each was made from).
  Their counts are pooled: P_R, the mean rate and <S> are over every frame of every run, and the
  block bootstrap cuts and resamples blocks within each run (stratified by run, never a block
  across two runs; :func:`pooled_bootstrap_ratio`). tau_alpha and D of the temperature are the
  means over its runs, with the error from the spread over runs for three or more, the larger of
  that and the block errors for two (:func:`mean_over_runs`); ``n_runs`` [T] and, with several
  runs, ``dynamics/tau_alpha_runs_fs`` and ``dynamics/D_runs_A2_per_fs`` [S, T, R] keep the
  count and each run's value. The rest of the analysis sees one entry per temperature.
* **Temperatures with no cage jumps.** Where tau_alpha < ``arrhenius.min_tau_alpha_over_t_R``
  x t_R (t_R: the hops file's p_hop window), every atom leaves its cage within a window and
  p_hop measures flow, not jumps; where tau_alpha was not reached, the same unless the longest
  lag of the dynamics (a lower bound on tau_alpha) shows it is long enough. Such a temperature
  is flagged for that species (``flagged_temperature`` [S, T] with
  ``flagged_temperature_reason``), shown (grey in the P_R figure) and left out of the per-bin
  fits (``usable`` is false there). tau_alpha itself is measured there and stays in its fit.
* **Fits.** Weighted least squares; when chi^2 / dof > 1 the covariance is multiplied by it
  (Birge ratio), so scatter beyond the error bars widens the uncertainties. Per bin:
  ln P_R = Sigma - DeltaE / T, only for bins usable at ``arrhenius.min_temperatures`` or more
  temperatures (two points always lie on a line); fewer is reported (``n_temperatures``,
  ``populated``, a warning naming the bins), never fitted. Each fitted bin stores chi^2 / dof
  and a *curvature test*: ln P_R = Sigma - DeltaE / T + c / T^2 is fitted too, and
  Delta chi^2 = chi^2(line) - chi^2(with c) = (c / err_c)^2 is tested against chi^2(1) (a
  likelihood ratio) or, where the scatter exceeds the errors, as an F-test scaled by the Birge
  ratio; the bins' p-values are Holm-adjusted, so that ``arrhenius.curvature_p_value`` is the
  chance that a straight species shows any curved bin, and a bin below it is ``curved``. The
  per-bin (Sigma, DeltaE) of the fitted, straight bins, with their 2 x 2 covariances, are fitted
  jointly by generalised least squares to DeltaE = e0 - e1 S, Sigma = Sigma0 - Sigma1 S, so the
  4 x 4 covariance of (e0, e1, Sigma0, Sigma1) and the error of T0 = e1 / Sigma1 include their
  correlations. T0 is flagged (``lines/T0_inside_fitted_range``) when it falls among the
  temperatures the lines rest on: such a crossing inside the data is not the high-temperature
  extrapolation the softness picture means.
* **<S>(T)**: mean over atoms and frames; its error from blocking of the per-frame means
  (Flyvbjerg and Petersen, J. Chem. Phys. 91, 461 (1989)), largest over block sizes with at
  least 8 blocks. Weighted fit a + b T with chi^2 / dof and R^2, and the same curvature test
  for a T^2 term.
* **Apparent barriers** from data, E_app = -d ln(rate) / d(1/T) = d ln(tau) / d(1/T), as secants
  between neighbouring temperatures, reported at T_ij = sqrt(T_i T_j): for the softness model
  (E_app linear in T^2 ... exactly: linear in 1/x^2 with x = 1/T) the secant equals E_app at that
  temperature. Measured from tau_alpha (errors from its block errors ``/tau_alpha_err_fs`` of the
  dynamics files, NaN without them), from the mean rearrangement rate and from D (where
  diffusive), and compared with the model's prediction: chi^2 of measured minus predicted with
  both covariances (neighbouring secants share a temperature; predictions share parameters),
  ``closure/{tau, rate}`` (the rate only between temperatures that are not flagged).
* **tau_alpha(T)**: one fit of ln tau = ln tau0 + E_low / T below a crossover temperature T_x and
  a straight continuation with slope E_high above it (continuous, with a kink at 1/T_x:
  :func:`kinked_arrhenius`), by weighted nonlinear least squares in ln tau (weights from
  ``/tau_alpha_err_fs``; unweighted when a temperature has none), with T_x free between the 2nd
  and the 2nd-to-last temperature so that each side has at least two. Parameters, their 4 x 4
  covariance, T_x +- error, chi^2 / dof and dof are stored. E_low > E_high is the strong-to-
  fragile crossover on heating (Arrhenius at low T, a smaller apparent barrier above T_x); the
  opposite is fitted all the same and reported.
* **Verdicts** on the four claims (:data:`CLAIMS`), each pass / fail / not testable with its
  numbers and one sentence: (a) held-out accuracy above chance (from the model file, if given),
  (b) every populated bin fitted and none curved, (c) <S>(T) not curved over >= 3 temperatures,
  (d) the tau_alpha (and mean-rate) secants consistent with the predicted E_app(T)
  (p > :data:`CONSISTENCY_P_VALUE`) over >= 3 secants with some on each side of T_x.

Too few temperatures, per quantity:

* fewer than two temperatures in the input: an error (nothing here can be fitted);
* a bin usable at fewer than ``arrhenius.min_temperatures``: NaN Sigma / DeltaE for that bin,
  with a warning naming it;
* fewer than two fitted, straight bins for a species: NaN e0, e1, Sigma0, Sigma1, T0 for that
  species with a warning (a warning, not an error, when no species has two: the product and
  the verdicts still say what could be measured);
* tau_alpha reached at fewer than 5 temperatures (4 parameters, two temperatures on each side of
  the kink and one degree of freedom): NaN fit and T_x, with a warning saying how many lie on
  each side at best.

Energies are stored in K (as E / k_B) and in eV (``softness.units``); temperatures in K.

Species and systems. Nothing here names a species: the names and their number S come from the
files (``/species_names`` of every softness, hops and dynamics file, which must all agree), every
per-species array has a leading axis [S] in that order, the product stores ``/species_names``
and the summary is keyed by them. The root attribute ``system`` of the inputs (e.g.
"kob_andersen") is copied onto the product; where that system has reduced units
(``softness.systems.get(system).REDUCED_UNITS``), the summary adds a ``reduced_units`` block
and, per species, the key numbers in them (``reduced``): temperatures T / temperature_K,
energies (E / k_B) / temperature_K (= E / eps), times t / time_fs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy import stats

from softness import systems, units
from softness.classifier import names_dataset, species_names_of
from softness.errors import SoftnessError
from softness.io import atomic_h5, decode_all, open_input, require, system_attribute

log = logging.getLogger(__name__)

#: Outer bin edges are these quantiles of the softness of rearranging atoms.
TAIL_QUANTILE = 0.005

#: Probability mass of the reported bootstrap interval (one standard deviation's worth).
CI_LEVEL = 0.6827

#: Bins of the stored softness histograms P(S).
N_HIST = 100

#: Softness frames read at once (times the number of atoms, float32).
CHUNK_ELEMENTS = 2**24

_SEED_SALT = 0xA77E


def k_to_eV(e_K):
    """An energy given as a temperature (E / k_B, in K) in eV."""
    return units.kcal_per_mol_to_eV(units.KB * np.asarray(e_K, dtype=np.float64))


# ---------------------------------------------------------------------------- least squares

@dataclass
class Fit:
    """A linear least-squares fit.

    Attributes:
      params: [P] best-fit parameters.
      cov: [P, P] covariance (inflated by chi^2 / dof when that exceeds 1).
      chi2: chi^2 of the weighted residuals (sum of squared residuals when unweighted).
      dof: degrees of freedom (points - parameters).
    """

    params: np.ndarray
    cov: np.ndarray
    chi2: float
    dof: int

    @property
    def err(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    @property
    def chi2_dof(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else np.nan

    @classmethod
    def nan(cls, n_params: int) -> Fit:
        return cls(np.full(n_params, np.nan), np.full((n_params, n_params), np.nan), np.nan, 0)


def weighted_lstsq(A, y, sigma=None, *, inflate: bool = True) -> Fit:
    """Least squares y = A p, weighted by 1 / sigma^2 (or unweighted, errors from the scatter).

    Args:
      A: [M, P] design matrix; y: [M] data; sigma: [M] standard errors, or None.
      inflate: multiply the covariance by chi^2 / dof when that exceeds 1 (weighted case).

    Returns:
      :class:`Fit`. Unweighted fits with no degree of freedom have a NaN covariance.
    """
    A = np.asarray(A, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n_params = A.shape
    w = np.ones(m) if sigma is None else 1.0 / np.asarray(sigma, dtype=np.float64)
    Aw, yw = A * w[:, None], y * w
    # Columns scaled to unit norm keep the pseudo-inverse accurate whatever the units (1/T ~ 1e-4).
    norms = np.linalg.norm(Aw, axis=0)
    norms[norms == 0] = 1.0
    pinv = np.linalg.pinv(Aw / norms)
    params = (pinv @ yw) / norms
    cov = (pinv @ pinv.T) / np.outer(norms, norms)
    resid = yw - Aw @ params
    chi2 = float(resid @ resid)
    dof = m - n_params
    if sigma is None:
        cov = cov * (chi2 / dof) if dof > 0 else np.full_like(cov, np.nan)
    elif inflate and dof > 0 and chi2 > dof:
        cov = cov * (chi2 / dof)
    return Fit(params, cov, chi2, dof)


def generalised_lstsq(A_blocks, y_blocks, cov_blocks, *, inflate: bool = True) -> Fit:
    """Least squares with correlated data given as independent blocks, y_j = A_j p with cov C_j."""
    rows, data = [], []
    for A, y, C in zip(A_blocks, y_blocks, cov_blocks, strict=True):
        L_inv = np.linalg.inv(np.linalg.cholesky(np.asarray(C, dtype=np.float64)))
        rows.append(L_inv @ np.asarray(A, dtype=np.float64))
        data.append(L_inv @ np.asarray(y, dtype=np.float64))
    A, y = np.vstack(rows), np.concatenate(data)
    return weighted_lstsq(A, y, np.ones(y.size), inflate=inflate)


def curvature_test(x, y, sigma=None, *, p_value: float = 0.01) -> dict:
    """Does a quadratic term c x^2 improve the straight line y = p0 + p1 x significantly?

    The statistic is Delta chi^2 = chi^2(line) - chi^2(line + c x^2), which for a linear model is
    (c / err_c)^2. With errors that explain the scatter of the quadratic fit (chi^2 / dof <= 1, or
    no degree of freedom left) it is a likelihood-ratio test, Delta chi^2 against chi^2(1); where
    the scatter exceeds the errors they are scaled up by the Birge ratio, as in every covariance
    here, and the test becomes the F-test Delta chi^2 / (chi^2 / dof) against F(1, dof). Either
    way it asks whether c differs from 0 by more than its reported error allows. Unweighted data
    (``sigma`` None) always take the F-test and need a degree of freedom.

    Args:
      x, y: [M] data (M >= 3); sigma: [M] standard errors of y, or None.
      p_value: ``curved`` when the test's p-value is below this.

    Returns:
      dict with ``c`` (the coefficient of x^2, in units of y / x^2), ``c_err`` (Birge-inflated),
      ``p_value`` and ``curved`` (False when the test is impossible: p NaN).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = {"c": np.nan, "c_err": np.nan, "p_value": np.nan, "curved": False}
    dof = x.size - 3
    if dof < 0 or (sigma is None and dof < 1) or np.ptp(x) == 0:
        return out
    # Centred and scaled abscissa: c is unchanged by the shift and the fit well conditioned.
    scale = float(np.ptp(x))
    u = (x - x.mean()) / scale
    line = weighted_lstsq(np.stack([np.ones_like(u), u], axis=1), y, sigma)
    quad = weighted_lstsq(np.stack([np.ones_like(u), u, u**2], axis=1), y, sigma)
    delta = max(line.chi2 - quad.chi2, 0.0)
    if sigma is None or (dof > 0 and quad.chi2 > dof):
        p = float(stats.f.sf(delta / (quad.chi2 / dof), 1, dof))
    else:
        p = float(stats.chi2.sf(delta, 1))
    out.update(c=quad.params[2] / scale**2, c_err=quad.err[2] / scale**2, p_value=p, curved=bool(p < p_value))
    return out


# ---------------------------------------------------------------------------- the softness model

def usable_points(n_events, P_R, min_events: int, max_P_R: float) -> np.ndarray:
    """Which (T, bin) enter the fits: at least ``min_events`` events and P_R <= ``max_P_R``
    (below saturation). NaN P_R (no atoms) is never usable."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(n_events) >= min_events) & (np.asarray(P_R, dtype=np.float64) <= max_P_R)


def fit_bins(temperature_K, ln_p, ln_p_err, usable, *, min_temperatures: int = 4,
             curvature_p_value: float = 0.01) -> dict:
    """Arrhenius fit ln P_R = Sigma - DeltaE / T in every softness bin, with its quality.

    A bin is fitted only when it is usable at ``min_temperatures`` or more temperatures (two
    points always lie on a line). Each fitted bin is also fitted with a 1/T^2 term,
    ln P_R = Sigma - DeltaE / T + c / T^2 (:func:`curvature_test`), and flagged ``curved`` when
    c is significant at ``curvature_p_value`` after Holm's correction over the fitted bins
    (Holm, Scand. J. Stat. 6, 65 (1979)): the level is the chance that any straight bin of the
    species is flagged, not each one (with 8 bins at 0.01 each, 8 % of straight species would
    show a curved bin).

    Args:
      temperature_K: [T]; ln_p, ln_p_err, usable: [T, B].
      min_temperatures: usable temperatures a bin needs to be fitted.
      curvature_p_value: significance level of the curvature tests, family-wise over the bins.

    Returns:
      dict of [B] arrays ``Sigma``, ``DeltaE_K``, their errors, ``cov`` [B, 2, 2] of
      (Sigma, DeltaE_K), ``n_temperatures`` (usable ones), ``fitted``, ``chi2_dof``,
      ``chi2_p_value`` (of the line, with the errors as given), ``curvature_c_K2`` (c, in K^2)
      and its ``_err``, ``curvature_p_value`` (each bin's own), ``curvature_p_value_holm``
      (adjusted), ``curved`` and ``in_lines`` (fitted and not curved: the bins :func:`fit_lines`
      uses). NaN where not fitted.
    """
    inv_t = 1.0 / np.asarray(temperature_K, dtype=np.float64)
    ln_p, ln_p_err, usable = np.asarray(ln_p), np.asarray(ln_p_err), np.asarray(usable, bool)
    n_bins = ln_p.shape[1]
    out = {"Sigma": np.full(n_bins, np.nan), "DeltaE_K": np.full(n_bins, np.nan),
           "cov": np.full((n_bins, 2, 2), np.nan), "n_temperatures": np.zeros(n_bins, np.int64),
           "fitted": np.zeros(n_bins, bool), "chi2_dof": np.full(n_bins, np.nan),
           "chi2_p_value": np.full(n_bins, np.nan), "curvature_c_K2": np.full(n_bins, np.nan),
           "curvature_c_K2_err": np.full(n_bins, np.nan), "curvature_p_value": np.full(n_bins, np.nan),
           "curved": np.zeros(n_bins, bool)}
    for b in range(n_bins):
        with np.errstate(invalid="ignore"):
            use = usable[:, b] & np.isfinite(ln_p[:, b]) & (ln_p_err[:, b] > 0)
        n = int(use.sum())
        out["n_temperatures"][b] = n
        if n < max(min_temperatures, 2):
            continue
        A = np.stack([np.ones(n), -inv_t[use]], axis=1)
        fit = weighted_lstsq(A, ln_p[use, b], ln_p_err[use, b])
        out["fitted"][b] = True
        out["Sigma"][b], out["DeltaE_K"][b] = fit.params
        out["cov"][b] = fit.cov
        out["chi2_dof"][b] = fit.chi2_dof
        if fit.dof > 0:
            out["chi2_p_value"][b] = stats.chi2.sf(fit.chi2, fit.dof)
        curv = curvature_test(inv_t[use], ln_p[use, b], ln_p_err[use, b], p_value=curvature_p_value)
        out["curvature_c_K2"][b], out["curvature_c_K2_err"][b] = curv["c"], curv["c_err"]
        out["curvature_p_value"][b] = curv["p_value"]
    out["curvature_p_value_holm"] = holm_adjusted(out["curvature_p_value"])
    out["curved"] = out["curvature_p_value_holm"] < curvature_p_value
    out["Sigma_err"] = np.sqrt(out["cov"][:, 0, 0])
    out["DeltaE_K_err"] = np.sqrt(out["cov"][:, 1, 1])
    out["in_lines"] = out["fitted"] & ~out["curved"]
    return out


def holm_adjusted(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test).

    Rejecting where the adjusted p is below alpha keeps the chance of any false rejection among
    the tests at most alpha (Holm, Scand. J. Stat. 6, 65 (1979)).
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested])]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def fit_lines(s_bins, bins: dict) -> Fit:
    """Joint fit of DeltaE(S) = e0 - e1 S and Sigma(S) = Sigma0 - Sigma1 S to the fitted bins.

    Args:
      s_bins: [B] softness of each bin.
      bins: output of :func:`fit_bins`; only its ``in_lines`` bins (fitted, not curved) enter.

    Returns:
      :class:`Fit` of (e0_K, e1_K, Sigma0, Sigma1); NaN when fewer than two bins enter.
    """
    s_bins = np.asarray(s_bins, dtype=np.float64)
    passing = np.asarray(bins.get("in_lines", np.ones(s_bins.size, bool)), bool)
    ok = np.flatnonzero(passing & np.isfinite(bins["Sigma"]) & np.all(np.isfinite(bins["cov"]), axis=(1, 2))
                        & np.isfinite(s_bins))
    if ok.size < 2:
        return Fit.nan(4)
    A = [np.array([[0.0, 0.0, 1.0, -s_bins[b]], [1.0, -s_bins[b], 0.0, 0.0]]) for b in ok]
    y = [np.array([bins["Sigma"][b], bins["DeltaE_K"][b]]) for b in ok]
    return generalised_lstsq(A, y, [bins["cov"][b] for b in ok])


def crossing_temperature(lines: Fit) -> tuple[float, float]:
    """T0 = e1 / Sigma1, where the lines ln P_R(1/T) of all softness bins cross, and its error."""
    e1, s1 = lines.params[1], lines.params[3]
    t0 = e1 / s1
    grad = np.array([0.0, 1.0 / s1, 0.0, -e1 / s1**2])
    return float(t0), float(np.sqrt(grad @ lines.cov @ grad))


def fit_mean_softness(temperature_K, mean, err, *, curvature_p_value: float = 0.01) -> dict:
    """Weighted fit <S>(T) = a + b T, and whether a T^2 term improves it significantly.

    Returns:
      dict with the :class:`Fit` (``fit``: params (a, b)), ``chi2_dof``, the weighted ``R2``,
      ``n`` (temperatures with a mean), and the :func:`curvature_test` of <S> = a + b T + c T^2
      as ``curvature_c_per_K2``, ``curvature_c_per_K2_err``, ``curvature_p_value``, ``curved``.
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    mean, err = np.asarray(mean, dtype=np.float64), np.asarray(err, dtype=np.float64)
    ok = np.isfinite(mean)
    t, mean, err = t[ok], mean[ok], err[ok]
    out = {"fit": Fit.nan(2), "chi2_dof": np.nan, "R2": np.nan, "n": int(t.size),
           "curvature_c_per_K2": np.nan, "curvature_c_per_K2_err": np.nan, "curvature_p_value": np.nan,
           "curved": False}
    if t.size < 2:
        return out
    weighted = bool(np.all(np.isfinite(err) & (err > 0)))
    if not weighted:
        log.warning("<S>(T) has no usable error at some temperature; fitting it unweighted (chi2/dof NaN).")
        err = np.ones_like(mean)
    fit = weighted_lstsq(np.stack([np.ones_like(t), t], axis=1), mean, err if weighted else None)
    w = 1.0 / err**2
    ybar = np.sum(w * mean) / np.sum(w)
    ss_tot = np.sum(w * (mean - ybar) ** 2)
    r2 = 1.0 - fit.chi2 / ss_tot if ss_tot > 0 else np.nan
    curv = curvature_test(t, mean, err if weighted else None, p_value=curvature_p_value)
    out.update(fit=fit, chi2_dof=fit.chi2_dof if weighted else np.nan, R2=float(r2),
               curvature_c_per_K2=curv["c"], curvature_c_per_K2_err=curv["c_err"],
               curvature_p_value=curv["p_value"], curved=curv["curved"])
    return out


def _predicted_barrier_jacobians(t, lines: Fit, mean_fit: Fit):
    """d E_app / d(e0, e1, Sigma0, Sigma1) [..., 4] and d E_app / d(a, b) [..., 2] at temperatures t."""
    _, e1, _, s1 = lines.params
    a, b = mean_fit.params
    one = np.ones_like(t)
    g_lines = np.stack([one, -a * one, np.zeros_like(t), -b * t**2], axis=-1)
    g_mean = np.stack([-e1 * one, -s1 * t**2], axis=-1)
    return g_lines, g_mean


def predicted_barrier(temperature_K, lines: Fit, mean_fit: Fit, *, full_cov: bool = False):
    """E_app(T) = (e0 - e1 a) - Sigma1 b T^2 in K, with its propagated error.

    The two fits are independent (P_R counts vs mean softness), so their covariances add.

    Args:
      temperature_K: scalar or [T].
      lines, mean_fit: the fits of :func:`fit_lines` and of <S>(T) (params a, b).
      full_cov: also return the [T, T] covariance of E_app between the temperatures (the same
        parameters make the predictions at different T correlated).

    Returns:
      E_app and its error (and the covariance when ``full_cov``).
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    e0, e1, _, s1 = lines.params
    a, b = mean_fit.params
    e = e0 - e1 * a - s1 * b * t**2
    g_lines, g_mean = _predicted_barrier_jacobians(t, lines, mean_fit)
    var = (np.einsum("...i,ij,...j->...", g_lines, lines.cov, g_lines)
           + np.einsum("...i,ij,...j->...", g_mean, mean_fit.cov, g_mean))
    if not full_cov:
        return e, np.sqrt(var)
    g_lines, g_mean = np.atleast_2d(g_lines), np.atleast_2d(g_mean)
    cov = g_lines @ lines.cov @ g_lines.T + g_mean @ mean_fit.cov @ g_mean.T
    return e, np.sqrt(var), cov


def secant_barrier(temperature_K, ln_y, ln_y_err=None, *, sign: float = -1.0):
    """Apparent barrier sign * d ln y / d(1/T) between neighbouring temperatures.

    Args:
      temperature_K: [T] increasing; ln_y: [..., T] ln(rate) (sign -1) or ln(tau) (sign +1);
      ln_y_err: [..., T] errors or None.

    Returns:
      T_mid [T-1] = sqrt(T_i T_{i+1}), E [T-1] in K, E_err [T-1] (NaN without errors or
      where a value is missing).
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    x = 1.0 / t
    ln_y = np.asarray(ln_y, dtype=np.float64)
    dx = np.diff(x)
    e = sign * np.diff(ln_y, axis=-1) / dx
    if ln_y_err is None:
        err = np.full(e.shape, np.nan)
    else:
        ln_y_err = np.asarray(ln_y_err, dtype=np.float64)
        err = np.hypot(ln_y_err[..., 1:], ln_y_err[..., :-1]) / np.abs(dx)
    return np.sqrt(t[1:] * t[:-1]), e, err


def secant_covariance(temperature_K, ln_y_err) -> np.ndarray:
    """[T-1, T-1] covariance of the secants of :func:`secant_barrier` for independent ln y errors.

    Neighbouring secants share a temperature, so they are anti-correlated.
    """
    dx = np.diff(1.0 / np.asarray(temperature_K, dtype=np.float64))
    var = np.asarray(ln_y_err, dtype=np.float64) ** 2
    # Written out rather than D diag(var) D^T, so that a missing error (NaN) spoils only the
    # secants that use it.
    cov = np.diag((var[1:] + var[:-1]) / dx**2)
    shared = -var[1:-1] / (dx[1:] * dx[:-1])
    return cov + np.diag(shared, 1) + np.diag(shared, -1)


#: Significance level below which measured and predicted apparent barriers disagree (claim (d)).
CONSISTENCY_P_VALUE = 0.01


def barrier_consistency(T_mid_K, measured, measured_cov, predicted, predicted_cov, T_x_K) -> dict:
    """chi^2 of measured minus predicted apparent barriers, with both covariances.

    Only secants where the measured and predicted values and their variances are finite enter.

    Args:
      T_mid_K: [M] secant temperatures; measured, predicted: [M] (K); measured_cov, predicted_cov:
        [M, M]; T_x_K: the crossover temperature that splits the secants into below and above.

    Returns:
      dict with ``chi2``, ``dof`` (secants used), ``p_value`` (chi^2(dof) survival), ``n_below``
      and ``n_above`` (secants with T_mid below / above T_x; 0 when T_x is NaN), ``used`` [M].
    """
    t_mid = np.asarray(T_mid_K, dtype=np.float64)
    d = np.asarray(measured, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    cov = np.asarray(measured_cov, dtype=np.float64) + np.asarray(predicted_cov, dtype=np.float64)
    used = np.isfinite(d) & np.isfinite(np.diag(cov)) & (np.diag(cov) > 0)
    out = {"chi2": np.nan, "dof": int(used.sum()), "p_value": np.nan, "used": used,
           "n_below": int(np.sum(used & (t_mid < T_x_K))), "n_above": int(np.sum(used & (t_mid > T_x_K)))}
    if used.any():
        c = cov[np.ix_(used, used)]
        chi2 = float(d[used] @ np.linalg.solve(c, d[used]))
        out.update(chi2=chi2, p_value=float(stats.chi2.sf(chi2, used.sum())))
    return out


# ---------------------------------------------------------------------------- tau_alpha(T)

TAU_PARAMS = ("ln_tau0", "E_low_K", "E_high_K", "T_x_K")


def kinked_arrhenius(temperature_K, ln_tau0, E_low_K, E_high_K, T_x_K):
    """ln tau(T): Arrhenius with barrier E_low below T_x and E_high above, continuous at T_x.

    ln tau = ln tau0 + E_low / T for T <= T_x, and ln tau0 + E_low / T_x + E_high (1/T - 1/T_x)
    above: a straight line in 1/T with a kink at 1/T_x.
    """
    x = 1.0 / np.asarray(temperature_K, dtype=np.float64)
    x_x = 1.0 / T_x_K
    return ln_tau0 + E_low_K * np.maximum(x, x_x) + E_high_K * np.minimum(x - x_x, 0.0)


def _kinked_jacobian(temperature_K, ln_tau0, E_low_K, E_high_K, T_x_K):
    x = 1.0 / np.asarray(temperature_K, dtype=np.float64)
    x_x = 1.0 / T_x_K
    hot = x < x_x
    # d/dT_x of E_low / T_x + E_high (1/T - 1/T_x) on the hot side.
    d_tx = np.where(hot, -(E_low_K - E_high_K) / T_x_K**2, 0.0)
    return np.stack([np.ones_like(x), np.maximum(x, x_x), np.minimum(x - x_x, 0.0), d_tx], axis=1)


def _kink_profile(x, y, sigma, grid):
    """chi^2 of the best kinked line in x = 1/T with its kink at each x_x of ``grid`` (all at once)."""
    scale = x.mean()  # columns of order one keep the normal equations well conditioned
    u, g = x / scale, grid[:, None] / scale
    A = np.stack([np.ones((grid.size, x.size)), np.maximum(u, g), np.minimum(u - g, 0.0)], axis=-1)
    Aw, yw = A / sigma[:, None], y / sigma
    p = np.linalg.solve(np.einsum("gmi,gmj->gij", Aw, Aw), np.einsum("gmi,m->gi", Aw, yw)[..., None])
    resid = yw - (Aw @ p)[..., 0]
    return np.sum(resid**2, axis=1)


def fit_tau_crossover(temperature_K, tau_fs, tau_err_fs=None) -> dict:
    """Weighted nonlinear least squares of :func:`kinked_arrhenius` to ln tau_alpha(T).

    The kink is searched on the interval that leaves at least two temperatures on each side
    (T_(2) <= T_x <= T_(n-1), temperatures sorted): at fixed T_x the model is linear, so the
    profile chi^2(T_x) is scanned and minimised, then all four parameters are refined with
    :func:`scipy.optimize.curve_fit` for their covariance (inflated by chi^2 / dof when that
    exceeds 1, as every fit here). Weights are 1 / (tau_err / tau)^2 when every temperature has an
    error, else the fit is unweighted and the errors come from the scatter.

    Args:
      temperature_K, tau_fs: [T] (finite, positive, at least 5); tau_err_fs: [T] or None.

    Returns:
      dict with the ``params`` (:data:`TAU_PARAMS`), ``cov`` [4, 4], ``chi2``, ``dof``,
      ``weighted``, ``n_below`` / ``n_above`` (temperatures with T <= T_x / T >= T_x) and
      ``at_bound`` (T_x at the end of its interval: one side rests on two temperatures).
    """
    from scipy.optimize import curve_fit, minimize_scalar

    t = np.asarray(temperature_K, dtype=np.float64)
    order = np.argsort(t)
    t, y = t[order], np.log(np.asarray(tau_fs, dtype=np.float64)[order])
    sigma = None
    if tau_err_fs is not None:
        rel = np.asarray(tau_err_fs, dtype=np.float64)[order] / np.exp(y)
        if np.all(np.isfinite(rel) & (rel > 0)):
            sigma = rel
    x = 1.0 / t
    x_lo, x_hi = x[-2], x[1]  # kink between the 2nd-hottest and the 2nd-coldest temperature

    def profile(x_x):
        A = np.stack([np.ones_like(x), np.maximum(x, x_x), np.minimum(x - x_x, 0.0)], axis=1)
        return weighted_lstsq(A, y, sigma, inflate=False)

    grid = np.unique(np.r_[np.linspace(x_lo, x_hi, 801), x[(x >= x_lo) & (x <= x_hi)]])
    chi2 = _kink_profile(x, y, np.ones_like(x) if sigma is None else sigma, grid)
    k = int(np.argmin(chi2))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    x_x = grid[k]
    if hi > lo:
        res = minimize_scalar(lambda g: profile(g).chi2, bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-9 * x_hi})
        if res.fun < chi2[k]:
            x_x = float(res.x)
    p0 = [*profile(x_x).params, 1.0 / x_x]
    t_lo, t_hi = t[1], t[-2]
    p0[3] = float(np.clip(p0[3], t_lo, t_hi))
    bounds = ([-np.inf, -np.inf, -np.inf, t_lo], [np.inf, np.inf, np.inf, t_hi])
    try:
        params, cov = curve_fit(kinked_arrhenius, t, y, p0=p0, sigma=sigma, absolute_sigma=sigma is not None,
                                bounds=bounds, jac=_kinked_jacobian)
    except (RuntimeError, ValueError):
        params = np.asarray(p0)
        jac = _kinked_jacobian(t, *params) / (1.0 if sigma is None else sigma[:, None])
        cov = np.linalg.pinv(jac.T @ jac)
    w = 1.0 if sigma is None else 1.0 / sigma
    resid = (y - kinked_arrhenius(t, *params)) * w
    chi2_min = float(resid @ resid)
    dof = t.size - 4
    if sigma is not None and chi2_min > dof:
        cov = cov * (chi2_min / dof)  # Birge ratio; curve_fit already scales the unweighted case
    tx = params[3]
    span = t_hi - t_lo
    return {"params": np.asarray(params, dtype=np.float64), "cov": np.asarray(cov, dtype=np.float64),
            "chi2": chi2_min, "dof": dof, "weighted": sigma is not None,
            "n_below": int(np.sum(t <= tx)), "n_above": int(np.sum(t >= tx)),
            "at_bound": bool(min(tx - t_lo, t_hi - tx) <= 1e-6 * span)}


def tau_alpha_crossover(temperature_K, tau_fs, tau_err_fs=None, species: str = "") -> dict:
    """The crossover temperature T_x of tau_alpha(T), with its error, by :func:`fit_tau_crossover`.

    E_low > E_high is the strong-to-fragile crossover on heating (Arrhenius at low T, a smaller
    apparent barrier at high T); the opposite is reported in a warning.

    Args:
      temperature_K: [T]; tau_fs: [T] (NaN where not reached); tau_err_fs: [T] or None.
      species: named in warnings.

    Returns:
      dict with the parameters of :data:`TAU_PARAMS` and their ``_err``, ``cov`` [4, 4],
      ``chi2_dof``, ``dof``, ``n``, ``n_below``, ``n_above``, ``weighted``, ``at_bound``,
      ``E_low_minus_E_high_K`` (+ ``_err``), ``strong_to_fragile`` and ``T_range_K``; NaN (and
      a warning saying how many temperatures each side has) when the data cannot fix a kink.
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    tau = np.asarray(tau_fs, dtype=np.float64)
    err = None if tau_err_fs is None else np.asarray(tau_err_fs, dtype=np.float64)
    ok = np.isfinite(tau) & (tau > 0)
    n = int(ok.sum())
    out = {key: np.nan for key in TAU_PARAMS}
    out.update({f"{key}_err": np.nan for key in TAU_PARAMS})
    out.update(cov=np.full((4, 4), np.nan), chi2_dof=np.nan, dof=max(n - 4, 0), n=n, n_below=0, n_above=0,
               weighted=False, at_bound=False, E_low_minus_E_high_K=np.nan, E_low_minus_E_high_K_err=np.nan,
               strong_to_fragile=False, kink="",
               T_range_K=(float(t[ok].min()), float(t[ok].max())) if n else (np.nan, np.nan))
    if n < 5:
        # The best any kink can do with n points: half of them on each side.
        below, above = (n + 1) // 2, n - (n + 1) // 2 + (n % 2)
        log.warning("%s: tau_alpha is known at %d temperature(s); a crossover fit (4 parameters, a kink "
                    "with at least 2 temperatures on each side and one degree of freedom) needs 5; at most "
                    "%d below and %d above T_x are possible, so E_low, E_high and T_x are NaN.",
                    species, n, below, above)
        return out
    if err is not None and not np.all(np.isfinite(err[ok]) & (err[ok] > 0)):
        log.warning("%s: tau_alpha has no error at some temperature; the crossover fit is unweighted "
                    "(errors from the scatter).", species)
    fit = fit_tau_crossover(t[ok], tau[ok], None if err is None else err[ok])
    perr = np.sqrt(np.diag(fit["cov"]))
    for key, value, e in zip(TAU_PARAMS, fit["params"], perr, strict=True):
        out[key], out[f"{key}_err"] = float(value), float(e)
    g = np.array([0.0, 1.0, -1.0, 0.0])
    out.update(cov=fit["cov"], chi2_dof=fit["chi2"] / fit["dof"], dof=fit["dof"], n_below=fit["n_below"],
               n_above=fit["n_above"], weighted=fit["weighted"], at_bound=fit["at_bound"],
               E_low_minus_E_high_K=out["E_low_K"] - out["E_high_K"],
               E_low_minus_E_high_K_err=float(np.sqrt(g @ fit["cov"] @ g)),
               strong_to_fragile=bool(out["E_low_K"] > out["E_high_K"]))
    if fit["at_bound"]:
        log.warning("%s: the tau_alpha kink T_x = %.4g K sits at the end of the range that leaves two "
                    "temperatures on each side (%d below, %d above); the crossover may lie outside the data.",
                    species, out["T_x_K"], fit["n_below"], fit["n_above"])
    out["kink"] = kink_kind(out["E_low_minus_E_high_K"], out["E_low_minus_E_high_K_err"])
    if out["kink"] == "none":
        log.warning("%s: tau_alpha shows no significant kink (E_low - E_high = %.3g +- %.2g K): the data do "
                    "not fix a crossover temperature, and T_x = %.4g K is not a measurement of one.", species,
                    out["E_low_minus_E_high_K"], out["E_low_minus_E_high_K_err"], out["T_x_K"])
    elif out["kink"] == "fragile-to-strong":
        log.warning("%s: tau_alpha's apparent barrier is larger above T_x = %.4g K (E_high = %.4g K) than "
                    "below (E_low = %.4g K): the data show no strong-to-fragile crossover on heating.",
                    species, out["T_x_K"], out["E_high_K"], out["E_low_K"])
    return out


def kink_kind(delta_K: float, delta_err_K: float, n_sigma: float = 2.0) -> str:
    """What the kink of tau_alpha(T) says: 'strong-to-fragile' (E_low - E_high above ``n_sigma``
    errors), 'fragile-to-strong' (below minus that), 'none' (within it), '' (not fitted)."""
    if not (np.isfinite(delta_K) and np.isfinite(delta_err_K)):
        return ""
    if delta_K > n_sigma * delta_err_K:
        return "strong-to-fragile"
    return "fragile-to-strong" if delta_K < -n_sigma * delta_err_K else "none"


def flag_temperatures(tau_alpha_fs, t_R_fs, min_ratio: float, max_lag_fs=None):
    """Temperatures with no cage jumps to count, per species.

    A cage jump is a rare escape from a long-lived cage: where tau_alpha is not well above the
    p_hop window t_R, every atom leaves its cage within a window and p_hop measures flow, not
    jumps. Such a temperature is flagged where tau_alpha < ``min_ratio`` t_R, or where tau_alpha
    was not reached (NaN) unless the longest lag of the dynamics, a lower bound on tau_alpha
    there, already shows tau_alpha >= ``min_ratio`` t_R (a cold run shorter than tau_alpha has
    cage jumps, only rare ones). An unknown t_R (NaN) flags nothing.

    Args:
      tau_alpha_fs: [S, T]; t_R_fs: [T] (the hops files' window); min_ratio: the bound on tau / t_R;
      max_lag_fs: [T] longest lag at which F_s was measured, or None (unknown).

    Returns:
      flagged [S, T] bool, reason [S, T] str ('' where not flagged), ratio [S, T] tau_alpha / t_R.
    """
    tau = np.asarray(tau_alpha_fs, dtype=np.float64)
    t_r = np.broadcast_to(np.asarray(t_R_fs, dtype=np.float64), tau.shape)
    lag = np.asarray(np.nan if max_lag_fs is None else max_lag_fs, dtype=np.float64)
    lag = np.broadcast_to(lag, tau.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = tau / t_r
        slow = lag >= min_ratio * t_r  # NaN lag: False
    known = np.isfinite(t_r)
    not_reached = known & ~np.isfinite(tau) & ~slow
    short = known & np.isfinite(tau) & (ratio < min_ratio)
    reason = np.full(tau.shape, "", dtype=object)
    for sp, k in zip(*np.nonzero(not_reached), strict=True):
        reason[sp, k] = "tau_alpha not reached"
    for sp, k in zip(*np.nonzero(short), strict=True):
        reason[sp, k] = (f"tau_alpha {tau[sp, k]:.4g} fs < {min_ratio:g} t_R "
                         f"({min_ratio * t_r[sp, k]:.4g} fs): no cage jumps to count")
    return not_reached | short, reason.astype(str), ratio


def _hops_t_R_fs(item: TemperatureData) -> float:
    """The p_hop window t_R of a temperature's hops file (NaN if it does not say)."""
    with open_input(item.hops, "hops") as fh:
        return float(fh.attrs.get("t_R_fs", np.nan))


# ---------------------------------------------------------------------------- counting

def bootstrap_ratio(events, totals, block: int, n_boot: int, rng):
    """P = sum(events) / sum(totals) with a block bootstrap over the leading (frame) axis.

    Args:
      events, totals: [F, ...] counts per frame.
      block: frames per block.
      n_boot: resamples.
      rng: numpy Generator.

    Returns:
      P [...], ln_P_err [...] (std of ln P over resamples), ci_low, ci_high [...] (CI_LEVEL
      percentiles of P).
    """
    return pooled_bootstrap_ratio([events], [totals], [block], n_boot, rng)


def blocked_standard_error(series, min_blocks: int = 8) -> float:
    """Standard error of the mean of a correlated series by blocking (Flyvbjerg-Petersen).

    Returns the largest estimate over block sizes 1, 2, 4, ... that leave ``min_blocks`` blocks
    (the naive estimate for a series shorter than that; NaN for fewer than two values).
    """
    x = np.asarray(series, dtype=np.float64)
    if x.size < 2:
        return np.nan
    best = x.std(ddof=1) / np.sqrt(x.size)  # too short to block: the naive error
    while x.size >= min_blocks:
        se = x.std(ddof=1) / np.sqrt(x.size)
        best = se if not np.isfinite(best) else max(best, se)
        x = 0.5 * (x[: x.size // 2 * 2 : 2] + x[1 : x.size // 2 * 2 : 2])
    return float(best)


def P_R_window_frames(window_fs: float, frame_fs: float, where: str) -> int:
    """Hops frames in the P_R window Delta: ``round(window_fs / frame_fs)``.

    Args:
      window_fs: Delta, ``arrhenius.P_R_window_fs``.
      frame_fs: time between consecutive hops frames.
      where: the hops file, named in messages.

    Raises:
      SoftnessError: Delta is shorter than one frame interval.
    """
    if not window_fs >= frame_fs * (1 - 1e-9):
        raise SoftnessError(f"config key 'arrhenius.P_R_window_fs' ({window_fs:g} fs) is shorter than the "
                            f"frame interval of {where} ({frame_fs:g} fs); it must span at least one frame.")
    n = int(round(window_fs / frame_fs))
    if abs(n * frame_fs - window_fs) > 1e-6 * window_fs:
        log.warning("arrhenius.P_R_window_fs = %g fs is not a multiple of the frame interval %g fs of %s; "
                    "using %g fs.", window_fs, frame_fs, where, n * frame_fs)
    return n


def hops_frame_interval_fs(fh) -> float:
    """Time between consecutive trajectory frames of an open hops file (from ``/time_fs``, ``/frames``)."""
    frames, time_fs = fh["frames"][()], fh["time_fs"][()]
    if frames.size < 2:
        raise SoftnessError(f"hops file {fh.filename} has {frames.size} frame(s); at least two are needed.")
    return float(np.median(np.diff(time_fs) / np.diff(frames)))


def event_windows(softness_frames, hops_frames, window_frames: int):
    """Rows [lo, hi) of the hops file in each softness frame's P_R window, and whether it is complete.

    The window of softness frame f is the trajectory frames f, f + 1, ..., f + window_frames - 1.

    Returns:
      lo, hi: [F_s] row ranges; complete: [F_s] bool, every frame of the window is in the hops file.
    """
    sf = np.asarray(softness_frames, dtype=np.int64)
    hf = np.asarray(hops_frames, dtype=np.int64)
    if sf.size > 1 and np.any(np.diff(sf) <= 0):
        raise SoftnessError("softness '/frames' must be strictly increasing.")
    if hf.size > 1 and np.any(np.diff(hf) <= 0):
        raise SoftnessError("hops '/frames' must be strictly increasing.")
    lo = np.searchsorted(hf, sf, side="left")
    hi = np.searchsorted(hf, sf + window_frames, side="left")
    return lo, hi, (hi - lo) == window_frames  # frames are distinct integers: all there iff as many


def _window_chunks(lo, n_atoms: int):
    """Ranges of softness frames whose windows span a bounded number of hops rows."""
    step = max(1, CHUNK_ELEMENTS // max(n_atoms, 1))
    f0 = 0
    while f0 < lo.size:
        f1 = min(f0 + step, max(f0 + 1, int(np.searchsorted(lo, lo[f0] + step, side="left"))))
        yield f0, f1
        f0 = f1


def _window_events(fh, lo, hi, complete, f0, f1):
    """Events in the P_R windows of softness frames f0..f1-1.

    Returns:
      any [f1 - f0, N] bool (at least one event in the window), count [f1 - f0, N] (events in
      the window), valid [f1 - f0, N] (complete window, every event located).
    """
    r0, r1 = int(lo[f0]), int(max(hi[f0:f1].max(), lo[f0]))
    n_atoms = fh["events"].shape[1]
    ev = fh["events"][r0:r1] if r1 > r0 else np.zeros((0, n_atoms), np.int8)
    zero = np.zeros((1, n_atoms), np.int32)
    n_ev = np.concatenate([zero, np.cumsum(ev == 1, axis=0, dtype=np.int32)])
    unseen = np.concatenate([zero, np.cumsum(ev < 0, axis=0, dtype=np.int32)])
    a, b = lo[f0:f1] - r0, hi[f0:f1] - r0
    count = n_ev[b] - n_ev[a]
    valid = complete[f0:f1, None] & ((unseen[b] - unseen[a]) == 0)
    return count > 0, count, valid


@dataclass
class TemperatureData:
    """One run at one temperature: its files and the per-frame counts derived from them.

    A temperature has one such run, or several independent ones (``run.replicas_per_temperature``),
    which :func:`_temperatures` groups; ``trajectory`` is the MD product the three files were made
    from, the key that pairs them ("" where a temperature has one file of each kind).
    """

    temperature_K: float
    softness: Path
    hops: Path
    dynamics: Path
    frame_interval_fs: float = np.nan
    block_frames: int = 1
    trajectory: str = ""


def _open_triplet(item: TemperatureData):
    """Open a run's softness and hops files; they must describe the same atoms and species.

    Returns:
      fs, fh (open files) and the species names.
    """
    fs = open_input(item.softness, "softness")
    fh = open_input(item.hops, "hops")
    try:
        require(fs, "softness", "frames", "species", what="softness")
        require(fh, "events", "frames", "time_fs", "species", what="hops")
        names = species_names_of(fs, "softness", item.softness)
        if species_names_of(fh, "hops", item.hops) != names:
            raise SoftnessError(f"softness file {item.softness} and hops file {item.hops} name different "
                                "species ('/species_names' differ).")
        if not np.array_equal(fs["species"][()], fh["species"][()]):
            raise SoftnessError(f"softness file {item.softness} and hops file {item.hops} describe different "
                                "atoms ('/species' differ).")
    except BaseException:
        fs.close()
        fh.close()
        raise
    return fs, fh, names


def _event_softness(item: TemperatureData, rng, window_frames: int, cap: int = 2_000_000):
    """Softness of every rearranging (frame, atom) per species (subsampled beyond ``cap``), and S range.

    ``window_frames`` is Delta in frames (:func:`P_R_window_frames`).

    Returns:
      values (a list with one array per species), s_min [S], s_max [S].
    """
    fs, fh, names = _open_triplet(item)
    n_sp = len(names)
    with fs, fh:
        species = fs["species"][()]
        lo, hi, complete = event_windows(fs["frames"][()], fh["frames"][()], window_frames)
        s_ds = fs["softness"]
        out = [[] for _ in range(n_sp)]
        s_min, s_max = np.full(n_sp, np.inf), np.full(n_sp, -np.inf)
        for f0, f1 in _window_chunks(lo, s_ds.shape[1]):
            s = s_ds[f0:f1]
            event, _, valid = _window_events(fh, lo, hi, complete, f0, f1)
            for sp in range(n_sp):
                mine = species == sp
                if not mine.any():
                    continue
                out[sp].append(s[:, mine][event[:, mine] & valid[:, mine]])
                s_min[sp] = min(s_min[sp], float(s[:, mine].min()))
                s_max[sp] = max(s_max[sp], float(s[:, mine].max()))
    values = []
    for sp in range(n_sp):
        v = np.concatenate(out[sp]) if out[sp] else np.zeros(0, np.float32)
        if v.size > cap:
            v = rng.choice(v, cap, replace=False)
        values.append(v)
    return values, s_min, s_max


def softness_bin_edges(event_softness, n_bins: int) -> np.ndarray:
    """Edges of ``n_bins`` bins holding equal numbers of events, from the 0.5 % to the 99.5 % quantile."""
    v = np.asarray(event_softness, dtype=np.float64)
    if v.size < n_bins:
        return np.full(n_bins + 1, np.nan)
    edges = np.quantile(v, np.linspace(TAIL_QUANTILE, 1 - TAIL_QUANTILE, n_bins + 1))
    if np.any(np.diff(edges) <= 0):
        edges = np.maximum.accumulate(edges + np.arange(edges.size) * 1e-9 * max(1.0, np.ptp(edges)))
    return edges


def count_temperature(item: TemperatureData, edges, hist_edges, window_frames: int) -> dict:
    """Per-frame counts of one temperature, per species.

    Args:
      item: the temperature's files.
      edges: [S, B + 1] softness bin edges; hist_edges: [S, N_HIST + 1].
      window_frames: Delta in frames (:func:`P_R_window_frames`).

    Returns:
      dict of per-species lists: ``events`` / ``totals`` [F, B] (binned (frame, atom) counts:
      rearranging within Delta / counted), ``s_sum`` [B] (sum of S of binned atoms),
      ``all_events`` / ``all_totals`` [F] (every atom), ``all_counts`` [F] (events of every
      counted atom inside its window, several per window possible), ``mean_S`` [F] per-frame
      mean softness, ``hist`` [N_HIST] softness histogram counts.
    """
    fs, fh, names = _open_triplet(item)
    n_sp = len(names)
    if np.shape(edges)[0] != n_sp:
        raise SoftnessError(f"softness file {item.softness} names {n_sp} species ({', '.join(names)}) but "
                            f"the softness bins are for {np.shape(edges)[0]}.")
    with fs, fh:
        species = fs["species"][()]
        lo, hi, complete = event_windows(fs["frames"][()], fh["frames"][()], window_frames)
        s_ds = fs["softness"]
        n_frames = s_ds.shape[0]
        n_bins = edges.shape[1] - 1
        res = {"events": [np.zeros((n_frames, n_bins)) for _ in range(n_sp)],
               "totals": [np.zeros((n_frames, n_bins)) for _ in range(n_sp)],
               "s_sum": [np.zeros(n_bins) for _ in range(n_sp)],
               "all_events": [np.zeros(n_frames) for _ in range(n_sp)],
               "all_totals": [np.zeros(n_frames) for _ in range(n_sp)],
               "all_counts": [np.zeros(n_frames) for _ in range(n_sp)],
               "mean_S": [np.full(n_frames, np.nan) for _ in range(n_sp)],
               "hist": [np.zeros(N_HIST) for _ in range(n_sp)]}
        for f0, f1 in _window_chunks(lo, s_ds.shape[1]):
            s = s_ds[f0:f1].astype(np.float64)
            event, count, valid = _window_events(fh, lo, hi, complete, f0, f1)
            nf = f1 - f0
            for sp in range(n_sp):
                mine = species == sp
                if not mine.any():
                    continue
                ss, ev, va = s[:, mine], event[:, mine], valid[:, mine]
                res["mean_S"][sp][f0:f1] = ss.mean(axis=1)
                res["hist"][sp] += np.histogram(ss, bins=hist_edges[sp])[0]
                res["all_events"][sp][f0:f1] = (ev & va).sum(axis=1)
                res["all_totals"][sp][f0:f1] = va.sum(axis=1)
                res["all_counts"][sp][f0:f1] = np.where(va, count[:, mine], 0).sum(axis=1)
                e = edges[sp]
                if not np.all(np.isfinite(e)):
                    continue
                b = np.searchsorted(e[1:-1], ss, side="right")
                inside = va & (ss >= e[0]) & (ss <= e[-1])
                idx = (np.arange(nf)[:, None] * n_bins + b)[inside]
                size = nf * n_bins
                res["totals"][sp][f0:f1] = np.bincount(idx, minlength=size).reshape(nf, n_bins)
                res["events"][sp][f0:f1] = np.bincount(idx, weights=ev[inside],
                                                       minlength=size).reshape(nf, n_bins)
                res["s_sum"][sp] += np.bincount(b[inside], weights=ss[inside], minlength=n_bins)
    return res


def _read_dynamics(item: TemperatureData) -> dict:
    """tau_alpha, its block error (NaN where the file has none: the fits are then unweighted), D."""
    with open_input(item.dynamics, "dynamics") as f:
        require(f, "tau_alpha_fs", "D_A2_per_fs", "D_err_A2_per_fs", what="dynamics")
        out = {"tau": f["tau_alpha_fs"][()].astype(np.float64), "D": f["D_A2_per_fs"][()].astype(np.float64),
               "D_err": f["D_err_A2_per_fs"][()].astype(np.float64)}
        out["tau_err"] = (f["tau_alpha_err_fs"][()].astype(np.float64) if "tau_alpha_err_fs" in f
                          else np.full(out["tau"].shape, np.nan))
        lags = f["lag_time_fs"][()] if "lag_time_fs" in f else np.zeros(0)
        out["max_lag"] = float(np.max(lags)) if lags.size else np.nan  # a lower bound where not reached
        if "tau_alpha_reached" in f:
            out["tau"] = np.where(f["tau_alpha_reached"][()], out["tau"], np.nan)
        if "diffusive" in f:
            out["D"] = np.where(f["diffusive"][()], out["D"], np.nan)
    return out


# ---------------------------------------------------------------------------- independent runs

def pooled_bootstrap_ratio(events_runs, totals_runs, blocks, n_boot: int, rng):
    """:func:`bootstrap_ratio` of counts pooled over the independent runs of one temperature.

    P = (events summed over runs and frames) / (totals likewise). Each run is cut into its own
    blocks of ``blocks[r]`` frames, so no block spans two runs, and each resample draws, for every
    run, as many blocks as it has from that run's blocks alone (a bootstrap stratified by run): a
    resample keeps each run's share of the data, and the spread of the ratio is that of the
    fluctuations within runs, which independent runs add up like independent blocks. One run:
    the plain block bootstrap.

    Args:
      events_runs, totals_runs: per run, [F_r, ...] counts per frame (same trailing shape).
      blocks: per run, frames per block.
      n_boot: resamples.
      rng: numpy Generator.

    Returns:
      P, ln_P_err, ci_low, ci_high [...] as :func:`bootstrap_ratio`.
    """
    tail = np.asarray(events_runs[0]).shape[1:]
    ev_b, tot_b, weights = [], [], []
    for events, totals, block in zip(events_runs, totals_runs, blocks, strict=True):
        events = np.asarray(events, dtype=np.float64)
        if events.shape[0] == 0:  # a run with no softness frame adds nothing
            continue
        starts = np.arange(0, events.shape[0], max(1, int(block)))
        ev_b.append(np.add.reduceat(events, starts, axis=0).reshape(starts.size, -1))
        totals = np.asarray(totals, dtype=np.float64)
        tot_b.append(np.add.reduceat(totals, starts, axis=0).reshape(starts.size, -1))
        nb = starts.size
        weights.append(rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_boot).astype(np.float64))
    if not ev_b:
        nan = np.full(tail, np.nan)
        return nan, nan.copy(), nan.copy(), nan.copy()
    ev_b, tot_b, w = np.concatenate(ev_b), np.concatenate(tot_b), np.concatenate(weights, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = ev_b.sum(0) / tot_b.sum(0)
        p_star = (w @ ev_b) / (w @ tot_b)
        ln_star = np.where(p_star > 0, np.log(np.where(p_star > 0, p_star, 1.0)), np.nan)
    ln_err, lo, hi = (np.full(p.shape, np.nan) for _ in range(3))
    enough = np.isfinite(ln_star).sum(0) >= 2
    if enough.any():
        with np.errstate(invalid="ignore"):
            ln_err[enough] = np.nanstd(ln_star[:, enough], axis=0, ddof=1)
            q = np.nanpercentile(np.where(np.isfinite(p_star), p_star, np.nan)[:, enough],
                                 [50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)], axis=0)
        lo[enough], hi[enough] = q
    return p.reshape(tail), ln_err.reshape(tail), lo.reshape(tail), hi.reshape(tail)


def pooled_mean(series_runs) -> tuple[float, float]:
    """Mean of per-frame values pooled over independent runs, and its error.

    The mean over every frame of every run; its error combines the runs' blocking errors
    (:func:`blocked_standard_error`) as those of independent means weighted by their frame
    counts, sqrt(sum_r (n_r / n)^2 err_r^2). One run: its mean and blocking error.

    Returns:
      (mean, error); NaN for no frames.
    """
    series = [np.asarray(x, dtype=np.float64) for x in series_runs]
    series = [x for x in series if x.size]
    if not series:
        return np.nan, np.nan
    if len(series) == 1:
        return float(series[0].mean()), blocked_standard_error(series[0])
    n = np.array([x.size for x in series], dtype=np.float64)
    err = np.array([blocked_standard_error(x) for x in series])
    return float(np.concatenate(series).mean()), float(np.sqrt(np.sum((n / n.sum()) ** 2 * err**2)))


def mean_over_runs(values, block_errors):
    """A quantity measured in each independent run at one temperature (tau_alpha, D): the mean over
    runs and its error.

    * 1 run: its value and its block error (:mod:`softness.dynamics`).
    * 2 runs: the larger of the block error of the mean, sqrt(sum_r err_r^2) / 2, and the error
      from the spread of the two, |x_1 - x_2| / 2 (= std / sqrt(2)): one degree of freedom makes
      the spread alone too uncertain, and blocks shorter than a few tau_alpha (the cold side)
      make the block errors too small.
    * 3 or more runs: the spread over runs alone, std(ddof=1) / sqrt(n): independent runs need
      no assumption on block lengths.

    A value that is NaN in any run (tau_alpha not reached, D not diffusive) is NaN: the mean of
    the runs where it was measured would be biased towards the faster ones.

    Args:
      values, block_errors: [R, ...] per run (block errors may be NaN: then 2 runs use the spread).

    Returns:
      mean [...], error [...].
    """
    x = np.asarray(values, dtype=np.float64)
    e = np.asarray(block_errors, dtype=np.float64)
    n = x.shape[0]
    if n == 1:
        return x[0], e[0]
    mean = x.mean(axis=0)
    spread = x.std(axis=0, ddof=1) / np.sqrt(n)
    if n >= 3:
        err = spread
    else:
        # (fmax: where the block errors are unknown, the spread)
        err = np.fmax(np.sqrt(np.sum(e**2, axis=0)) / n, spread)
    return mean, np.where(np.isfinite(mean), err, np.nan)


def _pooled_dynamics(runs: list[TemperatureData]) -> dict:
    """tau_alpha, D and their errors at one temperature from its runs (:func:`mean_over_runs`); the
    per-run values (``tau_runs``, ``D_runs`` [S, R]) and the shortest longest lag."""
    per_run = [_read_dynamics(it) for it in runs]
    out = {"tau_runs": np.stack([d["tau"] for d in per_run], axis=1),
           "D_runs": np.stack([d["D"] for d in per_run], axis=1),
           "max_lag": float(np.min([d["max_lag"] for d in per_run]))}
    out["tau"], out["tau_err"] = mean_over_runs([d["tau"] for d in per_run], [d["tau_err"] for d in per_run])
    out["D"], out["D_err"] = mean_over_runs([d["D"] for d in per_run], [d["D_err"] for d in per_run])
    return out


def _trajectory_of(path, kind: str) -> str:
    """The trajectory a hops, dynamics or softness file was made from, as a normalised path.

    Hops and dynamics files name it (attribute ``source``); a softness file names its features
    file (``features_source``), and that file names the trajectory (``source``). Relative paths
    are taken from the working directory, as the stages that wrote them were run.

    Raises:
      SoftnessError: a file that does not say, or a features file that cannot be read.
    """
    attr = "features_source" if kind == "softness" else "source"
    with open_input(path, kind) as f:
        src = f.attrs.get(attr)
    if src and kind == "softness":
        features = src
        try:
            with open_input(features, "features") as ff:
                src = ff.attrs.get("source")
        except SoftnessError:
            raise SoftnessError(f"softness file {path} was made from features file {features}, which cannot "
                                "be read, so the run it belongs to is unknown.") from None
    if not src:
        raise SoftnessError(f"{kind} file {path} does not name the trajectory it comes from (attribute "
                            f"'{attr}'), so it cannot be paired with the other files of its run.")
    return os.path.normpath(os.path.abspath(str(src)))


def _pair_runs(temperature_K: float, files: dict) -> list[TemperatureData]:
    """The independent runs at one temperature: its softness, hops and dynamics files paired by the
    trajectory each comes from, in the order of the softness files.

    Args:
      temperature_K: the temperature (for messages).
      files: {"softness" | "hops" | "dynamics": [paths]}, as many of each.
    """
    t = temperature_K
    by_trajectory = {}
    for kind, paths in files.items():
        table = {}
        for p in paths:
            traj = _trajectory_of(p, kind)
            if traj in table:
                raise SoftnessError(f"{kind} files {table[traj]} and {p} at {t:g} K both come from {traj}; "
                                    "give one of each kind per run.")
            table[traj] = p
        by_trajectory[kind] = table
    runs = list(by_trajectory["softness"])
    for kind in ("hops", "dynamics"):
        unmatched = sorted(set(runs) ^ set(by_trajectory[kind]))
        if unmatched:
            raise SoftnessError(f"the {kind} and softness files at {t:g} K come from different trajectories "
                                f"({unmatched[0]} has only one of them); give a softness, hops and dynamics "
                                "file for every run.")
    return [TemperatureData(t, by_trajectory["softness"][tr], by_trajectory["hops"][tr],
                            by_trajectory["dynamics"][tr], trajectory=tr) for tr in runs]


def _temperatures(softness, hops, dynamics) -> list[list[TemperatureData]]:
    """Group the files by their ``temperature_K`` attribute, sorted by temperature, into runs.

    One softness, hops and dynamics file at a temperature is its one run (paired by temperature
    alone). Several at one temperature, its independent runs (``run.replicas_per_temperature``),
    must come in matching sets, as many of each kind, and are paired by the trajectory each was
    made from (:func:`_pair_runs`).

    Returns:
      Per temperature, its runs (the order of the softness files).
    """
    by_kind = {}
    for kind, paths in (("softness", softness), ("hops", hops), ("dynamics", dynamics)):
        table, seen = {}, set()
        for p in paths:
            with open_input(p, kind) as f:
                t = float(f.attrs.get("temperature_K", np.nan))
            if not np.isfinite(t):
                raise SoftnessError(f"{kind} file {p} has no temperature_K attribute.")
            if Path(p).resolve() in seen:
                raise SoftnessError(f"{kind} file {p} is given twice; give one file of each kind per run.")
            seen.add(Path(p).resolve())
            table.setdefault(round(t, 6), []).append(Path(p))
        by_kind[kind] = table
    temps = sorted(by_kind["softness"])
    for kind in ("hops", "dynamics"):
        if sorted(by_kind[kind]) != temps:
            raise SoftnessError(
                f"the {kind} files are at {sorted(by_kind[kind])} K but the softness files at {temps} K; "
                "give one of each per temperature.")
    if len(temps) < 2:
        raise SoftnessError(f"only {len(temps)} temperature ({temps} K) was given; the Arrhenius analysis "
                            "needs at least two.")
    out = []
    for t in temps:
        files = {kind: table[t] for kind, table in by_kind.items()}
        n = {kind: len(paths) for kind, paths in files.items()}
        if len(set(n.values())) > 1:
            raise SoftnessError(f"at {t:g} K there are {n['softness']} softness, {n['hops']} hops and "
                                f"{n['dynamics']} dynamics files; give one of each kind per run.")
        if n["softness"] == 1:
            out.append([TemperatureData(t, files["softness"][0], files["hops"][0], files["dynamics"][0])])
        else:
            out.append(_pair_runs(t, files))
    return out


# ---------------------------------------------------------------------------- the analysis

def analyse(cfg: dict, softness, hops, dynamics) -> dict:
    """Everything the ``softness arrhenius`` stage stores, as a dict of arrays and scalars.

    Args:
      cfg: resolved config (uses ``seed`` and ``arrhenius``).
      softness, hops, dynamics: lists of files, one of each per temperature and run (any order;
        several runs at one temperature are paired by their trajectory, :func:`_temperatures`).

    Returns:
      dict keyed like the product (see :func:`arrhenius_file`): one entry per temperature, its
      runs pooled (``n_runs`` [T] says how many); per-species arrays [S, ...] in the order of
      ``species_names`` (every file's, which must all be the same); ``attrs`` holds ``system``
      when the files name one.
    """
    acfg = cfg["arrhenius"]
    per_temperature = _temperatures(softness, hops, dynamics)  # [T][run]
    names, system = input_species_and_system(per_temperature)
    n_sp = len(names)
    items = [runs[0] for runs in per_temperature]  # run 0 of each temperature (t_R, frame interval)
    temps = np.array([it.temperature_K for it in items])
    n_t, n_bins = temps.size, acfg["n_bins"]
    n_runs = np.array([len(runs) for runs in per_temperature])
    seed = int(cfg["seed"])
    t_train = set()
    window_fs = np.zeros(n_t)  # Delta per temperature
    window_frames = [np.zeros(len(runs), np.int64) for runs in per_temperature]  # Delta in frames, per run
    for k, runs in enumerate(per_temperature):
        for j, it in enumerate(runs):
            with open_input(it.softness, "softness") as fs, open_input(it.hops, "hops") as fh:
                require(fh, "frames", "time_fs", what="hops")
                t_train.add(float(fs.attrs.get("T_train_K", np.nan)))
                hops_dt = hops_frame_interval_fs(fh)
                window_frames[k][j] = P_R_window_frames(acfg["P_R_window_fs"], hops_dt,
                                                        f"hops file {it.hops}")
                delta = window_frames[k][j] * hops_dt
                if j == 0:
                    window_fs[k] = delta
                elif not np.isclose(delta, window_fs[k], rtol=1e-6, atol=0.0):
                    raise SoftnessError(
                        f"the P_R window of hops file {it.hops} is {delta:g} fs but {window_fs[k]:g} fs in "
                        f"{runs[0].hops}, another run at {it.temperature_K:g} K; runs pooled at one "
                        "temperature need frame intervals that fit arrhenius.P_R_window_fs alike.")
                t_fs = fs["time_fs"][()] if "time_fs" in fs else None
                it.frame_interval_fs = (float(np.median(np.diff(t_fs))) if t_fs is not None and t_fs.size > 1
                                        else float(fh.attrs.get("frame_interval_fs", np.nan)))
                block_fs = acfg["bootstrap_block_fs"]
                if block_fs is None:  # one jump is counted in every window that holds it
                    block_fs = max(float(fh.attrs.get("t_R_fs", np.nan)), delta)
                ratio = block_fs / it.frame_interval_fs
                it.block_frames = int(max(1, round(ratio))) if np.isfinite(ratio) else 1

    # Pass 1: softness of the rearranging atoms -> bin edges common to all temperatures.
    ev_s = [[] for _ in range(n_sp)]
    s_min, s_max = np.full(n_sp, np.inf), np.full(n_sp, -np.inf)
    for k, runs in enumerate(per_temperature):
        for j, it in enumerate(runs):
            # (run 0 draws from the stream a temperature's only run always had)
            rng = np.random.default_rng([seed, _SEED_SALT, 0, k] + ([j] if j else []))
            values, lo, hi = _event_softness(it, rng, window_frames[k][j])
            for sp in range(n_sp):
                ev_s[sp].append(values[sp])
            s_min, s_max = np.minimum(s_min, lo), np.maximum(s_max, hi)
    edges = np.stack([softness_bin_edges(np.concatenate(ev_s[sp]), n_bins) for sp in range(n_sp)])
    hist_edges = np.stack([np.linspace(s_min[sp], s_max[sp], N_HIST + 1) if np.isfinite(s_min[sp])
                           else np.linspace(-1, 1, N_HIST + 1) for sp in range(n_sp)])

    # Pass 2: per-frame counts of every run, pooled over the runs of a temperature; block bootstrap
    # within each run (pooled_bootstrap_ratio).
    shape = (n_sp, n_t, n_bins)
    r = {"temperature_K": temps, "species_names": np.array(names), "bins/edges": edges,
         "P_R": np.full(shape, np.nan), "ln_P_R_err": np.full(shape, np.nan),
         "P_R_ci_low": np.full(shape, np.nan), "P_R_ci_high": np.full(shape, np.nan),
         "n_events": np.zeros(shape, np.int64), "n_samples": np.zeros(shape, np.int64),
         "bins/S_mean_T": np.full(shape, np.nan), "usable": np.zeros(shape, bool),
         "mean_softness/mean": np.full((n_sp, n_t), np.nan),
         "mean_softness/err": np.full((n_sp, n_t), np.nan),
         "softness_histogram/edges": hist_edges, "softness_histogram/density": np.zeros((n_sp, n_t, N_HIST)),
         "rate/P_R_mean": np.full((n_sp, n_t), np.nan), "rate/ln_P_R_mean_err": np.full((n_sp, n_t), np.nan),
         "rate/rate_per_fs": np.full((n_sp, n_t), np.nan), "rate/ln_rate_err": np.full((n_sp, n_t), np.nan),
         "frame_interval_fs": np.zeros(n_t), "block_frames": np.zeros(n_t, np.int64),
         "P_R_window_fs": window_fs, "n_runs": n_runs}
    s_sum, s_cnt = np.zeros((n_sp, n_bins)), np.zeros((n_sp, n_bins))
    for k, runs in enumerate(per_temperature):
        counts = [count_temperature(it, edges, hist_edges, window_frames[k][j]) for j, it in enumerate(runs)]
        blocks = [it.block_frames for it in runs]
        r["frame_interval_fs"][k], r["block_frames"][k] = items[k].frame_interval_fs, items[k].block_frames
        for sp in range(n_sp):
            rng = np.random.default_rng([seed, _SEED_SALT, 1, k, sp])
            ev, tot = [c["events"][sp] for c in counts], [c["totals"][sp] for c in counts]
            p, ln_err, lo, hi = pooled_bootstrap_ratio(ev, tot, blocks, acfg["n_bootstrap"], rng)
            n_ev, n_tot = sum(e.sum(0) for e in ev), sum(n.sum(0) for n in tot)
            s_bin = sum(c["s_sum"][sp] for c in counts)
            r["P_R"][sp, k], r["ln_P_R_err"][sp, k] = p, ln_err
            r["P_R_ci_low"][sp, k], r["P_R_ci_high"][sp, k] = lo, hi
            r["n_events"][sp, k], r["n_samples"][sp, k] = n_ev, n_tot
            with np.errstate(invalid="ignore", divide="ignore"):
                r["bins/S_mean_T"][sp, k] = s_bin / n_tot
            r["usable"][sp, k] = usable_points(n_ev, p, acfg["min_events"], acfg["max_P_R"])
            s_sum[sp] += s_bin
            s_cnt[sp] += n_tot
            # Mean P_R and mean number of events per window (events per Delta: the mean rate, which
            # does not saturate), from the same resamples.
            (pm, mean_count), (pm_err, count_err), _, _ = pooled_bootstrap_ratio(
                [np.stack([c["all_events"][sp], c["all_counts"][sp]], axis=1) for c in counts],
                [np.repeat(c["all_totals"][sp][:, None], 2, axis=1) for c in counts], blocks,
                acfg["n_bootstrap"], rng)
            r["rate/P_R_mean"][sp, k], r["rate/ln_P_R_mean_err"][sp, k] = pm, pm_err
            r["rate/rate_per_fs"][sp, k], r["rate/ln_rate_err"][sp, k] = mean_count / window_fs[k], count_err
            r["mean_softness/mean"][sp, k], r["mean_softness/err"][sp, k] = pooled_mean(
                [c["mean_S"][sp][np.isfinite(c["mean_S"][sp])] for c in counts])
            h = sum(c["hist"][sp] for c in counts)
            if h.sum():
                r["softness_histogram/density"][sp, k] = h / (h.sum() * np.diff(hist_edges[sp]))
    with np.errstate(invalid="ignore", divide="ignore"):
        r["bins/S_mean"] = s_sum / s_cnt
        # The constant rate that gives P_R within Delta: P_R = 1 - exp(-rate Delta).
        r["P_R_rate_per_fs"] = -np.log1p(-r["P_R"]) / window_fs[None, :, None]
    r["rate/rate_per_fs_err"] = r["rate/rate_per_fs"] * r["rate/ln_rate_err"]

    # Fits: tau_alpha and D of a temperature are the means over its runs (_pooled_dynamics).
    dyn = [_pooled_dynamics(runs) for runs in per_temperature]
    for key, name in (("tau_alpha_fs", "tau"), ("tau_alpha_err_fs", "tau_err"), ("D_A2_per_fs", "D"),
                      ("D_err_A2_per_fs", "D_err")):
        r[f"dynamics/{key}"] = np.stack([d[name] for d in dyn], axis=1)  # [S, T]
    r["dynamics/max_lag_fs"] = np.array([d["max_lag"] for d in dyn])
    if n_runs.max() > 1:  # each run's value, NaN beyond a temperature's runs: [S, T, max runs]
        for key, name in (("tau_alpha_runs_fs", "tau_runs"), ("D_runs_A2_per_fs", "D_runs")):
            r[f"dynamics/{key}"] = np.stack([np.pad(d[name], ((0, 0), (0, n_runs.max() - d[name].shape[1])),
                                                    constant_values=np.nan) for d in dyn], axis=1)
    r["t_R_fs"] = np.array([_hops_t_R_fs(it) for it in items])
    fit_results(r, acfg)

    def nan_if_none(x):
        return np.nan if x is None else x

    r["attrs"] = {"T_train_K": t_train.pop() if len(t_train) == 1 else np.nan,
                  "n_bins": n_bins, "min_events": acfg["min_events"], "max_P_R": acfg["max_P_R"],
                  "min_temperatures": acfg["min_temperatures"],
                  "curvature_p_value": acfg["curvature_p_value"],
                  "min_tau_alpha_over_t_R": acfg["min_tau_alpha_over_t_R"],
                  "consistency_p_value": CONSISTENCY_P_VALUE,
                  "n_bootstrap": acfg["n_bootstrap"],
                  "ci_level": CI_LEVEL, "tail_quantile": TAIL_QUANTILE,
                  "bootstrap_block_fs": nan_if_none(acfg["bootstrap_block_fs"]),
                  # every run of every temperature, temperatures in order, runs as paired
                  **{f"sources_{kind}": json.dumps([str(getattr(it, kind)) for runs in per_temperature
                                                    for it in runs])
                     for kind in ("softness", "hops", "dynamics")}}
    if system is not None:
        r["attrs"]["system"] = system
    return r


def input_species_and_system(per_temperature) -> tuple[tuple, str | None]:
    """The species names every input names, and their ``system`` attribute.

    Every softness, hops and dynamics file of every run and temperature must name the same species
    in the same order (their ``/species_names``), and a dynamics file must hold one value per
    species; the files that carry a root attribute ``system`` must agree on it.

    Args:
      per_temperature: the runs of each temperature (:func:`_temperatures`).

    Returns:
      The species names and the system (None where no file names one).

    Raises:
      SoftnessError: one sentence naming the first file that disagrees.
    """
    names, first, found = None, None, {}
    for runs in per_temperature:
        for it in runs:
            for kind in ("softness", "hops", "dynamics"):
                path = getattr(it, kind)
                with open_input(path, kind) as f:
                    these = species_names_of(f, kind, path)
                    if names is None:
                        names, first = these, f"{kind} file {path}"
                    elif these != names:
                        raise SoftnessError(
                            f"{kind} file {path} names the species ({', '.join(these)}) but {first} names "
                            f"({', '.join(names)}); runs and temperatures pooled in one analysis must come "
                            "from one system.")
                    tau = f["tau_alpha_fs"] if kind == "dynamics" and "tau_alpha_fs" in f else None
                    if tau is not None and tau.shape != (len(names),):
                        raise SoftnessError(f"dynamics file {path} holds tau_alpha of shape "
                                            f"{f['tau_alpha_fs'].shape}, not one value for each of its "
                                            f"{len(names)} species.")
                    system = system_attribute(f.attrs)
                    if system is not None:
                        found.setdefault(system, f"{kind} file {path}")
    if len(found) > 1:
        (a, fa), (b, fb) = list(found.items())[:2]
        raise SoftnessError(f"{fb} comes from system '{b}' but {fa} from '{a}'; analyse one system at a "
                            "time.")
    return names, next(iter(found), None)


def result_species_names(r: dict) -> list:
    """The species names of results of :func:`analyse` (``species_names``), as str."""
    if "species_names" not in r:
        raise SoftnessError("the results name no species ('species_names' is missing).")
    return list(decode_all(r["species_names"]))


def fit_results(r: dict, acfg: dict) -> None:
    """Every fit of :func:`analyse`, added to ``r``: flags, per-bin fits, lines, <S>(T), tau_alpha(T).

    Args:
      r: the counted results: ``species_names`` [S], ``temperature_K``, ``P_R``, ``ln_P_R_err``, ``usable``,
        ``bins/S_mean``, ``mean_softness/{mean, err}``, ``rate/{rate_per_fs, ln_rate_err}``,
        ``dynamics/{tau_alpha_fs, tau_alpha_err_fs, D_A2_per_fs, D_err_A2_per_fs}`` (and
        optionally ``dynamics/max_lag_fs`` [T]) and ``t_R_fs``.
        ``usable`` is cleared at the flagged temperatures.
      acfg: the ``arrhenius`` config section.
    """
    temps = np.asarray(r["temperature_K"], dtype=np.float64)
    tau, tau_err = r["dynamics/tau_alpha_fs"], r["dynamics/tau_alpha_err_fs"]
    # Temperatures with no cage jumps to count are shown but never fitted.
    t_R = np.asarray(r["t_R_fs"], dtype=np.float64)
    if not np.all(np.isfinite(t_R)):
        log.warning("hops files at %s K give no t_R_fs attribute; their temperatures cannot be checked for "
                    "tau_alpha >= arrhenius.min_tau_alpha_over_t_R x t_R.", temps[~np.isfinite(t_R)].tolist())
    flagged, reason, ratio = flag_temperatures(tau, t_R, acfg["min_tau_alpha_over_t_R"],
                                               r.get("dynamics/max_lag_fs"))
    r["tau_alpha_over_t_R"] = ratio
    r["flagged_temperature"], r["flagged_temperature_reason"] = flagged, reason
    r["usable"] = r["usable"] & ~flagged[:, :, None]
    fits = {"bin": [], "lines": [], "mean": [], "tau": []}
    for sp, name in enumerate(result_species_names(r)):
        if flagged[sp].any():
            listed = zip(temps[flagged[sp]], reason[sp, flagged[sp]], strict=True)
            log.warning("%s: %s; left out of the per-bin fits (arrhenius.min_tau_alpha_over_t_R = %g).", name,
                        "; ".join(f"{t:g} K: {why}" for t, why in listed), acfg["min_tau_alpha_over_t_R"])
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_p = np.log(r["P_R"][sp])
        bins = fit_bins(temps, ln_p, r["ln_P_R_err"][sp], r["usable"][sp],
                        min_temperatures=acfg["min_temperatures"],
                        curvature_p_value=acfg["curvature_p_value"])
        bins["populated"] = r["usable"][sp].any(axis=0)
        short = np.flatnonzero(bins["populated"] & ~bins["fitted"])
        if short.size:
            log.warning("%s: softness bin(s) %s are usable (>= %d events, P_R <= %g, temperature not "
                        "flagged) at only %s temperature(s), fewer than arrhenius.min_temperatures = %d; "
                        "they are not fitted.",
                        name, short.tolist(), acfg["min_events"], acfg["max_P_R"],
                        bins["n_temperatures"][short].tolist(), acfg["min_temperatures"])
        curved = np.flatnonzero(bins["curved"])
        if curved.size:
            log.warning("%s: ln P_R is curved in 1/T in softness bin(s) %s (Holm-adjusted curvature p = %s "
                        "< %g); they are left out of the fits of DeltaE(S) and Sigma(S).", name,
                        curved.tolist(),
                        ", ".join(f"{p:.2g}" for p in bins["curvature_p_value_holm"][curved]),
                        acfg["curvature_p_value"])
        lines = fit_lines(r["bins/S_mean"][sp], bins)
        if not np.all(np.isfinite(lines.params)):
            log.warning("%s: fewer than two softness bins are fitted and straight; e0, e1, Sigma0, Sigma1 "
                        "and T0 are NaN.", name)
        mean = fit_mean_softness(temps, r["mean_softness/mean"][sp], r["mean_softness/err"][sp],
                                 curvature_p_value=acfg["curvature_p_value"])
        tcross = tau_alpha_crossover(temps, tau[sp], tau_err[sp], name)
        fits["bin"].append(bins)
        fits["lines"].append(lines)
        fits["mean"].append(mean)
        fits["tau"].append(tcross)
    if not any(np.all(np.isfinite(fl.params)) for fl in fits["lines"]):
        log.warning(
            "no species has two softness bins with at least arrhenius.min_events (%d) rearrangements and "
            "P_R <= arrhenius.max_P_R (%g) at arrhenius.min_temperatures (%d) or more temperatures without "
            "curvature; nothing of the softness picture can be tested: run longer, add lower temperatures, "
            "or lower arrhenius.min_events / arrhenius.n_bins.", acfg["min_events"], acfg["max_P_R"],
            acfg["min_temperatures"])
    _collect_fits(r, temps, fits)


def predicted_mean_P_R(temperature_K, density, edges, lines: Fit, *, n_samples: int = 400, seed: int = 0):
    """The mean P_R of all atoms that the softness model predicts from the distribution of S.

    P_R(T) = integral P(S; T) min(1, exp(Sigma(S) - DeltaE(S) / T)) dS, with the fitted lines
    DeltaE(S) = e0 - e1 S and Sigma(S) = Sigma0 - Sigma1 S and the measured softness histogram
    P(S; T) at each temperature. Its inverse times the P_R window is the mean time between
    rearrangements of an atom, tau_S(T), the relaxation time the softness picture predicts (up to
    a constant factor: tau_alpha is not the waiting time of one jump).

    Args:
      temperature_K: [T].
      density: [T, H] normalised softness histograms; edges: [H + 1] their bin edges.
      lines: :class:`Fit` of (e0_K, e1_K, Sigma0, Sigma1) with its covariance.
      n_samples: parameter draws from the fit's covariance for the error.
      seed: of those draws.

    Returns:
      (ln P_R [T], its standard error [T]); NaN where the lines or the histogram are missing.
    """
    temps = np.asarray(temperature_K, dtype=np.float64)
    density, edges = np.asarray(density, dtype=np.float64), np.asarray(edges, dtype=np.float64)
    nan = np.full(temps.size, np.nan)
    if not (np.all(np.isfinite(lines.params)) and np.all(np.isfinite(edges))):
        return nan, nan.copy()
    s = 0.5 * (edges[1:] + edges[:-1])
    weight = density * np.diff(edges)  # [T, H] probability of each histogram bin

    def ln_mean(params):  # params [..., 4] -> [..., T]
        e0, e1, s0, s1 = (params[..., i, None, None] for i in range(4))
        ln_p = (s0 - s1 * s) - (e0 - e1 * s) / temps[:, None]
        with np.errstate(over="ignore", divide="ignore"):
            return np.log(np.sum(weight * np.minimum(1.0, np.exp(ln_p)), axis=-1))

    value = ln_mean(np.asarray(lines.params))
    err = nan.copy()
    if np.all(np.isfinite(lines.cov)):
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(lines.params, lines.cov, size=n_samples, check_valid="ignore")
        err = np.std(ln_mean(draws), axis=0, ddof=1)
    return value, err


def relaxation_closure(ln_tau_pred, ln_tau_pred_err, ln_tau, ln_tau_err) -> dict:
    """ln tau (measured) = ln tau_S (predicted) + c: the best constant c and how well one constant
    does over all temperatures (chi^2 with both errors, its dof and p-value).

    Args: all [T]; temperatures where anything is NaN are left out.

    Returns:
      dict ``offset``, ``offset_err``, ``chi2``, ``dof``, ``p_value``, ``n``.
    """
    from scipy import stats

    y = np.asarray(ln_tau, dtype=np.float64) - np.asarray(ln_tau_pred, dtype=np.float64)
    var = np.asarray(ln_tau_err, dtype=np.float64) ** 2 + np.asarray(ln_tau_pred_err, dtype=np.float64) ** 2
    ok = np.isfinite(y) & np.isfinite(var) & (var > 0)
    out = {"offset": np.nan, "offset_err": np.nan, "chi2": np.nan, "dof": int(max(ok.sum() - 1, 0)),
           "p_value": np.nan, "n": int(ok.sum())}
    if ok.sum() < 1:
        return out
    w = 1.0 / var[ok]
    c = float(np.sum(w * y[ok]) / np.sum(w))
    out["offset"], out["offset_err"] = c, float(np.sqrt(1.0 / np.sum(w)))
    if ok.sum() >= 2:
        chi2 = float(np.sum(w * (y[ok] - c) ** 2))
        out["chi2"], out["p_value"] = chi2, float(stats.chi2.sf(chi2, ok.sum() - 1))
    return out


def _relaxation_closures(r: dict, temps, lines) -> None:
    """tau_S(T) = Delta / <P_R>_pred(T) from the softness model, against tau_alpha and 1/D."""
    window = np.asarray(r.get("P_R_window_fs", np.full(temps.size, np.nan)), dtype=np.float64)
    n_t, n_sp = temps.size, len(lines)
    pred, pred_err = np.full((n_sp, n_t), np.nan), np.full((n_sp, n_t), np.nan)
    for sp in range(n_sp):
        if "softness_histogram/density" not in r:  # (fits driven without counts)
            continue
        ln_p, ln_p_err = predicted_mean_P_R(temps, r["softness_histogram/density"][sp],
                                            r["softness_histogram/edges"][sp], lines[sp], seed=sp)
        pred[sp], pred_err[sp] = np.log(window) - ln_p, ln_p_err
    r["closure/tau_S_fs"], r["closure/ln_tau_S_err"] = np.exp(pred), pred_err
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = {"tau_alpha": (np.log(r["dynamics/tau_alpha_fs"]),
                                  r["dynamics/tau_alpha_err_fs"] / r["dynamics/tau_alpha_fs"]),
                    "inverse_D": (-np.log(r["dynamics/D_A2_per_fs"]),
                                  r["dynamics/D_err_A2_per_fs"] / r["dynamics/D_A2_per_fs"])}
    for label, (ln_y, ln_y_err) in measured.items():
        res = [relaxation_closure(pred[sp], pred_err[sp], ln_y[sp], ln_y_err[sp]) for sp in range(n_sp)]
        for key in res[0]:
            r[f"closure/{label}/{key}"] = np.array([x[key] for x in res])


def _collect_fits(r: dict, temps, fits: dict) -> None:
    """Stack the per-species fits into [S, ...] arrays of ``r`` and log the headline numbers."""
    n_t = temps.size
    names = result_species_names(r)
    n_sp = len(names)
    t_mid = np.sqrt(temps[1:] * temps[:-1])
    r["crossover/T_mid_K"] = t_mid
    for key in ("Sigma", "Sigma_err", "DeltaE_K", "DeltaE_K_err", "cov", "n_temperatures", "fitted",
                "populated", "chi2_dof", "chi2_p_value", "curvature_c_K2", "curvature_c_K2_err",
                "curvature_p_value", "curvature_p_value_holm", "curved", "in_lines"):
        r[f"bin_fit/{key}"] = np.stack([b[key] for b in fits["bin"]])
    r["bin_fit/DeltaE_eV"] = k_to_eV(r["bin_fit/DeltaE_K"])
    r["bin_fit/DeltaE_eV_err"] = k_to_eV(r["bin_fit/DeltaE_K_err"])
    lines = fits["lines"]
    params = np.stack([fl.params for fl in lines])
    errs = np.stack([fl.err for fl in lines])
    for i, key in enumerate(("e0_K", "e1_K", "Sigma0", "Sigma1")):
        r[f"lines/{key}"], r[f"lines/{key}_err"] = params[:, i], errs[:, i]
    for key in ("e0", "e1"):
        r[f"lines/{key}_eV"] = k_to_eV(r[f"lines/{key}_K"])
        r[f"lines/{key}_eV_err"] = k_to_eV(r[f"lines/{key}_K_err"])
    r["lines/cov"] = np.stack([fl.cov for fl in lines])
    r["lines/chi2_dof"] = np.array([fl.chi2_dof for fl in lines])
    r["lines/n_bins_fitted"] = r["bin_fit/fitted"].sum(axis=1)
    r["lines/n_bins_in_lines"] = r["bin_fit/in_lines"].sum(axis=1)
    t0 = np.array([crossing_temperature(fl) for fl in lines])
    r["lines/T0_K"], r["lines/T0_K_err"] = t0[:, 0], t0[:, 1]
    # The temperatures the lines rest on; a T0 among them is a crossing inside the data, not the
    # high-temperature extrapolation the softness picture means.
    t_range = np.full((n_sp, 2), np.nan)
    for sp in range(n_sp):
        used = r["usable"][sp][:, r["bin_fit/in_lines"][sp]].any(axis=1)
        if used.any():
            t_range[sp] = temps[used].min(), temps[used].max()
    r["lines/fitted_T_range_K"] = t_range
    with np.errstate(invalid="ignore"):
        t0_k = r["lines/T0_K"]
        r["lines/T0_inside_fitted_range"] = (t0_k >= t_range[:, 0]) & (t0_k <= t_range[:, 1])
    mean = fits["mean"]
    r["mean_softness/a"] = np.array([m["fit"].params[0] for m in mean])
    r["mean_softness/a_err"] = np.array([m["fit"].err[0] for m in mean])
    r["mean_softness/b_per_K"] = np.array([m["fit"].params[1] for m in mean])
    r["mean_softness/b_per_K_err"] = np.array([m["fit"].err[1] for m in mean])
    r["mean_softness/cov"] = np.stack([m["fit"].cov for m in mean])
    for key in ("chi2_dof", "R2", "n", "curvature_c_per_K2", "curvature_c_per_K2_err", "curvature_p_value",
                "curved"):
        r[f"mean_softness/{key}"] = np.array([m[key] for m in mean])

    pred, pred_err = np.full((n_sp, n_t), np.nan), np.full((n_sp, n_t), np.nan)
    pred_mid, pred_mid_err = np.full((n_sp, n_t - 1), np.nan), np.full((n_sp, n_t - 1), np.nan)
    pred_mid_cov = np.full((n_sp, n_t - 1, n_t - 1), np.nan)
    e_inf, e_inf_err, curv, curv_err = (np.full(n_sp, np.nan) for _ in range(4))
    for sp in range(n_sp):
        fl, fm = lines[sp], mean[sp]["fit"]
        pred[sp], pred_err[sp] = predicted_barrier(temps, fl, fm)
        pred_mid[sp], pred_mid_err[sp], pred_mid_cov[sp] = predicted_barrier(t_mid, fl, fm, full_cov=True)
        e_inf[sp], e_inf_err[sp] = predicted_barrier(0.0, fl, fm)
        e0, e1, _, s1 = fl.params
        a, b = fm.params
        curv[sp] = s1 * b
        curv_err[sp] = np.hypot(b * fl.err[3], s1 * fm.err[1])
    r["crossover/E_app_predicted_K"], r["crossover/E_app_predicted_K_err"] = pred, pred_err
    r["crossover/E_app_predicted_mid_K"], r["crossover/E_app_predicted_mid_K_err"] = pred_mid, pred_mid_err
    r["crossover/E_inf_K"], r["crossover/E_inf_K_err"] = e_inf, e_inf_err  # e0 - e1 a
    r["crossover/Sigma1_b_per_K"], r["crossover/Sigma1_b_per_K_err"] = curv, curv_err

    ln_tau_err = r["dynamics/tau_alpha_err_fs"] / r["dynamics/tau_alpha_fs"]
    with np.errstate(divide="ignore", invalid="ignore"):
        _, e_rate, e_rate_err = secant_barrier(temps, np.log(r["rate/rate_per_fs"]), r["rate/ln_rate_err"])
        _, e_tau, e_tau_err = secant_barrier(temps, np.log(r["dynamics/tau_alpha_fs"]), ln_tau_err, sign=1.0)
        _, e_d, e_d_err = secant_barrier(temps, np.log(r["dynamics/D_A2_per_fs"]),
                                         r["dynamics/D_err_A2_per_fs"] / r["dynamics/D_A2_per_fs"])
    r["crossover/E_app_rate_K"], r["crossover/E_app_rate_K_err"] = e_rate, e_rate_err
    r["crossover/E_app_tau_K"], r["crossover/E_app_tau_K_err"] = e_tau, e_tau_err
    r["crossover/E_app_D_K"], r["crossover/E_app_D_K_err"] = e_d, e_d_err
    for key in ("E_app_predicted_K", "E_app_predicted_mid_K", "E_inf_K", "E_app_rate_K", "E_app_tau_K",
                "E_app_D_K"):
        r[f"crossover/{key[:-2]}_eV"] = k_to_eV(r[f"crossover/{key}"])
        if f"crossover/{key}_err" in r:
            r[f"crossover/{key[:-2]}_eV_err"] = k_to_eV(r[f"crossover/{key}_err"])

    tau = fits["tau"]
    for key in (*TAU_PARAMS, "chi2_dof", "dof", "n", "n_below", "n_above", "weighted", "at_bound",
                "E_low_minus_E_high_K", "strong_to_fragile", "kink"):
        r[f"tau_fit/{key}"] = np.array([t[key] for t in tau])
        if f"{key}_err" in tau[0]:
            r[f"tau_fit/{key}_err"] = np.array([t[f"{key}_err"] for t in tau])
    for key in ("E_low", "E_high"):
        r[f"tau_fit/{key}_eV"] = k_to_eV(r[f"tau_fit/{key}_K"])
        r[f"tau_fit/{key}_eV_err"] = k_to_eV(r[f"tau_fit/{key}_K_err"])
    r["tau_fit/cov"] = np.stack([t["cov"] for t in tau])
    r["tau_fit/T_range_K"] = np.array([t["T_range_K"] for t in tau])

    # The closure: measured secants against the prediction at the same temperatures, with both
    # covariances; the mean rate only between temperatures that are not flagged.
    for source in ("tau", "rate"):
        res = {k: np.full(n_sp, np.nan) for k in ("chi2", "p_value")}
        res.update({k: np.zeros(n_sp, np.int64) for k in ("dof", "n_below", "n_above")})
        used = np.zeros((n_sp, n_t - 1), bool)
        for sp in range(n_sp):
            if source == "tau":
                measured, err_y = e_tau[sp], ln_tau_err[sp]
            else:
                both = ~(r["flagged_temperature"][sp][1:] | r["flagged_temperature"][sp][:-1])
                measured, err_y = np.where(both, e_rate[sp], np.nan), r["rate/ln_rate_err"][sp]
            with np.errstate(invalid="ignore"):
                cov_m = secant_covariance(temps, np.where(np.isfinite(err_y), err_y, np.nan))
            c = barrier_consistency(t_mid, measured, cov_m, pred_mid[sp], pred_mid_cov[sp],
                                    r["tau_fit/T_x_K"][sp])
            for k in res:
                res[k][sp] = c[k]
            used[sp] = c["used"]
        for k, v in res.items():
            r[f"closure/{source}/{k}"] = v
        r[f"closure/{source}/used"] = used

    _relaxation_closures(r, temps, lines)
    for sp, name in enumerate(names):
        for label in ("tau_alpha", "inverse_D"):
            c = {k: r[f"closure/{label}/{k}"][sp] for k in ("offset", "chi2", "dof", "p_value")}
            log.info("%s: ln %s = ln tau_S + %.3g over %d temperatures: chi2 = %.3g for %d dof (p = %.2g)",
                     name, label.replace("_", " "), c["offset"], c["dof"] + 1, c["chi2"], c["dof"],
                     c["p_value"])

    for sp, name in enumerate(names):
        lv = [r[f"lines/{k}"][sp] for k in ("e0_K", "e0_K_err", "e1_K", "e1_K_err", "Sigma0", "Sigma0_err",
                                             "Sigma1", "Sigma1_err", "T0_K", "T0_K_err", "n_bins_in_lines")]
        log.info("%s: DeltaE(S) = (%.4g +- %.2g) - (%.4g +- %.2g) S K, Sigma(S) = (%.4g +- %.2g) - "
                 "(%.4g +- %.2g) S, T0 = %.4g +- %.2g K (%d bins)", name, *lv)
        if r["lines/T0_inside_fitted_range"][sp]:
            log.warning("%s: T0 = %.4g K lies inside the fitted temperatures (%.4g-%.4g K): the lines cross "
                        "within the data, not at the high-temperature extrapolation the softness picture "
                        "means.", name, r["lines/T0_K"][sp], *r["lines/fitted_T_range_K"][sp])
        mv = [r[f"mean_softness/{k}"][sp] for k in ("a", "a_err", "b_per_K", "b_per_K_err", "chi2_dof", "R2",
                                                    "curvature_p_value")]
        log.info("%s: <S>(T) = (%.4g +- %.2g) + (%.4g +- %.2g) T/K, chi2/dof %.3g, R2 %.3f, curvature p %.2g",
                 name, *mv)
        log.info("%s: tau_alpha: E_low = %.4g +- %.2g eV below, E_high = %.4g +- %.2g eV above "
                 "T_x = %.4g +- %.2g K (chi2/dof %.3g, %d dof)", name,
                 r["tau_fit/E_low_eV"][sp], r["tau_fit/E_low_eV_err"][sp],
                 r["tau_fit/E_high_eV"][sp], r["tau_fit/E_high_eV_err"][sp], r["tau_fit/T_x_K"][sp],
                 r["tau_fit/T_x_K_err"][sp], r["tau_fit/chi2_dof"][sp], r["tau_fit/dof"][sp])


# ---------------------------------------------------------------------------- products

def _value(v, e=None, unit=None) -> dict:
    def clean(x):
        x = float(x)
        return x if np.isfinite(x) else None

    out = {"value": clean(v)}
    if e is not None:
        out["error"] = clean(e)
    if unit:
        out["unit"] = unit
    return out


def _json_safe(x):
    """Plain JSON data from numpy scalars, arrays and NaN (written as null)."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


# ---------------------------------------------------------------------------- verdicts on the claims

#: The four claims of the softness picture (Cubuk et al., arXiv:2008.09681), as checked here.
CLAIMS = {
    "a": "a linear classifier of local structure tells rearranging atoms from quiet ones (held-out accuracy "
         "above chance)",
    "b": "ln P_R is linear in 1/T in every populated softness bin over at least {min_temperatures} "
         "temperatures",
    "c": "the mean softness <S>(T) is linear in T",
    "d": "the predicted apparent barrier E_app(T) agrees with the measured one across the crossover",
}

#: Secants the barrier comparison needs, with at least one on each side of T_x.
MIN_SECANTS = 3


def _verdict(status: str, statement: str, **numbers) -> dict:
    return {"status": status, "statement": statement, **numbers}


def _p(p: float) -> str:
    """A p-value for a sentence (one that underflows to 0 is not 'p = 0')."""
    return f"p = {p:.2g}" if p > 0 else "p < 1e-300"


def combine_verdicts(claim: str, per_species: dict, **claim_numbers) -> dict:
    """One claim's verdict from its per-species ones: fail if any fails, pass if all pass, else
    not testable (or not evaluated when none was). ``claim_numbers`` fill the claim's text."""
    statuses = [v["status"] for v in per_species.values()]
    if "fail" in statuses:
        status = "fail"
    elif all(s == "pass" for s in statuses):
        status = "pass"
    elif all(s == "not evaluated" for s in statuses):
        status = "not evaluated"
    else:
        status = "not testable"
    statement = " ".join(v["statement"] for v in per_species.values())
    text = CLAIMS[claim].format(**{"min_temperatures": "arrhenius.min_temperatures", **claim_numbers})
    return {"claim": text, "status": status, "statement": statement, "species": per_species}


def accuracy_verdict(name: str, metrics: dict | None, *, chance: float = 0.5) -> dict:
    """Claim (a) for one species: the held-out accuracy is above chance by more than 2 errors.

    Args:
      name: the species; metrics: ``accuracy`` and ``accuracy_err`` (and any other numbers to
        report, e.g. ``roc_auc``), or None when no model was given.
      chance: the accuracy of guessing on balanced classes.
    """
    if metrics is None:
        return _verdict("not evaluated", f"{name}: no classifier metrics were given to the arrhenius stage.")
    acc, err = float(metrics.get("accuracy", np.nan)), float(metrics.get("accuracy_err", np.nan))
    numbers = {k: v for k, v in metrics.items()}
    if not (np.isfinite(acc) and np.isfinite(err)):
        return _verdict("not testable", f"{name}: the model file has no held-out accuracy with an error.",
                        **numbers)
    text = f"held-out accuracy {acc:.3f} ± {err:.2g}"
    if acc - 2 * err > chance:
        return _verdict("pass", f"{name}: {text}, above chance ({chance:g}).", **numbers)
    return _verdict("fail", f"{name}: {text} is not above chance ({chance:g}) by two errors: the structure "
                            "does not predict rearrangements.", **numbers)


def linearity_verdict(name: str, bins: dict, min_temperatures: int) -> dict:
    """Claim (b) for one species, from the per-bin fits (keys of :func:`fit_bins` plus
    ``populated``: usable at one temperature or more).

    Pass: every populated bin is fitted (usable at ``min_temperatures`` or more), at least two
    are, and none is curved. Fail: some fitted bin is curved. Otherwise not testable.
    """
    fitted, populated = np.asarray(bins["fitted"], bool), np.asarray(bins["populated"], bool)
    curved = np.flatnonzero(np.asarray(bins["curved"], bool) & fitted)
    p = np.asarray(bins.get("curvature_p_value_holm", bins["curvature_p_value"]), dtype=np.float64)
    chi2_dof = np.asarray(bins["chi2_dof"], dtype=np.float64)
    n_fit, n_pop = int(fitted.sum()), int(populated.sum())
    numbers = {"bins_fitted": n_fit, "bins_populated": n_pop, "bins_curved": curved.tolist(),
               "worst_chi2_dof": float(np.nanmax(chi2_dof[fitted])) if n_fit else np.nan,
               "curvature_p_values": [float(x) for x in np.asarray(bins["curvature_p_value"])[fitted]],
               "curvature_p_values_holm": [float(x) for x in p[fitted]],
               "n_temperatures": [int(x) for x in np.asarray(bins["n_temperatures"])]}
    if curved.size:
        ps = ", ".join(_p(p[b]) for b in curved)
        return _verdict("fail", f"{name}: ln P_R is not linear in 1/T: {curved.size} of the {n_fit} fitted "
                                f"bins (bins {curved.tolist()}) bend significantly (curvature {ps}, "
                                "Holm-adjusted).", **numbers)
    short = np.flatnonzero(populated & ~fitted)
    if n_fit < 2:
        return _verdict("not testable", f"{name}: only {n_fit} of the {n_pop} populated bins have usable P_R "
                                        f"at {min_temperatures} or more temperatures.", **numbers)
    if short.size:
        return _verdict("not testable", f"{name}: {short.size} of the {n_pop} populated bins (bins "
                                        f"{short.tolist()}) have usable P_R at fewer than {min_temperatures} "
                                        f"temperatures, so linearity is shown in {n_fit} bins only.",
                        **numbers)
    if not np.all(np.isfinite(p[fitted])):
        return _verdict("not testable", f"{name}: the curvature test could not be made in every bin.",
                        **numbers)
    raw = np.asarray(bins["curvature_p_value"], dtype=np.float64)[fitted]
    return _verdict("pass", f"{name}: ln P_R is linear in 1/T in all {n_fit} populated bins (smallest "
                            f"curvature p = {np.min(raw):.2g}, Holm-adjusted {np.min(p[fitted]):.2g}; worst "
                            f"chi2/dof = {numbers['worst_chi2_dof']:.3g}).", **numbers)


def mean_softness_verdict(name: str, n_temperatures: int, curved: bool, p_value: float, c, c_err) -> dict:
    """Claim (c) for one species: <S>(T) = a + b T, no significant T^2 term, over >= 3 temperatures."""
    numbers = {"n_temperatures": int(n_temperatures), "curvature_p_value": p_value,
               "curvature_c_per_K2": c, "curvature_c_per_K2_err": c_err}
    if n_temperatures < 3:
        return _verdict("not testable", f"{name}: <S> is known at {n_temperatures} temperature(s); a "
                                        "curvature test needs 3.", **numbers)
    if not np.isfinite(p_value):
        return _verdict("not testable", f"{name}: <S>(T) has no errors and too few temperatures for a "
                                        "curvature test from its scatter.", **numbers)
    if curved:
        return _verdict("fail", f"{name}: <S>(T) is not linear: a T^2 term is significant "
                                f"({_p(p_value)}).", **numbers)
    return _verdict("pass", f"{name}: <S>(T) is linear over {n_temperatures} temperatures (curvature "
                            f"{_p(p_value)}).", **numbers)


def barrier_verdict(name: str, closures: dict, T_x_K: float, have_prediction: bool,
                    p_threshold: float = 0.01, min_secants: int = MIN_SECANTS) -> dict:
    """Claim (d) for one species.

    Args:
      closures: ``{"tau_alpha": c, "mean_rate": c}``, each the output of
        :func:`barrier_consistency` (``chi2``, ``dof``, ``p_value``, ``n_below``, ``n_above``).
      T_x_K: the crossover temperature of tau_alpha (NaN: none).
      have_prediction: the predicted E_app is finite (lines and <S>(T) fitted).

    A comparison is testable with ``min_secants`` secants or more, at least one on each side of
    T_x; it passes when p > ``p_threshold``. The claim fails if a testable comparison fails,
    passes if one passes and none fails.
    """
    numbers = {key: {k: c[k] for k in ("chi2", "dof", "p_value", "n_below", "n_above")}
               for key, c in closures.items()}
    if not have_prediction:
        return _verdict("not testable", f"{name}: there is no predicted E_app(T) (DeltaE(S), Sigma(S) or "
                                        "<S>(T) not fitted).", **numbers)
    if not np.isfinite(T_x_K):
        return _verdict("not testable", f"{name}: tau_alpha gives no crossover temperature to compare "
                                        "across.", **numbers)
    results, why = {}, []
    for key, c in closures.items():
        label = key.replace("_", " ")
        if c["dof"] < min_secants or c["n_below"] < 1 or c["n_above"] < 1:
            why.append(f"{label}: {c['dof']} secants with errors ({c['n_below']} below, {c['n_above']} above "
                       f"T_x = {T_x_K:.4g} K)")
            continue
        results[key] = c["p_value"] > p_threshold
    text = "; ".join(f"{k.replace('_', ' ')}: chi2 = {closures[k]['chi2']:.3g} for {closures[k]['dof']} "
                     f"secants, {_p(closures[k]['p_value'])}" for k in results)
    if not results:
        return _verdict("not testable", f"{name}: too few measured secants across T_x ({'; '.join(why)}; "
                                        f"{min_secants} spanning it are needed).", **numbers)
    if not all(results.values()):
        return _verdict("fail", f"{name}: the predicted E_app(T) disagrees with the measured one ({text}).",
                        **numbers)
    return _verdict("pass", f"{name}: the predicted E_app(T) agrees with the measured one ({text}).",
                    **numbers)


def read_model_metrics(path, stability=None) -> dict:
    """Per species name the classifier's held-out numbers from a model file (for claim (a)):
    ``accuracy``, ``accuracy_err`` and any ``quality/*`` datasets present; with a ``stability``
    file (stage ``stability``) also the cosine between the hyperplane normals trained at T_train
    and at its temperature, and the correlation of the two softnesses.

    The names are the model file's ``/species_names``; a stability file must name the same.
    """
    with open_input(path, "model") as f:
        names = species_names_of(f, "model", path)
        out = {name: {} for name in names}
        keys = [k for k in ("accuracy", "accuracy_err") if k in f]
        if "quality" in f:
            keys += [f"quality/{k}" for k, v in f["quality"].items()
                     if isinstance(v, h5py.Dataset) and v.shape == (len(names),)]
        for key in keys:
            values = f[key][()]
            for sp, name in enumerate(names):
                out[name][key.removeprefix("quality/")] = float(values[sp])
    if stability is not None:
        with open_input(stability, "stability") as f:
            require(f, "cosine", "pearson_S", what="stability")
            other = species_names_of(f, "stability", stability)
            if other != names:
                raise SoftnessError(f"stability file {stability} names the species ({', '.join(other)}) but "
                                    f"model file {path} names ({', '.join(names)}).")
            t = float(f.attrs.get("temperature_K", np.nan))
            for sp, name in enumerate(names):
                out[name]["stability_T_K"] = t
                out[name]["stability_cosine"] = float(f["cosine"][sp])
                out[name]["stability_pearson_S"] = float(f["pearson_S"][sp])
    return out


def claim_verdicts(r: dict, model_metrics: dict | None = None) -> dict:
    """The verdicts on the four claims (:data:`CLAIMS`) from the output of :func:`analyse`."""
    min_t = int(r["attrs"]["min_temperatures"])
    p_threshold = float(r["attrs"].get("consistency_p_value", CONSISTENCY_P_VALUE))
    out = {"a": {}, "b": {}, "c": {}, "d": {}}
    for sp, name in enumerate(result_species_names(r)):
        out["a"][name] = accuracy_verdict(name, None if model_metrics is None else model_metrics.get(name))
        bins = {k: r[f"bin_fit/{k}"][sp] for k in ("fitted", "populated", "curved", "curvature_p_value",
                                                   "curvature_p_value_holm", "chi2_dof", "n_temperatures")}
        out["b"][name] = linearity_verdict(name, bins, min_t)
        out["c"][name] = mean_softness_verdict(
            name, int(r["mean_softness/n"][sp]), bool(r["mean_softness/curved"][sp]),
            float(r["mean_softness/curvature_p_value"][sp]), float(r["mean_softness/curvature_c_per_K2"][sp]),
            float(r["mean_softness/curvature_c_per_K2_err"][sp]))
        closures = {label: {k: r[f"closure/{src}/{k}"][sp] for k in ("chi2", "dof", "p_value", "n_below",
                                                                      "n_above")}
                    for label, src in (("tau_alpha", "tau"), ("mean_rate", "rate"))}
        have = bool(np.all(np.isfinite(r["crossover/E_app_predicted_mid_K"][sp])))
        out["d"][name] = barrier_verdict(name, closures, float(r["tau_fit/T_x_K"][sp]), have, p_threshold)
    return {claim: combine_verdicts(claim, per, min_temperatures=min_t) for claim, per in out.items()}


def reduced_units(system) -> dict | None:
    """The reduced units of a system (``softness.systems.get(system).REDUCED_UNITS``), or None.

    None where no system is named, where it has no reduced units (silica), or where this version
    does not know it (with a warning: the summary then stays in K, fs and eV).
    """
    if system is None:
        return None
    try:
        module = systems.get(str(system))
    except SoftnessError as exc:
        log.warning("%s The summary is given without reduced units.", exc)
        return None
    units_ = getattr(module, "REDUCED_UNITS", None)
    if units_ is None:
        return None
    return {"system": str(system), **{k: units_[k] for k in ("name", "temperature_K", "time_fs",
                                                              "energy_kcal_mol", "length_A") if k in units_}}


def _reduced_species(r: dict, sp: int, ru: dict) -> dict:
    """One species' key numbers in the reduced units ``ru`` (:func:`reduced_units`)."""
    t_u, time_u = float(ru["temperature_K"]), float(ru["time_fs"])
    t_unit = f"T / {t_u:g} K"
    e_unit = f"(E / k_B) / {t_u:g} K"
    tf = "tau_fit"

    def scaled(key, factor, unit):
        err = r.get(f"{key}_err")
        return _value(r[key][sp] * factor, None if err is None else err[sp] * factor, unit)

    def temperature(key):
        return scaled(key, 1.0 / t_u, t_unit)

    def energy(key, unit=e_unit):
        return scaled(key, 1.0 / t_u, unit)

    ln_tau0 = scaled(f"{tf}/ln_tau0", 1.0, f"ln(tau0 / {time_u:g} fs)")
    if ln_tau0["value"] is not None:
        ln_tau0["value"] -= float(np.log(time_u))
    tau, tau_err = r["dynamics/tau_alpha_fs"][sp], r["dynamics/tau_alpha_err_fs"][sp]
    return {
        "T0": {**temperature("lines/T0_K"),
               "fitted_T_range": [_value(x / t_u)["value"] for x in r["lines/fitted_T_range_K"][sp]]},
        "e0": energy("lines/e0_K"),
        "e1": energy("lines/e1_K", f"{e_unit} per unit softness"),
        "E_inf": energy("crossover/E_inf_K"),
        "mean_softness_b": scaled("mean_softness/b_per_K", t_u, f"per unit of T / {t_u:g} K"),
        "Sigma1_b": scaled("crossover/Sigma1_b_per_K", t_u, f"per unit of T / {t_u:g} K"),
        "tau_alpha": {"E_low": energy(f"{tf}/E_low_K"), "E_high": energy(f"{tf}/E_high_K"),
                      "E_low_minus_E_high": energy(f"{tf}/E_low_minus_E_high_K"),
                      "T_crossover": temperature(f"{tf}/T_x_K"), "ln_tau0": ln_tau0,
                      "tau_alpha": [_value(v / time_u, e / time_u, f"t / {time_u:g} fs")
                                    for v, e in zip(tau, tau_err, strict=True)]},
        "tau_S": [_value(x / time_u)["value"] for x in r["closure/tau_S_fs"][sp]],
    }


def make_summary(r: dict, model_metrics: dict | None = None) -> dict:
    """The headline numbers with uncertainties and the verdicts on the claims, as plain JSON-able
    data (NaN written as null), keyed by the species names of the results.

    Where ``r["attrs"]["system"]`` names a system with reduced units (:func:`reduced_units`), a
    ``reduced_units`` block (the units, the temperatures and T_train in them) and, per species,
    ``reduced`` (T0, e0, e1, E_inf, <S>(T) slope, the tau_alpha fit, tau_alpha(T) and tau_S(T)
    in them) are added; otherwise the summary has neither.
    """
    names = result_species_names(r)
    out = {"temperatures_K": [float(t) for t in r["temperature_K"]],
           "T_train_K": _value(r["attrs"]["T_train_K"])["value"], "species": {}}
    ru = reduced_units(r["attrs"].get("system"))
    if ru is not None:
        t_u = float(ru["temperature_K"])
        out["reduced_units"] = {
            **ru, "definition": (f"T* = T / {t_u:g} K, t* = t / {float(ru['time_fs']):g} fs, "
                                 f"E* = (E / k_B) / {t_u:g} K = E / "
                                 f"({float(ru['energy_kcal_mol']):g} kcal/mol)"),
            "temperatures": [float(t) / t_u for t in r["temperature_K"]],
            "T_train": _value(r["attrs"]["T_train_K"] / t_u)["value"]}
    for sp, name in enumerate(names):
        def v(key, unit=None, sp=sp):
            err = r.get(f"{key}_err")
            return _value(r[key][sp], None if err is None else err[sp], unit)

        def energy(stem, sp=sp):  # stem + "_K" and stem + "_eV"
            return {"K": v(f"{stem}_K", "K"), "eV": v(f"{stem}_eV", "eV")}

        tf = "tau_fit"
        flagged = r["flagged_temperature"][sp]
        why = zip(r["temperature_K"][flagged], r["flagged_temperature_reason"][sp][flagged], strict=True)
        out["species"][name] = {
            "e0": energy("lines/e0"),
            "e1": {**energy("lines/e1"), "note": "per unit softness"},
            "Sigma0": v("lines/Sigma0"),
            "Sigma1": v("lines/Sigma1", "per unit softness"),
            "T0": {**v("lines/T0_K", "K"), "inside_fitted_range": bool(r["lines/T0_inside_fitted_range"][sp]),
                   "fitted_T_range_K": r["lines/fitted_T_range_K"][sp]},
            "lines_chi2_dof": v("lines/chi2_dof")["value"],
            "n_bins_fitted": int(r["lines/n_bins_fitted"][sp]),
            "n_bins_in_lines": int(r["lines/n_bins_in_lines"][sp]),
            "n_bins_populated": int(r["bin_fit/populated"][sp].sum()),
            "n_bins_curved": int(r["bin_fit/curved"][sp].sum()),
            "flagged_temperatures": [{"T_K": float(t), "reason": str(text)} for t, text in why],
            "mean_softness": {"a": v("mean_softness/a"), "b": v("mean_softness/b_per_K", "1/K"),
                              "chi2_dof": v("mean_softness/chi2_dof")["value"],
                              "R2": v("mean_softness/R2")["value"],
                              "curvature_p_value": v("mean_softness/curvature_p_value")["value"]},
            "apparent_barrier": {"E_inf": energy("crossover/E_inf"),
                                 "Sigma1_b": v("crossover/Sigma1_b_per_K", "1/K"),
                                 "formula": "E_app(T) = E_inf - Sigma1 b T^2, E_inf = e0 - e1 a"},
            "tau_alpha": {
                "model": "ln tau = ln tau0 + E_low / T below T_x, slope E_high above, continuous at T_x",
                "E_low": energy(f"{tf}/E_low"), "E_high": energy(f"{tf}/E_high"),
                "E_low_minus_E_high": v(f"{tf}/E_low_minus_E_high_K", "K"),
                "ln_tau0_fs": v(f"{tf}/ln_tau0"),
                "T_crossover": v(f"{tf}/T_x_K", "K"),
                "chi2_dof": v(f"{tf}/chi2_dof")["value"], "dof": int(r[f"{tf}/dof"][sp]),
                "n_below": int(r[f"{tf}/n_below"][sp]), "n_above": int(r[f"{tf}/n_above"][sp]),
                "weighted": bool(r[f"{tf}/weighted"][sp]),
                "strong_to_fragile": bool(r[f"{tf}/strong_to_fragile"][sp]),
                "kink": str(r[f"{tf}/kink"][sp]),
                "T_range_K": r[f"{tf}/T_range_K"][sp]},
            "relaxation_from_softness": {
                "formula": "tau_S(T) = Delta / integral P(S;T) P_R(S,T) dS with the fitted lines; "
                           "ln tau = ln tau_S + c fitted with one constant c over all temperatures",
                "tau_S_fs": [_value(x)["value"] for x in r["closure/tau_S_fs"][sp]],
                **{label: {"offset": v(f"closure/{label}/offset"),
                           "chi2": _value(r[f"closure/{label}/chi2"][sp])["value"],
                           "dof": int(r[f"closure/{label}/dof"][sp]),
                           "p_value": _value(r[f"closure/{label}/p_value"][sp])["value"]}
                   for label in ("tau_alpha", "inverse_D")}},
        }
        if ru is not None:
            out["species"][name]["reduced"] = _reduced_species(r, sp, ru)
    if model_metrics is not None:
        for name in names:
            out["species"][name]["classifier"] = dict(model_metrics.get(name, {}))
    out["verdicts"] = claim_verdicts(r, model_metrics)
    return _json_safe(out)


def _pm(entry: dict, digits: int = 4) -> str:
    v, e = entry.get("value"), entry.get("error")
    if v is None:
        return "n/a"
    return f"{v:.{digits}g}" + (f" ± {e:.2g}" if e is not None else "")


def _t0(x: dict) -> str:
    text = _pm(x["T0"])
    return text + " (inside the fitted temperatures)" if x["T0"].get("inside_fitted_range") else text


def _closure(x: dict, label: str) -> str:
    c = x.get("relaxation_from_softness", {}).get(label, {})
    if c.get("chi2") is None:
        return "n/a"
    p = f", p = {c['p_value']:.2g}" if c.get("p_value") is not None else ""
    return f"{c['chi2']:.3g} ({c['dof']}){p}"


def _metric(x: dict, key: str, digits: int = 3) -> str:
    v = x.get("classifier", {}).get(key)
    if v is None:
        return "n/a"
    err = x["classifier"].get(f"{key}_err")
    return f"{v:.{digits}g}" + (f" ± {err:.2g}" if err is not None else "")


def summary_markdown(s: dict) -> str:
    """A Markdown table of the summary (one column per species), the flagged temperatures and
    the verdicts on the claims."""
    tau = "tau_alpha"
    rows = [("e0 (eV)", lambda x: _pm(x["e0"]["eV"])), ("e0 (K)", lambda x: _pm(x["e0"]["K"])),
            ("e1 (eV per unit S)", lambda x: _pm(x["e1"]["eV"])), ("Sigma0", lambda x: _pm(x["Sigma0"])),
            ("Sigma1 (per unit S)", lambda x: _pm(x["Sigma1"])),
            ("T0 = e1/Sigma1 (K)", _t0),
            ("bins fitted / populated (curved)",
             lambda x: f"{x['n_bins_fitted']} / {x['n_bins_populated']} ({x['n_bins_curved']})"),
            ("<S> = a + b T: a", lambda x: _pm(x["mean_softness"]["a"])),
            ("b (1/K)", lambda x: _pm(x["mean_softness"]["b"])),
            ("E_inf = e0 - e1 a (eV)", lambda x: _pm(x["apparent_barrier"]["E_inf"]["eV"])),
            ("E_low of tau_alpha, T < T_x (eV)", lambda x: _pm(x[tau]["E_low"]["eV"])),
            ("E_high of tau_alpha, T > T_x (eV)", lambda x: _pm(x[tau]["E_high"]["eV"])),
            ("crossover T_x (K)", lambda x: _pm(x[tau]["T_crossover"])),
            ("tau_alpha fit: chi2/dof (dof)",
             lambda x: ("n/a" if x[tau]["chi2_dof"] is None else f"{x[tau]['chi2_dof']:.3g}")
             + f" ({x[tau]['dof']})"),
            ("tau_S from softness vs tau_alpha: chi2 (dof)", lambda x: _closure(x, "tau_alpha")),
            ("tau_S from softness vs 1/D: chi2 (dof)", lambda x: _closure(x, "inverse_D")),
            ("ROC AUC (held out)", lambda x: _metric(x, "roc_auc")),
            ("P(S > 0 given rearranging)", lambda x: _metric(x, "P_S_positive_given_rearranging")),
            ("hyperplane at the stability T: cosine / corr(S)",
             lambda x: _metric(x, "stability_cosine", digits=3) + " / "
             + _metric(x, "stability_pearson_S", digits=3))]
    names = list(s["species"])
    lines = ["| quantity | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(fn(s["species"][n]) for n in names) + " |" for label, fn in rows]
    temps = ", ".join(f"{t:g}" for t in s["temperatures_K"])
    text = f"Temperatures: {temps} K; T_train = {s['T_train_K']} K.\n\n" + "\n".join(lines) + "\n"
    if "reduced_units" in s:
        text += _reduced_markdown(s, names)
    flagged = [f"{n} at {f['T_K']:g} K ({f['reason']})" for n in names
               for f in s["species"][n]["flagged_temperatures"]]
    if flagged:
        text += "\nLeft out of the P_R fits: " + "; ".join(flagged) + ".\n"
    notes = {"none": "E_low and E_high agree within two errors: no significant kink, so T_x is not measured",
             "fragile-to-strong": "the apparent barrier is larger above T_x than below (E_high > E_low), "
                                  "the opposite of a strong-to-fragile crossover"}
    for kind, note in notes.items():
        which = [n for n in names if s["species"][n][tau].get("kink") == kind]
        if which:
            text += f"\ntau_alpha of {' and '.join(which)}: {note}.\n"
    if "verdicts" in s:
        text += "\n## The claims\n\n"
        for key, v in s["verdicts"].items():
            text += f"- **({key}) {v['claim']}: {v['status'].upper()}.** {v['statement']}\n"
    return text


def _reduced_markdown(s: dict, names: list) -> str:
    """The reduced-units table of :func:`summary_markdown` (see :func:`make_summary`)."""
    ru = s["reduced_units"]
    tau = "tau_alpha"
    rows = [("T0 = e1/Sigma1 (T*)", lambda x: _pm(x["T0"])), ("e0 (E*)", lambda x: _pm(x["e0"])),
            ("e1 (E* per unit S)", lambda x: _pm(x["e1"])),
            ("E_inf = e0 - e1 a (E*)", lambda x: _pm(x["E_inf"])),
            ("b of <S> = a + b T (per unit T*)", lambda x: _pm(x["mean_softness_b"])),
            ("E_low of tau_alpha, T < T_x (E*)", lambda x: _pm(x[tau]["E_low"])),
            ("E_high of tau_alpha, T > T_x (E*)", lambda x: _pm(x[tau]["E_high"])),
            ("crossover T_x (T*)", lambda x: _pm(x[tau]["T_crossover"])),
            ("ln(tau0 / t*)", lambda x: _pm(x[tau]["ln_tau0"])),
            ("tau_alpha (t*) by temperature",
             lambda x: ", ".join(_pm(v, 3) for v in x[tau]["tau_alpha"]))]
    lines = ["| quantity (reduced) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(fn(s["species"][n]["reduced"]) for n in names) + " |"
              for label, fn in rows]
    temps = ", ".join(f"{t:.4g}" for t in ru["temperatures"])
    t_train = "n/a" if ru["T_train"] is None else f"{ru['T_train']:.4g}"
    return (f"\n## In reduced units\n\n{ru['name']} (system {ru['system']}): {ru['definition']}.\n\n"
            f"Temperatures: T* = {temps}; T_train* = {t_train}.\n\n" + "\n".join(lines) + "\n")


def write_results(f, r: dict) -> None:
    """Store the output of :func:`analyse` in an open, writable HDF5 file."""
    for key, value in r.items():
        if key == "attrs":
            continue
        if key == "species_names":
            f[key] = names_dataset(result_species_names(r))
            continue
        value = np.asarray(value)
        f[key] = value.astype("S") if value.dtype.kind == "U" else value
    f.attrs.update(r["attrs"])
    f.attrs["energy_units"] = "energies as E/k_B in K (*_K) and in eV (*_eV); temperatures in K"
    f.attrs["rearrangement_definition"] = (
        "atom i rearranges at softness frame f if it has a rearrangement event (hops '/events', the "
        "frame where an excursion of p_hop above p_c peaks) at a hops frame g with t_f <= t_g < t_f + "
        "P_R_window_fs; (f, i) counts only if every frame of that window is in the run with an event "
        "located or ruled out; P_R is the probability to start a rearrangement within P_R_window_fs")
    windows = np.unique(np.asarray(r["P_R_window_fs"]))
    f.attrs["P_R_window_fs"] = float(windows[0]) if windows.size == 1 else np.nan


def arrhenius_file(cfg: dict, softness, hops, dynamics, out, summary=None, model=None,
                   stability=None) -> dict:
    """The ``softness arrhenius`` stage.

    Args:
      cfg: resolved config (uses ``seed`` and ``arrhenius``).
      softness, hops, dynamics: lists of files, one of each per temperature and run, grouped by
        their ``temperature_K`` attribute (several runs at one temperature: paired by trajectory).
      out: the HDF5 product (layout: the keys of :func:`analyse`, all per-species arrays with a
        leading axis [S] in the order of ``/species_names``, which every input names alike; the
        root attribute ``system`` of the inputs, when they have one).
      summary: optional JSON path for the headline numbers; a Markdown table is written next to
        it (same name, ``.md``).
      model: optional model file (stage ``train``) whose held-out numbers decide claim (a);
        None: that verdict is "not evaluated".

    Returns:
      The summary dict.
    """
    r = analyse(cfg, list(softness), list(hops), list(dynamics))
    metrics = None
    if model is not None:
        metrics = read_model_metrics(model, stability)
        names = result_species_names(r)
        if list(metrics) != names:
            raise SoftnessError(f"model file {model} names the species ({', '.join(metrics)}) but the "
                                f"softness files name ({', '.join(names)}); give the model the softness was "
                                "made with.")
    s = make_summary(r, metrics)
    with atomic_h5(out, "arrhenius", cfg) as f:
        write_results(f, r)
        f.attrs["summary"] = json.dumps(s, allow_nan=False)
    if summary is not None:
        path = Path(summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        md = path.with_suffix(".md")
        json_text = json.dumps(s, indent=2, allow_nan=False) + "\n"
        for target, text in ((path, json_text), (md, summary_markdown(s))):
            tmp = target.with_name(f".{target.name}.partial")
            tmp.write_text(text)
            tmp.replace(target)
        log.info("wrote %s and %s", path, md)
    log.info("wrote %s", out)
    return s
