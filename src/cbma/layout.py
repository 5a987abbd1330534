"""Where a run's outputs go and what they are called: the one place that spells them.

Map names follow NiMARE's (``z``, ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``,
``z_desc-association_level-voxel_corr-FDR_method-indep``, ...), in the
BIDS-derivatives style of ``key-value`` entities. Paths are relative to the
working directory of the run.

Every path builder takes the names that vary (dataset, analysis, chunk, ...)
as arguments whose defaults are Snakemake wildcards (``"{analysis}"``), so the
same function gives a rule's output pattern (``fwe_chunk()``) and a concrete
file (``fwe_chunk("knowledge", 3)``).
"""

from .errors import CbmaError

RESULTS = "results"
LOGS = "logs"

# -------------------------------------------------------------------- map names

#: Uncorrected maps of ALE, MKDA density and KDA.
UNCORRECTED_MAPS = ("stat", "p", "z", "logp")
#: The three Monte Carlo FWE levels: voxel, cluster size, cluster mass.
FWE_KINDS = ("level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster")


def fwe_map(value, kind, method="montecarlo"):
    """NiMARE's name of a corrected map: ``<value>_<kind>_corr-FWE_method-<method>``."""
    return f"{value}_{kind}_corr-FWE_method-{method}"


#: The FWE levels as NiMARE names them (without the value field).
FWE_LEVELS = tuple(fwe_map("", kind).removeprefix("_") for kind in FWE_KINDS)
#: ``z_`` and ``logp_`` maps of each FWE level.
FWE_MAPS = tuple(f"{value}_{level}" for level in FWE_LEVELS for value in ("z", "logp"))
#: The level reported by default (Eickhoff et al. 2016): cluster-level FWE by size.
CLUSTER_LEVEL = FWE_LEVELS[1]


def thresholded(name):
    """Name of the map that shows ``name`` where it is significant (``<name>_thresholded``)."""
    return f"{name}_thresholded"


def is_thresholded(name):
    """Whether map ``name`` is 0 wherever its test is not significant."""
    return name.endswith("_thresholded")


#: For each FWE level, the uncorrected z where the corrected p < alpha.
FWE_THRESHOLDED_MAPS = tuple(thresholded(f"z_{level}") for level in FWE_LEVELS)
#: The map each FWE analysis shows (figures, eickhoff2012 subtraction masks).
SHOWN_FWE_MAP = thresholded(f"z_{CLUSTER_LEVEL}")
#: Maps a conjunction can take (each analysis' corrected z maps).
CONJUNCTION_MAPS = tuple(n for n in (*FWE_MAPS, *FWE_THRESHOLDED_MAPS) if n.startswith("z_"))

#: MKDA chi-square: the tests, and the FDR entities (NiMARE's MKDAChi2 names).
CHI2_TESTS = ("uniformity", "association", "group1", "group2")
FDR = "level-voxel_corr-FDR_method-indep"
CHI2_MAPS = (
    *(f"{v}_desc-{t}" for t in CHI2_TESTS for v in ("z", "chi2", "p", "logp")),
    *(f"prob_desc-{d}" for d in ("A", "AgF", "AgU", "FgA", "AgF_prior", "FgA_prior",
                                  "group1", "group2")),
    *(f"{v}_desc-{t}_{FDR}" for t in CHI2_TESTS for v in ("p", "z", "logp")),
    *(thresholded(f"z_desc-{t}_{FDR}") for t in ("uniformity", "association")),
)
#: The chi-square map shown in figures and reported as clusters.
SHOWN_CHI2_MAP = thresholded(f"z_desc-association_{FDR}")

#: ALE subtraction (group 1 minus group 2).
CONTRAST = "desc-group1MinusGroup2"
SUBTRACTION_FWE = f"{CONTRAST}_level-voxel_corr-FWE_method-montecarlo"
SUBTRACTION_MAPS = (
    *(f"{v}_{CONTRAST}" for v in ("stat", "p", "z", "logp")),
    *(f"{v}_{SUBTRACTION_FWE}" for v in ("z", "logp")),
    thresholded(f"z_{CONTRAST}"),
)
SHOWN_SUBTRACTION_MAP = thresholded(f"z_{CONTRAST}")


def cluster_table(name):
    """Name of the cluster table of map ``name`` (file name without ``.tsv``)."""
    return f"{name}_tab-clust"


#: The cluster tables of a subtraction (clusters of its thresholded z, named
#: after the z map, as NiMARE names them) and of a chi-square analysis.
SUBTRACTION_TABLE = cluster_table(f"z_{CONTRAST}")
CHI2_TABLE = cluster_table(SHOWN_CHI2_MAP)


TAILS = ("positive", "negative")


def _check_tail(tail):
    if tail not in TAILS:
        raise CbmaError(f"unknown tail {tail!r}; expected 'positive' or 'negative'")


def counts_table(target, diagnostic, tail="positive"):
    """Name of a per-experiment table: ``<target>_diag-<diagnostic>_tab-counts_tail-<tail>``.

    Parameters
    ----------
    target : str
        Map the clusters come from, e.g. ``"z_desc-size_level-cluster_corr-FWE_method-montecarlo"``.
    diagnostic : str
        ``"Jackknife"`` or ``"FocusCounter"`` (NiMARE's class names).
    tail : {"positive", "negative"}
    """
    _check_tail(tail)
    return f"{target}_diag-{diagnostic}_tab-counts_tail-{tail}"


def shares_table(target, tail="positive"):
    """Name of the GingerALE-style contributions table of ``target``."""
    _check_tail(tail)
    return f"{target}_diag-Contribution_tab-shares_tail-{tail}"


def label_map(target, tail="positive"):
    """Name of a label map: ``label_<target without its first '_' field>_tail-<tail>``.

    ``"z_desc-size_level-cluster_corr-FWE_method-montecarlo"`` gives
    ``"label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-positive"``;
    a target without fields (``"z"``) gives ``"label_tail-positive"``.
    """
    _check_tail(tail)
    rest = "_".join(target.split("_")[1:])
    return f"label{'_' + rest if rest else ''}_tail-{tail}"


#: The diagnostics tables of a target map, by kind (positive tail).
DIAGNOSTICS = {
    "clusters": cluster_table,
    "jackknife": lambda target: counts_table(target, "Jackknife"),
    "focus_counter": lambda target: counts_table(target, "FocusCounter"),
    "contributions": shares_table,
}


def diagnostics_table(target, kind):
    """Name of a diagnostics table of ``target`` (a key of :data:`DIAGNOSTICS`)."""
    return DIAGNOSTICS[kind](target)


# ---------------------------------------------------------------------- paths


def dataset_dir(dataset="{dataset}"):
    return f"{RESULTS}/datasets/{dataset}"


def dataset_file(name, dataset="{dataset}"):
    """A dataset's file: ``coordinates.tsv``, ``terms.npz``, ``studies.tsv``, ``text-model.npz``."""
    return f"{dataset_dir(dataset)}/{name}"


def ma_maps(dataset="{dataset}", kernel="{kernel}"):
    """A dataset's modeled-activation maps under one kernel (sparse experiments x voxels)."""
    return dataset_file(f"ma-{kernel}.npz", dataset)


def term_maps(dataset="{dataset}", kernel="{kernel}", threshold="{threshold}", ext=".npy"):
    """Every term's association map of a dataset (``.npy``) and its term list (``.tsv``)."""
    if not isinstance(threshold, str):
        threshold = f"{threshold:g}"
    return dataset_file(f"term-maps_{kernel}_ft{threshold}{ext}", dataset)


def analysis_dir(analysis="{analysis}"):
    return f"{RESULTS}/analyses/{analysis}"


def analysis_file(name, analysis="{analysis}"):
    """A file of an analysis, e.g. ``selection.tsv``, ``fwe_summary.json``."""
    return f"{analysis_dir(analysis)}/{name}"


def pooled_file(name, analysis="{analysis}"):
    """A pooled analysis' experiments: ``results/analyses/<analysis>/pooled/<name>``.

    ``coordinates.tsv`` (one experiment per subject group), ``selection.tsv``
    (their ids), ``groups.tsv`` (which selected experiment is in which); see
    :mod:`cbma.pooling`.
    """
    return analysis_file(f"pooled/{name}", analysis)


def pooled_ma_maps(analysis="{analysis}", kernel="{kernel}"):
    """The MA maps of a pooled analysis' experiments under one kernel.

    The analysis' own file, beside its pooled experiments: the dataset's
    ``ma-<kernel>.npz`` stays the one its unpooled analyses share.
    """
    return pooled_file(f"ma-{kernel}.npz", analysis)


def analysis_map(name, analysis="{analysis}"):
    """A map of an analysis (``name`` without ``.nii.gz``)."""
    return analysis_file(f"{name}.nii.gz", analysis)


def fwe_chunk(analysis="{analysis}", chunk="{chunk}"):
    """One chunk of an analysis' Monte Carlo null."""
    return analysis_file(f"fwe_null/chunk-{chunk}.tsv", analysis)


def fwe_progress(analysis="{analysis}", chunk="{chunk}"):
    """The early-stopping check after a Monte Carlo chunk."""
    return analysis_file(f"fwe_null/progress-{chunk}.json", analysis)


def figure(kind, name, fig):
    """A figure: ``results/<kind>/<name>/figures/<fig>.png`` (kind: analyses, contrasts, ...)."""
    return f"{RESULTS}/{kind}/{name}/figures/{fig}.png"


def contrast_file(name, contrast="{contrast}"):
    return f"{RESULTS}/contrasts/{contrast}/{name}"


def subtraction_chunk(contrast="{contrast}", chunk="{chunk}"):
    """One chunk of a subtraction's permutation null."""
    return contrast_file(f"null/chunk-{chunk}.npz", contrast)


def conjunction_file(name, conjunction="{conjunction}"):
    return f"{RESULTS}/conjunctions/{conjunction}/{name}"


def decode_file(name, decode="{decode}"):
    return f"{RESULTS}/decode/{decode}/{name}"


def query_file(name, query="{query}"):
    return f"{RESULTS}/queries/{query}/{name}"


def evaluation_file(name, evaluation="{evaluation}"):
    return f"{RESULTS}/evaluation/{evaluation}/{name}"


def classify_file(name, classifier="{classifier}"):
    return f"{RESULTS}/classify/{classifier}/{name}"


#: Files of each kind of output, relative to its folder.
DECODE_FILES = ("decoding.tsv", "decoding_ranked.tsv", "figures/top_terms.png")
QUERY_FILES = ("map.nii.gz", "terms.tsv", "figures/glass.png")
EVALUATION_FILES = ("held_out.tsv", "summary.tsv", "dice_curves.tsv", "figures/dice_curves.png")
CLASSIFY_FILES = ("cv_scores.tsv", "classification.json", "weights.nii.gz",
                  "searchlight.nii.gz", f"{cluster_table('searchlight')}.tsv",
                  "figures/weights.png", "figures/searchlight.png")

REPORT = f"{RESULTS}/report.html"
PROVENANCE = f"{RESULTS}/provenance.json"


def table_atlas(atlas="{atlas}", part="labels.nii.gz"):
    """A cluster-table atlas: label image (``labels.nii.gz``) or region table (``regions.tsv``)."""
    return f"{RESULTS}/atlases/{atlas}/{part}"


def table_atlas_files(names):
    """Label image and region table of each named atlas, in order (the rules' inputs)."""
    return [table_atlas(n, part) for n in names for part in ("labels.nii.gz", "regions.tsv")]


def log(rule, *names):
    """A job's log: ``logs/<rule>/<names joined by _>.log`` (``logs/<rule>.log`` without)."""
    return f"{LOGS}/{rule}/{'_'.join(names)}.log" if names else f"{LOGS}/{rule}.log"


def benchmark(rule, *names):
    """A job's time and memory record, beside the results."""
    return (f"{RESULTS}/benchmarks/{rule}/{'_'.join(names)}.tsv" if names
            else f"{RESULTS}/benchmarks/{rule}.tsv")
