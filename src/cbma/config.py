"""Checks of the run configuration, with one-line messages naming the key."""

import jsonschema
import yaml

from .errors import CbmaError


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
    datasets = config.get("datasets", {})
    analyses = config.get("analyses", {})
    for name, analysis in analyses.items():
        if analysis["dataset"] not in datasets:
            raise CbmaError(f"config: analyses.{name}.dataset: no dataset named "
                            f"{analysis['dataset']!r} (datasets: {', '.join(datasets)})")
    for section in ("contrasts", "conjunctions"):
        for name, block in (config.get(section) or {}).items():
            for ref in block["analyses"]:
                if ref not in analyses:
                    raise CbmaError(f"config: {section}.{name}.analyses: no analysis named "
                                    f"{ref!r} (analyses: {', '.join(analyses)})")
            if len(set(block["analyses"])) != len(block["analyses"]):
                raise CbmaError(f"config: {section}.{name}.analyses: an analysis is repeated")
    names = [n for s in ("analyses", "contrasts") for n in (config.get(s) or {})]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise CbmaError(f"config: contrasts.{clash[0]}: a contrast needs a name no analysis "
                        "has (the name seeds its permutations)")
