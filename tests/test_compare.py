"""ALE subtraction and conjunction: NiMARE parity, chunking, the GingerALE-style mode."""

import time

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import KNOWLEDGE, RELATED
from fixtures.reference import nimare_map, nimare_volume
from scipy.special import gammaln
from test_estimators import _fit

from cbma import ale, chunks, compare, kernels, space
from cbma.errors import CbmaError, InputFileError
from cbma.stats import null_to_p, p_to_z

N_REF = 1000  # permutations, as many as the n1000 reference
CONTRAST = "knowledge_minus_related"
NAME = "desc-group1MinusGroup2"


@pytest.fixture(scope="module")
def groups():
    mask, ma1, *_ = _fit(KNOWLEDGE)
    _, ma2, *_ = _fit(RELATED)
    return mask, ma1, ma2


@pytest.fixture(scope="module")
def pooled(groups):
    return compare.pool_groups(groups[1], groups[2])


@pytest.fixture(scope="module")
def run(pooled):
    """1,000 permutations of knowledge minus related, in one chunk, timed."""
    start = time.perf_counter()
    chunk = compare.permutation_chunk(pooled, 0, CONTRAST, range(N_REF))
    seconds = time.perf_counter() - start
    print(f"\nALE subtraction: {1000 * seconds / N_REF:.1f} ms per permutation, "
          f"{5000 * seconds / N_REF:.0f} s for 5,000 (extrapolated)")
    null = compare.merge_chunks([chunk], N_REF)
    diff = compare.observed_difference(pooled)
    return diff, null, compare.subtraction_maps(diff, null)


def _reference(mask, kind, n=N_REF):
    ref = nimare_map(f"subtraction/n{n}/knowledge_minus_related_{kind}_{NAME}")
    assert ref.shape == (mask.n_voxels,)
    return ref


def _tie_probability(ma1, ma2):
    """Exact chance that a permutation leaves a voxel's experiments in their own groups.

    If the experiments touching a voxel (m of them, m1 from group 1) are split
    as observed, the permuted difference there equals the observed one
    exactly: probability C(k - m, k1 - m1) / C(k, k1).
    """
    k1, k = ma1.shape[0], ma1.shape[0] + ma2.shape[0]
    m1 = np.diff(sp.csc_matrix(ma1).indptr)
    m = m1 + np.diff(sp.csc_matrix(ma2).indptr)

    def lcomb(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    return np.exp(lcomb(k - m, k1 - m1) - lcomb(k, k1)), m, m1


def _standardised_difference(p1, p2, n):
    """(p1 - p2) / sd for two independent permutation estimates of one two-sided p.

    Each p is 2 min(U, L) / n: twice a binomial proportion with success
    probability q = p / 2, so Var(p) = 4 q (1 - q) / n, and the difference of
    two independent estimates has twice that variance (q from their mean).
    """
    q = np.clip((p1 + p2) / 4, 1 / n, 0.5)
    return (p1 - p2) / np.sqrt(8 * q * (1 - q) / n)


# --------------------------------------------------------------------------
# the observed difference
# --------------------------------------------------------------------------

def test_difference_is_ale1_minus_ale2(groups, pooled):
    _, ma1, ma2 = groups
    diff = compare.observed_difference(pooled)
    np.testing.assert_allclose(diff, ale.ale_stat(ma1) - ale.ale_stat(ma2),
                               rtol=0, atol=1e-12)
    # swapping the labels flips the sign; voxels no experiment reaches are 0
    swapped = compare.group_difference(pooled, np.arange(pooled.n_experiments) >= ma1.shape[0])
    np.testing.assert_allclose(swapped, -diff, rtol=0, atol=1e-12)
    untouched = np.setdiff1d(np.arange(pooled.n_voxels), pooled.voxels)
    assert untouched.size > 0 and not diff[untouched].any()


def test_stat_matches_nimare(groups, pooled):
    mask = groups[0]
    for n in (100, 1000):
        np.testing.assert_allclose(compare.observed_difference(pooled),
                                   _reference(mask, "stat", n), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------
# the permutation null against a brute-force computation, and chunking
# --------------------------------------------------------------------------

def test_chunk_counts_equal_brute_force(pooled):
    iterations = [3, 17, 4]
    chunk = compare.permutation_chunk(pooled, 5, CONTRAST, iterations, batch=2)
    observed = compare.observed_difference(pooled)
    labels = compare.permutation_labels(pooled, 5, CONTRAST, iterations)
    assert (labels.sum(axis=0) == pooled.n_group1).all()
    perms = np.stack([compare.group_difference(pooled, lab) for lab in labels.T])
    np.testing.assert_array_equal(chunk["n_ge"], (perms >= observed).sum(axis=0))
    np.testing.assert_array_equal(chunk["n_le"], (perms <= observed).sum(axis=0))
    np.testing.assert_array_equal(chunk["max_abs"], np.abs(perms).max(axis=1))
    np.testing.assert_array_equal(chunk["iterations"], iterations)


def test_results_do_not_depend_on_chunking_or_order(pooled, tmp_path):
    whole = compare.merge_chunks([compare.permutation_chunk(pooled, 0, "c", range(20))], 20)
    late = compare.permutation_chunk(pooled, 0, "c", range(13, 20), batch=3)
    early = compare.permutation_chunk(pooled, 0, "c", range(13), batch=5)
    for order in ([late, early], [early, late]):
        merged = compare.merge_chunks(order, 20)
        for key in compare.CHUNK_ARRAYS:
            np.testing.assert_array_equal(merged[key], whole[key], err_msg=key)
    # the bytes of a chunk file depend only on its content
    compare.save_chunk(tmp_path / "a.npz", late)
    again = compare.permutation_chunk(pooled, 0, "c", range(13, 20), batch=7)
    compare.save_chunk(tmp_path / "b.npz", again)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert compare.chunk_bytes(late) == (tmp_path / "a.npz").read_bytes()
    loaded = compare.load_chunk(tmp_path / "a.npz")
    for key in compare.CHUNK_ARRAYS:
        np.testing.assert_array_equal(loaded[key], late[key])
        assert loaded[key].dtype == late[key].dtype
    # another seed or contrast name gives other permutations
    other = compare.permutation_chunk(pooled, 1, "c", range(13, 20))
    assert not np.array_equal(other["max_abs"], late["max_abs"])


def test_merge_and_chunk_bounds_are_checked(pooled, tmp_path):
    a = compare.permutation_chunk(pooled, 0, "c", [0, 1])
    b = compare.permutation_chunk(pooled, 0, "c", [1, 2])
    with pytest.raises(CbmaError, match="permutation 1 is in more than one chunk"):
        compare.merge_chunks([a, b])
    with pytest.raises(CbmaError, match="expected permutations 0-4"):
        compare.merge_chunks([a], n_iters=5)
    np.testing.assert_array_equal(chunks.chunk_iterations(2, 4, 10), [8, 9])
    np.testing.assert_array_equal(chunks.chunk_iterations(2, 4), [8, 9, 10, 11])
    assert chunks.n_chunks(10, 4) == 3 and chunks.n_chunks(8, 4) == 2
    with pytest.raises(CbmaError, match="outside"):
        chunks.chunk_iterations(3, 4, 10)
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InputFileError, match="bad.npz"):
        compare.load_chunk(tmp_path / "bad.npz")


# --------------------------------------------------------------------------
# NiMARE parity of the maps
# --------------------------------------------------------------------------

def test_z_sign_matches_nimare(groups, run):
    z = run[2][f"z_{NAME}"]
    ref = _reference(groups[0], "z")
    both = (np.abs(z) > 2) & (np.abs(ref) > 2)
    assert both.sum() > 1000
    np.testing.assert_array_equal(np.sign(z[both]), np.sign(ref[both]))


def test_p_is_consistent_with_nimare(groups, run):
    """Our p and NiMARE's are two independent permutation estimates of one p.

    Where a tie between a permuted and the observed difference is
    (near-)impossible, each p is twice a binomial proportion over 1,000
    permutations, so the standardised difference of the two estimates
    (:func:`_standardised_difference`) is about N(0, 1) at every voxel:
    at most a small share of voxels may exceed 3 (0.27 % under normality;
    we allow 1 % for the discreteness of small p), its mean over voxels
    must be near 0 (a systematic shift of the null would move it), and the
    number of voxels below p = 0.05 must agree within 10 %. Voxels are
    spatially correlated, so the mean and the count vary between runs more
    than independent voxels would: the bounds were set from three runs of
    ours with other seeds against this one (means 0.03 to 0.17, counts within
    8 %, shares beyond 3 below 0.1 %). NiMARE against ours: mean 0.00,
    counts 3 % apart, 0.06 % beyond 3.
    Ties are handled in :func:`test_nimare_breaks_ties_one_way`.
    """
    mask, ma1, ma2 = groups
    p = run[2][f"p_{NAME}"]
    ref = _reference(mask, "p")
    tie, _, _ = _tie_probability(ma1, ma2)
    no_ties = tie < 1e-3  # fewer than 1 expected tie in 1,000 permutations
    assert no_ties.sum() > 40_000
    z = _standardised_difference(p[no_ties], ref[no_ties], N_REF)
    assert np.mean(np.abs(z) > 3) < 0.01
    assert abs(z.mean()) < 0.25
    ours, theirs = (p[no_ties] < 0.05).sum(), (ref[no_ties] < 0.05).sum()
    assert theirs > 1000 and abs(ours - theirs) < 0.1 * theirs


def test_nimare_breaks_ties_one_way(groups, run):
    """Where permutations often reproduce the observed difference, NiMARE differs.

    At a voxel reached by a single experiment, a permutation either keeps
    that experiment in its group (the permuted difference equals the
    observed one, probability t = group size / 37) or moves it (the sign
    flips). Counting ties in both tails, as ALGORITHMS.md 5.1 states, gives
    p = clip(2 min(U, L) / n) >= 0.8 there. In NiMARE's output each such
    voxel's ties all fall on one side (presumably its permuted values differ
    from its observed one by float rounding): its p is either 1/n, a
    spurious "significant" difference, or 2 min(t, 1 - t) (up to sampling
    error).
    """
    mask, ma1, ma2 = groups
    p = run[2][f"p_{NAME}"]
    ref = _reference(mask, "p")
    tie, m, _ = _tie_probability(ma1, ma2)
    single = m == 1
    assert single.sum() > 10_000
    expected = 2 * np.minimum(tie, 1 - tie)[single]
    assert p[single].min() >= 0.8
    at_floor = np.isclose(ref[single], 1 / N_REF)
    near_tie_value = np.abs(_standardised_difference(ref[single], expected, N_REF)) < 4
    assert np.all(at_floor | near_tie_value)
    assert 0.2 < at_floor.mean() < 0.8


def test_voxel_fwe_maps_on_the_example(run):
    diff, null, maps = run
    fwe = compare.subtraction_fwe_maps(diff, null)
    key = f"{NAME}_level-voxel_corr-FWE_method-montecarlo"
    np.testing.assert_array_equal(fwe[f"p_{key}"], null_to_p(np.abs(diff), null["max_abs"]))
    np.testing.assert_array_equal(np.sign(fwe[f"z_{key}"]), np.sign(maps[f"z_{NAME}"]))
    # knowledge and related differ nowhere at voxel-level FWE 0.05 (max |D| is below the
    # null's 95th percentile), though thousands of voxels have uncorrected p < 0.05
    assert np.abs(diff).max() < np.quantile(null["max_abs"], 0.95)
    assert fwe[f"p_{key}"].min() > 0.05 and (maps[f"p_{NAME}"] < 0.05).sum() > 1000


# --------------------------------------------------------------------------
# the gather's formulas on a hand-made null
# --------------------------------------------------------------------------

def _hand_null():
    return {"iterations": np.arange(10), "n_ge": np.array([10, 0, 3, 10]),
            "n_le": np.array([10, 10, 8, 1]), "max_abs": np.linspace(0.1, 1, 10)}


def test_nimare_mode_formula():
    maps = compare.subtraction_maps(np.array([0.0, 0.5, 0.1, -0.2]), _hand_null())
    p = maps[f"p_{NAME}"]
    np.testing.assert_allclose(p, [0.9, 0.1, 0.6, 0.2])
    np.testing.assert_allclose(maps[f"z_{NAME}"], p_to_z(p, "two") * [0, 1, 1, -1])
    np.testing.assert_allclose(maps[f"logp_{NAME}"], -np.log10(p))


def test_eickhoff2012_mode_formula():
    diff = np.array([0.0, 0.5, 0.1, -0.2])
    g1 = np.array([True, True, True, False])
    g2 = np.array([False, True, True, True])
    maps = compare.subtraction_maps(diff, _hand_null(), "eickhoff2012", g1, g2)
    # ties count as exceedances:
    # group 1 > 2: #{D_perm >= D} / n = n_ge / n, floored at 1/n -> 1 .1 .3 (1)
    # group 2 > 1: #{D_perm <= D} / n = n_le / n, floored at 1/n -> (1) 1 .8 .1
    np.testing.assert_allclose(maps[f"p_{NAME}"], [1.0, 0.1, 0.3, 0.1])
    np.testing.assert_allclose(maps[f"z_{NAME}"], [0.0, p_to_z(0.1), p_to_z(0.3),
                                                   -p_to_z(0.1)])
    none = np.zeros(4, dtype=bool)
    empty = compare.subtraction_maps(diff, _hand_null(), "eickhoff2012", none, none)
    assert not empty[f"z_{NAME}"].any() and (empty[f"p_{NAME}"] == 1).all()
    assert not np.signbit(empty[f"z_{NAME}"]).any()


def test_gather_errors():
    null = _hand_null()
    with pytest.raises(CbmaError, match="unknown subtraction mode"):
        compare.subtraction_maps(np.zeros(4), null, "gingerale")
    with pytest.raises(CbmaError, match="needs group1_significant"):
        compare.subtraction_maps(np.zeros(4), null, "eickhoff2012")
    with pytest.raises(CbmaError, match="boolean masked vector of 4"):
        compare.subtraction_maps(np.zeros(4), null, "eickhoff2012", np.ones(4), np.ones(4))
    with pytest.raises(CbmaError, match="covers 4 voxels"):
        compare.subtraction_maps(np.zeros(5), null)
    with pytest.raises(CbmaError, match="different numbers of voxels"):
        compare.pool_groups(sp.csr_matrix((2, 5)), sp.csr_matrix((2, 6)))
    with pytest.raises(CbmaError, match="at least one experiment"):
        compare.pool_groups(sp.csr_matrix((0, 5)), sp.csr_matrix((2, 5)))


# --------------------------------------------------------------------------
# eickhoff2012 on a planted difference
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted():
    """Group 1 converges on voxel A and group 2 on voxel B; each has what the other lacks."""
    mask = space.BrainMask(data=np.ones((30, 20, 20), dtype=bool), affine=np.diag([2, 2, 2, 1.]))
    rng = np.random.default_rng(0)
    a, b = np.array([8, 10, 10]), np.array([21, 10, 10])

    def group(spot, n_exp=12, n_random=2):
        ijk, row = [], []
        for e in range(n_exp):
            ijk += [spot + rng.integers(-1, 2, 3)] + list(rng.integers(0, 20, (n_random, 3)))
            row += [e] * (1 + n_random)
        return kernels.ale_ma_maps(np.array(ijk), np.array(row),
                                   kernels.experiment_fwhms(np.full(n_exp, 20)), mask)

    ma1, ma2 = group(a), group(b)
    significant = [ale.ale(ma)[0]["p"] < 0.001 for ma in (ma1, ma2)]
    voxels = np.ravel_multi_index(np.array([a, b]).T, mask.shape)
    assert significant[0][voxels[0]] and significant[1][voxels[1]]
    return ma1, ma2, significant, voxels


def test_eickhoff2012_recovers_planted_differences(planted):
    ma1, ma2, significant, (a, b) = planted
    maps, _ = compare.ale_subtraction(ma1, ma2, 0, "planted", 400, "eickhoff2012", *significant)
    z, p = maps[f"z_{NAME}"], maps[f"p_{NAME}"]
    assert z[a] > 1.645 and z[b] < -1.645
    outside = ~(significant[0] | significant[1])
    assert outside.any() and not z[outside].any() and (p[outside] == 1).all()
    assert (z[significant[0] & ~significant[1]] >= 0).all()
    assert (z[significant[1] & ~significant[0]] <= 0).all()


def test_nimare_mode_and_voxel_fwe_find_the_planted_differences(planted):
    ma1, ma2, _, (a, b) = planted
    maps, null = compare.ale_subtraction(ma1, ma2, 0, "planted", 400)
    z = maps[f"z_{NAME}"]
    assert z[a] > 1.96 and z[b] < -1.96
    fwe_z = maps[f"z_{NAME}_level-voxel_corr-FWE_method-montecarlo"]
    fwe_p = maps[f"p_{NAME}_level-voxel_corr-FWE_method-montecarlo"]
    assert fwe_p[a] < 0.05 and fwe_p[b] < 0.05
    assert fwe_z[a] > 1.96 and fwe_z[b] < -1.96
    # FWE-significant voxels are a subset of the uncorrected ones, with the same sign
    survivors = fwe_p < 0.05
    assert (maps[f"p_{NAME}"][survivors] < 0.05).all()
    np.testing.assert_array_equal(np.sign(fwe_z[survivors]), np.sign(z[survivors]))


# --------------------------------------------------------------------------
# conjunction
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [100, 1000, 5000])
def test_conjunction_matches_nimare(n):
    name = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    maps = [nimare_volume(f"{g}/fwe_n{n}/{g}_{name}") for g in ("knowledge", "related")]
    ref = nimare_volume("conjunction/conjunction_knowledge_related_z_desc-size_level-cluster"
                        f"_corr-FWE_fwe_n{n}")
    ours = compare.conjunction(maps, 0.0)  # NiMARE's: no threshold
    np.testing.assert_array_equal(ours, ref)
    assert (ours > 0).sum() > 100
    # cluster-FWE z maps are never negative, so NiMARE's product test cannot differ here
    assert all((m >= 0).all() for m in maps)
