"""Rule fwe_null: one chunk of Monte Carlo iterations of the FWE null."""

import numpy as np
import pandas as pd

from cbma import estimators, io, kernels, null, space
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    analysis, chunk = smk.wildcards.analysis, int(smk.wildcards.chunk)
    table = io.read_tsv(smk.input.coordinates)
    hist = io.read_tsv(smk.input.null)
    threshold = estimators.null_threshold(p.voxel_thresh, hist["ale"].to_numpy(),
                                          hist["probability"].to_numpy())
    exps = io.experiments_table(table)
    fwhms = kernels.experiment_fwhms(exps.sample_size.to_numpy(), **p.kernel)
    model = null.RandomFociModel(exps["n_foci"].to_numpy(), fwhms, space.load_mask(smk.input.mask))
    iterations = np.arange(chunk * p.chunk_size, (chunk + 1) * p.chunk_size)
    job.log(f"{analysis}: iterations {iterations[0]}-{iterations[-1]}, cluster-forming "
            f"ALE > {threshold:g} (p < {p.voxel_thresh:g})")
    values = null.run_iterations(model, p.seed, analysis, iterations, threshold, log=job.log)
    out = pd.DataFrame(values, columns=null.NULL_COLUMNS[1:])
    out.insert(0, "iteration", iterations)
    out["max_cluster_size"] = out["max_cluster_size"].astype(int)
    io.write_tsv(out, smk.output[0])
    job.finish(seed=p.seed, extra={"iterations": [int(iterations[0]), int(iterations[-1])],
                                   "cluster_forming_threshold": threshold})


run(snakemake, main)  # noqa: F821
