# ALE subtraction (label permutation in chunks, then a gather), MKDA chi-square
# contrasts and conjunction.


rule subtraction_null:
    input:
        ma=contrast_ma_files,
        selections=contrast_selections,
    output:
        with_sidecars(["results/contrasts/{contrast}/null/chunk-{chunk}.npz"]),
    log:
        "logs/subtraction_null/{contrast}_chunk-{chunk}.log",
    benchmark:
        "results/benchmarks/subtraction_null/{contrast}_chunk-{chunk}.tsv"
    wildcard_constraints:
        contrast="|".join(SUBTRACTIONS) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        seed=config["seed"],
        permutations=chunk_range,
        code=script_code("subtraction_null"),
    message:
        "Label permutations of {wildcards.contrast}, chunk {wildcards.chunk}"
    script:
        "../../scripts/subtraction_null.py"


rule subtraction:
    input:
        ma=contrast_ma_files,
        selections=contrast_selections,
        chunks=subtraction_chunks,
        significant=contrast_significance,
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
    output:
        maps=with_sidecars(
            [f"results/contrasts/{{contrast}}/{n}.nii.gz" for n in SUBTRACTION_MAPS]
        ),
        table=with_sidecars(
            ["results/contrasts/{contrast}/z_desc-group1MinusGroup2_tab-clust.tsv"]
        ),
        null=with_sidecars(["results/contrasts/{contrast}/null_distributions.tsv"]),
    log:
        "logs/subtraction/{contrast}.log",
    benchmark:
        "results/benchmarks/subtraction/{contrast}.tsv"
    wildcard_constraints:
        contrast="|".join(SUBTRACTIONS) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONTRASTS[wc.contrast]["analyses"],
        mode=lambda wc: CONTRASTS[wc.contrast]["mode"],
        n_iters=lambda wc: CONTRASTS[wc.contrast]["n_iters"],
        alpha=lambda wc: CONTRASTS[wc.contrast]["alpha"],
        code=script_code("subtraction"),
    message:
        "ALE subtraction {wildcards.contrast} ({params.mode} mode, {params.n_iters} permutations)"
    script:
        "../../scripts/subtraction.py"


rule conjunction:
    input:
        maps=conjunction_inputs,
        z=lambda wc: [
            f"results/analyses/{a}/z.nii.gz"
            for a in CONJUNCTIONS[wc.conjunction]["analyses"]
        ],
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
    output:
        maps=with_sidecars(["results/conjunctions/{conjunction}/{cmap}.nii.gz"]),
        table=with_sidecars(["results/conjunctions/{conjunction}/{cmap}_tab-clust.tsv"]),
    log:
        "logs/conjunction/{conjunction}_{cmap}.log",
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONJUNCTIONS[wc.conjunction]["analyses"],
        alphas=lambda wc: [
            ANALYSES[a]["correction"]["alpha"]
            for a in CONJUNCTIONS[wc.conjunction]["analyses"]
        ],
        code=script_code("conjunction"),
    message:
        "Conjunction {wildcards.conjunction} of {params.analyses}"
    script:
        "../../scripts/conjunction.py"


rule chi2_contrast:
    input:
        ma=contrast_ma_files,
        selections=contrast_selections,
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
    output:
        maps=with_sidecars(
            [f"results/contrasts/{{contrast}}/{n}.nii.gz" for n in CHI2_MAPS]
        ),
        table=with_sidecars([f"results/contrasts/{{contrast}}/{CHI2_TABLE}"]),
    log:
        "logs/chi2_contrast/{contrast}.log",
    benchmark:
        "results/benchmarks/chi2_contrast/{contrast}.tsv"
    wildcard_constraints:
        contrast="|".join(CHI2_CONTRASTS) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONTRASTS[wc.contrast]["analyses"],
        q=lambda wc: CONTRASTS[wc.contrast]["alpha"],
        min_size=0,
        code=script_code("chi2"),
    message:
        "MKDA chi-square tests of {params.analyses[0]} against {params.analyses[1]}"
    script:
        "../../scripts/chi2.py"
