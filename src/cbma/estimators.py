"""Activation likelihood estimation (ALE) and its histogram ("approximate") null.

References: Turkeltaub et al. 2002; Eickhoff et al. 2009, 2012.
"""

import numpy as np

from .stats import p_to_logp, p_to_z

HIST_STEP = 1e-5  # bin width of ALE null histograms (NiMARE 0.22, GingerALE)


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
    for e in range(1, n_exp):
        exp_hist = histogram(e)
        a_idx = np.flatnonzero(null)
        b_idx = np.flatnonzero(exp_hist)
        one_minus_a = 1.0 - centres[a_idx]
        combined = np.zeros(n_bins)
        block = max(1, 2_000_000 // max(a_idx.size, 1))
        for start in range(0, b_idx.size, block):
            b = b_idx[start:start + block]
            scores = 1.0 - np.outer(1.0 - centres[b], one_minus_a)
            weights = np.outer(exp_hist[b], null[a_idx])
            combined += np.bincount(_nearest_bin(scores.ravel(), n_bins),
                                    weights=weights.ravel(), minlength=n_bins)
        null = combined
    return centres, null / null.sum()


def _tail(weights):
    """Normalised upper tail ``T[b] = P(ALE >= centre_b)``."""
    tail = np.cumsum(weights[::-1])[::-1]
    return tail / tail[0]


def null_p(stat, centres, weights, step=HIST_STEP):
    """Uncorrected p of statistic values under a histogram null.

    A value goes to the bin ``round_half_away(value / step)`` (capped at the
    last bin) and gets that bin's upper tail ``P(X >= centre)``; values <= 0
    get p = 1; p is floored at the smallest nonzero tail probability.

    Parameters
    ----------
    stat : array-like
        Statistic values.
    centres, weights : ndarray
        The null: bin centres ``0, step, 2 step, ...`` and their probabilities.
    step : float
        Bin width: 1e-5 for ALE (the default), the kernel value (1) for the
        integer-valued MKDA and KDA statistics.
    """
    tail = _tail(weights)
    stat = np.asarray(stat, dtype=float)
    idx = np.minimum(np.floor(stat / step + 0.5).astype(np.int64), centres.size - 1)
    p = np.where(stat > 0, tail[np.maximum(idx, 0)], 1.0)
    return np.maximum(p, tail[tail > 0].min())


def null_threshold(p, centres, weights):
    """The statistic value that a voxel must exceed to have uncorrected p below ``p``.

    NiMARE's ``_p_to_summarystat``: the centre of the last bin whose upper
    tail is still above ``p``. Used as the cluster-forming threshold
    (supra-threshold means the statistic strictly greater than it). Any
    histogram null works: for MKDA density on integer bins it is the
    largest count whose tail ``P(X >= count)`` exceeds ``p`` (4 on the
    knowledge example at p = 0.001, NiMARE's value), so supra-threshold
    voxels have p <= ``p``.
    """
    tail = _tail(weights)
    below = np.flatnonzero(tail <= p)
    if below.size == 0:
        return float(centres[-1])
    return float(centres[max(below[0] - 1, 0)])


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
