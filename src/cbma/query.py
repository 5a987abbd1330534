"""Free-text query to predicted brain map: a simplified NeuroQuery.

The model (after Dockès et al. 2020, eLife) learns, from a database of studies
with a text and reported foci, a linear map from the words of a text to the
spatial distribution of the foci a study with that text would report.

Text features
    The text is lower-cased and split into tokens (runs of letters and
    digits); English stop words (scikit-learn's ``ENGLISH_STOP_WORDS``) are
    dropped, and vocabulary terms are matched greedily, longest first, so
    that ``"working memory"`` is one term before ``"memory"`` could match.
    Vocabulary terms are normalised the same way, so a term written with stop
    words (``"theory of mind"``) matches ``"theory of the mind"`` as well, and
    Neurosynth-style terms built after stop-word removal (``"theory mind"``)
    match the natural phrase. A term made only of stop words can never match.
    When two terms normalise to the same words (``"first episode"`` and
    ``"episode"``, ``first`` being a stop word), the one written without stop
    words wins, otherwise the first in vocabulary order.
TF-IDF
    Term counts times ``idf = 1 + ln(n / df)`` (``df``: number of training
    studies whose text has the term; NeuroQuery's ``1 - log(df / n)``),
    ``idf = 0`` for terms absent from the training texts; rows L2-normalised.
Semantic smoothing
    A low-rank factorisation of the training TF-IDF matrix ``X ~ W H`` (NMF
    by default, or a truncated SVD) gives term loadings ``V = H^T diag(|W_c|)``
    (each component scaled by the norm of its study loadings). With
    ``M = D^-1 V V^T``, ``D`` the row norms of ``V V^T``, every TF-IDF vector
    ``x`` becomes ``x_s = (1 - w) x + w x M`` (``w``: ``smoothing``).
    Terms that co-occur load on the same components, so a query using only
    ``"nociception"`` also puts weight on ``"pain"``. The rank is a tenth of
    the vocabulary (terms seen in training), at most 100: with nearly one
    component per term the factorisation links few terms to others (with
    100 components for the 200 terms of the bundled synthetic database, the
    maps of ``"nociception"`` and ``"noxious stimuli"`` shared 36-45 % of
    their top 20 % voxels at any ``w``, against 74 % with 20 components,
    whose GCV error was lower too).
    NeuroQuery fixes ``w = 0.1``; here ``w`` is chosen with the ridge
    penalty, by GCV over :data:`DEFAULT_SMOOTHINGS` (0.1 to 0.9). A term's
    own coefficient map carries the noise of the few studies that use it,
    and the maps of its related terms average that noise out. On the
    synthetic databases of :mod:`cbma.synthetic`, GCV picks 0.5-0.7 with
    800-1,000 studies, and two synonyms' maps share 71-91 % of their top
    20 % voxels (Dice; 45-49 % at 0.1; unrelated terms 19-29 %, chance
    20 %); with 14,000
    studies each term's own map is estimated well enough, GCV picks 0.1, and
    synonyms share 58-66 % (unrelated 13-25 %).
Targets
    One map per study on a coarse grid (4 mm by default, about 28,000 voxels
    in the MNI152 2 mm brain mask): for foci, the sum over the study's foci
    of an isotropic Gaussian (FWHM 9 mm, peak 1, truncated at 3 sigma)
    evaluated at the coarse voxel centres from the exact mm position of each
    focus (repeated foci add); for study maps given on the brain mask (such
    as MKDA MA maps), the mean of the mask voxels nearest to each coarse
    voxel. Studies whose target map is empty (no focus near the mask) are
    left out of the fit.
Regression
    Ridge regression with an intercept from the smoothed TF-IDF onto the
    target maps, one penalty ``alpha`` for all voxels chosen by generalised
    cross-validation (GCV) over ``alphas``. The fit never holds the
    studies x voxels target matrix: targets are built in blocks of studies and
    only the sufficient statistics ``X^T X`` (terms x terms) and ``X^T Y``
    (terms x voxels) are accumulated; an eigendecomposition of the smoothed,
    centred ``X^T X`` then gives the GCV error of every ``alpha`` and the
    coefficients in closed form.
Feature screening (NeuroQuery's adaptive ridge; ``screening=True``)
    Most words of a text (``task``, ``participants``, rare words) say nothing
    about where the foci are, and a ridge on all of them adds each one's
    noise to every prediction. After a first ridge on all terms (at the
    smallest candidate ``w``, so that each term is judged mostly by its own
    map), each term gets a
    "z-energy": the mean over voxels of ``max(z, 0)^2`` with
    ``z = coef / sqrt(var + mean(var))``, ``var`` the sampling variance of
    the coefficient (the squared norm of the term's row of the ridge hat
    factor, times the voxel's residual variance ``RSS / n``). Terms whose
    energy stands out from the bulk of the vocabulary (the terms seen in
    training) are kept: energy above ``median + 4 x 1.4826 MAD`` (a robust
    z-score above 4) by more than 0.001. NeuroQuery's threshold is
    ``mean + 2 s.d.``, which the informative terms themselves inflate: with
    a few hundred terms of which 20 are informative it drops half of them.
    When no term stands out (a small vocabulary of mostly informative terms)
    all are kept. A second ridge (GCV again, for every candidate ``w``) is
    fitted on the kept terms alone with per-term penalties
    ``alpha / (energy - threshold)``, rescaled so the smallest is ``alpha``
    (NeuroQuery's); the other terms' coefficients are 0. A dropped term
    still counts through the semantic smoothing: its smoothed TF-IDF puts
    weight on the kept terms it co-occurs with.
Prediction
    ``intercept + x_s @ coef`` on the coarse grid: the expected target map of
    a study with that text. :attr:`QueryResult.effect` is the same without the
    intercept (the part the text adds to the average map; NeuroQuery shows a
    standardised version of it). :meth:`QueryModel.to_mask` interpolates coarse
    maps back to the brain mask.

Differences from NeuroQuery: no stemming or synonym mapping, the model
(screening included) is trained on the smoothed TF-IDF, the smoothing weight
is chosen by GCV rather than fixed at 0.1, the screening threshold is robust
(median and MAD rather than mean and s.d.), and maps are not turned into
z-like scores.

Scale
    Measured on two shared cores (load about 3) with a synthetic database of
    14,000 studies (30 foci each), a 3,000-term vocabulary and the 4 mm grid
    (28,549 voxels): the fit takes 95 s with title-like texts and 120 s with
    abstract-like ones (about half in the NMF with 100 components), with a
    peak resident memory of 1.9 GB (``X^T Y`` in float64: 0.7 GB; the
    float32 coefficients: 0.34 GB; all target rows kept sparse: 0.3 GB; one
    block of 1,000 dense target rows: 0.23 GB). A query takes 0.03-0.2 s;
    the saved model is 0.3 GB (12-20 s to write, 3 s to read). The
    screening adds no pass over the targets and no extra terms x terms x voxels
    product (its second ridge is on the kept terms only): fitted on the
    abstracts of 13,500 synthetic studies with their MKDA maps as targets,
    the whole fit took 51 s, with the five candidate smoothing weights
    (``benchmarks/bench_text_evaluation.py``).
"""

import difflib
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .errors import CbmaError
from .io import load_arrays, save_arrays
from .space import BrainMask

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_SMOOTHINGS", "QueryModel", "QueryResult", "coarse_mask",
           "downsample_maps", "extract_terms", "fit_query_model", "foci_targets", "resample_masked"]

#: Ridge penalties tried by default (NeuroQuery's grid).
DEFAULT_ALPHAS = tuple(np.logspace(-1, 3, 9).tolist())
#: Weights of the semantic smoothing tried by default (GCV picks one with the penalty).
DEFAULT_SMOOTHINGS = (0.1, 0.3, 0.5, 0.7, 0.9)

_TOKEN = re.compile(r"[^\W_]+")
_FORMAT = 2
_MAX_COMPONENTS = 100       # rank of the automatic factorisation: a tenth of the terms, <= 100
_VOXEL_BLOCK = 4096
_MIN_ENERGY_MARGIN = 0.001   # NeuroQuery's: a kept feature's energy exceeds the threshold by it
_SCREENING_SDS = 4.0         # screening threshold: median + 4 robust s.d. of the z-energies
_MAD_TO_SD = 1.4826          # s.d. of a normal distribution per median absolute deviation


# ----------------------------------------------------------------------------- grids


def coarse_mask(mask, voxel_mm=4.0):
    """The brain mask on a coarser grid with the same origin and axes.

    Coarse voxel ``(i, j, k)`` is centred on fine voxel ``f (i, j, k)``, with
    ``f = voxel_mm / fine voxel size``, and lies in the coarse mask when the
    fine voxel nearest to its centre lies in the fine mask (nearest-neighbour
    resampling of the mask, as NeuroQuery does).

    Parameters
    ----------
    mask : cbma.space.BrainMask
        The fine mask (for example MNI152 2 mm).
    voxel_mm : float, optional
        Coarse voxel size in mm; at least the fine voxel size. On the MNI152
        2 mm mask (228,483 voxels), 4 mm gives about 28,500 voxels and 6 mm
        about 8,500.

    Returns
    -------
    cbma.space.BrainMask
    """
    sizes = mask.voxel_size
    if not np.allclose(sizes, sizes[0], rtol=1e-3):
        raise CbmaError(f"coarse grid: the mask's voxels are not isotropic ({sizes.tolist()} mm)")
    factor = float(voxel_mm) / float(sizes[0])
    if not np.isfinite(factor) or factor < 1 - 1e-9:
        raise CbmaError(f"coarse grid: voxel_mm must be at least the mask's voxel size "
                        f"({sizes[0]:g} mm), got {voxel_mm!r}")
    shape = np.floor((np.array(mask.shape) - 1) / factor + 1e-9).astype(int) + 1
    grid = np.indices(shape).reshape(3, -1).T
    fine = np.round(grid * factor).astype(np.int64)
    data = mask.contains(fine).reshape(shape)
    affine = np.array(mask.affine, dtype=float)
    affine[:3, :3] = affine[:3, :3] * factor
    return BrainMask(data=data, affine=affine)


def _fine_to_coarse(mask, coarse):
    """Sparse (fine voxels x coarse voxels) matrix averaging fine voxels into coarse ones."""
    ijk = np.column_stack(np.unravel_index(mask.flat_indices, mask.shape))
    to_coarse = np.linalg.solve(coarse.affine, mask.affine)
    cijk = np.round(ijk @ to_coarse[:3, :3].T + to_coarse[:3, 3]).astype(np.int64)
    inside = coarse.contains(cijk)
    lookup = np.full(coarse.data.size, -1, dtype=np.int64)
    lookup[coarse.flat_indices] = np.arange(coarse.n_voxels)
    rows = np.flatnonzero(inside)
    cols = lookup[np.ravel_multi_index(cijk[inside].T, coarse.shape)]
    counts = np.bincount(cols, minlength=coarse.n_voxels)
    weights = 1.0 / counts[cols]
    return sp.csr_matrix((weights, (rows, cols)), shape=(mask.n_voxels, coarse.n_voxels))


def downsample_maps(maps, mask, coarse):
    """Average maps on a fine mask into the voxels of a coarse mask.

    Each fine in-mask voxel goes to the coarse voxel whose centre is nearest;
    a coarse voxel's value is the mean over the fine in-mask voxels assigned
    to it (fine voxels assigned to a voxel outside the coarse mask are
    dropped).

    Parameters
    ----------
    maps : ndarray or scipy.sparse matrix of shape (n_maps, mask.n_voxels)
    mask, coarse : cbma.space.BrainMask
        The fine mask and the coarse one (see :func:`coarse_mask`).

    Returns
    -------
    ndarray or scipy.sparse.csr_matrix of shape (n_maps, coarse.n_voxels)
        Sparse when ``maps`` is sparse.
    """
    if maps.shape[-1] != mask.n_voxels:
        raise CbmaError(f"maps have {maps.shape[-1]} voxels, the mask {mask.n_voxels}")
    agg = _fine_to_coarse(mask, coarse)
    if sp.issparse(maps):
        return sp.csr_matrix(maps) @ agg
    return np.asarray(maps) @ agg


def resample_masked(values, source, target):
    """Interpolate masked maps from one grid to another (trilinear, mask-aware).

    Each target voxel takes the trilinear interpolation of the source map at
    its centre, computed over in-mask source voxels only (the interpolation
    weights of out-of-mask neighbours are dropped and the rest renormalised),
    so values do not fade towards the edge of the mask; a target voxel with
    no in-mask source neighbour takes the value of the nearest in-mask source
    voxel.

    Parameters
    ----------
    values : ndarray of shape (source.n_voxels,) or (n_maps, source.n_voxels)
    source, target : cbma.space.BrainMask

    Returns
    -------
    ndarray of shape (target.n_voxels,) or (n_maps, target.n_voxels), float32
    """
    values = np.asarray(values, dtype=float)
    single = values.ndim == 1
    values = np.atleast_2d(values)
    if values.shape[1] != source.n_voxels:
        raise CbmaError(f"maps have {values.shape[1]} voxels, the source mask "
                        f"{source.n_voxels}")
    ijk = np.column_stack(np.unravel_index(target.flat_indices, target.shape))
    to_source = np.linalg.solve(source.affine, target.affine)
    coords = (ijk @ to_source[:3, :3].T + to_source[:3, 3]).T
    inside = source.data.astype(float)
    weight = ndimage.map_coordinates(inside, coords, order=1, mode="constant", cval=0.0)
    near = np.round(coords).astype(np.int64)
    for axis in range(3):
        np.clip(near[axis], 0, source.shape[axis] - 1, out=near[axis])
    _, nearest = ndimage.distance_transform_edt(~source.data, return_indices=True)
    nearest_flat = np.ravel_multi_index(tuple(nearest[(slice(None), *near)]), source.shape)
    has = weight > 1e-6
    out = np.empty((len(values), target.n_voxels), dtype=np.float32)
    for row, vector in enumerate(values):
        volume = source.unmask(vector, dtype=float)
        interp = ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)
        out[row] = np.where(has, interp / np.where(has, weight, 1.0),
                            volume.reshape(-1)[nearest_flat])
    return out[0] if single else out


# --------------------------------------------------------------------------- targets


def foci_targets(foci, coarse, fwhm=9.0):
    """Target maps of studies from their foci: sums of Gaussians on a coarse grid.

    Parameters
    ----------
    foci : sequence of array-like of shape (n_i, 3)
        Each study's foci in mm (MNI). A study may have no focus.
    coarse : cbma.space.BrainMask
        The grid of the targets (see :func:`coarse_mask`).
    fwhm : float, optional
        Full width at half maximum of the Gaussian, in mm.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_studies, coarse.n_voxels), float32
        Value ``sum_f exp(-d_f^2 / (2 sigma^2))`` over the study's foci ``f``
        at distance ``d_f <= 3 sigma`` from the voxel centre.
    """
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise CbmaError(f"target FWHM must be a positive number of mm, got {fwhm!r}")
    arrays = [np.asarray(f, dtype=float).reshape(-1, 3) for f in foci]
    n_studies = len(arrays)
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    if n_studies == 0 or counts.sum() == 0:
        return sp.csr_matrix((n_studies, coarse.n_voxels), dtype=np.float32)
    xyz = np.concatenate(arrays)
    if not np.all(np.isfinite(xyz)):
        raise CbmaError("foci must be finite coordinates in mm")
    study = np.repeat(np.arange(n_studies), counts)
    sigma = fwhm / np.sqrt(8 * np.log(2))
    cutoff = 3 * sigma
    vox = coarse.voxel_size
    reach = np.ceil(cutoff / vox.min() + 0.5).astype(int)
    offsets = np.indices((2 * reach + 1,) * 3).reshape(3, -1).T - reach
    # a focus is at most half a voxel (per axis) from its nearest voxel centre
    slack = np.linalg.norm(vox) / 2
    offsets = offsets[np.linalg.norm(offsets * vox, axis=1) <= cutoff + slack]
    inv = np.linalg.inv(coarse.affine)
    lookup = np.full(coarse.data.size, -1, dtype=np.int64)
    lookup[coarse.flat_indices] = np.arange(coarse.n_voxels)
    shape = np.array(coarse.shape)
    rows, cols, vals = [], [], []
    chunk = max(1, 2_000_000 // len(offsets))
    for start in range(0, len(xyz), chunk):
        part = xyz[start:start + chunk]
        centre = np.round(part @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
        cand = centre[:, None, :] + offsets[None, :, :]
        mm = cand @ coarse.affine[:3, :3].T + coarse.affine[:3, 3]
        d2 = ((mm - part[:, None, :]) ** 2).sum(-1)
        ok = (d2 <= cutoff**2) & np.all((cand >= 0) & (cand < shape), axis=-1)
        focus, which = np.nonzero(ok)
        col = lookup[np.ravel_multi_index(cand[focus, which].T, coarse.shape)]
        keep = col >= 0
        rows.append(study[start + focus[keep]])
        cols.append(col[keep])
        vals.append(np.exp(-d2[focus[keep], which[keep]] / (2 * sigma**2)))
    matrix = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_studies, coarse.n_voxels)).tocsr()
    matrix.sum_duplicates()
    return matrix.astype(np.float32)


# ---------------------------------------------------------------------------- text


def _normalise(term):
    return " ".join(str(term).lower().split())


def _tokens(text):
    return _TOKEN.findall(text.lower())


def _content(tokens):
    return [t for t in tokens if t not in ENGLISH_STOP_WORDS]


class _Matcher:
    """Greedy longest-first matching of vocabulary terms in token sequences."""

    def __init__(self, vocabulary):
        self.terms = [_normalise(t) for t in vocabulary]
        seen = {}
        for j, term in enumerate(self.terms):
            if not term:
                raise CbmaError(f"vocabulary term {j} is empty")
            if term in seen:
                raise CbmaError(f"vocabulary term {term!r} is listed twice "
                                f"(positions {seen[term]} and {j})")
            seen[term] = j
        self.index = {}
        exact = {}
        for j, term in enumerate(self.terms):
            tokens = _tokens(term)
            key = tuple(_content(tokens))
            if not key:
                continue
            is_exact = len(key) == len(tokens)
            if key not in self.index or (is_exact and not exact[key]):
                self.index[key] = j
                exact[key] = is_exact
        self.lengths = sorted({len(k) for k in self.index}, reverse=True)
        self.words = sorted({w for key in self.index for w in key})

    def match(self, tokens):
        """Indices of the matched terms, in text order, and the unmatched tokens."""
        found, unmatched = [], []
        i, n = 0, len(tokens)
        while i < n:
            for length in self.lengths:
                if i + length <= n:
                    j = self.index.get(tuple(tokens[i:i + length]))
                    if j is not None:
                        found.append(j)
                        i += length
                        break
            else:
                unmatched.append(tokens[i])
                i += 1
        return found, unmatched

    def find(self, text):
        """Indices of the terms matched in a text, in text order."""
        return self.match(_content(_tokens(text)))[0]

    def nearest(self, words, n=5):
        """Vocabulary terms and words closest to some unknown words (difflib)."""
        near = []
        for word in words:
            near += difflib.get_close_matches(word, self.words, n=3)
        near += difflib.get_close_matches(" ".join(words), list(self.terms), n=3)
        return list(dict.fromkeys(near))[:n]


@lru_cache(maxsize=8)
def _matcher(vocabulary):
    return _Matcher(vocabulary)


def extract_terms(text, vocabulary):
    """Count the vocabulary terms in a text.

    Parameters
    ----------
    text : str
        Any text (a query, a title, an abstract).
    vocabulary : sequence of str
        The terms; matching ignores case and stop words and prefers the
        longest term (see the module documentation).

    Returns
    -------
    dict of str to int
        Each matched term (normalised: lower case, single spaces) with its
        number of occurrences, in order of first occurrence; empty when no
        term matches.

    Examples
    --------
    >>> extract_terms("Working memory and memory load", ["memory", "working memory", "load"])
    {'working memory': 1, 'memory': 1, 'load': 1}
    """
    if not isinstance(text, str):
        raise CbmaError(f"text must be a string, got {type(text).__name__}")
    matcher = _matcher(tuple(vocabulary))
    out = {}
    for j in matcher.find(text):
        term = matcher.terms[j]
        out[term] = out.get(term, 0) + 1
    return out


def _count_matrix(texts, matcher):
    rows, cols = [], []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise CbmaError(f"text of study {i} must be a string, got {type(text).__name__}")
        found = matcher.find(text)
        rows += [i] * len(found)
        cols += found
    data = np.ones(len(rows))
    return sp.csr_matrix((data, (rows, cols)), shape=(len(texts), len(matcher.terms)))


def _tfidf(counts, idf):
    x = sp.csr_matrix(counts, dtype=float) @ sp.diags(idf)
    x = sp.csr_matrix(x)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ x)


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class QueryResult:
    """A predicted map and how the text was read.

    Attributes
    ----------
    text : str
        The query.
    map : ndarray of shape (n_coarse_voxels,), float32
        Predicted target map on the model's coarse grid (intercept included).
    effect : ndarray of shape (n_coarse_voxels,), float32
        The prediction without the intercept: what the text adds to the
        average map.
    terms : dict of str to int
        The matched vocabulary terms and their counts.
    weights : dict of str to float
        The smoothed TF-IDF weights of the query (the terms the map is built
        from, including related terms brought in by the semantic smoothing),
        largest first; only positive weights (an SVD smoothing can also give
        small negative ones).
    unmatched : list of str
        Query words (stop words aside) that are not part of any matched term.
    """

    text: str
    map: np.ndarray
    effect: np.ndarray
    terms: dict
    weights: dict
    unmatched: list = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class QueryModel:
    """A fitted free-text-to-map model (see :func:`fit_query_model`).

    Attributes
    ----------
    vocabulary : ndarray of str, shape (n_terms,)
    idf : ndarray of shape (n_terms,)
        Inverse document frequencies (0 for terms absent from training).
    df : ndarray of int, shape (n_terms,)
        Number of training studies whose text has each term.
    components : ndarray of shape (n_terms, n_components)
        Scaled term loadings ``V`` of the semantic smoothing.
    row_scale : ndarray of shape (n_terms,)
        ``1 / ||(V V^T)_t||`` (0 for terms with no loading).
    smoothing : float
        Weight ``w`` of the smoothing (the candidate with the smallest GCV error).
    smoothings, smoothing_gcv : ndarray
        The candidate weights and the smallest GCV error of each (over ``alphas``).
    coef : ndarray of shape (n_terms, n_coarse_voxels), float32
    intercept : ndarray of shape (n_coarse_voxels,), float32
    alpha : float
        Ridge penalty chosen by GCV.
    alphas, gcv : ndarray
        The penalties tried and their GCV error (mean squared error per
        study and voxel).
    mask, coarse : cbma.space.BrainMask
        The brain mask and the coarse grid the maps are predicted on.
    n_studies : int
        Studies used in the fit.
    min_df : int
        Terms in fewer training studies are "rare" (see :meth:`predict`).
    fwhm : float
        FWHM (mm) of the foci targets.
    """

    vocabulary: np.ndarray
    idf: np.ndarray
    df: np.ndarray
    components: np.ndarray
    row_scale: np.ndarray
    smoothing: float
    smoothings: np.ndarray
    smoothing_gcv: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    alphas: np.ndarray
    gcv: np.ndarray
    mask: BrainMask
    coarse: BrainMask
    n_studies: int
    min_df: int
    fwhm: float

    @property
    def _matcher(self):
        return _matcher(tuple(self.vocabulary.tolist()))

    def vectorize(self, texts):
        """L2-normalised TF-IDF of texts (scipy.sparse, n_texts x n_terms)."""
        return _tfidf(_count_matrix(texts, self._matcher), self.idf)

    def smooth(self, x):
        """Semantic smoothing ``(1 - w) x + w x M`` of TF-IDF rows (dense result)."""
        x = sp.csr_matrix(x)
        related = ((x @ sp.diags(self.row_scale)) @ self.components) @ self.components.T
        return (1 - self.smoothing) * x.toarray() + self.smoothing * np.asarray(related)

    def predict_maps(self, texts):
        """Predicted maps of many texts on the coarse grid, without checks or warnings.

        A text with no known term gets the intercept (the average training map).

        Returns
        -------
        ndarray of shape (n_texts, n_coarse_voxels), float32
        """
        xs = self.smooth(self.vectorize(texts)).astype(np.float32)
        return xs @ self.coef + self.intercept

    def predict(self, text):
        """Predict the map of a free-text query.

        Parameters
        ----------
        text : str
            A word, a phrase or a whole abstract.

        Returns
        -------
        QueryResult

        Raises
        ------
        CbmaError
            If the text is empty, has only stop words, or no word of it is in
            the vocabulary (the message lists the nearest vocabulary words).

        Warns
        -----
        UserWarning
            When every matched term is rare (in fewer than ``min_df`` training
            studies): the map is still returned (the average map when no
            matched term was seen in training at all).
        """
        if not isinstance(text, str):
            raise CbmaError(f"query must be a string, got {type(text).__name__}")
        tokens = _tokens(text)
        if not tokens:
            raise CbmaError(f"query {text!r} is empty: write a word or phrase such as "
                            "'working memory'")
        content = _content(tokens)
        if not content:
            raise CbmaError(f"query {text!r} has only stop words: add a word such as "
                            "'memory' or 'pain'")
        found, unmatched = self._matcher.match(content)
        if not found:
            near = self._matcher.nearest(content)
            hint = ("nearest vocabulary words: " + ", ".join(repr(w) for w in near)
                    if near else "no similar vocabulary word")
            raise CbmaError(f"query {text!r}: no word is in the vocabulary; {hint}")
        terms = {}
        for j in found:
            terms[self._matcher.terms[j]] = terms.get(self._matcher.terms[j], 0) + 1
        df = {self._matcher.terms[j]: int(self.df[j]) for j in found}
        if all(d < self.min_df for d in df.values()):
            listed = ", ".join(f"{t!r} ({d})" for t, d in df.items())
            warnings.warn(f"query {text!r}: every matched term is rare in the training "
                          f"studies ({listed}; fewer than {self.min_df} studies): the map is "
                          "unreliable", UserWarning, stacklevel=2)
        counts = np.zeros((1, len(self.vocabulary)))
        for j in found:
            counts[0, j] += 1
        xs = self.smooth(_tfidf(counts, self.idf))[0]
        effect = (xs.astype(np.float32) @ self.coef).astype(np.float32)
        order = np.argsort(-xs, kind="stable")
        weights = {str(self.vocabulary[j]): float(xs[j]) for j in order if xs[j] > 1e-12}
        return QueryResult(text=text, map=(effect + self.intercept).astype(np.float32),
                           effect=effect, terms=terms, weights=weights, unmatched=unmatched)

    def to_mask(self, values):
        """Coarse-grid map(s) interpolated to the brain mask (:func:`resample_masked`)."""
        return resample_masked(values, self.coarse, self.mask)

    def save(self, path):
        """Write the model to an ``.npz`` (no pickle; same bytes for the same model)."""
        save_arrays(
            path, format=np.int64(_FORMAT), vocabulary=np.asarray(self.vocabulary, dtype=str),
            idf=self.idf, df=self.df, components=self.components, row_scale=self.row_scale,
            smoothing=np.float64(self.smoothing), smoothings=self.smoothings,
            smoothing_gcv=self.smoothing_gcv, coef=self.coef, intercept=self.intercept,
            alpha=np.float64(self.alpha), alphas=self.alphas, gcv=self.gcv,
            mask=self.mask.data, mask_affine=self.mask.affine, coarse=self.coarse.data,
            coarse_affine=self.coarse.affine, n_studies=np.int64(self.n_studies),
            min_df=np.int64(self.min_df), fwhm=np.float64(self.fwhm))

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`."""
        arrays = load_arrays(path)
        needed = ["format", "vocabulary", "idf", "df", "components", "row_scale", "smoothing",
                  "smoothings", "smoothing_gcv", "coef", "intercept", "alpha", "alphas", "gcv",
                  "mask", "mask_affine", "coarse", "coarse_affine", "n_studies", "min_df", "fwhm"]
        missing = [k for k in needed if k not in arrays]
        if missing:
            raise CbmaError(f"{path}: not a cbma query model (missing {', '.join(missing)})")
        # save_arrays stores scalars as 1-element arrays (np.ascontiguousarray)
        scalar = {k: arrays[k].reshape(-1)[0].item() for k in
                  ("format", "smoothing", "alpha", "n_studies", "min_df", "fwhm")}
        if scalar["format"] != _FORMAT:
            raise CbmaError(f"{path}: query model format {scalar['format']} is not "
                            f"supported (expected {_FORMAT})")
        return cls(
            vocabulary=arrays["vocabulary"], idf=arrays["idf"], df=arrays["df"],
            components=arrays["components"], row_scale=arrays["row_scale"],
            smoothing=float(scalar["smoothing"]), smoothings=arrays["smoothings"],
            smoothing_gcv=arrays["smoothing_gcv"], coef=arrays["coef"],
            intercept=arrays["intercept"], alpha=float(scalar["alpha"]),
            alphas=arrays["alphas"], gcv=arrays["gcv"],
            mask=BrainMask(arrays["mask"].astype(bool), arrays["mask_affine"]),
            coarse=BrainMask(arrays["coarse"].astype(bool), arrays["coarse_affine"]),
            n_studies=int(scalar["n_studies"]), min_df=int(scalar["min_df"]),
            fwhm=float(scalar["fwhm"]))


# ------------------------------------------------------------------------------ fit


def _term_loadings(x, n_components, decomposition, seed, max_iter):
    """Scaled term loadings V (n_terms x k) of a low-rank factorisation of x."""
    n, p = x.shape
    k = int(min(n_components, n, p))
    if k < 1:
        return np.zeros((p, 0))
    if decomposition == "nmf":
        from sklearn.decomposition import NMF

        model = NMF(n_components=k, init="nndsvda", max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            # an unconverged factorisation is still a valid smoothing
            warnings.simplefilter("ignore", ConvergenceWarning)
            w = model.fit_transform(x)
        h = model.components_
    elif decomposition == "svd":
        from sklearn.decomposition import TruncatedSVD

        if k >= min(n, p):
            k = min(n, p) - 1
        if k < 1:
            return np.zeros((p, 0))
        model = TruncatedSVD(n_components=k, algorithm="randomized", random_state=seed)
        w = model.fit_transform(x)
        h = model.components_
    else:
        raise CbmaError(f"decomposition must be 'nmf' or 'svd', got {decomposition!r}")
    return h.T * np.linalg.norm(w, axis=0)


def _smoothings(smoothing):
    """Candidate smoothing weights, sorted and unique, each checked to lie in [0, 1]."""
    values = np.atleast_1d(np.asarray(smoothing, dtype=object)).ravel().tolist()
    ok = [isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
          and 0 <= v <= 1 for v in values]
    if not values or not all(ok):
        raise CbmaError(f"smoothing must be a number between 0 and 1 or a list of them, got "
                        f"{smoothing!r}")
    return tuple(sorted({float(v) for v in values}))


def _targets_kind(targets, mask, n_texts):
    if sp.issparse(targets) or (isinstance(targets, np.ndarray) and targets.ndim == 2
                                and targets.dtype != object and targets.shape[1] != 3):
        if targets.shape != (n_texts, mask.n_voxels):
            raise CbmaError(f"study maps have shape {targets.shape}, expected ({n_texts} "
                            f"studies, {mask.n_voxels} mask voxels)")
        return "maps"
    if len(targets) != n_texts:
        raise CbmaError(f"{n_texts} texts but foci for {len(targets)} studies")
    return "foci"


class _Ridge:
    """Ridge of centred targets on (a subset of) the smoothed features, in closed form.

    The features are ``X T`` (``T``: ``transform``, terms x features), optionally
    each scaled by ``scale`` (an adaptive ridge: feature ``j`` is penalised
    ``alpha / scale_j^2``). From the centred Gram matrix ``G`` of ``X`` and
    ``X^T Y_c`` only: the eigendecomposition of ``S T^T G T S`` (``S`` =
    diag(scale)) gives the GCV error of every ``alpha`` and the coefficients.
    """

    def __init__(self, transform, gram, xty, ysq_c, alphas, n, scale=None):
        k = transform.shape[1]
        scale = np.ones(k) if scale is None else np.asarray(scale, dtype=float)
        gram_s = scale[:, None] * (transform.T @ gram @ transform) * scale[None, :]
        s2, vecs = np.linalg.eigh((gram_s + gram_s.T) / 2)
        s2 = np.clip(s2, 0.0, None)
        # Z = E^T S T^T X^T Y_c (E: eigenvectors): the fit in the eigenbasis; products in
        # float32 (the slow part at full scale), accumulations in float64
        self.project = (vecs.T @ (scale[:, None] * transform.T)).astype(np.float32)
        self.xty, self.s2, self.vecs, self.scale, self.n = xty, s2, vecs, scale, n
        v = xty.shape[1]
        # RSS(alpha) per voxel = |Y_c|^2 - sum_j Z_j^2 (s_j^2 + 2 alpha) / (s_j^2 + alpha)^2:
        # no division by the (possibly zero) eigenvalues s_j^2
        denom = s2[None, :] + alphas[:, None]
        explained = (s2[None, :] + 2 * alphas[:, None]) / denom**2
        rss = np.empty((alphas.size, v))
        for c in range(0, v, _VOXEL_BLOCK):
            z = self.project @ xty[:, c:c + _VOXEL_BLOCK].astype(np.float32)
            zz = np.square(z, dtype=float)
            rss[:, c:c + _VOXEL_BLOCK] = ysq_c[None, c:c + _VOXEL_BLOCK] - explained @ zz
        rss = np.maximum(rss, 0.0)
        dof = 1 + (s2[None, :] / denom).sum(axis=1)
        self.gcv = rss.sum(axis=1) / (n * v) / (1 - np.minimum(dof, n - 0.5) / n) ** 2
        best = int(np.argmin(self.gcv))
        self.alpha = float(alphas[best])
        self.residual_var = rss[best] / n
        self.solve = (scale[:, None] * ((vecs / (s2 + self.alpha)) @ self.project.astype(float))
                      ).astype(np.float32)

    def coef(self, start, stop):
        """Coefficients (features x voxels ``start:stop``), float32."""
        return self.solve @ self.xty[:, start:stop].astype(np.float32)

    def z_energy(self):
        """NeuroQuery's feature "z-energy": mean over voxels of ``max(z, 0)^2``.

        ``z = coef / sqrt(var + mean var)``, ``var`` the sampling variance of
        each coefficient (``||row of the hat factor||^2 x`` the voxel's residual
        variance).
        """
        spread = (self.scale[:, None] * self.vecs) ** 2 @ (
            self.s2 / (self.s2 + self.alpha) ** 2)
        floor = spread.mean() * self.residual_var.mean()
        energy = np.zeros(spread.size)
        v = self.xty.shape[1]
        for c in range(0, v, _VOXEL_BLOCK):
            block = np.maximum(self.coef(c, c + _VOXEL_BLOCK), 0).astype(float)
            var = np.outer(spread, self.residual_var[c:c + _VOXEL_BLOCK]) + floor
            energy += (block**2 / np.maximum(var, 1e-300)).sum(axis=1)
        return energy / v


def fit_query_model(texts, vocabulary, targets, mask, *, n_components="auto",
                    smoothing=DEFAULT_SMOOTHINGS,
                    alphas=DEFAULT_ALPHAS, voxel_mm=4.0, fwhm=9.0, decomposition="nmf",
                    min_df=5, max_iter=100, block_size=1000, screening=True, seed=0):
    """Fit a free-text-to-map model on a database of studies.

    Parameters
    ----------
    texts : sequence of str, or array-like of shape (n_studies, n_terms)
        Each study's text (title, abstract), or a precomputed studies x
        vocabulary matrix of term counts (scipy.sparse or dense).
    vocabulary : sequence of str
        The terms, possibly multi-word.
    targets : sequence of array-like of shape (n_i, 3), or matrix of shape (n_studies, n_voxels)
        Each study's foci in MNI mm (turned into Gaussian maps, see
        :func:`foci_targets`), or each study's map on ``mask`` (for example
        sparse MKDA MA maps), averaged onto the coarse grid.
    mask : cbma.space.BrainMask
        The brain mask (MNI152 2 mm).
    n_components : int or "auto", optional
        Rank of the factorisation behind the semantic smoothing; ``"auto"``: a
        tenth of the terms seen in training, at least 1 and at most 100.
    smoothing : float or sequence of float, optional
        Weight ``w`` in ``(1 - w) x + w x M``, in [0, 1]; 0 turns the
        smoothing off. Several candidates: the one whose ridge has the
        smallest GCV error is used.
    alphas : sequence of float, optional
        Ridge penalties; the one with the smallest GCV error is used.
    voxel_mm : float, optional
        Voxel size of the coarse grid of the targets and predictions.
    fwhm : float, optional
        FWHM (mm) of the Gaussian put on each focus.
    decomposition : {"nmf", "svd"}, optional
        NMF (non-negative loadings, NeuroQuery's choice; ``max_iter``
        iterations at most) or a truncated SVD (faster, signed loadings).
    min_df : int, optional
        A term in fewer training texts is rare: :meth:`QueryModel.predict`
        warns when a query has only rare terms.
    max_iter : int, optional
        Iterations of the NMF.
    block_size : int, optional
        Studies per block of dense target rows (memory: ``block_size`` x
        coarse voxels x 8 bytes).
    screening : bool, optional
        Adaptive feature screening after NeuroQuery (see the module
        documentation): keep only the terms whose coefficient maps stand out
        from the bulk of the vocabulary (robust z-score of their z-energy
        above 4), with penalties that shrink the weaker ones more. Made for
        vocabularies that are mostly uninformative words (Neurosynth's 3,228
        terms; the words of abstracts); when no term stands out, all are
        kept. With ``False``, one ridge on all terms.
    seed : int, optional
        Seed of the factorisation.

    Returns
    -------
    QueryModel
        Terms dropped by the screening have all-zero coefficients.

    Raises
    ------
    CbmaError
        On mismatched inputs, an empty vocabulary, a bad parameter, or when no
        study has both a known term and a non-empty target map.
    """
    terms = [_normalise(t) for t in vocabulary]
    if not terms:
        raise CbmaError("the vocabulary is empty")
    matcher = _matcher(tuple(terms))
    smoothings = _smoothings(smoothing)
    alphas = np.asarray(alphas, dtype=float).ravel()
    if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        raise CbmaError(f"alphas must be positive numbers, got {alphas.tolist()}")
    if isinstance(texts, str):
        raise CbmaError("texts must be a list of strings (one per study), not one string")
    if sp.issparse(texts) or isinstance(texts, np.ndarray) and texts.ndim == 2:
        counts = sp.csr_matrix(texts, dtype=float)
        if counts.shape[1] != len(terms):
            raise CbmaError(f"term counts have {counts.shape[1]} columns, the vocabulary "
                            f"{len(terms)} terms")
    else:
        counts = _count_matrix(list(texts), matcher)
    n_all = counts.shape[0]
    kind = _targets_kind(targets, mask, n_all)
    coarse = coarse_mask(mask, voxel_mm)
    agg = _fine_to_coarse(mask, coarse) if kind == "maps" else None

    # blocks of targets: keep studies whose map is not empty
    p, v = len(terms), coarse.n_voxels
    keep = np.zeros(n_all, dtype=bool)
    blocks = []
    for start in range(0, n_all, block_size):
        stop = min(start + block_size, n_all)
        if kind == "maps":
            y = sp.csr_matrix(targets[start:stop]) @ agg
        else:
            y = foci_targets(targets[start:stop], coarse, fwhm)
        keep[start:stop] = np.asarray(abs(y).sum(axis=1)).ravel() > 0
        blocks.append((start, stop, sp.csr_matrix(y, dtype=np.float32)))
    counts = counts[keep]
    n = counts.shape[0]
    if n < 2:
        raise CbmaError(f"only {n} study has a non-empty target map: cannot fit a model")
    df = np.asarray((counts > 0).sum(axis=0)).ravel().astype(np.int64)
    if not df.any():
        raise CbmaError("no vocabulary term occurs in the study texts")
    idf = np.where(df > 0, 1.0 + np.log(n / np.maximum(df, 1)), 0.0)
    x = _tfidf(counts, idf)

    if n_components == "auto":
        n_components = min(_MAX_COMPONENTS, max(1, int((df > 0).sum()) // 10))
    elif isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
            or n_components < 1:
        raise CbmaError(f"n_components must be a positive integer or 'auto', got "
                        f"{n_components!r}")
    loadings = _term_loadings(x, n_components, decomposition, seed, max_iter)
    vvt = loadings @ loadings.T
    norms = np.linalg.norm(vvt, axis=1)
    row_scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 1e-12)
    related = row_scale[:, None] * vvt
    del vvt

    def transform(w, columns):
        # the smoothing matrix (1 - w) I + w D^-1 V V^T, only the columns (features) needed
        out = w * related[:, columns]
        out[columns, np.arange(out.shape[1])] += 1 - w
        return out

    # sufficient statistics over blocks of studies
    xty = np.zeros((p, v))
    ysum = np.zeros(v)
    ysq = np.zeros(v)
    row = 0
    for b, (start, stop, y) in enumerate(blocks):
        blocks[b] = None  # free each block once used
        y = y[keep[start:stop]]
        xbt = sp.csr_matrix(x[row:row + y.shape[0]].T)
        row += y.shape[0]
        dense = y.toarray().astype(float)
        for c in range(0, v, _VOXEL_BLOCK):  # in voxel blocks: no terms x voxels temporary
            xty[:, c:c + _VOXEL_BLOCK] += xbt @ dense[:, c:c + _VOXEL_BLOCK]
        ysum += dense.sum(axis=0)
        ysq += np.einsum("ij,ij->j", dense, dense)
        del dense
    xbar = np.asarray(x.mean(axis=0)).ravel()
    ybar = ysum / n
    gram = (x.T @ x).toarray() - n * np.outer(xbar, xbar)
    xty -= n * np.outer(xbar, ybar)
    ysq_c = ysq - n * ybar**2   # per voxel: |Y_c|^2

    # ridge on the smoothed features, all of them, at the least smoothing tried
    fit = _Ridge(transform(smoothings[0], np.arange(p)), gram, xty, ysq_c, alphas, n)
    fits = {smoothings[0]: fit}
    selected, scale = np.arange(p), None
    if screening:
        energy = fit.z_energy()
        # the bulk of the vocabulary (terms seen in training) says nothing of the foci:
        # keep the terms whose energy is an outlier of it, robustly (median, MAD)
        seen = energy[df > 0]
        centre = float(np.median(seen)) if seen.size else 0.0
        spread = _MAD_TO_SD * float(np.median(np.abs(seen - centre))) if seen.size else 0.0
        threshold = centre + _SCREENING_SDS * spread
        kept = np.flatnonzero(energy - threshold > _MIN_ENERGY_MARGIN)
        if spread > 0 and kept.size:  # (none stands out: keep them all)
            selected = kept
            # adaptive ridge on the kept features: penalty 1 / (energy - threshold), the
            # smallest one 1
            penalty = 1 / (energy[selected] - threshold)
            scale = np.sqrt(penalty.min() / penalty)
            fits = {}
    # the same features at every candidate smoothing; GCV picks the smoothing and penalty
    best_gcv = np.inf
    smoothing_gcv = np.empty(len(smoothings))
    for i, w in enumerate(smoothings):
        this = fits.pop(w, None) or _Ridge(transform(w, selected), gram, xty, ysq_c, alphas,
                                           n, scale=scale)
        smoothing_gcv[i] = this.gcv.min()
        if i == 0 or smoothing_gcv[i] < best_gcv:
            best_gcv, fit, smoothing = smoothing_gcv[i], this, w
        del this
    xbar_s = (xbar @ transform(smoothing, selected)).astype(np.float32)
    coef = np.zeros((p, v), dtype=np.float32)
    intercept = ybar.astype(np.float32)
    for c in range(0, v, _VOXEL_BLOCK):
        block = fit.coef(c, c + _VOXEL_BLOCK)
        coef[selected, c:c + _VOXEL_BLOCK] = block
        intercept[c:c + _VOXEL_BLOCK] -= xbar_s @ block
    alpha, gcv = fit.alpha, fit.gcv
    del xty, fit
    return QueryModel(
        vocabulary=np.asarray(terms, dtype=str), idf=idf, df=df,
        components=np.ascontiguousarray(loadings), row_scale=row_scale,
        smoothing=float(smoothing), smoothings=np.asarray(smoothings, dtype=float),
        smoothing_gcv=smoothing_gcv, coef=coef, intercept=intercept, alpha=alpha,
        alphas=alphas, gcv=gcv, mask=mask, coarse=coarse, n_studies=int(n),
        min_df=int(min_df), fwhm=float(fwhm))
