"""Shared helpers: paths, the reference fixtures, and running the workflow in a temp folder."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# NiMARE 0.22.1's outputs on the Sleuth example, reduced (tests/fixtures/reference.py reads
# them, tests/fixtures/make_fixtures.py makes them), and NiMARE's public test data files
FIXTURES = REPO / "tests" / "fixtures"
DATA = REPO / "tests" / "data"
SLEUTH = DATA / "sleuth"
MASK = REPO / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"
KNOWLEDGE = REPO / "resources" / "data" / "semantic_knowledge_children.txt"
RELATED = REPO / "resources" / "data" / "semantic_relatedness_children.txt"


def smk(workdir, *args, cores=1, check=True, env=None):
    """Run snakemake on the repo's Snakefile in ``workdir`` with ``workdir/config.yaml``.

    ``env``: variables to set for the run, e.g. ``{"CBMA_JOB_SERVER": "off"}``.
    """
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(Path(workdir) / "config.yaml"),
           "--cores", str(cores), *args]
    res = subprocess.run(cmd, capture_output=True, text=True,
                         env={**os.environ, **env} if env else None)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return res


def planned_jobs(workdir, *args):
    """``{rule: count}`` of a dry run ({} when there is nothing to do)."""
    res = smk(workdir, "--dry-run", "--quiet", "rules", *args)
    text = res.stdout + res.stderr
    if "Nothing to be done" in text:
        return {}
    counts = {}
    for line in text.split("Job stats:", 1)[1].splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def small_config(**correction):
    """Both bundled datasets, few iterations: a fast end-to-end run."""
    corr = {"n_iters": 200, **correction}
    return {
        "seed": 7,
        "chunk_size": 100,
        "datasets": {
            # relative to the workflow folder: exercises the bundled-path fallback
            "knowledge": {"path": "resources/data/semantic_knowledge_children.txt",
                          "format": "sleuth"},
            "related": {"path": str(RELATED), "format": "sleuth"},
        },
        "analyses": {
            "knowledge": {"dataset": "knowledge", "correction": dict(corr)},
            "related": {"dataset": "related", "correction": dict(corr)},
        },
        "contrasts": {"k_minus_r": {"analyses": ["knowledge", "related"], "n_iters": 150}},
        "conjunctions": {"k_and_r": {"analyses": ["knowledge", "related"]}},
    }


def comparable(results):
    """Every output's bytes (sidecars without their timing block), benchmarks aside."""
    out = {}
    for path in sorted(results.rglob("*")):
        if path.is_dir() or "benchmarks" in path.parts:
            continue
        rel = str(path.relative_to(results))
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            data.pop("timing", None)
            out[rel] = json.dumps(data, sort_keys=True)
        else:
            out[rel] = path.read_bytes()
    return out


def mkda_maps(foci, mask, radius=10.0):
    """Binary MKDA MA maps (spheres of ``radius`` mm) of studies given as lists of foci (mm)."""
    import numpy as np

    from cbma import space, spheres

    ijk = space.mm_to_vox(np.vstack(foci), mask.affine)
    rows = np.repeat(np.arange(len(foci)), [len(f) for f in foci])
    return spheres.mkda_ma_maps(ijk, rows, len(foci), mask, r=radius)


def write_config(workdir, config):
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The README's default run (config.yaml: 5,000 iterations per analysis), done once."""
    workdir = tmp_path_factory.mktemp("default_run")
    write_config(workdir, yaml.safe_load((REPO / "config.yaml").read_text()))
    smk(workdir, cores=2)
    return workdir / "results"
