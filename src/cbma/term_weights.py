"""Study x term weights (for example Neurosynth's tf-idf of abstract words), and their files.

A :class:`TermWeights` is a sparse experiments x terms matrix with the
experiment ids of its rows and the terms of its columns: what the readers of
:mod:`cbma.neurosynth` return, what :func:`cbma.terms.select` selects
experiments with, and what :func:`save_term_weights` writes at ingest.
"""

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import CbmaError, InputFileError
from .io import load_sparse, save_sparse

__all__ = ["TermWeights", "align_term_weights", "empty_term_weights", "load_term_weights",
           "save_term_weights", "term_weights_from_notes"]


@dataclass(frozen=True)
class TermWeights:
    """Study x term weights (for example Neurosynth's tf-idf of abstract words).

    Construction normalises the inputs: the matrix becomes a CSR matrix with
    sorted indices and no explicit zeros (float32 stays float32, anything
    else becomes float64), ids and terms become fixed-width unicode arrays.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of shape (n_experiments, n_terms)
        Weight of each term in each experiment; 0 where the term is absent.
    ids : ndarray of str
        Experiment ids (the ``id`` column of the coordinates table), row order.
    terms : ndarray of str
        The vocabulary, column order.

    Raises
    ------
    CbmaError
        If the shapes disagree or an id or term repeats.
    """

    matrix: sp.csr_matrix
    ids: np.ndarray
    terms: np.ndarray

    def __post_init__(self):
        ids = _str_array(self.ids)
        terms = _str_array(self.terms)
        matrix = self.matrix
        if not sp.issparse(matrix):
            matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape != (ids.size, terms.size):
            raise CbmaError(f"term weights: matrix of shape {matrix.shape} does not match "
                            f"{ids.size} ids and {terms.size} terms")
        dtype = matrix.dtype if matrix.dtype in (np.float32, np.float64) else np.float64
        csr = sp.csr_matrix(matrix, dtype=dtype)
        if csr is matrix or not csr.has_canonical_format or (csr.data == 0).any():
            csr = csr.copy()  # never reorder or prune the caller's matrix in place
            csr.sum_duplicates()
            csr.eliminate_zeros()
        for what, names in (("experiment id", ids), ("term", terms)):
            values, counts = np.unique(names, return_counts=True)
            if (counts > 1).any():
                raise CbmaError(f"term weights: {what} {str(values[counts > 1][0])!r} repeats")
        object.__setattr__(self, "matrix", csr)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "terms", terms)

    def for_select(self):
        """The ``(matrix, ids, terms)`` tuple that :func:`cbma.terms.select` takes."""
        return (self.matrix, self.ids, self.terms)


def _str_array(values):
    values = [str(v) for v in np.asarray(values, dtype=object).ravel()]
    return np.asarray(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def empty_term_weights(ids):
    """Term weights with no terms, for a dataset without any (Sleuth files).

    Parameters
    ----------
    ids : sequence of str
        The experiment ids, in dataset order.
    """
    ids = _str_array(ids)
    return TermWeights(sp.csr_matrix((ids.size, 0), dtype=np.float64), ids, np.zeros(0, "<U1"))


def align_term_weights(weights, ids):
    """The same term weights with rows in the order of ``ids``.

    Parameters
    ----------
    weights : TermWeights
        Weights of a dataset's experiments.
    ids : sequence of str
        Experiment ids, for example the rows of the dataset's MA-map matrix.
        An id the weights do not have gets an all-zero row (an experiment
        without terms), as a study missing from ``features.txt`` does.

    Returns
    -------
    TermWeights
        Rows for ``ids``, in that order; the same terms.
    """
    ids = _str_array(ids)
    rows = pd.Index(weights.ids).get_indexer(ids)
    found = rows >= 0
    picked = weights.matrix[np.where(found, rows, 0)]
    if not found.all():
        picked = sp.diags(found.astype(picked.dtype)) @ picked
    return TermWeights(sp.csr_matrix(picked), ids, weights.terms)


def save_term_weights(weights, path):
    """Write term weights to an ``.npz`` (no pickles; same content, same bytes).

    The archive holds the CSR arrays (``data``, ``indices``, ``indptr``,
    ``shape``, see :func:`cbma.io.save_sparse`) plus ``ids`` and ``terms`` as
    fixed-width unicode arrays.
    """
    save_sparse(path, weights.matrix, ids=weights.ids, terms=weights.terms)


def load_term_weights(path):
    """Read what :func:`save_term_weights` wrote.

    Raises
    ------
    InputFileError
        If the file is not such an archive.
    """
    try:
        matrix, extra = load_sparse(path)
    except KeyError as exc:
        raise InputFileError(path, None, f"not a term-weight archive (no {exc} array)") from None
    except ValueError as exc:
        raise InputFileError(path, None, f"not a term-weight archive ({exc})") from None
    if "ids" not in extra or "terms" not in extra:
        raise InputFileError(path, None, "not a term-weight archive (no ids or terms array)")
    try:
        return TermWeights(matrix, extra["ids"], extra["terms"])
    except CbmaError as exc:
        raise InputFileError(path, None, str(exc)) from None


def term_weights_from_notes(ids, notes, keys=None):
    """Term weights from annotation notes (NIMADS, NeuroStore releases, table columns).

    An annotation gives each experiment notes, ``key: value``. Which become
    terms:

    - a number is the weight of a term named by its key, with the key's
      feature-group prefix dropped as NiMARE JSON labels have it
      (``Neurosynth_TFIDF__pain`` is the term ``pain``, unless two keys then
      share a name); ``true`` weighs 1, ``false`` 0; null and NaN are absent;
    - a text value is a term of its own, with weight 1: the note
      ``comparison_task: n-back`` gives the term ``n-back``. A JSON list
      written as text (``'["Attention", "Inhibition"]'``, as NeuroStore's
      releases store lists) or a list gives one term per item.

    Without ``keys``, every key with numbers or true/false values is used and
    text values are left out (an annotation may hold long free text); with
    ``keys``, only those keys, their text values included. An experiment
    given one term twice (two keys, or two annotations) takes the largest
    weight.

    Parameters
    ----------
    ids : sequence of str
        The experiments, row order.
    notes : iterable of (int, str, object)
        ``(row, key, value)`` triples; ``row`` indexes ``ids``.
    keys : sequence of str, optional
        The keys to use (see above).

    Returns
    -------
    TermWeights
        Terms in the order first met (every used key with numbers is a term,
        also when all its values are 0 or false). A key of ``keys`` that no
        note has gives no term (the readers check the keys against their
        files).
    """
    wanted = None if keys is None else {str(k): None for k in keys}
    numeric, texts = {}, {}  # key -> {row: weight}; (row, term) -> 1
    for row, key, value in notes:
        key = str(key)
        if wanted is not None and key not in wanted:
            continue
        number = _note_number(value)
        if number is not None:
            if math.isfinite(number):
                column = numeric.setdefault(key, {})
                column[row] = max(column.get(row, number), number)
            continue
        if wanted is None:
            continue
        for item in _note_items(value):
            number = _note_number(item)
            term = str(item).strip() if number is None else None
            if number is not None and math.isfinite(number):
                column = numeric.setdefault(key, {})
                column[row] = max(column.get(row, number), number)
            elif term:
                texts[(row, term)] = 1.0
    names = list(numeric)
    stripped = [n.rsplit("__", 1)[-1] for n in names]
    if len(set(stripped)) == len(stripped):
        names_as_terms = dict(zip(names, stripped, strict=True))
    else:
        names_as_terms = {n: n for n in names}
    cells = {}
    column_of = {}
    for key, column in numeric.items():
        term = names_as_terms[key]
        column_of.setdefault(term, len(column_of))
        for row, weight in column.items():
            cells[(row, term)] = max(cells.get((row, term), weight), weight)
    for (row, term), weight in texts.items():
        column_of.setdefault(term, len(column_of))
        cells[(row, term)] = max(cells.get((row, term), weight), weight)
    ids = _str_array(ids)
    rows = np.fromiter((r for r, _ in cells), dtype=np.int64, count=len(cells))
    cols = np.fromiter((column_of[t] for _, t in cells), dtype=np.int64, count=len(cells))
    data = np.fromiter(cells.values(), dtype=np.float64, count=len(cells))
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(ids.size, len(column_of)))
    return TermWeights(matrix, ids, np.asarray(list(column_of), dtype=object))


def _note_number(value):
    """A note's value as a number (True is 1), or None for text, lists and nulls."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _note_items(value):
    """The items of a text or list note: a JSON list written as text is a list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                return [text]
            if isinstance(parsed, list):
                return [v for v in parsed if v is not None and not isinstance(v, (list, dict))]
        return [text]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [v for v in value if v is not None and not isinstance(v, (list, dict))]
    return []
