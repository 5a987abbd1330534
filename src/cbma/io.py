"""Generic readers and writers: TSV tables, NIfTI images, ``.npz`` arrays and sparse matrices.

The writers give the same bytes for the same content (no timestamps), so
that a re-run's outputs compare equal to the last. Every reader fails with a
one-line :class:`~cbma.errors.InputFileError` naming the file.
"""

import zipfile

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputFileError


def unreadable(exc, path=None):
    """The one-line error for an :class:`OSError` met reading an input file.

    Parameters
    ----------
    exc : OSError
        The error (``PermissionError``, ``IsADirectoryError``, ...).
    path : str or Path, optional
        The file, when the error does not name it.

    Returns
    -------
    InputFileError
        ``<file>: cannot read (permission denied)``, or the system's reason.
    """
    if isinstance(exc, PermissionError):
        reason = "permission denied"
    else:  # e.g. "is a directory"; a bad gzip file has no errno but a message
        reason = exc.strerror.lower() if exc.strerror else str(exc) or type(exc).__name__
    return InputFileError(exc.filename or path, None, f"cannot read ({reason})")


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
