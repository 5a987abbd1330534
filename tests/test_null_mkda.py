"""The Monte Carlo null of MKDA density and KDA: compiled loop, seeding, NiMARE's null."""

import json

import numpy as np
import pytest
from conftest import KNOWLEDGE, MASK
from fixtures.reference import nimare_arrays, nimare_file
from scipy import ndimage, stats

from cbma import coordinates, dataset, kernels, mkda, null, space, spheres
from cbma.stats import null_threshold

NIMARE_FWE = "mkda/density_knowledge/fwe_n100"  # NiMARE's outputs, in tests/fixtures/nimare


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


@pytest.fixture(scope="module")
def knowledge():
    table = dataset.read_dataset(KNOWLEDGE, "sleuth")
    return table, coordinates.experiments_table(table)


@pytest.fixture(scope="module")
def sphere(mask):
    return spheres.sphere_offsets(10, mask.voxel_size)


def sphere_model(knowledge, sphere, mask, **kw):
    return null.SphereFociModel(knowledge[1]["n_foci"].to_numpy(), sphere, mask, **kw)


@pytest.mark.parametrize(("sum_overlap", "value", "threshold"), [
    (False, 1.0, 4.0),  # MKDA density, NiMARE's cluster-forming threshold (below)
    (True, 1.0, 5.0),  # KDA
    (False, 0.7, 2.5),  # another kernel value, a threshold between the statistic's values
    (True, 1.0, 0.0),  # every covered voxel supra-threshold: large clusters
])
def test_compiled_iterations_equal_the_plain_reference(knowledge, sphere, mask, sum_overlap,
                                                       value, threshold):
    model = sphere_model(knowledge, sphere, mask, value=value, sum_overlap=sum_overlap)
    out = null.run_iterations(model, 3, "knowledge", range(6), threshold)
    centres = model.draw(3, "knowledge", range(6))
    for row, c in zip(out, centres, strict=True):
        ref = null.sphere_iteration_reference(model, c, threshold)
        assert ref == null.iteration_reference(model, c, threshold)  # dispatches
        assert row[0] == ref[0]  # value x an integer count: exact
        assert row[1] == ref[1]
        # the mass sums the same terms as scipy in another order
        assert row[2] == pytest.approx(ref[2], rel=1e-13, abs=1e-13)
    assert (out[:, 1] > 0).any()
    if threshold == 0.0:
        assert out[:, 1].min() > 1000


def test_kda_counts_overlapping_foci_and_mkda_does_not(mask, sphere):
    """One experiment with two foci 2 mm apart: 2 where the spheres overlap (KDA), else 1."""
    both = [null.SphereFociModel(np.array([2]), sphere, mask, sum_overlap=s) for s in (False, True)]
    m = both[0]
    depth = ndimage.distance_transform_edt(mask.data)  # the deepest in-mask voxel
    ijk = np.array(np.unravel_index(np.argmax(depth), mask.shape)) + m.pad
    centre = int(np.ravel_multi_index(ijk, m.padded_shape))
    assert m.in_mask[centre + m.s_off].all() and m.in_mask[centre + 1 + m.s_off].all()
    centres = np.array([[centre, centre + 1], [centre, centre]])
    refs = [[null.sphere_iteration_reference(m, c, 0.5) for c in centres] for m in both]
    assert [r[0] for r in refs[0]] == [1.0, 1.0] and [r[0] for r in refs[1]] == [2.0, 2.0]
    # MKDA: one sphere and a bit more, mass = size / 2
    assert refs[0][0][1] == np.union1d(centre + m.s_off, centre + 1 + m.s_off).size
    assert refs[0][1][1:] == (sphere.shape[0], sphere.shape[0] / 2)
    for model, ref in zip(both, refs, strict=True):
        work = null._sphere_workspace(model)
        out = np.empty((2, 3))
        null._sphere_batch(model, centres, 0.5, work, out)
        assert [tuple(row) for row in out] == ref
        # stamps, counts and cluster marks are left clean for the next iteration
        # (the statistic is written at a supra-threshold voxel before it is read)
        voxel, _, state = work[:3]
        assert (voxel[:, 0] == np.where(model.in_mask, 0, -1)).all() and not voxel[:, 1].any()
        assert not state.any()


def test_iterations_do_not_depend_on_chunking_or_order(knowledge, sphere, mask):
    model = sphere_model(knowledge, sphere, mask)
    whole = null.run_iterations(model, 0, "a", range(10), 4.0)
    later = null.run_iterations(model, 0, "a", range(5, 10), 4.0, batch=3)
    first = null.run_iterations(model, 0, "a", range(5), 4.0, batch=2)
    np.testing.assert_array_equal(whole, np.vstack([first, later]))
    assert not np.array_equal(whole, null.run_iterations(model, 1, "a", range(10), 4.0))
    assert not np.array_equal(whole, null.run_iterations(model, 0, "b", range(10), 4.0))


def test_random_foci_are_the_ale_draws(knowledge, sphere, mask):
    """Same seed, analysis and experiments: the same random datasets for ALE and MKDA."""
    exps = knowledge[1]
    ale = null.RandomFociModel(exps["n_foci"], kernels.experiment_fwhms(exps["sample_size"]),
                               mask)
    mk = sphere_model(knowledge, sphere, mask)
    assert mk.pad != ale.pad  # different padded grids, same voxels
    its = [0, 7, 123]
    np.testing.assert_array_equal(mk.draw_voxels(5, "k", its), ale.draw_voxels(5, "k", its))
    for model in (ale, mk):
        centres = model.draw(5, "k", its)
        assert model.in_mask[centres].all()
    ijk = [np.stack(np.unravel_index(m.draw(5, "k", its), m.padded_shape), -1) - m.pad
           for m in (ale, mk)]
    np.testing.assert_array_equal(ijk[0], ijk[1])


def test_without_clusters_the_maximum_is_still_exact(knowledge, sphere, mask):
    model = sphere_model(knowledge, sphere, mask, sum_overlap=True)
    out = null.run_iterations(model, 2, "c", range(4), 1000.0)
    for row, c in zip(out, model.draw(2, "c", range(4)), strict=True):
        assert tuple(row) == null.sphere_iteration_reference(model, c, 1000.0)
        assert row[1] == 0 and row[2] == 0.0 and row[0] >= 2


def test_bad_settings_are_refused(mask, sphere):
    with pytest.raises(ValueError, match="positive"):
        null.SphereFociModel(np.array([3]), sphere, mask, value=0.0)
    with pytest.raises(ValueError, match="offsets"):
        null.SphereFociModel(np.array([3]), np.zeros((0, 3)), mask)
    model = null.SphereFociModel(np.array([3]), sphere, mask)
    with pytest.raises(TypeError, match="ALE"):
        null.run_iterations(model, 0, "a", range(2), 1.0, core_share=0.5)


# ------------------------------------------------------ NiMARE's null ----

def approximate_null(table, mask, offsets):
    """MKDADensity's approximate null (Poisson-binomial of each experiment's coverage)."""
    ijk = space.mm_to_vox(table[["x", "y", "z"]].to_numpy(), mask.affine)
    ids = table["id"].to_numpy()
    weights = np.array([1.0])
    for exp in coordinates.experiments_table(table)["id"]:
        vox = (ijk[ids == exp][:, None, :] + offsets[None]).reshape(-1, 3)
        vox = vox[np.all((vox >= 0) & (vox < mask.shape), axis=1)]
        ma = np.zeros(mask.shape, dtype=bool)
        ma[tuple(vox.T)] = True
        p = mask.apply(ma).sum() / mask.n_voxels
        weights = np.convolve(weights, [1 - p, p])
    return weights


def test_mkda_density_null_matches_nimare(knowledge, sphere, mask):
    """500 of our iterations against NiMARE's 100 (MKDADensity, r = 10 mm, value 1)."""
    meta = json.loads(nimare_file(f"{NIMARE_FWE}/null_distributions.json").read_text())
    npz = nimare_arrays(f"{NIMARE_FWE}/null_distributions")
    theirs = {
        "max_stat": npz["values_level-voxel_corr-fwe_method-montecarlo"],
        "max_cluster_size": npz["values_desc-size_level-cluster_corr-fwe_method-montecarlo"],
        "max_cluster_mass": npz["values_desc-mass_level-cluster_corr-fwe_method-montecarlo"],
    }
    # NiMARE's cluster-forming threshold: voxel_thresh = 0.001 on the approximate
    # null, which we reproduce; its null has clusters exactly when the max exceeds it
    weights = approximate_null(knowledge[0], mask, sphere)
    np.testing.assert_allclose(weights, meta["histweights_corr-none_method-approximate"],
                               rtol=1e-6, atol=1e-12)
    threshold = null_threshold(0.001, np.arange(weights.size), weights)
    assert threshold == 4.0
    np.testing.assert_array_equal(theirs["max_cluster_size"] == 0,
                                  theirs["max_stat"] <= threshold)

    model = sphere_model(knowledge, sphere, mask)
    ours = dict(zip(null.NULL_COLUMNS[1:],
                    null.run_iterations(model, 0, "knowledge", range(500), threshold).T,
                    strict=True))
    for name in ("max_stat", "max_cluster_size", "max_cluster_mass"):
        assert stats.ks_2samp(ours[name], theirs[name]).pvalue > 0.001, name
    # 95th percentiles. The max statistic is 6 with probability ~0.25 and 7
    # with ~0.01, so the 95th percentile is 6 in both samples unless at least
    # 5 of NiMARE's 100 are 7 (probability ~0.003): equal.
    assert np.percentile(ours["max_stat"], 95) == np.percentile(theirs["max_stat"], 95) == 6
    # Cluster size and mass: their 95th percentile from 100 iterations has a
    # standard error of tens of voxels, so compare tail probabilities instead:
    # the number of their values above our 95th percentile is about
    # Binomial(100, 0.05) (mean 5, sd 2.2; 2.4 with the uncertainty of our
    # percentile from 500 iterations), and 0..13 covers it with > 99.9%.
    for name in ("max_cluster_size", "max_cluster_mass"):
        above = int((theirs[name] > np.percentile(ours[name], 95)).sum())
        assert above <= 13, (name, above)
    assert stats.binom.sf(13, 100, 0.05) < 0.001


# ------------------------------------------------------- weighted MKDA (Wager et al. 2007)

def test_weighted_iterations_equal_the_plain_reference(knowledge, sphere, mask):
    """With sample-size weights, the compiled loop sums them as the plain computation does."""
    weights = mkda.wager_weights(knowledge[1]["sample_size"].to_numpy())
    model = sphere_model(knowledge, sphere, mask, weights=weights)
    out = null.run_iterations(model, 3, "knowledge", range(6), 3.5)
    for row, c in zip(out, model.draw(3, "knowledge", range(6)), strict=True):
        ref = null.sphere_iteration_reference(model, c, 3.5)
        assert row[0] == ref[0] and row[1] == ref[1]  # the same sums, in the same order
        assert row[2] == pytest.approx(ref[2], rel=1e-13, abs=1e-13)
    assert (out[:, 1] > 0).any() and np.any(out[:, 0] != np.round(out[:, 0]))
    # the draws are those of the unweighted model; only the sums differ
    plain = null.run_iterations(sphere_model(knowledge, sphere, mask), 3, "knowledge",
                                range(6), 3.5)
    assert not np.array_equal(out, plain)
    # unit weights are the unweighted model
    unit = sphere_model(knowledge, sphere, mask, weights=np.ones(len(weights)))
    assert unit.weights.size == 0
    with pytest.raises(ValueError, match="for MKDA density, not KDA"):
        sphere_model(knowledge, sphere, mask, weights=weights, sum_overlap=True)
    with pytest.raises(ValueError, match="expected 21 experiment weights"):
        sphere_model(knowledge, sphere, mask, weights=weights[1:])


def test_weighted_null_by_hand(mask, sphere):
    """Experiments of 4, 9 and 16 subjects weigh 2/3, 1 and 4/3: sqrt(n), summing to 3."""
    weights = mkda.wager_weights([4, 9, 16])
    np.testing.assert_allclose(weights, [2 / 3, 1, 4 / 3], rtol=1e-15)
    model = null.SphereFociModel(np.array([1, 1, 1]), sphere, mask, weights=weights)
    # two deep voxels 40 mm apart: each sphere lies in the mask, and the two do not touch
    depth = ndimage.distance_transform_edt(mask.data)
    deep = np.argwhere(depth > 7)
    a = deep[np.argmax(depth[tuple(deep.T)])]
    b = deep[np.argmin(np.abs(np.linalg.norm(deep - a, axis=1) - 20))]
    here, there = (int(np.ravel_multi_index(v + model.pad, model.padded_shape)) for v in (a, b))
    assert model.in_mask[here + model.s_off].all() and model.in_mask[there + model.s_off].all()
    centres = np.array([[here, here, here], [here, here, there], [here, there, there]])
    out = np.empty((3, 3))
    null._sphere_batch(model, centres, 1.5, null._sphere_workspace(model), out)
    w0, w1, w2 = weights
    n = sphere.shape[0]
    # max statistic, largest cluster (voxels above 1.5) and its mass, by hand
    assert out[0].tolist() == [w0 + w1 + w2, n, pytest.approx(n * (w0 + w1 + w2 - 1.5))]
    assert out[1].tolist() == [w0 + w1, n, pytest.approx(n * (w0 + w1 - 1.5))]
    assert out[2].tolist() == [w1 + w2, n, pytest.approx(n * (w1 + w2 - 1.5))]
    assert out[0, 0] == 3.0
