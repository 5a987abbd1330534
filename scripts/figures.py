"""Rule figures: foci and result figures of one analysis."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import figures, io, selection, space
from cbma.runner import run

TITLES = {
    "mkda_chi2": "association z where the FDR-adjusted p < {q:g}",
    "default": "z in clusters surviving cluster-level FWE",
}


def main(job):
    smk = job.smk
    name = smk.wildcards.analysis
    table = selection.selected_coordinates(io.read_tsv(smk.input.coordinates),
                                           selection.read_selection(smk.input.selection))
    mask = space.load_mask(smk.input.mask)
    figures.foci_figure(table, f"{name}: {table['id'].nunique()} experiments, "
                        f"{len(table)} foci", smk.output.foci, mask=mask)
    img = io.load_nifti(smk.input.z)
    two_sided = smk.params.estimator == "mkda_chi2"
    title = f"{name}: " + TITLES.get(smk.params.estimator, TITLES["default"]).format(
        q=smk.params.q)
    figures.glass_brain_figure(img, title, smk.output.glass, two_sided=two_sided, mask=mask)
    figures.slices_figure(img, title, smk.output.slices, mask=mask)
    job.finish()


run(snakemake, main)  # noqa: F821
