"""A seeded, Neurosynth-sized synthetic database with planted term-region links.

:func:`make_database` writes a database in the classic Neurosynth format
(``database.txt`` + ``features.txt``, read by :func:`cbma.neurosynth.read_neurosynth`)
whose ground truth is known: a few *topics*, each a region of the brain and a
small set of synonym terms. A study belongs to each topic independently; a
topic study carries (most of) the topic's synonyms in its term weights and
reports a share of its foci around the topic's centre. Everything else is
noise: the other foci are uniform over the brain mask, and the background
vocabulary (pronounceable pseudo-words with Zipf-like document frequencies)
carries no spatial signal. ``ground_truth.json`` lists the topics, their
centres and their studies, for benchmarks and tests of term-based
meta-analysis, decoding and free-text queries (each study also gets an
English-like title built from its strongest terms).

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

__all__ = ["DEFAULT_MASK", "DEFAULT_TOPICS", "make_database", "main"]

#: The 2 mm MNI152 brain mask bundled with the pipeline.
DEFAULT_MASK = (Path(__file__).resolve().parents[2] / "resources" / "templates"
                / "MNI152_2x2x2_brainmask.nii.gz")

#: Planted topics: synonym terms and a region centre (MNI mm) inside the default
#: mask, every two centres at least 40 mm apart.
DEFAULT_TOPICS = [
    {"name": "pain", "terms": ["pain", "nociception", "noxious"],
     "centre": [40, -16, 12]},   # right insula
    {"name": "working memory", "terms": ["working memory", "n-back", "maintenance"],
     "centre": [-36, 24, 36]},   # left dorsolateral prefrontal cortex
    {"name": "emotion", "terms": ["emotion", "affective", "amygdala"],
     "centre": [-24, -4, -20]},  # left amygdala
    {"name": "reward", "terms": ["reward", "incentive"],
     "centre": [12, 14, -8]},    # right ventral striatum
    {"name": "motor", "terms": ["motor", "finger tapping"],
     "centre": [-38, -22, 56]},  # left primary motor cortex
    {"name": "language", "terms": ["language", "semantic"],
     "centre": [-42, 28, -4]},   # left inferior frontal gyrus
    {"name": "visual", "terms": ["visual", "occipital"],
     "centre": [10, -86, 4]},    # primary visual cortex
    {"name": "face", "terms": ["face recognition", "faces", "fusiform"],
     "centre": [40, -52, -18]},  # right fusiform gyrus
]

DATABASE_COLUMNS = ["id", "doi", "x", "y", "z", "space", "peak_id", "table_id", "table_num",
                    "title", "authors", "year", "journal"]

_FIRST_ID = 10_000_000
_SYNONYM_RATE = 0.7
_TOPIC_WEIGHTS = (0.02, 0.2)
_BACKGROUND_TERMS = (30, 60)   # background terms per study (inclusive range)
_MIN_DOCUMENT_FREQUENCY = 5
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
_RESERVED = {"pmid", "id", "and", "the", "for", "during", "in", "of", "on", "an", "with",
             "neural", "brain", "human", "role", "study", "effects", "activity", "related",
             "functional", "anatomy", "systems", "modulates", "correlates", "dissociable"}


# -------------------------------------------------------------------------- inputs


def _mask(mask):
    if mask is None:
        return load_mask(DEFAULT_MASK), DEFAULT_MASK.name
    if isinstance(mask, BrainMask):
        return mask, "BrainMask"
    return load_mask(mask), Path(mask).name


def _topics(topics, mask):
    """Validated topics: names, synonym lists and centres inside the mask."""
    topics = DEFAULT_TOPICS if topics is None else topics
    out, seen = [], {}
    for k, topic in enumerate(topics):
        try:
            name = str(topic["name"])
            terms = [" ".join(str(t).lower().split()) for t in topic["terms"]]
            centre = np.asarray(topic["centre"], dtype=float)
        except (KeyError, TypeError, ValueError):
            raise CbmaError(f"topic {k + 1}: expected name, terms (a list) and centre "
                            f"([x, y, z] in mm), got {topic!r}") from None
        if not terms or centre.shape != (3,) or not np.isfinite(centre).all():
            raise CbmaError(f"topic {name!r}: needs at least one term and a centre [x, y, z]")
        if not mask.contains(mm_to_vox(centre, mask.affine))[0]:
            raise CbmaError(f"topic {name!r}: centre {centre.tolist()} is outside the mask")
        for term in terms:
            if term in seen:
                raise CbmaError(f"topic {name!r}: term {term!r} is also a term of topic "
                                f"{seen[term]!r}")
            seen[term] = name
        out.append({"name": name, "terms": terms, "centre": centre})
    return out


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


def _weights(rng, n_studies, topics, member, n_background):
    """Study x term weights (topic terms first, then the background terms)."""
    rows, cols, vals = [], [], []
    column = 0
    low, high = _TOPIC_WEIGHTS
    for t, topic in enumerate(topics):
        studies = np.flatnonzero(member[:, t])
        n_syn = len(topic["terms"])
        has = rng.random((studies.size, n_syn)) < _SYNONYM_RATE
        none = ~has.any(axis=1)
        has[np.flatnonzero(none), rng.integers(n_syn, size=int(none.sum()))] = True
        weight = rng.uniform(low, high, size=has.shape)
        r, c = np.nonzero(has)
        rows.append(studies[r])
        cols.append(column + c)
        vals.append(weight[r, c])
        column += n_syn
    b_rows, b_cols = _background(rng, n_studies, n_background)
    # tf-idf-like: term count x inverse document frequency, L2-normalised per study
    df = np.bincount(b_cols, minlength=n_background)
    idf = np.log((1 + n_studies) / (1 + df)) + 1
    tf = 1 + rng.poisson(0.7, size=b_rows.size)
    raw = tf * idf[b_cols]
    norm = np.sqrt(np.bincount(b_rows, weights=raw ** 2, minlength=n_studies))
    topic_sq = np.bincount(np.concatenate(rows), weights=np.concatenate(vals) ** 2,
                           minlength=n_studies) if rows else np.zeros(n_studies)
    scale = np.sqrt(np.clip(1 - topic_sq, 0.25, 1)) / np.where(norm > 0, norm, 1)
    rows.append(b_rows)
    cols.append(column + b_cols)
    vals.append(np.maximum(raw * scale[b_rows], 0.002))
    matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_studies, column + n_background))
    matrix.sum_duplicates()
    matrix.data = np.array([float(f"{v:.5g}") for v in matrix.data])  # what the file holds
    return matrix


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


# --------------------------------------------------------------------------- API


def make_database(out_dir, n_studies=14000, n_foci=500_000, n_terms=3000, topics=None, seed=0,
                  mask=None, p_topic=0.08, topic_foci_share=0.4, spread_mm=6.0):
    """Write a synthetic Neurosynth-format database with planted term-region links.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write ``database.txt``, ``features.txt`` and
        ``ground_truth.json`` into (created if needed).
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
        [x, y, z]}`` with the centre in MNI mm inside the mask; default
        :data:`DEFAULT_TOPICS` (eight topics, centres at least 40 mm apart).
    seed : int
        Seed of everything; the same arguments give byte-identical files.
    mask : str, Path or cbma.space.BrainMask, optional
        Where foci may lie; default the bundled 2 mm MNI152 brain mask.
    p_topic : float
        Probability that a study belongs to a topic (each topic independently).
    topic_foci_share : float
        Expected share of a topic study's foci drawn around its topics' centres
        (split evenly between its topics); the rest are uniform in the mask.
    spread_mm : float
        Standard deviation (mm, each axis) of the planted foci around a centre.

    Returns
    -------
    dict
        The ground truth, as written to ``ground_truth.json``: the parameters,
        and per topic its ``name``, ``terms``, ``centre_mm``, ``study_ids``
        (integers), ``ids`` (experiment ids ``"{study_id}-1"``) and
        ``n_planted_foci``.

    Notes
    -----
    A topic study carries each synonym of its topic with probability 0.7 (at
    least one), weighted uniformly in [0.02, 0.2]; no other study carries
    them. Background terms have Zipf-like document frequencies (every term in
    at least 5 studies) and tf-idf-like weights (L2-normalised per study,
    5 significant digits); each study has 30-60 of them (more only when the
    vocabulary is too large for every term to reach 5 studies otherwise). Foci are whole mm,
    all inside the mask (redrawn when rounding or the Gaussian puts them
    outside). ``features.txt`` lists the terms alphabetically, as Neurosynth
    does, with ``0`` for absent terms.
    """
    n_studies, n_foci, n_terms = int(n_studies), int(n_foci), int(n_terms)
    if n_studies < 1 or n_foci < n_studies:
        raise CbmaError(f"need at least one study and one focus per study, got {n_studies} "
                        f"studies and {n_foci} foci")
    if not (0 <= p_topic <= 1 and 0 <= topic_foci_share <= 1 and spread_mm > 0):
        raise CbmaError("p_topic and topic_foci_share must lie in [0, 1] and spread_mm be "
                        "positive")
    brain, mask_name = _mask(mask)
    topics = _topics(topics, brain)
    topic_terms = [t for topic in topics for t in topic["terms"]]
    n_background = n_terms - len(topic_terms)
    if n_background < 0:
        raise CbmaError(f"n_terms={n_terms} is fewer than the {len(topic_terms)} topic terms")
    rng = np.random.default_rng(seed)

    reserved = _RESERVED | {w for t in topic_terms for w in t.replace("-", " ").split()}
    words = _pseudo_words(rng, n_background + 200, reserved)
    names = topic_terms + words[:n_background]
    surnames = [w.capitalize() for w in words[n_background:]]
    study_ids = _FIRST_ID + np.arange(n_studies, dtype=np.int64)

    member = rng.random((n_studies, len(topics))) < p_topic
    matrix = _weights(rng, n_studies, topics, member, n_background)

    counts = _foci_counts(rng, n_studies, n_foci)
    owner = np.repeat(np.arange(n_studies), counts)
    n_member = member.sum(axis=1)
    planted = (n_member[owner] > 0) & (rng.random(owner.size) < topic_foci_share)
    pick = np.floor(rng.random(owner.size) * np.maximum(n_member[owner], 1))
    which = np.argmax(np.cumsum(member[owner], axis=1) > pick[:, None], axis=1)
    topic = np.where(planted, which, -1)
    voxels_mm = vox_to_mm(np.argwhere(brain.data), brain.affine)
    centres = np.array([t["centre"] for t in topics])
    xyz = _draw_foci(rng, brain, voxels_mm, centres, topic, float(spread_mm))

    titles = _titles(rng, matrix, names, len(topic_terms))
    authors = _authors(rng, n_studies, surnames)
    years = rng.integers(1997, 2019, size=n_studies).tolist()
    journals = [_JOURNALS[j] for j in rng.integers(len(_JOURNALS), size=n_studies)]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_database(out / "database.txt", study_ids, counts, xyz, titles, authors, years,
                    journals, rng)
    _write_features(out / "features.txt", study_ids, matrix, names)
    truth = {
        "generator": "cbma.synthetic.make_database",
        "seed": seed, "n_studies": n_studies, "n_foci": n_foci, "n_terms": n_terms,
        "p_topic": p_topic, "topic_foci_share": topic_foci_share, "spread_mm": spread_mm,
        "mask": mask_name, "experiment_id": "{study_id}-1",
        "topics": [{
            "name": t["name"], "terms": t["terms"], "centre_mm": t["centre"].tolist(),
            "study_ids": study_ids[member[:, k]].tolist(),
            "ids": [f"{s}-1" for s in study_ids[member[:, k]].tolist()],
            "n_planted_foci": int((topic == k).sum()),
        } for k, t in enumerate(topics)],
    }
    with open(out / "ground_truth.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump(truth, fh, indent=1)
        fh.write("\n")
    return truth


def main(argv=None):
    """Command line: write a synthetic database and print what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m cbma.synthetic", description="Write a synthetic Neurosynth-format "
        "database (database.txt, features.txt, ground_truth.json) with planted term-region "
        "links.")
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
    for name in ("database.txt", "features.txt", "ground_truth.json"):
        print(f"  {out / name}  {(out / name).stat().st_size / 1e6:.1f} MB")
    for t in truth["topics"]:
        centre = ", ".join(f"{c:g}" for c in t["centre_mm"])
        print(f"  topic {t['name']!r}: terms {t['terms']}, centre ({centre}) mm, "
              f"{len(t['study_ids'])} studies, {t['n_planted_foci']} planted foci")
    return 0


if __name__ == "__main__":
    sys.exit(main())
