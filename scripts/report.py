"""Rule report: one self-contained HTML page for the whole run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import cbma
from cbma import io, provenance, report, selection
from cbma.runner import run

DIAGNOSTICS = {
    "clusters": "tab-clust",
    "jackknife": "diag-Jackknife_tab-counts_tail-positive",
    "focus_counter": "diag-FocusCounter_tab-counts_tail-positive",
    "contributions": "diag-Contribution_tab-shares_tail-positive",
}


CHI2_MAP = "z_desc-association_level-voxel_corr-FDR_method-indep_thresholded"


def _json(path):
    return json.loads(Path(path).read_text())


def _chi2_groups(base):
    n1 = len(selection.read_selection(base / "selection.tsv"))
    n2 = len(selection.read_selection(base / "versus.tsv"))
    return n1, n2


def main(job):
    smk = job.smk
    config = smk.params.config
    analyses = smk.params.analyses
    sections, inputs, coordinates = [], {}, {}
    for name, analysis in analyses.items():
        dataset = analysis["dataset"]
        base = Path("results/analyses") / name
        if dataset not in coordinates:
            coordinates[dataset] = io.read_tsv(f"results/datasets/{dataset}/coordinates.tsv")
        all_coords = coordinates[dataset]
        chosen = selection.read_selection(base / "selection.tsv")
        coords = selection.selected_coordinates(all_coords, chosen)
        n_dataset = all_coords["id"].nunique()
        ingest = _json(f"results/datasets/{dataset}/coordinates.json")
        for path, meta in ingest["inputs"].items():
            inputs[path] = meta["sha256"]
        kind = "Coactivation" if name in config["coactivation"] else "Analysis"
        if analysis["estimator"] == "mkda_chi2":
            n1, n2 = _chi2_groups(base)
            facts = [("dataset", dataset), report.selection_fact(analysis, n1, n_dataset),
                     ("compared with", f"{n2:,} experiments "
                      + ("(the rest of the dataset)" if analysis["versus"] == "rest"
                         else "(a second selection)")),
                     ("kernel", f"sphere of {analysis['kernel']['r']:g} mm")]
            table = io.read_tsv(base / f"{CHI2_MAP}_tab-clust.tsv")
            section = report.chi2_section(name, analysis, facts, base / "figures" / "glass.png",
                                          table, kind=kind)
            section["figures"].insert(0, {"title": "Foci of the selected experiments",
                                          "path": base / "figures" / "foci.png"})
            sections.append(section)
            continue
        # the FWHMs are in the MA maps' sidecar (read beside its maps: the maps are the
        # input, so that the report's record does not depend on the sidecar's timing)
        ma = provenance.sidecar_path(smk.params.ma_files[name])
        ma_record = {**_json(ma), "n_foci_outside_mask": ingest["n_foci_outside_mask"],
                     "outside_mask_foci": ingest["outside_mask_foci"]}
        figures = [
            ("Foci of every experiment", base / "figures" / "foci.png"),
            ("z in clusters surviving cluster-level FWE (size), glass brain",
             base / "figures" / "glass.png"),
            ("The same, axial slices", base / "figures" / "slices.png"),
        ]
        target = analysis["diagnostics"]["target"]
        tables = report.diagnostics_tables(
            target, {kind: io.read_tsv(base / f"{target}_{suffix}.tsv")
                     for kind, suffix in DIAGNOSTICS.items()})
        section = report.analysis_section(
            name, analysis, coords, ma_record, _json(base / "fwe_summary.json"), figures,
            config["seed"], cbma.__version__, tables=tables)
        if analysis.get("select"):
            section["facts"].insert(1, report.selection_fact(analysis, len(chosen), n_dataset))
        section["kind"] = kind
        sections.append(section)
    for kind, section in [("contrast", "contrasts"), ("conjunction", "conjunctions")]:
        for name, block in config[section].items():
            base = Path("results") / section / name
            if kind == "contrast" and block["method"] == "mkda_chi2":
                n1, n2 = (len(selection.read_selection(
                    Path("results/analyses") / a / "selection.tsv")) for a in block["analyses"])
                facts = [("groups", f"{block['analyses'][0]} ({n1:,} experiments) against "
                          f"{block['analyses'][1]} ({n2:,})")]
                table = io.read_tsv(base / f"{CHI2_MAP}_tab-clust.tsv")
                sections.append(report.chi2_section(
                    name, {**block, "versus": "selection"}, facts,
                    base / "figures" / "glass.png", table, kind="Contrast"))
                continue
            if kind == "contrast":
                table = io.read_tsv(base / "z_desc-group1MinusGroup2_tab-clust.tsv")
                thresholded = base / "z_desc-group1MinusGroup2_thresholded.nii.gz"
            else:
                table = io.read_tsv(base / f"{block['map']}_tab-clust.tsv")
                thresholded = base / f"{block['map']}.nii.gz"
            n_voxels = int((np.asanyarray(io.load_nifti(thresholded).dataobj) != 0).sum())
            if kind == "conjunction":
                block = {**block, "alphas": [analyses[a]["correction"]["alpha"]
                                             for a in block["analyses"]]}
            sections.append(report.compare_section(
                kind, name, block, table, base / "figures" / "glass.png", n_voxels))
    for name, block in config["decode"].items():
        base = Path("results/decode") / name
        ranked = io.read_tsv(base / "decoding_ranked.tsv")
        n_terms = int(ranked.groupby("image").size().max())
        sections.append(report.decode_section(name, block, ranked,
                                              base / "figures" / "top_terms.png", n_terms))
    for name, block in config["queries"].items():
        base = Path("results/queries") / name
        terms = pd.read_csv(base / "terms.tsv", sep="\t", keep_default_na=False)
        sections.append(report.query_section(name, block, terms, base / "figures" / "glass.png"))
    for name, block in config["evaluate"].items():
        base = Path("results/evaluation") / name
        record = _json(base / "held_out.json")
        sections.append(report.evaluation_section(
            name, block, io.read_tsv(base / "summary.tsv"), base / "figures" / "dice_curves.png",
            record["n_train"]))
    for name in config["classify"]:
        base = Path("results/classify") / name
        figures = [("Weights of the whole-brain classifier", base / "figures" / "weights.png"),
                   ("Searchlight: balanced accuracy above chance",
                    base / "figures" / "searchlight.png")]
        sections.append(report.classify_section(
            name, _json(base / "classification.json"), figures,
            io.read_tsv(base / "searchlight_tab-clust.tsv")))
    inputs_table = pd.DataFrame({"file": list(inputs), "sha256": list(inputs.values())})
    report.render({
        "title": "cbma report",
        "version": cbma.__version__,
        "sections": sections,
        "methods": [s["methods"] for s in sections],
        "references": list(report.REFERENCES.values()),
        "versions": provenance.versions(),
        "inputs_html": report.table_html(inputs_table),
        # a plain copy: defaults shared between blocks would print as YAML aliases
        "config_yaml": yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False),
    }, smk.output.html)
    job.finish()
    job.log(f"report with {len(sections)} sections: {smk.output[0]}", echo=True)


run(snakemake, main)  # noqa: F821
