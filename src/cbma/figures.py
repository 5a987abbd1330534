"""Figures: static PNGs of brain maps and foci, drawn with matplotlib (Agg).

Maps are shown as maximum-intensity projections ("glass brains") and axial
slices on the run's own brain mask, in the neurological convention (left on
the left), with axes in MNI millimetres. Drawing them directly with
matplotlib takes a fraction of a second, where a nilearn glass brain takes
seconds; the pipeline draws one or more per analysis.

Figures are made with :func:`new_figure`: a matplotlib ``Figure`` on the
Agg canvas, without pyplot (no global state, and a quarter of a second less
to import in every rule job that draws). :func:`save_figure` writes PNGs
without timestamps (:data:`PNG_METADATA`), so the same maps give the same bytes.
"""

import matplotlib
import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["PNG_METADATA", "foci_figure", "glass_brain_figure", "new_figure", "save_figure",
           "slices_figure"]

#: PNG metadata of every figure: no matplotlib version stamp
PNG_METADATA = {"Software": None}
#: above this many experiments the foci figure shows all foci in one colour
MAX_COLOURED_EXPERIMENTS = 60
#: the three projections: (name, axis projected away, (horizontal, vertical) axes)
VIEWS = (("sagittal", 0, (1, 2)), ("coronal", 1, (0, 2)), ("axial", 2, (0, 1)))
ONE_SIDED_CMAP = "YlOrRd"
TWO_SIDED_CMAP = "RdBu_r"


def new_figure(nrows=1, ncols=1, figsize=None, **subplots_kw):
    """A figure and its axes, as ``pyplot.subplots`` gives them, on the Agg canvas.

    Parameters
    ----------
    nrows, ncols : int, optional
        The grid of axes.
    figsize : (float, float), optional
        Width and height in inches.
    **subplots_kw
        Passed to :meth:`matplotlib.figure.Figure.subplots` (``squeeze``,
        ``gridspec_kw``, ...).

    Returns
    -------
    (matplotlib.figure.Figure, axes)
    """
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots_kw)


def save_figure(fig, path):
    """Write a matplotlib figure as PNG with fixed metadata."""
    fig.savefig(path, format="png", dpi=100, metadata=PNG_METADATA)


def _canonical(img):
    """Data and voxel-to-mm affine of an image reoriented to RAS+ (closest canonical)."""
    img = nib.as_closest_canonical(img)
    return np.asanyarray(img.dataobj).astype(float), img.affine


def _extent(affine, shape, axes):
    """imshow extent (mm) of a projection onto ``axes``: (left, right, bottom, top)."""
    lo = affine[:3, 3]
    step = np.diag(affine)[:3]
    (h, v) = axes
    return (lo[h] - step[h] / 2, lo[h] + step[h] * (shape[h] - 0.5),
            lo[v] - step[v] / 2, lo[v] + step[v] * (shape[v] - 0.5))


def _project(data, axis, two_sided):
    """Maximum-intensity projection along ``axis`` (by absolute value, keeping the sign)."""
    if not two_sided:
        return data.max(axis=axis)
    idx = np.expand_dims(np.abs(data).argmax(axis=axis), axis)
    return np.take_along_axis(data, idx, axis=axis).squeeze(axis)


def _sides(ax, extent):
    """'L' and 'R' at the left and right of a coronal or axial view."""
    y = extent[3]
    ax.text(extent[0], y, "L", fontsize=8, ha="left", va="top")
    ax.text(extent[1], y, "R", fontsize=8, ha="right", va="top")


def _brain(ax, silhouette, extent):
    """A light grey silhouette of the brain with a thin outline."""
    ax.imshow(silhouette.T, origin="lower", extent=extent, cmap="Greys", vmin=0, vmax=6,
              interpolation="nearest")
    xs = np.linspace(extent[0], extent[1], silhouette.shape[0])
    ys = np.linspace(extent[2], extent[3], silhouette.shape[1])
    ax.contour(xs, ys, silhouette.T.astype(float), levels=[0.5], colors="0.35",
               linewidths=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _mask_volume(mask, shape_like):
    """The brain mask on the map's canonical grid (or the map's support without one)."""
    if mask is None:
        return shape_like != 0
    data, _ = _canonical(mask if isinstance(mask, nib.spatialimages.SpatialImage)
                         else mask.to_image(np.ones(mask.n_voxels), dtype=np.uint8))
    return data != 0


def _colour_scale(data, two_sided):
    vmax = float(np.abs(data).max()) or 1.0
    if two_sided:
        return TWO_SIDED_CMAP, -vmax, vmax
    return ONE_SIDED_CMAP, 0.0, vmax


def glass_brain_figure(img, title, path, two_sided=False, mask=None):
    """Glass-brain view of a statistical map: three maximum-intensity projections.

    Parameters
    ----------
    img : nibabel image
        The map (zeros are not drawn).
    title : str
    path : str or Path
        The PNG to write.
    two_sided : bool
        Signed colours (negative blue, positive red); else 0 to the maximum.
    mask : cbma.space.BrainMask or nibabel image, optional
        The brain drawn behind the map (default: the map's own support).
    """
    data, affine = _canonical(img)
    brain = _mask_volume(mask, data)
    cmap, vmin, vmax = _colour_scale(data, two_sided)
    fig, axes = new_figure(1, 3, figsize=(9, 3.2),
                           gridspec_kw={"width_ratios": [data.shape[1], data.shape[0],
                                                           data.shape[0]]})
    shown = None
    for ax, (_, axis, plane) in zip(axes, VIEWS, strict=True):
        extent = _extent(affine, data.shape, plane)
        _brain(ax, brain.any(axis=axis), extent)
        if axis:
            _sides(ax, extent)
        proj = _project(data, axis, two_sided)
        shown = ax.imshow(np.ma.masked_equal(proj, 0).T, origin="lower", extent=extent,
                          cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(shown, ax=list(axes), fraction=0.02, pad=0.01)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def slices_figure(img, title, path, n_slices=7, mask=None):
    """Axial slices of a statistical map over the brain mask, evenly spaced through the brain.

    Parameters are those of :func:`glass_brain_figure`; ``n_slices`` is the
    number of axial slices.
    """
    data, affine = _canonical(img)
    brain = _mask_volume(mask, data)
    cmap, vmin, vmax = _colour_scale(data, two_sided=bool((data < 0).any()))
    # slices through the map where it has values, else through the brain
    ks = np.flatnonzero((data != 0).any(axis=(0, 1)))
    if ks.size == 0:
        ks = np.flatnonzero(brain.any(axis=(0, 1)))
    if ks.size == 0:
        ks = np.arange(data.shape[2])
    picks = np.linspace(ks[0] - 1, ks[-1] + 1, n_slices).round().astype(int)
    picks = np.clip(picks, 0, data.shape[2] - 1)
    fig, axes = new_figure(1, n_slices, figsize=(12, 2.6))
    extent = _extent(affine, data.shape, (0, 1))
    shown = None
    for ax, k in zip(np.atleast_1d(axes), picks, strict=True):
        _brain(ax, brain[:, :, k], extent)
        shown = ax.imshow(np.ma.masked_equal(data[:, :, k], 0).T, origin="lower",
                          extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        z_mm = affine[2, 3] + affine[2, 2] * k
        ax.set_title(f"z = {z_mm:g}", fontsize=8)
    fig.colorbar(shown, ax=list(np.atleast_1d(axes)), fraction=0.01, pad=0.01)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def foci_figure(coordinates, title, path, mask=None):
    """The foci of a dataset on a glass brain, one colour per experiment.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        The canonical foci table (``id``, ``x``, ``y``, ``z`` in mm).
    title : str
    path : str or Path
    mask : cbma.space.BrainMask or nibabel image, optional
        The brain drawn behind the foci (default: none).
    """
    if mask is not None:
        brain, affine = _canonical(mask if isinstance(mask, nib.spatialimages.SpatialImage)
                                   else mask.to_image(np.ones(mask.n_voxels), dtype=np.uint8))
        brain = brain != 0
    else:
        brain, affine = None, None
    fig, axes = new_figure(1, 3, figsize=(9, 3.2))
    ids = list(dict.fromkeys(coordinates["id"]))
    many = len(ids) > MAX_COLOURED_EXPERIMENTS  # a large database: one colour, small dots
    cmap = matplotlib.colormaps["tab20"]
    xyz = coordinates[["x", "y", "z"]].to_numpy(dtype=float)
    colours = ("#c0392b" if many else
               [cmap(ids.index(e) % 20) for e in coordinates["id"]])
    for ax, (_, axis, plane) in zip(axes, VIEWS, strict=True):
        if brain is not None:
            _brain(ax, brain.any(axis=axis), _extent(affine, brain.shape, plane))
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.scatter(xyz[:, plane[0]], xyz[:, plane[1]], s=1 if many else 12, c=colours,
                   alpha=0.3 if many else 0.9, linewidths=0)
        ax.set_aspect("equal")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
