"""ALE kernel, statistic and histogram null: analytic results and NiMARE parity."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import KNOWLEDGE, MASK, RELATED
from fixtures.reference import nimare_arrays, nimare_file, nimare_map

from cbma import ale, clusters, coordinates, correct, dataset, kernels, space, stats
from cbma.errors import CbmaError

# NiMARE 0.22.1 kernels on the 2 mm grid (ALGORITHMS.md 1.1)
KERNEL_TABLE = [  # n, FWHM mm, cropped size, peak
    (5, 11.3733, 21, 0.004509),
    (10, 10.0026, 17, 0.006629),
    (15, 9.5018, 17, 0.007732),
    (20, 9.2412, 17, 0.008405),
    (30, 8.9731, 17, 0.009181),
    (50, 8.7527, 15, 0.009893),
    (100, 8.5837, 15, 0.010488),
]


@pytest.mark.parametrize("n, fwhm, size, peak", KERNEL_TABLE)
def test_ale_kernel_matches_published_values(n, fwhm, size, peak):
    assert kernels.ale_fwhm(n) == pytest.approx(fwhm, abs=1e-4)
    kern = kernels.ale_kernel(kernels.ale_fwhm(n), [2.0, 2.0, 2.0])
    assert kern.shape == (size,) * 3
    assert kern.max() == pytest.approx(peak, abs=1e-6)
    assert kern.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(kern.argmax(), kern.shape) == (size // 2,) * 3


def test_kernel_options_are_exclusive_and_need_sample_sizes():
    assert kernels.experiment_fwhms([10, 20], fwhm=12).tolist() == [12, 12]
    assert kernels.experiment_fwhms([10, 20], sample_size=10)[1] == pytest.approx(10.0026, 1e-4)
    with pytest.raises(CbmaError, match="not both"):
        kernels.experiment_fwhms([10], fwhm=12, sample_size=10)
    with pytest.raises(CbmaError, match="no valid sample size"):
        kernels.experiment_fwhms([10, np.nan])


def test_approximate_null_exact_small_case():
    # 10 voxels, two experiments with one voxel of MA 0.5 each (ALGORITHMS.md 2.2)
    ma = sp.csr_matrix(([0.5, 0.5], ([0, 1], [0, 1])), shape=(2, 10))
    centres, weights = ale.ale_null_approximate(ma)
    nonzero = {round(c, 5): w for c, w in zip(centres, weights, strict=True) if w > 0}
    assert nonzero == pytest.approx({0.0: 0.81, 0.5: 0.18, 0.75: 0.01})
    p = stats.null_p([0.5, 0.75, 0.0], centres, weights)
    np.testing.assert_allclose(p, [0.19, 0.01, 1.0])
    assert ale.ale_stat(ma)[:3] == pytest.approx([0.5, 0.5, 0.0])


def _approximate_null_numpy(ma):
    """The histogram null as plain numpy: bincounts of blocks of outer products."""
    from cbma.stats import HIST_STEP

    n_exp, n_vox = ma.shape
    max_ma = np.ceil(np.asarray(ma.max(axis=1).todense()).ravel() / HIST_STEP) * HIST_STEP
    centres = np.round(np.arange(0, 1.0 - np.prod(1.0 - max_ma) + 1.5 * HIST_STEP,
                                 HIST_STEP), 5)

    def nearest(values):
        scaled = np.asarray(values) / HIST_STEP
        idx = np.floor(scaled)
        idx += (scaled - idx) >= 0.5
        return np.clip(idx.astype(np.int64), 0, centres.size - 1)

    def histogram(e):
        row = ma.data[ma.indptr[e]:ma.indptr[e + 1]]
        hist = np.bincount(nearest(row), minlength=centres.size).astype(float)
        hist[0] += n_vox - row.size
        return hist / n_vox

    null = histogram(0)
    for e in range(1, n_exp):
        exp_hist = histogram(e)
        a, b_all = np.flatnonzero(null), np.flatnonzero(exp_hist)
        combined = np.zeros(centres.size)
        rows = max(1, 2_000_000 // a.size)
        for start in range(0, b_all.size, rows):
            b = b_all[start:start + rows]
            scores = 1.0 - np.outer(1.0 - centres[b], 1.0 - centres[a])
            combined += np.bincount(nearest(scores.ravel()),
                                    weights=np.outer(exp_hist[b], null[a]).ravel(),
                                    minlength=centres.size)
        null = combined
    return centres, null / null.sum()


def test_approximate_null_is_the_numpy_computation_bit_for_bit():
    """The compiled union of histograms adds what numpy's bincounts add, in their order."""
    rng = np.random.default_rng(0)
    n_exp, n_vox = 40, 3000
    dense = np.where(rng.random((n_exp, n_vox)) < 0.2, rng.random((n_exp, n_vox)) * 0.06, 0.0)
    ma = sp.csr_matrix(dense)
    centres, weights = ale.ale_null_approximate(ma)
    ref_centres, ref_weights = _approximate_null_numpy(ma)
    np.testing.assert_array_equal(centres, ref_centres)
    np.testing.assert_array_equal(weights, ref_weights)
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).sum() > 1000


def test_null_threshold_is_last_bin_above_p():
    centres = np.array([0.0, 0.1, 0.2, 0.3])
    weights = np.array([0.9, 0.08, 0.015, 0.005])  # tails 1, .1, .02, .005
    assert stats.null_threshold(0.05, centres, weights) == 0.1
    assert stats.null_threshold(0.001, centres, weights) == 0.3
    assert stats.null_threshold(0.5, centres, weights) == 0.0


def test_null_to_p_counts_ties_and_clips():
    null = np.array([1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(correct.null_to_p([2.0, 0.0, 5.0], null), [0.75, 0.75, 0.25])


def _fit(path):
    mask = space.load_mask(MASK)
    table = dataset.read_dataset(path, "sleuth")
    exps = coordinates.experiments_table(table)
    fwhms = kernels.experiment_fwhms(exps["sample_size"])
    row = pd.Categorical(table["id"], categories=exps["id"]).codes
    ma = kernels.ale_ma_maps(kernels.foci_voxels(table, mask), row, fwhms, mask)
    return mask, ma, *ale.ale(ma)


@pytest.mark.parametrize("name, path, threshold", [
    ("knowledge", KNOWLEDGE, 0.01146), ("related", RELATED, 0.01061)])
def test_ale_matches_nimare(name, path, threshold):
    _, _, maps, (centres, weights) = _fit(path)
    for key, tol in [("stat", 1e-6), ("z", 0.01), ("logp", 0.01)]:
        ref = nimare_map(f"{name}/{name}_{key}")
        np.testing.assert_allclose(maps[key], ref, atol=tol, rtol=0, err_msg=key)
    ref_null = nimare_arrays(f"{name}/null_distributions_approximate")
    np.testing.assert_allclose(centres, ref_null["histogram_bins"], atol=1e-12)
    np.testing.assert_allclose(weights, ref_null["histweights_corr-none_method-approximate"],
                               atol=1e-7)  # float ties in the fold: <= 2.6e-8
    assert stats.null_threshold(0.001, centres, weights) == pytest.approx(threshold)


def test_observed_clusters_match_nimare():
    mask, _, maps, null = _fit(KNOWLEDGE)
    summary = json.loads(nimare_file("knowledge/fwe_n5000/summary.json").read_text())
    thr = stats.null_threshold(0.001, *null)
    _, sizes, masses = clusters.label_clusters(maps["stat"], mask, thr)
    order = np.argsort(-sizes, kind="stable")
    ref = summary["observed_clusters_conn6"]
    assert sorted(sizes.tolist(), reverse=True) == ref["sizes_desc"]
    np.testing.assert_allclose(sorted(masses), sorted(ref["masses_desc_by_size"]), atol=1e-6)
    assert sizes[order][0] == 407


def test_foci_outside_the_volume_keep_their_in_volume_tails():
    mask = space.load_mask(MASK)
    # a focus 6 voxels beyond the volume edge along i still reaches in-mask voxels? no:
    # the brain does not reach the volume edge, so its kernel touches no in-mask voxel.
    ijk = np.array([[-6, 50, 40], [45, 60, 40]])
    ma = kernels.ale_ma_maps(ijk, np.array([0, 1]), np.array([10.0, 10.0]), mask)
    assert ma[0].nnz == 0 and ma[1].nnz > 0
    # overlapping foci of one experiment take the maximum, not the sum
    two = kernels.ale_ma_maps(np.array([[45, 60, 40], [45, 60, 40]]), np.array([0, 0]),
                              np.array([10.0]), mask)
    assert np.allclose(two.toarray(), ma[1].toarray())
