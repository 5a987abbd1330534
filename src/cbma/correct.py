"""Family-wise error correction from Monte Carlo nulls (voxel and cluster level)."""

import numpy as np
from scipy import ndimage

from .null import FACE_CONNECTIVITY
from .stats import null_to_p, p_to_logp, p_to_z


def label_clusters(stat, mask, threshold):
    """Clusters of voxels with ``stat > threshold`` (6-connectivity).

    Parameters
    ----------
    stat : ndarray of shape (n_voxels,)
        Masked statistic.
    mask : cbma.space.BrainMask
    threshold : float

    Returns
    -------
    labels : ndarray of int, shape (n_voxels,)
        Cluster label of each voxel (0: none), 1..n.
    sizes : ndarray of int, shape (n,)
        Voxels per cluster.
    masses : ndarray, shape (n,)
        Sum of ``stat - threshold`` over each cluster.
    """
    vol = mask.unmask(stat, dtype=float)
    labels, n = ndimage.label(vol > threshold, structure=FACE_CONNECTIVITY)
    labels = mask.apply(labels)
    sizes = np.bincount(labels, minlength=n + 1)[1:]
    excess = np.where(labels > 0, stat - threshold, 0.0)
    masses = np.bincount(labels, weights=excess, minlength=n + 1)[1:]
    return labels, sizes, masses


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
    p = {
        "level-voxel": null_to_p(stat, null_max_stat),
        "desc-size_level-cluster": null_to_p(size_of_voxel, null_max_size),
        "desc-mass_level-cluster": null_to_p(mass_of_voxel, null_max_mass),
    }
    return p, {"labels": labels, "sizes": sizes, "masses": masses}


def corrected_maps(p_maps, method="montecarlo"):
    """NiMARE-named ``z_``/``logp_`` maps of FWE-corrected p maps (one-sided z)."""
    maps = {}
    for name, p in p_maps.items():
        suffix = f"{name}_corr-FWE_method-{method}"
        maps[f"z_{suffix}"] = p_to_z(p)
        maps[f"logp_{suffix}"] = p_to_logp(p)
    return maps


def percentile_threshold(null, alpha):
    """The (1 - alpha) quantile of a null (linear interpolation), e.g. a minimum cluster size."""
    return float(np.percentile(np.asarray(null, dtype=float), 100 * (1 - alpha)))


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
