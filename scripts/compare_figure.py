"""Rule compare_figure: glass brain of a contrast or conjunction map."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import figures, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    kind, name = smk.wildcards.kind, smk.wildcards.name
    two_sided = kind == "contrasts"
    what = "z where p < alpha" if two_sided else "minimum z where every analysis is significant"
    figures.glass_brain_figure(io.load_nifti(smk.input.map), f"{name}: {what}", smk.output[0],
                               two_sided=two_sided, mask=space.load_mask(smk.input.mask))
    job.finish()


run(snakemake, main)  # noqa: F821
