"""Rule ingest: foci files -> the canonical coordinates table (MNI mm), term weights, studies."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import coordinates, dataset, io, space, term_weights
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    files = list(smk.input.files)
    features = files.pop() if p.features else None
    table, weights, studies = dataset.load_dataset(
        files, p.format, p.talairach_transform, features=features,
        annotations=list(smk.input.annotations), labels=p.labels, groups=p.groups)
    for key, value in studies.attrs.items():  # what the reader counted (unknown spaces, ...)
        if value:
            job.log(f"{key}: {value}", echo=key == "n_unknown_space_foci")
    mask = space.load_mask(smk.input.mask)
    inside = mask.contains(space.mm_to_vox(table[["x", "y", "z"]].to_numpy(), mask.affine))
    n_out = int((~inside).sum())
    for row in table[~inside].head(1000).itertuples():
        job.log(f"focus outside the mask: {row.id} ({row.x:g}, {row.y:g}, {row.z:g}) "
                f"from {row.source}")
    if n_out > 1000:
        job.log(f"... and {n_out - 1000} more foci outside the mask")
    if p.drop_outside_mask and n_out:
        table = table[inside].reset_index(drop=True)
    exps = coordinates.experiments_table(table)
    action = "dropped" if p.drop_outside_mask else "kept"
    job.log(f"{smk.wildcards.dataset}: {len(exps)} experiments, {len(table)} foci, "
            f"{int(exps.sample_size.sum()) if exps.sample_size.notna().all() else 'unknown'} "
            f"subjects; {n_out} foci outside the mask ({action}); "
            f"{len(weights.terms)} terms", echo=True)
    io.write_tsv(table, smk.output.coordinates)
    term_weights.save_term_weights(weights, smk.output.terms)
    io.write_tsv(studies, smk.output.studies)
    job.finish(extra={"n_experiments": len(exps), "n_foci": len(table),
                      "n_foci_outside_mask": n_out, "outside_mask_foci": action,
                      "n_terms": len(weights.terms)})


run(snakemake, main)  # noqa: F821
