"""Multilevel kernel density analysis (MKDA, Wager et al. 2007) and its chi-square tests.

The MKDA kernel is a binary sphere around every focus; an experiment's
modeled-activation (MA) map is 1 where any of its foci lies within ``r`` mm.
MKDADensity counts, per voxel, the experiments that activate it; MKDAChi2
(Neurosynth's meta-analysis, Yarkoni et al. 2011) compares how often the
voxel is active in a selection of studies with how often it is active in the
others.
"""

import numpy as np
from scipy import special

__all__ = ["association_test", "sphere_offsets", "uniformity_test"]


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
    voxel_size = np.asarray(voxel_size, dtype=float)
    reach = np.floor(r / voxel_size).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    dist = np.sqrt(((grid * voxel_size) ** 2).sum(axis=1))
    return grid[dist <= r]


def _chi2_p(chi2):
    """Upper tail of the chi-square distribution with one degree of freedom."""
    return special.chdtrc(1, chi2)


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
