"""Compiled loops loaded from numba's disk cache ahead of their first call (cbma.compiled)."""

import json
import subprocess
import sys
import textwrap

MODULE = """
import numba


@numba.njit(cache=True)
def twice(x):
    return 2 * x


@numba.njit(cache=True, parallel=True)
def total(x):
    s = 0.0
    for i in numba.prange(x.size):
        s += x[i]
    return s


def plain(x):
    return x
"""

# In a process of its own: load what the cache holds, then call the function
# with the argument types given, and say what numba did.
PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import probe_module
    from cbma import compiled
    loaded = compiled.load_cached(["probe_module"])
    before = len(probe_module.twice.overloads)
    parallel = len(probe_module.total.overloads)
    for arg in json.loads(sys.argv[1]):
        probe_module.twice(arg)
        probe_module.total(np.ones(3))
    stats = probe_module.twice.stats
    print(json.dumps({"loaded": loaded, "before": before, "parallel": parallel,
                      "misses": sum(stats.cache_misses.values()),
                      "hits": sum(stats.cache_hits.values())}))
""")


def _probe(tmp_path, args):
    env = {"PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], env=env,
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    return json.loads(out)


def test_cached_versions_are_loaded_before_the_first_call_and_nothing_is_compiled(tmp_path):
    (tmp_path / "probe_module.py").write_text(MODULE)
    # a cold cache: nothing to load, and nothing compiled by loading
    assert _probe(tmp_path, []) == {"loaded": 0, "before": 0, "parallel": 0, "misses": 0,
                                    "hits": 0}
    # the first calls compile two versions (int and float) and cache them
    first = _probe(tmp_path, [1, 2.5])
    assert first["loaded"] == 0 and first["misses"] == 2
    # a later process has both before any call, read from the cache, not compiled;
    # the parallel function is left to the calls (a forked process cannot use the
    # thread pool that loading it sets up)
    assert _probe(tmp_path, [3, 4.5]) == {"loaded": 2, "before": 2, "parallel": 0, "misses": 0,
                                          "hits": 2}
    # an edited function: its cache no longer applies, nothing is loaded
    (tmp_path / "probe_module.py").write_text(MODULE.replace("2 * x", "3 * x") + "\n#\n")
    assert _probe(tmp_path, [])["loaded"] == 0


def test_the_job_server_loads_the_compiled_functions_of_every_module_that_has_them():
    """Every cbma module with a compiled function is in one of the lists the server loads."""
    from pathlib import Path

    from cbma import compiled

    src = Path(compiled.__file__).parent
    with_njit = {f"cbma.{p.stem}" for p in src.glob("*.py")
                 if p.stem != "compiled" and "numba.njit(" in p.read_text()}
    assert with_njit == set(compiled.CHAIN_MODULES) | set(compiled.LATER_MODULES)
