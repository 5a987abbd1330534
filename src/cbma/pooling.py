"""Within-group pooling: several experiments of the same subjects become one.

Turkeltaub et al. (2012) showed that experiments on the same subjects (several
contrasts of one study, say) inflate ALE: the subject group enters the union
several times, and its foci count as independent evidence. Their remedy, which
GingerALE's users apply by listing a group's foci under one experiment header,
is to pool those experiments into one: the union of their foci, with one MA
map (the maximum of the kernels of all its foci, as for any experiment).

``pool`` (on a dataset, or on an analysis, which takes precedence) says which
experiments share subjects:

- ``none`` (or no ``pool``): none are pooled; an analysis in which a study
  contributes several experiments warns (the select job's log, echoed) and
  the report lists those studies;
- ``study``: the experiments of one study (``study_id``);
- ``{column: NAME}``: the experiments with the same value of a column naming
  the subject group (table format: a column of the file; studyset formats: an
  analysis' metadata or annotation key), across studies too (a cohort reported
  by two papers).

Pooling is applied to the experiments an analysis selects, after selection:
a study whose n-back and flanker contrasts are both in the dataset pools only
those the analysis takes. The pooled experiment is named by its group (the
study id, or the column's value); an experiment alone in its group keeps its
own id. Its sample size is the smallest of its experiments' (those that have
one): the kernel of a pooled experiment is one kernel for all its foci, and the
smallest group is the one whose foci are least precise, so no focus is
modelled as more precise than the experiment that reported it (the
experiments of one group usually report the same number of subjects, and the
choice then does not matter).
"""

import numpy as np

from .errors import CbmaError

# pandas and cbma.coordinates (with scipy: 0.5 s) are imported where a table is
# pooled: the workflow calls pool_of while Snakemake builds the DAG.

__all__ = ["GROUPS_COLUMNS", "group_column", "group_keys", "pool_experiments", "pool_of",
           "pool_label", "shared_groups"]

#: Columns of a pooled analysis' ``groups.tsv``: one row per selected experiment.
GROUPS_COLUMNS = ["pooled", "experiment", "sample_size", "n_foci"]


def group_column(name):
    """The coordinates table's column holding subject group ``name`` (``group:<name>``)."""
    return f"group:{name}"


def pool_of(analysis, dataset):
    """How an analysis pools: ``"none"``, ``"study"`` or ``{"column": name}``.

    Parameters
    ----------
    analysis, dataset : dict
        The analysis' and its dataset's config blocks. The analysis' ``pool``
        wins; then the dataset's; else ``"none"``. An MKDA chi-square analysis
        (one experiment per study, as Neurosynth's) is never pooled.
    """
    if analysis.get("estimator") == "mkda_chi2":
        return "none"
    return analysis.get("pool", dataset.get("pool", "none"))


def pool_label(pool):
    """``none``, ``study`` or ``column-<name>``: the pooling in words and file names."""
    return pool if isinstance(pool, str) else f"column-{pool['column']}"


def group_keys(coordinates, pool):
    """The subject group of each experiment.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        Canonical coordinates table (with a :func:`group_column` column for
        ``{"column": name}``).
    pool : "study" or dict

    Returns
    -------
    pandas.Series
        Group key (str) indexed by experiment id, experiments in first-seen
        order.

    Raises
    ------
    CbmaError
        If the table has no such column, or an experiment's rows disagree.
    """
    import pandas as pd

    if pool == "study":
        column = "study_id"
    elif isinstance(pool, dict) and "column" in pool:
        column = group_column(pool["column"])
        if column not in coordinates:
            raise CbmaError(f"pool.column {pool['column']!r}: the dataset has no such subject "
                            "group column (re-run ingest)")
    else:
        raise CbmaError(f"pool: expected none, study or {{column: NAME}}, got {pool!r}")
    keys = coordinates[["id", column]].astype(str)
    per_exp = keys.drop_duplicates()
    repeated = per_exp["id"].duplicated()
    if repeated.any():
        exp = per_exp.loc[repeated, "id"].iloc[0]
        values = sorted(per_exp.loc[per_exp["id"] == exp, column])
        raise CbmaError(f"experiment {exp!r} has several subject groups in {column!r}: "
                        f"{', '.join(map(repr, values))}")
    return pd.Series(per_exp[column].to_numpy(), index=per_exp["id"].to_numpy(), name="group")


def shared_groups(coordinates, pool="study"):
    """The groups of which several experiments are in ``coordinates``.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        The (selected) foci, canonical table.
    pool : "study" or dict
        What makes a group (see :func:`group_keys`).

    Returns
    -------
    pandas.DataFrame
        ``group``, ``n_experiments`` and ``experiments`` (ids joined by
        ``"; "``), groups in first-seen order; empty when every group has one
        experiment.
    """
    import pandas as pd

    keys = group_keys(coordinates, pool)
    counts = keys.groupby(keys, sort=False).size()
    several = counts[counts > 1]
    return pd.DataFrame({
        "group": several.index.to_numpy(dtype=object),
        "n_experiments": several.to_numpy(),
        "experiments": ["; ".join(keys.index[keys == g]) for g in several.index],
    }, columns=["group", "n_experiments", "experiments"])


def pool_experiments(coordinates, pool):
    """Pool the experiments of each subject group into one (Turkeltaub et al. 2012).

    Parameters
    ----------
    coordinates : pandas.DataFrame
        The canonical table of the experiments to pool (an analysis' selection).
    pool : "study" or dict
        What makes a group (see :func:`group_keys`).

    Returns
    -------
    pooled : pandas.DataFrame
        The canonical table with one experiment per group: the same foci in
        the same order, ``id`` the group key (an experiment alone in its
        group keeps its own), ``study_id`` its studies and ``contrast_id`` its
        contrasts (joined by ``" + "``), ``sample_size`` the smallest of its
        experiments' (missing if none has one); the other columns as they
        were.
    groups : pandas.DataFrame
        :data:`GROUPS_COLUMNS`: for each experiment, the pooled experiment it
        is in, its sample size and foci.

    Raises
    ------
    CbmaError
        If a group key is also the id of an experiment outside that group.
    """
    import pandas as pd

    from .coordinates import COLUMNS, experiments_table

    keys = group_keys(coordinates, pool)
    exps = experiments_table(coordinates).set_index("id")
    sizes = keys.groupby(keys, sort=False).size()
    pooled_id = pd.Series(np.where(sizes.loc[keys].to_numpy() > 1, keys.to_numpy(),
                                   keys.index.to_numpy()), index=keys.index, dtype=object)
    clash = set(pooled_id[sizes.loc[keys].to_numpy() > 1]) & set(
        pooled_id[sizes.loc[keys].to_numpy() == 1])
    if clash:
        raise CbmaError(f"pool: the group {sorted(clash)[0]!r} has the name of an experiment "
                        "of another group; rename one")
    per_exp = coordinates.drop_duplicates("id").set_index("id")
    new = pooled_id.loc[coordinates["id"].to_numpy()].to_numpy()
    table = coordinates.copy()
    table["id"] = new
    for column in ("study_id", "contrast_id"):
        joined = per_exp[column].astype(str).groupby(pooled_id.loc[per_exp.index].to_numpy(),
                                                     sort=False).agg(_join)
        table[column] = joined.loc[new].to_numpy()
    smallest = exps["sample_size"].groupby(pooled_id.loc[exps.index].to_numpy(),
                                           sort=False).min()
    table["sample_size"] = smallest.loc[new].to_numpy(dtype=float)
    groups = pd.DataFrame({
        "pooled": pooled_id.to_numpy(dtype=object), "experiment": pooled_id.index.to_numpy(),
        "sample_size": exps.loc[pooled_id.index, "sample_size"].to_numpy(),
        "n_foci": exps.loc[pooled_id.index, "n_foci"].to_numpy(),
    }, columns=GROUPS_COLUMNS)
    return table[[*COLUMNS, *(c for c in table.columns if c not in COLUMNS)]], groups


def _join(values):
    return " + ".join(dict.fromkeys(values))
