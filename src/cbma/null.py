"""Monte Carlo null of the maximum statistic, cluster size and cluster mass.

ALE (:class:`RandomFociModel`), and MKDA density and KDA
(:class:`SphereFociModel`), through one entry point, :func:`run_iterations`.

Each iteration gives every focus a random in-mask voxel (with replacement),
keeping experiment membership and kernels, computes the ALE map and records
its maximum, and the size and mass of its largest cluster above the
cluster-forming threshold (6-connectivity). Iterations are independent:
iteration ``i`` of analysis ``a`` draws from its own random stream, seeded
from ``(seed, a, i)``, so any split of the iterations into chunks, run in any
order on any machine, gives the same numbers.

The hot loop is compiled with numba and works in two stages. It first sums
the kernels' cores only (the voxels where a kernel is at least ``core_min``),
which costs a small fraction of the full kernels and bounds every voxel's
ALE from below and above: a voxel an experiment's core misses gets at most
``core_min`` from that experiment, and nothing if none of its foci is near.
Only the voxels that may exceed the
cluster-forming threshold, or may be the maximum, are then computed exactly
from every focus's full kernel, in the same order of operations as a plain
computation. The results are therefore the numbers of the full computation,
bit for bit; :func:`iteration_reference` is a plain numpy/scipy version of
one iteration that the tests compare it with. The first stage's sums live
on the mask's rows only (each row of the volume from its first in-mask
voxel to its last: a fifth of the padded volume, 0.9 MB for the 2 mm MNI
mask, which stays in the processor's cache), each core is added as runs of
consecutive voxels along those rows, and one pass over them, skipping
blocks with nothing below the bound, lists the voxels for the second stage.
In large meta-analyses, whose cores' voxel updates outnumber the volume's
voxels, the cost per run outweighs the cache, and the first stage sums on
the whole padded volume voxel by voxel instead (:data:`DENSE_SHARE`; the
same numbers either way).

The sphere kernels' loop (:func:`_sphere_iterations`) counts, at every voxel
a sphere reaches, the experiments (MKDA) or foci (KDA) covering it: the
statistic is the kernel value times an integer count, exact whatever the
order of the additions. With experiment weights (MKDA, Wager et al. 2007) it
sums the weights in experiment order, as the observed statistic is summed,
so the two agree to the bit. Both loops find clusters with the same
breadth-first search (:func:`_largest_cluster`; ALE's starts each cluster at
its first voxel in voxel order). Both models draw the random foci with the
same code, so analyses of the same experiments under the same seed and
analysis name see the same random datasets.
"""

import hashlib
import time

import numba
import numpy as np
from scipy import ndimage

from .ale import ale_stat
from .clusters import FACE_CONNECTIVITY
from .kernels import kernel_bank, kernel_reach

NULL_COLUMNS = ["iteration", "max_stat", "max_cluster_size", "max_cluster_mass"]
# The cores' share of the cluster-forming threshold: kernel values of at least
# CORE_SHARE * -log(1 - threshold) / n_experiments form a kernel's core. A speed
# setting (see the module's description); the results do not depend on it.
CORE_SHARE = 0.1
# The first stage works on the whole padded volume, voxel by voxel, instead of
# on the mask's rows run by run, once the cores' voxel updates per iteration
# are at least this share of the volume's voxels (a speed setting too).
DENSE_SHARE = 1.0
# Cells per widest kernel half-width of the grid that finds the foci near a
# voxel in the exact stage (a speed setting too).
CELL_DIVISIONS = 2


def analysis_key(name):
    """A stable 32-bit integer for an analysis name (enters the seeds)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def iteration_rng(seed, analysis, iteration):
    """The random generator of one Monte Carlo iteration."""
    return np.random.default_rng(np.random.SeedSequence([seed, analysis_key(analysis), iteration]))


class _RandomFoci:
    """Random foci on a zero-padded copy of the mask: what every null model shares.

    Each iteration gives every focus an in-mask voxel, uniformly with
    replacement, from the iteration's own stream (:func:`iteration_rng`), in
    the order of the foci. The ALE and the sphere models draw through this
    one method, so the random datasets of analyses of the same experiments
    under the same seed and name are the same whatever the kernel.
    :meth:`sample_from` makes the draws weighted instead (the grey-matter
    null of :mod:`cbma.null_sampling`), still one stream per iteration.

    Parameters
    ----------
    n_foci : ndarray of int, shape (n_experiments,)
        Number of foci of each experiment.
    mask : cbma.space.BrainMask
    pad : int
        Zero voxels added on every side, at least the kernels' reach plus one
        (so that no kernel offset or cluster step leaves the padded volume).
    """

    def __init__(self, n_foci, mask, pad):
        self.mask = mask
        self.pad = pad
        self.padded_shape = tuple(s + 2 * pad for s in mask.shape)
        self.strides = np.array([self.padded_shape[1] * self.padded_shape[2],
                                 self.padded_shape[2], 1])
        padded_mask = np.pad(mask.data, pad)
        self.in_mask = padded_mask.ravel().astype(np.uint8)
        # padded flat index of each in-mask voxel, in the mask's C order
        self.candidates = np.flatnonzero(padded_mask).astype(np.int64)
        n_foci = np.asarray(n_foci, dtype=np.int64)
        self.foci_ptr = np.concatenate([[0], np.cumsum(n_foci)]).astype(np.int64)
        self.n_foci_total = int(self.foci_ptr[-1])
        # cumulative sampling probabilities of the mask's voxels; None: uniform
        self.sampling_cdf = None

    @property
    def n_experiments(self):
        return self.foci_ptr.size - 1

    def sample_from(self, weights):
        """Draw the random foci with probabilities proportional to ``weights``.

        Parameters
        ----------
        weights : array-like of shape (n_mask_voxels,) or None
            A non-negative weight per in-mask voxel, in the mask's C order
            (e.g. :func:`cbma.null_sampling.grey_matter_probability`); voxels
            of weight 0 never receive a focus. None: uniform draws, the
            default (NiMARE's and GingerALE's null), drawn exactly as before.

        Returns
        -------
        self
            The model, for chaining.

        Raises
        ------
        ValueError
            If the weights do not match the mask's voxels, are negative or not
            finite, or are all 0.
        """
        if weights is None:
            self.sampling_cdf = None
            return self
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (self.candidates.size,):
            raise ValueError(f"expected one sampling weight per mask voxel "
                             f"({self.candidates.size}), got shape {weights.shape}")
        if not np.all(np.isfinite(weights)) or (weights < 0).any():
            raise ValueError("sampling weights must be finite and non-negative")
        cdf = np.cumsum(weights)
        if cdf[-1] <= 0:
            raise ValueError("sampling weights are all 0: no voxel could receive a focus")
        # a voxel of weight 0 adds 0 to the sum: its cdf step is empty, never drawn
        self.sampling_cdf = cdf / cdf[-1]
        return self

    def draw_voxels(self, seed, analysis, iterations):
        """In-mask voxel number (mask C order) of every focus, one row per iteration.

        Uniform draws take ``integers(0, n_voxels)`` from each iteration's
        stream; weighted draws (:meth:`sample_from`) invert the weights'
        cumulative distribution at ``random()`` draws of the same stream.
        """
        out = np.empty((len(iterations), self.n_foci_total), dtype=np.int64)
        n = self.candidates.size
        cdf = self.sampling_cdf
        for row, it in enumerate(iterations):
            rng = iteration_rng(seed, analysis, it)
            if cdf is None:
                out[row] = rng.integers(0, n, self.n_foci_total)
            else:
                out[row] = np.searchsorted(cdf, rng.random(self.n_foci_total), side="right")
        return out

    def draw(self, seed, analysis, iterations):
        """Padded flat voxel of every focus, one row per iteration."""
        return self.candidates[self.draw_voxels(seed, analysis, iterations)]


class RandomFociModel(_RandomFoci):
    """Everything an ALE iteration needs, laid out for the compiled loop.

    Parameters
    ----------
    n_foci : ndarray of int, shape (n_experiments,)
        Number of foci of each experiment.
    fwhms : ndarray, shape (n_experiments,)
        Kernel FWHM of each experiment, in mm.
    mask : cbma.space.BrainMask
        Random foci are drawn from its voxels, and the statistic lives on it.
    """

    def __init__(self, n_foci, fwhms, mask):
        kernels, which = kernel_bank(fwhms, mask.voxel_size)
        # the compiled loop reads each kernel from a cube: a kernel that is
        # narrower along some axis (anisotropic voxels) is padded with zeros
        kernels = [_as_cube(kern) for kern in kernels]
        super().__init__(n_foci, mask, max(kern.shape[0] // 2 for kern in kernels) + 1)
        # each kernel's nonzero voxels (offsets and values), and log(1 - kernel)
        # as a dense cube
        offsets, values, ptr = [], [], [0]
        cubes, cube_ptr, halves = [], [0], []
        for kern in kernels:
            half = kern.shape[0] // 2
            nz = np.argwhere(kern > 0)
            offsets.append((nz - half) @ self.strides)
            values.append(kern[tuple(nz.T)])
            ptr.append(ptr[-1] + len(nz))
            cubes.append(np.log1p(-kern).ravel())
            cube_ptr.append(cube_ptr[-1] + kern.size)
            halves.append(half)
        self.k_off = np.concatenate(offsets).astype(np.int64)
        self.k_val = np.concatenate(values).astype(np.float64)
        self.k_log = np.log1p(-self.k_val)
        self.k_ptr = np.asarray(ptr, dtype=np.int64)
        self.cube_log = np.concatenate(cubes)
        self.cube_ptr = np.asarray(cube_ptr, dtype=np.int64)
        self.cube_half = np.asarray(halves, dtype=np.int64)
        self.exp_kernel = np.asarray(which, dtype=np.int64)

    def core(self, core_min):
        """The kernels' cores: ``(ptr, offsets, log(1 - value))`` of values >= core_min."""
        keep = self.k_val >= core_min
        counts = np.add.reduceat(keep.astype(np.int64), self.k_ptr[:-1])
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ptr, self.k_off[keep], self.k_log[keep]


def _as_cube(kernel):
    """A kernel zero-padded to a cube about its centre voxel."""
    reach = kernel_reach(kernel)
    pad = reach.max() - reach
    return np.pad(kernel, [(int(a), int(a)) for a in pad])


class SphereFociModel(_RandomFoci):
    """Everything an MKDA or KDA iteration needs, laid out for the compiled loop.

    Parameters
    ----------
    n_foci : ndarray of int, shape (n_experiments,)
        Number of foci of each experiment.
    offsets : ndarray of int, shape (n, 3)
        The sphere's voxel offsets (:func:`cbma.spheres.sphere_offsets`).
    mask : cbma.space.BrainMask
        Random foci are drawn from its voxels (as for ALE: the same draws),
        and the statistic lives on it.
    value : float
        The kernel's value (NiMARE's ``value``, 1 by default); positive.
    sum_overlap : bool
        False (MKDA): an experiment adds ``value`` once to every voxel within
        the sphere of any of its foci. True (KDA): it adds ``value`` per focus
        whose sphere covers the voxel.
    weights : ndarray of shape (n_experiments,), optional
        MKDA only: experiment ``e`` adds ``value * weights[e]`` instead
        (:func:`cbma.mkda.wager_weights`), summed in experiment order as
        :func:`cbma.mkda.mkda_density` sums the observed statistic, so the
        two agree to the bit. Unit weights are the unweighted model.
    """

    def __init__(self, n_foci, offsets, mask, value=1.0, sum_overlap=False, weights=None):
        offsets = np.atleast_2d(np.asarray(offsets, dtype=np.int64))
        if offsets.ndim != 2 or offsets.shape[1] != 3 or offsets.shape[0] == 0:
            raise ValueError(f"offsets must be a non-empty (n, 3) array, got {offsets.shape}")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"the kernel value must be positive, got {value!r}")
        super().__init__(n_foci, mask, int(np.abs(offsets).max()) + 1)
        self.offsets = offsets
        # flat offsets in the padded volume, nearest first in memory order
        self.s_off = np.sort(offsets @ self.strides).astype(np.int64)
        self.value = float(value)
        self.sum_overlap = bool(sum_overlap)
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            if sum_overlap:
                raise ValueError("experiment weights are for MKDA density, not KDA")
            if weights.shape != (self.n_experiments,):
                raise ValueError(f"expected {self.n_experiments} experiment weights, got "
                                 f"shape {weights.shape}")
            if not np.all(np.isfinite(weights) & (weights > 0)):
                raise ValueError("experiment weights must be positive numbers")
            if np.all(weights == 1):
                weights = None
        #: the experiments' weights; empty when they all count once
        self.weights = np.empty(0) if weights is None else weights


@numba.njit(cache=True, nogil=True)
def _bin_foci(fijk, cell, dims, cell_start, cell_foci):
    """Sort the foci into cubic cells of side ``cell`` (counting sort, stable)."""
    cell_start[:] = 0
    n = fijk.shape[0]
    for f in range(n):
        c = ((fijk[f, 0] // cell) * dims[1] + fijk[f, 1] // cell) * dims[2] + fijk[f, 2] // cell
        cell_start[c + 1] += 1
    for c in range(1, cell_start.size):
        cell_start[c] += cell_start[c - 1]
    fill = cell_start[:-1].copy()
    for f in range(n):
        c = ((fijk[f, 0] // cell) * dims[1] + fijk[f, 1] // cell) * dims[2] + fijk[f, 2] // cell
        cell_foci[fill[c]] = f
        fill[c] += 1


@numba.njit(cache=True, nogil=True)
def _exact_log(v, fijk, focus_exp, exp_kernel, cube_ptr, cube_half, cube_log, strides,
               cell, reach, dims, cell_start, cell_foci, low):
    """log(1 - ALE) at padded voxel ``v``, from the full kernels of the foci near it.

    Only the foci in the cells within ``reach`` cells of ``v``'s can reach it
    (``reach`` cells are at least as wide as the widest kernel's half-width).
    Each experiment's minimum of log(1 - kernel) is then summed in experiment
    order, as a plain computation does.
    """
    vi = v // strides[0]
    vj = (v % strides[0]) // strides[1]
    vk = v % strides[1]
    ci, cj, ck = vi // cell, vj // cell, vk // cell
    for a in range(max(ci - reach, 0), min(ci + reach + 1, dims[0])):
        for b in range(max(cj - reach, 0), min(cj + reach + 1, dims[1])):
            row = (a * dims[1] + b) * dims[2]
            first = cell_start[row + max(ck - reach, 0)]
            last = cell_start[row + min(ck + reach + 1, dims[2])]
            for q in range(first, last):  # the cells of a row are contiguous
                f = cell_foci[q]
                e = focus_exp[f]
                kern = exp_kernel[e]
                half = cube_half[kern]
                side = 2 * half + 1
                di = vi - fijk[f, 0] + half
                dj = vj - fijk[f, 1] + half
                dk = vk - fijk[f, 2] + half
                if 0 <= di < side and 0 <= dj < side and 0 <= dk < side:
                    val = cube_log[cube_ptr[kern] + (di * side + dj) * side + dk]
                    if val < low[e]:
                        low[e] = val
    total = 0.0
    for e in range(low.size):
        if low[e] < 0.0:
            total += low[e]
            low[e] = 0.0
    return total


@numba.njit(cache=True, nogil=True)
def _count_prefix(cell_start, dims, prefix):
    """``prefix[a, b, d]``: the number of foci in the cells before ``(a, b, d)`` on every axis."""
    for a in range(dims[0]):
        for b in range(dims[1]):
            for d in range(dims[2]):
                c = (a * dims[1] + b) * dims[2] + d
                prefix[a + 1, b + 1, d + 1] = (
                    cell_start[c + 1] - cell_start[c]
                    + prefix[a, b + 1, d + 1] + prefix[a + 1, b, d + 1]
                    + prefix[a + 1, b + 1, d] - prefix[a, b, d + 1] - prefix[a, b + 1, d]
                    - prefix[a + 1, b, d] + prefix[a, b, d])


@numba.njit(cache=True, nogil=True)
def _foci_near(v, strides, cell, reach, dims, prefix):
    """The number of foci in the cells within ``reach`` cells of padded voxel ``v``'s.

    At least the number of foci whose kernels reach ``v`` (the foci that
    :func:`_exact_log` reads), from the cells' cumulative counts.
    """
    ci = (v // strides[0]) // cell
    cj = ((v % strides[0]) // strides[1]) // cell
    ck = (v % strides[1]) // cell
    a0, a1 = max(ci - reach, 0), min(ci + reach + 1, dims[0])
    b0, b1 = max(cj - reach, 0), min(cj + reach + 1, dims[1])
    d0, d1 = max(ck - reach, 0), min(ck + reach + 1, dims[2])
    return (prefix[a1, b1, d1] - prefix[a0, b1, d1] - prefix[a1, b0, d1] - prefix[a1, b1, d0]
            + prefix[a0, b0, d1] + prefix[a0, b1, d0] + prefix[a1, b0, d0]
            - prefix[a0, b0, d0])


@numba.njit(cache=True, nogil=True)
def _sum_kernels(it, centres, foci_ptr, exp_kernel, ptr, off, logv, in_mask, lma, acc,
                 exp_list, touched):
    """acc[v] = sum over experiments of min over its foci of log(1 - kernel) at v.

    Returns the number of voxels written, listed in ``touched``.
    """
    n_touched = 0
    for e in range(foci_ptr.size - 1):
        k0 = ptr[exp_kernel[e]]
        k1 = ptr[exp_kernel[e] + 1]
        n_exp_vox = 0
        for f in range(foci_ptr[e], foci_ptr[e + 1]):
            c = centres[it, f]
            for j in range(k0, k1):
                v = c + off[j]
                if in_mask[v]:
                    old = lma[v]
                    if old == 0.0:
                        exp_list[n_exp_vox] = v
                        n_exp_vox += 1
                        lma[v] = logv[j]
                    elif logv[j] < old:
                        lma[v] = logv[j]
        for q in range(n_exp_vox):
            v = exp_list[q]
            if acc[v] == 0.0:
                touched[n_touched] = v
                n_touched += 1
            acc[v] += lma[v]
            lma[v] = 0.0
    return n_touched


@numba.njit(cache=True, nogil=True)
def _sum_cores(centres_it, focus_kernel, dense, core_ptr, core_off, run_ptr, run_first,
               run_row, run_z, core_log, row_len, span_lo, span_hi, span_start, approx):
    """approx = sum over all foci of the core's log(1 - kernel), on the mask's rows (float32).

    ``approx`` holds the mask's rows one after the other (a row: the voxels
    along the volume's last axis, ``row_len`` of them; of each row only the
    span from its first to its last in-mask voxel, ``span_lo:span_hi``, is
    kept, from ``span_start``): a fifth of the padded volume, small enough
    to stay in the processor's cache. Each core is a list of runs, voxels
    consecutive along a row (:func:`_core_runs`), added as one contiguous
    block where it meets the row's span; what falls outside the spans is
    outside the mask, and dropped. Foci go in voxel order, so that
    neighbouring kernels share cache lines.

    With ``dense``, ``approx`` is the whole padded volume instead, and each
    core is added voxel by voxel (``core_ptr``, ``core_off``): cheaper once
    the cores' voxel updates outnumber the volume's voxels (large
    meta-analyses), where the cost per run outweighs the cache.
    """
    order = np.argsort(centres_it)
    if dense:
        for q in range(order.size):
            f = order[q]
            c = centres_it[f]
            k = focus_kernel[f]
            for j in range(core_ptr[k], core_ptr[k + 1]):
                approx[c + core_off[j]] += core_log[j]
        return
    for q in range(order.size):
        f = order[q]
        c = centres_it[f]
        k = focus_kernel[f]
        c_row = c // row_len
        c_z = c - c_row * row_len
        for r in range(run_ptr[k], run_ptr[k + 1]):
            row = c_row + run_row[r]
            lo = c_z + run_z[r]
            a = max(lo, span_lo[row])
            b = min(lo + run_first[r + 1] - run_first[r], span_hi[row])
            if a >= b:
                continue
            shift = span_start[row] - span_lo[row]  # approx index of voxel z of the row
            j = run_first[r] - lo  # core_log index of voxel z of the run
            # as slices, which the compiler knows do not overlap: vector adds
            target = approx[shift + a:shift + b]
            source = core_log[j + a:j + b]
            for i in range(b - a):
                target[i] += source[i]


@numba.njit(cache=True, nogil=True)
def _list_below(approx, level, dense, span_voxel, out, out_value):
    """The voxels whose first-stage sum is below ``level`` (< 0).

    Lists their padded flat indices in ``out`` and their sums in
    ``out_value``, in voxel order; returns their number. Blocks of 32 sums
    none of which is below ``level`` (most of them) are passed over whole.
    ``dense``: ``approx`` is the padded volume (:func:`_sum_cores`).
    """
    n = 0
    block = 32
    for b0 in range(0, approx.size, block):
        b1 = min(b0 + block, approx.size)
        if b1 - b0 == block:  # counting, not branching: vector compares
            below = 0
            for i in range(b0, b0 + block):
                below += approx[i] < level
            if below == 0:
                continue
        for i in range(b0, b1):
            if approx[i] < level:
                out[n] = i if dense else span_voxel[i]
                out_value[n] = approx[i]
                n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _largest_cluster(voxels, n, state, stat, threshold, strides, queue):
    """Size and mass of the largest 6-connected clusters of the marked voxels.

    ``voxels[:n]`` lists every supra-threshold voxel (padded flat index), each
    marked ``state[v] == 1`` by the caller; a breadth-first search from each
    unvisited one collects its cluster, whose ``stat - threshold`` is then
    summed in voxel order: the mass depends only on the cluster, not on the
    order the voxels were listed or visited in. ``state`` is back to 0 on
    return. ``queue`` holds at least ``n``.

    Returns
    -------
    (int, float)
        Largest cluster size (voxels) and largest cluster mass (0 and 0.0 if n = 0).
    """
    neighbours = (strides[0], -strides[0], strides[1], -strides[1], 1, -1)
    max_size = 0
    max_mass = 0.0
    for q in range(n):
        v = voxels[q]
        if state[v] != 1:
            continue
        state[v] = 2
        queue[0] = v
        head, tail = 0, 1
        while head < tail:
            u = queue[head]
            head += 1
            for d in neighbours:
                w = u + d
                if state[w] == 1:
                    state[w] = 2
                    queue[tail] = w
                    tail += 1
        if tail > max_size:
            max_size = tail
        queue[:tail].sort()
        mass = 0.0
        for q2 in range(tail):
            mass += stat[queue[q2]] - threshold
        if mass > max_mass:
            max_mass = mass
    for q in range(n):
        state[voxels[q]] = 0
    return max_size, max_mass


@numba.njit(cache=True, nogil=True)
def _iterations(centres, foci_ptr, exp_kernel, dense, core_ptr, core_off, run_ptr, run_first,
                run_row, run_z, core_log, core_gap, span_lo, span_hi, span_start, span_voxel,
                k_ptr, k_off, k_log, cube_ptr, cube_half, cube_log, in_mask, strides,
                threshold, approx, lma, acc, state, exp_list, touched, value, queue, fijk, out):
    # Works in log space: an experiment's log(1 - MA) at a voxel is the minimum
    # of its kernels' log(1 - value) there (log1p is monotone, so this equals
    # log1p(-max MA) exactly), and ALE = -expm1(sum over experiments).
    #
    # Stage 1 sums the cores' log(1 - kernel) over all foci (S). Every term is
    # <= 0, so an experiment's minimum over its foci is >= the sum of its
    # terms, and the part of a kernel outside its core adds at most core_gap:
    # the exact log(1 - ALE) is >= S - n_experiments * core_gap ("lower").
    # Only the experiments of the foci whose kernels reach a voxel can add
    # anything there, so n_experiments may be replaced by the number of foci
    # in the cells around it where that is smaller (many experiments, few of
    # them near: half the exact computations for 500 experiments).
    # A voxel whose lower bound is at or above the threshold's log cannot be
    # in a cluster; one whose lower bound is above an exact value found
    # elsewhere cannot be the maximum. Only the other voxels are computed
    # exactly (stage 2), from the foci near them.
    n_exp = foci_ptr.size - 1
    n_foci = centres.shape[1]
    focus_exp = np.empty(n_foci, dtype=np.int64)
    for e in range(n_exp):
        focus_exp[foci_ptr[e]:foci_ptr[e + 1]] = e
    focus_kernel = exp_kernel[focus_exp]
    low = np.zeros(n_exp)
    # cells for finding the foci near a voxel: CELL_DIVISIONS cells span the
    # widest half-kernel, and the foci of the cells within ``reach`` can reach it
    cell = max(-(-cube_half.max() // CELL_DIVISIONS), 1)
    reach = max(-(-cube_half.max() // cell), 1)
    dims = np.empty(3, dtype=np.int64)
    dims[0] = (in_mask.size // strides[0]) // cell + 1
    dims[1] = (strides[0] // strides[1]) // cell + 1
    dims[2] = strides[1] // cell + 1
    cell_start = np.zeros(dims[0] * dims[1] * dims[2] + 1, dtype=np.int64)
    cell_foci = np.empty(n_foci, dtype=np.int64)
    prefix = np.zeros((dims[0] + 1, dims[1] + 1, dims[2] + 1), dtype=np.int64)
    # ALE > threshold  <=>  acc < log1p(-threshold); the margin lets rounding
    # cases through to the exact test below.
    log_threshold = np.log1p(-threshold) + 1e-12
    band = n_exp * core_gap + 1e-12
    # a voxel is skipped when its lower bound approx * (1 + 1e-4) - band is at
    # or above log_threshold, i.e. when approx >= skip_level
    skip_level = np.float32((log_threshold + band) / (1 + 1e-4))
    if skip_level * (1 + 1e-4) - band < log_threshold:  # float32 rounding: one step down
        skip_level = np.nextafter(skip_level, np.float32(0))
    for it in range(centres.shape[0]):
        for f in range(n_foci):
            c = centres[it, f]
            fijk[f, 0] = c // strides[0]
            fijk[f, 1] = (c % strides[0]) // strides[1]
            fijk[f, 2] = c % strides[1]
        _bin_foci(fijk, cell, dims, cell_start, cell_foci)
        _count_prefix(cell_start, dims, prefix)
        # stage 1
        _sum_cores(centres[it], focus_kernel, dense, core_ptr, core_off, run_ptr, run_first,
                   run_row, run_z, core_log, strides[1], span_lo, span_hi, span_start, approx)
        # stage 2: the voxels that may pass the threshold, computed exactly
        # (float32 rounding of S: a relative 1e-4 is far more than it can be)
        n_cand = _list_below(approx, skip_level, dense, span_voxel, touched, value)
        min_acc = 0.0
        n_supra = 0
        for q in range(n_cand):
            v = touched[q]
            if not in_mask[v]:
                continue
            # only the experiments of the foci near v can add to the band: a
            # tighter bound where they are fewer than all (large meta-analyses)
            near = _foci_near(v, strides, cell, reach, dims, prefix)
            if near < n_exp and value[q] * (1 + 1e-4) - (near * core_gap + 1e-12) >= \
                    log_threshold:
                continue
            a = _exact_log(v, fijk, focus_exp, exp_kernel, cube_ptr, cube_half, cube_log,
                           strides, cell, reach, dims, cell_start, cell_foci, low)
            if a < min_acc:
                min_acc = a
            if a < log_threshold:
                s = -np.expm1(a)
                if s > threshold:
                    state[v] = 1
                    acc[v] = s
                    touched[n_supra], touched[q] = v, touched[n_supra]
                    value[n_supra], value[q] = value[q], value[n_supra]
                    n_supra += 1
        n_touched = 0
        if n_supra == 0:  # every voxel the cores reach (their sums are all < 0)
            n_touched = _list_below(approx, np.float32(0.0), dense, span_voxel, touched, value)
        if n_touched > 0:
            # no cluster: the maximum is the exact minimum of log(1 - ALE) over
            # the voxels whose lower bound is below the exact value of the best
            # stage-1 voxel (and below the threshold's: those were done above)
            best = -1
            for q in range(n_touched):
                if in_mask[touched[q]] and (best < 0 or value[q] < value[best]):
                    best = q
            a = _exact_log(touched[best], fijk, focus_exp, exp_kernel, cube_ptr, cube_half,
                           cube_log, strides, cell, reach, dims, cell_start, cell_foci, low)
            if a < min_acc:
                min_acc = a
            for q in range(n_touched):
                lower = value[q] * (1 + 1e-4) - band
                if lower >= min_acc or not in_mask[touched[q]]:
                    continue
                near = _foci_near(touched[q], strides, cell, reach, dims, prefix)
                if near < n_exp:  # the bound the loop above used
                    lower = value[q] * (1 + 1e-4) - (near * core_gap + 1e-12)
                if lower < min_acc and lower >= log_threshold:
                    a = _exact_log(touched[q], fijk, focus_exp, exp_kernel, cube_ptr,
                                   cube_half, cube_log, strides, cell, reach, dims,
                                   cell_start, cell_foci, low)
                    if a < min_acc:
                        min_acc = a
        if n_supra == 0 and min_acc > -band:
            # A voxel that no core reaches might hold the maximum (very wide
            # kernels): the maximum comes from the full kernels.
            n_full = _sum_kernels(it, centres, foci_ptr, exp_kernel, k_ptr, k_off, k_log,
                                  in_mask, lma, acc, exp_list, queue)
            for q in range(n_full):
                if acc[queue[q]] < min_acc:
                    min_acc = acc[queue[q]]
                acc[queue[q]] = 0.0
        approx[:] = 0.0
        max_size, max_mass = _largest_cluster(touched, n_supra, state, acc, threshold,
                                              strides, queue)
        for q in range(n_supra):
            acc[touched[q]] = 0.0
        out[it, 0] = -np.expm1(min_acc)
        out[it, 1] = max_size
        out[it, 2] = max_mass


@numba.njit(cache=True, nogil=True)
def _sphere_iterations(centres, foci_ptr, s_off, strides, value, sum_overlap, weights,
                       threshold, voxel, stat, state, touched, queue, wsum, out):
    # voxel[v, 1] counts the experiments (MKDA) or the foci (KDA) whose spheres
    # cover v, so the statistic value * count does not depend on the order of
    # the additions. With experiment weights, wsum[v] sums the weights of the
    # experiments covering v, in experiment order (as mkda_density sums them).
    # voxel[v, 0] is -1 outside the mask, else 1 + the last
    # experiment that wrote v in this iteration (0: none): an experiment counts
    # a voxel once (MKDA), and the voxels written are listed once in
    # ``touched``, the only ones read and reset. Stamp and count side by side:
    # one cache line per sphere voxel.
    n_exp = foci_ptr.size - 1
    weighted = weights.size > 0
    for it in range(centres.shape[0]):
        n_touched = 0
        for e in range(n_exp):
            mark = e + 1
            for f in range(foci_ptr[e], foci_ptr[e + 1]):
                c = centres[it, f]
                for j in range(s_off.size):
                    v = c + s_off[j]
                    s = voxel[v, 0]
                    if s < 0:
                        continue
                    if s == 0:
                        touched[n_touched] = v
                        n_touched += 1
                    elif s == mark and not sum_overlap:
                        continue
                    voxel[v, 0] = mark
                    voxel[v, 1] += 1
                    if weighted:
                        wsum[v] += weights[e]
        max_stat = 0.0
        n_supra = 0
        for q in range(n_touched):
            v = touched[q]
            n = voxel[v, 1]
            voxel[v, 0] = 0
            voxel[v, 1] = 0
            if weighted:
                x = value * wsum[v]
                wsum[v] = 0.0
            else:
                x = value * n
            if x > max_stat:
                max_stat = x
            if x > threshold:
                stat[v] = x
                state[v] = 1
                touched[n_supra], touched[q] = v, touched[n_supra]
                n_supra += 1
        max_size, max_mass = _largest_cluster(touched, n_supra, state, stat, threshold,
                                              strides, queue)
        out[it, 0] = max_stat
        out[it, 1] = max_size
        out[it, 2] = max_mass


def _core_runs(core_ptr, core_off, row_len):
    """The kernels' cores as runs of voxels consecutive along the volume's rows.

    Parameters
    ----------
    core_ptr, core_off : ndarray
        The cores (:meth:`RandomFociModel.core`), offsets increasing in each.
    row_len : int
        Voxels per row of the padded volume (its last dimension).

    Returns
    -------
    tuple of ndarray
        ``(run_ptr, run_first, run_row, run_z)``: kernel ``k``'s runs are
        ``run_ptr[k]:run_ptr[k + 1]``; run ``r`` is the core voxels
        ``run_first[r]:run_first[r + 1]`` (``run_first`` ends with their
        number), and starts ``run_row[r]`` rows and ``run_z[r]`` voxels along
        the row from the focus.
    """
    n_vox = core_off.size
    starts = np.ones(n_vox, dtype=bool)
    starts[1:] = np.diff(core_off) != 1
    starts[core_ptr[:-1][core_ptr[:-1] < n_vox]] = True  # a kernel's first voxel
    first = np.flatnonzero(starts)
    # offset = rows * row_len + z with |z| < row_len / 2: the padding is wider
    # than any kernel, so a run never leaves its row
    half = row_len // 2
    run_z = (core_off[first] + half) % row_len - half
    run_row = (core_off[first] - run_z) // row_len
    return (np.searchsorted(first, core_ptr).astype(np.int64),
            np.append(first, n_vox).astype(np.int64), run_row.astype(np.int64),
            run_z.astype(np.int64))


def _mask_rows(in_mask, row_len):
    """Where the first stage keeps each row of the padded volume: its in-mask span.

    Returns
    -------
    tuple of ndarray
        ``(span_lo, span_hi, span_start, span_voxel)``: row ``r`` keeps voxels
        ``span_lo[r]:span_hi[r]`` along it (from its first in-mask voxel to
        its last; none if the row misses the mask), at ``span_start[r]`` of
        the first stage's array, whose element ``i`` is padded voxel
        ``span_voxel[i]``.
    """
    rows = in_mask.reshape(-1, row_len).astype(bool)
    hit = rows.any(axis=1)
    span_lo = np.where(hit, rows.argmax(axis=1), 0)
    span_hi = np.where(hit, row_len - rows[:, ::-1].argmax(axis=1), 0)
    length = span_hi - span_lo
    span_start = np.concatenate([[0], np.cumsum(length)[:-1]])
    span_voxel = (np.repeat(np.arange(rows.shape[0]) * row_len + span_lo - span_start, length)
                  + np.arange(length.sum()))
    return (span_lo.astype(np.int64), span_hi.astype(np.int64), span_start.astype(np.int64),
            span_voxel.astype(np.int64))


def _dense_first_stage(model, core_ptr):
    """Whether the cores' voxel updates per iteration reach DENSE_SHARE of the volume."""
    updates = np.diff(core_ptr)[np.repeat(model.exp_kernel, np.diff(model.foci_ptr))].sum()
    return bool(updates >= DENSE_SHARE * np.prod(model.padded_shape))


def run_iterations(model, seed, analysis, iterations, threshold, batch=100, log=None,
                   core_share=None, dense=None):
    """Monte Carlo null values for the given iteration numbers.

    Parameters
    ----------
    model : RandomFociModel or SphereFociModel
        ALE, or MKDA density / KDA (handed to :func:`run_sphere_iterations`).
    seed : int
        The run's seed (config ``seed``).
    analysis : str
        Analysis name; with the seed and the iteration number it seeds each iteration.
    iterations : sequence of int
        Global iteration numbers (0-based) to compute.
    threshold : float
        Cluster-forming threshold on the statistic (clusters are voxels strictly above it).
    batch : int
        Iterations per compiled call, between progress messages.
    log : callable, optional
        Called with a progress line after each batch.
    core_share : float, optional
        Overrides :data:`CORE_SHARE` (a speed setting of the ALE loop, for
        benchmarks and tests).
    dense : bool, optional
        Overrides the choice of the first stage's layout (:data:`DENSE_SHARE`;
        a speed setting of the ALE loop, for benchmarks and tests).

    Returns
    -------
    ndarray of shape (n_iterations, 3)
        Max statistic, largest cluster size (voxels) and largest cluster mass
        (sum of the statistic minus threshold over the cluster) per iteration.
    """
    if isinstance(model, SphereFociModel):
        if core_share is not None or dense is not None:
            raise TypeError("core_share and dense are settings of the ALE loop only")
        return run_sphere_iterations(model, seed, analysis, iterations, threshold, batch, log)
    iterations = np.asarray(iterations, dtype=np.int64)
    size = int(np.prod(model.padded_shape))
    row_len = int(model.strides[1])
    span_lo, span_hi, span_start, span_voxel = _mask_rows(model.in_mask, row_len)
    lma = np.zeros(size)
    acc = np.zeros(size)
    state = np.zeros(size, dtype=np.uint8)
    n_exp = model.foci_ptr.size - 1
    share = CORE_SHARE if core_share is None else core_share
    core_min = share * -np.log1p(-threshold) / n_exp
    core_ptr, core_off, core_log = model.core(core_min)
    # an experiment whose core misses a voxel adds at most this to its log(1 - ALE)
    core_gap = float(-np.log1p(-core_min)) * (1 + 1e-9)
    runs = _core_runs(core_ptr, core_off, row_len)
    core_log32 = core_log.astype(np.float32)
    if dense is None:
        dense = _dense_first_stage(model, core_ptr)
    approx = np.zeros(size if dense else span_voxel.size, dtype=np.float32)
    max_box = int(np.diff(model.k_ptr).max())
    per_exp = int(np.diff(model.foci_ptr).max()) * max_box
    exp_list = np.empty(min(per_exp, size), dtype=np.int64)
    touched = np.empty(min(model.n_foci_total * max_box, size), dtype=np.int64)
    value = np.empty(touched.size, dtype=np.float32)
    queue = np.empty_like(touched)
    fijk = np.empty((model.n_foci_total, 3), dtype=np.int64)
    out = np.empty((iterations.size, 3))
    start = time.perf_counter()
    for b0 in range(0, iterations.size, batch):
        its = iterations[b0:b0 + batch]
        centres = model.draw(seed, analysis, its)
        _iterations(centres, model.foci_ptr, model.exp_kernel, bool(dense), core_ptr, core_off,
                    *runs, core_log32, core_gap, span_lo, span_hi, span_start, span_voxel,
                    model.k_ptr, model.k_off, model.k_log, model.cube_ptr, model.cube_half,
                    model.cube_log, model.in_mask, model.strides, float(threshold), approx,
                    lma, acc, state, exp_list, touched, value, queue, fijk,
                    out[b0:b0 + its.size])
        if log is not None:
            done = b0 + its.size
            rate = done / (time.perf_counter() - start)
            log(f"{done}/{iterations.size} iterations ({rate:.0f}/s)")
    return out


def run_sphere_iterations(model, seed, analysis, iterations, threshold, batch=100, log=None):
    """Monte Carlo null values of MKDA density or KDA for the given iteration numbers.

    The contract of :func:`run_iterations` (which calls this for a
    :class:`SphereFociModel`): iteration ``i`` draws the same random foci as
    the ALE iteration ``i`` of the same seed and analysis name, and the
    results do not depend on how the iterations are split or ordered.

    Returns
    -------
    ndarray of shape (n_iterations, 3)
        Max statistic, largest cluster size (voxels) and largest cluster mass
        (sum of statistic minus threshold over the cluster) per iteration.
    """
    iterations = np.asarray(iterations, dtype=np.int64)
    work = _sphere_workspace(model)
    out = np.empty((iterations.size, 3))
    start = time.perf_counter()
    for b0 in range(0, iterations.size, batch):
        its = iterations[b0:b0 + batch]
        _sphere_batch(model, model.draw(seed, analysis, its), threshold, work,
                      out[b0:b0 + its.size])
        if log is not None:
            done = b0 + its.size
            rate = done / (time.perf_counter() - start)
            log(f"{done}/{iterations.size} iterations ({rate:.0f}/s)")
    return out


def _sphere_workspace(model):
    """The compiled loop's arrays over the padded volume, allocated once per run."""
    size = int(np.prod(model.padded_shape))
    voxel = np.zeros((size, 2), dtype=np.int32)  # (stamp, count), see _sphere_iterations
    voxel[model.in_mask == 0, 0] = -1
    stat = np.zeros(size)  # written and read at supra-threshold voxels only
    state = np.zeros(size, dtype=np.uint8)
    touched = np.empty(min(model.n_foci_total * model.s_off.size, size), dtype=np.int64)
    queue = np.empty_like(touched)
    wsum = np.zeros(size if model.weights.size else 0)  # weighted sums, see _sphere_iterations
    return voxel, stat, state, touched, queue, wsum


def _sphere_batch(model, centres, threshold, work, out):
    """Null values of the given random foci (rows of padded flat voxels) into ``out``."""
    _sphere_iterations(centres, model.foci_ptr, model.s_off, model.strides, model.value,
                       model.sum_overlap, model.weights, float(threshold), *work, out)


def _reference_summary(stat, mask, threshold):
    """Max statistic, largest cluster size and mass of a masked map (scipy labelling)."""
    vol = mask.unmask(stat, dtype=float)
    labels, n = ndimage.label(vol > threshold, structure=FACE_CONNECTIVITY)
    if n == 0:
        return stat.max(), 0, 0.0
    sizes = np.bincount(labels.ravel())[1:]
    masses = ndimage.sum_labels(vol - threshold, labels, index=np.arange(1, n + 1))
    return stat.max(), sizes.max(), masses.max()


def sphere_iteration_reference(model, centres, threshold):
    """One MKDA/KDA iteration computed plainly (dense sums, scipy labelling), for tests.

    Parameters
    ----------
    model : SphereFociModel
    centres : ndarray of shape (n_foci,)
        Padded flat voxel of each focus (a row of :meth:`SphereFociModel.draw`).
    threshold : float

    Returns
    -------
    tuple
        ``(max_stat, max_cluster_size, max_cluster_mass)``.
    """
    n_exp = model.n_experiments
    # unpadded voxel indices of the foci; spheres clipped to the volume, then the mask
    ijk = np.stack(np.unravel_index(centres, model.padded_shape), axis=1) - model.pad
    weighted = model.weights.size > 0
    counts = np.zeros(model.mask.shape, dtype=float if weighted else np.int64)
    for e in range(n_exp):
        ma = np.zeros(model.mask.shape, dtype=np.int64)
        for focus in ijk[model.foci_ptr[e]:model.foci_ptr[e + 1]]:
            vox = focus + model.offsets
            inside = np.all((vox >= 0) & (vox < model.mask.shape), axis=1)
            i, j, k = vox[inside].T
            if model.sum_overlap:
                np.add.at(ma, (i, j, k), 1)
            else:
                ma[i, j, k] = 1
        counts += model.weights[e] * ma if weighted else ma
    stat = model.value * model.mask.apply(counts)
    return _reference_summary(stat, model.mask, threshold)


def iteration_reference(model, centres, threshold):
    """One iteration computed plainly (dense MA maps, scipy labelling), for tests.

    Parameters
    ----------
    model : RandomFociModel or SphereFociModel
        (the latter handed to :func:`sphere_iteration_reference`)
    centres : ndarray of shape (n_foci,)
        Padded flat voxel of each focus (a row of :meth:`RandomFociModel.draw`).
    threshold : float

    Returns
    -------
    tuple
        ``(max_stat, max_cluster_size, max_cluster_mass)``.
    """
    import scipy.sparse as sp

    if isinstance(model, SphereFociModel):
        return sphere_iteration_reference(model, centres, threshold)
    rows = []
    for e in range(model.foci_ptr.size - 1):
        vol = np.zeros(int(np.prod(model.padded_shape)))
        k = model.exp_kernel[e]
        off = model.k_off[model.k_ptr[k]:model.k_ptr[k + 1]]
        val = model.k_val[model.k_ptr[k]:model.k_ptr[k + 1]]
        for c in centres[model.foci_ptr[e]:model.foci_ptr[e + 1]]:
            np.maximum.at(vol, c + off, val)
        rows.append(vol[model.candidates])
    stat = ale_stat(sp.csr_matrix(np.array(rows)))
    return _reference_summary(stat, model.mask, threshold)
