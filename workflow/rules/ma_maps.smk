# Modeled-activation maps: one sparse experiments x voxels matrix per dataset
# and kernel, shared by every analysis that uses them.


rule ma_maps:
    input:
        coordinates=layout.dataset_file("coordinates.tsv"),
        mask=MASK,
    output:
        with_sidecars([layout.ma_maps()]),
    log:
        layout.log("ma_maps", "{dataset}", "{kernel}"),
    benchmark:
        layout.benchmark("ma_maps", "{dataset}", "{kernel}")
    # on the way to the Monte Carlo: first (see rule fwe_null)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        kernel=lambda wc: KERNELS[wc.kernel],
        code=script_code("ma_maps"),
    message:
        "Modeled-activation maps of {wildcards.dataset} (kernel {wildcards.kernel})"
    script:
        "../../scripts/ma_maps.py"


rule pooled_ma_maps:
    input:
        coordinates=layout.pooled_file("coordinates.tsv"),
        mask=MASK,
    output:
        with_sidecars([layout.pooled_ma_maps()]),
    log:
        layout.log("ma_maps", "{analysis}", "pooled", "{kernel}"),
    benchmark:
        layout.benchmark("ma_maps", "{analysis}", "pooled", "{kernel}")
    wildcard_constraints:
        analysis="|".join(a for a in ANALYSES if is_pooled(a)) or "^$",
    conda:
        "../../envs/cbma.yaml"
    params:
        kernel=lambda wc: KERNELS[wc.kernel],
        code=script_code("ma_maps"),
    message:
        "Modeled-activation maps of the pooled experiments of {wildcards.analysis} (kernel {wildcards.kernel})"
    script:
        "../../scripts/ma_maps.py"
