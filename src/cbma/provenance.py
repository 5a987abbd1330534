"""Provenance: JSON sidecars for outputs, and a fingerprint of the library code.

Every output file ``x.nii.gz`` or ``x.tsv`` gets ``x.json`` beside it with
the rule that made it, its inputs with their sha256, the parameters, the
seed, the versions of cbma and its dependencies, and the timing. Everything
but the ``timing`` block is the same for the same config and inputs.
"""

import ast
import functools
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from . import job_server

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


#: Package data, by the cbma module that reads it (paths inside the package;
#: a folder stands for all its files). In :func:`code_fingerprint` the data
#: counts as part of that module's code: a rule whose script imports the
#: module, directly or not, re-runs when the data changes.
PACKAGE_DATA = {"cbma.report": ("templates",), "cbma.atlases": ("data/atlases",)}


@functools.cache  # within one search of imports (imported_modules clears it)
def _module_file(name, package_dir):
    """The file of module ``name`` (dotted, e.g. ``cbma.io``) in ``package_dir``, or None."""
    root, *parts = name.split(".")
    if root != package_dir.name:
        return None
    base = package_dir.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if parts and base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_docstring(node):
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


#: Where :func:`_parse` keeps its results between processes: keyed on the
#: sha256 of a module's text (so never stale), per Python (``ast.dump`` may
#: differ between versions). Snakemake computes every rule's fingerprint each
#: time it starts; parsing the library's modules took half a second of it.
PARSE_CACHE = PACKAGE_DIR / "__pycache__" / f"cbma-code.{sys.implementation.cache_tag}.json"
_PARSE_CACHE_SIZE = 2000  # entries kept; beyond, only those of the latest process


@functools.cache
def _disk_cache():
    """The entries of :data:`PARSE_CACHE` (empty if absent or unreadable), and those added."""
    try:
        entries = json.loads(PARSE_CACHE.read_text())
    except (OSError, ValueError):
        entries = {}
    return entries if isinstance(entries, dict) else {}, {}


def _save_disk_cache():
    """Write the entries this process added to :data:`PARSE_CACHE`, if it can."""
    known, added = _disk_cache()
    if not added:
        return
    entries = {**known, **added} if len(known) + len(added) <= _PARSE_CACHE_SIZE else added
    try:
        PARSE_CACHE.parent.mkdir(exist_ok=True)
        tmp = PARSE_CACHE.with_name(f"{PARSE_CACHE.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, PARSE_CACHE)  # whole, whoever else writes it
    except OSError:
        return  # a package folder one cannot write to: parse again next time
    known.update(added)
    added.clear()


@functools.cache
def _parse(source, package):
    """What a module's source imports, and a hash of its code with the docstrings stripped.

    Cached on the source text, in this process and on disk (:data:`PARSE_CACHE`),
    so that a workflow computing the fingerprints of many rules parses each
    module once, and only once per edit.

    Parameters
    ----------
    source : str
        The module's text.
    package : str
        The package relative imports are resolved against (``"cbma"`` for
        ``cbma.io``; ``""`` for a script, which has none).

    Returns
    -------
    imported : frozenset of str
        Every dotted name the module imports, absolute, with the names taken
        from a module (``from .io import read_tsv`` gives ``cbma.io`` and
        ``cbma.io.read_tsv``); imports inside functions count too.
    code : str
        The sha256 of the ``ast.dump`` of the module, docstrings and other
        bare strings removed.
    """
    key = hashlib.sha256(f"{package}\0{source}".encode()).hexdigest()
    known, added = _disk_cache()
    entry = known.get(key) or added.get(key)
    if isinstance(entry, list) and len(entry) == 2:
        return frozenset(entry[0]), entry[1]
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 >= len(parts):
                    continue  # above the top-level package: fails on import anyway
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            imported.add(base)
            imported.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        # a string standing alone as a statement (a docstring) does nothing: drop it
        for field, value in ast.iter_fields(node):
            if isinstance(value, list) and any(map(_is_docstring, value)):
                setattr(node, field, [s for s in value if not _is_docstring(s)])
    code = hashlib.sha256(ast.dump(tree).encode()).hexdigest()
    added[key] = [sorted(imported), code]
    return frozenset(imported), code


def _read(name, package_dir):
    """``(imported cbma modules, code)`` of module ``name``, or of a script (a path)."""
    if isinstance(name, Path):
        path, package = name, ""
    else:
        path = _module_file(name, package_dir)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported, code = _parse(path.read_text(), package)
    return _package_modules(imported, package_dir), code


def _package_modules(names, package_dir):
    """The modules of the package among ``names`` and their parents.

    Importing ``cbma.io`` runs ``cbma/__init__.py`` first: every prefix of a
    dotted name that is a module of the package counts.
    """
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                     if _module_file(m, package_dir) is not None)
    return found


def imported_modules(*modules, script=None, package_dir=None):
    """The cbma modules that run when ``modules`` (or ``script``) are imported.

    Follows the imports from one cbma module to another, transitively,
    including the imports inside functions and the package ``__init__``
    modules that Python runs on the way.

    Parameters
    ----------
    *modules : str
        Module names, dotted (``"cbma.null"``) or inside the package
        (``"null"``).
    script : str or Path, optional
        A Python file (a rule script) whose cbma imports start the search.
    package_dir : str or Path, optional
        The package folder (default: that of this cbma).

    Returns
    -------
    set of str
        Dotted module names, e.g. ``{"cbma", "cbma.io", "cbma.errors", ...}``
        (with ``script``, the script itself is not one of them).
    """
    package_dir = Path(package_dir or PACKAGE_DIR)
    _module_file.cache_clear()  # files may have come or gone since the last search
    root = package_dir.name
    todo = [m if m == root or m.startswith(f"{root}.") else f"{root}.{m}" for m in modules]
    for mod in todo:
        if _module_file(mod, package_dir) is None:
            raise ValueError(f"no module {mod} in {package_dir}")
    if script is not None:
        todo.extend(_read(Path(script), package_dir)[0])
    seen = set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(_read(mod, package_dir)[0])
    return seen


def code_fingerprint(*modules, script=None, package_dir=None):
    """A short hash of the code of cbma modules and of every cbma module they import.

    Rules put it in their ``params`` so that editing the library code a rule
    runs re-runs that rule: Snakemake tracks the rule's script (by its
    modification time) but not the modules the script imports.

    Parameters
    ----------
    *modules : str
        Module names, dotted (``"cbma.null"``) or inside the package
        (``"null"``).
    script : str or Path, optional
        A rule script: the modules are those it imports, and what they import.
    package_dir : str or Path, optional
        The package folder (default: that of this cbma).

    Returns
    -------
    str
        16 hex digits.

    See Also
    --------
    script_fingerprint : the fingerprint of a rule script's cbma code.
    imported_modules : the modules hashed.

    Notes
    -----
    Each module counts by its code, not its text: the ``ast.dump`` of the
    parsed module (which leaves out line numbers) with the docstrings, and any
    other string standing alone as a statement, removed. Editing a comment, a
    docstring, blank lines or the layout changes nothing; any other edit
    changes the hash. The dump of the same code may differ between Python
    versions: a new Python can re-run the jobs once.

    The package data a module reads (:data:`PACKAGE_DATA`: the HTML report's
    template for ``cbma.report``) counts as part of that module, by its bytes.
    """
    package_dir = Path(package_dir or PACKAGE_DIR)
    mods = imported_modules(*modules, script=script, package_dir=package_dir)
    missing = sorted(m for m in PACKAGE_DATA if _module_file(m, package_dir) is None)
    if missing:  # a module renamed or moved: say so rather than drop its data
        raise ValueError(f"PACKAGE_DATA names modules that do not exist: {missing}")
    digest = hashlib.sha256()
    for mod in sorted(mods):
        digest.update(f"{mod}\0{_read(mod, package_dir)[1]}\0".encode())
        for data in PACKAGE_DATA.get(mod, ()):
            # a folder's hash is that of its files' names and contents
            digest.update(f"{data}\0{sha256(package_dir / data)}\0".encode())
    _save_disk_cache()
    return digest.hexdigest()[:16]


def script_fingerprint(script, package_dir=None):
    """The :func:`code_fingerprint` of the cbma code a rule script imports.

    Parameters
    ----------
    script : str or Path
        The script (``scripts/<rule>.py``); its ``import cbma...`` and
        ``from cbma... import ...`` statements give the modules.
    package_dir : str or Path, optional
        The package folder (default: that of this cbma).

    Returns
    -------
    str
        16 hex digits.
    """
    return code_fingerprint(script=script, package_dir=package_dir)


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
        # run in a fork of the job server of a local run (cbma.job_server)
        "job_server": job_server.in_job(),
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
