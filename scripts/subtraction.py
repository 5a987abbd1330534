"""Rule subtraction: gather the permutations into the maps of an ALE subtraction."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np
import pandas as pd

from cbma import atlases, clusters, compare, io, layout, selection, space
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    mask = space.load_mask(smk.input.mask)
    pooled = compare.pool_groups(*(selection.selected_ma(m, s)[0] for m, s in
                                   zip(smk.input.ma, smk.input.selections, strict=True)))
    difference = compare.observed_difference(pooled)
    null = compare.merge_chunks([compare.load_chunk(c) for c in smk.input.chunks], p.n_iters)
    significant = [mask.apply(np.asanyarray(io.load_nifti(f).dataobj)) != 0
                   for f in smk.input.significant] or [None, None]
    maps = compare.subtraction_maps(difference, null, p.mode, *significant)
    maps.update(compare.subtraction_fwe_maps(difference, null))
    z_name, shown = f"z_{layout.CONTRAST}", layout.SHOWN_SUBTRACTION_MAP
    maps[shown] = np.where(maps[f"p_{layout.CONTRAST}"] < p.alpha, maps[z_name], 0.0)
    io.save_named_maps(mask, maps, smk.output.maps)
    atlas = clusters.load_atlas(smk.input.atlas, smk.input.atlas_labels)
    table, _ = clusters.cluster_table(maps[shown], mask, threshold=0.0,
                                      peak_map=maps[z_name], atlas=atlas,
                                      atlases=atlases.load_atlases(smk.params.atlases,
                                                                   smk.input.atlases),
                                      talairach=smk.params.talairach)
    io.write_tsv(table, smk.output.table[0])
    io.write_tsv(pd.DataFrame({"iteration": null["iterations"], "max_abs_difference":
                               null["max_abs"]}), smk.output.null[0])
    n_sig = int((maps[shown] != 0).sum())
    job.log(f"{smk.wildcards.contrast} ({' minus '.join(p.analyses)}): {n_sig} voxels with "
            f"p < {p.alpha:g} ({p.mode} mode, {p.n_iters} permutations)", echo=True)
    job.finish(outputs=[*smk.output.maps, *smk.output.table, *smk.output.null])


run(snakemake, main)  # noqa: F821
