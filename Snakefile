# cbma: coordinate-based meta-analysis, from foci files to corrected maps.
# Usage: snakemake --cores N   (config.yaml; or --configfile my.yaml)
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


# --configfile replaces the default config instead of being merged into it.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/ma_maps.smk"
include: "workflow/rules/estimate.smk"
include: "workflow/rules/fwe.smk"
include: "workflow/rules/diagnose.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
