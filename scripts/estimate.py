"""Rule estimate: MA maps of the selected experiments -> stat, p, z, logp and the null."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import pandas as pd

from cbma import coordinates, estimators, io, selection, space
from cbma.runner import run


def main(job):
    smk = job.smk
    estimator = smk.params.estimator
    mask = space.load_mask(smk.input.mask)
    ma, ids = selection.selected_ma(smk.input.ma, smk.input.selection)
    exps = coordinates.experiments_table(selection.selected_coordinates(
        io.read_tsv(smk.input.coordinates), ids))
    maps, (centres, weights) = estimators.get(estimator).fit(
        ma, estimators.experiment_weights(smk.params.weights, exps))
    io.save_named_maps(mask, maps, smk.output.maps)
    io.write_tsv(pd.DataFrame({"stat": centres, "probability": weights}), smk.output.null[0])
    job.log(f"{smk.wildcards.analysis}: {estimator} of {len(ids)} experiments, max stat "
            f"{maps['stat'].max():.5g}, max z {maps['z'].max():.2f}, null of {centres.size} bins")
    job.finish(extra={"max_stat": float(maps["stat"].max()), "n_experiments": len(ids)})


run(snakemake, main)  # noqa: F821
