"""The config: keys given twice, names shared by two sections (one line each); the
schema's defaults, filled as the pipeline always filled them."""

import copy
import json
import subprocess
import sys

import pytest
import yaml
from conftest import FIXTURES, REPO, smk, write_config

from cbma.config import fill_defaults, load_config, load_yaml_strict
from cbma.errors import CbmaError, InputFileError

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

MINIMAL = {
    "datasets": {"k": {"path": "resources/data/semantic_knowledge_children.txt",
                       "format": "sleuth"}},
    "analyses": {"knowledge": {"dataset": "k"}, "other": {"dataset": "k"}},
}

DUPLICATE_ANALYSIS = """\
datasets:
  k: {path: resources/data/semantic_knowledge_children.txt, format: sleuth}
analyses:
  knowledge:
    dataset: k
  other: {dataset: k}
  knowledge:
    dataset: k
    estimator: mkda
"""


def test_load_yaml_strict_names_the_key_given_twice(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(DUPLICATE_ANALYSIS)
    with pytest.raises(InputFileError) as err:
        load_yaml_strict(path)
    assert str(err.value) == (
        f"{path}, line 7: key 'analyses.knowledge' is given twice (first on line 4); "
        "YAML would keep only the last, so rename or remove one")


@pytest.mark.parametrize("text, key, line", [
    ("a: 1\na: 2\n", "a", 2),
    ("x:\n  - {b: 1, b: 2}\n", "x[0].b", 2),
    ("x: {c: {d: 1}}\ny: 2\nx: 3\n", "x", 3),
], ids=["top", "in a list", "a section"])
def test_load_yaml_strict_nested_keys(tmp_path, text, key, line):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputFileError) as err:
        load_yaml_strict(path)
    assert f", line {line}: key '{key}' is given twice" in str(err.value)


def test_load_yaml_strict_reads_what_safe_load_reads(tmp_path):
    # merge keys and anchors are not duplicates; JSON is YAML
    text = "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n"
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_yaml_strict(path) == yaml.safe_load(text)
    path.write_text('{"a": {"b": [1, 2]}, "c": null}')
    assert load_yaml_strict(path) == {"a": {"b": [1, 2]}, "c": None}
    assert load_yaml_strict(REPO / "config.yaml") == yaml.safe_load(
        (REPO / "config.yaml").read_text())


def _clash(section, name, block):
    config = copy.deepcopy(MINIMAL)
    config.setdefault(section, {})[name] = block
    return config


SEED = {"dataset": "k", "seed": {"xyz": [0, 0, 0]}}
CONTRAST = {"analyses": ["knowledge", "other"]}


@pytest.mark.parametrize("config, message", [
    (_clash("coactivation", "knowledge", SEED),
     "config: coactivation.knowledge: analyses.knowledge has this name already (both would "
     "write results/analyses/knowledge/)"),
    (_clash("contrasts", "knowledge", CONTRAST),
     "config: contrasts.knowledge: analyses.knowledge has this name already; a contrast "
     "needs a name no analysis has (the name seeds its permutations)"),
    ({**_clash("coactivation", "amygdala", SEED), "contrasts": {"amygdala": CONTRAST}},
     "config: contrasts.amygdala: coactivation.amygdala has this name already; a contrast "
     "needs a name no analysis has (the name seeds its permutations)"),
], ids=["analysis-coactivation", "analysis-contrast", "coactivation-contrast"])
def test_each_name_clash_has_its_own_message(config, message):
    with pytest.raises(CbmaError) as err:
        load_config(config, SCHEMA)
    assert str(err.value) == message


def test_coactivation_with_an_unknown_dataset_is_named_as_such():
    config = _clash("coactivation", "amygdala", {**SEED, "dataset": "nope"})
    with pytest.raises(CbmaError, match=r"^config: coactivation\.amygdala\.dataset: no dataset"):
        load_config(config, SCHEMA)


def _one_line_error(res):
    text = res.stdout + res.stderr
    errors = [line for line in text.splitlines() if line.startswith("cbma error:")]
    assert res.returncode != 0 and len(errors) == 1 and "Traceback" not in text, text
    return errors[0].removeprefix("cbma error: ")


def test_workflow_refuses_an_analysis_given_twice(tmp_path):
    """With --configfile, and with the default config.yaml of the working directory."""
    (tmp_path / "config.yaml").write_text(DUPLICATE_ANALYSIS)
    expected = (f"{tmp_path / 'config.yaml'}, line 7: key 'analyses.knowledge' is given "
                "twice (first on line 4)")
    res = smk(tmp_path, "--dry-run", check=False)
    assert _one_line_error(res).startswith(expected)
    res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                          str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1",
                          "--dry-run"], capture_output=True, text=True)
    assert _one_line_error(res).startswith(expected)


def test_workflow_names_an_analysis_coactivation_clash(tmp_path):
    write_config(tmp_path, _clash("coactivation", "knowledge", SEED))
    res = smk(tmp_path, "--dry-run", check=False)
    assert _one_line_error(res).startswith("config: coactivation.knowledge: analyses.knowledge")


def test_analyses_without_a_correction_get_their_own_default():
    """The schema's default correction is one dict: an mkda analysis and an mkda_chi2
    coactivation, neither giving one, each get the method of their estimator."""
    config = copy.deepcopy(MINIMAL)
    config["analyses"] = {"density": {"dataset": "k", "estimator": "mkda"}}
    config["coactivation"] = {"seeded": SEED}
    config = load_config(config, SCHEMA)
    assert config["analyses"]["density"]["correction"]["method"] == "montecarlo"
    assert config["coactivation"]["seeded"]["correction"]["method"] == "fdr"


def test_load_config_refuses_a_key_given_twice_in_its_files(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(DUPLICATE_ANALYSIS)
    with pytest.raises(InputFileError, match=r", line 7: key 'analyses.knowledge' is given"):
        load_config(yaml.safe_load(DUPLICATE_ANALYSIS), SCHEMA, config_files=[path])
    # a file that is not YAML is left to Snakemake (it read it, as JSON, say)
    other = tmp_path / "config.bin"
    other.write_bytes(b"\xff\xfe\x00")
    assert load_config(MINIMAL, SCHEMA, config_files=[other, tmp_path / "gone.yaml"])


# ------------------------------------------ defaults: the schema's, as before ----

# Configs filled by the pipeline of commit 13a6a6c (schema check, Snakemake's validate,
# normalise_config), or the message it stopped with: config.yaml, small_config, every
# yaml block of README.md and docs/*.md, and cases that reach every default and check
# (tests/fixtures/make_filled_configs.py made them).
FILLED = json.loads((FIXTURES / "filled_configs.json").read_text())

# Messages made clearer since (the old ones, for a oneOf of keys, listed the schema).
CLEARER = {
    "two selections": "config: analyses.a.select: give only one of ids and expression",
    "xyz and mask": "config: coactivation.c.seed: give only one of xyz and mask",
    "bad versus": "config: analyses.a.versus: 'all' is not valid under any of the given "
                  "schemas",
    # the formats added since (issue 16: nimads, studyset_parquet, table)
    "wrong format": "config: datasets.k.format: 'csv' is not one of ['sleuth', 'nimare_json', "
                    "'neurosynth', 'neurosynth_v7', 'nimads', 'studyset_parquet', 'table']",
}


# Defaults added since (issue 16): the run's cluster_tables block, and each analysis'
# weights and diagnostics.min_volume, which leave every other value as it was.
ADDED = {"cluster_tables": {"atlases": ["harvard_oxford_subcortical", "aal2_cerebellum"],
                            "talairach": False}}
ADDED_TO_ANALYSES = {"weights": "equal"}
ADDED_TO_DIAGNOSTICS = {"min_volume": 0}


# ... and the keys added since, which an unknown key's message lists among the allowed ones
ADDED_KEYS = {"cluster_tables", "weights", "pool", "null_sampling"}


def _as_before(message):
    """An unknown key's message without the keys added since, as the pipeline wrote it."""
    head, sep, allowed = message.partition("(allowed here: ")
    if not sep:
        return message
    names = [name for name in allowed.removesuffix(")").split(", ") if name not in ADDED_KEYS]
    return f"{head}{sep}{', '.join(names)})"


def _without_added_defaults(config):
    config = copy.deepcopy(config)
    for key, value in ADDED.items():
        assert config.pop(key) == value
    for section in ("analyses", "coactivation"):
        for analysis in config[section].values():
            for key, value in ADDED_TO_ANALYSES.items():
                assert analysis.pop(key) == value
            for key, value in ADDED_TO_DIAGNOSTICS.items():
                assert analysis["diagnostics"].pop(key) == value
            # issue 14: the Monte Carlo's null_sampling, for the estimators that have one
            if analysis["estimator"] != "mkda_chi2":
                assert analysis["correction"].pop("null_sampling") == "uniform"
    return config


@pytest.mark.parametrize("case", FILLED, ids=[case["name"] for case in FILLED])
def test_load_config_fills_as_the_pipeline_did(case):
    """Key order and int/float included: the rules' params, and the config the report
    and provenance show, are its values (their repr), so any change would re-run jobs."""
    raw = copy.deepcopy(case["config"])
    if "filled" in case:
        config = load_config(raw, SCHEMA)
        assert json.dumps(_without_added_defaults(config)) == json.dumps(case["filled"])
        assert raw == case["config"]  # the argument is left as it was
    else:
        with pytest.raises(CbmaError) as err:
            load_config(raw, SCHEMA)
        assert _as_before(str(err.value)) == CLEARER.get(case["name"], case["error"])


@pytest.mark.parametrize("select, message", [
    ({}, "analyses.knowledge.select: give one of ids, expression or seed"),
    ({"seed": {"r": 3}}, "analyses.knowledge.select.seed: give one of xyz or mask"),
    ({"ids": ["a"], "seed": {"mask": "m.nii"}},
     "analyses.knowledge.select: give only one of ids and seed"),
], ids=["no selection", "no seed", "two selections"])
def test_one_of_some_keys_names_them(select, message):
    config = copy.deepcopy(MINIMAL)
    config["analyses"]["knowledge"]["select"] = select
    with pytest.raises(CbmaError) as err:
        load_config(config, SCHEMA)
    assert str(err.value) == f"config: {message}"


def _objects(node, seen):
    if isinstance(node, (dict, list)):
        seen.append(id(node))
        for child in node.values() if isinstance(node, dict) else node:
            _objects(child, seen)
    return seen


@pytest.mark.parametrize("case", [c for c in FILLED if "filled" in c],
                         ids=lambda case: case["name"])
def test_no_two_keys_share_a_default(case):
    """Each default is a copy: changing one entry's never changes another's."""
    seen = _objects(load_config(case["config"], SCHEMA), [])
    assert len(seen) == len(set(seen))


def test_every_key_of_the_schema_is_described():
    """The schema documents the config: every key has a description (a ``then``
    only adds a default to a key described where it is defined)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    missing = []

    def walk(node, where):
        if isinstance(node, list):
            for k, item in enumerate(node):
                walk(item, f"{where}[{k}]")
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key in ("if", "then", "else"):
                continue
            if key == "properties":
                for name, sub in value.items():
                    if "description" not in sub and set(sub) != {"default"}:
                        missing.append(f"{where}.{name}")
            walk(value, f"{where}.{key}")

    walk(schema, "")
    assert missing == []


SMALL_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["a", "b"]},
        "box": {"type": "object", "default": {}, "properties": {"size": {"type": "number"}}},
        "pick": {"oneOf": [{"const": "none"},
                           {"type": "object", "properties": {"n": {"default": 1}}}]},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
    },
    "allOf": [
        {"if": {"required": ["kind"], "properties": {"kind": {"const": "b"}}},
         "then": {"properties": {"box": {"properties": {"size": {"default": 2.0}}}}}},
        {"properties": {"kind": {"default": "b"}}},
    ],
    "$defs": {"item": {"type": "object", "properties": {"tags": {"default": []}}}},
}


def test_fill_defaults_follows_ifs_branches_and_refs():
    config = {"pick": {}, "items": [{}, {"tags": ["x"]}, {}]}
    fill_defaults(config, SMALL_SCHEMA)
    # the default kind (filled after the if is first tested) brings the box's size
    assert config == {"pick": {"n": 1}, "items": [{"tags": []}, {"tags": ["x"]}, {"tags": []}],
                      "box": {"size": 2.0}, "kind": "b"}
    assert config["items"][0]["tags"] is not config["items"][2]["tags"]
    # a branch the value does not take is not filled; an if that fails adds nothing
    config = fill_defaults({"pick": "none", "kind": "a"}, SMALL_SCHEMA)
    assert config == {"pick": "none", "kind": "a", "box": {}}


def test_fill_defaults_refuses_an_invalid_default():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "default": "one"}}}
    with pytest.raises(CbmaError, match=r"^config: n: 'one' is not of type 'integer' \(with "):
        fill_defaults({}, schema)


def test_null_sampling_is_for_the_monte_carlo_only():
    config = copy.deepcopy(MINIMAL)
    analysis = next(iter(config["analyses"].values()))
    analysis["correction"] = {"null_sampling": "grey_matter"}
    filled = load_config(copy.deepcopy(config), SCHEMA)
    assert next(iter(filled["analyses"].values()))["correction"]["null_sampling"] == \
        "grey_matter"
    analysis["correction"] = {"null_sampling": "white_matter"}
    with pytest.raises(CbmaError, match=r"correction\.null_sampling: 'white_matter' is not one"):
        load_config(copy.deepcopy(config), SCHEMA)
    analysis.update(estimator="mkda_chi2", correction={"null_sampling": "grey_matter"})
    with pytest.raises(CbmaError, match=r"correction\.null_sampling: only for the Monte Carlo "
                                        "FWE of ale, mkda and kda, not mkda_chi2"):
        load_config(copy.deepcopy(config), SCHEMA)
