"""Cluster tables and diagnostics: synthetic cases and NiMARE 0.22.1 parity."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import KNOWLEDGE, MASK, REPO
from fixtures.reference import nimare_arrays, nimare_file, nimare_map

from cbma import clusters, coordinates, dataset, diagnostics, io, kernels, layout, space
from cbma.errors import CbmaError

TEMPLATES = REPO / "resources" / "templates"
TARGET = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
DIAG = "knowledge/diagnostics"  # NiMARE's outputs, in tests/fixtures/nimare
FWE = "knowledge/fwe_n100"
SETTINGS = [("voxel_thresh-None", None, 8), ("target_threshold-1.6449", 1.6449, 4)]

LAS = np.array([[-2.0, 0, 0, 40], [0, 2, 0, -40], [0, 0, 2, -40], [0, 0, 0, 1]])


# --------------------------------------------------------------------------
# synthetic volumes
# --------------------------------------------------------------------------

def _box_mask(shape=(40, 40, 40), affine=LAS):
    return space.BrainMask(data=np.ones(shape, dtype=bool), affine=affine)


def _bumps(shape, bumps, sigma=1.0):
    """Sum of Gaussian bumps ``(height, (i, j, k))`` on a grid (sigma in voxels)."""
    grid = np.indices(shape).reshape(3, -1).T
    vol = np.zeros(len(grid))
    for height, centre in bumps:
        vol += height * np.exp(-((grid - centre) ** 2).sum(axis=1) / (2 * sigma**2))
    return vol.reshape(shape)


@pytest.fixture(scope="module")
def planted():
    """Two positive clusters and one negative one on a 40^3 LAS grid.

    Cluster A: peak 5 at (10, 10, 10); bumps 6 mm (3 voxels) and exactly 8 mm
    away (dropped: subpeaks must be farther than 8 mm) and one 10 mm away
    (kept as subpeak 1a). Cluster B: peak 4 at (30, 30, 30). Negative: -4.5
    at (10, 30, 20).
    """
    mask = _box_mask()
    vol = _bumps(mask.shape, [(5.0, (10, 10, 10)), (3.0, (13, 10, 10)), (2.5, (10, 14, 10)),
                              (2.0, (10, 10, 15)), (4.0, (30, 30, 30)), (-4.5, (10, 30, 20))])
    return mask, mask.apply(vol)


def test_planted_clusters_peaks_subpeaks_and_negative_tail(planted):
    mask, stat = planted
    table, maps = clusters.cluster_table(stat, mask, threshold=0.1)
    assert list(table.columns) == clusters.TABLE_COLUMNS
    assert table["Cluster ID"].tolist() == ["PositiveTail 1", "PositiveTail 1a",
                                            "PositiveTail 2", "NegativeTail 1"]
    ijk = [(10, 10, 10), (10, 10, 15), (30, 30, 30), (10, 30, 20)]
    np.testing.assert_array_equal(table[["X", "Y", "Z"]].to_numpy(), space.vox_to_mm(ijk, LAS))
    np.testing.assert_allclose(table["Peak Stat"], stat[np.ravel_multi_index(
        np.array(ijk).T, mask.shape)])
    assert table["Peak Stat"].iloc[-1] < 0
    assert sorted(maps) == ["negative", "positive"]
    for tail, rows in [("positive", [0, 2]), ("negative", [3])]:
        labels = maps[tail]
        assert labels.max() == len(rows)
        sizes = np.bincount(labels)[1:]
        assert table["Cluster Size (mm3)"].iloc[rows].tolist() == (sizes * 8).tolist()
        assert np.all(stat[labels > 0] * (1 if tail == "positive" else -1) > 0.1)
    # the peak of table cluster k carries label k
    flat = np.ravel_multi_index(np.array(ijk).T, mask.shape)
    assert maps["positive"][flat[[0, 2]]].tolist() == [1, 2]
    assert maps["negative"][flat[3]] == 1
    # only the positive tail when asked
    pos, pos_maps = clusters.cluster_table(stat, mask, threshold=0.1, tails="positive")
    assert list(pos_maps) == ["positive"] and len(pos) == 3


def test_min_distance_is_strict_and_subpeaks_are_capped():
    mask = _box_mask()
    # a ridge along i with six bumps 10 mm apart: a peak and at most 3 subpeaks
    shape = mask.shape
    vol = np.zeros(shape)
    vol[5:33, 20, 20] = 1.0
    for n, i in enumerate(range(6, 32, 5)):
        vol[i, 20, 20] = 10.0 - n
    table, _ = clusters.cluster_table(mask.apply(vol), mask, threshold=0)
    assert table["Cluster ID"].tolist() == ["PositiveTail 1", "PositiveTail 1a",
                                            "PositiveTail 1b", "PositiveTail 1c"]
    assert table["Peak Stat"].tolist() == [10.0, 9.0, 8.0, 7.0]
    # the same ridge with bumps exactly 8 mm apart keeps only every other one
    vol[:] = 0.0
    vol[5:33, 20, 20] = 1.0
    for n, i in enumerate(range(6, 31, 4)):
        vol[i, 20, 20] = 10.0 - n
    table, _ = clusters.cluster_table(mask.apply(vol), mask, threshold=0,
                                      max_subpeaks=10)
    assert table["Peak Stat"].tolist() == [10.0, 8.0, 6.0, 4.0]
    assert np.all(np.diff(table["X"]) == pytest.approx(-16.0))


def test_constant_cluster_reports_its_centre_or_nearest_voxel():
    mask = _box_mask()
    vol = np.zeros(mask.shape)
    vol[8:11, 8:11, 8:11] = 3.0  # a cube: its centre
    vol[20:25, 20:25, 20] = 2.0  # a square ring: the centre is a hole
    vol[21:24, 21:24, 20] = 0.0
    table, maps = clusters.cluster_table(mask.apply(vol), mask, threshold=1)
    assert table["Cluster ID"].tolist() == ["PositiveTail 1", "PositiveTail 2"]
    np.testing.assert_array_equal(table[["X", "Y", "Z"]].iloc[0],
                                  space.vox_to_mm([9, 9, 9], LAS)[0])
    ring_peak = space.mm_to_vox(table[["X", "Y", "Z"]].iloc[1].to_numpy(), LAS)[0]
    assert vol[tuple(ring_peak)] == 2.0  # inside the ring, not its empty centre
    # every ring voxel 2 voxels from the centre ties; the first in C order wins (as nilearn)
    assert ring_peak.tolist() == [20, 22, 20]


def test_threshold_min_size_and_empty_results(planted):
    mask, stat = planted
    small = stat.copy()
    small[np.ravel_multi_index((35, 5, 5), mask.shape)] = 9.0  # one voxel
    table, maps = clusters.cluster_table(small, mask, threshold=0.1, tails="positive")
    assert table["Cluster ID"].iloc[0] == "PositiveTail 1" and table["Peak Stat"].iloc[0] == 9
    table, maps = clusters.cluster_table(small, mask, threshold=0.1, min_size=2,
                                         tails="positive")
    assert table["Peak Stat"].max() == stat.max()
    assert maps["positive"].max() == 2
    # nothing above the threshold: an empty table, not an error
    table, maps = clusters.cluster_table(stat, mask, threshold=100)
    assert table.empty and list(table.columns) == clusters.TABLE_COLUMNS
    assert all(not m.any() for m in maps.values())
    coords = pd.DataFrame({"id": ["a", "a", "b"], "x": [0.0, 2, 4], "y": [0.0] * 3,
                           "z": [0.0] * 3})
    counts = diagnostics.focus_counter(coords, maps["positive"], mask)
    assert list(counts.columns) == ["id"] and counts["id"].tolist() == ["a", "b"]
    ma = sp.csr_matrix(np.full((2, mask.n_voxels), 0.1))
    assert list(diagnostics.jackknife(ma, maps["positive"], ["a", "b"]).columns) == ["id"]
    empty = diagnostics.contributions(ma, maps["positive"], ["a", "b"])
    assert empty.empty and list(empty.columns) == diagnostics.CONTRIBUTION_COLUMNS
    with pytest.raises(CbmaError, match="threshold"):
        clusters.cluster_table(stat, mask, threshold=-1)
    with pytest.raises(CbmaError, match="tail"):
        clusters.cluster_table(stat, mask, tails="both")


def test_peak_map_and_cluster_p(planted):
    mask, stat = planted
    target = np.where(stat > 0.5, 2.0, 0.0)  # a "corrected" map: constant over clusters
    p = np.where(stat > 0.5, 0.01, 1.0)
    p[stat > 3.5] = 0.002  # the smallest p of a cluster is its p
    table, _ = clusters.cluster_table(target, mask, threshold=1.645, peak_map=stat, p=p)
    # at 0.5 the 2.0 bump 10 mm from the top peak is a cluster of its own
    assert table["Cluster ID"].tolist() == ["PositiveTail 1", "PositiveTail 2", "PositiveTail 3"]
    np.testing.assert_allclose(table["Peak Stat"], [stat.max(), 4.0, 2.0], atol=0.04)
    np.testing.assert_array_equal(table[["X", "Y", "Z"]].iloc[0], space.vox_to_mm(
        [10, 10, 10], LAS)[0])
    assert table["Cluster p"].tolist() == [0.002, 0.002, 0.01]
    # without a peak map a constant cluster is reported at its centre, with the target's value
    table, _ = clusters.cluster_table(target, mask, threshold=1.645)
    assert set(table["Peak Stat"]) == {2.0} and table["Cluster p"].isna().all()
    assert (table["Label"] == "").all()


def test_jackknife_and_contributions_analytic():
    # two clusters of one voxel each, plus a voxel in no cluster; three experiments
    ma = sp.csr_matrix(np.array([[0.5, 0.2, 0.9],
                                 [0.5, 0.0, 0.9],
                                 [0.0, 0.0, 0.9]]))
    labels = np.array([1, 2, 0])
    jk = diagnostics.jackknife(ma, labels, ["a", "b", "c"])
    # voxel 1: ALE 0.75, without a or b 0.5 -> 1/3 each; without c 0.75 -> 0
    # voxel 2: ALE 0.2, only a -> 1
    np.testing.assert_allclose(jk[["PositiveTail 1", "PositiveTail 2"]].to_numpy(),
                               [[1 / 3, 1.0], [1 / 3, 0.0], [0.0, 0.0]])
    contrib = diagnostics.contributions(ma, labels, ["a", "b", "c"])
    first = contrib[contrib["cluster"] == "PositiveTail 1"]
    np.testing.assert_allclose(first["ale_percent"], [50.0, 50.0, 0.0])
    np.testing.assert_allclose(first["ma_sum"], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(first["ma_percent"], [50.0, 50.0, 0.0])
    np.testing.assert_allclose(first["max_ale_percent"], [100 / 3, 100 / 3, 0.0])
    second = contrib[contrib["cluster"] == "PositiveTail 2"]
    np.testing.assert_allclose(second["ale_percent"], [100.0, 0.0, 0.0])
    with pytest.raises(CbmaError, match="experiment ids"):
        diagnostics.jackknife(ma, labels, ["a", "b"])


def test_focus_counter_rounds_half_to_even_and_ignores_outside_foci():
    mask = _box_mask(shape=(10, 10, 10), affine=np.diag([2.0, 2, 2, 1]))
    labels = np.zeros(mask.n_voxels, dtype=int)
    labels[np.ravel_multi_index((2, 2, 2), mask.shape)] = 1
    labels[np.ravel_multi_index((3, 2, 2), mask.shape)] = 2
    coords = pd.DataFrame({
        "id": ["b", "b", "a", "a", "a"],
        "x": [5.0, 4.0, 7.0, 6.4, 300.0],  # 5 -> 2.5 -> 2; 7 -> 3.5 -> 4 (half to even)
        "y": [4.0] * 5, "z": [4.0] * 5})
    counts = diagnostics.focus_counter(coords, labels, mask, tail="negative")
    assert counts.columns.tolist() == ["id", "NegativeTail 1", "NegativeTail 2"]
    assert counts["id"].tolist() == ["b", "a"]
    assert counts.iloc[:, 1:].to_numpy().tolist() == [[2, 0], [0, 1]]


def test_atlas_lookup_goes_through_mm():
    atlas = clusters.load_atlas(TEMPLATES / clusters.HARVARD_OXFORD_IMAGE,
                                TEMPLATES / clusters.HARVARD_OXFORD_LABELS)
    mask = space.load_mask(MASK)
    np.testing.assert_array_equal(atlas.affine, mask.affine)  # both LAS
    assert atlas.data.max() == 48 and len(atlas.names) == 48
    assert atlas.names[1] == "Frontal Pole" and atlas.names[48] == "Occipital Pole"
    xyz = [[-44, 16, 26], [-8, -12, 12], [200, 0, 0]]
    expected = ["Inferior Frontal Gyrus, pars opercularis", "no label", "no label"]
    assert clusters.atlas_labels(xyz, atlas) == expected  # left IFG, thalamus, outside
    # the same atlas flipped to RAS names the same places
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = atlas.data.shape[0] - 1
    ras = clusters.Atlas(data=atlas.data[::-1].copy(), affine=atlas.affine @ flip,
                         names=atlas.names)
    assert ras.affine[0, 0] == 2
    rng = np.random.default_rng(0)
    points = space.vox_to_mm(np.argwhere(atlas.data > 0)[rng.choice(50_000, 200)],
                             atlas.affine)
    assert clusters.atlas_labels(points, ras) == clusters.atlas_labels(points, atlas)


def test_names_of_outputs():
    assert layout.cluster_table(TARGET) == f"{TARGET}_tab-clust"
    assert layout.counts_table(TARGET, "Jackknife") == \
        f"{TARGET}_diag-Jackknife_tab-counts_tail-positive"
    assert layout.label_map(TARGET, "negative") == \
        "label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-negative"
    assert layout.label_map("z") == "label_tail-positive"
    with pytest.raises(CbmaError, match="tail"):
        layout.label_map(TARGET, "both")


# --------------------------------------------------------------------------
# NiMARE 0.22.1 parity on the knowledge example
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def knowledge():
    mask = space.load_mask(MASK)
    coords = dataset.read_dataset(KNOWLEDGE, "sleuth")
    exps = coordinates.experiments_table(coords)
    row = pd.Categorical(coords["id"], categories=exps["id"]).codes
    fwhms = kernels.experiment_fwhms(exps["sample_size"])
    ma = kernels.ale_ma_maps(kernels.foci_voxels(coords, mask), row, fwhms, mask)

    return {
        "mask": mask, "coords": coords, "ids": exps["id"].tolist(), "ma": ma,
        "target": nimare_map(f"{FWE}/knowledge_{TARGET}"),
        "z": nimare_map(f"{FWE}/knowledge_z"),
        "logp": nimare_map(f"{FWE}/knowledge_logp{TARGET[1:]}"),
        "atlas": clusters.load_atlas(TEMPLATES / clusters.HARVARD_OXFORD_IMAGE,
                                     TEMPLATES / clusters.HARVARD_OXFORD_LABELS),
    }


def _ours(knowledge, threshold):
    return clusters.cluster_table(knowledge["target"], knowledge["mask"], threshold,
                                  peak_map=knowledge["z"], p=10 ** -knowledge["logp"],
                                  atlas=knowledge["atlas"])


def _reference(setting, diag, kind):
    """NiMARE's label map (masked vector) or the path of one of its tables."""
    base = f"{DIAG}/{setting}/knowledge_{diag}_"
    if kind == "label":
        return nimare_map(base + layout.label_map(TARGET))
    if kind == "clust":
        return nimare_file(base + layout.cluster_table(TARGET) + ".tsv")
    return nimare_file(base + layout.counts_table(TARGET, diag) + ".tsv")


def _matching(knowledge, setting, ours):
    """Reference label map and, for each of its labels, our cluster number."""
    ref = _reference(setting, "FocusCounter", "label").astype(int)
    assert ref.max() == ours.max()
    match = {}
    for k in range(1, ref.max() + 1):
        mine = np.unique(ours[ref == k])
        assert mine.size == 1 and np.array_equal(ours == mine[0], ref == k)
        match[k] = int(mine[0])
    assert np.array_equal(ref > 0, ours > 0)
    return ref, match


@pytest.mark.parametrize("setting, threshold, n_clusters", SETTINGS)
def test_cluster_table_matches_nimare(knowledge, setting, threshold, n_clusters):
    table, maps = _ours(knowledge, threshold)
    for diag in ["FocusCounter", "Jackknife"]:
        ref = io.read_tsv(_reference(setting, diag, "clust"))
        assert table["Cluster ID"].tolist() == ref["Cluster ID"].tolist()
        np.testing.assert_array_equal(table[["X", "Y", "Z"]], ref[["X", "Y", "Z"]])
        np.testing.assert_allclose(table["Peak Stat"], ref["Peak Stat"], atol=1e-4, rtol=0)
        sizes = [int(s) if s != "" else -1 for s in table["Cluster Size (mm3)"]]
        assert sizes == ref["Cluster Size (mm3)"].fillna(-1).astype(int).tolist()
    peaks = table[table["Cluster Size (mm3)"] != ""]
    assert len(peaks) == n_clusters == maps["positive"].max()
    # voxels per cluster in the label map agree with the table
    assert (np.bincount(maps["positive"])[1:] * 8).tolist() == peaks["Cluster Size (mm3)"].tolist()
    # cluster p = share of the 100 Monte Carlo max cluster sizes >= the cluster's size
    null = nimare_arrays(f"{FWE}/null_distributions")[
        "values_desc-size_level-cluster_corr-fwe_method-montecarlo"]
    sizes = np.bincount(maps["positive"])[1:]
    expected = np.clip([(null >= s).mean() for s in sizes], 0.01, 0.99)
    np.testing.assert_allclose(peaks["Cluster p"], expected, rtol=1e-5)
    assert set(table["Label"]) <= set(knowledge["atlas"].names.values()) | {clusters.NO_LABEL}
    assert table["Label"].iloc[4] == "Inferior Frontal Gyrus, pars opercularis"  # cluster 3


@pytest.mark.parametrize("setting, threshold, n_clusters", SETTINGS)
def test_label_maps_match_nimare(knowledge, setting, threshold, n_clusters):
    mask = knowledge["mask"]
    _, maps = _ours(knowledge, threshold)
    ref, match = _matching(knowledge, setting, maps["positive"])
    for diag in ["Jackknife"]:
        other = _reference(setting, diag, "label")
        np.testing.assert_array_equal(other, ref)
    # Same clusters, numbered differently: NiMARE 0.22.1 numbers its label maps (and so the
    # columns of its contribution tables) by descending value of the corrected target, ties in
    # C order, while its cluster table is numbered by peak z. Ours follow the table.
    labels, _ = clusters.find_clusters(knowledge["target"], mask, threshold)
    top = [knowledge["target"][labels == c].max() for c in range(1, labels.max() + 1)]
    nimare_order = np.argsort(-np.array(top), kind="stable")
    renumber = np.zeros(labels.max() + 1, dtype=int)
    renumber[nimare_order + 1] = np.arange(1, labels.max() + 1)
    np.testing.assert_array_equal(renumber[labels], ref)
    assert match[1] == 2 and match[2] == 1  # NiMARE's 1 is the 155-voxel cluster, table's 2


@pytest.mark.parametrize("setting, threshold, n_clusters", SETTINGS)
def test_focus_counter_and_jackknife_match_nimare(knowledge, setting, threshold, n_clusters):
    _, maps = _ours(knowledge, threshold)
    labels = maps["positive"]
    _, match = _matching(knowledge, setting, labels)
    same = [f"PositiveTail {match[k]}" for k in range(1, n_clusters + 1)]  # NiMARE's columns

    counts = diagnostics.focus_counter(knowledge["coords"], labels, knowledge["mask"])
    ref = io.read_tsv(_reference(setting, "FocusCounter", "counts"))
    assert counts["id"].tolist() == ref["id"].tolist() == knowledge["ids"]
    assert counts.columns.tolist() == ["id"] + diagnostics.cluster_columns(n_clusters)
    np.testing.assert_array_equal(counts[same].to_numpy(), ref.iloc[:, 1:].to_numpy())

    jack = diagnostics.jackknife(knowledge["ma"], labels, knowledge["ids"])
    ref = io.read_tsv(_reference(setting, "Jackknife", "counts"))
    assert jack["id"].tolist() == ref["id"].tolist()
    values = jack[same].to_numpy()
    np.testing.assert_allclose(values, ref.iloc[:, 1:].to_numpy(), atol=1e-5, rtol=0)
    assert values.min() >= 0 and values.max() <= 1

    contrib = diagnostics.contributions(knowledge["ma"], labels, knowledge["ids"])
    assert len(contrib) == n_clusters * len(knowledge["ids"])
    totals = contrib.groupby("cluster", sort=False)["ale_percent"].sum()
    assert totals.index.tolist() == diagnostics.cluster_columns(n_clusters)
    np.testing.assert_allclose(totals, 100.0)
    # the renormalised share is the jackknife contribution, rescaled per cluster
    for name in diagnostics.cluster_columns(n_clusters):
        share = contrib.loc[contrib["cluster"] == name, "ale_percent"].to_numpy()
        np.testing.assert_allclose(share, 100 * jack[name] / jack[name].sum())
    assert contrib["max_ale_percent"].between(0, 100).all()
    # experiments with no MA in a cluster contribute nothing
    assert (contrib.loc[contrib["ma_sum"] == 0, "ale_percent"] == 0).all()


def test_same_inputs_give_identical_tables(knowledge):
    first, maps = _ours(knowledge, None)
    second, maps2 = _ours(knowledge, None)
    pd.testing.assert_frame_equal(first, second)
    np.testing.assert_array_equal(maps["positive"], maps2["positive"])
    a = diagnostics.jackknife(knowledge["ma"], maps["positive"], knowledge["ids"])
    b = diagnostics.jackknife(knowledge["ma"].tocsc(), maps2["positive"], knowledge["ids"])
    pd.testing.assert_frame_equal(a, b)
    img = clusters.label_image(maps["positive"], knowledge["mask"])
    assert img.get_data_dtype() == np.int32
    np.testing.assert_array_equal(knowledge["mask"].apply(np.asarray(img.dataobj)),
                                  maps["positive"])
