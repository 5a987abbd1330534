"""Provenance: JSON sidecars for outputs, and a fingerprint of the library code.

Every output file ``x.nii.gz`` or ``x.tsv`` gets ``x.json`` beside it with
the rule that made it, its inputs with their sha256, the parameters, the
seed, the versions of cbma and its dependencies, and the timing. Everything
but the ``timing`` block is the same for the same config and inputs.
"""

import ast
import hashlib
import json
import os
import platform
import resource
import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEPENDENCIES = ["numpy", "scipy", "nibabel", "pandas", "numba", "snakemake"]


def sha256(path, chunk=1 << 20):
    """Hex sha256 of a file; of a folder, the sha256 of its files' names and sha256s."""
    path = Path(path)
    if path.is_dir():
        lines = "".join(f"{p.relative_to(path)}\t{sha256(p)}\n"
                        for p in sorted(path.rglob("*"))
                        if p.is_file() and not p.name.startswith("."))
        return hashlib.sha256(lines.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _local_imports(module):
    """Names of the cbma modules that ``module`` imports."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("cbma."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cbma."))
    return {m for m in found if (PACKAGE_DIR / f"{m}.py").is_file()}


def code_fingerprint(*modules):
    """A short hash of the source of cbma modules and everything they import from cbma.

    Rules put it in their ``params`` so that editing the library code a rule
    depends on re-runs that rule (Snakemake tracks scripts, not the modules
    they import).

    Parameters
    ----------
    *modules : str
        Module names inside the cbma package, e.g. ``"null"``.
    """
    todo, seen = list(modules), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(_local_imports(mod))
    digest = hashlib.sha256()
    for mod in sorted(seen):
        digest.update(mod.encode() + b"\0" + (PACKAGE_DIR / f"{mod}.py").read_bytes())
    return digest.hexdigest()[:16]


def versions():
    """Versions of Python, cbma and its main dependencies."""
    out = {"python": platform.python_version()}
    for name in ["cbma", *DEPENDENCIES]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


DATA_SUFFIXES = (".nii.gz", ".nii", ".tsv", ".npz", ".npy", ".png", ".html")


def sidecar_path(output):
    """``x.json`` for ``x.nii.gz``, ``x.tsv``, ``x.png``, ...: the sidecar of an output."""
    output = str(output)
    for suffix in DATA_SUFFIXES:
        if output.endswith(suffix):
            return output[: -len(suffix)] + ".json"
    raise ValueError(f"no sidecar naming rule for {output!r}")


def record(rule, inputs, params, started, seed=None, extra=None, outputs=None):
    """The provenance record of one job's outputs.

    Parameters
    ----------
    rule : str
        Snakemake rule name.
    inputs : list of str
        Input files (hashed with sha256).
    params : dict
        Parameters as the rule received them.
    started : float
        ``time.time()`` when the job began.
    seed : int, optional
    extra : dict, optional
        Anything else worth keeping (counts, thresholds).
    outputs : list of str, optional
        Every file the job made (sidecars aside), so that an output without a
        sidecar of its own (a JSON summary) can be traced to its job.
    """
    rec = {
        "rule": rule,
        "outputs": sorted(map(str, outputs or [])),
        "inputs": {str(p): {"sha256": sha256(p)} for p in inputs},
        "parameters": params,
        "seed": seed,
        "versions": versions(),
    }
    if extra:
        rec.update(extra)
    finished = time.time()
    # when, how long and where: the one block that differs between runs
    rec["timing"] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(finished - started, 3),
        "host": platform.node(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        # the job's peak memory so far (Linux reports kB)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return rec


def write_sidecars(outputs, rec):
    """Write ``rec`` as the JSON sidecar of each output."""
    for out in outputs:
        Path(sidecar_path(out)).write_text(json.dumps({"output": Path(out).name, **rec}, indent=2,
                                   sort_keys=False, default=jsonable) + "\n")


def jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_sidecar(path):
    """The provenance record of an output (its sidecar), or None if it has none."""
    try:
        side = Path(sidecar_path(path))
    except ValueError:
        return None
    if not side.is_file():
        return None
    return json.loads(side.read_text())


def git_version(folder):
    """``{"commit", "dirty"}`` of the git checkout holding ``folder``, or None.

    ``dirty`` is true when tracked files differ from the commit: the code that
    ran is then not exactly the commit's.
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def run_record(targets):
    """Run-level provenance: every file behind ``targets`` and the job that made it.

    Follows the sidecars from the targets back through the inputs each job
    read, down to the input data. Each job appears once, with its rule, the
    files it made and read (with their sha256), its parameters (among them the
    fingerprint of the library code it ran), seed and software versions. The
    timing block of the sidecars is left out, so that the record is the same
    bytes for the same config and inputs, wherever the jobs ran.

    Parameters
    ----------
    targets : list of str
        The run's final outputs (paths relative to the working directory).

    Returns
    -------
    dict
        ``{"files": {path: {"sha256", "job"}}, "jobs": [...]}``; ``job`` is an
        index into ``jobs``, or None for a file no job of the run made (input data).
    """
    jobs, job_of, files = [], {}, {}
    # a folder output is listed with its files (each with its own sidecar)
    targets = [str(f) for t in map(Path, targets) for f in (
        [t, *sorted(p for p in t.rglob("*") if p.is_file() and p.suffix != ".json"
                    and not p.name.startswith("."))]  # Snakemake's .snakemake_timestamp
        if t.is_dir() else [t])]
    todo, seen = sorted(targets), set()
    pending = []  # outputs without a sidecar of their own, resolved at the end
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        rec = read_sidecar(path)
        files[path] = {"sha256": sha256(path), "job": None}
        if rec is None:
            pending.append(path)
            continue
        job = {k: v for k, v in rec.items() if k not in ("output", "timing")}
        key = json.dumps(job, sort_keys=True, default=jsonable)
        if key not in job_of:
            job_of[key] = len(jobs)
            jobs.append(job)
            todo.extend(p for p in job["inputs"] if p not in seen)
        files[path]["job"] = job_of[key]
    made_by = {}
    for i, job in enumerate(jobs):
        for out in job["outputs"]:
            made_by[out] = i
            if out.endswith(DATA_SUFFIXES):  # a sidecar read as an input (the report's)
                made_by[sidecar_path(out)] = i
    for path in pending:
        files[path]["job"] = made_by.get(path)
    # the other files those jobs made (a gather's null distributions, say)
    for i, job in enumerate(jobs):
        for out in job["outputs"]:
            if out not in files and Path(out).is_file():
                files[out] = {"sha256": sha256(out), "job": i}
    # number the jobs in a fixed order: by their first output
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i]["outputs"] or [""])[0])
    renumber = {old: new for new, old in enumerate(order)}
    for entry in files.values():
        if entry["job"] is not None:
            entry["job"] = renumber[entry["job"]]
    for job in jobs:
        job["inputs"] = {p: v["sha256"] for p, v in sorted(job["inputs"].items())}
    return {"files": dict(sorted(files.items())), "jobs": [jobs[i] for i in order]}
