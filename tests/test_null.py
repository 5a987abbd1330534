"""The Monte Carlo null: compiled loop against the plain version, seeding, FWE maps."""

import numpy as np
import pandas as pd
import pytest
from conftest import KNOWLEDGE, MASK

from cbma import coordinates, correct, dataset, kernels, null, space


@pytest.fixture(scope="module")
def model():
    table = dataset.read_dataset(KNOWLEDGE, "sleuth")
    exps = coordinates.experiments_table(table)
    mask = space.load_mask(MASK)
    return null.RandomFociModel(exps["n_foci"], kernels.experiment_fwhms(exps["sample_size"]),
                                mask)


def test_compiled_iterations_equal_the_plain_reference(model):
    out = null.run_iterations(model, 3, "knowledge", range(5), 0.01146)
    centres = model.draw(3, "knowledge", range(5))
    for row, c in zip(out, centres, strict=True):
        ref = null.iteration_reference(model, c, 0.01146)
        assert row[0] == pytest.approx(ref[0], abs=1e-15)
        assert row[1] == ref[1]
        assert row[2] == pytest.approx(ref[2], abs=1e-12)


def test_results_do_not_depend_on_the_kernel_cores(model):
    """The cores only decide which voxels are computed exactly: same numbers for any share."""
    runs = [null.run_iterations(model, 4, "k", range(15), 0.01146, core_share=share)
            for share in (0.02, null.CORE_SHARE, 0.25, 0.9)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other[:, :2], runs[0][:, :2])
        np.testing.assert_allclose(other[:, 2], runs[0][:, 2], rtol=0, atol=1e-12)


def assert_same_null(actual, desired):
    """The same maxima and cluster sizes; cluster masses to a few units of rounding.

    A cluster's mass is summed in voxel order whatever found it; the CI
    machine once gave one mass 1 ulp apart between the two first stages (not
    reproduced elsewhere), so the masses are compared to 1e-14 of their size.
    """
    np.testing.assert_array_equal(actual[:, :2], desired[:, :2])
    np.testing.assert_allclose(actual[:, 2], desired[:, 2], rtol=1e-14, atol=0)


def test_the_first_stage_keeps_each_row_from_its_first_to_its_last_mask_voxel():
    """The first stage's array holds exactly each row's in-mask span, in voxel order."""
    rng = np.random.default_rng(0)
    in_mask = (rng.random((6, 5, 12)) < 0.3).astype(np.uint8)
    in_mask[2, 3] = 0  # a row without mask voxels
    lo, hi, start, voxel = null._mask_rows(in_mask.ravel(), 12)
    expected = []
    for r, row in enumerate(in_mask.reshape(-1, 12)):
        z = np.flatnonzero(row)
        if z.size:
            assert (lo[r], hi[r]) == (z[0], z[-1] + 1)
            kept = voxel[start[r]:start[r] + hi[r] - lo[r]]
            np.testing.assert_array_equal(kept, r * 12 + np.arange(lo[r], hi[r]))
            expected.extend(r * 12 + np.arange(z[0], z[-1] + 1))
        else:
            assert lo[r] == hi[r]
    np.testing.assert_array_equal(voxel, expected)


def test_results_do_not_depend_on_the_first_stages_layout(model):
    """On the mask's rows, run by run, or on the padded volume, voxel by voxel: same numbers."""
    on_rows = null.run_iterations(model, 2, "k", range(20), 0.01146, dense=False)
    on_volume = null.run_iterations(model, 2, "k", range(20), 0.01146, dense=True)
    assert_same_null(on_volume, on_rows)
    assert (on_rows[:, 1] > 0).all()  # clusters in every iteration: the mass is compared


def test_the_first_stage_takes_the_whole_volume_for_large_meta_analyses(model):
    """The choice follows the cores' voxel updates per iteration against the volume's size."""
    large = null.RandomFociModel(np.full(400, 12), kernels.experiment_fwhms(np.full(400, 20)),
                                 model.mask)
    for m, threshold, expected in ((model, 0.01146, False), (large, 0.05, True)):
        core_min = null.CORE_SHARE * -np.log1p(-threshold) / m.n_experiments
        assert null._dense_first_stage(m, m.core(core_min)[0]) is expected
    runs = null.run_iterations(large, 0, "l", range(3), 0.05)
    assert_same_null(runs, null.run_iterations(large, 0, "l", range(3), 0.05, dense=False))


def test_a_mask_with_holes_along_its_rows_gives_the_plain_reference(model):
    """Rows that leave and re-enter the mask, and kernels that spill past it."""
    data = model.mask.data.copy()
    data[:, :, 40:50] = False  # a slab across every row
    data[::3, ::2, :] = False  # and rows that miss the mask
    holed = space.BrainMask(data, model.mask.affine)
    sparse = null.RandomFociModel(np.array([4, 3, 5]), np.array([9.0, 11.0, 10.0]), holed)
    for threshold in (0.005, 0.5):  # clusters; none (the maximum's search)
        out = null.run_iterations(sparse, 1, "holes", range(6), threshold)
        assert_same_null(null.run_iterations(sparse, 1, "holes", range(6), threshold,
                                             dense=True), out)
        for row, c in zip(out, sparse.draw(1, "holes", range(6)), strict=True):
            ref = null.iteration_reference(sparse, c, threshold)
            assert row[0] == pytest.approx(ref[0], abs=1e-15)
            assert row[1] == ref[1]
            assert row[2] == pytest.approx(ref[2], abs=1e-12)
        assert (out[:, 1] > 0).all() == (threshold < 0.1)


@pytest.fixture(scope="module")
def large_model(model):
    """120 experiments of 10 foci: the exact stage's band is narrowed near few foci."""
    return null.RandomFociModel(np.full(120, 10), kernels.experiment_fwhms(np.full(120, 20)),
                                model.mask)


@pytest.mark.parametrize("threshold", [0.025, 0.3])  # clusters; none (the maximum's search)
@pytest.mark.parametrize("share", [None, 0.9])  # 0.9: small cores, the bounds matter more
def test_large_meta_analyses_equal_the_plain_reference(large_model, threshold, share):
    out = null.run_iterations(large_model, 5, "large", range(2), threshold, core_share=share)
    for row, c in zip(out, large_model.draw(5, "large", range(2)), strict=True):
        ref = null.iteration_reference(large_model, c, threshold)
        assert row[0] == pytest.approx(ref[0], abs=1e-15)
        assert row[1] == ref[1]
        assert row[2] == pytest.approx(ref[2], abs=1e-12)
        assert (row[1] > 0) == (threshold < 0.1)


def test_wide_kernels_without_clusters_still_give_the_exact_maximum():
    """No voxel passes the threshold and the cores miss most voxels: the full-kernel pass."""
    mask = space.load_mask(MASK)
    wide = null.RandomFociModel(np.array([1, 2, 1]), np.array([30.0, 30.0, 30.0]), mask)
    out = null.run_iterations(wide, 0, "wide", range(4), 0.05)
    for row, c in zip(out, wide.draw(0, "wide", range(4)), strict=True):
        ref = null.iteration_reference(wide, c, 0.05)
        assert ref[1] == 0 and row[1] == 0  # nothing above the threshold
        assert row[0] == pytest.approx(ref[0], rel=1e-12)


def test_iterations_do_not_depend_on_chunking_or_order(model):
    whole = null.run_iterations(model, 0, "a", range(12), 0.01146)
    parts = np.vstack([null.run_iterations(model, 0, "a", range(8, 12), 0.01146, batch=3),
                       null.run_iterations(model, 0, "a", range(0, 8), 0.01146)])
    np.testing.assert_array_equal(whole, np.vstack([parts[4:], parts[:4]]))
    other_seed = null.run_iterations(model, 1, "a", range(12), 0.01146)
    other_analysis = null.run_iterations(model, 0, "b", range(12), 0.01146)
    assert not np.array_equal(whole, other_seed) and not np.array_equal(whole, other_analysis)


def test_random_foci_stay_in_the_mask(model):
    centres = model.draw(0, "a", range(50)).ravel()
    assert model.in_mask[centres].all()


def test_planted_convergence_is_significant_and_noise_is_not():
    """Experiments that all report the same spot form a cluster that survives FWE."""
    mask = space.load_mask(MASK)
    rng = np.random.default_rng(0)
    n_exp, per = 15, 6
    candidates = np.argwhere(mask.data)
    ijk = candidates[rng.integers(0, len(candidates), n_exp * per)]
    planted = space.mm_to_vox([[-44, 20, 10]], mask.affine)[0]
    ijk[::per] = planted + rng.integers(-1, 2, size=(n_exp, 3))  # one focus each, jittered
    row = np.repeat(np.arange(n_exp), per)
    fwhms = kernels.experiment_fwhms(np.full(n_exp, 20))
    from cbma import ale, stats

    ma = kernels.ale_ma_maps(ijk, row, fwhms, mask)
    maps, hist = ale.ale(ma)
    thr = stats.null_threshold(0.001, *hist)
    model = null.RandomFociModel(np.full(n_exp, per), fwhms, mask)
    nulls = pd.DataFrame(null.run_iterations(model, 0, "planted", range(200), thr),
                         columns=null.NULL_COLUMNS[1:])
    p, clusters = correct.fwe_montecarlo(maps["stat"], mask, thr, nulls["max_stat"],
                                         nulls["max_cluster_size"], nulls["max_cluster_mass"])
    sig = p["desc-size_level-cluster"] < 0.05
    assert sig.any()
    sig_xyz = space.vox_to_mm(np.argwhere(mask.unmask(sig.astype(float)) > 0), mask.affine)
    peak = sig_xyz[np.argmin(np.linalg.norm(sig_xyz - [-44, 20, 10], axis=1))]
    assert np.linalg.norm(peak - [-44, 20, 10]) < 4
    # nothing significant far from the planted spot
    assert np.linalg.norm(sig_xyz - [-44, 20, 10], axis=1).max() < 20


# ------------------------------------------------------- early stopping ----

def test_quantile_se_matches_the_analytic_value():
    """For U(0, 1) the 95th percentile's SE is sqrt(q (1 - q) / n) / density = sqrt(.0475 / n)."""
    rng = np.random.default_rng(1)
    for n in (2000, 20000):
        ses = [correct.quantile_se(rng.uniform(size=n), 0.05) for _ in range(20)]
        assert np.mean(ses) == pytest.approx(np.sqrt(0.05 * 0.95 / n), rel=0.1)
    # and it shrinks as 1 / sqrt(n) on a skewed null too (exponential: density 0.05 there)
    ses = [correct.quantile_se(rng.exponential(size=4000), 0.05) for _ in range(40)]
    assert np.mean(ses) == pytest.approx(np.sqrt(0.05 * 0.95 / 4000) / 0.05, rel=0.1)
    assert correct.quantile_se([1.0], 0.05) == np.inf


def test_early_stop_needs_both_thresholds_and_min_iters():
    rng = np.random.default_rng(2)
    nulls = pd.DataFrame({"max_stat": 0.02 + 0.002 * rng.standard_normal(4000),
                          "max_cluster_size": rng.poisson(60, 4000)})
    loose = correct.early_stop(nulls, 0.05, 0.05, 1000)
    assert loose["stop"] and loose["n_iters"] == 4000
    assert all(e["relative_se"] < 0.05 for e in loose["errors"].values())
    assert not correct.early_stop(nulls, 0.05, 0.05, 5000)["stop"]  # too few iterations
    assert not correct.early_stop(nulls, 0.05, 1e-4, 1000)["stop"]  # too strict
    # the cluster-size threshold alone can hold it back
    wide = nulls.assign(max_cluster_size=rng.exponential(60, 4000))
    size_se = correct.early_stop(wide, 0.05, 0.05, 10)["errors"]["cluster_size"]["relative_se"]
    stat_se = correct.early_stop(wide, 0.05, 0.05, 10)["errors"]["max_stat"]["relative_se"]
    assert stat_se < size_se
    assert not correct.early_stop(wide, 0.05, (stat_se + size_se) / 2, 10)["stop"]
