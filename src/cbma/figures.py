"""Figures: static PNGs of brain maps and foci, drawn with matplotlib (Agg) and nilearn.

Importing this module selects matplotlib's non-interactive Agg backend; the
modules that draw with pyplot (:func:`cbma.decode.top_terms_figure`) take
``plt`` from here. :func:`save_figure` writes PNGs without timestamps
(:data:`PNG_METADATA`), so the same maps give the same bytes.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["PNG_METADATA", "foci_figure", "glass_brain_figure", "plt", "save_figure",
           "slices_figure"]

#: PNG metadata of every figure: no matplotlib version stamp
PNG_METADATA = {"Software": None}
#: above this many experiments the foci figure shows all foci in one colour
MAX_COLOURED_EXPERIMENTS = 60


def save_figure(fig, path):
    """Write a matplotlib figure as PNG with fixed metadata and close it."""
    fig.savefig(path, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def glass_brain_figure(img, title, path, two_sided=False):
    """Glass-brain view of a statistical map (zeros are transparent)."""
    from nilearn import plotting

    fig = plt.figure(figsize=(9, 3.2))
    data = np.asanyarray(img.dataobj)
    vmax = float(np.abs(data).max()) or 1.0
    plotting.plot_glass_brain(img, figure=fig, title=title, colorbar=True, plot_abs=False,
                              cmap="cold_hot" if two_sided else "YlOrRd",
                              symmetric_cbar=two_sided, vmin=-vmax if two_sided else 0,
                              vmax=vmax, threshold=1e-6)
    save_figure(fig, path)


def slices_figure(img, title, path, n_slices=7):
    """Axial slices of a statistical map over the MNI152 template."""
    from nilearn import plotting

    fig = plt.figure(figsize=(12, 2.6))
    data = np.asanyarray(img.dataobj)
    vmax = float(np.abs(data).max()) or 1.0
    plotting.plot_stat_map(img, figure=fig, title=title, display_mode="z", cut_coords=n_slices,
                           threshold=1e-6, vmax=vmax, cmap="cold_hot", colorbar=True)
    save_figure(fig, path)


def foci_figure(coordinates, title, path):
    """The foci of a dataset on a glass brain, one colour per experiment."""
    from nilearn import plotting

    fig = plt.figure(figsize=(9, 3.2))
    display = plotting.plot_glass_brain(None, figure=fig, title=title)
    ids = list(dict.fromkeys(coordinates["id"]))
    if len(ids) > MAX_COLOURED_EXPERIMENTS:  # a large database: one colour, small dots
        xyz = coordinates[["x", "y", "z"]].to_numpy()
        display.add_markers(xyz, marker_color="#c0392b", marker_size=1, alpha=0.3)
        save_figure(fig, path)
        return
    cmap = plt.get_cmap("tab20")
    for k, exp in enumerate(ids):
        xyz = coordinates.loc[coordinates["id"] == exp, ["x", "y", "z"]].to_numpy()
        display.add_markers(xyz, marker_color=[cmap(k % 20)], marker_size=12)
    save_figure(fig, path)
