"""Loading a dataset of any supported format: its foci, term weights and studies.

:func:`load_dataset` reads the files of one dataset with the reader of its
format (:mod:`cbma.coordinates` for Sleuth text and NiMARE JSON foci,
:mod:`cbma.neurosynth` for Neurosynth databases and NiMARE JSON labels,
:mod:`cbma.studyset` for NIMADS studysets in JSON and parquet,
:mod:`cbma.foci_table` for foci tables compiled by hand), brings Talairach
foci to MNI (:func:`cbma.space.tal2mni`) and checks the experiments across
files.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import neurosynth
from .coordinates import experiments_table, read_nimare_json, read_sleuth
from .errors import CbmaError
from .foci_table import read_foci_table
from .io import unreadable
from .space import tal2mni
from .studyset import read_nimads, read_studyset_parquet
from .term_weights import TermWeights, empty_term_weights

READERS = {"sleuth": read_sleuth, "nimare_json": read_nimare_json}
#: formats whose files carry term weights (read by :mod:`cbma.neurosynth`)
TERM_FORMATS = ("neurosynth", "neurosynth_v7")
#: formats whose readers take annotation labels and subject-group columns
#: (:mod:`cbma.studyset`, :mod:`cbma.foci_table`), and how many paths each takes
LABELLED_FORMATS = {"nimads": "files", "studyset_parquet": "folder", "table": "files"}


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


def load_dataset(paths, fmt, talairach_transform="icbm_other", features=None, terms=True,
                 annotations=(), labels=None, groups=()):
    """Read a dataset: its foci in MNI space, its term weights and its studies.

    Parameters
    ----------
    paths : str, Path or list of them
        The files of one dataset (``sleuth``, ``nimare_json``, ``nimads``,
        ``table``: one or more files, experiments concatenated in file order;
        ``neurosynth``: the ``database.txt``; ``neurosynth_v7`` and
        ``studyset_parquet``: the folder).
    fmt : {"sleuth", "nimare_json", "neurosynth", "neurosynth_v7", "nimads", \
"studyset_parquet", "table"}
        File format.
    talairach_transform : str
        Lancaster variant used to bring Talairach foci to MNI
        (see :func:`cbma.space.tal2mni`).
    features : str or Path, optional
        ``neurosynth`` only: the study x term weights (``features.txt``).
    terms : bool
        Read the term weights (False: the weights returned are empty).
    annotations : sequence of str or Path
        ``nimads`` only: annotation documents whose notes are added to the
        studyset's (see :func:`cbma.studyset.read_nimads`).
    labels : sequence of str, optional
        ``nimads``, ``studyset_parquet``, ``table``: the annotation keys (or
        columns) that become term weights; by default every key with numbers
        (table: none).
    groups : sequence of str
        ``nimads``, ``studyset_parquet``, ``table``: the keys (or columns)
        naming each experiment's subject group, kept as columns of the table
        for pooling (:mod:`cbma.pooling`).

    Returns
    -------
    table : pandas.DataFrame
        The canonical coordinates table (see the module docstring).
    weights : cbma.term_weights.TermWeights
        Term weights of the experiments (no terms for formats without them).
    studies : pandas.DataFrame
        One row per experiment: ``id`` and what the files say of the study
        (title, authors, year, journal), where present.

    Raises
    ------
    CbmaError
        One line naming the file: a malformed file (see the readers), one
        that cannot be read (``<file>: cannot read (permission denied)``),
        or an experiment id in two files.
    """
    known = [*READERS, *TERM_FORMATS, *LABELLED_FORMATS]
    if fmt not in known:
        raise CbmaError(f"unknown dataset format {fmt!r}; expected one of {sorted(known)}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if fmt not in LABELLED_FORMATS and (groups or labels is not None):
        raise CbmaError(f"a {fmt} dataset has no labels or subject-group columns (pool.column "
                        "and labels are for the nimads, studyset_parquet and table formats)")
    if annotations and fmt != "nimads":
        raise CbmaError(f"annotations are for nimads datasets, not {fmt}")
    try:
        if fmt in LABELLED_FORMATS:
            tables, weights, studies = _read_labelled(paths, fmt, terms, annotations, labels,
                                                      groups)
        else:
            tables, weights, studies = _read_files(paths, fmt, features, terms)
    except OSError as exc:
        raise unreadable(exc, paths[0]) from None
    table = pd.concat(tables, ignore_index=True)
    _check_unique_experiments(tables, paths)
    tal = table["space"].eq("TAL").to_numpy()
    if tal.any():
        xyz = table.loc[tal, ["x", "y", "z"]].to_numpy()
        table.loc[tal, ["x", "y", "z"]] = tal2mni(xyz, talairach_transform)
    ids = experiments_table(table)["id"].to_numpy(dtype=str)
    if weights is None:
        weights = empty_term_weights(ids)
    if studies is None:
        studies = pd.DataFrame({"id": ids})
    return table, weights, studies


def _check_unique_experiments(tables, paths):
    """Stop, naming both files, if an experiment id is in two files of a dataset."""
    first = {}
    for t, p in zip(tables, paths, strict=True):
        exps = t["id"].unique().tolist()
        if not first.keys().isdisjoint(exps):
            exp = next(e for e in exps if e in first)
            raise CbmaError(f"{p}: experiment {exp!r} is also in {first[exp]}; "
                            "experiment ids must be unique within a dataset")
        first.update(dict.fromkeys(exps, p))


def _read_files(paths, fmt, features, terms):
    """``(tables, weights, studies)`` of a dataset's files (None: no terms)."""
    if fmt in TERM_FORMATS:
        if len(paths) != 1:
            raise CbmaError(f"a {fmt} dataset is one database (got {len(paths)} paths)")
        if fmt == "neurosynth":
            table, weights, studies = neurosynth.read_neurosynth(
                paths[0], features if terms else None)
        else:
            table, weights, studies = neurosynth.read_neurosynth_v7(paths[0])
        return [table], weights, studies
    tables = [READERS[fmt](p) for p in paths]
    weights = studies = None
    if fmt == "nimare_json" and terms:
        labelled = [neurosynth.read_nimare_json_labels(p) for p in paths]
        weights, studies = _merge_labels(labelled)
    return tables, weights, studies


def _read_labelled(paths, fmt, terms, annotations, labels, groups):
    """``(tables, weights, studies)`` of a nimads, studyset_parquet or table dataset."""
    if LABELLED_FORMATS[fmt] == "folder" and len(paths) != 1:
        raise CbmaError(f"a {fmt} dataset is one folder (got {len(paths)} paths)")
    parts = []
    for path in paths:
        if fmt == "nimads":
            parts.append(read_nimads(path, annotations, labels, groups))
        elif fmt == "studyset_parquet":
            parts.append(read_studyset_parquet(path, labels, groups))
        else:
            parts.append(read_foci_table(path, labels, groups))
    tables = [t for t, _, _ in parts]
    _check_unique_experiments(tables, paths)
    weights, studies = _merge_labels([(w, s) for _, w, s in parts])
    studies.attrs = {}
    for _, _, s in parts:  # the readers' counts, summed over the files
        for key, value in s.attrs.items():
            if isinstance(value, list):
                studies.attrs[key] = sorted({*studies.attrs.get(key, []), *value})
            else:
                studies.attrs[key] = studies.attrs.get(key, 0) + value
    if not terms:
        weights = None
    return tables, weights, studies


def _merge_labels(labelled):
    """Term weights and study texts of several NiMARE JSON files, as one."""
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
