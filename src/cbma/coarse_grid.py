"""The coarse grid of the text model: a coarser copy of the brain mask, maps moved between them.

:func:`coarse_mask` resamples the brain mask onto a coarser grid with the
same origin and axes (4 mm by default, about 28,000 voxels in the MNI152
2 mm mask); :func:`fine_to_coarse` and :func:`downsample_maps` average maps
on the mask into it; :func:`resample_masked` interpolates maps back (or
between any two masks).

Targets
    One map per study on the coarse grid (:func:`foci_targets`): for foci,
    the sum over the study's foci of an isotropic Gaussian (FWHM 9 mm, peak
    1, truncated at 3 sigma) evaluated at the coarse voxel centres from the
    exact mm position of each focus (repeated foci add); for study maps given
    on the brain mask (such as MKDA MA maps), the mean of the mask voxels
    nearest to each coarse voxel (:func:`downsample_maps`).
"""

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .errors import CbmaError
from .space import BrainMask

__all__ = ["coarse_mask", "downsample_maps", "fine_to_coarse", "foci_targets",
           "resample_masked"]


def coarse_mask(mask, voxel_mm=4.0):
    """The brain mask on a coarser grid with the same origin and axes.

    Coarse voxel ``(i, j, k)`` is centred on fine voxel ``f (i, j, k)``, with
    ``f = voxel_mm / fine voxel size``, and lies in the coarse mask when the
    fine voxel nearest to its centre lies in the fine mask (nearest-neighbour
    resampling of the mask, as NeuroQuery does).

    Parameters
    ----------
    mask : cbma.space.BrainMask
        The fine mask (for example MNI152 2 mm).
    voxel_mm : float, optional
        Coarse voxel size in mm; at least the fine voxel size. On the MNI152
        2 mm mask (228,483 voxels), 4 mm gives about 28,500 voxels and 6 mm
        about 8,500.

    Returns
    -------
    cbma.space.BrainMask
    """
    sizes = mask.voxel_size
    if not np.allclose(sizes, sizes[0], rtol=1e-3):
        raise CbmaError(f"coarse grid: the mask's voxels are not isotropic ({sizes.tolist()} mm)")
    factor = float(voxel_mm) / float(sizes[0])
    if not np.isfinite(factor) or factor < 1 - 1e-9:
        raise CbmaError(f"coarse grid: voxel_mm must be at least the mask's voxel size "
                        f"({sizes[0]:g} mm), got {voxel_mm!r}")
    shape = np.floor((np.array(mask.shape) - 1) / factor + 1e-9).astype(int) + 1
    grid = np.indices(shape).reshape(3, -1).T
    fine = np.round(grid * factor).astype(np.int64)
    data = mask.contains(fine).reshape(shape)
    affine = np.array(mask.affine, dtype=float)
    affine[:3, :3] = affine[:3, :3] * factor
    return BrainMask(data=data, affine=affine)


def fine_to_coarse(mask, coarse):
    """Sparse (fine voxels x coarse voxels) matrix averaging fine voxels into coarse ones.

    Parameters
    ----------
    mask, coarse : cbma.space.BrainMask
        The fine mask and the coarse one (see :func:`coarse_mask`).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (mask.n_voxels, coarse.n_voxels)
        ``maps @ matrix`` is :func:`downsample_maps` of ``maps``.
    """
    ijk = np.column_stack(np.unravel_index(mask.flat_indices, mask.shape))
    to_coarse = np.linalg.solve(coarse.affine, mask.affine)
    cijk = np.round(ijk @ to_coarse[:3, :3].T + to_coarse[:3, 3]).astype(np.int64)
    inside = coarse.contains(cijk)
    lookup = np.full(coarse.data.size, -1, dtype=np.int64)
    lookup[coarse.flat_indices] = np.arange(coarse.n_voxels)
    rows = np.flatnonzero(inside)
    cols = lookup[np.ravel_multi_index(cijk[inside].T, coarse.shape)]
    counts = np.bincount(cols, minlength=coarse.n_voxels)
    weights = 1.0 / counts[cols]
    return sp.csr_matrix((weights, (rows, cols)), shape=(mask.n_voxels, coarse.n_voxels))


def downsample_maps(maps, mask, coarse):
    """Average maps on a fine mask into the voxels of a coarse mask.

    Each fine in-mask voxel goes to the coarse voxel whose centre is nearest;
    a coarse voxel's value is the mean over the fine in-mask voxels assigned
    to it (fine voxels assigned to a voxel outside the coarse mask are
    dropped).

    Parameters
    ----------
    maps : ndarray or scipy.sparse matrix of shape (n_maps, mask.n_voxels)
    mask, coarse : cbma.space.BrainMask
        The fine mask and the coarse one (see :func:`coarse_mask`).

    Returns
    -------
    ndarray or scipy.sparse.csr_matrix of shape (n_maps, coarse.n_voxels)
        Sparse when ``maps`` is sparse.
    """
    if maps.shape[-1] != mask.n_voxels:
        raise CbmaError(f"maps have {maps.shape[-1]} voxels, the mask {mask.n_voxels}")
    agg = fine_to_coarse(mask, coarse)
    if sp.issparse(maps):
        return sp.csr_matrix(maps) @ agg
    return np.asarray(maps) @ agg


def resample_masked(values, source, target):
    """Interpolate masked maps from one grid to another (trilinear, mask-aware).

    Each target voxel takes the trilinear interpolation of the source map at
    its centre, computed over in-mask source voxels only (the interpolation
    weights of out-of-mask neighbours are dropped and the rest renormalised),
    so values do not fade towards the edge of the mask; a target voxel with
    no in-mask source neighbour takes the value of the nearest in-mask source
    voxel.

    Parameters
    ----------
    values : ndarray of shape (source.n_voxels,) or (n_maps, source.n_voxels)
    source, target : cbma.space.BrainMask

    Returns
    -------
    ndarray of shape (target.n_voxels,) or (n_maps, target.n_voxels), float32
    """
    values = np.asarray(values, dtype=float)
    single = values.ndim == 1
    values = np.atleast_2d(values)
    if values.shape[1] != source.n_voxels:
        raise CbmaError(f"maps have {values.shape[1]} voxels, the source mask "
                        f"{source.n_voxels}")
    ijk = np.column_stack(np.unravel_index(target.flat_indices, target.shape))
    to_source = np.linalg.solve(source.affine, target.affine)
    coords = (ijk @ to_source[:3, :3].T + to_source[:3, 3]).T
    inside = source.data.astype(float)
    weight = ndimage.map_coordinates(inside, coords, order=1, mode="constant", cval=0.0)
    near = np.round(coords).astype(np.int64)
    for axis in range(3):
        np.clip(near[axis], 0, source.shape[axis] - 1, out=near[axis])
    _, nearest = ndimage.distance_transform_edt(~source.data, return_indices=True)
    nearest_flat = np.ravel_multi_index(tuple(nearest[(slice(None), *near)]), source.shape)
    has = weight > 1e-6
    out = np.empty((len(values), target.n_voxels), dtype=np.float32)
    for row, vector in enumerate(values):
        volume = source.unmask(vector, dtype=float)
        interp = ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)
        out[row] = np.where(has, interp / np.where(has, weight, 1.0),
                            volume.reshape(-1)[nearest_flat])
    return out[0] if single else out


# --------------------------------------------------------------------------- targets


def foci_targets(foci, coarse, fwhm=9.0):
    """Target maps of studies from their foci: sums of Gaussians on a coarse grid.

    Parameters
    ----------
    foci : sequence of array-like of shape (n_i, 3)
        Each study's foci in mm (MNI). A study may have no focus.
    coarse : cbma.space.BrainMask
        The grid of the targets (see :func:`coarse_mask`).
    fwhm : float, optional
        Full width at half maximum of the Gaussian, in mm.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_studies, coarse.n_voxels), float32
        Value ``sum_f exp(-d_f^2 / (2 sigma^2))`` over the study's foci ``f``
        at distance ``d_f <= 3 sigma`` from the voxel centre.
    """
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise CbmaError(f"target FWHM must be a positive number of mm, got {fwhm!r}")
    arrays = [np.asarray(f, dtype=float).reshape(-1, 3) for f in foci]
    n_studies = len(arrays)
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    if n_studies == 0 or counts.sum() == 0:
        return sp.csr_matrix((n_studies, coarse.n_voxels), dtype=np.float32)
    xyz = np.concatenate(arrays)
    if not np.all(np.isfinite(xyz)):
        raise CbmaError("foci must be finite coordinates in mm")
    study = np.repeat(np.arange(n_studies), counts)
    sigma = fwhm / np.sqrt(8 * np.log(2))
    cutoff = 3 * sigma
    vox = coarse.voxel_size
    reach = np.ceil(cutoff / vox.min() + 0.5).astype(int)
    offsets = np.indices((2 * reach + 1,) * 3).reshape(3, -1).T - reach
    # a focus is at most half a voxel (per axis) from its nearest voxel centre
    slack = np.linalg.norm(vox) / 2
    offsets = offsets[np.linalg.norm(offsets * vox, axis=1) <= cutoff + slack]
    inv = np.linalg.inv(coarse.affine)
    lookup = np.full(coarse.data.size, -1, dtype=np.int64)
    lookup[coarse.flat_indices] = np.arange(coarse.n_voxels)
    shape = np.array(coarse.shape)
    rows, cols, vals = [], [], []
    chunk = max(1, 2_000_000 // len(offsets))
    for start in range(0, len(xyz), chunk):
        part = xyz[start:start + chunk]
        centre = np.round(part @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
        cand = centre[:, None, :] + offsets[None, :, :]
        mm = cand @ coarse.affine[:3, :3].T + coarse.affine[:3, 3]
        d2 = ((mm - part[:, None, :]) ** 2).sum(-1)
        ok = (d2 <= cutoff**2) & np.all((cand >= 0) & (cand < shape), axis=-1)
        focus, which = np.nonzero(ok)
        col = lookup[np.ravel_multi_index(cand[focus, which].T, coarse.shape)]
        keep = col >= 0
        rows.append(study[start + focus[keep]])
        cols.append(col[keep])
        vals.append(np.exp(-d2[focus[keep], which[keep]] / (2 * sigma**2)))
    matrix = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_studies, coarse.n_voxels)).tocsr()
    matrix.sum_duplicates()
    return matrix.astype(np.float32)
