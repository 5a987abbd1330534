"""End to end: term-based analyses of a synthetic Neurosynth-format database.

The database plants terms in regions (cbma.synthetic), so the tests can check
that the pipeline finds them: the association map of a term peaks at its
region, a seed's coactivation peaks at its region, and decoding an image of a
region ranks that region's terms first.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import MASK, comparable, smk, write_config

from cbma import clusters, evaluate, io, neurosynth, space, synthetic, terms

PAIN, EMOTION = [40, -16, 12], [-24, -4, -20]


def _config(root):
    return {
        "seed": 1,
        "chunk_size": 100,
        "datasets": {"synth": {"path": str(root / "db" / "database.txt"),
                               "features": str(root / "db" / "features.txt"),
                               "format": "neurosynth"}},
        "analyses": {
            "pain": {"dataset": "synth", "estimator": "mkda_chi2", "kernel": {"r": 6},
                     "select": {"expression": "pain | nociception"}, "naming": "neurosynth"},
            "pain_density": {"dataset": "synth", "estimator": "mkda", "kernel": {"r": 6},
                             "select": {"expression": "pain | nociception"},
                             "correction": {"n_iters": 100}},
            "emotion_density": {"dataset": "synth", "estimator": "mkda", "kernel": {"r": 6},
                                "select": {"expression": "emotion | affective"},
                                "correction": {"n_iters": 100}},
        },
        "coactivation": {"amygdala": {"dataset": "synth", "kernel": {"r": 6},
                                      "seed": {"xyz": EMOTION, "r": 6}}},
        "contrasts": {"pain_vs_emotion": {"analyses": ["pain_density", "emotion_density"],
                                          "method": "mkda_chi2"}},
        "decode": {"roi": {"dataset": "synth", "images": [str(root / "roi_emotion.nii.gz")],
                           "kernel": {"r": 6}}},
        # two phrases that share no word, whose terms co-occur; and an unrelated one
        "queries": {"nociception": {"dataset": "synth", "text": "nociception"},
                    "noxious": {"dataset": "synth", "text": "noxious stimuli"},
                    "tapping": {"dataset": "synth", "text": "finger tapping"}},
        "evaluate": {"held_out": {"dataset": "synth", "test_fraction": 0.1}},
        "classify": {"pain_vs_emotion": {"analyses": ["pain_density", "emotion_density"]}},
    }


def _only(config, analyses):
    """The config's dataset with just these analyses (no other section)."""
    return {"seed": config["seed"], "datasets": config["datasets"], "analyses": analyses}


def _blob(mask, centre, path, fwhm=16.0):
    ijk = np.argwhere(mask.data)
    d2 = ((space.vox_to_mm(ijk, mask.affine) - np.asarray(centre)) ** 2).sum(axis=1)
    vol = np.zeros(mask.shape, np.float32)
    vol[tuple(ijk.T)] = np.exp(-d2 / (2 * (fwhm / 2.3548) ** 2))
    nib.save(nib.Nifti1Image(vol, mask.affine), str(path))


@pytest.fixture(scope="module")
def term_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("terms")
    truth = synthetic.make_database(root / "db", n_studies=800, n_foci=24_000, n_terms=150,
                                    seed=3)
    mask = space.load_mask(MASK)
    _blob(mask, EMOTION, root / "roi_emotion.nii.gz")
    write_config(root, _config(root))
    smk(root, cores=2)
    return root, truth, mask


def _peak_mm(path, mask, sign=1):
    data = sign * mask.apply(np.asanyarray(nib.load(path).dataobj))
    ijk = np.argwhere(mask.data)[np.argmax(data)]
    return space.vox_to_mm(ijk, mask.affine)[0]


def _distance(a, b):
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def test_selection_is_the_expression_over_the_dataset(term_run):
    root, _, _ = term_run
    table, weights, _ = neurosynth.read_neurosynth(root / "db" / "database.txt",
                                                   root / "db" / "features.txt")
    expected = terms.select("pain | nociception", weights.for_select())
    out = root / "results" / "analyses" / "pain"
    chosen = pd.read_csv(out / "selection.tsv", sep="\t", dtype=str)["id"]
    versus = pd.read_csv(out / "versus.tsv", sep="\t", dtype=str)["id"]
    assert sorted(chosen) == sorted(expected)
    assert len(chosen) + len(versus) == table["id"].nunique() == 800
    assert not set(chosen) & set(versus)
    log = (root / "logs" / "select" / "pain.log").read_text()
    assert f"{len(chosen)} of 800 experiments selected" in log


def test_planted_term_peaks_at_its_region(term_run):
    root, _, mask = term_run
    out = root / "results" / "analyses" / "pain"
    assert _distance(_peak_mm(out / "z_desc-association.nii.gz", mask), PAIN) <= 10
    fdr = out / "z_desc-association_level-voxel_corr-FDR_method-indep_thresholded.nii.gz"
    assert _distance(_peak_mm(fdr, mask), PAIN) <= 10
    table = pd.read_csv(str(fdr).replace(".nii.gz", "_tab-clust.tsv"), sep="\t")
    first = table.iloc[0]
    assert _distance([first["X"], first["Y"], first["Z"]], PAIN) <= 10


def test_neurosynth_names_hold_the_same_maps(term_run):
    root, _, mask = term_run
    out = root / "results" / "analyses" / "pain"
    names = sorted(p.name for p in (out / "neurosynth").glob("*.nii.gz"))
    assert names == sorted(f"{n}.nii.gz" for n in [
        "pA", "pAgF", "pFgA", "pA_given_pF=0.50", "pFgA_given_pF=0.50", "uniformity-test_z",
        "association-test_z", "uniformity-test_z_FDR_0.01", "association-test_z_FDR_0.01"])

    def load(path):
        return mask.apply(np.asanyarray(nib.load(path).dataobj)).astype(float)

    ns = load(out / "neurosynth" / "association-test_z.nii.gz")
    ours = load(out / "z_desc-association.nii.gz")
    np.testing.assert_allclose(ns, ours, atol=1e-3)
    np.testing.assert_allclose(load(out / "neurosynth" / "pAgF.nii.gz"),
                               load(out / "prob_desc-AgF.nii.gz"), atol=1e-6)


def test_mkda_density_fwe_finds_the_planted_region(term_run):
    root, _, mask = term_run
    out = root / "results" / "analyses" / "pain_density"
    nulls = pd.read_csv(out / "null_distributions.tsv", sep="\t")
    assert len(nulls) == 100 and (nulls["max_stat"] >= 1).all()
    summary = json.loads((out / "fwe_summary.json").read_text())
    assert summary["clusters"]["n_significant_size"] >= 1
    cmap = out / "z_desc-size_level-cluster_corr-FWE_method-montecarlo_thresholded.nii.gz"
    significant = mask.apply(np.asanyarray(nib.load(cmap).dataobj)) != 0
    labels, sizes, _ = clusters.label_clusters(significant.astype(float), mask, 0.5)
    largest = labels == np.argmax(sizes) + 1
    # MKDA density is a count: its peak is a plateau; take the density-weighted centre
    stat = mask.apply(np.asanyarray(nib.load(out / "stat.nii.gz").dataobj)) * largest
    xyz = space.vox_to_mm(np.argwhere(mask.data), mask.affine)
    assert _distance(stat @ xyz / stat.sum(), PAIN) <= 10


def test_coactivation_selects_studies_near_the_seed(term_run):
    root, _, mask = term_run
    coords = io.read_tsv(root / "results" / "datasets" / "synth" / "coordinates.tsv")
    near = np.sqrt(((coords[["x", "y", "z"]].to_numpy() - EMOTION) ** 2).sum(axis=1)) <= 6
    expected = sorted(set(coords.loc[near, "id"].astype(str)))
    out = root / "results" / "analyses" / "amygdala"
    chosen = pd.read_csv(out / "selection.tsv", sep="\t", dtype=str)["id"]
    assert sorted(chosen) == expected and len(expected) > 10
    assert _distance(_peak_mm(out / "z_desc-association.nii.gz", mask), EMOTION) <= 10


def test_chi2_contrast_separates_two_selections(term_run):
    root, _, mask = term_run
    out = root / "results" / "contrasts" / "pain_vs_emotion"
    z = out / "z_desc-association.nii.gz"
    assert _distance(_peak_mm(z, mask), PAIN) <= 10
    assert _distance(_peak_mm(z, mask, sign=-1), EMOTION) <= 10


def test_decoding_ranks_the_planted_terms_first(term_run):
    root, truth, _ = term_run
    out = root / "results" / "decode" / "roi"
    ranked = pd.read_csv(out / "decoding_ranked.tsv", sep="\t")
    emotion = next(t for t in truth["topics"] if t["name"] == "emotion")["terms"]
    top = ranked.sort_values("rank")["term"].head(len(emotion)).tolist()
    assert set(top) == set(emotion)
    wide = pd.read_csv(out / "decoding.tsv", sep="\t")
    assert len(wide) == 150 and list(wide.columns) == ["term", "roi_emotion"]
    assert (out / "figures" / "top_terms.png").stat().st_size > 1000
    html = (root / "results" / "report.html").read_text()
    for section in ["Analysis: pain", "Coactivation: amygdala", "Contrast: pain_vs_emotion",
                    "Decoding: roi"]:
        assert section in html


def test_same_bytes_with_one_core(term_run, tmp_path):
    root, _, _ = term_run
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["analyses"] = {"pain": config["analyses"]["pain"],
                          "pain_density": config["analyses"]["pain_density"]}
    for key in ("contrasts", "coactivation", "classify"):
        config.pop(key)
    write_config(tmp_path, config)
    smk(tmp_path, cores=1)
    ours, theirs = comparable(tmp_path / "results"), comparable(root / "results")
    shared = [k for k in ours if k in theirs and "provenance" not in k
              and not k.startswith("report")]
    assert len(shared) > 100
    assert [k for k in shared if ours[k] != theirs[k]] == []


@pytest.mark.parametrize("select, message", [
    ({"expression": "pian"}, "unknown term 'pian'.*did you mean 'pain'"),
    ({"expression": "zzq*"}, "wildcard 'zzq\\*'.*matches no term"),
    ({"expression": "pain &~ pain"}, "selects no studies"),
    ({"expression": "pain &"}, "expected a term after '&'"),
    ({"ids": ["10000009-1", "123"]}, "no experiment or study '123'"),
    ({"seed": {"xyz": [0, 0, 200], "r": 6}}, "no experiment of the dataset is selected"),
])
def test_bad_selection_is_one_clear_line(term_run, tmp_path, select, message):
    root, _, _ = term_run
    config = _only(_config(root), {"bad": {"dataset": "synth", "estimator": "mkda_chi2",
                                           "kernel": {"r": 6}, "select": select}})
    write_config(tmp_path, config)
    res = smk(tmp_path, "--until", "select", check=False)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("cbma error:")]
    assert len(lines) == 1 and pytest.importorskip("re").search(message, lines[0]), res.stderr
    assert "Traceback" not in res.stderr.split("cbma error:")[0][-2000:]
    assert not (tmp_path / "results" / "analyses" / "bad" / "selection.tsv").exists()


@pytest.mark.parametrize("change, message", [
    ({"estimator": "ale"}, None),
    ({"estimator": "mkda_chi2", "correction": {"method": "montecarlo"}},
     "mkda_chi2 is corrected with fdr"),
    ({"estimator": "mkda", "kernel": {"fwhm": 10}}, "not an option of the mkda kernel"),
    ({"estimator": "ale", "naming": "neurosynth"}, "only for estimator mkda_chi2"),
])
def test_config_combinations_are_checked(tmp_path, change, message):
    config = {"datasets": {"d": {"path": "resources/data/semantic_knowledge_children.txt",
                                 "format": "sleuth"}},
              "analyses": {"a": {"dataset": "d", **change}}}
    write_config(tmp_path, config)
    res = smk(tmp_path, "--dry-run", check=False)
    if message is None:
        assert res.returncode == 0, res.stderr
    else:
        assert res.returncode != 0 and "cbma error: config: analyses.a" in res.stderr
        assert message in res.stderr


def test_expression_on_a_dataset_without_terms_is_an_error(tmp_path):
    config = {"datasets": {"d": {"path": "resources/data/semantic_knowledge_children.txt",
                                 "format": "sleuth"}},
              "analyses": {"a": {"dataset": "d", "estimator": "mkda",
                                 "select": {"expression": "pain"}}}}
    write_config(tmp_path, config)
    res = smk(tmp_path, "--until", "select", check=False)
    assert res.returncode != 0
    assert "a.select.expression: the dataset has no term weights" in res.stderr


# A hand-made Neurosynth-format database: five studies, three terms.
#   study  emotion  emotional  pain    emo* (sum)
#   101    0.03     0.03       -       0.06
#   102    0.08     -          -       0.08
#   103    -        0.02       0.02    0.02
#   104    -        -          0.3     0
#   105    0.04     0.005      0.1     0.045
# emo* at frequency_threshold 0.05: Neurosynth sums (101, 102); cbma, any term (102).
# pain < 0.05 at 0.001: Neurosynth, of the studies with pain, those under 0.05 (103);
# cbma, every study whose weight is under 0.05 (101, 102, 103).
TINY_FEATURES = {"101": (0.03, 0.03, 0.0), "102": (0.08, 0.0, 0.0), "103": (0.0, 0.02, 0.02),
                 "104": (0.0, 0.0, 0.3), "105": (0.04, 0.005, 0.1)}


def _tiny_database(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id\tx\ty\tz\tspace"]
    for i, study in enumerate(TINY_FEATURES):
        rows += [f"{study}\t{40 - 8 * i}\t-16\t12\tMNI", f"{study}\t-24\t{-4 - 6 * i}\t-20\tMNI"]
    (folder / "database.txt").write_text("\n".join(rows) + "\n")
    lines = ["pmid\temotion\temotional\tpain"]
    lines += ["\t".join([study, *map(str, w)]) for study, w in TINY_FEATURES.items()]
    (folder / "features.txt").write_text("\n".join(lines) + "\n")


def test_semantics_reaches_the_selection(tmp_path):
    """Only ingest and select run (a few seconds), on a five-study database."""
    _tiny_database(tmp_path / "db")
    cases = {
        "emo_default": ({"expression": "emo*", "frequency_threshold": 0.05}, ["101", "102"]),
        "emo_neurosynth": ({"expression": "emo*", "frequency_threshold": 0.05,
                            "semantics": "neurosynth"}, ["101", "102"]),
        "emo_cbma": ({"expression": "emo*", "frequency_threshold": 0.05, "semantics": "cbma"},
                     ["102"]),
        "pain_default": ({"expression": "pain < 0.05"}, ["103"]),
        "pain_cbma": ({"expression": "pain < 0.05", "semantics": "cbma"}, ["101", "102", "103"]),
    }
    config = {"seed": 1,
              "datasets": {"tiny": {"path": str(tmp_path / "db" / "database.txt"),
                                    "features": str(tmp_path / "db" / "features.txt"),
                                    "format": "neurosynth"}},
              "analyses": {name: {"dataset": "tiny", "estimator": "mkda", "select": select}
                           for name, (select, _) in cases.items()}}
    write_config(tmp_path, config)
    smk(tmp_path, "--until", "select")
    for name, (_, studies) in cases.items():
        out = tmp_path / "results" / "analyses" / name / "selection.tsv"
        chosen = pd.read_csv(out, sep="\t", dtype=str)["id"].tolist()
        assert chosen == [f"{s}-1" for s in studies], name


def test_semantics_needs_an_expression(tmp_path):
    config = {"datasets": {"d": {"path": "resources/data/semantic_knowledge_children.txt",
                                 "format": "sleuth"}},
              "analyses": {"a": {"dataset": "d", "select": {"ids": ["x"], "semantics": "cbma"}}}}
    write_config(tmp_path, config)
    res = smk(tmp_path, "--dry-run", check=False)
    assert res.returncode != 0
    assert "cbma error: config: analyses.a.select: 'expression' is a dependency of 'semantics'" \
        in res.stderr


def _masked(path, mask):
    return mask.apply(np.asanyarray(nib.load(path).dataobj)).astype(float)


def test_synonym_queries_give_the_same_map(term_run):
    root, _, mask = term_run
    maps = {q: _masked(root / "results" / "queries" / q / "map.nii.gz", mask)
            for q in ("nociception", "noxious", "tapping")}
    synonyms = evaluate.dice_top_k(maps["nociception"], maps["noxious"], ks=[5, 20])
    unrelated = evaluate.dice_top_k(maps["nociception"], maps["tapping"], ks=[5, 20])
    # two phrases without a common word whose terms co-occur: Dice of the top 20 % above
    # 0.5 (measured 0.86); an unrelated phrase stays near chance (0.2; measured 0.25)
    assert synonyms[1] > 0.5 and unrelated[1] < 0.35, (synonyms, unrelated)
    assert synonyms[0] > 0.5 and unrelated[0] < 0.2, (synonyms, unrelated)
    assert np.corrcoef(maps["nociception"], maps["noxious"])[0, 1] > 0.9
    assert np.corrcoef(maps["nociception"], maps["tapping"])[0, 1] < 0.3
    # the smoothing weight was chosen by GCV among the candidates, and logged
    log = (root / "logs" / "text_model" / "synth.log").read_text()
    assert "smoothing w" in log and "(GCV over 0.1, 0.3, 0.5, 0.7, 0.9)" in log, log
    assert _distance(_peak_mm(root / "results" / "queries" / "noxious" / "map.nii.gz", mask),
                     PAIN) <= 10
    terms = pd.read_csv(root / "results" / "queries" / "noxious" / "terms.tsv", sep="\t")
    read_as = terms.loc[terms["in_text"] > 0, "term"].tolist()
    assert read_as == ["noxious"] and "nociception" in terms["term"].head(3).tolist()


def test_held_out_evaluation_table(term_run):
    root, _, _ = term_run
    out = root / "results" / "evaluation" / "held_out"
    summary = pd.read_csv(out / "summary.tsv", sep="\t").set_index("method")
    held_out = pd.read_csv(out / "held_out.tsv", sep="\t")
    assert len(held_out) == summary.loc["model", "n"] == 80
    # a random map's Dice at top k % is about k / 100, so its AUC about 0.175
    assert summary.loc["random", "dice_auc_mean"] == pytest.approx(0.175, abs=0.01)
    for method in ("model", "keyword"):
        assert summary.loc[method, "dice_auc_mean"] > summary.loc["random", "dice_auc_mean"] \
            + 3 * summary.loc[method, "dice_auc_se"]
    assert (out / "figures" / "dice_curves.png").stat().st_size > 1000


def test_classification_and_searchlight_find_the_planted_regions(term_run):
    root, _, mask = term_run
    out = root / "results" / "classify" / "pain_vs_emotion"
    summary = json.loads((out / "classification.json").read_text())
    scores = pd.read_csv(out / "cv_scores.tsv", sep="\t")
    assert len(scores) == 5 and summary["sd"] == pytest.approx(
        scores["balanced_accuracy"].std(ddof=1))
    assert summary["mean"] > 0.8 and summary["chance"] == 0.5
    searchlight = out / "searchlight.nii.gz"
    accuracy = _masked(searchlight, mask)
    xyz = space.vox_to_mm(np.argwhere(mask.data), mask.affine)
    peak = xyz[np.argmax(accuracy)]
    assert min(_distance(peak, PAIN), _distance(peak, EMOTION)) <= 10
    far = (np.linalg.norm(xyz - PAIN, axis=1) > 30) & (np.linalg.norm(xyz - EMOTION, axis=1) > 30)
    assert abs(np.median(accuracy[far]) - 0.5) < 0.05
    # the weights point at each class's region: + for pain (the first analysis)
    weights = _masked(out / "weights.nii.gz", mask)
    near = lambda c: np.linalg.norm(xyz - c, axis=1) <= 6  # noqa: E731
    assert weights[near(PAIN)].mean() > 0 > weights[near(EMOTION)].mean()


@pytest.mark.parametrize("text, message", [
    ("   ", "queries.q.text: the query is empty"),
    ("the of and", "only stop words"),
    ("zzyzx qwerty", "no word is in the vocabulary"),
])
def test_bad_query_is_one_clear_line(term_run, tmp_path, text, message):
    root, _, _ = term_run
    config = _only(_config(root), {"pain": _config(root)["analyses"]["pain"]})
    config["queries"] = {"q": {"dataset": "synth", "text": text}}
    write_config(tmp_path, config)
    res = smk(tmp_path, "--until", "query", check=False)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("cbma error:")]
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert not (tmp_path / "results" / "queries" / "q" / "map.nii.gz").exists()
