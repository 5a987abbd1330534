"""The HTML report, opened in a real browser (headless Chromium), and its text."""

import shutil

import pandas as pd
import pytest

from cbma import report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_report_opens_in_a_browser_with_every_image(default_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    html = default_run / "report.html"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        page.goto(html.as_uri())
        images = page.evaluate("Array.from(document.images).map("
                               "i => [i.alt, i.complete && i.naturalWidth > 0])")
        headings = page.evaluate("Array.from(document.querySelectorAll('h2'))"
                                 ".map(h => h.textContent)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    # 3 per ALE analysis, 2 per chi-square analysis or coactivation, 1 per contrast,
    # conjunction, decoding, query and evaluation, 2 for the classification
    assert len(images) == 19 and all(ok for _, ok in images), images
    assert headings == ["Analysis: knowledge", "Analysis: related", "Analysis: pain",
                        "Analysis: emotion", "Coactivation: amygdala",
                        "Contrast: knowledge_minus_related",
                        "Conjunction: knowledge_and_related", "Decoding: amygdala_map",
                        "Query: nociception", "Evaluation: held_out",
                        "Classification: pain_vs_emotion", "Methods", "Provenance"]


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
        # five analyses (two ALE, two term-based ones, a coactivation), the contrast and
        # the conjunction, the decoding, the query, the evaluation and the classification
        ["foci.png", "glass.png", "slices.png"] * 5 + ["glass.png"] * 3 + ["top_terms.png",
         "dice_curves.png", "weights.png", "searchlight.png"])
