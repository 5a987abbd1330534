"""The job server of local runs (cbma.job_server).

A rule script hands its job over and the server's fork runs it with the job's
working folder, environment, streams and exit status; a job that cannot be
served runs in its own process; a cancelled job ends; the server ends with
the process that started it; and the server has imported what the scripts
import. (That a whole run gives the same bytes with and without the server is
tests/test_workflow.py::test_outputs_are_byte_identical_across_cores_and_job_server.)
"""

import ast
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

from cbma import job_server

# A stand-in for a rule script as Snakemake runs it: its preamble defines
# `snakemake` and `__real_file__`, then the script hands itself over.
JOB = """
import json, os, sys, time, types
__real_file__ = __file__
snakemake = types.SimpleNamespace(threads={threads})
{before}
from cbma.job_server import hand_over
hand_over()
from cbma import job_server
print(json.dumps({{"pid": os.getpid(), "ppid": os.getppid(), "served": job_server.in_job(),
                  "cwd": os.getcwd(), "probe": os.environ.get("PROBE"),
                  "argv0": sys.argv[0], "path0": sys.path[0]}}), flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
{body}
"""


def write_job(folder, name="job.py", threads=1, before="", body="sys.exit(3)"):
    path = Path(folder) / name
    path.write_text(textwrap.dedent(JOB).format(threads=threads, before=before, body=body))
    return path


def run_job(script, address, cwd, env_extra=None, **kwargs):
    env = {**os.environ, "PROBE": "from the job", job_server.ADDRESS_VARIABLE: address,
           "PYTHONPATH": str(REPO / "src"), **(env_extra or {})}
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def server():
    saved = os.environ.pop(job_server.ADDRESS_VARIABLE, None)
    process = job_server.start()
    os.environ.pop(job_server.ADDRESS_VARIABLE)  # the jobs here get it explicitly
    yield process
    job_server.stop(process)
    if saved is not None:
        os.environ[job_server.ADDRESS_VARIABLE] = saved


def test_a_served_job_runs_in_a_fork_of_the_server_with_its_own_setting(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = write_job(tmp_path)
    res = run_job(script, server.address, work)
    assert res.returncode == 3, res.stderr
    out = json.loads(res.stdout)
    assert out["served"] and out["ppid"] == server.pid
    assert out["cwd"] == str(work) and out["probe"] == "from the job"
    assert out["argv0"] == str(script) and out["path0"] == str(tmp_path)
    assert res.stderr.strip() == "a line on stderr"


def test_errors_of_a_served_job_reach_its_stderr_and_status(server, tmp_path):
    script = write_job(tmp_path, body="raise ValueError('broken input')")
    res = run_job(script, server.address, tmp_path)
    assert res.returncode == 1
    assert json.loads(res.stdout.splitlines()[0])["served"]
    assert "Traceback" in res.stderr and "ValueError: broken input" in res.stderr
    script = write_job(tmp_path, body="sys.exit('cbma error: one line')")
    res = run_job(script, server.address, tmp_path)
    assert res.returncode == 1 and res.stderr.splitlines()[-1] == "cbma error: one line"
    script = write_job(tmp_path, body="pass")
    assert run_job(script, server.address, tmp_path).returncode == 0


@pytest.mark.parametrize("case", ["no server", "off", "threads", "another python"])
def test_a_job_that_cannot_be_served_runs_in_its_own_process(server, tmp_path, case):
    address, threads, before = server.address, 1, ""
    if case == "no server":
        address = str(tmp_path / "nothing-here")
    elif case == "off":
        address = "off"
    elif case == "threads":
        threads = 2
    else:  # e.g. a job of a --sdm conda run: the server would run it with its own Python
        before = "sys.executable = '/elsewhere/bin/python'"
    script = write_job(tmp_path, threads=threads, before=before)
    res = run_job(script, address, tmp_path)
    assert res.returncode == 3, res.stderr
    out = json.loads(res.stdout)
    assert not out["served"] and out["ppid"] != server.pid


def wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_cancelled_job_ends(server, tmp_path, how):
    """Snakemake stops a job by signalling its process (SIGTERM on Ctrl-C or a
    failure elsewhere); a process killed outright must not leave the job running."""
    script = write_job(tmp_path, body="time.sleep(60)")
    env = {**os.environ, job_server.ADDRESS_VARIABLE: server.address,
           "PYTHONPATH": str(REPO / "src")}
    client = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, text=True)
    out = json.loads(client.stdout.readline())
    assert out["served"] and alive(out["pid"])
    client.send_signal(how)
    assert client.wait(timeout=20) != 0
    wait_for(lambda: not alive(out["pid"]))


def test_the_server_ends_with_the_process_that_started_it(tmp_path):
    starter = subprocess.run(
        [sys.executable, "-c", "from cbma import job_server; p = job_server.start(); "
         "print(p.pid, p.address)"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    pid, address = starter.stdout.split()
    wait_for(lambda: not alive(int(pid)))
    script = write_job(tmp_path)
    res = run_job(script, address, tmp_path)  # nobody listens: the job runs itself
    assert res.returncode == 3 and not json.loads(res.stdout)["served"]


def test_a_server_started_unadvertised_serves_only_once_advertised(monkeypatch, tmp_path):
    """The workflow starts the server while Snakemake builds the DAG and lets the jobs
    find it when the run starts: before that, nothing points to it."""
    monkeypatch.delenv(job_server.ADDRESS_VARIABLE, raising=False)
    process = job_server.start(advertised=False)
    try:
        assert job_server.ADDRESS_VARIABLE not in os.environ
        job_server.advertise(process)
        address = os.environ.pop(job_server.ADDRESS_VARIABLE)
        assert address == process.address
        res = run_job(write_job(tmp_path), address, tmp_path)
        assert res.returncode == 3 and json.loads(res.stdout)["served"]
    finally:
        job_server.stop(process)


@pytest.mark.slow
def test_past_the_chain_the_server_imports_only_on_a_free_core(tmp_path, monkeypatch):
    """While as many jobs run as there are cores, the server leaves the modules
    after the Monte Carlo chain's (:data:`~cbma.job_server.CHAIN`) for later."""
    monkeypatch.delenv(job_server.ADDRESS_VARIABLE, raising=False)
    late = [m for m in job_server.PRELOAD if ":" not in m][-1]  # the last module
    probe = write_job(tmp_path, "probe.py", body=textwrap.dedent(f"""
        print(json.dumps({{m: m in sys.modules for m in ("cbma.stats", "{late}")}}))
        sys.exit(0)"""))
    cpus = len(os.sched_getaffinity(0))
    process = job_server.start(advertised=False)
    try:
        sleepers = [subprocess.Popen(
            [sys.executable, str(write_job(tmp_path, f"sleep{i}.py", body="time.sleep(12)"))],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, job_server.ADDRESS_VARIABLE: process.address,
                 "PYTHONPATH": str(REPO / "src")}) for i in range(cpus)]
        time.sleep(8)  # the chain's modules are in by now; the cores are taken
        seen = json.loads(run_job(probe, process.address, tmp_path).stdout.splitlines()[-1])
        assert seen == {"cbma.stats": True, late: False}
        for sleeper in sleepers:
            assert sleeper.wait(timeout=60) == 0
            assert json.loads(sleeper.stdout.readline())["served"]
        # the cores free, the rest comes in
        wait_for(lambda: json.loads(run_job(probe, process.address, tmp_path)
                                    .stdout.splitlines()[-1])[late], seconds=60)
    finally:
        job_server.stop(process)


def test_a_job_hands_over_before_snakemakes_preamble(server, tmp_path):
    """The line the workflow puts first: the job's threads come from the variables
    Snakemake sets for it; the fork runs the whole file (FIRST_LINE included)."""
    early = tmp_path / "early.py"
    early.write_text(job_server.FIRST_LINE + textwrap.dedent("""
        import json, os, sys
        from cbma import job_server
        print(json.dumps({"served": job_server.in_job(), "pid": os.getpid()}), flush=True)
        sys.exit(4)
        """))
    for threads, served in (("1", True), ("2", False)):
        res = run_job(early, server.address, tmp_path, env_extra={"OMP_NUM_THREADS": threads})
        assert res.returncode == 4, res.stderr
        assert json.loads(res.stdout)["served"] is served
    # where cbma cannot be imported (a Python of its own), the line does nothing
    res = subprocess.run([sys.executable, "-S", "-c", job_server.FIRST_LINE + "print('ran')"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == "ran\n", res.stderr


def test_hand_over_first_puts_the_line_before_the_preamble_once():
    class Script:
        def get_preamble(self):
            return "PREAMBLE\n"

    job_server.hand_over_first(Script)
    job_server.hand_over_first(Script)  # the workflow is parsed again (a cluster job)
    assert Script().get_preamble() == job_server.FIRST_LINE + "PREAMBLE\n"


def test_the_preamble_announces_jobs_that_will_hand_over(server, tmp_path, monkeypatch):
    """Making a one-thread job's preamble tells the server a job is coming; the
    announcement is not a job, and the jobs after it are served as before."""
    calls = []
    monkeypatch.setattr(job_server, "announce", lambda: calls.append(1))

    class Script:
        def __init__(self, threads, conda_env=None):
            self.threads, self.conda_env = threads, conda_env

        def get_preamble(self):
            return "PREAMBLE\n"

    job_server.hand_over_first(Script)
    for script in (Script(1), Script(4), Script(1, conda_env="env.yaml")):
        assert script.get_preamble() == job_server.FIRST_LINE + "PREAMBLE\n"
    assert calls == [1]  # a job on more threads, or in an environment of its own, does not come
    monkeypatch.undo()
    monkeypatch.setenv(job_server.ADDRESS_VARIABLE, server.address)
    for _ in range(3):
        job_server.announce()
    done = run_job(write_job(tmp_path), server.address, tmp_path)
    assert done.returncode == 3 and json.loads(done.stdout.splitlines()[0])["served"]
    monkeypatch.delenv(job_server.ADDRESS_VARIABLE)
    job_server.announce()  # no server: nothing


def servers_of(pid):
    """The job servers that process ``pid`` started (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cbma.job_server" in argv and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_dry_run_leaves_no_server_behind(tmp_path):
    """A dry run never reaches onstart: the server it started ends with Snakemake."""
    from conftest import small_config, write_config

    write_config(tmp_path, small_config())
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
           "--cores", "1", "--dry-run", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: servers_of(proc.pid) or proc.poll() is not None)
    assert servers_of(proc.pid), "no server started while the DAG was built"
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    wait_for(lambda: not servers_of(proc.pid))


def test_stop_removes_the_socket_and_its_folder():
    process = job_server.start()
    address = os.environ.pop(job_server.ADDRESS_VARIABLE)
    wait_for(lambda: os.path.exists(address))
    job_server.stop(process)
    assert process.poll() is not None
    assert not os.path.exists(os.path.dirname(address))


def test_no_socket_no_server(monkeypatch, tmp_path):
    """A temporary folder whose path is too long for a Unix socket: the run goes on
    without a server (each job in its own process)."""
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    monkeypatch.setattr(job_server.tempfile, "tempdir", str(deep))
    monkeypatch.delenv(job_server.ADDRESS_VARIABLE, raising=False)
    assert job_server.start() is None
    assert job_server.ADDRESS_VARIABLE not in os.environ
    assert list(deep.iterdir()) == []  # its folder removed


def test_off_starts_nothing(monkeypatch):
    monkeypatch.setenv(job_server.ADDRESS_VARIABLE, "off")
    assert job_server.start() is None
    assert os.environ[job_server.ADDRESS_VARIABLE] == "off"


def script_imports(script):
    """The modules a rule script imports at its top level (``from x import y``: x,
    and x.y if that is a module)."""
    names = set()
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names
                         if importlib.util.find_spec(node.module).submodule_search_locations
                         and importlib.util.find_spec(f"{node.module}.{a.name}"))
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names}


PRELOADED = """
import json, sys
from cbma import job_server
for name in job_server.PRELOAD:
    job_server._import(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_server_has_imported_what_every_rule_script_imports():
    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert len(scripts) > 20
    wanted = set().union(*map(script_imports, scripts))
    assert {"numpy", "pandas", "cbma.null", "cbma.report", "cbma.runner"} <= wanted
    res = subprocess.run([sys.executable, "-c", PRELOADED], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")}, check=True)
    assert res.stderr == ""  # every module imported, every warm-up ran
    assert wanted - set(json.loads(res.stdout)) == set()


def test_every_rule_script_hands_its_job_over_first():
    for script in sorted((REPO / "scripts").glob("*.py")):
        body = ast.parse(script.read_text()).body
        first = [n for n in body
                 if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert ast.unparse(first[0]) == "from cbma.job_server import hand_over", script.name
        assert ast.unparse(first[1]) == "hand_over()", script.name


def test_the_workflow_imports_no_heavy_library_while_it_builds_the_dag():
    """What common.smk imports at parse time leaves pandas, scipy, nibabel and
    numba to the job server and the jobs: Snakemake waits for every import
    before it starts the first job."""
    lines = (REPO / "workflow" / "rules" / "common.smk").read_text().splitlines()
    modules = sorted({line.split()[1] for line in lines  # its top-level import statements
                      if line.startswith(("import ", "from "))})
    assert "cbma" in modules and "cbma.config" in modules
    probe = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
             "import cbma.atlases, cbma.estimators, cbma.pooling\n"
             "print(sorted(m for m in ('pandas', 'scipy', 'nibabel', 'numba') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["[]"]
