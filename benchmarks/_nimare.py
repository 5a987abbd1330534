"""Shared by the benchmarks that run NiMARE 0.22.1 next to cbma.

NiMARE runs in its own virtual environment (never cbma's): either one given
on the command line, or one created once in
``~/.cache/cbma-benchmarks/nimare-0.22.1`` with ``pip``. Every piece of work
runs in a fresh process that prints its results as one JSON line (the last
line of its standard output).
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

NIMARE_VERSION = "0.22.1"
CACHE = Path.home() / ".cache" / "cbma-benchmarks"


def nimare_python(given=None):
    """A Python with NiMARE 0.22.1: the one given, or a venv made once in the cache."""
    if given:
        return str(given)
    env = CACHE / f"nimare-{NIMARE_VERSION}"
    python = env / "bin" / "python"
    if not python.exists():
        print(f"creating {env} with nimare=={NIMARE_VERSION} (once)", file=sys.stderr)
        venv.create(env, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        f"nimare=={NIMARE_VERSION}", "pyarrow"], check=True)  # parquet studysets
    return str(python)


def run_json(cmd, what, cwd=None, env=None, echo=False):
    """Run ``cmd`` in a fresh process and return the JSON object of its last output line.

    ``env`` entries are added to this process's environment (single-threaded
    BLAS by default: ``OMP_NUM_THREADS=1``, as both sides' workers are counted
    explicitly). With ``echo`` the worker's standard error (its progress
    lines) goes straight to ours.
    """
    res = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                         stderr=None if echo else subprocess.PIPE, text=True, cwd=cwd,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if res.returncode != 0:
        tail = "" if echo else f":\n{res.stderr[-3000:]}"
        raise SystemExit(f"{what} failed (exit {res.returncode}) under {cmd[0]}{tail}")
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"{what} printed no result")
    return json.loads(lines[-1])
