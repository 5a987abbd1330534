# Beyond keywords: a free-text model of each dataset (queries, held-out
# evaluation) and multivariate decoding of studies (classify).


rule text_model:
    input:
        unpack(lambda wc: text_inputs(wc.dataset)),
    output:
        model=layout.dataset_file("text-model.npz"),
        sidecar=layout.dataset_file("text-model.json"),
    log:
        layout.log("text_model", "{dataset}"),
    benchmark:
        layout.benchmark("text_model", "{dataset}")
    conda:
        "../../envs/cbma.yaml"
    params:
        settings=TEXT_MODEL,
        seed=config["seed"],
        code=script_code("text_model"),
    message:
        "Free-text model of {wildcards.dataset} (titles -> sphere maps)"
    script:
        "../../scripts/text_model.py"


rule query:
    input:
        model=lambda wc: text_model_file(QUERIES[wc.query]["dataset"]),
        mask=MASK,
    output:
        map=layout.query_file("map.nii.gz"),
        terms=layout.query_file("terms.tsv"),
        figure=report(
            layout.query_file("figures/glass.png"),
            caption="../report/query.rst",
            category="queries",
            labels={"query": "{query}", "figure": "glass brain"},
        ),
        sidecars=sidecars([layout.query_file(f) for f in layout.QUERY_FILES]),
    log:
        layout.log("query", "{query}"),
    benchmark:
        layout.benchmark("query", "{query}")
    conda:
        "../../envs/cbma.yaml"
    params:
        text=lambda wc: QUERIES[wc.query]["text"],
        code=script_code("query"),
    message:
        "Map of the query {wildcards.query}: {params.text!r}"
    script:
        "../../scripts/query.py"


rule evaluate:
    input:
        unpack(lambda wc: text_inputs(EVALUATE[wc.evaluation]["dataset"])),
    output:
        held_out=layout.evaluation_file("held_out.tsv"),
        summary=layout.evaluation_file("summary.tsv"),
        curves=layout.evaluation_file("dice_curves.tsv"),
        figure=report(
            layout.evaluation_file("figures/dice_curves.png"),
            caption="../report/evaluate.rst",
            category="evaluation",
            labels={"evaluation": "{evaluation}", "figure": "Dice curves"},
        ),
        sidecars=sidecars([layout.evaluation_file(f) for f in layout.EVALUATION_FILES]),
    log:
        layout.log("evaluate", "{evaluation}"),
    benchmark:
        layout.benchmark("evaluate", "{evaluation}")
    # a long job that nothing waits for: started as soon as it can, it runs beside
    # the analyses instead of after them (scheduling only; the outputs are the same)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        settings=TEXT_MODEL,
        test_fraction=lambda wc: EVALUATE[wc.evaluation]["test_fraction"],
        max_test=lambda wc: EVALUATE[wc.evaluation]["max_test"],
        seed=config["seed"],
        code=script_code("evaluate"),
    message:
        "Held-out evaluation {wildcards.evaluation}: text model vs keyword baseline"
    script:
        "../../scripts/evaluate.py"


rule classify:
    input:
        unpack(classify_inputs),
    output:
        scores=layout.classify_file("cv_scores.tsv"),
        summary=layout.classify_file("classification.json"),
        weights=layout.classify_file("weights.nii.gz"),
        searchlight=layout.classify_file("searchlight.nii.gz"),
        table=layout.classify_file(f"{layout.cluster_table('searchlight')}.tsv"),
        weights_figure=report(
            layout.classify_file("figures/weights.png"),
            caption="../report/classify.rst",
            category="classify",
            labels={"classifier": "{classifier}", "figure": "weights"},
        ),
        searchlight_figure=report(
            layout.classify_file("figures/searchlight.png"),
            caption="../report/classify.rst",
            category="classify",
            labels={"classifier": "{classifier}", "figure": "searchlight"},
        ),
        sidecars=sidecars(
            [
                layout.classify_file(f)
                for f in layout.CLASSIFY_FILES
                if not f.endswith(".json")
            ]
        ),
    log:
        layout.log("classify", "{classifier}"),
    benchmark:
        layout.benchmark("classify", "{classifier}")
    # a long job that nothing waits for: started as soon as it can, it runs beside
    # the analyses instead of after them (scheduling only; the outputs are the same)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CLASSIFY[wc.classifier]["analyses"],
        n_splits=lambda wc: CLASSIFY[wc.classifier]["n_splits"],
        radius=lambda wc: CLASSIFY[wc.classifier]["radius"],
        step=lambda wc: CLASSIFY[wc.classifier]["step"],
        seed=config["seed"],
        atlases=TABLE_ATLASES,
        talairach=TALAIRACH,
        code=script_code("classify"),
    message:
        "Decoding {params.analyses[0]} vs {params.analyses[1]} from the studies' maps"
    script:
        "../../scripts/classify.py"
