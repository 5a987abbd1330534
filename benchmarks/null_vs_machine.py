"""One Monte Carlo iteration against the machine's limit for the same memory traffic.

Usage: python benchmarks/null_vs_machine.py [--iters 500]

Prints, for each bundled dataset: the work of an iteration (kernel-core voxels
summed in stage 1; voxels computed exactly in stage 2), the measured time per
iteration on one core, and a lower bound for that work from two measured
rates of this machine: the memory bandwidth of a large array copy (numpy),
and the rate of a bare compiled scatter-add of the same kernels into the
same volume (no bookkeeping, no second stage).
"""

import argparse
import time

import numba
import numpy as np
from bench_vs_nimare import MASK, SLEUTH

from cbma import coordinates, dataset, kernels, null, space


def copy_bandwidth(n_bytes=512 << 20, repeats=5):
    """GB/s of ``dst[:] = src`` on arrays far larger than the caches (read + write)."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        dst[:] = src
        best = min(best, time.perf_counter() - t)
    return 2 * n_bytes / best / 1e9


@numba.njit(cache=True)
def _scatter(centres, focus_kernel, ptr, off, val, vol):
    for it in range(centres.shape[0]):
        for f in range(centres.shape[1]):
            c = centres[it, f]
            k = focus_kernel[f]
            for j in range(ptr[k], ptr[k + 1]):
                vol[c + off[j]] += val[j]
    return vol


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=500)
    args = parser.parse_args(argv)
    mask = space.load_mask(MASK)
    bandwidth = copy_bandwidth()
    print(f"memory copy bandwidth: {bandwidth:.1f} GB/s (read + write)")
    for name, path in SLEUTH.items():
        exps = coordinates.experiments_table(dataset.read_dataset(path, "sleuth"))
        fwhms = kernels.experiment_fwhms(exps["sample_size"].to_numpy())
        model = null.RandomFociModel(exps["n_foci"].to_numpy(), fwhms, mask)
        threshold = 0.011  # about the example's cluster-forming ALE threshold
        core_min = null.CORE_SHARE * -np.log1p(-threshold) / len(exps)
        ptr, off, logv = model.core(core_min)
        focus_kernel = np.repeat(model.exp_kernel, np.diff(model.foci_ptr))
        updates = int(np.diff(ptr)[focus_kernel].sum())
        centres = model.draw(0, name, range(args.iters))
        vol = np.zeros(int(np.prod(model.padded_shape)), dtype=np.float32)
        _scatter(centres[:2], focus_kernel, ptr, off, logv.astype(np.float32), vol)
        t = time.perf_counter()
        _scatter(centres, focus_kernel, ptr, off, logv.astype(np.float32), vol)
        scatter_ms = (time.perf_counter() - t) / args.iters * 1e3
        null.run_iterations(model, 0, name, range(2), threshold)
        t = time.perf_counter()
        null.run_iterations(model, 0, name, range(args.iters), threshold)
        ours_ms = (time.perf_counter() - t) / args.iters * 1e3
        # bytes per stage-1 update: the voxel's float32 read and write, the
        # kernel's int64 offset and float32 value
        stream_ms = updates * 20 / (bandwidth * 1e9) * 1e3
        print(f"{name}: {len(exps)} experiments, {len(model.k_ptr) - 1} kernels, "
              f"{updates:,} core voxel updates per iteration")
        print(f"  cbma {ours_ms:.2f} ms/iteration | bare scatter-add of the same cores "
              f"{scatter_ms:.2f} ms | streaming bound {stream_ms:.2f} ms "
              f"({ours_ms / scatter_ms:.1f}x and {ours_ms / stream_ms:.1f}x of them)")


if __name__ == "__main__":
    main()
