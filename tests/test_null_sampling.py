"""Where the Monte Carlo null puts its random foci: uniform (the default) or by grey matter."""

import numpy as np
import pytest
from conftest import KNOWLEDGE, MASK, smk, write_config

from cbma import coordinates, dataset, estimators, io, layout, null, null_sampling, space, stats
from cbma.errors import CbmaError


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


@pytest.fixture(scope="module")
def experiments():
    return coordinates.experiments_table(dataset.read_dataset(KNOWLEDGE, "sleuth"))


def test_uniform_draws_are_the_draws_of_before(mask, experiments):
    """sample_from(None) is the default: each iteration's integers(0, n) of its own stream."""
    model = estimators.get("ale").null_model(experiments, mask, {})
    before = model.draw_voxels(7, "a", range(3))
    for row, it in zip(before, range(3), strict=True):
        expected = null.iteration_rng(7, "a", it).integers(0, mask.n_voxels, model.n_foci_total)
        np.testing.assert_array_equal(row, expected)
    np.testing.assert_array_equal(model.sample_from(None).draw_voxels(7, "a", range(3)), before)


def test_weighted_draws_follow_the_weights(mask, experiments):
    """Frequencies proportional to the weights; a voxel of weight 0 is never drawn."""
    model = estimators.get("ale").null_model(experiments, mask, {})
    weights = np.zeros(mask.n_voxels)
    chosen = np.array([5, 1000, 20000, mask.n_voxels - 1])
    weights[chosen] = [1.0, 2.0, 3.0, 4.0]
    voxels = model.sample_from(weights).draw_voxels(0, "w", range(200)).ravel()
    assert set(np.unique(voxels)) == set(chosen.tolist())
    share = np.array([(voxels == v).mean() for v in chosen])
    # ~50,000 draws: each share within 5 standard errors of its probability
    p = weights[chosen] / weights.sum()
    assert np.all(np.abs(share - p) < 5 * np.sqrt(p * (1 - p) / voxels.size))


def test_weighted_null_changes_only_where_the_foci_go(mask, experiments):
    """Same seed, same stream: a weighted model's iterations run as the uniform ones do."""
    est = estimators.get("ale")
    uniform = est.null_model(experiments, mask, {})
    grey = est.null_model(experiments, mask, {}).sample_from(
        null_sampling.grey_matter_probability(mask))
    a = null.run_iterations(uniform, 0, "x", range(4), 0.01)
    b = null.run_iterations(grey, 0, "x", range(4), 0.01)
    assert a.shape == b.shape and not np.array_equal(a, b)
    # the weighted model's result is the ALE of its own draws
    centres = grey.draw(0, "x", range(4))
    for row, c in zip(b, centres, strict=True):
        ref = null.iteration_reference(grey, c, 0.01)
        assert row[0] == pytest.approx(ref[0], abs=1e-15) and row[1] == ref[1]
    # MKDA draws the same foci as ALE from the same weights
    sphere = estimators.get("mkda").null_model(experiments, mask, {"r": 10.0, "value": 1.0})
    sphere.sample_from(null_sampling.grey_matter_probability(mask))
    np.testing.assert_array_equal(sphere.draw_voxels(0, "x", range(4)),
                                  grey.draw_voxels(0, "x", range(4)))


def test_grey_matter_probability(mask):
    gm = null_sampling.grey_matter_probability(mask)
    assert gm.shape == (mask.n_voxels,) and gm.min() >= 0 and gm.max() <= 1
    assert 0.3 < gm.mean() < 0.7 and gm.max() > 0.9
    # a point in the thalamus (grey) against one in the corpus callosum (white)
    ijk = space.mm_to_vox(np.array([[-10.0, -18.0, 8.0], [0.0, 10.0, 22.0]]), mask.affine)
    index = np.searchsorted(mask.flat_indices, np.ravel_multi_index(ijk.T, mask.shape))
    assert gm[index[0]] > 0.5 > gm[index[1]]


def test_sampling_weights_and_bad_weights(mask, experiments):
    assert null_sampling.sampling_weights("uniform", mask) is None
    assert null_sampling.sampling_weights("grey_matter", mask).shape == (mask.n_voxels,)
    with pytest.raises(CbmaError, match="unknown null_sampling"):
        null_sampling.sampling_weights("white_matter", mask)
    model = estimators.get("ale").null_model(experiments, mask, {})
    for bad in (np.ones(3), -np.ones(mask.n_voxels), np.zeros(mask.n_voxels)):
        with pytest.raises(ValueError):
            model.sample_from(bad)


def test_null_model_takes_the_null_sampling(mask, experiments):
    """The estimators' null model draws by grey matter when asked, as sample_from does."""
    gm = null_sampling.grey_matter_probability(mask)
    for name, kernel in (("ale", {}), ("kda", {"r": 10.0, "value": 1.0})):
        est = estimators.get(name)
        asked = est.null_model(experiments, mask, kernel, null_sampling="grey_matter")
        by_hand = est.null_model(experiments, mask, kernel).sample_from(gm)
        np.testing.assert_array_equal(asked.draw_voxels(3, "k", range(5)),
                                      by_hand.draw_voxels(3, "k", range(5)))
        uniform = est.null_model(experiments, mask, kernel, null_sampling="uniform")
        assert uniform.sampling_cdf is None
    with pytest.raises(CbmaError, match="unknown null_sampling"):
        est.null_model(experiments, mask, {"r": 10.0, "value": 1.0}, null_sampling="csf")


@pytest.mark.slow
def test_pipeline_draws_the_null_it_is_told(tmp_path, mask, experiments):
    """correction.null_sampling reaches the fwe_null jobs: their chunk is the in-process
    null of that sampling, and grey matter gives another null than uniform."""
    chunks = {}
    for how in ("uniform", "grey_matter"):
        workdir = tmp_path / how
        write_config(workdir, {
            "seed": 5, "chunk_size": 100,
            "datasets": {"k": {"path": str(KNOWLEDGE), "format": "sleuth"}},
            "analyses": {"k": {"dataset": "k", "correction": {"n_iters": 100,
                                                                "null_sampling": how}}}})
        target = layout.fwe_chunk("k", 0)
        smk(workdir, target)
        chunks[how] = io.read_tsv(workdir / target)
        hist = io.read_tsv(workdir / layout.analysis_file("null_approximate.tsv", "k"))
    threshold = stats.null_threshold(0.001, hist["stat"].to_numpy(),
                                     hist["probability"].to_numpy())
    model = estimators.get("ale").null_model(experiments, mask, {}, null_sampling="grey_matter")
    expected = null.run_iterations(model, 5, "k", range(100), threshold)
    np.testing.assert_allclose(chunks["grey_matter"]["max_stat"], expected[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(chunks["grey_matter"]["max_cluster_size"], expected[:, 1])
    assert not np.array_equal(chunks["uniform"]["max_stat"], chunks["grey_matter"]["max_stat"])
