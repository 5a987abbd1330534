rule diagnose:
    input:
        target="results/analyses/{analysis}/z_{level}.nii.gz",
        logp="results/analyses/{analysis}/logp_{level}.nii.gz",
        z="results/analyses/{analysis}/z.nii.gz",
        ma=ma_file,
        selection=selection_file,
        coordinates=coordinates_file,
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
    output:
        tables=with_sidecars(
            [f"results/analyses/{{analysis}}/{n}" for n in DIAGNOSTIC_TABLES]
        ),
        labels=with_sidecars(
            ["results/analyses/{analysis}/label_{level}_tail-positive.nii.gz"]
        ),
    log:
        "logs/diagnose/{analysis}_{level}.log",
    benchmark:
        "results/benchmarks/diagnose/{analysis}_{level}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        threshold=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["threshold"],
        min_size=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["min_size"],
        code=script_code("diagnose"),
    message:
        "Clusters, Jackknife and FocusCounter of {wildcards.analysis} (z_{wildcards.level})"
    script:
        "../../scripts/diagnose.py"
