"""p to z in double precision: z keeps growing as p falls (no cap at float32's smallest p)."""

import numpy as np
import pytest
from conftest import MASK
from scipy import stats as sps

from cbma import ale, kernels, space, stats


def test_z_is_accurate_and_strictly_monotone_in_p():
    p = np.logspace(-1, -300, 400)
    z = stats.p_to_z(p)
    assert np.all(np.diff(z) > 0)
    np.testing.assert_allclose(z, sps.norm.isf(p), rtol=1e-12)
    np.testing.assert_allclose(stats.p_to_z(p, tail="two"), sps.norm.isf(p / 2), rtol=1e-12)
    np.testing.assert_allclose(stats.p_to_logp(p), -np.log10(p), rtol=1e-12)
    # beyond float32's smallest normal number (1.2e-38), where z used to stop at 12.95
    assert stats.p_to_z(1e-40) == pytest.approx(13.310921, abs=1e-5)
    assert stats.p_to_z(1e-100) > 21
    # and the conventions at the ends
    assert stats.p_to_z(1.0) == 0.0 and stats.p_to_z(0.7) == 0.0
    assert np.isfinite(stats.p_to_z(0.0)) and stats.p_to_z(0.0) > 37


def test_log_p_to_z_reaches_beyond_the_smallest_double():
    z = stats.log_p_to_z(np.array([-100.0, -1000.0, -5000.0]))
    assert np.all(np.diff(z) > 0) and z[-1] > 99


@pytest.fixture(scope="module")
def large_ale():
    """150 experiments of 10 foci, 120 of which have one focus near the same place."""
    mask = space.load_mask(MASK)
    rng = np.random.default_rng(0)
    inside = np.argwhere(mask.data)
    hot = np.array([45, 60, 40])
    ijk, row = [], []
    for e in range(150):
        foci = inside[rng.integers(0, len(inside), 10)]
        if e < 120:
            foci[0] = hot + rng.integers(-2, 3, 3)
        ijk.append(foci)
        row += [e] * 10
    fwhms = kernels.experiment_fwhms(rng.integers(10, 40, 150))
    ma = kernels.ale_ma_maps(np.vstack(ijk), np.array(row), fwhms, mask)
    maps, _ = ale.ale(ma)
    return maps


def test_ale_z_increases_with_the_statistic_beyond_the_float32_floor(large_ale):
    stat, p, z = large_ale["stat"], large_ale["p"], large_ale["z"]
    assert (p < 1e-38).sum() > 10  # a large meta-analysis reaches these p-values
    order = np.argsort(stat, kind="stable")
    s, pp, zz = stat[order], p[order], z[order]
    # where p falls below 1/2 (the one-sided z is 0 above it)
    steps = (np.diff(s) > 0) & (np.diff(pp) < 0) & (pp[1:] < 0.5)
    assert steps.sum() > 1000
    assert np.all(np.diff(zz)[steps] > 0)
    assert z.max() > 13
    np.testing.assert_allclose(large_ale["logp"], -np.log10(p), rtol=1e-12)
