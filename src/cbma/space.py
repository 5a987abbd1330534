"""Brain masks, voxel/mm conversions and Talairach-to-MNI transforms."""

from dataclasses import dataclass
from functools import cached_property

import nibabel as nib
import numpy as np

from .errors import InputFileError

# Lancaster et al. (2007) icbm2tal matrices, MNI -> Talairach (rows 1-3).
# Talairach -> MNI uses the inverse. NiMARE uses the "other" (pooled) variant,
# Neurosynth and the Eickhoff MATLAB code the SPM one.
LANCASTER_MNI2TAL = {
    "icbm_other": [
        [0.9357, 0.0029, -0.0072, -1.0423],
        [-0.0065, 0.9396, -0.0726, -1.3940],
        [0.0103, 0.0752, 0.8967, 3.6475],
    ],
    "icbm_spm": [
        [0.9254, 0.0024, -0.0118, -1.0207],
        [-0.0048, 0.9316, -0.0871, -1.7667],
        [0.0152, 0.0883, 0.8924, 4.0926],
    ],
    "icbm_fsl": [
        [0.9464, 0.0034, -0.0026, -1.0680],
        [-0.0083, 0.9479, -0.0580, -1.0239],
        [0.0053, 0.0617, 0.9010, 3.1883],
    ],
}


def _lancaster(variant):
    """The 4 x 4 MNI -> Talairach matrix of a Lancaster variant."""
    if variant not in LANCASTER_MNI2TAL:
        raise ValueError(f"unknown Talairach transform {variant!r}; "
                         f"expected one of {sorted(LANCASTER_MNI2TAL)}")
    m = np.eye(4)
    m[:3] = LANCASTER_MNI2TAL[variant]
    return m


def _affine_points(xyz, m):
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    return (np.c_[xyz, np.ones(len(xyz))] @ m.T)[:, :3]


def tal2mni(xyz, variant="icbm_other"):
    """Convert Talairach coordinates to MNI with Lancaster's icbm2tal inverse.

    Parameters
    ----------
    xyz : array-like of shape (n, 3)
        Talairach coordinates in mm.
    variant : {"icbm_other", "icbm_spm", "icbm_fsl"}
        Which Lancaster matrix to invert. ``"icbm_other"`` is NiMARE's choice.

    Returns
    -------
    ndarray of shape (n, 3)
        MNI coordinates in mm.
    """
    return _affine_points(xyz, np.linalg.inv(_lancaster(variant)))


def mni2tal(xyz, variant="icbm_other"):
    """Convert MNI coordinates to Talairach with Lancaster's icbm2tal transform.

    The inverse of :func:`tal2mni` (Lancaster et al. 2007), as GingerALE's
    MNI-to-Talairach conversion.

    Parameters
    ----------
    xyz : array-like of shape (n, 3)
        MNI coordinates in mm.
    variant : {"icbm_other", "icbm_spm", "icbm_fsl"}
        Which Lancaster matrix: ``"icbm_spm"`` for foci normalised with SPM,
        ``"icbm_fsl"`` with FSL, ``"icbm_other"`` (the pooled one) otherwise.

    Returns
    -------
    ndarray of shape (n, 3)
        Talairach coordinates in mm.
    """
    return _affine_points(xyz, _lancaster(variant))


def mm_to_vox(xyz, affine):
    """Voxel indices of mm coordinates, rounding half to even as NiMARE does.

    On a 2 mm grid every odd-millimetre coordinate falls exactly half-way
    between two voxels; numpy's round-half-to-even decides those ties.
    """
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    ijk = np.c_[xyz, np.ones(len(xyz))] @ np.linalg.inv(affine).T
    return np.round(ijk[:, :3]).astype(np.int64)


def vox_to_mm(ijk, affine):
    """mm coordinates of voxel indices."""
    ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
    return (np.c_[ijk, np.ones(len(ijk))] @ np.asarray(affine).T)[:, :3]


@dataclass(frozen=True, eq=False)
class BrainMask:
    """A binary brain mask on a voxel grid.

    Statistic vectors ("masked" data) have one entry per in-mask voxel, in the
    C order of the mask's nonzero voxels, as in NiMARE and nilearn.

    Attributes
    ----------
    data : ndarray of bool, 3-D
        True inside the brain.
    affine : ndarray of shape (4, 4)
        Voxel-to-mm transform of the grid.
    """

    data: np.ndarray
    affine: np.ndarray

    @property
    def shape(self):
        return self.data.shape

    @cached_property
    def flat_indices(self):
        """C-order flat indices of the in-mask voxels."""
        return np.flatnonzero(self.data)

    @property
    def n_voxels(self):
        return self.flat_indices.size

    @property
    def voxel_size(self):
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def unmask(self, values, dtype=np.float32):
        """Put a masked vector back into a 3-D volume (zeros outside)."""
        values = np.asarray(values)
        if values.shape != (self.n_voxels,):
            raise ValueError(f"expected {self.n_voxels} values, got shape {values.shape}")
        vol = np.zeros(self.data.size, dtype=dtype)
        vol[self.flat_indices] = values
        return vol.reshape(self.shape)

    def apply(self, volume):
        """Masked vector of a 3-D volume on this grid."""
        volume = np.asarray(volume)
        if volume.shape != self.shape:
            raise ValueError(f"volume shape {volume.shape} does not match mask {self.shape}")
        return volume.reshape(-1)[self.flat_indices]

    def contains(self, ijk):
        """Whether each voxel index lies inside the volume and the mask."""
        ijk = np.atleast_2d(ijk)
        inside = np.all((ijk >= 0) & (ijk < np.array(self.shape)), axis=1)
        out = np.zeros(len(ijk), dtype=bool)
        i, j, k = ijk[inside].T
        out[inside] = self.data[i, j, k]
        return out

    def to_image(self, values, dtype=np.float32):
        """A NIfTI image of a masked vector on this grid."""
        img = nib.Nifti1Image(self.unmask(values, dtype=dtype), self.affine)
        img.header.set_xyzt_units("mm")
        img.set_qform(self.affine, code=4)
        img.set_sform(self.affine, code=4)
        return img


def load_mask(path):
    """Read a brain mask image (any nonzero voxel is in the mask).

    Raises
    ------
    InputFileError
        If the file cannot be read as a 3-D image or the mask is empty.
    """
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds
        raise InputFileError(path, None, f"cannot read as a NIfTI image ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputFileError(path, None, f"mask must be a 3-D image, got shape {data.shape}")
    mask = BrainMask(data=np.asarray(data != 0), affine=np.asarray(img.affine, dtype=float))
    if mask.n_voxels == 0:
        raise InputFileError(path, None, "mask has no nonzero voxel")
    return mask
