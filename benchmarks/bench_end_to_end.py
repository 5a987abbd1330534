"""What a user waits for: ``snakemake --cores 2`` end to end, next to NiMARE's script.

Usage (from the repository root, with cbma installed)::

    python benchmarks/bench_end_to_end.py                       # every item
    python benchmarks/bench_end_to_end.py --items knowledge --n-iters 5000
    python benchmarks/bench_end_to_end.py --nimare-python /path/to/venv/bin/python

Items:

``knowledge``
    The bundled Sleuth file of 21 experiments -> ALE with cluster- and
    voxel-level Monte Carlo FWE (``--n-iters`` iterations, cluster-forming
    p < 0.001). cbma: a config with that one analysis, ``snakemake --cores 2``
    in a fresh folder (ingest, MA maps, ALE, the chunked Monte Carlo, the
    gather, diagnostics, figures, report and provenance: everything the
    pipeline writes). NiMARE 0.22.1: the script a user writes (read the
    Sleuth file, ``ALE().fit``, ``FWECorrector(method="montecarlo",
    n_cores=2)``, write the maps), run with ``python``.
``large``
    The same on a large real meta-analysis: the 500 n-back analyses (about
    6,000 foci) of NeuroStore's n-back/flanker studyset that NiMARE 0.22.1
    ships, bundled in ``resources/data/nback_vs_flanker``, with one kernel
    for all (sample size 20: NeuroStore records almost no sample sizes) and
    ``--large-iters`` iterations. cbma reads the parquet folder and selects
    ``n-back`` by its task label; NiMARE reads it as a ``Studyset`` and
    slices the same analyses.
``chunks``
    Whether two Monte Carlo chunk jobs side by side (``--cores 2``) keep the
    rate of one alone: the knowledge analysis' null, ``--chunk-iters``
    iterations per process, first one process alone, then two at once (each
    its own Python, as Snakemake starts them), iterations per second of each
    from inside the process (start-up excluded).
``default``
    The README's default run (``config.yaml``, every analysis, comparison,
    decoding, text model and the report) in a fresh folder, first with cold
    numba caches (as on a fresh install), then again from scratch with warm
    ones. No NiMARE counterpart.

Each run prints wall seconds (the whole command, start-up included), the
ratio to NiMARE, the peak resident memory of the largest process, and, for
cbma, the critical path: the chain of jobs, each the last-finished producer
of an input of the next, from the first job to the report, with their
seconds (from each output's provenance sidecar).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml
from _nimare import nimare_python
from bench_vs_nimare import DATA, MASK, REPO, SLEUTH

KNOWLEDGE = SLEUTH["knowledge"]
# cbma's own caches beside its code (parsed modules, the viewers' template)
PACKAGE_CACHES = REPO / "src" / "cbma" / "__pycache__"
NBACK = DATA / "nback_vs_flanker"
NBACK_SAMPLE_SIZE = 20

NIMARE_NBACK_SCRIPT = """
import sys
import nibabel as nib
from nimare.correct import FWECorrector
from nimare.meta.cbma.ale import ALE
from nimare.studyset import Studyset
folder, out, n_iters, mask = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
studyset = Studyset(folder, mask=nib.load(mask))
labels = studyset.annotations_df
nback = studyset.slice(ids=list(labels.loc[labels["comparison_task"] == "n-back", "id"]))
result = ALE(kernel__sample_size=int(sys.argv[5])).fit(nback)
corrected = FWECorrector(method="montecarlo", voxel_thresh=0.001, n_iters=n_iters,
                         n_cores=2).transform(result)
corrected.save_maps(output_dir=out)
"""

NIMARE_SCRIPT = """
import sys
from nimare.correct import FWECorrector
from nimare.io import convert_sleuth_to_dataset
from nimare.meta.cbma.ale import ALE
sleuth, out, n_iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
dset = convert_sleuth_to_dataset(sleuth, target="ale_2mm")
result = ALE().fit(dset)
corrected = FWECorrector(method="montecarlo", voxel_thresh=0.001, n_iters=n_iters,
                         n_cores=2).transform(result)
corrected.save_maps(output_dir=out)
"""


# Runs a command and prints its descendants' largest peak RSS (kB) last on stderr: a
# fresh process per command, so that one command's peak is not an earlier one's
# (RUSAGE_CHILDREN keeps the largest of all the children a process ever waited for).
_PEAK_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _timed(cmd, cwd, env=None):
    """Wall seconds and the largest descendant's peak RSS (MB) of a command."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *[str(c) for c in cmd]],
                         cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{res.stderr[-3000:]}")
    return wall, int(res.stderr.strip().splitlines()[-1]) / 1024


def _snakemake(workdir, config, env=None):
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", REPO / "Snakefile", "--directory",
           workdir, "--configfile", workdir / "config.yaml", "--cores", "2", "--quiet"]
    wall, peak = _timed(cmd, workdir, env)
    return wall, peak, (critical_path(workdir / "results"), rule_seconds(workdir / "results"))


def rule_seconds(results):
    """Wall seconds of every job of each rule, start-up included (Snakemake's benchmarks)."""
    out = {}
    for tsv in (results / "benchmarks").rglob("*.tsv"):
        rule = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        seconds = float(tsv.read_text().splitlines()[1].split("\t")[0])
        out[rule] = round(out.get(rule, 0.0) + seconds, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def critical_path(results):
    """``[(rule, seconds), ...]``: from the first job to the report, each job the
    last-finished producer of an input of the next (from the outputs' sidecars; the
    seconds are those inside the job's code, start-up excluded)."""
    jobs = {}
    for sidecar in results.rglob("*.json"):
        try:
            rec = json.loads(sidecar.read_text())
        except (ValueError, OSError):
            continue
        timing = rec.get("timing") if isinstance(rec, dict) else None
        if not timing or "rule" not in rec:
            continue
        start = time.mktime(time.strptime(timing["started"], "%Y-%m-%dT%H:%M:%SZ"))
        job = (rec["rule"], timing["started"], timing["seconds"])
        for out in rec.get("outputs", []):
            jobs[str(out)] = (job, start + timing["seconds"], list(rec.get("inputs", {})))
    path, current = [], "results/report.html"
    while current in jobs:
        job, _, inputs = jobs[current]
        path.append((job[0], job[2]))
        made = [jobs[i] for i in inputs if i in jobs]
        if not made:
            break
        current = next(k for k, v in jobs.items() if v == max(made, key=lambda v: v[1]))
    return path[::-1]


def _one_analysis(name, n_iters):
    """The config of one ALE with Monte Carlo FWE (two chunk jobs) of item ``name``."""
    analysis = {"dataset": "d", "correction": {"n_iters": n_iters}}
    if name == "large":
        dataset = {"path": str(NBACK), "format": "studyset_parquet",
                   "labels": ["comparison_task"]}
        analysis.update(select={"expression": "n-back"},
                        kernel={"sample_size": NBACK_SAMPLE_SIZE})
    else:
        dataset = {"path": str(KNOWLEDGE), "format": "sleuth"}
    return {"seed": 0, "chunk_size": max(n_iters // 2, 1), "datasets": {"d": dataset},
            "analyses": {"d": analysis}}


def compare_with_nimare(name, n_iters, python):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "cbma").mkdir()
        wall, peak, path = _snakemake(tmp / "cbma", _one_analysis(name, n_iters))
        script = tmp / "nimare_ale.py"
        if name == "large":
            script.write_text(NIMARE_NBACK_SCRIPT)
            args = [NBACK, tmp / "out", n_iters, MASK, NBACK_SAMPLE_SIZE]
        else:
            script.write_text(NIMARE_SCRIPT)
            args = [KNOWLEDGE, tmp / "out", n_iters]
        n_wall, n_peak = _timed([python, script, *args], tmp, {"OMP_NUM_THREADS": "1"})
    return {"item": name, "n_iters": n_iters, "cbma_wall_s": round(wall, 1),
            "nimare_wall_s": round(n_wall, 1), "ratio": round(n_wall / wall, 1),
            "cbma_peak_mb": round(peak), "nimare_peak_mb": round(n_peak),
            "critical_path": [(r, round(s, 2)) for r, s in path[0]], "rule_seconds": path[1]}


CHUNK_WORKER = """
import sys, time
from cbma import coordinates, dataset, estimators, null, space, stats
path, mask_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mask = space.load_mask(mask_path)
table = dataset.load_dataset([path], "sleuth")[0]
ale = estimators.get("ale")
_, (centres, pmf) = ale.fit(estimators.ma_maps("ale", table, mask, {})[0])
threshold = stats.null_threshold(0.001, centres, pmf)
model = ale.null_model(coordinates.experiments_table(table), mask, {})
null.run_iterations(model, 0, "warm-up", range(2), threshold)
start = time.perf_counter()
null.run_iterations(model, 0, "knowledge", range(n), threshold)
print(n / (time.perf_counter() - start))
"""


def chunk_rates(n_iters):
    """Iterations per second of one chunk process alone, and of each of two side by side."""
    cmd = [sys.executable, "-c", CHUNK_WORKER, str(KNOWLEDGE), str(MASK), str(n_iters)]

    def rates(n_procs):
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
                 for _ in range(n_procs)]
        return [float(p.communicate()[0].split()[-1]) for p in procs]

    lone = rates(1)[0]
    pair = rates(2)
    return {"item": "chunks", "n_iters": n_iters, "lone_it_per_s": round(lone),
            "pair_it_per_s": [round(r) for r in pair],
            "pair_share_of_lone": round(min(pair) / lone, 3)}


def default_run():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    out = {"item": "default"}
    with tempfile.TemporaryDirectory() as tmp:
        cold = {"NUMBA_CACHE_DIR": str(Path(tmp) / "numba-cache")}  # as on a fresh install
        for label in ("cold", "warm"):
            work = Path(tmp) / label
            work.mkdir()
            if label == "cold":  # and without cbma's own caches
                for cached in PACKAGE_CACHES.glob("cbma-*"):
                    cached.unlink()
            wall, peak, path = _snakemake(work, config, cold)
            out[f"{label}_wall_s"] = round(wall, 1)
            out[f"{label}_peak_mb"] = round(peak)
            out[f"{label}_critical_path"] = [(r, round(s, 2)) for r, s in path[0]]
            out[f"{label}_rule_seconds"] = path[1]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", nargs="+", default=["knowledge", "large", "chunks", "default"],
                        choices=["knowledge", "large", "chunks", "default"])
    parser.add_argument("--n-iters", type=int, default=5000)
    parser.add_argument("--large-iters", type=int, default=5000)
    parser.add_argument("--chunk-iters", type=int, default=2500)
    parser.add_argument("--nimare-python", default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    # Snakemake's own start-up, paid once per run: about 1 s; 10 s more where SLURM's
    # client tools are installed but no controller answers (the SLURM executor plugin
    # runs `scontrol show config` with a 10 s timeout when it is imported)
    startup, _ = _timed([sys.executable, "-m", "snakemake", "--version"], REPO)
    print(f"snakemake start-up: {startup:.1f} s", flush=True)
    results = [{"item": "snakemake_startup", "wall_s": round(startup, 2)}]
    for item in args.items:
        if item == "default":
            results.append(default_run())
        elif item == "chunks":
            results.append(chunk_rates(args.chunk_iters))
        else:
            n_iters = args.n_iters if item == "knowledge" else args.large_iters
            results.append(compare_with_nimare(item, n_iters, nimare_python(args.nimare_python)))
        print(textwrap.indent(json.dumps(results[-1], indent=1), "  "), flush=True)
        if args.out:  # after each item: a later failure keeps what was measured
            args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
