rule ingest:
    input:
        files=lambda wc: DATASET_FILES[wc.dataset],
        mask=MASK,
    output:
        with_sidecars(["results/datasets/{dataset}/coordinates.tsv"]),
    log:
        "logs/ingest/{dataset}.log",
    benchmark:
        "results/benchmarks/ingest/{dataset}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        format=lambda wc: DATASETS[wc.dataset]["format"],
        talairach_transform=lambda wc: DATASETS[wc.dataset]["talairach_transform"],
        drop_outside_mask=lambda wc: DATASETS[wc.dataset]["drop_outside_mask"],
        code=code_fingerprint("io", "space"),
    message:
        "Reading the foci of dataset {wildcards.dataset}"
    script:
        "../../scripts/ingest.py"
