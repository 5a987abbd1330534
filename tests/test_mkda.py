"""MKDA, KDA and MKDAChi2: MA maps, nulls, chi-square tests, FDR; NiMARE 0.22.1 parity."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import KNOWLEDGE, MASK, RELATED, mkda_maps
from fixtures.reference import nimare_arrays, nimare_map, nimare_maps
from scipy import stats

from cbma import coordinates, correct, dataset, estimators, kernels, mkda, space, spheres
from cbma.chi2 import (
    association_test,
    chi2_fdr_maps,
    chi2_maps,
    mkda_chi2,
    neurosynth_images,
    uniformity_test,
)
from cbma.errors import CbmaError
from cbma.stats import null_threshold

CHI2 = "mkda/chi2_knowledge_vs_related"  # NiMARE's outputs, in tests/fixtures/nimare


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


def _dense_ma(ijk, experiment, n_exp, mask, r, sum_overlap):
    """Brute force: every sphere voxel of every focus, clipped to the volume, then masked."""
    offsets = spheres.sphere_offsets(r, mask.voxel_size)
    vols = np.zeros((n_exp, *mask.shape))
    for centre, e in zip(ijk, experiment, strict=True):
        vox = centre + offsets
        vox = vox[np.all((vox >= 0) & (vox < np.array(mask.shape)), axis=1)]
        if sum_overlap:
            np.add.at(vols[e], tuple(vox.T), 1.0)
        else:
            vols[e][tuple(vox.T)] = 1.0
    return np.stack([mask.apply(v) for v in vols])


def _load(path, mask, r=10.0, sum_overlap=False):
    table = dataset.read_dataset(path, "sleuth")
    exps = coordinates.experiments_table(table)
    row = pd.Categorical(table["id"], categories=exps["id"]).codes
    return spheres.mkda_ma_maps(kernels.foci_voxels(table, mask), row, len(exps), mask, r=r,
                                sum_overlap=sum_overlap)


def _ref(name, mask):
    """NiMARE's map ``name`` (masked vector, float32 values as written)."""
    ref = nimare_map(name)
    assert ref.shape == (mask.n_voxels,)
    return ref


# --------------------------------------------------------------------------- kernel


@pytest.mark.parametrize("r, n", [(10, 515), (6, 123), (0, 1), (2.5, 7), (3.9, 27)])
def test_sphere_sizes_on_2mm_grid(r, n):
    offsets = spheres.sphere_offsets(r, [2.0, 2.0, 2.0])
    assert len(offsets) == n
    assert np.all(np.sqrt(((offsets * 2.0) ** 2).sum(axis=1)) <= r)


def test_ma_maps_match_brute_force(mask):
    rng = np.random.default_rng(3)
    inside = np.stack(np.unravel_index(rng.choice(mask.flat_indices, 30), mask.shape), 1)
    edges = np.array([[0, 54, 45], [90, 0, 0], [-3, 50, 40], [45, 108, 90], [45, 60, 95],
                      [100, 60, 40]])  # volume corners, outside the volume, outside the mask
    ijk = np.concatenate([inside, edges, inside[:4]])  # repeated foci overlap
    experiment = rng.integers(0, 7, len(ijk))
    for r, sum_overlap in [(10, False), (6, True), (4, False)]:
        ma = spheres.mkda_ma_maps(ijk, experiment, 8, mask, r=r, sum_overlap=sum_overlap)
        assert isinstance(ma, sp.csr_matrix) and ma.dtype == np.float32
        assert ma.shape == (8, mask.n_voxels) and ma.has_sorted_indices
        assert np.all(np.diff(ma.indices.astype(np.int64))[np.diff(
            np.repeat(np.arange(8), np.diff(ma.indptr))) == 0] > 0)
        assert ma[7].nnz == 0  # an experiment without foci
        dense = _dense_ma(ijk, experiment, 8, mask, r, sum_overlap)
        np.testing.assert_array_equal(ma.toarray(), dense)
        assert np.all(ma.data != 0)


def test_kda_counts_overlapping_foci_twice_mkda_once(mask):
    centre = np.array([[40, 60, 36]])
    one = spheres.mkda_ma_maps(centre, [0], 1, mask)
    twice = np.repeat(centre, 2, axis=0)
    assert one.nnz == 515  # deep inside the brain: the whole sphere
    mkda_map = spheres.mkda_ma_maps(twice, [0, 0], 1, mask)
    kda_map = spheres.mkda_ma_maps(twice, [0, 0], 1, mask, sum_overlap=True, value=0.5)
    np.testing.assert_array_equal(mkda_map.toarray(), one.toarray())
    np.testing.assert_array_equal(kda_map.toarray(), one.toarray())  # 2 x 0.5
    near = np.array([[40, 60, 36], [42, 60, 36]])  # 4 mm apart: partly overlapping
    k = spheres.mkda_ma_maps(near, [0, 0], 1, mask, sum_overlap=True)
    m = spheres.mkda_ma_maps(near, [0, 0], 1, mask)
    separate = spheres.mkda_ma_maps(near, [0, 1], 2, mask)
    assert set(np.unique(k.data)) == {1.0, 2.0} and set(np.unique(m.data)) == {1.0}
    assert k.sum() == separate.nnz and m.nnz == k.nnz < separate.nnz


def test_foci_outside_the_mask_keep_their_in_mask_part(mask):
    # just outside the brain along i: part of the sphere is in the mask
    j, k = 60, 40
    line = mask.data[:, j, k]
    i_out = np.flatnonzero(line)[0] - 2
    assert not mask.contains(np.array([[i_out, j, k]]))[0]
    ma = spheres.mkda_ma_maps(np.array([[i_out, j, k], [-20, j, k]]), [0, 1], 2, mask)
    assert 0 < ma[0].nnz < 515 and ma[1].nnz == 0


def test_ma_maps_reject_bad_input(mask):
    ijk = np.array([[45, 60, 40]])
    with pytest.raises(CbmaError, match="experiment labels"):
        spheres.mkda_ma_maps(ijk, [1], 1, mask)
    with pytest.raises(CbmaError, match="shape"):
        spheres.mkda_ma_maps(ijk[0], [0], 1, mask)
    with pytest.raises(CbmaError, match="radius"):
        spheres.mkda_ma_maps(ijk, [0], 1, mask, r=-1)
    empty = spheres.mkda_ma_maps(np.zeros((0, 3), int), np.zeros(0, int), 3, mask)
    assert empty.shape == (3, mask.n_voxels) and empty.nnz == 0


# --------------------------------------------------------------------------- nulls


def test_poisson_binomial_null_small_case():
    # 10 voxels; experiment 0 active on 5 (p = .5), experiment 1 on 2 (p = .2)
    ma = sp.csr_matrix(([1.0] * 7, ([0] * 5 + [1] * 2, [0, 1, 2, 3, 4, 0, 9])), shape=(2, 10))
    centres, pmf, shares = mkda.mkda_null(ma)
    np.testing.assert_allclose(shares, [0.5, 0.2])
    np.testing.assert_array_equal(centres, [0, 1, 2])
    np.testing.assert_allclose(pmf, [0.4, 0.5, 0.1])
    maps, null = mkda.mkda_density(ma)
    np.testing.assert_array_equal(maps["stat"][[0, 1, 5, 9]], [2, 1, 0, 1])
    np.testing.assert_allclose(maps["p"][[0, 1, 5, 9]], [0.1, 0.6, 1.0, 0.6])
    np.testing.assert_allclose(maps["z"][0], stats.norm.isf(0.1))
    assert maps["z"][5] == 0
    # the cluster-forming threshold: last count whose tail is still above p
    assert null_threshold(0.2, *null) == 1
    assert null_threshold(0.05, *null) == 2
    assert null_threshold(0.7, *null) == 0


def test_poisson_binomial_matches_enumeration():
    probs = np.array([0.3, 0.05, 0.5, 0.9, 0.01])
    exact = np.zeros(6)
    for bits in itertools.product([0, 1], repeat=5):
        b = np.array(bits)
        exact[b.sum()] += np.prod(np.where(b == 1, probs, 1 - probs))
    np.testing.assert_allclose(mkda.poisson_binomial(probs), exact, rtol=1e-13)


def test_weighted_null_matches_enumeration():
    rng = np.random.default_rng(7)
    k = 10
    weights = mkda.wager_weights(rng.integers(6, 300, k))
    assert weights.sum() == pytest.approx(k)
    n_vox = 1000
    active = rng.integers(2, 100, k)
    rows = np.repeat(np.arange(k), active)
    cols = np.concatenate([rng.choice(n_vox, a, replace=False) for a in active])
    ma = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(k, n_vox))
    centres, pmf, shares = mkda.mkda_null(ma, weights)
    assert pmf.sum() == pytest.approx(1.0)
    assert centres[-1] == pytest.approx(k, rel=1e-3)
    values, probs = [], []
    for bits in itertools.product([0, 1], repeat=k):
        b = np.array(bits)
        values.append(weights @ b)
        probs.append(np.prod(np.where(b == 1, shares, 1 - shares)))
    values, probs = np.array(values), np.array(probs)
    for threshold in np.quantile(values, [0.5, 0.9, 0.99, 0.999]):
        exact = probs[values >= threshold - 1e-9].sum()
        approx = pmf[centres >= threshold - k * (centres[1] - centres[0])].sum()
        assert approx == pytest.approx(exact, abs=1e-3)
    maps, _ = mkda.mkda_density(ma, weights)
    stat = np.asarray(ma.T @ weights).ravel()
    np.testing.assert_allclose(maps["stat"], stat)
    # equal weights are the unweighted analysis, exactly
    plain, plain_null = mkda.mkda_density(ma)
    same, same_null = mkda.mkda_density(ma, mkda.wager_weights(np.full(k, 20)))
    for key in plain:
        np.testing.assert_array_equal(plain[key], same[key])
    with pytest.raises(CbmaError, match="weights"):
        mkda.mkda_density(ma, np.ones(k + 1))


def test_weighted_mkda_density_by_hand(mask):
    """Sample-size weights (Wager et al. 2007): at a voxel, the summed weights of the
    experiments with a focus within r mm, each weight sqrt(n) scaled to sum to k."""
    exps = pd.DataFrame({"id": ["a", "b", "c"], "sample_size": [4, 9, 16]})
    weights = estimators.experiment_weights("sample_size", exps)
    assert weights.tolist() == pytest.approx([2 / 3, 1.0, 4 / 3], rel=1e-15)
    here, there = [0.0, -20.0, 10.0], [40.0, -20.0, 10.0]
    ma = mkda_maps([[here], [there], [here]], mask)  # a and c at one place, b 40 mm away
    maps, (centres, pmf) = estimators.get("mkda").fit(ma, weights)
    flat = mask.flat_indices
    vox = [int(np.searchsorted(flat, np.ravel_multi_index(tuple(space.mm_to_vox(xyz,
           mask.affine)[0]), mask.shape))) for xyz in (here, there)]
    assert maps["stat"][vox].tolist() == [2 / 3 + 4 / 3, 1.0]
    assert np.unique(maps["stat"]).tolist() == [0.0, 1.0, 2.0]
    assert pmf.sum() == pytest.approx(1.0)
    # without weights: the number of experiments
    plain, _ = estimators.get("mkda").fit(ma, estimators.experiment_weights("equal", exps))
    assert plain["stat"][vox].tolist() == [2.0, 1.0]
    assert maps["p"][vox[1]] < plain["p"][vox[1]]  # experiment a alone (2/3) no longer reaches 1
    exps.loc[1, "sample_size"] = np.nan
    with pytest.raises(CbmaError, match="experiment 'b' has no sample size"):
        estimators.experiment_weights("sample_size", exps)
    with pytest.raises(CbmaError, match="estimator ale takes no experiment weights"):
        estimators.get("ale").fit(ma, weights)


def test_mkda_density_needs_binary_maps():
    ma = sp.csr_matrix(np.array([[1.0, 2.0, 0.0]]))
    with pytest.raises(CbmaError, match="binary"):
        mkda.mkda_density(ma)


def test_kda_null_small_case():
    # 4 voxels; experiment 0 has counts (2, 1, 0, 0), experiment 1 (1, 0, 0, 0)
    ma = sp.csr_matrix(np.array([[2.0, 1.0, 0, 0], [1.0, 0, 0, 0]]))
    centres, pmf = mkda.kda_null(ma)
    # h0 = (.5, .25, .25), h1 = (.75, .25): sums 0..3
    np.testing.assert_allclose(pmf, [0.375, 0.3125, 0.25, 0.0625])
    maps, _ = mkda.kda(ma)
    np.testing.assert_array_equal(maps["stat"], [3, 1, 0, 0])
    np.testing.assert_allclose(maps["p"], [0.0625, 0.625, 1, 1])
    # another kernel value: the same p on the scaled grid
    half, _ = mkda.kda(ma * 0.5)
    np.testing.assert_allclose(half["p"], maps["p"])


# --------------------------------------------------------------------------- chi-square


def test_chi2_tests_match_scipy():
    rng = np.random.default_rng(11)
    n1, n2 = 37, 120
    a = rng.integers(1, n1, 200)
    b = rng.integers(1, n2, 200)
    chi2, z = association_test(a, b, n1, n2)
    for i in range(0, 200, 7):
        table = [[a[i], b[i]], [n1 - a[i], n2 - b[i]]]
        expected = stats.chi2_contingency(table, correction=False)[0]
        assert chi2[i] == pytest.approx(expected, rel=1e-10)
    np.testing.assert_array_equal(np.sign(z), np.sign(a / n1 - b / n2))
    np.testing.assert_allclose(np.abs(z), np.sqrt(chi2))
    # uniformity: each count against the mean count, a 2-cell goodness of fit
    chi2_u, z_u = uniformity_test(a, n1)
    e = a.mean()
    expected = stats.chisquare(np.c_[a, n1 - a], f_exp=np.c_[np.full(200, e), np.full(200, n1 - e)],
                               axis=1).statistic
    np.testing.assert_allclose(chi2_u, expected, rtol=1e-10)
    np.testing.assert_array_equal(np.sign(z_u), np.sign(a - e))
    # zero expected cells: chi2 = 2 (NiMARE, reproducing Neurosynth); z = 0 with no evidence
    chi2_0, z_0 = association_test([0, n1], [0, n2], n1, n2)
    np.testing.assert_array_equal(chi2_0, [2.0, 2.0])
    np.testing.assert_array_equal(z_0, [0.0, 0.0])


def test_association_test_broadcasts_over_terms():
    rng = np.random.default_rng(5)
    n1 = np.array([[10], [25], [40]])
    total = rng.integers(0, 50, (1, 30))
    a = np.minimum(rng.integers(0, 11, (3, 30)), np.minimum(total, n1))
    chi2, z = association_test(a, total - a, n1, 50 - n1)
    assert chi2.shape == z.shape == (3, 30)
    for t in range(3):
        row, _ = association_test(a[t], total[0] - a[t], int(n1[t, 0]), 50 - int(n1[t, 0]))
        np.testing.assert_array_equal(chi2[t], row)


def test_chi2_maps_probabilities_and_aliases():
    a = np.array([0, 2, 5, 1, 0.0])
    b = np.array([0, 1, 0, 4, 3.0])
    maps = chi2_maps(a, b, 5, 10, prior=0.3)
    np.testing.assert_allclose(maps["prob_desc-A"], (a + b) / 15)
    np.testing.assert_allclose(maps["prob_desc-AgF"], a / 5)
    np.testing.assert_allclose(maps["prob_desc-AgU"], b / 10)
    np.testing.assert_allclose(maps["prob_desc-FgA"], [0, 2 / 3, 1, 0.2, 0])
    prior_a = 0.3 * a / 5 + 0.7 * b / 10
    np.testing.assert_allclose(maps["prob_desc-AgF_prior"], prior_a)
    np.testing.assert_allclose(maps["prob_desc-FgA_prior"][1:4], 0.3 * a[1:4] / 5 / prior_a[1:4])
    assert maps["prob_desc-FgA_prior"][0] == 0
    assert maps["prob_desc-group1"] is maps["prob_desc-AgF"]
    assert maps["prob_desc-group2"] is maps["prob_desc-AgU"]
    for kind in ("z", "chi2", "p", "logp"):
        assert maps[f"{kind}_desc-group1"] is maps[f"{kind}_desc-uniformity"]
    np.testing.assert_allclose(maps["chi2_desc-group2"], uniformity_test(b, 10)[0])
    np.testing.assert_allclose(maps["p_desc-association"],
                               stats.chi2.sf(maps["chi2_desc-association"], 1))
    np.testing.assert_allclose(maps["logp_desc-association"],
                               -np.log10(maps["p_desc-association"]))
    assert "prob_desc-AgF_prior" not in chi2_maps(a, b, 5, 10, prior=None)
    with pytest.raises(CbmaError, match="group size"):
        chi2_maps(a + 5, b, 5, 10)


def test_chi2_logp_and_z_do_not_underflow():
    a = np.r_[np.full(99, 1.0), 4000.0]
    maps = chi2_maps(a, np.full(100, 10.0), 4000, 5000)
    chi2 = maps["chi2_desc-uniformity"][-1]
    assert chi2 > 3000 and maps["p_desc-uniformity"][-1] == 0  # float64 p underflows
    # log p = log 2 + log Q(x), x = sqrt(chi2), from the asymptotic series of the normal tail
    x = np.sqrt(chi2)
    log_p = np.log(2) - x**2 / 2 - np.log(x * np.sqrt(2 * np.pi)) + np.log1p(-1 / x**2 + 3 / x**4)
    assert maps["logp_desc-uniformity"][-1] == pytest.approx(-log_p / np.log(10), rel=1e-12)
    assert maps["z_desc-uniformity"][-1] == pytest.approx(np.sqrt(chi2))
    fdr = correct.fdr_indep_maps(maps, ["uniformity"])
    assert np.isfinite(fdr["z_desc-uniformity_level-voxel_corr-FDR_method-indep"]).all()
    assert fdr["logp_desc-uniformity_level-voxel_corr-FDR_method-indep"][-1] > 600


def test_mkda_chi2_counts_active_experiments():
    ma1 = sp.csr_matrix(np.array([[1.0, 1, 0], [0, 1, 0]]))
    ma2 = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 0, 0], [0, 1, 1]]))
    maps = mkda_chi2(ma1, ma2)
    np.testing.assert_allclose(maps["prob_desc-AgF"], [0.5, 1, 0])
    np.testing.assert_allclose(maps["prob_desc-AgU"], [1 / 3, 1 / 3, 1 / 3])
    with pytest.raises(CbmaError, match="share a mask"):
        mkda_chi2(ma1, sp.csr_matrix((1, 4)))


# --------------------------------------------------------------------------- FDR


def _bh_brute_force(p):
    m = p.size
    rank = np.empty(m)
    rank[np.argsort(p, kind="stable")] = np.arange(1, m + 1)
    # adjusted p: the smallest p_j m / rank_j over the p_j at least as large as p_i
    return np.array([min(1.0, min(p[j] * m / rank[j] for j in range(m) if p[j] >= p[i]))
                     for i in range(m)])


def test_fdr_bh_matches_brute_force():
    rng = np.random.default_rng(2)
    for p in (rng.uniform(size=60), rng.uniform(size=60) ** 6,
              np.round(rng.uniform(size=80), 1), np.array([0.0, 1.0, 0.5, 0.5])):
        q = correct.fdr_bh(p)
        np.testing.assert_allclose(q, _bh_brute_force(p), rtol=1e-12, atol=1e-300)
        order = np.argsort(p)
        assert np.all(np.diff(q[order]) >= -1e-15) and q.max() <= 1
        for alpha in (0.01, 0.05, 0.2):
            t = correct.bh_threshold(p, alpha)
            np.testing.assert_array_equal(q <= alpha * (1 + 1e-12), p <= t)
    assert correct.bh_threshold(np.array([0.5, 0.9]), 0.05) == -1
    np.testing.assert_array_equal(correct.fdr_bh(np.ones((2, 3))), np.ones((2, 3)))
    with pytest.raises(CbmaError, match="p-values"):
        correct.fdr_bh([0.1, np.nan])


def test_fdr_maps_conventions():
    maps = chi2_maps(np.array([0, 1, 2, 9, 9.0]), np.array([3, 1, 2, 0, 1.0]), 10, 10)
    fdr = chi2_fdr_maps(maps)
    suffix = "level-voxel_corr-FDR_method-indep"
    assert set(fdr) == {f"{v}_desc-{d}_{suffix}" for v in ("p", "z", "logp")
                        for d in ("uniformity", "group1", "group2", "association")}
    for desc in ("uniformity", "group2", "association"):
        q = correct.fdr_bh(maps[f"p_desc-{desc}"])
        np.testing.assert_allclose(fdr[f"p_desc-{desc}_{suffix}"], q, rtol=1e-12)
        z = stats.norm.isf(q / 2) * np.sign(maps[f"z_desc-{desc}"])
        np.testing.assert_allclose(fdr[f"z_desc-{desc}_{suffix}"], z, atol=1e-12)
        np.testing.assert_allclose(fdr[f"logp_desc-{desc}_{suffix}"], -np.log10(q), atol=1e-12)
    np.testing.assert_array_equal(fdr[f"z_desc-group1_{suffix}"],
                                  fdr[f"z_desc-uniformity_{suffix}"])


# --------------------------------------------------------------------------- Neurosynth names


def test_neurosynth_images_names_and_thresholding():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 30, 500).astype(float)
    b = rng.integers(0, 20, 500).astype(float)
    a[:20] = 0
    b[:20] = 0  # voxels no study activates
    a[20:40] = 29  # strongly associated voxels
    maps = chi2_maps(a, b, 30, 300, prior=0.5)
    images = neurosynth_images(maps)
    assert list(images) == ["pA", "pAgF", "pFgA", "pA_given_pF=0.50", "pFgA_given_pF=0.50",
                            "uniformity-test_z", "uniformity-test_z_FDR_0.01",
                            "association-test_z", "association-test_z_FDR_0.01"]
    np.testing.assert_allclose(images["pA_given_pF=0.50"], maps["prob_desc-AgF_prior"])
    np.testing.assert_allclose(images["pFgA_given_pF=0.50"], maps["prob_desc-FgA_prior"])
    for name, desc in (("uniformity-test", "uniformity"), ("association-test", "association")):
        p = np.maximum(maps[f"p_desc-{desc}"], 1e-240)
        z = images[f"{name}_z"]
        np.testing.assert_allclose(z[20:], maps[f"z_desc-{desc}"][20:], rtol=1e-9, atol=1e-12)
        t = correct.bh_threshold(p, 0.01)
        np.testing.assert_array_equal(images[f"{name}_z_FDR_0.01"], np.where(p <= t, z, 0))
    assert (images["association-test_z_FDR_0.01"][20:40] > 0).all()
    # min_studies = 1 (Neurosynth's default) zeroes the voxels no study activates
    assert all((img[:20] == 0).all() for img in images.values())
    kept = neurosynth_images(maps, min_studies=0)
    assert (kept["uniformity-test_z"][:20] < 0).all()
    other = neurosynth_images(maps, q=0.05, prior=0.25, min_studies=3, n_studies=330)
    assert {"pA_given_pF=0.25", "pFgA_given_pF=0.25", "uniformity-test_z_FDR_0.05"} <= set(other)
    assert (other["pA"][(a + b > 0) & (a + b < 3)] == 0).all()
    assert (other["pA"][a + b >= 3] > 0).all()
    with pytest.raises(CbmaError, match="n_studies"):
        neurosynth_images(maps, min_studies=3)


def test_neurosynth_z_is_capped_like_neurosynth():
    a = np.r_[np.zeros(99), 3000.0]
    maps = chi2_maps(a, np.r_[np.zeros(99), 10.0], 3000, 10000)
    images = neurosynth_images(maps, min_studies=0)
    assert maps["z_desc-association"][-1] > 40
    assert images["association-test_z"][-1] == pytest.approx(stats.norm.isf(0.5e-240))


# --------------------------------------------------------------------------- NiMARE parity


def _report(name, ours, ref):
    diff = np.abs(np.asarray(ours, dtype=float) - ref).max()
    print(f"{name}: max |diff| {diff:.3g}")
    return diff


def test_mkda_density_matches_nimare(mask):
    ma = _load(KNOWLEDGE, mask)
    maps, null = mkda.mkda_density(ma)
    ref_dir = "mkda/density_knowledge"
    for key, tol in [("stat", 0), ("p", 1e-6), ("z", 1e-5), ("logp", 1e-5)]:
        ref = _ref(f"{ref_dir}/knowledge_{key}", mask)
        assert _report(f"mkda {key}", maps[key], ref) <= tol, key
    ref_null = nimare_arrays(f"{ref_dir}/fwe_n100/null_distributions")
    np.testing.assert_array_equal(null[0], ref_null["histogram_bins"])
    np.testing.assert_allclose(null[1], ref_null["histweights_corr-none_method-approximate"],
                               rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(mkda.mkda_null(ma)[2], ref_null["histogram_means"], rtol=1e-6)
    # NiMARE's cluster-forming threshold at p = 0.001 is 4 (clusters of stat > 4):
    # with the reference's Monte Carlo nulls it reproduces every FWE map
    threshold = null_threshold(0.001, *null)
    assert threshold == 4
    p, _ = correct.fwe_montecarlo(
        maps["stat"], mask, threshold, ref_null["values_level-voxel_corr-fwe_method-montecarlo"],
        ref_null["values_desc-size_level-cluster_corr-fwe_method-montecarlo"],
        ref_null["values_desc-mass_level-cluster_corr-fwe_method-montecarlo"])
    for name, corrected in correct.corrected_maps(p).items():
        ref = _ref(f"{ref_dir}/fwe_n100/knowledge_{name}", mask)
        assert _report(name, corrected, ref) < 1e-5, name


def test_kda_matches_nimare(mask):
    ma = _load(KNOWLEDGE, mask, sum_overlap=True)
    assert ma.max() > 1  # overlapping spheres of one experiment add up
    maps, _ = mkda.kda(ma)
    for key, tol in [("stat", 0), ("p", 1e-6), ("z", 1e-5), ("logp", 1e-5)]:
        ref = _ref(f"kda/knowledge/knowledge_{key}", mask)
        assert _report(f"kda {key}", maps[key], ref) <= tol, key


def test_mkda_chi2_matches_nimare(mask):
    maps = mkda_chi2(_load(KNOWLEDGE, mask), _load(RELATED, mask))
    maps.update(chi2_fdr_maps(maps))
    refs = nimare_maps(f"{CHI2}/knowledge_vs_related_")
    names = [p.removeprefix(f"{CHI2}/knowledge_vs_related_") for p in refs]
    assert set(names) == set(maps)
    for name, path in zip(names, refs, strict=True):
        ref = _ref(path, mask)
        ours = maps[name]
        if name.startswith(("chi2", "logp", "z")):
            # float32 storage: relative precision ~6e-8 of values up to 215
            tol = 1e-7 * max(1.0, np.abs(ref).max()) + 1e-7
        else:
            tol = 1e-7
        assert _report(name, ours, ref) <= tol, name
