"""Rule term_maps: the association map of every term of a dataset, in one pass."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import decode, io, term_weights
from cbma.runner import run


def main(job):
    smk = job.smk
    threshold = float(smk.wildcards.threshold)
    ma, extra = io.load_sparse(smk.input.ma)
    weights = term_weights.align_term_weights(
        term_weights.load_term_weights(smk.input.terms), extra["ids"])
    job.log(f"{ma.shape[0]} studies x {ma.shape[1]} voxels ({ma.nnz} active), "
            f"{len(weights.terms)} terms at frequency >= {threshold:g}", echo=True)
    _, table = decode.term_association_maps(ma, weights.matrix, weights.terms,
                                            frequency_threshold=threshold,
                                            out=smk.output.maps)
    io.write_tsv(table, smk.output.table)
    flagged = int(table["flagged"].sum())
    job.log(f"{len(table)} term maps; {flagged} terms in every study or none (all-zero maps)",
            echo=True)
    job.finish(outputs=[smk.output.maps, smk.output.table],
               extra={"n_terms": len(table), "n_flagged": flagged})


run(snakemake, main)  # noqa: F821
