"""Comparing meta-analyses: ALE subtraction by label permutation, and conjunction.

Subtraction (Laird et al. 2005; Eickhoff et al. 2012) asks where the ALE of
one group of experiments exceeds that of another more than relabelling the
experiments would explain. The observed difference ``D = ALE_1 - ALE_2`` is
compared, voxel by voxel, with its distribution over random splits of the
pooled experiments into groups of the original sizes.

The permutations are split into chunks for parallel jobs, as the Monte Carlo
FWE null is (:mod:`cbma.null`): permutation ``i`` of contrast ``c`` draws from
its own random stream, seeded from ``(seed, c, i)``, and a chunk returns only
sums over its permutations (per voxel, how often the permuted difference
reached the observed one from above and from below) and one number per
permutation (the largest absolute difference, for voxel-level FWE). Summing
the chunks gives the same result however the permutations were split.

Two ways to turn the counts into maps (:func:`subtraction_maps`):

``"nimare"``
    NiMARE's ``ALESubtraction``: every voxel, two-sided, with an asymmetric
    null (ALGORITHMS.md 5.1).
``"eickhoff2012"``
    The original (GingerALE): group 1 > group 2 is tested one-sided only in
    voxels significant in group 1's corrected main effect, and group 2 >
    group 1 only where group 2 is significant.

Ties. Where the experiments that reach a voxel keep their groups under a
permutation, the permuted difference there equals the observed one exactly
(the arithmetic makes it bit-identical), and the tie counts in both tails,
as the formulas say. NiMARE 0.22.1's output instead puts each voxel's ties
on one side only, so about 40 % of the voxels reached by a single
experiment get p = 1/n there (the tests show it); away from ties the two
agree within permutation error.

Conjunction (:func:`conjunction`) is the minimum statistic of Nichols et al.
(2005), thresholded at the critical value of a single map: a voxel is in it
only where every analysis is significant on its own.
"""

import io as _io
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from .errors import CbmaError, InputFileError
from .io import load_arrays, save_arrays
from .layout import CONTRAST, SUBTRACTION_FWE, is_thresholded
from .null import iteration_rng
from .stats import null_to_p, p_to_logp, p_to_z

MODES = ("nimare", "eickhoff2012")
CHUNK_ARRAYS = ("iterations", "n_ge", "n_le", "max_abs")
BATCH = 64  # permutations per pass over the voxels; results do not depend on it


# --------------------------------------------------------------------------
# the permutation model
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PooledGroups:
    """The pooled experiments of two groups, laid out for fast relabelling.

    Build it with :func:`pool_groups`.

    Attributes
    ----------
    complement : scipy.sparse.csr_matrix of shape (n_touched, n_experiments)
        ``1 - MA`` of every pooled experiment (group 1's first), at the mask
        voxels that any experiment touches; one row per voxel.
    voxels : ndarray of int, shape (n_touched,)
        Those voxels, as indices into the masked vector.
    n_group1 : int
        Number of experiments in group 1.
    n_voxels : int
        Number of mask voxels.
    """

    complement: sp.csr_matrix
    voxels: np.ndarray
    n_group1: int
    n_voxels: int

    @property
    def n_experiments(self):
        return self.complement.shape[1]


def pool_groups(ma1, ma2):
    """Pool the modeled-activation maps of two groups of experiments.

    Parameters
    ----------
    ma1, ma2 : scipy.sparse matrix of shape (n_experiments_g, n_voxels)
        MA maps of group 1 and group 2 (experiments x mask voxels, as
        :func:`cbma.io.load_sparse` returns them), on the same mask.

    Returns
    -------
    PooledGroups
    """
    ma1, ma2 = sp.csr_matrix(ma1), sp.csr_matrix(ma2)
    if ma1.shape[1] != ma2.shape[1]:
        raise CbmaError(f"the two groups' MA maps cover different numbers of voxels "
                        f"({ma1.shape[1]} and {ma2.shape[1]}); they must share one mask")
    if ma1.shape[0] == 0 or ma2.shape[0] == 0:
        raise CbmaError(f"each group needs at least one experiment, got {ma1.shape[0]} "
                        f"and {ma2.shape[0]}")
    pooled = sp.vstack([ma1, ma2], format="csc")
    pooled.sum_duplicates()
    if pooled.data.size and (pooled.data.min() < 0 or pooled.data.max() >= 1):
        raise CbmaError("MA values must lie in [0, 1)")
    voxels = np.flatnonzero(np.diff(pooled.indptr))
    comp = pooled[:, voxels].T.tocsr()
    comp.sort_indices()
    comp.data = 1.0 - comp.data
    return PooledGroups(complement=comp, voxels=voxels, n_group1=ma1.shape[0],
                        n_voxels=ma1.shape[1])


# ALE_1 - ALE_2 = (1 - P1) - (1 - P2) = P2 - P1, with P_g the product of 1 - MA
# over group g's experiments, multiplied in the order of the experiments. A
# voxel whose group-1 experiments are the same under two labellings therefore
# gets bit-identical values (ties between permuted and observed differences
# stay ties). The two functions below do the same arithmetic.

@numba.njit(cache=True, nogil=True, inline="always")
def _group_products(v, indptr, indices, data, group1, p1, p2):
    """P1 and P2 at touched voxel ``v`` for each labelling (columns of group1)."""
    p1[:] = 1.0
    p2[:] = 1.0
    for j in range(indptr[v], indptr[v + 1]):
        x = data[j]
        labels = group1[indices[j]]
        for k in range(p1.size):
            if labels[k]:
                p1[k] *= x
            else:
                p2[k] *= x


@numba.njit(cache=True, nogil=True)
def _differences(indptr, indices, data, group1):
    """``P2 - P1`` at each touched voxel (rows) for each labelling (columns of group1)."""
    n_lab = group1.shape[1]
    out = np.empty((indptr.size - 1, n_lab))
    p1 = np.empty(n_lab)
    p2 = np.empty(n_lab)
    for v in range(indptr.size - 1):
        _group_products(v, indptr, indices, data, group1, p1, p2)
        for k in range(n_lab):
            out[v, k] = p2[k] - p1[k]
    return out


@numba.njit(cache=True, nogil=True)
def _count_permutations(indptr, indices, data, group1, observed, n_ge, n_le, max_abs):
    """Add each permutation's ties-and-exceedances to n_ge/n_le; its max |D| to max_abs."""
    n_lab = group1.shape[1]
    p1 = np.empty(n_lab)
    p2 = np.empty(n_lab)
    for v in range(indptr.size - 1):
        _group_products(v, indptr, indices, data, group1, p1, p2)
        obs = observed[v]
        ge = 0
        le = 0
        for k in range(n_lab):
            d = p2[k] - p1[k]
            ge += d >= obs
            le += d <= obs
            a = abs(d)
            if a > max_abs[k]:
                max_abs[k] = a
        n_ge[v] += ge
        n_le[v] += le


def _touched_difference(pooled, group1):
    """``ALE_1 - ALE_2`` at the touched voxels, one column per labelling."""
    comp = pooled.complement
    return _differences(comp.indptr, comp.indices, comp.data,
                        np.ascontiguousarray(group1, dtype=np.bool_))


def group_difference(pooled, group1):
    """ALE of one set of pooled experiments minus the ALE of the rest.

    Parameters
    ----------
    pooled : PooledGroups
    group1 : array-like of bool, shape (n_experiments,)
        Which pooled experiments form group 1.

    Returns
    -------
    ndarray of shape (n_voxels,)
        The difference at every mask voxel (0 where no experiment reaches).
    """
    group1 = np.asarray(group1, dtype=bool)
    if group1.shape != (pooled.n_experiments,):
        raise CbmaError(f"expected one group label per pooled experiment "
                        f"({pooled.n_experiments}), got shape {group1.shape}")
    out = np.zeros(pooled.n_voxels)
    out[pooled.voxels] = _touched_difference(pooled, group1[:, None])[:, 0]
    return out


def observed_difference(pooled):
    """The observed ``D = ALE_1 - ALE_2`` at every mask voxel (``stat_desc-group1MinusGroup2``)."""
    labels = np.arange(pooled.n_experiments) < pooled.n_group1
    return group_difference(pooled, labels)


def permutation_labels(pooled, seed, contrast, iterations):
    """Group-1 membership of the pooled experiments under each permutation.

    Permutation ``i`` shuffles the pooled experiments with the generator
    :func:`cbma.null.iteration_rng` ``(seed, contrast, i)`` and gives the
    first ``n_group1`` of the shuffled order to group 1.

    Returns
    -------
    ndarray of bool, shape (n_experiments, n_iterations)
    """
    iterations = np.asarray(iterations, dtype=np.int64).reshape(-1)
    labels = np.zeros((pooled.n_experiments, iterations.size), dtype=bool)
    for col, it in enumerate(iterations):
        order = iteration_rng(seed, contrast, int(it)).permutation(pooled.n_experiments)
        labels[order[:pooled.n_group1], col] = True
    return labels


def permutation_chunk(pooled, seed, contrast, iterations, batch=BATCH):
    """One chunk of the subtraction's permutation null.

    Parameters
    ----------
    pooled : PooledGroups
    seed : int
        The run's seed (config ``seed``).
    contrast : str
        Name of the subtraction; with the seed and the permutation number it
        seeds each permutation.
    iterations : sequence of int
        Global permutation numbers (0-based) to compute.
    batch : int
        Permutations per pass over the voxels; the results do not depend on it.

    Returns
    -------
    dict of str to ndarray
        ``iterations`` (int64, n_iterations); ``n_ge`` and ``n_le`` (int32,
        n_voxels): at each mask voxel, how many permutations gave a difference
        >= and <= the observed one; ``max_abs`` (float64, n_iterations): each
        permutation's largest absolute difference over the mask (the
        voxel-level FWE null). Merge chunks with :func:`merge_chunks`.
    """
    iterations = np.asarray(iterations, dtype=np.int64).reshape(-1)
    if batch < 1:
        raise CbmaError(f"batch must be a positive number of permutations, got {batch}")
    observed = observed_difference(pooled)[pooled.voxels]
    n_ge = np.zeros(pooled.voxels.size, dtype=np.int64)
    n_le = np.zeros(pooled.voxels.size, dtype=np.int64)
    max_abs = np.zeros(iterations.size)
    comp = pooled.complement
    for b0 in range(0, iterations.size, batch):
        its = iterations[b0:b0 + batch]
        labels = permutation_labels(pooled, seed, contrast, its)
        _count_permutations(comp.indptr, comp.indices, comp.data, labels, observed, n_ge, n_le,
                            max_abs[b0:b0 + its.size])
    # voxels no experiment reaches: D = D_perm = 0 in every permutation
    full_ge = np.full(pooled.n_voxels, iterations.size, dtype=np.int32)
    full_le = full_ge.copy()
    full_ge[pooled.voxels] = n_ge
    full_le[pooled.voxels] = n_le
    return {"iterations": iterations, "n_ge": full_ge, "n_le": full_le, "max_abs": max_abs}


def merge_chunks(chunks, n_iters=None):
    """Add up chunk results into the null of the whole run.

    Parameters
    ----------
    chunks : iterable of dict
        Outputs of :func:`permutation_chunk` (or :func:`load_chunk`), any order.
    n_iters : int, optional
        If given, the chunks must hold exactly permutations ``0 .. n_iters - 1``.

    Returns
    -------
    dict of str to ndarray
        Same keys as a chunk; ``iterations`` and ``max_abs`` sorted by
        permutation number, ``n_ge`` and ``n_le`` summed (int64).
    """
    chunks = list(chunks)
    if not chunks:
        raise CbmaError("no permutation chunks to merge")
    n_vox = {c["n_ge"].shape for c in chunks}
    if len(n_vox) != 1:
        raise CbmaError(f"permutation chunks cover different numbers of voxels: {sorted(n_vox)}")
    iterations = np.concatenate([c["iterations"] for c in chunks]).astype(np.int64)
    order = np.argsort(iterations, kind="stable")
    iterations = iterations[order]
    repeated = iterations[1:][np.diff(iterations) == 0]
    if repeated.size:
        raise CbmaError(f"permutation {int(repeated[0])} is in more than one chunk")
    if iterations.size == 0:
        raise CbmaError("the permutation chunks hold no permutation")
    if n_iters is not None and not np.array_equal(iterations, np.arange(n_iters)):
        raise CbmaError(f"expected permutations 0-{n_iters - 1}, the chunks hold "
                        f"{iterations.size} ({iterations[0]}-{iterations[-1]})")
    n_ge = np.zeros(chunks[0]["n_ge"].shape, dtype=np.int64)
    n_le = np.zeros_like(n_ge)
    for c in chunks:
        n_ge += c["n_ge"]
        n_le += c["n_le"]
    return {
        "iterations": iterations,
        "n_ge": n_ge,
        "n_le": n_le,
        "max_abs": np.concatenate([c["max_abs"] for c in chunks])[order],
    }


def save_chunk(path, chunk):
    """Write a chunk's arrays to an ``.npz`` with fixed bytes (no timestamps)."""
    save_arrays(path, **{name: chunk[name] for name in CHUNK_ARRAYS})


def load_chunk(path):
    """Read what :func:`save_chunk` wrote."""
    arrays = load_arrays(path)
    missing = [k for k in CHUNK_ARRAYS if k not in arrays]
    if missing:
        raise InputFileError(path, None, f"permutation chunk lacks {', '.join(missing)}")
    return {k: arrays[k] for k in CHUNK_ARRAYS}


def chunk_bytes(chunk):
    """The bytes :func:`save_chunk` writes (for hashing and tests)."""
    buf = _io.BytesIO()
    save_chunk(buf, chunk)
    return buf.getvalue()


# --------------------------------------------------------------------------
# the gather: maps from the observed difference and the merged null
# --------------------------------------------------------------------------

def _check_null(difference, null):
    difference = np.asarray(difference, dtype=float)
    if difference.ndim != 1 or null["n_ge"].shape != difference.shape:
        raise CbmaError(f"the difference map has shape {difference.shape} but the permutation "
                        f"null covers {null['n_ge'].shape[0]} voxels")
    return difference, int(null["iterations"].size)


def _sign(null):
    """+1 where the observed difference sits in the upper part of its null, -1 lower, 0 tied."""
    return np.sign(null["n_le"] - null["n_ge"]).astype(float)


def subtraction_maps(difference, null, mode="nimare", group1_significant=None,
                     group2_significant=None):
    """Uncorrected maps of an ALE subtraction, named as NiMARE names them.

    Parameters
    ----------
    difference : ndarray of shape (n_voxels,)
        The observed ``ALE_1 - ALE_2`` (:func:`observed_difference`).
    null : dict
        The merged permutation null (:func:`merge_chunks`).
    mode : {"nimare", "eickhoff2012"}
        ``"nimare"``: every voxel, two-sided, asymmetric null:
        ``p = clip(2 min(U, L) / n, 1/n, 1 - 1/n)`` with ``U = #{D_perm >= D}``,
        ``L = #{D_perm <= D}``, ``z = Phi^-1(1 - p/2) sign(L - U)``.
        ``"eickhoff2012"``: one-sided tests inside the main effects:
        group 1 > group 2 where ``group1_significant``, with
        ``p = max(U / n, 1/n)``, and group 2 > group 1 where
        ``group2_significant``, with ``p = max(L / n, 1/n)`` (permutations
        that tie with the observed difference count as exceedances, as a
        permutation p-value counts them);
        ``z = Phi^-1(1 - p)``, positive for the first and negative for the
        second; where a voxel is in both main effects it carries the test
        with the smaller p (group 1 on ties); p = 1 and z = 0 elsewhere.
    group1_significant, group2_significant : ndarray of bool, shape (n_voxels,)
        Voxels significant in each group's corrected main-effect map
        (e.g. cluster-level FWE z > 1.645); needed for ``"eickhoff2012"``.

    Returns
    -------
    dict of str to ndarray
        ``stat_desc-group1MinusGroup2`` (D), ``p_``, ``z_`` and ``logp_``
        maps of the same contrast, masked vectors.
    """
    difference, n = _check_null(difference, null)
    n_ge = null["n_ge"].astype(float)
    n_le = null["n_le"].astype(float)
    if mode == "nimare":
        p = np.clip(2 * np.minimum(n_ge, n_le) / n, 1 / n, 1 - 1 / n)
        z = p_to_z(p, tail="two") * _sign(null)
    elif mode == "eickhoff2012":
        masks = []
        for name, m in (("group1_significant", group1_significant),
                        ("group2_significant", group2_significant)):
            if m is None:
                raise CbmaError(f"mode 'eickhoff2012' needs {name}, the voxels significant in "
                                "that group's corrected main effect")
            m = np.asarray(m)
            if m.shape != difference.shape or m.dtype != bool:
                raise CbmaError(f"{name} must be a boolean masked vector of {difference.size} "
                                f"voxels, got {m.dtype} of shape {m.shape}")
            masks.append(m)
        # ties count as exceedances: p = #{D_perm >= D} / n (group 1 > group 2)
        p_up = np.where(masks[0], np.maximum(n_ge / n, 1 / n), 1.0)
        p_down = np.where(masks[1], np.maximum(n_le / n, 1 / n), 1.0)  # #{D_perm <= D} / n
        up = p_up <= p_down
        p = np.where(up, p_up, p_down)
        z = np.where(up, p_to_z(p_up), -p_to_z(p_down)) + 0.0  # no -0.0
    else:
        raise CbmaError(f"unknown subtraction mode {mode!r}; expected one of {list(MODES)}")
    return {
        f"stat_{CONTRAST}": difference,
        f"p_{CONTRAST}": p,
        f"z_{CONTRAST}": z,
        f"logp_{CONTRAST}": p_to_logp(p),
    }


def subtraction_fwe_maps(difference, null):
    """Voxel-level FWE maps of an ALE subtraction from the max ``|D|`` null.

    ``p = #{max |D_perm| >= |D|} / n`` (clipped to ``[1/n, 1 - 1/n]``),
    ``z = Phi^-1(1 - p/2)`` signed as the uncorrected z (``sign(L - U)``),
    as NiMARE's ``ALESubtraction.correct_fwe_montecarlo`` with ``vfwe_only``.

    Returns
    -------
    dict of str to ndarray
        ``p_``, ``z_`` and ``logp_desc-group1MinusGroup2_level-voxel_corr-FWE_method-montecarlo``.
    """
    difference, _ = _check_null(difference, null)
    p = null_to_p(np.abs(difference), null["max_abs"])
    suffix = SUBTRACTION_FWE
    return {
        f"p_{suffix}": p,
        f"z_{suffix}": p_to_z(p, tail="two") * _sign(null),
        f"logp_{suffix}": p_to_logp(p),
    }


def ale_subtraction(ma1, ma2, seed, contrast, n_iters, mode="nimare", group1_significant=None,
                    group2_significant=None):
    """Whole ALE subtraction in one call: pool, permute, gather (for small runs and tests).

    Parameters are those of :func:`pool_groups`, :func:`permutation_chunk`
    and :func:`subtraction_maps`.

    Returns
    -------
    maps : dict of str to ndarray
        Uncorrected and voxel-level FWE maps.
    null : dict of str to ndarray
        The permutation null (:func:`merge_chunks`).
    """
    pooled = pool_groups(ma1, ma2)
    null = merge_chunks([permutation_chunk(pooled, seed, contrast, range(n_iters))])
    diff = observed_difference(pooled)
    maps = subtraction_maps(diff, null, mode, group1_significant, group2_significant)
    maps.update(subtraction_fwe_maps(diff, null))
    return maps, null


# --------------------------------------------------------------------------
# conjunction
# --------------------------------------------------------------------------

def conjunction_threshold(map_name, alpha):
    """The value each analysis' map must exceed for a voxel to enter a conjunction.

    A conjunction is significant where every analysis is significant on its
    own (Nichols et al. 2005): the minimum statistic is tested against the
    critical value of a single map.

    Parameters
    ----------
    map_name : str
        The corrected map that enters the conjunction. A ``..._thresholded``
        map is already 0 wherever the corrected p is at least ``alpha``, so
        it must exceed 0; a corrected z map (the z of a corrected p) must
        exceed the one-sided z of ``alpha``.
    alpha : float
        The analysis' family-wise error rate.

    Returns
    -------
    float
    """
    if is_thresholded(map_name):
        return 0.0
    if "_corr-" not in map_name:
        raise CbmaError(f"a conjunction takes corrected maps; {map_name!r} is not one")
    return float(p_to_z(alpha))


def conjunction(maps, thresholds):
    """Minimum-statistic conjunction of two or more maps (Nichols et al. 2005).

    A voxel is in the conjunction only if every map exceeds its threshold
    there (the single map's critical value: see :func:`conjunction_threshold`);
    it then takes the smallest of the maps' values, else 0. NiMARE's
    ``conjunction_analysis`` takes the minimum wherever the product of the
    maps is positive, which neither thresholds the maps nor excludes voxels
    negative in an even number of them.

    Parameters
    ----------
    maps : sequence of ndarray
        Maps of one shape (masked vectors or volumes on one grid).
    thresholds : float or sequence of float
        The value each map must exceed (one for all, or one per map). No
        default: a conjunction of unthresholded maps is not a test.

    Returns
    -------
    ndarray
        Same shape as the inputs.
    """
    maps = [np.asarray(m) for m in maps]
    if len(maps) < 2:
        raise CbmaError(f"a conjunction needs at least two maps, got {len(maps)}")
    shapes = sorted({m.shape for m in maps})
    if len(shapes) != 1:
        raise CbmaError(f"conjunction maps have different shapes: {shapes}")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(maps),))
    if not np.all(np.isfinite(thresholds)):
        raise CbmaError(f"conjunction thresholds must be finite numbers, got {thresholds}")
    stack = np.stack(maps)
    above = np.all(stack > thresholds.reshape((-1,) + (1,) * maps[0].ndim), axis=0)
    return np.where(above, stack.min(axis=0), 0).astype(stack.dtype)
