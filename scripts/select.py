"""Rule select: the experiments of one analysis (and, for mkda_chi2, those it is compared with)."""

from cbma.job_server import hand_over

hand_over()  # in the job server of a local run, if one is up

import numpy as np
import pandas as pd

from cbma import io, pooling, selection, space, term_weights
from cbma.errors import CbmaError
from cbma.runner import run


def _pick(job, spec, key, coordinates, weights, mask):
    inp = job.smk.input
    seed_ma = None
    if spec and "mask" in spec.get("seed", {}):
        seed_ma, _ = io.load_sparse(inp[f"{key}_ma"])
    return selection.select_experiments(
        spec, coordinates, weights, seed_mask=inp.get(f"{key}_mask"), seed_ma=seed_ma,
        mask=mask, where=f"{job.smk.wildcards.analysis}.{key}")


def _warn_shared(job, name, selected):
    """Warn when a study gives several of the selected experiments (they may share subjects)."""
    shared = pooling.shared_groups(selected, "study")
    if shared.empty:
        return
    listed = ", ".join(f"{g} ({n})" for g, n in zip(shared["group"][:10],
                                                      shared["n_experiments"][:10], strict=True))
    more = f", and {len(shared) - 10} more" if len(shared) > 10 else ""
    job.log(f"{name}: {len(shared)} studies give several experiments "
            f"({int(shared['n_experiments'].sum())} in all): {listed}{more}. Experiments of one "
            "subject group inflate ALE (Turkeltaub et al. 2012); pool them with pool: study "
            "(or pool: {column: ...}), or pool: none to keep them apart", echo=True)
    for row in shared.itertuples():
        job.log(f"  {row.group}: {row.experiments}")


def main(job):
    smk = job.smk
    p = smk.params
    name = smk.wildcards.analysis
    coordinates = io.read_tsv(smk.input.coordinates)
    weights = term_weights.load_term_weights(smk.input.terms)
    mask = space.load_mask(smk.input.mask_image) if "mask_image" in smk.input.keys() else None
    chosen = _pick(job, p.select, "select", coordinates, weights, mask)
    versus = np.array([], dtype=str)
    if p.versus == "rest":
        versus = selection.versus_rest(chosen, coordinates)
    elif p.versus:
        versus = _pick(job, p.versus, "versus", coordinates, weights, mask)
        chosen, versus, both = selection.drop_shared(chosen, versus)
        if both.size:
            job.log(f"{both.size} experiments are in both groups: dropped from both", echo=True)
    n_all = coordinates["id"].nunique()
    job.log(f"{name}: {len(chosen)} of {n_all} experiments selected"
            + (f", compared with {len(versus)}" if p.versus else ""), echo=True)
    if p.versus and (len(chosen) == 0 or len(versus) == 0):
        raise CbmaError(f"{name}: a group of the comparison is empty "
                                  f"({len(chosen)} selected, {len(versus)} versus)")
    if p.warn_shared:
        _warn_shared(job, name, selection.selected_coordinates(coordinates, chosen))
    io.write_tsv(pd.DataFrame({"id": chosen}), smk.output[0])
    io.write_tsv(pd.DataFrame({"id": versus}), smk.output[1])
    job.finish(extra={"n_selected": len(chosen), "n_versus": len(versus),
                      "n_experiments_in_dataset": int(n_all)})


run(snakemake, main)  # noqa: F821
