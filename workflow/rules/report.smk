rule figures:
    input:
        coordinates=coordinates_file,
        selection=selection_file,
        z=lambda wc: analysis_figure_map(wc.analysis),
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
        sidecars=expand(
            "results/analyses/{{analysis}}/figures/{fig}.json",
            fig=["foci", "glass", "slices"],
        ),
    log:
        "logs/figures/{analysis}.log",
    benchmark:
        "results/benchmarks/figures/{analysis}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        q=lambda wc: ANALYSES[wc.analysis]["correction"]["q"],
        code=script_code("figures"),
    message:
        "Figures of {wildcards.analysis}"
    script:
        "../../scripts/figures.py"


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report.html",
        sidecar="results/report.json",
    log:
        "logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        config=config,
        code=script_code("report"),
    message:
        "Writing the HTML report"
    script:
        "../../scripts/report.py"


rule compare_figure:
    input:
        compare_figure_input,
    output:
        report(
            "results/{kind}/{name}/figures/glass.png",
            caption="../report/compare.rst",
            category="{kind}",
            labels={"name": "{name}", "figure": "glass brain"},
        ),
        "results/{kind}/{name}/figures/glass.json",
    log:
        "logs/compare_figure/{kind}_{name}.log",
    benchmark:
        "results/benchmarks/compare_figure/{kind}_{name}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        code=script_code("compare_figure"),
    message:
        "Figure of {wildcards.kind} {wildcards.name}"
    script:
        "../../scripts/compare_figure.py"


rule provenance:
    input:
        [f for f in final_outputs() if f != "results/provenance.json"],
    output:
        "results/provenance.json",
    log:
        "logs/provenance.log",
    benchmark:
        "results/benchmarks/provenance.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        config=config,
        code=script_code("provenance"),
    message:
        "Writing the run's provenance record"
    script:
        "../../scripts/provenance.py"
