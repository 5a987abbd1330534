# ALE subtraction (label permutation in chunks, then a gather) and conjunction.


rule subtraction_null:
    input:
        ma=contrast_ma_files,
    output:
        with_sidecars(["results/contrasts/{contrast}/null/chunk-{chunk}.npz"]),
    log:
        "logs/subtraction_null/{contrast}_chunk-{chunk}.log",
    benchmark:
        "results/benchmarks/subtraction_null/{contrast}_chunk-{chunk}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        seed=config["seed"],
        permutations=chunk_range,
        code=code_fingerprint("compare", "io"),
    message:
        "Label permutations of {wildcards.contrast}, chunk {wildcards.chunk}"
    script:
        "../../scripts/subtraction_null.py"


rule subtraction:
    input:
        ma=contrast_ma_files,
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
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONTRASTS[wc.contrast]["analyses"],
        mode=lambda wc: CONTRASTS[wc.contrast]["mode"],
        n_iters=lambda wc: CONTRASTS[wc.contrast]["n_iters"],
        alpha=lambda wc: CONTRASTS[wc.contrast]["alpha"],
        code=code_fingerprint("compare", "clusters", "io", "space"),
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
        code=code_fingerprint("compare", "clusters", "io", "space"),
    message:
        "Conjunction {wildcards.conjunction} of {params.analyses}"
    script:
        "../../scripts/conjunction.py"
