"""Sphere kernels: the voxel offsets of a sphere and MKDA/KDA modeled-activation maps.

The MKDA kernel is a binary sphere around every focus; an experiment's
modeled-activation (MA) map is 1 where any of its foci lies within ``r`` mm
(:func:`mkda_ma_maps`). KDA's kernel is the same sphere, counted once per
focus (``sum_overlap=True``). The statistics of these maps are in
:mod:`cbma.mkda` (MKDA density, KDA) and :mod:`cbma.chi2` (MKDAChi2).
"""

import numba
import numpy as np
import scipy.sparse as sp

from .errors import CbmaError

__all__ = ["DEFAULT_RADIUS", "mkda_ma_maps", "sphere_offsets"]

DEFAULT_RADIUS = 10.0  # mm, NiMARE's MKDAKernel and KDAKernel; Neurosynth used 6


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
    if not np.isfinite(r) or r < 0:
        raise CbmaError(f"sphere radius must be a non-negative number of mm, got {r!r}")
    voxel_size = np.asarray(voxel_size, dtype=float)
    reach = np.floor(r / voxel_size).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    dist = np.sqrt(((grid * voxel_size) ** 2).sum(axis=1))
    return grid[dist <= r]


# ---------------------------------------------------------------------------
# MA maps


@numba.njit(cache=True, nogil=True)
def _collect(foci, start, stop, offsets, flat_offsets, reach, shape, lookup, count, cols):
    """Mask columns covered by the spheres of foci ``start:stop``.

    Each column is listed once in ``cols`` (in the order first met) and
    ``count`` holds, per column, the number of spheres covering it. Spheres
    that stay inside the volume use the flat offsets; the others are clipped
    to the volume offset by offset.
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    sy = ny * nz
    n = 0
    for f in range(start, stop):
        i, j, k = foci[f, 0], foci[f, 1], foci[f, 2]
        if (i - reach[0] >= 0 and i + reach[0] < nx and j - reach[1] >= 0
                and j + reach[1] < ny and k - reach[2] >= 0 and k + reach[2] < nz):
            base = i * sy + j * nz + k
            for o in range(flat_offsets.size):
                col = lookup[base + flat_offsets[o]]
                if col >= 0:
                    if count[col] == 0:
                        cols[n] = col
                        n += 1
                    count[col] += 1
        else:
            for o in range(offsets.shape[0]):
                x = i + offsets[o, 0]
                y = j + offsets[o, 1]
                z = k + offsets[o, 2]
                if x < 0 or x >= nx or y < 0 or y >= ny or z < 0 or z >= nz:
                    continue
                col = lookup[x * sy + y * nz + z]
                if col >= 0:
                    if count[col] == 0:
                        cols[n] = col
                        n += 1
                    count[col] += 1
    return n


@numba.njit(cache=True, nogil=True)
def _row_sizes(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, sizes):
    """First pass: the number of in-mask voxels of every experiment's MA map."""
    for e in range(foci_ptr.size - 1):
        n = _collect(foci, foci_ptr[e], foci_ptr[e + 1], offsets, flat_offsets, reach, shape,
                     lookup, count, cols)
        sizes[e] = n
        for q in range(n):
            count[cols[q]] = 0


@numba.njit(cache=True, nogil=True)
def _radix_sort(values, n, spare, digit, n_pass, hist):
    """Sort ``values[:n]`` (non-negative ints) by LSD radix sort; returns the sorted array.

    ``n_pass`` passes of ``digit`` bits, ping-ponging between ``values`` and
    ``spare``: linear time, where a comparison sort of every row dominated
    the cost of building Neurosynth-size MA maps.
    """
    src, dst = values, spare
    bits = (1 << digit) - 1
    for p in range(n_pass):
        shift = p * digit
        hist[:] = 0
        for q in range(n):
            hist[((src[q] >> shift) & bits) + 1] += 1
        for b in range(1, hist.size):
            hist[b] += hist[b - 1]
        for q in range(n):
            d = (src[q] >> shift) & bits
            dst[hist[d]] = src[q]
            hist[d] += 1
        src, dst = dst, src
    return src


@numba.njit(cache=True, nogil=True)
def _fill_rows(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, spare,
               digit, n_pass, indptr, indices, data, value, sum_overlap):
    """Second pass: every row's sorted columns and MA values, written in place."""
    hist = np.zeros((1 << digit) + 1, dtype=np.int64)
    for e in range(foci_ptr.size - 1):
        n = _collect(foci, foci_ptr[e], foci_ptr[e + 1], offsets, flat_offsets, reach, shape,
                     lookup, count, cols)
        row = _radix_sort(cols, n, spare, digit, n_pass, hist)
        start = indptr[e]
        for q in range(n):
            col = row[q]
            indices[start + q] = col
            data[start + q] = value * count[col] if sum_overlap else value
            count[col] = 0


def _volume_lookup(mask):
    """Mask column of every voxel of the volume (C order), -1 outside the mask."""
    lookup = np.full(int(np.prod(mask.shape)), -1, dtype=np.int32)
    lookup[mask.flat_indices] = np.arange(mask.n_voxels, dtype=np.int32)
    return lookup


def mkda_ma_maps(ijk, experiment, n_experiments, mask, r=DEFAULT_RADIUS, value=1.0,
                 sum_overlap=False):
    """MKDA (or KDA) modeled-activation maps of all experiments, as a sparse matrix.

    Every focus gets a hard sphere of radius ``r`` mm, clipped to the volume,
    then to the mask. Foci outside the mask are kept (NiMARE's behaviour):
    the part of their sphere inside the mask counts.

    Parameters
    ----------
    ijk : ndarray of shape (n_foci, 3)
        Voxel index of each focus (:func:`cbma.kernels.foci_voxels`).
    experiment : ndarray of shape (n_foci,)
        Row (experiment index, 0-based) of each focus.
    n_experiments : int
        Number of rows; experiments without foci get an empty row.
    mask : cbma.space.BrainMask
    r : float
        Sphere radius in mm (NiMARE: 10; Neurosynth: 6).
    value : float
        MA value of a voxel covered by a sphere.
    sum_overlap : bool
        False (MKDA): a voxel covered by several spheres of one experiment
        gets ``value`` once. True (KDA): it gets ``value`` times the number of
        the experiment's foci within ``r`` mm.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_experiments, n_mask_voxels)
        float32, sorted column indices, no explicit zeros.

    Notes
    -----
    Two compiled passes over the foci (sizes of the rows, then their
    contents) write the CSR arrays in place, so the memory needed is that of
    the result plus a few arrays of the size of the volume.
    """
    ijk = np.asarray(ijk)
    experiment = np.asarray(experiment)
    n_experiments = int(n_experiments)
    if ijk.ndim != 2 or ijk.shape[1] != 3:
        raise CbmaError(f"foci voxel indices must have shape (n, 3), got {ijk.shape}")
    if ijk.size and not np.issubdtype(ijk.dtype, np.integer):
        raise CbmaError(f"foci voxel indices must be integers, got {ijk.dtype}")
    if experiment.size and not np.issubdtype(experiment.dtype, np.integer):
        raise CbmaError(f"experiment labels must be integers, got {experiment.dtype}")
    experiment = experiment.astype(np.int64)  # e.g. int8 category codes
    if experiment.shape != (ijk.shape[0],):
        raise CbmaError(f"{ijk.shape[0]} foci but {experiment.size} experiment labels")
    if n_experiments < 0:
        raise CbmaError(f"number of experiments must be >= 0, got {n_experiments}")
    if experiment.size and (experiment.min() < 0 or experiment.max() >= n_experiments):
        raise CbmaError(f"experiment labels must lie in 0..{n_experiments - 1}, got "
                        f"{experiment.min()}..{experiment.max()}")
    if not np.isfinite(value) or value <= 0:
        raise CbmaError(f"MA value must be a positive number, got {value!r}")
    offsets = sphere_offsets(r, mask.voxel_size).astype(np.int64)
    shape = np.array(mask.shape, dtype=np.int64)
    reach = np.abs(offsets).max(axis=0)
    flat_offsets = offsets @ np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)

    order = np.argsort(experiment, kind="stable")
    foci = np.ascontiguousarray(ijk[order], dtype=np.int64)
    foci_ptr = np.searchsorted(experiment[order], np.arange(n_experiments + 1)).astype(np.int64)
    lookup = _volume_lookup(mask)
    count = np.zeros(mask.n_voxels, dtype=np.int32)
    cols = np.empty(mask.n_voxels, dtype=np.int32)
    spare = np.empty(mask.n_voxels, dtype=np.int32)
    bits = max(int(mask.n_voxels - 1).bit_length(), 1)
    n_pass = -(-bits // 11)  # digits of at most 11 bits: 2 passes up to 4M voxels
    digit = -(-bits // n_pass)

    sizes = np.zeros(n_experiments, dtype=np.int64)
    _row_sizes(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, sizes)
    indptr = np.zeros(n_experiments + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    _fill_rows(foci, foci_ptr, offsets, flat_offsets, reach, shape, lookup, count, cols, spare,
               digit, n_pass, indptr, indices, data, np.float32(value), bool(sum_overlap))
    ma = sp.csr_matrix((data, indices, indptr), shape=(n_experiments, mask.n_voxels))
    ma.has_sorted_indices = True
    return ma
