"""Provenance: JSON sidecars for outputs, and a fingerprint of the library code.

Every output file ``x.nii.gz`` or ``x.tsv`` gets ``x.json`` beside it with
the rule that made it, its inputs with their sha256, the parameters, the
seed, the versions of cbma and its dependencies, and the timing. Everything
but the ``timing`` block is the same for the same config and inputs.
"""

import ast
import hashlib
import json
import platform
import time
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEPENDENCIES = ["numpy", "scipy", "nibabel", "pandas", "numba", "snakemake"]


def sha256(path, chunk=1 << 20):
    """Hex sha256 of a file."""
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


DATA_SUFFIXES = (".nii.gz", ".nii", ".tsv", ".npz", ".npy")


def sidecar_path(output):
    """``x.json`` for ``x.nii.gz``, ``x.tsv``, ``x.npz``: the sidecar of an output."""
    output = str(output)
    for suffix in DATA_SUFFIXES:
        if output.endswith(suffix):
            return output[: -len(suffix)] + ".json"
    raise ValueError(f"no sidecar naming rule for {output!r}")


def record(rule, inputs, params, started, seed=None, extra=None):
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
    """
    rec = {
        "rule": rule,
        "inputs": {str(p): {"sha256": sha256(p)} for p in inputs},
        "parameters": params,
        "seed": seed,
        "versions": versions(),
    }
    if extra:
        rec.update(extra)
    finished = time.time()
    rec["timing"] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(finished - started, 3),
    }
    return rec


def write_sidecars(outputs, rec):
    """Write ``rec`` as the JSON sidecar of each output."""
    for out in outputs:
        Path(sidecar_path(out)).write_text(json.dumps({"output": Path(out).name, **rec}, indent=2,
                                   sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
