# Cluster table, Jackknife, FocusCounter and contributions of a corrected map; the
# cluster tables' further atlases, read once per run.


rule atlas_labels:
    input:
        lambda wc: atlases.atlas_files([wc.atlas]),
    output:
        with_sidecars([layout.table_atlas(), layout.table_atlas(part="regions.tsv")]),
    log:
        layout.log("atlas_labels", "{atlas}"),
    benchmark:
        layout.benchmark("atlas_labels", "{atlas}")
    conda:
        "../../envs/cbma.yaml"
    params:
        code=script_code("atlas_labels"),
    message:
        "Regions of atlas {wildcards.atlas} for the cluster tables"
    script:
        "../../scripts/atlas_labels.py"


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
