"""Multilevel kernel density analysis (MKDA density, Wager et al. 2007) and KDA, with their nulls.

MKDADensity counts, per voxel, the experiments whose MA map (a binary sphere
around every focus, :func:`cbma.spheres.mkda_ma_maps`) activates it; KDA
(Wager et al. 2003, 2004) counts the foci instead, so that overlapping
spheres of one experiment add up. Both are compared with an analytical
("approximate") histogram null of spatially exchangeable MA maps.

Map names and conventions follow NiMARE 0.22.1 (``MKDADensity``, ``KDA``).
The chi-square tests of two groups' MA maps (``MKDAChi2``) are in
:mod:`cbma.chi2`.
"""

import numba
import numpy as np
import scipy.sparse as sp

from .errors import CbmaError
from .stats import null_p, p_to_logp, p_to_z

__all__ = [
    "active_counts",
    "kda",
    "kda_null",
    "mkda_density",
    "mkda_null",
    "poisson_binomial",
    "wager_weights",
]

N_WEIGHTED_BINS = 100_000  # grid of the weighted MKDA null, as in NiMARE 0.22


def _csr(ma):
    """CSR without duplicates or explicit zeros (no copy when already so)."""
    ma = sp.csr_matrix(ma)
    if not ma.has_canonical_format:
        ma = ma.copy()
        ma.sum_duplicates()
    if not ma.data.all():
        ma = ma.copy()
        ma.eliminate_zeros()
    return ma


@numba.njit(cache=True, nogil=True)
def _column_sums_compiled(indptr, indices, data, row_weights, binary, out):
    for e in range(indptr.size - 1):
        w = row_weights[e]
        for q in range(indptr[e], indptr[e + 1]):
            out[indices[q]] += w if binary else w * data[q]


def _column_sums(ma, row_weights=None, binary=False):
    """Per-voxel sum over experiments of ``w_e MA_e`` (or of ``w_e`` where MA_e != 0).

    Compiled, so that Neurosynth-size matrices are summed without
    temporary copies of their index or value arrays.
    """
    n_exp, n_vox = ma.shape
    w = np.ones(n_exp) if row_weights is None else np.asarray(row_weights, dtype=float)
    out = np.zeros(n_vox)
    _column_sums_compiled(ma.indptr, ma.indices, ma.data, w, binary, out)
    return out


def _binary_value(ma):
    """The one nonzero value of binary (MKDA) MA maps."""
    if ma.nnz == 0:
        return 1.0
    lo, hi = ma.data.min(), ma.data.max()
    if lo != hi:
        raise CbmaError("MKDA density needs binary MA maps (one nonzero value), got values "
                        f"from {lo} to {hi}; use kda() for summed spheres")
    return float(lo)


def poisson_binomial(probs):
    """Distribution of the number of successes of independent Bernoulli trials.

    Parameters
    ----------
    probs : array-like of shape (k,)
        Success probability of each trial.

    Returns
    -------
    ndarray of shape (k + 1,)
        ``P(X = 0), ..., P(X = k)``, by convolving ``[1 - p_i, p_i]`` one
        trial at a time (exact up to rounding; no normal approximation).
    """
    probs = np.asarray(probs, dtype=float)
    pmf = np.zeros(probs.size + 1)
    pmf[0] = 1.0
    for i, p in enumerate(probs):
        pmf[1:i + 2] = pmf[1:i + 2] * (1.0 - p) + pmf[:i + 1] * p
        pmf[0] *= 1.0 - p
    return pmf


def wager_weights(sample_sizes, fixed_effects=None):
    """Experiment weights of Wager et al. (2009): ``delta_i sqrt(n_i)``, summing to ``k``.

    Parameters
    ----------
    sample_sizes : array-like of shape (k,)
        Subjects of each experiment.
    fixed_effects : array-like of bool, optional
        Experiments analysed with fixed effects get ``delta = 0.75``, the
        others 1.

    Returns
    -------
    ndarray of shape (k,)
        Weights rescaled so that they sum to the number of experiments (equal
        sample sizes give weights of exactly 1).
    """
    n = np.asarray(sample_sizes, dtype=float)
    if n.ndim != 1 or n.size == 0:
        raise CbmaError("weights: need one sample size per experiment")
    bad = ~np.isfinite(n) | (n <= 0)
    if bad.any():
        raise CbmaError(f"weights: {int(bad.sum())} experiment(s) have no valid sample size")
    delta = np.ones_like(n)
    if fixed_effects is not None:
        delta = np.where(np.asarray(fixed_effects, dtype=bool), 0.75, 1.0)
    w = delta * np.sqrt(n)
    if np.all(w == w[0]):
        return np.ones_like(w)
    return n.size * w / w.sum()


def _weight_steps(weights, value):
    """Grid step of the weighted null and each experiment's weight in steps (>= 1)."""
    total = value * weights.sum()
    step = total / (N_WEIGHTED_BINS - 1)
    steps = np.maximum(np.rint(value * weights / step), 1).astype(np.int64)
    return step, steps


def mkda_null(ma, weights=None):
    """The approximate null of MKDA density (Poisson-binomial of the active shares).

    Under spatial exchangeability experiment ``i`` is active at a random mask
    voxel with probability ``p_i`` = its share of active mask voxels, so the
    count of active experiments is Poisson-binomial (NiMARE's
    ``MKDADensity._compute_null_approximate``).

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Binary MA maps.
    weights : array-like of shape (n_experiments,), optional
        Experiment weights (:func:`wager_weights`). The weighted statistic
        lives on a grid of 100,000 bins over ``[0, value * sum(w)]``; each
        weight is rounded to a whole number of steps (at least 1).

    Returns
    -------
    centres : ndarray
        Bin centres: ``value * (0, 1, ..., k)`` without weights, else multiples
        of the grid step.
    weights : ndarray
        Probability of each bin.
    shares : ndarray of shape (n_experiments,)
        Each experiment's share of active mask voxels (NiMARE's
        ``histogram_means``).
    """
    ma = _csr(ma)
    value = _binary_value(ma)
    n_exp, n_vox = ma.shape
    shares = np.diff(ma.indptr) / n_vox
    if weights is None:
        pmf = poisson_binomial(shares)
        return value * np.arange(n_exp + 1, dtype=float), pmf, shares
    weights = _check_weights(weights, n_exp)
    step, steps = _weight_steps(weights, value)
    pmf = np.zeros(steps.sum() + 1)
    pmf[0] = 1.0
    top = 0
    for p, s in zip(shares, steps, strict=True):
        shifted = pmf[:top + 1] * p
        pmf[:top + 1] *= 1.0 - p
        pmf[s:s + top + 1] += shifted
        top += s
    return step * np.arange(pmf.size), pmf, shares


def _check_weights(weights, n_exp):
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (n_exp,):
        raise CbmaError(f"weights: expected {n_exp} experiment weights, got shape "
                        f"{weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise CbmaError("weights: every experiment weight must be a positive number")
    return weights


def _maps_from_null(stat, stat_bins, centres, pmf, step):
    p = null_p(stat_bins, centres, pmf, step=step)
    return {"stat": stat, "p": p, "z": p_to_z(p), "logp": p_to_logp(p)}


def mkda_density(ma, weights=None):
    """Fit MKDADensity with the approximate (Poisson-binomial) null.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Binary MA maps (:func:`cbma.spheres.mkda_ma_maps`).
    weights : array-like of shape (n_experiments,), optional
        Experiment weights; None counts every experiment once (NiMARE's
        default). See :func:`mkda_null` for the weighted null.

    Returns
    -------
    maps : dict of str to ndarray
        ``stat`` (the number of active experiments, or their summed weights),
        ``p`` = P(X >= stat) under the null (1 where stat is 0), ``z``
        (one-sided) and ``logp``: masked vectors.
    null : tuple of ndarray
        ``(centres, weights)`` of the null; ``cbma.stats.null_threshold(p,
        *null)`` is the cluster-forming statistic threshold for Monte Carlo
        FWE (supra-threshold: ``stat > threshold``; e.g. 4 for p = 0.001 on
        the knowledge example).
    """
    ma = _csr(ma)
    n_exp, n_vox = ma.shape
    if weights is not None and np.all(_check_weights(weights, n_exp) == 1):
        weights = None  # unit weights: exactly the unweighted analysis
    centres, pmf, _ = mkda_null(ma, weights)
    value = _binary_value(ma)
    if weights is None:
        stat = value * _column_sums(ma, binary=True)
        return _maps_from_null(stat, stat, centres, pmf, value), (centres, pmf)
    weights = _check_weights(weights, n_exp)
    stat = value * _column_sums(ma, weights, binary=True)
    # p from the statistic on the null's grid (the sum of the rounded steps),
    # so that observed and null sums are rounded alike
    step, steps = _weight_steps(weights, value)
    on_grid = step * _column_sums(ma, steps, binary=True)
    return _maps_from_null(stat, on_grid, centres, pmf, step), (centres, pmf)


def kda_null(ma, value=None):
    """The approximate null of KDA: additive convolution of the MA histograms.

    Each experiment's histogram of MA counts over the mask (zeros included)
    is convolved with the running null, bins being whole multiples of the
    kernel value (NiMARE's ``KDA._compute_null_approximate``).

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        KDA MA maps.
    value : float, optional
        The kernel value; by default the smallest MA value.

    Returns
    -------
    centres, weights : ndarray
        Bin centres ``value * (0, 1, ...)`` up to the sum of the experiments'
        largest MA values, and the probability of each bin.
    """
    ma = _csr(ma)
    value = _kernel_value(ma, value)
    counts = _kda_counts(ma, value)
    n_exp, n_vox = ma.shape
    null = np.ones(1)
    for e in range(n_exp):
        row = counts[ma.indptr[e]:ma.indptr[e + 1]]
        hist = np.bincount(row, minlength=1).astype(float)
        hist[0] += n_vox - row.size
        null = np.convolve(null, hist / n_vox)
    return value * np.arange(null.size, dtype=float), null


def _kernel_value(ma, value):
    if value is None:
        return float(ma.data.min()) if ma.nnz else 1.0
    return float(value)


def _kda_counts(ma, value):
    if not np.isfinite(value) or value <= 0:
        raise CbmaError(f"KDA kernel value must be a positive number, got {value!r}")
    counts = np.rint(ma.data / value)
    if np.any(np.abs(counts * value - ma.data) > 1e-6 * value) or np.any(counts < 0):
        raise CbmaError(f"KDA MA maps must hold whole multiples of the kernel value {value}")
    return counts.astype(np.int64)


def kda(ma, value=None):
    """Fit KDA with the approximate null.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        KDA MA maps (:func:`cbma.spheres.mkda_ma_maps` with ``sum_overlap=True``).
    value : float, optional
        The kernel value the maps were built with; by default the smallest MA
        value (a voxel covered by one sphere).

    Returns
    -------
    maps : dict of str to ndarray
        ``stat`` (summed MA values: the number of foci within ``r`` mm),
        ``p``, ``z`` (one-sided), ``logp``.
    null : tuple of ndarray
        ``(centres, weights)``; see :func:`mkda_density` for the threshold.
    """
    ma = _csr(ma)
    value = _kernel_value(ma, value)
    centres, pmf = kda_null(ma, value)
    stat = _column_sums(ma)
    return _maps_from_null(stat, stat, centres, pmf, value), (centres, pmf)


def active_counts(ma):
    """The number of experiments active at each voxel, and the number of experiments.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        MA maps; only which voxels are nonzero matters.

    Returns
    -------
    counts : ndarray of shape (n_voxels,)
    n_experiments : int
    """
    ma = _csr(ma)
    return _column_sums(ma, binary=True), ma.shape[0]
