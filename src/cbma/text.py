"""Text: tokens, the vocabulary matcher, term counts and TF-IDF; the texts of a dataset's studies.

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
    ``idf = 0`` for terms absent from the training texts; rows L2-normalised
    (:func:`tfidf`; the text model computes ``idf``).
"""

import difflib
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import CbmaError

__all__ = ["TermMatcher", "content_words", "count_matrix", "english_stop_words",
           "extract_terms", "normalise_term", "study_texts", "term_matcher", "tfidf", "tokenize"]

_TOKEN = re.compile(r"[^\W_]+")


def normalise_term(term):
    """A vocabulary term in lower case with single spaces."""
    return " ".join(str(term).lower().split())


def tokenize(text):
    """The lower-cased tokens (runs of letters and digits) of a text."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=1)
def english_stop_words():
    """scikit-learn's ``ENGLISH_STOP_WORDS``, read without importing scikit-learn.

    Importing scikit-learn takes most of a second, which every rule job that
    only matches terms would pay; the list is read from the one module of
    scikit-learn that holds it (a plain frozenset), or imported the usual way
    where that module is not found.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package, does not import it
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "feature_extraction" / "_stop_words.py"
        if path.is_file():
            module_spec = importlib.util.spec_from_file_location("_cbma_stop_words", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            words = getattr(module, "ENGLISH_STOP_WORDS", None)
            if isinstance(words, frozenset) and words:
                return words
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


def content_words(tokens):
    """The tokens that are not English stop words (:func:`english_stop_words`)."""
    stop = english_stop_words()
    return [t for t in tokens if t not in stop]


class TermMatcher:
    """Greedy longest-first matching of vocabulary terms in token sequences."""

    def __init__(self, vocabulary):
        self.terms = [normalise_term(t) for t in vocabulary]
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
            tokens = tokenize(term)
            key = tuple(content_words(tokens))
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
        return self.match(content_words(tokenize(text)))[0]

    def nearest(self, words, n=5):
        """Vocabulary terms and words closest to some unknown words (difflib)."""
        near = []
        for word in words:
            near += difflib.get_close_matches(word, self.words, n=3)
        near += difflib.get_close_matches(" ".join(words), list(self.terms), n=3)
        return list(dict.fromkeys(near))[:n]


@lru_cache(maxsize=8)
def term_matcher(vocabulary):
    """The :class:`TermMatcher` of a vocabulary (a tuple of str), cached."""
    return TermMatcher(vocabulary)


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
    matcher = term_matcher(tuple(vocabulary))
    out = {}
    for j in matcher.find(text):
        term = matcher.terms[j]
        out[term] = out.get(term, 0) + 1
    return out


def count_matrix(texts, matcher):
    """Term counts of texts: scipy.sparse (n_texts x n_terms) matrix, a row per text."""
    rows, cols = [], []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise CbmaError(f"text of study {i} must be a string, got {type(text).__name__}")
        found = matcher.find(text)
        rows += [i] * len(found)
        cols += found
    data = np.ones(len(rows))
    return sp.csr_matrix((data, (rows, cols)), shape=(len(texts), len(matcher.terms)))


def tfidf(counts, idf):
    """TF-IDF of term counts, rows L2-normalised (all-zero rows stay 0)."""
    x = sp.csr_matrix(counts, dtype=float) @ sp.diags(idf)
    x = sp.csr_matrix(x)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ x)


def study_texts(studies_path, ids, weights, where="dataset"):
    """Each experiment's text (title, and abstract where there is one) and the vocabulary.

    Parameters
    ----------
    studies_path : str
        The dataset's ``studies.tsv`` (from ingest).
    ids : array-like of str
        Experiment ids, in the order wanted (e.g. the rows of the MA maps).
    weights : cbma.term_weights.TermWeights
        The dataset's term weights: their terms are the vocabulary.
    where : str
        Named in error messages.

    Returns
    -------
    texts : list of str
    vocabulary : ndarray of str

    Raises
    ------
    CbmaError
        If the dataset has no vocabulary or no study has a title.
    """
    if len(weights.terms) == 0:
        raise CbmaError(f"{where} has no term vocabulary: the text model needs a neurosynth, "
                        "neurosynth_v7 or labelled nimare_json dataset")
    studies = pd.read_csv(studies_path, sep="\t", dtype=str, keep_default_na=False)
    by_id = studies.set_index("id")
    parts = [by_id[c] for c in ("title", "abstract") if c in by_id]
    if not parts or not any(p.str.strip().any() for p in parts):
        raise CbmaError(f"{where} has no study titles or abstracts to learn from")
    text = parts[0] if len(parts) == 1 else (parts[0] + " " + parts[1]).str.strip()
    ids = np.asarray(ids, dtype=str)
    return text.reindex(ids).fillna("").tolist(), np.asarray(weights.terms, dtype=str)
