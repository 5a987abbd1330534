#!/usr/bin/env bash
# Install what tests/test_slurm.py needs besides `pip install -e ".[test]"` (which
# brings the Snakemake SLURM executor plugin): Debian's SLURM (slurmctld, slurmd,
# sinfo/sbatch/squeue) and munge. Debian/Ubuntu, as root.
# It only installs; start.sh starts the daemons, stop.sh stops them.
set -euo pipefail

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v munged >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
fi

