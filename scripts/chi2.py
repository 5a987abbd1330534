"""Rules chi2 and chi2_contrast: MKDA chi-square tests of two groups of experiments."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np

from cbma import atlases, chi2, clusters, io, layout, selection, space
from cbma.runner import run

FDR = layout.FDR


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)
    if "versus" in smk.input.keys():  # an analysis: its selection against the others
        files = [smk.input.ma] * 2
        groups = [smk.input.selection, smk.input.versus]
        name = smk.wildcards.analysis
    else:  # a contrast of two analyses
        files, groups = list(smk.input.ma), list(smk.input.selections)
        name = smk.wildcards.contrast
    loaded = {f: io.load_sparse(f) for f in dict.fromkeys(files)}  # each file once
    (ma1, ids1), (ma2, ids2) = (
        (loaded[f][0][rows], np.asarray(loaded[f][1]["ids"], dtype=str)[rows])
        for f, g in zip(files, groups, strict=True)
        for rows in [selection.rows_of(loaded[f][1]["ids"], selection.read_selection(g))])
    both = np.intersect1d(ids1, ids2)
    if both.size:
        job.log(f"{both.size} experiments are in both groups (e.g. {both[0]}): they count in "
                "both", echo=True)
    maps = chi2.mkda_chi2(ma1, ma2)
    maps.update(chi2.chi2_fdr_maps(maps))
    q = smk.params.q
    for test in ("uniformity", "association"):
        keep = maps[f"p_desc-{test}_{FDR}"] < q
        maps[layout.thresholded(f"z_desc-{test}_{FDR}")] = np.where(keep, maps[f"z_desc-{test}"],
                                                                    0.0)
    io.save_named_maps(mask, maps, smk.output.maps)
    shown = maps[layout.SHOWN_CHI2_MAP]
    atlas = clusters.load_atlas(smk.input.atlas, smk.input.atlas_labels)
    table, _ = clusters.cluster_table(shown, mask, threshold=0.0, peak_map=shown, atlas=atlas,
                                      p=maps[f"p_desc-association_{FDR}"],
                                      min_size=smk.params.min_size,
                                      min_volume=smk.params.min_volume,
                                      atlases=atlases.load_atlases(smk.params.atlases,
                                                                   smk.input.atlases),
                                      talairach=smk.params.talairach)
    io.write_tsv(table, smk.output.table[0])
    n_assoc = int((shown != 0).sum())
    job.log(f"{name}: {ma1.shape[0]} vs {ma2.shape[0]} experiments; {n_assoc} voxels with "
            f"FDR-adjusted association p < {q:g}", echo=True)
    job.finish(extra={"n_group1": ma1.shape[0], "n_group2": ma2.shape[0],
                      "n_voxels_association_fdr": n_assoc})


run(snakemake, main)  # noqa: F821
