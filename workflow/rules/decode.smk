# Decoding. The association map of every term, in one pass over a dataset's sphere
# maps (cached per dataset, kernel and frequency threshold); then Pearson r with
# each image.


rule term_maps:
    input:
        ma=layout.ma_maps(),
        terms=layout.dataset_file("terms.npz"),
    output:
        maps=layout.term_maps(ext=".npy"),
        table=layout.term_maps(ext=".tsv"),
        sidecars=[layout.term_maps(ext=".json")],
    log:
        layout.log("term_maps", "{dataset}", "{kernel}", "ft{threshold}"),
    benchmark:
        layout.benchmark("term_maps", "{dataset}", "{kernel}", "ft{threshold}")
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
        maps=lambda wc: term_maps_of(wc.decode, ".npy"),
        table=lambda wc: term_maps_of(wc.decode, ".tsv"),
        images=decode_images,
        mask=MASK,
    output:
        wide=layout.decode_file("decoding.tsv"),
        ranked=layout.decode_file("decoding_ranked.tsv"),
        figure=report(
            layout.decode_file("figures/top_terms.png"),
            caption="../report/decode.rst",
            category="decoding",
            labels={"decoding": "{decode}", "figure": "top terms"},
        ),
        sidecars=sidecars([layout.decode_file(f) for f in layout.DECODE_FILES]),
    log:
        layout.log("decode", "{decode}"),
    benchmark:
        layout.benchmark("decode", "{decode}")
    conda:
        "../../envs/cbma.yaml"
    params:
        n_top=lambda wc: DECODE[wc.decode]["n_top"],
        code=script_code("decode"),
    message:
        "Decoding {wildcards.decode}: Pearson r of each image with every term map"
    script:
        "../../scripts/decode.py"
