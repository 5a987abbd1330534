"""Rule text_model: fit the free-text model of a dataset (study titles -> sphere maps)."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import io, space, term_weights, text, text_model
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params.settings
    mask = space.load_mask(smk.input.mask)
    ma, extra = io.load_sparse(smk.input.ma)
    texts, vocabulary = text.study_texts(smk.input.studies, extra["ids"],
                                         term_weights.load_term_weights(smk.input.terms),
                                         where=f"dataset {smk.wildcards.dataset}")
    model = text_model.fit_query_model(texts, vocabulary, ma, mask, seed=smk.params.seed,
                                       **text_model.model_options(p, len(vocabulary)))
    model.save(smk.output.model)
    tried = ", ".join(f"{w:g}" for w in model.smoothings)
    job.log(f"{smk.wildcards.dataset}: {model.n_studies} studies, {len(vocabulary)} terms, "
            f"{model.coarse.n_voxels} voxels of {p['grid_mm']:g} mm; rank "
            f"{model.components.shape[1]}; smoothing w {model.smoothing:g} (GCV over {tried}), "
            f"ridge alpha {model.alpha:g} (GCV)", echo=True)
    job.finish(outputs=[smk.output.model], seed=smk.params.seed,
               extra={"n_studies": int(model.n_studies), "alpha": float(model.alpha),
                      "smoothing": float(model.smoothing),
                      "n_components": int(model.components.shape[1])})


run(snakemake, main)  # noqa: F821
