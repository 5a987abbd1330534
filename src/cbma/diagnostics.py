"""Which experiments drive each cluster: focus counts, jackknife and GingerALE-style shares.

All three take a masked label map of one tail (from
:func:`cbma.clusters.cluster_table`: cluster ``k`` is the voxels of value
``k``) and report one value per experiment and cluster. The jackknife and
the contribution shares work from the cached modeled-activation (MA) maps:
removing an experiment from an ALE is an exact update of the log-sum
``sum_i log(1 - MA_i)``, so nothing is refitted from coordinates. (NiMARE
refits the estimator without each experiment; for ALE the statistic it reads
back is the same union without that experiment's MA map.)

Tables follow NiMARE's layout: first column ``id`` (experiments in dataset
order), then one column per cluster named ``"PositiveTail 1"``, ... as in the
cluster table.
"""

import numpy as np
import pandas as pd

from .clusters import TAILS
from .errors import CbmaError
from .kernels import foci_voxels

CONTRIBUTION_COLUMNS = ["cluster", "id", "n_voxels", "ma_sum", "ma_percent",
                        "ale_percent", "max_ale_percent"]


def _check_tail(tail):
    if tail not in TAILS:
        raise CbmaError(f"unknown tail {tail!r}; expected 'positive' or 'negative'")


def cluster_columns(n_clusters, tail="positive"):
    """Column names of ``n_clusters`` clusters of one tail: ``"PositiveTail 1"``, ..."""
    _check_tail(tail)
    return [f"{TAILS[tail][0]} {k}" for k in range(1, n_clusters + 1)]


def _labels_of(labels, n_voxels=None):
    labels = np.asarray(labels)
    if labels.ndim != 1 or (n_voxels is not None and labels.size != n_voxels):
        raise CbmaError(f"label map has shape {labels.shape}, expected ({n_voxels},)")
    if labels.size and (labels.min() < 0 or np.any(labels != np.round(labels))):
        raise CbmaError("a label map holds whole numbers >= 0 (0: no cluster)")
    return labels.astype(np.int64)


def _table(ids, values, tail):
    table = pd.DataFrame(values, columns=cluster_columns(values.shape[1], tail))
    table.insert(0, "id", list(ids))
    return table


# --------------------------------------------------------------------------
# focus counter
# --------------------------------------------------------------------------

def focus_counter(coordinates, labels, mask, tail="positive"):
    """Number of each experiment's foci that fall in each cluster.

    A focus is in a cluster when its voxel (mm to voxel through the mask
    affine, rounding half to even as NiMARE's ``mm2vox``) is one of the
    cluster's voxels; foci outside the mask count nowhere.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        Canonical coordinates table (:mod:`cbma.io`): columns ``id``, ``x``,
        ``y``, ``z`` in MNI mm.
    labels : ndarray of int, shape (n_voxels,)
        Masked label map of one tail (0: no cluster).
    mask : cbma.space.BrainMask
    tail : {"positive", "negative"}
        Names the columns.

    Returns
    -------
    pandas.DataFrame
        Column ``id`` (experiments in dataset order), then one int column
        per cluster (``"PositiveTail 1"``, ...).
    """
    labels = _labels_of(labels, mask.n_voxels)
    n_clusters = int(labels.max(initial=0))
    experiments = pd.unique(coordinates["id"])  # dataset order, as io.experiments_table
    row = pd.Categorical(coordinates["id"], categories=experiments).codes
    ijk = foci_voxels(coordinates, mask)
    inside = mask.contains(ijk)
    cluster = np.zeros(len(ijk), dtype=np.int64)
    volume = mask.unmask(labels, dtype=np.int64)
    cluster[inside] = volume[tuple(ijk[inside].T)]
    counts = np.zeros((len(experiments), n_clusters + 1), dtype=np.int64)
    np.add.at(counts, (row, cluster), 1)
    return _table(experiments, counts[:, 1:], tail)


# --------------------------------------------------------------------------
# leave-one-experiment-out
# --------------------------------------------------------------------------

#: How the statistic combines the experiments' MA maps: the ALE union, or a
#: sum (MKDA density, KDA).
STATISTICS = ("ale", "sum")


def _leave_one_out(ma, labels, statistic="ale"):
    """Per cluster voxel: the statistic, and the ratio stat without e / stat for every experiment.

    Returns ``voxel_cluster`` (cluster of each cluster voxel), ``ma_in``
    (experiments x cluster voxels, dense) and ``ratio`` (same shape).
    """
    if statistic not in STATISTICS:
        raise CbmaError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    cols = np.flatnonzero(labels)
    ma_in = np.asarray(ma.tocsc()[:, cols].todense(), dtype=float)
    if statistic == "ale":
        if np.any((ma_in < 0) | (ma_in >= 1)):
            raise CbmaError("MA values must lie in [0, 1) for an ALE")
        logs = np.log1p(-ma_in)
        total = logs.sum(axis=0)
        stat = -np.expm1(total)
        without = -np.expm1(total[None, :] - logs)
    else:
        stat = ma_in.sum(axis=0)
        without = stat[None, :] - ma_in
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(stat > 0, without / stat, 0.0)
    return labels[cols], ma_in, np.clip(ratio, 0.0, 1.0)


def _check_ma(ma, labels, experiment_ids):
    if ma.shape[1] != labels.size:
        raise CbmaError(f"MA maps have {ma.shape[1]} voxels, the label map {labels.size}")
    if len(experiment_ids) != ma.shape[0]:
        raise CbmaError(f"{len(experiment_ids)} experiment ids for {ma.shape[0]} MA maps")


def jackknife(ma, labels, experiment_ids, tail="positive", statistic="ale"):
    """Leave-one-experiment-out contribution of each experiment to each cluster.

    For experiment ``e`` and voxel ``v``, ``c_e(v) = 1 - ALE_without_e(v) /
    ALE(v)`` (0 where ALE is 0), where ``ALE_without_e`` is the ALE of all
    other experiments: ``1 - exp(sum_i log(1 - MA_i) - log(1 - MA_e))``. The
    contribution to a cluster is the mean of ``c_e`` over its voxels; it
    lies in [0, 1], and the contributions to a cluster need not sum to 1
    (the ALE union is not additive). For MKDA density and KDA
    (``statistic="sum"``) the statistic is the sum of the MA maps, and the
    contributions to a cluster sum to 1.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Modeled-activation maps, as :func:`cbma.io.load_sparse` returns them.
    labels : ndarray of int, shape (n_voxels,)
        Masked label map of one tail (0: no cluster).
    experiment_ids : sequence of str
        Id of each row of ``ma``.
    tail : {"positive", "negative"}
        Names the columns.
    statistic : {"ale", "sum"}
        How the MA maps combine: the ALE union or a sum (MKDA density, KDA).

    Returns
    -------
    pandas.DataFrame
        Column ``id``, then one float column per cluster (``"PositiveTail 1"``, ...).
    """
    labels = _labels_of(labels)
    _check_ma(ma, labels, experiment_ids)
    n_clusters = int(labels.max(initial=0))
    voxel_cluster, _, ratio = _leave_one_out(ma, labels, statistic)
    sizes = np.bincount(voxel_cluster, minlength=n_clusters + 1)[1:]
    values = np.zeros((len(experiment_ids), n_clusters))
    for k in range(n_clusters):
        if sizes[k]:
            values[:, k] = np.mean(1.0 - ratio[:, voxel_cluster == k + 1], axis=1)
    return _table(experiment_ids, values, tail)


def contributions(ma, labels, experiment_ids, tail="positive", statistic="ale"):
    """GingerALE-style contribution of each experiment to each cluster (ALE).

    As the Eickhoff lab's ALE code (JALE) reports them, per cluster and
    experiment ``e``:

    - ``n_voxels``: voxels of the cluster;
    - ``ma_sum``: sum of ``e``'s MA values over the cluster;
    - ``ma_percent``: ``100 * ma_sum / n_voxels``, the mean MA in percent;
    - ``ale_percent``: ``100 * (1 - mean_v ALE_without_e / ALE)`` (the
      jackknife contribution), renormalised so that the experiments of a
      cluster sum to 100 %;
    - ``max_ale_percent``: ``100 * (1 - min_v ALE_without_e / ALE)``, the
      largest share of the ALE of any voxel of the cluster that ``e``
      explains.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Modeled-activation maps.
    labels : ndarray of int, shape (n_voxels,)
        Masked label map of one tail (0: no cluster).
    experiment_ids : sequence of str
        Id of each row of ``ma``.
    tail : {"positive", "negative"}
        Names the clusters.
    statistic : {"ale", "sum"}
        How the MA maps combine (for MKDA density and KDA, ``ale_percent``
        is the share of the summed statistic).

    Returns
    -------
    pandas.DataFrame
        Tidy: one row per cluster and experiment (clusters in order, then
        experiments in dataset order), columns :data:`CONTRIBUTION_COLUMNS`;
        ``cluster`` is the cluster's id (``"PositiveTail 1"``, ...).
    """
    labels = _labels_of(labels)
    _check_ma(ma, labels, experiment_ids)
    n_clusters = int(labels.max(initial=0))
    n_exp = len(experiment_ids)
    voxel_cluster, ma_in, ratio = _leave_one_out(ma, labels, statistic)
    frames = []
    for k, name in enumerate(cluster_columns(n_clusters, tail), 1):
        inside = voxel_cluster == k
        n_vox = int(inside.sum())
        if n_vox == 0:
            continue
        ma_sum = ma_in[:, inside].sum(axis=1)
        share = np.mean(1.0 - ratio[:, inside], axis=1)  # the jackknife contribution
        total = share.sum()
        frames.append(pd.DataFrame({
            "cluster": name,
            "id": list(experiment_ids),
            "n_voxels": n_vox,
            "ma_sum": ma_sum,
            "ma_percent": 100.0 * ma_sum / n_vox,
            "ale_percent": 100.0 * share / total if total > 0 else np.zeros(n_exp),
            "max_ale_percent": 100.0 * (1.0 - ratio[:, inside].min(axis=1)),
        }))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            CONTRIBUTION_COLUMNS, [str, str, int, float, float, float, float], strict=True)})
    return pd.concat(frames, ignore_index=True)[CONTRIBUTION_COLUMNS]
