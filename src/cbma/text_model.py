"""Free-text query to predicted brain map: a simplified NeuroQuery.

The model (after Dockès et al. 2020, eLife) learns, from a database of studies
with a text and reported foci, a linear map from the words of a text to the
spatial distribution of the foci a study with that text would report.

Text features
    Vocabulary terms are counted in the text after lower-casing, tokenising
    and dropping English stop words, longest term first (:mod:`cbma.text`).
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
    One map per study on a coarse grid (4 mm by default; :mod:`cbma.coarse_grid`):
    a Gaussian on each of its foci, or its map on the brain mask (such as an
    MKDA MA map) averaged into the coarse voxels. Studies whose target map is
    empty (no focus near the mask) are left out of the fit.
Regression
    Ridge regression with an intercept from the smoothed TF-IDF onto the
    target maps, one penalty ``alpha`` for all voxels chosen by generalised
    cross-validation (GCV) over ``alphas``. The fit never holds the
    studies x voxels target matrix: targets are built in blocks of studies and
    only the sufficient statistics ``X^T X`` (terms x terms) and ``X^T Y``
    (terms x voxels) are accumulated; an eigendecomposition of the smoothed,
    centred ``X^T X`` then gives the GCV error of every ``alpha`` and the
    coefficients in closed form (:class:`cbma.ridge.RidgeGCV`).
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
    Time and memory grow with studies x vocabulary (the NMF, ``X^T Y``) and
    with vocabulary x coarse voxels (the coefficients); the screening adds no
    pass over the targets (its second ridge is on the kept terms only).
    Measured figures at Neurosynth's scale are in ``docs/performance.md``
    (``benchmarks/bench_text_evaluation.py``).
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .coarse_grid import coarse_mask, fine_to_coarse, foci_targets, resample_masked
from .errors import CbmaError
from .io import load_arrays, save_arrays
from .ridge import VOXEL_BLOCK, RidgeGCV
from .space import BrainMask
from .text import content_words, count_matrix, normalise_term, term_matcher, tfidf, tokenize

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_SMOOTHINGS", "QueryModel", "QueryResult", "fit_query_model",
           "model_options"]

#: Ridge penalties tried by default (NeuroQuery's grid).
DEFAULT_ALPHAS = tuple(np.logspace(-1, 3, 9).tolist())
#: Weights of the semantic smoothing tried by default (GCV picks one with the penalty).
DEFAULT_SMOOTHINGS = (0.1, 0.3, 0.5, 0.7, 0.9)

_FORMAT = 2
_MAX_COMPONENTS = 100       # rank of the automatic factorisation: a tenth of the terms, <= 100
_MIN_ENERGY_MARGIN = 0.001   # NeuroQuery's: a kept feature's energy exceeds the threshold by it
_SCREENING_SDS = 4.0         # screening threshold: median + 4 robust s.d. of the z-energies
_MAD_TO_SD = 1.4826          # s.d. of a normal distribution per median absolute deviation


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
    def matcher(self):
        """The :class:`cbma.text.TermMatcher` of the vocabulary."""
        return term_matcher(tuple(self.vocabulary.tolist()))

    def vectorize(self, texts):
        """L2-normalised TF-IDF of texts (scipy.sparse, n_texts x n_terms)."""
        return tfidf(count_matrix(texts, self.matcher), self.idf)

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
        tokens = tokenize(text)
        if not tokens:
            raise CbmaError(f"query {text!r} is empty: write a word or phrase such as "
                            "'working memory'")
        content = content_words(tokens)
        if not content:
            raise CbmaError(f"query {text!r} has only stop words: add a word such as "
                            "'memory' or 'pain'")
        found, unmatched = self.matcher.match(content)
        if not found:
            near = self.matcher.nearest(content)
            hint = ("nearest vocabulary words: " + ", ".join(repr(w) for w in near)
                    if near else "no similar vocabulary word")
            raise CbmaError(f"query {text!r}: no word is in the vocabulary; {hint}")
        terms = {}
        for j in found:
            terms[self.matcher.terms[j]] = terms.get(self.matcher.terms[j], 0) + 1
        df = {self.matcher.terms[j]: int(self.df[j]) for j in found}
        if all(d < self.min_df for d in df.values()):
            listed = ", ".join(f"{t!r} ({d})" for t, d in df.items())
            warnings.warn(f"query {text!r}: every matched term is rare in the training "
                          f"studies ({listed}; fewer than {self.min_df} studies): the map is "
                          "unreliable", UserWarning, stacklevel=2)
        counts = np.zeros((1, len(self.vocabulary)))
        for j in found:
            counts[0, j] += 1
        xs = self.smooth(tfidf(counts, self.idf))[0]
        effect = (xs.astype(np.float32) @ self.coef).astype(np.float32)
        order = np.argsort(-xs, kind="stable")
        weights = {str(self.vocabulary[j]): float(xs[j]) for j in order if xs[j] > 1e-12}
        return QueryResult(text=text, map=(effect + self.intercept).astype(np.float32),
                           effect=effect, terms=terms, weights=weights, unmatched=unmatched)

    def to_mask(self, values):
        """Coarse-grid map(s) interpolated to the brain mask.

        See :func:`cbma.coarse_grid.resample_masked`.
        """
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
        from sklearn.exceptions import ConvergenceWarning

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
        :func:`cbma.coarse_grid.foci_targets`), or each study's map on ``mask``
        (for example sparse MKDA MA maps), averaged onto the coarse grid.
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
    terms = [normalise_term(t) for t in vocabulary]
    if not terms:
        raise CbmaError("the vocabulary is empty")
    matcher = term_matcher(tuple(terms))
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
        counts = count_matrix(list(texts), matcher)
    n_all = counts.shape[0]
    kind = _targets_kind(targets, mask, n_all)
    coarse = coarse_mask(mask, voxel_mm)
    agg = fine_to_coarse(mask, coarse) if kind == "maps" else None

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
    x = tfidf(counts, idf)

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
        for c in range(0, v, VOXEL_BLOCK):  # in voxel blocks: no terms x voxels temporary
            xty[:, c:c + VOXEL_BLOCK] += xbt @ dense[:, c:c + VOXEL_BLOCK]
        ysum += dense.sum(axis=0)
        ysq += np.einsum("ij,ij->j", dense, dense)
        del dense
    xbar = np.asarray(x.mean(axis=0)).ravel()
    ybar = ysum / n
    gram = (x.T @ x).toarray() - n * np.outer(xbar, xbar)
    xty -= n * np.outer(xbar, ybar)
    ysq_c = ysq - n * ybar**2   # per voxel: |Y_c|^2

    # ridge on the smoothed features, all of them, at the least smoothing tried
    fit = RidgeGCV(transform(smoothings[0], np.arange(p)), gram, xty, ysq_c, alphas, n)
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
        this = fits.pop(w, None) or RidgeGCV(transform(w, selected), gram, xty, ysq_c, alphas,
                                             n, scale=scale)
        smoothing_gcv[i] = this.gcv.min()
        if i == 0 or smoothing_gcv[i] < best_gcv:
            best_gcv, fit, smoothing = smoothing_gcv[i], this, w
        del this
    xbar_s = (xbar @ transform(smoothing, selected)).astype(np.float32)
    coef = np.zeros((p, v), dtype=np.float32)
    intercept = ybar.astype(np.float32)
    for c in range(0, v, VOXEL_BLOCK):
        block = fit.coef(c, c + VOXEL_BLOCK)
        coef[selected, c:c + VOXEL_BLOCK] = block
        intercept[c:c + VOXEL_BLOCK] -= xbar_s @ block
    alpha, gcv = fit.alpha, fit.gcv
    del xty, fit
    return QueryModel(
        vocabulary=np.asarray(terms, dtype=str), idf=idf, df=df,
        components=np.ascontiguousarray(loadings), row_scale=row_scale,
        smoothing=float(smoothing), smoothings=np.asarray(smoothings, dtype=float),
        smoothing_gcv=smoothing_gcv, coef=coef, intercept=intercept, alpha=alpha,
        alphas=alphas, gcv=gcv, mask=mask, coarse=coarse, n_studies=int(n),
        min_df=int(min_df), fwhm=float(fwhm))


def model_options(settings, n_terms):
    """Keyword arguments of :func:`fit_query_model` from the ``text_model`` config."""
    rank = settings["n_components"]
    if rank != "auto":
        rank = int(min(rank, max(n_terms - 1, 1)))
    return {"n_components": rank, "smoothing": settings["smoothing"],
            "voxel_mm": settings["grid_mm"]}
