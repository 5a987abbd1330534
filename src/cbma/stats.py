"""Conversions between p, z and -log10 p, and empirical p-values from nulls."""

import numpy as np
from scipy.special import ndtri

TINY = float(np.finfo(np.float32).tiny)


def p_to_z(p, tail="one"):
    """z of a p-value: one-sided ``max(Phi^-1(1 - p), 0)`` or two-sided ``Phi^-1(1 - p/2)``."""
    p = np.clip(np.asarray(p, dtype=float), TINY, 1.0)
    if tail == "one":
        return np.maximum(-ndtri(p), 0.0)
    if tail == "two":
        return -ndtri(p / 2)
    raise ValueError(f"tail must be 'one' or 'two', got {tail!r}")


def p_to_logp(p):
    """``-log10(p)``, with p floored at the smallest positive float32."""
    return -np.log10(np.clip(np.asarray(p, dtype=float), TINY, 1.0))


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
