"""cbma: coordinate-based meta-analysis of neuroimaging studies.

The science of the pipeline lives here, as plain functions over arrays and
tables; the Snakemake rules only read inputs, call this library and write
outputs. The library never imports Snakemake.
"""

__version__ = "0.1.0"
