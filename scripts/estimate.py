"""Rule estimate: MA maps -> ALE stat, p, z, logp and the histogram null."""

import pandas as pd

from cbma import estimators, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)
    ma, _ = io.load_sparse(smk.input.ma)
    maps, (centres, weights) = estimators.ale(ma)
    for path in smk.output.maps:
        if path.endswith(".nii.gz"):
            name = path.rsplit("/", 1)[1].removesuffix(".nii.gz")
            io.save_nifti(mask.to_image(maps[name]), path)
    io.write_tsv(pd.DataFrame({"ale": centres, "probability": weights}), smk.output.null[0])
    job.log(f"{smk.wildcards.analysis}: max ALE {maps['stat'].max():.5f}, "
            f"max z {maps['z'].max():.2f}, null of {centres.size} bins")
    job.finish(extra={"max_stat": float(maps["stat"].max())})


run(snakemake, main)  # noqa: F821
