rule estimate:
    input:
        ma=ma_file,
        selection=selection_file,
        mask=MASK,
    output:
        maps=with_sidecars(analysis_files(["stat", "p", "z", "logp"])),
        null=with_sidecars(["results/analyses/{analysis}/null_approximate.tsv"]),
    log:
        "logs/estimate/{analysis}.log",
    benchmark:
        "results/benchmarks/estimate/{analysis}.tsv"
    wildcard_constraints:
        analysis="|".join(FWE_ANALYSES) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        code=script_code("estimate"),
    message:
        "{params.estimator} of {wildcards.analysis} with its approximate null"
    script:
        "../../scripts/estimate.py"


rule chi2:
    input:
        ma=ma_file,
        selection=selection_file,
        versus="results/analyses/{analysis}/versus.tsv",
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
    output:
        maps=with_sidecars(analysis_files(CHI2_MAPS)),
        table=with_sidecars([f"results/analyses/{{analysis}}/{CHI2_TABLE}"]),
    log:
        "logs/chi2/{analysis}.log",
    benchmark:
        "results/benchmarks/chi2/{analysis}.tsv"
    wildcard_constraints:
        analysis="|".join(CHI2_ANALYSES) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        q=lambda wc: ANALYSES[wc.analysis]["correction"]["q"],
        min_size=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["min_size"],
        code=script_code("chi2"),
    message:
        "MKDA chi-square tests of {wildcards.analysis} against the other studies"
    script:
        "../../scripts/chi2.py"


rule neurosynth_images:
    input:
        maps=analysis_files(CHI2_MAPS),
        mask=MASK,
    output:
        directory("results/analyses/{analysis}/neurosynth"),
    log:
        "logs/neurosynth_images/{analysis}.log",
    benchmark:
        "results/benchmarks/neurosynth_images/{analysis}.tsv"
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
