"""Rule query: a free-text query -> its predicted map, the terms it was read as, a figure."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import warnings

import pandas as pd

from cbma import figures, io, text_model
from cbma.errors import CbmaError
from cbma.runner import run


def main(job):
    smk = job.smk
    name, text = smk.wildcards.query, smk.params.text
    model = text_model.QueryModel.load(smk.input.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = model.predict(text)
        except CbmaError as exc:
            raise CbmaError(f"queries.{name}.text: {exc}") from None
    for w in caught:
        job.log(f"warning: {w.message}", echo=True)
    values = model.to_mask(result.map)
    io.save_nifti(model.mask.to_image(values), smk.output.map)
    table = pd.DataFrame({"term": list(result.weights), "weight": list(result.weights.values())})
    table["in_text"] = table["term"].map(result.terms).fillna(0).astype(int)
    io.write_tsv(table, smk.output.terms)
    figures.glass_brain_figure(model.mask.to_image(values), f"{name}: {text!r}",
                               smk.output.figure, mask=model.mask)
    matched = ", ".join(result.terms) or "none"
    job.log(f"{name}: {text!r} read as {matched}; related: "
            + ", ".join(t for t in list(result.weights)[:8] if t not in result.terms), echo=True)
    job.finish(outputs=[smk.output.map, smk.output.terms, smk.output.figure],
               extra={"matched_terms": list(result.terms), "unmatched": result.unmatched})


run(snakemake, main)  # noqa: F821
