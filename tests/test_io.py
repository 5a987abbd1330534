"""Ingest: Sleuth and NiMARE JSON readers, Talairach conversion, voxel rounding."""

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, KNOWLEDGE, MASK, RELATED, SLEUTH
from fixtures.reference import nimare_file

from cbma import coordinates, dataset, estimators, io, space
from cbma.errors import CbmaError, InputFileError


def test_bundled_sleuth_files_have_the_published_counts():
    know = coordinates.read_sleuth(KNOWLEDGE)
    rel = coordinates.read_sleuth(RELATED)
    assert (know["id"].nunique(), len(know)) == (21, 262)
    assert (rel["id"].nunique(), len(rel)) == (16, 201)
    assert set(know["space"]) == {"MNI"}


@pytest.mark.parametrize("name", ["knowledge", "related"])
def test_sleuth_reader_matches_nimare_coordinates(name):
    path = KNOWLEDGE if name == "knowledge" else RELATED
    ours = dataset.read_dataset(path, "sleuth")
    ref = pd.read_csv(nimare_file(f"data/{name}_coordinates.tsv"), sep="\t")
    assert list(ours["id"]) == list(ref["id"])
    np.testing.assert_array_equal(ours[["x", "y", "z"]].to_numpy(), ref[["x", "y", "z"]].to_numpy())
    sizes = pd.read_csv(nimare_file(f"data/{name}_sample_sizes.tsv"), sep="\t")
    exps = coordinates.experiments_table(ours).set_index("id").loc[sizes["id"]]
    np.testing.assert_array_equal(exps["sample_size"], sizes["sample_size"])
    np.testing.assert_array_equal(exps["n_foci"], sizes["n_foci"])


def test_header_runs_and_study_contrast_split():
    table = coordinates.read_sleuth(SLEUTH / "test_sleuth_file.txt")
    exps = coordinates.experiments_table(table)
    assert list(exps["id"]) == [
        "StudyName-ExperimentName",
        "StudyName2-ExperimentName",
        "StudyName3-ExperimentName StudyName3: ExperimentName2 StudyName3: ExperimentName3",
    ]
    assert list(exps["sample_size"]) == [50, 46, 20]
    assert list(exps["n_foci"]) == [4, 2, 1]


@pytest.mark.parametrize("name, line, words", [
    ("test_sleuth_file3.txt", 5, "must be numbers"),
    ("test_sleuth_file4.txt", 5, "expected 3 coordinates"),
    ("test_sleuth_file5.txt", 1, "unknown reference space 'Dog'"),
])
def test_malformed_shared_files_name_file_and_line(name, line, words):
    with pytest.raises(InputFileError) as err:
        coordinates.read_sleuth(SLEUTH / name)
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
        coordinates.read_sleuth(path)
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
        tables.append(coordinates.read_sleuth(path).drop(columns="source"))
    for t in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], t)
    t = tables[0]
    ids = list(coordinates.experiments_table(t)["id"])
    assert ids == ["Smith 2001-words > pictures", "Jones, 2003-faces"]
    assert t[["x", "y", "z"]].to_numpy().tolist()[1] == [-4, 5, 6.5]


def test_talairach_conversion_matches_nimare_values():
    mni = space.tal2mni([[0, 0, 0], [10, 20, 30]])
    np.testing.assert_allclose(mni, [[1.0782, 1.1682, -4.1780], [11.9328, 24.9503, 27.1588]],
                               atol=1e-4)
    spm = space.tal2mni([[0, 0, 0]], "icbm_spm")
    assert not np.allclose(spm, mni[:1], atol=1e-3)


def test_talairach_file_is_converted_on_read(tmp_path):
    tal = dataset.read_dataset(SLEUTH / "test_sleuth_file2.txt", "sleuth")
    assert set(tal["space"]) == {"TAL"}
    expected = space.tal2mni([[-18, -58, -24]])[0]
    np.testing.assert_allclose(tal.loc[0, ["x", "y", "z"]].to_numpy(dtype=float), expected)
    spm = dataset.read_dataset(SLEUTH / "test_sleuth_file2.txt", "sleuth", "icbm_spm")
    assert not np.allclose(spm[["x", "y", "z"]], tal[["x", "y", "z"]])


def test_duplicate_experiments_across_files_are_an_error(tmp_path):
    for name in "ab":
        (tmp_path / f"{name}.txt").write_text("// Reference=MNI\n// S: c\n// Subjects=5\n1 2 3\n")
    with pytest.raises(CbmaError, match="also in"):
        dataset.read_dataset([tmp_path / "a.txt", tmp_path / "b.txt"], "sleuth")


def test_nimare_json_reader():
    table = dataset.read_dataset(DATA / "nimare_json" / "nidm_pain_dset.json", "nimare_json")
    exps = coordinates.experiments_table(table)
    assert len(exps) == 21
    assert exps.loc[exps["id"] == "pain_01.nidm-1", "sample_size"].item() == 25
    assert (exps.loc[exps["id"] == "pain_01.nidm-1", "n_foci"].item()) == 16


def test_nimare_json_errors_name_the_contrast(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"s1": {"contrasts": {"c1": {"coords": {"space": "XYZ", '
                    '"x": [1], "y": [2], "z": [3]}}}}}')
    with pytest.raises(InputFileError, match="study 's1', contrast 'c1': unknown space"):
        coordinates.read_nimare_json(path)
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="line 1: invalid JSON"):
        coordinates.read_nimare_json(path)


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


# --------------------------------------------------------------------------
# issue 13: input that is lost, slow or ends in a traceback
# --------------------------------------------------------------------------

EMPTY_MIDDLE = ("// Reference=MNI\n// Smith, 2001: words\n// Subjects=12\n1 2 3\n\n"
                "// Jones, 2003: faces\n// Subjects=8\n\n"
                "// Lee, 2005: tools\n// Subjects=20\n4 5 6\n")


@pytest.mark.parametrize("body, line, name", [
    (EMPTY_MIDDLE, 6, "'Jones, 2003-faces'"),
    (EMPTY_MIDDLE.replace("\n\n", "\n"), 5, "'Jones, 2003-faces'"),   # no blank lines
    ("// Reference=MNI\n// A: b\n// Subjects=5\n1 2 3\n// Subjects=6\n// C: d\n"
     "// Subjects=7\n4 5 6\n", 5, "without a name"),
], ids=["blank lines", "no blank lines", "unnamed"])
def test_sleuth_experiment_without_foci_in_the_middle_is_an_error(tmp_path, body, line, name):
    path = tmp_path / "foci.txt"
    path.write_text(body)
    with pytest.raises(InputFileError) as err:
        coordinates.read_sleuth(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line {line}: experiment {name} has no foci")
    assert "\n" not in msg


def _sleuth_text(n_experiments, seed=0):
    rng = np.random.default_rng(seed)
    parts = ["// Reference=MNI\n"]
    for k in range(n_experiments):
        foci = rng.integers(-60, 60, size=(rng.integers(5, 31), 3))
        parts.append(f"// Author{k}, 2001: contrast {k}\n// Subjects={rng.integers(6, 60)}\n"
                     + "".join(f"{x}\t{y}\t{z}\n" for x, y, z in foci) + "\n")
    return "".join(parts)


def test_sleuth_reader_is_linear_in_the_number_of_experiments(tmp_path):
    import time

    path = tmp_path / "big.txt"
    path.write_text(_sleuth_text(4000))  # 1.2 MB; quadratic reading took ~10 s
    began = time.perf_counter()
    table = coordinates.read_sleuth(path)
    seconds = time.perf_counter() - began
    assert table["id"].nunique() == 4000
    assert seconds < 3.0, f"read 4,000 experiments in {seconds:.1f} s"


def _nimare_json(path, metadata, study="s1", contrast="c2"):
    import json

    data = {study: {"contrasts": {
        "c1": {"coords": {"space": "MNI", "x": [1], "y": [2], "z": [3]},
               "metadata": {"sample_sizes": [20]}},
        contrast: {"coords": {"space": "MNI", "x": [4, 5], "y": [6, 7], "z": [8, 9]},
                   "metadata": metadata},
    }}}
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("metadata, shown", [
    ({"sample_sizes": [0]}, "[0]"),
    ({"sample_sizes": -3}, "-3"),
    ({"sample_sizes": [20, 0]}, "[20, 0]"),
    ({"sample_sizes": 0.5}, "0.5"),
    ({"sample_sizes": True}, "true"),
    ({"sample_sizes": "25"}, '"25"'),
    ({"sample_sizes": [12, None]}, "[12, null]"),
    ({"sample_size": "twenty"}, '"twenty"'),
])
def test_nimare_json_bad_sample_size_names_the_contrast(tmp_path, metadata, shown):
    path = _nimare_json(tmp_path / "d.json", metadata)
    key = next(iter(metadata))
    with pytest.raises(InputFileError) as err:
        coordinates.read_nimare_json(path)
    assert str(err.value) == (
        f"{path}: study 's1', contrast 'c2': metadata.{key} must be a number of subjects "
        f"(at least 1) or a list of them, or null when unknown; got {shown}")


@pytest.mark.parametrize("metadata", [{}, None, {"sample_sizes": None}, {"sample_sizes": []}])
def test_nimare_json_missing_sample_size_is_legal_until_ale_needs_it(tmp_path, metadata):
    path = _nimare_json(tmp_path / "d.json", metadata)
    exps = coordinates.experiments_table(dataset.read_dataset(path, "nimare_json"))
    assert exps["sample_size"].tolist()[0] == 20 and np.isnan(exps["sample_size"][1])
    table = dataset.read_dataset(path, "nimare_json")
    mask = space.BrainMask(data=np.ones((12, 12, 12), dtype=bool), affine=np.eye(4))
    with pytest.raises(CbmaError) as err:   # what an ALE analysis of it asks for
        estimators.ma_maps("ale", table, mask, {})
    assert str(err.value) == (
        f"{path.name}: study 's1', contrast 'c2' has no sample size (1 of 2 experiments have "
        "none), which the ALE kernel needs: add the sample sizes, or give the analysis a "
        "kernel of its own (kernel: {fwhm: ...} or {sample_size: ...})")
    ma, ids, _ = estimators.ma_maps("ale", table, mask, {"fwhm": 8})  # a kernel of its own
    assert ma.shape[0] == 2 and list(ids) == ["s1-c1", "s1-c2"]
    assert estimators.ma_maps("mkda", table, mask, {"r": 4, "value": 1})[0].shape[0] == 2


def test_unreadable_file_is_one_line(tmp_path, monkeypatch):
    """The mapping of PermissionError, simulated: root (as in CI) reads any file."""
    import builtins
    from pathlib import Path

    sleuth = tmp_path / "foci.txt"
    sleuth.write_text("// Reference=MNI\n// A: b\n// Subjects=5\n1 2 3\n")
    database = KNOWLEDGE.parent / "synthetic_neurosynth" / "database.txt.gz"
    denied = {str(sleuth), str(database)}

    def deny(path):
        if str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))

    read_bytes, real_open = Path.read_bytes, builtins.open
    monkeypatch.setattr(Path, "read_bytes", lambda self: deny(self) or read_bytes(self))
    monkeypatch.setattr(builtins, "open",
                        lambda file, *a, **k: deny(file) or real_open(file, *a, **k))
    for path, fmt in ((sleuth, "sleuth"), (database, "neurosynth")):
        with pytest.raises(InputFileError) as err:
            dataset.load_dataset(path, fmt, terms=False)
        assert str(err.value) == f"{path}: cannot read (permission denied)"


def test_unreadable_file_is_one_line_for_real(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads files without read permission (the simulated test runs)")
    path = tmp_path / "foci.txt"
    path.write_text("// Reference=MNI\n// A: b\n// Subjects=5\n1 2 3\n")
    path.chmod(0)
    with pytest.raises(InputFileError, match="cannot read \\(permission denied\\)$"):
        coordinates.read_sleuth(path)


def test_folder_in_place_of_a_file(tmp_path):
    with pytest.raises(InputFileError) as err:
        coordinates.read_sleuth(tmp_path)
    assert str(err.value) == f"{tmp_path}: is a folder, not a file"


def _one_line_error(res):
    """The single ``cbma error:`` line of a failed run (and no traceback)."""
    text = res.stdout + res.stderr
    errors = [line for line in text.splitlines() if line.startswith("cbma error:")]
    assert res.returncode != 0 and len(errors) == 1 and "Traceback" not in text, text
    return errors[0].removeprefix("cbma error: ")


def _workflow(workdir, *args, deny=()):
    """Snakemake in ``workdir``; ``os.access`` refuses the paths in ``deny``, as it does
    for a user without the permission (root, as in CI, has them all)."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import os, runpy, sys\n"
            f"deny = {sorted(map(str, deny))!r}\n"
            "real = os.access\n"
            "os.access = lambda p, mode, *a, **k: (os.path.abspath(p) not in deny\n"
            "                                      and real(p, mode, *a, **k))\n"
            "sys.argv[0] = 'snakemake'\n"
            "runpy.run_module('snakemake', run_name='__main__', alter_sys=True)\n")
    cmd = [sys.executable, "-c", code, "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--cores", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _dataset_config(path, fmt, **analysis):
    return {"datasets": {"d": {"path": str(path), "format": fmt}},
            "analyses": {"a": {"dataset": "d", **analysis}}}


def test_ingest_errors_are_one_line_in_the_workflow(tmp_path):
    from conftest import write_config

    sleuth = tmp_path / "foci.txt"
    sleuth.write_text(EMPTY_MIDDLE)
    write_config(tmp_path, _dataset_config(sleuth, "sleuth"))
    res = _workflow(tmp_path, "results/datasets/d/coordinates.tsv")
    assert _one_line_error(res).startswith(
        f"{sleuth}, line 6: experiment 'Jones, 2003-faces' has no foci")
    # an ALE analysis with per-experiment kernels, a contrast without sample size
    nimare = _nimare_json(tmp_path / "d.json", {})
    write_config(tmp_path, _dataset_config(nimare, "nimare_json"))
    res = _workflow(tmp_path, "results/datasets/d/ma-ale.npz")
    assert _one_line_error(res).startswith(
        f"{nimare.name}: study 's1', contrast 'c2' has no sample size (1 of 2 experiments "
        "have none), which the ALE kernel needs")
    # MKDA needs no sample size: the same dataset gets its sphere maps
    write_config(tmp_path, _dataset_config(nimare, "nimare_json", estimator="mkda"))
    assert _workflow(tmp_path, "results/datasets/d/ma-mkda-r10.npz").returncode == 0


def test_unreadable_input_and_results_stop_before_anything_runs(tmp_path):
    from conftest import write_config

    sleuth = tmp_path / "foci.txt"
    sleuth.write_text("// Reference=MNI\n// A: b\n// Subjects=5\n1 2 3\n")
    write_config(tmp_path, _dataset_config(sleuth, "sleuth"))
    res = _workflow(tmp_path, "--dry-run", deny=[sleuth])
    assert _one_line_error(res) == (
        f"config: datasets.d.path: {sleuth}: cannot read (permission denied)")
    (tmp_path / "results").mkdir()
    res = _workflow(tmp_path, "--dry-run", deny=[tmp_path / "results"])
    assert _one_line_error(res) == (
        f"{tmp_path / 'results'}: cannot write (permission denied); cbma writes its results "
        "there")
    (tmp_path / "results").rmdir()
    res = _workflow(tmp_path, "--dry-run", deny=[tmp_path])
    assert _one_line_error(res) == (
        f"{tmp_path}: cannot write (permission denied); results/ goes there")
    # no simulation: a file where the results folder goes
    (tmp_path / "results").write_text("")
    res = _workflow(tmp_path, "--dry-run")
    assert _one_line_error(res) == (
        f"{tmp_path / 'results'}: not a folder; cbma writes its results there")


def test_neurosynth_dataset_for_an_ale_kernel_is_one_line():
    database = KNOWLEDGE.parent / "synthetic_neurosynth" / "database.txt.gz"
    table = dataset.load_dataset(database, "neurosynth", terms=False)[0]
    with pytest.raises(CbmaError) as err:
        estimators.ma_maps("ale", table, space.load_mask(MASK), {})
    assert str(err.value).startswith(f"{database.name}: study ")
    assert "has no sample size (1000 of 1000 experiments have none), which the ALE kernel " \
        "needs" in str(err.value)
