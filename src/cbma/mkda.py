"""Multilevel kernel density analysis (MKDA, Wager et al. 2007) and its chi-square tests.

The MKDA kernel is a binary sphere around every focus; an experiment's
modeled-activation (MA) map is 1 where any of its foci lies within ``r`` mm.
MKDADensity counts, per voxel, the experiments that activate it; KDA (Wager
et al. 2003, 2004) counts the foci instead, so that overlapping spheres of one
experiment add up. MKDAChi2 (Neurosynth's meta-analysis, Yarkoni et al. 2011)
compares how often the voxel is active in a selection of studies with how
often it is active in the others.

Map names and conventions follow NiMARE 0.22.1 (``MKDADensity``, ``KDA``,
``MKDAChi2``); :func:`neurosynth_images` gives the same analysis under the
image names of Neurosynth's ``MetaAnalysis``.
"""

import numba
import numpy as np
import scipy.sparse as sp
from scipy import special

from . import estimators
from .correct import FDR_DESCS, bh_threshold, fdr_indep_maps
from .errors import CbmaError
from .stats import p_to_logp, p_to_z

__all__ = [
    "association_test",
    "chi2_fdr_maps",
    "chi2_maps",
    "kda",
    "kda_null",
    "mkda_chi2",
    "mkda_density",
    "mkda_ma_maps",
    "mkda_null",
    "neurosynth_images",
    "poisson_binomial",
    "sphere_offsets",
    "uniformity_test",
    "wager_weights",
]

DEFAULT_RADIUS = 10.0  # mm, NiMARE's MKDAKernel and KDAKernel; Neurosynth used 6
N_WEIGHTED_BINS = 100_000  # grid of the weighted MKDA null, as in NiMARE 0.22
NEUROSYNTH_P_FLOOR = 1e-240  # Neurosynth clips chi-square p-values here
NEUROSYNTH_Z_CAP = 33.11  # and replaces an infinite z by this


def sphere_offsets(r, voxel_size):
    """Voxel offsets of a sphere of radius ``r`` mm.

    Parameters
    ----------
    r : float
        Radius in mm; an offset belongs to the sphere when its distance from
        the centre, in mm, is at most ``r``.
    voxel_size : sequence of 3 floats
        Voxel size of the grid in mm.

    Returns
    -------
    ndarray of int, shape (n, 3)
        The offsets (di, dj, dk), in C order. On a 2 mm grid, r = 10 gives
        515 offsets and r = 6 gives 123 (NiMARE's and Neurosynth's spheres).
    """
    if not np.isfinite(r) or r < 0:
        raise CbmaError(f"sphere radius must be a non-negative number of mm, got {r!r}")
    voxel_size = np.asarray(voxel_size, dtype=float)
    reach = np.floor(r / voxel_size).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    dist = np.sqrt(((grid * voxel_size) ** 2).sum(axis=1))
    return grid[dist <= r]


# ---------------------------------------------------------------------------
# MA maps


@numba.njit(cache=True, nogil=True)
def _collect(foci, start, stop, offsets, flat_offsets, reach, shape, lookup, count, cols):
    """Mask columns covered by the spheres of foci ``start:stop``.

    Each column is listed once in ``cols`` (in the order first met) and
    ``count`` holds, per column, the number of spheres covering it. Spheres
    that stay inside the volume use the flat offsets; the others are clipped
    to the volume offset by offset.
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    sy = ny * nz
    n = 0
    for f in range(start, stop):
        i, j, k = foci[f, 0], foci[f, 1], foci[f, 2]
        if (i - reach[0] >= 0 and i + reach[0] < nx and j - reach[1] >= 0
                and j + reach[1] < ny and k - reach[2] >= 0 and k + reach[2] < nz):
            base = i * sy + j * nz + k
            for o in range(flat_offsets.size):
                col = lookup[base + flat_offsets[o]]
                if col >= 0:
                    if count[col] == 0:
                        cols[n] = col
                        n += 1
                    count[col] += 1
        else:
            for o in range(offsets.shape[0]):
                x = i + offsets[o, 0]
                y = j + offsets[o, 1]
                z = k + offsets[o, 2]
                if x < 0 or x >= nx or y < 0 or y >= ny or z < 0 or z >= nz:
                    continue
                col = lookup[x * sy + y * nz + z]
                if col >= 0:
                    if count[col] == 0:
                        cols[n] = col
                        n += 1
                    count[col] += 1
    return n


@numba.njit(cache=True, nogil=True)
def _row_sizes(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, sizes):
    """First pass: the number of in-mask voxels of every experiment's MA map."""
    for e in range(foci_ptr.size - 1):
        n = _collect(foci, foci_ptr[e], foci_ptr[e + 1], offsets, flat_offsets, reach, shape,
                     lookup, count, cols)
        sizes[e] = n
        for q in range(n):
            count[cols[q]] = 0


@numba.njit(cache=True, nogil=True)
def _radix_sort(values, n, spare, digit, n_pass, hist):
    """Sort ``values[:n]`` (non-negative ints) by LSD radix sort; returns the sorted array.

    ``n_pass`` passes of ``digit`` bits, ping-ponging between ``values`` and
    ``spare``: linear time, where a comparison sort of every row dominated
    the cost of building Neurosynth-size MA maps.
    """
    src, dst = values, spare
    bits = (1 << digit) - 1
    for p in range(n_pass):
        shift = p * digit
        hist[:] = 0
        for q in range(n):
            hist[((src[q] >> shift) & bits) + 1] += 1
        for b in range(1, hist.size):
            hist[b] += hist[b - 1]
        for q in range(n):
            d = (src[q] >> shift) & bits
            dst[hist[d]] = src[q]
            hist[d] += 1
        src, dst = dst, src
    return src


@numba.njit(cache=True, nogil=True)
def _fill_rows(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, spare,
               digit, n_pass, indptr, indices, data, value, sum_overlap):
    """Second pass: every row's sorted columns and MA values, written in place."""
    hist = np.zeros((1 << digit) + 1, dtype=np.int64)
    for e in range(foci_ptr.size - 1):
        n = _collect(foci, foci_ptr[e], foci_ptr[e + 1], offsets, flat_offsets, reach, shape,
                     lookup, count, cols)
        row = _radix_sort(cols, n, spare, digit, n_pass, hist)
        start = indptr[e]
        for q in range(n):
            col = row[q]
            indices[start + q] = col
            data[start + q] = value * count[col] if sum_overlap else value
            count[col] = 0


def _volume_lookup(mask):
    """Mask column of every voxel of the volume (C order), -1 outside the mask."""
    lookup = np.full(int(np.prod(mask.shape)), -1, dtype=np.int32)
    lookup[mask.flat_indices] = np.arange(mask.n_voxels, dtype=np.int32)
    return lookup


def mkda_ma_maps(ijk, experiment, n_experiments, mask, r=DEFAULT_RADIUS, value=1.0,
                 sum_overlap=False):
    """MKDA (or KDA) modeled-activation maps of all experiments, as a sparse matrix.

    Every focus gets a hard sphere of radius ``r`` mm, clipped to the volume,
    then to the mask. Foci outside the mask are kept (NiMARE's behaviour):
    the part of their sphere inside the mask counts.

    Parameters
    ----------
    ijk : ndarray of shape (n_foci, 3)
        Voxel index of each focus (:func:`cbma.kernels.foci_voxels`).
    experiment : ndarray of shape (n_foci,)
        Row (experiment index, 0-based) of each focus.
    n_experiments : int
        Number of rows; experiments without foci get an empty row.
    mask : cbma.space.BrainMask
    r : float
        Sphere radius in mm (NiMARE: 10; Neurosynth: 6).
    value : float
        MA value of a voxel covered by a sphere.
    sum_overlap : bool
        False (MKDA): a voxel covered by several spheres of one experiment
        gets ``value`` once. True (KDA): it gets ``value`` times the number of
        the experiment's foci within ``r`` mm.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_experiments, n_mask_voxels)
        float32, sorted column indices, no explicit zeros.

    Notes
    -----
    Two compiled passes over the foci (sizes of the rows, then their
    contents) write the CSR arrays in place, so the memory needed is that of
    the result plus a few arrays of the size of the volume.
    """
    ijk = np.asarray(ijk)
    experiment = np.asarray(experiment)
    n_experiments = int(n_experiments)
    if ijk.ndim != 2 or ijk.shape[1] != 3:
        raise CbmaError(f"foci voxel indices must have shape (n, 3), got {ijk.shape}")
    if ijk.size and not np.issubdtype(ijk.dtype, np.integer):
        raise CbmaError(f"foci voxel indices must be integers, got {ijk.dtype}")
    if experiment.size and not np.issubdtype(experiment.dtype, np.integer):
        raise CbmaError(f"experiment labels must be integers, got {experiment.dtype}")
    experiment = experiment.astype(np.int64)  # e.g. int8 category codes
    if experiment.shape != (ijk.shape[0],):
        raise CbmaError(f"{ijk.shape[0]} foci but {experiment.size} experiment labels")
    if n_experiments < 0:
        raise CbmaError(f"number of experiments must be >= 0, got {n_experiments}")
    if experiment.size and (experiment.min() < 0 or experiment.max() >= n_experiments):
        raise CbmaError(f"experiment labels must lie in 0..{n_experiments - 1}, got "
                        f"{experiment.min()}..{experiment.max()}")
    if not np.isfinite(value) or value <= 0:
        raise CbmaError(f"MA value must be a positive number, got {value!r}")
    offsets = sphere_offsets(r, mask.voxel_size).astype(np.int64)
    shape = np.array(mask.shape, dtype=np.int64)
    reach = np.abs(offsets).max(axis=0)
    flat_offsets = offsets @ np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)

    order = np.argsort(experiment, kind="stable")
    foci = np.ascontiguousarray(ijk[order], dtype=np.int64)
    foci_ptr = np.searchsorted(experiment[order], np.arange(n_experiments + 1)).astype(np.int64)
    lookup = _volume_lookup(mask)
    count = np.zeros(mask.n_voxels, dtype=np.int32)
    cols = np.empty(mask.n_voxels, dtype=np.int32)
    spare = np.empty(mask.n_voxels, dtype=np.int32)
    bits = max(int(mask.n_voxels - 1).bit_length(), 1)
    n_pass = -(-bits // 11)  # digits of at most 11 bits: 2 passes up to 4M voxels
    digit = -(-bits // n_pass)

    sizes = np.zeros(n_experiments, dtype=np.int64)
    _row_sizes(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, sizes)
    indptr = np.zeros(n_experiments + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    _fill_rows(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, spare,
               digit, n_pass, indptr, indices, data, np.float32(value), bool(sum_overlap))
    ma = sp.csr_matrix((data, indices, indptr), shape=(n_experiments, mask.n_voxels))
    ma.has_sorted_indices = True
    return ma


# ---------------------------------------------------------------------------
# MKDADensity and KDA


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
    p = estimators.null_p(stat_bins, centres, pmf, step=step)
    return {"stat": stat, "p": p, "z": p_to_z(p), "logp": p_to_logp(p)}


def mkda_density(ma, weights=None):
    """Fit MKDADensity with the approximate (Poisson-binomial) null.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Binary MA maps (:func:`mkda_ma_maps`).
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
        ``(centres, weights)`` of the null; ``estimators.null_threshold(p,
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
        KDA MA maps (:func:`mkda_ma_maps` with ``sum_overlap=True``).
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


# ---------------------------------------------------------------------------
# MKDAChi2


def _chi2_p(chi2):
    """Upper tail of the chi-square distribution with one degree of freedom."""
    # chi-square(1) upper tail = two-sided normal tail of sqrt(chi2): erfc(sqrt(chi2 / 2)),
    # the same numbers as scipy's chdtrc(1, .) and some 30 times faster
    return special.erfc(np.sqrt(np.asarray(chi2, dtype=float) / 2.0))


def _chi2_logp(chi2):
    """``-log10`` of the chi-square(1) upper tail, in log space (never underflows)."""
    return np.maximum(-(np.log(2.0) + special.log_ndtr(-np.sqrt(chi2))) / np.log(10.0), 0.0)


def uniformity_test(counts, n_studies):
    """One-way chi-square test of each voxel's count against the mean count.

    The forward-inference ("uniformity") test of Neurosynth and NiMARE's
    MKDAChi2: is the voxel active in more (or fewer) studies than the
    average voxel?

    Parameters
    ----------
    counts : ndarray of shape (n_voxels,)
        Number of studies whose MA map is active at each voxel.
    n_studies : int
        Number of studies in the group.

    Returns
    -------
    chi2, z : ndarray of shape (n_voxels,)
        The chi-square statistic (1 degree of freedom) and its signed normal
        z (``sqrt(chi2)``, positive where the count is above the mean).
    """
    counts = np.asarray(counts, dtype=float)
    expected = counts.mean()
    denom = expected * (n_studies - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(denom > 0, (counts - expected) ** 2 * n_studies / denom, 0.0)
    return chi2, np.sqrt(chi2) * np.sign(counts - expected)


def association_test(a, b, n1, n2):
    """Two-way chi-square test of activation against group membership, per voxel.

    The reverse-inference ("association") test of Neurosynth and NiMARE's
    MKDAChi2, on the 2 x 2 table ``[[a, b], [n1 - a, n2 - b]]``, without
    continuity correction. Where an expected cell count is 0 (the voxel is
    active in every study or in none) chi2 is 2.0, as in NiMARE, which
    reproduces Neurosynth.

    Parameters
    ----------
    a, b : ndarray of shape (n_voxels,) or (n_maps, n_voxels)
        Studies active at each voxel in group 1 (the selection) and group 2.
    n1, n2 : int or ndarray broadcastable to ``a``
        Studies in each group.

    Returns
    -------
    chi2, z : ndarray
        The statistic and its signed z: ``sqrt(chi2)``, positive where
        p(A|group 1) > p(A|group 2).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n1 = np.asarray(n1, dtype=float)
    n2 = np.asarray(n2, dtype=float)
    n = n1 + n2
    active = a + b
    denom = active * (n - active) * n1 * n2
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(denom > 0, n * (a * n2 - b * n1) ** 2 / denom, 2.0)
        sign = np.sign(a / n1 - b / n2)
    return chi2, np.sqrt(chi2) * sign


def _ratio(num, den):
    """``num / den``, 0 where ``den`` is 0 (NiMARE's saved maps hold 0 there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def chi2_maps(a, b, n1, n2, prior=0.5):
    """MKDAChi2 maps from the per-voxel counts of active studies in two groups.

    Parameters
    ----------
    a, b : ndarray of shape (n_voxels,)
        Number of group-1 (selected, "F") and group-2 (unselected, "U")
        studies active at each voxel.
    n1, n2 : int
        Studies in each group.
    prior : float or None
        Prior p(F) of the prior-weighted probabilities (Neurosynth: 0.5);
        None skips ``prob_desc-AgF_prior`` and ``prob_desc-FgA_prior``.

    Returns
    -------
    dict of str to ndarray
        NiMARE's map names: ``{z,chi2,p,logp}_desc-{uniformity,association}``
        and the aliases ``..._desc-group1`` (the uniformity test of group 1)
        and ``..._desc-group2`` (the uniformity test of group 2 on its own
        counts); ``prob_desc-{A,AgF,AgU,FgA,AgF_prior,FgA_prior}`` and
        ``prob_desc-group1`` (= p(A|F)), ``prob_desc-group2`` (= p(A|U)).
        ``prob_desc-AgF_prior`` is the prior-weighted p(A),
        ``prior p(A|F) + (1 - prior) p(A|U)`` (NiMARE's legacy name).
        Conditional probabilities with a zero denominator are 0.

    Notes
    -----
    z is the signed ``sqrt(chi2)``, exactly the two-sided normal z of p, and
    ``logp`` comes from the chi-square tail in log space, so neither is capped
    by the float range of p (NiMARE 0.22.1 agrees on the reference, where
    -log10 p reaches 48). p itself is the float64 tail and underflows to 0
    beyond chi2 ~ 1400.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise CbmaError(f"count vectors must be 1-D and alike, got {a.shape} and {b.shape}")
    n1, n2 = int(n1), int(n2)
    if n1 < 1 or n2 < 1:
        raise CbmaError(f"MKDAChi2 needs studies in both groups, got {n1} and {n2}")
    if a.min(initial=0) < 0 or a.max(initial=0) > n1 or b.min(initial=0) < 0 \
            or b.max(initial=0) > n2:
        raise CbmaError("active-study counts must lie between 0 and the group size")
    if prior is not None and not 0 <= prior <= 1:
        raise CbmaError(f"prior must lie in [0, 1], got {prior!r}")
    n = n1 + n2
    tests = {
        "uniformity": uniformity_test(a, n1),
        "association": association_test(a, b, n1, n2),
        "group2": uniformity_test(b, n2),
    }
    maps = {}
    for desc, (chi2, z) in tests.items():
        maps[f"z_desc-{desc}"] = z
        maps[f"chi2_desc-{desc}"] = chi2
        maps[f"p_desc-{desc}"] = _chi2_p(chi2)
        maps[f"logp_desc-{desc}"] = _chi2_logp(chi2)
    for kind in ("z", "chi2", "p", "logp"):
        maps[f"{kind}_desc-group1"] = maps[f"{kind}_desc-uniformity"]
    p_a = (a + b) / n
    p_a_f = a / n1
    p_a_u = b / n2
    maps["prob_desc-A"] = p_a
    maps["prob_desc-AgF"] = p_a_f
    maps["prob_desc-AgU"] = p_a_u
    maps["prob_desc-FgA"] = _ratio(p_a_f * (n1 / n), p_a)
    if prior is not None:
        p_a_prior = prior * p_a_f + (1 - prior) * p_a_u
        maps["prob_desc-AgF_prior"] = p_a_prior
        maps["prob_desc-FgA_prior"] = _ratio(p_a_f * prior, p_a_prior)
    maps["prob_desc-group1"] = p_a_f
    maps["prob_desc-group2"] = p_a_u
    return maps


def _active_counts(ma):
    ma = _csr(ma)
    return _column_sums(ma, binary=True), ma.shape[0]


def mkda_chi2(ma1, ma2, prior=0.5):
    """Fit MKDAChi2: uniformity and association tests of two groups of MA maps.

    Parameters
    ----------
    ma1, ma2 : scipy.sparse matrix of shape (n_studies_g, n_voxels)
        MKDA MA maps of group 1 (selected) and group 2 (unselected). Only
        which voxels are active matters.
    prior : float or None
        See :func:`chi2_maps`.

    Returns
    -------
    dict of str to ndarray
        :func:`chi2_maps` of the counts. FDR maps:
        :func:`cbma.correct.fdr_indep_maps`.
    """
    if ma1.shape[1] != ma2.shape[1]:
        raise CbmaError(f"the two groups' MA maps have {ma1.shape[1]} and {ma2.shape[1]} "
                        "voxels; they must share a mask")
    a, n1 = _active_counts(ma1)
    b, n2 = _active_counts(ma2)
    return chi2_maps(a, b, n1, n2, prior=prior)


def chi2_fdr_maps(maps):
    """NiMARE's FDR (Benjamini-Hochberg, "indep") maps of an MKDAChi2 result.

    Parameters
    ----------
    maps : dict
        Output of :func:`mkda_chi2` or :func:`chi2_maps`.

    Returns
    -------
    dict of str to ndarray
        ``{p,z,logp}_desc-{uniformity,group1,group2,association}_level-voxel_corr-FDR_method-indep``:
        adjusted p of each test over all voxels, two-sided z of the adjusted
        p times the sign of the test's z, -log10 of the adjusted p
        (:func:`cbma.correct.fdr_indep_maps`).
    """
    return fdr_indep_maps(maps, FDR_DESCS)


# ---------------------------------------------------------------------------
# Neurosynth's image names


def _neurosynth_z(chi2, sign):
    """Neurosynth's z: p clipped at 1e-240, ``|Phi^-1(p / 2)| * sign``, inf -> 33.11."""
    p = np.maximum(_chi2_p(np.asarray(chi2, dtype=float)), NEUROSYNTH_P_FLOOR)
    z = np.abs(special.ndtri(p / 2))
    z[np.isinf(z)] = NEUROSYNTH_Z_CAP
    return p, z * sign


def neurosynth_images(maps, q=0.01, prior=0.5, min_studies=1, n_studies=None):
    """MKDAChi2 maps under the image names of Neurosynth's ``MetaAnalysis``.

    Parameters
    ----------
    maps : dict
        Output of :func:`mkda_chi2` or :func:`chi2_maps`.
    q : float
        FDR rate of the thresholded images; it appears in their names.
    prior : float
        Prior p(F) of ``pA_given_pF=<prior>`` and ``pFgA_given_pF=<prior>``,
        recomputed here from p(A|F) and p(A|U); the names follow it.
    min_studies : int or float
        Voxels active in fewer than this many studies (int), or in a smaller
        proportion of all studies (float in (0, 1)), are 0 in every image.
        Neurosynth's default 1 zeroes the voxels no study activates; 0 keeps
        every voxel. An int above 1 needs ``n_studies``.
    n_studies : int, optional
        Number of studies in both groups, for an int ``min_studies`` > 1.

    Returns
    -------
    dict of str to ndarray
        ``pA``, ``pAgF``, ``pFgA``, ``pA_given_pF=0.50``,
        ``pFgA_given_pF=0.50``, ``uniformity-test_z``, ``association-test_z``,
        ``uniformity-test_z_FDR_0.01``, ``association-test_z_FDR_0.01``
        (current Neurosynth names, for prior 0.5 and q 0.01).

    Notes
    -----
    As Neurosynth computes them: p is clipped at 1e-240 and
    ``z = |Phi^-1(p / 2)| * sign`` (so z tops out near 33.1); the FDR images
    are the z images with every voxel whose p exceeds the Benjamini-Hochberg
    threshold at ``q`` set to 0 (thresholded, not adjusted: NiMARE's
    ``corr-FDR`` maps are adjusted). What still differs from the images on
    neurosynth.org: the sphere (Neurosynth used r = 6 mm, NiMARE and our
    default r = 10 mm: pass ``r=6`` to :func:`mkda_ma_maps`), the mask
    (Neurosynth's MNI152 2 mm brain mask), the database itself, and the
    Talairach conversion of older studies.
    """
    if not 0 < q < 1:
        raise CbmaError(f"FDR rate q must lie in (0, 1), got {q!r}")
    if not 0 <= prior <= 1:
        raise CbmaError(f"prior must lie in [0, 1], got {prior!r}")
    p_a = maps["prob_desc-A"]
    p_a_f = maps["prob_desc-AgF"]
    p_a_u = maps["prob_desc-AgU"]
    p_a_prior = prior * p_a_f + (1 - prior) * p_a_u
    images = {
        "pA": p_a.copy(),
        "pAgF": p_a_f.copy(),
        "pFgA": maps["prob_desc-FgA"].copy(),
        f"pA_given_pF={prior:0.2f}": p_a_prior,
        f"pFgA_given_pF={prior:0.2f}": _ratio(p_a_f * prior, p_a_prior),
    }
    for desc, name in (("uniformity", "uniformity-test"), ("association", "association-test")):
        p, z = _neurosynth_z(maps[f"chi2_desc-{desc}"], np.sign(maps[f"z_desc-{desc}"]))
        images[f"{name}_z"] = z
        images[f"{name}_z_FDR_{q}"] = np.where(p > bh_threshold(p, q), 0.0, z)
    if isinstance(min_studies, (int, np.integer)) and not isinstance(min_studies, bool):
        if min_studies < 0:
            raise CbmaError(f"min_studies must be >= 0, got {min_studies}")
        if min_studies <= 1:
            # "active in fewer than 1 study" is pA == 0, whatever the number of studies
            exclude = p_a < 0 if min_studies == 0 else p_a == 0
        elif n_studies is None:
            raise CbmaError("min_studies above 1 needs n_studies (the number of studies)")
        else:
            exclude = p_a < min_studies / n_studies
    elif isinstance(min_studies, float) and 0 <= min_studies < 1:
        exclude = p_a < min_studies
    else:
        raise CbmaError(f"min_studies must be a whole number of studies or a proportion in "
                        f"[0, 1), got {min_studies!r}")
    for img in images.values():
        img[exclude] = 0.0
    return images
