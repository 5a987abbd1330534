"""Checks of the run configuration, with one-line messages naming the key."""

import copy
from pathlib import Path

import jsonschema
import yaml

from .errors import CbmaError, InputFileError

_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml_strict(path):
    """Load a YAML (or JSON) config file, refusing a key given twice in one mapping.

    YAML loaders keep the last of two equal keys without a word, so an
    analysis given twice would silently replace the first.

    Parameters
    ----------
    path : str or Path
        The config file.

    Returns
    -------
    object
        The loaded document (``None`` for an empty file).

    Raises
    ------
    InputFileError
        ``<file>, line N: key 'analyses.x' is given twice (first on line M)
        ...``, for the first repeated key.
    yaml.YAMLError
        For a file that is not YAML.
    """
    path = Path(path)
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(path, node, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_duplicate_keys(path, node, where, visited):
    if id(node) in visited:  # an alias of a node already checked
        return
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for k, item in enumerate(node.value):
            _check_duplicate_keys(path, item, f"{where}[{k}]", visited)
    elif isinstance(node, yaml.MappingNode):
        first = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                _check_duplicate_keys(path, value, where, visited)
                continue
            name = f"{where}.{key.value}" if where else key.value
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                raise InputFileError(
                    path, line, f"key {name!r} is given twice (first on line "
                    f"{first[key.tag, key.value]}); YAML would keep only the last, so "
                    "rename or remove one")
            first[key.tag, key.value] = line
            _check_duplicate_keys(path, value, name, visited)


def _key_path(error):
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def check_config(config, schema_path):
    """Validate a config dict against the workflow's JSON schema, then cross-references.

    Parameters
    ----------
    config : dict
        The loaded config (before defaults are filled).
    schema_path : str or Path
        ``workflow/schemas/config.schema.yaml``.

    Raises
    ------
    CbmaError
        With a one-line message naming the offending key.
    """
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = _key_path(err)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            raise CbmaError(f"config: unknown key {where + '.' if where != '(top level)' else ''}"
                            f"{extra[0]} (allowed here: {allowed})")
        if err.validator == "not":
            keys = " and ".join(err.validator_value.get("required", []))
            raise CbmaError(f"config: {where}: give only one of {keys}")
        raise CbmaError(f"config: {where}: {err.message}")
    _check_names(config)
    datasets = config.get("datasets", {})
    for section in ("analyses", "coactivation"):
        for name, analysis in (config.get(section) or {}).items():
            if analysis["dataset"] not in datasets:
                raise CbmaError(f"config: {section}.{name}.dataset: no dataset named "
                                f"{analysis['dataset']!r} (datasets: {', '.join(datasets)})")
    analyses = {**config.get("analyses", {}), **(config.get("coactivation") or {})}
    for section in ("contrasts", "conjunctions"):
        for name, block in (config.get(section) or {}).items():
            for ref in block["analyses"]:
                if ref not in analyses:
                    raise CbmaError(f"config: {section}.{name}.analyses: no analysis named "
                                    f"{ref!r} (analyses: {', '.join(analyses)})")
            if len(set(block["analyses"])) != len(block["analyses"]):
                raise CbmaError(f"config: {section}.{name}.analyses: an analysis is repeated")


def _check_names(config):
    """Analyses, coactivations and contrasts need names of their own."""
    analyses = config.get("analyses") or {}
    coactivation = config.get("coactivation") or {}
    for name in coactivation:
        if name in analyses:
            raise CbmaError(f"config: coactivation.{name}: analyses.{name} has this name "
                            f"already (both would write results/analyses/{name}/)")
    for name in config.get("contrasts") or {}:
        for section, names in (("analyses", analyses), ("coactivation", coactivation)):
            if name in names:
                raise CbmaError(f"config: contrasts.{name}: {section}.{name} has this name "
                                "already; a contrast needs a name no analysis has (the name "
                                "seeds its permutations)")


MKDA_FAMILY = ("mkda", "kda", "mkda_chi2")
ESTIMATORS_WITH_FWE = ("ale", "mkda", "kda")


def _check_analysis(where, analysis, datasets):
    estimator = analysis["estimator"]
    kernel = analysis.get("kernel") or {}
    if analysis["dataset"] not in datasets:
        raise CbmaError(f"config: {where}.dataset: no dataset named {analysis['dataset']!r} "
                        f"(datasets: {', '.join(datasets)})")
    if estimator == "ale":
        bad = sorted(set(kernel) - {"fwhm", "sample_size"})
        if bad:
            raise CbmaError(f"config: {where}.kernel.{bad[0]}: not an ALE kernel option "
                            "(ALE takes fwhm or sample_size)")
    else:
        bad = sorted(set(kernel) - {"r", "value"})
        if bad:
            raise CbmaError(f"config: {where}.kernel.{bad[0]}: not an option of the "
                            f"{estimator} kernel (it takes r and value)")
    method = analysis["correction"]["method"]
    if estimator == "mkda_chi2" and method != "fdr":
        raise CbmaError(f"config: {where}.correction.method: mkda_chi2 is corrected with "
                        "fdr (Benjamini-Hochberg), not montecarlo")
    if estimator != "mkda_chi2" and method != "montecarlo":
        raise CbmaError(f"config: {where}.correction.method: {estimator} is corrected with "
                        "montecarlo (FWE); fdr is for mkda_chi2")
    if estimator != "mkda_chi2":
        for key in ("versus", "naming"):
            if key in analysis and analysis[key] != {"versus": "rest", "naming": "nimare"}[key]:
                raise CbmaError(f"config: {where}.{key}: only for estimator mkda_chi2")
    if "select" in analysis and "seed" in analysis:
        raise CbmaError(f"config: {where}: give select or seed, not both")


def normalise_config(config):
    """Fill the defaults that depend on other keys, and check what the schema cannot.

    Run after :func:`check_config` and the schema's own defaults. Fills each
    analysis' ``estimator`` (``ale``; ``mkda_chi2`` in the coactivation
    section), its correction method (``fdr`` for ``mkda_chi2``, else
    ``montecarlo``) and, for the MKDA family, the sphere (``r`` 10 mm,
    ``value`` 1); turns ``seed`` into ``select: {seed: ...}`` (seed ``r``
    6 mm: a focus within r mm of a seed coordinate, or a sphere of r mm
    reaching a seed mask voxel, activates it; ``proportion`` 0) and gives ``select.expression`` its
    ``frequency_threshold`` (0.001) and ``semantics`` (``neurosynth``).

    Parameters
    ----------
    config : dict
        The validated config; changed in place and returned.

    Returns
    -------
    dict
        ``config``, where ``config["coactivation"]`` entries are complete
        analyses too.

    Raises
    ------
    CbmaError
        For combinations the schema allows but the pipeline cannot run.
    """
    datasets = config["datasets"]
    for section, default in (("analyses", "ale"), ("coactivation", "mkda_chi2")):
        for name, analysis in (config.get(section) or {}).items():
            where = f"{section}.{name}"
            analysis.setdefault("estimator", default)
            # a copy: the schema's default correction is one dict shared by every
            # analysis that gives none, whatever its estimator
            analysis["correction"] = copy.deepcopy(analysis.get("correction") or {})
            analysis["correction"].setdefault(
                "method", "fdr" if analysis["estimator"] == "mkda_chi2" else "montecarlo")
            _check_analysis(where, analysis, datasets)
            if analysis["estimator"] in MKDA_FAMILY:
                analysis["kernel"] = {"r": 10.0, "value": 1.0, **(analysis.get("kernel") or {})}
            if "seed" in analysis:
                analysis["select"] = {"seed": analysis.pop("seed")}
            for block in (analysis.get("select"), analysis.get("versus")):
                if not isinstance(block, dict):
                    continue
                if "expression" in block:
                    block.setdefault("frequency_threshold", 0.001)
                    block.setdefault("semantics", "neurosynth")
                if "seed" in block:
                    seed = block["seed"]
                    seed.setdefault("r", 6.0)
                    if "xyz" in seed:
                        xyz = seed["xyz"]
                        seed["xyz"] = [list(map(float, xyz))] if not isinstance(
                            xyz[0], list) else [list(map(float, p)) for p in xyz]
                    else:
                        seed.setdefault("proportion", 0.0)
    _check_names(config)
    analyses = {**config["analyses"], **(config.get("coactivation") or {})}
    for name, block in (config.get("contrasts") or {}).items():
        kinds = [analyses[a]["estimator"] for a in block["analyses"]]
        if block["method"] == "subtraction" and kinds != ["ale", "ale"]:
            raise CbmaError(f"config: contrasts.{name}: subtraction compares two ale analyses, "
                            f"got {' and '.join(kinds)}")
        if block["method"] == "mkda_chi2":
            if kinds != ["mkda", "mkda"]:
                raise CbmaError(f"config: contrasts.{name}: mkda_chi2 compares two mkda "
                                f"analyses, got {' and '.join(kinds)}")
            radii = {analyses[a]["kernel"]["r"] for a in block["analyses"]}
            if len(radii) > 1:
                raise CbmaError(f"config: contrasts.{name}: both analyses need the same "
                                "kernel radius r")
    for name, block in (config.get("conjunctions") or {}).items():
        for a in block["analyses"]:
            if analyses[a]["estimator"] not in ESTIMATORS_WITH_FWE:
                raise CbmaError(f"config: conjunctions.{name}.analyses: {a} has no "
                                "FWE-corrected maps (estimator mkda_chi2)")
    for name, block in (config.get("decode") or {}).items():
        if block["dataset"] not in datasets:
            raise CbmaError(f"config: decode.{name}.dataset: no dataset named "
                            f"{block['dataset']!r} (datasets: {', '.join(datasets)})")
        block["kernel"] = {"r": 6.0, **(block.get("kernel") or {})}
    model = config.setdefault("text_model", {})
    model["kernel"] = {"r": 6.0, **(model.get("kernel") or {})}
    for section in ("queries", "evaluate"):
        for name, block in (config.get(section) or {}).items():
            if block["dataset"] not in datasets:
                raise CbmaError(f"config: {section}.{name}.dataset: no dataset named "
                                f"{block['dataset']!r} (datasets: {', '.join(datasets)})")
            if section == "queries" and not block["text"].strip():
                raise CbmaError(f"config: queries.{name}.text: the query is empty")
    for name, block in (config.get("classify") or {}).items():
        for a in block["analyses"]:
            if a not in analyses:
                raise CbmaError(f"config: classify.{name}.analyses: no analysis named {a!r} "
                                f"(analyses: {', '.join(analyses)})")
        first, second = (analyses[a]["dataset"] for a in block["analyses"])
        if first != second:
            raise CbmaError(f"config: classify.{name}.analyses: both analyses must select "
                            f"from one dataset (got {first} and {second})")
        block["kernel"] = {"r": 6.0, **(block.get("kernel") or {})}
    return config
