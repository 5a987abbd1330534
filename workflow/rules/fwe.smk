# Monte Carlo FWE: fixed-size chunks of iterations (scatter), then one gather.
# Each iteration is seeded from (seed, analysis, iteration), so raising n_iters
# adds chunk jobs and leaves the finished ones alone.


rule fwe_null:
    input:
        coordinates=coordinates_file,
        selection=selection_file,
        null="results/analyses/{analysis}/null_approximate.tsv",
        mask=MASK,
    output:
        with_sidecars(["results/analyses/{analysis}/fwe_null/chunk-{chunk}.tsv"]),
    log:
        "logs/fwe_null/{analysis}_chunk-{chunk}.log",
    benchmark:
        "results/benchmarks/fwe_null/{analysis}_chunk-{chunk}.tsv"
    conda:
        "../../envs/cbma.yaml"
    params:
        seed=config["seed"],
        chunk_size=config["chunk_size"],
        estimator=lambda wc: ANALYSES[wc.analysis]["estimator"],
        kernel=lambda wc: ANALYSES[wc.analysis]["kernel"],
        voxel_thresh=lambda wc: correction(wc)["voxel_thresh"],
        code=script_code("fwe_null"),
    message:
        "Monte Carlo null of {wildcards.analysis}, chunk {wildcards.chunk}"
    script:
        "../../scripts/fwe_null.py"


checkpoint fwe_progress:
    input:
        chunks_so_far,
    output:
        "results/analyses/{analysis}/fwe_null/progress-{chunk}.json",
    log:
        "logs/fwe_progress/{analysis}_chunk-{chunk}.log",
    benchmark:
        "results/benchmarks/fwe_progress/{analysis}_chunk-{chunk}.tsv"
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
        stat="results/analyses/{analysis}/stat.nii.gz",
        z="results/analyses/{analysis}/z.nii.gz",
        null="results/analyses/{analysis}/null_approximate.tsv",
        chunks=null_chunks,
        mask=MASK,
    output:
        maps=with_sidecars(analysis_files(FWE_NAMES + THRESHOLDED_NAMES)),
        null=with_sidecars(["results/analyses/{analysis}/null_distributions.tsv"]),
        summary="results/analyses/{analysis}/fwe_summary.json",
    log:
        "logs/fwe_correct/{analysis}.log",
    benchmark:
        "results/benchmarks/fwe_correct/{analysis}.tsv"
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
