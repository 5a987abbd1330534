"""Held-out evaluation of the free-text model on the synthetic Neurosynth database.

Usage (from the repository root, with cbma installed)::

    python benchmarks/bench_text_evaluation.py                 # both sizes, ~6 min
    python benchmarks/bench_text_evaluation.py --sizes example # 1,000 studies only
    python benchmarks/bench_text_evaluation.py --out-dir /tmp/te  # keep the databases

Sizes: ``example``, the bundled example (1,000 studies, 30,000 foci, 200
terms), and ``full``, Neurosynth's size (14,000 studies, 500,000 foci, 3,000
terms); each runs in its own process, so its peak memory is its own.

Each run does what the workflow's ``ingest``, ``ma_maps`` and ``evaluate``
rules do, with the same library calls and defaults:

1. :func:`cbma.synthetic.make_database` (seed 0): ``database.txt``,
   ``features.txt`` and ``abstracts.tsv``;
2. :func:`cbma.dataset.load_dataset` (which reads the abstracts next to
   ``database.txt``), the study table written to ``studies.tsv``;
3. every study's binary MKDA map (r = 6 mm, :func:`cbma.spheres.mkda_ma_maps`);
4. texts with :func:`cbma.text.study_texts` (title + abstract), the studies
   split as ``scripts/evaluate.py`` splits them (seed 0, evaluation name
   ``synthetic``: 10 % held out, at most 500);
5. :func:`cbma.text_model.fit_query_model` on the training studies with their MA
   maps as targets (the config defaults: a rank of a tenth of the terms,
   at most 100, the smoothing weight chosen by GCV over 0.1-0.9, 4 mm grid;
   NeuroQuery's feature screening, ``--no-screening`` to fit one
   ridge on all terms instead);
6. :func:`cbma.evaluate.evaluate_held_out` on the brain mask: the model, the
   keyword baseline (mean map of the training studies having each matched
   term, averaged over the text's terms) and random maps, scored against each
   held-out study's own MA map.

Reported per method (model, keyword, random and the paired difference
``model - keyword``): the Dice AUC over k = 5..30 % and Dice at 5, 10, 20 and
30 %, mean and standard error over the held-out studies; and the wall time of
each step and the process's peak resident memory (``ru_maxrss``).

Results: a table on standard output and ``benchmarks/results-text-evaluation.json``
(``--json`` to write elsewhere).

Measured (2 shared cores; topics with networks of five regions): the model
beats the keyword baseline by a Dice AUC of 0.077 +/- 0.009 (9 SE) at the
example size and 0.100 +/- 0.005 (20 SE) at full size, all of it on the
held-out studies of a planted topic; the screening keeps only topic terms (20
and 35 of the 36, and one other at full size), and GCV picks a smoothing
weight of 0.5 and 0.1. Without the screening (``--no-screening``) the
differences were 0.069 +/- 0.008 and 0.080 +/- 0.004: a ridge on all ~70
terms of an abstract adds every uninformative word's noise to the prediction.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MASK = REPO / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"
SIZES = {"example": {"studies": 1000, "foci": 30_000, "terms": 200},
         "full": {"studies": 14_000, "foci": 500_000, "terms": 3000}}
METHODS = ("model", "keyword", "random", "model - keyword")
METRICS = ("dice_auc", "dice_5", "dice_10", "dice_20", "dice_30")
SEED = 0
NAME = "synthetic"          # the evaluation's name: seeds the split, as in the workflow
TEST_FRACTION, MAX_TEST = 0.1, 500
MODEL = {"n_components": "auto", "smoothing": [0.1, 0.3, 0.5, 0.7, 0.9],   # config defaults
         "grid_mm": 4}
R_MM = 6.0


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(size, root, screening=True):
    """One size, in this process: generate, ingest, MA maps, fit, evaluate."""
    import numpy as np
    import pandas as pd

    from cbma import (
        coordinates,
        dataset,
        evaluate,
        io,
        kernels,
        null,
        space,
        spheres,
        synthetic,
        text,
        text_model,
    )

    spec = SIZES[size]
    db = Path(root) / size
    times = {}
    began = time.perf_counter()
    synthetic.make_database(db, n_studies=spec["studies"], n_foci=spec["foci"],
                            n_terms=spec["terms"], seed=SEED)
    times["generate_s"] = time.perf_counter() - began

    began = time.perf_counter()
    table, weights, studies = dataset.load_dataset(db / "database.txt", "neurosynth",
                                                   features=db / "features.txt")
    io.write_tsv(studies, db / "studies.tsv")
    times["ingest_s"] = time.perf_counter() - began

    began = time.perf_counter()
    mask = space.load_mask(MASK)
    exps = coordinates.experiments_table(table)
    ids = exps["id"].to_numpy(dtype=str)
    row = pd.Categorical(table["id"].astype(str), categories=ids).codes
    ma = spheres.mkda_ma_maps(kernels.foci_voxels(table, mask), row, len(ids), mask, r=R_MM)
    del table
    times["ma_maps_s"] = time.perf_counter() - began

    texts, vocabulary = text.study_texts(db / "studies.tsv", ids,
                                         weights, where=f"benchmark {size}")
    rng = null.iteration_rng(SEED, NAME, 0)
    order = rng.permutation(len(ids))
    n_test = min(int(np.ceil(TEST_FRACTION * len(ids))), MAX_TEST)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    train_texts = [texts[i] for i in train]
    test_texts = [texts[i] for i in test]

    began = time.perf_counter()
    model = text_model.fit_query_model(train_texts, vocabulary, ma[train], mask, seed=SEED,
                                       screening=screening,
                                       **text_model.model_options(MODEL, len(vocabulary)))
    times["fit_s"] = time.perf_counter() - began
    peak_fit = _peak_mb()

    began = time.perf_counter()
    result = evaluate.evaluate_held_out(model, train_texts, ma[train], test_texts, ma[test],
                                        seed=SEED, study_ids=ids[test])
    times["evaluate_s"] = time.perf_counter() - began
    summary = result.summary
    words = [len(t.split()) for t in texts]
    # where the gain comes from: held-out studies of a planted topic, and the others
    truth = json.loads((db / "ground_truth.json").read_text())
    topical = {i for topic in truth["topics"] for i in topic["ids"]}
    scored = result.table[result.table["n_active"] > 0]
    in_topic = scored["study"].isin(topical).to_numpy()
    subsets = {}
    for name, rows in (("topic studies", scored[in_topic]), ("other studies",
                                                               scored[~in_topic])):
        diff = rows["model_dice_auc"] - rows["keyword_dice_auc"]
        subsets[name] = {"n": len(rows), "model": float(rows["model_dice_auc"].mean()),
                         "keyword": float(rows["keyword_dice_auc"].mean()),
                         "diff_mean": float(diff.mean()),
                         "diff_se": float(diff.std(ddof=1) / np.sqrt(len(rows)))}
    kept = model.vocabulary[np.abs(model.coef).max(axis=1) > 0].tolist()
    planted = {t for topic in truth["topics"] for t in topic["terms"] + topic["variants"]}
    return {
        "size": size, **spec, "screening": screening, "n_train": int(train.size),
        "n_test": int(test.size),
        "n_scored": int(summary.loc["model", "n"]),
        "words_per_text_mean": float(np.mean(words)),
        "terms_per_text_mean": float(result.table["n_terms"].mean()),
        "alpha": model.alpha, "smoothing": model.smoothing,
        "n_components": int(model.components.shape[1]), "n_vocabulary": len(vocabulary),
        "n_kept_terms": len(kept), "n_kept_topic_terms": len(planted & set(kept)),
        "n_topic_terms": len(planted), "kept_terms": sorted(kept) if len(kept) <= 100 else None,
        "subsets": subsets,
        "table": {m: {f"{k}_{s}": float(summary.loc[m, f"{k}_{s}"]) for k in METRICS
                      for s in ("mean", "se")} for m in METHODS},
        "times": {k: round(v, 2) for k, v in times.items()},
        "peak_mb_after_fit": round(peak_fit, 1), "peak_mb": round(_peak_mb(), 1),
    }


def print_result(res):
    print(f"\n{res['size']}: {res['studies']} studies, {res['foci']} foci, {res['terms']} "
          f"terms; fit on {res['n_train']}, {res['n_scored']} held-out studies scored "
          f"(texts: {res['words_per_text_mean']:.0f} words, {res['terms_per_text_mean']:.0f} "
          f"vocabulary terms on average); ridge alpha {res['alpha']:g}, smoothing "
          f"{res['smoothing']:g} (GCV), rank {res['n_components']}")
    head = f"{'':16s}" + "".join(f"{k:>18s}" for k in METRICS)
    print(head)
    for method in METHODS:
        row = res["table"][method]
        print(f"{method:16s}" + "".join(
            f"{row[f'{k}_mean']:>10.3f} ± {row[f'{k}_se']:.3f}" for k in METRICS))
    print(f"screening kept {res['n_kept_terms']} of {res['n_vocabulary']} terms, "
          f"{res['n_kept_topic_terms']} of the {res['n_topic_terms']} topic terms and variants")
    for name, sub in res["subsets"].items():
        print(f"  {name} ({sub['n']}): model {sub['model']:.3f}, keyword {sub['keyword']:.3f}, "
              f"difference {sub['diff_mean']:+.3f} ± {sub['diff_se']:.3f}")
    diff = res["table"]["model - keyword"]
    print(f"model - keyword: {diff['dice_auc_mean'] / diff['dice_auc_se']:.1f} SE above 0 "
          "(Dice AUC)")
    t = res["times"]
    print("times: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in t.items())
          + f"; peak memory {res['peak_mb_after_fit']:.0f} MB after the fit, "
          f"{res['peak_mb']:.0f} MB in all")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--out-dir", help="keep the databases here (default: a temp folder)")
    parser.add_argument("--json", default=str(REPO / "benchmarks"
                                              / "results-text-evaluation.json"))
    parser.add_argument("--no-screening", action="store_true",
                        help="fit the model without its feature screening (for comparison)")
    parser.add_argument("--one", choices=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # child process: one size, result as JSON on the last line
        print(json.dumps(run_size(args.one, args.out_dir, not args.no_screening)))
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out_dir or tmp
        for size in args.sizes:
            began = time.perf_counter()
            command = [sys.executable, __file__, "--one", size, "--out-dir", root]
            out = subprocess.run(command + ["--no-screening"] * args.no_screening,
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stdout, out.stderr, file=sys.stderr)
                return 1
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["process_s"] = round(time.perf_counter() - began, 1)
            print_result(res)
            results.append(res)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump({"benchmark": "bench_text_evaluation", "python": platform.python_version(),
                   "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))}"
                   " cores (shared)", "results": results}, fh, indent=1)
        fh.write("\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
