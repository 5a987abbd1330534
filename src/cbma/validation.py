"""A simulation study of cbma's own inference: error rates and power (docs/validation.md).

Null and planted meta-analyses are simulated as Eickhoff et al. (2016,
NeuroImage 137:70) simulated them, and every one is analysed by the code the
pipeline runs: :func:`cbma.estimators.ma_maps`, the estimator's ``fit``, the
cluster-forming threshold of :func:`cbma.stats.null_threshold`, the Monte
Carlo of :func:`cbma.null.run_iterations` and the FWE maps of
:func:`cbma.correct.fwe_montecarlo` and :func:`cbma.correct.fwe_summary`;
subtractions by :func:`cbma.compare.ale_subtraction`.

Experiments look like real ones: each takes the number of foci and of
subjects of an experiment drawn (with replacement) from a pool, the bundled
Sleuth examples by default. Their foci are drawn uniformly from the mask's
voxels, or in proportion to grey-matter probability
(:func:`cbma.null_sampling.grey_matter_probability`).

The study is a list of cells (one simulated condition each, e.g. null ALE
meta-analyses of 20 experiments, foci uniform, uniform Monte Carlo) and
replicates. A replicate is seeded from ``(seed, block, n, replicate)``, and
its Monte Carlo from ``(seed, analysis name, iteration)`` as in the pipeline,
so any replicate can be recomputed alone. :func:`run_study` writes one JSON
file per cell and replicate and skips those already there: an interrupted
run resumes where it stopped. :func:`summarise` turns the files into rates
with binomial intervals (Clopper-Pearson), :func:`write_tables` and
:func:`write_figures` into the tables and figures of the write-up.
"""

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats as sps

from . import compare, coordinates, correct, estimators, null, space
from .ale import ale_stat
from .errors import CbmaError
from .kernels import FWHM_TO_SIGMA, ale_fwhm
from .layout import CONTRAST, SUBTRACTION_FWE
from .stats import null_threshold

#: The two ways of drawing foci, in the cells' names.
SAMPLINGS = ("uniform", "gm")
#: Null cells of the ALE calibration: ``<how the foci are drawn>-<how the Monte Carlo draws>``.
NULL_CELLS = ("uniform-uniform", "gm-uniform", "uniform-gm", "gm-gm")
MKDA_KERNEL = {"r": 10.0, "value": 1.0}


@dataclass(frozen=True)
class Study:
    """What the study simulates, and how often.

    Parameters
    ----------
    seed : int
        Seeds every replicate and every Monte Carlo.
    n_iters : int
        Monte Carlo iterations (and subtraction permutations) per analysis.
    voxel_thresh : float
        Cluster-forming threshold, an uncorrected p.
    alpha : float
        FWE level.
    null_cells : dict of str to dict of int to int
        The null ALE cells, ``<how the foci are drawn>-<how the Monte Carlo
        draws>`` (``uniform-uniform`` is the calibration of the study;
        ``gm-uniform``, ``uniform-gm`` and ``gm-gm`` draw the foci, the
        Monte Carlo or both by grey matter): replicates per number of
        experiments. Replicate ``r`` of every cell of ``n`` experiments
        has the same experiments (numbers of foci and subjects).
    power_n : tuple of int
        Numbers of experiments of the power study.
    power_k : tuple of int
        Numbers of those experiments that report the planted location (those
        above ``n`` are skipped).
    power_r : int
        Replicates per number of experiments (each analysed once per k).
    distance : float
        A significant cluster finds the planted location when one of its
        voxels lies within this many mm of it.
    subtraction_sizes : tuple of int
        Experiments in the two groups of a null subtraction.
    subtraction_r : int
        Null subtractions.
    mkda_n, mkda_r : int
        Experiments and replicates of the MKDA density calibration
        (spheres of 10 mm).
    """

    seed: int = 0
    n_iters: int = 1000
    voxel_thresh: float = 0.001
    alpha: float = 0.05
    null_cells: dict = field(default_factory=lambda: {
        "uniform-uniform": {10: 200, 20: 200, 40: 200},
        "gm-uniform": {20: 100},
        "gm-gm": {20: 100},
        "uniform-gm": {20: 100},
    })
    power_n: tuple = (10, 20, 30)
    power_k: tuple = (3, 5, 8)
    power_r: int = 20
    distance: float = 10.0
    subtraction_sizes: tuple = (21, 16)
    subtraction_r: int = 50
    mkda_n: int = 20
    mkda_r: int = 60

    def tasks(self):
        """The study's units of work, most important first.

        The null ALE replicates come first (replicate after replicate, every
        number of experiments in turn); then the MKDA, subtraction and power
        replicates, interleaved so that a study stopped early has about the
        same share of each.

        Returns
        -------
        list of tuple
            ``(block, n, replicate, cells)``: one replicate of a block
            (``null``, ``power``, ``subtraction``, ``mkda``) and the cells
            it gives.
        """
        out = []
        unknown = set(self.null_cells) - set(NULL_CELLS)
        if unknown:
            raise CbmaError(f"unknown null cells {sorted(unknown)}; expected {NULL_CELLS}")
        ns = sorted({n for reps in self.null_cells.values() for n in reps})
        n_rep = {n: max(reps.get(n, 0) for reps in self.null_cells.values()) for n in ns}
        for rep in range(max(n_rep.values(), default=0)):
            for n in ns:
                cells = [null_cell(c, n) for c, reps in self.null_cells.items()
                         if rep < reps.get(n, 0)]
                if cells:
                    out.append(("null", n, rep, cells))
        rest = []
        for rep in range(self.mkda_r):
            rest.append((rep / self.mkda_r, ("mkda", self.mkda_n, rep, [f"mkda/N{self.mkda_n}"])))
        n_sub = sum(self.subtraction_sizes)
        for rep in range(self.subtraction_r):
            rest.append((rep / self.subtraction_r,
                         ("subtraction", n_sub, rep, [f"subtraction/N{n_sub}"])))
        for rep in range(self.power_r):
            for n in self.power_n:
                cells = [f"power/N{n}-k{k}" for k in self.power_k if k <= n]
                rest.append((rep / self.power_r, ("power", n, rep, cells)))
        rest.sort(key=lambda item: item[0])  # stable: ties keep the order above
        return out + [task for _, task in rest]

    @classmethod
    def quick(cls, seed=0):
        """A small version (few replicates and iterations), for tests and trials."""
        return cls(seed=seed, n_iters=100,
                   null_cells={"uniform-uniform": {10: 20}, "gm-uniform": {10: 4},
                               "gm-gm": {10: 4}, "uniform-gm": {10: 4}},
                   power_n=(10,), power_k=(3, 6), power_r=3, subtraction_sizes=(6, 5),
                   subtraction_r=4, mkda_n=10, mkda_r=4)

    def to_json(self):
        """A JSON-ready copy (dict keys as strings)."""
        d = asdict(self)
        d["null_cells"] = {c: {str(n): r for n, r in reps.items()}
                           for c, reps in self.null_cells.items()}
        return d


#: The settings a replicate's result depends on (with its cell and number);
#: a results folder keeps them. The numbers of replicates are free.
ANALYSIS_SETTINGS = ("seed", "n_iters", "voxel_thresh", "alpha", "distance", "subtraction_sizes")


def null_cell(cell, n):
    """The name of a null cell: ``ale-<foci>-<monte carlo>/N<n>``."""
    return f"ale-{cell}/N{n}"


# --------------------------------------------------------------------------
# simulated data
# --------------------------------------------------------------------------

def experiment_pool(paths):
    """Numbers of foci and subjects of the experiments of Sleuth files.

    Parameters
    ----------
    paths : sequence of path-like
        Sleuth text files.

    Returns
    -------
    pandas.DataFrame
        ``n_foci`` and ``sample_size``, one row per experiment.
    """
    frames = [coordinates.experiments_table(coordinates.read_sleuth(p)) for p in paths]
    if not frames:
        raise CbmaError("the experiment pool needs at least one Sleuth file")
    pool = pd.concat(frames, ignore_index=True)[["n_foci", "sample_size"]]
    if pool["sample_size"].isna().any():
        raise CbmaError("every experiment of the pool needs a sample size")
    return pool.astype({"n_foci": int, "sample_size": float})


def replicate_rng(seed, block, n, replicate, stream):
    """The random generator of one stream of one replicate."""
    key = [seed, null.analysis_key(block), n, replicate, null.analysis_key(stream)]
    return np.random.default_rng(np.random.SeedSequence(key))


def sample_design(pool, n, rng):
    """``n`` experiments drawn with replacement from the pool.

    Returns
    -------
    pandas.DataFrame
        ``id``, ``n_foci`` and ``sample_size``, one row per experiment.
    """
    rows = pool.iloc[rng.integers(0, len(pool), n)].reset_index(drop=True)
    rows.insert(0, "id", [f"exp{i:03d}" for i in range(n)])
    return rows


def draw_foci(design, mask, rng, weights=None):
    """A random in-mask voxel (mask C order) for every focus of a design.

    Uniform over the mask's voxels, or with probabilities proportional to
    ``weights`` (one per mask voxel).
    """
    total = int(design["n_foci"].sum())
    if weights is None:
        return rng.integers(0, mask.n_voxels, total)
    cdf = np.cumsum(weights)
    return np.searchsorted(cdf / cdf[-1], rng.random(total), side="right")


def foci_table(design, xyz):
    """The canonical coordinates table of a design's foci (mm, MNI).

    Parameters
    ----------
    design : pandas.DataFrame
        From :func:`sample_design`.
    xyz : ndarray of shape (n_foci, 3)
        The foci, experiment after experiment.
    """
    exps = [{"id": i, "study_id": i, "contrast_id": "sim", "sample_size": n}
            for i, n in zip(design["id"], design["sample_size"], strict=True)]
    which = np.repeat(np.arange(len(design)), design["n_foci"].to_numpy())
    return coordinates.foci_frame(exps, which, xyz, ["MNI"] * which.size,
                                  [f"simulated:{i}" for i in range(which.size)])


def voxel_xyz(mask, voxels):
    """mm coordinates of in-mask voxel numbers (mask C order)."""
    flat = mask.flat_indices[np.atleast_1d(voxels)]
    ijk = np.stack(np.unravel_index(flat, mask.shape), axis=1)
    return space.vox_to_mm(ijk, mask.affine)


def displaced(location, fwhm, mask, rng, max_tries=1000):
    """A focus reported near ``location``: displaced by a draw from the ALE kernel's Gaussian.

    The displacement has a standard deviation of ``fwhm / sqrt(8 ln 2)`` mm
    along each axis (the experiment's spatial uncertainty); draws that fall
    outside the mask are drawn again.
    """
    sigma = fwhm * FWHM_TO_SIGMA
    for _ in range(max_tries):
        xyz = location + rng.normal(0.0, sigma, 3)
        if mask.contains(space.mm_to_vox(xyz, mask.affine))[0]:
            return xyz
    raise CbmaError(f"no displaced focus fell in the mask after {max_tries} draws")


# --------------------------------------------------------------------------
# one analysis, through the pipeline's code
# --------------------------------------------------------------------------

def analyse(table, mask, study, name, estimator="ale", kernel=None, weights=None):
    """One meta-analysis with Monte Carlo FWE correction, as the pipeline runs it.

    Parameters
    ----------
    table : pandas.DataFrame
        Canonical coordinates table.
    mask : cbma.space.BrainMask
    study : Study
        ``n_iters``, ``voxel_thresh``, ``alpha`` and ``seed``.
    name : str
        The analysis name that seeds the Monte Carlo.
    estimator : {"ale", "mkda", "kda"}
    kernel : dict, optional
        The kernel options ({} for ALE's sample-size kernel).
    weights : ndarray of shape (n_mask_voxels,), optional
        The Monte Carlo's sampling weights (None: uniform, the default).

    Returns
    -------
    record : dict
        JSON-ready: ``threshold``, ``p_voxel`` (voxel-level FWE p of the
        maximum), ``p_size`` and ``p_mass`` (cluster-level FWE p of the
        largest cluster, 1 without a cluster), ``n_clusters``,
        ``n_sig_size``, ``n_sig_mass``, ``n_sig_voxels``.
    p_maps : dict of str to ndarray
        The FWE p maps (:func:`cbma.correct.fwe_montecarlo`).
    clusters : dict
        The observed clusters.
    """
    est = estimators.get(estimator)
    kernel = {} if kernel is None else kernel
    ma, _, _ = estimators.ma_maps(est.kernel, table, mask, kernel)
    maps, (centres, hist) = est.fit(ma)
    threshold = null_threshold(study.voxel_thresh, centres, hist)
    model = est.null_model(coordinates.experiments_table(table), mask, kernel)
    model.sample_from(weights)
    nulls = pd.DataFrame(null.run_iterations(model, study.seed, name, range(study.n_iters),
                                             threshold), columns=null.NULL_COLUMNS[1:])
    p_maps, clusters = correct.fwe_montecarlo(maps["stat"], mask, threshold, nulls["max_stat"],
                                              nulls["max_cluster_size"],
                                              nulls["max_cluster_mass"])
    summary = correct.fwe_summary(p_maps, clusters, nulls, threshold, study.alpha)
    cl = summary["clusters"]
    voxel, size, mass = p_maps
    record = {
        "threshold": threshold,
        "max_stat": float(maps["stat"].max()),
        "p_voxel": float(p_maps[voxel].min()),
        "p_size": float(min(cl["p_size"], default=1.0)),
        "p_mass": float(min(cl["p_mass"], default=1.0)),
        "n_clusters": cl["n"],
        "n_sig_size": cl["n_significant_size"],
        "n_sig_mass": cl["n_significant_mass"],
        "n_sig_voxels": summary["n_voxels_significant"][voxel],
    }
    return record, p_maps, clusters


def planted_clusters(p_maps, clusters, mask, location, alpha, distance):
    """Whether a significant cluster (cluster-level FWE, size) finds a location.

    Returns
    -------
    dict
        ``found`` (a significant cluster has a voxel within ``distance`` mm
        of ``location``), ``n_other`` (significant clusters that do not),
        ``found_voxel`` (a voxel-level FWE significant voxel within
        ``distance``).
    """
    labels = clusters["labels"]
    sig = p_maps["desc-size_level-cluster"] < alpha
    near = np.zeros(labels.size, dtype=bool)
    vox = np.flatnonzero((labels > 0) | (p_maps["level-voxel"] < alpha))
    if vox.size:
        near[vox] = np.linalg.norm(voxel_xyz(mask, vox) - location, axis=1) <= distance
    sig_labels = np.unique(labels[sig & (labels > 0)])
    found_labels = np.unique(labels[sig & near & (labels > 0)])
    return {
        "found": bool(found_labels.size),
        "n_other": int(sig_labels.size - found_labels.size),
        "found_voxel": bool((near & (p_maps["level-voxel"] < alpha)).any()),
    }


# --------------------------------------------------------------------------
# the replicates of each block
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Context:
    """What every replicate reads: the study, the mask, the pool and the grey-matter map."""

    study: Study
    mask: space.BrainMask
    pool: pd.DataFrame
    grey_matter: np.ndarray


def null_replicate(ctx, n, rep, cells):
    """One replicate of the null ALE cells: the same experiments, foci drawn two ways."""
    s = ctx.study
    design = sample_design(ctx.pool, n, replicate_rng(s.seed, "null", n, rep, "design"))
    tables = {}
    for how in SAMPLINGS:
        rng = replicate_rng(s.seed, "null", n, rep, how)
        vox = draw_foci(design, ctx.mask, rng, ctx.grey_matter if how == "gm" else None)
        tables[how] = foci_table(design, voxel_xyz(ctx.mask, vox))
    out = {}
    for cell in cells:
        foci, mc = cell.split("/")[0].removeprefix("ale-").split("-")
        record, _, _ = analyse(tables[foci], ctx.mask, s, f"null-N{n}-r{rep}",
                               weights=ctx.grey_matter if mc == "gm" else None)
        out[cell] = record
    return out


def mkda_replicate(ctx, n, rep, cells):
    """One null MKDA density meta-analysis (foci uniform, uniform Monte Carlo)."""
    s = ctx.study
    design = sample_design(ctx.pool, n, replicate_rng(s.seed, "mkda", n, rep, "design"))
    vox = draw_foci(design, ctx.mask, replicate_rng(s.seed, "mkda", n, rep, "uniform"))
    record, _, _ = analyse(foci_table(design, voxel_xyz(ctx.mask, vox)), ctx.mask, s,
                           f"mkda-N{n}-r{rep}", estimator="mkda", kernel=MKDA_KERNEL)
    return {cells[0]: record}


def subtraction_replicate(ctx, n, rep, cells):
    """One null ALE subtraction: two groups of experiments drawn from the same pool.

    Records the voxel-level FWE result and the uncorrected two-sided p at two
    voxels chosen without looking at the group labels: the maximum of the
    pooled ALE, and a random voxel that some experiment reaches.
    """
    s = ctx.study
    n1, n2 = s.subtraction_sizes
    design = sample_design(ctx.pool, n1 + n2, replicate_rng(s.seed, "subtraction", n, rep,
                                                            "design"))
    vox = draw_foci(design, ctx.mask, replicate_rng(s.seed, "subtraction", n, rep, "uniform"))
    table = foci_table(design, voxel_xyz(ctx.mask, vox))
    ids = design["id"].to_numpy()
    ma1, _, _ = estimators.ma_maps("ale", table[table["id"].isin(ids[:n1])], ctx.mask, {})
    ma2, _, _ = estimators.ma_maps("ale", table[table["id"].isin(ids[n1:])], ctx.mask, {})
    maps, _ = compare.ale_subtraction(ma1, ma2, s.seed, f"subtraction-r{rep}", s.n_iters)
    pooled = ale_stat(sp.vstack([ma1, ma2]))
    touched = np.flatnonzero(pooled > 0)
    pick = replicate_rng(s.seed, "subtraction", n, rep, "voxel").integers(0, touched.size)
    p = maps[f"p_{CONTRAST}"]
    p_fwe = maps[f"p_{SUBTRACTION_FWE}"]
    return {cells[0]: {
        "p_fwe": float(p_fwe.min()),
        "n_sig_voxels": int((p_fwe < s.alpha).sum()),
        "p_at_max": float(p[int(np.argmax(pooled))]),
        "p_at_random": float(p[touched[pick]]),
        "share_uncorrected": float((p < s.alpha).mean()),
    }}


def power_replicate(ctx, n, rep, cells):
    """One replicate of the power study: one location planted in k of n experiments, each k.

    The experiments, their random foci, the location (a voxel of grey-matter
    probability at least 0.5), the order in which experiments receive the
    planted focus and its displacements are drawn once; the analysis with k
    planted experiments replaces one random focus of each of the first k
    experiments by the location displaced by a draw from that experiment's
    ALE kernel. The k are nested.
    """
    s = ctx.study
    rng = replicate_rng(s.seed, "power", n, rep, "design")
    design = sample_design(ctx.pool, n, rng)
    vox = draw_foci(design, ctx.mask, replicate_rng(s.seed, "power", n, rep, "uniform"))
    xyz = voxel_xyz(ctx.mask, vox)
    rng = replicate_rng(s.seed, "power", n, rep, "plant")
    grey = np.flatnonzero(ctx.grey_matter >= 0.5)
    location = voxel_xyz(ctx.mask, grey[rng.integers(0, grey.size)])[0]
    order = rng.permutation(n)
    start = np.concatenate([[0], np.cumsum(design["n_foci"].to_numpy())])
    fwhm = ale_fwhm(design["sample_size"].to_numpy())
    replaced = {int(e): int(start[e] + rng.integers(0, design["n_foci"].iloc[e])) for e in order}
    moved = {e: displaced(location, fwhm[e], ctx.mask, rng) for e in order.tolist()}
    out = {}
    for cell in cells:
        k = int(cell.rsplit("-k", 1)[1])
        planted = xyz.copy()
        for e in order[:k].tolist():
            planted[replaced[e]] = moved[e]
        record, p_maps, clusters = analyse(foci_table(design, planted), ctx.mask, s,
                                           f"power-N{n}-r{rep}")
        record.update(planted_clusters(p_maps, clusters, ctx.mask, location, s.alpha,
                                       s.distance))
        record.update(k=k, location=location.tolist())
        out[cell] = record
    return out


BLOCKS = {"null": null_replicate, "mkda": mkda_replicate, "subtraction": subtraction_replicate,
          "power": power_replicate}


# --------------------------------------------------------------------------
# running the study: resumable, in worker processes
# --------------------------------------------------------------------------

def result_path(out, cell, rep):
    """The file of one cell's replicate."""
    return Path(out) / "replicates" / cell / f"r{rep:04d}.json"


_CONTEXT = None


def _set_context(ctx):
    global _CONTEXT
    _CONTEXT = ctx


def _run_task(task):
    block, n, rep, cells = task
    start = time.perf_counter()
    records = BLOCKS[block](_CONTEXT, n, rep, cells)
    seconds = time.perf_counter() - start
    return task, records, seconds


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def run_study(study, mask, pool, out, workers=2, grey_matter=None, log=print, limit=None,
              shard=None):
    """Run every replicate of a study that has no result file yet.

    Parameters
    ----------
    study : Study
    mask : cbma.space.BrainMask
    pool : pandas.DataFrame
        :func:`experiment_pool`.
    out : path-like
        Results folder: ``study.json``, ``replicates/<cell>/r<rep>.json``
        and ``timings.tsv`` (block, n, replicate and seconds of each
        replicate run).
    workers : int
        Worker processes (1: in this process).
    grey_matter : ndarray, optional
        Grey-matter probability per mask voxel (computed when not given).
    log : callable
        Called with a progress line per finished replicate.
    limit : int, optional
        Run at most this many replicates (to time a sample of the study).
    shard : tuple of int, optional
        ``(i, n)``: run only the study's units of work ``i``, ``i + n``,
        ``i + 2n``, ... (0 <= i < n), so that n machines sharing ``out``
        split the study between them.

    Returns
    -------
    dict
        ``done`` (replicates run now), ``skipped`` (already there) and
        ``seconds`` (wall time).

    Raises
    ------
    CbmaError
        If ``out`` holds a study with other :data:`ANALYSIS_SETTINGS` (the
        numbers of replicates may change: a larger study runs only the new
        replicates).
    """
    out = Path(out)
    settings = out / "study.json"
    if settings.exists():
        before = json.loads(settings.read_text())
        now = json.loads(json.dumps(study.to_json()))
        changed = sorted(k for k in ANALYSIS_SETTINGS if before.get(k) != now[k])
        if changed:
            raise CbmaError(f"{settings} holds a study with other {', '.join(changed)}; use "
                            "another folder, or remove it to start again")
    _write_json(settings, study.to_json())
    if grey_matter is None:
        from .null_sampling import grey_matter_probability

        grey_matter = grey_matter_probability(mask)
    todo, skipped = [], 0
    tasks = study.tasks()
    if shard is not None:
        index, count = shard
        if not 0 <= index < count:
            raise CbmaError(f"shard {index}/{count}: need 0 <= i < n")
        tasks = tasks[index::count]
    for block, n, rep, cells in tasks:
        missing = [c for c in cells if not result_path(out, c, rep).exists()]
        skipped += len(cells) - len(missing)
        if missing:
            todo.append((block, n, rep, missing))
    if limit is not None:
        todo = todo[:limit]
    ctx = Context(study, mask, pool, np.asarray(grey_matter, dtype=float))
    start = time.perf_counter()
    done = 0

    def store(task, records, seconds):
        nonlocal done
        block, n, rep, _ = task
        for cell, record in records.items():
            _write_json(result_path(out, cell, rep),
                        {"cell": cell, "replicate": rep, "n": n, **record})
        # the timing apart, so that a replicate's file depends on the seed only
        with open(out / "timings.tsv", "a") as f:
            f.write(f"{block}\t{n}\t{rep}\t{seconds:.3f}\n")
        done += 1
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (len(todo) - done)
        log(f"{done}/{len(todo)} {block} N={n} r={rep} ({len(records)} cells, {seconds:.1f} s); "
            f"{elapsed / 60:.1f} min elapsed, about {eta / 60:.1f} min to go")

    if workers <= 1:
        _set_context(ctx)
        for task in todo:
            store(*_run_task(task))
    else:
        with ProcessPoolExecutor(workers, initializer=_set_context, initargs=(ctx,)) as pool_:
            futures = [pool_.submit(_run_task, t) for t in todo]
            for fut in as_completed(futures):
                store(*fut.result())
    return {"done": done, "skipped": skipped, "seconds": time.perf_counter() - start}


def load_results(out):
    """Every replicate's record of a results folder, one row each (``cell`` and ``replicate``)."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(out).glob("replicates/**/r*.json"))]
    if not rows:
        raise CbmaError(f"no results under {out}/replicates")
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------

def clopper_pearson(k, n, level=0.95):
    """The exact (Clopper-Pearson) binomial confidence interval of ``k`` successes in ``n``.

    Returns
    -------
    (float, float)
        Lower and upper bounds (0 and 1 at the ends).
    """
    if n < 1 or not 0 <= k <= n:
        raise CbmaError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    tail = (1 - level) / 2
    lo = 0.0 if k == 0 else float(sps.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def rate(hits, level=0.95):
    """``{"hits", "r", "rate", "lo", "hi"}`` of a boolean array (Clopper-Pearson interval)."""
    hits = np.asarray(hits, dtype=bool)
    k, r = int(hits.sum()), int(hits.size)
    lo, hi = clopper_pearson(k, r, level)
    return {"hits": k, "r": r, "rate": k / r, "lo": lo, "hi": hi}


#: The FWE corrections of the calibration tables: record column -> name.
CORRECTIONS = {"p_size": "cluster size", "p_mass": "cluster mass", "p_voxel": "voxel"}


def summarise(results, alpha=0.05, level=0.95):
    """Rates and intervals per cell.

    Returns
    -------
    dict
        ``calibration``: per null cell (ALE and MKDA) and correction, the share
        of meta-analyses with at least one significant cluster (voxel), with
        its interval, and a Kolmogorov-Smirnov test of the voxel-level p of
        the maximum against U(0, 1); ``power``: per (n, k), the share that
        finds the planted location, and the other significant clusters;
        ``subtraction``: the voxel-level FWE rate, and KS tests of the
        uncorrected p.
    """
    out = {"calibration": [], "power": [], "subtraction": []}
    for cell, df in results.groupby("cell", sort=True):
        family = cell.split("/")[0]
        if family.startswith("ale-") or family == "mkda":
            for col, name in CORRECTIONS.items():
                row = {"cell": cell, "correction": name, **rate(df[col] < alpha, level),
                       "median_p": float(df[col].median()),
                       "share_p_below_0.2": float((df[col] < 0.2).mean())}
                if col == "p_voxel":
                    row["ks_p"] = float(sps.kstest(df[col], "uniform").pvalue)
                out["calibration"].append(row)
        elif family == "power":
            other = df["n_other"].to_numpy()
            out["power"].append({
                "cell": cell, "n": int(df["n"].iloc[0]), "k": int(df["k"].iloc[0]),
                **rate(df["found"], level),
                "voxel_rate": float(df["found_voxel"].mean()),
                "mean_other": float(other.mean()), "any_other": rate(other > 0, level)["rate"],
            })
        elif family == "subtraction":
            out["subtraction"].append({
                "cell": cell, **rate(df["p_fwe"] < alpha, level),
                "ks_p_at_max": float(sps.kstest(df["p_at_max"], "uniform").pvalue),
                "uncorrected_at_max": rate(df["p_at_max"] < alpha, level),
                "ks_p_at_random": float(sps.kstest(df["p_at_random"], "uniform").pvalue),
                "uncorrected_at_random": rate(df["p_at_random"] < alpha, level),
            })
    return out


def _pct(x):
    return f"{100 * x:.1f} %"


def write_tables(summary, path, seconds=None):
    """The summary as Markdown tables (what docs/validation.md quotes)."""
    lines = ["<!-- written by benchmarks/validation_study.py; do not edit -->", "",
             "Rates are shares of simulated meta-analyses, with 95 % Clopper-Pearson intervals.",
             ""]
    lines += ["The last columns describe the whole distribution of each map's smallest FWE p "
              "(of its largest cluster, or its maximum): under a calibrated null it is uniform "
              "(median 0.5; 20 % below 0.2).", "",
              "| cell | correction | R | significant | rate | 95 % interval | median p | "
              "p < 0.2 | KS p (voxel p) |",
              "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for row in sorted(summary["calibration"], key=lambda r: _cell_order(r["cell"])):
        ks = f"{row['ks_p']:.3f}" if "ks_p" in row else ""
        lines.append(f"| {row['cell']} | {row['correction']} | {row['r']} | {row['hits']} | "
                     f"{_pct(row['rate'])} | {_pct(row['lo'])} - {_pct(row['hi'])} | "
                     f"{row['median_p']:.2f} | {_pct(row['share_p_below_0.2'])} | {ks} |")
    lines += ["", "| N | k | R | found | rate | 95 % interval | voxel-level found | "
              "other clusters (mean) | with another cluster |",
              "|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for row in sorted(summary["power"], key=lambda r: (r["n"], r["k"])):
        lines.append(f"| {row['n']} | {row['k']} | {row['r']} | {row['hits']} | "
                     f"{_pct(row['rate'])} | {_pct(row['lo'])} - {_pct(row['hi'])} | "
                     f"{_pct(row['voxel_rate'])} | {row['mean_other']:.2f} | "
                     f"{_pct(row['any_other'])} |")
    lines += ["", "| cell | R | voxel-level FWE rate | 95 % interval | uncorrected p < 0.05 at "
              "pooled maximum | KS p there | uncorrected p < 0.05 at a random voxel | KS p there |",
              "|---|---:|---:|---|---:|---:|---:|---:|"]
    for row in summary["subtraction"]:
        m, r = row["uncorrected_at_max"], row["uncorrected_at_random"]
        lines.append(f"| {row['cell']} | {row['r']} | {_pct(row['rate'])} | "
                     f"{_pct(row['lo'])} - {_pct(row['hi'])} | {_pct(m['rate'])} | "
                     f"{row['ks_p_at_max']:.3f} | {_pct(r['rate'])} | "
                     f"{row['ks_p_at_random']:.3g} |")
    if seconds is not None:
        lines += ["", f"Compute: {seconds / 60:.1f} min of replicate time (summed over workers)."]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def compute_seconds(out):
    """Replicate time of a results folder, summed over its ``timings.tsv`` (None without it).

    Each line is one finished unit of work (a replicate, or the cells of it
    that a resumed run added), so every line counts.
    """
    path = Path(out) / "timings.tsv"
    if not path.exists():
        return None
    return sum(float(line.split("\t")[3]) for line in path.read_text().splitlines())


_FAMILY_ORDER = ("ale-uniform-uniform", "ale-gm-uniform", "ale-uniform-gm", "ale-gm-gm", "mkda",
                 "subtraction")
_SAMPLING_NAMES = {"uniform": "uniform", "gm": "grey matter"}


def _cell_order(cell):
    family, n = cell.split("/")
    rank = _FAMILY_ORDER.index(family) if family in _FAMILY_ORDER else len(_FAMILY_ORDER)
    return rank, int(n.removeprefix("N").split("-")[0]), cell


def cell_label(cell):
    """A cell's name in a figure.

    ``ale-gm-uniform/N20`` becomes ``ALE, N = 20: foci grey matter, null uniform``.
    """
    family, n = cell.split("/")
    n = n.removeprefix("N")
    if family.startswith("ale-"):
        foci, mc = family.removeprefix("ale-").split("-")
        return (f"ALE, N = {n}: foci {_SAMPLING_NAMES[foci]}, "
                f"null {_SAMPLING_NAMES[mc]}")
    if family == "mkda":
        return f"MKDA density, N = {n}: foci uniform, null uniform"
    if family == "subtraction":
        return f"ALE subtraction, N = {n} (voxel FWE)"
    return cell


#: Marker and colour of each correction in the calibration figure.
_STYLE = {"cluster size": ("o", "C0"), "cluster mass": ("s", "C1"), "voxel": ("^", "C2")}


def write_figures(summary, folder, alpha=0.05):
    """The calibration and power figures of docs/validation.md, as PNGs.

    Parameters
    ----------
    summary : dict
        :func:`summarise`.
    folder : path-like
        Gets ``calibration.png`` (realized FWE rate with its 95 % interval
        per null cell and correction, against ``alpha``) and ``power.png``
        (the rate at which a significant cluster finds the planted location,
        and the mean number of other significant clusters, against k, one
        line per number of experiments), when the summary has those cells.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = list(summary["calibration"]) + [
        {**row, "correction": "voxel"} for row in summary["subtraction"]]
    if rows:
        cells = sorted(dict.fromkeys(row["cell"] for row in rows), key=_cell_order)
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(cells) + 2.4))
        for i, corr in enumerate(_STYLE):
            marker, colour = _STYLE[corr]
            sel = [row for row in rows if row["correction"] == corr]
            y = np.array([cells.index(row["cell"]) for row in sel]) + (i - 1) * 0.22
            x = np.array([row["rate"] for row in sel])
            err = np.array([[row["rate"] - row["lo"] for row in sel],
                            [row["hi"] - row["rate"] for row in sel]])
            ax.errorbar(x, y, xerr=err.reshape(2, -1), fmt=marker, color=colour,
                        capsize=2, label=f"{corr} FWE")
        ax.axvline(alpha, color="k", lw=1, ls="--", label=f"nominal {alpha:g}")
        labels = [f"{cell_label(c)} (R={next(r['r'] for r in rows if r['cell'] == c)})"
                  for c in cells]
        ax.set_yticks(range(len(cells)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, min(1.0, max(0.15, max(row["hi"] for row in rows) + 0.01)))
        ax.set_xlabel("realized FWE rate: null meta-analyses with a significant\n"
                      "cluster / voxel (95 % Clopper-Pearson interval)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.3, -0.22), ncol=2,
                  frameon=False)
        fig.tight_layout()
        written.append(folder / "calibration.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    if summary["power"]:
        power = pd.DataFrame(summary["power"]).sort_values(["n", "k"])
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        for i, (n, df) in enumerate(power.groupby("n")):
            colour = f"C{i}"
            k = df["k"].to_numpy()
            left.errorbar(k, df["rate"], yerr=[df["rate"] - df["lo"], df["hi"] - df["rate"]],
                          marker="o", color=colour, capsize=2, label=f"N = {n}")
            right.plot(k, df["mean_other"], marker="o", color=colour, label=f"N = {n}")
        left.set_xlabel("experiments reporting the location (k)")
        left.set_ylabel("found by a cluster-level FWE cluster")
        left.set_ylim(-0.02, 1.02)
        for axis in (left, right):
            axis.set_xticks(sorted(power["k"].unique()))
        left.legend(fontsize=8)
        right.set_xlabel("experiments reporting the location (k)")
        right.set_ylabel("other significant clusters (mean)")
        right.set_ylim(-0.02, max(0.5, float(power["mean_other"].max()) * 1.2))
        left.set_title("power (95 % Clopper-Pearson)", fontsize=10)
        right.set_title("false clusters beside it", fontsize=10)
        right.legend(fontsize=8)
        fig.tight_layout()
        written.append(folder / "power.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
