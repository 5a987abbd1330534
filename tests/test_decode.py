"""Term association maps of a synthetic database, and decoding images against them."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import MASK

from cbma import chi2, decode, space, spheres
from cbma.errors import CbmaError

CENTRE = np.array([-40.0, -20.0, 50.0])  # left precentral gyrus, MNI mm
N_STUDIES = 400
R_MM = 6.0


def ma_maps(foci, mask, r=R_MM):
    """Binary MKDA maps (CSR, studies x in-mask voxels) of lists of voxel foci."""
    offsets = spheres.sphere_offsets(r, mask.voxel_size)
    column = np.full(mask.data.size, -1, dtype=np.int64)
    column[mask.flat_indices] = np.arange(mask.n_voxels)
    rows, cols = [], []
    for s, ijk in enumerate(foci):
        vox = (ijk[:, None, :] + offsets[None]).reshape(-1, 3)
        vox = vox[np.all((vox >= 0) & (vox < np.array(mask.shape)), axis=1)]
        col = column[np.ravel_multi_index(tuple(vox.T), mask.shape)]
        col = np.unique(col[col >= 0])
        rows.append(np.full(col.size, s))
        cols.append(col)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)),
                         shape=(len(foci), mask.n_voxels))


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


@pytest.fixture(scope="module")
def database(mask):
    """400 studies with random foci; "motor" studies add foci near CENTRE."""
    rng = np.random.default_rng(11)
    in_mask = np.argwhere(mask.data)
    centre_ijk = space.mm_to_vox(CENTRE, mask.affine)[0]
    terms = ["motor", "memory", "reward", "language", "face", "pain", "common",
             "everywhere", "nowhere", "threshold"]
    n_terms = len(terms)
    member = rng.random((N_STUDIES, n_terms)) < [0.2, 0.15, 0.1, 0.25, 0.05, 0.3, 0.7,
                                                 1.0, 0.0, 0.0]
    foci = []
    for s in range(N_STUDIES):
        ijk = in_mask[rng.integers(0, len(in_mask), rng.integers(4, 12))]
        if member[s, 0]:
            ijk = np.vstack([ijk, centre_ijk + rng.integers(-2, 3, (3, 3))])
        foci.append(ijk)
    ma = ma_maps(foci, mask)
    weights = np.where(member, rng.uniform(0.001, 0.4, member.shape), 0.0)
    # below the threshold: stored but not "having" the term; exactly at it: having it
    low = (~member) & (rng.random(member.shape) < 0.2)
    weights[low] = 0.0009
    weights[:5, terms.index("threshold")] = 0.001
    return ma, sp.csr_matrix(weights), np.array(terms), centre_ijk


def term_by_term(ma, weights, frequency_threshold=0.001):
    """One plain numpy association test per term."""
    w = weights.toarray()
    maps = np.zeros((w.shape[1], ma.shape[1]), dtype=np.float32)
    for t in range(w.shape[1]):
        sel = w[:, t] >= frequency_threshold
        n1, n2 = int(sel.sum()), int((~sel).sum())
        if n1 == 0 or n2 == 0:
            continue
        a = np.asarray(ma[np.flatnonzero(sel)].sum(axis=0)).ravel()
        b = np.asarray(ma[np.flatnonzero(~sel)].sum(axis=0)).ravel()
        maps[t] = chi2.association_test(a, b, n1, n2)[1].astype(np.float32)
    return maps


@pytest.fixture(scope="module")
def term_maps(database):
    ma, weights, terms, _ = database
    return decode.term_association_maps(ma, weights, terms, block=4)


def test_vectorised_pass_equals_term_by_term(database, term_maps):
    ma, weights, terms, _ = database
    maps, table = term_maps
    assert maps.dtype == np.float32 and maps.shape == (len(terms), ma.shape[1])
    expected = term_by_term(ma, weights)
    for t, term in enumerate(terms):
        np.testing.assert_array_equal(maps[t], expected[t], err_msg=term)
    assert list(table.columns) == decode.TERM_TABLE_COLUMNS
    w = weights.toarray()
    np.testing.assert_array_equal(table["n_studies"], (w >= 0.001).sum(axis=0))
    assert table.set_index("term").loc["threshold", "n_studies"] == 5
    assert table.loc[table["flagged"], "term"].tolist() == ["everywhere", "nowhere"]
    flagged = table["flagged"].to_numpy()
    assert not maps[flagged].any()
    np.testing.assert_array_equal(table["max_z"], maps.max(axis=1))
    # "common" (70 % of studies) goes through the complement branch
    assert table.set_index("term").loc["common", "n_studies"] > N_STUDIES // 2


def test_planted_term_peaks_at_its_centre(database, term_maps, mask):
    _, _, terms, _ = database
    maps, table = term_maps
    motor = maps[list(terms).index("motor")]
    peak = mask.flat_indices[np.argmax(motor)]
    peak_mm = space.vox_to_mm(np.unravel_index(peak, mask.shape), mask.affine)[0]
    assert np.linalg.norm(peak_mm - CENTRE) <= 10.0
    assert table.set_index("term").loc["motor", "max_z"] > 8


def gaussian_blob(mask, centre_mm, fwhm=12.0):
    ijk = np.column_stack(np.unravel_index(mask.flat_indices, mask.shape))
    xyz = space.vox_to_mm(ijk, mask.affine)
    sigma = fwhm / np.sqrt(8 * np.log(2))
    return np.exp(-((xyz - centre_mm) ** 2).sum(axis=1) / (2 * sigma**2))


def test_decoding_a_blob_ranks_the_planted_term_first(database, term_maps, mask):
    _, _, terms, _ = database
    maps, _ = term_maps
    blob = gaussian_blob(mask, CENTRE)
    other = gaussian_blob(mask, np.array([30.0, 40.0, 0.0]))
    wide = decode.decode([blob, other], maps, terms, names=["blob", "elsewhere"], block=3)
    assert wide.index.name == "term" and list(wide.columns) == ["blob", "elsewhere"]
    assert wide["blob"].idxmax() == "motor"
    # Pearson r as numpy computes it; constant (flagged) maps give NaN
    for t, term in enumerate(terms):
        if term in ("everywhere", "nowhere"):
            assert np.isnan(wide.loc[term, "blob"])
        else:
            expected = np.corrcoef(blob, maps[t].astype(np.float64))[0, 1]
            assert wide.loc[term, "blob"] == pytest.approx(expected, abs=1e-12)
    # same answer from a 2-D array, a dict and one 1-D array
    both = np.vstack([blob, other])
    pd.testing.assert_frame_equal(decode.decode(both, maps, terms, names=["blob", "elsewhere"]),
                                  wide, check_exact=False, rtol=1e-12)
    one = decode.decode({"blob": blob}, maps, terms)
    np.testing.assert_allclose(one["blob"], wide["blob"], rtol=1e-12)
    assert list(decode.decode(blob, maps, terms).columns) == ["image_0"]

    long = decode.decode_table(wide)
    assert list(long.columns) == decode.DECODE_TABLE_COLUMNS
    assert len(long) == 2 * len(terms)
    first = long[long["image"] == "blob"]
    assert first["rank"].tolist() == list(range(1, len(terms) + 1))
    assert first["term"].iloc[0] == "motor"
    assert first["r"].iloc[:-2].is_monotonic_decreasing
    assert first["term"].iloc[-2:].tolist() == ["everywhere", "nowhere"]  # NaN last
    assert len(decode.decode_table(wide, n_top=3)) == 6


def test_memmap_output_is_deterministic(database, term_maps, tmp_path):
    ma, weights, terms, _ = database
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    maps_a, table_a = decode.term_association_maps(ma, weights, terms, out=a, block=3)
    decode.term_association_maps(ma, weights, terms, out=b, block=64)
    assert a.read_bytes() == b.read_bytes()
    # nor on the thread count, the sparse format, or stored zeros
    c = tmp_path / "c.npy"
    with_zeros = ma.copy()
    with_zeros.data[:3] = 0.0  # stored but inactive
    trimmed = with_zeros.copy()
    trimmed.eliminate_zeros()
    decode.term_association_maps(trimmed, weights, terms, out=b, block=5)
    decode.term_association_maps(with_zeros.tocsc(), weights, terms, out=c, n_threads=1)
    assert b.read_bytes() == c.read_bytes()
    loaded = decode.load_term_maps(a, terms=terms)
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, term_maps[0])
    np.testing.assert_array_equal(maps_a, term_maps[0])
    pd.testing.assert_frame_equal(table_a, term_maps[1])
    with pytest.raises(CbmaError, match="3 terms"):
        decode.load_term_maps(a, terms=["x", "y", "z"])


def test_top_terms_figure_is_deterministic(database, term_maps, mask, tmp_path):
    _, _, terms, _ = database
    wide = decode.decode({"blob": gaussian_blob(mask, CENTRE)}, term_maps[0], terms)
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    decode.top_terms_figure(wide, one, n_top=5)
    decode.top_terms_figure(decode.decode_table(wide), two, n_top=5)
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert one.read_bytes() == two.read_bytes()


def test_load_image_masked(mask, tmp_path):
    blob = gaussian_blob(mask, CENTRE)
    path = tmp_path / "blob.nii.gz"
    nib.save(mask.to_image(blob), path)
    np.testing.assert_allclose(decode.load_image_masked(path, mask), blob, rtol=1e-6, atol=1e-30)

    # the same physical image in RAS orientation: refused, or resampled on request
    data = mask.unmask(blob)[::-1]
    ras = mask.affine @ np.array([[-1, 0, 0, mask.shape[0] - 1], [0, 1, 0, 0],
                                  [0, 0, 1, 0], [0, 0, 0, 1]])
    ras_path = tmp_path / "ras.nii.gz"
    nib.save(nib.Nifti1Image(data, ras), ras_path)
    with pytest.raises(CbmaError, match="ras.nii.gz: image grid"):
        decode.load_image_masked(ras_path, mask)
    np.testing.assert_allclose(decode.load_image_masked(ras_path, mask, resample=True), blob,
                               atol=1e-5)

    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), mask.affine), small)
    with pytest.raises(CbmaError, match=r"small.nii.gz: image grid \(shape \(10, 10, 10\)"):
        decode.load_image_masked(small, mask)

    flat = tmp_path / "flat.nii.gz"
    nib.save(mask.to_image(np.full(mask.n_voxels, 3.0)), flat)
    with pytest.raises(CbmaError, match="flat.nii.gz: image is constant"):
        decode.load_image_masked(flat, mask)

    with_nan = blob.copy()
    with_nan[:10] = np.nan
    nan_path = tmp_path / "nan.nii.gz"
    nib.save(mask.to_image(with_nan), nan_path)
    assert np.all(decode.load_image_masked(nan_path, mask)[:10] == 0)


def test_errors(database, term_maps):
    ma, weights, terms, _ = database
    maps, _ = term_maps
    n_vox = maps.shape[1]
    with pytest.raises(CbmaError, match="vocabulary is empty"):
        decode.term_association_maps(ma, weights[:, :0], [])
    with pytest.raises(CbmaError, match="400 studies .* MA maps have 399"):
        decode.term_association_maps(ma[:-1], weights, terms)
    with pytest.raises(CbmaError, match="10 columns but the vocabulary has 9"):
        decode.term_association_maps(ma, weights, terms[:-1])
    with pytest.raises(CbmaError, match="appears twice"):
        decode.term_association_maps(ma, weights, ["motor"] * len(terms))
    with pytest.raises(CbmaError, match="frequency_threshold must be positive"):
        decode.term_association_maps(ma, weights, terms, frequency_threshold=0)
    with pytest.raises(CbmaError, match="'image_0' is constant"):
        decode.decode(np.ones(n_vox), maps, terms)
    with pytest.raises(CbmaError, match="'short' has shape"):
        decode.decode({"short": np.arange(10.0)}, maps, terms)
    with pytest.raises(CbmaError, match="'bad' has NaN"):
        decode.decode({"bad": np.r_[np.nan, np.arange(n_vox - 1.0)]}, maps, terms)
    with pytest.raises(CbmaError, match="vocabulary is empty"):
        decode.decode(np.arange(n_vox, dtype=float), maps[:0], [])
    with pytest.raises(CbmaError, match="9 terms for 10 term maps"):
        decode.decode(np.arange(n_vox, dtype=float), maps, terms[:-1])
