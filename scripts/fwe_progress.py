"""Checkpoint fwe_progress: may the Monte Carlo stop after this chunk? (early stopping)"""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import json

import pandas as pd

from cbma import correct, io
from cbma.runner import run


def main(job):
    smk = job.smk
    rule = smk.params.early_stopping
    nulls = pd.concat([io.read_tsv(c) for c in smk.input], ignore_index=True)
    decision = correct.early_stop(nulls, smk.params.alpha, rule["tolerance"], rule["min_iters"])
    with open(smk.output[0], "w") as fh:
        json.dump({**decision, "tolerance": rule["tolerance"], "min_iters": rule["min_iters"]},
                  fh, indent=2)
        fh.write("\n")
    errors = ", ".join(f"{k} {v['relative_se']:.4f}" for k, v in decision["errors"].items())
    job.log(f"{smk.wildcards.analysis}: {decision['n_iters']} iterations, relative SE {errors} "
            f"(tolerance {rule['tolerance']:g}): {'stop' if decision['stop'] else 'go on'}",
            echo=True)


run(snakemake, main)  # noqa: F821
