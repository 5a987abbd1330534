"""Config checks: keys given twice, names shared by two sections (one line each)."""

import copy
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, smk, write_config

from cbma.config import check_config, load_yaml_strict
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
        check_config(config, SCHEMA)
    assert str(err.value) == message


def test_coactivation_with_an_unknown_dataset_is_named_as_such():
    config = _clash("coactivation", "amygdala", {**SEED, "dataset": "nope"})
    with pytest.raises(CbmaError, match=r"^config: coactivation\.amygdala\.dataset: no dataset"):
        check_config(config, SCHEMA)


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
    from snakemake.utils import validate

    from cbma.config import normalise_config

    config = copy.deepcopy(MINIMAL)
    config["analyses"] = {"density": {"dataset": "k", "estimator": "mkda"}}
    config["coactivation"] = {"seeded": SEED}
    check_config(config, SCHEMA)
    validate(config, schema=SCHEMA)
    normalise_config(config)
    assert config["analyses"]["density"]["correction"]["method"] == "montecarlo"
    assert config["coactivation"]["seeded"]["correction"]["method"] == "fdr"
