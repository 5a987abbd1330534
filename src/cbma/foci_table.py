"""Foci tables compiled by hand: TSV, CSV or Excel (.xlsx), one row per focus.

The columns (in any order; the header is matched ignoring case, spaces and
underscores, and a few other names people use are accepted):

==============  ================================================  ==========================
column          what                                              also accepted
==============  ================================================  ==========================
``study``       the study (a paper: ``Smith 2001``)               ``article``, ``articles``
``experiment``  the experiment (contrast) in the study; optional  ``contrast``
                (without it, each study is one experiment)
``x y z``       the focus, mm
``space``       ``MNI``, or ``TAL`` / ``Talairach`` / ``T88``     ``coordinate space``
``n``           subjects of the experiment; may be blank          ``subjects``,
                (unknown: MKDA needs none)                        ``sample size``
==============  ================================================  ==========================

Other columns are ignored, unless named as labels (term weights) or as the
subject group for pooling. A row whose ``study`` cell is blank continues the
experiment above it, and its blank ``experiment``, ``space`` and ``n`` cells
take the values above (the layout, also JALE's, where only the first row of an
experiment names it). Blank rows are skipped.

The content is checked strictly: every error is one line naming the file (for
Excel, the sheet) and the row. An experiment is named as NiMARE names
experiments: ``id = "{study}-{experiment}"`` (``"{study}-1"`` without an
experiment column).
"""

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .coordinates import foci_frame
from .errors import CbmaError, InputFileError
from .io import unreadable
from .neurosynth import METADATA_COLUMNS
from .pooling import group_column
from .term_weights import term_weights_from_notes

__all__ = ["read_foci_table"]

#: the columns, by their normalised header names (see the module docstring)
HEADERS = {
    "study": ("study", "article", "articles"),
    "experiment": ("experiment", "contrast"),
    "x": ("x",), "y": ("y",), "z": ("z",),
    "space": ("space", "coordinatespace"),
    "n": ("n", "subjects", "samplesize"),
}
REQUIRED = ("study", "x", "y", "z", "space", "n")
EXCEL = (".xlsx", ".xlsm")
_SPACES = {"mni": "MNI", "tal": "TAL", "talairach": "TAL", "t88": "TAL"}


def _normalise(header):
    return re.sub(r"[\s_]+", "", str(header).strip().lower()) if header is not None else ""


class _Where:
    """Names a row of the file in errors: ``line N`` of a text file, ``sheet S, row N``."""

    def __init__(self, path, sheet=None):
        self.path, self.sheet = Path(path), sheet

    def error(self, row, reason):
        if self.sheet is None:
            return InputFileError(self.path, row, reason)
        return InputFileError(self.path, None, f"sheet {self.sheet!r}, row {row}: {reason}")

    def source(self, row):
        return f"{self.path.name}:{row}"


def _text_rows(path):
    """``(where, [(row number, [cells])])`` of a TSV or CSV file; the header is the first."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise InputFileError(path, None, "file is empty")
    if "\t" in first:
        delimiter = "\t"
    elif ";" in first and "," not in first:
        delimiter = ";"
    else:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        start = 1
        for cells in reader:
            rows.append((start, [c.strip() for c in cells]))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputFileError(path, reader.line_num, f"cannot parse ({exc})") from None
    return _Where(path), rows


def _excel_rows(path):
    """``(where, [(row number, [cells])])`` of the first sheet of an Excel workbook."""
    try:
        import openpyxl
    except ImportError:
        raise CbmaError(f"{path}: reading an Excel file needs openpyxl (pip install "
                        "openpyxl, or cbma[xlsx])") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several kinds for a file that is not a workbook
        raise InputFileError(path, None, f"cannot read as an Excel workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        rows = [(number, ["" if c is None else (c.strip() if isinstance(c, str) else c)
                          for c in cells])
                for number, cells in enumerate(sheet.iter_rows(values_only=True),
                                               start=sheet.min_row or 1)]
        return _Where(path, sheet.title), rows
    finally:
        book.close()


def _blank(cell):
    return cell is None or (isinstance(cell, str) and not cell.strip()) or (
        isinstance(cell, float) and math.isnan(cell))


def _number(where, row, name, cell):
    if isinstance(cell, bool):
        value = None
    elif isinstance(cell, (int, float)):
        value = float(cell)
    else:
        try:
            value = float(str(cell).strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise where.error(row, f"{name} must be a finite number, got {cell!r}")
    return value


def _subjects(where, row, cell):
    if _blank(cell):
        return np.nan
    value = _number(where, row, "n (subjects)", cell)
    if value < 1 or not value.is_integer():
        raise where.error(row, f"n (subjects) must be a whole number of at least 1 (or blank "
                          f"when unknown), got {cell!r}")
    return value


def _cell_text(cell):
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def read_foci_table(path, labels=None, groups=()):
    """Read a foci table compiled by hand (TSV, CSV or Excel; see the module docstring).

    Parameters
    ----------
    path : str or Path
        ``.xlsx``/``.xlsm`` (the first sheet; read with openpyxl, as JALE
        reads its experiment files), else text: tab-separated if the header
        line has a tab, else semicolon-separated if it has semicolons and no
        comma, else comma-separated (quotes as spreadsheets write them).
    labels : sequence of str, optional
        Columns whose values become term weights: each value is a term of
        weight 1 for the experiment of its row (a column ``task`` with
        ``n-back`` makes ``select: {expression: "n-back"}`` work; see
        :func:`cbma.term_weights.term_weights_from_notes`).
    groups : sequence of str
        Columns naming each experiment's subject group, for pooling; the
        table gets a :func:`cbma.pooling.group_column` column per name.

    Returns
    -------
    table : pandas.DataFrame
        The canonical coordinates table, foci in file order; ``source`` is
        ``"<file>:<row>"``.
    weights : cbma.term_weights.TermWeights
    studies : pandas.DataFrame
        :data:`cbma.neurosynth.METADATA_COLUMNS`, one row per experiment.

    Raises
    ------
    InputFileError
        One line naming the file (and sheet) and the row: a missing or
        repeated column, a study or experiment missing, a coordinate that is
        not a finite number, an unknown space, a number of subjects that is not
        a whole number of at least 1, or that differs from an earlier row of
        the same experiment; a subject group that is blank or differs within
        an experiment.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, None, "is a folder, not a foci table")
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    try:
        where, rows = _excel_rows(path) if path.suffix.lower() in EXCEL else _text_rows(path)
    except OSError as exc:
        raise unreadable(exc, path) from None
    rows = [(n, cells) for n, cells in rows if not all(_blank(c) for c in cells)]
    if not rows:
        raise where.error(None, "no header") if where.sheet is None else \
            InputFileError(path, None, f"sheet {where.sheet!r} is empty")
    header_row, header = rows[0]
    column = _columns(where, header_row, header, labels, groups)
    if len(rows) == 1:
        raise where.error(header_row, "no foci (only a header)")

    exps, seen, xyz, which, spaces, sources, notes = [], {}, [], [], [], [], []
    last = None
    for row, cells in rows[1:]:
        def cell(name, cells=cells):
            k = column.get(name)
            return cells[k] if k is not None and k < len(cells) else ""

        values = {name: cell(name) for name in ("study", "experiment", "space", "n")}
        values.update({f"group:{g}": cell(f"group:{g}") for g in groups})
        if _blank(values["study"]):
            if last is None:
                raise where.error(row, "no study (a blank study continues the experiment "
                                  "above, and there is none)")
            for name, value in last.items():
                if name != "study" and _blank(values[name]):
                    values[name] = value
            values["study"] = last["study"]
        elif "experiment" in column and _blank(values["experiment"]):
            raise where.error(row, "no experiment for study "
                              f"{_cell_text(values['study'])!r}")
        study = _cell_text(values["study"])
        contrast = _cell_text(values["experiment"]) if "experiment" in column else "1"
        if _blank(values["space"]):
            raise where.error(row, "no space (MNI or TAL)")
        space = _SPACES.get(_cell_text(values["space"]).lower())
        if space is None:
            raise where.error(row, f"unknown space {values['space']!r}; expected MNI, TAL, "
                              "Talairach or T88")
        n = _subjects(where, row, values["n"])
        point = [_number(where, row, axis, cell(axis)) for axis in "xyz"]
        exp_id = f"{study}-{contrast}"
        if exp_id not in seen:
            seen[exp_id] = len(exps)
            exps.append({"id": exp_id, "study_id": study, "contrast_id": contrast,
                         "sample_size": n, "row": row,
                         **{group_column(g): _cell_text(values[f"group:{g}"])
                            for g in groups}})
        exp = exps[seen[exp_id]]
        if not (np.isnan(n) and np.isnan(exp["sample_size"])) and n != exp["sample_size"]:
            raise where.error(row, f"experiment {exp_id!r} has n = {_show(n)} here and "
                              f"{_show(exp['sample_size'])} on row {exp['row']}")
        for g in groups:
            mine, theirs = values[f"group:{g}"], exp[group_column(g)]
            if _blank(mine):
                raise where.error(row, f"no subject group in column {g!r}, which "
                                  "pool.column needs")
            if _cell_text(mine) != theirs:
                raise where.error(row, f"experiment {exp_id!r} is in subject group "
                                  f"{_cell_text(mine)!r} here and {theirs!r} on "
                                  f"row {exp['row']}")
        for label in labels or ():
            value = cell(f"label:{label}")
            if not _blank(value):
                notes.append((seen[exp_id], label, _cell_text(value)))
        xyz.append(point)
        which.append(seen[exp_id])
        spaces.append(space)
        sources.append(where.source(row))
        last = values

    table = foci_frame(exps, which, xyz, spaces, sources, [group_column(g) for g in groups])
    if table["sample_size"].notna().all():  # whole numbers, as Sleuth files give them
        table["sample_size"] = table["sample_size"].astype(np.int64)
    ids = [e["id"] for e in exps]
    weights = term_weights_from_notes(ids, notes, list(labels) if labels else [])
    studies = pd.DataFrame({c: ids if c == "id" else [e["study_id"] for e in exps]
                            if c == "study_id" else "" for c in METADATA_COLUMNS},
                           columns=METADATA_COLUMNS).astype(str)
    return table, weights, studies


def _show(n):
    return "blank" if np.isnan(n) else f"{n:g}"


def _columns(where, row, header, labels, groups):
    """``{column: index}`` of the header row: the known columns, labels and groups."""
    known = {alias: name for name, aliases in HEADERS.items() for alias in aliases}
    column, first = {}, {}
    for k, cell in enumerate(header):
        name = known.get(_normalise(cell))
        if name is None:
            continue
        if name in column:
            raise where.error(row, f"columns {first[name] + 1} ({header[first[name]]!r}) and "
                              f"{k + 1} ({cell!r}) are both the {name} column")
        column[name], first[name] = k, k
    missing = [name for name in REQUIRED if name not in column]
    if missing:
        shown = ", ".join(repr(_cell_text(c)) for c in header if not _blank(c))
        raise where.error(row, f"missing column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing)}; the header has {shown}")
    by_name = {_normalise(c): k for k, c in enumerate(header) if not _blank(c)}
    for kind, names in (("label", labels or ()), ("group", groups)):
        for name in names:
            k = by_name.get(_normalise(name))
            if k is None:
                what = "labels" if kind == "label" else "pool.column"
                raise where.error(row, f"{what}: no column {name!r} in the header")
            column[f"{kind}:{name}"] = k
    return column
