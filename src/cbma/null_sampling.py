"""Where the Monte Carlo null puts its random foci: uniformly in the mask, or by grey matter.

The FWE null of ALE, MKDA density and KDA (:mod:`cbma.null`) gives every
focus of every random dataset a voxel of the mask. NiMARE and GingerALE draw
it uniformly from the mask's voxels (``null_sampling: uniform``, the
default). Reported foci are not uniform in the brain, though: they lie in
grey matter. ``null_sampling: grey_matter`` draws each random focus with a
probability proportional to the grey-matter probability of its voxel, from
the MNI152 (ICBM 2009a symmetric) grey-matter template that nilearn ships
(:func:`nilearn.datasets.load_mni152_gm_template`, read from nilearn's own
files, no download) resampled to the mask's grid. ``docs/validation.md``
measures how the two nulls are calibrated when the foci are drawn one way or
the other.
"""

import numpy as np

from .errors import CbmaError

#: The values of an analysis' ``correction.null_sampling``.
NULL_SAMPLING = ("uniform", "grey_matter")


def grey_matter_probability(mask):
    """The grey-matter probability of every voxel of a mask, in [0, 1].

    Parameters
    ----------
    mask : cbma.space.BrainMask

    Returns
    -------
    ndarray of shape (n_mask_voxels,)
        nilearn's MNI152 grey-matter template (1 mm, scaled to a maximum of
        1) linearly interpolated at the mask's voxel centres, clipped to
        [0, 1]; 0 outside the template.

    Raises
    ------
    CbmaError
        If no voxel of the mask has any grey matter (a mask that is not in
        MNI space, for example).
    """
    from nilearn import datasets, image

    template = datasets.load_mni152_gm_template(resolution=None)
    target = mask.to_image(np.zeros(mask.n_voxels))
    resampled = image.resample_to_img(template, target, interpolation="linear",
                                      force_resample=True, copy_header=True)
    prob = np.clip(mask.apply(np.asarray(resampled.dataobj, dtype=float)), 0.0, 1.0)
    prob[~np.isfinite(prob)] = 0.0
    if not (prob > 0).any():
        raise CbmaError("null_sampling: grey_matter: no voxel of the mask has grey matter in "
                        "the MNI152 template; is the mask in MNI space?")
    return prob


def sampling_weights(null_sampling, mask):
    """The weights of the null's random foci over a mask's voxels.

    Parameters
    ----------
    null_sampling : {"uniform", "grey_matter"}
        An analysis' ``correction.null_sampling``.
    mask : cbma.space.BrainMask

    Returns
    -------
    ndarray of shape (n_mask_voxels,) or None
        None for uniform draws; what
        :meth:`cbma.null.RandomFociModel.sample_from` takes.
    """
    if null_sampling not in NULL_SAMPLING:
        raise CbmaError(f"unknown null_sampling {null_sampling!r}; expected one of "
                        f"{', '.join(NULL_SAMPLING)}")
    if null_sampling == "uniform":
        return None
    return grey_matter_probability(mask)
