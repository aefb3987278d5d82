"""Softness: a linear SVM per species that separates rearranging from quiet atoms.

Following Schoenholz et al. (Nat. Phys. 12, 469 (2016)) and Cubuk et al. (Science 358,
1033 (2017); arXiv:2008.09681 for silica), at the training temperature T_train we draw,
per species, equal numbers of *rearranging* (label 1: p_hop > p_c) and *quiet* atoms
(label 0: p_hop below p_quiet for a whole window t_quiet centred on the frame), each
described by its structure functions at that frame. Features are standardised (zero mean,
unit variance over the training set) and a linear support vector machine is trained; its
penalty C is chosen by stratified k-fold cross-validation on ``train.C_grid`` and the
accuracy is measured on a held-out split that took no part in training or in choosing C.

Softness is the signed distance to the separating hyperplane in standardised feature space,

    S = (w . x_std + b) / |w|,      x_std = (x - mean) / scale,

positive on the rearranging side. It is a length in units of the standard deviations of
the features, so S = 0 is the plane and |S| = 1 is one standard deviation away from it.
A feature that barely varies over the training set (a radial shell inside the hard core,
such as Si-Si at 1.5 A, holds only Gaussian tails of ~1e-30 there) is scaled by at least
:data:`MIN_FEATURE_SCALE` instead of its own spread: dividing by that spread would turn a
rare close contact at a higher temperature into a softness of 1e9.

Frames. Features may be computed on every k-th trajectory frame while labels exist on
every frame. A label at trajectory frame g is paired with the structure at the latest
feature frame f <= g, provided g lies before the next feature frame (so the structure is
never taken from the future of the labelled frame, and is at most k - 1 frames older).
Labels before the first feature frame are not used. A (feature frame, atom) pair enters a
class once, however many of its labelled frames map onto it; a pair that would be both
rearranging and quiet is dropped.

The model file (HDF5, written by :func:`train_file`) holds everything :func:`apply_file`
needs: scaler mean and scale, weights, intercept, C, accuracies, the feature names and the
full structure-function grid (a features file with a different grid is refused), the
largest weights mapped back to structure functions, and the training provenance
(T_train, sample counts, the exact (frame, atom) pairs used).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import h5py
import numpy as np

from softness.errors import SoftnessError
from softness.io import atomic_h5, check_finite, open_input, require

log = logging.getLogger(__name__)

SPECIES_NAMES = ("Si", "O")

#: Number of largest-|weight| features recorded in the model file and logged.
N_TOP_FEATURES = 10

#: Bytes of features held in memory at once when streaming over frames.
CHUNK_BYTES = 64 * 2**20

#: Smallest scale a feature is standardised with, in the features' own unit (structure
#: functions count neighbours, with spreads of order 1): a hundredth of a neighbour.
MIN_FEATURE_SCALE = 0.01

#: Salt mixed into the config seed so the training draw is independent of other stages.
_SEED_SALT = 0x50F7


# ---------------------------------------------------------------------------- the model

@dataclass
class SoftnessModel:
    """A trained per-species linear softness model.

    Attributes:
      mean, scale: [2, F] standardisation (x_std = (x - mean) / scale).
      weights: [2, F] hyperplane normals w in standardised feature space.
      intercept: [2] hyperplane offsets b.
      C: [2] SVM penalties chosen by cross-validation.
      feature_names: [F] names of the features, in order.
      grid: the structure-function grid of the features file (name -> array), including
        the attribute ``cutoff_A``.
      T_train_K: training temperature.
      info: everything else stored with the model (accuracies, counts, ...).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray
    C: np.ndarray
    feature_names: list
    grid: dict
    T_train_K: float
    info: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.weights.shape[1]

    def per_atom_plane(self, species):
        """Per-atom coefficients so that S = x . coef + offset in raw feature space.

        Args:
          species: [N] species of the atoms.

        Returns:
          coef [N, F] and offset [N] (float64).
        """
        species = np.asarray(species)
        norm = np.linalg.norm(self.weights, axis=1)
        coef = self.weights / self.scale / norm[:, None]
        offset = (self.intercept - np.sum(self.weights * self.mean / self.scale, axis=1)) / norm
        return coef[species], offset[species]

    def softness(self, features, species) -> np.ndarray:
        """Softness of atoms from their raw features.

        Args:
          features: [..., N, F] structure functions (any leading frame axes).
          species: [N] species of the atoms.

        Returns:
          [..., N] float64 signed distances to the species' hyperplane.
        """
        features = np.asarray(features)
        if features.shape[-1] != self.n_features:
            raise SoftnessError(f"features have {features.shape[-1]} columns but the model expects "
                                f"{self.n_features}.")
        coef, offset = self.per_atom_plane(species)
        return np.einsum("...nf,nf->...n", features, coef, dtype=np.float64) + offset


def signed_distance(x_std, weights, intercept) -> np.ndarray:
    """(w . x + b) / |w| for points ``x_std`` [..., F] and one hyperplane (w [F], b)."""
    w = np.asarray(weights, dtype=np.float64)
    return (np.asarray(x_std, dtype=np.float64) @ w + intercept) / np.linalg.norm(w)


# ---------------------------------------------------------------------------- features files

GRID_ATTRS = ("cutoff_A",)


def read_grid(f: h5py.File) -> dict:
    """The structure-function grid of a features file: every ``/grid/...`` dataset and ``cutoff_A``."""
    grid = _datasets(f["grid"]) if "grid" in f else {}
    if "grid" in f:
        grid.update({f"@{k}": v for k, v in f["grid"].attrs.items()})  # conventions, cutoff
    for key in GRID_ATTRS:
        if key in f.attrs:
            grid[key] = f.attrs[key]
    return grid


def _datasets(group: h5py.Group) -> dict:
    """Every dataset below ``group``, by its path relative to it."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
    group.visititems(visit)
    return out


def _decode(values) -> list:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def grid_difference(a: dict, b: dict) -> str | None:
    """The name of the first grid entry that differs between ``a`` and ``b``, or None."""
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            return key
        va, vb = np.asarray(a[key]), np.asarray(b[key])
        if va.shape != vb.shape:
            return key
        if va.dtype.kind in "fc" or vb.dtype.kind in "fc":
            if not np.allclose(va.astype(float), vb.astype(float), rtol=1e-9, atol=1e-12):
                return key
        elif _decode(va.ravel()) != _decode(vb.ravel()):
            return key
    return None


def feature_table(feature_names, grid: dict) -> dict:
    """What every feature is: kind, species or pair, r, xi, lambda, zeta, and a description.

    The features file (``softness.structure``) lists the radial block first, species-major
    (for each neighbour species in ``radial_species``, every centre in ``radial_r_A``), then
    the angular block, pair-major (for each pair in ``angular_pair``, every (xi, lambda, zeta)
    triple). If the grid does not match that layout, the kinds are unknown and the stored
    feature names serve as descriptions.

    Returns:
      dict of [F] arrays: ``kind`` ("radial" / "angular" / "unknown"), ``species`` (the
      neighbour species, or the pair such as "SiO"), ``r_A``, ``xi_A``, ``lambda``, ``zeta``
      (NaN where they do not apply), and ``description`` (the feature name with its meaning).
    """
    names = _decode(feature_names)
    n = len(names)
    table = {"kind": ["unknown"] * n, "species": [""] * n, "r_A": np.full(n, np.nan),
             "xi_A": np.full(n, np.nan), "lambda": np.full(n, np.nan), "zeta": np.full(n, np.nan),
             "description": list(names)}
    try:
        r = np.atleast_1d(grid["radial_r_A"]).astype(float)
        rs = _decode(grid["radial_species"])
        xi = np.atleast_1d(grid["angular_xi_A"]).astype(float)
        lam = np.atleast_1d(grid["angular_lambda"]).astype(float)
        zeta = np.atleast_1d(grid["angular_zeta"]).astype(float)
        pairs = np.asarray(grid["angular_pair"])
    except KeyError:
        return table
    pair_names = ["".join(_decode(p)) for p in pairs] if pairs.ndim == 2 else _decode(pairs)
    n_rad = len(rs) * len(r)
    if n_rad + len(pair_names) * len(xi) != n or not (len(xi) == len(lam) == len(zeta)):
        return table
    table["kind"] = ["radial"] * n_rad + ["angular"] * (n - n_rad)
    table["species"] = [sp for sp in rs for _ in r] + [p for p in pair_names for _ in xi]
    table["r_A"][:n_rad] = np.tile(r, len(rs))
    for key, values in (("xi_A", xi), ("lambda", lam), ("zeta", zeta)):
        table[key][n_rad:] = np.tile(values, len(pair_names))
    desc = [f"{names[i]}: {table['species'][i]} neighbours at r = {table['r_A'][i]:.2f} A"
            for i in range(n_rad)]
    desc += [f"{names[i]}: {table['species'][i]} neighbour pairs, xi = {table['xi_A'][i]:g} A, "
             f"lambda = {table['lambda'][i]:+g}, zeta = {table['zeta'][i]:g}" for i in range(n_rad, n)]
    table["description"] = desc
    return table


def _feature_reader(path):
    """Open a features file and check the datasets this module needs."""
    f = open_input(path, "features")
    require(f, "features", "frames", "species", "feature_names", what="features")
    if f["features"].ndim != 3:
        f.close()
        raise SoftnessError(f"features file {path}: '/features' must be [frame, atom, feature].")
    return f


def _rows_per_chunk(dset) -> int:
    per_row = int(np.prod(dset.shape[1:])) * dset.dtype.itemsize
    return max(1, CHUNK_BYTES // max(per_row, 1))


def read_feature_pairs(dset, rows, atoms) -> np.ndarray:
    """Features of the (row, atom) pairs, reading only the rows and atoms needed.

    Args:
      dset: [R, N, F] features dataset.
      rows, atoms: [M] pairs (unique).

    Returns:
      [M, F] float64 features, in the order of the pairs.
    """
    rows, atoms = np.asarray(rows), np.asarray(atoms)
    out = np.empty((rows.size, dset.shape[2]), dtype=np.float64)
    if rows.size == 0:
        return out
    order = np.lexsort((atoms, rows))
    starts = np.flatnonzero(np.r_[True, np.diff(rows[order]) != 0])
    for lo, hi in zip(starts, np.r_[starts[1:], order.size], strict=True):
        sel = order[lo:hi]  # pairs in one frame, atoms increasing (h5py needs that)
        out[sel] = dset[int(rows[sel[0]]), atoms[sel], :]
    return out


# ---------------------------------------------------------------------------- training sets

def label_to_feature_rows(label_frames, feature_frames) -> np.ndarray:
    """Row of the features file whose structure each labelled frame uses (-1: none).

    A label at trajectory frame g uses the latest feature frame f <= g, provided g comes
    before the next feature frame (or, after the last feature frame, within one typical
    feature-frame spacing).

    Args:
      label_frames: [G] trajectory frame indices of the labels.
      feature_frames: [R] increasing trajectory frame indices of the features.

    Returns:
      [G] int64 feature rows, -1 where a label has no structure.
    """
    label_frames = np.asarray(label_frames, dtype=np.int64)
    ff = np.asarray(feature_frames, dtype=np.int64)
    if ff.size > 1 and np.any(np.diff(ff) <= 0):
        raise SoftnessError("feature '/frames' must be strictly increasing.")
    spacing = int(np.median(np.diff(ff))) if ff.size > 1 else 1
    row = np.searchsorted(ff, label_frames, side="right") - 1
    nxt = np.where(row + 1 < ff.size, ff[np.minimum(row + 1, ff.size - 1)], ff[-1] + spacing)
    ok = (row >= 0) & (label_frames < nxt)
    return np.where(ok, row, -1)


def class_masks(labels, label_rows, n_rows: int, chunk: int = 4096):
    """Rearranging and quiet (feature row, atom) masks from per-frame labels.

    Args:
      labels: [G, N] int8 labels (1 rearranging, 0 quiet, -1 neither); may be an h5py dataset.
      label_rows: [G] feature row of each labelled frame (-1: unused), from
        :func:`label_to_feature_rows`.
      n_rows: number of feature rows.
      chunk: labelled frames read at once.

    Returns:
      rearranging, quiet: [n_rows, N] bool; no pair is in both.
    """
    n_atoms = labels.shape[1]
    rearranging = np.zeros((n_rows, n_atoms), dtype=bool)
    quiet = np.zeros((n_rows, n_atoms), dtype=bool)
    label_rows = np.asarray(label_rows)
    for g0 in range(0, labels.shape[0], chunk):
        rows = label_rows[g0:g0 + chunk]
        use = rows >= 0
        if not use.any():
            continue
        lab = np.asarray(labels[g0:g0 + min(chunk, labels.shape[0] - g0)])[use]
        rows = rows[use]
        np.logical_or.at(rearranging, rows, lab == 1)
        np.logical_or.at(quiet, rows, lab == 0)
    both = rearranging & quiet
    quiet &= ~both
    rearranging &= ~both
    return rearranging, quiet


def sample_pairs(mask, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``k`` distinct True entries of ``mask`` [R, n] uniformly, without listing them all.

    Returns:
      rows, columns: [k] int64, sorted by row.
    """
    counts = mask.sum(axis=1)
    cum = np.cumsum(counts)
    total = int(cum[-1]) if cum.size else 0
    if k > total:
        raise ValueError(f"cannot draw {k} of {total}")
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ranks = np.sort(rng.choice(total, size=k, replace=False))
    rows = np.searchsorted(cum, ranks, side="right")
    within = ranks - (cum[rows] - counts[rows])
    cols = np.empty(k, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(rows) != 0])
    for lo, hi in zip(starts, np.r_[starts[1:], k], strict=True):
        cols[lo:hi] = np.flatnonzero(mask[rows[lo]])[within[lo:hi]]
    return rows.astype(np.int64), cols


def balanced_training_pairs(rearranging, quiet, species, n_per_class: int, rng):
    """Equal numbers of rearranging and quiet (row, atom) pairs per species.

    Args:
      rearranging, quiet: [R, N] bool masks from :func:`class_masks`.
      species: [N] species.
      n_per_class: pairs wanted per class and species (fewer if fewer exist).
      rng: numpy Generator.

    Returns:
      dict species -> (rows [2n], atoms [2n], labels [2n] int8, available (n_rearranging, n_quiet)).
    """
    species = np.asarray(species)
    out = {}
    for s in range(len(SPECIES_NAMES)):
        atoms_s = np.flatnonzero(species == s)
        r_mask, q_mask = rearranging[:, atoms_s], quiet[:, atoms_s]
        available = (int(r_mask.sum()), int(q_mask.sum()))
        n = min(n_per_class, *available)
        rr, ra = sample_pairs(r_mask, n, rng)
        qr, qa = sample_pairs(q_mask, n, rng)
        rows = np.concatenate([rr, qr])
        atoms = atoms_s[np.concatenate([ra, qa])]
        labels = np.r_[np.ones(n, np.int8), np.zeros(n, np.int8)]
        out[s] = (rows, atoms, labels, available)
    return out


# ---------------------------------------------------------------------------- the SVM

def minimum_per_class(cv_folds: int, test_fraction: float) -> int:
    """Fewest examples per class that leave ``cv_folds`` of them for training and one for testing."""
    return int(np.ceil(cv_folds / (1.0 - test_fraction))) + 1


def _floored_scaler():
    """sklearn's StandardScaler with every scale at least MIN_FEATURE_SCALE (see the module notes)."""
    from sklearn.preprocessing import StandardScaler

    class FlooredStandardScaler(StandardScaler):
        def fit(self, X, y=None, sample_weight=None):
            super().fit(X, y, sample_weight)
            self.scale_ = np.maximum(self.scale_, MIN_FEATURE_SCALE)
            return self

    return FlooredStandardScaler()


def fit_linear_svm(X, y, C_grid, *, cv_folds: int = 5, test_fraction: float = 0.2, seed: int = 0,
                   what: str = "training set") -> dict:
    """Standardise, choose C by cross-validation, fit a linear SVM, score it on held-out data.

    Args:
      X: [M, F] raw features; y: [M] labels (1 rearranging, 0 quiet). Features are
        standardised inside each fit, with scales of at least MIN_FEATURE_SCALE.
      C_grid: penalties tried.
      cv_folds: stratified folds of the cross-validation on the training part.
      test_fraction: fraction held out (stratified) for the accuracy.
      seed: seed of the split and of the folds.
      what: what to name in error messages.

    Returns:
      dict with ``mean``, ``scale`` [F], ``weights`` [F] (standardised space), ``intercept``,
      ``C``, ``accuracy`` and ``accuracy_err`` (binomial standard error) on the held-out
      part, ``cv_accuracy_mean`` / ``cv_accuracy_std`` [len(C_grid)] (accuracy vs C over
      the folds), ``train_accuracy``, ``n_train``, ``n_test`` and ``is_test`` [M] bool.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    n_min = int(min(np.sum(y == 1), np.sum(y == 0)))
    need = minimum_per_class(cv_folds, test_fraction)
    if n_min < need:
        raise SoftnessError(f"{what} has {n_min} atoms in its smaller class; at least {need} per class "
                            f"are needed for {cv_folds}-fold cross-validation and a held-out test split.")
    index = np.arange(y.size)
    i_train, i_test = train_test_split(index, test_size=test_fraction, stratify=y, random_state=seed)
    pipe = Pipeline([("scale", _floored_scaler()),
                     # The primal solver is deterministic; a large intercept_scaling keeps the
                     # penalty off the offset b (liblinear regularises it with w).
                     ("svm", LinearSVC(dual=False, max_iter=20000, intercept_scaling=10.0))])
    folds = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    search = GridSearchCV(pipe, {"svm__C": list(C_grid)}, cv=folds, scoring="accuracy", refit=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(X[i_train], y[i_train])
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("%s: the SVM solver did not fully converge for some C; accuracy vs C may be noisy.", what)
    cv_mean = np.asarray(search.cv_results_["mean_test_score"], dtype=np.float64)
    fold_scores = np.array([search.cv_results_[f"split{i}_test_score"] for i in range(cv_folds)]).T
    edge = grid_edge_optimum(C_grid, fold_scores)
    if edge is not None:
        log.warning("%s: the cross-validated accuracy still rises towards the %s end of train.C_grid "
                    "(best at C = %g); extend the grid past it so that the chosen C is an optimum.",
                    what, edge, search.best_params_["svm__C"])
    best = search.best_estimator_
    scaler, svm = best.named_steps["scale"], best.named_steps["svm"]
    acc = float(np.mean(best.predict(X[i_test]) == y[i_test]))
    is_test = np.zeros(y.size, dtype=bool)
    is_test[i_test] = True
    return {
        "mean": scaler.mean_.copy(),
        "scale": scaler.scale_.copy(),
        "weights": svm.coef_[0].astype(np.float64),
        "intercept": float(svm.intercept_[0]),
        "C": float(search.best_params_["svm__C"]),
        "accuracy": acc,
        "accuracy_err": float(np.sqrt(acc * (1.0 - acc) / i_test.size)),
        "train_accuracy": float(np.mean(best.predict(X[i_train]) == y[i_train])),
        "cv_accuracy_mean": cv_mean,
        "cv_accuracy_std": np.asarray(search.cv_results_["std_test_score"], dtype=np.float64),
        "n_train": int(i_train.size),
        "n_test": int(i_test.size),
        "is_test": is_test,
    }


def grid_edge_optimum(C_grid, fold_accuracy) -> str | None:
    """Whether cross-validation prefers a C at an end of its grid beyond the fold noise.

    The best mean accuracy must lie at the largest (smallest) C and beat the next C inside
    the grid by more than one standard error of their paired, per-fold difference (the folds
    are the same for every C): then the optimum may lie outside the grid.

    Args:
      C_grid: [n_C] the penalties tried (any order).
      fold_accuracy: [n_C, k] held-out accuracy of each C on each of the k folds.

    Returns:
      "upper" or "lower", else None (an inner optimum, a plateau within the noise, or a
      grid of one value).
    """
    C = np.asarray(C_grid, dtype=np.float64)
    acc = np.asarray(fold_accuracy, dtype=np.float64)[np.argsort(C)]
    if acc.shape[0] < 2:
        return None
    mean = acc.mean(axis=1)
    for name, edge, inner in (("upper", -1, -2), ("lower", 0, 1)):
        d = acc[edge] - acc[inner]
        se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else 0.0
        if mean[edge] == mean.max() and d.mean() > se:
            return name
    return None


def top_features(weights, descriptions, k: int = N_TOP_FEATURES):
    """The ``k`` features with the largest |weight| (standardised space), largest first.

    Returns:
      indices [k], weights [k], descriptions [k].
    """
    w = np.asarray(weights)
    k = min(k, w.size)
    idx = np.argsort(-np.abs(w), kind="stable")[:k]
    return idx, w[idx], [descriptions[i] for i in idx]


# ---------------------------------------------------------------------------- train stage

def _seed(cfg: dict, *extra: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(cfg["seed"]), _SEED_SALT, *extra])


def train(cfg: dict, features, hops) -> SoftnessModel:
    """Train the per-species softness model at T_train.

    Args:
      cfg: resolved config (uses ``seed`` and ``train``).
      features: features file at T_train.
      hops: hops file at the same temperature.

    Returns:
      The trained :class:`SoftnessModel`; ``info`` holds accuracies, accuracy vs C, counts,
      the (frame, atom) pairs used and the top features.
    """
    tcfg = cfg["train"]
    with _feature_reader(features) as ff, open_input(hops, "hops") as fh:
        require(fh, "labels", "frames", "species", what="hops")
        species = ff["species"][()].astype(np.int64)
        if not np.array_equal(species, fh["species"][()]):
            raise SoftnessError(f"features file {features} and hops file {hops} describe different atoms "
                                "('/species' differ).")
        t_feat = float(ff.attrs.get("temperature_K", np.nan))
        t_hops = float(fh.attrs.get("temperature_K", np.nan))
        if not np.isclose(t_feat, t_hops):
            raise SoftnessError(f"features file {features} is at {t_feat:g} K but hops file {hops} is at "
                                f"{t_hops:g} K; train on one temperature.")
        from softness.config import training_temperature

        if not np.isclose(t_feat, training_temperature(cfg)):
            log.warning("training at %g K, but the config's T_train is %g K.", t_feat,
                        training_temperature(cfg))
        feature_frames = ff["frames"][()].astype(np.int64)
        names = _decode(ff["feature_names"][()])
        dset = ff["features"]
        if dset.shape != (feature_frames.size, species.size, len(names)):
            raise SoftnessError(f"features file {features}: '/features' has shape {dset.shape}, inconsistent "
                                f"with {feature_frames.size} frames, {species.size} atoms and "
                                f"{len(names)} feature names.")
        grid = read_grid(ff)
        label_rows = label_to_feature_rows(fh["frames"][()], feature_frames)
        rearranging, quiet = class_masks(fh["labels"], label_rows, feature_frames.size)
        rng = np.random.default_rng(_seed(cfg, 0))
        pairs = balanced_training_pairs(rearranging, quiet, species, tcfg["n_per_class"], rng)
        need = minimum_per_class(tcfg["cv_folds"], tcfg["test_fraction"])
        for s, (_rows, _atoms, _labels, available) in pairs.items():
            if min(available) < need:
                raise SoftnessError(
                    f"the {SPECIES_NAMES[s]} training set at {t_feat:g} K has {available[0]} rearranging and "
                    f"{available[1]} quiet atoms (hops file {hops}); at least {need} of each are needed. "
                    "Run longer, or lower hops.p_c_A2 / raise hops.p_quiet_A2.")
        X = {}
        for s, (rows, atoms, _labels, available) in pairs.items():
            log.info("%s at %g K: %d rearranging and %d quiet (frame, atom) pairs available; "
                     "drawing %d of each", SPECIES_NAMES[s], t_feat, *available, rows.size // 2)
            X[s] = read_feature_pairs(dset, rows, atoms)
            check_finite("features", X[s], f"features file {features}")

    table = feature_table(names, grid)
    descriptions = table["description"]
    n_feat = len(names)
    model = SoftnessModel(mean=np.zeros((2, n_feat)), scale=np.ones((2, n_feat)),
                          weights=np.zeros((2, n_feat)), intercept=np.zeros(2), C=np.zeros(2),
                          feature_names=names, grid=grid, T_train_K=t_feat)
    info = {k: [] for k in ("accuracy", "accuracy_err", "train_accuracy", "cv_accuracy_mean",
                            "cv_accuracy_std", "n_train", "n_test", "n_available", "training")}
    info["top"] = []
    for s in range(2):
        rows, atoms, labels, available = pairs[s]
        seed = int(_seed(cfg, 1, s).generate_state(1)[0])
        fit = fit_linear_svm(X[s], labels, tcfg["C_grid"], cv_folds=tcfg["cv_folds"],
                             test_fraction=tcfg["test_fraction"], seed=seed,
                             what=f"the {SPECIES_NAMES[s]} training set at {t_feat:g} K")
        model.mean[s], model.scale[s], model.weights[s] = fit["mean"], fit["scale"], fit["weights"]
        model.intercept[s], model.C[s] = fit["intercept"], fit["C"]
        for key in ("accuracy", "accuracy_err", "train_accuracy", "cv_accuracy_mean", "cv_accuracy_std",
                    "n_train", "n_test"):
            info[key].append(fit[key])
        info["n_available"].append(available)
        info["training"].append((np.full(rows.size, s), feature_frames[rows], atoms, labels, fit["is_test"]))
        info["top"].append(top_features(fit["weights"], descriptions))
        log.info("%s: C = %g, held-out accuracy %.3f +- %.3f (n = %d); cross-validated accuracy vs C: %s",
                 SPECIES_NAMES[s], fit["C"], fit["accuracy"], fit["accuracy_err"], fit["n_test"],
                 ", ".join(f"{c:g}: {m:.3f}+-{e:.3f}" for c, m, e in
                           zip(tcfg["C_grid"], fit["cv_accuracy_mean"], fit["cv_accuracy_std"], strict=True)))
        norm = np.linalg.norm(fit["weights"])
        for _i, w, d in zip(*info["top"][-1], strict=True):
            log.info("  %s weight %+.3f (|w| share %.2f): %s", SPECIES_NAMES[s], w, abs(w) / norm, d)
    info["C_grid"] = np.asarray(tcfg["C_grid"], dtype=np.float64)
    info["feature_table"] = table
    info["sources"] = (str(features), str(hops))
    model.info = info
    return model


# ---------------------------------------------------------------------------- model file

def write_model(f: h5py.File, model: SoftnessModel) -> None:
    """Store ``model`` in an open, writable HDF5 file (see the module docstring)."""
    info = model.info
    f.attrs["T_train_K"] = model.T_train_K
    f.attrs["n_features"] = model.n_features
    f.attrs["softness_definition"] = ("S = (w . x_std + b) / |w|, x_std = (x - mean) / scale, "
                                      "positive on the rearranging side")
    if "sources" in info:
        f.attrs["features_source"], f.attrs["hops_source"] = info["sources"]
    f["species_names"] = np.array(SPECIES_NAMES, dtype="S")
    for key in ("mean", "scale", "weights", "intercept", "C"):
        f[key] = np.asarray(getattr(model, key), dtype=np.float64)
    f["feature_names"] = np.array(model.feature_names, dtype=h5py.string_dtype())
    g = f.create_group("grid")
    for key, value in model.grid.items():
        if key in GRID_ATTRS:
            f.attrs[key] = value
        elif key.startswith("@"):
            g.attrs[key[1:]] = value
        else:
            g[key] = value
    if "accuracy" not in info:
        return
    f["C_grid"] = info["C_grid"]
    for key in ("accuracy", "accuracy_err", "train_accuracy"):
        f[key] = np.asarray(info[key], dtype=np.float64)
    f["cv_accuracy_mean"] = np.asarray(info["cv_accuracy_mean"])
    f["cv_accuracy_std"] = np.asarray(info["cv_accuracy_std"])
    f["n_train"] = np.asarray(info["n_train"], dtype=np.int64)
    f["n_test"] = np.asarray(info["n_test"], dtype=np.int64)
    f["n_available"] = np.asarray(info["n_available"], dtype=np.int64)
    f["n_available"].attrs["columns"] = "rearranging, quiet (feature frame, atom) pairs at T_train"
    cols = [np.concatenate(c) for c in zip(*info["training"], strict=True)]
    t = f.create_group("training")
    for name, col in zip(("species", "frame", "atom", "label", "is_test"), cols, strict=True):
        t[name] = col
    t.attrs["meaning"] = "one row per training example; frame is the trajectory frame of its features"
    f["frames_used"] = np.unique(cols[1])
    # The largest |weights| (standardised space) mapped back to structure functions.
    table = info["feature_table"]
    top = f.create_group("top_features")
    index = np.array([t_[0] for t_ in info["top"]], dtype=np.int64)  # [2, k]
    top["index"] = index
    top["weight"] = np.array([t_[1] for t_ in info["top"]], dtype=np.float64)
    for key in ("kind", "species", "description"):
        top[key] = np.array([[table[key][i] for i in row] for row in index], dtype=h5py.string_dtype())
    for key in ("r_A", "xi_A", "lambda", "zeta"):
        top[key] = table[key][index]
    top.attrs["meaning"] = ("per species, the features with the largest |w| in standardised space, largest "
                            "first; species holds the neighbour species (radial) or pair (angular)")
    ft = f.create_group("feature_table")
    for key, values in table.items():
        ft[key] = (np.array(values, dtype=h5py.string_dtype()) if key in ("kind", "species", "description")
                   else values)


def load_model(path) -> SoftnessModel:
    """Read a model file written by :func:`train_file`."""
    with open_input(path, "model") as f:
        require(f, "mean", "scale", "weights", "intercept", "feature_names", "grid", what="model")
        grid = read_grid(f)
        info = {}
        for key in ("accuracy", "accuracy_err", "n_train", "n_test"):
            if key in f:
                info[key] = f[key][()]
        return SoftnessModel(
            mean=f["mean"][()], scale=f["scale"][()], weights=f["weights"][()],
            intercept=f["intercept"][()], C=f["C"][()] if "C" in f else np.full(2, np.nan),
            feature_names=_decode(f["feature_names"][()]), grid=grid,
            T_train_K=float(f.attrs.get("T_train_K", np.nan)), info=info)


def train_file(cfg: dict, features, hops, out) -> SoftnessModel:
    """The ``softness train`` stage: train at T_train and write the model file ``out``."""
    model = train(cfg, features, hops)
    with atomic_h5(out, "train", cfg) as f:
        write_model(f, model)
    log.info("wrote %s", out)
    return model


# ---------------------------------------------------------------------------- apply stage

def check_compatible(model: SoftnessModel, names, grid: dict, features, model_path="the model") -> None:
    """Refuse features computed with another structure-function grid than the model's."""
    names = _decode(names)
    if names != list(model.feature_names):
        raise SoftnessError(
            f"features file {features} has different features than {model_path} ({len(names)} vs "
            f"{model.n_features} feature names, or in another order); recompute the features with the "
            "model's grid or retrain.")
    key = grid_difference(model.grid, grid)
    if key is not None:
        raise SoftnessError(
            f"features file {features} was computed with a different structure-function grid than "
            f"{model_path} ('{key}' differs); recompute the features with the model's grid or retrain.")


def apply_file(cfg: dict, model, features, out) -> None:
    """The ``softness apply`` stage: softness of every atom at every frame of a features file.

    Streams over frames, holding at most about ``CHUNK_BYTES`` of features at once.

    Args:
      cfg: resolved config (recorded as provenance).
      model: model file from :func:`train_file`.
      features: features file at any temperature.
      out: product with ``/softness`` [frame, atom] float32, ``/frames``, ``/step``,
        ``/time_fs``, ``/species``, ``/species_names``; root attributes ``temperature_K``
        (from the features), ``T_train_K``, ``model_source``, ``features_source``.
    """
    m = load_model(model)
    with _feature_reader(features) as ff:
        check_compatible(m, ff["feature_names"][()], read_grid(ff), features, f"model {model}")
        species = ff["species"][()].astype(np.int64)
        dset = ff["features"]
        n_frames, n_atoms = dset.shape[:2]
        coef, offset = m.per_atom_plane(species)
        with atomic_h5(out, "apply", cfg) as f:
            f.attrs["temperature_K"] = float(ff.attrs.get("temperature_K", np.nan))
            f.attrs["T_train_K"] = m.T_train_K
            f.attrs["model_source"] = str(model)
            f.attrs["features_source"] = str(features)
            for key in ("frames", "step", "time_fs"):
                if key in ff:
                    f[key] = ff[key][()]
            f["species"] = species
            f["species_names"] = np.array(SPECIES_NAMES, dtype="S")
            out_ds = f.create_dataset("softness", shape=(n_frames, n_atoms), dtype=np.float32,
                                      chunks=(max(1, min(n_frames, 2**18 // max(n_atoms, 1))), n_atoms))
            out_ds.attrs["meaning"] = "signed distance to the species' hyperplane, standardised features"
            step = _rows_per_chunk(dset)
            for r0 in range(0, n_frames, step):
                x = dset[r0:r0 + step]
                check_finite("features", x, f"features file {features} (frames {r0}-{r0 + len(x) - 1})")
                out_ds[r0:r0 + len(x)] = np.einsum("rnf,nf->rn", x, coef, dtype=np.float64) + offset
    log.info("wrote %s (%d frames x %d atoms)", out, n_frames, n_atoms)


def softness_of(model_path, features_path) -> np.ndarray:
    """Softness [frame, atom] of a (small) features file, in memory; for notebooks and tests."""
    m = load_model(model_path)
    with _feature_reader(features_path) as ff:
        check_compatible(m, ff["feature_names"][()], read_grid(ff), features_path, f"model {model_path}")
        return m.softness(ff["features"][()], ff["species"][()])


__all__ = ["SoftnessModel", "signed_distance", "fit_linear_svm", "train", "train_file", "apply_file",
           "load_model", "write_model", "feature_table", "label_to_feature_rows", "class_masks",
           "balanced_training_pairs", "top_features"]
