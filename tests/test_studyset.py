"""NIMADS studysets (JSON and parquet): what NiMARE 0.22.1 reads, the same ALE, one-line errors.

NiMARE's reading and ALE maps of the files in tests/data/nimads and
tests/data/studyset (and of the example in resources/data/nback_vs_flanker)
are in tests/fixtures/studyset/, made by tests/fixtures/make_studyset_fixtures.py.
"""

import io
import json
import lzma
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, MASK, REPO

from cbma import coordinates, dataset, estimators, selection, space, stats, studyset, text
from cbma.errors import CbmaError, InputFileError
from cbma.io import write_tsv

FIXTURES = REPO / "tests" / "fixtures" / "studyset"
MANIFEST = json.loads((FIXTURES / "reference.json").read_text())
CASES = MANIFEST["cases"]
NIMADS = DATA / "nimads"
SUBSET = DATA / "studyset" / "nback_flanker_subset"
EXAMPLE = REPO / "resources" / "data" / "nback_vs_flanker"


@pytest.fixture(scope="module")
def arrays():
    raw = lzma.decompress((FIXTURES / "reference.npz.xz").read_bytes())
    with np.load(io.BytesIO(raw)) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def nimads_files(tmp_path_factory):
    """tests/data/nimads/*.json.xz, decompressed."""
    folder = tmp_path_factory.mktemp("nimads")
    for path in NIMADS.glob("*.json.xz"):
        (folder / path.name.removesuffix(".xz")).write_bytes(lzma.decompress(path.read_bytes()))
    return folder


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


def _load(case, nimads_files, **kwargs):
    kind, rel = CASES[case]["kind"], CASES[case]["path"]
    if kind == "nimads":
        annotations = ([nimads_files / "nimads_annotation.json"] if case == "neurostore_nimads"
                       else [])
        return dataset.load_dataset(nimads_files / rel.split("/")[-1].removesuffix(".xz"),
                                    "nimads", annotations=annotations, **kwargs)
    return dataset.load_dataset(REPO / rel, "studyset_parquet", **kwargs)


def _by_focus(ids, xyz):
    """Foci keyed by (experiment, rank within it), NiMARE's and cbma's orders aside."""
    frame = pd.DataFrame(np.asarray(xyz, dtype=float), columns=list("xyz"))
    frame["id"] = np.asarray(ids, dtype=str)
    frame["k"] = frame.groupby("id").cumcount()
    return frame.set_index(["id", "k"]).sort_index()


# ------------------------------------------------------------------ parity ----

@pytest.mark.parametrize("case", ["nidm_pain", "neurostore_nimads", "sample_size_nimads",
                                  "nback_flanker_subset"])
def test_reads_the_experiments_foci_and_sample_sizes_nimare_reads(case, nimads_files, arrays):
    """Ids ``<study>-<analysis>``, every focus after the same Talairach conversion (TAL
    points, and points whose space is missing, OTHER or UNKNOWN, read as MNI), the same
    sample sizes (analysis' sample_sizes, its sample_size, then the study's; missing
    where NiMARE has none)."""
    ref = CASES[case]
    table, _, _ = _load(case, nimads_files)
    exps = coordinates.experiments_table(table)
    assert sorted(exps["id"]) == sorted(ref["ids"])
    assert len(table) == ref["n_foci"] == len(ref["foci_id"])
    ours = _by_focus(table["id"], table[["x", "y", "z"]])
    theirs = _by_focus(ref["foci_id"], arrays[f"{case}/xyz"])
    assert ours.index.equals(theirs.index)
    np.testing.assert_array_equal(ours.to_numpy(), theirs.to_numpy())
    sizes = exps.set_index("id")["sample_size"]
    expected = pd.Series(ref["sample_sizes"], index=ref["ids"], dtype=float)
    np.testing.assert_array_equal(sizes.loc[expected.index].to_numpy(), expected.to_numpy())


def test_spaces_are_converted_as_nimare_does(nimads_files):
    table, _, studies = _load("nback_flanker_subset", nimads_files)
    raw = pd.read_parquet(SUBSET / "coordinates.parquet")
    assert set(raw["space"]) == {"MNI", "TAL", "OTHER", "UNKNOWN"}
    assert (table["space"] == "TAL").sum() == (raw["space"] == "TAL").sum() > 0
    assert studies.attrs["unknown_space_labels"] == ["OTHER", "UNKNOWN"]
    assert studies.attrs["n_unknown_space_foci"] == raw["space"].isin(["OTHER", "UNKNOWN"]).sum()
    _, _, ns = _load("neurostore_nimads", nimads_files)
    assert ns.attrs["unknown_space_labels"] == ["(missing)"]  # NeuroStore leaves them empty


@pytest.mark.parametrize("case", ["nidm_pain", "nback_flanker_subset"])
def test_ale_map_is_nimare_s(case, nimads_files, arrays, mask):
    """The ALE of the studyset as NiMARE computes it (sample-size kernels for the pain
    studies; 20 subjects each for the NeuroStore analyses, which record almost none):
    the map (NiMARE's float32 on disk) at 16,000 voxels and its maximum, sum and support,
    and the approximate null at p = 0.05 ... 0.0001."""
    ref = CASES[case]
    table, _, _ = _load(case, nimads_files)
    kernel = {} if ref["ale_kernel"] == "sample_sizes" else {"sample_size": ref["ale_kernel"]}
    ma, ids, _ = estimators.ma_maps("ale", table, mask, kernel)
    assert len(ids) == ref["ale_n_experiments"]
    maps, null = estimators.get("ale").fit(ma)
    index = arrays[f"{case}/ale_index"]
    np.testing.assert_allclose(maps["stat"][index], arrays[f"{case}/ale_stat"], rtol=1e-6,
                               atol=1e-9)
    assert np.corrcoef(maps["stat"][index], arrays[f"{case}/ale_stat"])[0, 1] > 1 - 1e-12
    np.testing.assert_allclose(maps["z"][index], arrays[f"{case}/ale_z"], atol=0.01)
    summary = ref["ale_summary"]
    assert maps["stat"].max() == pytest.approx(summary["max_stat"], rel=1e-6)
    assert maps["stat"].sum() == pytest.approx(summary["sum_stat"], rel=1e-6)
    assert np.count_nonzero(maps["stat"]) == summary["n_nonzero"]
    for p, value in ref["ale_p_to_stat"].items():
        assert stats.null_threshold(float(p), *null) == pytest.approx(value, abs=1e-12)


def test_bundled_example_is_read_and_analysed_as_nimare_does(mask):
    """resources/data/nback_vs_flanker: the 9,492 foci NiMARE reads (sums after the
    conversion of its 1,159 Talairach foci), and the ALE of its 406 flanker analyses."""
    ref = CASES["nback_vs_flanker"]
    table, weights, _ = dataset.load_dataset(EXAMPLE, "studyset_parquet",
                                             labels=["comparison_task"])
    xyz = table[["x", "y", "z"]].to_numpy()
    assert len(table) == ref["foci_summary"]["n"] == 9492
    np.testing.assert_allclose(xyz.sum(axis=0), ref["foci_summary"]["sum"], rtol=1e-12)
    np.testing.assert_allclose(np.abs(xyz).sum(axis=0), ref["foci_summary"]["sum_abs"],
                               rtol=1e-12)
    flanker = selection.select_experiments({"expression": "flanker"}, table, weights)
    assert sorted(flanker) == sorted(ref["ale_ids"])
    ma, _, _ = estimators.ma_maps("ale", selection.selected_coordinates(table, flanker), mask,
                                  {"sample_size": 20})
    maps, null = estimators.get("ale").fit(ma)
    assert maps["stat"].max() == pytest.approx(ref["ale_summary"]["max_stat"], rel=1e-6)
    assert maps["stat"].sum() == pytest.approx(ref["ale_summary"]["sum_stat"], rel=1e-6)
    assert (maps["stat"] ** 2).sum() == pytest.approx(ref["ale_summary"]["sum_squares_stat"],
                                                      rel=1e-6)
    assert stats.null_threshold(0.001, *null) == pytest.approx(
        ref["ale_p_to_stat"]["0.001"], abs=1e-12)


# ---------------------------------------------------------- labels, texts ----

def test_annotation_notes_are_term_weights(nimads_files):
    """A boolean note (NeuroStore's include) weighs 1 when true; a separate annotation file's
    notes name their analyses by study and analysis id."""
    ref = CASES["neurostore_nimads"]["include"]
    _, weights, _ = _load("neurostore_nimads", nimads_files)
    assert list(weights.terms) == ["include"]
    column = np.asarray(weights.matrix[:, 0].todense()).ravel()
    got = dict(zip(weights.ids, column == 1, strict=True))
    assert got == ref
    # the notes the studyset file itself holds (inline, as NiMARE writes Neurosynth's)
    laird = nimads_files / "laird.json"
    doc = json.loads((nimads_files / "nidm_pain_studyset.json").read_text())
    doc["studies"][0]["analyses"][0]["annotations"] = {"Neurosynth_TFIDF__pain": 0.25,
                                                       "Neurosynth_TFIDF__heat": 0.0}
    laird.write_text(json.dumps(doc))
    _, weights, _ = dataset.load_dataset(laird, "nimads")
    assert sorted(weights.terms) == ["heat", "pain"]
    assert weights.matrix.sum() == 0.25


def test_text_labels_select_experiments(nimads_files):
    """labels: [comparison_task] turns the task label into the terms flanker and n-back."""
    table, weights, _ = _load("nback_flanker_subset", nimads_files, labels=["comparison_task"])
    assert sorted(weights.terms) == ["flanker", "n-back"]
    chosen = selection.select_experiments({"expression": "n-back"}, table, weights)
    expected = [i for i, task in CASES["nback_flanker_subset"]["comparison_task"].items()
                if task == "n-back"]
    assert sorted(chosen) == sorted(expected)
    both = selection.select_experiments({"expression": "flanker | n-back"}, table, weights)
    assert len(both) == len(coordinates.experiments_table(table))
    # a JSON list written as text gives one term per item
    _, weights, _ = _load("nback_flanker_subset", nimads_files,
                          labels=["TaskExtractor.fMRITasks[0].Domain"])
    assert "Attention" in set(weights.terms) and not any("[" in t for t in weights.terms)
    # by default, the annotation columns with numbers only (RestingState has none here)
    _, weights, _ = _load("nback_flanker_subset", nimads_files)
    assert list(weights.terms) == ["ParticipantDemographicsExtractor.groups[0].count"]


def test_titles_and_abstracts_feed_the_text_model(nimads_files, tmp_path):
    table, weights, studies = _load("nback_flanker_subset", nimads_files,
                                    labels=["comparison_task"])
    raw = pd.read_parquet(SUBSET / "studies.parquet").set_index("study_id")
    row = studies.iloc[0]
    assert row["title"] == " ".join(raw.loc[row["study_id"], "name"].split())
    assert row["abstract"] == " ".join(raw.loc[row["study_id"], "description"].split())
    assert row["abstract"] and row["journal"]
    write_tsv(studies, tmp_path / "studies.tsv")
    texts, vocabulary = text.study_texts(tmp_path / "studies.tsv", weights.ids, weights)
    assert texts[0].startswith(row["title"]) and row["abstract"] in texts[0]
    assert sorted(vocabulary) == ["flanker", "n-back"]


def test_ale_without_sample_sizes_stops_naming_study_and_analysis(nimads_files, mask):
    """MKDA needs no sample size; an ALE whose kernel follows them names the first
    analysis without one."""
    table, _, _ = _load("nback_flanker_subset", nimads_files)
    estimators.ma_maps("mkda", table, mask, {"r": 10, "value": 1})
    with pytest.raises(CbmaError) as err:
        estimators.ma_maps("ale", table, mask, {})
    first = table.iloc[0]
    msg = str(err.value)
    assert msg.startswith("coordinates.parquet: study ")
    assert f"study {first['study_id']!r}, contrast {first['contrast_id']!r} has no sample size" \
        in msg and "\n" not in msg


# ----------------------------------------------------------------- errors ----

def _nimads(tmp_path, doc):
    path = tmp_path / "studyset.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _study(points=None, metadata=None, sid="s1", aid="a1", **analysis):
    points = [{"coordinates": [1, 2, 3], "space": "MNI"}] if points is None else points
    return {"id": sid, "name": "A study", "metadata": metadata,
            "analyses": [{"id": aid, "points": points, **analysis}]}


@pytest.mark.parametrize("doc, words", [
    ("{not json", "line 1: invalid JSON"),
    ({"name": "x"}, "expected a NIMADS studyset"),
    ({"studies": [{"name": "no id", "analyses": []}]}, "studies[0] has no id"),
    ({"studies": [{"id": "s1", "analyses": [{"points": []}]}]}, "study 's1', analyses[0] has "
                                                                "no id"),
    ({"studies": [_study(points=[{"coordinates": [1, 2]}])]},
     "study 's1', analysis 'a1', points[0]: coordinates must be three finite numbers"),
    ({"studies": [_study(points=[{"coordinates": [1, "x", 3]}])]}, "points[0]: coordinates"),
    ({"studies": [_study(metadata={"sample_size": 0})]},
     "study 's1', analysis 'a1': sample_size must be a number of subjects"),
    ({"studies": [_study(metadata={"sample_size": "many"})]}, "sample_size must be a number"),
    ({"studies": [_study(metadata={"sample_size": 12}, aid="a1"),
                  ]}, None),
    ({"studies": [{"id": "s1", "analyses": [{"id": "a", "points": []}, {"id": "a"}]}]},
     "study 's1', analysis 'a' appears twice"),
    ({"studies": [{"id": "s1", "analyses": [{"id": "a", "points": []}]}]},
     "no analysis with points"),
    ({"studies": [_study(metadata=[1])]}, "study 's1': metadata must be an object"),
], ids=["json", "not a studyset", "study id", "analysis id", "two coordinates",
        "text coordinate", "zero subjects", "text subjects", "fine", "repeated analysis",
        "no foci", "bad metadata"])
def test_malformed_nimads_is_one_line_naming_study_and_analysis(tmp_path, doc, words):
    path = _nimads(tmp_path, doc)
    if words is None:
        table, _, _ = studyset.read_nimads(path)
        assert table["sample_size"].tolist() == [12.0]
        return
    with pytest.raises(InputFileError) as err:
        studyset.read_nimads(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and words in msg and "\n" not in msg


def test_nimads_sample_sizes_fall_back_to_the_study_and_labels_must_exist(tmp_path):
    def study(sid, study_meta, analysis_meta):
        return {"id": sid, "metadata": study_meta, "analyses": [
            {"id": "a", "metadata": analysis_meta,
             "points": [{"coordinates": [1, 2, 3], "space": "MNI"}]}]}

    doc = {"studies": [
        study("s1", {"sample_size": 30}, None),                       # the study's
        study("s2", {"sample_size": 99}, {"sample_sizes": [10, "20"]}),  # the analysis' mean
        study("s3", {"sample_size": 15, "sample_sizes": None}, {}),   # a null list is not given
        study("s4", None, {"sample_sizes": [12, None]}),              # nor is a list with a gap
        study("s5", "None", {"sample_size": "None"}),                 # NeuroStore's null
    ]}
    path = _nimads(tmp_path, doc)
    table, _, _ = studyset.read_nimads(path)
    sizes = coordinates.experiments_table(table).set_index("id")["sample_size"]
    assert sizes["s1-a"] == 30 and sizes["s2-a"] == 15 and sizes["s3-a"] == 15
    assert np.isnan(sizes["s4-a"]) and np.isnan(sizes["s5-a"])
    with pytest.raises(InputFileError, match=r"labels: no annotation key 'task' \(keys: none\)"):
        studyset.read_nimads(path, labels=["task"])


@pytest.fixture
def subset_copy(tmp_path):
    target = tmp_path / "studyset"
    shutil.copytree(SUBSET, target)
    return target


def _rewrite(folder, table, change):
    frame = pd.read_parquet(folder / f"{table}.parquet")
    frame = change(frame)
    frame.to_parquet(folder / f"{table}.parquet", index=False)


@pytest.mark.parametrize("table, change, words", [
    ("coordinates", lambda f: f.assign(x=f["x"].where(f.index != 4, np.nan)),
     "row 5: coordinate x must be a finite number"),
    ("coordinates", lambda f: f.assign(id=f["id"].where(f.index != 2, "nowhere")),
     "row 3: analysis 'nowhere' is not in analyses.parquet"),
    ("coordinates", lambda f: f.drop(columns="z"), "missing column z"),
    ("analyses", lambda f: pd.concat([f, f.iloc[[1]]], ignore_index=True),
     "row 30: analysis '2EbmXrALLcf5-ArwXrqTaz3Rv' repeats row 2"),
    ("analyses", lambda f: f.assign(study_id=f["study_id"].where(f.index != 0, "gone")),
     "row 1: study 'gone' of analysis"),
    ("analyses", lambda f: f.assign(id=f["id"].where(f.index != 6, None)), "row 7: no id"),
    ("metadata", lambda f: f.assign(sample_sizes=[[0]] * len(f)),
     "row 1 (analysis '25uKFzHufiGk-MwAgKDUaAoMn'): sample_sizes must be a number of "
     "subjects"),
], ids=["nan coordinate", "unknown analysis", "missing column", "repeated analysis",
        "unknown study", "no id", "zero subjects"])
def test_malformed_parquet_is_one_line_naming_table_and_row(subset_copy, table, change, words):
    _rewrite(subset_copy, table, change)
    with pytest.raises(InputFileError) as err:
        studyset.read_studyset_parquet(subset_copy)
    msg = str(err.value)
    assert "\n" not in msg and words in msg
    named = "metadata" if table == "metadata" else table
    assert msg.startswith(str(subset_copy / f"{named}.parquet")), msg


def test_parquet_folder_problems_are_one_line(subset_copy, tmp_path):
    (subset_copy / "studies.parquet").write_text("not parquet")
    with pytest.raises(InputFileError, match=r"studies.parquet: cannot read as a parquet table"):
        studyset.read_studyset_parquet(subset_copy)
    (subset_copy / "studies.parquet").unlink()
    with pytest.raises(InputFileError, match=r"studies.parquet: file not found"):
        studyset.read_studyset_parquet(subset_copy)
    with pytest.raises(InputFileError, match="folder not found"):
        studyset.read_studyset_parquet(tmp_path / "nowhere")
    with pytest.raises(InputFileError, match=r"annotations.parquet: labels: no annotation key "
                                             r"'task'"):
        studyset.read_studyset_parquet(SUBSET, labels=["task"])
    # the folder's studyset.json, given instead of the folder, is the same
    table, _, _ = studyset.read_studyset_parquet(SUBSET / "studyset.json")
    assert len(table) == CASES["nback_flanker_subset"]["n_foci"]


def test_load_dataset_dispatches_the_new_formats_and_their_options(nimads_files):
    nimads = nimads_files / "nimads_studyset.json"
    with pytest.raises(CbmaError, match="a studyset_parquet dataset is one folder"):
        dataset.load_dataset([SUBSET, SUBSET], "studyset_parquet")
    with pytest.raises(CbmaError, match="a sleuth dataset has no labels or subject-group"):
        dataset.load_dataset(REPO / "resources/data/semantic_knowledge_children.txt", "sleuth",
                             groups=["cohort"])
    with pytest.raises(CbmaError, match="annotations are for nimads datasets, not table"):
        dataset.load_dataset(nimads, "table", annotations=[nimads])
    # two NIMADS files are one dataset; their counts add up
    other = nimads_files / "other.json"
    doc = json.loads(nimads.read_text())
    for study in doc["studies"]:
        study["id"] = f"copy-{study['id']}"
    other.write_text(json.dumps(doc))
    table, weights, studies = dataset.load_dataset([nimads, other], "nimads")
    assert len(table) == 2 * CASES["neurostore_nimads"]["n_foci"]
    assert studies.attrs["n_unknown_space_foci"] == 2 * 210
    assert len(weights.ids) == 2 * len(CASES["neurostore_nimads"]["ids"])
    with pytest.raises(CbmaError, match="is also in"):
        dataset.load_dataset([nimads, nimads], "nimads")
    # a subject group for pooling, from the annotation notes
    table, _, _ = dataset.load_dataset(nimads, "nimads", groups=["include"],
                                       annotations=[nimads_files / "nimads_annotation.json"])
    assert set(table["group:include"]) == {"True"}
    with pytest.raises(InputFileError, match="no subject group 'cohort'"):
        dataset.load_dataset(nimads, "nimads", groups=["cohort"])
    table, _, _ = dataset.load_dataset(SUBSET, "studyset_parquet", groups=["comparison_task"])
    assert set(table["group:comparison_task"]) == {"flanker", "n-back"}
