"""How Monte Carlo iterations and permutations are split into jobs.

Iteration ``i`` of an analysis always draws from the same random stream
(:func:`cbma.null.iteration_rng`), so how the iterations are split changes
nothing but the number of jobs. Chunks are fixed-size blocks of
``chunk_size`` iterations: chunk ``c`` holds iterations ``c * chunk_size``
to ``(c + 1) * chunk_size - 1``.
"""

import math

import numpy as np

from .errors import CbmaError


def n_chunks(n_iters, chunk_size):
    """Number of chunks that hold ``n_iters`` iterations."""
    if n_iters < 1 or chunk_size < 1:
        raise CbmaError(f"need at least one iteration and a chunk size of at least one, got "
                        f"{n_iters} and {chunk_size}")
    return math.ceil(n_iters / chunk_size)


def chunk_iterations(chunk, chunk_size, n_iters=None):
    """The iteration numbers of chunk ``chunk``.

    Parameters
    ----------
    chunk : int
        0-based chunk number.
    chunk_size : int
        Iterations per chunk.
    n_iters : int, optional
        The run's number of iterations: the last chunk is cut there. Without
        it every chunk is whole, so a chunk's content does not depend on
        ``n_iters`` and raising it reuses the chunks already run (the FWE
        gather drops the surplus). The subtraction's per-voxel counts cannot
        be cut afterwards, so its chunks are cut.

    Returns
    -------
    ndarray of int64
    """
    start = chunk * chunk_size
    if chunk < 0 or chunk_size < 1 or (n_iters is not None and start >= n_iters):
        raise CbmaError(f"chunk {chunk} of size {chunk_size} is outside "
                        f"{n_iters if n_iters is not None else 'the'} iterations")
    stop = start + chunk_size if n_iters is None else min(start + chunk_size, n_iters)
    return np.arange(start, stop, dtype=np.int64)
