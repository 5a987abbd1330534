# The statistic of each analysis: ALE, MKDA density or KDA with its histogram
# null; or MKDA chi-square tests of its selection against the other studies.


rule estimate:
    input:
        ma=ma_file,
        selection=selection_file,
        coordinates=coordinates_file,
        mask=MASK,
    output:
        maps=with_sidecars([layout.analysis_map(n) for n in layout.UNCORRECTED_MAPS]),
        null=with_sidecars([layout.analysis_file("null_approximate.tsv")]),
    log:
        layout.log("estimate", "{analysis}"),
    benchmark:
        layout.benchmark("estimate", "{analysis}")
    wildcard_constraints:
        analysis="|".join(FWE_ANALYSES) or "^$",
    # on the way to the Monte Carlo: first (see rule fwe_null)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        weights=lambda wc: ANALYSES[wc.analysis]["weights"],
        code=script_code("estimate"),
    message:
        "{params.estimator} of {wildcards.analysis} with its approximate null"
    script:
        "../../scripts/estimate.py"


rule chi2:
    input:
        ma=ma_file,
        selection=selection_file,
        versus=layout.analysis_file("versus.tsv"),
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
        atlases=TABLE_ATLAS_FILES,
    output:
        maps=with_sidecars([layout.analysis_map(n) for n in layout.CHI2_MAPS]),
        table=with_sidecars([layout.analysis_file(f"{layout.CHI2_TABLE}.tsv")]),
    log:
        layout.log("chi2", "{analysis}"),
    benchmark:
        layout.benchmark("chi2", "{analysis}")
    wildcard_constraints:
        analysis="|".join(CHI2_ANALYSES) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        q=lambda wc: ANALYSES[wc.analysis]["correction"]["q"],
        min_size=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["min_size"],
        min_volume=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["min_volume"],
        atlases=TABLE_ATLASES,
        talairach=TALAIRACH,
        code=script_code("chi2"),
    message:
        "MKDA chi-square tests of {wildcards.analysis} against the other studies"
    script:
        "../../scripts/chi2.py"


rule neurosynth_images:
    input:
        maps=[layout.analysis_map(n) for n in layout.CHI2_MAPS],
        mask=MASK,
    output:
        directory(layout.analysis_file("neurosynth")),
    log:
        layout.log("neurosynth_images", "{analysis}"),
    benchmark:
        layout.benchmark("neurosynth_images", "{analysis}")
    wildcard_constraints:
        analysis="|".join(CHI2_ANALYSES) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        q=lambda wc: ANALYSES[wc.analysis]["correction"]["q"],
        code=script_code("neurosynth_images"),
    message:
        "Neurosynth's image names for {wildcards.analysis}"
    script:
        "../../scripts/neurosynth_images.py"
