"""The planted-barrier test: how well the unchanged pipeline recovers a known barrier.

The real structure functions, temperatures and sampling are kept; only the rearrangements are
replaced by synthetic ones drawn from a barrier we choose. The unchanged stages then run on them
(``classifier.train`` at T_train, ``classifier.apply_file`` at every temperature,
``arrhenius.analyse``), and the fitted softness picture is compared with the planted one. What
does not come back is the pipeline's own bias: of the classifier's learned direction, of the
counting of P_R, the binning and the fits. None of the reference softness codes ships such a
test; a high accuracy and an Arrhenius-looking P_R do not show that S is a barrier coordinate
(Swain, Ridout, Nemenman, arXiv:2403.00751), a planted one can.

The plant (per species):

* **Direction.** A unit vector u in the standardised feature space of T_train,
  x_std = (x - mean) / scale: the trained model's normal when a model file is given (then its
  mean and scale), else a seeded random direction with mean and scale the mean and standard
  deviation of every feature over every atom and frame at T_train (scales of at least
  ``classifier.MIN_FEATURE_SCALE``, as the classifier does).
* **Coordinate.** y = (u . x_std - m_y) / s_y, with m_y and s_y the mean and standard deviation
  of u . x_std over every atom and frame at T_train: y has zero mean and unit variance there, so
  a slope per unit y compares with one per unit S (which has unit standard deviation at T_train
  too; along a model's normal, in its standardisation, that model's S = y + <S>(T_train)).
* **Barrier.** E(y) = E0 - e y (as a temperature, K), constant Sigma, and per (feature frame,
  atom) the probability to start a rearrangement within the P_R window Delta
  (``arrhenius.P_R_window_fs``)

      ln P(y, T) = Sigma - E(y) / T + c (1/T - 1/T_mid)^2,

  with c = 0 for the Arrhenius plant, and 1/T_mid the middle of 1/T over the temperatures. The
  non-Arrhenius plant sets c from ``curvature_lnP`` = delta, the largest departure of ln P at
  fixed y from the straight line in 1/T through its values at the coldest and hottest
  temperature: c = -4 delta / (1/T_min - 1/T_max)^2 (delta > 0: the apparent barrier
  -d ln P / d(1/T) = E(y) - 2 c (1/T - 1/T_mid) grows on cooling, super-Arrhenius as in a fragile
  liquid; E(y) is its value at T_mid). The coefficient of 1/T^2 is c, what the curvature test of
  the arrhenius fits estimates per bin. P is capped at 1.
* **Parameters from the temperatures.** With y_lo, y_hi the 0.5 % and 99.5 % quantiles of y (the
  lowest and highest over the temperatures) and x = 1/T in [x1, x2] = [1/T_max, 1/T_min], ln P is
  largest at (y_hi, T_max) and smallest at (y_lo, T_min) (for a barrier that stays positive). The
  plant puts P_max (default 0.3, below the saturation of P_R) at the first and P_min (default 1e-3)
  at the second, and gives the softness a share phi (``softness_share``, default 0.5) of that
  log range L = ln(P_max / P_min) (the curvature term is the same at both ends):

      e = phi L / (y_hi x1 - y_lo x2),   E0 = (1 - phi) L / (x2 - x1),
      Sigma = ln P_max + (E0 - e y_hi) x1 - c (x2 - x1)^2 / 4.

  For 3000-5000 K and y within +-2.6 that is E0 ~ 3e4 K (2.6 eV), e ~ 3e3 K per unit y and
  Sigma ~ 3: numbers of the size measured on silica. E0, e and Sigma may also be given.
* **Events.** Rearrangement events are drawn on every trajectory frame g from the first feature
  frame to one feature-frame spacing after the last, independently, with the per-frame probability
  q = 1 - (1 - P)^(1 / W) of the structure at the latest feature frame at or before g (the
  structure the classifier pairs with a label at g), W = Delta in frames. Where the structure is
  the same over a whole window, the chance of at least one event within it is exactly P. That
  holds when the feature frames are at least Delta apart; with denser feature frames a window
  spans several structures and its chance averages P over them, as the rate of a real atom
  whose structure changes within Delta does: the recovered slope then also carries how fast y
  decorrelates within Delta. ``window_y_correlation`` (:func:`window_correlation`) estimates that
  factor, and the oracle run (below) measures it with the classifier left out.
* **Hops files** in the layout of ``hops.hops_file``: ``/events`` (1 at each planted event, 0
  elsewhere), ``/labels`` from ``hops.rearrangement_labels`` (1 at the events, 0 where no event
  lies within the quiet window ``hops.t_quiet_fs`` centred on the frame, -1 otherwise), ``/p_hop``
  a placeholder (2 p_c at the events, p_quiet / 2 elsewhere; there is no trajectory), and the
  attributes ``t_R_fs`` etc. of the config's ``hops`` section, so that the arrhenius stage flags
  the same temperatures (tau_alpha against t_R, from the real dynamics files) as on the real data.

Two analyses run on the same planted hops files: **learned**, with the softness of the model
trained on the planted labels (the pipeline as it is), and **oracle**, with the planted y itself
as the softness, which isolates counting, binning and fits from the classifier. For each,
per species, the report compares the fitted lines DeltaE(S) = e0 - e1 S, Sigma(S) = Sigma0 -
Sigma1 S with the plant: e1 (planted e), Sigma1 (planted 0), 1/T0 = Sigma1 / e1 (planted 0: the
lines never cross), e0 and Sigma0 (planted Sigma). e0 is planted at y = 0; at the origin of the
learned S it is E0 + e <S>(T_train) (exact where the learned normal is u). Each comes with its
recovered error and the pull (recovered - planted) / error. The alignment of the learned
direction with u is reported as the cosine between the learned normal and u (in the plant's
standardised space) and as the Pearson correlation r of S and y over every atom at T_train. If y
given S were Gaussian with correlation r, ln P_R(S) would have the slope e r and a 1/T^2 term
e^2 (1 - r^2) / 2: misalignment both lowers e1 and bends the lines (``e1_expected_misaligned_K``).
The per-bin curvature tests of the arrhenius fits are reported too: the Arrhenius plant should
leave every bin straight, the non-Arrhenius one should have its bins flagged, with their fitted
coefficient of 1/T^2 near the planted c.

Species. Nothing here names a species: the names and their number S come from the features
files (``/species_names``, the same in every file), the per-species thresholds of the planted
hops files are looked up by them (``hops.p_c_A2`` / ``hops.p_quiet_A2``), every planted file and
the report store them, and every per-species array has a leading axis [S] in their order.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from softness import arrhenius, classifier, hops
from softness.errors import SoftnessError
from softness.io import atomic_h5, check_finite, open_input, require, system_attribute

log = logging.getLogger(__name__)

#: y_lo and y_hi of the parameter choice are these quantiles of y (and 1 minus it).
TAIL_QUANTILE = 0.005

#: Defaults of the plant (see the module docstring).
P_MIN, P_MAX, SOFTNESS_SHARE = 1e-3, 0.3, 0.5

#: The quantities compared with the plant, in the order reported.
QUANTITIES = ("e1_K", "Sigma1", "inv_T0_per_K", "e0_K", "Sigma0")

PLANT_DEFINITION = (
    "ln P(y, T) = Sigma - (E0 - e y) / T + c (1/T - 1/T_mid)^2, P the probability to start a rearrangement "
    "within arrhenius.P_R_window_fs of a feature frame; y = (u . x_std - m_y) / s_y has zero mean and unit "
    "variance over every atom and frame at T_train; events drawn on every trajectory frame with probability "
    "1 - (1 - P)^(1/W) (W the window in frames) from the structure at the latest feature frame")

_SEED_SALT = 0x91A7


# ---------------------------------------------------------------------------- the barrier

def plant_parameters(temperatures_K, y_low, y_high, *, P_min: float = P_MIN, P_max: float = P_MAX,
                     softness_share: float = SOFTNESS_SHARE, curvature_lnP: float = 0.0) -> dict:
    """E0, e, Sigma and c that keep P between ``P_min`` and ``P_max`` over the temperatures.

    ln P(y, T) = Sigma - (E0 - e y) / T + c (1/T - 1/T_mid)^2 reaches ``P_max`` at (y_high,
    T_max) and ``P_min`` at (y_low, T_min); the softness takes the share ``softness_share`` of
    the log range ln(P_max / P_min), the temperature the rest; c = -4 delta / (1/T_min -
    1/T_max)^2 with delta = ``curvature_lnP`` (see the module docstring for the algebra).

    Args:
      temperatures_K: the temperatures (at least two different ones).
      y_low, y_high: the range of y to keep inside the bounds (y_low < 0 < y_high).
      P_min, P_max: the bounds, 0 < P_min < P_max <= 1.
      softness_share: phi in (0, 1).
      curvature_lnP: delta, the largest departure of ln P at fixed y from its chord in 1/T.

    Returns:
      dict of floats ``E0_K``, ``e_K`` (K per unit y), ``Sigma``, ``c_K2`` and ``T_mid_K`` (the
      harmonic mean of T_min and T_max).

    Raises:
      SoftnessError: bounds or share out of range, a y range that does not straddle 0, or a
        barrier that is not positive over the range (then ln P is not monotonic in T).
    """
    t = np.asarray(temperatures_K, dtype=np.float64)
    if not 0 < P_min < P_max <= 1:
        raise SoftnessError(f"the planted probabilities need 0 < P_min < P_max <= 1 (got P_min = {P_min:g}, "
                            f"P_max = {P_max:g}).")
    if not 0 < softness_share < 1:
        raise SoftnessError(f"the planted softness share must lie between 0 and 1 (got {softness_share:g}).")
    if t.size < 2 or np.ptp(t) == 0:
        raise SoftnessError("the planted barrier needs at least two different temperatures.")
    if not y_low < 0 < y_high:
        raise SoftnessError(f"the planted coordinate spans {y_low:.3g} to {y_high:.3g}; it must straddle its "
                            "mean at T_train (0).")
    x1, x2 = 1.0 / t.max(), 1.0 / t.min()
    log_range = np.log(P_max / P_min)
    c = curvature_coefficient(t, curvature_lnP)
    e = softness_share * log_range / (y_high * x1 - y_low * x2)
    e0 = (1.0 - softness_share) * log_range / (x2 - x1)
    sigma = np.log(P_max) + (e0 - e * y_high) * x1 - c * (x2 - x1) ** 2 / 4
    # The apparent barrier E0 - e y - 2 c (x - x_mid) must stay positive for the corners to be the
    # extremes; it is lowest at y_high and one end of the range.
    lowest = e0 - e * y_high - abs(c) * (x2 - x1)
    if not lowest > 0:
        raise SoftnessError(f"the planted apparent barrier falls to {lowest:.4g} K at y = {y_high:.3g} (E0 = "
                            f"{e0:.4g} K, e = {e:.4g} K); lower the softness share or the curvature.")
    return {"E0_K": float(e0), "e_K": float(e), "Sigma": float(sigma), "c_K2": float(c),
            "T_mid_K": float(2.0 / (x1 + x2))}


def curvature_coefficient(temperatures_K, curvature_lnP: float) -> float:
    """c = -4 delta / (1/T_min - 1/T_max)^2: ln P departs by delta from its chord in 1/T."""
    t = np.asarray(temperatures_K, dtype=np.float64)
    return float(-4.0 * curvature_lnP / (1.0 / t.min() - 1.0 / t.max()) ** 2)


def ln_probability(y, temperature_K, params: dict) -> np.ndarray:
    """ln P(y, T) = Sigma - (E0 - e y) / T + c (1/T - 1/T_mid)^2 of the plant (:func:`plant_parameters`)."""
    x = 1.0 / float(temperature_K)
    return (params["Sigma"] - (params["E0_K"] - params["e_K"] * np.asarray(y, dtype=np.float64)) * x
            + params["c_K2"] * (x - 1.0 / params["T_mid_K"]) ** 2)


def probability(y, temperature_K, params: dict) -> np.ndarray:
    """P(y, T) of the plant, capped at 1."""
    return np.exp(np.minimum(ln_probability(y, temperature_K, params), 0.0))


def frame_probability(P, window_frames: int) -> np.ndarray:
    """Per-frame event probability q with 1 - (1 - q)^W = P: W independent frames give P per window."""
    with np.errstate(divide="ignore"):
        return -np.expm1(np.log1p(-np.asarray(P, dtype=np.float64)) / int(window_frames))


def hops_frames(feature_frames) -> np.ndarray:
    """The trajectory frames of the planted hops file: from the first feature frame to the last one
    plus the feature-frame spacing (each frame then has the structure of a feature frame)."""
    ff = np.asarray(feature_frames, dtype=np.int64)
    spacing = int(np.median(np.diff(ff))) if ff.size > 1 else 1
    return np.arange(ff[0], ff[-1] + spacing, dtype=np.int64)


def planted_events(P, feature_frames, window_frames: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Draw rearrangement events on every trajectory frame from the planted probabilities.

    Args:
      P: [R, N] planted probability to start a rearrangement within the window, per feature
        frame and atom (:func:`probability`).
      feature_frames: [R] trajectory frames of the features.
      window_frames: W, the P_R window in trajectory frames.
      rng: numpy Generator.

    Returns:
      frames [G] (:func:`hops_frames`) and events [G, N] int8 (1 event, 0 none): on frame g, an
      event with probability :func:`frame_probability` of P at the latest feature frame <= g.
    """
    frames = hops_frames(feature_frames)
    rows = classifier.label_to_feature_rows(frames, feature_frames)
    q = frame_probability(P, window_frames)
    events = (rng.random((frames.size, q.shape[1])) < q[rows]).astype(np.int8)
    return frames, events


# ---------------------------------------------------------------------------- the coordinate

def _chunk_rows(dset) -> int:
    per_row = int(np.prod(dset.shape[1:])) * dset.dtype.itemsize
    return max(1, classifier.CHUNK_BYTES // max(per_row, 1))


def _n_species(species, n_species=None) -> int:
    """``n_species`` if given, else one more than the largest species number."""
    if n_species is not None:
        return int(n_species)
    species = np.asarray(species)
    return int(species.max()) + 1 if species.size else 0


def feature_moments(dset, species, where: str, n_species: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every feature over every atom and frame, per species (streamed).

    Chunks are merged with the pairwise update of Chan, Golub and LeVeque (Am. Stat. 37, 242
    (1983)), which keeps the variance accurate where the mean is large.

    Args:
      dset: [R, N, F] features; species: [N]; where: the file named if a value is not finite.
      n_species: number of species S (default: one more than the largest species number).

    Returns:
      mean, std: [S, F] (ddof 0; NaN for a species without atoms).
    """
    species = np.asarray(species)
    n_sp = _n_species(species, n_species)
    n_feat = dset.shape[2]
    n = np.zeros(n_sp)
    mean, m2 = np.zeros((n_sp, n_feat)), np.zeros((n_sp, n_feat))
    step = _chunk_rows(dset)
    for r0 in range(0, dset.shape[0], step):
        x = np.asarray(dset[r0:r0 + step], dtype=np.float64)
        check_finite("features", x, f"{where} (frames {r0}-{r0 + len(x) - 1})")
        for s in range(n_sp):
            xs = x[:, species == s].reshape(-1, n_feat)
            if not xs.shape[0]:
                continue
            nb, mb = xs.shape[0], xs.mean(axis=0)
            delta = mb - mean[s]
            total = n[s] + nb
            m2[s] += ((xs - mb) ** 2).sum(axis=0) + delta**2 * n[s] * nb / total
            mean[s] += delta * nb / total
            n[s] = total
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[:, None] > 0, mean, np.nan), np.sqrt(m2 / n[:, None])


def projection(dset, species, u, mean, scale, where: str) -> np.ndarray:
    """u . x_std of every atom in every frame, x_std = (x - mean) / scale of the atom's species.

    Args:
      dset: [R, N, F] features; species: [N]; u, mean, scale: [S, F]; where: the file named in errors.

    Returns:
      [R, N] float64.
    """
    species = np.asarray(species)
    coef = (u / scale)[species]
    offset = -np.sum(u * mean / scale, axis=1)[species]
    return classifier.plane_values_over_frames(dset, coef, offset, where)


def random_directions(n_features: int, rng, n_species: int = 2) -> np.ndarray:
    """One independent unit vector per species, uniform on the sphere of the standardised features:
    [n_species, F]."""
    u = rng.normal(size=(n_species, n_features))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def window_correlation(y, species, stride: int, window_frames: int,
                       n_species: int | None = None) -> np.ndarray:
    """How much y stays the same over a P_R window: the mean, over the W frames of a window, of
    the Pearson correlation of y at the window's start with the y whose P governs that frame.

    Frame j of a window that starts at a feature frame has the structure of the feature row
    ``j // stride`` rows later. If y given its start value were Gaussian, the window's chance
    P_R(y_start) would have its slope in y multiplied by this factor for small P: 1 where the
    structure is constant over every window (stride >= W), less where it changes within one.

    Args:
      y: [R, N] planted coordinate at the feature frames; species: [N].
      stride: trajectory frames between feature frames; window_frames: W.
      n_species: number of species S (default: one more than the largest species number).

    Returns:
      [S] factors (NaN for a species without atoms or a run shorter than a window).
    """
    species = np.asarray(species)
    lags = np.arange(int(window_frames)) // max(int(stride), 1)
    n_sp = _n_species(species, n_species)
    out = np.full(n_sp, np.nan)
    for s in range(n_sp):
        ys = np.asarray(y, dtype=np.float64)[:, species == s]
        if not ys.size or lags[-1] >= ys.shape[0] - 1:
            continue
        corr = [1.0 if lag == 0 else np.corrcoef(ys[:-lag].ravel(), ys[lag:].ravel())[0, 1] for lag in lags]
        out[s] = float(np.mean(corr))
    return out


def tail_range(y, species, n_species: int | None = None) -> np.ndarray:
    """Per species, the TAIL_QUANTILE and 1 - TAIL_QUANTILE quantiles of y [R, N]: [S, 2]."""
    species = np.asarray(species)
    return np.array([np.quantile(y[:, species == s], [TAIL_QUANTILE, 1 - TAIL_QUANTILE])
                     for s in range(_n_species(species, n_species))])


# ---------------------------------------------------------------------------- products

def write_planted_hops(cfg: dict, out, events, frames, time_fs, species, temperature_K: float,
                       params: list, source, *, species_names, system=None) -> dict:
    """A hops file (layout of :func:`softness.hops.hops_file`) from planted events.

    Args:
      cfg: resolved config (uses ``hops``: t_R_fs, t_quiet_fs, p_c_A2, p_quiet_A2; the
        thresholds looked up by ``species_names``).
      out: the file to write.
      events: [G, N] int8 planted events; frames, time_fs: [G]; species: [N].
      temperature_K: T.
      params: per species the plant (:func:`plant_parameters`), recorded as attributes.
      source: the features file the plant was drawn on.
      species_names: the name of each species number (the features file's), stored.
      system: the features file's root attribute ``system`` (None: none), stored.

    Returns:
      The event statistics of :func:`softness.hops.event_statistics`.
    """
    hcfg = cfg["hops"]
    names = tuple(str(n) for n in species_names)
    dt = hops.frame_interval_fs(time_fs, f"features file {source}")
    h = hops.half_window_frames(hcfg["t_R_fs"], dt, "hops.t_R_fs")
    q = hops.half_window_frames(hcfg["t_quiet_fs"], dt, "hops.t_quiet_fs")
    p_c = hops.species_thresholds(cfg, "p_c_A2", names, f"features file {source}")
    p_quiet = hops.species_thresholds(cfg, "p_quiet_A2", names, f"features file {source}")
    # Placeholder p_hop, so that the labels come from the same code as on real data: above p_c
    # exactly at the events, below p_quiet elsewhere.
    p = np.where(events == hops.EVENT, 2.0 * p_c[species], 0.5 * p_quiet[species])
    labels = hops.rearrangement_labels(p, species, p_c, p_quiet, q)
    stats = hops.event_statistics(events, species, dt, h, n_species=len(names))
    with atomic_h5(out, "planted_hops", cfg) as f:
        hops.write_hops_datasets(f, p_hop_values=p, labels=labels, events=events, stats=stats,
                                 species=species, frames=frames, step=np.asarray(frames, np.int64),
                                 time_fs=time_fs, p_c=p_c, p_quiet=p_quiet, dt_fs=dt, half_window=h,
                                 quiet_half_window=q, temperature_K=float(temperature_K), source=source,
                                 species_names=names, system=system)
        f.attrs["planted"] = PLANT_DEFINITION
        for key in ("E0_K", "e_K", "Sigma", "c_K2", "T_mid_K"):
            f.attrs[f"planted_{key}"] = np.array([pp[key] for pp in params])
        f["p_hop"].attrs["meaning"] = ("placeholder (planted events, no trajectory): 2 p_c at the events, "
                                       "p_quiet / 2 elsewhere")
        f["labels"].attrs["meaning"] = "1 rearranging (a planted event), 0 quiet, -1 neither"
        f["events"].attrs["meaning"] = "1 at each planted rearrangement event, 0 elsewhere"
        f["step"].attrs["meaning"] = "trajectory frame index (planted events carry no MD step)"
    return stats


def write_oracle_softness(cfg: dict, out, y, frames, time_fs, species, temperature_K: float,
                          T_train_K: float, source, *, species_names, system=None) -> None:
    """A softness file (layout of :func:`softness.classifier.apply_file`) whose softness is the planted y.

    ``species_names`` (the features file's) and ``system`` (its root attribute, None: none) are stored.
    """
    with atomic_h5(out, "planted_oracle", cfg) as f:
        f.attrs["temperature_K"] = float(temperature_K)
        f.attrs["T_train_K"] = float(T_train_K)
        f.attrs["softness_scale"] = np.ones(len(species_names))
        if system is not None:
            f.attrs["system"] = str(system)
        f.attrs["softness_definition"] = "the planted coordinate y (zero mean, unit variance at T_train)"
        f.attrs["features_source"] = str(source)
        f["softness"] = np.asarray(y, np.float32)
        f["frames"] = np.asarray(frames, np.int64)
        f["time_fs"] = np.asarray(time_fs, np.float64)
        f["species"] = np.asarray(species)
        f["species_names"] = classifier.names_dataset(species_names)


# ---------------------------------------------------------------------------- recovery

def recovery(r: dict, planted: dict) -> dict:
    """Planted against recovered lines of one arrhenius analysis, per species.

    Args:
      r: output of :func:`softness.arrhenius.analyse` (``lines/*``, ``bin_fit/*``).
      planted: [S] arrays ``e0_K``, ``e1_K``, ``Sigma0`` in the units of the analysed softness.

    Returns:
      dict: for each of :data:`QUANTITIES` a dict of [S] arrays ``planted``, ``recovered``,
      ``error`` and ``pull`` = (recovered - planted) / error; ``T0_K`` and ``T0_K_err``;
      ``n_bins_fitted``, ``n_bins_in_lines``, ``n_bins_curved`` [S]; and per bin [S, B]
      ``fitted``, ``curved``, ``curvature_c_K2`` and its ``_err``.
    """
    e1, s1, cov = (np.asarray(r[k], dtype=np.float64) for k in ("lines/e1_K", "lines/Sigma1", "lines/cov"))
    inv_t0 = s1 / e1
    zero = np.zeros(e1.shape)
    grad = np.stack([zero, -s1 / e1**2, zero, 1.0 / e1], axis=1)
    inv_t0_err = np.sqrt(np.einsum("si,sij,sj->s", grad, cov, grad))
    rows = {
        "e1_K": (planted["e1_K"], e1, r["lines/e1_K_err"]),
        "Sigma1": (zero, s1, r["lines/Sigma1_err"]),
        "inv_T0_per_K": (zero, inv_t0, inv_t0_err),
        "e0_K": (planted["e0_K"], r["lines/e0_K"], r["lines/e0_K_err"]),
        "Sigma0": (planted["Sigma0"], r["lines/Sigma0"], r["lines/Sigma0_err"]),
    }
    out = {}
    for key, (p, v, e) in rows.items():
        p, v, e = (np.asarray(a, dtype=np.float64) for a in (p, v, e))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = {"planted": p, "recovered": v, "error": e, "pull": (v - p) / e}
    out["T0_K"], out["T0_K_err"] = np.asarray(r["lines/T0_K"]), np.asarray(r["lines/T0_K_err"])
    out["fitted"], out["curved"] = np.asarray(r["bin_fit/fitted"]), np.asarray(r["bin_fit/curved"])
    out["curvature_c_K2"] = np.asarray(r["bin_fit/curvature_c_K2"])
    out["curvature_c_K2_err"] = np.asarray(r["bin_fit/curvature_c_K2_err"])
    out["n_bins_fitted"] = out["fitted"].sum(axis=1)
    out["n_bins_in_lines"] = np.asarray(r["bin_fit/in_lines"]).sum(axis=1)
    out["n_bins_curved"] = out["curved"].sum(axis=1)
    return out


def learned_alignment(model: classifier.SoftnessModel, u, mean, scale) -> np.ndarray:
    """Per species, the cosine between the learned normal and u in the plant's standardised space.

    The learned plane w . (x - m) / s is w s_plant / s . (x - mean) / s_plant + const there
    (as :func:`softness.classifier.normals_in_standardisation`).

    Returns:
      [S] cosines.
    """
    w = model.weights * scale / model.scale
    return np.sum(w * u, axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(u, axis=1))


# ---------------------------------------------------------------------------- the test

def _by_temperature(paths, kind: str) -> list:
    """(temperature, path) of each file, sorted by temperature; two at one temperature is an error."""
    table = {}
    for p in paths:
        with open_input(p, kind) as f:
            t = float(f.attrs.get("temperature_K", np.nan))
        if not np.isfinite(t):
            raise SoftnessError(f"{kind} file {p} has no temperature_K attribute.")
        if round(t, 6) in table:
            raise SoftnessError(f"{kind} files {table[round(t, 6)][1]} and {p} are both at {t:g} K.")
        table[round(t, 6)] = (t, Path(p))
    return [table[k] for k in sorted(table)]


def _features(path):
    """Open a features file, checking the datasets the plant reads."""
    f = open_input(path, "features")
    require(f, "features", "frames", "time_fs", "species", "feature_names", what="features")
    return f


def _species_and_system(feats) -> tuple[tuple, str | None]:
    """The species names every features file names (the same in all) and their ``system`` attribute."""
    names, first, systems_ = None, None, {}
    for _, path in feats:
        with _features(path) as ff:
            these = classifier.species_names_of(ff, "features", path)
            system = system_attribute(ff.attrs)
        if names is None:
            names, first = these, path
        else:
            classifier.same_species(these, names, f"features file {path}", f"features file {first}")
        if system is not None:
            systems_.setdefault(system, path)
    if len(systems_) > 1:
        (a, pa), (b, pb) = list(systems_.items())[:2]
        raise SoftnessError(f"features file {pb} comes from system '{b}' but {pa} from '{a}'; plant on one "
                            "system at a time.")
    return names, next(iter(systems_), None)


def _read_coordinates(features, u, mean, scale) -> dict:
    """Species, frames, times and u . x_std of one features file."""
    with _features(features) as ff:
        out = {"species": ff["species"][()].astype(np.int64), "frames": ff["frames"][()].astype(np.int64)}
        out["time_fs"] = ff["time_fs"][()].astype(np.float64)
        out["z"] = projection(ff["features"], out["species"], u, mean, scale, f"features file {features}")
    return out


def _plant_direction(features_train, model, rng, species_names):
    """u, mean, scale [S, F] and a description of the direction."""
    with _features(features_train) as ff:
        species = ff["species"][()].astype(np.int64)
        if model is not None:
            m = classifier.load_model(model)
            classifier.check_compatible(m, ff["feature_names"][()], classifier.read_grid(ff), features_train,
                                        f"model {model}", species_names)
            u = m.weights / np.linalg.norm(m.weights, axis=1, keepdims=True)
            return u, m.mean, m.scale, f"the normal of model {model}"
        mean, std = feature_moments(ff["features"], species, f"features file {features_train}",
                                    len(species_names))
    missing = [name for name, row in zip(species_names, mean, strict=True) if not np.all(np.isfinite(row))]
    if missing:
        raise SoftnessError(f"features file {features_train} has no {missing[0]} atoms; the plant needs "
                            f"atoms of every species it names ({', '.join(species_names)}).")
    scale = np.maximum(std, classifier.MIN_FEATURE_SCALE)
    return (random_directions(mean.shape[1], rng, len(species_names)), mean, scale,
            "random (seeded), standardised at T_train")


def _coordinates(feats, u, mean, scale, k_train: int) -> tuple[list, np.ndarray, np.ndarray]:
    """y of every features file, centred and scaled over every atom and frame at T_train.

    Returns:
      per temperature a dict (``species``, ``frames``, ``time_fs``, ``y`` [R, N]); y_shift and
      y_scale [S] (y = (u . x_std - y_shift) / y_scale).
    """
    coords = [_read_coordinates(p, u, mean, scale) for _, p in feats]
    species, z = coords[k_train]["species"], coords[k_train]["z"]
    y_shift = np.array([z[:, species == s].mean() for s in range(len(u))])
    y_scale = np.array([z[:, species == s].std() for s in range(len(u))])
    if not np.all(y_scale > 0):
        raise SoftnessError(f"the planted coordinate does not vary over features file {feats[k_train][1]}; "
                            "the features carry no structure along the planted direction.")
    for c in coords:
        c["y"] = (c.pop("z") - y_shift[c["species"]]) / y_scale[c["species"]]
    return coords, y_shift, y_scale


def _plant_temperature(cfg: dict, work: Path, t: float, path, c: dict, params: list, t_train: float,
                       rng, species_names, system=None) -> dict:
    """Draw one temperature's events, write its planted hops file and its oracle softness file.

    Args:
      cfg: resolved config; work: the work directory; t, path: temperature and features file.
      c: its coordinates (:func:`_coordinates`); params: per species the plant.
      t_train: T_train; rng: numpy Generator of the events.
      species_names, system: the features files' species names and ``system`` attribute.

    Returns:
      dict with ``hops`` and ``oracle`` (paths), ``stride`` (trajectory frames between feature
      frames), ``window_frames``, ``mean_P`` [S], ``n_events`` [S], ``n_capped`` and ``n`` [S]
      (atom-frames whose exp(ln P) exceeded 1, of all).
    """
    n_sp = len(species_names)
    species, y = c["species"], c["y"]
    if c["frames"].size < 2:
        raise SoftnessError(f"features file {path} has a single frame; the planted events need two or "
                            "more.")
    stride = int(np.median(np.diff(c["frames"])))
    dt = hops.frame_interval_fs(c["time_fs"], f"features file {path}") / stride  # between trajectory frames
    window = arrhenius.P_R_window_frames(cfg["arrhenius"]["P_R_window_fs"], dt, f"features file {path}")
    if stride < window:
        log.warning("features file %s: feature frames every %g fs, closer than the P_R window %g fs; a "
                    "planted window then spans several structures (see window_y_correlation and the oracle "
                    "run).", path, stride * dt, window * dt)
    out = {"stride": stride, "window_frames": window, "mean_P": np.zeros(n_sp), "n_capped": np.zeros(n_sp),
           "n": np.zeros(n_sp), "hops": work / f"hops_planted_{t:g}.h5",
           "oracle": work / f"softness_oracle_{t:g}.h5"}
    p_atoms = np.empty_like(y)
    for s in range(n_sp):
        mine = species == s
        ln_p = ln_probability(y[:, mine], t, params[s])
        p_atoms[:, mine] = np.exp(np.minimum(ln_p, 0.0))
        out["n_capped"][s], out["n"][s] = np.sum(ln_p > 0), ln_p.size
        out["mean_P"][s] = p_atoms[:, mine].mean()
    frames, events = planted_events(p_atoms, c["frames"], window, rng)
    time_fs = c["time_fs"][0] + (frames - frames[0]) * dt
    out["n_events"] = write_planted_hops(cfg, out["hops"], events, frames, time_fs, species, t, params,
                                         path, species_names=species_names, system=system)["n_events"]
    write_oracle_softness(cfg, out["oracle"], y, c["frames"], c["time_fs"], species, t, t_train, path,
                          species_names=species_names, system=system)
    log.info("%g K: planted mean P within %g fs: %s", t, window * dt,
             ", ".join(f"{name} {p:.3g} ({n} events)" for name, p, n in
                       zip(species_names, out["mean_P"], out["n_events"], strict=True)))
    return out


def _alignment(softness_train, y_train, species, e_planted) -> dict:
    """Pearson r of the learned S and y at T_train, <S>(T_train), and e r per species."""
    with open_input(softness_train, "softness") as f:
        require(f, "softness", what="softness")
        s_train = f["softness"][()].astype(np.float64)
    n_sp = len(e_planted)
    s_mean = np.array([s_train[:, species == s].mean() for s in range(n_sp)])
    pearson = np.array([np.corrcoef(s_train[:, species == s].ravel(),
                                    y_train[:, species == s].ravel())[0, 1] for s in range(n_sp)])
    return {"pearson_S_y": pearson, "S_mean_T_train": s_mean, "e1_expected_misaligned_K": e_planted * pearson}


def planted_barrier_test(cfg: dict, features, dynamics, work, *, model=None, seed=None,
                         P_min: float = P_MIN, P_max: float = P_MAX, softness_share: float = SOFTNESS_SHARE,
                         curvature_lnP: float = 0.0, E0_K=None, e_K=None, Sigma=None) -> dict:
    """Plant a known barrier on the real features, run train / apply / arrhenius, compare.

    Args:
      cfg: resolved config (uses ``seed``, ``temperatures_K``, ``train``, ``hops``, ``arrhenius``).
      features: features files, one per temperature (any order); one at T_train.
      dynamics: the dynamics files of the same temperatures (tau_alpha decides, as on the real
        data, which temperatures have cage jumps to count).
      work: directory for the planted hops files, the model, the softness and oracle files.
      model: optional model file whose normal is the planted direction; None: a random one.
      seed: seed of the direction and the events (None: the config's ``seed``).
      P_min, P_max, softness_share, curvature_lnP: the plant (:func:`plant_parameters`).
      E0_K, e_K, Sigma: the barrier itself (all three, the same for every species) instead of
        deriving it; c still follows from ``curvature_lnP``.

    Returns:
      dict with ``temperature_K`` [T], ``T_train_K``, ``species_names`` (the features files', S
      of them) and ``system`` (their root attribute, or None); ``planted`` (per species ``E0_K``,
      ``e_K``, ``Sigma``, ``c_K2``, ``T_mid_K`` [S], ``u``, ``mean``, ``scale`` [S, F], ``y_shift``,
      ``y_scale`` [S] (y = (u . x_std - y_shift) / y_scale), ``y_range`` [S, 2], ``mean_P``,
      ``n_events`` [S, T], ``fraction_capped`` [S], ``window_frames`` [T], ``window_y_correlation``
      [S] (:func:`window_correlation` at T_train), ``direction`` (text) and the options);
      ``alignment`` (``cosine``, ``pearson_S_y``, ``S_mean_T_train``, ``e1_expected_misaligned_K``
      [S]); ``learned`` and ``oracle`` (:func:`recovery`); ``accuracy`` [S] of the trained model;
      ``files`` (the work files).
    """
    from softness.config import training_temperature

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"] if seed is None else seed)
    explicit = [v is not None for v in (E0_K, e_K, Sigma)]
    if any(explicit) and not all(explicit):
        raise SoftnessError("give all three of the planted E0_K, e_K and Sigma, or none of them.")
    feats = _by_temperature(features, "features")
    temps = np.array([t for t, _ in feats])
    if temps.size < 2:
        raise SoftnessError(f"the planted-barrier test needs features at two or more temperatures (got "
                            f"{temps.size}).")
    t_train = training_temperature(cfg)
    if not np.any(np.isclose(temps, t_train)):
        raise SoftnessError(f"no features file is at T_train = {t_train:g} K (config key 'train.T_train_K'); "
                            f"the files are at {temps.tolist()} K.")
    k_train = int(np.flatnonzero(np.isclose(temps, t_train))[0])
    features_train = feats[k_train][1]
    names, system = _species_and_system(feats)
    n_sp = len(names)
    u, mean, scale, direction = _plant_direction(features_train, model,
                                                 np.random.default_rng([seed, _SEED_SALT, 0]), names)
    coords, y_shift, y_scale = _coordinates(feats, u, mean, scale, k_train)
    ranges = np.stack([tail_range(c["y"], c["species"], n_sp) for c in coords])  # [T, S, 2]
    y_range = np.stack([ranges[:, :, 0].min(axis=0), ranges[:, :, 1].max(axis=0)], axis=1)
    if all(explicit):
        given = {"E0_K": float(E0_K), "e_K": float(e_K), "Sigma": float(Sigma),
                 "c_K2": curvature_coefficient(temps, curvature_lnP),
                 "T_mid_K": float(2.0 / (1.0 / temps.min() + 1.0 / temps.max()))}
        params = [dict(given) for _ in range(n_sp)]
    else:
        options = {"P_min": P_min, "P_max": P_max, "softness_share": softness_share,
                   "curvature_lnP": curvature_lnP}
        params = [plant_parameters(temps, *y_range[s], **options) for s in range(n_sp)]
    for s, pp in enumerate(params):
        log.info("%s: planted ln P = %.4g - (%.5g - %.5g y) / T + %.4g (1/T - 1/%.5g)^2 (E0 = %.3f eV, "
                 "e = %.3f eV per unit y), y in [%.3g, %.3g] (%g-%g %% quantiles)", names[s],
                 pp["Sigma"], pp["E0_K"], pp["e_K"], pp["c_K2"], pp["T_mid_K"], arrhenius.k_to_eV(pp["E0_K"]),
                 arrhenius.k_to_eV(pp["e_K"]), *y_range[s], 100 * TAIL_QUANTILE, 100 * (1 - TAIL_QUANTILE))
    planted_t = [_plant_temperature(cfg, work, t, path, c, params, t_train,
                                    np.random.default_rng([seed, _SEED_SALT, 1, k]), names, system)
                 for k, ((t, path), c) in enumerate(zip(feats, coords, strict=True))]
    files = {"hops": [x["hops"] for x in planted_t], "oracle": [x["oracle"] for x in planted_t],
             "model": work / "model_planted.h5",
             "softness": [work / f"softness_planted_{t:g}.h5" for t in temps]}

    # The unchanged pipeline.
    trained = classifier.train_file(cfg, features_train, files["hops"][k_train], files["model"])
    for (_, path), out in zip(feats, files["softness"], strict=True):
        classifier.apply_file(cfg, files["model"], path, out)
    r_learned = arrhenius.analyse(cfg, files["softness"], files["hops"], dynamics)
    r_oracle = arrhenius.analyse(cfg, files["oracle"], files["hops"], dynamics)

    e_planted = np.array([pp["e_K"] for pp in params])
    e0_planted = np.array([pp["E0_K"] for pp in params])
    sigma_planted = np.array([pp["Sigma"] for pp in params])
    alignment = _alignment(files["softness"][k_train], coords[k_train]["y"], coords[k_train]["species"],
                           e_planted)
    alignment["cosine"] = learned_alignment(trained, u, mean, scale)
    plant = {key: np.array([pp[key] for pp in params]) for key in ("E0_K", "e_K", "Sigma", "c_K2", "T_mid_K")}
    plant.update({
        "u": u, "mean": mean, "scale": scale, "y_shift": y_shift, "y_scale": y_scale, "y_range": y_range,
        "mean_P": np.stack([x["mean_P"] for x in planted_t], axis=1),
        "n_events": np.stack([x["n_events"] for x in planted_t], axis=1),
        "fraction_capped": sum(x["n_capped"] for x in planted_t) / sum(x["n"] for x in planted_t),
        "window_frames": np.array([x["window_frames"] for x in planted_t]),
        "window_y_correlation": window_correlation(coords[k_train]["y"], coords[k_train]["species"],
                                                   planted_t[k_train]["stride"],
                                                   planted_t[k_train]["window_frames"], n_sp),
        "direction": direction, "seed": seed, "curvature_lnP": float(curvature_lnP),
        "P_bounds": np.array([P_min, P_max]), "softness_share": float(softness_share)})
    res = {
        "temperature_K": temps, "T_train_K": float(t_train), "species_names": names, "system": system,
        "planted": plant, "alignment": alignment,
        "learned": recovery(r_learned, {"e1_K": e_planted, "Sigma0": sigma_planted,
                                        "e0_K": e0_planted + e_planted * alignment["S_mean_T_train"]}),
        "oracle": recovery(r_oracle, {"e1_K": e_planted, "e0_K": e0_planted, "Sigma0": sigma_planted}),
        "accuracy": np.asarray(trained.info["accuracy"], dtype=np.float64),
        "files": files,
    }
    _log_recovery(res)
    return res


def _log_recovery(res: dict) -> None:
    for s, name in enumerate(res["species_names"]):
        a = res["alignment"]
        log.info("%s: learned normal vs planted direction: cosine %.3f, Pearson r(S, y) %.3f at T_train; "
                 "y over a P_R window correlates %.3f with its start", name, a["cosine"][s],
                 a["pearson_S_y"][s], res["planted"]["window_y_correlation"][s])
        for run in ("learned", "oracle"):
            rec = res[run]
            row = {key: {k: v[s] for k, v in rec[key].items()} for key in QUANTITIES}
            text = "; ".join(f"{key} planted {r['planted']:.4g}, recovered {r['recovered']:.4g} +- "
                             f"{r['error']:.2g} (pull {r['pull']:+.2f})" for key, r in row.items())
            log.info("%s, %s softness: %s; %d bins fitted, %d curved", name, run, text,
                     rec["n_bins_fitted"][s], rec["n_bins_curved"][s])


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    return x


def summary(res: dict) -> dict:
    """The headline numbers of :func:`planted_barrier_test` per species, JSON-ready (NaN as null)."""
    out = {"temperatures_K": res["temperature_K"], "T_train_K": res["T_train_K"],
           "direction": res["planted"]["direction"], "curvature_lnP": res["planted"]["curvature_lnP"],
           "species": {}}
    for s, name in enumerate(res["species_names"]):
        sp = {"planted": {k: res["planted"][k][s] for k in ("E0_K", "e_K", "Sigma", "c_K2", "T_mid_K",
                                                            "window_y_correlation")},
              "alignment": {k: v[s] for k, v in res["alignment"].items()},
              "accuracy": res["accuracy"][s]}
        sp["planted"]["E0_eV"] = arrhenius.k_to_eV(res["planted"]["E0_K"][s])
        sp["planted"]["e_eV"] = arrhenius.k_to_eV(res["planted"]["e_K"][s])
        for run in ("learned", "oracle"):
            rec = res[run]
            sp[run] = {key: {k: v[s] for k, v in rec[key].items()} for key in QUANTITIES}
            sp[run]["T0_K"] = {"value": rec["T0_K"][s], "error": rec["T0_K_err"][s]}
            for key in ("n_bins_fitted", "n_bins_in_lines", "n_bins_curved"):
                sp[run][key] = rec[key][s]
        out["species"][name] = sp
    return _json_safe(out)


def write_report(f, res: dict) -> None:
    """Store :func:`planted_barrier_test`'s result in an open, writable HDF5 file."""
    f.attrs["T_train_K"] = res["T_train_K"]
    f.attrs["definition"] = PLANT_DEFINITION
    f.attrs["direction"] = res["planted"]["direction"]
    f.attrs["seed"] = res["planted"]["seed"]
    f.attrs["curvature_lnP"] = res["planted"]["curvature_lnP"]
    f.attrs["softness_share"] = res["planted"]["softness_share"]
    f.attrs["P_bounds"] = res["planted"]["P_bounds"]
    f.attrs["energy_units"] = "energies as E/k_B in K (*_K), per unit of the softness (S or y) for slopes"
    if res.get("system") is not None:
        f.attrs["system"] = res["system"]
    f["species_names"] = classifier.names_dataset(res["species_names"])
    f["temperature_K"] = res["temperature_K"]
    f["temperature_K"].attrs["unit"] = "K"
    g = f.create_group("planted")
    units = {"E0_K": "K", "e_K": "K per unit y", "Sigma": "1", "c_K2": "K^2", "mean_P": "1",
             "y_range": "units of y", "fraction_capped": "1"}
    for key, value in res["planted"].items():
        if key in ("direction", "seed", "curvature_lnP", "P_bounds", "softness_share"):
            continue
        g[key] = np.asarray(value)
        if key in units:
            g[key].attrs["unit"] = units[key]
    g["u"].attrs["meaning"] = "per species, the planted unit direction in standardised features"
    g["y_shift"].attrs["meaning"] = "y = (u . x_std - y_shift) / y_scale: zero mean, unit variance at T_train"
    g["mean_P"].attrs["meaning"] = "per species and temperature, the planted P averaged over atoms and frames"
    g["window_y_correlation"].attrs["meaning"] = (
        "per species at T_train, the mean over a P_R window's frames of the correlation of y at its start "
        "with the y that governs each frame; 1 when the structure is constant over windows, else roughly the "
        "factor by which the slope of ln P_R in y at the window's start falls below e")
    g["fraction_capped"].attrs["meaning"] = "share of (frame, atom) whose planted exp(ln P) exceeded 1"
    a = f.create_group("alignment")
    for key, value in res["alignment"].items():
        a[key] = np.asarray(value)
    a["cosine"].attrs["meaning"] = ("per species, cosine between the learned normal and u, both in the "
                                    "plant's standardised feature space")
    a["pearson_S_y"].attrs["meaning"] = "per species, Pearson r of learned S and y over all atoms at T_train"
    a["e1_expected_misaligned_K"].attrs["meaning"] = "e r: the slope of ln P_R in S if y given S were normal"
    f["accuracy"] = res["accuracy"]
    f["accuracy"].attrs["meaning"] = "held-out accuracy of the model trained on the planted labels"
    for run in ("learned", "oracle"):
        g = f.create_group(f"recovery/{run}")
        g.attrs["meaning"] = "fitted lines of the arrhenius analysis with " + (
            "the learned softness" if run == "learned" else "the planted y as the softness")
        rec = res[run]
        for key in QUANTITIES:
            for col, value in rec[key].items():
                g[f"{key}/{col}"] = value
            g[key].attrs["unit"] = {"e1_K": "K", "e0_K": "K", "inv_T0_per_K": "1/K"}.get(key, "1")
        g["e1_K"].attrs["planted"] = "e, per unit y"
        g["inv_T0_per_K"].attrs["meaning"] = "Sigma1 / e1; planted 0 (the lines never cross)"
        g["e0_K"].attrs["planted"] = "E0 + e <S>(T_train), at the origin of S" if run == "learned" else "E0"
        for key in ("T0_K", "T0_K_err", "fitted", "curved", "curvature_c_K2", "curvature_c_K2_err",
                    "n_bins_fitted", "n_bins_in_lines", "n_bins_curved"):
            g[key] = rec[key]
    f.attrs["summary"] = json.dumps(summary(res), allow_nan=False)


def planted_file(cfg: dict, features, dynamics, out, *, work=None, summary_json=None, **plant) -> dict:
    """The ``softness planted`` command: :func:`planted_barrier_test`, written to ``out``.

    Args:
      cfg: resolved config.
      features, dynamics: one file of each per temperature.
      out: the HDF5 report (groups ``planted``, ``alignment``, ``recovery/{learned,oracle}``).
      work: where to keep the planted hops, model and softness files; None: a temporary
        directory next to ``out``, removed afterwards.
      summary_json: optional JSON file with :func:`summary`.
      **plant: options of :func:`planted_barrier_test`.

    Returns:
      The result of :func:`planted_barrier_test`.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".planted-", dir=out.parent) as tmp:
        res = planted_barrier_test(cfg, features, dynamics, tmp if work is None else work, **plant)
        with atomic_h5(out, "planted", cfg) as f:
            write_report(f, res)
            f.attrs["features_sources"] = json.dumps([str(p) for p in features])
            f.attrs["dynamics_sources"] = json.dumps([str(p) for p in dynamics])
    if summary_json is not None:
        path = Path(summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(json.dumps(summary(res), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
    log.info("wrote %s", out)
    return res
