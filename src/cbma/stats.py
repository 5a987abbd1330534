"""Conversions between p, z and -log10 p, and p-values from nulls (samples and histograms).

z is computed from the natural log of p in double precision
(``scipy.special.ndtri_exp``), so it keeps growing as p falls towards the
smallest double (z about 37.5) instead of stopping where p would underflow
in single precision (z about 12.95). p-values of 0 count as the smallest
positive double.
"""

import numpy as np
from scipy.special import ndtri_exp

SMALLEST_P = float(np.finfo(np.float64).tiny)  # p below this counts as this
HIST_STEP = 1e-5  # bin width of ALE null histograms (NiMARE 0.22, GingerALE)
_LN10 = np.log(10.0)


def _log_p(p):
    """Natural log of p-values, floored at :data:`SMALLEST_P`."""
    return np.log(np.clip(np.asarray(p, dtype=float), SMALLEST_P, 1.0))


def log_p_to_z(log_p, tail="one"):
    """z of a p-value given as its natural log (double precision throughout).

    Parameters
    ----------
    log_p : array-like
        ``ln p``, at most 0.
    tail : {"one", "two"}
        One-sided ``max(Phi^-1(1 - p), 0)`` or two-sided ``Phi^-1(1 - p/2)``.
    """
    log_p = np.minimum(np.asarray(log_p, dtype=float), 0.0)
    if tail == "one":
        return np.maximum(-ndtri_exp(log_p), 0.0)
    if tail == "two":
        return -ndtri_exp(log_p - np.log(2.0))
    raise ValueError(f"tail must be 'one' or 'two', got {tail!r}")


def p_to_z(p, tail="one"):
    """z of a p-value: one-sided ``max(Phi^-1(1 - p), 0)`` or two-sided ``Phi^-1(1 - p/2)``.

    Computed through ``ln p`` (:func:`log_p_to_z`), so z increases wherever p
    decreases, down to the smallest double.
    """
    return log_p_to_z(_log_p(p), tail)


def p_to_logp(p):
    """``-log10(p)``, with p floored at :data:`SMALLEST_P`."""
    return -_log_p(p) / _LN10


def null_to_p(values, null):
    """Upper-tail empirical p of each value against a null sample.

    ``p = #{null >= value} / n``, clipped to ``[1/n, 1 - 1/n]`` (NiMARE's
    ``null_to_p`` with tail "upper", no +1 correction).
    """
    null = np.sort(np.asarray(null, dtype=float))
    n = null.size
    values = np.asarray(values, dtype=float)
    n_ge = n - np.searchsorted(null, values, side="left")
    return np.clip(n_ge / n, 1.0 / n, 1.0 - 1.0 / n)


# ---------------------------------------------------------------------------
# histogram nulls: bin centres 0, step, 2 step, ... and their probabilities
# (ALE's approximate null, MKDA density's and KDA's)


def _tail(weights):
    """Normalised upper tail ``T[b] = P(X >= centre_b)`` of a histogram null."""
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
