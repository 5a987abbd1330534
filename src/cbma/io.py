"""Readers of foci files into one canonical coordinates table, and writers.

The canonical table has one row per focus, in MNI mm::

    id  study_id  contrast_id  x  y  z  sample_size  space  source

``id`` is the experiment (``"{study_id}-{contrast_id}"``, as NiMARE names it),
``space`` the space the focus was reported in (``MNI`` or ``TAL``; Talairach
foci are already converted), ``source`` the file and line it came from.
"""

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import CbmaError, InputFileError
from .space import tal2mni

COLUMNS = ["id", "study_id", "contrast_id", "x", "y", "z", "sample_size", "space", "source"]

_SPACES = {"mni": "MNI", "tal": "TAL", "talairach": "TAL"}
_YEAR = re.compile(r"(?:19|20)\d\d")


def _read_text(path):
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, None, "file not found")
    raw = path.read_bytes()
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
        sep = re.search(r"[;:]", info[year.end():])
        if sep:
            cut = year.end() + sep.start()
            return info[:cut].strip(), info[cut + 1:].strip()
    for char in ";:":
        if char in info:
            cut = info.index(char)
            return info[:cut].strip(), info[cut + 1:].strip()
    return info.strip(), "analysis_1"


def _parse_subjects(path, lineno, text):
    compact = re.sub(r"\s+", "", text.lstrip("/"))
    match = re.fullmatch(r"(?i)subjects=(.*)", compact)
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
        Naming the file and line, for any deviation from the format.
    """
    path = Path(path)
    lines = re.split(r"\r\n|\n\r|\n|\r", _read_text(path))
    numbered = [(n, line.rstrip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise InputFileError(path, None, "file is empty")
    first_no, first = numbered[0]
    ref = re.fullmatch(r"(?i)//\s*reference\s*=\s*(\S+)\s*", first)
    if not ref:
        raise InputFileError(path, first_no, "first line must be '// Reference=MNI' or "
                             f"'// Reference=Talairach', got {first.strip()!r}")
    space = _SPACES.get(ref.group(1).lower())
    if space is None:
        raise InputFileError(path, first_no, f"unknown reference space {ref.group(1)!r}; "
                             "expected MNI, TAL or Talairach")

    rows, seen = [], {}
    header, current = [], None
    for lineno, line in numbered[1:]:
        stripped = line.strip()
        if stripped.startswith("//"):
            header.append((lineno, stripped))
            continue
        if header:
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
            current = (exp_id, study, contrast, n_subjects)
            header = []
        if current is None:
            raise InputFileError(path, lineno, "focus before any experiment header")
        parts = stripped.split()
        if len(parts) != 3:
            raise InputFileError(path, lineno, f"expected 3 coordinates (x y z), "
                                 f"got {len(parts)} fields: {stripped!r}")
        try:
            xyz = [float(p) for p in parts]
        except ValueError:
            raise InputFileError(path, lineno, f"coordinates must be numbers, "
                                 f"got {stripped!r}") from None
        if not np.all(np.isfinite(xyz)):
            raise InputFileError(path, lineno, f"coordinates must be finite, got {stripped!r}")
        rows.append((*current[:3], *xyz, current[3], space, f"{path.name}:{lineno}"))
    if header:
        raise InputFileError(path, header[0][0], "experiment header without any focus after it")
    empty = [exp for exp in seen if exp not in {r[0] for r in rows}]
    if empty:
        raise InputFileError(path, seen[empty[0]], f"experiment {empty[0]!r} has no foci")
    if not rows:
        raise InputFileError(path, None, "no experiments found")
    return pd.DataFrame(rows, columns=COLUMNS)


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
    is left missing when absent.
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
            meta = cdata.get("metadata") or {}
            n = meta.get("sample_sizes", meta.get("sample_size"))
            try:
                n = float(np.mean(n)) if n is not None and np.size(n) else np.nan
            except (TypeError, ValueError):
                raise InputFileError(path, None, f"{where}: sample size must be a number, "
                                     f"got {n!r}") from None
            for k, (x, y, z) in enumerate(xyz):
                rows.append((f"{study}-{contrast}", str(study), str(contrast), x, y, z, n,
                             space, f"{path.name}:{study}/{contrast}#{k + 1}"))
    if not rows:
        raise InputFileError(path, None, "no contrast with coordinates found")
    return pd.DataFrame(rows, columns=COLUMNS)


READERS = {"sleuth": read_sleuth, "nimare_json": read_nimare_json}
#: formats whose files carry term weights (read by :mod:`cbma.neurosynth`)
TERM_FORMATS = ("neurosynth", "neurosynth_v7")


def read_dataset(paths, fmt, talairach_transform="icbm_other"):
    """Read one or more foci files into the canonical table in MNI space.

    Parameters
    ----------
    paths : str, Path or list of them
        The files of one dataset; experiments are concatenated in file order.
    fmt : {"sleuth", "nimare_json", "neurosynth", "neurosynth_v7"}
        File format.
    talairach_transform : str
        Lancaster variant used to bring Talairach foci to MNI
        (see :func:`cbma.space.tal2mni`).

    Returns
    -------
    pandas.DataFrame
        The canonical coordinates table (see the module docstring).
    """
    return load_dataset(paths, fmt, talairach_transform, terms=False)[0]


def load_dataset(paths, fmt, talairach_transform="icbm_other", features=None, terms=True):
    """Read a dataset: its foci in MNI space, its term weights and its studies.

    Parameters
    ----------
    paths : str, Path or list of them
        The files of one dataset (``sleuth``, ``nimare_json``: one or more
        files, experiments concatenated in file order; ``neurosynth``: the
        ``database.txt``; ``neurosynth_v7``: the release's folder).
    fmt : {"sleuth", "nimare_json", "neurosynth", "neurosynth_v7"}
        File format.
    talairach_transform : str
        Lancaster variant used to bring Talairach foci to MNI
        (see :func:`cbma.space.tal2mni`).
    features : str or Path, optional
        ``neurosynth`` only: the study x term weights (``features.txt``).
    terms : bool
        Read the term weights (False: the weights returned are empty).

    Returns
    -------
    table : pandas.DataFrame
        The canonical coordinates table (see the module docstring).
    weights : cbma.neurosynth.TermWeights
        Term weights of the experiments (no terms for formats without them).
    studies : pandas.DataFrame
        One row per experiment: ``id`` and what the files say of the study
        (title, authors, year, journal), where present.
    """
    from . import neurosynth

    known = [*READERS, *TERM_FORMATS]
    if fmt not in known:
        raise CbmaError(f"unknown dataset format {fmt!r}; expected one of {sorted(known)}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if fmt in TERM_FORMATS:
        if len(paths) != 1:
            raise CbmaError(f"a {fmt} dataset is one database (got {len(paths)} paths)")
        if fmt == "neurosynth":
            table, weights, studies = neurosynth.read_neurosynth(
                paths[0], features if terms else None)
        else:
            table, weights, studies = neurosynth.read_neurosynth_v7(paths[0])
        tables = [table]
    else:
        tables = [READERS[fmt](p) for p in paths]
        weights = studies = None
        if fmt == "nimare_json" and terms:
            labelled = [neurosynth.read_nimare_json_labels(p) for p in paths]
            weights, studies = _merge_labels(labelled)
    table = pd.concat(tables, ignore_index=True)
    first = {}
    for t, p in zip(tables, paths, strict=True):
        for exp in t["id"].unique():
            if exp in first:
                raise CbmaError(f"{p}: experiment {exp!r} is also in {first[exp]}; "
                                "experiment ids must be unique within a dataset")
            first[exp] = p
    tal = table["space"].eq("TAL").to_numpy()
    if tal.any():
        xyz = table.loc[tal, ["x", "y", "z"]].to_numpy()
        table.loc[tal, ["x", "y", "z"]] = tal2mni(xyz, talairach_transform)
    ids = experiments_table(table)["id"].to_numpy(dtype=str)
    if weights is None:
        weights = neurosynth.empty_term_weights(ids)
    if studies is None:
        studies = pd.DataFrame({"id": ids})
    return table, weights, studies


def _merge_labels(labelled):
    """Term weights and study texts of several NiMARE JSON files, as one."""
    import scipy.sparse as sp

    from .neurosynth import TermWeights

    parts = [item for item in labelled if item is not None]
    if not parts:
        return None, None
    weights = [w for w, _ in parts]
    terms = sorted({t for w in weights for t in w.terms})
    column = {t: j for j, t in enumerate(terms)}
    blocks = []
    for w in weights:
        remap = np.array([column[t] for t in w.terms], dtype=np.int64)
        coo = w.matrix.tocoo()
        blocks.append(sp.csr_matrix((coo.data, (coo.row, remap[coo.col])),
                                    shape=(w.matrix.shape[0], len(terms))))
    merged = TermWeights(sp.vstack(blocks).tocsr(), np.concatenate([w.ids for w in weights]),
                         np.asarray(terms))
    studies = pd.concat([s for _, s in parts], ignore_index=True)
    return merged, studies


def experiments_table(coordinates):
    """One row per experiment: ``id``, ``sample_size``, ``n_foci``, in first-seen order."""
    grouped = coordinates.groupby("id", sort=False)
    return pd.DataFrame({
        "id": list(grouped.groups),
        "sample_size": grouped["sample_size"].first().to_numpy(),
        "n_foci": grouped.size().to_numpy(),
    })


# --------------------------------------------------------------------------
# writers: deterministic bytes for the same content
# --------------------------------------------------------------------------

def write_tsv(table, path):
    """Write a table as TSV with floats in their shortest form that reads back exactly."""
    table.to_csv(path, sep="\t", index=False, lineterminator="\n")


def read_tsv(path):
    return pd.read_csv(path, sep="\t", keep_default_na=True)


def load_nifti(path):
    """Read a NIfTI image, with a one-line error if the file is not one."""
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as exc:
        raise InputFileError(path, None, f"cannot read as a NIfTI image ({exc})") from None


def save_nifti(img, path):
    """Write a NIfTI image; ``.nii.gz`` carries no timestamp (nibabel's gzip)."""
    img.to_filename(str(path))


#: zlib level of the ``.npz`` archives: 1 compresses sparse matrices about as well as
#: the default (6) at a few times the speed
ZIP_LEVEL = 1


def _zip_write(zf, name, array):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = ZIP_LEVEL  # read by ZipFile.open (Python 3.11-3.13)
    # streamed into the archive: no in-memory copy of a large array
    with zf.open(info, "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)


def save_arrays(path, **arrays):
    """Save named arrays to an ``.npz`` with fixed bytes for the same content.

    ``numpy.savez`` stamps the time into the zip; this does not. Arrays are
    streamed into the archive, so saving does not copy them.
    """
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            _zip_write(zf, f"{name}.npy", np.asarray(array))


def load_arrays(path):
    """The named arrays of an ``.npz``, with a one-line error for a bad file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputFileError(path, None, f"cannot read as an .npz archive ({exc})") from None


def save_sparse(path, matrix, **extra):
    """Save a CSR matrix (and extra named arrays) with :func:`save_arrays`."""
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    save_arrays(path, data=csr.data, indices=csr.indices, indptr=csr.indptr,
                shape=np.asarray(csr.shape, dtype=np.int64), **extra)


def load_sparse(path):
    """Load what :func:`save_sparse` wrote: ``(csr_matrix, dict of extra arrays)``."""
    arrays = load_arrays(path)
    shape = tuple(arrays.pop("shape"))
    csr = sp.csr_matrix((arrays.pop("data"), arrays.pop("indices"), arrays.pop("indptr")),
                        shape=shape)
    return csr, arrays


def save_named_maps(mask, maps, paths):
    """Write each ``<name>.nii.gz`` of ``paths`` from ``maps[name]`` (masked vectors).

    Paths of other kinds (sidecars) are skipped; a name missing from ``maps``
    is a programming error and raises ``KeyError``.
    """
    for path in paths:
        path = str(path)
        if path.endswith(".nii.gz"):
            name = path.rsplit("/", 1)[-1].removesuffix(".nii.gz")
            save_nifti(mask.to_image(maps[name]), path)
