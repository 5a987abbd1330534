"""Foci tables compiled by hand (TSV, CSV, .xlsx): forgiving headers, strict content."""

import numpy as np
import pandas as pd
import pytest
from conftest import KNOWLEDGE

from cbma import coordinates, dataset, foci_table, selection
from cbma.errors import InputFileError

openpyxl = pytest.importorskip("openpyxl")

HEADER = ["study", "experiment", "x", "y", "z", "space", "n"]
ROWS = [
    ["Smith 2001", "words > pictures", 1, 2, 3, "MNI", 12],
    ["Smith 2001", "words > pictures", -4, 5, 6.5, "MNI", 12],
    ["Smith 2001", "faces", 7, 8, 9, "MNI", 12],
    ["Jones 2003", "faces", 10, -20, 30, "TAL", ""],
]


def _write(path, header, rows, sep="\t"):
    lines = [sep.join(map(str, header))] + [sep.join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _xlsx(path, header, rows, title="Foci"):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    sheet.append(header)
    for row in rows:
        sheet.append([None if v == "" else v for v in row])
    book.save(path)
    return path


def test_tsv_csv_semicolons_and_xlsx_give_one_table(tmp_path):
    """Headers in any case, with spaces or other common names; the table is the same."""
    tables = [
        foci_table.read_foci_table(_write(tmp_path / "a.tsv", HEADER, ROWS))[0],
        foci_table.read_foci_table(_write(tmp_path / "b.csv", [" Study", "Contrast", "X ", "y",
                                                              "z", "Coordinate Space",
                                                              "Subjects"], ROWS, ","))[0],
        foci_table.read_foci_table(_write(tmp_path / "c.csv", ["STUDY", "EXPERIMENT", "x", "y",
                                                              "z", "space", "sample_size"],
                                          ROWS, ";"))[0],
        foci_table.read_foci_table(_xlsx(tmp_path / "d.xlsx", HEADER, ROWS))[0],
    ]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(tables[0].drop(columns="source"),
                                      t.drop(columns="source"))
    t = tables[0]
    assert list(coordinates.experiments_table(t)["id"]) == [
        "Smith 2001-words > pictures", "Smith 2001-faces", "Jones 2003-faces"]
    assert t["sample_size"].tolist()[:3] == [12, 12, 12] and np.isnan(t["sample_size"][3])
    assert t["space"].tolist() == ["MNI"] * 3 + ["TAL"]
    assert t["source"].tolist() == ["a.tsv:2", "a.tsv:3", "a.tsv:4", "a.tsv:5"]
    converted = dataset.read_dataset(tmp_path / "a.tsv", "table")
    assert not np.allclose(converted.loc[3, ["x", "y", "z"]].to_numpy(float), [10, -20, 30])


def test_the_bundled_sleuth_example_as_a_table_is_the_same_dataset(tmp_path):
    sleuth = dataset.read_dataset(KNOWLEDGE, "sleuth")
    rows = [[r.study_id, r.contrast_id, r.x, r.y, r.z, r.space, int(r.sample_size)]
            for r in sleuth.itertuples()]
    path = _xlsx(tmp_path / "knowledge.xlsx", HEADER, rows)
    table = dataset.read_dataset(path, "table")
    pd.testing.assert_frame_equal(table.drop(columns="source"), sleuth.drop(columns="source"))


def test_first_row_layout_and_tables_without_experiments(tmp_path):
    """A blank study continues the experiment above (JALE's layout); without an experiment
    column each study is one experiment, ``<study>-1``."""
    rows = [["Smith 2001", "a", 1, 2, 3, "MNI", 12], ["", "", 4, 5, 6, "", ""],
            ["", "b", 7, 8, 9, "", ""], ["Jones 2003", "c", 1, 1, 1, "TAL", 8]]
    table, _, _ = foci_table.read_foci_table(_write(tmp_path / "t.tsv", HEADER, rows))
    exps = coordinates.experiments_table(table)
    assert exps["id"].tolist() == ["Smith 2001-a", "Smith 2001-b", "Jones 2003-c"]
    assert exps["n_foci"].tolist() == [2, 1, 1] and exps["sample_size"].tolist() == [12, 12, 8]
    jale = [["Articles", "Subjects", "x", "y", "z", "CoordinateSpace", "Tags"],
            ["Smith 2001", 12, 1, 2, 3, "MNI", "reading"], ["", "", 4, 5, 6, "", ""]]
    table, _, _ = foci_table.read_foci_table(_xlsx(tmp_path / "jale.xlsx", jale[0], jale[1:]))
    assert table["id"].tolist() == ["Smith 2001-1"] * 2


def test_label_and_group_columns(tmp_path):
    header = [*HEADER, "Task", "cohort"]
    rows = [[*ROWS[0], "n-back", "A"], [*ROWS[1], "", "A"], [*ROWS[2], "flanker", "A"],
            [*ROWS[3], "n-back", "B"]]
    path = _write(tmp_path / "t.tsv", header, rows)
    table, weights, _ = foci_table.read_foci_table(path, labels=["task"], groups=["cohort"])
    assert sorted(weights.terms) == ["flanker", "n-back"]
    chosen = selection.select_experiments({"expression": "n-back"}, table, weights)
    assert list(chosen) == ["Smith 2001-words > pictures", "Jones 2003-faces"]
    assert table["group:cohort"].tolist() == ["A", "A", "A", "B"]
    _, weights, _ = foci_table.read_foci_table(path)  # no labels asked for: no terms
    assert len(weights.terms) == 0


@pytest.mark.parametrize("header, rows, line, words", [
    (HEADER[:-1], ROWS, 1, "missing column n; the header has"),
    (["study", "experiment", "x", "y", "space", "n"], ROWS, 1, "missing column z"),
    ([*HEADER, "Subjects"], [[*r, 1] for r in ROWS], 1, "are both the n column"),
    (HEADER, [["", "e", 1, 2, 3, "MNI", 10]], 2, "no study"),
    (HEADER, [ROWS[0], ["Lee 2005", "", 1, 2, 3, "MNI", 10]], 3, "no experiment for study"),
    (HEADER, [ROWS[0], ["Lee 2005", "e", 1, "two", 3, "MNI", 10]], 3,
     "y must be a finite number, got 'two'"),
    (HEADER, [["Lee 2005", "e", 1, 2, "nan", "MNI", 10]], 2, "z must be a finite number"),
    (HEADER, [["Lee 2005", "e", 1, 2, 3, "", 10]], 2, "no space"),
    (HEADER, [["Lee 2005", "e", 1, 2, 3, "Colin27", 10]], 2, "unknown space 'Colin27'"),
    (HEADER, [["Lee 2005", "e", 1, 2, 3, "MNI", 12.5]], 2, "n (subjects) must be a whole number"),
    (HEADER, [["Lee 2005", "e", 1, 2, 3, "MNI", 0]], 2, "n (subjects) must be a whole number"),
    (HEADER, [["Lee 2005", "e", 1, 2, 3, "MNI", 10], ["Lee 2005", "e", 1, 2, 3, "MNI", 11]], 3,
     "experiment 'Lee 2005-e' has n = 11 here and 10 on row 2"),
    (HEADER, [], 1, "no foci (only a header)"),
], ids=["no n", "no z", "two n", "blank study", "no experiment", "text y", "nan z", "no space",
        "unknown space", "fractional n", "zero n", "n differs", "no foci"])
def test_malformed_tables_are_one_line_naming_file_and_row(tmp_path, header, rows, line, words):
    path = _write(tmp_path / "foci.tsv", header, rows)
    with pytest.raises(InputFileError) as err:
        foci_table.read_foci_table(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line {line}: ") and words in msg and "\n" not in msg
    book = _xlsx(tmp_path / "foci.xlsx", header, rows, title="My foci")
    with pytest.raises(InputFileError) as err:
        foci_table.read_foci_table(book)
    msg = str(err.value)
    assert msg.startswith(f"{book}: sheet 'My foci', row {line}: ") and words in msg


def test_group_and_label_columns_are_checked(tmp_path):
    header = [*HEADER, "cohort"]
    path = _write(tmp_path / "t.tsv", header, [[*ROWS[0], "A"], [*ROWS[1], "B"]])
    with pytest.raises(InputFileError, match=r"line 3: experiment 'Smith 2001-words > pictures' "
                                             r"is in subject group 'B' here and 'A' on row 2"):
        foci_table.read_foci_table(path, groups=["cohort"])
    path = _write(tmp_path / "t.tsv", header, [[*ROWS[0], ""]])
    with pytest.raises(InputFileError, match="line 2: no subject group in column 'cohort'"):
        foci_table.read_foci_table(path, groups=["cohort"])
    with pytest.raises(InputFileError, match="line 1: labels: no column 'task' in the header"):
        foci_table.read_foci_table(path, labels=["task"])
    for bad, words in ((tmp_path / "none.tsv", "file not found"), (tmp_path, "is a folder")):
        with pytest.raises(InputFileError, match=words):
            foci_table.read_foci_table(bad)
    (tmp_path / "broken.xlsx").write_text("not a workbook")
    with pytest.raises(InputFileError, match="cannot read as an Excel workbook"):
        foci_table.read_foci_table(tmp_path / "broken.xlsx")
