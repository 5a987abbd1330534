"""Rule ma_maps: coordinates -> sparse experiments x voxels MA matrix (ALE kernel)."""

import numpy as np
import pandas as pd

from cbma import io, kernels, space
from cbma.runner import run


def main(job):
    smk = job.smk
    table = io.read_tsv(smk.input.coordinates)
    mask = space.load_mask(smk.input.mask)
    exps = io.experiments_table(table)
    fwhms = kernels.experiment_fwhms(exps.sample_size.to_numpy(), **smk.params.kernel)
    row = pd.Categorical(table["id"], categories=exps["id"]).codes
    ma = kernels.ale_ma_maps(kernels.foci_voxels(table, mask), row, fwhms, mask)
    io.save_sparse(smk.output[0], ma, ids=exps["id"].to_numpy(dtype=str), fwhm=fwhms)
    job.log(f"{ma.shape[0]} experiments x {ma.shape[1]} voxels, {ma.nnz} nonzero; "
            f"FWHM {fwhms.min():.2f}-{fwhms.max():.2f} mm")
    job.finish(extra={"fwhm_mm": dict(zip(exps["id"], np.round(fwhms, 6), strict=True))})


run(snakemake, main)  # noqa: F821
