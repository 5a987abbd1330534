"""Rule conjunction: minimum statistic where every analysis' map is positive."""

import numpy as np

from cbma import clusters, compare, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)

    def masked(path):
        return mask.apply(np.asanyarray(io.load_nifti(path).dataobj))

    result = compare.conjunction([masked(f) for f in smk.input.maps])
    peak_z = compare.conjunction([masked(f) for f in smk.input.z])
    io.save_nifti(mask.to_image(result), smk.output.maps[0])
    atlas = clusters.load_atlas(smk.input.atlas, smk.input.atlas_labels)
    table, _ = clusters.cluster_table(result, mask, threshold=0.0, peak_map=peak_z,
                                      atlas=atlas, tails=["positive"])
    io.write_tsv(table, smk.output.table[0])
    job.log(f"{smk.wildcards.conjunction}: {int((result > 0).sum())} voxels positive in all of "
            f"{', '.join(smk.params.analyses)}", echo=True)
    job.finish()


run(snakemake, main)  # noqa: F821
