# Cluster table, Jackknife, FocusCounter and contributions of a corrected map.


rule diagnose:
    input:
        target=layout.analysis_map("z_{level}"),
        logp=layout.analysis_map("logp_{level}"),
        z=layout.analysis_map("z"),
        ma=ma_file,
        selection=selection_file,
        coordinates=coordinates_file,
        mask=MASK,
        atlas=ATLAS["image"],
        atlas_labels=ATLAS["labels"],
        atlases=TABLE_ATLAS_FILES,
    output:
        tables=with_sidecars(list(diagnostics_tables().values())),
        labels=with_sidecars([layout.analysis_map(layout.label_map("z_{level}"))]),
    log:
        layout.log("diagnose", "{analysis}", "{level}"),
    benchmark:
        layout.benchmark("diagnose", "{analysis}", "{level}")
    conda:
        "../../envs/cbma.yaml"
    params:
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        weights=lambda wc: ANALYSES[wc.analysis]["weights"],
        threshold=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["threshold"],
        min_size=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["min_size"],
        min_volume=lambda wc: ANALYSES[wc.analysis]["diagnostics"]["min_volume"],
        atlases=TABLE_ATLASES,
        talairach=TALAIRACH,
        code=script_code("diagnose"),
    message:
        "Clusters, Jackknife and FocusCounter of {wildcards.analysis} (z_{wildcards.level})"
    script:
        "../../scripts/diagnose.py"
