"""The canonical coordinates table, and the readers of Sleuth and NiMARE JSON foci files.

The canonical table has one row per focus, in MNI mm::

    id  study_id  contrast_id  x  y  z  sample_size  space  source

``id`` is the experiment (``"{study_id}-{contrast_id}"``, as NiMARE names it),
``space`` the space the focus was reported in (``MNI`` or ``TAL``; the
readers here give Talairach foci as reported, and
:func:`cbma.dataset.load_dataset` converts them), ``source`` the file and
line it came from.
"""

import array
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputFileError
from .io import unreadable

COLUMNS = ["id", "study_id", "contrast_id", "x", "y", "z", "sample_size", "space", "source"]

_SPACES = {"mni": "MNI", "tal": "TAL", "talairach": "TAL"}
_YEAR = re.compile(r"(?:19|20)\d\d")
_SEPARATOR = re.compile(r"[;:]")
_SPACE = re.compile(r"\s+")
_SUBJECTS_VALUE = re.compile(r"(?i)subjects=(.*)")
_SUBJECTS = re.compile(r"(?i)//\s*subjects\s*=")  # a '// Subjects=N' header line


def foci_frame(exps, which, xyz, spaces, sources, extra=()):
    """The canonical table (:data:`COLUMNS`) of experiments and their foci.

    Parameters
    ----------
    exps : list of dict
        One dict per experiment, with keys ``id``, ``study_id``, ``contrast_id``
        and ``sample_size`` (NaN where the file gives none), plus the keys
        named in ``extra``.
    which : array of int, shape (n_foci,)
        The experiment (index into ``exps``) of each focus.
    xyz : array, shape (n_foci, 3)
        The foci, in mm.
    spaces, sources : sequence of str, length n_foci
        The space each focus was reported in, and the file and line it came from.
    extra : sequence of str
        Per-experiment keys of ``exps`` copied to columns of the same name
        after :data:`COLUMNS` (a subject group, :func:`cbma.pooling.group_column`).
    """
    which = np.asarray(which, dtype=np.int64)
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)

    def column(key, dtype=object):
        if not len(which):
            return np.zeros(0, dtype=dtype)
        return np.asarray([e[key] for e in exps], dtype=dtype)[which]

    table = pd.DataFrame({
        "id": column("id"), "study_id": column("study_id"),
        "contrast_id": column("contrast_id"),
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "sample_size": column("sample_size", float),
        "space": np.asarray(spaces, dtype=object), "source": np.asarray(sources, dtype=object),
    }, columns=COLUMNS)
    for key in extra:
        table[key] = column(key)
    return table


def _read_text(path):
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, None, "is a folder, not a file")
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise unreadable(exc, path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _split_study_contrast(info):
    """Study and contrast names from a Sleuth header, as NiMARE splits them.

    The split is at the first ``;`` or ``:`` after a four-digit year, else at
    the first ``;``, else the first ``:``; without any, the contrast is
    ``analysis_1``.
    """
    year = _YEAR.search(info)
    if year:
        sep = _SEPARATOR.search(info, year.end())
        if sep:
            cut = sep.start()
            return info[:cut].strip(), info[cut + 1:].strip()
    for char in ";:":
        if char in info:
            cut = info.index(char)
            return info[:cut].strip(), info[cut + 1:].strip()
    return info.strip(), "analysis_1"


def _parse_subjects(path, lineno, text):
    compact = _SPACE.sub("", text.lstrip("/"))
    match = _SUBJECTS_VALUE.fullmatch(compact)
    if not match:
        raise InputFileError(path, lineno, f"expected '// Subjects=N', got {text.strip()!r}")
    value = match.group(1)
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not number.is_integer() or number < 1:
        raise InputFileError(
            path, lineno, f"Subjects must be a positive whole number, got {value!r}"
        )
    return int(number)


def _experiment_of(path, header, seen):
    """``(id, study, contrast, n_subjects)`` of a complete header run.

    ``header`` is the run's ``(line number, text)`` pairs; ``seen`` maps the
    experiment ids read so far to their first line (updated here).
    """
    sub_no, sub_text = header[-1]
    if "subjects" not in sub_text.lower():
        raise InputFileError(path, sub_no, "the header of an experiment must end with "
                             f"'// Subjects=N', got {sub_text!r}")
    n_subjects = _parse_subjects(path, sub_no, sub_text)
    info = " ".join(text.lstrip("/").strip() for _, text in header[:-1])
    if not info:
        raise InputFileError(path, sub_no, "experiment has no name line before Subjects")
    study, contrast = _split_study_contrast(info)
    exp_id = f"{study}-{contrast}"
    if exp_id in seen:
        raise InputFileError(path, header[0][0], f"experiment {exp_id!r} repeats the "
                             f"one starting on line {seen[exp_id]}")
    seen[exp_id] = header[0][0]
    return exp_id, study, contrast, n_subjects


def _check_no_empty_experiment(path, header):
    """Raise if a header run holds a whole experiment before its last one.

    An experiment without foci leaves its header lines (ending with
    ``// Subjects=N``) directly before the next experiment's: read as one run,
    they would merge the two.
    """
    for k, (lineno, text) in enumerate(header[:-1]):
        if _SUBJECTS.match(text):
            info = " ".join(t.lstrip("/").strip() for _, t in header[:k])
            name = repr("-".join(_split_study_contrast(info))) if info else "without a name"
            raise InputFileError(
                path, header[0][0], f"experiment {name} has no foci: its '// Subjects' line "
                f"(line {lineno}) is followed by the header of another experiment "
                f"(line {header[k + 1][0]}); give its foci or remove it")


def read_sleuth(path):
    """Read a Sleuth (BrainMap/GingerALE) foci text file.

    Parameters
    ----------
    path : str or Path
        The text file. Line 1 is the reference line (``// Reference=MNI``,
        ``TAL`` or ``Talairach``); each experiment starts with a run of ``//``
        header lines whose last line is ``// Subjects=N``; the earlier header
        lines name the study and contrast; then one focus per line, three
        numbers separated by tabs or spaces. Blank lines are ignored; CRLF,
        CR and LF line ends are all accepted.

    Returns
    -------
    pandas.DataFrame
        Foci in the file's own space, with the canonical columns; ``space``
        tells which.

    Raises
    ------
    InputFileError
        Naming the file and line, for any deviation from the format (among
        them an experiment without foci, wherever it is in the file).

    Notes
    -----
    Time and memory are linear in the size of the file: a 50 MB file (150,000
    experiments) reads in seconds (``benchmarks/bench_sleuth_ingest.py``).
    """
    path = Path(path)
    text = _read_text(path)
    numbered = enumerate(_lines(text), 1)
    first_no, first = next(((n, line.strip()) for n, line in numbered if line.strip()),
                           (None, None))
    if first is None:
        raise InputFileError(path, None, "file is empty")
    ref = re.fullmatch(r"(?i)//\s*reference\s*=\s*(\S+)\s*", first)
    if not ref:
        raise InputFileError(path, first_no, "first line must be '// Reference=MNI' or "
                             f"'// Reference=Talairach', got {first!r}")
    space = _SPACES.get(ref.group(1).lower())
    if space is None:
        raise InputFileError(path, first_no, f"unknown reference space {ref.group(1)!r}; "
                             "expected MNI, TAL or Talairach")

    # the experiments (id, study, contrast, subjects) and the index of their
    # first focus; the foci's line numbers, and their fields as text, made
    # numbers a block at a time (and before a format error is raised, so that
    # the error reported is the first one in the file)
    experiments, firsts, seen = [], [], {}
    focus_lines, fields, blocks = array.array("q"), [], []
    header = []
    try:
        for lineno, line in numbered:
            parts = line.split()
            if not parts:
                continue
            if parts[0][:2] == "//":
                header.append((lineno, line.strip()))
                continue
            if header:
                _check_no_empty_experiment(path, header)
                experiments.append(_experiment_of(path, header, seen))
                firsts.append(len(focus_lines))
                header = []
            elif not experiments:
                raise InputFileError(path, lineno, "focus before any experiment header")
            if len(parts) != 3:
                raise InputFileError(path, lineno, f"expected 3 coordinates (x y z), "
                                     f"got {len(parts)} fields: {line.strip()!r}")
            fields += parts
            focus_lines.append(lineno)
            if len(fields) >= _BLOCK_FIELDS:
                blocks.append(_sleuth_coordinates(path, fields, focus_lines, text))
                fields = []
        if header:
            _check_no_empty_experiment(path, header)
            raise InputFileError(path, header[0][0],
                                 "experiment header without any focus after it")
    except InputFileError:
        _sleuth_coordinates(path, fields, focus_lines, text)  # an earlier bad focus first
        raise
    if not experiments:
        raise InputFileError(path, None, "no experiments found")
    blocks.append(_sleuth_coordinates(path, fields, focus_lines, text))
    xyz = np.concatenate(blocks)
    which = np.repeat(np.arange(len(experiments)), np.diff([*firsts, len(focus_lines)]))

    def column(k):
        return np.array([e[k] for e in experiments], dtype=object)[which]

    name = path.name
    return pd.DataFrame({
        "id": column(0), "study_id": column(1), "contrast_id": column(2),
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "sample_size": np.array([e[3] for e in experiments], dtype=np.int64)[which],
        "space": space, "source": [f"{name}:{n}" for n in focus_lines],
    }, columns=COLUMNS)


#: foci fields made numbers at a time by :func:`read_sleuth` (bounds its memory)
_BLOCK_FIELDS = 3 * 2**16
#: characters split into lines at a time by :func:`_lines`
_BLOCK_CHARS = 2**20


def _lines(text):
    """The lines of a text with CRLF, LF, CR (or LFCR) line ends, a block at a time."""
    if "\r" in text:
        if text.count("\r") != text.count("\r\n"):  # CR or LFCR line ends: rare
            yield from re.split(r"\r\n|\n\r|\n|\r", text)
            return
        text = text.replace("\r\n", "\n")
    start = 0
    while start < len(text):
        end = text.find("\n", start + _BLOCK_CHARS)
        end = len(text) if end < 0 else end
        yield from text[start:end].split("\n")
        start = end + 1


def _sleuth_coordinates(path, fields, focus_lines, text):
    """The last foci's fields as an (n, 3) float array; an error names the first bad line.

    ``fields`` holds three texts per focus, for the last ``len(fields) // 3``
    line numbers of ``focus_lines`` (1-based lines of ``text``).
    """
    try:
        xyz = np.array(fields, dtype=float).reshape(-1, 3)
    except ValueError:
        xyz = None
    if xyz is None or not np.isfinite(xyz).all():
        offset = len(focus_lines) - len(fields) // 3
        for k in range(len(fields) // 3):
            lineno = focus_lines[offset + k]
            try:
                values = [float(v) for v in fields[3 * k:3 * k + 3]]
            except ValueError:
                got = next(itertools.islice(_lines(text), lineno - 1, None)).strip()
                raise InputFileError(path, lineno, f"coordinates must be numbers, "
                                     f"got {got!r}") from None
            if not all(map(math.isfinite, values)):
                got = next(itertools.islice(_lines(text), lineno - 1, None)).strip()
                raise InputFileError(path, lineno, f"coordinates must be finite, got {got!r}")
    return xyz


def _space_of(label):
    """MNI or TAL from a space label; UNKNOWN (or none) is read as MNI, as Neurosynth does."""
    label = str(label).lower()
    if "tal" in label:
        return "TAL"
    if "mni" in label or "ale" in label or label in ("unknown", ""):
        return "MNI"
    return None


def read_nimare_json(path):
    """Read a NiMARE JSON dataset (``{study: {"contrasts": {contrast: ...}}}``).

    Each contrast with coordinates becomes one experiment; its sample size is
    the mean of ``metadata.sample_sizes`` (or ``metadata.sample_size``), and
    is left missing when absent or null, as NiMARE leaves it (an ALE analysis
    with a per-experiment kernel then stops when its MA maps are built,
    naming the contrast: see :func:`cbma.estimators.ma_maps`).

    Raises
    ------
    InputFileError
        Naming the file and the study and contrast, for invalid JSON, bad
        coordinates, an unknown space or a sample size that is not a number
        of subjects (0, negative, text, ...).
    """
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, None, "expected a JSON object of studies")
    rows = []
    for study, sdata in data.items():
        contrasts = sdata.get("contrasts") if isinstance(sdata, dict) else None
        if not isinstance(contrasts, dict):
            raise InputFileError(path, None, f"study {study!r} has no 'contrasts' object")
        for contrast, cdata in contrasts.items():
            where = f"study {study!r}, contrast {contrast!r}"
            if cdata is not None and not isinstance(cdata, dict):
                raise InputFileError(path, None, f"{where}: expected an object (with coords, "
                                     f"metadata), got {type(cdata).__name__}")
            coords = (cdata or {}).get("coords")
            if not coords:
                continue
            try:
                xyz = np.column_stack([np.asarray(coords[a], dtype=float) for a in "xyz"])
            except (KeyError, TypeError, ValueError):
                raise InputFileError(path, None, f"{where}: coords need numeric x, y and z "
                                     "lists of equal length") from None
            if not np.all(np.isfinite(xyz)):
                raise InputFileError(path, None, f"{where}: coordinates must be finite")
            space = _space_of(coords.get("space", ""))
            if space is None:
                raise InputFileError(path, None, f"{where}: unknown space "
                                     f"{coords.get('space')!r}; expected MNI or TAL")
            n = _nimare_sample_size(path, where, cdata.get("metadata"))
            for k, (x, y, z) in enumerate(xyz):
                rows.append((f"{study}-{contrast}", str(study), str(contrast), x, y, z, n,
                             space, f"{path.name}:{study}/{contrast}#{k + 1}"))
    if not rows:
        raise InputFileError(path, None, "no contrast with coordinates found")
    return pd.DataFrame(rows, columns=COLUMNS)


def _nimare_sample_size(path, where, meta):
    """A contrast's sample size: the mean of ``metadata.sample_sizes`` (or ``sample_size``).

    Missing (NaN) when the metadata has neither, or null, NaN or an empty
    list, as NiMARE reads it; any other value must be a number of subjects
    (at least 1) or a list of them.
    """
    if meta is None:
        return np.nan
    if not isinstance(meta, dict):
        raise InputFileError(path, None, f"{where}: metadata must be an object, "
                             f"got {type(meta).__name__}")
    key = "sample_sizes" if "sample_sizes" in meta else "sample_size"
    value = meta.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.nan
    values = value if isinstance(value, list) else [value]
    if not values:
        return np.nan
    for v in values:
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or v < 1):
            raise InputFileError(path, None, f"{where}: metadata.{key} must be a number of "
                                 f"subjects (at least 1) or a list of them, or null when "
                                 f"unknown; got {json.dumps(value)}")
    return float(np.mean(values))


def experiments_table(coordinates):
    """One row per experiment: ``id``, ``sample_size``, ``n_foci``, in first-seen order.

    ``sample_size`` is an experiment's first non-missing one (missing if it
    has none). Linear in the number of foci.
    """
    codes, uniques = pd.factorize(coordinates["id"], sort=False)
    n_exp = len(uniques)
    named = codes >= 0
    sizes = coordinates["sample_size"].to_numpy()
    rows = np.flatnonzero(named & pd.notna(sizes))[::-1]
    first = np.full(n_exp, -1)
    first[codes[rows]] = rows  # the smallest row of each experiment is assigned last
    sample_size = sizes[np.maximum(first, 0)]
    if not (first >= 0).all():
        sample_size = np.where(first >= 0, sample_size.astype(float), np.nan)
    return pd.DataFrame({
        "id": list(uniques),
        "sample_size": sample_size,
        "n_foci": np.bincount(codes[named], minlength=n_exp),
    })
