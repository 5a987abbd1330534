"""Rule pool: an analysis' selected experiments -> one experiment per subject group."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import json

from cbma import io, pooling, provenance, selection
from cbma.runner import run


def main(job):
    smk = job.smk
    name = smk.wildcards.analysis
    coordinates = io.read_tsv(smk.input.coordinates)
    chosen = selection.read_selection(smk.input.selection)
    pooled, groups = pooling.pool_experiments(
        selection.selected_coordinates(coordinates, chosen), smk.params.pool)
    n_pooled = groups["pooled"].nunique()
    several = groups[groups["pooled"].duplicated(keep=False)]
    job.log(f"{name}: {len(groups)} experiments pooled into {n_pooled} "
            f"({several['pooled'].nunique()} of them from several experiments; "
            f"pool: {pooling.pool_label(smk.params.pool)})", echo=True)
    for pooled_id, rows in several.groupby("pooled", sort=False):
        sizes = rows["sample_size"].dropna().unique()
        note = (f"; sample sizes {', '.join(f'{n:g}' for n in sizes)}, the smallest kept"
                if len(sizes) > 1 else "")
        job.log(f"  {pooled_id}: {', '.join(rows['experiment'])}{note}")
    io.write_tsv(pooled, smk.output.coordinates)
    io.write_tsv(pooled[["id"]].drop_duplicates(), smk.output.selection)
    io.write_tsv(groups, smk.output.groups)
    # what the report reads from the foci's sidecar: the ingest's count of foci outside
    ingest = json.loads(open(provenance.sidecar_path(smk.input.coordinates)).read())
    job.finish(extra={"pool": smk.params.pool, "n_experiments": len(groups),
                      "n_pooled_experiments": int(n_pooled), "n_foci": len(pooled),
                      "n_foci_outside_mask": ingest.get("n_foci_outside_mask"),
                      "outside_mask_foci": ingest.get("outside_mask_foci")})


run(snakemake, main)  # noqa: F821
