"""Sleuth ingest at BrainMap scale and beyond: time and memory per file size.

Usage (from the repository root, with cbma installed)::

    python benchmarks/bench_sleuth_ingest.py                  # 1, 5 and 50 MB
    python benchmarks/bench_sleuth_ingest.py --sizes 0.5 1 2  # MB, any sizes
    python benchmarks/bench_sleuth_ingest.py --timeout 600    # give up on a size after 600 s

Each size is a dataset of two Sleuth files written to a temp folder, as a
BrainMap export looks: 80 % of the bytes in an MNI file and 20 % in a
Talairach one; experiments of 5-30 foci (integers or two decimals, tab or
space separated), 6-60 subjects, one or two name lines (``// Author, 2004:
contrast``), blank lines between experiments. A BrainMap-sized export
(about 16,000 experiments) is about 5 MB.

Each size runs in its own process (so its peak memory is its own), which
times :func:`cbma.coordinates.read_sleuth` on both files, then
:func:`cbma.dataset.load_dataset` on the pair (reading, the Talairach conversion,
the cross-file checks and the experiments table: what the ``ingest`` rule
does before it writes), and reports the process's peak resident memory
(``ru_maxrss``) and its increase over the imports alone. The files are
generated in this process, before the timing.

Measured (2 shared, busy cores, Python 3.11; ``load_dataset`` seconds, peak
memory over the imports), before and after the linear reader (issue 13):

======  ===========  ===============  ==============
MB      experiments  before           after
======  ===========  ===============  ==============
0.25    792          0.30 s, 16 MB    0.04 s, 14 MB
1       3,139        4.7 s, 42 MB     0.14 s, 35 MB
2       6,200        11.8 s, 72 MB    0.42 s, 51 MB
5       15,515       181 s, 160 MB    1.0 s, 110 MB
50      154,366      (not run)        6.5 s, 871 MB
======  ===========  ===============  ==============

Before, the check that every experiment has foci rebuilt the set of the
experiments seen so far once per experiment; the reader now keeps the foci's
fields as text and converts them a block at a time.
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

import numpy as np

DEFAULT_SIZES = (1.0, 5.0, 50.0)
TALAIRACH_SHARE = 0.2
WORDS = ["semantic", "working memory", "faces", "pain", "reward", "motor", "reading",
         "attention", "emotion", "language", "memory retrieval", "inhibition"]


def _experiment(rng, k):
    """One experiment's lines: name line(s), Subjects, 5-30 foci."""
    year = int(rng.integers(1990, 2024))
    lines = [f"// Author{k}, {year}: {WORDS[k % len(WORDS)]} > baseline {k}"]
    if rng.random() < 0.1:  # a second name line, as BrainMap writes for some
        lines.append(f"// Author{k}, {year}: {WORDS[(k + 1) % len(WORDS)]} session {k}")
    lines.append(f"// Subjects={int(rng.integers(6, 61))}")
    n_foci = int(rng.integers(5, 31))
    xyz = rng.uniform([-70, -100, -45], [70, 70, 80], size=(n_foci, 3))
    sep = "\t" if rng.random() < 0.7 else " "
    if rng.random() < 0.5:
        lines += [sep.join(f"{v:.0f}" for v in p) for p in xyz]
    else:
        lines += [sep.join(f"{v:.2f}" for v in p) for p in xyz]
    return "\n".join(lines) + "\n\n"


def write_sleuth(path, n_bytes, reference, rng, first_id=0):
    """Write a Sleuth file of about ``n_bytes`` bytes; return its experiment count."""
    parts, size, k = [f"// Reference={reference}\n"], 0, first_id
    while size < n_bytes:
        text = _experiment(rng, k)
        parts.append(text)
        size += len(text)
        k += 1
    Path(path).write_text("".join(parts), encoding="utf-8")
    return k - first_id


def make_dataset(folder, megabytes, seed=0):
    """The two files of one size: an MNI file and a Talairach file."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    total = megabytes * 1e6
    mni, tal = folder / "mni.txt", folder / "tal.txt"
    n_mni = write_sleuth(mni, total * (1 - TALAIRACH_SHARE), "MNI", rng)
    n_tal = write_sleuth(tal, total * TALAIRACH_SHARE, "Talairach", rng, first_id=n_mni)
    return [mni, tal], n_mni + n_tal


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(paths):
    """Child process: time the reader and load_dataset on the files; a dict."""
    from cbma import coordinates, dataset

    base = _rss_mb()
    began = time.perf_counter()
    n_foci = sum(len(coordinates.read_sleuth(p)) for p in paths)
    read_s = time.perf_counter() - began
    began = time.perf_counter()
    table = dataset.load_dataset(paths, "sleuth", terms=False)[0]
    load_s = time.perf_counter() - began
    assert len(table) == n_foci
    return {"read_sleuth_s": round(read_s, 3), "load_dataset_s": round(load_s, 3),
            "n_foci": n_foci, "n_experiments": int(table["id"].nunique()),
            "peak_mb": round(_rss_mb()), "peak_over_imports_mb": round(_rss_mb() - base)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=list(DEFAULT_SIZES),
                        help="dataset sizes in MB (default: 1 5 50)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds before a size is given up (default 900)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # child process: the files of one size, result as JSON on the last line
        print(json.dumps(run_one(args.one)))
        return 0
    header = (f"{'MB':>6} {'experiments':>11} {'foci':>9} {'read_sleuth s':>13} "
              f"{'load_dataset s':>14} {'MB/s':>6} {'peak MB':>8} {'+imports':>8}")
    print(header)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in args.sizes:
            paths, n_exp = make_dataset(Path(tmp) / f"{megabytes:g}MB", megabytes)
            real_mb = sum(p.stat().st_size for p in paths) / 1e6
            command = [sys.executable, __file__, "--one", *map(str, paths)]
            try:
                out = subprocess.run(command, capture_output=True, text=True,
                                     timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                print(f"{real_mb:6.1f} {n_exp:11,d}   did not finish in {args.timeout:g} s")
                results.append({"mb": round(real_mb, 2), "n_experiments": n_exp,
                                "timeout_s": args.timeout})
                continue
            if out.returncode != 0:
                print(out.stdout, out.stderr, file=sys.stderr)
                return 1
            res = {"mb": round(real_mb, 2), **json.loads(out.stdout.strip().splitlines()[-1])}
            res["mb_per_s"] = round(real_mb / res["load_dataset_s"], 2)
            print(f"{res['mb']:6.1f} {res['n_experiments']:11,d} {res['n_foci']:9,d} "
                  f"{res['read_sleuth_s']:13.2f} {res['load_dataset_s']:14.2f} "
                  f"{res['mb_per_s']:6.1f} {res['peak_mb']:8,d} {res['peak_over_imports_mb']:8,d}")
            results.append(res)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"benchmark": "bench_sleuth_ingest", "python": platform.python_version(),
                       "results": results}, fh, indent=1)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
