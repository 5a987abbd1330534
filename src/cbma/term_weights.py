"""Study x term weights (for example Neurosynth's tf-idf of abstract words), and their files.

A :class:`TermWeights` is a sparse experiments x terms matrix with the
experiment ids of its rows and the terms of its columns: what the readers of
:mod:`cbma.neurosynth` return, what :func:`cbma.terms.select` selects
experiments with, and what :func:`save_term_weights` writes at ingest.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import CbmaError, InputFileError
from .io import load_sparse, save_sparse

__all__ = ["TermWeights", "align_term_weights", "empty_term_weights", "load_term_weights",
           "save_term_weights"]


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
