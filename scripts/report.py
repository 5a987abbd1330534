"""Rule report: one self-contained HTML page for the whole run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import cbma
from cbma import io, provenance, report
from cbma.runner import run

DIAGNOSTICS = {
    "clusters": "tab-clust",
    "jackknife": "diag-Jackknife_tab-counts_tail-positive",
    "focus_counter": "diag-FocusCounter_tab-counts_tail-positive",
    "contributions": "diag-Contribution_tab-shares_tail-positive",
}


def _json(path):
    return json.loads(Path(path).read_text())


def main(job):
    smk = job.smk
    config = smk.params.config
    sections, inputs = [], {}
    for name in smk.params.analyses:
        analysis = config["analyses"][name]
        dataset = analysis["dataset"]
        base = Path("results/analyses") / name
        coords = io.read_tsv(f"results/datasets/{dataset}/coordinates.tsv")
        ingest = _json(f"results/datasets/{dataset}/coordinates.json")
        # the FWHMs are in the MA maps' sidecar (read beside its maps: the maps are the
        # input, so that the report's record does not depend on the sidecar's timing)
        ma = provenance.sidecar_path(
            next(p for p in smk.input.ma if p.startswith(f"results/datasets/{dataset}/")))
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
        sections.append(report.analysis_section(
            name, analysis, coords, ma_record, _json(base / "fwe_summary.json"), figures,
            config["seed"], cbma.__version__, tables=tables))
        for path, meta in ingest["inputs"].items():
            inputs[path] = meta["sha256"]
    for kind, section in [("contrast", "contrasts"), ("conjunction", "conjunctions")]:
        for name, block in config[section].items():
            base = Path("results") / section / name
            if kind == "contrast":
                table = io.read_tsv(base / "z_desc-group1MinusGroup2_tab-clust.tsv")
                thresholded = base / "z_desc-group1MinusGroup2_thresholded.nii.gz"
            else:
                table = io.read_tsv(base / f"{block['map']}_tab-clust.tsv")
                thresholded = base / f"{block['map']}.nii.gz"
            n_voxels = int((np.asanyarray(io.load_nifti(thresholded).dataobj) != 0).sum())
            sections.append(report.compare_section(
                kind, name, block, table, base / "figures" / "glass.png", n_voxels))
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
