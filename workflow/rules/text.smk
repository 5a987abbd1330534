# Beyond keywords: a free-text model of each dataset (queries, held-out
# evaluation) and multivariate decoding of studies (classify).


rule text_model:
    input:
        unpack(lambda wc: text_inputs(wc.dataset)),
    output:
        model="results/datasets/{dataset}/text-model.npz",
        sidecar="results/datasets/{dataset}/text-model.json",
    log:
        "logs/text_model/{dataset}.log",
    benchmark:
        "results/benchmarks/text_model/{dataset}.tsv"
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
        map="results/queries/{query}/map.nii.gz",
        terms="results/queries/{query}/terms.tsv",
        figure=report(
            "results/queries/{query}/figures/glass.png",
            caption="../report/query.rst",
            category="queries",
            labels={"query": "{query}", "figure": "glass brain"},
        ),
        sidecars=[
            "results/queries/{query}/map.json",
            "results/queries/{query}/terms.json",
            "results/queries/{query}/figures/glass.json",
        ],
    log:
        "logs/query/{query}.log",
    benchmark:
        "results/benchmarks/query/{query}.tsv"
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
        held_out="results/evaluation/{evaluation}/held_out.tsv",
        summary="results/evaluation/{evaluation}/summary.tsv",
        curves="results/evaluation/{evaluation}/dice_curves.tsv",
        figure=report(
            "results/evaluation/{evaluation}/figures/dice_curves.png",
            caption="../report/evaluate.rst",
            category="evaluation",
            labels={"evaluation": "{evaluation}", "figure": "Dice curves"},
        ),
        sidecars=[
            "results/evaluation/{evaluation}/held_out.json",
            "results/evaluation/{evaluation}/summary.json",
            "results/evaluation/{evaluation}/dice_curves.json",
            "results/evaluation/{evaluation}/figures/dice_curves.json",
        ],
    log:
        "logs/evaluate/{evaluation}.log",
    benchmark:
        "results/benchmarks/evaluate/{evaluation}.tsv"
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
        scores="results/classify/{classifier}/cv_scores.tsv",
        summary="results/classify/{classifier}/classification.json",
        weights="results/classify/{classifier}/weights.nii.gz",
        searchlight="results/classify/{classifier}/searchlight.nii.gz",
        table="results/classify/{classifier}/searchlight_tab-clust.tsv",
        weights_figure=report(
            "results/classify/{classifier}/figures/weights.png",
            caption="../report/classify.rst",
            category="classify",
            labels={"classifier": "{classifier}", "figure": "weights"},
        ),
        searchlight_figure=report(
            "results/classify/{classifier}/figures/searchlight.png",
            caption="../report/classify.rst",
            category="classify",
            labels={"classifier": "{classifier}", "figure": "searchlight"},
        ),
        sidecars=[
            "results/classify/{classifier}/cv_scores.json",
            "results/classify/{classifier}/weights.json",
            "results/classify/{classifier}/searchlight.json",
            "results/classify/{classifier}/searchlight_tab-clust.json",
            "results/classify/{classifier}/figures/weights.json",
            "results/classify/{classifier}/figures/searchlight.json",
        ],
    log:
        "logs/classify/{classifier}.log",
    benchmark:
        "results/benchmarks/classify/{classifier}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CLASSIFY[wc.classifier]["analyses"],
        n_splits=lambda wc: CLASSIFY[wc.classifier]["n_splits"],
        radius=lambda wc: CLASSIFY[wc.classifier]["radius"],
        step=lambda wc: CLASSIFY[wc.classifier]["step"],
        seed=config["seed"],
        code=script_code("classify"),
    message:
        "Decoding {params.analyses[0]} vs {params.analyses[1]} from the studies' maps"
    script:
        "../../scripts/classify.py"
