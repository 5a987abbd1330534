"""Readers of NIMADS studysets: NeuroStore's JSON documents and NiMARE's parquet folders.

A NIMADS studyset nests ``studies -> analyses -> points``. Each analysis with
points is one experiment, named as NiMARE names it: ``id =
"{study id}-{analysis id}"`` (``study_id`` and ``contrast_id`` hold the two
parts). Two containers are read:

- a NIMADS JSON document (:func:`read_nimads`), as NeuroStore exports a
  studyset and NiMARE 0.22 writes one (``nimare.studyset.write_nimads``),
  with annotations inside it or in separate annotation documents;
- a studyset parquet folder (:func:`read_studyset_parquet`), as NiMARE 0.22
  writes (``nimare.studyset.write_parquet``) and ships them (NeuroStore
  releases): ``studyset.json`` and the tables ``studies``, ``analyses``,
  ``coordinates``, ``metadata``, ``texts`` and ``annotations``.

What is taken from where, as NiMARE 0.22.1 takes it:

- **Spaces.** Each point's ``space``. ``TAL``, ``T88`` and ``Talairach`` (any
  case) are Talairach, converted to MNI by :func:`cbma.dataset.load_dataset`;
  every other label, a missing one included (NeuroStore leaves most empty,
  its releases also use ``UNKNOWN`` and ``OTHER``), is read as MNI, as NiMARE
  does; their foci are counted in the study table's ``attrs``. (NiMARE
  converts only the exact labels ``TAL`` and ``Talairach``.)
- **Sample sizes.** The first of the analysis' ``metadata.sample_sizes`` (a
  list: its mean), its ``metadata.sample_size``, the study's
  ``metadata.sample_sizes`` and the study's ``metadata.sample_size`` that is
  given (null, NaN, the text ``"None"`` and an empty list are not). None
  given: missing, which MKDA accepts and an ALE whose kernel follows the
  sample sizes does not (it stops naming the study and analysis, see
  :func:`cbma.estimators.ma_maps`). A value must be a number of subjects (at
  least 1; a number written as text is read), else the reader stops naming
  the study and analysis.
- **Term weights** come from the annotations' notes, see
  :func:`cbma.term_weights.term_weights_from_notes`.
- **Texts**: a study's ``name`` is its title; the analysis' ``abstract`` text,
  else the study's ``description`` (NeuroStore's abstract), its abstract.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .coordinates import foci_frame
from .errors import CbmaError, InputFileError
from .neurosynth import METADATA_COLUMNS
from .pooling import group_column
from .term_weights import term_weights_from_notes

__all__ = ["read_nimads", "read_studyset_parquet"]

#: tables of a parquet studyset: the required ones, then the optional ones read
PARQUET_TABLES = ("studies", "analyses", "coordinates", "metadata", "texts", "annotations")
_ID_COLUMNS = ("id", "study_id", "contrast_id")
_TALAIRACH = {"tal", "t88", "talairach"}
_SIZE_KEYS = ("sample_sizes", "sample_size")


# ------------------------------------------------------------------------ shared


def _denull(value):
    """NeuroStore writes the text ``"None"`` where it means null."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _space(label):
    """``(space, known)`` of a point's space label (see the module docstring)."""
    label = _denull(label)
    text = str(label).strip().lower() if label is not None else ""
    if text in _TALAIRACH:
        return "TAL", True
    return "MNI", text == "mni"


def _shown(label):
    """A space label as the ingest log lists it."""
    label = _denull(label)
    return "(missing)" if label is None else str(label).strip()


def _sizes(path, where, key, value):
    """A sample-size value as a list of numbers, or None when it is not given."""
    value = _denull(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        return None
    numbers = []
    for v in values:
        v = _denull(v)
        if v is None:
            return None  # NiMARE ignores a list with a missing entry
        number = None
        if not isinstance(v, (bool, np.bool_)):
            try:
                number = float(v)
            except (TypeError, ValueError):
                number = None
        if number is None or not math.isfinite(number) or number < 1:
            raise InputFileError(path, None, f"{where}: {key} must be a number of subjects "
                                 f"(at least 1) or a list of them, or null when unknown; got "
                                 f"{json.dumps(value, default=str)}")
        numbers.append(number)
    return numbers


def _sample_size(path, where, *metadata):
    """The first sample size given by ``metadata`` dicts (analysis', then study's)."""
    for meta in metadata:
        for key in _SIZE_KEYS:
            sizes = _sizes(path, where, key, meta.get(key)) if meta else None
            if sizes:
                return float(np.mean(sizes))
    return np.nan


def _text(value):
    value = _denull(value)
    return "" if value is None else " ".join(str(value).split())


def _check_labels(path, labels, keys):
    """Every key of ``labels`` is a key of the annotations (``keys``)."""
    missing = [k for k in labels or () if k not in keys]
    if missing:
        known = sorted(keys)
        listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") or "none"
        raise InputFileError(path, None, f"labels: no annotation key {missing[0]!r} "
                             f"(keys: {listed})")


def _study_rows(exps):
    """The study table (:data:`cbma.neurosynth.METADATA_COLUMNS`) of the experiments."""
    return pd.DataFrame({c: [e["text"].get(c, "") for e in exps] if c not in ("id", "study_id")
                         else [e[c] for e in exps] for c in METADATA_COLUMNS},
                        columns=METADATA_COLUMNS).astype(str)


# ---------------------------------------------------------------------- NIMADS JSON


def _load_json(path):
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, None, "is a folder, not a NIMADS JSON file")
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise InputFileError(path, None, "not UTF-8 text") from None


def _annotation_payloads(path, doc, where):
    """The annotation objects of a document (one object, or a list of them)."""
    payloads = doc if isinstance(doc, list) else [doc]
    for k, payload in enumerate(payloads):
        if not isinstance(payload, dict):
            raise InputFileError(path, None, f"{where}[{k}]: expected an annotation object "
                                 f"(with notes), got {type(payload).__name__}")
        notes = payload.get("notes")
        if notes is not None and not isinstance(notes, list):
            raise InputFileError(path, None, f"{where}[{k}].notes: expected a list of notes")
        for j, note in enumerate(notes or []):
            if not isinstance(note, dict) or not isinstance(note.get("note") or {}, dict):
                raise InputFileError(path, None, f"{where}[{k}].notes[{j}]: expected "
                                     "{\"study\": ..., \"analysis\": ..., \"note\": {...}}")
    return payloads


def _resolver(exps):
    """``resolve(study, analysis) -> experiment index`` as NiMARE resolves notes.

    By the (study, analysis) pair, else by the full ``study-analysis`` id, else
    by an analysis id that only one study uses.
    """
    by_pair = {(e["study_id"], e["contrast_id"]): k for k, e in enumerate(exps)}
    by_full = {e["id"]: k for k, e in enumerate(exps)}
    by_short = {}
    for k, e in enumerate(exps):
        by_short[e["contrast_id"]] = None if e["contrast_id"] in by_short else k

    def resolve(study, analysis):
        analysis = str(analysis)
        if study is not None and (str(study), analysis) in by_pair:
            return by_pair[str(study), analysis]
        if analysis in by_full:
            return by_full[analysis]
        return by_short.get(analysis)

    return resolve


def read_nimads(path, annotations=(), labels=None, groups=()):
    """Read a NIMADS studyset JSON document (NeuroStore's export, NiMARE's writer).

    Parameters
    ----------
    path : str or Path
        The studyset: ``{"id", "name", "studies": [{"id", "name", "authors",
        "publication", "year", "doi", "description", "metadata": {...},
        "analyses": [{"id", "name", "metadata": {...}, "texts": {...},
        "annotations": {...}, "points": [{"coordinates": [x, y, z], "space":
        ...}]}]}], "annotations": [...]}``.
    annotations : sequence of str or Path
        Annotation documents (NeuroStore's export of an annotation: ``{"id",
        "note_keys", "notes": [{"study", "analysis", "note": {key: value}}]}``,
        or a list of them), added to the annotations the studyset holds (its
        ``annotations`` list and each analysis' own ``annotations``). A note
        names its analysis by study and analysis id, by the full
        ``study-analysis`` id or by an analysis id only one study has, as
        NiMARE resolves them; notes of analyses the studyset does not have are
        counted (``attrs["n_unmatched_notes"]``) and left out.
    labels : sequence of str, optional
        The annotation keys that become term weights (see
        :func:`cbma.term_weights.term_weights_from_notes`).
    groups : sequence of str
        Keys naming each experiment's subject group, for pooling
        (:mod:`cbma.pooling`): looked up in the analysis' metadata, its notes
        and the study's metadata; the table gets a column
        :func:`cbma.pooling.group_column` per key.

    Returns
    -------
    table : pandas.DataFrame
        The canonical coordinates table (:data:`cbma.coordinates.COLUMNS`):
        analyses with points in document order, foci in their reported space;
        ``source`` is ``"<file>:<study>/<analysis>#<point>"``.
    weights : cbma.term_weights.TermWeights
    studies : pandas.DataFrame
        :data:`cbma.neurosynth.METADATA_COLUMNS`, one row per experiment; its
        ``attrs`` count the foci read as MNI from an unrecognised label
        (``n_unknown_space_foci``, ``unknown_space_labels``), the analyses
        without points (``n_analyses_without_foci``) and the unmatched notes.

    Raises
    ------
    InputFileError
        One line naming the file, the study and the analysis (or point): not
        JSON, not a studyset, a study or analysis without an id, an analysis
        id repeated in a study, coordinates that are not three finite numbers,
        a sample size that is not a number of subjects, an annotation key of
        ``labels`` that no note has, a subject group missing.
    """
    path = Path(path)
    doc = _load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("studies"), list):
        raise InputFileError(path, None, "expected a NIMADS studyset: a JSON object with a "
                             "'studies' list")
    exps, every, xyz, which, spaces, sources, unknown = [], [], [], [], [], [], {}
    n_empty = 0
    for s_pos, study in enumerate(doc["studies"]):
        if not isinstance(study, dict):
            raise InputFileError(path, None, f"studies[{s_pos}]: expected a study object")
        sid = _denull(study.get("id"))
        if sid is None:
            raise InputFileError(path, None, f"studies[{s_pos}] has no id")
        sid = str(sid)
        smeta = _meta(path, f"study {sid!r}", study.get("metadata"))
        analyses = study.get("analyses") or []
        if not isinstance(analyses, list):
            raise InputFileError(path, None, f"study {sid!r}: 'analyses' must be a list")
        seen = set()
        for a_pos, analysis in enumerate(analyses):
            if not isinstance(analysis, dict):
                raise InputFileError(path, None, f"study {sid!r}, analyses[{a_pos}]: expected "
                                     "an analysis object")
            aid = _denull(analysis.get("id"))
            if aid is None:
                raise InputFileError(path, None, f"study {sid!r}, analyses[{a_pos}] has no id")
            aid = str(aid)
            where = f"study {sid!r}, analysis {aid!r}"
            if aid in seen:
                raise InputFileError(path, None, f"{where} appears twice in the study")
            seen.add(aid)
            ameta = _meta(path, where, analysis.get("metadata"))
            exp = {"id": f"{sid}-{aid}", "study_id": sid, "contrast_id": aid, "where": where,
                   "meta": ameta, "smeta": smeta, "notes": {}}
            every.append(exp)
            points = analysis.get("points") or []
            if not isinstance(points, list):
                raise InputFileError(path, None, f"{where}: 'points' must be a list")
            _inline_notes(path, where, analysis.get("annotations"), exp)
            if not points:
                n_empty += 1
                continue
            row = len(exps)
            for k, point in enumerate(points):
                coords = point.get("coordinates") if isinstance(point, dict) else None
                try:
                    values = [float(c) for c in coords]
                except (TypeError, ValueError):
                    values = []
                if len(values) != 3 or not all(map(math.isfinite, values)):
                    raise InputFileError(path, None, f"{where}, points[{k}]: coordinates must "
                                         f"be three finite numbers [x, y, z], got "
                                         f"{json.dumps(coords, default=str)}")
                label = point.get("space")
                space, known = _space(label)
                if not known:
                    unknown[_shown(label)] = unknown.get(_shown(label), 0) + 1
                xyz.append(values)
                which.append(row)
                spaces.append(space)
                sources.append(f"{path.name}:{sid}/{aid}#{k + 1}")
            texts = analysis.get("texts") if isinstance(analysis.get("texts"), dict) else {}
            exp["sample_size"] = _sample_size(path, where, ameta, smeta)
            exp["text"] = {
                "doi": _text(study.get("doi") or smeta.get("doi")),
                "title": _text(study.get("name") or smeta.get("title")),
                "authors": _text(study.get("authors") or smeta.get("authors")),
                "year": _year(study.get("year") or smeta.get("year")),
                "journal": _text(study.get("publication") or smeta.get("journal")),
                "space_label": _text(points[0].get("space")) if isinstance(points[0], dict)
                else "",
                "abstract": _text(texts.get("abstract")) or _text(study.get("description")),
            }
            exps.append(exp)
    if not exps:
        raise InputFileError(path, None, "no analysis with points (foci) found")
    payloads = _annotation_payloads(path, doc.get("annotations") or [], "annotations")
    sources_of = [(path, payloads)]
    for extra in annotations:
        sources_of.append((Path(extra), _annotation_payloads(Path(extra), _load_json(extra),
                                                             "annotation")))
    resolve = _resolver(every)
    unmatched = 0
    for _, payloads in sources_of:
        for payload in payloads:
            for note in payload.get("notes") or []:
                k = resolve(_denull(note.get("study")), note.get("analysis"))
                if k is None:
                    unmatched += 1
                    continue
                every[k]["notes"].update({str(key): _denull(v) for key, v in
                                          (note.get("note") or {}).items()})
    keys = {key for e in exps for key in e["notes"]}
    _check_labels(path, labels, keys)
    row_of = {e["id"]: k for k, e in enumerate(exps)}
    notes = ((row_of[e["id"]], key, value) for e in exps for key, value in e["notes"].items())
    weights = term_weights_from_notes([e["id"] for e in exps], notes, labels)
    for name in groups:
        for e in exps:
            value = next((_denull(d.get(name)) for d in (e["meta"], e["notes"], e["smeta"])
                          if _denull(d.get(name)) is not None), None)
            if value is None:
                raise InputFileError(path, None, f"{e['where']}: no subject group {name!r} "
                                     "(in its metadata, its notes or its study's metadata), "
                                     "which pool.column needs")
            e[group_column(name)] = _text(value)
    table = foci_frame(exps, which, xyz, spaces, sources, [group_column(g) for g in groups])
    studies = _study_rows(exps)
    studies.attrs.update({
        "n_unknown_space_foci": int(sum(unknown.values())),
        "unknown_space_labels": sorted(unknown),
        "n_analyses_without_foci": n_empty, "n_unmatched_notes": unmatched})
    return table, weights, studies


def _meta(path, where, meta):
    meta = _denull(meta)
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InputFileError(path, None, f"{where}: metadata must be an object, got "
                             f"{type(meta).__name__}")
    return meta


def _inline_notes(path, where, value, exp):
    """An analysis' own ``annotations``: ``{annotation: {key: value}}`` or ``{key: value}``."""
    value = _denull(value)
    if value is None:
        return
    if not isinstance(value, dict):
        raise InputFileError(path, None, f"{where}: annotations must be an object, got "
                             f"{type(value).__name__}")
    for key, note in value.items():
        if isinstance(note, dict):
            exp["notes"].update({str(k): _denull(v) for k, v in note.items()})
        else:
            exp["notes"][str(key)] = _denull(note)


def _year(value):
    value = _denull(value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ------------------------------------------------------------------------ parquet


def _read_parquet(path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise CbmaError(f"{path}: reading a parquet studyset needs pyarrow (pip install "
                        "pyarrow)") from None
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, None, f"cannot read as a parquet table ({reason})") from None


def _require(path, frame, columns):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputFileError(path, None, f"missing column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)}; the table has "
                             f"{', '.join(map(str, frame.columns[:20]))}")


def _ids(path, frame, column):
    """A table's id column as str; a missing id stops naming its row."""
    values = frame[column].map(_denull)
    blank = values.isna().to_numpy()
    if blank.any():
        raise InputFileError(path, None, f"row {int(np.argmax(blank)) + 1}: no {column}")
    return values.astype(str).str.strip().to_numpy(dtype=object)


def _unique(path, ids, what):
    codes, uniques = pd.factorize(ids)
    if len(uniques) != len(ids):
        first = {}
        for k, i in enumerate(ids):
            if i in first:
                raise InputFileError(path, None, f"row {k + 1}: {what} {i!r} repeats row "
                                     f"{first[i] + 1}")
            first[i] = k


def read_studyset_parquet(path, labels=None, groups=()):
    """Read a studyset parquet folder, as NiMARE 0.22 writes and ships it.

    Parameters
    ----------
    path : str or Path
        The folder (or its ``studyset.json``). ``studyset.json`` (optional)
        may name each table's file (``tables``); by default
        ``<table>.parquet``. Required tables: ``studies`` (``study_id``, and
        ``name``, ``description``, ``authors``, ``publication`` when present),
        ``analyses`` (``id``, ``study_id``, ``contrast_id``, ``name``) and
        ``coordinates`` (``id``, the analysis; ``x``, ``y``, ``z``; ``space``).
        Optional: ``metadata`` (one row per analysis: ``sample_sizes``,
        ``sample_size``, ...), ``texts`` (``abstract``, ...) and
        ``annotations`` (one row per analysis, one column per note key). A
        table of the release not read here (``images``) is ignored.
    labels : sequence of str, optional
        The annotation columns that become term weights (see
        :func:`cbma.term_weights.term_weights_from_notes`); by default every
        column with numbers or true/false values.
    groups : sequence of str
        Columns naming each analysis' subject group, for pooling: looked up in
        the ``analyses``, ``metadata`` and ``annotations`` tables, in that order.

    Returns
    -------
    table, weights, studies
        As :func:`read_nimads`; experiments in the order of the ``analyses``
        table (analyses without coordinates left out), each one's foci in
        the order of the ``coordinates`` table; ``source`` is
        ``"coordinates.parquet:<row>"``.

    Raises
    ------
    InputFileError
        One line naming the table's file and the row: a missing table or
        column, a repeated or missing id, an analysis of a study the
        ``studies`` table does not have, a focus of an analysis the
        ``analyses`` table does not have, a coordinate that is not a finite
        number, a sample size that is not a number of subjects.
    CbmaError
        When pyarrow (which pandas reads parquet with) is not installed.
    """
    folder = Path(path)
    if folder.is_file() and folder.name == "studyset.json":
        folder = folder.parent
    if not folder.is_dir():
        raise InputFileError(folder, None, "folder not found (a parquet studyset is a folder "
                             "of tables)")
    manifest = {}
    if (folder / "studyset.json").is_file():
        manifest = _load_json(folder / "studyset.json")
        if not isinstance(manifest, dict):
            raise InputFileError(folder / "studyset.json", None, "expected a JSON object")
    named = manifest.get("tables") if isinstance(manifest.get("tables"), dict) else {}
    files = {t: folder / str(named.get(t, f"{t}.parquet")) for t in PARQUET_TABLES}
    frames = {t: _read_parquet(files[t]) for t in PARQUET_TABLES[:3]}
    frames.update({t: _read_parquet(files[t]) for t in PARQUET_TABLES[3:] if files[t].is_file()})

    studies_t, analyses_t, coords_t = frames["studies"], frames["analyses"], frames["coordinates"]
    _require(files["studies"], studies_t, ["study_id"])
    _require(files["analyses"], analyses_t, ["id", "study_id", "contrast_id"])
    _require(files["coordinates"], coords_t, ["id", "x", "y", "z"])
    study_ids = _ids(files["studies"], studies_t, "study_id")
    _unique(files["studies"], study_ids, "study")
    a_ids = _ids(files["analyses"], analyses_t, "id")
    _unique(files["analyses"], a_ids, "analysis")
    a_study = _ids(files["analyses"], analyses_t, "study_id")
    a_contrast = _ids(files["analyses"], analyses_t, "contrast_id")
    study_row = pd.Index(study_ids).get_indexer(a_study)
    if (study_row < 0).any():
        k = int(np.argmax(study_row < 0))
        raise InputFileError(files["analyses"], None, f"row {k + 1}: study {a_study[k]!r} of "
                             f"analysis {a_ids[k]!r} is not in {files['studies'].name}")

    c_ids = _ids(files["coordinates"], coords_t, "id")
    c_row = pd.Index(a_ids).get_indexer(c_ids)
    if (c_row < 0).any():
        k = int(np.argmax(c_row < 0))
        raise InputFileError(files["coordinates"], None, f"row {k + 1}: analysis {c_ids[k]!r} "
                             f"is not in {files['analyses'].name}")
    xyz = np.empty((len(coords_t), 3))
    for j, axis in enumerate("xyz"):
        values = pd.to_numeric(coords_t[axis], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            raise InputFileError(files["coordinates"], None, f"row {k + 1}: coordinate {axis} "
                                 f"must be a finite number, got {coords_t[axis].iloc[k]!r}")
        xyz[:, j] = values
    labels_raw = (coords_t["space"].to_numpy(dtype=object) if "space" in coords_t
                  else np.full(len(coords_t), None, dtype=object))
    order = np.argsort(c_row, kind="stable")
    present = np.unique(c_row)  # analyses with foci, in the analyses table's order
    exp_of_analysis = np.full(len(a_ids), -1)
    exp_of_analysis[present] = np.arange(present.size)
    which = exp_of_analysis[c_row[order]]

    by_analysis = {t: _by_analysis(files[t], frames[t], a_ids) for t in
                   ("metadata", "texts", "annotations") if t in frames}
    study_cols = {c: studies_t[c].to_numpy(dtype=object) for c in studies_t.columns}
    exps = []
    for a in present:
        s = study_row[a]
        where = f"row {a + 1} (analysis {a_ids[a]!r})"
        meta_row, meta = by_analysis.get("metadata", {}).get(a, (None, {}))
        texts = by_analysis.get("texts", {}).get(a, (None, {}))[1]
        first = order[np.searchsorted(c_row[order], a)]
        exps.append({
            "id": a_ids[a], "study_id": a_study[a], "contrast_id": a_contrast[a],
            "where": where,
            "sample_size": _sample_size(files["metadata"], f"row {meta_row} (analysis "
                                        f"{a_ids[a]!r})", meta),
            "text": {
                "doi": _text(_cell(study_cols, "doi", s)),
                "title": _text(_cell(study_cols, "name", s)),
                "authors": _text(_cell(study_cols, "authors", s)),
                "year": _year(_cell(study_cols, "year", s)),
                "journal": _text(_cell(study_cols, "publication", s)),
                "space_label": _text(labels_raw[first]),
                "abstract": _text(texts.get("abstract")) or _text(
                    _cell(study_cols, "description", s)),
            },
        })
    spaces, unknown = [], {}
    for label in labels_raw[order]:
        space, known = _space(label)
        spaces.append(space)
        if not known:
            unknown[_shown(label)] = unknown.get(_shown(label), 0) + 1
    sources = [f"{files['coordinates'].name}:{k + 1}" for k in order]

    annotations = frames.get("annotations")
    note_keys = ([c for c in annotations.columns if c not in _ID_COLUMNS]
                 if annotations is not None else [])
    _check_labels(files.get("annotations", folder / "annotations.parquet"), labels, note_keys)
    weights = term_weights_from_notes([e["id"] for e in exps], _parquet_notes(
        annotations, a_ids, exp_of_analysis, note_keys, labels), labels)
    for name in groups:
        _parquet_groups(name, frames, files, a_ids, present, exps)
    table = foci_frame(exps, which, xyz[order], spaces, sources,
                       [group_column(g) for g in groups])
    studies = _study_rows(exps)
    studies.attrs.update({
        "n_unknown_space_foci": int(sum(unknown.values())),
        "unknown_space_labels": sorted(unknown),
        "n_analyses_without_foci": int(len(a_ids) - present.size), "n_unmatched_notes": 0})
    return table, weights, studies


def _cell(columns, name, row):
    column = columns.get(name)
    return None if column is None else column[row]


def _by_analysis(path, frame, a_ids):
    """``{analysis row: (table row, {column: value})}`` of a one-row-per-analysis table.

    The table row is 1-based; only the cells with a value are kept.
    """
    _require(path, frame, ["id"])
    rows = pd.Index(a_ids).get_indexer(_ids(path, frame, "id"))
    columns = [c for c in frame.columns if c not in _ID_COLUMNS]
    out = {}
    for r, (k, values) in enumerate(zip(rows, frame[columns].itertuples(index=False, name=None),
                                        strict=True)):
        if k >= 0:
            out[k] = (r + 1, {c: v for c, v in zip(columns, values, strict=True)
                              if not _missing(v)})
    return out


def _missing(value):
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return False


def _parquet_notes(annotations, a_ids, exp_of_analysis, keys, labels):
    """``(experiment row, key, value)`` of the annotations table's cells that count."""
    if annotations is None:
        return
    rows = exp_of_analysis[pd.Index(a_ids).get_indexer(
        annotations["id"].astype(str).str.strip().to_numpy(dtype=object))]
    wanted = set(labels) if labels is not None else None
    for key in keys:
        if wanted is not None and key not in wanted:
            continue
        column = annotations[key]
        if wanted is None and not (pd.api.types.is_numeric_dtype(column)
                                   or pd.api.types.is_bool_dtype(column)
                                   or column.dtype == object):
            continue  # text columns are labels only when asked for
        values = column.to_numpy(dtype=object)
        for row, value in zip(rows, values, strict=True):
            if row >= 0 and not _missing(value):
                yield int(row), key, value


def _parquet_groups(name, frames, files, a_ids, present, exps):
    """Each experiment's subject group ``name``, from the first table that has the column."""
    for table in ("analyses", "metadata", "annotations"):
        frame = frames.get(table)
        if frame is None or name not in frame.columns:
            continue
        if table == "analyses":
            values = dict(enumerate(frame[name].to_numpy(dtype=object)))
        else:
            rows = pd.Index(a_ids).get_indexer(frame["id"].astype(str).str.strip())
            values = dict(zip(rows, frame[name].to_numpy(dtype=object), strict=True))
        for a, e in zip(present, exps, strict=True):
            value = _denull(values.get(a))
            if value is None:
                raise InputFileError(files[table], None, f"{e['where']}: no subject group in "
                                     f"column {name!r}, which pool.column needs")
            e[group_column(name)] = _text(value)
        return
    raise InputFileError(files["analyses"].parent, None, f"pool.column {name!r}: no such column "
                         "in the analyses, metadata or annotations tables")
