"""Neurosynth-style term databases: classic and v7 releases, NiMARE JSON labels, weight files."""

import gzip
import json
import lzma
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import DATA

from cbma import coordinates, dataset, io, neurosynth, term_weights, terms
from cbma.errors import CbmaError, InputFileError

V7 = DATA / "neurosynth_v7"
LAIRD_XZ = DATA / "nimare_json" / "neurosynth_laird_studies.json.xz"  # 3.3 MB as JSON
PAIN = DATA / "nimare_json" / "nidm_pain_dset.json"

DB_HEADER = "id\tdoi\tx\ty\tz\tspace\tpeak_id\ttable_id\ttable_num\ttitle\tauthors\tyear\tjournal"
DB_ROWS = [
    "101\t10.1/a\t-38\t-22\t56\tMNI\t1\t1\t1\tFinger tapping\tA B\t2001\tNeuroImage",
    "101\t10.1/a\t40.5\t-16\t12\tMNI\t2\t1\t1\tFinger tapping\tA B\t2001\tNeuroImage",
    "202\t\t10\t20\t30\tTAL\t3\t2\t1\tPain in the insula\tC D\t2002\tBrain",
    "",
    "303\t\t0\t0\t0\tUNKNOWN\t4\t3\t1\tNo features here\tE F\t2003\tCortex",
    "202\t\t12\t22\t-8\tTAL\t5\t2\t2\tPain in the insula\tC D\t2002\tBrain",
    "404\t\t-24\t-4\t-20\tt88\t6\t4\t1\tEmotion\tG H\t2004\tCortex",
]
FEATURES = [
    "pmid\tpain\tmotor\tworking memory",
    "202\t0.2\t0\t0",
    "101\t0\t0.15\t0.0005",
    "999\t0.3\t0.3\t0.3",   # a study without foci: dropped
    "404\t0.0\t0\t0.05",
]


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def laird(tmp_path_factory):
    """NiMARE's neurosynth_laird_studies.json, decompressed (stored xz-compressed)."""
    path = tmp_path_factory.mktemp("laird") / "neurosynth_laird_studies.json"
    path.write_bytes(lzma.decompress(LAIRD_XZ.read_bytes()))
    return path


@pytest.fixture
def classic(tmp_path):
    return write(tmp_path / "database.txt", [DB_HEADER, *DB_ROWS]), \
        write(tmp_path / "features.txt", FEATURES)


def raises_at(call, path, line, words):
    """Run ``call``; it must raise InputFileError naming ``path`` (and ``line``)."""
    with pytest.raises(InputFileError) as err:
        call()
    msg = str(err.value)
    where = f"{path}, line {line}: " if line is not None else f"{path}: "
    assert msg.startswith(where), msg
    assert words in msg and "\n" not in msg, msg


# ----------------------------------------------------------------------- classic


def test_classic_release_reads_foci_weights_and_studies(classic):
    database, features = classic
    table, weights, meta = neurosynth.read_neurosynth(database, features)
    assert list(table.columns) == coordinates.COLUMNS
    assert list(table["id"]) == ["101-1", "101-1", "202-1", "303-1", "202-1", "404-1"]
    assert list(table["study_id"].unique()) == ["101", "202", "303", "404"]
    assert set(table["contrast_id"]) == {"1"} and table["sample_size"].isna().all()
    # reported space kept (conversion happens in dataset.load_dataset); UNKNOWN read as MNI
    assert list(table["space"]) == ["MNI", "MNI", "TAL", "MNI", "TAL", "TAL"]
    assert table.loc[1, ["x", "y", "z"]].tolist() == [40.5, -16, 12]
    # the blank line 5 is skipped without shifting the line numbers
    assert list(table["source"]) == [f"database.txt:{n}" for n in (2, 3, 4, 6, 7, 8)]

    assert list(weights.ids) == ["101-1", "202-1", "303-1", "404-1"]
    assert list(weights.terms) == ["pain", "motor", "working memory"]
    dense = weights.matrix.toarray()
    np.testing.assert_array_equal(dense, [[0, 0.15, 0.0005], [0.2, 0, 0], [0, 0, 0],
                                          [0, 0, 0.05]])
    assert weights.matrix.nnz == 4 and weights.matrix.has_sorted_indices

    assert list(meta.columns) == neurosynth.METADATA_COLUMNS
    assert list(meta["id"]) == list(weights.ids)
    assert list(meta["title"]) == ["Finger tapping", "Pain in the insula", "No features here",
                                   "Emotion"]
    assert list(meta["doi"]) == ["10.1/a", "", "", ""]
    assert list(meta["year"]) == ["2001", "2002", "2003", "2004"]
    assert list(meta["space_label"]) == ["MNI", "TAL", "UNKNOWN", "t88"]
    assert meta.attrs == {"n_unknown_space_foci": 1, "unknown_space_labels": ["UNKNOWN"],
                          "n_features_only_studies": 1, "n_studies_without_features": 1,
                          "n_studies_with_abstract": 0}
    assert (meta["abstract"] == "").all()

    picked = terms.select("pain | motor", weights.for_select())
    assert list(picked) == ["101-1", "202-1"]
    assert list(terms.select("working memory", weights.for_select())) == ["404-1"]


def test_classic_release_through_load_dataset_converts_talairach(classic):
    database, features = classic
    table, weights, studies = dataset.load_dataset(database, "neurosynth", features=features)
    tal = table["space"].eq("TAL")
    from cbma.space import tal2mni
    np.testing.assert_allclose(table.loc[tal, ["x", "y", "z"]].to_numpy(),
                               tal2mni([[10, 20, 30], [12, 22, -8], [-24, -4, -20]]))
    assert len(weights.ids) == 4 and list(studies["id"]) == list(weights.ids)


def test_folder_gzip_and_no_features(tmp_path, classic):
    database, features = classic
    folder = tmp_path / "release"
    folder.mkdir()
    for src in (database, features):
        (folder / f"{src.name}.gz").write_bytes(gzip.compress(src.read_bytes(), mtime=0))
    table, weights, _ = neurosynth.read_neurosynth(folder)
    ref_table, ref_weights, _ = neurosynth.read_neurosynth(database, features)
    pd.testing.assert_frame_equal(table.drop(columns="source"),
                                  ref_table.drop(columns="source"))
    assert table["source"].iloc[0] == "database.txt.gz:2"
    assert (weights.matrix != ref_weights.matrix).nnz == 0
    _, bare, meta = neurosynth.read_neurosynth(database)
    assert bare.matrix.shape == (4, 0) and meta.attrs["n_studies_without_features"] == 0


ABSTRACTS = [
    "pmid\ttitle\tabstract\tkeywords",
    "404\tEmotion and fear\tFearful faces activated the amygdala.\tx",
    "",
    "999\tNo foci\tA study without foci: ignored.\t",
    "202\tNot this title\t  Noxious heat was painful.  \t",
]


def test_abstracts_next_to_the_database(tmp_path, classic):
    database, features = classic
    write(tmp_path / "abstracts.tsv", ABSTRACTS)
    table, weights, meta = neurosynth.read_neurosynth(database, features)
    assert list(meta["abstract"]) == ["", "Noxious heat was painful.", "",
                                      "Fearful faces activated the amygdala."]
    # database.txt's titles win; the abstracts' titles only fill blanks
    assert list(meta["title"]) == ["Finger tapping", "Pain in the insula", "No features here",
                                   "Emotion"]
    assert meta.attrs["n_studies_with_abstract"] == 2
    ref_table, ref_weights, _ = neurosynth.read_neurosynth(database, features, abstracts=False)
    pd.testing.assert_frame_equal(table, ref_table)
    assert (weights.matrix != ref_weights.matrix).nnz == 0
    # through load_dataset (what the workflow's ingest writes to studies.tsv)
    _, _, studies = dataset.load_dataset(database, "neurosynth", features=features)
    assert studies.loc[studies["id"] == "202-1", "abstract"].item() == "Noxious heat was painful."
    # a folder, gzipped, with an explicit file elsewhere, and a blank title filled
    folder = tmp_path / "release"
    folder.mkdir()
    untitled = [row.replace("\tEmotion\t", "\t\t") for row in [DB_HEADER, *DB_ROWS]]
    write(folder / "database.txt", untitled)
    (folder / "abstracts.tsv.gz").write_bytes(
        gzip.compress("\n".join(ABSTRACTS).encode(), mtime=0))
    _, _, meta = neurosynth.read_neurosynth(folder)
    assert meta.loc[3, "title"] == "Emotion and fear" and meta.attrs["n_studies_with_abstract"] == 2
    other = write(tmp_path / "other.tsv", ["id\tabstract", "101\tTapping fingers."])
    _, _, meta = neurosynth.read_neurosynth(folder / "database.txt", abstracts=other)
    assert list(meta["abstract"]) == ["Tapping fingers.", "", "", ""]
    assert meta.loc[3, "title"] == ""


@pytest.mark.parametrize("lines, line, words", [
    (["id\ttitle", "1\tA"], 1, "expected the columns id (or pmid) and abstract"),
    (["id\tabstract", "1\tA", "2\tB", "1\tC"], 4, "study 1 repeats line 2"),
    (["id\tabstract", "\tA"], 2, "missing study id"),
    (["id\tabstract", "1\tA\tB"], 2, "cannot parse"),
])
def test_abstract_errors_name_file_and_line(tmp_path, lines, line, words):
    database = write(tmp_path / "database.txt", ["id\tx\ty\tz\tspace", "1\t1\t2\t3\tMNI"])
    abstracts = write(tmp_path / "abstracts.tsv", lines)
    raises_at(lambda: neurosynth.read_neurosynth(database), abstracts, line, words)


def test_latin1_database_is_read(tmp_path):
    row = DB_ROWS[0].replace("A B", "Müller K")
    path = tmp_path / "database.txt"
    path.write_bytes(f"{DB_HEADER}\n{row}\n".encode("latin-1"))
    _, _, meta = neurosynth.read_neurosynth(path)
    assert meta["authors"].tolist() == ["Müller K"]


@pytest.mark.parametrize("which, lines, line, words", [
    ("db", [], None, "file is empty"),
    ("db", ["id\tx\ty\tz", "1\t1\t2\t3"], 1, "missing column space"),
    ("db", ["id\tx\ty\tspace", "1\t1\t2\tMNI"], 1, "missing column z"),
    ("db", ["id\tx\ty\tz\tspace"], None, "no foci"),
    ("db", ["id\tx\ty\tz\tspace", "1\t1\t2\t3\tMNI", "1\t1\tabc\t3\tMNI"], 3,
     "coordinate y must be a finite number, got 'abc'"),
    ("db", ["id\tx\ty\tz\tspace", "1\t1\t2\t3\tMNI", "1\t1\t2\tnan\tMNI"], 3, "coordinate z"),
    ("db", ["id\tx\ty\tz\tspace", "1\tinf\t2\t3\tMNI"], 2, "coordinate x"),
    ("db", ["id\tx\ty\tz\tspace", "1\t\t2\t3\tMNI"], 2, "coordinate x"),
    ("db", ["id\tx\ty\tz\tspace", "\t1\t2\t3\tMNI"], 2, "missing study id"),
    ("db", ["id\tx\ty\tz\tspace", "1\t1\t2\t3\tMNI", "1\t1\t2\t3\tMNI\textra"], 3,
     "Expected 5 fields"),
    ("features", [], None, "file is empty"),
    ("features", ["pmid\tpain\tmotor", "1\t0.1\t0", "2\t0\tx.5"], 3,
     "weight of term 'motor' must be a number, got 'x.5'"),
    ("features", ["pmid\tpain\tmotor", "1\t0.1\t"], 2, "weight of term 'motor'"),
    ("features", ["pmid\tpain\tmotor", "1\t0.1\tinf"], 2, "must be finite"),
    ("features", ["pmid\tpain\tmotor", "1\t0.1\t0\t0"], 2, "expected 2 weights"),
    ("features", ["pmid\tpain\tmotor", "1\t0.1"], 2, "expected 2 weights"),
    ("features", ["pmid\tpain\tmotor\tpain", "1\t0\t0\t0"], 1, "column 'pain' appears twice"),
    ("features", ["study\tpain", "1\t0"], 1, "first column must be 'pmid'"),
    ("features", ["pmid\tpain", "1\t0.1", "1\t0.2"], 3, "study 1 repeats line 2"),
])
def test_classic_release_errors_name_file_and_line(tmp_path, which, lines, line, words):
    database = tmp_path / "database.txt"
    features = tmp_path / "features.txt"
    write(database, ["id\tx\ty\tz\tspace", "1\t1\t2\t3\tMNI", "2\t1\t2\t3\tTAL"])
    target = database if which == "db" else features
    if lines:
        write(target, lines)
    else:
        target.write_bytes(b"")
    raises_at(lambda: neurosynth.read_neurosynth(database, features), target, line, words)


def test_missing_files(tmp_path, classic):
    database, _ = classic
    raises_at(lambda: neurosynth.read_neurosynth(tmp_path / "nope.txt"), tmp_path / "nope.txt",
              None, "file not found")
    raises_at(lambda: neurosynth.read_neurosynth(database, tmp_path / "f.txt"),
              tmp_path / "f.txt", None, "file not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    raises_at(lambda: neurosynth.read_neurosynth(empty), empty, None, "no database.txt")


# ---------------------------------------------------------------------------- v7


def test_v7_sample_reads_with_spaces_and_terms():
    table, weights, meta = neurosynth.read_neurosynth_v7(V7)
    assert list(table.columns) == coordinates.COLUMNS
    assert len(table) == 1420 and table["id"].nunique() == 20
    assert weights.matrix.shape == (20, 100) and len(meta) == 20
    raw_meta = pd.read_csv(V7 / "data-neurosynth_version-7_metadata.tsv.gz", sep="\t",
                           dtype=str)
    space = dict(zip(raw_meta["id"], raw_meta["space"], strict=True))
    by_study = table.groupby("study_id")["space"].agg(set)
    for study, spaces in by_study.items():
        assert spaces == {"TAL" if space[study] == "TAL" else "MNI"}
    assert sum(s == {"TAL"} for s in by_study) == 7
    unknown = [s for s in space if space[s] == "UNKNOWN"]
    assert meta.attrs["n_unknown_space_foci"] == int(table["study_id"].isin(unknown).sum()) > 0
    assert meta.attrs["unknown_space_labels"] == ["UNKNOWN"]
    assert list(weights.ids) == list(table["id"].unique()) == list(meta["id"])
    assert meta.set_index("study_id").loc["9065511", "title"].startswith(
        "Environmental knowledge")
    # rows follow the studies; weights as in the npz
    npz = sp.load_npz(V7 / "data-neurosynth_version-7_vocab-terms_source-abstract_type-tfidf_"
                      "features.npz").toarray()
    order = [list(raw_meta["id"]).index(s) for s in table["study_id"].unique()]
    np.testing.assert_array_equal(weights.matrix.toarray(), npz[order])
    assert "12 healthy" in weights.terms and "action observation" in weights.terms
    picked = terms.select("activations", weights.for_select())
    column = list(weights.terms).index("activations")
    assert len(picked) == int((npz[:, column] >= 0.001).sum()) > 0
    assert set(terms.select("12*", weights.for_select())) <= set(weights.ids)


def test_v7_errors(tmp_path):
    folder = tmp_path / "v7"
    shutil.copytree(V7, folder)
    vocab = folder / "data-neurosynth_version-7_vocab-terms_vocabulary.txt"
    text = vocab.read_text()
    vocab.write_text(text + "\nextra")
    raises_at(lambda: neurosynth.read_neurosynth_v7(folder), folder / vocab.name.replace(
        "vocabulary.txt", "source-abstract_type-tfidf_features.npz"), None,
        "has shape (20, 100), but")
    vocab.write_text(text.replace("acts", "able"))
    raises_at(lambda: neurosynth.read_neurosynth_v7(folder), vocab, 100, "'able' repeats")
    vocab.write_text(text)

    coords = folder / "data-neurosynth_version-7_coordinates.tsv.gz"
    raw = gzip.decompress(coords.read_bytes()).decode().splitlines()
    fields = raw[5].split("\t")
    fields[4] = "forty"  # x of the focus on line 6
    bad = [*raw[:5], "\t".join(fields), *raw[6:]]
    coords.write_bytes(gzip.compress(("\n".join(bad) + "\n").encode()))
    raises_at(lambda: neurosynth.read_neurosynth_v7(folder), coords, 6, "coordinate x")
    coords.write_bytes(gzip.compress(("\n".join(raw + ["123\t1\t1.\t1\t0\t0\t0"]) + "\n")
                                     .encode()))
    raises_at(lambda: neurosynth.read_neurosynth_v7(folder), coords, len(raw) + 1,
              "study 123 is not in data-neurosynth_version-7_metadata.tsv.gz")

    vocab.unlink()
    raises_at(lambda: neurosynth.read_neurosynth_v7(folder), folder, None,
              "no file ending in _vocab-terms_vocabulary.txt")
    raises_at(lambda: neurosynth.read_neurosynth_v7(tmp_path / "none"), tmp_path / "none",
              None, "folder not found")


# ------------------------------------------------------------------ NiMARE JSON


def test_laird_json_labels_strip_the_feature_group(laird):
    weights, meta = neurosynth.read_nimare_json_labels(laird)
    raw = json.loads(laird.read_text())
    assert list(weights.ids) == [f"{s}-{c}" for s, study in raw.items()
                                 for c, contrast in study["contrasts"].items()
                                 if contrast.get("coords")]  # as cbma.coordinates.read_nimare_json
    assert weights.matrix.shape == (17, 3228)
    assert not any("__" in t for t in weights.terms) and "pain" in weights.terms
    labels = raw["17029760"]["contrasts"]["1"]["labels"]
    row = list(weights.ids).index("17029760-1")
    for term in ("active", "addition", "aim"):
        col = list(weights.terms).index(term)
        assert weights.matrix[row, col] == labels[f"Neurosynth_TFIDF__{term}"] > 0
    nonzero = sum(v != 0 for v in labels.values())
    assert weights.matrix[row].nnz == nonzero
    assert list(meta.columns) == neurosynth.METADATA_COLUMNS and list(meta["id"]) == list(
        weights.ids)
    first = meta.set_index("id").loc["17029760-1"]
    assert first["year"] == "2006" and first["space_label"] == "TAL"
    assert first["abstract"].startswith("Repetitive transcranial magnetic stimulation")
    assert len(terms.select("connectivity", weights.for_select())) == 11


def test_json_without_labels_gives_none():
    assert neurosynth.read_nimare_json_labels(PAIN) is None


def test_json_label_errors_and_prefix_collisions(tmp_path):
    def dataset(labels):
        return {"s1": {"contrasts": {"c1": {"coords": {"space": "MNI", "x": [1], "y": [2],
                                                       "z": [3]}, "labels": labels}}}}

    path = tmp_path / "d.json"
    path.write_text(json.dumps(dataset({"a__pain": 0.1, "b__pain": 0.2, "a__x": None})))
    weights, _ = neurosynth.read_nimare_json_labels(path)
    assert list(weights.terms) == ["a__pain", "b__pain", "a__x"]  # stripping would collide
    assert weights.matrix.toarray().tolist() == [[0.1, 0.2, 0.0]]
    path.write_text(json.dumps(dataset({"g__pain": "lots"})))
    raises_at(lambda: neurosynth.read_nimare_json_labels(path), path, None,
              "label 'g__pain' must be a number")
    path.write_text("{")
    raises_at(lambda: neurosynth.read_nimare_json_labels(path), path, 1, "invalid JSON")


# ---------------------------------------------------------------- weight files


def test_term_weights_round_trip_is_byte_identical(tmp_path, classic):
    _, weights, _ = neurosynth.read_neurosynth(*classic)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    term_weights.save_term_weights(weights, first)
    loaded = term_weights.load_term_weights(first)
    assert list(loaded.ids) == list(weights.ids) and list(loaded.terms) == list(weights.terms)
    assert loaded.ids.dtype.kind == "U" and loaded.matrix.dtype == np.float64
    assert (loaded.matrix != weights.matrix).nnz == 0
    term_weights.save_term_weights(loaded, second)
    assert first.read_bytes() == second.read_bytes()

    empty = term_weights.empty_term_weights(["a-1", "b-1"])
    term_weights.save_term_weights(empty, first)
    back = term_weights.load_term_weights(first)
    assert back.matrix.shape == (2, 0) and list(back.ids) == ["a-1", "b-1"]

    io.save_arrays(second, data=np.zeros(1))
    raises_at(lambda: term_weights.load_term_weights(second), second, None,
              "not a term-weight archive")


def test_term_weights_normalise_and_validate():
    matrix = sp.csr_matrix((np.array([0.5, 0.0, 0.2]), np.array([1, 0, 0]),
                            np.array([0, 2, 3])), shape=(2, 2))
    original = (matrix.data.copy(), matrix.indices.copy())
    weights = term_weights.TermWeights(matrix, [1, 2], ["a", "b"])
    assert weights.matrix.has_sorted_indices and weights.matrix.nnz == 2
    assert list(weights.ids) == ["1", "2"] and weights.terms.dtype.kind == "U"
    np.testing.assert_array_equal(matrix.data, original[0])      # the input is untouched
    np.testing.assert_array_equal(matrix.indices, original[1])
    single = term_weights.TermWeights(matrix.astype(np.float32), [1, 2], ["a", "b"])
    assert single.matrix.dtype == np.float32
    with pytest.raises(CbmaError, match="does not match"):
        term_weights.TermWeights(matrix, ["1"], ["a", "b"])
    with pytest.raises(CbmaError, match="experiment id '1' repeats"):
        term_weights.TermWeights(matrix, ["1", "1"], ["a", "b"])


def test_align_term_weights_reorders_rows_and_zero_fills(classic):
    _, weights, _ = neurosynth.read_neurosynth(*classic)
    aligned = term_weights.align_term_weights(weights, ["404-1", "new-1", "101-1"])
    assert list(aligned.ids) == ["404-1", "new-1", "101-1"]
    assert list(aligned.terms) == list(weights.terms)
    dense = weights.matrix.toarray()
    np.testing.assert_array_equal(aligned.matrix.toarray(), [dense[3], [0, 0, 0], dense[0]])
    assert aligned.matrix.nnz == 3
