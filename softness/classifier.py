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
in units of its own standard deviation at the training temperature (as RSoft does),

    S = (w . x_std + b) / (|w| sigma_S),      x_std = (x - mean) / scale,

positive on the rearranging side. sigma_S (``softness_scale``, one per species) is the
standard deviation of the distance (w . x_std + b) / |w| over every atom of the species in
every frame of the training features file, not only over the balanced training set. So
S = 0 is the plane, and S has unit standard deviation at T_train: barriers "per unit S"
compare across runs, systems and papers. (The bare distance spans ~0.2 on silica.)
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

Quality beyond accuracy. On the held-out split, per species: ROC AUC of S, balanced
accuracy, P(S > 0 | rearranging) (the figure the softness papers quote, 85-90 % on
Kob-Andersen) and a calibration curve, the fraction rearranging in bins of S; and P(S > 0)
over all atoms at T_train. The held-out set is balanced, so the calibration curve is the
probability of rearranging at equal class priors, not P_R(S) (that is ``softness.arrhenius``).
A high accuracy alone does not make S a barrier coordinate (Swain, Ridout, Nemenman,
arXiv:2403.00751).

Hyperplane stability (:func:`stability`). The same model (same labels, same C selection) is
trained at a second temperature; per species the cosine between the two unit normals, both
expressed in the first model's standardised feature space, and the Pearson correlation of
the two softnesses on the same configurations say whether one structural direction governs
rearrangements at both temperatures.

Species. Nothing here names a species: the names and their number come from the files
(``/species_names`` of the features and hops files, which must agree), one SVM is trained per
species, and every per-species array has the species axis first, in that order. The model
stores the names; features that name other species are refused by :func:`apply_file`. The
root attribute ``system`` (e.g. "kob_andersen") is carried from the features to the model and
the softness files.

The model file (HDF5, written by :func:`train_file`) holds everything :func:`apply_file`
needs: the species names, scaler mean and scale, weights, intercept, softness scale, C, accuracies and the
quality metrics, the feature names and the full structure-function grid (a features file
with a different grid is refused), the largest weights mapped back to structure functions,
and the training provenance (T_train, sample counts, the exact (frame, atom) pairs used).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import h5py
import numpy as np

from softness.errors import SoftnessError
from softness.io import atomic_h5, check_finite, decode_all, open_input, require, system_attribute

log = logging.getLogger(__name__)

#: Number of largest-|weight| features recorded in the model file and logged.
N_TOP_FEATURES = 10

#: Bytes of features held in memory at once when streaming over frames.
CHUNK_BYTES = 64 * 2**20

#: Smallest scale a feature is standardised with, in the features' own unit (structure
#: functions count neighbours, with spreads of order 1): a hundredth of a neighbour.
MIN_FEATURE_SCALE = 0.01

#: Bins of S (quantiles of the held-out softness) of the calibration curve.
N_CALIBRATION_BINS = 10

#: Stratified bootstrap resamples of the held-out split for the error of the ROC AUC.
N_BOOTSTRAP_QUALITY = 200

#: How softness is defined, stored with the model and the softness files.
SOFTNESS_DEFINITION = ("S = (w . x_std + b) / (|w| sigma_S), x_std = (x - mean) / scale, "
                       "sigma_S = softness_scale (the standard deviation of (w . x_std + b) / |w| over all "
                       "atoms of the species at T_train), positive on the rearranging side")

#: Salt mixed into the config seed so the training draw is independent of other stages.
_SEED_SALT = 0x50F7


# ---------------------------------------------------------------------------- the model

@dataclass
class SoftnessModel:
    """A trained per-species linear softness model.

    Every per-species array has the species axis first, one row per species number of the
    training files (S species: 2 for silica or Kob-Andersen, any number in general).

    Attributes:
      mean, scale: [S, F] standardisation (x_std = (x - mean) / scale).
      weights: [S, F] hyperplane normals w in standardised feature space.
      intercept: [S] hyperplane offsets b.
      C: [S] SVM penalties chosen by cross-validation.
      softness_scale: [S] sigma_S, the standard deviation of the distance to the plane over
        all atoms of the species at T_train (the unit of S); ones (the default) for a bare
        distance.
      feature_names: [F] names of the features, in order.
      grid: the structure-function grid of the features file (name -> array), including
        the attribute ``cutoff_A``.
      T_train_K: training temperature.
      info: everything else stored with the model (accuracies, counts, ...).
      species_names: the name of each species number (from the training files; every
        features file the model is applied to must name the same species).
      system: the root attribute ``system`` of the training features (e.g. "silica"), or None.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray
    C: np.ndarray
    feature_names: list
    grid: dict
    T_train_K: float
    softness_scale: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    species_names: tuple = ()
    system: str | None = None

    def __post_init__(self):
        if self.softness_scale is None:
            self.softness_scale = np.ones(np.shape(self.weights)[0])
        self.species_names = tuple(str(n) for n in self.species_names)

    @property
    def n_features(self) -> int:
        return self.weights.shape[1]

    @property
    def n_species(self) -> int:
        return self.weights.shape[0]

    def per_atom_plane(self, species):
        """Per-atom coefficients so that S = x . coef + offset in raw feature space.

        Args:
          species: [N] species of the atoms.

        Returns:
          coef [N, F] and offset [N] (float64).
        """
        species = np.asarray(species)
        norm = np.linalg.norm(self.weights, axis=1) * np.asarray(self.softness_scale, dtype=np.float64)
        coef = self.weights / self.scale / norm[:, None]
        offset = (self.intercept - np.sum(self.weights * self.mean / self.scale, axis=1)) / norm
        return coef[species], offset[species]

    def softness(self, features, species) -> np.ndarray:
        """Softness of atoms from their raw features.

        Args:
          features: [..., N, F] structure functions (any leading frame axes).
          species: [N] species of the atoms.

        Returns:
          [..., N] float64 signed distances to the species' hyperplane in units of
          ``softness_scale``.
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


def _str_list(values) -> list:
    """Stored strings as a list (``decode_all``), for comparisons with lists."""
    return list(decode_all(values))


# ---------------------------------------------------------------------------- species names

def names_dataset(names) -> np.ndarray:
    """Species names as every product stores them in ``/species_names`` (UTF-8 bytes)."""
    return np.array([str(n).encode() for n in names], dtype="S")


def species_names_of(f: h5py.File, what: str, path=None) -> tuple:
    """The species names a product stores in ``/species_names``, indexed by species number.

    Args:
      f: open product (features, hops, softness, model, dynamics ...).
      what: its kind, named in errors.
      path: its path for messages (default: the file's name).

    Raises:
      SoftnessError: no names, repeated names, or species numbers in ``/species`` beyond them.
    """
    where = f.filename if path is None else path
    if "species_names" not in f:
        raise SoftnessError(f"{what} file {where} has no '/species_names'; remake it with this version of "
                            "the pipeline, whose products name their species.")
    names = decode_all(f["species_names"][()])
    if not names or len(set(names)) != len(names):
        raise SoftnessError(f"{what} file {where}: '/species_names' must name each species once, not "
                            f"{list(names)}.")
    if "species" in f and isinstance(f["species"], h5py.Dataset):
        species = np.asarray(f["species"][()])
        if species.size and (species.min() < 0 or species.max() >= len(names)):
            raise SoftnessError(f"{what} file {where}: '/species' holds species numbers up to "
                                f"{int(species.max())} but '/species_names' names only {len(names)} "
                                f"({', '.join(names)}).")
    return names


def same_species(names, reference, what: str, reference_what: str) -> None:
    """Refuse two files that name different species (in number, names or order), in one sentence."""
    if tuple(names) != tuple(reference):
        raise SoftnessError(f"{what} names the species ({', '.join(names)}) but {reference_what} names "
                            f"({', '.join(reference)}); they come from different systems or species orders.")


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
        elif _str_list(va.ravel()) != _str_list(vb.ravel()):
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
    names = _str_list(feature_names)
    n = len(names)
    table = {"kind": ["unknown"] * n, "species": [""] * n, "r_A": np.full(n, np.nan),
             "xi_A": np.full(n, np.nan), "lambda": np.full(n, np.nan), "zeta": np.full(n, np.nan),
             "description": list(names)}
    try:
        r = np.atleast_1d(grid["radial_r_A"]).astype(float)
        rs = _str_list(grid["radial_species"])
        xi = np.atleast_1d(grid["angular_xi_A"]).astype(float)
        lam = np.atleast_1d(grid["angular_lambda"]).astype(float)
        zeta = np.atleast_1d(grid["angular_zeta"]).astype(float)
        pairs = np.asarray(grid["angular_pair"])
    except KeyError:
        return table
    pair_names = ["".join(_str_list(p)) for p in pairs] if pairs.ndim == 2 else _str_list(pairs)
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


def balanced_training_pairs(rearranging, quiet, species, n_per_class: int, rng, n_species: int | None = None):
    """Equal numbers of rearranging and quiet (row, atom) pairs per species.

    Args:
      rearranging, quiet: [R, N] bool masks from :func:`class_masks`.
      species: [N] species.
      n_per_class: pairs wanted per class and species (fewer if fewer exist).
      rng: numpy Generator.
      n_species: number of species (default: one more than the largest species number).

    Returns:
      dict species -> (rows [2n], atoms [2n], labels [2n] int8, available (n_rearranging, n_quiet)).
    """
    species = np.asarray(species)
    if n_species is None:
        n_species = int(species.max()) + 1 if species.size else 0
    out = {}
    for s in range(n_species):
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


# ---------------------------------------------------------------------------- scale and quality

def plane_values_over_frames(dset, coef, offset, where: str) -> np.ndarray:
    """x . coef + offset for every atom in every frame of a features dataset, streamed.

    Holds at most about ``CHUNK_BYTES`` of features at once; the result is one number per
    atom and frame.

    Args:
      dset: [R, N, F] raw features (h5py dataset or array).
      coef, offset: [N, F] and [N] per-atom planes (:meth:`SoftnessModel.per_atom_plane`).
      where: the file to name if a feature is not finite.

    Returns:
      [R, N] float64.
    """
    n_frames, n_atoms = dset.shape[:2]
    out = np.empty((n_frames, n_atoms), dtype=np.float64)
    step = _rows_per_chunk(dset)
    for r0 in range(0, n_frames, step):
        x = dset[r0:r0 + step]
        check_finite("features", x, f"{where} (frames {r0}-{r0 + len(x) - 1})")
        out[r0:r0 + len(x)] = np.einsum("rnf,nf->rn", x, coef, dtype=np.float64) + offset
    return out


def softness_unit(distance, species, where: str = "the training features", species_names=None):
    """sigma_S per species: the spread of the distance to the plane over all atoms and frames.

    Args:
      distance: [R, N] signed distances (w . x_std + b) / |w| of every atom in every frame
        at T_train.
      species: [N] species of the atoms.
      where: what to name if a species has no spread.
      species_names: the name of each species number (default: "species 0", ...); their
        number is the number of species (default: one more than the largest species number).

    Returns:
      sigma [S] (standard deviation, ddof = 0), P(distance > 0) [S] and the number of
      atom-frames [S] of each species.
    """
    species = np.asarray(species)
    distance = np.asarray(distance, dtype=np.float64)
    if species_names is None:
        species_names = [f"species {s}" for s in range(int(species.max()) + 1 if species.size else 0)]
    n_species = len(species_names)
    sigma, positive, n = np.zeros(n_species), np.zeros(n_species), np.zeros(n_species, dtype=np.int64)
    for s in range(n_species):
        d = distance[:, species == s]
        n[s] = d.size
        sigma[s] = d.std() if d.size else np.nan
        positive[s] = np.mean(d > 0) if d.size else np.nan
        if not sigma[s] > 0:
            raise SoftnessError(f"the {species_names[s]} atoms of {where} all lie at the same distance from "
                                "the hyperplane, so softness has no unit; train on a longer run.")
    return sigma, positive, n


def calibration_curve(s, y, n_bins: int = N_CALIBRATION_BINS) -> dict:
    """Fraction of rearranging examples in bins of softness (quantiles of ``s``).

    Args:
      s: [M] softness of labelled examples; y: [M] labels (1 rearranging, 0 quiet).
      n_bins: number of bins; bins emptied by tied quantiles hold NaN.

    Returns:
      dict of ``S`` [n_bins] (mean S in the bin), ``fraction_rearranging`` [n_bins] with its
      binomial error ``fraction_rearranging_err``, ``n`` [n_bins] and ``S_edges`` [n_bins + 1].
    """
    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    edges = np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1))
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_bins - 1)
    n = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.bincount(index, weights=s, minlength=n_bins) / n
        fraction = np.bincount(index, weights=y, minlength=n_bins) / n
        err = np.sqrt(fraction * (1.0 - fraction) / n)
    return {"S": centre, "fraction_rearranging": fraction, "fraction_rearranging_err": err, "n": n,
            "S_edges": edges}


def classifier_quality(s, y, *, rng=None, n_bootstrap: int = N_BOOTSTRAP_QUALITY,
                       n_bins: int = N_CALIBRATION_BINS) -> dict:
    """How well softness separates rearranging from quiet examples, beyond the accuracy.

    The prediction is S > 0 (the SVM's own rule). Errors: the ROC AUC by a bootstrap that
    resamples each class of the examples (their numbers are fixed by the stratified split);
    the rates by the binomial standard error.

    Args:
      s: [M] softness of held-out examples; y: [M] labels (1 rearranging, 0 quiet).
      rng: seed or numpy Generator of the bootstrap.
      n_bootstrap: bootstrap resamples.
      n_bins: bins of the calibration curve (:func:`calibration_curve`).

    Returns:
      dict of ``roc_auc``, ``roc_auc_err``, ``balanced_accuracy``, ``balanced_accuracy_err``,
      ``P_S_positive_given_rearranging`` (the true positive rate) and its ``_err``, and
      ``calibration`` (a dict, see :func:`calibration_curve`).
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    soft, hard = s[y == 1], s[y == 0]
    if soft.size == 0 or hard.size == 0:
        raise SoftnessError("classifier quality needs held-out examples of both classes.")
    rng = np.random.default_rng(rng)
    boot_y = np.r_[np.ones(soft.size), np.zeros(hard.size)]
    boot = [roc_auc_score(boot_y, np.r_[rng.choice(soft, soft.size), rng.choice(hard, hard.size)])
            for _ in range(n_bootstrap)]
    tpr, tnr = np.mean(soft > 0), np.mean(hard <= 0)
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "roc_auc_err": float(np.std(boot, ddof=1)),
        "balanced_accuracy": float(balanced_accuracy_score(y, (s > 0).astype(np.int64))),
        "balanced_accuracy_err": float(0.5 * np.sqrt(tpr * (1 - tpr) / soft.size
                                                      + tnr * (1 - tnr) / hard.size)),
        "P_S_positive_given_rearranging": float(tpr),
        "P_S_positive_given_rearranging_err": float(np.sqrt(tpr * (1 - tpr) / soft.size)),
        "calibration": calibration_curve(s, y, n_bins),
    }


# ---------------------------------------------------------------------------- train stage

def _seed(cfg: dict, *extra: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(cfg["seed"]), _SEED_SALT, *extra])


def train(cfg: dict, features, hops, *, at_T_train: bool = True) -> SoftnessModel:
    """Train the per-species softness model at T_train.

    After the fit, the unit of softness sigma_S is measured over every atom of every frame
    of ``features`` (streamed), and the quality metrics on the held-out split.

    Args:
      cfg: resolved config (uses ``seed`` and ``train``).
      features: features file at T_train.
      hops: hops file at the same temperature.
      at_T_train: warn when the files are not at the config's T_train (off for the
        stability check, which retrains at another temperature on purpose).

    Returns:
      The trained :class:`SoftnessModel`, one row per species the files name (their
      ``/species_names``, which must agree); ``info`` holds accuracies, accuracy vs C, counts,
      the (frame, atom) pairs used, the top features, the quality metrics per species and
      the atom-frames behind sigma_S.
    """
    tcfg = cfg["train"]
    with _feature_reader(features) as ff, open_input(hops, "hops") as fh:
        require(fh, "labels", "frames", "species", what="hops")
        names = species_names_of(ff, "features", features)
        same_species(species_names_of(fh, "hops", hops), names, f"hops file {hops}",
                     f"features file {features}")
        system = system_attribute(ff.attrs)
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

        if at_T_train and not np.isclose(t_feat, training_temperature(cfg)):
            log.warning("training at %g K, but the config's T_train is %g K.", t_feat,
                        training_temperature(cfg))
        feature_frames = ff["frames"][()].astype(np.int64)
        feature_names = _str_list(ff["feature_names"][()])
        dset = ff["features"]
        if dset.shape != (feature_frames.size, species.size, len(feature_names)):
            raise SoftnessError(f"features file {features}: '/features' has shape {dset.shape}, inconsistent "
                                f"with {feature_frames.size} frames, {species.size} atoms and "
                                f"{len(feature_names)} feature names.")
        grid = read_grid(ff)
        label_rows = label_to_feature_rows(fh["frames"][()], feature_frames)
        rearranging, quiet = class_masks(fh["labels"], label_rows, feature_frames.size)
        rng = np.random.default_rng(_seed(cfg, 0))
        pairs = balanced_training_pairs(rearranging, quiet, species, tcfg["n_per_class"], rng, len(names))
        need = minimum_per_class(tcfg["cv_folds"], tcfg["test_fraction"])
        for s, (_rows, _atoms, _labels, available) in pairs.items():
            if min(available) < need:
                raise SoftnessError(
                    f"the {names[s]} training set at {t_feat:g} K has {available[0]} rearranging and "
                    f"{available[1]} quiet atoms (hops file {hops}); at least {need} of each are needed. "
                    "Run longer, or lower hops.p_c_A2 / raise hops.p_quiet_A2.")
        X = {}
        for s, (rows, atoms, _labels, available) in pairs.items():
            log.info("%s at %g K: %d rearranging and %d quiet (frame, atom) pairs available; "
                     "drawing %d of each", names[s], t_feat, *available, rows.size // 2)
            X[s] = read_feature_pairs(dset, rows, atoms)
            check_finite("features", X[s], f"features file {features}")

    table = feature_table(feature_names, grid)
    descriptions = table["description"]
    n_feat, n_sp = len(feature_names), len(names)
    model = SoftnessModel(mean=np.zeros((n_sp, n_feat)), scale=np.ones((n_sp, n_feat)),
                          weights=np.zeros((n_sp, n_feat)), intercept=np.zeros(n_sp), C=np.zeros(n_sp),
                          feature_names=feature_names, grid=grid, T_train_K=t_feat, species_names=names,
                          system=system)
    info = {k: [] for k in ("accuracy", "accuracy_err", "train_accuracy", "cv_accuracy_mean",
                            "cv_accuracy_std", "n_train", "n_test", "n_available", "training")}
    info["top"] = []
    held_out = []
    for s in range(n_sp):
        rows, atoms, labels, available = pairs[s]
        seed = int(_seed(cfg, 1, s).generate_state(1)[0])
        fit = fit_linear_svm(X[s], labels, tcfg["C_grid"], cv_folds=tcfg["cv_folds"],
                             test_fraction=tcfg["test_fraction"], seed=seed,
                             what=f"the {names[s]} training set at {t_feat:g} K")
        model.mean[s], model.scale[s], model.weights[s] = fit["mean"], fit["scale"], fit["weights"]
        model.intercept[s], model.C[s] = fit["intercept"], fit["C"]
        for key in ("accuracy", "accuracy_err", "train_accuracy", "cv_accuracy_mean", "cv_accuracy_std",
                    "n_train", "n_test"):
            info[key].append(fit[key])
        info["n_available"].append(available)
        info["training"].append((np.full(rows.size, s), feature_frames[rows], atoms, labels, fit["is_test"]))
        info["top"].append(top_features(fit["weights"], descriptions))
        held_out.append((X[s][fit["is_test"]], labels[fit["is_test"]]))
        log.info("%s: C = %g, held-out accuracy %.3f +- %.3f (n = %d); cross-validated accuracy vs C: %s",
                 names[s], fit["C"], fit["accuracy"], fit["accuracy_err"], fit["n_test"],
                 ", ".join(f"{c:g}: {m:.3f}+-{e:.3f}" for c, m, e in
                           zip(tcfg["C_grid"], fit["cv_accuracy_mean"], fit["cv_accuracy_std"], strict=True)))
        norm = np.linalg.norm(fit["weights"])
        for _i, w, d in zip(*info["top"][-1], strict=True):
            log.info("  %s weight %+.3f (|w| share %.2f): %s", names[s], w, abs(w) / norm, d)
    info["C_grid"] = np.asarray(tcfg["C_grid"], dtype=np.float64)
    info["feature_table"] = table
    info["sources"] = (str(features), str(hops))
    model.info = info
    _measure_softness_unit(model, features, species)
    info["quality"] = []
    for s, (x_test, y_test) in enumerate(held_out):
        s_test = model.softness(x_test[:, None, :], np.array([s]))[:, 0]
        q = classifier_quality(s_test, y_test, rng=_seed(cfg, 2, s))
        q["P_S_positive"] = info["P_S_positive"][s]
        info["quality"].append(q)
        log.info("%s at %g K, held out (n = %d): ROC AUC %.3f +- %.3f, balanced accuracy %.3f +- %.3f, "
                 "P(S > 0 | rearranging) %.3f +- %.3f; P(S > 0) over all atoms %.3f",
                 names[s], t_feat, y_test.size, q["roc_auc"], q["roc_auc_err"],
                 q["balanced_accuracy"], q["balanced_accuracy_err"], q["P_S_positive_given_rearranging"],
                 q["P_S_positive_given_rearranging_err"], q["P_S_positive"])
    return model


def _measure_softness_unit(model: SoftnessModel, features, species) -> None:
    """Set ``model.softness_scale`` to sigma_S over every atom and frame of ``features``."""
    model.softness_scale = np.ones(model.n_species)
    coef, offset = model.per_atom_plane(species)
    with _feature_reader(features) as ff:
        distance = plane_values_over_frames(ff["features"], coef, offset, f"features file {features}")
    sigma, positive, n = softness_unit(distance, species, f"features file {features}", model.species_names)
    model.softness_scale = sigma
    model.info["P_S_positive"], model.info["softness_scale_n"] = positive, n
    for s, name in enumerate(model.species_names):
        log.info("%s: softness unit sigma_S = %.4g (standard deviation of the distance to the plane over %d "
                 "atom-frames at %g K)", name, sigma[s], n[s], model.T_train_K)


# ---------------------------------------------------------------------------- model file

def write_model(f: h5py.File, model: SoftnessModel) -> None:
    """Store ``model`` in an open, writable HDF5 file (see the module docstring).

    Every per-species dataset has the species axis first, in the order of ``/species_names``.
    """
    info = model.info
    if len(model.species_names) != model.n_species:
        raise SoftnessError(f"the softness model has {model.n_species} species but "
                            f"{len(model.species_names)} species names ({', '.join(model.species_names)}); "
                            "it cannot be stored.")
    f.attrs["T_train_K"] = model.T_train_K
    f.attrs["n_features"] = model.n_features
    f.attrs["softness_definition"] = SOFTNESS_DEFINITION
    if model.system is not None:
        f.attrs["system"] = model.system
    if "sources" in info:
        f.attrs["features_source"], f.attrs["hops_source"] = info["sources"]
    f["species_names"] = names_dataset(model.species_names)
    for key in ("mean", "scale", "weights", "intercept", "C", "softness_scale"):
        f[key] = np.asarray(getattr(model, key), dtype=np.float64)
    f["softness_scale"].attrs["meaning"] = (
        "sigma_S per species: the standard deviation of the distance (w . x_std + b) / |w| over every atom "
        "of the species in every frame of the training features file (not only the training set); S is "
        "that distance divided by sigma_S, so S has unit standard deviation at T_train")
    f["softness_scale"].attrs["unit"] = "standardised feature units (x_std)"
    if "softness_scale_n" in info:
        f["softness_scale"].attrs["n_atom_frames"] = np.asarray(info["softness_scale_n"], dtype=np.int64)
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
    if "quality" in info:
        _write_quality(f.create_group("quality"), info["quality"])
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


def _write_quality(q: h5py.Group, quality: list) -> None:
    """The held-out quality metrics of :func:`classifier_quality` per species, as [S] / [S, nb]."""
    q.attrs["meaning"] = ("per species, on the held-out split of the balanced training set (prediction "
                          "S > 0), except P_S_positive: over every atom and frame at T_train")
    for key, err in (("roc_auc", "stratified bootstrap (each class resampled) standard deviation, "
                                 f"{N_BOOTSTRAP_QUALITY} resamples"),
                     ("balanced_accuracy", "binomial standard error of the two class rates"),
                     ("P_S_positive_given_rearranging", "binomial standard error")):
        q[key] = np.array([x[key] for x in quality], dtype=np.float64)
        q[f"{key}_err"] = np.array([x[f"{key}_err"] for x in quality], dtype=np.float64)
        q[f"{key}_err"].attrs["method"] = err
    q["P_S_positive"] = np.array([x["P_S_positive"] for x in quality], dtype=np.float64)
    q["P_S_positive"].attrs["meaning"] = "fraction of all atom-frames of the species at T_train with S > 0"
    cal = q.create_group("calibration")
    for key in ("S", "fraction_rearranging", "fraction_rearranging_err", "n", "S_edges"):
        cal[key] = np.stack([x["calibration"][key] for x in quality])
    cal.attrs["meaning"] = (
        "fraction of held-out examples that rearrange in bins of S (quantiles of the held-out S; S is the "
        "mean S in the bin); the held-out set is balanced, so this is P(rearranging | S) at equal class "
        "priors, not P_R(S)")
    cal["fraction_rearranging_err"].attrs["method"] = "binomial standard error"


def load_model(path) -> SoftnessModel:
    """Read a model file written by :func:`train_file`."""
    with open_input(path, "model") as f:
        require(f, "mean", "scale", "weights", "intercept", "feature_names", "grid", what="model")
        if "softness_scale" not in f:
            raise SoftnessError(f"model file {path} has no 'softness_scale' (it predates softness in units "
                                "of its standard deviation); retrain it.")
        names = species_names_of(f, "model", path)
        if f["weights"].ndim != 2 or f["weights"].shape[0] != len(names):
            raise SoftnessError(f"model file {path} has weights of shape {f['weights'].shape} for the "
                                f"{len(names)} species it names ({', '.join(names)}).")
        grid = read_grid(f)
        info = {}
        for key in ("accuracy", "accuracy_err", "n_train", "n_test"):
            if key in f:
                info[key] = f[key][()]
        return SoftnessModel(
            mean=f["mean"][()], scale=f["scale"][()], weights=f["weights"][()],
            intercept=f["intercept"][()], C=f["C"][()] if "C" in f else np.full(len(names), np.nan),
            feature_names=_str_list(f["feature_names"][()]), grid=grid,
            T_train_K=float(f.attrs.get("T_train_K", np.nan)), softness_scale=f["softness_scale"][()],
            info=info, species_names=names, system=system_attribute(f.attrs))


def train_file(cfg: dict, features, hops, out) -> SoftnessModel:
    """The ``softness train`` stage: train at T_train and write the model file ``out``."""
    model = train(cfg, features, hops)
    with atomic_h5(out, "train", cfg) as f:
        write_model(f, model)
    log.info("wrote %s", out)
    return model


# ---------------------------------------------------------------------------- apply stage

def check_compatible(model: SoftnessModel, names, grid: dict, features, model_path="the model",
                     species_names=None) -> None:
    """Refuse features of other species, or computed with another structure-function grid, than the model's.

    Args:
      model: the model.
      names: the feature names of the features file; grid: its grid (:func:`read_grid`).
      features: the features file (named in errors); model_path: the model, named in errors.
      species_names: the species names of the features file (checked first, when given).
    """
    if species_names is not None and tuple(species_names) != tuple(model.species_names):
        raise SoftnessError(
            f"features file {features} names the species ({', '.join(species_names)}) but {model_path} was "
            f"trained on ({', '.join(model.species_names)}); apply a model trained on the same system.")
    names = _str_list(names)
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
        ``/time_fs``, ``/species``, ``/species_names`` (the features file's, which must be the
        model's); root attributes ``temperature_K`` (from the features), ``T_train_K``,
        ``softness_scale`` [S], ``softness_definition``, ``model_source``, ``features_source``
        and ``system`` (the features file's, when it has one).
    """
    m = load_model(model)
    with _feature_reader(features) as ff:
        names = species_names_of(ff, "features", features)
        check_compatible(m, ff["feature_names"][()], read_grid(ff), features, f"model {model}", names)
        system = system_attribute(ff.attrs)
        species = ff["species"][()].astype(np.int64)
        dset = ff["features"]
        n_frames, n_atoms = dset.shape[:2]
        coef, offset = m.per_atom_plane(species)
        with atomic_h5(out, "apply", cfg) as f:
            f.attrs["temperature_K"] = float(ff.attrs.get("temperature_K", np.nan))
            f.attrs["T_train_K"] = m.T_train_K
            f.attrs["softness_scale"] = m.softness_scale
            f.attrs["softness_definition"] = SOFTNESS_DEFINITION
            f.attrs["model_source"] = str(model)
            f.attrs["features_source"] = str(features)
            if system is not None:
                f.attrs["system"] = system
            for key in ("frames", "step", "time_fs"):
                if key in ff:
                    f[key] = ff[key][()]
            f["species"] = species
            f["species_names"] = names_dataset(names)
            out_ds = f.create_dataset("softness", shape=(n_frames, n_atoms), dtype=np.float32,
                                      chunks=(max(1, min(n_frames, 2**18 // max(n_atoms, 1))), n_atoms))
            out_ds.attrs["meaning"] = ("signed distance to the species' hyperplane in standardised features, "
                                       "in units of its standard deviation at T_train (softness_scale)")
            step = _rows_per_chunk(dset)
            for r0 in range(0, n_frames, step):
                x = dset[r0:r0 + step]
                check_finite("features", x, f"features file {features} (frames {r0}-{r0 + len(x) - 1})")
                out_ds[r0:r0 + len(x)] = np.einsum("rnf,nf->rn", x, coef, dtype=np.float64) + offset
    log.info("wrote %s (%d frames x %d atoms)", out, n_frames, n_atoms)


# ---------------------------------------------------------------------------- hyperplane stability

def stability_temperature(cfg: dict):
    """The temperature at which the stability check retrains: ``train.stability_T_K``.

    Null means the one of ``temperatures_K`` nearest their geometric middle
    sqrt(T_min T_max) in log T; on a tie (two temperatures), the one that is not T_train
    (retraining there would compare the model with itself), else the colder.

    Returns:
      The temperature, as listed in ``temperatures_K``.
    """
    from softness.config import training_temperature

    temperatures = list(cfg["temperatures_K"])
    t = cfg["train"].get("stability_T_K")
    if t is None:
        middle = 0.5 * (np.log(min(temperatures)) + np.log(max(temperatures)))
        t_train = training_temperature(cfg)
        return min(temperatures, key=lambda T: (round(abs(np.log(T) - middle), 9), T == t_train, T))
    if t not in temperatures:
        raise SoftnessError(f"config key 'train.stability_T_K' ({t:g} K) is not one of 'temperatures_K' "
                            f"{temperatures}.")
    return t


def normals_in_standardisation(model: SoftnessModel, reference: SoftnessModel) -> np.ndarray:
    """The normals of ``model``'s planes in the standardised feature space of ``reference``.

    w . (x - m) / s = (w s_ref / s) . (x - m_ref) / s_ref + const: the same plane, written in
    the reference's standardised features.

    Returns:
      [S, F] normals (not normalised).
    """
    return model.weights * reference.scale / model.scale


def hyperplane_cosine(reference: SoftnessModel, model: SoftnessModel) -> np.ndarray:
    """Per species, the cosine between the unit normals of two models' hyperplanes.

    Both normals are taken in the standardised feature space of ``reference`` (the space in
    which its softness is a distance), see :func:`normals_in_standardisation`.

    Returns:
      [S] cosines in [-1, 1]; 1 for the same direction.
    """
    a = np.asarray(reference.weights, dtype=np.float64)
    b = normals_in_standardisation(model, reference)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def softness_correlation(model_a: SoftnessModel, model_b: SoftnessModel,
                         features) -> tuple[np.ndarray, float]:
    """Pearson correlation per species of two models' softness on the same configurations.

    Args:
      model_a, model_b: models with the grid of ``features``.
      features: features file; every atom of every frame enters, streamed.

    Returns:
      [S] correlations and the temperature of the features file.
    """
    with _feature_reader(features) as ff:
        names = species_names_of(ff, "features", features)
        for m in (model_a, model_b):
            check_compatible(m, ff["feature_names"][()], read_grid(ff), features, species_names=names)
        species = ff["species"][()].astype(np.int64)
        where = f"features file {features}"
        s_a = plane_values_over_frames(ff["features"], *model_a.per_atom_plane(species), where)
        s_b = plane_values_over_frames(ff["features"], *model_b.per_atom_plane(species), where)
        temperature = float(ff.attrs.get("temperature_K", np.nan))
    r = np.array([np.corrcoef(s_a[:, species == s].ravel(), s_b[:, species == s].ravel())[0, 1]
                  for s in range(len(names))])
    return r, temperature


def stability(cfg: dict, model, features, hops, train_features=None) -> dict:
    """Retrain the softness model at a second temperature and compare the two hyperplanes.

    The retraining uses the same labels (the hops file, made with the same ``hops`` config),
    the same balanced draw and the same cross-validated choice of C on ``train.C_grid``.

    Args:
      cfg: resolved config (uses ``seed`` and ``train``).
      model: model file trained at T_train.
      features, hops: features and hops files at the second temperature.
      train_features: optional features file at T_train, on whose configurations the
        softness of the two models is also correlated.

    Returns:
      dict with ``reference`` and ``retrained`` (:class:`SoftnessModel`), ``cosine`` [S]
      (:func:`hyperplane_cosine`), ``pearson_S`` [S] on the configurations of ``features``,
      and ``pearson_S_T_train`` [S] on those of ``train_features`` (None without it).
    """
    reference = load_model(model)
    with _feature_reader(features) as ff:
        check_compatible(reference, ff["feature_names"][()], read_grid(ff), features, f"model {model}",
                         species_names_of(ff, "features", features))
    retrained = train(cfg, features, hops, at_T_train=False)
    if np.isclose(retrained.T_train_K, reference.T_train_K):
        log.warning("the stability check retrains at T_train (%g K) itself: it compares the model with "
                    "itself.", reference.T_train_K)
    out = {"reference": reference, "retrained": retrained, "cosine": hyperplane_cosine(reference, retrained)}
    out["pearson_S"], _ = softness_correlation(reference, retrained, features)
    out["pearson_S_T_train"] = None
    if train_features is not None:
        out["pearson_S_T_train"], t = softness_correlation(reference, retrained, train_features)
        if not np.isclose(t, reference.T_train_K):
            raise SoftnessError(f"features file {train_features} is at {t:g} K but model {model} was trained "
                                f"at {reference.T_train_K:g} K; pass the training temperature's features.")
    for s, name in enumerate(reference.species_names):
        log.info("%s: model at %g K vs retrained at %g K: cosine of the normals %.3f; Pearson r of S %.3f "
                 "on the %g K configurations%s", name, reference.T_train_K, retrained.T_train_K,
                 out["cosine"][s], out["pearson_S"][s], retrained.T_train_K,
                 "" if train_features is None else
                 f", {out['pearson_S_T_train'][s]:.3f} on the {reference.T_train_K:g} K ones")
    return out


def stability_file(cfg: dict, model, features, hops, out, train_features=None) -> dict:
    """The ``softness stability`` stage: :func:`stability`, written to ``out``.

    The product holds ``/cosine`` [S], ``/pearson_S`` [S], ``/pearson_S_T_train`` [S] (with
    ``train_features``), ``/species_names`` and the retrained model under ``/retrained``
    (the layout of a model file); root attributes ``T_train_K``, ``temperature_K`` (of the
    retraining), ``cosine_space``, the sources and ``system`` (the model's, when it has one).
    """
    res = stability(cfg, model, features, hops, train_features)
    with atomic_h5(out, "stability", cfg) as f:
        f.attrs["T_train_K"] = res["reference"].T_train_K
        f.attrs["temperature_K"] = res["retrained"].T_train_K
        f.attrs["model_source"], f.attrs["features_source"], f.attrs["hops_source"] = (
            str(model), str(features), str(hops))
        if train_features is not None:
            f.attrs["train_features_source"] = str(train_features)
        f.attrs["cosine_space"] = ("the standardised feature space of the T_train model: the retrained "
                                   "normal w is mapped to w * scale_T_train / scale_retrained")
        if res["reference"].system is not None:
            f.attrs["system"] = res["reference"].system
        f["species_names"] = names_dataset(res["reference"].species_names)
        f["cosine"] = res["cosine"]
        f["cosine"].attrs["meaning"] = ("per species, cosine between the unit normals of the T_train model "
                                        "and of the same model retrained at temperature_K (see cosine_space)")
        f["pearson_S"] = res["pearson_S"]
        f["pearson_S"].attrs["meaning"] = ("per species, Pearson correlation of the two models' softness "
                                           "over every atom and frame at temperature_K")
        if res["pearson_S_T_train"] is not None:
            f["pearson_S_T_train"] = res["pearson_S_T_train"]
            f["pearson_S_T_train"].attrs["meaning"] = ("per species, Pearson correlation of the two models' "
                                                       "softness over every atom and frame at T_train")
        g = f.create_group("retrained")
        write_model(g, res["retrained"])
    log.info("wrote %s", out)
    return res


def softness_of(model_path, features_path) -> np.ndarray:
    """Softness [frame, atom] of a (small) features file, in memory; for notebooks and tests."""
    m = load_model(model_path)
    with _feature_reader(features_path) as ff:
        check_compatible(m, ff["feature_names"][()], read_grid(ff), features_path, f"model {model_path}",
                         species_names_of(ff, "features", features_path))
        return m.softness(ff["features"][()], ff["species"][()])


__all__ = ["SoftnessModel", "signed_distance", "fit_linear_svm", "train", "train_file", "apply_file",
           "load_model", "write_model", "feature_table", "label_to_feature_rows", "class_masks",
           "balanced_training_pairs", "top_features", "softness_unit", "classifier_quality",
           "calibration_curve", "stability_temperature", "hyperplane_cosine", "softness_correlation",
           "stability", "stability_file", "species_names_of", "names_dataset", "same_species"]
