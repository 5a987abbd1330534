"""Permutation p-values of the ALE subtraction against exact counts.

At a voxel that only some experiments reach, the permuted difference takes a
handful of values, each with a hypergeometric probability; the permutation
p-value ``#{D_perm >= D} / n`` can then be written down by counting.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from cbma import compare, layout

NAME = layout.CONTRAST
N_PER_GROUP = 10
N_PERM = 4000
MA = 0.02


def _groups():
    """Two groups of 10 experiments on 3 voxels.

    Voxel 0: reached by experiments 0-2 of group 1 only.
    Voxel 1: reached by experiments 0-1 of group 1 and experiment 0 of group 2.
    Voxel 2: reached by nobody.
    Every reaching experiment has the same MA value there.
    """
    g1 = sp.csr_matrix(([MA] * 5, ([0, 1, 2, 0, 1], [0, 0, 0, 1, 1])), shape=(N_PER_GROUP, 3))
    g2 = sp.csr_matrix(([MA], ([0], [1])), shape=(N_PER_GROUP, 3))
    return g1, g2


def _hypergeometric_p():
    """Exact one-sided p-values #{D_perm >= D} / #permutations, by counting.

    A permutation gives 10 of the 20 pooled experiments to group 1.
    Voxel 0 (3 reaching experiments, all in group 1): D_perm >= D only when
    all three land in group 1: (10/20)(9/19)(8/18) = 2/19.
    Voxel 1 (2 in group 1, 1 in group 2, equal MA): D_perm = D whenever any
    two of the three land in group 1 and the third in group 2 (3 ways), and
    D_perm > D when all three land in group 1:
    (3 * 10*9*10 + 10*9*8) / (20*19*18) = 1/2.
    """
    return np.array([2 / 19, 1 / 2])


def _tolerance(p):
    return 4 * np.sqrt(p * (1 - p) / N_PERM)  # 4 standard errors of the Monte Carlo estimate


def test_eickhoff2012_p_counts_ties_as_exceedances():
    g1, g2 = _groups()
    significant1 = np.array([True, True, True])
    none = np.zeros(3, dtype=bool)
    maps, _ = compare.ale_subtraction(g1, g2, 0, "ties", N_PERM, "eickhoff2012",
                                      significant1, none)
    p = maps[f"p_{NAME}"][:2]
    expected = _hypergeometric_p()
    assert np.all(np.abs(p - expected) < _tolerance(expected)), (p, expected)
    assert (maps[f"z_{NAME}"][:2] > 0).all()
    # no experiment reaches voxel 2: D = 0 ties every permutation, p = 1
    assert maps[f"p_{NAME}"][2] == 1.0 and maps[f"z_{NAME}"][2] == 0.0


def test_eickhoff2012_group2_direction_mirrors_group1():
    g1, g2 = _groups()
    none = np.zeros(3, dtype=bool)
    significant2 = np.array([True, True, True])
    # the groups swapped: group 2 > group 1 at the same voxels, with the same p
    maps, _ = compare.ale_subtraction(g2, g1, 0, "ties", N_PERM, "eickhoff2012",
                                      none, significant2)
    p = maps[f"p_{NAME}"][:2]
    expected = _hypergeometric_p()
    assert np.all(np.abs(p - expected) < _tolerance(expected)), (p, expected)
    assert (maps[f"z_{NAME}"][:2] < 0).all()


def test_nimare_mode_two_sided_p_from_the_same_counts():
    g1, g2 = _groups()
    maps, _ = compare.ale_subtraction(g1, g2, 0, "ties", N_PERM)
    # L = #{D_perm <= D} / n is 1 at voxel 0 and 1 - 2/19 at voxel 1, both
    # above U, so p = 2 min(U, L) / n = 2 U / n (clipped at 1 - 1/n)
    p = maps[f"p_{NAME}"][:2]
    expected = np.minimum(2 * _hypergeometric_p(), 1 - 1 / N_PERM)
    assert np.all(np.abs(p - expected) < 2 * _tolerance(expected / 2)), (p, expected)
    assert (maps[f"z_{NAME}"][:2] > 0).all()


@pytest.mark.parametrize("n_reach", [1, 2, 4])
def test_single_group_voxel_p_is_not_floored(n_reach):
    """A voxel reached by group-1 experiments only is not 'significant' by construction."""
    g1 = sp.csr_matrix(([MA] * n_reach, (np.arange(n_reach), np.zeros(n_reach, int))),
                       shape=(N_PER_GROUP, 1))
    g2 = sp.csr_matrix((N_PER_GROUP, 1))
    maps, _ = compare.ale_subtraction(g1, g2, 1, "single", N_PERM, "eickhoff2012",
                                      np.array([True]), np.array([False]))
    # P(all n_reach in group 1) = prod (10 - i) / (20 - i)
    exact = np.prod([(N_PER_GROUP - i) / (2 * N_PER_GROUP - i) for i in range(n_reach)])
    assert abs(maps[f"p_{NAME}"][0] - exact) < _tolerance(exact)
