"""One Monte Carlo iteration against the machine's limit for the same memory traffic.

Usage: python benchmarks/null_vs_machine.py [--iters 500]

Prints, for each bundled Sleuth example and for the 500 n-back analyses of
the bundled NeuroStore studyset (one kernel, sample size 20): the work of an
iteration (the voxels of every focus' full kernel, and the kernel-core voxels
that stage 1 sums), the measured time per iteration on one core, and lower
bounds for that work from two measured rates of this machine: the memory
bandwidth of a large array copy (numpy), and the rate of a bare compiled
scatter-add of the same cores into the same volume (no bookkeeping, no
second stage). The cluster-forming threshold is each analysis' own (p < 0.001
of its histogram null).
"""

import argparse
import time

import numba
import numpy as np
from bench_end_to_end import NBACK, NBACK_SAMPLE_SIZE
from bench_vs_nimare import MASK, SLEUTH

from cbma import coordinates, dataset, estimators, null, space, stats


def analyses():
    """``{name: (foci table, ALE kernel options)}``: the Sleuth examples and the n-back set."""
    out = {name: (dataset.load_dataset(path, "sleuth")[0], {}) for name, path in SLEUTH.items()}
    table, weights, _ = dataset.load_dataset(NBACK, "studyset_parquet",
                                             labels=["comparison_task"])
    column = np.asarray(weights.matrix[:, list(weights.terms).index("n-back")].todense()).ravel()
    nback = table[table["id"].isin(np.asarray(weights.ids)[column > 0])]
    out["n-back"] = (nback, {"sample_size": NBACK_SAMPLE_SIZE})
    return out


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
    ale = estimators.get("ale")
    for name, (table, kernel) in analyses().items():
        exps = coordinates.experiments_table(table)
        _, (centres, pmf) = ale.fit(estimators.ma_maps("ale", table, mask, kernel)[0])
        threshold = stats.null_threshold(0.001, centres, pmf)
        model = ale.null_model(exps, mask, kernel)
        core_min = null.CORE_SHARE * -np.log1p(-threshold) / len(exps)
        ptr, off, logv = model.core(core_min)
        focus_kernel = np.repeat(model.exp_kernel, np.diff(model.foci_ptr))
        updates = int(np.diff(ptr)[focus_kernel].sum())
        full = int(np.diff(model.k_ptr)[focus_kernel].sum())
        centres = model.draw(0, name, range(args.iters))
        vol = np.zeros(int(np.prod(model.padded_shape)), dtype=np.float32)
        _scatter(centres[:2], focus_kernel, ptr, off, logv.astype(np.float32), vol)
        t = time.perf_counter()
        _scatter(centres, focus_kernel, ptr, off, logv.astype(np.float32), vol)
        scatter_ms = (time.perf_counter() - t) / args.iters * 1e3
        null.run_iterations(model, 0, name, range(2), threshold)
        n = args.iters if len(exps) < 100 else max(args.iters // 10, 20)
        t = time.perf_counter()
        null.run_iterations(model, 0, name, range(n), threshold)
        ours_ms = (time.perf_counter() - t) / n * 1e3
        # bytes per stage-1 update: the voxel's float32 read and write, the
        # kernel's int64 offset and float32 value
        stream_ms = updates * 20 / (bandwidth * 1e9) * 1e3
        full_ms = full * 20 / (bandwidth * 1e9) * 1e3
        print(f"{name}: {len(exps)} experiments, {model.n_foci_total:,} foci, cluster-forming "
              f"ALE > {threshold:.5f}; per iteration {full:,} voxels of full kernels, "
              f"{updates:,} core voxel updates ({updates / full:.1%})")
        print(f"  cbma {ours_ms:.2f} ms/iteration | bare scatter-add of the same cores "
              f"{scatter_ms:.2f} ms | streaming bound {stream_ms:.2f} ms "
              f"({ours_ms / scatter_ms:.1f}x and {ours_ms / stream_ms:.1f}x of them); "
              f"streaming the full kernels {full_ms:.2f} ms")


if __name__ == "__main__":
    main()
