"""Multiple-comparison corrections: FWE from Monte Carlo nulls (voxel and cluster level), FDR."""

import numpy as np
from scipy import special

from . import layout
from .clusters import label_clusters
from .errors import CbmaError
from .stats import null_to_p, p_to_logp, p_to_z


def fwe_montecarlo(stat, mask, threshold, null_max_stat, null_max_size, null_max_mass):
    """Voxel- and cluster-level FWE-corrected p-values from Monte Carlo nulls.

    Voxel level: ``p(v) = #{max_stat_null >= stat(v)} / n``. Cluster level:
    every voxel of a cluster gets the p of its cluster's size (or mass)
    against the null of the largest cluster's size (or mass); voxels in no
    cluster get a size and mass of 0 (so ``p = 1 - 1/n``).

    Returns
    -------
    p : dict of str to ndarray
        Masked p maps keyed ``level-voxel``, ``desc-size_level-cluster``,
        ``desc-mass_level-cluster``.
    clusters : dict
        ``labels``, ``sizes``, ``masses`` of the observed clusters.
    """
    labels, sizes, masses = label_clusters(stat, mask, threshold)
    size_of_voxel = np.r_[0, sizes][labels]
    mass_of_voxel = np.r_[0.0, masses][labels]
    voxel, size, mass = layout.FWE_KINDS
    p = {
        voxel: null_to_p(stat, null_max_stat),
        size: null_to_p(size_of_voxel, null_max_size),
        mass: null_to_p(mass_of_voxel, null_max_mass),
    }
    return p, {"labels": labels, "sizes": sizes, "masses": masses}


def corrected_maps(p_maps, method="montecarlo"):
    """NiMARE-named ``z_``/``logp_`` maps of FWE-corrected p maps (one-sided z)."""
    maps = {}
    for kind, p in p_maps.items():
        maps[layout.fwe_map("z", kind, method)] = p_to_z(p)
        maps[layout.fwe_map("logp", kind, method)] = p_to_logp(p)
    return maps


def percentile_threshold(null, alpha):
    """The (1 - alpha) quantile of a null (linear interpolation), e.g. a minimum cluster size."""
    return float(np.percentile(np.asarray(null, dtype=float), 100 * (1 - alpha)))


def quantile_se(null, alpha):
    """Monte Carlo standard error of the (1 - alpha) quantile of a null.

    Distribution-free, from order statistics: with ``n`` iterations and
    ``q = 1 - alpha``, the number of null values below the true quantile is
    binomial(n, q), so the order statistics at ``n q -/+ sqrt(n q (1 - q))``
    bracket the quantile by about one standard error on each side; the SE is
    half their distance.

    Parameters
    ----------
    null : array-like
        Null values (e.g. the maximum ALE of each Monte Carlo iteration).
    alpha : float
        FWE level; the threshold is the (1 - alpha) quantile.

    Returns
    -------
    float
        The standard error, in the null's units (``inf`` with fewer than 2 values).
    """
    values = np.sort(np.asarray(null, dtype=float))
    n = values.size
    if n < 2:
        return float("inf")
    q = 1 - alpha
    half = np.sqrt(n * q * (1 - q))
    lo = int(np.clip(np.floor(n * q - half), 0, n - 1))
    hi = int(np.clip(np.ceil(n * q + half), 0, n - 1))
    return float((values[hi] - values[lo]) / 2)


def threshold_errors(nulls, alpha):
    """Standard errors of the FWE thresholds, absolute and relative to the threshold.

    Returns
    -------
    dict
        ``{"max_stat": {"se", "relative_se"}, "cluster_size": {...}}``: the
        thresholds that voxel-level and cluster-level (size) FWE use.
    """
    out = {}
    for key, column in (("max_stat", "max_stat"), ("cluster_size", "max_cluster_size")):
        se = quantile_se(nulls[column], alpha)
        thr = percentile_threshold(nulls[column], alpha)
        out[key] = {"se": se, "relative_se": se / thr if thr > 0 else float("inf")}
    return out


def early_stop(nulls, alpha, tolerance, min_iters):
    """Whether a Monte Carlo may stop: both thresholds known within ``tolerance``.

    Parameters
    ----------
    nulls : pandas.DataFrame
        The iterations so far (columns ``max_stat``, ``max_cluster_size``).
    alpha : float
        FWE level.
    tolerance : float
        Largest relative standard error accepted for the voxel-level (max
        statistic) and cluster-size thresholds.
    min_iters : int
        Never stop before this many iterations.

    Returns
    -------
    dict
        ``{"stop": bool, "n_iters": int, "errors": threshold_errors(...)}``.
    """
    errors = threshold_errors(nulls, alpha)
    stop = len(nulls) >= min_iters and all(e["relative_se"] <= tolerance
                                           for e in errors.values())
    return {"stop": bool(stop), "n_iters": int(len(nulls)), "errors": errors}


def fwe_summary(p_maps, clusters, nulls, threshold, alpha):
    """A JSON-ready summary of a Monte Carlo FWE correction.

    Parameters
    ----------
    p_maps : dict
        Output of :func:`fwe_montecarlo`.
    clusters : dict
        Observed clusters from :func:`fwe_montecarlo`.
    nulls : pandas.DataFrame
        Columns ``max_stat``, ``max_cluster_size``, ``max_cluster_mass``.
    threshold : float
        Cluster-forming statistic threshold.
    alpha : float
        FWE level.
    """
    sizes, masses = clusters["sizes"], clusters["masses"]
    order = np.argsort(-sizes, kind="stable")
    p_size = null_to_p(sizes, nulls["max_cluster_size"])
    p_mass = null_to_p(masses, nulls["max_cluster_mass"])
    return {
        "n_iters": int(len(nulls)),
        "threshold_errors": threshold_errors(nulls, alpha),
        "alpha": alpha,
        "cluster_forming_threshold": threshold,
        "thresholds": {
            "max_stat": percentile_threshold(nulls["max_stat"], alpha),
            "cluster_size": percentile_threshold(nulls["max_cluster_size"], alpha),
            "cluster_mass": percentile_threshold(nulls["max_cluster_mass"], alpha),
        },
        "clusters": {
            "n": int(sizes.size),
            "sizes": sizes[order].tolist(),
            "masses": masses[order].tolist(),
            "p_size": p_size[order].tolist(),
            "p_mass": p_mass[order].tolist(),
            "n_significant_size": int((p_size < alpha).sum()),
            "n_significant_mass": int((p_mass < alpha).sum()),
        },
        "n_voxels_significant": {k: int((v < alpha).sum()) for k, v in p_maps.items()},
    }


# ---------------------------------------------------------------------------
# False discovery rate (Benjamini & Hochberg 1995)

FDR_DESCS = ("uniformity", "group1", "group2", "association")  # NiMARE's MKDAChi2 FDR maps


def _sorted_ranks(values):
    """Ascending order of ``values`` and the 1-based rank of each sorted entry."""
    order = np.argsort(values, kind="stable")
    return order, np.arange(1, values.size + 1, dtype=float)


def fdr_bh_log(log_p):
    """Benjamini-Hochberg adjusted p-values, in natural-log space.

    ``log q_(i) = min_{j >= i} (log p_(j) + log(m / j))``, capped at 0
    (q <= 1). Working with logs keeps p-values far below the float range
    (e.g. from a chi-square of 10,000) exact.

    Parameters
    ----------
    log_p : array-like
        Natural logarithms of the p-values (``-inf`` for p = 0), any shape.

    Returns
    -------
    ndarray
        Natural logarithms of the adjusted p-values, same shape, monotone in
        p (ties get the same value).
    """
    log_p = np.asarray(log_p, dtype=float)
    flat = log_p.ravel()
    if np.isnan(flat).any() or (flat > 1e-9).any():
        raise CbmaError("FDR: p-values must lie in [0, 1] (log p <= 0, no NaN)")
    flat = np.minimum(flat, 0.0)  # rounding above p = 1
    m = flat.size
    if m == 0:
        return log_p.copy()
    order, rank = _sorted_ranks(flat)
    scaled = flat[order] + np.log(m / rank)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 0.0)
    return out.reshape(log_p.shape)


def fdr_bh(p):
    """Benjamini-Hochberg adjusted p-values (FDR under independence, "indep").

    ``q_(i) = min_{j >= i} p_(j) m / j``, clipped to 1, computed in log
    space (:func:`fdr_bh_log`). A voxel is significant at FDR ``alpha`` when
    ``q <= alpha``, the same decision as :func:`bh_threshold`.

    Parameters
    ----------
    p : array-like
        Uncorrected p-values, any shape.

    Returns
    -------
    ndarray
        Adjusted p-values, same shape.
    """
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.exp(fdr_bh_log(np.log(p)))


def bh_threshold(p, q):
    """The Benjamini-Hochberg p threshold: ``max{p_(i) : p_(i) <= i q / m}``, -1 if none.

    Neurosynth's ``stats.fdr``: voxels with ``p <= threshold`` survive FDR
    ``q``; -1 means none does.
    """
    p = np.sort(np.asarray(p, dtype=float).ravel())
    if p.size == 0:
        return -1.0
    below = p <= np.arange(1, p.size + 1) * q / p.size
    return float(p[np.flatnonzero(below)[-1]]) if below.any() else -1.0


def fdr_indep_maps(maps, descs=FDR_DESCS):
    """NiMARE's ``FDRCorrector(method="indep")`` maps of two-sided tests (MKDAChi2).

    For each ``desc`` the Benjamini-Hochberg adjusted p of
    ``p_desc-<desc>`` over all voxels, its two-sided z ``Phi^-1(1 - q / 2)``
    times the sign of ``z_desc-<desc>``, and ``-log10 q``. Adjusted, not
    thresholded: nothing is set to 0 (a voxel whose original z is 0 keeps
    z = 0). The p-values are taken from ``logp_desc-<desc>`` (-log10 p),
    so that they do not underflow.

    Parameters
    ----------
    maps : dict of str to ndarray
        Holds ``logp_desc-<desc>`` and ``z_desc-<desc>`` for every desc.
    descs : sequence of str
        The tests to correct, each on its own.

    Returns
    -------
    dict of str to ndarray
        ``{p,z,logp}_desc-<desc>_level-voxel_corr-FDR_method-indep``.
    """
    out = {}
    for desc in descs:
        log_q = fdr_bh_log(-np.asarray(maps[f"logp_desc-{desc}"], dtype=float) * np.log(10.0))
        sign = np.sign(maps[f"z_desc-{desc}"])
        suffix = f"desc-{desc}_{layout.FDR}"
        out[f"p_{suffix}"] = np.exp(log_q)
        out[f"z_{suffix}"] = -special.ndtri_exp(log_q - np.log(2.0)) * sign
        out[f"logp_{suffix}"] = -log_q / np.log(10.0)
    return out
