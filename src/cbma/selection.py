"""Which experiments of a dataset enter an analysis.

An analysis takes every experiment of its dataset, or a selection: a list of
ids, a Neurosynth-style term expression over the dataset's term weights
(:mod:`cbma.terms`), or a seed (meta-analytic coactivation): the studies with
a focus near a seed coordinate, or those activating a seed region.
"""

import difflib

import numpy as np

from . import terms as term_expressions
from .coordinates import experiments_table
from .errors import CbmaError

__all__ = ["by_coordinates", "by_ids", "by_seed_mask", "select_experiments", "versus_rest"]


def by_ids(wanted, experiment_ids, study_ids):
    """Experiments named by id: an experiment id, or a study id (all its experiments).

    Parameters
    ----------
    wanted : sequence of str or int
        Ids from the config.
    experiment_ids, study_ids : ndarray of str
        Each experiment's id and its study's id, in dataset order.

    Returns
    -------
    ndarray of bool
        Which experiments are named.
    """
    experiment_ids = np.asarray(experiment_ids, dtype=str)
    study_ids = np.asarray(study_ids, dtype=str)
    wanted = [str(w) for w in wanted]
    chosen = np.isin(experiment_ids, wanted) | np.isin(study_ids, wanted)
    known = set(experiment_ids) | set(study_ids)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(known), n=3)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise CbmaError(f"select.ids: no experiment or study {unknown[0]!r} in the "
                        f"dataset{more}{hint}")
    return chosen


def by_coordinates(coordinates, experiment_ids, xyz, r):
    """Experiments with a focus within ``r`` mm of any seed coordinate.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        Canonical coordinates table (MNI mm).
    experiment_ids : ndarray of str
        The dataset's experiments, in order.
    xyz : array-like of shape (n_seeds, 3)
        Seed coordinates in MNI mm.
    r : float
        Radius in mm (a focus at exactly ``r`` counts).
    """
    foci = coordinates[["x", "y", "z"]].to_numpy(dtype=float)
    seeds = np.atleast_2d(np.asarray(xyz, dtype=float))
    near = np.zeros(len(foci), dtype=bool)
    for seed in seeds:
        near |= np.sqrt(((foci - seed) ** 2).sum(axis=1)) <= r
    return np.isin(experiment_ids, coordinates["id"].to_numpy(dtype=str)[near])


def by_seed_mask(ma, seed, proportion=0.0):
    """Experiments whose MA map covers more than ``proportion`` of a seed region.

    Neurosynth's coactivation by mask: a study activates a seed voxel when
    its sphere map (a focus within r mm) covers it.

    Parameters
    ----------
    ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
        Binary (sphere) MA maps of the dataset's experiments.
    seed : ndarray of bool, shape (n_voxels,)
        The seed's in-mask voxels.
    proportion : float
        Share of the seed's voxels an experiment must exceed (0: at least one).
    """
    cols = np.flatnonzero(seed)
    if cols.size == 0:
        raise CbmaError("select.seed.mask: the seed has no voxel inside the brain mask")
    active = np.asarray((ma.tocsc()[:, cols] > 0).sum(axis=1)).ravel()
    return active / cols.size > proportion


def _load_seed(path, mask):
    from .io import load_nifti

    img = load_nifti(path)
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.shape != mask.shape or not np.allclose(img.affine, mask.affine, atol=1e-3):
        raise CbmaError(f"{path}: the seed mask must be on the brain mask's grid (shape "
                        f"{mask.shape}); got shape {data.shape}")
    return mask.apply(np.nan_to_num(data) != 0)


def select_experiments(spec, coordinates, weights, seed_mask=None, seed_ma=None, mask=None,
                       where="select"):
    """The experiments a selection names, in dataset order.

    Parameters
    ----------
    spec : dict or None
        ``None`` (every experiment), ``{"ids": [...]}``,
        ``{"expression": str, "frequency_threshold": float, "semantics": str}``
        (``semantics`` as in :func:`cbma.terms.select`, default
        ``"neurosynth"``) or
        ``{"seed": {"xyz": [[x, y, z], ...], "r": mm}}`` /
        ``{"seed": {"mask": path, "proportion": p, "r": mm}}``.
    coordinates : pandas.DataFrame
        The dataset's canonical coordinates table.
    weights : cbma.term_weights.TermWeights
        The dataset's term weights (for expressions).
    seed_mask : str, optional
        Path of the seed mask (``seed.mask`` selections).
    seed_ma : scipy.sparse matrix, optional
        The dataset's sphere MA maps with the seed's radius, rows in dataset
        order (``seed.mask`` selections).
    mask : cbma.space.BrainMask, optional
        The brain mask (``seed.mask`` selections).
    where : str
        Config key named in error messages.

    Returns
    -------
    ndarray of str
        Selected experiment ids, in the dataset's order.

    Raises
    ------
    CbmaError
        For unknown ids or terms, a dataset without term weights, or an empty
        selection.
    """
    exps = experiments_table(coordinates)
    ids = exps["id"].to_numpy(dtype=str)
    if spec is None:
        return ids
    if "ids" in spec:
        study = coordinates.groupby("id", sort=False)["study_id"].first()
        chosen = by_ids(spec["ids"], ids, study.loc[ids].to_numpy(dtype=str))
        what = f"{len(spec['ids'])} listed ids"
    elif "expression" in spec:
        if len(weights.terms) == 0:
            raise CbmaError(f"{where}.expression: the dataset has no term weights (Sleuth "
                            "files have none; use ids, or a neurosynth or nimare_json dataset)")
        threshold = spec.get("frequency_threshold", 0.001)
        semantics = spec.get("semantics", term_expressions.SEMANTICS[0])
        try:
            picked = term_expressions.select(spec["expression"], weights.for_select(), threshold,
                                             semantics=semantics)
        except CbmaError as exc:
            raise CbmaError(f"{where}.expression: {exc}") from None
        chosen = np.isin(ids, np.asarray(picked, dtype=str))
        what = (f"expression {spec['expression']!r} at frequency_threshold {threshold:g} "
                f"({semantics} semantics)")
    else:
        seed = spec["seed"]
        if "xyz" in seed:
            chosen = by_coordinates(coordinates, ids, seed["xyz"], seed["r"])
            what = f"a focus within {seed['r']:g} mm of {seed['xyz']}"
        else:
            region = _load_seed(seed_mask, mask)
            chosen = by_seed_mask(seed_ma, region, seed.get("proportion", 0.0))
            what = (f"more than {seed.get('proportion', 0.0):g} of the {int(region.sum())} "
                    f"voxels of {seed['mask']} within {seed['r']:g} mm of a focus")
    if not chosen.any():
        raise CbmaError(f"{where}: no experiment of the dataset is selected by {what}")
    return ids[chosen]


def versus_rest(selected, coordinates):
    """The dataset's experiments that are not in ``selected``, in dataset order."""
    ids = experiments_table(coordinates)["id"].to_numpy(dtype=str)
    return ids[~np.isin(ids, selected)]



def drop_shared(first, second):
    """Two groups of experiment ids without the ids they share.

    Returns
    -------
    first, second : ndarray of str
        The groups, each in its own order, without the shared ids.
    shared : ndarray of str
        The ids in both, sorted.
    """
    shared = np.intersect1d(first, second)
    return (np.asarray(first)[~np.isin(first, shared)],
            np.asarray(second)[~np.isin(second, shared)], shared)


def rows_of(ma_ids, selected):
    """Row numbers of the selected experiments in a dataset's MA matrix.

    Parameters
    ----------
    ma_ids : array-like of str
        The ids stored with the MA maps (dataset order).
    selected : array-like of str
        Ids from a ``selection.tsv``.

    Returns
    -------
    ndarray of int
        Rows in the MA matrix's order (so in dataset order).
    """
    ma_ids = np.asarray(ma_ids, dtype=str)
    selected = np.asarray(selected, dtype=str)
    missing = selected[~np.isin(selected, ma_ids)]
    if missing.size:
        raise CbmaError(f"selection names {missing.size} experiment(s) the MA maps do not "
                        f"hold, e.g. {missing[0]!r}: re-run ingest and ma_maps")
    return np.flatnonzero(np.isin(ma_ids, selected))


def read_selection(path):
    """The ids of a ``selection.tsv`` (or ``versus.tsv``) as strings."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", dtype={"id": str})["id"].to_numpy(dtype=str)


def selected_coordinates(coordinates, selected):
    """The foci of the selected experiments (canonical table, dataset order)."""
    return coordinates[coordinates["id"].astype(str).isin(selected)].reset_index(drop=True)


def selected_ma(ma_path, selection_path):
    """The MA maps of an analysis' experiments: ``(csr_matrix, ids)``, dataset order.

    Parameters
    ----------
    ma_path : str
        A dataset's ``ma-<kernel>.npz`` (all its experiments).
    selection_path : str
        The analysis' ``selection.tsv`` (or ``versus.tsv``).
    """
    from .io import load_sparse

    ma, extra = load_sparse(ma_path)
    rows = rows_of(extra["ids"], read_selection(selection_path))
    return ma[rows], np.asarray(extra["ids"], dtype=str)[rows]
