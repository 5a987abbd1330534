"""Rule fwe_correct: gather the Monte Carlo chunks into FWE-corrected maps."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import json

import numpy as np
import pandas as pd

from cbma import correct, io, layout, space, stats
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    mask = space.load_mask(smk.input.mask)
    stat = mask.apply(np.asanyarray(io.load_nifti(smk.input.stat).dataobj))
    z = mask.apply(np.asanyarray(io.load_nifti(smk.input.z).dataobj))
    hist = io.read_tsv(smk.input.null)
    threshold = stats.null_threshold(p.voxel_thresh, hist["stat"].to_numpy(),
                                     hist["probability"].to_numpy())
    nulls = pd.concat([io.read_tsv(c) for c in smk.input.chunks], ignore_index=True)
    nulls = nulls.iloc[: p.n_iters]
    p_maps, clusters = correct.fwe_montecarlo(
        stat, mask, threshold, nulls["max_stat"], nulls["max_cluster_size"],
        nulls["max_cluster_mass"])
    maps = correct.corrected_maps(p_maps)
    for kind, pv in p_maps.items():
        maps[layout.thresholded(layout.fwe_map("z", kind))] = np.where(pv < p.alpha, z, 0)
    io.save_named_maps(mask, maps, smk.output.maps)
    io.write_tsv(nulls, smk.output.null[0])

    summary = correct.fwe_summary(p_maps, clusters, nulls, threshold, p.alpha)
    if p.early_stopping:
        summary["early_stopping"] = {**p.early_stopping, "n_iters_max": p.n_iters,
                                     "stopped_early": len(nulls) < p.n_iters}
    with open(smk.output.summary, "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    sig = summary["clusters"]["n_significant_size"]
    job.log(f"{smk.wildcards.analysis}: {len(clusters['sizes'])} clusters above "
            f"{threshold:g}, {sig} significant by size at FWE {p.alpha:g} "
            f"(min size {summary['thresholds']['cluster_size']:g} voxels)", echo=True)
    job.finish(outputs=[*smk.output.maps, *smk.output.null], extra={"n_iters": len(nulls)})


run(snakemake, main)  # noqa: F821
