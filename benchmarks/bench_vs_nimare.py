"""cbma against NiMARE 0.22.1, side by side on this machine: wall time and peak memory.

Usage (from the repository root, with cbma installed)::

    python benchmarks/bench_vs_nimare.py                 # every work item, 5,000 iterations
    python benchmarks/bench_vs_nimare.py --items ale_knowledge subtraction --n-iters 1000
    python benchmarks/bench_vs_nimare.py --nimare-python /path/to/venv/bin/python

NiMARE runs in its own virtual environment: ``--nimare-python`` points to one
that has ``nimare==0.22.1``; without it the script creates one in
``~/.cache/cbma-benchmarks/nimare-0.22.1`` (one ``pip install``, once).

Work items (the same data, mask, kernels and iteration counts on both sides):

``ale_knowledge``, ``ale_related``
    ALE and Monte Carlo FWE (voxel and cluster level, cluster-forming
    p < 0.001) on each bundled Sleuth dataset (21 and 16 experiments).
``subtraction``
    ALE subtraction knowledge minus related, with as many permutations.
``ale_synthetic``
    The same ALE + FWE on a synthetic dataset of 200 experiments and 4,000
    foci (20 per experiment, 20 subjects each), drawn uniformly in the mask
    with a fixed seed.
``mkda_knowledge``
    MKDADensity (binary spheres of r = 10 mm, NiMARE's ``MKDAKernel``
    default; approximate Poisson-binomial null) and Monte Carlo FWE
    (voxel and cluster level, cluster-forming p < 0.001) on the knowledge
    dataset.
``mkda_chi2``
    MKDAChi2 of knowledge against related (r = 10 mm) and Benjamini-Hochberg
    FDR ("indep") of its maps; no Monte Carlo.

Each side of each item runs in a fresh process, with 2 workers where there
is a Monte Carlo null (NiMARE ``n_cores=2``; cbma two threads through the
compiled, GIL-free loops over two halves of the iterations, as ``snakemake
--cores 2`` runs two chunk jobs). Wall time excludes imports and file
reading (it includes the MA maps, the fit and the correction); peak RSS is
the process's (and, for NiMARE, its worker processes') high-water mark. Both
sides also report result numbers (95th percentiles of the Monte Carlo null,
significant voxels) so that a speed-up never hides a different answer.
"""

import argparse
import json
import sys
import textwrap
from pathlib import Path

from _nimare import nimare_python, run_json

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "resources" / "data"
MASK = REPO / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"
SLEUTH = {"knowledge": DATA / "semantic_knowledge_children.txt",
          "related": DATA / "semantic_relatedness_children.txt"}
ITEMS = ["ale_knowledge", "ale_related", "subtraction", "ale_synthetic", "mkda_knowledge",
         "mkda_chi2"]
MKDA_RADIUS = 10.0  # mm: NiMARE's MKDAKernel default

# ---------------------------------------------------------------- workers ----
# Each worker is a small program run in its own process; it prints one JSON line.

COMMON = """
import json, resource, sys, time
import numpy as np
import pandas as pd

def peak_mb():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024

def synthetic_table(mask_path, n_exp=200, per=20, n=20, seed=0):
    import nibabel as nib
    img = nib.load(mask_path)
    ijk = np.argwhere(np.asanyarray(img.dataobj) > 0)
    rng = np.random.default_rng(seed)
    pick = ijk[rng.integers(0, len(ijk), n_exp * per)]
    xyz = nib.affines.apply_affine(img.affine, pick)
    return pd.DataFrame({"id": np.repeat([f"exp{i:03d}" for i in range(n_exp)], per),
                         "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                         "sample_size": n})
"""

CBMA_WORKER = COMMON + """
from concurrent.futures import ThreadPoolExecutor
from cbma import (ale, chi2, compare, coordinates, correct, dataset, kernels, layout, mkda, null,
                  space, spheres, stats)

item, n_iters, mask_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sleuth, radius = json.loads(sys.argv[4]), float(sys.argv[5])
mask = space.load_mask(mask_path)

def table_of(name):
    if name == "synthetic":
        return synthetic_table(mask_path)
    return dataset.read_dataset(sleuth[name], "sleuth")

def ma_of(table):
    exps = coordinates.experiments_table(table)
    fwhms = kernels.experiment_fwhms(exps.sample_size.to_numpy())
    row = pd.Categorical(table["id"], categories=exps["id"]).codes
    return exps, fwhms, kernels.ale_ma_maps(kernels.foci_voxels(table, mask), row, fwhms, mask)

def mkda_ma_of(table):
    exps = coordinates.experiments_table(table)
    row = pd.Categorical(table["id"], categories=exps["id"]).codes
    return exps, spheres.mkda_ma_maps(kernels.foci_voxels(table, mask), row, len(exps), mask,
                                      r=radius)

def halves(n):
    return [range(0, n // 2), range(n // 2, n)]

def fwe_result(stat, threshold, parts):
    nulls = pd.DataFrame(np.vstack(parts), columns=null.NULL_COLUMNS[1:])
    p, clusters = correct.fwe_montecarlo(stat, mask, threshold, nulls["max_stat"],
                                         nulls["max_cluster_size"], nulls["max_cluster_mass"])
    return {"max_stat_95": float(np.percentile(nulls["max_stat"], 95)),
            "max_size_95": float(np.percentile(nulls["max_cluster_size"], 95)),
            "max_mass_95": float(np.percentile(nulls["max_cluster_mass"], 95)),
            "n_sig_voxel": int((p["level-voxel"] < 0.05).sum()),
            "n_sig_cluster_size": int((p["desc-size_level-cluster"] < 0.05).sum())}

def time_fwe(model, warm_threshold, fit):
    # wall time and results of a fit (MA maps, statistic, null) and its Monte Carlo FWE
    null.run_iterations(model, 0, "w", range(2), warm_threshold)  # warm the compiled code
    start = time.perf_counter()
    maps, hist = fit()
    thr = stats.null_threshold(0.001, *hist)
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda its: null.run_iterations(model, 0, item, its, thr),
                              halves(n_iters)))
    result = fwe_result(maps["stat"], thr, parts)
    wall = time.perf_counter() - start
    return wall, {**result, "cluster_forming_stat": float(thr)}

if item == "mkda_chi2":
    tables = [table_of("knowledge"), table_of("related")]
    chi2.chi2_fdr_maps(chi2.mkda_chi2(mkda_ma_of(tables[0])[1], mkda_ma_of(tables[1])[1]))
    start = time.perf_counter()
    maps = chi2.mkda_chi2(mkda_ma_of(tables[0])[1], mkda_ma_of(tables[1])[1])
    maps.update(chi2.chi2_fdr_maps(maps))
    wall = time.perf_counter() - start
    fdr = "p_desc-{}_level-voxel_corr-FDR_method-indep"
    result = {"n_fdr_association": int((maps[fdr.format("association")] < 0.05).sum()),
              "n_fdr_uniformity": int((maps[fdr.format("uniformity")] < 0.05).sum()),
              "max_chi2_association": float(maps["chi2_desc-association"].max())}
elif item == "mkda_knowledge":
    table = table_of("knowledge")
    exps, _ = mkda_ma_of(table)
    model = null.SphereFociModel(exps["n_foci"].to_numpy(),
                                 spheres.sphere_offsets(radius, mask.voxel_size), mask)
    wall, result = time_fwe(model, 4.0, lambda: mkda.mkda_density(mkda_ma_of(table)[1]))
elif item == "subtraction":
    tables = [table_of("knowledge"), table_of("related")]
    # warm the compiled code (numba caches it on disk after the first run)
    warm = compare.pool_groups(ma_of(tables[0])[2], ma_of(tables[1])[2])
    compare.permutation_chunk(warm, 0, "w", range(2))
    start = time.perf_counter()
    pooled = compare.pool_groups(ma_of(tables[0])[2], ma_of(tables[1])[2])
    with ThreadPoolExecutor(2) as pool:
        chunks = list(pool.map(lambda its: compare.permutation_chunk(pooled, 0, "bench", its),
                               halves(n_iters)))
    null_ = compare.merge_chunks(chunks, n_iters)
    maps = compare.subtraction_maps(compare.observed_difference(pooled), null_)
    wall = time.perf_counter() - start
    result = {"n_p_below_0.05": int((maps[f"p_{layout.CONTRAST}"] < 0.05).sum())}
else:
    table = table_of(item.removeprefix("ale_"))
    exps, fwhms, _ = ma_of(table)
    model = null.RandomFociModel(exps["n_foci"].to_numpy(), fwhms, mask)
    wall, result = time_fwe(model, 0.01, lambda: ale.ale(ma_of(table)[2]))
    del result["cluster_forming_stat"]
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_mb(), **result}))
"""

NIMARE_WORKER = COMMON + """
import logging, warnings
logging.disable(logging.WARNING)
warnings.filterwarnings("ignore")
import nibabel as nib
from nimare.correct import FWECorrector
from nimare.dataset import Dataset
from nimare.io import convert_sleuth_to_dataset
from nimare.correct import FDRCorrector
from nimare.meta.cbma.ale import ALE, ALESubtraction
from nimare.meta.cbma.mkda import MKDAChi2, MKDADensity
from nimare.meta.kernel import MKDAKernel

item, n_iters, mask_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sleuth, radius = json.loads(sys.argv[4]), float(sys.argv[5])
mask = nib.load(mask_path)

def dataset_of(name):
    if name == "synthetic":
        t = synthetic_table(mask_path)
        data = {}
        for exp, rows in t.groupby("id"):
            data[exp] = {"contrasts": {"1": {
                "coords": {"space": "MNI", "x": rows.x.tolist(), "y": rows.y.tolist(),
                           "z": rows.z.tolist()},
                "metadata": {"sample_sizes": [20]}}}}
        return Dataset(data, target="mni152_2mm", mask=mask)
    return convert_sleuth_to_dataset(sleuth[name], target="mni152_2mm")

def with_mask(ds):
    from nilearn.maskers import NiftiMasker
    ds.masker = NiftiMasker(mask).fit()
    return ds

def fwe_result(cres):
    nd = cres.estimator.null_distributions_
    key = "values_{}_corr-fwe_method-montecarlo"
    name = "logp_{}_corr-FWE_method-montecarlo"
    p_vox = 10 ** -cres.get_map(name.format("level-voxel"), return_type="array")
    p_size = 10 ** -cres.get_map(name.format("desc-size_level-cluster"), return_type="array")
    return {"max_stat_95": float(np.percentile(nd[key.format("level-voxel")], 95)),
            "max_size_95": float(np.percentile(nd[key.format("desc-size_level-cluster")], 95)),
            "max_mass_95": float(np.percentile(nd[key.format("desc-mass_level-cluster")], 95)),
            "n_sig_voxel": int((p_vox < 0.05).sum()),
            "n_sig_cluster_size": int((p_size < 0.05).sum())}

if item == "mkda_chi2":
    d1, d2 = with_mask(dataset_of("knowledge")), with_mask(dataset_of("related"))
    start = time.perf_counter()
    res = MKDAChi2(kernel_transformer=MKDAKernel(r=radius)).fit(d1, d2)
    cres = FDRCorrector(method="indep", alpha=0.05).transform(res)
    wall = time.perf_counter() - start
    fdr = "p_desc-{}_level-voxel_corr-FDR_method-indep"
    result = {"n_fdr_association": int((cres.get_map(fdr.format("association"),
                                                     return_type="array") < 0.05).sum()),
              "n_fdr_uniformity": int((cres.get_map(fdr.format("uniformity"),
                                                    return_type="array") < 0.05).sum()),
              "max_chi2_association": float(cres.get_map("chi2_desc-association",
                                                          return_type="array").max())}
elif item == "mkda_knowledge":
    ds = with_mask(dataset_of("knowledge"))
    start = time.perf_counter()
    res = MKDADensity(kernel_transformer=MKDAKernel(r=radius), null_method="approximate").fit(ds)
    corr = FWECorrector(method="montecarlo", voxel_thresh=0.001, n_iters=n_iters, n_cores=2)
    cres = corr.transform(res)
    wall = time.perf_counter() - start
    result = fwe_result(cres)
elif item == "subtraction":
    d1, d2 = with_mask(dataset_of("knowledge")), with_mask(dataset_of("related"))
    start = time.perf_counter()
    res = ALESubtraction(n_iters=n_iters, n_cores=2).fit(d1, d2)
    wall = time.perf_counter() - start
    p = res.get_map("p_desc-group1MinusGroup2", return_type="array")
    result = {"n_p_below_0.05": int((p < 0.05).sum())}
else:
    ds = with_mask(dataset_of(item.removeprefix("ale_")))
    start = time.perf_counter()
    res = ALE(null_method="approximate").fit(ds)
    corr = FWECorrector(method="montecarlo", voxel_thresh=0.001, n_iters=n_iters, n_cores=2)
    cres = corr.transform(res)
    wall = time.perf_counter() - start
    result = fwe_result(cres)
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_mb(), **result}))
"""


def run_worker(python, program, item, n_iters):
    return run_json([python, "-c", program, item, str(n_iters), str(MASK),
                     json.dumps({k: str(v) for k, v in SLEUTH.items()}), str(MKDA_RADIUS)],
                    item, cwd=REPO)


def _results(row):
    return {k: v for k, v in row.items() if k not in ("wall_s", "peak_rss_mb")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", nargs="+", choices=ITEMS, default=ITEMS)
    parser.add_argument("--n-iters", type=int, default=5000)
    parser.add_argument("--nimare-python", help="a Python that has nimare==0.22.1")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    theirs_python = nimare_python(args.nimare_python)
    rows = []
    for item in args.items:
        ours = run_worker(sys.executable, CBMA_WORKER, item, args.n_iters)
        theirs = run_worker(theirs_python, NIMARE_WORKER, item, args.n_iters)
        rows.append({"item": item, "n_iters": args.n_iters, "cbma": ours, "nimare": theirs,
                     "speedup": theirs["wall_s"] / ours["wall_s"]})
        print(textwrap.dedent(f"""\
            {item} ({args.n_iters} iterations): cbma {ours['wall_s']:.2f} s, \
{ours['peak_rss_mb']:.0f} MB | NiMARE {theirs['wall_s']:.2f} s, \
{theirs['peak_rss_mb']:.0f} MB | {rows[-1]['speedup']:.1f}x
              cbma   {json.dumps(_results(ours))}
              NiMARE {json.dumps(_results(theirs))}"""),
              flush=True)
    print("\n| work | iterations | cbma wall s | NiMARE wall s | speed-up | cbma peak MB "
          "| NiMARE peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['item']} | {r['n_iters']} | {r['cbma']['wall_s']:.2f} | "
              f"{r['nimare']['wall_s']:.2f} | {r['speedup']:.1f}x | "
              f"{r['cbma']['peak_rss_mb']:.0f} | {r['nimare']['peak_rss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
