"""Ingest: Sleuth and NiMARE JSON readers, Talairach conversion, voxel rounding."""

import numpy as np
import pandas as pd
import pytest
from conftest import KNOWLEDGE, REFERENCE, RELATED, SHARED, SLEUTH, needs_shared

from cbma import io, space
from cbma.errors import CbmaError, InputFileError


def test_bundled_sleuth_files_have_the_published_counts():
    know = io.read_sleuth(KNOWLEDGE)
    rel = io.read_sleuth(RELATED)
    assert (know["id"].nunique(), len(know)) == (21, 262)
    assert (rel["id"].nunique(), len(rel)) == (16, 201)
    assert set(know["space"]) == {"MNI"}


@needs_shared
@pytest.mark.parametrize("name", ["knowledge", "related"])
def test_sleuth_reader_matches_nimare_coordinates(name):
    path = KNOWLEDGE if name == "knowledge" else RELATED
    ours = io.read_dataset(path, "sleuth")
    ref = pd.read_csv(REFERENCE / "data" / f"{name}_coordinates.tsv", sep="\t")
    assert list(ours["id"]) == list(ref["id"])
    np.testing.assert_array_equal(ours[["x", "y", "z"]].to_numpy(), ref[["x", "y", "z"]].to_numpy())
    sizes = pd.read_csv(REFERENCE / "data" / f"{name}_sample_sizes.tsv", sep="\t")
    exps = io.experiments_table(ours).set_index("id").loc[sizes["id"]]
    np.testing.assert_array_equal(exps["sample_size"], sizes["sample_size"])
    np.testing.assert_array_equal(exps["n_foci"], sizes["n_foci"])


@needs_shared
def test_header_runs_and_study_contrast_split():
    table = io.read_sleuth(SLEUTH / "test_sleuth_file.txt")
    exps = io.experiments_table(table)
    assert list(exps["id"]) == [
        "StudyName-ExperimentName",
        "StudyName2-ExperimentName",
        "StudyName3-ExperimentName StudyName3: ExperimentName2 StudyName3: ExperimentName3",
    ]
    assert list(exps["sample_size"]) == [50, 46, 20]
    assert list(exps["n_foci"]) == [4, 2, 1]


@needs_shared
@pytest.mark.parametrize("name, line, words", [
    ("test_sleuth_file3.txt", 5, "must be numbers"),
    ("test_sleuth_file4.txt", 5, "expected 3 coordinates"),
    ("test_sleuth_file5.txt", 1, "unknown reference space 'Dog'"),
])
def test_malformed_shared_files_name_file_and_line(name, line, words):
    with pytest.raises(InputFileError) as err:
        io.read_sleuth(SLEUTH / name)
    msg = str(err.value)
    assert msg.startswith(f"{SLEUTH / name}, line {line}: ")
    assert words in msg and "\n" not in msg


@pytest.mark.parametrize("body, line, words", [
    ("// A: b\n1 2 3\n", 2, "Subjects"),                        # no Subjects line
    ("// A: b\n// Subjects=ten\n1 2 3\n", 3, "whole number"),
    ("// A: b\n// Subjects=12.5\n1 2 3\n", 3, "whole number"),
    ("// A: b\n// Subjects=0\n1 2 3\n", 3, "whole number"),
    ("// A: b\n// Subjects=5\n1 2 3\n\n// A: b\n// Subjects=5\n1 2 3\n", 6, "repeats"),
    ("// A: b\n// Subjects=5\n", 2, "without any focus"),
    ("1 2 3\n", 2, "before any experiment"),
    ("// A: b\n// Subjects=5\n1 2 3 4\n", 4, "expected 3 coordinates"),
    ("// A: b\n// Subjects=5\n1 2 nan\n", 4, "finite"),
    ("// A: b\n// Subjects=5\n1 2 3\n// a comment\n4 5 6\n", 5, "Subjects"),
])
def test_malformed_sleuth_errors(tmp_path, body, line, words):
    path = tmp_path / "foci.txt"
    path.write_text("// Reference=MNI\n" + body)
    with pytest.raises(InputFileError) as err:
        io.read_sleuth(path)
    assert f"line {line}:" in str(err.value) and words in str(err.value)


def test_line_endings_separators_and_bom_do_not_matter(tmp_path):
    text = "// Reference = MNI\n// Smith 2001: words > pictures\n// Subjects = 12\n" \
           "1\t2\t3\n-4   5 6.5\n\n// Jones, 2003; faces\n//Subjects=8\n7 8 9\n"
    variants = {
        "lf": text.encode(),
        "crlf": text.replace("\n", "\r\n").encode(),
        "cr": text.replace("\n", "\r").encode(),
        "bom": b"\xef\xbb\xbf" + text.encode(),
    }
    tables = []
    for name, raw in variants.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes(raw)
        tables.append(io.read_sleuth(path).drop(columns="source"))
    for t in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], t)
    t = tables[0]
    ids = list(io.experiments_table(t)["id"])
    assert ids == ["Smith 2001-words > pictures", "Jones, 2003-faces"]
    assert t[["x", "y", "z"]].to_numpy().tolist()[1] == [-4, 5, 6.5]


def test_talairach_conversion_matches_nimare_values():
    mni = space.tal2mni([[0, 0, 0], [10, 20, 30]])
    np.testing.assert_allclose(mni, [[1.0782, 1.1682, -4.1780], [11.9328, 24.9503, 27.1588]],
                               atol=1e-4)
    spm = space.tal2mni([[0, 0, 0]], "icbm_spm")
    assert not np.allclose(spm, mni[:1], atol=1e-3)


@needs_shared
def test_talairach_file_is_converted_on_read(tmp_path):
    tal = io.read_dataset(SLEUTH / "test_sleuth_file2.txt", "sleuth")
    assert set(tal["space"]) == {"TAL"}
    expected = space.tal2mni([[-18, -58, -24]])[0]
    np.testing.assert_allclose(tal.loc[0, ["x", "y", "z"]].to_numpy(dtype=float), expected)
    spm = io.read_dataset(SLEUTH / "test_sleuth_file2.txt", "sleuth", "icbm_spm")
    assert not np.allclose(spm[["x", "y", "z"]], tal[["x", "y", "z"]])


def test_duplicate_experiments_across_files_are_an_error(tmp_path):
    for name in "ab":
        (tmp_path / f"{name}.txt").write_text("// Reference=MNI\n// S: c\n// Subjects=5\n1 2 3\n")
    with pytest.raises(CbmaError, match="also in"):
        io.read_dataset([tmp_path / "a.txt", tmp_path / "b.txt"], "sleuth")


@needs_shared
def test_nimare_json_reader():
    table = io.read_dataset(SHARED / "data" / "nimare_json" / "nidm_pain_dset.json", "nimare_json")
    exps = io.experiments_table(table)
    assert len(exps) == 21
    assert exps.loc[exps["id"] == "pain_01.nidm-1", "sample_size"].item() == 25
    assert (exps.loc[exps["id"] == "pain_01.nidm-1", "n_foci"].item()) == 16


def test_nimare_json_errors_name_the_contrast(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"s1": {"contrasts": {"c1": {"coords": {"space": "XYZ", '
                    '"x": [1], "y": [2], "z": [3]}}}}}')
    with pytest.raises(InputFileError, match="study 's1', contrast 'c1': unknown space"):
        io.read_nimare_json(path)
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="line 1: invalid JSON"):
        io.read_nimare_json(path)


def test_mm_to_vox_rounds_half_to_even():
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    ras[:3, 3] = [-90, -126, -72]
    ijk = space.mm_to_vox([[1, 3, 3], [3, 0, 0]], ras)
    assert ijk[0].tolist() == [46, 64, 38]
    assert ijk[1, 0] == 46


def test_sparse_files_are_byte_stable(tmp_path):
    import scipy.sparse as sp

    m = sp.random(5, 50, density=0.2, random_state=0, format="csr")
    io.save_sparse(tmp_path / "a.npz", m, ids=np.array(["x", "y", "z", "u", "v"]))
    io.save_sparse(tmp_path / "b.npz", m, ids=np.array(["x", "y", "z", "u", "v"]))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back, extra = io.load_sparse(tmp_path / "a.npz")
    assert (back != m).nnz == 0 and list(extra["ids"]) == ["x", "y", "z", "u", "v"]
