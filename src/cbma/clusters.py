"""Clusters of a statistical map: labelling, and tables of peaks, sizes, p and atlas labels.

:func:`label_clusters` labels the face-connected voxels above a threshold
(:data:`FACE_CONNECTIVITY`), as the Monte Carlo FWE correction
(:mod:`cbma.correct`) and its null (:mod:`cbma.null`) count clusters.

A cluster is a set of face-connected (6-connectivity) voxels of the target
map beyond a threshold, in one tail: ``target > threshold`` (positive tail)
or ``target < -threshold`` (negative tail). Its peaks are the local maxima of
a peak map (by default the target itself) over the cluster's voxels, as
nilearn's ``get_clusters_table`` finds them; for a cluster-level corrected
target, pass the uncorrected z map as the peak map, which is what NiMARE 0.22
reports (issue #1086): the corrected map is constant over a cluster.

The table has NiMARE's columns (``Cluster ID, X, Y, Z, Peak Stat, Cluster
Size (mm3)``, ids ``"PositiveTail 1"``, ``"PositiveTail 1a"``, ...) plus the
cluster's p (``Cluster p``) and the atlas region at each peak (``Label``);
on request, a column per further atlas (:mod:`cbma.atlases`) and the peaks'
Talairach coordinates (``TAL X``, ``TAL Y``, ``TAL Z``). Clusters are
numbered 1..n per tail by descending peak value; the label maps use the
same numbers.
"""

from dataclasses import dataclass
from string import ascii_lowercase

import numpy as np
import pandas as pd
from scipy import ndimage

from .errors import CbmaError
from .io import load_nifti, read_tsv
from .space import mm_to_vox, mni2tal, vox_to_mm

TABLE_COLUMNS = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)",
                 "Cluster p", "Label"]
#: The peaks' Talairach coordinates, after the atlas columns, when asked for.
TALAIRACH_COLUMNS = ["TAL X", "TAL Y", "TAL Z"]
TAILS = {"positive": ("PositiveTail", 1.0), "negative": ("NegativeTail", -1.0)}
NO_LABEL = "no label"
DEFAULT_THRESHOLD = 1.645  # one-sided z of p = 0.05
#: Voxels sharing a face are neighbours (6-connectivity), in every cluster of the package.
FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)

# Bundled atlas (resources/templates/): FSL's Harvard-Oxford cortical atlas
HARVARD_OXFORD_IMAGE = "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz"
HARVARD_OXFORD_LABELS = "HarvardOxford-cort-labels.tsv"


# --------------------------------------------------------------------------
# atlas
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Atlas:
    """A labelled (max-probability) atlas: one integer region per voxel.

    Attributes
    ----------
    data : ndarray of int, 3-D
        Region index of each voxel (0: no region).
    affine : ndarray of shape (4, 4)
        Voxel-to-mm transform of the atlas grid.
    names : dict of int to str
        Region name of each index.
    """

    data: np.ndarray
    affine: np.ndarray
    names: dict


def load_atlas(image, labels):
    """Read a labelled atlas image and its table of region names.

    Parameters
    ----------
    image : str or Path
        NIfTI image of integer region indices (0 outside every region).
    labels : str or Path
        TSV with columns ``index`` and ``name``.

    Returns
    -------
    Atlas

    Raises
    ------
    CbmaError
        If the image holds an index that the table does not name.
    """
    img = load_nifti(image)
    data = np.asanyarray(img.dataobj)
    if data.ndim != 3 or not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
        raise CbmaError(f"{image}: an atlas must be a 3-D image of integer region indices")
    table = read_tsv(labels)
    if list(table.columns[:2]) != ["index", "name"]:
        raise CbmaError(f"{labels}: expected columns 'index' and 'name', "
                        f"got {list(table.columns)}")
    names = {int(i): str(n) for i, n in zip(table["index"], table["name"], strict=True)}
    data = data.astype(np.int64)
    missing = sorted(set(np.unique(data[data > 0]).tolist()) - set(names))
    if missing:
        raise CbmaError(f"{labels}: no name for atlas indices {missing[:5]} of {image}")
    return Atlas(data=data, affine=np.asarray(img.affine, dtype=float), names=names)


def atlas_labels(xyz, atlas):
    """Atlas region name at each mm coordinate.

    Coordinates go to atlas voxels through the atlas's own affine (rounding
    as :func:`cbma.space.mm_to_vox`), so the atlas may be on any grid or
    orientation.

    Parameters
    ----------
    xyz : array-like of shape (n, 3)
        MNI coordinates in mm (e.g. cluster peaks).
    atlas : Atlas

    Returns
    -------
    list of str
        Region names; ``"no label"`` outside every region or the atlas volume.
    """
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    ijk = mm_to_vox(xyz, atlas.affine)
    inside = np.all((ijk >= 0) & (ijk < np.array(atlas.data.shape)), axis=1)
    index = np.zeros(len(ijk), dtype=np.int64)
    index[inside] = atlas.data[tuple(ijk[inside].T)]
    return [atlas.names[int(i)] if i > 0 else NO_LABEL for i in index]


# --------------------------------------------------------------------------
# clusters and peaks
# --------------------------------------------------------------------------

def label_clusters(stat, mask, threshold):
    """Clusters of voxels with ``stat > threshold`` (6-connectivity).

    Parameters
    ----------
    stat : ndarray of shape (n_voxels,)
        Masked statistic.
    mask : cbma.space.BrainMask
    threshold : float

    Returns
    -------
    labels : ndarray of int, shape (n_voxels,)
        Cluster label of each voxel (0: none), 1..n.
    sizes : ndarray of int, shape (n,)
        Voxels per cluster.
    masses : ndarray, shape (n,)
        Sum of ``stat - threshold`` over each cluster.
    """
    vol = mask.unmask(stat, dtype=float)
    labels, n = ndimage.label(vol > threshold, structure=FACE_CONNECTIVITY)
    labels = mask.apply(labels)
    sizes = np.bincount(labels, minlength=n + 1)[1:]
    excess = np.where(labels > 0, stat - threshold, 0.0)
    masses = np.bincount(labels, weights=excess, minlength=n + 1)[1:]
    return labels, sizes, masses


def _tails_of(target, tails):
    if tails is None:
        return ["positive", "negative"] if np.any(target < 0) else ["positive"]
    if isinstance(tails, str):
        tails = [tails]
    unknown = [t for t in tails if t not in TAILS]
    if unknown:
        raise CbmaError(f"unknown tail {unknown[0]!r}; expected 'positive' or 'negative'")
    return list(tails)


def find_clusters(target, mask, threshold=DEFAULT_THRESHOLD, min_size=0, tail="positive"):
    """Clusters of one tail of a map: face-connected voxels beyond a threshold.

    Parameters
    ----------
    target : ndarray of shape (n_voxels,)
        Masked map that defines the clusters, e.g. a cluster-level FWE z map.
    mask : cbma.space.BrainMask
    threshold : float or None
        Voxels with ``target > threshold`` (positive tail) or
        ``target < -threshold`` (negative tail) form clusters; ``None`` or 0
        keeps every nonzero voxel of the tail. The default 1.645 is the
        one-sided z of p = 0.05.
    min_size : int
        Clusters with fewer voxels are dropped.
    tail : {"positive", "negative"}

    Returns
    -------
    labels : ndarray of int, shape (n_voxels,)
        Cluster of each voxel (0: none), 1..n in the C order of the clusters'
        first voxels.
    sizes : ndarray of int, shape (n,)
        Voxels per cluster.
    """
    sign = TAILS[_tails_of(target, [tail])[0]][1]
    threshold = 0.0 if threshold is None else float(threshold)
    if not np.isfinite(threshold) or threshold < 0:
        raise CbmaError(f"cluster threshold must be a number >= 0 (or None), got {threshold!r}")
    target = np.asarray(target, dtype=float)
    labels, sizes, _ = label_clusters(sign * target, mask, threshold)
    keep = sizes >= (min_size or 0)
    if keep.all():
        return labels, sizes
    new = np.r_[0, np.cumsum(keep) * keep]
    return new[labels], sizes[keep]


def _plateau_peaks(data):
    """Local maxima of a cluster's (positive) peak values in a small box.

    nilearn's rule: a voxel is a local maximum if it equals the maximum of
    its 3x3x3 neighbourhood, is nonzero, and its neighbourhood is not flat
    (unless the whole cluster is constant). Face-connected maxima form one
    plateau, reported at its centre of mass (rounded half to even), or at
    the plateau voxel nearest to it when that falls outside the plateau.
    """
    nonzero = data != 0
    local_max = ndimage.maximum_filter(data, size=3)
    maxima = (data == local_max) & nonzero
    values = data[nonzero]
    if not np.isclose(values.max(), values.min()):
        maxima &= local_max > ndimage.minimum_filter(data, size=3)
    plateaus, n = ndimage.label(maxima)
    index = np.arange(1, n + 1)
    ijk = np.round(np.array(ndimage.center_of_mass(data, plateaus, index)).reshape(-1, 3))
    ijk = ijk.astype(np.int64)
    for k in np.flatnonzero(plateaus[tuple(ijk.T)] != index):
        members = np.argwhere(plateaus == index[k])
        ijk[k] = members[np.argmin(np.linalg.norm(members - ijk[k], axis=1))]
    return ijk, data[tuple(ijk.T)]


def cluster_peaks(peak_values, support, mask, min_distance=8.0, max_peaks=4):
    """The peak and subpeaks of one cluster.

    Parameters
    ----------
    peak_values : ndarray of shape (n_voxels,)
        Masked map whose local maxima are the peaks (for the negative tail,
        pass the map times -1). Voxels of value 0 are never peaks.
    support : ndarray of bool, shape (n_voxels,)
        The cluster's voxels.
    mask : cbma.space.BrainMask
    min_distance : float
        A subpeak is kept only if it is farther than this many mm from every
        higher kept peak (nilearn's default, 8 mm). nilearn itself compares
        a candidate with the last kept peak only, so it can keep a subpeak
        that lies within ``min_distance`` of an earlier, higher one; the two
        rules agree on the NiMARE reference tables.
    max_peaks : int
        At most this many rows: the peak then ``max_peaks - 1`` subpeaks.

    Returns
    -------
    ijk : ndarray of int, shape (n_peaks, 3)
        Voxel indices, highest first.
    values : ndarray, shape (n_peaks,)
        Peak values.
    """
    vol_support = mask.unmask(support, dtype=bool)
    if not vol_support.any():
        raise CbmaError("a cluster must have at least one voxel")
    box = ndimage.find_objects(vol_support.astype(np.int8))[0]
    lo = np.array([max(s.start - 1, 0) for s in box])
    hi = np.array([min(s.stop + 1, n) for s, n in zip(box, mask.shape, strict=True)])
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    values = mask.unmask(np.asarray(peak_values, dtype=float), dtype=float)[box]
    data = np.where(vol_support[box], values, 0.0)
    if not np.any(data != 0):
        raise CbmaError("the peak map is 0 over a whole cluster; it cannot locate its peaks")
    ijk, vals = _plateau_peaks(data)
    ijk = ijk + lo
    order = np.argsort(-vals, kind="stable")
    ijk, vals = ijk[order], vals[order]
    xyz = vox_to_mm(ijk, mask.affine)
    kept = []
    for k in range(len(vals)):
        if all(np.linalg.norm(xyz[k] - xyz[j]) > min_distance for j in kept):
            kept.append(k)
            if len(kept) == max_peaks:
                break
    return ijk[kept], vals[kept]


def cluster_table(target, mask, threshold=DEFAULT_THRESHOLD, min_size=0, peak_map=None,
                  p=None, atlas=None, tails=None, min_distance=8.0, max_subpeaks=3,
                  min_volume=0.0, atlases=None, talairach=None):
    """Table of the clusters of a map, with peaks, subpeaks, sizes, p and labels.

    Parameters
    ----------
    target : ndarray of shape (n_voxels,)
        Masked map that defines the clusters, e.g. the cluster-level FWE z
        map ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``.
    mask : cbma.space.BrainMask
        Grid of all maps; X/Y/Z are in mm through its affine.
    threshold : float or None
        Cluster-defining threshold on ``target`` (strict; ``|target|`` for
        the negative tail). Default 1.645, FWE p < 0.05 for a one-sided z
        map; ``None`` or 0 keeps every nonzero cluster.
    min_size : int
        Minimum cluster size in voxels.
    peak_map : ndarray of shape (n_voxels,), optional
        Map whose local maxima over each cluster are its peaks and whose
        values are the ``Peak Stat``; for a corrected target, the
        uncorrected z map. Defaults to ``target``.
    p : ndarray of shape (n_voxels,), optional
        Masked p-values (e.g. the cluster-level FWE p map, or ``10 ** -logp``);
        a cluster's p is the smallest over its voxels (for a cluster-level
        map, the cluster's own p).
    atlas : Atlas, optional
        Atlas for the ``Label`` column (region at each peak).
    tails : {"positive", "negative"} or list of them, optional
        Tails to report. Default: the positive tail, and the negative tail
        too when ``target`` has negative values.
    min_distance : float
        Subpeaks must lie farther than this (mm) from every higher kept peak.
    max_subpeaks : int
        Subpeaks reported per cluster (named 1a, 1b, 1c, ...).
    min_volume : float
        Minimum cluster volume in mm3 (voxels times the voxel volume of
        ``mask``); a cluster must pass both minimums.
    atlases : dict of str to Atlas, optional
        More atlases, by column name (:func:`cbma.atlases.load_atlases`):
        one column of region names at each peak per atlas, after ``Label``.
    talairach : {"icbm_other", "icbm_spm", "icbm_fsl"}, optional
        Add the peaks' Talairach coordinates (columns
        :data:`TALAIRACH_COLUMNS`, last; mm, rounded to 0.01), by this
        Lancaster transform (:func:`cbma.space.mni2tal`).

    Returns
    -------
    table : pandas.DataFrame
        One row per peak, columns :data:`TABLE_COLUMNS`: ``Cluster ID``
        (``"PositiveTail 1"``, ``"PositiveTail 1a"``, ...), ``X``, ``Y``,
        ``Z`` (mm), ``Peak Stat`` (signed value of ``peak_map``), ``Cluster
        Size (mm3)`` (int; ``""`` on subpeak rows), ``Cluster p`` (NaN on
        subpeak rows or without ``p``), ``Label`` (``""`` without atlas);
        then the columns of ``atlases`` and ``talairach``.
        Empty (no rows) when no voxel passes the threshold.
    label_maps : dict of str to ndarray of int
        For each reported tail, the masked label map: cluster ``k`` of the
        table (``"<Tail> k"``) is the voxels of value ``k``.
    """
    target = np.asarray(target, dtype=float)
    if target.shape != (mask.n_voxels,):
        raise CbmaError(f"target map has shape {target.shape}, expected ({mask.n_voxels},)")
    peak_map = target if peak_map is None else np.asarray(peak_map, dtype=float)
    if peak_map.shape != target.shape:
        raise CbmaError(f"peak map has shape {peak_map.shape}, expected {target.shape}")
    if p is not None and np.shape(p) != target.shape:
        raise CbmaError(f"p map has shape {np.shape(p)}, expected {target.shape}")
    voxel_volume = float(np.prod(mask.voxel_size))
    if not np.isfinite(min_volume) or min_volume < 0:
        raise CbmaError(f"minimum cluster volume must be a number >= 0 (mm3), got {min_volume!r}")
    # the fewest voxels whose volume reaches min_volume (the margin absorbs rounding)
    min_voxels = max(min_size or 0, int(np.ceil(min_volume / voxel_volume - 1e-9)))
    rows, label_maps = [], {}
    for tail in _tails_of(target, tails):
        prefix, sign = TAILS[tail]
        labels, sizes = find_clusters(target, mask, threshold, min_voxels, tail)
        peaks = [cluster_peaks(sign * peak_map, labels == c, mask, min_distance,
                               max_subpeaks + 1) for c in range(1, sizes.size + 1)]
        order = np.argsort([-vals[0] for _, vals in peaks], kind="stable")
        relabel = np.zeros(sizes.size + 1, dtype=np.int64)
        relabel[order + 1] = np.arange(1, sizes.size + 1)
        label_maps[tail] = relabel[labels]
        for number, c in enumerate(order, 1):
            ijk, vals = peaks[c]
            xyz = vox_to_mm(ijk, mask.affine)
            names = atlas_labels(xyz, atlas) if atlas is not None else [""] * len(vals)
            cluster_p = float(np.min(np.asarray(p)[labels == c + 1])) if p is not None \
                else np.nan
            for k in range(len(vals)):
                suffix = ascii_lowercase[k - 1] if k else ""
                rows.append([f"{prefix} {number}{suffix}", *xyz[k], sign * vals[k],
                             int(sizes[c] * voxel_volume) if k == 0 else "",
                             cluster_p if k == 0 else np.nan, names[k]])
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.astype({"X": float, "Y": float, "Z": float, "Peak Stat": float,
                          "Cluster p": float})
    xyz = table[["X", "Y", "Z"]].to_numpy()
    for column, extra in (atlases or {}).items():
        table[column] = atlas_labels(xyz, extra)
    if talairach is not None:
        table[TALAIRACH_COLUMNS] = np.round(mni2tal(xyz, talairach), 2)
    return table, label_maps


def label_image(labels, mask):
    """A NIfTI image (int32) of a masked label map, e.g. for the label map outputs."""
    return mask.to_image(np.asarray(labels), dtype=np.int32)
