"""The workflow on a real SLURM cluster: every job is an sbatch job, and the results
are the bytes of a local run.

Needs the one-node test cluster of tests/slurm/ (install.sh, then start.sh; stop.sh
afterwards) and runs through profiles/slurm-ci. Skipped when `sinfo` is missing or
the test cluster's node `localhost` does not answer, so that it never submits to a
real cluster by accident.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, comparable, planned_jobs, small_config, write_config

PROFILE = REPO / "profiles" / "slurm-ci"
TIMEOUT = 420  # seconds for the SLURM run; the plugin can hang rather than fail


def _test_node_state():
    """State of the test cluster's node (`idle`, `mixed`, ...), or None if none answers."""
    if shutil.which("sinfo") is None:
        return None
    try:
        res = subprocess.run(["sinfo", "-h", "-p", "debug", "-n", "localhost", "-o", "%T"],
                             capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    state = res.stdout.strip()
    # a trailing * means the node does not respond; down/drained nodes run nothing
    if res.returncode != 0 or not state or state.endswith("*") \
            or state.split("+")[0] not in {"idle", "mixed", "allocated", "completing"}:
        return None
    return state


# CI sets CBMA_REQUIRE_SLURM=1 after starting the cluster: there a missing cluster
# is a failure, not a skip.
REQUIRED = os.environ.get("CBMA_REQUIRE_SLURM") == "1"
if REQUIRED and _test_node_state() is None:
    raise RuntimeError("CBMA_REQUIRE_SLURM=1 but the SLURM test cluster does not answer "
                       "(tests/slurm/start.sh)")

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(_test_node_state() is None,
                       reason="no SLURM test cluster (tests/slurm/install.sh, start.sh)"),
]


def _slurm_jobs(workdir):
    """``{jobid: (rule, wildcards)}`` from the plugin's job logs in ``workdir``.

    The plugin writes each job's log to
    ``.snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<jobid>.log`` (and keeps it
    because the profile sets ``slurm-keep-successful-logs``).
    """
    jobs = {}
    root = workdir / ".snakemake" / "slurm_logs"
    for log in sorted(root.rglob("*.log")):
        parts = log.relative_to(root).parts
        assert parts[0].startswith("rule_") and log.stem.isdigit(), log
        jobs[log.stem] = (parts[0].removeprefix("rule_"), "/".join(parts[1:-1]))
    return jobs


def _scontrol(jobid):
    """``scontrol show job`` of one job as a dict (SLURM keeps finished jobs MinJobAge s)."""
    res = subprocess.run(["scontrol", "-o", "show", "job", jobid],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return dict(re.findall(r"(\w+)=(\S*)", res.stdout))


def _cancel_jobs_in(workdir):
    """scancel whatever SLURM still runs from ``workdir`` (after a timeout)."""
    res = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True)
    ids = [i for i, d in (ln.split(None, 1) for ln in res.stdout.splitlines() if " " in ln)
           if Path(d) == workdir]
    if ids:
        subprocess.run(["scancel", *ids])


def _run_through_slurm(workdir):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--profile", str(PROFILE)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        subprocess.run(["kill", "-KILL", f"-{proc.pid}"])  # snakemake and its children
        out, _ = proc.communicate()
        _cancel_jobs_in(workdir)
        pytest.fail(f"SLURM run did not finish in {TIMEOUT} s\n{out}")
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{out}"
    return out


def test_workflow_runs_under_slurm_with_the_bytes_of_a_local_run(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="snakemake-executor-plugin-slurm: pip install -e \".[test]\"")
    on_slurm, local = (tmp_path / "slurm").resolve(), (tmp_path / "local").resolve()
    for workdir in (on_slurm, local):
        write_config(workdir, small_config())  # 200 iterations in chunks of 100
    planned = planned_jobs(on_slurm)
    assert planned["fwe_null"] == 4  # 2 analyses x ceil(200 / 100)

    # The local reference run goes alongside, niced: the SLURM run mostly waits for
    # its status polls, and its jobs keep the CPUs when they need them.
    local_run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(local), "--configfile", str(local / "config.yaml"), "--cores", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: os.nice(19))
    try:
        log = _run_through_slurm(on_slurm)
    finally:
        local_log, _ = local_run.communicate(timeout=TIMEOUT)
    assert local_run.returncode == 0, local_log

    # Every job but `all` (no action: Snakemake ticks it off itself) was an sbatch job ...
    local_rules = set(re.findall(r"^localrule (\w+):", log, re.MULTILINE))
    assert local_rules == {"all"}
    jobs = _slurm_jobs(on_slurm)
    per_rule = {}
    for rule, _ in jobs.values():
        per_rule[rule] = per_rule.get(rule, 0) + 1
    assert per_rule == {rule: n for rule, n in planned.items() if rule not in local_rules}
    assert len(set(jobs.values())) == len(jobs)  # one SLURM job per Snakemake job
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    assert submitted == set(jobs)

    # ... which SLURM ran to completion in this folder, with the profile's resources.
    print(f"\nSLURM jobs of {on_slurm}:")
    for jobid, (rule, wildcards) in sorted(jobs.items(), key=lambda kv: int(kv[0])):
        info = _scontrol(jobid)
        print(f"  {jobid:>6} {info['JobState']:<10} {rule} {wildcards}")
        assert info["JobState"] == "COMPLETED", (jobid, rule, info)
        assert info["ExitCode"] == "0:0" and Path(info["WorkDir"]) == on_slurm
        assert info["Partition"] == "debug" and info["TimeLimit"] == "00:10:00"
        assert info["NumCPUs"] == "1" and info["MinMemoryNode"] == "1000M"
        joblog = (on_slurm / ".snakemake" / "slurm_logs" / f"rule_{rule}" / wildcards
                  / f"{jobid}.log").read_text()
        assert re.search(rf"Finished jobid: \d+ \(Rule: {rule}\)", joblog), joblog

    # Each output's sidecar names the SLURM job that made it (the local run's, none).
    def sidecar_job_ids(results):
        return {json.loads(p.read_text())["timing"]["slurm_job_id"]
                for p in results.rglob("*.json")
                if "benchmarks" not in p.parts and "timing" in json.loads(p.read_text())}
    assert sidecar_job_ids(on_slurm / "results") \
        == {j for j, (rule, _) in jobs.items() if rule != "provenance"}
    assert sidecar_job_ids(local / "results") == {None}

    # The same bytes as the local run: maps, tables, figures, sidecars (timing aside).
    ours, theirs = comparable(on_slurm / "results"), comparable(local / "results")
    assert len(ours) > 50 and ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    assert planned_jobs(on_slurm) == {}  # and Snakemake considers the run complete


def test_cluster_profile_requests_reach_sbatch(tmp_path):
    """profiles/slurm, the profile for real clusters: its per-rule requests reach sbatch.

    One ingest job; the partition comes from $CBMA_SLURM_PARTITION, and an empty
    $CBMA_SLURM_ACCOUNT means no account (this cluster has no accounting, hence also
    the squeue status command given on the command line).
    """
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="snakemake-executor-plugin-slurm: pip install -e \".[test]\"")
    workdir = tmp_path.resolve()
    write_config(workdir, small_config())
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--profile", str(REPO / "profiles" / "slurm"), "--latency-wait", "5",
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-keep-successful-logs", "results/datasets/knowledge/coordinates.tsv"]
    env = {**os.environ, "CBMA_SLURM_ACCOUNT": "", "CBMA_SLURM_PARTITION": "debug"}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180,
                             start_new_session=True)
    except subprocess.TimeoutExpired:
        _cancel_jobs_in(workdir)
        raise
    assert res.returncode == 0, res.stdout + res.stderr
    (jobid, (rule, _)), = _slurm_jobs(workdir).items()
    info = _scontrol(jobid)
    print(f"\nprofiles/slurm: job {jobid} {info['JobState']} {rule}")
    assert rule == "ingest" and info["JobState"] == "COMPLETED"
    # the ingest entry of set-resources (not the 2000 MB / 30 min defaults)
    assert info["Partition"] == "debug" and info["TimeLimit"] == "00:10:00"
    assert info["MinMemoryNode"] == "1000M" and info["NumCPUs"] == "1"
