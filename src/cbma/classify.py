"""Multivariate decoding of studies from their modeled-activation maps.

Two questions, asked of studies labelled by a selection (for example the
studies of two term expressions, or of several terms):

* :func:`cross_validated_classification`: can a linear classifier tell the
  labels apart from the whole MA map? (Cross-validated accuracy, and the
  weight map of the classifier.)
* :func:`searchlight`: where? For each voxel, the cross-validated accuracy of
  a classifier that sees only the voxels of a sphere around it (Kriegeskorte
  et al. 2006; nilearn's ``SearchLight`` for fMRI), as a map.

Both use stratified K-fold cross-validation with shuffled folds
(``StratifiedKFold(n_splits, shuffle=True, random_state=seed)``, the same
folds in both) and score with balanced accuracy by default: the mean over
classes of the share of that class's studies predicted correctly. Its chance
level is 1 / n_classes whatever the class sizes, whereas plain accuracy can
reach the majority class's share by always predicting it (both are
reported).
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .coarse_grid import coarse_mask, resample_masked
from .errors import CbmaError
from .spheres import sphere_offsets

__all__ = ["ClassificationResult", "cross_validated_classification", "searchlight",
           "searchlight_sphere_matrix"]

_SCORINGS = ("balanced_accuracy", "accuracy")


def _labels(labels, n_studies, n_splits):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size != n_studies:
        raise CbmaError(f"labels must be one per study ({n_studies}), got shape {labels.shape}")
    classes, y = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise CbmaError("classification needs at least two distinct labels, got "
                        f"{classes.tolist()}")
    counts = np.bincount(y)
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise CbmaError(f"n_splits must be an integer of at least 2, got {n_splits!r}")
    if counts.min() < n_splits:
        small = classes[int(np.argmin(counts))]
        raise CbmaError(f"label {small!r} has {counts.min()} studies, fewer than "
                        f"n_splits={n_splits} folds")
    return classes, y, counts


def _folds(y, n_splits, seed):
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros((y.size, 1)), y))


def _check_scoring(scoring):
    if scoring not in _SCORINGS:
        raise CbmaError(f"scoring must be one of {list(_SCORINGS)}, got {scoring!r}")


def _score(y_true, y_pred, n_classes, scoring):
    if scoring == "accuracy":
        return float(np.mean(y_true == y_pred))
    recalls = [np.mean(y_pred[y_true == k] == k) for k in range(n_classes) if np.any(y_true == k)]
    return float(np.mean(recalls))


def _check_ma(ma, mask=None):
    if sp.issparse(ma) and ma.format == "csr" and ma.dtype == np.float64:
        ma = sp.csr_matrix(ma, copy=False)
    else:
        if not sp.issparse(ma):
            ma = np.asarray(ma, dtype=float)
            if ma.ndim != 2:
                raise CbmaError(f"MA maps must be a 2-D studies x voxels matrix, got shape "
                                f"{ma.shape}")
        ma = sp.csr_matrix(ma, dtype=np.float64)
    if mask is not None and ma.shape[1] != mask.n_voxels:
        raise CbmaError(f"MA maps have {ma.shape[1]} voxels, the mask {mask.n_voxels}")
    if not np.all(np.isfinite(ma.data)):
        raise CbmaError("MA maps must be finite")
    return ma


# ---------------------------------------------------------------- whole-brain decoding


@dataclass(frozen=True)
class ClassificationResult:
    """Cross-validated decoding of labels from MA maps.

    Attributes
    ----------
    scores : ndarray of shape (n_splits,)
        Score of each fold.
    mean, sd : float
        Mean and standard deviation (ddof=1) of the fold scores.
    chance : float
        Chance level of the score: 1 / n_classes for balanced accuracy, the
        majority class's share for accuracy.
    majority : float
        Share of the largest class (plain accuracy of always predicting it).
    classes : ndarray
        The labels, sorted.
    weights : ndarray of shape (n_voxels,) or (n_classes, n_voxels)
        Weight map of the classifier fitted on all studies: for two classes,
        positive weights favour ``classes[1]``; for more, one map per class
        (that class against the rest).
    intercept : ndarray
    scoring : str
    n_studies : int
    """

    scores: np.ndarray
    mean: float
    sd: float
    chance: float
    majority: float
    classes: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray
    scoring: str
    n_studies: int


def _logistic(n_classes, C, seed, dual):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    # the dual problem is much faster when voxels outnumber studies (same solution)
    binary = LogisticRegression(C=C, solver="liblinear", class_weight="balanced", dual=dual,
                                max_iter=1000, random_state=seed)
    return binary if n_classes == 2 else OneVsRestClassifier(binary)


def _coefficients(clf, n_classes):
    if n_classes == 2:
        return clf.coef_[0], clf.intercept_
    return (np.vstack([e.coef_[0] for e in clf.estimators_]),
            np.concatenate([e.intercept_ for e in clf.estimators_]))


def cross_validated_classification(ma, labels, n_splits=5, seed=0, C=1.0,
                                   scoring="balanced_accuracy"):
    """Cross-validated accuracy of a linear classifier of labels from MA maps.

    The classifier is an L2-penalised logistic regression (liblinear, solved
    in the dual when voxels outnumber studies) on the
    raw (sparse, unscaled) MA values with class weights inversely
    proportional to class sizes (``class_weight="balanced"``); for more than
    two labels, one such model per label against the rest, the highest
    decision value winning.

    Parameters
    ----------
    ma : scipy.sparse matrix or ndarray of shape (n_studies, n_voxels)
        The studies' MA maps (for example binary MKDA maps on the mask).
    labels : array-like of shape (n_studies,)
        Each study's label (which selection or term it belongs to); each label
        needs at least ``n_splits`` studies.
    n_splits : int, optional
        Number of stratified folds.
    seed : int, optional
        Seed of the fold shuffling.
    C : float, optional
        Inverse penalty strength of the logistic regression.
    scoring : {"balanced_accuracy", "accuracy"}, optional

    Returns
    -------
    ClassificationResult
    """
    _check_scoring(scoring)
    if not np.isfinite(C) or C <= 0:
        raise CbmaError(f"C must be a positive number, got {C!r}")
    ma = _check_ma(ma)
    classes, y, counts = _labels(labels, ma.shape[0], n_splits)
    dual = ma.shape[1] > ma.shape[0]
    scores = []
    for train, test in _folds(y, n_splits, seed):
        clf = _logistic(classes.size, C, seed, dual).fit(ma[train], y[train])
        scores.append(_score(y[test], clf.predict(ma[test]), classes.size, scoring))
    scores = np.asarray(scores)
    clf = _logistic(classes.size, C, seed, dual).fit(ma, y)
    weights, intercept = _coefficients(clf, classes.size)
    majority = float(counts.max() / counts.sum())
    return ClassificationResult(
        scores=scores, mean=float(scores.mean()), sd=float(scores.std(ddof=1)),
        chance=1.0 / classes.size if scoring == "balanced_accuracy" else majority,
        majority=majority, classes=classes, weights=np.asarray(weights),
        intercept=np.asarray(intercept), scoring=scoring, n_studies=int(ma.shape[0]))


# -------------------------------------------------------------------------- searchlight


def searchlight_sphere_matrix(mask, radius_mm, centres=None, transpose=False):
    """Which voxels each searchlight sphere holds.

    Parameters
    ----------
    mask : cbma.space.BrainMask
    radius_mm : float
        A voxel belongs to the sphere of a centre when their distance is at
        most ``radius_mm`` (:func:`cbma.spheres.sphere_offsets`; 123 voxels for
        6 mm on a 2 mm grid, fewer at the edge of the mask).
    centres : ndarray of int, optional
        Masked indices of the centres (default: every mask voxel).
    transpose : bool, optional
        Return the voxels x centres matrix instead (built directly, without
        a second copy).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_centres, mask.n_voxels)
        1 where the voxel is in the centre's sphere and in the mask (the
        transpose when ``transpose``).
    """
    if not np.isfinite(radius_mm) or radius_mm < 0:
        raise CbmaError(f"radius_mm must be a non-negative number, got {radius_mm!r}")
    all_voxels = np.arange(mask.n_voxels)
    centres = all_voxels if centres is None else np.asarray(centres, dtype=np.int64)
    # the sphere is symmetric: voxel v is in the sphere of centre c iff c is in v's
    rows, targets = (all_voxels, centres) if transpose else (centres, all_voxels)
    lookup = np.full(mask.data.size, -1, dtype=np.int32)
    lookup[mask.flat_indices[targets]] = np.arange(len(targets), dtype=np.int32)
    ijk = np.column_stack(np.unravel_index(mask.flat_indices[rows], mask.shape))
    offsets = sphere_offsets(radius_mm, mask.voxel_size)
    shape = np.array(mask.shape)
    columns = np.full((len(rows), len(offsets)), -1, dtype=np.int32)
    for o, offset in enumerate(offsets):
        cand = ijk + offset
        inside = np.all((cand >= 0) & (cand < shape), axis=1)
        columns[inside, o] = lookup[np.ravel_multi_index(cand[inside].T, mask.shape)]
    valid = columns >= 0
    indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
    cols = columns[valid]
    del columns
    matrix = sp.csr_matrix((np.ones(cols.size), cols, indptr),
                           shape=(len(rows), len(targets)))
    matrix.sort_indices()
    return matrix


def _class_sums(ma, rows, y, n_classes):
    """Per-class sums of MA values over some rows, and the class sizes (no copy of ``ma``)."""
    indicator = sp.csr_matrix((np.ones(rows.size), (y[rows], rows)),
                              shape=(n_classes, ma.shape[0]))
    sums = np.asarray((indicator @ ma).toarray())
    return sums, np.bincount(y[rows], minlength=n_classes).astype(float)


def _sum_squares(ma, chunk=1 << 22):
    out = np.zeros(ma.shape[1])
    for start in range(0, ma.nnz, chunk):  # in chunks: no copy of all the values
        part = slice(start, start + chunk)
        out += np.bincount(ma.indices[part], weights=ma.data[part] ** 2, minlength=ma.shape[1])
    return out


def _dlda(sums, sumsq, counts, var_floor):
    """Per-voxel weights and constants of diagonal LDA, relative to class 0.

    ``sums`` (classes x voxels), ``sumsq`` (voxels) and ``counts`` (classes) are
    the training fold's class sums, sums of squares and class sizes.
    """
    means = sums / counts[:, None]
    n_classes = len(counts)
    var = (sumsq - counts @ means**2) / max(counts.sum() - n_classes, 1)
    denom = np.maximum(var, 0.0) + var_floor
    weights = (means[1:] - means[0]) / denom
    const = -(means[1:] ** 2 - means[0] ** 2) / (2 * denom)
    return weights, const


def _predict_scores(scores):
    """Predicted class from the score differences to class 0 (ties: lowest class)."""
    predicted = np.zeros(scores.shape[1:], dtype=np.int8 if len(scores) < 127 else np.int32)
    best = np.zeros(scores.shape[1:])
    for k, score in enumerate(scores, start=1):
        better = score > best
        predicted[better] = k
        np.maximum(best, score, out=best)
    return predicted


def searchlight(ma, labels, mask, radius_mm=6.0, n_splits=5, seed=0, *, step=1,
                var_floor=0.01, scoring="balanced_accuracy", block_size=64):
    """Searchlight map of cross-validated decoding accuracy.

    For each centre voxel, a classifier trained only on the MA values of the
    voxels within ``radius_mm`` of it predicts the held-out studies' labels;
    the map holds the mean over folds of its score.

    The classifier is diagonal linear discriminant analysis (Gaussian naive
    Bayes with one variance per voxel shared by the classes), with equal
    class priors: class ``k`` scores ``sum_v (x_v m_kv - m_kv^2 / 2) / s_v``
    over the sphere's voxels ``v``, where ``m_kv`` is the mean of class ``k``
    in the training fold and ``s_v`` the pooled within-class variance plus
    ``var_floor``; the highest score wins (ties: the first label in sorted
    order). Since every term belongs to one voxel, the score of every sphere
    is a sum of per-voxel quantities: per fold, the weights ``(m_kv - m_0v) /
    s_v`` scale each test study's sparse map and one sparse product with the
    centre-by-voxel sphere matrix gives every study's score at every centre,
    so the result equals fitting that classifier sphere by sphere.

    Parameters
    ----------
    ma : scipy.sparse matrix or ndarray of shape (n_studies, mask.n_voxels)
        The studies' MA maps.
    labels : array-like of shape (n_studies,)
    mask : cbma.space.BrainMask
    radius_mm : float, optional
        Sphere radius in mm.
    n_splits : int, optional
        Stratified folds (the same as :func:`cross_validated_classification`
        with the same seed).
    seed : int, optional
        Seed of the fold shuffling.
    step : int, optional
        Use every ``step``-th voxel along each axis as a centre and
        interpolate the map back to the mask (:func:`cbma.coarse_grid.resample_masked`);
        2 is about 8 times faster.
    var_floor : float, optional
        Added to each voxel's variance; it keeps voxels active in few studies
        from dominating (the variance of a binary voxel active in 1 % of
        studies is about 0.01). A large value gives the nearest-class-mean
        classifier.
    scoring : {"balanced_accuracy", "accuracy"}, optional
    block_size : int, optional
        Test studies per sparse product (memory: ``block_size`` x centres x
        8 bytes).

    Returns
    -------
    ndarray of shape (mask.n_voxels,)
        Cross-validated score at each voxel. A sphere where no study is
        active predicts the first label for all studies: balanced accuracy
        1 / n_classes.

    Notes
    -----
    Cost: per test study and label beyond the first, one sparse product of
    about (active voxels) x (sphere voxels) operations; measured times are in
    ``docs/performance.md``.
    """
    _check_scoring(scoring)
    if not np.isfinite(var_floor) or var_floor <= 0:
        raise CbmaError(f"var_floor must be a positive number, got {var_floor!r}")
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise CbmaError(f"step must be a positive integer, got {step!r}")
    ma = _check_ma(ma, mask)
    classes, y, _ = _labels(labels, ma.shape[0], n_splits)
    n_classes = classes.size
    if step == 1:
        grid, centres = mask, np.arange(mask.n_voxels)
    else:
        grid = coarse_mask(mask, step * float(mask.voxel_size[0]))
        fine_ijk = np.column_stack(np.unravel_index(grid.flat_indices, grid.shape)) * step
        lookup = np.full(mask.data.size, -1, dtype=np.int64)
        lookup[mask.flat_indices] = np.arange(mask.n_voxels)
        centres = lookup[np.ravel_multi_index(fine_ijk.T, mask.shape)]
    spheres_t = searchlight_sphere_matrix(mask, radius_mm, centres, transpose=True)
    total_sums, total_counts = _class_sums(ma, np.arange(ma.shape[0]), y, n_classes)
    total_sumsq = _sum_squares(ma)
    fold_scores = []
    for _, test in _folds(y, n_splits, seed):
        # training statistics = all studies minus the (small) test fold: no copy of ``ma``
        test_ma = ma[test]
        test_sums, test_counts = _class_sums(test_ma, np.arange(len(test)), y[test], n_classes)
        weights, const = _dlda(total_sums - test_sums, total_sumsq - _sum_squares(test_ma),
                               total_counts - test_counts, var_floor)
        bias = np.asarray(spheres_t.T @ const.T).T  # (n_classes - 1, n_centres)
        predictions = np.empty((len(test), len(centres)),
                               dtype=np.int8 if n_classes < 128 else np.int32)
        for start in range(0, len(test), block_size):
            block = test_ma[start:start + block_size]
            scores = np.empty((n_classes - 1, block.shape[0], len(centres)))
            for k in range(n_classes - 1):
                scaled = block.copy()
                scaled.data = scaled.data * weights[k][scaled.indices]
                (scaled @ spheres_t).toarray(out=scores[k])
                scores[k] += bias[k]
            predictions[start:start + block.shape[0]] = _predict_scores(scores)
        fold_scores.append(_score_centres(y[test], predictions, n_classes, scoring))
    values = np.mean(fold_scores, axis=0)
    if step == 1:
        return values
    return resample_masked(values, grid, mask).astype(float)


def _score_centres(y_true, predictions, n_classes, scoring):
    # counts with an integer accumulator: a mean over a bool array would make a float copy
    if scoring == "accuracy":
        return (predictions == y_true[:, None]).sum(axis=0, dtype=np.int64) / y_true.size
    recalls = []
    for k in range(n_classes):
        rows = predictions[y_true == k]
        if len(rows):
            recalls.append((rows == k).sum(axis=0, dtype=np.int64) / len(rows))
    return np.mean(recalls, axis=0)
