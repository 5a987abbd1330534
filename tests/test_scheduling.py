"""Snakemake never runs more jobs at once than ``--cores`` allows.

Snakemake 9.10 to 9.26 start jobs that just became ready without counting the
cores of the jobs already running (snakemake/snakemake#3913): with
``--cores 2`` two 2-thread jobs ran side by side, and the pipeline's Monte
Carlo chunks ran four at a time on two cores, each at a quarter of its speed.
pyproject.toml requires a Snakemake without it; this test runs the case that
shows it, with the Snakemake installed, and counts the jobs that overlap.
"""

import subprocess
import sys

SNAKEFILE = """
rule final:
    input: "file1", "file2", "file3"
rule prepare:
    output: "common"
    threads: {threads}
    shell: "touch {{output}}"
rule work:
    input: "common"
    output: "file{{n}}"
    threads: {threads}
    shell: "echo start $(date +%s.%N) >> times.txt; sleep 1.5; "
           "echo end $(date +%s.%N) >> times.txt; touch {{output}}"
"""


def _max_overlap(path):
    events = []
    for line in path.read_text().splitlines():
        kind, stamp = line.split()
        events.append((float(stamp), 1 if kind == "start" else -1))
    running = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


def _run(tmp_path, threads):
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(threads=threads))
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet",
                          "--directory", str(tmp_path), "--snakefile",
                          str(tmp_path / "Snakefile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return _max_overlap(tmp_path / "times.txt")


def test_jobs_that_need_every_core_run_one_at_a_time(tmp_path):
    assert _run(tmp_path, threads=2) == 1


def test_one_core_jobs_run_two_at_a_time(tmp_path):
    assert _run(tmp_path, threads=1) == 2
