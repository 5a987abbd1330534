"""A seeded, Neurosynth-sized synthetic database with planted term-region links.

:func:`make_database` writes a database in the classic Neurosynth format
(``database.txt`` + ``features.txt``, read by :func:`cbma.neurosynth.read_neurosynth`)
whose ground truth is known: a few *topics*, each a region of the brain and a
small set of synonym terms. A study belongs to each topic independently; a
topic study carries (most of) the topic's synonyms in its term weights and
reports a share of its foci around the topic's centre and, more loosely, a
share of the others around the regions of the topic's network (as studies of
pain report the insula first, and the cingulate, thalamus and secondary
somatosensory cortex too). Everything else is noise: the other foci are
uniform over the brain mask, and the background
vocabulary (pronounceable pseudo-words with Zipf-like document frequencies)
carries no spatial signal. ``ground_truth.json`` lists the topics, their
centres, networks and studies, for benchmarks and tests of term-based
meta-analysis, decoding and free-text queries.

Texts
    Each study has an English-like title built from its strongest terms and
    an abstract (``abstracts.tsv``: ``id``, ``title``, ``abstract``; about
    250 words in 25-35 sentences) that mentions every vocabulary term the
    study has, as real abstracts do: its topics' synonyms (each one to
    several times), now and then a rarer *variant* of a topic (``"painful"``,
    ``"hyperalgesia"``), many common :data:`GENERIC_TERMS` of the field
    (``task``, ``participants``, ``activation``...: in 25-85 % of the
    studies whatever their topic) and its background pseudo-words.
    ``features.txt`` is exactly the tf-idf of the vocabulary terms of the
    abstracts, so the terms a text model finds in a study's abstract are
    those with a weight. The abstracts are a file of their own because
    ``database.txt`` repeats its study columns on every focus row (500,000
    rows at full size); :func:`cbma.neurosynth.read_neurosynth` reads it
    from the database's folder.

The same arguments and seed give byte-identical files. From the command line::

    python -m cbma.synthetic OUT_DIR [--studies N] [--foci N] [--terms N] [--seed S]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import CbmaError
from .space import BrainMask, load_mask, mm_to_vox, vox_to_mm
from .text import english_stop_words

__all__ = ["DEFAULT_MASK", "DEFAULT_TOPICS", "make_database", "main"]

#: The 2 mm MNI152 brain mask bundled with the pipeline.
DEFAULT_MASK = (Path(__file__).resolve().parents[2] / "resources" / "templates"
                / "MNI152_2x2x2_brainmask.nii.gz")

#: Planted topics: synonym terms, a region centre (MNI mm) inside the default mask,
#: every two centres at least 40 mm apart, and a network of five weaker regions, each at
#: least 24 mm from every centre (networks may share regions, as real ones do).
DEFAULT_TOPICS = [
    {"name": "pain", "terms": ["pain", "nociception", "noxious"],
     "variants": ["painful", "hyperalgesia"],
     "centre": [40, -16, 12],   # right insula
     # left insula, dorsal anterior cingulate, right thalamus, right and left secondary
     # somatosensory cortex
     "network": [[-38, -18, 12], [2, 8, 40], [12, -20, 4], [60, -30, 26], [-56, -24, 20]]},
    {"name": "working memory", "terms": ["working memory", "n-back", "maintenance"],
     "variants": ["memory load", "sternberg"],
     "centre": [-36, 24, 36],   # left dorsolateral prefrontal cortex
     # right dorsolateral prefrontal, left and right intraparietal sulcus,
     # pre-SMA, left cerebellum
     "network": [[40, 30, 32], [-34, -56, 46], [36, -56, 46], [2, 14, 52], [-30, -62, -32]]},
    {"name": "emotion", "terms": ["emotion", "affective", "amygdala"],
     "variants": ["fearful", "valence"],
     "centre": [-24, -4, -20],  # left amygdala
     # right amygdala, ventromedial and dorsomedial prefrontal, left hippocampus,
     # right anterior insula
     "network": [[24, -4, -20], [0, 46, -10], [0, 52, 24], [-30, -28, -8], [36, 20, -4]]},
    {"name": "reward", "terms": ["reward", "incentive"],
     "variants": ["monetary", "reinforcement"],
     "centre": [12, 14, -8],    # right ventral striatum
     # left ventral striatum, right and left orbitofrontal, ventral tegmental area,
     # medial prefrontal
     "network": [[-12, 14, -8], [26, 38, -14], [0, -18, -14], [2, 50, 2], [-22, 42, -16]]},
    {"name": "motor", "terms": ["motor", "finger tapping"],
     "variants": ["keypress", "sensorimotor"],
     "centre": [-38, -22, 56],  # left primary motor cortex
     # right cerebellum, SMA, left putamen, left thalamus, right motor cortex
     "network": [[16, -56, -30], [-4, -6, 58], [-26, -4, 6], [-12, -20, 6], [38, -22, 56]]},
    {"name": "language", "terms": ["language", "semantic"],
     "variants": ["sentence comprehension", "lexical"],
     "centre": [-42, 28, -4],   # left inferior frontal gyrus
     # left posterior superior and middle temporal, left temporal pole, right
     # cerebellum, left angular gyrus
     "network": [[-54, -40, 4], [-56, -20, -8], [-46, 10, -28], [28, -72, -30], [-44, -64, 30]]},
    {"name": "visual", "terms": ["visual", "occipital"],
     "variants": ["checkerboard", "retinotopic"],
     "centre": [10, -86, 4],    # primary visual cortex
     # left V1, left and right V5/MT, right and left dorsal extrastriate
     "network": [[-14, -92, 8], [-44, -72, 2], [46, -70, 2], [22, -86, 28], [-22, -84, 22]]},
    {"name": "face", "terms": ["face recognition", "faces", "fusiform"],
     "variants": ["prosopagnosia", "facial identity"],
     "centre": [40, -52, -18],  # right fusiform gyrus
     # left fusiform, right and left occipital face area, right posterior STS,
     # right inferior frontal
     "network": [[-40, -52, -18], [40, -78, -10], [50, -48, 8], [-40, -80, -10], [44, 22, -8]]},
]

#: Common words of neuroimaging abstracts, most frequent first: vocabulary terms that
#: occur in most studies whatever their topic (document frequency from 85 % down to
#: 25 %) and carry no spatial signal.
GENERIC_TERMS = [
    "participants", "task", "activation", "fmri", "results", "healthy", "regions", "cortex",
    "network", "response", "increased", "data", "analysis", "cognitive", "processing",
    "control", "condition", "subjects", "performance", "experiment", "findings", "differences",
    "imaging", "behavioral", "individual", "associated", "changes", "trials", "evidence",
    "areas", "connectivity", "paradigm", "contrast", "sample", "volunteers", "signal", "bold",
    "hemodynamic", "magnetic", "resonance",
]

DATABASE_COLUMNS = ["id", "doi", "x", "y", "z", "space", "peak_id", "table_id", "table_num",
                    "title", "authors", "year", "journal"]

_FIRST_ID = 10_000_000
_SYNONYM_RATE = 0.7
_SYNONYM_MENTIONS = 1.0        # extra mentions of a carried synonym (Poisson mean)
_VARIANT_RATE = 0.15           # chance that a topic study mentions each variant
_GENERIC_RATES = (0.85, 0.25)  # document frequency of the first and last generic term
_GENERIC_MENTIONS = 0.5        # extra mentions of a generic term (Poisson mean)
_BACKGROUND_MENTIONS = 0.7     # extra mentions of a background term (Poisson mean)
_BACKGROUND_TERMS = (30, 60)   # background terms per study (inclusive range)
_MIN_DOCUMENT_FREQUENCY = 5
_MIN_BACKGROUND_ROOM = 20      # variants only when this many terms are left for the rest
_MIN_WEIGHT = 0.002            # smallest written weight (Neurosynth's threshold is 0.001)
_ROWS_PER_BLOCK = 500          # features.txt rows formatted at once

_ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "cl", "dr", "gr", "pl", "st", "tr", "sh", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
_CODAS = ["", "", "", "", "n", "r", "s", "l", "m", "nd", "st"]
_TITLES = [
    "Neural correlates of {a} and {b} in {group}",
    "The role of {a} in {b}: an fMRI study",
    "{A} and {b} in the human brain",
    "Dissociable neural systems for {a} and {b}",
    "Brain activity during {a} and {b} in {group}",
    "Effects of {a} on {b}-related activity",
    "Functional anatomy of {a}, {b} and {c}",
    "{A} modulates {b} in {group}",
]
_GROUPS = ["healthy adults", "young adults", "older adults", "children", "adolescents",
           "patients with depression", "patients with schizophrenia"]
_JOURNALS = ["NeuroImage", "Human brain mapping", "Cerebral cortex", "Brain research",
             "The Journal of neuroscience", "Neuropsychologia", "Journal of cognitive "
             "neuroscience", "Psychiatry research"]
# Sentences of the abstracts: {0}, {1}... are the slots of vocabulary terms; the other
# words are stop words or are kept out of the vocabulary (``_RESERVED``).
_OPENERS = [
    "We investigated {0} and {1}.",
    "This study examined {0}, {1} and {2}.",
    "We asked how {0} relates to {1}.",
    "{0} and {1} were examined with {2}.",
]
_SENTENCES = {
    1: ["We also observed {0}.", "{0} was measured."],
    2: ["{0} was linked to {1}.", "Here we report {0} alongside {1}.",
        "{0} covaried with {1}.", "These observations point to {0} and {1}."],
    3: ["{0}, {1} and {2} were measured together.", "{0} predicted {1} and {2}.",
        "Both {0} and {1} modulated {2}.", "We examined {0}, {1} and {2}."],
    4: ["{0} and {1} were linked to {2} and {3}.", "{0}, {1}, {2} and {3} were measured.",
        "We report {0} with {1}, {2} and {3}."],
}


def _words(templates):
    text = " ".join(templates).lower()
    return set("".join(c if c.isalpha() else " " for c in text).split())


# words of the abstracts' sentences are never vocabulary terms, so that the terms found in
# an abstract are exactly those planted in it; titles may use generic terms ("healthy")
_SENTENCE_WORDS = _words([*_OPENERS, *[t for v in _SENTENCES.values() for t in v]])
_RESERVED = ({"pmid", "id", "cognition", "behaviour", "perception"} | _SENTENCE_WORDS
             | _words([*_TITLES, *_GROUPS, *_JOURNALS]) | set(GENERIC_TERMS))


# -------------------------------------------------------------------------- inputs


def _mask(mask):
    if mask is None:
        return load_mask(DEFAULT_MASK), DEFAULT_MASK.name
    if isinstance(mask, BrainMask):
        return mask, "BrainMask"
    return load_mask(mask), Path(mask).name


def _topics(topics, mask):
    """Validated topics: names, synonym lists, variants and centres inside the mask."""
    topics = DEFAULT_TOPICS if topics is None else topics
    out, seen = [], {}
    for k, topic in enumerate(topics):
        try:
            name = str(topic["name"])
            terms = [" ".join(str(t).lower().split()) for t in topic["terms"]]
            variants = [" ".join(str(t).lower().split()) for t in topic.get("variants", [])]
            centre = np.asarray(topic["centre"], dtype=float)
            network = np.asarray(topic.get("network", []), dtype=float).reshape(-1, 3)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise CbmaError(f"topic {k + 1}: expected name, terms (a list), optional variants "
                            f"(a list), centre ([x, y, z] in mm) and optional network (a list "
                            f"of [x, y, z]), got {topic!r}") from None
        if not terms or centre.shape != (3,) or not np.isfinite(centre).all():
            raise CbmaError(f"topic {name!r}: needs at least one term and a centre [x, y, z]")
        for where in [centre, *network]:
            if not np.isfinite(where).all() or not mask.contains(
                    mm_to_vox(where, mask.affine))[0]:
                raise CbmaError(f"topic {name!r}: region {where.tolist()} is outside the mask")
        for term in terms + variants:
            if not term:
                raise CbmaError(f"topic {name!r}: a term is empty")
            if term in seen:
                raise CbmaError(f"topic {name!r}: term {term!r} is also a term of topic "
                                f"{seen[term]!r}")
            seen[term] = name
        out.append({"name": name, "terms": terms, "variants": variants, "centre": centre,
                    "network": network})
    return out


def _tokens(term):
    return set("".join(c if c.isalnum() else " " for c in term.lower()).split())


def _pseudo_words(rng, n, reserved):
    """``n`` unique pronounceable letter-only words, none of them in ``reserved``."""
    words, seen = [], set(reserved)
    while len(words) < n:
        batch = max(64, 2 * (n - len(words)))
        syllables = rng.integers(2, 4, size=batch)
        parts = [rng.integers(len(options), size=(batch, 3))
                 for options in (_ONSETS, _VOWELS, _CODAS)]
        for i in range(batch):
            word = "".join(_ONSETS[parts[0][i, s]] + _VOWELS[parts[1][i, s]]
                           for s in range(syllables[i])) + _CODAS[parts[2][i, 0]]
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == n:
                    break
    return words


# ---------------------------------------------------------------------- generation


def _foci_counts(rng, n_studies, n_foci):
    """Foci per study: overdispersed around the mean, at least 1, summing to ``n_foci``."""
    mean = n_foci / n_studies
    if mean > 1:
        size = 2.0
        counts = 1 + rng.negative_binomial(size, size / (size + mean - 1), n_studies)
    else:
        counts = np.ones(n_studies, dtype=np.int64)
    diff = n_foci - int(counts.sum())
    if diff > 0:
        counts += rng.multinomial(diff, np.full(n_studies, 1 / n_studies))
    elif diff < 0:
        extra = counts - 1
        remove = rng.choice(int(extra.sum()), size=-diff, replace=False)
        owner = np.searchsorted(np.cumsum(extra), remove, side="right")
        counts -= np.bincount(owner, minlength=n_studies)
    return counts.astype(np.int64)


def _inside(mask, xyz):
    return mask.contains(mm_to_vox(xyz, mask.affine))


def _draw_foci(rng, mask, voxels_mm, centres, topic, spread_mm):
    """Integer-mm foci: around ``centres[topic]`` where ``topic >= 0``, else uniform."""
    n = topic.size
    xyz = np.empty((n, 3))
    half = mask.voxel_size / 2
    todo = np.arange(n)
    for _ in range(1000):
        planted = topic[todo] >= 0
        draw = np.empty((todo.size, 3))
        draw[planted] = centres[topic[todo][planted]] + rng.normal(
            0.0, spread_mm, size=(int(planted.sum()), 3))
        n_bg = int((~planted).sum())
        draw[~planted] = (voxels_mm[rng.integers(len(voxels_mm), size=n_bg)]
                          + rng.uniform(-half, half, size=(n_bg, 3)))
        draw = np.round(draw) + 0.0  # integer mm, as real databases report; no -0.0
        xyz[todo] = draw
        todo = todo[~_inside(mask, draw)]
        if todo.size == 0:
            return xyz
    raise CbmaError("could not place the foci inside the mask (is spread_mm far larger than "
                    "the brain?)")


def _one_of(rng, allowed):
    """Per row of a boolean matrix, a column drawn uniformly among its True ones (0 if none)."""
    pick = np.floor(rng.random(len(allowed)) * np.maximum(allowed.sum(axis=1), 1))
    return np.argmax(np.cumsum(allowed, axis=1) > pick[:, None], axis=1)


def _network_foci(rng, mask, voxels_mm, topics, member, owner, topic, xyz, share, spread_mm):
    """Move a ``share`` of the member studies' unplanted foci to their topics' networks.

    ``xyz`` is changed in place. A random stream of its own (``rng``) leaves
    every other draw of the database as it is without networks. Returns the
    topic whose network each focus was drawn around (-1 for the others).
    """
    sizes = np.array([len(t["network"]) for t in topics])
    nodes = np.concatenate([t["network"] for t in topics] + [np.zeros((0, 3))])
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    eligible = member[owner] & (sizes > 0)[None, :]
    moved = (topic < 0) & eligible.any(axis=1) & (rng.random(owner.size) < share)
    idx = np.flatnonzero(moved)
    which = _one_of(rng, eligible[idx])
    node = first[which] + np.floor(rng.random(idx.size) * sizes[which]).astype(np.int64)
    xyz[idx] = _draw_foci(rng, mask, voxels_mm, nodes, node, spread_mm)
    network = np.full(owner.size, -1, dtype=np.int64)
    network[idx] = which
    return network


def _background(rng, n_studies, n_background):
    """Which background terms each study has: ``(rows, cols)`` of a sparse pattern.

    Terms get Zipf-like popularity (a few common, most rare); each study draws
    30-60 of them without replacement (Gumbel top-k), and every term is given
    to at least 5 studies (preferably ones with fewer than 60 terms).
    """
    if n_background == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rank = rng.permutation(n_background) + 1
    log_p = -np.log(rank + 2.0)
    low, high = _BACKGROUND_TERMS
    k = np.minimum(rng.integers(low, high + 1, size=n_studies), n_background)
    top = int(k.max())
    rows, cols = [], []
    for start in range(0, n_studies, 1000):
        stop = min(start + 1000, n_studies)
        keys = log_p + rng.gumbel(size=(stop - start, n_background)).astype(np.float32)
        best = np.argpartition(-keys, top - 1, axis=1)[:, :top] if top < n_background else \
            np.broadcast_to(np.arange(n_background), (stop - start, n_background))
        order = np.argsort(-np.take_along_axis(keys, best, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(best, order, axis=1)
        keep = np.arange(top) < k[start:stop, None]
        rows.append(np.nonzero(keep)[0] + start)
        cols.append(best[keep])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    has = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)),
                        shape=(n_studies, n_background))
    df = np.asarray(has.sum(axis=0)).ravel()
    per_study = np.asarray(has.sum(axis=1)).ravel()
    need = min(_MIN_DOCUMENT_FREQUENCY, n_studies)
    extra_rows, extra_cols = [], []
    for term in np.flatnonzero(df < need):
        without = np.setdiff1d(np.arange(n_studies), has[:, term].nonzero()[0])
        room = without[per_study[without] < high]  # keep studies within 30-60 if possible
        pool = room if room.size >= need - df[term] else without
        chosen = np.sort(rng.choice(pool, size=int(need - df[term]), replace=False))
        per_study[chosen] += 1
        extra_rows.append(chosen)
        extra_cols.append(np.full(chosen.size, term))
    if extra_rows:
        rows = np.concatenate([rows, *extra_rows])
        cols = np.concatenate([cols, *extra_cols])
    return rows, cols


def _term_counts(rng, n_studies, topics, member, with_variants, n_generic, n_background):
    """Mentions of each vocabulary term in each study's abstract (CSR, int64).

    Columns: the topics' synonyms, then their variants (when ``with_variants``),
    the ``n_generic`` first :data:`GENERIC_TERMS`, then the background terms.
    """
    rows, cols, vals = [], [], []
    column = 0

    def add(studies, has, mentions):
        r, c = np.nonzero(has)
        rows.append(studies[r])
        cols.append(column + c)
        vals.append(mentions[r, c])

    for t, topic in enumerate(topics):
        studies = np.flatnonzero(member[:, t])
        n_syn = len(topic["terms"])
        has = rng.random((studies.size, n_syn)) < _SYNONYM_RATE
        none = ~has.any(axis=1)
        has[np.flatnonzero(none), rng.integers(n_syn, size=int(none.sum()))] = True
        add(studies, has, 1 + rng.poisson(_SYNONYM_MENTIONS, size=has.shape))
        column += n_syn
    if with_variants:
        for t, topic in enumerate(topics):
            studies = np.flatnonzero(member[:, t])
            has = rng.random((studies.size, len(topic["variants"]))) < _VARIANT_RATE
            add(studies, has, np.ones(has.shape, np.int64))
            column += len(topic["variants"])
    if n_generic:
        rate = np.linspace(*_GENERIC_RATES, n_generic) if n_generic > 1 else \
            np.array(_GENERIC_RATES[:1])
        has = rng.random((n_studies, n_generic)) < rate
        add(np.arange(n_studies), has, 1 + rng.poisson(_GENERIC_MENTIONS, size=has.shape))
        column += n_generic
    b_rows, b_cols = _background(rng, n_studies, n_background)
    rows.append(b_rows)
    cols.append(column + b_cols)
    vals.append(1 + rng.poisson(_BACKGROUND_MENTIONS, size=b_rows.size))
    counts = sp.csr_matrix((np.concatenate(vals).astype(np.int64),
                            (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_studies, column + n_background))
    counts.sum_duplicates()
    counts.sort_indices()
    return counts


def _tfidf(counts):
    """Neurosynth-like weights of term counts: tf-idf, L2-normalised per study.

    ``mentions x (ln((1 + n) / (1 + df)) + 1)`` (scikit-learn's smoothed idf),
    each study's row scaled to unit length, at least 0.002, 5 significant digits.
    """
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1 + n) / (1 + df)) + 1
    matrix = sp.csr_matrix(counts, dtype=float)
    matrix.data *= idf[matrix.indices]
    norm = np.sqrt(np.add.reduceat(matrix.data ** 2, matrix.indptr[:-1])
                   if matrix.nnz else np.zeros(n))
    norm[np.diff(matrix.indptr) == 0] = 1.0   # reduceat gives junk for empty rows
    matrix.data /= np.repeat(norm, np.diff(matrix.indptr))
    matrix.data = np.array([float(f"{v:.5g}") for v in
                            np.maximum(matrix.data, _MIN_WEIGHT).tolist()])  # as written
    return matrix


def _abstracts(rng, counts, names, n_topic_terms):
    """An abstract per study: every mention of its terms, a few per sentence.

    The mentions are shuffled, except that the first mention of each topic
    synonym comes first (the opening sentence says what the study is about);
    they fill the slots of :data:`_OPENERS` and :data:`_SENTENCES` in turn.
    """
    out = []
    by_size = [_SENTENCES[k] for k in sorted(_SENTENCES)]
    for i in range(counts.shape[0]):
        lo, hi = counts.indptr[i], counts.indptr[i + 1]
        words = np.repeat(counts.indices[lo:hi], counts.data[lo:hi])
        if words.size == 0:
            out.append("")
            continue
        words = words[rng.permutation(words.size)]
        _, first = np.unique(words, return_index=True)
        lead = np.zeros(words.size, bool)
        lead[first] = words[first] < n_topic_terms
        words = [names[w] for w in words[np.argsort(~lead, kind="stable")].tolist()]
        sizes = rng.integers(2, 5, size=len(words)).tolist()
        picks = rng.integers(1 << 30, size=len(words) + 1).tolist()
        opener = _OPENERS[picks[-1] % len(_OPENERS)]
        sentences, start, k = [], 0, 0
        while start < len(words):
            if k == 0 and opener.count("{") <= len(words):
                template = opener
            else:
                size = min(sizes[k], len(words) - start)
                options = by_size[size - 1]
                template = options[picks[k] % len(options)]
            n_slots = template.count("{")
            sentence = template.format(*words[start:start + n_slots])
            sentences.append(sentence[0].upper() + sentence[1:])
            start += n_slots
            k += 1
        out.append(" ".join(sentences))
    return out


def _titles(rng, matrix, names, n_topic_terms):
    """An English-like title per study from its strongest terms, topic terms first."""
    titles = []
    template = rng.integers(len(_TITLES), size=matrix.shape[0])
    group = rng.integers(len(_GROUPS), size=matrix.shape[0])
    for i in range(matrix.shape[0]):
        start, stop = matrix.indptr[i], matrix.indptr[i + 1]
        cols, vals = matrix.indices[start:stop], matrix.data[start:stop]
        is_topic = cols < n_topic_terms
        order = np.lexsort((cols, -vals, ~is_topic))
        words = [names[c] for c in cols[order[:3]]] + ["cognition", "behaviour", "perception"]
        a, b, c = words[0], words[1], words[2]
        titles.append(_TITLES[template[i]].format(a=a, A=a[0].upper() + a[1:], b=b, c=c,
                                                  group=_GROUPS[group[i]]))
    return titles


def _authors(rng, n_studies, surnames):
    n_authors = rng.integers(1, 7, size=n_studies)
    picks = rng.integers(len(surnames), size=(n_studies, 6))
    initials = rng.integers(26, size=(n_studies, 6, 2))
    letters = np.array(list("ABCDEFGHIJKLMNOPRSTVWAEJMR"))
    out = []
    for i in range(n_studies):
        out.append(", ".join(
            f"{surnames[picks[i, a]]} {letters[initials[i, a, 0]]}{letters[initials[i, a, 1]]}"
            for a in range(n_authors[i])))
    return out


# ------------------------------------------------------------------------ writing


def _write_database(path, study_ids, counts, xyz, titles, authors, years, journals, rng):
    owner = np.repeat(np.arange(study_ids.size), counts)
    # each study's foci come in 1-3 tables of consecutive foci
    n_tables = np.minimum(rng.integers(1, 4, size=study_ids.size), counts)
    first = np.cumsum(counts) - counts
    position = np.arange(owner.size) - first[owner]
    table_num = 1 + position * n_tables[owner] // counts[owner]
    table_base = np.cumsum(n_tables) - n_tables + 100_000
    table_id = table_base[owner] + table_num - 1
    peak_id = np.arange(owner.size) + 1_000_000
    table_num, table_id, peak_id = table_num.tolist(), table_id.tolist(), peak_id.tolist()
    ids = study_ids.astype(str).tolist()
    head = [f"{s}\t10.5555/synth.{s}\t" for s in ids]
    tail = [f"\t{t}\t{a}\t{y}\t{j}\n" for t, a, y, j in zip(titles, authors, years, journals,
                                                            strict=True)]
    x, y, z = (xyz.astype(np.int64)[:, k].tolist() for k in range(3))
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(DATABASE_COLUMNS) + "\n")
        lines = []
        for f, s in enumerate(owner.tolist()):
            lines.append(f"{head[s]}{x[f]}\t{y[f]}\t{z[f]}\tMNI\t{peak_id[f]}\t{table_id[f]}\t"
                         f"{table_num[f]}{tail[s]}")
            if len(lines) == 50_000:
                fh.write("".join(lines))
                lines = []
        fh.write("".join(lines))


def _write_features(path, study_ids, matrix, names):
    order = np.argsort(names, kind="stable")     # columns in alphabetical order, as Neurosynth
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    csr = matrix.tocsr()
    csr.indices = position[csr.indices].astype(csr.indices.dtype)
    csr.sort_indices()
    n_terms = len(names)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(["pmid", *[names[k] for k in order]]) + "\n")
        for start in range(0, csr.shape[0], _ROWS_PER_BLOCK):
            lines = []
            for i in range(start, min(start + _ROWS_PER_BLOCK, csr.shape[0])):
                cells = ["0"] * n_terms
                lo, hi = csr.indptr[i], csr.indptr[i + 1]
                for j, v in zip(csr.indices[lo:hi].tolist(), csr.data[lo:hi].tolist(),
                                strict=True):
                    cells[j] = f"{v:.5g}"
                lines.append(f"{study_ids[i]}\t" + "\t".join(cells) + "\n")
            fh.write("".join(lines))


def _write_abstracts(path, study_ids, titles, abstracts):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("id\ttitle\tabstract\n")
        fh.write("".join(f"{s}\t{t}\t{a}\n" for s, t, a in zip(study_ids.tolist(), titles,
                                                              abstracts, strict=True)))


# --------------------------------------------------------------------------- API


def make_database(out_dir, n_studies=14000, n_foci=500_000, n_terms=3000, topics=None, seed=0,
                  mask=None, p_topic=0.08, topic_foci_share=0.4, spread_mm=6.0,
                  network_share=0.6, network_spread_mm=10.0):
    """Write a synthetic Neurosynth-format database with planted term-region links.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write ``database.txt``, ``features.txt``, ``abstracts.tsv``
        and ``ground_truth.json`` into (created if needed).
    n_studies : int
        Studies (experiments); ids are PubMed-like integers from 10000000 up,
        and each study is experiment ``"{id}-1"`` once read.
    n_foci : int
        Total foci, spread over the studies with an overdispersed count (at
        least 1 per study; the mean is ``n_foci / n_studies``).
    n_terms : int
        Vocabulary size: the topics' terms plus pseudo-word background terms.
    topics : list of dict, optional
        Planted topics, each ``{"name": str, "terms": [synonyms...], "centre":
        [x, y, z]}`` with the centre in MNI mm inside the mask, and optionally
        ``"variants": [rarer terms...]`` and ``"network": [[x, y, z], ...]``
        (further regions of the topic, in the mask); default
        :data:`DEFAULT_TOPICS` (eight topics, centres at least 40 mm apart, two
        variants and a network of five regions each).
    seed : int
        Seed of everything; the same arguments give byte-identical files.
    mask : str, Path or cbma.space.BrainMask, optional
        Where foci may lie; default the bundled 2 mm MNI152 brain mask.
    p_topic : float
        Probability that a study belongs to a topic (each topic independently).
    topic_foci_share : float
        Expected share of a topic study's foci drawn around its topics' centres
        (split evenly between its topics).
    spread_mm : float
        Standard deviation (mm, each axis) of the planted foci around a centre.
    network_share : float
        Expected share of a topic study's other foci drawn around the regions
        of its topics' networks (a topic, then one of its regions, uniformly);
        the rest are uniform in the mask.
    network_spread_mm : float
        Standard deviation (mm, each axis) of the foci around a network region.

    Returns
    -------
    dict
        The ground truth, as written to ``ground_truth.json``: the parameters,
        per topic its ``name``, ``terms``, ``variants`` (those in the
        vocabulary), ``centre_mm``, ``study_ids`` (integers), ``ids``
        (experiment ids ``"{study_id}-1"``), ``n_planted_foci`` (around the
        centre), ``network_mm`` and ``n_network_foci``, and the
        ``generic_terms`` of the vocabulary.

    Notes
    -----
    The vocabulary is the topics' synonyms, their variants (when at least 20
    terms are left for the rest), the first :data:`GENERIC_TERMS` (at most a
    quarter of what is left) and pseudo-words. A topic study mentions each
    synonym of its topic with probability 0.7 (at least one), 1 + Poisson(1)
    times, and each variant with probability 0.15, once; no other study
    mentions them. Generic terms are mentioned by every study with a fixed
    probability, from 0.85 for the first to 0.25 for the last, 1 + Poisson(0.5)
    times. Background terms have Zipf-like document frequencies (every term
    in at least 5 studies); each study has 30-60 of them (more only when the
    vocabulary is too large for every term to reach 5 studies otherwise),
    mentioned 1 + Poisson(0.7) times. Weights are the tf-idf of the mentions
    (scikit-learn's smoothed idf, L2-normalised per study, at least 0.002, 5
    significant digits). Foci are whole mm, all inside the mask (redrawn when
    rounding or the Gaussian puts them outside). ``features.txt`` lists the
    terms alphabetically, as Neurosynth does, with ``0`` for absent terms.
    """
    n_studies, n_foci, n_terms = int(n_studies), int(n_foci), int(n_terms)
    if n_studies < 1 or n_foci < n_studies:
        raise CbmaError(f"need at least one study and one focus per study, got {n_studies} "
                        f"studies and {n_foci} foci")
    if not (0 <= p_topic <= 1 and 0 <= topic_foci_share <= 1 and 0 <= network_share <= 1
            and spread_mm > 0 and network_spread_mm > 0):
        raise CbmaError("p_topic, topic_foci_share and network_share must lie in [0, 1], "
                        "spread_mm and network_spread_mm be positive")
    brain, mask_name = _mask(mask)
    topics = _topics(topics, brain)
    topic_terms = [t for topic in topics for t in topic["terms"]]
    variant_terms = [t for topic in topics for t in topic["variants"]]
    if n_terms < len(topic_terms):
        raise CbmaError(f"n_terms={n_terms} is fewer than the {len(topic_terms)} topic terms")
    # the vocabulary: synonyms, variants (when there is room), generic terms (up to a
    # quarter of the rest), background pseudo-words
    room = n_terms - len(topic_terms)
    if room - len(variant_terms) < _MIN_BACKGROUND_ROOM:
        variant_terms = []
    room -= len(variant_terms)
    taken = set().union(*(_tokens(t) for t in topic_terms + variant_terms))
    generic = [g for g in GENERIC_TERMS if not _tokens(g) & taken][:room // 4]
    n_background = room - len(generic)
    rng = np.random.default_rng(seed)

    reserved = _RESERVED | taken | english_stop_words()
    words = _pseudo_words(rng, n_background + 200, reserved)
    names = topic_terms + variant_terms + generic + words[:n_background]
    surnames = [w.capitalize() for w in words[n_background:]]
    study_ids = _FIRST_ID + np.arange(n_studies, dtype=np.int64)

    member = rng.random((n_studies, len(topics))) < p_topic
    mentions = _term_counts(rng, n_studies, topics, member, bool(variant_terms), len(generic),
                            n_background)
    matrix = _tfidf(mentions)

    counts = _foci_counts(rng, n_studies, n_foci)
    owner = np.repeat(np.arange(n_studies), counts)
    n_member = member.sum(axis=1)
    planted = (n_member[owner] > 0) & (rng.random(owner.size) < topic_foci_share)
    topic = np.where(planted, _one_of(rng, member[owner]), -1)
    voxels_mm = vox_to_mm(np.argwhere(brain.data), brain.affine)
    centres = np.array([t["centre"] for t in topics])
    xyz = _draw_foci(rng, brain, voxels_mm, centres, topic, float(spread_mm))
    network = _network_foci(np.random.default_rng([seed, 1]), brain, voxels_mm, topics, member,
                            owner, topic, xyz, network_share, float(network_spread_mm))

    titles = _titles(rng, matrix, names, len(topic_terms))
    authors = _authors(rng, n_studies, surnames)
    years = rng.integers(1997, 2019, size=n_studies).tolist()
    journals = [_JOURNALS[j] for j in rng.integers(len(_JOURNALS), size=n_studies)]
    abstracts = _abstracts(rng, mentions, names, len(topic_terms))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_database(out / "database.txt", study_ids, counts, xyz, titles, authors, years,
                    journals, rng)
    _write_features(out / "features.txt", study_ids, matrix, names)
    _write_abstracts(out / "abstracts.tsv", study_ids, titles, abstracts)
    truth = {
        "generator": "cbma.synthetic.make_database",
        "seed": seed, "n_studies": n_studies, "n_foci": n_foci, "n_terms": n_terms,
        "p_topic": p_topic, "topic_foci_share": topic_foci_share, "spread_mm": spread_mm,
        "network_share": network_share, "network_spread_mm": network_spread_mm,
        "mask": mask_name, "experiment_id": "{study_id}-1",
        "topics": [{
            "name": t["name"], "terms": t["terms"],
            "variants": t["variants"] if variant_terms else [],
            "centre_mm": t["centre"].tolist(),
            "study_ids": study_ids[member[:, k]].tolist(),
            "ids": [f"{s}-1" for s in study_ids[member[:, k]].tolist()],
            "n_planted_foci": int((topic == k).sum()),
            "network_mm": t["network"].tolist(),
            "n_network_foci": int((network == k).sum()),
        } for k, t in enumerate(topics)],
        "generic_terms": generic,
    }
    with open(out / "ground_truth.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump(truth, fh, indent=1)
        fh.write("\n")
    return truth


def main(argv=None):
    """Command line: write a synthetic database and print what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m cbma.synthetic", description="Write a synthetic Neurosynth-format "
        "database (database.txt, features.txt, abstracts.tsv, ground_truth.json) with planted "
        "term-region links.")
    parser.add_argument("out_dir", help="folder to write into (created if needed)")
    parser.add_argument("--studies", type=int, default=14000, help="number of studies")
    parser.add_argument("--foci", type=int, default=500_000, help="total number of foci")
    parser.add_argument("--terms", type=int, default=3000, help="vocabulary size")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        truth = make_database(args.out_dir, n_studies=args.studies, n_foci=args.foci,
                              n_terms=args.terms, seed=args.seed)
    except CbmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - began
    out = Path(args.out_dir)
    print(f"wrote {args.studies} studies, {args.foci} foci, {args.terms} terms "
          f"(seed {args.seed}) in {seconds:.1f} s:")
    for name in ("database.txt", "features.txt", "abstracts.tsv", "ground_truth.json"):
        print(f"  {out / name}  {(out / name).stat().st_size / 1e6:.1f} MB")
    for t in truth["topics"]:
        centre = ", ".join(f"{c:g}" for c in t["centre_mm"])
        print(f"  topic {t['name']!r}: terms {t['terms']}, centre ({centre}) mm, "
              f"{len(t['study_ids'])} studies, {t['n_planted_foci']} foci around the centre, "
              f"{t['n_network_foci']} around its network of {len(t['network_mm'])} regions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
