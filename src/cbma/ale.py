"""Activation likelihood estimation (ALE): the statistic and its histogram ("approximate") null.

References: Turkeltaub et al. 2002; Eickhoff et al. 2009, 2012. The p of a
statistic under the null and the cluster-forming threshold come from the
histogram-null helpers of :mod:`cbma.stats` (:func:`~cbma.stats.null_p`,
:func:`~cbma.stats.null_threshold`), shared with MKDA density and KDA.
"""

import numba
import numpy as np

from .stats import HIST_STEP, null_p, p_to_logp, p_to_z

__all__ = ["ale", "ale_null_approximate", "ale_stat"]


def ale_stat(ma):
    """ALE at every voxel: ``1 - prod_i (1 - MA_i)``.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Modeled-activation maps.

    Returns
    -------
    ndarray of shape (n_voxels,)
    """
    ma = ma.tocsr()
    # sum of log(1 - MA) per voxel, without copying the index arrays
    log_sum = np.bincount(ma.indices, weights=np.log1p(-ma.data), minlength=ma.shape[1])
    return -np.expm1(log_sum)


def _nearest_bin(values, n_bins):
    """Index of the nearest bin centre (ties go up), clipped to the grid."""
    scaled = np.asarray(values) / HIST_STEP
    idx = np.floor(scaled)
    idx += (scaled - idx) >= 0.5
    return np.clip(idx.astype(np.int64), 0, n_bins - 1)


@numba.njit(cache=True, nogil=True)
def _union(null, exp_hist, centres, touched, seen, block):
    """The histogram of ``1 - (1 - a)(1 - b)`` for ``a ~ null``, ``b ~ exp_hist``.

    Pairs of nonzero bins are summed in blocks of rows of ``exp_hist`` (at
    most 2,000,000 pairs each), every block into zeros before it joins the
    total: the additions, and so the floating-point result, of a bincount of
    each block's outer product. ``touched``, ``seen`` and ``block`` are
    workspaces of ``n_bins`` (``seen`` all False and ``block`` all zeros; left so).
    """
    n_bins = centres.size
    a_idx = np.flatnonzero(null)
    b_idx = np.flatnonzero(exp_hist)
    one_minus_a = 1.0 - centres[a_idx]
    weight_a = null[a_idx]
    rows = max(1, 2_000_000 // max(a_idx.size, 1))
    combined = np.zeros(n_bins)
    for start in range(0, b_idx.size, rows):
        n_touched = 0
        for b in b_idx[start:start + rows]:
            one_minus_b, weight_b = 1.0 - centres[b], exp_hist[b]
            for j in range(a_idx.size):
                scaled = (1.0 - one_minus_b * one_minus_a[j]) / HIST_STEP
                idx = np.floor(scaled)
                if scaled - idx >= 0.5:
                    idx += 1.0
                k = min(max(np.int64(idx), 0), n_bins - 1)
                if not seen[k]:
                    seen[k] = True
                    touched[n_touched] = k
                    n_touched += 1
                block[k] += weight_b * weight_a[j]
        for t in range(n_touched):
            k = touched[t]
            combined[k] += block[k]
            block[k] = 0.0
            seen[k] = False
    return combined


def ale_null_approximate(ma):
    """Null distribution of ALE under spatial exchangeability of each MA map.

    Each experiment's MA values over the mask form a histogram (bins of
    1e-5, zeros included); the histograms are combined one experiment at a
    time through ``1 - (1 - a)(1 - b)``, the ALE union (Eickhoff et al. 2012).

    Parameters
    ----------
    ma : scipy.sparse.csr_matrix of shape (n_experiments, n_voxels)

    Returns
    -------
    centres : ndarray
        Bin centres, 0 to the highest attainable ALE.
    weights : ndarray
        Probability of each bin (sums to 1).
    """
    ma = ma.tocsr()
    n_exp, n_vox = ma.shape
    max_ma = np.ceil(np.asarray(ma.max(axis=1).todense()).ravel() / HIST_STEP) * HIST_STEP
    a_max = 1.0 - np.prod(1.0 - max_ma)
    centres = np.round(np.arange(0, a_max + 1.5 * HIST_STEP, HIST_STEP), 5)
    n_bins = centres.size

    def histogram(e):
        row = ma.data[ma.indptr[e]:ma.indptr[e + 1]]
        hist = np.bincount(_nearest_bin(row, n_bins), minlength=n_bins).astype(float)
        hist[0] += n_vox - row.size
        return hist / n_vox

    null = histogram(0)
    touched, seen, block = np.empty(n_bins, np.int64), np.zeros(n_bins, bool), np.zeros(n_bins)
    for e in range(1, n_exp):
        null = _union(null, histogram(e), centres, touched, seen, block)
    return centres, null / null.sum()


def ale(ma):
    """Fit ALE with the approximate null.

    Returns
    -------
    maps : dict of str to ndarray
        ``stat``, ``p``, ``z`` (one-sided) and ``logp``, masked vectors.
    null : tuple of ndarray
        ``(centres, weights)`` of the histogram null.
    """
    stat = ale_stat(ma)
    centres, weights = ale_null_approximate(ma)
    p = null_p(stat, centres, weights)
    maps = {"stat": stat, "p": p, "z": p_to_z(p), "logp": p_to_logp(p)}
    return maps, (centres, weights)
