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

* **Rearrangement.** For a softness frame f (trajectory frame index) and the next softness
  frame f' (or f + k after the last one, k the usual spacing), atom i *rearranges at f* if its
  hops label is 1 at any hops frame g with f <= g < f'. With softness on every frame this is the
  label at f itself. (f, i) counts only if the window holds at least one hops frame and p_hop is
  defined (finite) at all of them, so the ends of the run where p_hop is undefined drop out.
  P_R is therefore a probability per softness-frame interval (keep it short: a probability that
  is not small saturates, which bends ln P_R against 1/T).
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
  in blocks of ``arrhenius.bootstrap_block_fs`` (default: the hops file's t_R, over which the
  labels of one jump are correlated). ``ln_P_R_err`` is the bootstrap standard deviation of
  ln P_R, the interval is its 15.9-84.1 % percentiles.
* **Fits.** Weighted least squares; when chi^2 / dof > 1 the covariance is multiplied by it
  (Birge ratio), so scatter beyond the error bars widens the uncertainties. Per bin:
  ln P_R = Sigma - DeltaE / T over its usable temperatures. Then the per-bin (Sigma, DeltaE),
  with their 2 x 2 covariances, are fitted jointly by generalised least squares to
  DeltaE = e0 - e1 S, Sigma = Sigma0 - Sigma1 S, so the 4 x 4 covariance of
  (e0, e1, Sigma0, Sigma1) and the error of T0 = e1 / Sigma1 include their correlations.
* **<S>(T)**: mean over atoms and frames; its error from blocking of the per-frame means
  (Flyvbjerg and Petersen, J. Chem. Phys. 91, 461 (1989)), largest over block sizes with at
  least 8 blocks. Weighted fit a + b T with chi^2 / dof and R^2.
* **Apparent barriers** from data, E_app = -d ln(rate) / d(1/T) = d ln(tau) / d(1/T), as secants
  between neighbouring temperatures, reported at T_ij = sqrt(T_i T_j): for the softness model
  (E_app linear in T^2 ... exactly: linear in 1/x^2 with x = 1/T) the secant equals E_app at that
  temperature. Measured from tau_alpha (no error: the dynamics files carry none), from the mean
  rearrangement rate and from D (where diffusive), and compared with the model's prediction.
* **tau_alpha(T)**: Arrhenius ln tau = ln tau0 + E_A / T on the low temperatures (T <=
  ``arrhenius.T_split_K``; default: the lower half) and VFT ln tau = ln tau0 + B / (T - T_VFT) on
  the high ones (T >= T_split; default: the upper half, at least three), unweighted in ln tau.
  The crossover temperature T_x is where the VFT apparent barrier B T^2 / (T - T_VFT)^2 rises to
  the low-temperature barrier E_A on cooling: T_x = T_VFT / (1 - sqrt(B / E_A)) (needs E_A > B).

Too few temperatures, per quantity:

* fewer than two temperatures in the input: an error (nothing here can be fitted);
* a bin usable at fewer than two temperatures: NaN Sigma / DeltaE for that bin, with a warning;
* fewer than two fitted bins for a species: NaN e0, e1, Sigma0, Sigma1, T0 for that species with a
  warning; an error if no species has two;
* tau_alpha reached at fewer than 2 (Arrhenius) or 3 (VFT) of the temperatures of its branch: NaN
  fit and NaN T_x, with a warning; uncertainties need one more point than parameters (else NaN).

Energies are stored in K (as E / k_B) and in eV (``softness.units``); temperatures in K.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softness import units
from softness.errors import SoftnessError
from softness.io import atomic_h5, open_input, require

log = logging.getLogger(__name__)

SPECIES_NAMES = ("Si", "O")

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


# ---------------------------------------------------------------------------- the softness model

def usable_points(n_events, P_R, min_events: int, max_P_R: float) -> np.ndarray:
    """Which (T, bin) enter the fits: at least ``min_events`` events and P_R <= ``max_P_R``
    (below saturation). NaN P_R (no atoms) is never usable."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(n_events) >= min_events) & (np.asarray(P_R, dtype=np.float64) <= max_P_R)


def fit_bins(temperature_K, ln_p, ln_p_err, usable) -> dict:
    """Arrhenius fit ln P_R = Sigma - DeltaE / T in every softness bin.

    Args:
      temperature_K: [T]; ln_p, ln_p_err, usable: [T, B].

    Returns:
      dict of [B] arrays ``Sigma``, ``DeltaE_K``, their errors, ``cov`` [B, 2, 2] of
      (Sigma, DeltaE_K), ``n_temperatures`` and ``chi2_dof``; NaN where a bin is usable at
      fewer than two temperatures.
    """
    inv_t = 1.0 / np.asarray(temperature_K, dtype=np.float64)
    ln_p, ln_p_err, usable = np.asarray(ln_p), np.asarray(ln_p_err), np.asarray(usable, bool)
    n_bins = ln_p.shape[1]
    out = {"Sigma": np.full(n_bins, np.nan), "DeltaE_K": np.full(n_bins, np.nan),
           "cov": np.full((n_bins, 2, 2), np.nan), "n_temperatures": usable.sum(axis=0),
           "chi2_dof": np.full(n_bins, np.nan)}
    for b in range(n_bins):
        use = usable[:, b] & np.isfinite(ln_p[:, b]) & (ln_p_err[:, b] > 0)
        out["n_temperatures"][b] = int(use.sum())
        if use.sum() < 2:
            continue
        A = np.stack([np.ones(use.sum()), -inv_t[use]], axis=1)
        fit = weighted_lstsq(A, ln_p[use, b], ln_p_err[use, b])
        out["Sigma"][b], out["DeltaE_K"][b] = fit.params
        out["cov"][b] = fit.cov
        out["chi2_dof"][b] = fit.chi2_dof
    out["Sigma_err"] = np.sqrt(out["cov"][:, 0, 0])
    out["DeltaE_K_err"] = np.sqrt(out["cov"][:, 1, 1])
    return out


def fit_lines(s_bins, bins: dict) -> Fit:
    """Joint fit of DeltaE(S) = e0 - e1 S and Sigma(S) = Sigma0 - Sigma1 S to the fitted bins.

    Args:
      s_bins: [B] softness of each bin.
      bins: output of :func:`fit_bins`.

    Returns:
      :class:`Fit` of (e0_K, e1_K, Sigma0, Sigma1); NaN when fewer than two bins are fitted.
    """
    s_bins = np.asarray(s_bins, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(bins["Sigma"]) & np.all(np.isfinite(bins["cov"]), axis=(1, 2))
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


def fit_mean_softness(temperature_K, mean, err) -> dict:
    """Weighted fit <S>(T) = a + b T.

    Returns:
      dict with the :class:`Fit` (``fit``: params (a, b)), ``chi2_dof`` and the weighted ``R2``.
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    mean, err = np.asarray(mean, dtype=np.float64), np.asarray(err, dtype=np.float64)
    ok = np.isfinite(mean)
    t, mean, err = t[ok], mean[ok], err[ok]
    if t.size < 2:
        return {"fit": Fit.nan(2), "chi2_dof": np.nan, "R2": np.nan}
    weighted = bool(np.all(np.isfinite(err) & (err > 0)))
    if not weighted:
        log.warning("<S>(T) has no usable error at some temperature; fitting it unweighted (chi2/dof NaN).")
        err = np.ones_like(mean)
    fit = weighted_lstsq(np.stack([np.ones_like(t), t], axis=1), mean, err if weighted else None)
    w = 1.0 / err**2
    ybar = np.sum(w * mean) / np.sum(w)
    ss_tot = np.sum(w * (mean - ybar) ** 2)
    r2 = 1.0 - fit.chi2 / ss_tot if ss_tot > 0 else np.nan
    return {"fit": fit, "chi2_dof": fit.chi2_dof if weighted else np.nan, "R2": float(r2)}


def predicted_barrier(temperature_K, lines: Fit, mean_fit: Fit):
    """E_app(T) = (e0 - e1 a) - Sigma1 b T^2 in K, with its propagated error.

    The two fits are independent (P_R counts vs mean softness), so their covariances add.
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    e0, e1, _, s1 = lines.params
    a, b = mean_fit.params
    e = e0 - e1 * a - s1 * b * t**2
    g_lines = np.stack([np.ones_like(t), -a * np.ones_like(t), np.zeros_like(t), -b * t**2], axis=-1)
    g_mean = np.stack([-e1 * np.ones_like(t), -s1 * t**2], axis=-1)
    var = (np.einsum("...i,ij,...j->...", g_lines, lines.cov, g_lines)
           + np.einsum("...i,ij,...j->...", g_mean, mean_fit.cov, g_mean))
    return e, np.sqrt(var)


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


# ---------------------------------------------------------------------------- tau_alpha(T)

def fit_arrhenius_tau(temperature_K, tau_fs) -> dict:
    """ln tau = ln tau0 + E_A / T, unweighted in ln tau. Returns ``E_A_K``, ``ln_tau0`` (fs), errors."""
    t = np.asarray(temperature_K, dtype=np.float64)
    fit = weighted_lstsq(np.stack([np.ones_like(t), 1.0 / t], axis=1), np.log(tau_fs))
    return {"ln_tau0": fit.params[0], "ln_tau0_err": fit.err[0], "E_A_K": fit.params[1],
            "E_A_K_err": fit.err[1], "cov": fit.cov, "n": t.size}


def fit_vft(temperature_K, tau_fs) -> dict:
    """ln tau = ln tau0 + B / (T - T_VFT), unweighted in ln tau, with 0 <= T_VFT < min(T).

    T_VFT is found on a fine grid (the other two parameters are linear at fixed T_VFT) and then
    refined; the covariance comes from the Jacobian at the optimum and the residual scatter.

    Returns:
      dict with ``ln_tau0``, ``B_K``, ``T_VFT_K``, their errors, ``cov`` (order ln_tau0, B_K,
      T_VFT_K) and ``at_bound`` (T_VFT at 0: the data are not super-Arrhenius).
    """
    from scipy.optimize import minimize_scalar

    t = np.asarray(temperature_K, dtype=np.float64)
    y = np.log(np.asarray(tau_fs, dtype=np.float64))
    t_hi = float(t.min()) * (1.0 - 1e-6)

    def ssr(t_vft):
        A = np.stack([np.ones_like(t), 1.0 / (t - t_vft)], axis=1)
        p, *_ = np.linalg.lstsq(A, y, rcond=None)
        r = y - A @ p
        return float(r @ r), p

    grid = np.linspace(0.0, t_hi, 400)
    values = np.array([ssr(g)[0] for g in grid])
    k = int(np.argmin(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    t_vft = float(minimize_scalar(lambda g: ssr(g)[0], bounds=(lo, hi), method="bounded",
                                  options={"xatol": 1e-9 * t_hi}).x) if hi > lo else float(grid[k])
    chi2, (ln_tau0, b) = ssr(t_vft)
    jac = np.stack([np.ones_like(t), 1.0 / (t - t_vft), b / (t - t_vft) ** 2], axis=1)
    dof = t.size - 3
    if dof > 0:
        cov = np.linalg.pinv(jac.T @ jac) * chi2 / dof
    else:
        cov = np.full((3, 3), np.nan)
    err = np.sqrt(np.diag(cov))
    return {"ln_tau0": ln_tau0, "B_K": b, "T_VFT_K": t_vft, "ln_tau0_err": err[0], "B_K_err": err[1],
            "T_VFT_K_err": err[2], "cov": cov, "n": t.size, "at_bound": bool(t_vft < 1e-3 * t_hi)}


def crossover_temperature(arr: dict, vft: dict) -> tuple[float, float]:
    """T_x = T_VFT / (1 - sqrt(B / E_A)) where the VFT apparent barrier reaches E_A; NaN if none."""
    e_a, b, t_vft = arr["E_A_K"], vft["B_K"], vft["T_VFT_K"]
    if not (np.isfinite(e_a) and np.isfinite(b) and e_a > b > 0) or vft.get("at_bound"):
        return np.nan, np.nan

    def tx(p):
        return p[2] / (1.0 - np.sqrt(p[1] / p[0]))

    p = np.array([e_a, b, t_vft])
    cov = np.zeros((3, 3))
    cov[0, 0] = arr["E_A_K_err"] ** 2
    cov[1:, 1:] = vft["cov"][1:, 1:]
    grad = np.zeros(3)
    for i in range(3):
        h = 1e-6 * max(abs(p[i]), 1.0)
        dp = np.zeros(3)
        dp[i] = h
        grad[i] = (tx(p + dp) - tx(p - dp)) / (2 * h)
    return float(tx(p)), float(np.sqrt(grad @ cov @ grad))


def tau_alpha_crossover(temperature_K, tau_fs, T_split_K=None, species: str = "") -> dict:
    """Arrhenius (low T), VFT (high T) and the crossover temperature of tau_alpha(T).

    Args:
      temperature_K: [T]; tau_fs: [T] (NaN where not reached).
      T_split_K: Arrhenius on T <= T_split, VFT on T >= T_split; None: the lower half
        (ceil(n / 2) temperatures, at least 2) and the upper half (at least 3).
      species: named in warnings.

    Returns:
      dict with ``arrhenius`` and ``vft`` (see :func:`fit_arrhenius_tau`, :func:`fit_vft`;
      NaN where too few points), ``T_x_K`` and ``T_x_K_err``.
    """
    t = np.asarray(temperature_K, dtype=np.float64)
    tau = np.asarray(tau_fs, dtype=np.float64)
    ok = np.isfinite(tau) & (tau > 0)
    t, tau = t[ok], tau[ok]
    order = np.argsort(t)
    t, tau = t[order], tau[order]
    n = t.size
    if T_split_K is None:
        low = np.arange(n) < max(2, int(np.ceil(n / 2)))
        high = np.arange(n) >= n - max(3, n // 2 + 1)
    else:
        low, high = t <= T_split_K, t >= T_split_K
    nan_arr = {"ln_tau0": np.nan, "ln_tau0_err": np.nan, "E_A_K": np.nan, "E_A_K_err": np.nan,
               "cov": np.full((2, 2), np.nan), "n": int(low.sum())}
    nan_vft = {"ln_tau0": np.nan, "B_K": np.nan, "T_VFT_K": np.nan, "ln_tau0_err": np.nan, "B_K_err": np.nan,
               "T_VFT_K_err": np.nan, "cov": np.full((3, 3), np.nan), "n": int(high.sum()), "at_bound": False}
    if low.sum() >= 2:
        arr = fit_arrhenius_tau(t[low], tau[low])
    else:
        arr = nan_arr
        log.warning("%s: tau_alpha is known at %d low temperature(s); at least 2 are needed for the "
                    "Arrhenius fit (NaN).", species, int(low.sum()))
    if high.sum() >= 3:
        vft = fit_vft(t[high], tau[high])
    else:
        vft = nan_vft
        log.warning("%s: tau_alpha is known at %d high temperature(s); at least 3 are needed for the VFT "
                    "fit (NaN).", species, int(high.sum()))
    for name, res, k in (("Arrhenius", arr, 2), ("VFT", vft, 3)):
        if res["n"] == k:
            log.warning("%s: the %s fit of tau_alpha has no degree of freedom; its uncertainties are NaN.",
                        species, name)
    tx, tx_err = crossover_temperature(arr, vft)
    if vft.get("at_bound"):
        log.warning("%s: no crossover temperature: tau_alpha is not super-Arrhenius at T >= %.4g K (the VFT "
                    "fit puts T_VFT at 0).", species, t[high].min())
    elif np.isfinite(arr["E_A_K"]) and np.isfinite(vft["B_K"]) and not np.isfinite(tx):
        log.warning("%s: no crossover temperature: the VFT fit (B = %.4g K, T_VFT = %.4g K) never reaches "
                    "the Arrhenius barrier E_A = %.4g K.", species, vft["B_K"], vft["T_VFT_K"], arr["E_A_K"])
    arr["T_range_K"] = (t[low].min(), t[low].max()) if low.any() else (np.nan, np.nan)
    vft["T_range_K"] = (t[high].min(), t[high].max()) if high.any() else (np.nan, np.nan)
    return {"arrhenius": arr, "vft": vft, "T_x_K": tx, "T_x_K_err": tx_err}


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
    events = np.asarray(events, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    tail = events.shape[1:]
    starts = np.arange(0, events.shape[0], max(1, int(block)))
    ev_b = np.add.reduceat(events, starts, axis=0).reshape(starts.size, -1)
    tot_b = np.add.reduceat(totals, starts, axis=0).reshape(starts.size, -1)
    nb = starts.size
    weights = rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_boot).astype(np.float64)  # [n_boot, nb]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = ev_b.sum(0) / tot_b.sum(0)
        p_star = (weights @ ev_b) / (weights @ tot_b)
        ln_star = np.where(p_star > 0, np.log(np.where(p_star > 0, p_star, 1.0)), np.nan)
    good = np.isfinite(ln_star)
    ln_err = np.full(p.shape, np.nan)
    lo = np.full(p.shape, np.nan)
    hi = np.full(p.shape, np.nan)
    enough = good.sum(0) >= 2
    if enough.any():
        with np.errstate(invalid="ignore"):
            ln_err[enough] = np.nanstd(ln_star[:, enough], axis=0, ddof=1)
            q = np.nanpercentile(np.where(np.isfinite(p_star), p_star, np.nan)[:, enough],
                                 [50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)], axis=0)
        lo[enough], hi[enough] = q
    return p.reshape(tail), ln_err.reshape(tail), lo.reshape(tail), hi.reshape(tail)


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


def event_windows(softness_frames, hops_frames):
    """Rows [lo, hi) of the hops file that make up each softness frame's window.

    The window of softness frame f runs to the next softness frame (to f + k after the last,
    k the median spacing).
    """
    sf = np.asarray(softness_frames, dtype=np.int64)
    hf = np.asarray(hops_frames, dtype=np.int64)
    if sf.size > 1 and np.any(np.diff(sf) <= 0):
        raise SoftnessError("softness '/frames' must be strictly increasing.")
    if hf.size > 1 and np.any(np.diff(hf) <= 0):
        raise SoftnessError("hops '/frames' must be strictly increasing.")
    k = int(np.median(np.diff(sf))) if sf.size > 1 else 1
    ends = np.r_[sf[1:], sf[-1] + k]
    return np.searchsorted(hf, sf, side="left"), np.searchsorted(hf, ends, side="left"), k


def _chunks(n_frames: int, n_atoms: int):
    step = max(1, CHUNK_ELEMENTS // max(n_atoms, 1))
    for f0 in range(0, n_frames, step):
        yield f0, min(f0 + step, n_frames)


def _window_events(fh, lo, hi, f0, f1):
    """Events and validity [f1 - f0, N] of softness frames f0..f1-1 from the hops rows they span."""
    r0, r1 = int(lo[f0]), int(max(hi[f0:f1].max(), lo[f0]))
    n_atoms = fh["labels"].shape[1]
    lab = fh["labels"][r0:r1] if r1 > r0 else np.zeros((0, n_atoms), np.int8)
    ph = fh["p_hop"][r0:r1] if r1 > r0 else np.zeros((0, n_atoms), np.float32)
    zero = np.zeros((1, n_atoms), np.int64)
    ev = np.concatenate([zero, np.cumsum(lab == 1, axis=0)])
    bad = np.concatenate([zero, np.cumsum(~np.isfinite(ph), axis=0)])
    a, b = lo[f0:f1] - r0, hi[f0:f1] - r0
    valid = ((b > a)[:, None]) & ((bad[b] - bad[a]) == 0)
    return (ev[b] - ev[a]) > 0, valid


@dataclass
class TemperatureData:
    """One temperature's files and the per-frame counts derived from them."""

    temperature_K: float
    softness: Path
    hops: Path
    dynamics: Path
    frame_interval_fs: float = np.nan
    block_frames: int = 1


def _open_triplet(item: TemperatureData):
    fs = open_input(item.softness, "softness")
    fh = open_input(item.hops, "hops")
    require(fs, "softness", "frames", "species", what="softness")
    require(fh, "labels", "p_hop", "frames", "species", what="hops")
    if not np.array_equal(fs["species"][()], fh["species"][()]):
        raise SoftnessError(f"softness file {item.softness} and hops file {item.hops} describe different "
                            "atoms ('/species' differ).")
    return fs, fh


def _event_softness(item: TemperatureData, rng, cap: int = 2_000_000):
    """Softness of every rearranging (frame, atom) per species (subsampled beyond ``cap``), and S range."""
    fs, fh = _open_triplet(item)
    with fs, fh:
        species = fs["species"][()]
        lo, hi, _ = event_windows(fs["frames"][()], fh["frames"][()])
        s_ds = fs["softness"]
        out = [[], []]
        s_min, s_max = np.full(2, np.inf), np.full(2, -np.inf)
        for f0, f1 in _chunks(*s_ds.shape):
            s = s_ds[f0:f1]
            event, valid = _window_events(fh, lo, hi, f0, f1)
            for sp in range(2):
                mine = species == sp
                if not mine.any():
                    continue
                out[sp].append(s[:, mine][event[:, mine] & valid[:, mine]])
                s_min[sp] = min(s_min[sp], float(s[:, mine].min()))
                s_max[sp] = max(s_max[sp], float(s[:, mine].max()))
    values = []
    for sp in range(2):
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


def count_temperature(item: TemperatureData, edges, hist_edges) -> dict:
    """Per-frame counts of one temperature, per species.

    Returns:
      dict of per-species lists: ``events`` / ``totals`` [F, B] (binned (frame, atom) counts),
      ``s_sum`` [B] (sum of S of binned atoms), ``all_events`` / ``all_totals`` [F] (every atom),
      ``mean_S`` [F] per-frame mean softness, ``hist`` [N_HIST] softness histogram counts.
    """
    fs, fh = _open_triplet(item)
    with fs, fh:
        species = fs["species"][()]
        lo, hi, _ = event_windows(fs["frames"][()], fh["frames"][()])
        s_ds = fs["softness"]
        n_frames = s_ds.shape[0]
        n_bins = edges.shape[1] - 1
        res = {"events": [np.zeros((n_frames, n_bins)) for _ in range(2)],
               "totals": [np.zeros((n_frames, n_bins)) for _ in range(2)],
               "s_sum": [np.zeros(n_bins) for _ in range(2)],
               "all_events": [np.zeros(n_frames) for _ in range(2)],
               "all_totals": [np.zeros(n_frames) for _ in range(2)],
               "mean_S": [np.full(n_frames, np.nan) for _ in range(2)],
               "hist": [np.zeros(N_HIST) for _ in range(2)]}
        for f0, f1 in _chunks(*s_ds.shape):
            s = s_ds[f0:f1].astype(np.float64)
            event, valid = _window_events(fh, lo, hi, f0, f1)
            nf = f1 - f0
            for sp in range(2):
                mine = species == sp
                if not mine.any():
                    continue
                ss, ev, va = s[:, mine], event[:, mine], valid[:, mine]
                res["mean_S"][sp][f0:f1] = ss.mean(axis=1)
                res["hist"][sp] += np.histogram(ss, bins=hist_edges[sp])[0]
                res["all_events"][sp][f0:f1] = (ev & va).sum(axis=1)
                res["all_totals"][sp][f0:f1] = va.sum(axis=1)
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
    with open_input(item.dynamics, "dynamics") as f:
        require(f, "tau_alpha_fs", "D_A2_per_fs", "D_err_A2_per_fs", what="dynamics")
        out = {"tau": f["tau_alpha_fs"][()].astype(np.float64), "D": f["D_A2_per_fs"][()].astype(np.float64),
               "D_err": f["D_err_A2_per_fs"][()].astype(np.float64)}
        if "tau_alpha_reached" in f:
            out["tau"] = np.where(f["tau_alpha_reached"][()], out["tau"], np.nan)
        if "diffusive" in f:
            out["D"] = np.where(f["diffusive"][()], out["D"], np.nan)
    return out


def _temperatures(softness, hops, dynamics) -> list[TemperatureData]:
    """Pair the files by their ``temperature_K`` attribute, sorted by temperature."""
    by_kind = {}
    for kind, paths in (("softness", softness), ("hops", hops), ("dynamics", dynamics)):
        table = {}
        for p in paths:
            with open_input(p, kind) as f:
                t = float(f.attrs.get("temperature_K", np.nan))
            if not np.isfinite(t):
                raise SoftnessError(f"{kind} file {p} has no temperature_K attribute.")
            key = round(t, 6)
            if key in table:
                raise SoftnessError(f"{kind} files {table[key]} and {p} are both at {t:g} K.")
            table[key] = Path(p)
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
    return [TemperatureData(t, by_kind["softness"][t], by_kind["hops"][t], by_kind["dynamics"][t])
            for t in temps]


# ---------------------------------------------------------------------------- the analysis

def analyse(cfg: dict, softness, hops, dynamics) -> dict:
    """Everything the ``softness arrhenius`` stage stores, as a dict of arrays and scalars.

    Args:
      cfg: resolved config (uses ``seed`` and ``arrhenius``).
      softness, hops, dynamics: lists of files, one of each per temperature (any order).

    Returns:
      dict keyed like the product (see :func:`arrhenius_file`).
    """
    acfg = cfg["arrhenius"]
    items = _temperatures(softness, hops, dynamics)
    temps = np.array([it.temperature_K for it in items])
    n_t, n_bins = temps.size, acfg["n_bins"]
    seed = int(cfg["seed"])
    t_train = set()
    for it in items:
        with open_input(it.softness, "softness") as fs, open_input(it.hops, "hops") as fh:
            t_train.add(float(fs.attrs.get("T_train_K", np.nan)))
            t_fs = fs["time_fs"][()] if "time_fs" in fs else None
            it.frame_interval_fs = (float(np.median(np.diff(t_fs))) if t_fs is not None and t_fs.size > 1
                                    else float(fh.attrs.get("frame_interval_fs", np.nan)))
            block_fs = acfg["bootstrap_block_fs"]
            if block_fs is None:
                block_fs = float(fh.attrs.get("t_R_fs", np.nan))
            ratio = block_fs / it.frame_interval_fs
            it.block_frames = int(max(1, round(ratio))) if np.isfinite(ratio) else 1

    # Pass 1: softness of the rearranging atoms -> bin edges common to all temperatures.
    ev_s = [[], []]
    s_min, s_max = np.full(2, np.inf), np.full(2, -np.inf)
    for k, it in enumerate(items):
        values, lo, hi = _event_softness(it, np.random.default_rng([seed, _SEED_SALT, 0, k]))
        for sp in range(2):
            ev_s[sp].append(values[sp])
        s_min, s_max = np.minimum(s_min, lo), np.maximum(s_max, hi)
    edges = np.stack([softness_bin_edges(np.concatenate(ev_s[sp]), n_bins) for sp in range(2)])
    hist_edges = np.stack([np.linspace(s_min[sp], s_max[sp], N_HIST + 1) if np.isfinite(s_min[sp])
                           else np.linspace(-1, 1, N_HIST + 1) for sp in range(2)])

    # Pass 2: per-frame counts, bootstrap.
    shape = (2, n_t, n_bins)
    r = {"temperature_K": temps, "species_names": np.array(SPECIES_NAMES), "bins/edges": edges,
         "P_R": np.full(shape, np.nan), "ln_P_R_err": np.full(shape, np.nan),
         "P_R_ci_low": np.full(shape, np.nan), "P_R_ci_high": np.full(shape, np.nan),
         "n_events": np.zeros(shape, np.int64), "n_samples": np.zeros(shape, np.int64),
         "bins/S_mean_T": np.full(shape, np.nan), "usable": np.zeros(shape, bool),
         "mean_softness/mean": np.full((2, n_t), np.nan), "mean_softness/err": np.full((2, n_t), np.nan),
         "softness_histogram/edges": hist_edges, "softness_histogram/density": np.zeros((2, n_t, N_HIST)),
         "rate/P_R_mean": np.full((2, n_t), np.nan), "rate/ln_P_R_mean_err": np.full((2, n_t), np.nan),
         "rate/rate_per_fs": np.full((2, n_t), np.nan), "frame_interval_fs": np.zeros(n_t),
         "block_frames": np.zeros(n_t, np.int64)}
    s_sum, s_cnt = np.zeros((2, n_bins)), np.zeros((2, n_bins))
    for k, it in enumerate(items):
        c = count_temperature(it, edges, hist_edges)
        r["frame_interval_fs"][k], r["block_frames"][k] = it.frame_interval_fs, it.block_frames
        for sp in range(2):
            rng = np.random.default_rng([seed, _SEED_SALT, 1, k, sp])
            ev, tot = c["events"][sp], c["totals"][sp]
            p, ln_err, lo, hi = bootstrap_ratio(ev, tot, it.block_frames, acfg["n_bootstrap"], rng)
            r["P_R"][sp, k], r["ln_P_R_err"][sp, k] = p, ln_err
            r["P_R_ci_low"][sp, k], r["P_R_ci_high"][sp, k] = lo, hi
            r["n_events"][sp, k], r["n_samples"][sp, k] = ev.sum(0), tot.sum(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                r["bins/S_mean_T"][sp, k] = c["s_sum"][sp] / tot.sum(0)
            r["usable"][sp, k] = usable_points(ev.sum(0), p, acfg["min_events"], acfg["max_P_R"])
            s_sum[sp] += c["s_sum"][sp]
            s_cnt[sp] += tot.sum(0)
            pm, pm_err, _, _ = bootstrap_ratio(c["all_events"][sp], c["all_totals"][sp], it.block_frames,
                                               acfg["n_bootstrap"], rng)
            r["rate/P_R_mean"][sp, k], r["rate/ln_P_R_mean_err"][sp, k] = pm, pm_err
            r["rate/rate_per_fs"][sp, k] = pm / it.frame_interval_fs
            m = c["mean_S"][sp][np.isfinite(c["mean_S"][sp])]
            if m.size:
                r["mean_softness/mean"][sp, k] = m.mean()
                r["mean_softness/err"][sp, k] = blocked_standard_error(m)
            h = c["hist"][sp]
            if h.sum():
                r["softness_histogram/density"][sp, k] = h / (h.sum() * np.diff(hist_edges[sp]))
    with np.errstate(invalid="ignore", divide="ignore"):
        r["bins/S_mean"] = s_sum / s_cnt
    r["rate/rate_per_fs_err"] = r["rate/rate_per_fs"] * r["rate/ln_P_R_mean_err"]

    # Fits.
    dyn = [_read_dynamics(it) for it in items]
    tau = np.stack([d["tau"] for d in dyn], axis=1)  # [2, T]
    diff, diff_err = np.stack([d["D"] for d in dyn], axis=1), np.stack([d["D_err"] for d in dyn], axis=1)
    r["dynamics/tau_alpha_fs"], r["dynamics/D_A2_per_fs"], r["dynamics/D_err_A2_per_fs"] = tau, diff, diff_err
    fits = {"bin": [], "lines": [], "mean": [], "tau": []}
    for sp, name in enumerate(SPECIES_NAMES):
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_p = np.log(r["P_R"][sp])
        bins = fit_bins(temps, ln_p, r["ln_P_R_err"][sp], r["usable"][sp])
        unfitted = np.flatnonzero(~np.isfinite(bins["Sigma"]))
        if unfitted.size:
            log.warning("%s: softness bin(s) %s have at least %d events and P_R <= %g at fewer than two "
                        "temperatures; their Sigma and DeltaE are NaN and they are left out of the fits.",
                        name, unfitted.tolist(), acfg["min_events"], acfg["max_P_R"])
        lines = fit_lines(r["bins/S_mean"][sp], bins)
        if not np.all(np.isfinite(lines.params)):
            log.warning("%s: fewer than two softness bins could be fitted; e0, e1, Sigma0, Sigma1 and T0 "
                        "are NaN.", name)
        mean = fit_mean_softness(temps, r["mean_softness/mean"][sp], r["mean_softness/err"][sp])
        tcross = tau_alpha_crossover(temps, tau[sp], acfg["T_split_K"], name)
        fits["bin"].append(bins)
        fits["lines"].append(lines)
        fits["mean"].append(mean)
        fits["tau"].append(tcross)
    if not any(np.all(np.isfinite(fl.params)) for fl in fits["lines"]):
        raise SoftnessError(
            "no species has two softness bins with at least arrhenius.min_events "
            f"({acfg['min_events']}) rearrangements and P_R <= arrhenius.max_P_R ({acfg['max_P_R']:g}) at "
            "two or more temperatures; run longer, add lower temperatures, or lower "
            "arrhenius.min_events / arrhenius.n_bins.")
    _collect_fits(r, temps, fits)
    def nan_if_none(x):
        return np.nan if x is None else x

    r["attrs"] = {"T_train_K": t_train.pop() if len(t_train) == 1 else np.nan,
                  "n_bins": n_bins, "min_events": acfg["min_events"], "max_P_R": acfg["max_P_R"],
                  "n_bootstrap": acfg["n_bootstrap"],
                  "ci_level": CI_LEVEL, "tail_quantile": TAIL_QUANTILE,
                  "bootstrap_block_fs": nan_if_none(acfg["bootstrap_block_fs"]),
                  "T_split_K": nan_if_none(acfg["T_split_K"]),
                  "sources_softness": json.dumps([str(it.softness) for it in items]),
                  "sources_hops": json.dumps([str(it.hops) for it in items]),
                  "sources_dynamics": json.dumps([str(it.dynamics) for it in items])}
    return r


def _collect_fits(r: dict, temps, fits: dict) -> None:
    """Stack the per-species fits into [2, ...] arrays of ``r`` and log the headline numbers."""
    n_t = temps.size
    t_mid = np.sqrt(temps[1:] * temps[:-1])
    r["crossover/T_mid_K"] = t_mid
    for key in ("Sigma", "Sigma_err", "DeltaE_K", "DeltaE_K_err", "cov", "n_temperatures", "chi2_dof"):
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
    r["lines/n_bins_fitted"] = np.array([int(np.isfinite(b["Sigma"]).sum()) for b in fits["bin"]])
    t0 = np.array([crossing_temperature(fl) for fl in lines])
    r["lines/T0_K"], r["lines/T0_K_err"] = t0[:, 0], t0[:, 1]
    mean = fits["mean"]
    r["mean_softness/a"] = np.array([m["fit"].params[0] for m in mean])
    r["mean_softness/a_err"] = np.array([m["fit"].err[0] for m in mean])
    r["mean_softness/b_per_K"] = np.array([m["fit"].params[1] for m in mean])
    r["mean_softness/b_per_K_err"] = np.array([m["fit"].err[1] for m in mean])
    r["mean_softness/cov"] = np.stack([m["fit"].cov for m in mean])
    r["mean_softness/chi2_dof"] = np.array([m["chi2_dof"] for m in mean])
    r["mean_softness/R2"] = np.array([m["R2"] for m in mean])

    pred, pred_err, pred_mid, pred_mid_err = (np.full((2, n_t), np.nan), np.full((2, n_t), np.nan),
                                              np.full((2, n_t - 1), np.nan), np.full((2, n_t - 1), np.nan))
    e_inf, e_inf_err, curv, curv_err = (np.full(2, np.nan) for _ in range(4))
    for sp in range(2):
        fl, fm = lines[sp], mean[sp]["fit"]
        pred[sp], pred_err[sp] = predicted_barrier(temps, fl, fm)
        pred_mid[sp], pred_mid_err[sp] = predicted_barrier(t_mid, fl, fm)
        e_inf[sp], e_inf_err[sp] = predicted_barrier(0.0, fl, fm)
        e0, e1, _, s1 = fl.params
        a, b = fm.params
        curv[sp] = s1 * b
        curv_err[sp] = np.hypot(b * fl.err[3], s1 * fm.err[1])
    r["crossover/E_app_predicted_K"], r["crossover/E_app_predicted_K_err"] = pred, pred_err
    r["crossover/E_app_predicted_mid_K"], r["crossover/E_app_predicted_mid_K_err"] = pred_mid, pred_mid_err
    r["crossover/E_inf_K"], r["crossover/E_inf_K_err"] = e_inf, e_inf_err  # e0 - e1 a
    r["crossover/Sigma1_b_per_K"], r["crossover/Sigma1_b_per_K_err"] = curv, curv_err

    with np.errstate(divide="ignore", invalid="ignore"):
        _, e_rate, e_rate_err = secant_barrier(temps, np.log(r["rate/rate_per_fs"]),
                                               r["rate/ln_P_R_mean_err"])
        _, e_tau, _ = secant_barrier(temps, np.log(r["dynamics/tau_alpha_fs"]), sign=1.0)
        _, e_d, e_d_err = secant_barrier(temps, np.log(r["dynamics/D_A2_per_fs"]),
                                         r["dynamics/D_err_A2_per_fs"] / r["dynamics/D_A2_per_fs"])
    r["crossover/E_app_rate_K"], r["crossover/E_app_rate_K_err"] = e_rate, e_rate_err
    r["crossover/E_app_tau_K"] = e_tau
    r["crossover/E_app_D_K"], r["crossover/E_app_D_K_err"] = e_d, e_d_err
    for key in ("E_app_predicted_K", "E_app_predicted_mid_K", "E_inf_K", "E_app_rate_K", "E_app_tau_K",
                "E_app_D_K"):
        r[f"crossover/{key[:-2]}_eV"] = k_to_eV(r[f"crossover/{key}"])
        if f"crossover/{key}_err" in r:
            r[f"crossover/{key[:-2]}_eV_err"] = k_to_eV(r[f"crossover/{key}_err"])

    tau = fits["tau"]
    for key in ("E_A_K", "E_A_K_err", "ln_tau0", "ln_tau0_err"):
        r[f"tau_fit/arrhenius/{key}"] = np.array([t["arrhenius"][key] for t in tau])
    r["tau_fit/arrhenius/E_A_eV"] = k_to_eV(r["tau_fit/arrhenius/E_A_K"])
    r["tau_fit/arrhenius/E_A_eV_err"] = k_to_eV(r["tau_fit/arrhenius/E_A_K_err"])
    r["tau_fit/arrhenius/T_range_K"] = np.array([t["arrhenius"]["T_range_K"] for t in tau])
    for key in ("ln_tau0", "ln_tau0_err", "B_K", "B_K_err", "T_VFT_K", "T_VFT_K_err"):
        r[f"tau_fit/vft/{key}"] = np.array([t["vft"][key] for t in tau])
    r["tau_fit/vft/T_range_K"] = np.array([t["vft"]["T_range_K"] for t in tau])
    r["tau_fit/vft/cov"] = np.stack([t["vft"]["cov"] for t in tau])
    r["tau_fit/T_x_K"] = np.array([t["T_x_K"] for t in tau])
    r["tau_fit/T_x_K_err"] = np.array([t["T_x_K_err"] for t in tau])

    for sp, name in enumerate(SPECIES_NAMES):
        lv = [r[f"lines/{k}"][sp] for k in ("e0_K", "e0_K_err", "e1_K", "e1_K_err", "Sigma0", "Sigma0_err",
                                             "Sigma1", "Sigma1_err", "T0_K", "T0_K_err", "n_bins_fitted")]
        log.info("%s: DeltaE(S) = (%.4g +- %.2g) - (%.4g +- %.2g) S K, Sigma(S) = (%.4g +- %.2g) - "
                 "(%.4g +- %.2g) S, T0 = %.4g +- %.2g K (%d bins)", name, *lv)
        mv = [r[f"mean_softness/{k}"][sp] for k in ("a", "a_err", "b_per_K", "b_per_K_err", "chi2_dof", "R2")]
        log.info("%s: <S>(T) = (%.4g +- %.2g) + (%.4g +- %.2g) T/K, chi2/dof %.3g, R2 %.3f", name, *mv)
        log.info("%s: tau_alpha: E_A = %.4g eV at low T, T_VFT = %.4g K, crossover T_x = %.4g +- %.2g K",
                 name,
                 r["tau_fit/arrhenius/E_A_eV"][sp], r["tau_fit/vft/T_VFT_K"][sp], r["tau_fit/T_x_K"][sp],
                 r["tau_fit/T_x_K_err"][sp])


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


def make_summary(r: dict) -> dict:
    """The headline numbers with uncertainties, as plain JSON-able data (NaN written as null)."""
    out = {"temperatures_K": [float(t) for t in r["temperature_K"]],
           "T_train_K": _value(r["attrs"]["T_train_K"])["value"], "species": {}}
    for sp, name in enumerate(SPECIES_NAMES):
        def v(key, unit=None, sp=sp):
            err = r.get(f"{key}_err")
            return _value(r[key][sp], None if err is None else err[sp], unit)

        def energy(stem, sp=sp):  # stem + "_K" and stem + "_eV"
            return {"K": v(f"{stem}_K", "K"), "eV": v(f"{stem}_eV", "eV")}

        tf = "tau_fit"
        out["species"][name] = {
            "e0": energy("lines/e0"),
            "e1": {**energy("lines/e1"), "note": "per unit softness"},
            "Sigma0": v("lines/Sigma0"),
            "Sigma1": v("lines/Sigma1", "per unit softness"),
            "T0": v("lines/T0_K", "K"),
            "lines_chi2_dof": v("lines/chi2_dof")["value"],
            "n_bins_fitted": int(r["lines/n_bins_fitted"][sp]),
            "mean_softness": {"a": v("mean_softness/a"), "b": v("mean_softness/b_per_K", "1/K"),
                              "chi2_dof": v("mean_softness/chi2_dof")["value"],
                              "R2": v("mean_softness/R2")["value"]},
            "apparent_barrier": {"E_inf": energy("crossover/E_inf"),
                                 "Sigma1_b": v("crossover/Sigma1_b_per_K", "1/K"),
                                 "formula": "E_app(T) = E_inf - Sigma1 b T^2, E_inf = e0 - e1 a"},
            "tau_alpha": {
                "arrhenius": {"E_A": energy(f"{tf}/arrhenius/E_A"),
                              "ln_tau0_fs": v(f"{tf}/arrhenius/ln_tau0"),
                              "T_range_K": [_value(x)["value"] for x in r[f"{tf}/arrhenius/T_range_K"][sp]]},
                "vft": {"B": v(f"{tf}/vft/B_K", "K"), "T_VFT": v(f"{tf}/vft/T_VFT_K", "K"),
                        "ln_tau0_fs": v(f"{tf}/vft/ln_tau0"),
                        "T_range_K": [_value(x)["value"] for x in r[f"{tf}/vft/T_range_K"][sp]]},
                "T_crossover": v(f"{tf}/T_x_K", "K")},
        }
    return out


def _pm(entry: dict, digits: int = 4) -> str:
    v, e = entry.get("value"), entry.get("error")
    if v is None:
        return "n/a"
    return f"{v:.{digits}g}" + (f" ± {e:.2g}" if e is not None else "")


def summary_markdown(s: dict) -> str:
    """A Markdown table of the summary (one column per species)."""
    rows = [("e0 (eV)", lambda x: _pm(x["e0"]["eV"])), ("e0 (K)", lambda x: _pm(x["e0"]["K"])),
            ("e1 (eV per unit S)", lambda x: _pm(x["e1"]["eV"])), ("Sigma0", lambda x: _pm(x["Sigma0"])),
            ("Sigma1 (per unit S)", lambda x: _pm(x["Sigma1"])),
            ("T0 = e1/Sigma1 (K)", lambda x: _pm(x["T0"])),
            ("<S> = a + b T: a", lambda x: _pm(x["mean_softness"]["a"])),
            ("b (1/K)", lambda x: _pm(x["mean_softness"]["b"])),
            ("E_inf = e0 - e1 a (eV)", lambda x: _pm(x["apparent_barrier"]["E_inf"]["eV"])),
            ("E_A of tau_alpha, low T (eV)", lambda x: _pm(x["tau_alpha"]["arrhenius"]["E_A"]["eV"])),
            ("T_VFT (K)", lambda x: _pm(x["tau_alpha"]["vft"]["T_VFT"])),
            ("crossover T_x (K)", lambda x: _pm(x["tau_alpha"]["T_crossover"]))]
    names = list(s["species"])
    lines = ["| quantity | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(fn(s["species"][n]) for n in names) + " |" for label, fn in rows]
    temps = ", ".join(f"{t:g}" for t in s["temperatures_K"])
    return f"Temperatures: {temps} K; T_train = {s['T_train_K']} K.\n\n" + "\n".join(lines) + "\n"


def write_results(f, r: dict) -> None:
    """Store the output of :func:`analyse` in an open, writable HDF5 file."""
    for key, value in r.items():
        if key == "attrs":
            continue
        value = np.asarray(value)
        f[key] = value.astype("S") if value.dtype.kind == "U" else value
    f.attrs.update(r["attrs"])
    f.attrs["energy_units"] = "energies as E/k_B in K (*_K) and in eV (*_eV); temperatures in K"
    f.attrs["rearrangement_definition"] = (
        "atom i rearranges at softness frame f if its hops label is 1 at any hops frame g with "
        "f <= g < next softness frame; P_R is per softness-frame interval")


def arrhenius_file(cfg: dict, softness, hops, dynamics, out, summary=None) -> dict:
    """The ``softness arrhenius`` stage.

    Args:
      cfg: resolved config (uses ``seed`` and ``arrhenius``).
      softness, hops, dynamics: lists of files, one of each per temperature, paired by their
        ``temperature_K`` attribute.
      out: the HDF5 product (layout: the keys of :func:`analyse`, all per-species arrays with a
        leading axis [2] = (Si, O)).
      summary: optional JSON path for the headline numbers; a Markdown table is written next to
        it (same name, ``.md``).

    Returns:
      The summary dict.
    """
    r = analyse(cfg, list(softness), list(hops), list(dynamics))
    s = make_summary(r)
    with atomic_h5(out, "arrhenius", cfg) as f:
        write_results(f, r)
        f.attrs["summary"] = json.dumps(s)
    if summary is not None:
        path = Path(summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        md = path.with_suffix(".md")
        for target, text in ((path, json.dumps(s, indent=2) + "\n"), (md, summary_markdown(s))):
            tmp = target.with_name(f".{target.name}.partial")
            tmp.write_text(text)
            tmp.replace(target)
        log.info("wrote %s and %s", path, md)
    log.info("wrote %s", out)
    return s
