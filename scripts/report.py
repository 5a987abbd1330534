"""Rule report: one self-contained HTML page for the whole run."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

from cbma import report
from cbma.runner import run


def main(job):
    smk = job.smk
    # the inputs are named <section>/<name>/<role> (report_inputs in common.smk)
    context = report.report_context(report.group_inputs(smk.input), smk.params.config)
    report.render(context, smk.output.html)
    job.finish()
    job.log(f"report with {len(context['sections'])} sections: {smk.output.html}", echo=True)


run(snakemake, main)  # noqa: F821
