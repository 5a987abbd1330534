"""Rule provenance: results/provenance.json, every output traced to the job that made it."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import json
from pathlib import Path

import cbma
from cbma import provenance
from cbma.runner import run


def main(job):
    smk = job.smk
    record = provenance.run_record(list(smk.input))
    workflow_dir = Path(smk.scriptdir).parent  # the folder holding the Snakefile
    out = {
        "cbma": cbma.__version__,
        "code": provenance.git_version(workflow_dir),
        "seed": smk.params.config.get("seed"),
        "config": smk.params.config,
        "versions": provenance.versions(),
        **record,
    }
    Path(smk.output[0]).write_text(json.dumps(out, indent=1, default=provenance.jsonable)
                                   + "\n")
    job.log(f"{len(record['files'])} files from {len(record['jobs'])} jobs: {smk.output[0]}",
            echo=True)


run(snakemake, main)  # noqa: F821
