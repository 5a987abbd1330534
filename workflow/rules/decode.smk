# Decoding. The association map of every term, in one pass over a dataset's sphere
# maps (cached per dataset, kernel and frequency threshold); then Pearson r with
# each image.


rule term_maps:
    input:
        ma="results/datasets/{dataset}/ma-{kernel}.npz",
        terms="results/datasets/{dataset}/terms.npz",
    output:
        maps="results/datasets/{dataset}/term-maps_{kernel}_ft{threshold}.npy",
        table="results/datasets/{dataset}/term-maps_{kernel}_ft{threshold}.tsv",
        sidecars=[
            "results/datasets/{dataset}/term-maps_{kernel}_ft{threshold}.json",
        ],
    log:
        "logs/term_maps/{dataset}_{kernel}_ft{threshold}.log",
    benchmark:
        "results/benchmarks/term_maps/{dataset}_{kernel}_ft{threshold}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        code=script_code("term_maps"),
    message:
        "Association maps of every term of {wildcards.dataset} (frequency >= {wildcards.threshold})"
    script:
        "../../scripts/term_maps.py"


rule decode:
    input:
        maps=lambda wc: f"{term_maps_prefix(wc.decode)}.npy",
        table=lambda wc: f"{term_maps_prefix(wc.decode)}.tsv",
        images=decode_images,
        mask=MASK,
    output:
        wide="results/decode/{decode}/decoding.tsv",
        ranked="results/decode/{decode}/decoding_ranked.tsv",
        figure=report(
            "results/decode/{decode}/figures/top_terms.png",
            caption="../report/decode.rst",
            category="decoding",
            labels={"decoding": "{decode}", "figure": "top terms"},
        ),
        sidecars=[
            "results/decode/{decode}/decoding.json",
            "results/decode/{decode}/decoding_ranked.json",
            "results/decode/{decode}/figures/top_terms.json",
        ],
    log:
        "logs/decode/{decode}.log",
    benchmark:
        "results/benchmarks/decode/{decode}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        n_top=lambda wc: DECODE[wc.decode]["n_top"],
        code=script_code("decode"),
    message:
        "Decoding {wildcards.decode}: Pearson r of each image with every term map"
    script:
        "../../scripts/decode.py"
