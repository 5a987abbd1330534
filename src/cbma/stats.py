"""Conversions between p, z and -log10 p, and empirical p-values from nulls.

z is computed from the natural log of p in double precision
(``scipy.special.ndtri_exp``), so it keeps growing as p falls towards the
smallest double (z about 37.5) instead of stopping where p would underflow
in single precision (z about 12.95). p-values of 0 count as the smallest
positive double.
"""

import numpy as np
from scipy.special import ndtri_exp

SMALLEST_P = float(np.finfo(np.float64).tiny)  # p below this counts as this
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
