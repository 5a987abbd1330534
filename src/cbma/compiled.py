"""The library's compiled loops, loaded from numba's disk cache before their first call.

numba keeps the machine code of each ``cache=True`` function on disk, but a
process reads it only when the function is first called, and the first such
read in a process also sets numba's compiler up: 0.2-0.5 s at the start of
every job that calls one (the ALE statistic in estimate, the Monte Carlo
loops in each chunk, the subtraction's null...). The job server
(:mod:`cbma.job_server`) calls :func:`load_chain` and :func:`load_rest`
once, so that the jobs it forks find them loaded.

Only what the cache already holds for this machine and the current source
is loaded; nothing is compiled here (on a fresh install the jobs compile
what they call, side by side, and later runs load it). This reads numba's
cache through private attributes: where they differ (another numba
version), nothing is loaded, and the jobs load what they call as before.
"""

import importlib
import os

#: Modules with compiled functions that the jobs up to the Monte Carlo call.
CHAIN_MODULES = ("cbma.ale", "cbma.spheres", "cbma.mkda", "cbma.null")
#: Those of the later jobs (subtraction, decoding, the text model's evaluation).
LATER_MODULES = ("cbma.compare", "cbma.decode", "cbma.evaluate")


def load_cached(module_names):
    """Load the cached machine code of the compiled functions of some modules.

    Parameters
    ----------
    module_names : iterable of str
        Modules whose own ``numba.njit(cache=True)`` functions to load (imported
        if need be). Functions compiled with ``parallel=True`` are left to the
        jobs: loading one sets up numba's thread pool, which a process forked
        from this one cannot use (the job server forks every job).

    Returns
    -------
    int
        The number of compiled versions (one per argument types) loaded.
    """
    from numba.core.dispatcher import Dispatcher

    loaded = 0
    for name in module_names:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (isinstance(value, Dispatcher) and value.py_func.__module__ == name
                    and not value.targetoptions.get("parallel")):
                loaded += _load(value)
    return loaded


def _load(dispatcher):
    """Load every version of one function that the cache holds for this machine."""
    try:
        cache_file = dispatcher._cache._cache_file
        machine = dispatcher.targetctx.codegen().magic_tuple()
        index = cache_file._load_index()  # empty if the source changed since it was cached
        versions = [key[0] for key, data in index.items() if key[1] == machine
                    and os.path.exists(os.path.join(cache_file._cache_path, data))]
    except Exception:  # noqa: BLE001 - numba's internals differ: load nothing
        return 0
    for signature in versions:
        dispatcher.compile(signature)  # found in the cache: read, not compiled
    return len(versions)


def load_chain():
    """Load the compiled functions of :data:`CHAIN_MODULES` (see the module's description)."""
    return load_cached(CHAIN_MODULES)


def load_rest():
    """Load the compiled functions of :data:`LATER_MODULES`."""
    return load_cached(LATER_MODULES)
