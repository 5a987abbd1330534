"""Conjunctions: the minimum statistic where every analysis is significant on its own."""

import json

import nibabel as nib
import numpy as np
import pytest

from cbma import compare
from cbma.errors import CbmaError
from cbma.stats import p_to_z

CLUSTER = "desc-size_level-cluster_corr-FWE_method-montecarlo"


def test_conjunction_needs_every_map_above_its_threshold():
    a = np.array([2.0, -3.0, 1.0, -1.0, 0.0, 3.0])
    b = np.array([1.0, -2.0, -1.0, 4.0, 5.0, 2.5])
    np.testing.assert_array_equal(compare.conjunction([a, b], 0.0), [1, 0, 0, 0, 0, 2.5])
    # NiMARE's product test passes voxel 1 (negative in both maps) with -3
    product_test = np.where(a * b > 0, np.minimum(a, b), 0)
    assert product_test[1] == -3.0
    c = np.array([0.5, 1.0, 1.0, 1.0, 1.0, 1.0])  # three maps, voxel 1 negative in two
    np.testing.assert_array_equal(compare.conjunction([a, b, c], 0.0), [0.5, 0, 0, 0, 0, 1])
    assert a[1] * b[1] * c[1] > 0
    # one threshold per map: b = 2.5 at voxel 5 passes 0.9 but not 2.6
    np.testing.assert_array_equal(compare.conjunction([a, b], [1.5, 0.9]), [1, 0, 0, 0, 0, 2.5])
    np.testing.assert_array_equal(compare.conjunction([a, b], [1.5, 2.6]), np.zeros(6))
    assert compare.conjunction([a.astype(np.float32), b.astype(np.float32)],
                               0.0).dtype == np.float32
    with pytest.raises(CbmaError, match="at least two maps"):
        compare.conjunction([a], 0.0)
    with pytest.raises(CbmaError, match="different shapes"):
        compare.conjunction([a, b[:3]], 0.0)
    with pytest.raises(TypeError):
        compare.conjunction([a, b])  # no silent default: the threshold must be given


def test_a_non_significant_cluster_stays_out():
    """Two cluster-FWE z maps; analysis 2's second cluster has FWE p = 0.44."""
    z1 = np.array([3.0, 3.0, 2.5, 2.5, 0.0])
    z2 = np.array([2.0, 2.0, p_to_z(0.44), p_to_z(0.44), 0.0])
    assert p_to_z(0.44) > 0  # the unthresholded minimum lets it in
    thresholds = [compare.conjunction_threshold(f"z_{CLUSTER}", 0.05)] * 2
    out = compare.conjunction([z1, z2], thresholds)
    np.testing.assert_array_equal(out, [2.0, 2.0, 0.0, 0.0, 0.0])


def test_thresholds_follow_the_map_and_alpha():
    assert compare.conjunction_threshold(f"z_{CLUSTER}", 0.05) == pytest.approx(1.6448536)
    assert compare.conjunction_threshold(f"z_{CLUSTER}", 0.01) == pytest.approx(2.3263479)
    assert compare.conjunction_threshold(f"z_{CLUSTER}_thresholded", 0.05) == 0.0
    with pytest.raises(CbmaError, match="corrected maps"):
        compare.conjunction_threshold("z", 0.05)


def _data(path):
    return np.asanyarray(nib.load(path).dataobj).astype(float)


def test_default_run_conjunction_is_significant_in_both(default_run):
    """The default conjunction holds exactly the voxels in a significant cluster of both."""
    base = default_run / "conjunctions" / "knowledge_and_related"
    out = base / f"z_{CLUSTER}_thresholded.nii.gz"
    conj = _data(out)
    analyses = [default_run / "analyses" / a for a in ("knowledge", "related")]
    significant = [_data(a / f"logp_{CLUSTER}.nii.gz") > -np.log10(0.05) for a in analyses]
    z = [_data(a / "z.nii.gz") for a in analyses]
    both = significant[0] & significant[1]
    assert both.sum() > 50
    np.testing.assert_array_equal(conj != 0, both)
    np.testing.assert_allclose(conj[both], np.minimum(z[0], z[1])[both], rtol=1e-6)
    # a cluster that is not significant in one analysis stays out, though its z is positive
    corrected = [_data(a / f"z_{CLUSTER}.nii.gz") for a in analyses]
    positive_not_significant = (corrected[0] > 0) & (corrected[1] > 0) & ~both
    assert positive_not_significant.any()
    assert not conj[positive_not_significant].any()
    sidecar = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["thresholds"] == {"knowledge": 0.0, "related": 0.0}
    assert "significant" in sidecar["inclusion"]
