# Monte Carlo FWE: fixed-size chunks of iterations (scatter), then one gather.
# Each iteration is seeded from (seed, analysis, iteration), so raising n_iters
# adds chunk jobs and leaves the finished ones alone.


rule fwe_null:
    input:
        coordinates=coordinates_file,
        selection=selection_file,
        null=layout.analysis_file("null_approximate.tsv"),
        mask=MASK,
    output:
        with_sidecars([layout.fwe_chunk()]),
    log:
        layout.log("fwe_null", "{analysis}", "chunk-{chunk}"),
    benchmark:
        layout.benchmark("fwe_null", "{analysis}", "chunk-{chunk}")
    # The Monte Carlo and the jobs on the way to it go first: it is the longest
    # part of a run, and jobs that nothing waits for yet (atlas_labels, figures)
    # fill the cores beside it (scheduling only; the outputs are the same)
    priority: 1
    conda:
        "../../envs/cbma.yaml"
    params:
        seed=config["seed"],
        chunk_size=config["chunk_size"],
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        kernel=lambda wc: ANALYSES[wc.analysis]["kernel"],
        weights=lambda wc: ANALYSES[wc.analysis]["weights"],
        voxel_thresh=lambda wc: correction(wc)["voxel_thresh"],
        null_sampling=lambda wc: correction(wc)["null_sampling"],
        code=script_code("fwe_null"),
    message:
        "Monte Carlo null of {wildcards.analysis}, chunk {wildcards.chunk}"
    script:
        "../../scripts/fwe_null.py"


checkpoint fwe_progress:
    input:
        chunks_so_far,
    output:
        layout.fwe_progress(),
    log:
        layout.log("fwe_progress", "{analysis}", "chunk-{chunk}"),
    benchmark:
        layout.benchmark("fwe_progress", "{analysis}", "chunk-{chunk}")
    conda:
        "../../envs/cbma.yaml"
    params:
        alpha=lambda wc: correction(wc)["alpha"],
        early_stopping=lambda wc: correction(wc)["early_stopping"],
        code=script_code("fwe_progress"),
    message:
        "Early-stopping check of {wildcards.analysis} after chunk {wildcards.chunk}"
    script:
        "../../scripts/fwe_progress.py"


rule fwe_correct:
    input:
        stat=layout.analysis_map("stat"),
        z=layout.analysis_map("z"),
        null=layout.analysis_file("null_approximate.tsv"),
        chunks=null_chunks,
        mask=MASK,
    output:
        maps=with_sidecars(
            [
                layout.analysis_map(n)
                for n in [*layout.FWE_MAPS, *layout.FWE_THRESHOLDED_MAPS]
            ]
        ),
        null=with_sidecars([layout.analysis_file("null_distributions.tsv")]),
        summary=layout.analysis_file("fwe_summary.json"),
    log:
        layout.log("fwe_correct", "{analysis}"),
    benchmark:
        layout.benchmark("fwe_correct", "{analysis}")
    conda:
        "../../envs/cbma.yaml"
    params:
        n_iters=lambda wc: correction(wc)["n_iters"],
        voxel_thresh=lambda wc: correction(wc)["voxel_thresh"],
        alpha=lambda wc: correction(wc)["alpha"],
        early_stopping=lambda wc: correction(wc).get("early_stopping"),
        code=script_code("fwe_correct"),
    message:
        "FWE correction of {wildcards.analysis} (at most {params.n_iters} Monte Carlo iterations)"
    script:
        "../../scripts/fwe_correct.py"
