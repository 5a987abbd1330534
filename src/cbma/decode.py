"""Decoding brain images against per-term association maps (Neurosynth-style).

A database of studies (binary MKDA modeled-activation maps, studies x
in-mask voxels) and their term weights (tf-idf, studies x terms) give one
reverse-inference map per term: the association test of "studies with the
term" against "all other studies" (Neurosynth's ``association-test_z``,
NiMARE's ``z_desc-association``; Yarkoni et al. 2011). A user's image is then
decoded by its Pearson correlation, across voxels, with every term's map
(Neurosynth's ``Decoder(method="pearson")``, NiMARE's
``CorrelationDecoder``).

All the term maps come from one pass over the sparse study x voxel matrix,
never one meta-analysis per term: the per-voxel count of active studies is
computed once for the whole database, and, per term, the count among the
term's studies (or, when the term is in more than half of the studies, among
the other studies, which is cheaper) is summed from the studies' sparse rows
by a compiled kernel, several terms in parallel. The counts are integers, so
the maps do not depend on the order of summation, the block size or the
number of threads: the same database gives the same bytes.
"""

import mmap
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .chi2 import association_test
from .errors import CbmaError

__all__ = [
    "decode",
    "decode_table",
    "load_image_masked",
    "load_term_maps",
    "term_association_maps",
    "term_studies",
    "top_terms_figure",
]

TERM_TABLE_COLUMNS = ["term", "n_studies", "max_z", "min_z", "flagged"]
DECODE_TABLE_COLUMNS = ["image", "rank", "term", "r"]
# Elements (terms x voxels) given to one call of the association test: its
# float64 temporaries then stay at 512 kB each, cache-sized, and small enough
# that the allocator reuses their memory instead of asking the system for
# fresh pages for every array (which costs more than the arithmetic).
_STAT_CHUNK = 1 << 16


# --------------------------------------------------------------------------
# term maps
# --------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _active_counts(indptr, indices, n_voxels):
    """Number of studies active at each voxel (stored entries of the CSR rows)."""
    total = np.zeros(n_voxels, dtype=np.int32)
    for p in range(indptr[-1]):
        total[indices[p]] += 1
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _add_study(row, indptr, indices, s):
    for p in range(indptr[s], indptr[s + 1]):
        row[indices[p]] += 1


@numba.njit(cache=True, parallel=True)
def _term_counts(indptr, indices, study_ptr, study_idx, complement, first, total, counts):
    """Per-voxel count of active studies among each term's studies.

    Row ``t`` of ``counts`` is filled for term ``first + t``. The term's
    studies are ``study_idx[study_ptr[u]:study_ptr[u + 1]]`` (sorted); when
    ``complement[u]`` the other studies are summed instead and the count is
    ``total - theirs``. Terms run in parallel; each writes only its own row.
    """
    n_studies = indptr.size - 1
    for t in numba.prange(counts.shape[0]):
        u = first + t
        row = counts[t]
        row[:] = 0
        lo = study_ptr[u]
        hi = study_ptr[u + 1]
        if complement[u]:
            q = lo
            for s in range(n_studies):
                if q < hi and study_idx[q] == s:
                    q += 1
                    continue
                _add_study(row, indptr, indices, s)
            for v in range(row.size):
                row[v] = total[v] - row[v]
        else:
            for q in range(lo, hi):
                _add_study(row, indptr, indices, study_idx[q])


def term_studies(weights, frequency_threshold=0.001):
    """The studies that have each term: weight >= ``frequency_threshold``.

    Parameters
    ----------
    weights : scipy.sparse matrix or ndarray, shape (n_studies, n_terms)
        Term weights of the studies (e.g. tf-idf of their abstracts).
    frequency_threshold : float
        A study has a term when its weight is at least this (Neurosynth's and
        NiMARE's ``>= 0.001``). Must be positive, since absent (zero) weights
        never count.

    Returns
    -------
    ptr : ndarray of int64, shape (n_terms + 1,)
    studies : ndarray of int64
        The studies (row numbers, ascending) of term ``t`` are
        ``studies[ptr[t]:ptr[t + 1]]``.
    """
    if not frequency_threshold > 0:
        raise CbmaError(f"frequency_threshold must be positive, got {frequency_threshold!r}")
    csc = sp.csc_matrix(weights, copy=True)
    csc.sum_duplicates()
    csc.sort_indices()
    keep = csc.data >= frequency_threshold
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    ptr = kept_before[csc.indptr].astype(np.int64)
    return ptr, csc.indices[keep].astype(np.int64)


def _check_database(ma, weights, terms):
    if not sp.issparse(ma):
        raise CbmaError("the MA maps must be a scipy.sparse matrix (studies x voxels)")
    terms = np.asarray(terms, dtype=str)
    if terms.ndim != 1 or terms.size == 0:
        raise CbmaError("the vocabulary is empty: no term to map")
    if weights.shape[1] != terms.size:
        raise CbmaError(f"the term weights have {weights.shape[1]} columns but the vocabulary "
                        f"has {terms.size} terms")
    if weights.shape[0] != ma.shape[0]:
        raise CbmaError(f"the term weights have {weights.shape[0]} studies (rows) but the MA "
                        f"maps have {ma.shape[0]}; both must list the same studies in order")
    if ma.shape[0] < 2:
        raise CbmaError(f"the association test needs at least 2 studies, the database has "
                        f"{ma.shape[0]}")
    dup = pd.Index(terms).duplicated()
    if dup.any():
        raise CbmaError(f"term {terms[dup][0]!r} appears twice in the vocabulary")
    return terms


def term_association_maps(ma, weights, terms, frequency_threshold=0.001, out=None, block=32,
                          n_threads=None):
    """Association-test z map of every term, from one pass over the MA maps.

    For each term, the studies whose weight reaches ``frequency_threshold``
    (group 1, ``n1`` studies) are compared with all the other studies of the
    database (group 2, ``n2``) by the two-way chi-square test of
    :func:`cbma.chi2.association_test` at each voxel: ``a`` = group-1 studies
    active at the voxel, ``b`` = group-2 studies active there. The map is the
    signed ``z = sqrt(chi2) * sign(p(A|F) - p(A|U))``: Neurosynth's
    ``association-test_z`` (reverse inference) and NiMARE's
    ``z_desc-association`` of ``MKDAChi2``, without Neurosynth's cap of
    z at 33.11 and its FDR thresholding. Voxels that no study (or every
    study) activates get z = 0.

    A term that is in every study or in none has no second group: its map is
    all zeros and it is flagged in the table (NiMARE skips such terms).

    Parameters
    ----------
    ma : scipy.sparse matrix, shape (n_studies, n_voxels)
        Binary MKDA modeled-activation maps, one row per study, on the
        in-mask voxels (any nonzero entry counts as active). A CSR matrix
        without duplicate entries or stored zeros is used as it is, without a
        copy; others are converted first.
    weights : scipy.sparse matrix or ndarray, shape (n_studies, n_terms)
        Term weights of the same studies, in the same order.
    terms : sequence of str, length n_terms
        The vocabulary (column names of ``weights``), without repeats.
    frequency_threshold : float
        A study has a term when its weight is >= this (default 0.001).
    out : str or Path, optional
        A ``.npy`` file to write the maps to, block by block through a memory
        map, so memory holds one block at a time; the maps are returned
        memory-mapped read-only. Without it they are returned in memory
        (n_terms x n_voxels float32: 2.7 GB at Neurosynth's scale).
    block : int
        Terms computed together (a speed/memory setting; the results do not
        depend on it). Memory beyond the inputs is about ``8 * block *
        n_voxels`` bytes.
    n_threads : int, optional
        Threads for the counts and the statistic (default: numba's thread
        count, ``NUMBA_NUM_THREADS``). The results do not depend on it.

    Returns
    -------
    maps : ndarray or numpy.memmap of float32, shape (n_terms, n_voxels)
        Row ``t`` is the z map of ``terms[t]``.
    table : pandas.DataFrame
        One row per term, in vocabulary order: ``term``, ``n_studies``
        (studies with the term), ``max_z``, ``min_z`` and ``flagged`` (True
        when the term is in every study or in none).
    """
    terms = _check_database(ma, weights, terms)
    if int(block) < 1:
        raise CbmaError(f"block must be a positive number of terms, got {block!r}")
    block = int(block)
    ma = _canonical_csr(ma)
    n_studies, n_voxels = ma.shape
    n_terms = terms.size
    ptr, studies = term_studies(weights, frequency_threshold)
    n1 = np.diff(ptr)
    n2 = n_studies - n1
    flagged = (n1 == 0) | (n2 == 0)
    complement = n1 > n_studies // 2

    indptr = ma.indptr.astype(np.int64, copy=False)
    total = _active_counts(indptr, ma.indices, n_voxels)

    if out is None:
        maps = np.empty((n_terms, n_voxels), dtype=np.float32)
    else:
        head = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32,
                                         shape=(n_terms, n_voxels))
        offset = head.offset
        del head
    max_z = np.zeros(n_terms)
    min_z = np.zeros(n_terms)
    counts = np.empty((min(block, n_terms), n_voxels), dtype=np.int32)
    z = np.empty((min(block, n_terms), n_voxels), dtype=np.float32)
    n_threads = numba.get_num_threads() if n_threads is None else int(n_threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        with ThreadPoolExecutor(max(1, n_threads)) as pool:
            for first in range(0, n_terms, block):
                stop = min(first + block, n_terms)
                cnt, zb = counts[: stop - first], z[: stop - first]
                _term_counts(indptr, ma.indices, ptr, studies, complement, first, total, cnt)
                _block_statistic(pool, cnt, total, n1[first:stop], n2[first:stop],
                                 flagged[first:stop], zb)
                max_z[first:stop] = zb.max(axis=1)
                min_z[first:stop] = zb.min(axis=1)
                if out is None:
                    maps[first:stop] = zb
                else:
                    dest = np.memmap(out, dtype=np.float32, mode="r+", shape=zb.shape,
                                     offset=offset + first * n_voxels * 4)
                    dest[:] = zb
                    dest.flush()
                    del dest
    finally:
        numba.set_num_threads(previous)
    table = pd.DataFrame({"term": terms, "n_studies": n1, "max_z": max_z, "min_z": min_z,
                          "flagged": flagged})
    if out is not None:
        maps = load_term_maps(out)
    return maps, table


def _canonical_csr(ma):
    """CSR with sorted, unique, nonzero entries (a copy only when needed)."""
    ma = ma if ma.format == "csr" else sp.csr_matrix(ma)
    if not ma.has_canonical_format or (ma.data == 0).any():
        ma = ma.copy()
        ma.sum_duplicates()
        ma.eliminate_zeros()
    return ma


def _block_statistic(pool, counts, total, n1, n2, flagged, z):
    """Association z of a block of terms, by chunks of voxels run on ``pool``.

    Flagged terms (no second group, or no first) get 0 everywhere.
    """
    z[flagged] = 0.0
    rows = np.flatnonzero(~flagged)
    if rows.size == 0:
        return
    g1, g2 = n1[rows, None], n2[rows, None]
    width = max(1, _STAT_CHUNK // rows.size)

    def chunk(lo):
        hi = min(lo + width, total.size)
        a = counts[rows, lo:hi]
        z[rows, lo:hi] = association_test(a, total[lo:hi] - a, g1, g2)[1]

    list(pool.map(chunk, range(0, total.size, width)))


def load_term_maps(path, terms=None):
    """The term maps written by :func:`term_association_maps`, memory-mapped read-only.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file (float32, n_terms x n_voxels).
    terms : sequence of str, optional
        The vocabulary, to check it has one entry per map.
    """
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CbmaError(f"{path}: cannot read the term maps as a .npy array ({exc})") from None
    if maps.ndim != 2:
        raise CbmaError(f"{path}: expected a 2-D array of term maps, got shape {maps.shape}")
    if terms is not None and len(terms) != maps.shape[0]:
        raise CbmaError(f"{path}: {maps.shape[0]} term maps but {len(terms)} terms")
    return maps


# --------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------

def load_image_masked(path, mask, resample=False):
    """Read a 3-D statistical image and return its values on the mask's voxels.

    Parameters
    ----------
    path : str or Path
        A NIfTI image (a 4-D image with a single volume is accepted).
    mask : cbma.space.BrainMask
        The mask of the database (its grid is the term maps' grid).
    resample : bool
        If True, an image on another grid is resampled to the mask's grid
        (nilearn, continuous interpolation); by default it is an error.

    Returns
    -------
    ndarray of float64, shape (mask.n_voxels,)
        The image's values in the mask's voxel order. NaN voxels (SPM's "not
        estimated") are set to 0.

    Raises
    ------
    CbmaError
        Naming the file, when it cannot be read, is not on the mask's grid
        (shape or affine differ), has infinite values or is constant over the
        mask.
    """
    from .io import load_nifti

    img = load_nifti(path)
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise CbmaError(f"{path}: expected a 3-D image, got shape {img.shape}")
    same_grid = (tuple(img.shape) == tuple(mask.shape)
                 and np.allclose(img.affine, mask.affine, rtol=0, atol=1e-3))
    if not same_grid:
        if not resample:
            raise CbmaError(f"{path}: image grid (shape {tuple(img.shape)}, voxel size "
                            f"{_zooms(img.affine)} mm) differs from the mask's (shape "
                            f"{tuple(mask.shape)}, voxel size {_zooms(mask.affine)} mm, "
                            "same affine required); resample it to the mask first")
        import nibabel as nib
        from nilearn.image import resample_to_img

        target = nib.Nifti1Image(mask.data.astype(np.uint8), mask.affine)
        img = resample_to_img(img, target, interpolation="continuous", force_resample=True,
                              copy_header=True)
    values = mask.apply(np.asarray(img.dataobj, dtype=np.float64))
    if np.isinf(values).any():
        raise CbmaError(f"{path}: image has infinite values inside the mask")
    values = np.nan_to_num(values, nan=0.0)
    if values.size == 0 or np.all(values == values[0]):
        raise CbmaError(f"{path}: image is constant inside the mask; it cannot be decoded")
    return values


def _zooms(affine):
    return "x".join(f"{v:g}" for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def _as_images(images, names, n_voxels):
    """Images as a float64 (n_images, n_voxels) array, with their names."""
    if isinstance(images, dict):
        if names is not None:
            raise CbmaError("give image names either as the dict's keys or as names, not both")
        names = list(images)
        images = list(images.values())
    if isinstance(images, np.ndarray) and images.ndim == 1:
        images = images[None, :]
    if isinstance(images, np.ndarray):
        rows = list(images)
    else:
        rows = [np.asarray(x) for x in images]
    if not rows:
        raise CbmaError("no image to decode")
    names = [f"image_{i}" for i in range(len(rows))] if names is None else [str(n) for n in names]
    if len(names) != len(rows):
        raise CbmaError(f"{len(names)} image names for {len(rows)} images")
    if len(set(names)) != len(names):
        raise CbmaError("image names must be unique")
    for name, x in zip(names, rows, strict=True):
        if x.shape != (n_voxels,):
            raise CbmaError(f"image {name!r} has shape {x.shape}; the term maps have {n_voxels} "
                            "voxels (mask the image with the database's mask)")
    data = np.array(rows, dtype=np.float64)
    for name, x in zip(names, data, strict=True):
        if not np.isfinite(x).all():
            raise CbmaError(f"image {name!r} has NaN or infinite values")
        if np.all(x == x[0]):
            raise CbmaError(f"image {name!r} is constant; its correlation is undefined")
    return data, names


def _standardise(x):
    """Rows centred and scaled to unit Euclidean norm (zero-norm rows stay 0)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / norm[:, None], norm


def decode(images, term_maps, terms, names=None, block=32):
    """Pearson correlation of each image with each term map, across voxels.

    Neurosynth's ``Decoder.decode(method="pearson")`` and NiMARE's
    ``CorrelationDecoder.transform``: both the image and the term map are
    centred and scaled over the mask's voxels, and r is their mean product.
    The term maps are read in blocks of ``block`` rows, so a memory-mapped
    Neurosynth-scale set is never loaded at once (the pages of a read-only
    memory map are released after each block: resident memory stays at one
    block).

    Parameters
    ----------
    images : ndarray (n_images, n_voxels) or (n_voxels,), list of 1-D arrays, or dict
        Masked images (see :func:`load_image_masked`); a dict maps names to
        images.
    term_maps : ndarray or numpy.memmap, shape (n_terms, n_voxels)
        One map per term (see :func:`term_association_maps`).
    terms : sequence of str, length n_terms
        The terms, in the order of the maps.
    names : sequence of str, optional
        Image names (columns of the result); default ``image_0``, ``image_1``...
    block : int
        Term maps read at a time (memory setting).

    Returns
    -------
    pandas.DataFrame
        Rows = terms (index ``term``, vocabulary order), columns = images,
        values = Pearson r. A constant term map (e.g. the all-zero map of a
        flagged term) has no correlation: its r is NaN. Write it with
        ``cbma.io.write_tsv(table.reset_index(), path)`` to keep the terms.

    Raises
    ------
    CbmaError
        For an image with the wrong number of voxels, NaN or infinite values,
        or constant values, and for terms that do not match the maps.
    """
    if not hasattr(term_maps, "ndim"):
        term_maps = np.asarray(term_maps)
    if term_maps.ndim != 2:
        raise CbmaError(f"term maps must be a 2-D array (terms x voxels), got {term_maps.shape}")
    n_terms, n_voxels = term_maps.shape
    terms = [str(t) for t in terms]
    if len(terms) != n_terms:
        raise CbmaError(f"{len(terms)} terms for {n_terms} term maps")
    if n_terms == 0:
        raise CbmaError("the vocabulary is empty: no term map to decode with")
    data, names = _as_images(images, names, n_voxels)
    xs, _ = _standardise(data)
    r = np.empty((n_terms, len(names)))
    for lo in range(0, n_terms, int(block)):
        hi = min(lo + int(block), n_terms)
        ms, norm = _standardise(np.asarray(term_maps[lo:hi], dtype=np.float64))
        _release_pages(term_maps)
        rb = ms @ xs.T
        rb[norm == 0] = np.nan
        r[lo:hi] = np.clip(rb, -1.0, 1.0)
    return pd.DataFrame(r, index=pd.Index(terms, name="term"),
                        columns=pd.Index(names, name="image"))


def _release_pages(array):
    """Let go of the pages of a shared memory map that this process has read.

    They stay in the system's page cache; only this process's resident set
    shrinks. Private (copy-on-write) maps and plain arrays are left alone.
    """
    mapped = getattr(array, "_mmap", None)
    if mapped is None or getattr(array, "mode", "c") == "c" or not hasattr(mapped, "madvise"):
        return
    try:
        mapped.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError, AttributeError):
        pass


def decode_table(table, n_top=None):
    """The terms of each image ranked by r: a long table, best first.

    Parameters
    ----------
    table : pandas.DataFrame
        The wide result of :func:`decode` (terms x images).
    n_top : int, optional
        Keep only the first ``n_top`` terms of each image.

    Returns
    -------
    pandas.DataFrame
        Columns ``image``, ``rank`` (1 = highest r), ``term``, ``r``; images
        in the order of the wide table's columns, terms by decreasing r, ties
        in vocabulary order, NaN (constant term maps) last.
    """
    parts = []
    for name in table.columns:
        r = table[name].to_numpy(dtype=float)
        key = np.where(np.isnan(r), np.inf, -r)
        order = np.argsort(key, kind="stable")
        if n_top is not None:
            order = order[: int(n_top)]
        parts.append(pd.DataFrame({
            "image": str(name),
            "rank": np.arange(1, order.size + 1),
            "term": table.index.to_numpy()[order].astype(str),
            "r": r[order],
        }))
    return pd.concat(parts, ignore_index=True)[DECODE_TABLE_COLUMNS]


def top_terms_figure(table, path, n_top=10):
    """Horizontal bars of the ``n_top`` terms of each image, highest r on top.

    Parameters
    ----------
    table : pandas.DataFrame
        The wide result of :func:`decode`, or the long one of
        :func:`decode_table`.
    path : str or Path
        PNG to write (no timestamp: the same table gives the same bytes).
    n_top : int
        Terms shown per image.
    """
    from .figures import new_figure, save_figure

    if set(DECODE_TABLE_COLUMNS) <= set(table.columns):
        long = table
        images = list(dict.fromkeys(long["image"]))
    else:
        long = decode_table(table)
        images = [str(c) for c in table.columns]
    n_cols = min(len(images), 3)
    n_rows = -(-len(images) // n_cols)
    fig, axes = new_figure(n_rows, n_cols, squeeze=False,
                           figsize=(4.2 * n_cols, 0.32 * n_top * n_rows + 0.9 * n_rows))
    for ax, name in zip(axes.ravel(), images, strict=False):
        top = long[long["image"] == name].sort_values("rank").head(int(n_top))
        top = top[np.isfinite(top["r"].to_numpy(dtype=float))]
        y = np.arange(len(top))[::-1]
        r = top["r"].to_numpy(dtype=float)
        ax.barh(y, r, color=np.where(r >= 0, "#c0392b", "#2e6da4"), height=0.7)
        ax.set_yticks(y, top["term"].tolist(), fontsize=8)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlabel("Pearson r", fontsize=8)
        ax.set_title(str(name), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.ravel()[len(images):]:
        ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)
