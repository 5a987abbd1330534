# Ingest: any supported input -> the canonical foci table; select: which
# experiments an analysis takes.


rule ingest:
    input:
        files=dataset_files,
        abstracts=abstracts_files,
        annotations=annotation_files,
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
    # on the way to the Monte Carlo: first (see rule fwe_null)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        format=lambda wc: DATASETS[wc.dataset]["format"],
        features=lambda wc: "features" in DATASETS[wc.dataset],
        talairach_transform=lambda wc: DATASETS[wc.dataset]["talairach_transform"],
        drop_outside_mask=lambda wc: DATASETS[wc.dataset]["drop_outside_mask"],
        labels=lambda wc: DATASETS[wc.dataset].get("labels"),
        groups=lambda wc: pool_columns(wc.dataset),
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
    # on the way to the Monte Carlo: first (see rule fwe_null)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        select=lambda wc: ANALYSES[wc.analysis].get("select"),
        versus=versus_of,
        warn_shared=warn_shared,
        code=script_code("select"),
    message:
        "Selecting the experiments of {wildcards.analysis}"
    script:
        "../../scripts/select.py"


rule pool:
    input:
        coordinates=dataset_coordinates,
        selection=layout.analysis_file("selection.tsv"),
        files=analysis_dataset_files,
    output:
        coordinates=layout.pooled_file("coordinates.tsv"),
        selection=layout.pooled_file("selection.tsv"),
        groups=layout.pooled_file("groups.tsv"),
        sidecars=sidecars(
            [
                layout.pooled_file("coordinates.tsv"),
                layout.pooled_file("selection.tsv"),
                layout.pooled_file("groups.tsv"),
            ]
        ),
    log:
        layout.log("pool", "{analysis}"),
    benchmark:
        layout.benchmark("pool", "{analysis}")
    wildcard_constraints:
        analysis="|".join(a for a in ANALYSES if is_pooled(a)) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        pool=lambda wc: pool_of(wc.analysis),
        code=script_code("pool"),
    message:
        "Pooling the experiments of {wildcards.analysis} by subject group ({params.pool})"
    script:
        "../../scripts/pool.py"
