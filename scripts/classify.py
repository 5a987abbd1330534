"""Rule classify: which of two selections a study belongs to, from its sphere map."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import json

import numpy as np
import pandas as pd

from cbma import atlases, classify, clusters, figures, io, selection, space
from cbma.runner import run

#: searchlight voxels shown in the cluster table: balanced accuracy above this
TABLE_THRESHOLD = 0.6


def main(job):
    smk = job.smk
    p = smk.params
    name = smk.wildcards.classifier
    mask = space.load_mask(smk.input.mask)
    ma, extra = io.load_sparse(smk.input.ma)
    ids = np.asarray(extra["ids"], dtype=str)
    first, second = (selection.read_selection(s) for s in smk.input.selections)
    first, second, both = selection.drop_shared(first, second)
    if both.size:
        job.log(f"{both.size} studies are in both selections: left out", echo=True)
    rows = [selection.rows_of(ids, g) for g in (first, second)]
    # label 1: the first analysis (positive weights favour it), 0: the second
    labels = np.r_[np.ones(rows[0].size, dtype=int), np.zeros(rows[1].size, dtype=int)]
    data = ma[np.r_[rows[0], rows[1]]]
    result = classify.cross_validated_classification(data, labels, n_splits=p.n_splits,
                                                     seed=p.seed)
    accuracy = classify.searchlight(data, labels, mask, radius_mm=p.radius,
                                    n_splits=p.n_splits, seed=p.seed, step=p.step)
    io.write_tsv(pd.DataFrame({"fold": np.arange(1, result.scores.size + 1),
                               result.scoring: result.scores}), smk.output.scores)
    summary = {"analyses": list(p.analyses), "n_studies": [int(r.size) for r in rows],
               "n_dropped_in_both": int(both.size), "scoring": result.scoring,
               "mean": float(result.mean), "sd": float(result.sd),
               "chance": float(result.chance), "majority": float(result.majority),
               "n_splits": int(p.n_splits), "searchlight_radius_mm": float(p.radius),
               "searchlight_max": float(accuracy.max()),
               "weights_favour": f"{p.analyses[0]} where positive"}
    with open(smk.output.summary, "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    io.save_nifti(mask.to_image(result.weights), smk.output.weights)
    io.save_nifti(mask.to_image(accuracy), smk.output.searchlight)
    atlas = clusters.load_atlas(smk.input.atlas, smk.input.atlas_labels)
    table, _ = clusters.cluster_table(accuracy, mask, threshold=TABLE_THRESHOLD, atlas=atlas,
                                      tails=["positive"],
                                      atlases=atlases.load_atlases(p.atlases, smk.input.atlases),
                                      talairach=p.talairach)
    io.write_tsv(table, smk.output.table)
    figures.glass_brain_figure(mask.to_image(result.weights),
                               f"{name}: classifier weights (+ {p.analyses[0]})",
                               smk.output.weights_figure, two_sided=True, mask=mask)
    figures.glass_brain_figure(mask.to_image(np.maximum(accuracy - result.chance, 0.0)),
                               f"{name}: searchlight accuracy above chance",
                               smk.output.searchlight_figure, mask=mask)
    job.log(f"{name}: {p.analyses[0]} ({rows[0].size}) vs {p.analyses[1]} ({rows[1].size}): "
            f"{result.scoring} {result.mean:.3f} +/- {result.sd:.3f} (chance "
            f"{result.chance:.2f}); searchlight max {accuracy.max():.3f}", echo=True)
    job.finish(outputs=[smk.output.scores, smk.output.weights, smk.output.searchlight,
                        smk.output.table, smk.output.weights_figure,
                        smk.output.searchlight_figure], seed=p.seed)


run(snakemake, main)  # noqa: F821
