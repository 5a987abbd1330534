"""Rule neurosynth_images: an MKDAChi2 result under Neurosynth's classic image names."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from pathlib import Path

import numpy as np

from cbma import chi2, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)
    maps = {Path(p).name.removesuffix(".nii.gz"): mask.apply(np.asanyarray(
        io.load_nifti(p).dataobj)) for p in smk.input.maps if p.endswith(".nii.gz")}
    images = chi2.neurosynth_images(maps, q=smk.params.q)
    out = Path(smk.output[0])
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.nii.gz" for name in images]
    io.save_named_maps(mask, images, paths)
    job.log(f"{smk.wildcards.analysis}: {', '.join(images)}")
    job.finish(outputs=[str(p) for p in paths])


run(snakemake, main)  # noqa: F821
