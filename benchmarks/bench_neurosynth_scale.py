"""Neurosynth-scale term-based meta-analysis: wall time and peak memory of each stage.

Usage (from the repository root, with cbma installed)::

    python benchmarks/bench_neurosynth_scale.py                    # full size, ~6 min
    python benchmarks/bench_neurosynth_scale.py --out-dir /tmp/ns  # keep the files
    python benchmarks/bench_neurosynth_scale.py --studies 2000 --foci 70000 --terms 500
    python benchmarks/bench_neurosynth_scale.py --out-dir /tmp/ns --stages nimare  # again

Stages, each in its own fresh process, each reading what the one before wrote
(as the pipeline's rules do):

``generate``
    :func:`cbma.synthetic.make_database`: a classic Neurosynth database
    (``database.txt`` + ``features.txt``) of 14,000 studies, 500,000 foci and
    3,000 terms, with eight planted topics (``ground_truth.json``).
``ingest``
    :func:`cbma.dataset.load_dataset` with the features, then the coordinates
    table (TSV), the term weights (``terms.npz``) and the study table written
    out.
``ma_r6``, ``ma_r10``
    Every study's MKDA modeled-activation map (binary spheres of 6 mm,
    Neurosynth's radius, and of 10 mm, NiMARE's default) from the ingested
    table, saved as a sparse ``.npz``.
``term_maps``
    The association-test z map of all terms (studies with the term against
    all others, weight >= 0.001) from the r = 6 mm MA maps, written to a
    memory-mapped ``.npy`` (:func:`cbma.decode.term_association_maps`).
``decode``
    Eight images, a Gaussian blob (sigma = the planted spread) at each
    topic's centre, decoded against every term map by Pearson r; the check
    is that each blob's top term is one of its topic's terms.

Wall time is measured inside the stage's process, after its imports (so it
includes reading the inputs and writing the outputs); ``process s`` is the
whole process, interpreter start and imports included. Peak memory is the
process's ``ru_maxrss``; every peak must stay below 4 GiB. Compiled code is
warmed first by the same chain on a tiny database (numba caches it on disk),
so no stage pays for compiling (``--no-warm`` to skip).

NiMARE reference (``nimare`` stages; ``--no-nimare`` to skip): NiMARE 0.22.1
gets per-term maps from one ``MKDAChi2`` per term (``CorrelationDecoder``).
On the same ingested coordinates (MNI mm, same mask) it builds a
``Dataset`` (timed on its own), then fits
``MKDAChi2(kernel_transformer=MKDAKernel(r=6))`` of a few terms (studies
with the term against all others, sliced as ``CorrelationDecoder`` slices
them) and the time per term is extrapolated to the whole vocabulary. Since
0.22 ``CorrelationDecoder`` computes the MA maps of the database once and
reuses them for every term; that way is timed too (the decoder itself, with
its per-term calls timed), and all extrapolations are set against cbma's
MA maps + all term maps. NiMARE 0.22.1 converts a ``Dataset`` to a
``Studyset`` in every fit, which dominates a fit at this scale, so the
per-term fits run on both; the decoder runs on the Studyset (its fastest
way). The decoder holds every term's map in memory, so its peak for the
whole vocabulary is projected from the measured one. NiMARE runs in its own virtual environment (see
``benchmarks/_nimare.py``), single-threaded (``CorrelationDecoder`` could
run two terms at once on two cores: the table also gives half the time).
Its z maps are compared with cbma's maps of the same terms.

Results: a table on standard output and ``benchmarks/results-neurosynth-scale.json``
(at the default size; other sizes write ``results.json`` in the work folder
unless ``--json`` says where). ``--stages`` reruns some stages on a kept work
folder; their results replace those of the earlier run in the JSON file.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MASK = REPO / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"
DEFAULT_SIZE = {"studies": 14000, "foci": 500_000, "terms": 3000}
LIMIT_MB = 4096.0  # every stage's peak RSS must stay below 4 GiB
FREQUENCY_THRESHOLD = 0.001  # Neurosynth's and NiMARE's: a study has a term at >= this
CBMA_STAGES = ["generate", "ingest", "ma_r6", "ma_r10", "term_maps", "decode"]
NIMARE_STAGES = ["nimare_dataset", "nimare_fit", "nimare_fit_studyset", "nimare_decoder"]
STAGE_GROUPS = {"nimare": NIMARE_STAGES, "cbma": CBMA_STAGES}
WARM_SIZE = {"studies": 300, "foci": 6000, "terms": 60}


# ------------------------------------------------------------------ files ----

class Work:
    """Paths of the work folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.db = self.root / "database"
        self.coordinates = self.root / "coordinates.tsv"
        self.studies = self.root / "studies.tsv"
        self.terms = self.root / "terms.npz"
        self.term_maps = self.root / "term_maps_r6.npy"
        self.term_table = self.root / "term_table_r6.tsv"
        self.decoded = self.root / "decoded_r6.tsv"
        self.nimare = self.root / "nimare"
        self.nimare_terms = self.nimare / "terms.json"
        self.nimare_dataset = self.nimare / "dataset.pkl"
        self.nimare_studyset = self.nimare / "studyset.pkl"

    def ma(self, r):
        return self.root / f"ma_r{r:g}.npz"


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mb(path):
    return Path(path).stat().st_size / 2**20


# ------------------------------------------------------- cbma stages ----
# Each runs in its own process (``--stage NAME``) and returns a dict of results;
# ``wall_s`` is set by the caller from ``start`` (after the imports).

def stage_generate(args, work):
    from cbma import synthetic

    start = time.perf_counter()
    synthetic.make_database(work.db, n_studies=args.studies, n_foci=args.foci,
                            n_terms=args.terms, seed=0)
    return start, {"database_txt_mb": _mb(work.db / "database.txt"),
                   "features_txt_mb": _mb(work.db / "features.txt")}


def stage_ingest(args, work):
    from cbma import dataset, io, term_weights

    start = time.perf_counter()
    table, weights, studies = dataset.load_dataset(work.db / "database.txt", "neurosynth",
                                                   features=work.db / "features.txt")
    read = time.perf_counter()
    io.write_tsv(table, work.coordinates)
    term_weights.save_term_weights(weights, work.terms)
    io.write_tsv(studies, work.studies)
    return start, {"read_s": read - start, "write_s": time.perf_counter() - read,
                   "n_foci": len(table), "n_studies": int(weights.matrix.shape[0]),
                   "n_terms": int(weights.matrix.shape[1]),
                   "n_weights": int(weights.matrix.nnz),
                   "coordinates_tsv_mb": _mb(work.coordinates), "terms_npz_mb": _mb(work.terms)}


def _stage_ma(work, r):
    import pandas as pd

    from cbma import coordinates, io, kernels, space, spheres

    mask = space.load_mask(MASK)
    start = time.perf_counter()
    table = io.read_tsv(work.coordinates)
    read = time.perf_counter()
    exps = coordinates.experiments_table(table)
    ids = exps["id"].to_numpy(dtype=str)
    row = pd.Categorical(table["id"].astype(str), categories=ids).codes
    ma = spheres.mkda_ma_maps(kernels.foci_voxels(table, mask), row, len(ids), mask, r=r)
    built = time.perf_counter()
    io.save_sparse(work.ma(r), ma, ids=ids)
    nbytes = ma.data.nbytes + ma.indices.nbytes + ma.indptr.nbytes
    return start, {"read_s": read - start, "build_s": built - read,
                   "save_s": time.perf_counter() - built, "n_studies": int(ma.shape[0]),
                   "n_voxels": int(ma.shape[1]), "nnz": int(ma.nnz),
                   "csr_mb": nbytes / 2**20, "npz_mb": _mb(work.ma(r))}


def stage_ma_r6(args, work):
    return _stage_ma(work, 6)


def stage_ma_r10(args, work):
    return _stage_ma(work, 10)


def stage_term_maps(args, work):
    import numba

    from cbma import decode, io, term_weights

    start = time.perf_counter()
    ma, extra = io.load_sparse(work.ma(6))
    weights = term_weights.align_term_weights(term_weights.load_term_weights(work.terms),
                                              extra["ids"])
    loaded = time.perf_counter()
    _, table = decode.term_association_maps(ma, weights.matrix, weights.terms,
                                            frequency_threshold=FREQUENCY_THRESHOLD,
                                            out=work.term_maps)
    mapped = time.perf_counter()
    io.write_tsv(table, work.term_table)
    return start, {"load_s": loaded - start, "maps_s": mapped - loaded,
                   "n_terms": len(table), "n_flagged": int(table["flagged"].sum()),
                   "numba_threads": numba.get_num_threads(),
                   "term_maps_npy_mb": _mb(work.term_maps)}


def _blobs(mask, topics, sigma):
    """A Gaussian blob (peak 1) at each topic's centre, as masked vectors."""
    import numpy as np

    from cbma import space

    ijk = np.column_stack(np.unravel_index(mask.flat_indices, mask.shape))
    xyz = space.vox_to_mm(ijk, mask.affine)
    return {t["name"]: np.exp(-((xyz - np.asarray(t["centre_mm"])) ** 2).sum(axis=1)
                              / (2 * sigma**2))
            for t in topics}


def stage_decode(args, work):
    from cbma import decode, io, space, term_weights

    mask = space.load_mask(MASK)
    truth = json.loads((work.db / "ground_truth.json").read_text())
    start = time.perf_counter()
    terms = term_weights.load_term_weights(work.terms).terms
    maps = decode.load_term_maps(work.term_maps, terms)
    images = _blobs(mask, truth["topics"], truth["spread_mm"])
    ready = time.perf_counter()
    wide = decode.decode(images, maps, terms)
    decoded = time.perf_counter()
    ranked = decode.decode_table(wide)
    io.write_tsv(ranked, work.decoded)
    topics = []
    for topic in truth["topics"]:
        mine = ranked[ranked["image"] == topic["name"]]
        rank = dict(zip(mine["term"], mine["rank"], strict=True))
        r = dict(zip(mine["term"], mine["r"], strict=True))
        top = mine.iloc[0]
        topics.append({"topic": topic["name"], "top_term": str(top["term"]),
                       "top_r": float(top["r"]),
                       "ranks": {t: int(rank[t]) for t in topic["terms"]},
                       "r": {t: float(r[t]) for t in topic["terms"]},
                       "top_is_planted": str(top["term"]) in topic["terms"]})
    return start, {"prepare_s": ready - start, "decode_s": decoded - ready,
                   "n_images": len(images), "n_terms": len(terms), "topics": topics,
                   "all_top_terms_planted": all(t["top_is_planted"] for t in topics)}


def stage_nimare_inputs(args, work):
    """Untimed helper (cbma side): the terms NiMARE maps and their weights, as JSON.

    The per-term fits take a planted term, the most frequent term and the term
    of median frequency; the decoder takes those and more, spread evenly over
    the terms ranked by frequency (``--decoder-terms`` in all).
    """
    import numpy as np

    from cbma import term_weights

    start = time.perf_counter()
    truth = json.loads((work.db / "ground_truth.json").read_text())
    weights = term_weights.load_term_weights(work.terms)
    csc = weights.matrix.tocsc()
    freq = np.diff((csc >= FREQUENCY_THRESHOLD).tocsc().indptr)
    terms = [str(t) for t in weights.terms]
    planted = truth["topics"][0]["terms"][0]
    order = np.argsort(-freq, kind="stable")
    chosen = [planted, terms[order[0]], terms[order[len(order) // 2]]]
    chosen = list(dict.fromkeys(chosen))
    n_fits = len(chosen)
    for i in np.linspace(0, len(order) - 1, max(args.decoder_terms, n_fits)).astype(int):
        if len(chosen) < args.decoder_terms and terms[order[i]] not in chosen:
            chosen.append(terms[order[i]])
    labels = {}
    for t in chosen:
        col = csc[:, terms.index(t)]
        labels[t] = {str(weights.ids[i]): float(w) for i, w in zip(col.indices, col.data,
                                                                     strict=True)}
    work.nimare.mkdir(exist_ok=True)
    work.nimare_terms.write_text(json.dumps({
        "terms": chosen, "n_fit_terms": n_fits, "rows": [terms.index(t) for t in chosen],
        "n_studies": [int(freq[terms.index(t)]) for t in chosen], "labels": labels}))
    return start, {"terms": chosen}


# ----------------------------------------------------- NiMARE stages ----
# Run under NiMARE's Python (no cbma there): only numpy, pandas, nibabel, nimare.

def _quiet_nimare():
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")


def _label(term):
    return f"terms__{term}"


def stage_nimare_dataset(args, work):
    _quiet_nimare()
    import pickle

    import pandas as pd
    from nimare.dataset import Dataset
    from nimare.studyset.studyset import Studyset

    spec = json.loads(work.nimare_terms.read_text())
    start = time.perf_counter()
    table = pd.read_csv(work.coordinates, sep="\t", usecols=["study_id", "contrast_id", "x",
                                                             "y", "z"],
                        dtype={"study_id": str, "contrast_id": str})
    data = {}
    for (study, contrast), rows in table.groupby(["study_id", "contrast_id"], sort=False):
        exp = f"{study}-{contrast}"
        labels = {_label(t): spec["labels"][t].get(exp, 0.0) for t in spec["terms"]}
        data.setdefault(study, {"contrasts": {}})["contrasts"][contrast] = {
            "coords": {"space": "MNI", "x": rows["x"].tolist(), "y": rows["y"].tolist(),
                       "z": rows["z"].tolist()},
            "labels": labels}
    as_dict = time.perf_counter()
    dset = Dataset(data, target="mni152_2mm", mask=str(MASK))
    built = time.perf_counter()
    del data
    studyset = Studyset.from_dataset(dset)
    converted = time.perf_counter()
    dset.save(str(work.nimare_dataset), compress=False)
    with open(work.nimare_studyset, "wb") as f:
        pickle.dump(studyset, f, protocol=pickle.HIGHEST_PROTOCOL)
    return start, {"dict_s": as_dict - start, "dataset_s": built - as_dict,
                   "studyset_s": converted - built, "save_s": time.perf_counter() - converted,
                   "n_studies": len(dset.ids), "n_foci": len(dset.coordinates)}


def _load_collection(work, kind):
    """The pickled NiMARE ``Dataset`` or ``Studyset`` of the database."""
    if kind == "dataset":
        from nimare.dataset import Dataset

        return Dataset.load(str(work.nimare_dataset), compressed=False)
    import pickle

    with open(work.nimare_studyset, "rb") as f:
        return pickle.load(f)


def _per_term_fits(work, kind):
    """One ``MKDAChi2`` per term, sliced as ``CorrelationDecoder._run_fit`` slices."""
    _quiet_nimare()
    import numpy as np
    from nimare.meta.cbma.mkda import MKDAChi2
    from nimare.meta.kernel import MKDAKernel

    spec = json.loads(work.nimare_terms.read_text())
    start = time.perf_counter()
    dset = _load_collection(work, kind)
    loaded = time.perf_counter()
    ids = sorted(set(dset.coordinates["id"]))
    terms = []
    for term in spec["terms"][:spec["n_fit_terms"]]:
        t0 = time.perf_counter()
        selected = sorted(set(dset.get_studies_by_label(labels=[_label(term)],
                                                        label_threshold=FREQUENCY_THRESHOLD))
                          & set(ids))
        others = sorted(set(ids) - set(selected))
        d1, d2 = dset.slice(selected), dset.slice(others)
        t1 = time.perf_counter()
        res = MKDAChi2(kernel_transformer=MKDAKernel(r=6)).fit(d1, d2)
        t2 = time.perf_counter()
        z = res.get_map("z_desc-association", return_type="array")
        np.save(work.nimare / f"z{kind}_{spec['terms'].index(term)}.npy",
                np.asarray(z, np.float32))
        terms.append({"term": term, "n_selected": len(selected), "slice_s": t1 - t0,
                      "fit_s": t2 - t1, "term_s": t2 - t0})
        del d1, d2, res
    per_term = float(np.mean([t["term_s"] for t in terms]))
    return start, {"load_s": loaded - start, "terms": terms, "per_term_s": per_term,
                   "per_term_fit_s": float(np.mean([t["fit_s"] for t in terms]))}


def stage_nimare_fit(args, work):
    """Per-term ``MKDAChi2`` on a ``Dataset`` (converted to a Studyset in every fit)."""
    return _per_term_fits(work, "dataset")


def stage_nimare_fit_studyset(args, work):
    """Per-term ``MKDAChi2`` on a ``Studyset`` (NiMARE's preferred input)."""
    return _per_term_fits(work, "studyset")


def stage_nimare_decoder(args, work):
    """``CorrelationDecoder`` on the Studyset (MA maps computed once), calls timed."""
    _quiet_nimare()
    import numpy as np
    from nimare.decode.continuous import CorrelationDecoder
    from nimare.meta.cbma.mkda import MKDAChi2
    from nimare.meta.kernel import MKDAKernel

    spec = json.loads(work.nimare_terms.read_text())
    start = time.perf_counter()
    dset = _load_collection(work, "studyset")
    loaded = time.perf_counter()
    decoder = CorrelationDecoder(features=[_label(t) for t in spec["terms"]],
                                 frequency_threshold=FREQUENCY_THRESHOLD,
                                 meta_estimator=MKDAChi2(kernel_transformer=MKDAKernel(r=6)),
                                 n_cores=1)
    timings = {"precompute": [], "term": []}

    def timed(name, method):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = method(*a, **k)
            timings[name].append(time.perf_counter() - t0)
            return out
        return wrapper

    decoder._precompute_meta_estimator_maps = timed("precompute",
                                                    decoder._precompute_meta_estimator_maps)
    decoder._run_fit = timed("term", decoder._run_fit)
    t0 = time.perf_counter()
    decoder.fit(dset)
    fit = time.perf_counter() - t0
    maps = decoder.results_.maps
    z = {t: maps.get(_label(t)) for t in spec["terms"]}
    for i, t in enumerate(spec["terms"][:spec["n_fit_terms"]]):
        if z[t] is not None:
            np.save(work.nimare / f"zdec_{i}.npy", np.asarray(z[t], np.float32))
    precompute = float(sum(timings["precompute"]))
    per_term = float(np.mean(timings["term"]))
    return start, {"load_s": loaded - start, "fit_s": fit, "precompute_s": precompute,
                   "per_term_s": per_term, "term_s": timings["term"],
                   "overhead_s": fit - precompute - float(sum(timings["term"]))}


STAGES = {name.removeprefix("stage_"): fn for name, fn in globals().items()
          if name.startswith("stage_")}


def run_stage(name, args):
    """Body of a stage's process: run it, print its results as one JSON line."""
    start, result = STAGES[name](args, Work(args.out_dir))
    result = {"wall_s": time.perf_counter() - start, "peak_rss_mb": _peak_mb(), **result}
    print(json.dumps(result))


# ------------------------------------------------------------- driver ----

def launch(name, args, python=None, size=None, echo=False):
    """Run stage ``name`` in a fresh process; its results plus process time and load."""
    from _nimare import run_json

    size = size or {"studies": args.studies, "foci": args.foci, "terms": args.terms}
    cmd = [python or sys.executable, __file__, "--stage", name, "--out-dir", args.out_dir,
           "--studies", size["studies"], "--foci", size["foci"], "--terms", size["terms"]]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = run_json(cmd, f"stage {name}", cwd=REPO, echo=echo)
    result["process_s"] = time.perf_counter() - t0
    result["load_before"] = load
    result["load_after"] = os.getloadavg()[0]
    result["below_4gib"] = result["peak_rss_mb"] < LIMIT_MB
    return result


def launch_best(name, args, python=None):
    """``launch`` ``--repeat`` times: the fastest run, with every run's wall time and peak.

    On a shared machine the fastest run is the least disturbed one; the peak
    reported is the highest of the runs.
    """
    runs = [launch(name, args, python=python) for _ in range(args.repeat)]
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    if len(runs) > 1:
        best["runs_wall_s"] = [r["wall_s"] for r in runs]
        best["runs_load_before"] = [r["load_before"] for r in runs]
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        best["below_4gib"] = all(r["below_4gib"] for r in runs)
    return best


def warm(args):
    """Fill numba's on-disk caches with the whole chain on a tiny database."""
    tiny = argparse.Namespace(**{**vars(args), "out_dir": str(Path(args.out_dir) / "warm")})
    for name in CBMA_STAGES:
        launch(name, tiny, size=WARM_SIZE)
    shutil.rmtree(tiny.out_dir)


# NiMARE ways of getting every term's map: (stage, what it is)
NIMARE_WAYS = [
    ("nimare_fit", "MKDAChi2 per term, Dataset input"),
    ("nimare_fit_studyset", "MKDAChi2 per term, Studyset input"),
    ("nimare_decoder", "CorrelationDecoder, Studyset input (MA maps once)"),
]


def summarise(results, n_terms):
    """cbma's all-terms time against NiMARE's, extrapolated to the vocabulary.

    NiMARE: ``once + n_terms * per_term`` on one core; on two cores (two terms
    at a time, ``CorrelationDecoder(n_cores=2)``) at best ``once + n_terms *
    per_term / 2``. ``once`` is the decoder's MA maps of the whole database
    (0 for the plain fits); building the Dataset or Studyset is not counted,
    nor is cbma's ingest.
    """
    s = {"all_below_4gib": all(r["below_4gib"] for r in results.values())}
    if "ma_r6" not in results or "term_maps" not in results:
        return s
    cbma = results["ma_r6"]["wall_s"] + results["term_maps"]["wall_s"]
    s["cbma_all_terms_s"] = cbma
    s["cbma_term_maps_only_s"] = results["term_maps"]["wall_s"]
    s["nimare"] = {}
    for stage, what in NIMARE_WAYS:
        if stage not in results:
            continue
        r = results[stage]
        once = r.get("precompute_s", 0.0)
        one, two = once + n_terms * r["per_term_s"], once + n_terms * r["per_term_s"] / 2
        s["nimare"][stage] = {"what": what, "once_s": once, "per_term_s": r["per_term_s"],
                              "all_terms_1core_s": one, "all_terms_2cores_s": two,
                              "ratio_1core": one / cbma, "ratio_2cores": two / cbma}
    if "nimare_decoder" in results:
        # the decoder keeps every term's float32 map in memory (MetaResult.maps)
        r = results["nimare_decoder"]
        n_voxels = results["ma_r6"]["n_voxels"]
        more = (n_terms - len(r["term_s"])) * n_voxels * 4 / 2**20
        s["nimare"]["nimare_decoder"]["projected_peak_mb"] = r["peak_rss_mb"] + more
    return s


def compare_maps(work):
    """NiMARE's association z maps of the benchmarked terms against cbma's rows."""
    import numpy as np

    spec = json.loads(work.nimare_terms.read_text())
    ours = np.load(work.term_maps, mmap_mode="r")
    out = []
    for i, (term, row) in enumerate(zip(spec["terms"], spec["rows"], strict=True)):
        if i >= spec["n_fit_terms"]:
            break
        entry = {"term": term, "n_studies": spec["n_studies"][i]}
        for key, name in (("fit_dataset", f"zdataset_{i}.npy"),
                          ("fit_studyset", f"zstudyset_{i}.npy"),
                          ("decoder", f"zdec_{i}.npy")):
            path = work.nimare / name
            if path.exists():
                theirs = np.load(path)
                entry[f"max_abs_diff_{key}"] = float(np.abs(theirs - ours[row]).max())
        entry["max_abs_z"] = float(np.abs(ours[row]).max())
        out.append(entry)
    return out


def print_tables(results, summary, n_terms):
    rows = [(n, results[n]) for n in CBMA_STAGES + NIMARE_STAGES if n in results]
    print("\n| stage | wall s | process s | peak MB | < 4 GiB | load |")
    print("|---|---:|---:|---:|:---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['wall_s']:.1f} | {r['process_s']:.1f} | {r['peak_rss_mb']:.0f} "
              f"| {'pass' if r['below_4gib'] else 'FAIL'} | {r['load_before']:.1f} |")
    if "decode" in results:
        print("\n| topic | top term | r | ranks of the planted terms |")
        print("|---|---|---:|---|")
        for t in results["decode"]["topics"]:
            ranks = ", ".join(f"{k} {v}" for k, v in t["ranks"].items())
            print(f"| {t['topic']} | {t['top_term']}{'' if t['top_is_planted'] else ' (!)'} "
                  f"| {t['top_r']:.3f} | {ranks} |")
    for name in ("ma_r6", "ma_r10"):
        if name in results:
            r = results[name]
            print(f"{name}: read {r['read_s']:.1f} s, build {r['build_s']:.1f} s, save (.npz) "
                  f"{r['save_s']:.1f} s; {r['nnz'] / 1e6:.1f} M active voxels, CSR "
                  f"{r['csr_mb']:.0f} MB, file {r['npz_mb']:.0f} MB")
    if "nimare_dataset" in results:
        r = results["nimare_dataset"]
        print(f"NiMARE: Dataset {r['dataset_s']:.1f} s (its dict {r['dict_s']:.1f} s), "
              f"Studyset from it {r['studyset_s']:.1f} s")
    if summary.get("nimare"):
        print(f"\nAll {n_terms} term maps (r = 6 mm), wall s (NiMARE extrapolated from "
              "the terms it mapped):")
        print("| way | terms timed | once s | per term s | all terms, 1 core "
              "| all terms, 2 cores | NiMARE / cbma (2 cores) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(f"| cbma: MA maps + all term maps | {n_terms} | | | | "
              f"{summary['cbma_all_terms_s']:.1f} | |")
        for stage, way in summary["nimare"].items():
            r = results[stage]
            timed = len(r["term_s"] if "term_s" in r else r["terms"])
            print(f"| NiMARE {way['what']} | {timed} | {way['once_s']:.1f} | "
                  f"{way['per_term_s']:.2f} | "
                  f"{way['all_terms_1core_s']:.0f} | {way['all_terms_2cores_s']:.0f} | "
                  f"{way['ratio_2cores']:.0f}x |")
        dec = summary["nimare"].get("nimare_decoder")
        if dec:
            print(f"NiMARE's decoder keeps every term map in memory: projected peak for "
                  f"{n_terms} terms {dec['projected_peak_mb']:.0f} MB")
    print("\nEvery peak below 4 GiB:", "yes" if summary["all_below_4gib"] else "NO")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", help="work folder (default: a temporary one, removed "
                        "at the end); given, it is kept")
    parser.add_argument("--studies", type=int, default=DEFAULT_SIZE["studies"])
    parser.add_argument("--foci", type=int, default=DEFAULT_SIZE["foci"])
    parser.add_argument("--terms", type=int, default=DEFAULT_SIZE["terms"])
    parser.add_argument("--stages", nargs="+", default=["cbma", "nimare"],
                        choices=[*CBMA_STAGES, *NIMARE_STAGES, *STAGE_GROUPS],
                        help="stages to run (default: all; 'cbma' and 'nimare' name groups)")
    parser.add_argument("--no-nimare", action="store_true", help="skip the NiMARE reference")
    parser.add_argument("--no-warm", action="store_true",
                        help="do not warm the compiled code on a tiny database first")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each stage this many times and keep the fastest")
    parser.add_argument("--decoder-terms", type=int, default=30,
                        help="terms NiMARE's decoder maps (the per-term fits take 3 of them)")
    parser.add_argument("--nimare-python", help="a Python that has nimare==0.22.1")
    parser.add_argument("--json", help="results file (default: see the module docstring)")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.stage:
        run_stage(args.stage, args)
        return
    from _nimare import nimare_python

    temporary = args.out_dir is None
    if temporary:
        args.out_dir = tempfile.mkdtemp(prefix="cbma-neurosynth-scale-")
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    work = Work(args.out_dir)
    size = {"studies": args.studies, "foci": args.foci, "terms": args.terms}
    if args.json:
        out_json = Path(args.json)
    elif size == DEFAULT_SIZE:
        out_json = HERE / "results-neurosynth-scale.json"
    else:
        out_json = work.root / "results.json"
    wanted = [s for group in args.stages for s in STAGE_GROUPS.get(group, [group])]
    if args.no_nimare:
        wanted = [s for s in wanted if s not in NIMARE_STAGES]
    stages = [s for s in CBMA_STAGES + NIMARE_STAGES if s in wanted]

    previous = json.loads(out_json.read_text()) if out_json.exists() else {}
    results = previous.get("stages", {}) if previous.get("size") == size else {}
    print(f"work folder {work.root}; {args.studies} studies, {args.foci} foci, {args.terms} "
          f"terms; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    try:
        if not args.no_warm and any(s in CBMA_STAGES for s in stages):
            t0 = time.perf_counter()
            warm(args)
            print(f"warmed the compiled code ({time.perf_counter() - t0:.0f} s)", flush=True)
        theirs = None
        for name in stages:
            if name in NIMARE_STAGES:
                if theirs is None:
                    theirs = nimare_python(args.nimare_python)
                    if not work.nimare_terms.exists() or "generate" in stages \
                            or "ingest" in stages:
                        launch("nimare_inputs", args)
                results[name] = launch_best(name, args, python=theirs)
            else:
                results[name] = launch_best(name, args)
            r = results[name]
            runs = ", ".join(f"{w:.1f}" for w in r.get("runs_wall_s", []))
            print(f"{name}: {r['wall_s']:.1f} s{f' (best of {runs})' if runs else ''} "
                  f"(process {r['process_s']:.1f} s), peak "
                  f"{r['peak_rss_mb']:.0f} MB {'< 4 GiB' if r['below_4gib'] else '>= 4 GiB!'}"
                  f", load {r['load_before']:.1f}", flush=True)
        summary = summarise(results, args.terms)
        record = {"size": size, "repeat": args.repeat, "decoder_terms": args.decoder_terms,
                  "stages": results, "summary": summary,
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "platform": platform.platform()},
                  "commit": _commit()}
        if work.nimare_terms.exists() and work.term_maps.exists() \
                and any(work.nimare.glob("z*_0.npy")):
            record["nimare_vs_cbma_maps"] = compare_maps(work)
        print_tables(results, summary, args.terms)
        for c in record.get("nimare_vs_cbma_maps", []):
            diffs = ", ".join(f"{k.removeprefix('max_abs_diff_')} {v:.2g}"
                              for k, v in c.items() if k.startswith("max_abs_diff"))
            print(f"NiMARE z vs cbma z, {c['term']!r} ({c['n_studies']} studies, max |z| "
                  f"{c['max_abs_z']:.1f}): max |diff| {diffs}")
        out_json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"results: {out_json}")
    finally:
        if temporary:
            shutil.rmtree(args.out_dir, ignore_errors=True)


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=REPO, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
