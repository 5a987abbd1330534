"""Rule subtraction_null: one chunk of label permutations of an ALE subtraction."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np

from cbma import compare, selection
from cbma.runner import run


def main(job):
    smk = job.smk
    start, stop = smk.params.permutations
    pooled = compare.pool_groups(*(selection.selected_ma(m, s)[0] for m, s in
                                   zip(smk.input.ma, smk.input.selections, strict=True)))
    job.log(f"{smk.wildcards.contrast}: permutations {start}-{stop - 1} of "
            f"{pooled.n_group1} + {pooled.n_experiments - pooled.n_group1} experiments")
    chunk = compare.permutation_chunk(pooled, smk.params.seed, smk.wildcards.contrast,
                                      np.arange(start, stop))
    compare.save_chunk(smk.output[0], chunk)
    job.log(f"done: max |D| of the permutations {chunk['max_abs'].max():.5f}")
    job.finish(seed=smk.params.seed)


run(snakemake, main)  # noqa: F821
