"""The texts of a dataset's studies, as the free-text model and its evaluation read them."""

import numpy as np
import pandas as pd

from .errors import CbmaError


def study_texts(studies_path, ids, weights, where="dataset"):
    """Each experiment's text (title, and abstract where there is one) and the vocabulary.

    Parameters
    ----------
    studies_path : str
        The dataset's ``studies.tsv`` (from ingest).
    ids : array-like of str
        Experiment ids, in the order wanted (e.g. the rows of the MA maps).
    weights : cbma.neurosynth.TermWeights
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


def model_options(settings, n_terms):
    """Keyword arguments of :func:`cbma.query.fit_query_model` from the ``text_model`` config."""
    rank = settings["n_components"]
    if rank != "auto":
        rank = int(min(rank, max(n_terms - 1, 1)))
    return {"n_components": rank, "smoothing": settings["smoothing"],
            "voxel_mm": settings["grid_mm"]}
