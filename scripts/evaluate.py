"""Rule evaluate: text model against a keyword baseline on held-out studies (Text2Brain Dice)."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np

from cbma import evaluate, figures, io, null, space, term_weights, text, text_model
from cbma.runner import run


def main(job):
    smk = job.smk
    p = smk.params
    name = smk.wildcards.evaluation
    mask = space.load_mask(smk.input.mask)
    ma, extra = io.load_sparse(smk.input.ma)
    ids = np.asarray(extra["ids"], dtype=str)
    texts, vocabulary = text.study_texts(smk.input.studies, ids,
                                         term_weights.load_term_weights(smk.input.terms),
                                         where=f"evaluate.{name}")
    rng = null.iteration_rng(p.seed, name, 0)
    order = rng.permutation(len(ids))
    n_test = min(int(np.ceil(p.test_fraction * len(ids))), p.max_test)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    options = text_model.model_options(p.settings, len(vocabulary))
    model = text_model.fit_query_model([texts[i] for i in train], vocabulary, ma[train], mask,
                                       seed=p.seed, **options)
    result = evaluate.evaluate_held_out(model, [texts[i] for i in train], ma[train],
                                        [texts[i] for i in test], ma[test], seed=p.seed,
                                        study_ids=ids[test])
    io.write_tsv(result.table, smk.output.held_out)
    io.write_tsv(result.summary.reset_index(), smk.output.summary)
    io.write_tsv(result.curves.reset_index(), smk.output.curves)
    result.figure.savefig(smk.output.figure, format="png", dpi=100,
                          metadata=figures.PNG_METADATA)
    summary = result.summary
    for method in ("model", "keyword", "random"):
        job.log(f"{name}: {method} Dice AUC {summary.loc[method, 'dice_auc_mean']:.3f} "
                f"+/- {summary.loc[method, 'dice_auc_se']:.3f} over {len(test)} held-out "
                "studies", echo=True)
    job.finish(outputs=[smk.output.held_out, smk.output.summary, smk.output.curves,
                        smk.output.figure], seed=p.seed,
               extra={"n_train": int(train.size), "n_test": int(test.size)})


run(snakemake, main)  # noqa: F821
