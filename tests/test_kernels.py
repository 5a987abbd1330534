"""Kernels are defined in millimetres: the same width on any grid, isotropic or not.

NiMARE converts the ALE FWHM to voxels with ``sqrt(prod(voxel_size))`` and
builds the kernel in a fixed 31^3 cube, which is right on 2 mm grids only. The
tests measure each kernel's width in mm from its second moments and check it
against the target on 1, 2 and 3 mm grids and an anisotropic one, and check
that the Monte Carlo null uses those kernels on that grid.
"""

import numpy as np
import pytest

from cbma import kernels, null, space, spheres

GRIDS = [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (3.0, 3.0, 3.0), (2.0, 2.0, 3.0)]
FWHM_PER_SD = np.sqrt(8 * np.log(2))


def _box_mask(voxel_size, extent_mm=96):
    shape = tuple(int(extent_mm / v) for v in voxel_size)
    affine = np.diag([*voxel_size, 1.0])
    affine[:3, 3] = -np.array(shape) * voxel_size / 2
    return space.BrainMask(data=np.ones(shape, dtype=bool), affine=affine)


def _fwhm_mm(volume, voxel_size, centre=None):
    """FWHM (mm) along each axis of a Gaussian with the volume's second moments."""
    volume = np.asarray(volume, dtype=float)
    grids = np.indices(volume.shape).reshape(3, -1).T.astype(float)
    weights = volume.ravel() / volume.sum()
    mean = weights @ grids if centre is None else np.asarray(centre, dtype=float)
    var = weights @ ((grids - mean) * np.asarray(voxel_size)) ** 2
    return FWHM_PER_SD * np.sqrt(var)


@pytest.mark.parametrize("voxel_size", GRIDS)
@pytest.mark.parametrize("n", [1, 5, 20, 100])
def test_ale_kernel_width_is_in_mm_on_any_grid(voxel_size, n):
    fwhm = float(kernels.ale_fwhm(n))
    kern = kernels.ale_kernel(fwhm, voxel_size)
    assert kern.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(kern.argmax(), kern.shape) == tuple(np.array(kern.shape) // 2)
    np.testing.assert_allclose(_fwhm_mm(kern, voxel_size), fwhm, rtol=0.02)
    # a kernel reaches at least 3.5 sd along every axis (nothing is cut off)
    reach_mm = kernels.kernel_reach(kern) * np.asarray(voxel_size)
    assert np.all(reach_mm >= 3.5 * fwhm / FWHM_PER_SD)


def test_ale_kernel_on_2mm_is_unchanged():
    """On 2 mm grids the kernel is NiMARE's (values checked in test_estimators)."""
    fwhm = float(kernels.ale_fwhm(20))
    old_sigma = fwhm / np.sqrt(8.0) * np.sqrt(2) / (2 * np.sqrt(2 * np.log(2)))
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((31, 31, 31))
    delta[15, 15, 15] = 1
    ref = gaussian_filter(delta, old_sigma, mode="constant")
    ref = ref[7:24, 7:24, 7:24]  # NiMARE's crop for n = 20: 17 voxels
    np.testing.assert_allclose(kernels.ale_kernel(fwhm, [2.0, 2.0, 2.0]), ref, rtol=1e-12,
                               atol=1e-18)


@pytest.mark.parametrize("voxel_size", GRIDS)
def test_ale_ma_map_width_is_in_mm(voxel_size):
    """One focus: its MA map has the kernel's width in mm, centred on the focus."""
    mask = _box_mask(voxel_size)
    fwhm = 10.0
    ijk = space.mm_to_vox(np.array([[0.0, 0.0, 0.0]]), mask.affine)
    ma = kernels.ale_ma_maps(ijk, np.array([0]), np.array([fwhm]), mask)
    volume = mask.unmask(ma.toarray()[0], dtype=float)
    assert volume.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(_fwhm_mm(volume, voxel_size, centre=ijk[0]), fwhm, rtol=0.02)


@pytest.mark.parametrize("voxel_size", GRIDS)
@pytest.mark.parametrize("r", [6.0, 10.0])
def test_sphere_kernels_are_in_mm(voxel_size, r):
    """MKDA and KDA spheres hold exactly the voxels whose centres lie within r mm."""
    mask = _box_mask(voxel_size)
    focus = np.array([[2.0, -4.0, 6.0]])
    ijk = space.mm_to_vox(focus, mask.affine)
    centre_mm = space.vox_to_mm(ijk, mask.affine)[0]
    all_mm = space.vox_to_mm(np.argwhere(mask.data), mask.affine)
    within = np.linalg.norm(all_mm - centre_mm, axis=1) <= r
    for ma in (spheres.mkda_ma_maps(ijk, np.array([0]), 1, mask, r=r),
               spheres.mkda_ma_maps(np.repeat(ijk, 2, axis=0), np.array([0, 0]), 1, mask, r=r,
                                    sum_overlap=True) / 2):  # KDA: two foci at one place
        np.testing.assert_array_equal(ma.toarray()[0] > 0, within)
    # the sphere's volume is that of a ball of radius r, to within the grid's resolution
    volume = within.sum() * np.prod(voxel_size)
    radius = (3 * volume / (4 * np.pi)) ** (1 / 3)
    assert abs(radius - r) <= 0.25 * max(voxel_size)
    if r == 10.0 and max(voxel_size) <= 2:
        assert radius == pytest.approx(r, rel=0.02)


@pytest.mark.parametrize("voxel_size", GRIDS)
def test_monte_carlo_null_uses_the_grid_kernels(voxel_size):
    """The compiled null equals a plain computation with the grid's kernels, and its
    random foci are the grid's mask voxels."""
    mask = _box_mask(voxel_size, extent_mm=72)
    n_foci = np.array([3, 2, 4, 1])
    fwhms = kernels.ale_fwhm(np.array([1, 8, 15, 30]))  # n = 1: wider than NiMARE's 31^3 cube
    model = null.RandomFociModel(n_foci, fwhms, mask)
    bank, _ = kernels.kernel_bank(fwhms, voxel_size)
    assert model.pad > kernels.kernel_reach(bank[-1]).max()
    threshold = 0.004 * np.prod(voxel_size) / 8  # MA values scale with the voxel volume
    iterations = np.arange(6)
    got = null.run_iterations(model, 3, "grid", iterations, threshold)
    centres = model.draw(3, "grid", iterations)
    assert np.all(model.in_mask[centres] == 1)
    for row, c in zip(got, centres, strict=True):
        ref = null.iteration_reference(model, c, threshold)
        np.testing.assert_allclose(row, ref, rtol=1e-12)
    assert got[:, 1].max() > 0  # clusters were formed

    sphere_model = null.SphereFociModel(n_foci, spheres.sphere_offsets(10.0, voxel_size), mask)
    got = null.run_iterations(sphere_model, 3, "grid", iterations, 1.0)
    for row, c in zip(got, sphere_model.draw(3, "grid", iterations), strict=True):
        assert tuple(row) == null.sphere_iteration_reference(sphere_model, c, 1.0)
