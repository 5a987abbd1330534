"""Rule ingest: foci files -> the canonical coordinates table (MNI mm)."""

from cbma import io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    table = io.read_dataset(list(smk.input.files), p.format, p.talairach_transform)
    mask = space.load_mask(smk.input.mask)
    inside = mask.contains(space.mm_to_vox(table[["x", "y", "z"]].to_numpy(), mask.affine))
    n_out = int((~inside).sum())
    for _, row in table[~inside].iterrows():
        job.log(f"focus outside the mask: {row.id} ({row.x:g}, {row.y:g}, {row.z:g}) "
                f"from {row.source}")
    if p.drop_outside_mask and n_out:
        table = table[inside].reset_index(drop=True)
    exps = io.experiments_table(table)
    action = "dropped" if p.drop_outside_mask else "kept"
    job.log(f"{smk.wildcards.dataset}: {len(exps)} experiments, {len(table)} foci, "
            f"{int(exps.sample_size.sum()) if exps.sample_size.notna().all() else 'unknown'} "
            f"subjects; {n_out} foci outside the mask ({action})", echo=True)
    io.write_tsv(table, smk.output[0])
    job.finish(extra={"n_experiments": len(exps), "n_foci": len(table),
                      "n_foci_outside_mask": n_out, "outside_mask_foci": action})


run(snakemake, main)  # noqa: F821
