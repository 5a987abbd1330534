"""Every ```yaml block of README.md and docs/*.md is a config the workflow accepts.

Each block is checked with a dry run (``snakemake -n``) in a temp folder.
The convention the docs follow:

- A block whose first line is ``# example: not run`` is illustrative and
  skipped.
- A block with a top-level ``datasets:`` key is a complete config, run as it
  is.
- Any other block is a fragment (it may say so: ``# example: fragment``): its
  sections are merged into the default ``config.yaml`` (an entry of the
  fragment replaces the default's entry of the same name; other keys are
  replaced whole), and the result is run.
- Paths under ``resources/`` resolve from the workflow folder, as in a real
  run; ``results/...`` paths are outputs of the run. Any other relative path
  that is not in the repository names a user's file: the test puts a bundled
  stand-in there (``*.nii``/``*.nii.gz``: the 2 mm brain mask; a
  ``database.txt`` or ``features.txt``: the synthetic Neurosynth database's;
  a dataset file or folder of another format: a bundled one of that format), so
  ``path: data/database.txt`` works as written.
"""

import copy
import lzma
import re
from pathlib import Path

import pytest
import yaml
from conftest import KNOWLEDGE, MASK, REPO, smk, write_config

NOT_RUN = "# example: not run"
SYNTHETIC = REPO / "resources" / "data" / "synthetic_neurosynth"
STAND_INS = {
    "nifti": MASK,
    "database": SYNTHETIC / "database.txt.gz",
    "features": SYNTHETIC / "features.txt.gz",
    "sleuth": KNOWLEDGE,
    "nimare_json": REPO / "tests" / "data" / "nimare_json" / "nidm_pain_dset.json",
    "nimads": REPO / "tests" / "data" / "nimads" / "nidm_pain_studyset.json.xz",
    "studyset_parquet": REPO / "tests" / "data" / "studyset" / "nback_flanker_subset",
    "table": REPO / "tests" / "data" / "table" / "knowledge_foci.tsv",
}


def yaml_blocks(path):
    """``(line of the opening fence, text)`` of each ```yaml block of a Markdown file."""
    blocks, lines, start = [], path.read_text(encoding="utf-8").splitlines(), None
    for number, line in enumerate(lines, 1):
        fence = line.strip()
        if start is None and re.fullmatch(r"```\s*ya?ml\s*", fence):
            start, body = number, []
        elif start is not None and fence == "```":
            blocks.append((start, "\n".join(body) + "\n"))
            start = None
        elif start is not None:
            body.append(line)
    return blocks


def documented_blocks():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [pytest.param(path, line, text, id=f"{path.relative_to(REPO)}:{line}")
            for path in files if path.is_file() for line, text in yaml_blocks(path)]


def merged(fragment):
    """The default config.yaml with a fragment's sections merged in."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **copy.deepcopy(value)}
        else:
            config[key] = copy.deepcopy(value)
    return config


def _is_user_file(value):
    """A relative path the repository does not have (not a run's output)."""
    p = Path(value)
    return not (p.is_absolute() or value.startswith("results/") or (REPO / p).exists())


def _stand_in(workdir, value, kind):
    target = Path(workdir) / value
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        source = STAND_INS[kind]
        if source.suffix == ".xz":  # bundled compressed: the user's file is plain
            target.write_bytes(lzma.decompress(source.read_bytes()))
        else:
            target.symlink_to(source)


def place_stand_ins(workdir, config):
    """A bundled file at each user path the config names (see the module docstring)."""
    for dataset in (config.get("datasets") or {}).values():
        paths = dataset.get("path", [])
        for value in [paths] if isinstance(paths, str) else paths:
            if _is_user_file(value):
                kind = dataset.get("format", "sleuth")
                if kind == "neurosynth":
                    kind = "database"
                elif kind == "neurosynth_v7":
                    pytest.skip(f"no bundled stand-in for a neurosynth_v7 folder ({value})")
                _stand_in(workdir, value, kind)
        if _is_user_file(dataset.get("features", "results/")):
            _stand_in(workdir, dataset["features"], "features")

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and re.search(r"\.nii(\.gz)?$", node) and _is_user_file(node):
            _stand_in(workdir, node, "nifti")

    walk(config)


@pytest.mark.parametrize("path, line, text", documented_blocks())
def test_documented_config_passes_a_dry_run(tmp_path, path, line, text):
    if text.lstrip().startswith(NOT_RUN):
        pytest.skip("marked '# example: not run'")
    block = yaml.safe_load(text)
    assert isinstance(block, dict), f"{path.name}:{line}: not a YAML mapping"
    config = block if "datasets" in block else merged(block)
    place_stand_ins(tmp_path, config)
    write_config(tmp_path, config)
    res = smk(tmp_path, "--dry-run", "--quiet", "rules", check=False)
    errors = [s for s in (res.stdout + res.stderr).splitlines() if s.startswith("cbma error")]
    assert res.returncode == 0, (
        f"the yaml block at {path.name}:{line} fails a dry run: "
        + (errors[0] if errors else (res.stdout + res.stderr)[-2000:]))


def test_block_extraction_and_merging(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n```yaml\na: 1\n```\n\n```bash\nls\n```\n```yml\n# example: not run\n"
                   "b: [1]\n```\n")
    assert yaml_blocks(doc) == [(2, "a: 1\n"), (9, "# example: not run\nb: [1]\n")]
    config = merged({"analyses": {"x": {"dataset": "synthetic"}}, "seed": 3})
    assert "knowledge" in config["analyses"] and config["analyses"]["x"]
    assert config["seed"] == 3
