"""Decoding studies from their MA maps (cbma.classify)."""

import numpy as np
import pytest
from conftest import MASK, mkda_maps

from cbma.classify import cross_validated_classification, searchlight, searchlight_sphere_matrix
from cbma.errors import CbmaError
from cbma.space import BrainMask, load_mask, vox_to_mm
from cbma.spheres import sphere_offsets

R1 = np.array([-40.0, -60.0, 40.0])
R2 = np.array([40.0, 20.0, 0.0])


def two_groups(mask, n=200, seed=0, labels=("A", "B")):
    """Group A reports a focus near R1 in 80 % of studies (R2: 20 %), group B the reverse.

    Every study also has three to six foci anywhere in the mask.
    """
    rng = np.random.default_rng(seed)
    inmask = vox_to_mm(np.column_stack(np.unravel_index(mask.flat_indices, mask.shape)),
                       mask.affine)
    foci, group = [], []
    for i in range(n):
        g = i % 2
        xyz = [inmask[rng.integers(len(inmask), size=rng.integers(3, 7))]]
        for region, p in ((R1, 0.8 if g == 0 else 0.2), (R2, 0.2 if g == 0 else 0.8)):
            if rng.random() < p:
                xyz.append(region + rng.normal(0, 4, (1, 3)))
        foci.append(np.vstack(xyz))
        group.append(labels[g])
    return mkda_maps(foci, mask), np.array(group)


@pytest.fixture(scope="module")
def mask():
    return load_mask(MASK)


@pytest.fixture(scope="module")
def data(mask):
    return two_groups(mask, n=160)


@pytest.fixture(scope="module")
def xyz(mask):
    return vox_to_mm(np.column_stack(np.unravel_index(mask.flat_indices, mask.shape)),
                     mask.affine)


def nearest_voxel(xyz, point):
    return int(np.argmin(np.linalg.norm(xyz - point, axis=1)))


def test_cross_validated_classification(data, xyz):
    ma, labels = data
    result = cross_validated_classification(ma, labels, n_splits=5, seed=0)
    assert result.scores.shape == (5,)
    assert result.chance == 0.5 and result.majority == 0.5
    assert result.mean > 0.7, result.scores
    assert 0 < result.sd < 0.15
    assert result.sd == pytest.approx(np.std(result.scores, ddof=1))
    assert list(result.classes) == ["A", "B"]
    # positive weights favour "B" (R2), negative ones "A" (R1)
    near = lambda point: np.linalg.norm(xyz - point, axis=1) <= 6  # noqa: E731
    assert result.weights.shape == (ma.shape[1],)
    assert result.weights[near(R2)].mean() > 0 > result.weights[near(R1)].mean()
    small = [cross_validated_classification(ma[:60], labels[:60], n_splits=3, seed=1,
                                            scoring="accuracy") for _ in range(2)]
    np.testing.assert_array_equal(small[0].scores, small[1].scores)  # deterministic
    np.testing.assert_array_equal(small[0].weights, small[1].weights)
    assert small[0].chance == 0.5


def test_classification_errors(data):
    ma, labels = data
    with pytest.raises(CbmaError, match="two distinct labels"):
        cross_validated_classification(ma, np.zeros(ma.shape[0]))
    few = labels.copy()
    few[:] = "A"
    few[:3] = "B"
    with pytest.raises(CbmaError, match="fewer than n_splits"):
        cross_validated_classification(ma, few)
    with pytest.raises(CbmaError, match="one per study"):
        cross_validated_classification(ma, labels[:-1])
    with pytest.raises(CbmaError, match="scoring"):
        cross_validated_classification(ma, labels, scoring="auc")


def brute_force_searchlight(ma, labels, mask, centre, radius_mm, n_splits, seed, var_floor):
    """The same classifier fitted on one sphere's voxels, written out directly."""
    from sklearn.model_selection import StratifiedKFold

    classes, y = np.unique(labels, return_inverse=True)
    ijk = np.array(np.unravel_index(mask.flat_indices[centre], mask.shape))
    cand = ijk + sphere_offsets(radius_mm, mask.voxel_size)
    ok = np.all((cand >= 0) & (cand < mask.shape), axis=1) & mask.contains(cand)
    lookup = np.full(mask.data.size, -1)
    lookup[mask.flat_indices] = np.arange(mask.n_voxels)
    voxels = lookup[np.ravel_multi_index(cand[ok].T, mask.shape)]
    x = ma[:, voxels].toarray()
    scores = []
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in cv.split(x, y):
        means = np.array([x[train][y[train] == k].mean(axis=0) for k in range(classes.size)])
        resid = x[train] - means[y[train]]
        var = (resid**2).sum(axis=0) / (len(train) - classes.size) + var_floor
        disc = np.array([(x[test] * means[k] - means[k] ** 2 / 2) / var
                         for k in range(classes.size)]).sum(axis=2)
        predicted = np.argmax(disc - disc[0], axis=0)  # ties: first class
        recalls = [np.mean(predicted[y[test] == k] == k) for k in range(classes.size)]
        scores.append(np.mean(recalls))
    return np.mean(scores)


def test_searchlight_finds_the_regions(data, mask, xyz):
    ma, labels = data
    accuracy = searchlight(ma, labels, mask, radius_mm=6, n_splits=5, seed=0)
    assert accuracy.shape == (mask.n_voxels,)
    peak = xyz[np.argmax(accuracy)]
    assert min(np.linalg.norm(peak - R1), np.linalg.norm(peak - R2)) <= 10, peak
    assert accuracy.max() > 0.75
    far = ((np.linalg.norm(xyz - R1, axis=1) > 30) & (np.linalg.norm(xyz - R2, axis=1) > 30))
    assert accuracy[far].mean() == pytest.approx(0.5, abs=0.02)
    assert np.percentile(accuracy[far], 99) < 0.62
    # the vectorised scheme is the per-sphere classifier, exactly
    rng = np.random.default_rng(3)
    centres = [nearest_voxel(xyz, R1), nearest_voxel(xyz, R2), nearest_voxel(xyz, R1 + 6),
               *rng.choice(mask.n_voxels, 4, replace=False)]
    for centre in centres:
        expected = brute_force_searchlight(ma, labels, mask, centre, 6, 5, 0, 0.01)
        assert accuracy[centre] == pytest.approx(expected, abs=1e-12), centre
    # coarser centres: the same picture, resampled to the mask
    coarse = searchlight(ma, labels, mask, radius_mm=6, step=2)
    assert coarse.shape == (mask.n_voxels,)
    peak = xyz[np.argmax(coarse)]
    assert min(np.linalg.norm(peak - R1), np.linalg.norm(peak - R2)) <= 10
    assert np.corrcoef(coarse, accuracy)[0, 1] > 0.6


def test_searchlight_three_classes_matches_brute_force(mask, xyz):
    near = (np.linalg.norm(xyz - R1, axis=1) < 30) | (np.linalg.norm(xyz - R2, axis=1) < 30)
    mask = BrainMask(mask.unmask(near, dtype=bool), mask.affine)  # a smaller mask: faster
    xyz = xyz[near]
    ma, labels = two_groups(mask, n=90, seed=1)
    labels = labels.copy()
    labels[::3] = "C"  # a third label, unrelated to the maps
    accuracy = searchlight(ma, labels, mask, radius_mm=4, n_splits=3, seed=2, var_floor=0.05)
    for centre in [nearest_voxel(xyz, R1), nearest_voxel(xyz, R2), 1234, 12345]:
        expected = brute_force_searchlight(ma, labels, mask, centre, 4, 3, 2, 0.05)
        assert accuracy[centre] == pytest.approx(expected, abs=1e-12)
    result = cross_validated_classification(ma, labels, n_splits=3)
    assert result.weights.shape == (3, mask.n_voxels) and result.chance == pytest.approx(1 / 3)


def test_sphere_matrix(mask):
    spheres = searchlight_sphere_matrix(mask, 4)
    assert spheres.shape == (mask.n_voxels, mask.n_voxels)
    assert spheres.getnnz(axis=1).max() == 33
    assert (spheres - spheres.T).nnz == 0
    centres = np.arange(0, mask.n_voxels, 97)
    part = searchlight_sphere_matrix(mask, 4, centres)
    transposed = searchlight_sphere_matrix(mask, 4, centres, transpose=True)
    assert (part - spheres[centres]).nnz == 0
    assert (transposed - part.T).nnz == 0


def test_searchlight_errors(data, mask):
    ma, labels = data
    with pytest.raises(CbmaError, match="voxels"):
        searchlight(ma[:, :100], labels, mask)
    with pytest.raises(CbmaError, match="step"):
        searchlight(ma, labels, mask, step=0)
    with pytest.raises(CbmaError, match="var_floor"):
        searchlight(ma, labels, mask, var_floor=0)
