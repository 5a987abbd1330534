"""Rule figures: foci and corrected-map figures of one analysis."""

from cbma import io, report
from cbma.runner import run


def main(job):
    smk = job.smk
    name = smk.wildcards.analysis
    table = io.read_tsv(smk.input.coordinates)
    report.foci_figure(table, f"{name}: {table['id'].nunique()} experiments, "
                       f"{len(table)} foci", smk.output.foci)
    img = io.load_nifti(smk.input.z)
    title = f"{name}: z in clusters surviving cluster-level FWE"
    report.glass_brain_figure(img, title, smk.output.glass)
    report.slices_figure(img, title, smk.output.slices)
    job.finish()


run(snakemake, main)  # noqa: F821
