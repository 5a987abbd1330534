rule ma_maps:
    input:
        coordinates="results/datasets/{dataset}/coordinates.tsv",
        mask=MASK,
    output:
        with_sidecars(["results/datasets/{dataset}/ma-{kernel}.npz"]),
    log:
        "logs/ma_maps/{dataset}_{kernel}.log",
    benchmark:
        "results/benchmarks/ma_maps/{dataset}_{kernel}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        kernel=lambda wc: KERNELS[wc.kernel],
        code=script_code("ma_maps"),
    message:
        "Modeled-activation maps of {wildcards.dataset} (kernel {wildcards.kernel})"
    script:
        "../../scripts/ma_maps.py"
