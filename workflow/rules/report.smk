# Figures of every analysis and comparison, the HTML report, and the run's
# provenance record.


rule figures:
    input:
        coordinates=coordinates_file,
        selection=selection_file,
        z=analysis_figure_map,
        mask=MASK,
    output:
        foci=report(
            layout.figure("analyses", "{analysis}", "foci"),
            caption="../report/foci.rst",
            category="{analysis}",
            labels={"analysis": "{analysis}", "figure": "foci"},
        ),
        glass=report(
            layout.figure("analyses", "{analysis}", "glass"),
            caption="../report/glass.rst",
            category="{analysis}",
            labels={"analysis": "{analysis}", "figure": "glass brain"},
        ),
        slices=report(
            layout.figure("analyses", "{analysis}", "slices"),
            caption="../report/slices.rst",
            category="{analysis}",
            labels={"analysis": "{analysis}", "figure": "slices"},
        ),
        sidecars=sidecars(
            [
                layout.figure("analyses", "{analysis}", fig)
                for fig in ["foci", "glass", "slices"]
            ]
        ),
    log:
        layout.log("figures", "{analysis}"),
    benchmark:
        layout.benchmark("figures", "{analysis}")
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
        html=layout.REPORT,
        sidecar=sidecar_path(layout.REPORT),
    log:
        layout.log("report"),
    benchmark:
        layout.benchmark("report")
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
        map=compare_figure_input,
        mask=MASK,
    output:
        report(
            layout.figure("{kind}", "{name}", "glass"),
            caption="../report/compare.rst",
            category="{kind}",
            labels={"name": "{name}", "figure": "glass brain"},
        ),
        sidecar_path(layout.figure("{kind}", "{name}", "glass")),
    log:
        layout.log("compare_figure", "{kind}", "{name}"),
    benchmark:
        layout.benchmark("compare_figure", "{kind}", "{name}")
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
        [f for f in final_outputs() if f != layout.PROVENANCE],
    output:
        layout.PROVENANCE,
    log:
        layout.log("provenance"),
    benchmark:
        layout.benchmark("provenance")
    conda:
        "../../envs/cbma.yaml"
    params:
        config=config,
        code=script_code("provenance"),
    message:
        "Writing the run's provenance record"
    script:
        "../../scripts/provenance.py"
