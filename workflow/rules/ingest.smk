# Ingest: any supported input -> the canonical foci table; select: which
# experiments an analysis takes.


rule ingest:
    input:
        files=dataset_files,
        abstracts=abstracts_files,
        mask=MASK,
    output:
        coordinates=layout.dataset_file("coordinates.tsv"),
        terms=layout.dataset_file("terms.npz"),
        studies=layout.dataset_file("studies.tsv"),
        sidecars=sidecars(
            [
                layout.dataset_file("coordinates.tsv"),
                layout.dataset_file("terms.npz"),
                layout.dataset_file("studies.tsv"),
            ]
        ),
    log:
        layout.log("ingest", "{dataset}"),
    benchmark:
        layout.benchmark("ingest", "{dataset}")
    conda:
        "../../envs/cbma.yaml"
    params:
        format=lambda wc: DATASETS[wc.dataset]["format"],
        features=lambda wc: "features" in DATASETS[wc.dataset],
        talairach_transform=lambda wc: DATASETS[wc.dataset]["talairach_transform"],
        drop_outside_mask=lambda wc: DATASETS[wc.dataset]["drop_outside_mask"],
        code=script_code("ingest"),
    message:
        "Reading the foci of dataset {wildcards.dataset}"
    script:
        "../../scripts/ingest.py"


rule select:
    input:
        unpack(selection_inputs),
    output:
        with_sidecars(
            [layout.analysis_file("selection.tsv"), layout.analysis_file("versus.tsv")]
        ),
    log:
        layout.log("select", "{analysis}"),
    benchmark:
        layout.benchmark("select", "{analysis}")
    conda:
        "../../envs/cbma.yaml"
    params:
        select=lambda wc: ANALYSES[wc.analysis].get("select"),
        versus=versus_of,
        code=script_code("select"),
    message:
        "Selecting the experiments of {wildcards.analysis}"
    script:
        "../../scripts/select.py"
