# ALE subtraction (label permutation in chunks, then a gather), MKDA chi-square
# contrasts and conjunction.


rule subtraction_null:
    input:
        ma=contrast_ma_files,
        selections=contrast_selections,
    output:
        with_sidecars([layout.subtraction_chunk()]),
    log:
        layout.log("subtraction_null", "{contrast}", "chunk-{chunk}"),
    benchmark:
        layout.benchmark("subtraction_null", "{contrast}", "chunk-{chunk}")
    wildcard_constraints:
        contrast="|".join(SUBTRACTIONS) or "^$",
    # on the way to the Monte Carlo: first (see rule fwe_null)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        seed=config["seed"],
        permutations=permutations_of,
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
        atlases=TABLE_ATLAS_FILES,
    output:
        maps=with_sidecars(
            [layout.contrast_file(f"{n}.nii.gz") for n in layout.SUBTRACTION_MAPS]
        ),
        table=with_sidecars([layout.contrast_file(f"{layout.SUBTRACTION_TABLE}.tsv")]),
        null=with_sidecars([layout.contrast_file("null_distributions.tsv")]),
    log:
        layout.log("subtraction", "{contrast}"),
    benchmark:
        layout.benchmark("subtraction", "{contrast}")
    wildcard_constraints:
        contrast="|".join(SUBTRACTIONS) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONTRASTS[wc.contrast]["analyses"],
        mode=lambda wc: CONTRASTS[wc.contrast]["mode"],
        n_iters=lambda wc: CONTRASTS[wc.contrast]["n_iters"],
        alpha=lambda wc: CONTRASTS[wc.contrast]["alpha"],
        atlases=TABLE_ATLASES,
        talairach=TALAIRACH,
        code=script_code("subtraction"),
    message:
        "ALE subtraction {wildcards.contrast} ({params.mode} mode, {params.n_iters} permutations)"
    script:
        "../../scripts/subtraction.py"


rule conjunction:
    input:
        maps=conjunction_inputs,
        z=conjunction_z,
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
        atlases=TABLE_ATLAS_FILES,
    output:
        maps=with_sidecars([layout.conjunction_file("{cmap}.nii.gz")]),
        table=with_sidecars(
            [layout.conjunction_file(f"{layout.cluster_table('{cmap}')}.tsv")]
        ),
    log:
        layout.log("conjunction", "{conjunction}", "{cmap}"),
    benchmark:
        layout.benchmark("conjunction", "{conjunction}", "{cmap}")
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONJUNCTIONS[wc.conjunction]["analyses"],
        alphas=conjunction_alphas,
        atlases=TABLE_ATLASES,
        talairach=TALAIRACH,
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
        atlases=TABLE_ATLAS_FILES,
    output:
        maps=with_sidecars(
            [layout.contrast_file(f"{n}.nii.gz") for n in layout.CHI2_MAPS]
        ),
        table=with_sidecars([layout.contrast_file(f"{layout.CHI2_TABLE}.tsv")]),
    log:
        layout.log("chi2_contrast", "{contrast}"),
    benchmark:
        layout.benchmark("chi2_contrast", "{contrast}")
    wildcard_constraints:
        contrast="|".join(CHI2_CONTRASTS) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        analyses=lambda wc: CONTRASTS[wc.contrast]["analyses"],
        q=lambda wc: CONTRASTS[wc.contrast]["alpha"],
        min_size=0,
        min_volume=0,
        atlases=TABLE_ATLASES,
        talairach=TALAIRACH,
        code=script_code("chi2"),
    message:
        "MKDA chi-square tests of {params.analyses[0]} against {params.analyses[1]}"
    script:
        "../../scripts/chi2.py"
