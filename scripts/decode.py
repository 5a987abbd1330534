"""Rule decode: Pearson r of each image with every term's association map."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from pathlib import Path

import pandas as pd

from cbma import decode, io, space
from cbma.runner import run


def main(job):
    smk = job.smk
    mask = space.load_mask(smk.input.mask)
    # terms as written ("null" or "nan" are terms, not missing values)
    terms = pd.read_csv(smk.input.table, sep="\t", keep_default_na=False)["term"].to_numpy(str)
    maps = decode.load_term_maps(smk.input.maps, terms)
    paths = list(smk.input.images)
    # a map of this run is named after its analysis: amygdala_z_desc-association
    names = ["_".join(Path(p).parts[2:3] + (Path(p).name,)) if p.startswith(
        "results/analyses/") else Path(p).name for p in paths]
    names = [n.removesuffix(".gz").removesuffix(".nii") for n in names]
    if len(set(names)) < len(names):  # the same file name in two folders: name by path
        names = [p.removesuffix(".gz").removesuffix(".nii") for p in paths]
    images = {n: decode.load_image_masked(p, mask) for n, p in zip(names, paths, strict=True)}
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
