"""The HTML report, opened in a real browser (headless Chromium), and its text."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cbma import report
from cbma.errors import CbmaError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# headless, and nothing that reaches the network on its own
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


# The interactive views in a page: each canvas's size, how many of its pixels are drawn
# (not the black background) and in colour (the map), where its crosshair is (the
# coordinates brainsprite shows) and the map's value there.
VIEWS = """Object.fromEntries(Object.entries(window.cbmaViewers).map(([id, b]) => {
  const c = document.getElementById(id), d = c.getContext("2d").getImageData(
    0, 0, c.width, c.height).data;
  let drawn = 0, coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    drawn += d[i] + d[i + 1] + d[i + 2] > 30;
    coloured += Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60;
  }
  const at = b.coordinatesSlice;
  return [id, {width: c.width, height: c.height, drawn: drawn, coloured: coloured,
               at: [at.X, at.Y, at.Z], value: isNaN(b.voxelValue) ? null : b.voxelValue}];
}))"""


def _open(p, html, requests):
    """The report in headless Chromium, its views drawn; ``requests`` collects what it asks
    for beyond its own file and data: URIs."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 2000})
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
            else requests.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html.as_uri())
    page.wait_for_function("document.readyState === 'complete'")
    assert not errors, errors
    return browser, page


def _click_row(page, viewer, row):
    """Click row ``row`` of the cluster table of ``viewer``: its X, Y, Z and the view after."""
    tr = page.locator(f'div.cluster-table[data-viewer="{viewer}"] tbody tr').nth(row)
    heads = page.locator(f'div.cluster-table[data-viewer="{viewer}"] thead th').all_inner_texts()
    cells = tr.locator("td").all_inner_texts()
    xyz = [float(cells[heads.index(c)]) for c in ("X", "Y", "Z")]
    tr.click()
    return xyz, page.evaluate(VIEWS)[viewer]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_report_opens_in_a_browser_with_every_image(default_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    html = default_run / "report.html"
    requests = []
    with playwright.sync_playwright() as p:
        browser, page = _open(p, html, requests)
        images = page.evaluate("Array.from(document.querySelectorAll('figure > img')).map("
                               "i => [i.alt, i.complete && i.naturalWidth > 0])")
        every_image = page.evaluate("Array.from(document.images).every("
                                    "i => i.complete && i.naturalWidth > 0)")
        headings = page.evaluate("Array.from(document.querySelectorAll('h2'))"
                                 ".map(h => h.textContent)")
        views = page.evaluate(VIEWS)
        # the last row of every linked cluster table (opened if collapsed)
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        clicks = {v: _click_row(page, v, -1) for v in views}
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    # 3 per ALE analysis, 2 per chi-square analysis or coactivation, 1 per contrast,
    # conjunction, decoding, query and evaluation, 2 for the classification
    assert len(images) == 21 and all(ok for _, ok in images), images
    assert every_image and not requests, requests  # the views' sprites too; no network
    assert headings == ["Analysis: knowledge", "Analysis: related",
                        "Analysis: flanker_vs_nback", "Analysis: pain",
                        "Analysis: emotion", "Coactivation: amygdala",
                        "Contrast: knowledge_minus_related",
                        "Conjunction: knowledge_and_related", "Decoding: amygdala_map",
                        "Query: nociception", "Evaluation: held_out",
                        "Classification: pain_vs_emotion", "Methods", "Provenance"]
    # a view of every analysis' and comparison's map, drawn, linked to its cluster table
    assert sorted(views) == [f"viewer-{a}" for a in [
        "analysis-emotion", "analysis-flanker_vs_nback", "analysis-knowledge", "analysis-pain",
        "analysis-related",
        "coactivation-amygdala", "conjunction-knowledge_and_related",
        "contrast-knowledge_minus_related"]]
    for view in views.values():
        assert view["width"] > 800 and view["drawn"] > 10_000 and view["coloured"] > 20
    for xyz, after in clicks.values():
        assert after["at"] == xyz and after["value"] is not None


def test_methods_paragraph_follows_the_parameters():
    info = {"n_experiments": 21, "n_foci": 262, "n_subjects": 456, "fwhm_min": 8.7,
            "fwhm_max": 10.4, "kernel": {}, "n_tal": 3, "seed": 0, "version": "0.1.0",
            "correction": {"alpha": 0.05, "voxel_thresh": 0.001, "n_iters": 5000},
            "cluster_forming_threshold": 0.01146, "n_outside": 14, "outside_action": "kept"}
    text = report.methods_paragraph("knowledge", info)
    for words in ["21 experiments (262 foci, 456 subjects)", "8.70-10.40 mm",
                  "3 foci reported in Talairach",
                  "14 foci fell outside the brain mask and were kept",
                  "p < 0.05", "p < 0.001 (ALE > 0.01146)", "5000 Monte Carlo iterations"]:
        assert words in text, words
    fixed = report.methods_paragraph("k", {**info, "kernel": {"fwhm": 10}, "n_tal": 0})
    assert "fixed FWHM of 10 mm" in fixed and "Talairach" not in fixed
    # the null's sampling, and the validation study that measured its calibration
    assert "drawn uniformly from the mask's voxels" in text and "docs/validation.md" in text
    grey = report.methods_paragraph("k", {**info, "correction": {
        **info["correction"], "null_sampling": "grey_matter"}})
    assert "grey-matter probability" in grey and "uniformly" not in grey
    assert "docs/validation.md" in grey


def test_methods_say_how_peaks_are_labelled_and_experiments_weighted():
    text = report.labels_paragraph({"atlases": ["harvard_oxford_subcortical", "aal2_cerebellum"],
                                    "talairach": "icbm_spm"})
    for words in ["Harvard-Oxford cortical atlas", "Harvard-Oxford subcortical atlas",
                  "cerebellar regions of AAL2 (Rolls et al., 2015)", "Notter et al., 2019",
                  "icbm2tal transform (SPM variant; Lancaster et al., 2007)"]:
        assert words in text, words
    plain = report.labels_paragraph({"atlases": [], "talairach": False})
    assert "as FSL distributes it." in plain and "Talairach" not in plain
    info = {"n_experiments": 21, "n_foci": 262, "n_subjects": 456, "kernel": {"r": 10},
            "fwhm_min": float("nan"), "fwhm_max": float("nan"),
            "estimator": "mkda", "weights": "sample_size", "seed": 0, "version": "0.1.0",
            "correction": {"alpha": 0.05, "voxel_thresh": 0.001, "n_iters": 5000},
            "cluster_forming_threshold": 4.2}
    assert "square root of its sample size" in report.methods_paragraph("d", info)
    assert "square root" not in report.methods_paragraph("d", {**info, "weights": "equal"})


def test_tables_render_as_html():
    html = report.table_html(pd.DataFrame({"a": [1.23456, 2.0], "b": ["x", "<y>"]}))
    assert "1.235" in html and "&lt;y&gt;" in html


def test_snakemake_report_holds_the_figures(default_run):
    import zipfile

    from conftest import smk

    smk(default_run.parent, "--report", "smk_report.zip")
    names = zipfile.ZipFile(default_run.parent / "smk_report.zip").namelist()
    assert any(n.endswith("report.html") for n in names)
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".png")) == sorted(
        # six analyses (two ALE, three chi-square ones, a coactivation), the contrast and
        # the conjunction, the decoding, the query, the evaluation and the classification
        ["foci.png", "glass.png", "slices.png"] * 6 + ["glass.png"] * 3 + ["top_terms.png",
         "dice_curves.png", "weights.png", "searchlight.png"])


# The report built from the files it is given (cbma.report.report_context), on tiny
# hand-made runs whose files are not where a run puts them: the library reads what the
# report rule declares, and builds no results/ path of its own.

def _tsv(path, header, rows=()):
    path.write_text("\n".join(["\t".join(header), *("\t".join(map(str, r)) for r in rows)])
                    + "\n")
    return str(path)


def _png(path):
    """A stand-in figure: the report embeds a file's bytes as they are."""
    path.write_bytes(f"figure {path.name}".encode())
    return str(path)


def _dataset(folder):
    """Five experiments of two foci (e0 in Talairach space) and their ingest record."""
    rows = [(f"e{k}", f"s{k}", "c", 10 * k, 0, z, 10 + 2 * k, "TAL" if k == 0 else "MNI",
             f"db.txt:{k}") for k in range(5) for z in (0, 10)]
    path = _tsv(folder / "foci.tsv", ["id", "study_id", "contrast_id", "x", "y", "z",
                                      "sample_size", "space", "source"], rows)
    (folder / "foci.json").write_text(json.dumps({
        "inputs": {"db.txt": {"sha256": "ab12"}, "mask.nii.gz": {"sha256": "cd34"}},
        "n_foci_outside_mask": 1, "outside_mask_foci": "kept"}))
    return path


def _nifti(path, n_nonzero):
    data = np.zeros((3, 3, 3))
    data.flat[:n_nonzero] = 2.5
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    return str(path)


CLUSTER_COLUMNS = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
EMPTY_CONFIG = {"seed": 0, "analyses": {}, "coactivation": {}, "contrasts": {},
                "conjunctions": {}, "decode": {}, "queries": {}, "evaluate": {},
                "classify": {}, "cluster_tables": {"atlases": [], "talairach": False}}


def _embedded(html, path):
    return report.png_data_uri(path) in html


def test_group_inputs_nests_the_rule_names():
    files = report.group_inputs([("analyses/a/summary", "x.json"), ("analyses/a/foci", "f.png"),
                                 ("decode/a/ranked", "r.tsv")])
    assert files == {"analyses": {"a": {"summary": "x.json", "foci": "f.png"}},
                     "decode": {"a": {"ranked": "r.tsv"}}}
    with pytest.raises(ValueError, match="<section>/<name>/<role>"):
        report.group_inputs({"summary": "x.json"})
    with pytest.raises(KeyError, match="no input files for decode 'd'"):
        report.report_sections({}, {**EMPTY_CONFIG, "decode": {"d": {}}})


def test_chi2_run_report_shows_the_files_it_is_given(tmp_path, monkeypatch):
    data = tmp_path / "anywhere"
    data.mkdir()
    coordinates = _dataset(data)
    chi2 = {"dataset": "db", "estimator": "mkda_chi2", "kernel": {"r": 6}, "versus": "rest",
            "correction": {"q": 0.01}}
    config = {**EMPTY_CONFIG,
              "analyses": {"pain": {**chi2, "select": {"expression": "pain",
                                                       "frequency_threshold": 0.001}}},
              "coactivation": {"seed": {**chi2, "select": {"seed": {"xyz": [0, 0, 0], "r": 6}}}},
              "contrasts": {"pain_vs_seed": {"analyses": ["pain", "seed"],
                                             "method": "mkda_chi2", "alpha": 0.05}},
              "decode": {"d": {"dataset": "db", "images": ["img.nii.gz"], "n_top": 2,
                               "frequency_threshold": 0.001, "kernel": {"r": 6}}},
              "queries": {"q": {"dataset": "db", "text": "pain relief"}}}
    one_cluster = [("PositiveTail 1", 10, 0, 0, 4.2, 800)]
    named = {}
    for name, ids, versus in [("pain", "e0 e1", "e2 e3 e4"), ("seed", "e0", "e1 e2 e3 e4")]:
        named |= {f"analyses/{name}/coordinates": coordinates,
                  f"analyses/{name}/selection": _tsv(data / f"{name}_in.tsv", ["id"],
                                                     [(i,) for i in ids.split()]),
                  f"analyses/{name}/versus": _tsv(data / f"{name}_out.tsv", ["id"],
                                                  [(i,) for i in versus.split()]),
                  f"analyses/{name}/clusters": _tsv(data / f"{name}_clust.tsv", CLUSTER_COLUMNS,
                                                    one_cluster if name == "pain" else ()),
                  f"analyses/{name}/foci": _png(data / f"{name}_foci.png"),
                  f"analyses/{name}/glass": _png(data / f"{name}_glass.png")}
    named |= {"contrasts/pain_vs_seed/group1": named["analyses/pain/selection"],
              "contrasts/pain_vs_seed/group2": named["analyses/seed/selection"],
              "contrasts/pain_vs_seed/clusters": _tsv(data / "c.tsv", CLUSTER_COLUMNS),
              "contrasts/pain_vs_seed/glass": _png(data / "c.png"),
              "decode/d/ranked": _tsv(data / "ranked.tsv", ["image", "rank", "term", "r"], [
                  ("img", 1, "pain", 0.5), ("img", 2, "noxious", 0.4), ("img", 3, "face", 0.1)]),
              "decode/d/top_terms": _png(data / "top.png"),
              "queries/q/terms": _tsv(data / "terms.tsv", ["term", "weight", "in_text"], [
                  ("pain", 1.0, 1), ("noxious", 0.3, 0), ("null", 0.1, 0)]),
              "queries/q/glass": _png(data / "q.png")}
    monkeypatch.chdir(tmp_path)  # an empty working folder: no results/ to fall back on
    context = report.report_context(report.group_inputs(named), config)
    sections = {f"{s['kind']}: {s['name']}": s for s in context["sections"]}
    assert list(sections) == ["Analysis: pain", "Coactivation: seed", "Contrast: pain_vs_seed",
                              "Decoding: d", "Query: q"]
    facts = dict(sections["Analysis: pain"]["facts"])
    assert facts["experiments"] == "2 of 5, by term expression 'pain' (weight >= 0.001)"
    assert facts["compared with"] == "3 experiments (the rest of the dataset)"
    assert dict(sections["Coactivation: seed"]["facts"])["experiments"] == (
        "1 of 5, by a focus within 6 mm of [0, 0, 0]")
    assert dict(sections["Contrast: pain_vs_seed"]["facts"])["groups"] == (
        "pain (2 experiments) against seed (1)")
    assert [t["note"] for s in list(sections.values())[:3] for t in s["tables"]] == [
        None, "No cluster.", "No cluster."]
    assert dict(sections["Decoding: d"]["facts"])["terms"] == "3"
    query = dict(sections["Query: q"]["facts"])
    assert query["read as"] == "pain" and query["related terms it draws on"] == "noxious, null"
    render = tmp_path / "report.html"
    report.render(context, render)
    html = render.read_text()
    figures = [v for k, v in named.items() if v.endswith(".png")]
    assert all(_embedded(html, f) for f in figures)
    # in the order the sections show them: the foci first
    assert html.index(report.png_data_uri(figures[0])) < html.index(
        report.png_data_uri(figures[1]))
    assert "ab12" in html and "cd34" in html and "pain relief" in html
    assert not (tmp_path / "results").exists()


def _summary(n_iters):
    return {"n_iters": n_iters, "alpha": 0.05, "cluster_forming_threshold": 0.0115,
            "thresholds": {"max_stat": 0.02, "cluster_size": 12.0, "cluster_mass": 0.3},
            "threshold_errors": {"max_stat": {"se": 1e-4, "relative_se": 0.005},
                                 "cluster_size": {"se": 1.0, "relative_se": 0.08}},
            "clusters": {"n": 2, "sizes": [20, 3], "masses": [0.5, 0.01],
                         "p_size": [0.01, 0.9], "p_mass": [0.02, 0.8],
                         "n_significant_size": 1, "n_significant_mass": 1}}


def test_ale_run_report_reads_the_sidecars_beside_its_inputs(tmp_path, monkeypatch):
    coordinates = _dataset(tmp_path)
    (tmp_path / "ma.npz").write_bytes(b"")  # only its sidecar is read: the FWHMs
    (tmp_path / "ma.json").write_text(json.dumps(
        {"fwhm_mm": {"e0": 9.0, "e1": 9.5, "e2": 10.0, "e3": 10.5, "e4": 10.0}}))
    target = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    ale = {"dataset": "db", "estimator": "ale", "kernel": {}, "diagnostics": {"target": target},
           "correction": {"method": "montecarlo", "voxel_thresh": 0.001, "n_iters": 100,
                          "alpha": 0.05}}
    config = {**EMPTY_CONFIG, "seed": 3,
              "analyses": {"a": {**ale, "select": {"ids": ["e0", "e1", "e2", "e3"]}},
                           "b": {**ale, "correction": {**ale["correction"], "alpha": 0.01}}},
              "contrasts": {"a_minus_b": {"analyses": ["a", "b"], "method": "subtraction",
                                          "mode": "nimare", "n_iters": 50, "alpha": 0.05}},
              "conjunctions": {"a_and_b": {"analyses": ["a", "b"], "map": target}}}
    files = {}
    for name, ids in [("a", ["e0", "e1", "e2", "e3"]), ("b", [f"e{k}" for k in range(5)])]:
        (tmp_path / f"{name}.json").write_text(json.dumps(_summary(80)))
        files[name] = {"coordinates": coordinates, "ma": str(tmp_path / "ma.npz"),
                       "selection": _tsv(tmp_path / f"{name}.tsv", ["id"], [(i,) for i in ids]),
                       "summary": str(tmp_path / f"{name}.json"),
                       **{role: _png(tmp_path / f"{name}_{role}.png")
                          for role in report.ANALYSIS_FIGURES},
                       **{role: _tsv(tmp_path / f"{name}_{role}.tsv", ["id"])
                          for role in report.DIAGNOSTICS}}
    compared = {"glass": _png(tmp_path / "c.png"),
                "clusters": _tsv(tmp_path / "c.tsv", CLUSTER_COLUMNS,
                                 [("PositiveTail 1", 0, 0, 0, 3.1, 32)])}
    files = {"analyses": files,
             "contrasts": {"a_minus_b": {**compared, "map": _nifti(tmp_path / "c.nii.gz", 4)}},
             "conjunctions": {"a_and_b": {**compared, "map": _nifti(tmp_path / "j.nii.gz", 7)}}}
    monkeypatch.chdir(tmp_path)
    a, b, contrast, conjunction = report.report_sections(files, config)
    facts = dict(a["facts"])
    assert a["facts"][1] == ("experiments", "4 of 5, by 4 listed ids")
    assert facts["foci"] == "8" and facts["subjects"] == str(10 + 12 + 14 + 16)
    assert facts["foci outside the mask"] == "1"  # from the ingest record
    assert facts["kernel"] == "FWHM 9.00 to 10.50 mm"  # from the MA maps' record
    assert facts["Monte Carlo iterations"].startswith("80")
    assert "(seed 3" in a["methods"] and "1 foci reported in Talairach" not in a["methods"]
    assert "2 foci reported in Talairach" in a["methods"]
    assert dict(b["facts"])["experiments"] == "5"  # all of the dataset: no selection fact
    assert [f["path"] for f in a["figures"]] == [files["analyses"]["a"][r]
                                                 for r in ("foci", "glass", "slices")]
    assert a["tables"][0]["html"].startswith(f"<p>No cluster of {target}")
    assert dict(contrast["facts"])["voxels with p < 0.05"] == "4"
    assert dict(conjunction["facts"])["voxels in the conjunction"] == "7"
    # each analysis at its own level
    assert "(FWE p < 0.01 / 0.05)" in dict(conjunction["facts"])["inclusion"]


# The interactive views (cbma.viewer), on a hand-made contrast on the MNI grid.

def _two_sided_map(mask, path):
    """A thresholded z map: a positive cluster at (-24, -4, -20), a negative one at
    (40, 22, 6) mm; zero elsewhere. Written to ``path``; returns the masked vector."""
    from cbma import space

    xyz = space.vox_to_mm(np.argwhere(mask.data), mask.affine)
    z = np.zeros(mask.n_voxels)
    for height, centre in [(4.0, (-24, -4, -20)), (-3.5, (40, 22, 6))]:
        z += height * np.exp(-((xyz - centre) ** 2).sum(axis=1) / (2 * 4.0**2))
    z[np.abs(z) < 2.0] = 0.0
    mask.to_image(z).to_filename(path)
    return z


def _contrast_report(tmp_path):
    """A report of one subtraction contrast whose map and cluster table are real."""
    from conftest import MASK

    from cbma import clusters, io, space

    mask = space.load_mask(MASK)
    z = _two_sided_map(mask, tmp_path / "z.nii.gz")
    table, _ = clusters.cluster_table(z, mask, threshold=0.0)
    io.write_tsv(table, tmp_path / "clusters.tsv")
    config = {**EMPTY_CONFIG, "contrasts": {"a_minus_b": {
        "analyses": ["a", "b"], "method": "subtraction", "mode": "nimare", "n_iters": 50,
        "alpha": 0.05}}}
    files = {"contrasts": {"a_minus_b": {"glass": _png(tmp_path / "glass.png"),
                                         "map": str(tmp_path / "z.nii.gz"),
                                         "clusters": str(tmp_path / "clusters.tsv")}}}
    context = report.report_context(files, config)
    report.render(context, tmp_path / "report.html")
    return tmp_path / "report.html", table


def test_a_view_labels_the_voxel_it_shows(tmp_path):
    """brainsprite labels sprite voxel n with the affine of n + 1: the view's affine is
    shifted so that the crosshair's voxel is the one whose coordinates it shows."""
    from conftest import MASK

    from cbma import space, viewer

    mask = space.load_mask(MASK)
    z = _two_sided_map(mask, tmp_path / "z.nii.gz")
    peak = [40.0, 22.0, 6.0]
    view = viewer.map_viewer(mask.to_image(z), title="t", peak=peak)
    params = view.params
    voxel = np.asarray(view.to_voxel) @ [*peak, 1.0]
    assert np.allclose(voxel, np.round(voxel))  # the 2 mm grid's points are voxels of the view
    assert [params["numSlice"][a] for a in "XYZ"] == np.round(voxel).astype(int).tolist()
    shown = np.asarray(params["affine"]) @ [*(params["numSlice"][a] + 1 for a in "XYZ"), 1]
    assert shown[:3].tolist() == peak
    assert params["colorMap"]["min"] == -params["colorMap"]["max"] < 0  # two-sided
    # two maps on one grid: the scripts and the background are embedded once
    other = viewer.map_viewer(mask.to_image(np.maximum(z, 0)))
    page = viewer.embed({"v1": view, "v2": other})
    assert len(page["backgrounds"]) == 1 and len(page["scripts"]) == 2
    assert other.params["colorMap"]["min"] == 0  # one-sided: hot, from 0
    (background,) = page["backgrounds"]
    for vid, spec in page["viewers"].items():
        assert spec["params"]["canvas"] == vid and spec["params"]["sprite"] == background
        assert spec["params"]["overlay"]["sprite"] == f"{vid}-overlay"
        assert spec["params"]["colorMap"]["img"] == f"{vid}-colormap"
    with pytest.raises(CbmaError, match="needs a map with nonzero voxels"):
        viewer.map_viewer(mask.to_image(np.zeros(mask.n_voxels)))


def test_a_view_is_nilearns_own_over_the_template_loaded_once(tmp_path, monkeypatch):
    """The background, loaded once per process and kept on disk between
    processes, gives the page nilearn's ``bg_img="MNI152"`` gives, view after
    view; a damaged copy on disk is made again."""
    from conftest import MASK
    from nilearn.plotting import view_img

    from cbma import space, viewer

    monkeypatch.setattr(viewer, "BACKGROUND_CACHE", tmp_path / "cache" / "bg-{}.npz")
    viewer.background.cache_clear()
    mask = space.load_mask(MASK)
    z = _two_sided_map(mask, tmp_path / "z.nii.gz")
    views = [viewer.map_viewer(mask.to_image(z), title="t") for _ in range(2)]
    assert viewer.background.cache_info().hits >= 1
    (kept,) = (tmp_path / "cache").iterdir()
    viewer.background.cache_clear()  # as in a new process: from the copy on disk
    views.append(viewer.map_viewer(mask.to_image(z), title="t"))
    kept.write_bytes(kept.read_bytes()[:100])  # damaged: made again, and kept again
    viewer.background.cache_clear()
    views.append(viewer.map_viewer(mask.to_image(z), title="t"))
    assert kept.stat().st_size > 1000
    viewer.background.cache_clear()
    page = view_img(mask.to_image(z), bg_img="MNI152", title="t", threshold=1e-6,
                    black_bg=True, symmetric_cmap=True, cmap="RdBu_r", draw_cross=True,
                    resampling_interpolation="nearest", width_view=900).get_standalone()
    assert views[0] == views[1] == views[2] == views[3] == viewer._parse(page)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_a_click_on_a_cluster_row_moves_the_view_to_its_peak(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    html, table = _contrast_report(tmp_path)
    vid = "viewer-contrast-a_minus_b"
    peaks = table[table["Cluster Size (mm3)"] != ""]
    assert peaks["Cluster ID"].tolist() == ["PositiveTail 1", "NegativeTail 1"]
    requests = []
    with playwright.sync_playwright() as p:
        browser, page = _open(p, html, requests)
        before = page.evaluate(VIEWS)[vid]
        row = table.index[table["Cluster ID"] == "NegativeTail 1"][0]
        xyz, after = _click_row(page, vid, int(row))
        selected = page.locator("tr.selected").all_inner_texts()
        page.locator(f"#{vid}").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "view.png"))
        browser.close()
    assert not requests  # everything is in the page
    # drawn: the template, and the map in colour; the crosshair starts at the first peak
    assert before["width"] > 800 and before["drawn"] > 50_000 and before["coloured"] > 100
    assert before["at"] == peaks[["X", "Y", "Z"]].iloc[0].tolist() == [-24, -4, -20]
    assert before["value"] > 3.5  # read back from the colours: about the peak's 4
    # the click moved it to the negative cluster's peak, on the map
    assert xyz == after["at"] == [40, 22, 6] and after["value"] < -3
    assert len(selected) == 1 and selected[0].startswith("NegativeTail 1")
