"""Rule conjunction: minimum statistic where every analysis is significant on its own."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np

from cbma import atlases, clusters, compare, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)

    def masked(path):
        return mask.apply(np.asanyarray(io.load_nifti(path).dataobj))

    cmap, alphas = smk.wildcards.cmap, smk.params.alphas
    thresholds = [compare.conjunction_threshold(cmap, a) for a in alphas]
    maps = [masked(f) for f in smk.input.maps]
    result = compare.conjunction(maps, thresholds)
    inside = result != 0
    peak_z = np.where(inside, np.min([masked(f) for f in smk.input.z], axis=0), 0.0)
    io.save_nifti(mask.to_image(result), smk.output.maps[0])
    atlas = clusters.load_atlas(smk.input.atlas, smk.input.atlas_labels)
    table, _ = clusters.cluster_table(result, mask, threshold=0.0, peak_map=peak_z,
                                      atlas=atlas, tails=["positive"],
                                      atlases=atlases.load_atlases(smk.params.atlases,
                                                                   smk.input.atlases),
                                      talairach=smk.params.talairach)
    io.write_tsv(table, smk.output.table[0])
    rule = ", ".join(f"{a}: {cmap} > {t:.4g} (FWE p < {alpha:g})"
                     for a, t, alpha in zip(smk.params.analyses, thresholds, alphas, strict=True))
    job.log(f"{smk.wildcards.conjunction}: {int(inside.sum())} voxels significant in every "
            f"analysis ({rule})", echo=True)
    job.finish(extra={"inclusion": "minimum statistic where every analysis is significant "
                                   "on its own (Nichols et al. 2005)",
                      "thresholds": dict(zip(smk.params.analyses, thresholds, strict=True)),
                      "n_voxels": int(inside.sum())})


run(snakemake, main)  # noqa: F821
