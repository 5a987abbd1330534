"""The run configuration: checked, completed from the schema's defaults, in one call.

:func:`load_config` is the one entry point (``workflow/rules/common.smk`` calls
it); ``workflow/schemas/config.schema.yaml`` is the one source of the
defaults and of the keys' documentation. Every refusal is a one-line
:class:`~cbma.errors.CbmaError` naming the key.
"""

import copy
from pathlib import Path

import jsonschema
import yaml

from . import estimators
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




#: PyYAML's safe loader, in C where PyYAML was built with libyaml (the same documents).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(config, schema_path, config_files=()):
    """Check a run's config and return it complete, every default filled.

    In order: each config file is re-read refusing a key given twice
    (:func:`load_yaml_strict`); the config is validated against the schema;
    the names it refers to are checked (a dataset or analysis of that name
    exists, no two sections share a name); the schema's defaults are filled
    (:func:`fill_defaults`); the selections and kernels are put in their
    canonical form; and the combinations the schema cannot express are
    checked (an estimator's kernel options and correction method, what a
    contrast, conjunction or classification can compare).

    Parameters
    ----------
    config : dict
        The config as Snakemake loaded it (its files merged with
        ``--config``); not changed.
    schema_path : str or Path
        ``workflow/schemas/config.schema.yaml``.
    config_files : iterable of str or Path, default=()
        The files the config was read from. One that cannot be read as YAML
        is left to Snakemake's own checks (it read it, as JSON, say).

    Returns
    -------
    dict
        A new, complete config. Each entry of ``coactivation`` is an analysis
        too, its ``seed`` moved to ``select: {seed: ...}``; every ``xyz`` of a
        seed is a list of ``[x, y, z]`` floats.

    Raises
    ------
    CbmaError
        With a one-line message naming the offending key (a file's key given
        twice: an :class:`~cbma.errors.InputFileError` naming the file and line).
    """
    for path in config_files:
        try:
            load_yaml_strict(Path(path).absolute())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            pass
    with open(schema_path, encoding="utf-8") as fh:  # libyaml's parser where installed:
        schema = yaml.load(fh, Loader=_SAFE_LOADER)  # 0.2 s -> 0.02 s for the schema
    config = copy.deepcopy(config)
    _validate(config, schema)
    _check_names(config)
    fill_defaults(config, schema)
    _canonical_form(config)
    _check_combinations(config)
    return config


def _key_path(error):
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _validate(config, schema):
    """The schema's first complaint about ``config``, as one line naming the key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return
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
    if err.validator == "oneOf" and all(list(b) == ["required"] for b in err.validator_value):
        # one of some keys (a selection's ids, expression or seed; a seed's xyz or mask)
        keys = [b["required"][0] for b in err.validator_value]
        if not isinstance(err.instance, dict):  # not a mapping: the choice above it failed
            err = err.parent or err
            raise CbmaError(f"config: {where}: {err.message}")
        given = [key for key in keys if key in err.instance]
        if given:
            raise CbmaError(f"config: {where}: give only one of {' and '.join(given)}")
        raise CbmaError(f"config: {where}: give one of {', '.join(keys[:-1])} or {keys[-1]}")
    raise CbmaError(f"config: {where}: {err.message}")


def fill_defaults(instance, schema):
    """Fill the schema's defaults into ``instance``, in place.

    jsonschema's extend pattern: a validator whose ``properties`` keyword
    first sets each missing property that has a ``default`` (a copy of it,
    so no two entries share one dict), then descends. Defaults are filled
    wherever validation goes: through ``$ref``, ``allOf``,
    ``additionalProperties`` and ``items``; under the ``then`` (or ``else``)
    of an ``if``, and in the branch of a ``oneOf`` or ``anyOf`` the value
    matches. An ``if``, a ``not`` and the choice of a branch are tested
    without filling anything. A default is added after the keys already
    there, in the order the schema meets it (the order of a filled mapping's
    keys is part of the rules' params). The validator runs until a pass adds nothing,
    so a default that depends on another key's default is filled whatever
    the order of the keywords; for that, its ``if`` must require the key it
    tests (without it, the ``if`` holds before the key is filled).

    Parameters
    ----------
    instance : dict
        A config that is valid against ``schema``.
    schema : dict
        The JSON schema (draft 2020-12), with its ``default`` values.

    Returns
    -------
    dict
        ``instance``.

    Raises
    ------
    CbmaError
        If a filled default makes the config invalid (a defect of the schema).
    """
    plain = jsonschema.Draft202012Validator(schema)
    stock = jsonschema.Draft202012Validator.VALIDATORS

    def holds(subschema, value):
        return plain.evolve(schema=subschema).is_valid(value)

    def properties(validator, props, value, schema):
        if validator.is_type(value, "object"):
            for key, subschema in props.items():
                if key not in value and isinstance(subschema, dict) and "default" in subschema:
                    value[key] = copy.deepcopy(subschema["default"])
        yield from stock["properties"](validator, props, value, schema)

    def if_(validator, condition, value, schema):
        branch = "then" if holds(condition, value) else "else"
        if branch in schema:
            yield from validator.descend(value, schema[branch], schema_path=branch)

    def first_match(validator, branches, value, schema):
        for index, subschema in enumerate(branches):
            if holds(subschema, value):
                yield from validator.descend(value, subschema, schema_path=index)
                return
        yield jsonschema.ValidationError(f"{value!r} is valid under none of the given schemas")

    def not_(validator, subschema, value, schema):
        if holds(subschema, value):
            yield jsonschema.ValidationError(f"{value!r} should not be valid under {subschema!r}")

    filler = jsonschema.validators.extend(jsonschema.Draft202012Validator, {
        "properties": properties, "if": if_, "oneOf": first_match, "anyOf": first_match,
        "not": not_})(schema)
    for _ in range(10):
        before = copy.deepcopy(instance)
        for err in filler.iter_errors(instance):
            raise CbmaError(f"config: {_key_path(err)}: {err.message} (with the schema's "
                            "defaults filled: a defect of the schema)")
        if instance == before:
            return instance
    raise CbmaError("config: the schema's defaults do not settle after 10 passes (a defect "
                    "of the schema)")


def _check_names(config):
    """Names of their own for analyses, coactivations and contrasts; references that exist."""
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
    datasets = config.get("datasets") or {}
    for section in ("analyses", "coactivation", "decode", "queries", "evaluate"):
        _check_references(config, section, "dataset", datasets, "dataset")
    every_analysis = {**analyses, **coactivation}
    for section in ("contrasts", "conjunctions", "classify"):
        _check_references(config, section, "analyses", every_analysis, "analysis")
    for section in ("contrasts", "conjunctions"):
        for name, block in (config.get(section) or {}).items():
            if len(set(block["analyses"])) != len(block["analyses"]):
                raise CbmaError(f"config: {section}.{name}.analyses: an analysis is repeated")


def _check_references(config, section, key, known, noun):
    """Each ``<section>.<name>.<key>`` (one name or a list) is a name in ``known``.

    ``noun`` is ``"dataset"`` or ``"analysis"``: ``config: analyses.a.dataset:
    no dataset named 'x' (datasets: k, r)``.
    """
    plural = {"dataset": "datasets", "analysis": "analyses"}[noun]
    for name, block in (config.get(section) or {}).items():
        refs = block[key] if isinstance(block[key], list) else [block[key]]
        for ref in refs:
            if ref not in known:
                raise CbmaError(f"config: {section}.{name}.{key}: no {noun} named {ref!r} "
                                f"({plural}: {', '.join(known)})")


def _canonical_form(config):
    """Selections and kernels in the one form the rules read; no default is filled here.

    An analysis' ``seed`` becomes ``select: {seed: ...}``; a seed's ``xyz``
    becomes a list of ``[x, y, z]`` floats; a kernel's keys come in the
    schema's order (``r`` before ``value``), so the rules' kernel param does
    not depend on the order they were written in.
    """
    order = ("fwhm", "sample_size", "r", "value")
    for section in ("analyses", "coactivation"):
        for analysis in config[section].values():
            kernel = analysis["kernel"]
            analysis["kernel"] = {key: kernel[key] for key in sorted(kernel, key=order.index)}
            if "seed" in analysis and "select" not in analysis:
                analysis["select"] = {"seed": analysis.pop("seed")}
            for block in (analysis.get("select"), analysis["versus"]):
                if isinstance(block, dict) and "xyz" in block.get("seed", {}):
                    xyz = block["seed"]["xyz"]
                    points = xyz if isinstance(xyz[0], list) else [xyz]
                    block["seed"]["xyz"] = [[float(c) for c in point] for point in points]


def _check_analysis(where, analysis):
    """An analysis' kernel, correction and mkda_chi2-only keys suit its estimator."""
    estimator = analysis["estimator"]
    est = estimators.get(estimator)
    options = estimators.KERNEL_OPTIONS[est.kernel]
    bad = sorted(set(analysis["kernel"]) - set(options))
    if bad and est.kernel == "ale":
        raise CbmaError(f"config: {where}.kernel.{bad[0]}: not an ALE kernel option "
                        "(ALE takes fwhm or sample_size)")
    if bad:
        raise CbmaError(f"config: {where}.kernel.{bad[0]}: not an option of the "
                        f"{estimator} kernel (it takes {' and '.join(options)})")
    method = analysis["correction"]["method"]
    if not est.fwe and method != "fdr":
        raise CbmaError(f"config: {where}.correction.method: {estimator} is corrected with "
                        "fdr (Benjamini-Hochberg), not montecarlo")
    if est.fwe and method != "montecarlo":
        raise CbmaError(f"config: {where}.correction.method: {estimator} is corrected with "
                        "montecarlo (FWE); fdr is for mkda_chi2")
    if not est.fwe and "null_sampling" in analysis["correction"]:
        raise CbmaError(f"config: {where}.correction.null_sampling: only for the Monte Carlo "
                        f"FWE of ale, mkda and kda, not {estimator}")
    if analysis["weights"] != "equal" and estimator != "mkda":
        raise CbmaError(f"config: {where}.weights: only for estimator mkda (MKDA density), "
                        f"not {estimator}")
    if est.fwe:
        for key, default in (("versus", "rest"), ("naming", "nimare")):
            if analysis[key] != default:
                raise CbmaError(f"config: {where}.{key}: only for estimator mkda_chi2")
    if "seed" in analysis:
        raise CbmaError(f"config: {where}: give select or seed, not both")


#: dataset formats with annotation labels and subject-group columns (cbma.dataset)
LABELLED_FORMATS = ("nimads", "studyset_parquet", "table")


def _check_formats_and_pooling(config):
    """Dataset keys that only some formats take; pooling only where it means something."""
    for name, block in config["datasets"].items():
        fmt = block["format"]
        if "features" in block and fmt != "neurosynth":
            raise CbmaError(f"config: datasets.{name}.features: only for the neurosynth "
                            f"format, not {fmt}")
        if "annotations" in block and fmt != "nimads":
            raise CbmaError(f"config: datasets.{name}.annotations: only for the nimads format "
                            f"(a studyset_parquet folder holds its annotations), not {fmt}")
        if "labels" in block and fmt not in LABELLED_FORMATS:
            raise CbmaError(f"config: datasets.{name}.labels: only for the "
                            f"{', '.join(LABELLED_FORMATS)} formats, not {fmt}")
        if fmt == "studyset_parquet" and isinstance(block["path"], list) and len(
                block["path"]) > 1:
            raise CbmaError(f"config: datasets.{name}.path: a studyset_parquet dataset is one "
                            "folder")
    pools = [(f"datasets.{name}", block, block) for name, block in config["datasets"].items()]
    for section in ("analyses", "coactivation"):
        for name, analysis in config[section].items():
            where = f"{section}.{name}"
            if "pool" in analysis and analysis["estimator"] == "mkda_chi2":
                raise CbmaError(f"config: {where}.pool: mkda_chi2 analyses are not pooled (they "
                                "take one experiment per study, as Neurosynth does)")
            pools.append((where, analysis, config["datasets"][analysis["dataset"]]))
    for where, block, dataset in pools:
        pool = block.get("pool")
        if isinstance(pool, dict) and dataset["format"] not in LABELLED_FORMATS:
            raise CbmaError(f"config: {where}.pool.column: a {dataset['format']} dataset has "
                            f"no subject-group column (the {', '.join(LABELLED_FORMATS)} "
                            "formats do); use pool: study")


def _check_combinations(config):
    """What the schema cannot say: which analyses a contrast, conjunction or classify takes."""
    _check_formats_and_pooling(config)
    for section in ("analyses", "coactivation"):
        for name, analysis in config[section].items():
            _check_analysis(f"{section}.{name}", analysis)
    analyses = {**config["analyses"], **config["coactivation"]}
    for name, block in config["contrasts"].items():
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
    for name, block in config["conjunctions"].items():
        for a in block["analyses"]:
            if analyses[a]["estimator"] not in estimators.WITH_FWE:
                raise CbmaError(f"config: conjunctions.{name}.analyses: {a} has no "
                                "FWE-corrected maps (estimator mkda_chi2)")
    for name, block in config["queries"].items():
        if not block["text"].strip():
            raise CbmaError(f"config: queries.{name}.text: the query is empty")
    for name, block in config["classify"].items():
        first, second = (analyses[a]["dataset"] for a in block["analyses"])
        if first != second:
            raise CbmaError(f"config: classify.{name}.analyses: both analyses must select "
                            f"from one dataset (got {first} and {second})")
