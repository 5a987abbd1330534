rule ingest:
    input:
        files=lambda wc: DATASET_FILES[wc.dataset],
        abstracts=lambda wc: abstracts_file(wc.dataset),
        mask=MASK,
    output:
        coordinates="results/datasets/{dataset}/coordinates.tsv",
        terms="results/datasets/{dataset}/terms.npz",
        studies="results/datasets/{dataset}/studies.tsv",
        sidecars=[
            "results/datasets/{dataset}/coordinates.json",
            "results/datasets/{dataset}/terms.json",
            "results/datasets/{dataset}/studies.json",
        ],
    log:
        "logs/ingest/{dataset}.log",
    benchmark:
        "results/benchmarks/ingest/{dataset}.tsv"
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
            [
                "results/analyses/{analysis}/selection.tsv",
                "results/analyses/{analysis}/versus.tsv",
            ]
        ),
    log:
        "logs/select/{analysis}.log",
    benchmark:
        "results/benchmarks/select/{analysis}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        select=lambda wc: ANALYSES[wc.analysis].get("select"),
        versus=lambda wc: (
            ANALYSES[wc.analysis]["versus"]
            if ANALYSES[wc.analysis]["estimator"] == "mkda_chi2"
            else None
        ),
        code=script_code("select"),
    message:
        "Selecting the experiments of {wildcards.analysis}"
    script:
        "../../scripts/select.py"
