# Config checking and the input functions of the rules.
import json
import math
import re
import sys
from pathlib import Path

from snakemake.utils import validate

from cbma.config import check_config
from cbma.errors import CbmaError
from cbma.provenance import code_fingerprint, sidecar_path

WORKFLOW_DIR = Path(workflow.basedir)
SCHEMA = WORKFLOW_DIR / "workflow" / "schemas" / "config.schema.yaml"


def fail(message):
    """Stop before any job runs, with one line naming the problem."""
    print(f"cbma error: {message}", file=sys.stderr)
    sys.exit(1)


try:
    check_config(config, SCHEMA)
except CbmaError as exc:
    fail(exc)
validate(config, schema=SCHEMA)  # fills in the schema's defaults


def resolve(path, key):
    """A config path: relative to the working directory, else to the workflow folder."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    bundled = WORKFLOW_DIR / p
    if bundled.exists():
        return str(bundled)
    fail(
        f"config: {key}: file {path!r} not found (looked in {Path.cwd()} and {WORKFLOW_DIR})"
    )


MASK = resolve(config["mask"], "mask")
ATLAS = {
    "image": resolve(
        "resources/templates/HarvardOxford-cort-maxprob-thr25-2mm.nii.gz", "atlas"
    ),
    "labels": resolve("resources/templates/HarvardOxford-cort-labels.tsv", "atlas"),
}
DATASETS = config["datasets"]
ANALYSES = config["analyses"]
DATASET_FILES = {
    name: [
        resolve(p, f"datasets.{name}.path")
        for p in ([d["path"]] if isinstance(d["path"], str) else d["path"])
    ]
    for name, d in DATASETS.items()
}


def kernel_id(kernel):
    """File-name id of an ALE kernel setting: ale, ale-fwhm10, ale-n20."""
    if "fwhm" in kernel:
        return f"ale-fwhm{kernel['fwhm']:g}"
    if "sample_size" in kernel:
        return f"ale-n{kernel['sample_size']:g}"
    return "ale"


KERNELS = {kernel_id(a["kernel"]): a["kernel"] for a in ANALYSES.values()}
CONTRASTS = config["contrasts"]
CONJUNCTIONS = config["conjunctions"]


FWE_NAMES = [
    f"{value}_{level}_corr-FWE_method-montecarlo"
    for level in ["level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster"]
    for value in ["z", "logp"]
]
THRESHOLDED_NAMES = [
    f"z_{level}_corr-FWE_method-montecarlo_thresholded"
    for level in ["level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster"]
]
# the corrected maps without their leading value field: targets of the diagnostics
LEVELS = [n.removeprefix("z_") for n in FWE_NAMES if n.startswith("z_")]
DIAGNOSTIC_TABLES = [
    "z_{level}_tab-clust.tsv",
    "z_{level}_diag-Jackknife_tab-counts_tail-positive.tsv",
    "z_{level}_diag-FocusCounter_tab-counts_tail-positive.tsv",
    "z_{level}_diag-Contribution_tab-shares_tail-positive.tsv",
]

CONJUNCTION_MAPS = [n for n in [*FWE_NAMES, *THRESHOLDED_NAMES] if n.startswith("z_")]


wildcard_constraints:
    dataset="|".join(DATASETS),
    analysis="|".join(ANALYSES),
    kernel="|".join(map(re.escape, KERNELS)),
    chunk=r"\d+",
    level="|".join(map(re.escape, LEVELS)),
    contrast="|".join(CONTRASTS) or "^$",
    conjunction="|".join(CONJUNCTIONS) or "^$",
    cmap="|".join(map(re.escape, CONJUNCTION_MAPS)),
    kind="contrasts|conjunctions",
    name="|".join([*CONTRASTS, *CONJUNCTIONS]) or "^$",


def with_sidecars(paths):
    """Data outputs followed by their JSON provenance sidecars."""
    return [*paths, *[sidecar_path(p) for p in paths]]


def analysis_files(names, ext=".nii.gz"):
    return [f"results/analyses/{{analysis}}/{n}{ext}" for n in names]


def ma_file(wildcards):
    return ma_file_of(wildcards.analysis)


def coordinates_file(wildcards):
    return f"results/datasets/{ANALYSES[wildcards.analysis]['dataset']}/coordinates.tsv"


def correction(wildcards):
    return ANALYSES[wildcards.analysis]["correction"]


def n_chunks(analysis):
    return math.ceil(ANALYSES[analysis]["correction"]["n_iters"] / config["chunk_size"])


def null_chunks(wildcards):
    """The Monte Carlo chunks the gather uses: all of them, or, with early
    stopping, those up to the first whose progress check says stop (the checks
    are checkpoints: Snakemake runs them one chunk at a time from min_iters on)."""
    analysis = wildcards.analysis
    last = n_chunks(analysis) - 1
    stopping = ANALYSES[analysis]["correction"].get("early_stopping")
    if stopping:
        chunk = min(
            max(math.ceil(stopping["min_iters"] / config["chunk_size"]), 1) - 1, last
        )
        while chunk < last:
            progress = checkpoints.fwe_progress.get(analysis=analysis, chunk=chunk)
            if json.loads(Path(progress.output[0]).read_text())["stop"]:
                break
            chunk += 1
        last = chunk
    return [
        f"results/analyses/{analysis}/fwe_null/chunk-{c}.tsv" for c in range(last + 1)
    ]


def chunks_so_far(wildcards):
    return [
        f"results/analyses/{wildcards.analysis}/fwe_null/chunk-{c}.tsv"
        for c in range(int(wildcards.chunk) + 1)
    ]


def diagnostics_level(analysis):
    return ANALYSES[analysis]["diagnostics"]["target"].removeprefix("z_")


def diagnostics_files(analysis):
    """The cluster table, contribution tables and label map of an analysis."""
    names = [*DIAGNOSTIC_TABLES, "label_{level}_tail-positive.nii.gz"]
    level = diagnostics_level(analysis)
    return [f"results/analyses/{analysis}/{n.format(level=level)}" for n in names]


SUBTRACTION_MAPS = [
    f"{value}_desc-group1MinusGroup2{suffix}"
    for suffix in ["", "_level-voxel_corr-FWE_method-montecarlo"]
    for value in ["stat", "p", "z", "logp"]
    if not (suffix and value in ("stat", "p"))
] + ["z_desc-group1MinusGroup2_thresholded"]


def contrast_ma_files(wildcards):
    return [ma_file_of(a) for a in CONTRASTS[wildcards.contrast]["analyses"]]


def ma_file_of(analysis):
    a = ANALYSES[analysis]
    return f"results/datasets/{a['dataset']}/ma-{kernel_id(a['kernel'])}.npz"


def contrast_significance(wildcards):
    """Each group's FWE-significant voxels (only the eickhoff2012 mode uses them)."""
    c = CONTRASTS[wildcards.contrast]
    if c["mode"] != "eickhoff2012":
        return []
    return [
        f"results/analyses/{a}/{THRESHOLDED_NAMES[1]}.nii.gz" for a in c["analyses"]
    ]


def n_contrast_chunks(contrast):
    return math.ceil(CONTRASTS[contrast]["n_iters"] / config["chunk_size"])


def subtraction_chunks(wildcards):
    return [
        f"results/contrasts/{wildcards.contrast}/null/chunk-{c}.npz"
        for c in range(n_contrast_chunks(wildcards.contrast))
    ]


def chunk_range(wildcards):
    """First and last+1 permutation of a subtraction chunk (the last chunk may be short)."""
    start = int(wildcards.chunk) * config["chunk_size"]
    n_iters = CONTRASTS[wildcards.contrast]["n_iters"]
    return [start, min(start + config["chunk_size"], n_iters)]


def conjunction_inputs(wildcards):
    names = CONJUNCTIONS[wildcards.conjunction]["analyses"]
    return [f"results/analyses/{a}/{wildcards.cmap}.nii.gz" for a in names]


def contrast_files(contrast):
    base = f"results/contrasts/{contrast}"
    return [
        *[f"{base}/{n}.nii.gz" for n in SUBTRACTION_MAPS],
        f"{base}/z_desc-group1MinusGroup2_tab-clust.tsv",
    ]


def conjunction_files(name):
    cmap = CONJUNCTIONS[name]["map"]
    base = f"results/conjunctions/{name}"
    return [f"{base}/{cmap}.nii.gz", f"{base}/{cmap}_tab-clust.tsv"]


def compare_figure_input(wildcards):
    if wildcards.kind == "contrasts":
        return f"results/contrasts/{wildcards.name}/z_desc-group1MinusGroup2_thresholded.nii.gz"
    cmap = CONJUNCTIONS[wildcards.name]["map"]
    return f"results/conjunctions/{wildcards.name}/{cmap}.nii.gz"


def compare_report_inputs():
    figures = [f"results/contrasts/{c}/figures/glass.png" for c in CONTRASTS]
    figures += [f"results/conjunctions/{c}/figures/glass.png" for c in CONJUNCTIONS]
    tables = [f for c in CONTRASTS for f in contrast_files(c) if f.endswith(".tsv")]
    tables += [
        f for c in CONJUNCTIONS for f in conjunction_files(c) if f.endswith(".tsv")
    ]
    return figures + tables


def final_outputs():
    names = ["stat", "p", "z", "logp", *FWE_NAMES, *THRESHOLDED_NAMES]
    maps = [f"results/analyses/{a}/{n}.nii.gz" for a in ANALYSES for n in names]
    summaries = [f"results/analyses/{a}/fwe_summary.json" for a in ANALYSES]
    diagnostics = [f for a in ANALYSES for f in diagnostics_files(a)]
    compare = [f for c in CONTRASTS for f in contrast_files(c)]
    compare += [f for c in CONJUNCTIONS for f in conjunction_files(c)]
    return [
        *maps,
        *summaries,
        *diagnostics,
        *compare,
        "results/report.html",
        "results/provenance.json",
    ]
