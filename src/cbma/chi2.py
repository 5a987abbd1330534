"""MKDAChi2: chi-square tests of two groups' MA maps, their FDR maps and Neurosynth's image names.

MKDAChi2 (Neurosynth's meta-analysis, Yarkoni et al. 2011) compares, at every
voxel, how often the voxel is active in a selection of studies with how often
it is active in the others (MKDA MA maps, :func:`cbma.spheres.mkda_ma_maps`):
a one-way "uniformity" test and a two-way "association" test
(:func:`chi2_maps`, :func:`mkda_chi2`).

Map names and conventions follow NiMARE 0.22.1 (``MKDAChi2``);
:func:`neurosynth_images` gives the same analysis under the image names of
Neurosynth's ``MetaAnalysis``.
"""

import numpy as np
from scipy import special

from .correct import FDR_DESCS, bh_threshold, fdr_indep_maps
from .errors import CbmaError
from .mkda import active_counts

__all__ = [
    "association_test",
    "chi2_fdr_maps",
    "chi2_maps",
    "mkda_chi2",
    "neurosynth_images",
    "uniformity_test",
]

NEUROSYNTH_P_FLOOR = 1e-240  # Neurosynth clips chi-square p-values here
NEUROSYNTH_Z_CAP = 33.11  # and replaces an infinite z by this


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
    a, n1 = active_counts(ma1)
    b, n2 = active_counts(ma2)
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
    default r = 10 mm: pass ``r=6`` to :func:`cbma.spheres.mkda_ma_maps`),
    the mask (Neurosynth's MNI152 2 mm brain mask), the database itself, and
    the Talairach conversion of older studies.
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
