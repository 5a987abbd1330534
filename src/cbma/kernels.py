"""Modeled-activation (MA) maps: the ALE Gaussian kernel (Eickhoff et al. 2009)."""

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter

from .errors import CbmaError
from .space import mm_to_vox

# Mean Euclidean distances (mm) of Eickhoff et al. 2009, turned into FWHM:
# a 3-D Gaussian with s.d. sigma displaces points by 2 sigma sqrt(2/pi) on average.
_ED_TO_FWHM = np.sqrt(8 * np.log(2)) / (2 * np.sqrt(2 / np.pi))
FWHM_TEMPLATE = 5.7 * _ED_TO_FWHM  # between-template uncertainty, 8.4113 mm
FWHM_SUBJECTS = 11.6 * _ED_TO_FWHM  # between-subject uncertainty for n = 1, 17.1177 mm

FWHM_TO_SIGMA = 1.0 / np.sqrt(8 * np.log(2))  # sigma of a Gaussian per unit of FWHM
TRUNCATE = 4.0  # kernels reach 4 sigma along each axis (NiMARE's scipy.ndimage default)


def ale_fwhm(sample_size):
    """FWHM (mm) of the ALE kernel for an experiment with ``sample_size`` subjects."""
    n = np.asarray(sample_size, dtype=float)
    return np.sqrt(FWHM_TEMPLATE**2 + FWHM_SUBJECTS**2 / n)


def ale_kernel(fwhm, voxel_size):
    """The ALE kernel on a grid: a discrete 3-D Gaussian of ``fwhm`` mm that sums to 1.

    The Gaussian is defined in millimetres, so the kernel has the same width
    in mm on any grid, isotropic or not: along axis ``a`` its standard
    deviation is ``fwhm / sqrt(8 ln 2) / voxel_size[a]`` voxels. Each axis
    is sampled at the voxel centres out to 4 standard deviations and
    normalised (``scipy.ndimage.gaussian_filter`` of a unit impulse, as
    NiMARE 0.22 builds its kernels), so the kernel sums to 1 whatever its
    width; values at or below machine epsilon are cropped.

    On the 2 mm grids of GingerALE and NiMARE this is NiMARE's kernel.
    NiMARE converts the FWHM with ``sqrt(prod(voxel_size))`` and builds it
    in a fixed 31^3 cube, which is exact there only: on a 1 mm grid its
    kernel is about 40 % too wide and cut by the cube, on 3 mm too narrow.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum, in mm.
    voxel_size : sequence of 3 floats
        Voxel size of the grid along each axis, in mm.

    Returns
    -------
    ndarray, 3-D, odd size along each axis
        Kernel values; the centre voxel is at ``shape // 2``.
    """
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise CbmaError(f"kernel FWHM must be a positive number of mm, got {fwhm!r}")
    voxel_size = np.asarray(voxel_size, dtype=float)
    if voxel_size.shape != (3,) or not np.all(np.isfinite(voxel_size) & (voxel_size > 0)):
        raise CbmaError(f"voxel size must be 3 positive numbers of mm, got {voxel_size!r}")
    sigma = fwhm * FWHM_TO_SIGMA / voxel_size
    # scipy's kernel radius at TRUNCATE sigma: a box this size loses nothing
    reach = (TRUNCATE * sigma + 0.5).astype(int)
    delta = np.zeros(tuple(2 * reach + 1))
    delta[tuple(reach)] = 1.0
    kernel = gaussian_filter(delta, sigma, mode="constant", truncate=TRUNCATE)
    keep = kernel > np.finfo(float).eps
    box = []
    for axis, r in enumerate(reach):
        other = tuple(a for a in range(3) if a != axis)
        extent = np.flatnonzero(keep.any(axis=other))
        half = max(r - extent[0], extent[-1] - r)  # symmetric about the centre
        box.append(slice(r - half, r + half + 1))
    return kernel[tuple(box)]


def kernel_reach(kernel):
    """Half-width of a kernel in voxels along each axis (``shape // 2``)."""
    return np.asarray(kernel.shape) // 2


def experiment_fwhms(sample_sizes, fwhm=None, sample_size=None):
    """The kernel FWHM (mm) of each experiment under one kernel setting.

    Parameters
    ----------
    sample_sizes : array-like
        Each experiment's number of subjects (used when neither option is set).
    fwhm : float, optional
        One FWHM in mm for every experiment.
    sample_size : float, optional
        One sample size for every experiment.
    """
    n_exp = len(sample_sizes)
    if fwhm is not None and sample_size is not None:
        raise CbmaError("kernel: give fwhm or sample_size, not both")
    if fwhm is not None:
        return np.full(n_exp, float(fwhm))
    if sample_size is not None:
        return np.full(n_exp, float(ale_fwhm(sample_size)))
    n = np.asarray(sample_sizes, dtype=float)
    bad = ~np.isfinite(n) | (n < 1)
    if bad.any():
        raise CbmaError(f"{int(bad.sum())} experiment(s) have no valid sample size; set "
                        "kernel: {fwhm: ...} or kernel: {sample_size: ...} in the analysis")
    return ale_fwhm(n)


def kernel_bank(fwhms, voxel_size):
    """Distinct kernels for a list of per-experiment FWHMs.

    Returns
    -------
    kernels : list of ndarray
        One kernel per distinct FWHM, in sorted order of FWHM.
    which : ndarray of int
        For each experiment, the index of its kernel in ``kernels``.
    """
    unique, which = np.unique(np.asarray(fwhms, dtype=float), return_inverse=True)
    return [ale_kernel(f, voxel_size) for f in unique], which


def ale_ma_maps(ijk, experiment, fwhms, mask):
    """Modeled-activation maps of all experiments, as a sparse matrix.

    Each focus gets the kernel of its experiment centred on its voxel; parts
    of the kernel outside the volume or the mask are dropped; where kernels
    of one experiment overlap the maximum is kept (Turkeltaub et al. 2012).
    Foci outside the mask are kept (NiMARE's behaviour): their kernel tails
    still reach in-mask voxels.

    Parameters
    ----------
    ijk : ndarray of shape (n_foci, 3)
        Voxel index of each focus.
    experiment : ndarray of shape (n_foci,)
        Row (experiment index, 0-based) of each focus.
    fwhms : ndarray of shape (n_experiments,)
        Kernel FWHM of each experiment, in mm.
    mask : cbma.space.BrainMask

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_experiments, n_mask_voxels)
    """
    kernels, which = kernel_bank(fwhms, mask.voxel_size)
    shape = np.array(mask.shape)
    vol = np.zeros(mask.shape)
    counts, cols, vals = [], [], []
    for e in range(len(fwhms)):
        kern = kernels[which[e]]
        half = kernel_reach(kern)
        boxes = []
        for centre in ijk[experiment == e]:
            lo = centre - half
            hi = centre + half + 1
            vlo, vhi = np.maximum(lo, 0), np.minimum(hi, shape)
            if np.any(vhi <= vlo):
                continue
            klo, khi = vlo - lo, kern.shape - (hi - vhi)
            box = tuple(slice(a, b) for a, b in zip(vlo, vhi, strict=True))
            kbox = tuple(slice(a, b) for a, b in zip(klo, khi, strict=True))
            np.maximum(vol[box], kern[kbox], out=vol[box])
            boxes.append(box)
        masked = mask.apply(vol)
        nz = np.flatnonzero(masked)
        counts.append(nz.size)
        cols.append(nz.astype(np.int32))
        vals.append(masked[nz])
        for box in boxes:
            vol[box] = 0.0
    # CSR straight from the rows (already sorted by voxel): no COO copy on the way
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr),
                         shape=(len(fwhms), mask.n_voxels))


def foci_voxels(coordinates, mask):
    """Voxel indices of the foci of a canonical coordinates table."""
    return mm_to_vox(coordinates[["x", "y", "z"]].to_numpy(), mask.affine)
