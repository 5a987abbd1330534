"""The validation study of docs/validation.md: error rates and power of cbma's FWE maps.

Usage (from the repository root, with cbma installed)::

    python benchmarks/validation_study.py --out results/validation --workers 2
    python benchmarks/validation_study.py --quick --out results/validation-quick

Simulates null and planted meta-analyses (:mod:`cbma.validation`), analyses
each with the pipeline's own code, writes one JSON file per cell and
replicate under ``--out`` (a rerun skips those already there: an interrupted
study resumes), then summarises every file there into the tables
(``tables.md``, and between the markers of ``validation.md`` next to the
``--docs`` folder), the summary (``summary.json``) and the figures
(``calibration.png``, ``power.png``) of ``--docs``. ``--tables-only``
regenerates the tables and figures from the files without simulating more.
Seeded: the same ``--seed`` gives the same files, whatever ``--workers``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from cbma import space, validation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POOL = sorted((ROOT / "resources" / "data").glob("semantic_*_children.txt"))
MASK = ROOT / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"
START, END = "<!-- tables: written by benchmarks/validation_study.py -->", "<!-- end of tables -->"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/validation",
                        help="results folder (one JSON file per replicate); resumed if present")
    parser.add_argument("--docs", default=None,
                        help="where the tables and figures go (default: docs/validation, "
                             "or <out>/docs with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="the small study of the test suite (minutes, not an hour)")
    parser.add_argument("--limit", type=int, default=None,
                        help="run at most this many replicates (to time the study)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only the I-th of N shares of the study (0-based), e.g. on "
                             "the N machines of a cluster sharing --out")
    parser.add_argument("--tables-only", action="store_true",
                        help="only summarise the files already in --out")
    args = parser.parse_args(argv)

    study = validation.Study.quick(args.seed) if args.quick else validation.Study(seed=args.seed)
    mask = space.load_mask(MASK)
    start = time.perf_counter()
    if not args.tables_only:
        pool = validation.experiment_pool(POOL)
        shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
        done = validation.run_study(study, mask, pool, args.out, workers=args.workers,
                                    log=lambda line: print(line, flush=True), limit=args.limit,
                                    shard=shard)
        print(f"{done['done']} replicates run, {done['skipped']} cells already there, "
              f"{done['seconds'] / 60:.1f} min", flush=True)
    results = validation.load_results(args.out)
    summary = validation.summarise(results, alpha=study.alpha)
    if args.docs is not None:
        docs = Path(args.docs)
    else:
        docs = Path(args.out) / "docs" if args.quick else ROOT / "docs" / "validation"
    docs.mkdir(parents=True, exist_ok=True)
    validation.write_tables(summary, docs / "tables.md",
                            seconds=validation.compute_seconds(args.out))
    (docs / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    page = docs.parent / "validation.md"
    if page.exists():  # the write-up quotes the tables between its markers
        text = page.read_text()
        head, sep, rest = text.partition(START)
        _, end, tail = rest.partition(END)
        if sep and end:
            tables = (docs / "tables.md").read_text().split("\n", 2)[2]
            page.write_text(f"{head}{START}\n{tables}{END}{tail}")
    validation.write_figures(summary, docs, alpha=study.alpha)
    print(f"tables and figures in {docs} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
