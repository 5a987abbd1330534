"""Rule decode: Pearson r of each image with every term's association map."""

from pathlib import Path

from cbma import decode, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)
    terms = io.read_tsv(smk.input.table)["term"].astype(str).to_numpy()
    maps = decode.load_term_maps(smk.input.maps, terms)
    images = {Path(p).name.removesuffix(".gz").removesuffix(".nii"):
              decode.load_image_masked(p, mask) for p in smk.input.images}
    table = decode.decode(images, maps, terms)
    ranked = decode.decode_table(table)
    io.write_tsv(table.reset_index(), smk.output.wide)
    io.write_tsv(ranked, smk.output.ranked)
    decode.top_terms_figure(ranked, smk.output.figure, n_top=smk.params.n_top)
    for name in table.columns:
        top = ranked[ranked["image"] == name].head(3)
        job.log(f"{name}: " + ", ".join(f"{t} ({r:.3f})" for t, r in zip(
            top["term"], top["r"], strict=True)), echo=True)
    job.finish(outputs=[smk.output.wide, smk.output.ranked, smk.output.figure])


run(snakemake, main)  # noqa: F821
