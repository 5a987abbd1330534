"""Interactive views of maps in the HTML report: nilearn's ``view_img`` viewer, embedded once.

nilearn's :func:`~nilearn.plotting.view_img` shows a map over the MNI152
template in a `brainsprite <https://github.com/brainsprite/brainsprite>`_
viewer: a page with a background sprite (every sagittal slice of the
template in one PNG), the map's own sprite, a colour bar, and the jQuery and
brainsprite scripts, all inline (nothing is loaded from the network).
:func:`map_viewer` takes that page apart, so that a report with several
maps on one grid embeds the scripts and the background (the same picture
for every map: about 0.6 MB) once, and each map adds its own sprite and
colour bar (a few kB).

brainsprite labels voxel ``n`` of its sprite with the coordinates of voxel
``n + 1``; nilearn starts its viewer one voxel before the cut so that the
label reads right, and the crosshair then stands one voxel off. The viewers
here get the affine shifted by one voxel instead: the crosshair is on the
voxel whose coordinates are shown, and :attr:`MapViewer.to_voxel` puts it on
a given point (a cluster's peak).
"""

import functools
import gc
import json
import os
import re
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CbmaError

_IMAGES = {"spriteImg": "background", "overlayImg": "overlay", "colorMap": "colormap"}
#: The crosshair's colour: green, off both the hot and the blue-red scales.
CROSSHAIR = "#00d000"


@dataclass(frozen=True)
class MapViewer:
    """The parts of one map's viewer.

    Attributes
    ----------
    background : str
        Base64 PNG sprite of the template on the map's grid (shared by maps on one grid).
    overlay : str
        Base64 PNG sprite of the map.
    colormap : str
        Base64 PNG of the colour bar.
    params : dict
        brainsprite's options; the page sets the ids of the canvas and images.
    to_voxel : list of list of float
        The 3 x 4 transform from mm to the viewer's voxel (``numSlice``)
        indices, to round.
    scripts : tuple of str
        The JavaScript the viewer needs (jQuery and brainsprite, as nilearn ships them).
    """

    background: str
    overlay: str
    colormap: str
    params: dict
    to_voxel: list
    scripts: tuple


#: Where :func:`background` keeps the template between processes, one file per
#: nilearn version (``{}``): a 2 mm copy that nilearn makes from its 1 mm
#: template each time it is asked, which takes most of a second.
BACKGROUND_CACHE = Path(__file__).parent / "__pycache__" / "cbma-mni152-2mm.nilearn-{}.npz"


@functools.cache
def background():
    """The template nilearn's viewers show maps over: ``view_img``'s ``bg_img="MNI152"``.

    nilearn loads it (and resamples it to 2 mm) for each view; a report with
    several viewers loads it once, and a process after the first reads it
    from :data:`BACKGROUND_CACHE` (data, affine and header as nilearn made
    them; made again if absent or unreadable, and not kept if the folder is
    read-only).
    """
    import nibabel as nib
    import nilearn

    path = Path(str(BACKGROUND_CACHE).format(nilearn.__version__))
    try:
        with np.load(path) as saved:
            header = nib.Nifti1Header(saved["header"].tobytes())
            return nib.Nifti1Image(saved["data"], saved["affine"], header)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # made again
        pass
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=2)
    try:  # written whole, then renamed: a process reading it never sees half a file
        path.parent.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as fh:
            np.savez(fh, data=np.asanyarray(img.dataobj), affine=img.affine,
                     header=np.frombuffer(img.header.binaryblock, dtype=np.uint8))
        os.replace(fh.name, path)
    except OSError:
        pass
    return img


def map_viewer(img, title=None, peak=None):
    """An interactive viewer of a map, from nilearn's ``view_img``.

    Parameters
    ----------
    img : nibabel image
        The map, e.g. a thresholded z map (zeros are transparent). A map with
        negative values gets a symmetric blue-red scale, else a hot one from 0.
    title : str, optional
        Drawn in the viewer's corner.
    peak : array-like of 3 floats, optional
        Where the crosshair starts (mm); by default where nilearn cuts.

    Returns
    -------
    MapViewer

    Raises
    ------
    CbmaError
        If the map has no nonzero voxel, or nilearn's page is not laid out as
        this function expects (a nilearn version it does not know).
    """
    from nilearn.plotting import view_img

    data = np.asanyarray(img.dataobj)
    if not np.any(data[np.isfinite(data)] != 0):
        raise CbmaError("a map viewer needs a map with nonzero voxels")
    two_sided = bool(np.nanmin(data) < 0)
    # nilearn runs a full garbage collection each time it reads an image's data (six
    # times per view); with the objects of a report job alive, each took ~80 ms. Objects
    # that exist now are not garbage a view makes: leave them out of those collections
    # while the view is made (and give them back to the collector after).
    gc.freeze()
    try:
        with warnings.catch_warnings():  # nilearn warns about masked arrays and empty cuts
            warnings.simplefilter("ignore")
            view = view_img(img, bg_img=background(),
                            cut_coords=None if peak is None else list(peak), title=title,
                            threshold=1e-6, black_bg=True, symmetric_cmap=two_sided,
                            cmap="RdBu_r" if two_sided else "hot", draw_cross=True,
                            resampling_interpolation="nearest", width_view=900)
            page = view.get_standalone()
    finally:
        gc.unfreeze()
    return _parse(page)


def _parse(html):
    """The parts of nilearn's viewer page (nilearn's stat_map_template.html)."""
    images = dict(re.findall(r'id="(spriteImg|overlayImg|colorMap)"[^>]*?'
                             r'src="data:image/png;base64,([^"]*)"', html, flags=re.S))
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    call = html.find("brainsprite(", html.rfind("<script>"))
    if set(images) != set(_IMAGES) or len(scripts) < 2 or call < 0:
        raise CbmaError("nilearn's view_img page is not laid out as cbma expects; "
                        "cbma cannot embed its viewer (a nilearn version it does not know)")
    params, _ = json.JSONDecoder().raw_decode(html, call + len("brainsprite("))
    affine = np.asarray(params["affine"], dtype=float)
    # label voxel n with its own coordinates (brainsprite applies the affine to n + 1)
    shifted = affine.copy()
    shifted[:3, 3] -= affine[:3, :3].sum(axis=1)
    params["affine"] = shifted.tolist()
    # nilearn starts one voxel before its cut (for the label's sake): start on it
    params["numSlice"] = {k: int(round(v + 1)) for k, v in params["numSlice"].items()}
    params["colorCrosshair"] = CROSSHAIR  # brainsprite's blue would hide a blue cluster
    parts = {_IMAGES[k]: v for k, v in images.items()}
    return MapViewer(**parts, params=params, to_voxel=np.linalg.inv(affine)[:3].tolist(),
                     scripts=tuple(scripts[:-1]))


def embed(viewers):
    """What the report's page needs to show viewers: shared parts once, then each viewer.

    Parameters
    ----------
    viewers : dict of str to MapViewer
        By the id of the viewer's canvas (unique in the page).

    Returns
    -------
    dict
        ``scripts`` (the JavaScript, once), ``backgrounds`` (``{image id: base64}``,
        each distinct background once) and ``viewers`` (``{canvas id:
        {"overlay", "colormap", "params", "to_voxel"}}``, with the params
        pointing at the page's ids: ``<id>-overlay``, ``<id>-colormap`` and the
        background's).
    """
    scripts, backgrounds, specs = [], {}, {}
    for vid, v in viewers.items():
        for s in v.scripts:
            if s not in scripts:
                scripts.append(s)
        bg = backgrounds.setdefault(v.background, f"cbma-background-{len(backgrounds)}")
        params = {**v.params, "canvas": vid, "sprite": bg,
                  "overlay": {**v.params["overlay"], "sprite": f"{vid}-overlay"}}
        if "colorMap" in params:
            params["colorMap"] = {**params["colorMap"], "img": f"{vid}-colormap"}
        specs[vid] = {"overlay": v.overlay, "colormap": v.colormap, "params": params,
                      "to_voxel": v.to_voxel}
    return {"scripts": scripts, "backgrounds": {i: b for b, i in backgrounds.items()},
            "viewers": specs}
