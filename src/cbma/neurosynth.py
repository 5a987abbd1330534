"""Readers of Neurosynth-style databases: foci, study x term weights, study texts.

Three inputs carry term weights next to their foci:

- the classic Neurosynth release, ``database.txt`` (one row per focus) and
  ``features.txt`` (a dense study x term tf-idf table), read by
  :func:`read_neurosynth`;
- the current (version 7) release, a folder of ``*_coordinates.tsv.gz``,
  ``*_metadata.tsv.gz``, ``*_vocab-terms_source-abstract_type-tfidf_features.npz``
  and ``*_vocab-terms_vocabulary.txt``, read by :func:`read_neurosynth_v7`;
- the ``labels`` of a NiMARE JSON dataset, read by
  :func:`read_nimare_json_labels`.

Each study of a Neurosynth database is one experiment, named as NiMARE names
it: ``id = "{study_id}-1"``. The foci come back as the canonical coordinates
table of :mod:`cbma.coordinates` in the space they were *reported* in
(``MNI`` or ``TAL``); :func:`cbma.dataset.load_dataset` converts Talairach to
MNI. The term weights come back as a :class:`cbma.term_weights.TermWeights`
(a sparse experiments x terms matrix), ready for :func:`cbma.terms.select`,
and the study texts as a table with :data:`METADATA_COLUMNS`.

Space labels: Neurosynth only converts foci labelled Talairach and treats
every other label (``UNKNOWN`` included) as MNI; so do these readers. The
labels ``TAL``, ``T88`` and ``Talairach`` (any case) mean Talairach. How many
foci had a label that is neither is reported in the metadata's ``attrs``
(see :func:`read_neurosynth`).
"""

import csv
import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .coordinates import COLUMNS
from .errors import InputFileError
from .term_weights import TermWeights, empty_term_weights

__all__ = ["METADATA_COLUMNS", "read_neurosynth", "read_neurosynth_v7", "read_nimare_json_labels"]

#: Columns of the study table returned by the readers (all strings, "" when absent).
#: ``space_label`` is the space as the file wrote it (e.g. ``UNKNOWN``);
#: ``abstract`` comes from a classic release's ``abstracts.tsv`` (see
#: :func:`read_neurosynth`) or from NiMARE JSON ``text``.
METADATA_COLUMNS = ["id", "study_id", "doi", "title", "authors", "year", "journal",
                    "space_label", "abstract"]

_TEXT_FIELDS = ("doi", "title", "authors", "year", "journal")
_TALAIRACH = {"tal", "t88", "talairach"}
_CELLS_PER_CHUNK = 2_000_000  # dense cells parsed at once from features.txt (16 MB float64)
_ROWS_PER_CHUNK = 200_000     # foci parsed at once from database.txt


# ------------------------------------------------------------------------- helpers


def _space(labels):
    """Canonical spaces (``TAL``/``MNI``) of reported labels, and which were unknown."""
    lower = pd.Series(labels, dtype=object).astype(str).str.strip().str.lower()
    tal = lower.isin(_TALAIRACH).to_numpy()
    unknown = ~tal & (lower != "mni").to_numpy()
    return np.where(tal, "TAL", "MNI").astype(object), unknown


def _check_file(path):
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    if path.stat().st_size == 0:
        raise InputFileError(path, None, "file is empty")
    return path


def _read_header(path, encoding):
    """The column names of a tab-separated file's first line."""
    try:
        head = pd.read_csv(path, sep="\t", header=None, nrows=1, dtype=object,
                           na_filter=False, quoting=csv.QUOTE_NONE, encoding=encoding)
    except pd.errors.EmptyDataError:
        raise InputFileError(path, None, "file is empty") from None
    names = [str(n).strip() for n in head.iloc[0]]
    seen = {}
    for k, name in enumerate(names):
        if name in seen:
            raise InputFileError(path, 1, f"column {name!r} appears twice (columns "
                                 f"{seen[name] + 1} and {k + 1})")
        seen[name] = k
    return names


def _with_encoding(read, path, *args):
    """Run ``read(path, *args, encoding)`` as UTF-8, falling back to Latin-1."""
    try:
        return read(path, *args, "utf-8")
    except UnicodeDecodeError:
        return read(path, *args, "latin-1")


def _columns(path, names, required):
    """Map lower-case column names to the file's own; InputFileError if one is missing."""
    lower = {}
    for name in names:
        lower.setdefault(name.lower(), name)
    missing = [c for c in required if c not in lower]
    if missing:
        raise InputFileError(path, 1, f"missing column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)}; the header has {', '.join(names)}")
    return lower


def _read_foci(path, required, optional):
    """Foci of a one-row-per-focus TSV (Neurosynth ``database.txt`` or v7 coordinates).

    Returns a dict with ``study`` (str per focus), ``xyz``, ``line`` (1-based
    line of each focus), ``space`` (the label per focus, when ``space`` is a
    required column) and ``first`` (one dict of the other columns per study,
    in first-seen order).
    """
    return _with_encoding(_read_foci_as, _check_file(path), required, optional)


def _read_foci_as(path, required, optional, encoding):
    cols = _columns(path, _read_header(path, encoding), required)
    wanted = [c for c in (*required, *optional) if c in cols]
    text = [c for c in wanted if c not in ("id", "x", "y", "z")]
    studies, xyz, lines, spaces, first, seen = [], [], [], [], [], set()
    reader = pd.read_csv(path, sep="\t", dtype=object, na_filter=False, skip_blank_lines=False,
                         quoting=csv.QUOTE_NONE, encoding=encoding, chunksize=_ROWS_PER_CHUNK)
    try:
        for chunk in reader:  # all columns are parsed, so a row with extra fields is an error
            chunk = chunk[[cols[c] for c in wanted]].set_axis(wanted, axis=1)
            line = chunk.index.to_numpy() + 2
            study = chunk["id"].str.strip()
            no_id = (study == "").to_numpy()
            if no_id.any():  # blank lines are skipped; a line with fields needs an id
                blank = no_id & (chunk.apply(lambda s: s.str.strip()) == "").all(axis=1).to_numpy()
                if (no_id & ~blank).any():
                    k = int(np.argmax(no_id & ~blank))
                    raise InputFileError(path, int(line[k]), "missing study id")
                chunk, line, study = chunk[~blank], line[~blank], study[~blank]
            block = np.empty((len(chunk), 3))
            for j, axis in enumerate("xyz"):
                block[:, j] = pd.to_numeric(chunk[axis], errors="coerce").to_numpy(dtype=float)
                bad = ~np.isfinite(block[:, j])
                if bad.any():
                    k = int(np.argmax(bad))
                    raise InputFileError(path, int(line[k]), f"coordinate {axis} must be a "
                                         f"finite number, got {chunk[axis].iloc[k]!r}")
            studies.append(study.to_numpy(dtype=object))
            xyz.append(block)
            lines.append(line)
            if "space" in chunk:
                spaces.append(chunk["space"].to_numpy(dtype=object))
            new = (~study.duplicated() & ~study.isin(list(seen))).to_numpy()
            for values in chunk.loc[new, text].itertuples(index=False):
                first.append({c: str(v).strip() for c, v in zip(text, values, strict=True)})
            seen.update(study[new])
    except pd.errors.ParserError as exc:
        raise InputFileError(path, _parser_line(exc), f"cannot parse ({_parser_reason(exc)})"
                             ) from None
    if not lines or not sum(len(b) for b in lines):
        raise InputFileError(path, None, "no foci (only a header)")
    return {"study": np.concatenate(studies), "xyz": np.concatenate(xyz),
            "line": np.concatenate(lines), "first": first,
            "space": np.concatenate(spaces) if spaces else None}


def _parser_line(exc):
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None


def _parser_reason(exc):
    text = str(exc).strip().splitlines()[-1]
    return text.replace("Error tokenizing data. C error: ", "")


def _foci_table(path, foci, spaces):
    """The canonical coordinates table of one database's foci (one experiment per study)."""
    codes, studies = pd.factorize(foci["study"])
    ids = np.asarray([f"{s}-1" for s in studies], dtype=object)
    n = codes.size
    source = pd.Series(foci["line"]).astype(str)
    table = pd.DataFrame({
        "id": ids[codes],
        "study_id": np.asarray(studies, dtype=object)[codes],
        "contrast_id": np.full(n, "1", dtype=object),
        "x": foci["xyz"][:, 0], "y": foci["xyz"][:, 1], "z": foci["xyz"][:, 2],
        "sample_size": np.full(n, np.nan),
        "space": spaces,
        "source": (f"{Path(path).name}:" + source).to_numpy(dtype=object),
    }, columns=COLUMNS)
    return table, np.asarray(studies, dtype=object), ids


def _metadata(ids, studies, rows, labels):
    """The study table: one row per study, :data:`METADATA_COLUMNS`, strings."""
    frame = {"id": ids.astype(str), "study_id": studies.astype(str)}
    for field in ("doi", "title", "authors", "year", "journal", "abstract"):
        frame[field] = [r.get(field, "") for r in rows]
    frame["space_label"] = labels
    return pd.DataFrame(frame, columns=METADATA_COLUMNS).astype(str)


# ------------------------------------------------------------------- classic release


def read_neurosynth(database, features=None, abstracts=None):
    """Read the classic Neurosynth release (``database.txt`` + ``features.txt``).

    Parameters
    ----------
    database : str or Path
        ``database.txt``: tab-separated, a header line, one row per focus,
        with at least the columns ``id`` (the study, a PubMed id), ``x``,
        ``y``, ``z`` (mm) and ``space`` (the space the study reported:
        ``MNI``, ``TAL``, ``UNKNOWN``...); ``doi``, ``title``, ``authors``,
        ``year`` and ``journal`` are kept when present; other columns
        (``peak_id``, ``table_id``, ``table_num``) are ignored. Column names
        are matched ignoring case. A folder means its ``database.txt`` (and,
        when ``features`` is not given, its ``features.txt`` if there is one).
        Either file may be gzipped (``.gz``).
    features : str or Path, optional
        ``features.txt``: tab-separated dense study x term table, first column
        ``pmid`` (or ``id``), one column per term, weights (tf-idf of the
        abstract's words). Read in blocks of rows, so a full release
        (~14,000 x 3,000) never sits in memory as a dense table. Without it
        the dataset has no terms.
    abstracts : str, Path or False, optional
        The studies' abstracts: a tab-separated table with a header line and
        the columns ``id`` (or ``pmid``; the study id of ``database.txt``)
        and ``abstract`` (one line, no tabs), and optionally ``title``, which
        fills the titles ``database.txt`` leaves blank; other columns are
        ignored, and so are studies without foci. The classic release has
        none (PubMed has them); :func:`cbma.synthetic.make_database` writes
        one. By default ``abstracts.tsv`` (or ``abstracts.tsv.gz``) is read
        when it lies in the same folder as ``database.txt`` (given as a file
        or as its folder); ``False`` reads none. Kept apart from
        ``database.txt`` because that file repeats its study columns on every
        focus row.

    Returns
    -------
    table : pandas.DataFrame
        The canonical coordinates table (:data:`cbma.coordinates.COLUMNS`), foci in file
        order and in their reported space (``TAL`` for the labels TAL, T88 or
        Talairach, ``MNI`` for everything else): ``study_id`` is the database
        ``id``, ``contrast_id`` is ``"1"``, ``id`` is ``"{study_id}-1"``,
        ``sample_size`` is missing (Neurosynth does not record it), ``source``
        is ``"database.txt:{line}"``.
    weights : TermWeights
        One row per experiment in order of first appearance in the database.
        Studies of ``features.txt`` without foci are dropped; studies with
        foci but no ``features.txt`` row have all-zero weights.
    metadata : pandas.DataFrame
        One row per experiment, same order, with :data:`METADATA_COLUMNS`
        ("" where the database has no such column; ``abstract`` from
        ``abstracts``). Its ``attrs`` hold the counts of the reading:
        ``n_unknown_space_foci`` (foci whose space label was neither MNI nor
        Talairach, read as MNI) and ``unknown_space_labels``,
        ``n_features_only_studies`` (features rows dropped),
        ``n_studies_without_features`` and ``n_studies_with_abstract``
        (studies given a non-empty abstract).

    Raises
    ------
    InputFileError
        Naming the file (and line where there is one) for a missing or empty
        file, a missing column, a coordinate that is not a finite number, a
        weight that is not a finite number, a repeated term column or study
        row in ``features.txt``, a missing column or repeated study in
        ``abstracts``, or a row with too many fields.
    """
    database = Path(database)
    if database.is_dir():
        folder = database
        database = _in_folder(folder, "database.txt", required=True)
        if features is None:
            features = _in_folder(folder, "features.txt", required=False)
    else:
        folder = database.parent
    if abstracts is None:
        abstracts = _in_folder(folder, "abstracts.tsv", required=False)
    elif abstracts is False:
        abstracts = None
    foci = _read_foci(database, ("id", "x", "y", "z", "space"), _TEXT_FIELDS)
    spaces, unknown = _space(foci["space"])
    table, studies, ids = _foci_table(database, foci, spaces)
    labels = [row["space"] for row in foci["first"]]
    metadata = _metadata(ids, studies, foci["first"], labels)
    counts = {"n_unknown_space_foci": int(unknown.sum()),
              "unknown_space_labels": sorted(set(foci["space"][unknown].tolist())),
              "n_features_only_studies": 0, "n_studies_without_features": 0,
              "n_studies_with_abstract": 0}
    if abstracts is not None:
        texts = _read_abstracts(abstracts, studies)
        blank = metadata["title"].str.strip() == ""
        metadata.loc[blank, "title"] = texts["title"][blank.to_numpy()]
        metadata["abstract"] = texts["abstract"]
        counts["n_studies_with_abstract"] = int((metadata["abstract"] != "").sum())
    if features is None:
        weights = empty_term_weights(ids)
    else:
        matrix, terms, found, dropped = _read_features(features, studies)
        weights = TermWeights(matrix, ids, terms)
        counts["n_features_only_studies"] = dropped
        counts["n_studies_without_features"] = int(studies.size - found)
    metadata.attrs.update(counts)
    return table, weights, metadata


def _read_abstracts(path, studies):
    """Titles and abstracts of ``abstracts.tsv`` for ``studies`` ("" where it has none)."""
    return _with_encoding(_read_abstracts_as, _check_file(path), studies)


def _read_abstracts_as(path, studies, encoding):
    names = _read_header(path, encoding)
    lower = {n.lower(): k for k, n in enumerate(names)}
    key = lower.get("id", lower.get("pmid"))
    if key is None or "abstract" not in lower:
        raise InputFileError(path, 1, f"expected the columns id (or pmid) and abstract; the "
                             f"header has {', '.join(names)}")
    text, title = lower["abstract"], lower.get("title")
    found, seen = {}, {}
    for block in _line_blocks(path, encoding, 100_000):
        for number, line in block:
            fields = line.split("\t")
            if len(fields) != len(names):
                raise InputFileError(path, number, f"cannot parse (expected {len(names)} "
                                     f"fields, as the header, saw {len(fields)})")
            study = fields[key].strip()
            if not study:
                raise InputFileError(path, number, "missing study id")
            if study in seen:
                raise InputFileError(path, number, f"study {study} repeats line {seen[study]}")
            seen[study] = number
            found[study] = (fields[text].strip(),
                            fields[title].strip() if title is not None else "")
    pairs = [found.get(str(s), ("", "")) for s in studies]
    return {"abstract": np.array([a for a, _ in pairs], dtype=object),
            "title": np.array([t for _, t in pairs], dtype=object)}


def _in_folder(folder, name, required):
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if required:
        raise InputFileError(folder, None, f"no {name} in this folder")
    return None


def _read_features(path, studies):
    """``features.txt`` as a CSR matrix with rows in the order of ``studies``.

    Returns ``(matrix, terms, n_rows_matched, n_rows_dropped)``.
    """
    return _with_encoding(_read_features_as, _check_file(path), studies)


def _read_features_as(path, studies, encoding):
    names = _read_header(path, encoding)
    if names[0].lower() not in ("pmid", "id"):
        raise InputFileError(path, 1, f"the first column must be 'pmid' (or 'id'), "
                             f"got {names[0]!r}")
    terms = names[1:]
    empty = [k for k, t in enumerate(terms) if not t]
    if empty:
        raise InputFileError(path, 1, f"column {empty[0] + 2} has no term name")
    index = pd.Index(studies)
    block_rows = max(1, _CELLS_PER_CHUNK // len(names))
    rows, cols, data = [], [], []
    seen, dropped = {}, 0
    for block in _line_blocks(path, encoding, block_rows):
        pmids, line, values = _parse_block(path, block, terms)
        bad = ~np.isfinite(values)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputFileError(path, int(line[r]), f"weight of term {terms[c]!r} must be "
                                 f"finite, got {values[r, c]}")
        for pmid, ln in zip(pmids, line, strict=True):
            if pmid in seen:
                raise InputFileError(path, int(ln), f"study {pmid} repeats line {seen[pmid]}")
            seen[pmid] = int(ln)
        target = index.get_indexer(pmids)
        matched = target >= 0
        dropped += int((~matched).sum())
        values = values[matched]
        r, c = np.nonzero(values)
        rows.append(target[matched][r])
        cols.append(c)
        data.append(values[r, c])
    found = len(seen) - dropped
    matrix = sp.csr_matrix(
        (np.concatenate(data) if data else np.zeros(0),
         (np.concatenate(rows) if rows else np.zeros(0, int),
          np.concatenate(cols) if cols else np.zeros(0, int))),
        shape=(len(studies), len(terms)), dtype=np.float64)
    return matrix, terms, found, dropped


def _line_blocks(path, encoding, block_rows):
    """``[(line number, text), ...]`` blocks of the non-blank lines after the header."""
    if str(path).endswith(".gz"):
        fh = gzip.open(path, "rt", encoding=encoding)
    else:
        fh = open(path, encoding=encoding)
    with fh:
        fh.readline()
        block = []
        for number, text in enumerate(fh, 2):
            text = text.rstrip("\r\n")
            if text.strip():
                block.append((number, text))
                if len(block) == block_rows:
                    yield block
                    block = []
        if block:
            yield block


def _parse_block(path, block, terms):
    """Study ids, line numbers and the dense weights of a block of ``features.txt`` lines."""
    pmids, rests = [], []
    for number, text in block:
        pmid, tab, rest = text.partition("\t")
        pmid = pmid.strip()
        if not pmid:
            raise InputFileError(path, number, "missing pmid")
        if terms and not tab:
            raise InputFileError(path, number, f"expected {len(terms)} weights after the "
                                 "pmid, got none")
        pmids.append(pmid)
        rests.append(rest)
    line = np.array([number for number, _ in block])
    if not terms:
        return np.asarray(pmids, dtype=object), line, np.zeros((len(block), 0))
    try:
        values = np.loadtxt(rests, delimiter="\t", dtype=np.float64, comments=None,
                            quotechar=None, ndmin=2)
    except ValueError:
        values = None
    if values is None or values.shape[1] != len(terms):
        for number, rest in zip(line, rests, strict=True):
            fields = rest.split("\t")
            if len(fields) != len(terms):
                raise InputFileError(path, int(number), f"expected {len(terms)} weights after "
                                     f"the pmid (one per term), got {len(fields)}")
            for term, field in zip(terms, fields, strict=True):
                try:
                    float(field)
                except ValueError:
                    raise InputFileError(path, int(number), f"weight of term {term!r} must be "
                                         f"a number, got {field!r}") from None
        raise InputFileError(path, int(line[0]), f"cannot read the weights of lines "
                             f"{line[0]}-{line[-1]}")
    return np.asarray(pmids, dtype=object), line, values


# ------------------------------------------------------------------------ version 7


def read_neurosynth_v7(folder, vocabulary="terms", source="abstract"):
    """Read a Neurosynth release in the current (version 7) format.

    Parameters
    ----------
    folder : str or Path
        The folder with the release's files, found by how their names end
        (any prefix, ``.gz`` optional): ``coordinates.tsv`` (columns ``id``,
        ``x``, ``y``, ``z``, one row per focus), ``metadata.tsv`` (one row per
        study: ``id``, ``space``, and ``doi``, ``title``, ``authors``,
        ``year``, ``journal`` when present), ``vocab-{vocabulary}_source-
        {source}_type-tfidf_features.npz`` (a scipy.sparse matrix, studies in
        the metadata's row order x terms) and ``vocab-{vocabulary}_vocabulary.txt``
        (one term per line, column order).
    vocabulary : str
        Which vocabulary (``terms`` in release 7; LDA topic vocabularies are
        named ``LDA50`` etc.).
    source : str
        Which text the weights were computed from (``abstract``).

    Returns
    -------
    table, weights, metadata
        As :func:`read_neurosynth`; the space of each study comes from the
        metadata file (``TAL`` for TAL/T88/Talairach, ``MNI`` otherwise, also
        for ``UNKNOWN``). Metadata rows without foci are dropped (counted in
        ``metadata.attrs["n_features_only_studies"]``).

    Raises
    ------
    InputFileError
        For a missing or ambiguous file, a missing column, a bad coordinate
        (with its line), a study of the coordinates missing from the metadata
        or repeated in it, or a weight matrix whose shape disagrees with the
        metadata rows or the vocabulary lines.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, None, "folder not found")
    coords = _find(folder, "_coordinates.tsv")
    meta_path = _find(folder, "_metadata.tsv")
    npz = _find(folder, f"_vocab-{vocabulary}_source-{source}_type-tfidf_features.npz")
    vocab = _find(folder, f"_vocab-{vocabulary}_vocabulary.txt")

    meta = _read_v7_metadata(meta_path)
    terms = _read_vocabulary(vocab)
    try:
        matrix = sp.load_npz(npz)
    except Exception as exc:  # scipy raises several kinds for a bad archive
        raise InputFileError(npz, None, f"cannot read as a scipy.sparse .npz ({exc})") from None
    if matrix.shape != (len(meta), len(terms)):
        raise InputFileError(npz, None, f"weight matrix has shape {matrix.shape}, but "
                             f"{meta_path.name} has {len(meta)} studies and {vocab.name} "
                             f"{len(terms)} terms")

    foci = _read_foci(coords, ("id", "x", "y", "z"), ())
    index = pd.Index(meta["id"])
    row_of_focus = index.get_indexer(foci["study"])
    if (row_of_focus < 0).any():
        k = int(np.argmax(row_of_focus < 0))
        raise InputFileError(coords, int(foci["line"][k]), f"study {foci['study'][k]} is not "
                             f"in {meta_path.name}")
    labels = meta["space"].to_numpy(dtype=object)[row_of_focus]
    spaces, unknown = _space(labels)
    table, studies, ids = _foci_table(coords, foci, spaces)
    rows = index.get_indexer(studies)
    picked = meta.iloc[rows]
    first = picked.to_dict("records")
    metadata = _metadata(ids, studies, first, picked["space"].str.strip().to_numpy())
    weights = TermWeights(sp.csr_matrix(matrix)[rows], ids, terms)
    metadata.attrs.update({
        "n_unknown_space_foci": int(unknown.sum()),
        "unknown_space_labels": sorted(set(labels[unknown].tolist())),
        "n_features_only_studies": int(len(meta) - studies.size),
        "n_studies_without_features": 0,
    })
    return table, weights, metadata


def _find(folder, suffix):
    bare = suffix.lstrip("_")
    hits = sorted(p for p in folder.iterdir() if p.is_file() and any(
        p.name == f"{bare}{gz}" or p.name.endswith(f"{suffix}{gz}") for gz in ("", ".gz")))
    if not hits:
        raise InputFileError(folder, None, f"no file ending in {suffix}[.gz] in this folder")
    if len(hits) > 1:
        raise InputFileError(folder, None, f"several files end in {suffix}[.gz]: "
                             f"{', '.join(p.name for p in hits)}")
    return hits[0]


def _read_v7_metadata(path):
    return _with_encoding(_read_v7_metadata_as, _check_file(path))


def _read_v7_metadata_as(path, encoding):
    cols = _columns(path, _read_header(path, encoding), ("id", "space"))
    meta = pd.read_csv(path, sep="\t", dtype=object, na_filter=False, quoting=csv.QUOTE_NONE,
                       encoding=encoding, skip_blank_lines=False)
    meta.columns = [c.strip().lower() for c in meta.columns]
    line = meta.index.to_numpy() + 2
    meta = meta[[c for c in ("id", "space", *_TEXT_FIELDS) if c in cols]]
    meta = meta.apply(lambda s: s.str.strip())
    meta.index = line
    if meta.empty:
        raise InputFileError(path, None, "no studies (only a header)")
    if (meta["id"] == "").any():
        raise InputFileError(path, int(meta.index[meta["id"] == ""][0]), "missing study id "
                             "(blank lines are not allowed: rows follow the weight matrix)")
    repeated = meta["id"].duplicated()
    if repeated.any():
        k = int(meta.index[repeated][0])
        study = meta.loc[k, "id"]
        raise InputFileError(path, k, f"study {study} repeats line "
                             f"{int(meta.index[meta['id'] == study][0])}")
    return meta.reset_index(drop=True)


def _read_vocabulary(path):
    path = _check_file(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    terms = raw.decode("utf-8", errors="replace").splitlines()
    seen = {}
    for k, term in enumerate(terms, 1):
        term = term.strip()
        if not term:
            raise InputFileError(path, k, "empty term")
        if term in seen:
            raise InputFileError(path, k, f"term {term!r} repeats line {seen[term]}")
        seen[term] = k
    return list(seen)


# ---------------------------------------------------------------------- NiMARE JSON


def read_nimare_json_labels(path):
    """Term weights and study texts of a NiMARE JSON dataset.

    Parameters
    ----------
    path : str or Path
        A NiMARE dataset (``{study: {"contrasts": {contrast: {"coords",
        "labels", "metadata", "text"}}}}``). ``labels`` maps a label name to
        a weight; the feature-group prefix of the name (everything up to and
        including the last ``__``, e.g. ``Neurosynth_TFIDF__``) is dropped, so
        ``Neurosynth_TFIDF__pain`` becomes the term ``pain`` (unless two
        groups then share a name: the full names are kept in that case).

    Returns
    -------
    (weights, metadata) or None
        None when no contrast with coordinates has labels. Otherwise ``weights`` has one row per
        experiment ``"{study}-{contrast}"`` that :func:`cbma.coordinates.read_nimare_json`
        reads (the contrasts with coordinates), in the same order, with terms
        in the order first seen; a missing or null label weighs 0. Contrasts
        with labels but no coordinates are left out. ``metadata`` has
        :data:`METADATA_COLUMNS`, one row per experiment: the contrast's
        ``metadata`` (falling back to the study's) and its ``text.abstract``.

    Raises
    ------
    InputFileError
        For invalid JSON or a label weight that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise InputFileError(path, None, "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise InputFileError(path, None, "expected a JSON object of studies")
    column, rows, cols, values, ids, texts = {}, [], [], [], [], []
    any_labels = False
    for study, sdata in data.items():
        contrasts = sdata.get("contrasts") if isinstance(sdata, dict) else None
        if not isinstance(contrasts, dict):
            continue  # cbma.coordinates.read_nimare_json reports it
        smeta = sdata.get("metadata") or {}
        for contrast, cdata in contrasts.items():
            cdata = cdata if isinstance(cdata, dict) else {}
            labels = cdata.get("labels") or {}
            if not cdata.get("coords"):
                continue
            any_labels = any_labels or bool(labels)
            row = len(ids)
            ids.append(f"{study}-{contrast}")
            for name, value in labels.items():
                weight = _label_weight(path, study, contrast, name, value)
                if weight:
                    rows.append(row)
                    cols.append(column.setdefault(name, len(column)))
                    values.append(weight)
                else:
                    column.setdefault(name, len(column))
            meta = {**smeta, **(cdata.get("metadata") or {})}
            text = {f: _text(meta.get(f)) for f in _TEXT_FIELDS}
            text.update(study_id=str(study), abstract=_text((cdata.get("text") or {})
                                                           .get("abstract")),
                        space_label=_text((cdata.get("coords") or {}).get("space")))
            texts.append(text)
    if not any_labels:
        return None
    names = list(column)
    stripped = [n.rsplit("__", 1)[-1] for n in names]
    terms = stripped if len(set(stripped)) == len(stripped) else names
    matrix = sp.csr_matrix((np.asarray(values, dtype=np.float64),
                            (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
                           shape=(len(ids), len(names)))
    weights = TermWeights(matrix, ids, terms)
    metadata = pd.DataFrame({"id": ids, **{c: [t[c] for t in texts]
                                           for c in METADATA_COLUMNS[1:]}},
                            columns=METADATA_COLUMNS).astype(str)
    return weights, metadata


def _label_weight(path, study, contrast, name, value):
    if value is None:
        return 0.0
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise InputFileError(path, None, f"study {study!r}, contrast {contrast!r}: label "
                             f"{name!r} must be a number, got {value!r}") from None
    if math.isnan(weight):
        return 0.0
    if not math.isfinite(weight):
        raise InputFileError(path, None, f"study {study!r}, contrast {contrast!r}: label "
                             f"{name!r} must be finite, got {value!r}")
    return weight


def _text(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
