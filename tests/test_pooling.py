"""Within-group pooling (Turkeltaub et al. 2012): experiments of one subject group as one."""

import copy

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import KNOWLEDGE, MASK, REPO, smk, write_config

from cbma import coordinates, dataset, estimators, io, pooling, space
from cbma.config import load_config
from cbma.errors import CbmaError

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
#: experiments of the knowledge example made to share subjects: (rows, study)
GROUPS = {(0, 1, 2): "Group A", (5, 6): "Group B"}


def _grouped():
    """The knowledge example with experiments 0-2 and 5-6 given one study each."""
    table = dataset.read_dataset(KNOWLEDGE, "sleuth")
    exps = coordinates.experiments_table(table)["id"].tolist()
    study = {exps[k]: name for rows, name in GROUPS.items() for k in rows}
    table["study_id"] = [study.get(e, s) for e, s in zip(table["id"], table["study_id"],
                                                          strict=True)]
    return table


def _hand_merged_sleuth(table, path):
    """A Sleuth file in which each group's experiments are one, merged by hand.

    A merged experiment has the foci of its experiments, in order, and the smallest of
    their numbers of subjects; it stands where its first experiment stood.
    """
    exps = coordinates.experiments_table(table)
    lines = ["// Reference=MNI"]
    done = set()
    for exp in exps["id"]:
        study = table.loc[table["id"] == exp, "study_id"].iloc[0]
        members = [exp]
        if study in GROUPS.values():
            if study in done:
                continue
            done.add(study)
            members = table.loc[table["study_id"] == study, "id"].unique().tolist()
        n = min(exps.set_index("id").loc[members, "sample_size"])
        lines += [f"// {study}: merged by hand", f"// Subjects={int(n)}"]
        for member in members:
            foci = table.loc[table["id"] == member, ["x", "y", "z"]].to_numpy()
            lines += ["\t".join(f"{v:g}" for v in focus) for focus in foci]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def test_pooling_equals_an_ale_of_hand_merged_experiments(tmp_path):
    """The pooled experiment is the union of its foci with one kernel (the smallest sample
    size): its MA maps, ALE maps and null model are exactly those of experiments merged by
    hand in a Sleuth file."""
    mask = space.load_mask(MASK)
    table = _grouped()
    pooled, groups = pooling.pool_experiments(table, "study")
    merged = dataset.read_dataset(_hand_merged_sleuth(table, tmp_path / "merged.txt"), "sleuth")
    ma_pooled, ids, record = estimators.ma_maps("ale", pooled, mask, {})
    ma_merged, _, record_merged = estimators.ma_maps("ale", merged, mask, {})
    assert ma_pooled.shape[0] == 21 - 3
    assert (ma_pooled != ma_merged).nnz == 0
    np.testing.assert_array_equal(record["fwhm"], record_merged["fwhm"])
    (maps_p, null_p), (maps_m, null_m) = (estimators.get("ale").fit(m)
                                          for m in (ma_pooled, ma_merged))
    for key in maps_p:
        np.testing.assert_array_equal(maps_p[key], maps_m[key], err_msg=key)
    np.testing.assert_array_equal(null_p[1], null_m[1])
    exps_p, exps_m = (coordinates.experiments_table(t) for t in (pooled, merged))
    np.testing.assert_array_equal(exps_p[["sample_size", "n_foci"]].to_numpy(),
                                  exps_m[["sample_size", "n_foci"]].to_numpy())
    # the groups: which experiment went where; singletons keep their ids
    assert list(ids[:3]) == ["Group A", exps_p["id"][1], exps_p["id"][2]]
    assert groups["pooled"].value_counts()[["Group A", "Group B"]].tolist() == [3, 2]
    assert set(groups.loc[groups["pooled"] == "Group A", "experiment"]) == set(
        coordinates.experiments_table(table)["id"][:3])


def test_pool_by_a_subject_group_column_and_the_smallest_sample_size():
    table = pd.DataFrame({
        "id": ["s1-a", "s1-a", "s1-b", "s2-a", "s3-a"], "study_id": ["s1", "s1", "s1", "s2", "s3"],
        "contrast_id": ["a", "a", "b", "a", "a"], "x": [0.0, 1, 2, 3, 4], "y": 0.0, "z": 0.0,
        "sample_size": [20, 20, 18, np.nan, np.nan], "space": "MNI", "source": "f:1",
        "group:cohort": ["HCP", "HCP", "local", "HCP", "other"]})
    pooled, groups = pooling.pool_experiments(table, {"column": "cohort"})
    exps = coordinates.experiments_table(pooled).set_index("id")
    assert list(exps.index) == ["HCP", "s1-b", "s3-a"]  # across studies; singletons keep ids
    assert exps.loc["HCP", "sample_size"] == 20 and exps.loc["HCP", "n_foci"] == 3
    assert np.isnan(exps.loc["s3-a", "sample_size"])
    assert pooled.loc[pooled["id"] == "HCP", "study_id"].iloc[0] == "s1 + s2"
    assert pooled["x"].tolist() == table["x"].tolist()  # the same foci, in the same order
    assert groups.columns.tolist() == pooling.GROUPS_COLUMNS
    shared = pooling.shared_groups(table, "study")
    assert shared.to_dict("records") == [{"group": "s1", "n_experiments": 2,
                                          "experiments": "s1-a; s1-b"}]
    bad = table.assign(**{"group:cohort": ["HCP", "x", "local", "HCP", "other"]})
    with pytest.raises(CbmaError, match="experiment 's1-a' has several subject groups"):
        pooling.pool_experiments(bad, {"column": "cohort"})
    with pytest.raises(CbmaError, match="no such subject group column"):
        pooling.pool_experiments(table, {"column": "site"})
    clash = table.assign(**{"group:cohort": ["s3-a", "s3-a", "local", "s3-a", "other"]})
    with pytest.raises(CbmaError, match="the group 's3-a' has the name of an experiment"):
        pooling.pool_experiments(clash, {"column": "cohort"})


MINIMAL = {"datasets": {"k": {"path": "k.txt", "format": "sleuth"},
                        "t": {"path": "t.tsv", "format": "table", "pool": "study"}},
           "analyses": {"a": {"dataset": "t"}}}


def test_an_analysis_pool_wins_over_its_dataset_and_chi2_is_never_pooled():
    config = load_config(MINIMAL, SCHEMA)
    assert pooling.pool_of(config["analyses"]["a"], config["datasets"]["t"]) == "study"
    assert pooling.pool_of({"pool": "none"}, config["datasets"]["t"]) == "none"
    assert pooling.pool_of({"estimator": "mkda_chi2"}, config["datasets"]["t"]) == "none"
    assert pooling.pool_label({"column": "cohort"}) == "column-cohort"


@pytest.mark.parametrize("change, words", [
    (lambda c: c["analyses"]["a"].update(estimator="mkda_chi2", pool="study"),
     "analyses.a.pool: mkda_chi2 analyses are not pooled"),
    (lambda c: c["datasets"]["k"].update(pool={"column": "cohort"}),
     "datasets.k.pool.column: a sleuth dataset has no subject-group column"),
    (lambda c: c["analyses"].update(b={"dataset": "k", "pool": {"column": "g"}}),
     "analyses.b.pool.column: a sleuth dataset has no subject-group column"),
    (lambda c: c["datasets"]["k"].update(labels=["task"]),
     "datasets.k.labels: only for the nimads, studyset_parquet, table formats, not sleuth"),
    (lambda c: c["datasets"]["t"].update(annotations="a.json"),
     "datasets.t.annotations: only for the nimads format"),
    (lambda c: c["datasets"]["t"].update(pool="studies"), "datasets.t.pool: 'studies' is not"),
], ids=["chi2", "dataset column", "analysis column", "labels", "annotations", "bad value"])
def test_pooling_and_format_keys_are_checked(change, words):
    config = copy.deepcopy(MINIMAL)
    change(config)
    with pytest.raises(CbmaError) as err:
        load_config(config, SCHEMA)
    assert str(err.value).startswith(f"config: {words}")


def _volume(path):
    return np.asanyarray(nib.load(path).dataobj)


@pytest.mark.slow
def test_pooled_analysis_end_to_end(tmp_path):
    """Through the workflow: a pooled analysis of a table equals the unpooled analysis of
    the same experiments merged by hand (exactly, maps as written); its MA maps are its own,
    while the unpooled analyses of the dataset share the dataset's; the unpooled one warns,
    and the report lists both."""
    table = _grouped()
    # the experiment column keeps the experiments apart (their contrasts are analysis_1)
    rows = [[r.study_id, r.id, r.x, r.y, r.z, r.space, int(r.sample_size)]
            for r in table.itertuples()]
    pd.DataFrame(rows, columns=["study", "experiment", "x", "y", "z", "space", "n"]).to_csv(
        tmp_path / "grouped.csv", index=False)
    _hand_merged_sleuth(table, tmp_path / "merged.txt")
    corr = {"n_iters": 100}
    write_config(tmp_path, {
        "seed": 3, "chunk_size": 100,
        "datasets": {"grouped": {"path": str(tmp_path / "grouped.csv"), "format": "table"},
                     "merged": {"path": str(tmp_path / "merged.txt"), "format": "sleuth"}},
        "analyses": {"pooled": {"dataset": "grouped", "pool": "study", "correction": corr},
                     "unpooled": {"dataset": "grouped", "correction": corr},
                     "unpooled_mkda": {"dataset": "grouped", "estimator": "mkda",
                                       "kernel": {"r": 10}, "correction": corr},
                     "merged": {"dataset": "merged", "correction": corr}},
    })
    res = smk(tmp_path, cores=2)
    results = tmp_path / "results"
    for name in ("stat", "z", "p"):
        np.testing.assert_array_equal(_volume(results / f"analyses/pooled/{name}.nii.gz"),
                                      _volume(results / f"analyses/merged/{name}.nii.gz"))
    assert not np.array_equal(_volume(results / "analyses/pooled/stat.nii.gz"),
                              _volume(results / "analyses/unpooled/stat.nii.gz"))
    # MA maps: the pooled analysis' own; the dataset's, for the unpooled ones
    own = results / "analyses/pooled/pooled/ma-ale.npz"
    ma, extra = io.load_sparse(own)
    assert ma.shape[0] == 18 and "Group A" in set(extra["ids"])
    assert sorted(p.name for p in (results / "datasets/grouped").glob("ma-*.npz")) == [
        "ma-ale.npz", "ma-mkda-r10.npz"]
    groups = io.read_tsv(results / "analyses/pooled/pooled/groups.tsv")
    assert len(groups) == 21 and groups["pooled"].nunique() == 18
    # the warning (echoed) and the report's tables
    assert "2 studies give several experiments (5 in all): Group A (3), Group B (2)" in res.stderr
    assert "Group A" in (tmp_path / "logs/select/unpooled.log").read_text()
    assert "studies give several" not in (tmp_path / "logs/select/pooled.log").read_text()
    report = (results / "report.html").read_text()
    assert "Pooled experiments (within-group effects)" in report
    assert report.count("Studies with several experiments (not pooled)") == 2
