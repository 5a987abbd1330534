rule figures:
    input:
        coordinates=coordinates_file,
        z="results/analyses/{analysis}/z_desc-size_level-cluster_corr-FWE_method-montecarlo_thresholded.nii.gz",
    output:
        foci=report(
            "results/analyses/{analysis}/figures/foci.png",
            caption="../report/foci.rst",
            category="{analysis}",
            labels={"analysis": "{analysis}", "figure": "foci"},
        ),
        glass=report(
            "results/analyses/{analysis}/figures/glass.png",
            caption="../report/glass.rst",
            category="{analysis}",
            labels={"analysis": "{analysis}", "figure": "glass brain"},
        ),
        slices=report(
            "results/analyses/{analysis}/figures/slices.png",
            caption="../report/slices.rst",
            category="{analysis}",
            labels={"analysis": "{analysis}", "figure": "slices"},
        ),
    log:
        "logs/figures/{analysis}.log",
    benchmark:
        "results/benchmarks/figures/{analysis}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        code=code_fingerprint("report"),
    message:
        "Figures of {wildcards.analysis}"
    script:
        "../../scripts/figures.py"


rule report:
    input:
        figures=expand(
            "results/analyses/{analysis}/figures/{fig}.png",
            analysis=ANALYSES,
            fig=["foci", "glass", "slices"],
        ),
        summaries=expand(
            "results/analyses/{analysis}/fwe_summary.json", analysis=ANALYSES
        ),
        coordinates=expand(
            "results/datasets/{dataset}/coordinates.tsv",
            dataset=[ANALYSES[a]["dataset"] for a in ANALYSES],
        ),
        ma_sidecars=[
            f"results/datasets/{a['dataset']}/ma-{kernel_id(a['kernel'])}.json"
            for a in ANALYSES.values()
        ],
    output:
        "results/report.html",
    log:
        "logs/report.log",
    conda:
        "../../envs/cbma.yaml"
    params:
        config=config,
        analyses=list(ANALYSES),
        code=code_fingerprint("report"),
    message:
        "Writing the HTML report"
    script:
        "../../scripts/report.py"
