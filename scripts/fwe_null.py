"""Rule fwe_null: one chunk of Monte Carlo iterations of the FWE null."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import pandas as pd

from cbma import chunks, coordinates, estimators, io, null, selection, space, stats
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    analysis, chunk = smk.wildcards.analysis, int(smk.wildcards.chunk)
    table = selection.selected_coordinates(io.read_tsv(smk.input.coordinates),
                                           selection.read_selection(smk.input.selection))
    hist = io.read_tsv(smk.input.null)
    threshold = stats.null_threshold(p.voxel_thresh, hist["stat"].to_numpy(),
                                     hist["probability"].to_numpy())
    exps = coordinates.experiments_table(table)
    mask = space.load_mask(smk.input.mask)
    model = estimators.get(p.estimator).null_model(
        exps, mask, p.kernel, weights=estimators.experiment_weights(p.weights, exps),
        null_sampling=p.null_sampling)
    iterations = chunks.chunk_iterations(chunk, p.chunk_size)
    job.log(f"{analysis}: iterations {iterations[0]}-{iterations[-1]}, cluster-forming "
            f"{p.estimator} statistic > {threshold:g} (p < {p.voxel_thresh:g}), random foci "
            f"drawn {p.null_sampling.replace('_', ' ')}")
    values = null.run_iterations(model, p.seed, analysis, iterations, threshold, log=job.log)
    out = pd.DataFrame(values, columns=null.NULL_COLUMNS[1:])
    out.insert(0, "iteration", iterations)
    out["max_cluster_size"] = out["max_cluster_size"].astype(int)
    io.write_tsv(out, smk.output[0])
    job.finish(seed=p.seed, extra={"iterations": [int(iterations[0]), int(iterations[-1])],
                                   "cluster_forming_threshold": threshold})


run(snakemake, main)  # noqa: F821
