rule estimate:
    input:
        ma=ma_file,
        mask=MASK,
    output:
        maps=with_sidecars(analysis_files(["stat", "p", "z", "logp"])),
        null=with_sidecars(["results/analyses/{analysis}/null_approximate.tsv"]),
    log:
        "logs/estimate/{analysis}.log",
    benchmark:
        "results/benchmarks/estimate/{analysis}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        code=code_fingerprint("estimators", "io", "space"),
    message:
        "ALE of {wildcards.analysis} with its histogram null"
    script:
        "../../scripts/estimate.py"
