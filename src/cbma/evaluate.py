"""Evaluate predicted maps against held-out studies: the Text2Brain Dice metric.

For a held-out study with a ground-truth map ``G`` (its own MA map) and a
prediction ``P`` on the same voxels, each map is binarised to its top ``k`` %
voxels for ``k`` = 5, 6, ..., 30 (Ngo et al. 2022, Medical Image Analysis)
and ``Dice_k = 2 |P_k & G_k| / (|P_k| + |G_k|)``; the curve is summarised by
its normalised area ``AUC = trapz(Dice_k, k / 100) / 0.25`` (in [0, 1]).
The paper's step of ``k`` and its AUC normalisation are not published; this
is the definition used here. A random map has expected ``Dice_k = k / 100``
(so an expected AUC of 0.175 over 5-30 %), the floor any useful prediction
must clear.

Top-k sets
    The top ``k`` % of ``n`` voxels are the ``ceil(k n / 100)`` voxels with the
    largest values; ties are broken by a stable sort, i.e. among equal values
    the voxel that comes first in the masked (C) order is taken first.
Binary ground truths
    A study's binary MA map usually has fewer active voxels than even the
    smallest top set (30 foci with 10 mm spheres cover 3-5 % of the 2 mm
    mask). Its top ``k`` % set is then the active voxels plus inactive ones,
    and with the stable sort alone those are a slab at the start of the mask
    order, the same for every study: a prediction that is flat (tied) there,
    such as a keyword map that is exactly 0 far from the term's studies,
    gains overlap it did not earn. :func:`evaluate_held_out` therefore orders
    the truth's ties by distance to the study's active voxels by default
    (:func:`distance_ties`): the top set is the active set grown outwards.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .coarse_grid import fine_to_coarse
from .errors import CbmaError
from .text import count_matrix, normalise_term, term_matcher

__all__ = ["DEFAULT_KS", "HeldOutEvaluation", "KeywordBaseline", "dice_auc", "dice_top_k",
           "distance_ties", "evaluate_held_out", "fit_keyword_baseline", "pearson_r",
           "plot_dice_curves"]

#: Top percentages of the Dice curve (5 % to 30 % by 1 %).
DEFAULT_KS = tuple(range(5, 31))
#: Percentages reported on their own.
REPORTED_KS = (5, 10, 20, 30)
METHODS = ("model", "keyword", "random")


def _ranks(values, secondary=None, top=None):
    """Rank of each voxel: by value, larger first, then by ``secondary``, then voxel order.

    With ``top``, only the first ``top`` ranks are computed (the rest get
    ``values.size``): the same ranks there as a full sort, found by
    partitioning first, which is what a Dice curve up to ``top`` voxels needs.
    """
    n = values.size
    if top is None or top >= n:
        chosen = np.arange(n)
    else:
        chosen = _top_voxels(values, secondary, top)
    if secondary is None:
        order = chosen[np.argsort(-values[chosen], kind="stable")]
    else:  # lexsort is stable: remaining ties keep the voxel order
        order = chosen[np.lexsort((-secondary[chosen], -values[chosen]))]
    ranks = np.full(n, n, dtype=np.int64)
    ranks[order] = np.arange(order.size)
    return ranks


def _top_voxels(values, secondary, top):
    """The ``top`` voxels a full sort by (value, secondary, voxel order) puts first, sorted."""
    n = values.size
    cut = np.partition(values, n - top)[n - top]  # the top-th largest value
    above = np.flatnonzero(values > cut)
    tied = np.flatnonzero(values == cut)
    need = top - above.size
    if secondary is not None and tied.size > need:
        second = secondary[tied]
        cut2 = np.partition(second, second.size - need)[second.size - need]
        first = tied[second > cut2]
        tied = np.concatenate([first, tied[second == cut2][: need - first.size]])
    return np.sort(np.concatenate([above, tied[:need]]))


def _check_pair(pred, truth):
    pred = np.asarray(pred, dtype=float).ravel()
    truth = np.asarray(truth, dtype=float).ravel()
    if pred.shape != truth.shape:
        raise CbmaError(f"maps to compare have {pred.size} and {truth.size} voxels")
    if pred.size == 0:
        raise CbmaError("maps to compare are empty")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(truth))):
        raise CbmaError("maps to compare must be finite")
    return pred, truth


def dice_top_k(pred, truth, ks=DEFAULT_KS, truth_ties=None):
    """Dice overlap of the top ``k`` % voxels of two maps, for each ``k``.

    Parameters
    ----------
    pred, truth : array-like of shape (n_voxels,)
        Two maps on the same voxels (for example masked vectors).
    ks : sequence of float, optional
        Percentages in (0, 100].
    truth_ties : array-like of shape (n_voxels,), optional
        A second key ordering the voxels of ``truth`` that have equal values
        (larger first), for example minus the distance to the nearest active
        voxel of a binary map (see :func:`distance_ties`); the ties left are
        broken by the stable sort.

    Returns
    -------
    ndarray of shape (len(ks),)
        ``Dice_k``; since both top sets have ``ceil(k n / 100)`` voxels, it is
        the share of one set found in the other. Ties are broken by a stable
        sort (the first voxel in mask order wins).
    """
    pred, truth = _check_pair(pred, truth)
    ks = np.asarray(ks, dtype=float)
    if ks.size == 0 or np.any((ks <= 0) | (ks > 100)):
        raise CbmaError(f"ks must be percentages in (0, 100], got {ks.tolist()}")
    n = pred.size
    if truth_ties is not None:
        truth_ties = np.asarray(truth_ties, dtype=float).ravel()
        if truth_ties.shape != truth.shape:
            raise CbmaError(f"truth_ties has {truth_ties.size} values, the maps {n}")
    return _dice_curve(_ranks(pred), _ranks(truth, truth_ties), _top_sizes(ks, n))


def _top_sizes(ks, n):
    return np.ceil(np.asarray(ks, dtype=float) * n / 100 - 1e-9).astype(np.int64)


def _dice_curve(rank_pred, rank_truth, sizes):
    both = np.maximum(rank_pred, rank_truth)  # in both top sets iff both ranks < size
    top = int(sizes.max())
    # voxels in both top-s sets = voxels with both < s: a cumulative count, no sort
    in_both = np.cumsum(np.bincount(both[both < top], minlength=top))
    return in_both[sizes - 1] / sizes


def dice_auc(curve, ks=DEFAULT_KS):
    """Normalised area under a Dice-vs-k curve: ``trapz(Dice_k, k/100) / (k range / 100)``.

    Parameters
    ----------
    curve : array-like of shape (len(ks),)
        Dice values (:func:`dice_top_k`).
    ks : sequence of float, optional
        The percentages of the curve, increasing.

    Returns
    -------
    float
        In [0, 1]; about the mean Dice over the range (0.175 for a random map
        over 5-30 %).
    """
    curve = np.asarray(curve, dtype=float)
    ks = np.asarray(ks, dtype=float)
    if curve.shape != ks.shape or ks.size < 2 or np.any(np.diff(ks) <= 0):
        raise CbmaError("dice_auc needs a curve with one value per k, k increasing, "
                        "at least two points")
    return float(np.trapezoid(curve, ks / 100) / ((ks[-1] - ks[0]) / 100))


def pearson_r(pred, truth):
    """Pearson correlation of two maps across voxels (nan when one is constant)."""
    pred, truth = _check_pair(pred, truth)
    a, b = pred - pred.mean(), truth - truth.mean()
    # einsum, not BLAS: a threaded dot is slow for one short vector on busy cores
    denom = np.sqrt(np.einsum("i,i->", a, a) * np.einsum("i,i->", b, b))
    return float(np.einsum("i,i->", a, b) / denom) if denom > 0 else float("nan")


def distance_ties(truth, mask):
    """Minus the distance (mm) from each voxel to the nearest nonzero voxel of a map.

    Used as ``truth_ties`` in :func:`dice_top_k`: among voxels with equal
    truth values (the zeros of a binary MA map), those nearer the study's
    activations rank first, so the top ``k`` % of a map with fewer than
    ``k`` % active voxels is the active set grown outwards rather than padded
    with inactive voxels in mask order.

    Parameters
    ----------
    truth : array-like of shape (mask.n_voxels,)
    mask : cbma.space.BrainMask

    Returns
    -------
    ndarray of shape (mask.n_voxels,)
        0 on nonzero voxels; minus infinity everywhere when the map is all zero.
    """
    from scipy import ndimage

    active = mask.unmask(np.asarray(truth) != 0, dtype=bool)
    if not active.any():
        return np.full(mask.n_voxels, -np.inf)
    distance = ndimage.distance_transform_edt(~active, sampling=mask.voxel_size)
    return -mask.apply(distance)


# ------------------------------------------------------------------ keyword baseline


@dataclass(frozen=True, eq=False)
class KeywordBaseline:
    """Neurosynth-style keyword maps: the mean map of the training studies with a term.

    A text's prediction is the average, over its distinct matched terms seen
    in training, of their term maps; a text with none gets the mean map of
    all training studies.

    Attributes
    ----------
    vocabulary : tuple of str
    term_maps : ndarray of shape (n_terms, n_voxels), float32
        Mean map of the training studies whose text has each term (0 for
        terms absent from the training texts).
    df : ndarray of shape (n_terms,)
        Number of training studies with each term.
    mean_map : ndarray of shape (n_voxels,)
    """

    vocabulary: tuple
    term_maps: np.ndarray
    df: np.ndarray
    mean_map: np.ndarray

    def predict_maps(self, texts):
        """Keyword maps of texts, shape (n_texts, n_voxels), float32."""
        present = count_matrix(list(texts), term_matcher(self.vocabulary)) > 0
        present = sp.csr_matrix(present.multiply(self.df[None, :] > 0), dtype=np.float32)
        present.eliminate_zeros()
        n_terms = np.asarray(present.sum(axis=1)).ravel()
        present = sp.csr_matrix(sp.diags(1 / np.maximum(n_terms, 1)).astype(np.float32)
                                @ present)
        # float32 throughout: a float64 factor would copy the terms x voxels maps
        out = np.asarray(present @ self.term_maps, dtype=np.float32)
        out[n_terms == 0] = self.mean_map
        return out


def fit_keyword_baseline(texts, maps, vocabulary, block_size=256):
    """Mean map of the studies having each vocabulary term.

    Parameters
    ----------
    texts : sequence of str
        Training texts; a term is present when it matches the text at least
        once (see :func:`cbma.text.extract_terms`).
    maps : scipy.sparse matrix or ndarray of shape (n_studies, n_voxels)
        Training maps (on any grid, for example the query model's coarse grid).
    vocabulary : sequence of str
    block_size : int, optional
        Studies per block of dense rows.

    Returns
    -------
    KeywordBaseline
    """
    vocabulary = tuple(normalise_term(t) for t in vocabulary)
    texts = list(texts)
    if maps.shape[0] != len(texts):
        raise CbmaError(f"{len(texts)} texts but {maps.shape[0]} maps")
    present = sp.csr_matrix(count_matrix(texts, term_matcher(vocabulary)) > 0, dtype=np.float32)
    n_voxels = maps.shape[1]
    sums = np.zeros((len(vocabulary), n_voxels), dtype=np.float32)  # 0.34 GB at full scale
    total = np.zeros(n_voxels)
    for start in range(0, len(texts), block_size):
        block = maps[start:start + block_size]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        block = block.astype(np.float32)
        rows = sp.csr_matrix(present[start:start + block_size].T)
        for c in range(0, n_voxels, 4096):  # in voxel blocks: no terms x voxels temporary
            sums[:, c:c + 4096] += rows @ block[:, c:c + 4096]
        total += block.sum(axis=0, dtype=float)
    df = np.asarray(present.sum(axis=0)).ravel().astype(np.int64)
    sums /= np.maximum(df, 1)[:, None]
    return KeywordBaseline(vocabulary=vocabulary, term_maps=sums, df=df,
                           mean_map=(total / max(len(texts), 1)).astype(np.float32))


# ------------------------------------------------------------------------ held out


@dataclass(frozen=True, eq=False)
class HeldOutEvaluation:
    """Results of :func:`evaluate_held_out`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per held-out study: ``study``, ``n_terms`` (matched terms),
        ``n_active`` (nonzero truth voxels) and, per method (``model``,
        ``keyword``, ``random``), ``<method>_dice_auc``, ``<method>_dice_<k>``
        for k in 5, 10, 20, 30 and ``<method>_r`` (Pearson). Studies whose
        truth map is empty have NaN scores and are left out of the summary.
    summary : pandas.DataFrame
        One row per method (and ``model - keyword``, paired differences):
        ``n``, then ``<metric>_mean`` and ``<metric>_se`` (standard error,
        s.d. / sqrt(n)) of each metric.
    curves : pandas.DataFrame
        Mean and standard error of Dice at each k (index ``k``, columns
        ``<method>_mean``, ``<method>_se``).
    figure : matplotlib.figure.Figure
        Mean Dice vs k for the three methods (:func:`plot_dice_curves`).
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    curves: pd.DataFrame
    figure: object


def plot_dice_curves(curves, title="Held-out studies: Dice of the top k % voxels"):
    """Plot mean Dice vs k (with standard-error bands) for each method.

    Parameters
    ----------
    curves : pandas.DataFrame
        As :attr:`HeldOutEvaluation.curves`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot (no global state); save with ``fig.savefig(path)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ks = curves.index.to_numpy(dtype=float)
    labels = {"model": "free-text model", "keyword": "keyword baseline", "random": "random map"}
    for method in METHODS:
        if f"{method}_mean" not in curves:
            continue
        mean, se = curves[f"{method}_mean"].to_numpy(), curves[f"{method}_se"].to_numpy()
        ax.plot(ks, mean, marker="o", markersize=3, label=labels[method])
        ax.fill_between(ks, mean - se, mean + se, alpha=0.25)
    ax.plot(ks, ks / 100, color="grey", linestyle=":", linewidth=1, label="chance (k / 100)")
    ax.set_xlabel("top k % voxels")
    ax.set_ylabel("Dice")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def _rows(maps):
    for row in range(maps.shape[0]):
        if sp.issparse(maps):
            yield maps[row].toarray().ravel()
        else:
            yield np.asarray(maps[row], dtype=float)


def evaluate_held_out(model, train_texts, train_maps, test_texts, test_maps, *,
                      ks=DEFAULT_KS, on="mask", truth_ties="distance", seed=0,
                      study_ids=None):
    """Compare the free-text model, a keyword baseline and random maps on held-out studies.

    Each held-out study's map is predicted from its text with (a) ``model``
    (fitted on the training studies only), (b) the keyword baseline fitted on
    the training studies (:func:`fit_keyword_baseline`, term maps on the
    model's coarse grid) and (c) a random map (independent standard normal
    values, seeded); each prediction is scored against the study's own map
    with :func:`dice_top_k`, :func:`dice_auc` and :func:`pearson_r`.

    Parameters
    ----------
    model : cbma.text_model.QueryModel
        Fitted on the training studies only. Fit it on the same maps as
        ``train_maps`` (``targets=train_maps``) to compare how the two methods
        read the text rather than their spatial kernels: the Dice of the top
        5-30 % rewards maps as broad as the truth's neighbourhood, and a model
        fitted on foci with a 9 mm Gaussian is narrower than 10 mm MKDA
        spheres.
    train_texts, test_texts : sequence of str
    train_maps, test_maps : scipy.sparse matrix or ndarray of shape (n, model.mask.n_voxels)
        The studies' MA maps on the brain mask (the ground truth for the test
        studies; the keyword baseline's data for the training ones).
    ks : sequence of float, optional
        Percentages of the Dice curve.
    on : {"mask", "coarse"}, optional
        Score on the brain mask (predictions interpolated with
        :meth:`~cbma.text_model.QueryModel.to_mask`, truth as given) or on the
        model's coarse grid (truth averaged into coarse voxels; about 8 times
        faster with a 4 mm grid).
    truth_ties : {"distance", "stable"}, optional
        How the ground truth's equal values are ordered: ``"distance"``
        (:func:`distance_ties`: inactive voxels nearer the study's activations
        first) or ``"stable"`` (mask order only). A binary MA map usually has
        fewer active voxels than the 5 % of the smallest ``k`` (a Neurosynth
        study with 30 foci and 10 mm spheres covers 3-5 % of the 2 mm mask), so
        with ``"stable"`` most of its top set is an arbitrary slab of inactive
        voxels at the start of the mask order.
    seed : int, optional
        Seed of the random maps.
    study_ids : sequence, optional
        Names of the test studies for the table (default 0, 1, ...).

    Returns
    -------
    HeldOutEvaluation
    """
    if on not in ("mask", "coarse"):
        raise CbmaError(f"on must be 'mask' or 'coarse', got {on!r}")
    if truth_ties not in ("distance", "stable"):
        raise CbmaError(f"truth_ties must be 'distance' or 'stable', got {truth_ties!r}")
    ks = np.asarray(ks, dtype=float)
    test_texts = list(test_texts)
    n_vox = model.mask.n_voxels
    for name, maps, texts in (("train", train_maps, train_texts), ("test", test_maps,
                                                                   test_texts)):
        if maps.shape != (len(texts), n_vox):
            raise CbmaError(f"{name} maps have shape {maps.shape}, expected ({len(texts)} "
                            f"studies, {n_vox} mask voxels)")
    if len(test_texts) == 0:
        raise CbmaError("no held-out study to evaluate")
    agg = fine_to_coarse(model.mask, model.coarse)
    coarse_train = sp.csr_matrix(train_maps) @ agg if sp.issparse(train_maps) else \
        np.asarray(train_maps, dtype=float) @ agg
    baseline = fit_keyword_baseline(train_texts, coarse_train, model.vocabulary.tolist())
    predicted = {"model": model.predict_maps(test_texts),
                 "keyword": baseline.predict_maps(test_texts)}
    if on == "coarse":
        truth_maps = sp.csr_matrix(test_maps) @ agg if sp.issparse(test_maps) else \
            np.asarray(test_maps, dtype=float) @ agg
        grid = model.coarse
    else:
        truth_maps = test_maps
        grid = model.mask
    n_out = grid.n_voxels
    rng = np.random.default_rng(seed)
    if ks.size < 2 or np.any((ks <= 0) | (ks > 100)) or np.any(np.diff(ks) <= 0):
        raise CbmaError(f"ks must be increasing percentages in (0, 100], got {ks.tolist()}")
    sizes = _top_sizes(ks, n_out)
    n_terms = np.asarray((count_matrix(test_texts, model.matcher) > 0).sum(axis=1)).ravel()
    ids = list(range(len(test_texts))) if study_ids is None else list(study_ids)
    if len(ids) != len(test_texts):
        raise CbmaError(f"{len(test_texts)} test texts but {len(ids)} study ids")
    reported = [k for k in REPORTED_KS if k in set(ks.tolist())]
    records, curves = [], {m: [] for m in METHODS}
    chunk = 64
    for start in range(0, len(test_texts), chunk):
        stop = min(start + chunk, len(test_texts))
        preds = {m: predicted[m][start:stop] for m in ("model", "keyword")}
        if on == "mask":
            preds = {m: model.to_mask(p) for m, p in preds.items()}
        for offset, truth in enumerate(_rows(truth_maps[start:stop])):
            i = start + offset
            preds["random"] = rng.standard_normal((1, n_out))
            record = {"study": ids[i], "n_terms": int(n_terms[i]),
                      "n_active": int(np.count_nonzero(truth))}
            if record["n_active"]:
                ties = distance_ties(truth, grid) if truth_ties == "distance" else None
                truth_rank = _ranks(truth, ties, top=sizes.max())
            for method in METHODS:
                pred = preds[method][offset if method != "random" else 0]
                if record["n_active"] == 0:
                    curve, r, auc = np.full(ks.size, np.nan), np.nan, np.nan
                else:
                    pred, _ = _check_pair(pred, truth)
                    curve = _dice_curve(_ranks(pred, top=sizes.max()), truth_rank, sizes)
                    r, auc = pearson_r(pred, truth), dice_auc(curve, ks)
                curves[method].append(curve)
                record[f"{method}_dice_auc"] = auc
                for k in reported:
                    record[f"{method}_dice_{k}"] = float(curve[int(np.flatnonzero(ks == k)[0])])
                record[f"{method}_r"] = r
            records.append(record)
    table = pd.DataFrame.from_records(records)
    valid = table["n_active"].to_numpy() > 0
    metrics = ["dice_auc", *[f"dice_{k}" for k in reported], "r"]
    rows = {}
    for method in METHODS:
        rows[method] = _mean_se({m: table.loc[valid, f"{method}_{m}"] for m in metrics})
    rows["model - keyword"] = _mean_se({
        m: table.loc[valid, f"model_{m}"] - table.loc[valid, f"keyword_{m}"] for m in metrics})
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "method"
    curve_table = {}
    for method in METHODS:
        values = np.asarray(curves[method])[valid]
        curve_table[f"{method}_mean"] = values.mean(axis=0) if len(values) else np.nan
        curve_table[f"{method}_se"] = _se(values)
    curve_frame = pd.DataFrame(curve_table, index=pd.Index(ks, name="k"))
    return HeldOutEvaluation(table=table, summary=summary, curves=curve_frame,
                             figure=plot_dice_curves(curve_frame))


def _se(values):
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return np.full(values.shape[1:], np.nan)
    return values.std(axis=0, ddof=1) / np.sqrt(len(values))


def _mean_se(columns):
    out = {}
    for name, series in columns.items():
        values = series.to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        out.setdefault("n", len(values))
        out[f"{name}_mean"] = float(values.mean()) if len(values) else np.nan
        out[f"{name}_se"] = float(_se(values)) if len(values) > 1 else np.nan
    return out
