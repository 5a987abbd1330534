# Config checking and the input functions of the rules.
import json
import math
import os
import re
import sys
from pathlib import Path

from cbma.config import ESTIMATORS_WITH_FWE, load_config
from cbma.errors import CbmaError
from cbma.provenance import script_fingerprint, sidecar_path

WORKFLOW_DIR = Path(workflow.basedir)
SCHEMA = WORKFLOW_DIR / "workflow" / "schemas" / "config.schema.yaml"


def fail(message):
    """Stop before any job runs, with one line naming the problem."""
    print(f"cbma error: {message}", file=sys.stderr)
    sys.exit(1)


# The config, checked and complete: the schema's defaults filled. The files
# (--configfile, or the default config.yaml) are re-read for keys given twice,
# which Snakemake's YAML loader would keep the last of.
try:
    _complete = load_config(config, SCHEMA, config_files=workflow.configfiles)
except CbmaError as exc:
    fail(exc)
config.clear()
config.update(_complete)


def check_writable(folder):
    """Stop with one line if the rules cannot write into ``folder`` (or create it)."""
    p = Path(folder).absolute()
    if p.exists() and not p.is_dir():
        fail(f"{p}: not a folder; cbma writes its {folder} there")
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        fail(f"{p}: cannot write (permission denied); cbma writes its {folder} there")
    if not p.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        fail(f"{p.parent}: cannot write (permission denied); {folder}/ goes there")


for folder in ("results", "logs"):
    check_writable(folder)


def script_code(name):
    """A rule's ``code`` param: the fingerprint of the cbma code scripts/<name>.py runs.

    Derived from the script's own imports (cbma.provenance.script_fingerprint),
    so a code edit to any cbma module the script imports, directly or not,
    re-runs the rule; comments and docstrings do not count. Pass the name of
    the rule's ``script:``.
    """
    script = WORKFLOW_DIR / "scripts" / f"{name}.py"
    if not script.is_file():
        fail(f"script_code: no rule script {script}")
    return script_fingerprint(script)


def readable(p):
    """Whether a path can be read: "yes", "missing" or "denied"."""
    try:
        p.stat()
    except PermissionError:  # a folder on the way cannot be entered
        return "denied"
    except OSError:
        return "missing"
    return "yes" if os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)) else "denied"


def resolve(path, key):
    """A config path: relative to the working directory, else to the workflow folder.

    Stops with one line if it is in neither, or cannot be read.
    """
    p = Path(path)
    for candidate in [p] if p.is_absolute() else [p, WORKFLOW_DIR / p]:
        state = readable(candidate)
        if state == "denied":
            fail(f"config: {key}: {candidate}: cannot read (permission denied)")
        if state == "yes":
            return str(candidate)
    looked = "" if p.is_absolute() else f" (looked in {Path.cwd()} and {WORKFLOW_DIR})"
    fail(f"config: {key}: file {path!r} not found{looked}")


MASK = resolve(config["mask"], "mask")
ATLAS = {
    "image": resolve(
        "resources/templates/HarvardOxford-cort-maxprob-thr25-2mm.nii.gz", "atlas"
    ),
    "labels": resolve("resources/templates/HarvardOxford-cort-labels.tsv", "atlas"),
}
DATASETS = config["datasets"]
# coactivation entries are analyses whose selection is a seed
ANALYSES = {**config["analyses"], **config["coactivation"]}
DATASET_FILES = {
    name: [
        resolve(p, f"datasets.{name}.path")
        for p in ([d["path"]] if isinstance(d["path"], str) else d["path"])
    ]
    + ([resolve(d["features"], f"datasets.{name}.features")] if "features" in d else [])
    for name, d in DATASETS.items()
}
DECODE = config["decode"]


def abstracts_file(dataset):
    """A classic Neurosynth database's abstracts.tsv(.gz), read beside it (if any)."""
    d = DATASETS[dataset]
    if d["format"] != "neurosynth":
        return []
    folder = Path(DATASET_FILES[dataset][0])
    folder = folder if folder.is_dir() else folder.parent
    return [
        str(p)
        for p in (folder / "abstracts.tsv", folder / "abstracts.tsv.gz")
        if p.exists()
    ]


QUERIES = config["queries"]
EVALUATE = config["evaluate"]
CLASSIFY = config["classify"]
TEXT_MODEL = config["text_model"]


def kernel_id(estimator, kernel):
    """File-name id of a kernel: ale, ale-fwhm10, ale-n20, mkda-r10, kda-r6-v2."""
    if estimator == "ale":
        if "fwhm" in kernel:
            return f"ale-fwhm{kernel['fwhm']:g}"
        if "sample_size" in kernel:
            return f"ale-n{kernel['sample_size']:g}"
        return "ale"
    family = "kda" if estimator == "kda" else "mkda"
    value = "" if kernel.get("value", 1) == 1 else f"-v{kernel['value']:g}"
    return f"{family}-r{kernel['r']:g}{value}"


def analysis_kernel_id(analysis):
    a = ANALYSES[analysis]
    return kernel_id(a["estimator"], a["kernel"])


def _kernels():
    """Every kernel the jobs need, by id, as (estimator family, settings)."""
    out = {}
    for a in ANALYSES.values():
        family = "mkda" if a["estimator"] == "mkda_chi2" else a["estimator"]
        out[kernel_id(a["estimator"], a["kernel"])] = (family, a["kernel"])
        seed = (a.get("select") or {}).get("seed", {})
        if "mask" in seed:  # a seed mask selects by the studies' spheres
            kern = {"r": seed["r"], "value": 1.0}
            out[kernel_id("mkda", kern)] = ("mkda", kern)
    spheres = [d["kernel"]["r"] for d in [*DECODE.values(), *CLASSIFY.values()]]
    if QUERIES or EVALUATE:
        spheres.append(TEXT_MODEL["kernel"]["r"])
    for r in spheres:
        kern = {"r": r, "value": 1.0}
        out[kernel_id("mkda", kern)] = ("mkda", kern)
    return out


KERNELS = _kernels()
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

# MKDAChi2 (NiMARE's names): tests, probabilities, FDR-adjusted maps, and the
# thresholded maps shown in the report
CHI2_TESTS = ["uniformity", "association", "group1", "group2"]
CHI2_MAPS = (
    [f"{v}_desc-{t}" for t in CHI2_TESTS for v in ["z", "chi2", "p", "logp"]]
    + [
        f"prob_desc-{d}"
        for d in [
            "A",
            "AgF",
            "AgU",
            "FgA",
            "AgF_prior",
            "FgA_prior",
            "group1",
            "group2",
        ]
    ]
    + [
        f"{v}_desc-{t}_level-voxel_corr-FDR_method-indep"
        for t in CHI2_TESTS
        for v in ["p", "z", "logp"]
    ]
    + [
        f"z_desc-{t}_level-voxel_corr-FDR_method-indep_thresholded"
        for t in ["uniformity", "association"]
    ]
)
CHI2_FIGURE_MAP = "z_desc-association_level-voxel_corr-FDR_method-indep_thresholded"
CHI2_TABLE = f"{CHI2_FIGURE_MAP}_tab-clust.tsv"


FWE_ANALYSES = [a for a, b in ANALYSES.items() if b["estimator"] in ESTIMATORS_WITH_FWE]
CHI2_ANALYSES = [a for a, b in ANALYSES.items() if b["estimator"] == "mkda_chi2"]
SUBTRACTIONS = [
    c for c, b in config["contrasts"].items() if b["method"] == "subtraction"
]
CHI2_CONTRASTS = [
    c for c, b in config["contrasts"].items() if b["method"] == "mkda_chi2"
]


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
    decode="|".join(DECODE) or "^$",
    query="|".join(QUERIES) or "^$",
    evaluation="|".join(EVALUATE) or "^$",
    classifier="|".join(CLASSIFY) or "^$",
    threshold=r"[0-9.e+-]+",


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


def contrast_selections(wildcards):
    return [
        f"results/analyses/{a}/selection.tsv"
        for a in CONTRASTS[wildcards.contrast]["analyses"]
    ]


def ma_file_of(analysis):
    a = ANALYSES[analysis]
    return f"results/datasets/{a['dataset']}/ma-{analysis_kernel_id(analysis)}.npz"


def dataset_of(wildcards):
    return ANALYSES[wildcards.analysis]["dataset"]


def selection_file(wildcards):
    return f"results/analyses/{wildcards.analysis}/selection.tsv"


def selection_inputs(wildcards):
    """Inputs of the select job (the foci, the term weights and, for a seed
    mask, the mask and the dataset's sphere maps)."""
    a = ANALYSES[wildcards.analysis]
    base = f"results/datasets/{a['dataset']}"
    inputs = {"coordinates": f"{base}/coordinates.tsv", "terms": f"{base}/terms.npz"}
    for key, block in (("select", a.get("select")), ("versus", a.get("versus"))):
        seed = block.get("seed", {}) if isinstance(block, dict) else {}
        if "mask" in seed:
            kern = kernel_id("mkda", {"r": seed["r"], "value": 1.0})
            inputs[f"{key}_mask"] = resolve(
                seed["mask"], f"analyses.{wildcards.analysis}.{key}.seed.mask"
            )
            inputs[f"{key}_ma"] = f"{base}/ma-{kern}.npz"
            inputs["mask_image"] = MASK
    return inputs


def chi2_files(base, block):
    files = [f"{base}/{n}.nii.gz" for n in CHI2_MAPS] + [f"{base}/{CHI2_TABLE}"]
    if block.get("naming") == "neurosynth":
        files.append(f"{base}/neurosynth")
    return files


def analysis_figure_map(analysis):
    if ANALYSES[analysis]["estimator"] == "mkda_chi2":
        return f"results/analyses/{analysis}/{CHI2_FIGURE_MAP}.nii.gz"
    return f"results/analyses/{analysis}/{THRESHOLDED_NAMES[1]}.nii.gz"


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
    if CONTRASTS[contrast]["method"] == "mkda_chi2":
        return chi2_files(base, {})
    return [
        *[f"{base}/{n}.nii.gz" for n in SUBTRACTION_MAPS],
        f"{base}/z_desc-group1MinusGroup2_tab-clust.tsv",
    ]


def decode_files(name):
    base = f"results/decode/{name}"
    return [
        f"{base}/decoding.tsv",
        f"{base}/decoding_ranked.tsv",
        f"{base}/figures/top_terms.png",
    ]


def term_maps_prefix(name):
    d = DECODE[name]
    kern = kernel_id("mkda", {"r": d["kernel"]["r"], "value": 1.0})
    return f"results/datasets/{d['dataset']}/term-maps_{kern}_ft{d['frequency_threshold']:g}"


def decode_images(wildcards):
    return [
        (
            resolve(p, f"decode.{wildcards.decode}.images")
            if not p.startswith("results/")
            else p
        )
        for p in DECODE[wildcards.decode]["images"]
    ]


def conjunction_files(name):
    cmap = CONJUNCTIONS[name]["map"]
    base = f"results/conjunctions/{name}"
    return [f"{base}/{cmap}.nii.gz", f"{base}/{cmap}_tab-clust.tsv"]


def compare_figure_input(wildcards):
    if wildcards.kind == "contrasts":
        if CONTRASTS[wildcards.name]["method"] == "mkda_chi2":
            return f"results/contrasts/{wildcards.name}/{CHI2_FIGURE_MAP}.nii.gz"
        return f"results/contrasts/{wildcards.name}/z_desc-group1MinusGroup2_thresholded.nii.gz"
    cmap = CONJUNCTIONS[wildcards.name]["map"]
    return f"results/conjunctions/{wildcards.name}/{cmap}.nii.gz"


def sphere_maps(dataset, r):
    """A dataset's MKDA sphere maps of radius r mm."""
    return (
        f"results/datasets/{dataset}/ma-{kernel_id('mkda', {'r': r, 'value': 1.0})}.npz"
    )


def text_model_file(dataset):
    return f"results/datasets/{dataset}/text-model.npz"


def query_files(name):
    base = f"results/queries/{name}"
    return [f"{base}/map.nii.gz", f"{base}/terms.tsv", f"{base}/figures/glass.png"]


def evaluate_files(name):
    base = f"results/evaluation/{name}"
    return [
        f"{base}/held_out.tsv",
        f"{base}/summary.tsv",
        f"{base}/dice_curves.tsv",
        f"{base}/figures/dice_curves.png",
    ]


def classify_files(name):
    base = f"results/classify/{name}"
    return [
        f"{base}/cv_scores.tsv",
        f"{base}/classification.json",
        f"{base}/weights.nii.gz",
        f"{base}/searchlight.nii.gz",
        f"{base}/searchlight_tab-clust.tsv",
        f"{base}/figures/weights.png",
        f"{base}/figures/searchlight.png",
    ]


def classify_inputs(wildcards):
    block = CLASSIFY[wildcards.classifier]
    dataset = ANALYSES[block["analyses"][0]]["dataset"]
    return {
        "ma": sphere_maps(dataset, block["kernel"]["r"]),
        "selections": [
            f"results/analyses/{a}/selection.tsv" for a in block["analyses"]
        ],
        "mask": MASK,
        "atlas": ATLAS["image"],
        "atlas_labels": ATLAS["labels"],
    }


def text_inputs(dataset):
    """What the text model of a dataset learns from: titles, vocabulary, sphere maps."""
    return {
        "studies": f"results/datasets/{dataset}/studies.tsv",
        "terms": f"results/datasets/{dataset}/terms.npz",
        "ma": sphere_maps(dataset, TEXT_MODEL["kernel"]["r"]),
        "mask": MASK,
    }


# The report reads, for each block of the config, the files below, by role; its
# rule names them "<section>/<name>/<role>" (cbma.report.group_inputs reads them).
REPORT_DIAGNOSTICS = dict(
    zip(["clusters", "jackknife", "focus_counter", "contributions"], DIAGNOSTIC_TABLES)
)


def analysis_report_files(analysis):
    """An analysis' foci, selection(s), figures, FWE summary and cluster tables."""
    a = ANALYSES[analysis]
    base = f"results/analyses/{analysis}"
    files = {
        "coordinates": f"results/datasets/{a['dataset']}/coordinates.tsv",
        "selection": f"{base}/selection.tsv",
        "foci": f"{base}/figures/foci.png",
        "glass": f"{base}/figures/glass.png",
    }
    if a["estimator"] == "mkda_chi2":
        return {
            **files,
            "versus": f"{base}/versus.tsv",
            "clusters": f"{base}/{CHI2_TABLE}",
        }
    level = diagnostics_level(analysis)
    return {
        **files,
        "slices": f"{base}/figures/slices.png",
        "summary": f"{base}/fwe_summary.json",
        "ma": ma_file_of(analysis),  # its sidecar holds the kernels' FWHMs
        **{
            role: f"{base}/{table.format(level=level)}"
            for role, table in REPORT_DIAGNOSTICS.items()
        },
    }


def contrast_report_files(contrast):
    """A contrast's figure, cluster table and map (or, MKDA chi-square, its groups)."""
    c = CONTRASTS[contrast]
    base = f"results/contrasts/{contrast}"
    files = {"glass": f"{base}/figures/glass.png"}
    if c["method"] == "mkda_chi2":
        group1, group2 = (f"results/analyses/{a}/selection.tsv" for a in c["analyses"])
        return {
            **files,
            "group1": group1,
            "group2": group2,
            "clusters": f"{base}/{CHI2_TABLE}",
        }
    return {
        **files,
        "map": f"{base}/z_desc-group1MinusGroup2_thresholded.nii.gz",
        "clusters": f"{base}/z_desc-group1MinusGroup2_tab-clust.tsv",
    }


def conjunction_report_files(conjunction):
    cmap = CONJUNCTIONS[conjunction]["map"]
    base = f"results/conjunctions/{conjunction}"
    return {
        "glass": f"{base}/figures/glass.png",
        "map": f"{base}/{cmap}.nii.gz",
        "clusters": f"{base}/{cmap}_tab-clust.tsv",
    }


def decode_report_files(name):
    base = f"results/decode/{name}"
    return {
        "ranked": f"{base}/decoding_ranked.tsv",
        "top_terms": f"{base}/figures/top_terms.png",
    }


def query_report_files(name):
    base = f"results/queries/{name}"
    return {"terms": f"{base}/terms.tsv", "glass": f"{base}/figures/glass.png"}


def evaluate_report_files(name):
    base = f"results/evaluation/{name}"
    return {
        "held_out": f"{base}/held_out.tsv",  # its sidecar holds the training size
        "summary": f"{base}/summary.tsv",
        "dice_curves": f"{base}/figures/dice_curves.png",
    }


def classify_report_files(name):
    base = f"results/classify/{name}"
    return {
        "summary": f"{base}/classification.json",
        "clusters": f"{base}/searchlight_tab-clust.tsv",
        "weights": f"{base}/figures/weights.png",
        "searchlight": f"{base}/figures/searchlight.png",
    }


def report_inputs(wildcards):
    """Every file the report reads, named "<section>/<name>/<role>", in config order."""
    sections = {
        "analyses": (ANALYSES, analysis_report_files),
        "contrasts": (CONTRASTS, contrast_report_files),
        "conjunctions": (CONJUNCTIONS, conjunction_report_files),
        "decode": (DECODE, decode_report_files),
        "queries": (QUERIES, query_report_files),
        "evaluate": (EVALUATE, evaluate_report_files),
        "classify": (CLASSIFY, classify_report_files),
    }
    return {
        f"{section}/{name}/{role}": path
        for section, (blocks, files_of) in sections.items()
        for name in blocks
        for role, path in files_of(name).items()
    }


def final_outputs():
    names = ["stat", "p", "z", "logp", *FWE_NAMES, *THRESHOLDED_NAMES]
    maps = [f"results/analyses/{a}/{n}.nii.gz" for a in FWE_ANALYSES for n in names]
    maps += [
        f
        for a in CHI2_ANALYSES
        for f in chi2_files(f"results/analyses/{a}", ANALYSES[a])
    ]
    selections = [f"results/analyses/{a}/selection.tsv" for a in ANALYSES]
    summaries = [f"results/analyses/{a}/fwe_summary.json" for a in FWE_ANALYSES]
    diagnostics = [f for a in FWE_ANALYSES for f in diagnostics_files(a)]
    compare = [f for c in CONTRASTS for f in contrast_files(c)]
    compare += [f for c in CONJUNCTIONS for f in conjunction_files(c)]
    decoding = [f for d in DECODE for f in decode_files(d)]
    decoding += [f for q in QUERIES for f in query_files(q)]
    decoding += [f for e in EVALUATE for f in evaluate_files(e)]
    decoding += [f for c in CLASSIFY for f in classify_files(c)]
    return [
        *maps,
        *selections,
        *summaries,
        *diagnostics,
        *compare,
        *decoding,
        "results/report.html",
        "results/provenance.json",
    ]
