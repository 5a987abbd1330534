"""Rule ma_maps: coordinates -> sparse experiments x voxels MA matrix (ALE, MKDA or KDA kernel)."""

import numpy as np
import pandas as pd

from cbma import coordinates, io, kernels, space, spheres
from cbma.runner import run


def main(job):
    smk = job.smk
    family, kernel = smk.params.kernel
    table = io.read_tsv(smk.input.coordinates)
    mask = space.load_mask(smk.input.mask)
    exps = coordinates.experiments_table(table)
    ids = exps["id"].to_numpy(dtype=str)
    row = pd.Categorical(table["id"].astype(str), categories=ids).codes
    ijk = kernels.foci_voxels(table, mask)
    if family == "ale":
        fwhms = kernels.experiment_fwhms(exps.sample_size.to_numpy(), **kernel)
        ma = kernels.ale_ma_maps(ijk, row, fwhms, mask)
        io.save_sparse(smk.output[0], ma, ids=ids, fwhm=fwhms)
        job.log(f"FWHM {fwhms.min():.2f}-{fwhms.max():.2f} mm")
        extra = {"fwhm_mm": dict(zip(exps["id"], np.round(fwhms, 6), strict=True))}
    else:
        ma = spheres.mkda_ma_maps(ijk, row, len(ids), mask, r=kernel["r"], value=kernel["value"],
                                  sum_overlap=family == "kda")
        io.save_sparse(smk.output[0], ma, ids=ids)
        extra = {"kernel": family, "r_mm": kernel["r"], "value": kernel["value"]}
    job.log(f"{ma.shape[0]} experiments x {ma.shape[1]} voxels, {ma.nnz} nonzero")
    job.finish(extra=extra)


run(snakemake, main)  # noqa: F821
