"""Rule ma_maps: coordinates -> sparse experiments x voxels MA matrix (ALE, MKDA or KDA kernel)."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np

from cbma import estimators, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    family, kernel = smk.params.kernel
    table = io.read_tsv(smk.input.coordinates)
    mask = space.load_mask(smk.input.mask)
    ma, ids, record = estimators.ma_maps(family, table, mask, kernel)
    io.save_sparse(smk.output[0], ma, ids=ids, **record)
    if family == "ale":
        fwhms = record["fwhm"]
        job.log(f"FWHM {fwhms.min():.2f}-{fwhms.max():.2f} mm")
        extra = {"fwhm_mm": dict(zip(ids, np.round(fwhms, 6), strict=True))}
    else:
        extra = {"kernel": family, "r_mm": kernel["r"], "value": kernel["value"]}
    job.log(f"{ma.shape[0]} experiments x {ma.shape[1]} voxels, {ma.nnz} nonzero")
    job.finish(extra=extra)


run(snakemake, main)  # noqa: F821
