"""The estimators: what each one's kernel, MA maps, statistic, null and diagnostics are.

One registry for the pipeline. A rule script asks :func:`get` for the
estimator an analysis names and calls it; the workflow asks it for kernel ids
and which estimators have Monte Carlo FWE maps. Adding an estimator means a
module with its statistic and one entry here (plus its name in the config
schema).

=============  ============  ======================  =========================
estimator      MA maps       statistic               correction
=============  ============  ======================  =========================
``ale``        ALE Gaussian  ALE (:mod:`cbma.ale`)   Monte Carlo FWE
``mkda``       MKDA spheres  MKDA density            Monte Carlo FWE
``kda``        KDA spheres   KDA                     Monte Carlo FWE
``mkda_chi2``  MKDA spheres  chi-square tests        FDR (:mod:`cbma.chi2`)
=============  ============  ======================  =========================

The heavy modules (numba-compiled loops, pandas) are imported when an
estimator is used, not when this registry is read, so that building the
workflow's job graph stays quick.
"""

from dataclasses import dataclass

import numpy as np

from .errors import CbmaError

#: The MA-map kernels, by family: the options each takes, and its defaults.
KERNEL_OPTIONS = {"ale": ("fwhm", "sample_size"), "mkda": ("r", "value"),
                  "kda": ("r", "value")}


@dataclass(frozen=True)
class Estimator:
    """One estimator of the registry.

    Attributes
    ----------
    name : str
        The config's ``estimator`` value.
    label : str
        Its statistic, as a methods section names it.
    kernel : {"ale", "mkda", "kda"}
        The family of its MA maps.
    fwe : bool
        Whether it is corrected by Monte Carlo FWE (else by FDR, as the
        chi-square tests are).
    diagnostics_statistic : {"ale", "sum"} or None
        How the Jackknife and contributions recombine MA maps: the ALE union,
        or a sum (MKDA density, KDA). None: no cluster diagnostics.
    """

    name: str
    label: str
    kernel: str
    fwe: bool
    diagnostics_statistic: str | None

    def kernel_id(self, kernel):
        """File-name id of this estimator's MA maps under ``kernel`` (see :func:`kernel_id`)."""
        return kernel_id(self.kernel, kernel)

    def needs_sample_sizes(self, kernel):
        """Whether the MA maps need each experiment's sample size (ALE's default kernel)."""
        return self.kernel == "ale" and not {"fwhm", "sample_size"} & set(kernel or {})

    def fit(self, ma, weights=None):
        """The statistic's maps and its histogram null, from the selected MA maps.

        Parameters
        ----------
        ma : scipy.sparse matrix of shape (n_experiments, n_voxels)
            The selected experiments' MA maps.
        weights : ndarray of shape (n_experiments,), optional
            mkda only: the experiments' weights (:func:`experiment_weights`).

        Returns
        -------
        maps : dict of str to ndarray
            ``stat``, ``p``, ``z`` and ``logp``, masked vectors.
        null : tuple of ndarray
            ``(centres, weights)`` of the histogram null.
        """
        if not self.fwe:
            raise CbmaError(f"estimator {self.name} has no single-group statistic")
        if weights is not None and self.name != "mkda":
            raise CbmaError(f"estimator {self.name} takes no experiment weights (mkda does)")
        if self.name == "ale":
            from .ale import ale

            return ale(ma)
        from .mkda import kda, mkda_density

        return mkda_density(ma, weights) if self.name == "mkda" else kda(ma)

    def null_model(self, experiments, mask, kernel, weights=None, null_sampling="uniform"):
        """The Monte Carlo null model of this estimator for ``experiments``.

        Parameters
        ----------
        experiments : pandas.DataFrame
            One row per experiment, with ``n_foci`` and ``sample_size``
            (:func:`cbma.coordinates.experiments_table`).
        mask : cbma.space.BrainMask
            Random foci are drawn from its voxels.
        kernel : dict
            The analysis' kernel options.
        weights : ndarray of shape (n_experiments,), optional
            mkda only: the experiments' weights, in the rows' order, as
            :meth:`fit` took them.
        null_sampling : {"uniform", "grey_matter"}
            Where the random foci go: uniformly over the mask's voxels (NiMARE's
            and GingerALE's null), or by grey-matter probability
            (:mod:`cbma.null_sampling`).
        """
        from . import null
        from .null_sampling import sampling_weights

        n_foci = experiments["n_foci"].to_numpy()
        if self.kernel == "ale":
            from .kernels import experiment_fwhms

            fwhms = experiment_fwhms(experiments["sample_size"].to_numpy(), **kernel)
            model = null.RandomFociModel(n_foci, fwhms, mask)
        else:
            from .spheres import sphere_offsets

            if weights is not None and self.name != "mkda":
                raise CbmaError(f"estimator {self.name} takes no experiment weights "
                                "(mkda does)")
            model = null.SphereFociModel(n_foci, sphere_offsets(kernel["r"], mask.voxel_size),
                                         mask, value=kernel["value"],
                                         sum_overlap=self.kernel == "kda", weights=weights)
        return model.sample_from(sampling_weights(null_sampling, mask))


ESTIMATORS = {e.name: e for e in (
    Estimator("ale", "ALE", "ale", fwe=True, diagnostics_statistic="ale"),
    Estimator("mkda", "MKDA density", "mkda", fwe=True, diagnostics_statistic="sum"),
    Estimator("kda", "KDA", "kda", fwe=True, diagnostics_statistic="sum"),
    Estimator("mkda_chi2", "MKDA chi-square", "mkda", fwe=False, diagnostics_statistic=None),
)}
#: Estimators with Monte Carlo FWE-corrected maps (and cluster diagnostics).
WITH_FWE = tuple(name for name, e in ESTIMATORS.items() if e.fwe)


#: How the experiments count in an analysis' statistic (its ``weights`` option).
WEIGHTS = ("equal", "sample_size")


def experiment_weights(scheme, experiments):
    """The experiments' weights in an analysis' statistic, from its ``weights`` option.

    Parameters
    ----------
    scheme : {"equal", "sample_size"}
        ``"equal"``: every experiment counts once (no weights).
        ``"sample_size"``: MKDA's weights of Wager et al. (2007), the square
        root of each sample size, rescaled to sum to the number of experiments
        (:func:`cbma.mkda.wager_weights`).
    experiments : pandas.DataFrame
        One row per experiment, with ``id`` and ``sample_size``, in the order
        of the MA maps' rows (:func:`cbma.coordinates.experiments_table`).

    Returns
    -------
    ndarray of shape (n_experiments,) or None
        None for equal weights.

    Raises
    ------
    CbmaError
        If an experiment has no sample size, naming it.
    """
    if scheme not in WEIGHTS:
        raise CbmaError(f"unknown weights {scheme!r}; expected one of {', '.join(WEIGHTS)}")
    if scheme == "equal":
        return None
    import pandas as pd

    from .mkda import wager_weights

    n = pd.to_numeric(experiments["sample_size"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(n) | (n < 1)
    if bad.any():
        first = experiments["id"].to_numpy()[bad][0]
        raise CbmaError(f"weights: sample_size: experiment {first!r} has no sample size "
                        f"({int(bad.sum())} of {n.size} have none); add them, or use "
                        "weights: equal")
    return wager_weights(n)


def get(name):
    """The estimator named ``name``.

    Raises
    ------
    CbmaError
        If there is none (naming the ones there are).
    """
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise CbmaError(f"unknown estimator {name!r}; expected one of "
                        f"{', '.join(ESTIMATORS)}") from None


def kernel_id(family, kernel):
    """File-name id of a kernel: ``ale``, ``ale-fwhm10``, ``ale-n20``, ``mkda-r10``, ``kda-r6-v2``.

    Parameters
    ----------
    family : {"ale", "mkda", "kda"}
    kernel : dict
        Its options (ALE: ``fwhm`` or ``sample_size``; spheres: ``r`` and ``value``).
    """
    if family == "ale":
        if "fwhm" in kernel:
            return f"ale-fwhm{kernel['fwhm']:g}"
        if "sample_size" in kernel:
            return f"ale-n{kernel['sample_size']:g}"
        return "ale"
    if family not in KERNEL_OPTIONS:
        raise CbmaError(f"unknown kernel {family!r}; expected one of {', '.join(KERNEL_OPTIONS)}")
    value = "" if kernel.get("value", 1) == 1 else f"-v{kernel['value']:g}"
    return f"{family}-r{kernel['r']:g}{value}"


def sphere_kernel(r):
    """The MKDA sphere options of radius ``r`` mm (value 1), as decoding and seeds use them."""
    return {"r": r, "value": 1.0}


def ma_maps(family, table, mask, kernel):
    """The MA maps of every experiment of a coordinates table under one kernel.

    Parameters
    ----------
    family : {"ale", "mkda", "kda"}
    table : pandas.DataFrame
        The canonical coordinates table (one row per focus).
    mask : cbma.space.BrainMask
    kernel : dict
        The kernel's options.

    Returns
    -------
    ma : scipy.sparse.csr_matrix of shape (n_experiments, n_voxels)
    ids : ndarray of str
        The experiments, in the rows' order.
    record : dict
        What the kernel was for each experiment (``fwhm``: FWHM in mm per
        experiment, for ALE), to store with the maps.
    """
    import pandas as pd

    from .coordinates import experiments_table
    from .kernels import ale_ma_maps, experiment_fwhms, foci_voxels

    exps = experiments_table(table)
    ids = exps["id"].to_numpy(dtype=str)
    row = pd.Categorical(table["id"].astype(str), categories=ids).codes
    ijk = foci_voxels(table, mask)
    if family == "ale":
        if ESTIMATORS["ale"].needs_sample_sizes(kernel):
            _require_sample_sizes(table, exps)
        fwhms = experiment_fwhms(exps["sample_size"].to_numpy(), **kernel)
        return ale_ma_maps(ijk, row, fwhms, mask), ids, {"fwhm": np.asarray(fwhms)}
    if family not in ("mkda", "kda"):
        raise CbmaError(f"unknown kernel {family!r}; expected one of {', '.join(KERNEL_OPTIONS)}")
    from .spheres import mkda_ma_maps

    ma = mkda_ma_maps(ijk, row, len(ids), mask, r=kernel["r"], value=kernel["value"],
                      sum_overlap=family == "kda")
    return ma, ids, {}


def _require_sample_sizes(table, exps):
    """Stop, naming the file, study and contrast, if an experiment has no sample size."""
    n = exps["sample_size"].to_numpy(dtype=float)
    bad = ~np.isfinite(n) | (n < 1)
    if not bad.any():
        return
    first = table[table["id"].astype(str) == str(exps["id"].to_numpy()[bad][0])].iloc[0]
    source = str(first["source"]).rsplit(":", 1)[0]
    raise CbmaError(f"{source}: study {first['study_id']!r}, contrast {first['contrast_id']!r} "
                    f"has no sample size ({int(bad.sum())} of {len(n)} experiments have none), "
                    "which the ALE kernel needs: add the sample sizes, or give the analysis a "
                    "kernel of its own (kernel: {fwhm: ...} or {sample_size: ...})")
