"""Rule diagnose: cluster table, Jackknife, FocusCounter and contribution shares."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np
import scipy.sparse as sp

from cbma import atlases, clusters, coordinates, diagnostics, estimators, io, selection, space
from cbma.runner import run


def main(job):
    smk = job.smk
    inp, p = smk.input, smk.params
    mask = space.load_mask(inp.mask)

    def masked(path):
        return mask.apply(np.asanyarray(io.load_nifti(path).dataobj))

    target, z = masked(inp.target), masked(inp.z)
    p_target = 10.0 ** -masked(inp.logp)
    atlas = clusters.load_atlas(inp.atlas, inp.atlas_labels)
    table, label_maps = clusters.cluster_table(
        target, mask, threshold=p.threshold, min_size=p.min_size, peak_map=z, p=p_target,
        atlas=atlas, tails=["positive"], min_volume=p.min_volume,
        atlases=atlases.load_atlases(p.atlases, inp.atlases), talairach=p.talairach)
    # p comes back from float32 -log10 p: keep the digits that mean something
    table["Cluster p"] = table["Cluster p"].map(lambda v: float(f"{v:.6g}"))
    labels = label_maps["positive"]
    statistic = estimators.get(p.estimator).diagnostics_statistic
    ma, ids = selection.selected_ma(inp.ma, inp.selection)
    ids = list(ids)
    coords = selection.selected_coordinates(io.read_tsv(inp.coordinates), ids)
    weights = estimators.experiment_weights(p.weights, coordinates.experiments_table(coords))
    if weights is not None:  # weighted MKDA: each experiment's MA map counts its weight
        ma = sp.diags(weights) @ ma
    tables = [
        table,
        diagnostics.jackknife(ma, labels, ids, statistic=statistic),
        diagnostics.focus_counter(coords, labels, mask),
        diagnostics.contributions(ma, labels, ids, statistic=statistic),
    ]
    for frame, path in zip(tables, smk.output.tables, strict=False):
        io.write_tsv(frame, path)
    io.save_nifti(clusters.label_image(labels, mask), smk.output.labels[0])
    job.log(f"{smk.wildcards.analysis}: {int(labels.max())} clusters of z_{smk.wildcards.level}"
            f" > {p.threshold:g}", echo=True)
    job.finish()


run(snakemake, main)  # noqa: F821
