"""A job server for local runs: rule scripts start without paying for imports.

Each ``script:`` job of a Snakemake run is a fresh Python process, and about
0.5 s of each job goes to importing numpy, pandas, scipy, nibabel and numba
before its first line of work: half a minute of the default run's ~50 jobs,
and most of a small meta-analysis. The job server imports the library once,
when a local run starts. Each rule script then hands its job to the server
as its first statement, and the server forks a copy of itself that runs the
script in the job's working folder, with its environment and its standard
streams. The server never runs a job itself: each job starts from the
server's state just after its imports, so nothing passes from one job to the
next, and the outputs are the bytes a fresh process writes.

The workflow's ``onstart`` hook starts the server for local runs only (a
cluster job runs in a process of its own on its node), and ``onsuccess`` /
``onerror`` stop it; it also stops when the Snakemake process that started it
is gone. A script that cannot hand its job over runs in its own process as
before: no server (``snakemake --dry-run``, a cluster job, not Linux), a
server that is gone or refuses (another Python: a ``--sdm conda`` job), or a
rule with more than one thread (the server's libraries are set up for one).
Set the environment variable ``CBMA_JOB_SERVER=off`` to run every job in its
own process.

What differs in a served job: Snakemake's ``benchmark:`` file measures the
process that handed the job over (its wall time is the job's; its memory and
CPU columns are not). The job's own peak memory is in the ``timing`` block of
its outputs' provenance sidecars, with ``"job_server": true``.

This module imports only the standard library, so that handing a job over
costs milliseconds.
"""

import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

#: The environment variable that holds the server's socket path (or ``off``).
ADDRESS_VARIABLE = "CBMA_JOB_SERVER"

#: What the server imports, one at a time between the jobs it takes: what the
#: rule scripts import (``module:function``: import the module and call the
#: function, which caches or loads what the jobs would each load).
PRELOAD = (
    # what Snakemake's preamble of every script unpickles, then what the first
    # jobs of a run (ingest, select) import, then the rest
    "snakemake.iocontainers", "snakemake.io", "snakemake.logging",
    "numpy", "pandas", "nibabel", "scipy.sparse", "scipy.ndimage", "cbma.runner",
    "cbma.io", "cbma.space", "cbma.coordinates", "cbma.dataset", "cbma.selection",
    "cbma.pooling", "cbma.term_weights", "numba", "cbma.estimators", "cbma.null",
    # the compiled loops of those jobs from numba's cache, once for all of them
    "cbma.compiled:load_chain", "cbma.chunks", "cbma.stats",
    # The larger imports in steps of at most ~0.2 s: a job that comes during an
    # import waits for its end (those of the Monte Carlo chain come meanwhile).
    # First what every analysis' later jobs import (correction, diagnostics,
    # figures, the report and its viewers' template), then the comparisons',
    # decoding's and the text model's.
    "scipy.linalg", "scipy.special", "scipy.spatial", "scipy.optimize", "scipy.integrate",
    "scipy.interpolate", "scipy.stats", "cbma.correct", "cbma.clusters",
    "cbma.atlases", "cbma.diagnostics", "cbma.layout",
    "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "cbma.figures",
    "sklearn.base", "matplotlib.pyplot", "scipy.signal", "sklearn.cluster",
    "sklearn.utils.estimator_checks", "nilearn.image", "nilearn.maskers", "nilearn.datasets",
    "nilearn.plotting", "cbma.provenance", "yaml", "jinja2", "cbma.report",
    "cbma.viewer:background",
    "cbma.compare", "cbma.chi2", "cbma.decode", "cbma.text", "cbma.text_model",
    "cbma.evaluate", "cbma.compiled:load_rest", "cbma.classify",
)

#: The first CHAIN of PRELOAD (what the jobs up to the Monte Carlo import) are
#: imported at once; the rest only while fewer jobs run than there are cores.
CHAIN = PRELOAD.index("cbma.stats") + 1

#: The thread-count variables Snakemake sets for each job (one thread here).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

#: Seconds a job waits for the server to take it (it queues while the server imports).
TAKE_TIMEOUT = 120

#: Seconds without imports (past :data:`CHAIN`) after a job ends: Snakemake
#: announces the jobs that waited for it within a few hundredths (:func:`announce`).
HOLD_AFTER_JOB = 0.1
#: Seconds at most without imports while announced jobs have not come; they
#: come within about a tenth of a second, and would otherwise wait for the
#: end of an import begun meanwhile (up to 0.4 s).
ANNOUNCED_WAIT = 0.5

_ANNOUNCEMENT = -1  # what _take returns for an announcement

# Set in a served job, so that the script's own hand_over() lets it run.
_IN_JOB = False


def in_job():
    """Whether this process is a job forked by the job server."""
    return _IN_JOB


# ---------------------------------------------------------------- the job's side

def hand_over():
    """Run the calling rule script in the job server, if one serves this run.

    The first statement of a rule script (a ``script:`` of the workflow),
    before its imports. When the server takes the job, this ends the process
    with the job's exit status, once the job is over; otherwise it returns,
    and the script runs in this process.
    """
    if _IN_JOB:
        return
    address = os.environ.get(ADDRESS_VARIABLE, "")
    main = sys.modules.get("__main__")
    smk = getattr(main, "snakemake", None)
    if smk is None:  # before Snakemake's preamble (FIRST_LINE): the job's threads from
        script = getattr(main, "__file__", None)  # the variables Snakemake sets for it
        threads = os.environ.get("OMP_NUM_THREADS", "1")
    else:
        script = getattr(main, "__real_file__", None)  # the file Snakemake runs
        threads = getattr(smk, "threads", 1)
    if address in ("", "off") or script is None or str(threads) != "1":
        return
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TAKE_TIMEOUT)
        sock.connect(address)
        request = json.dumps({"script": script, "cwd": os.getcwd(), "env": dict(os.environ),
                              "executable": sys.executable}).encode()
        fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
        head = struct.pack("!II", len(request), sum(1 << fd for fd in fds))
        socket.send_fds(sock, [head + request], fds)
        reader = sock.makefile("r")
        reply = reader.readline().split()
    except OSError:
        sock.close()
        return  # no server, or it is gone: run here
    if len(reply) != 2 or reply[0] != "pid":
        sock.close()
        return  # refused: run here
    sock.settimeout(None)
    child = int(reply[1])

    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        status = reader.readline().split()
    except OSError:
        status = []
    if len(status) != 2 or status[0] != "exit":
        print(f"cbma: the job server stopped during job {child}", file=sys.stderr, flush=True)
        sys.exit(1)
    code = int(status[1])
    if code < 0:
        print(f"cbma: job {child} ended by signal {-code}", file=sys.stderr, flush=True)
        code = 1
    sys.exit(code)


#: The line :func:`hand_over_first` puts before Snakemake's preamble: nothing
#: where cbma cannot be imported (a job with a conda environment of its own).
FIRST_LINE = ('__import__("importlib.util").util.find_spec("cbma") and '
              '__import__("cbma.job_server").job_server.hand_over()\n')


def hand_over_first(script_class):
    """Make Python script jobs hand over before Snakemake's preamble, not after it.

    Snakemake starts each ``script:`` job with a preamble that imports parts of
    Snakemake and unpickles the job's ``snakemake`` object (0.1 s); the
    workflow calls this with Snakemake's ``PythonScript`` class so that its
    scripts start with :data:`FIRST_LINE`, and a served job skips those
    imports (its fork runs the whole file, preamble included). The scripts'
    own :func:`hand_over` stays: it serves the job where this line could not.
    Snakemake makes the preamble as it starts a job, in its own process: the
    server then hears that the job is coming (:func:`announce`).
    """
    original = getattr(script_class, "get_preamble", None)
    if original is None or getattr(original, "hands_over_first", False):
        return

    def get_preamble(self):
        if (str(getattr(self, "threads", 1)) == "1" and not getattr(self, "conda_env", None)
                and not getattr(self, "container_img", None)):
            announce()  # the job will hand over: the server waits for it
        return FIRST_LINE + original(self)

    get_preamble.hands_over_first = True
    script_class.get_preamble = get_preamble


def announce():
    """Tell the job server of this process's run that a job is about to hand over.

    The server then starts no import until the job comes (or
    :data:`ANNOUNCED_WAIT` seconds pass): the job would wait for its end. Does
    nothing without a server.
    """
    address = os.environ.get(ADDRESS_VARIABLE, "")
    if address in ("", "off"):
        return
    request = json.dumps({"announce": 1}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(address)
            sock.sendall(struct.pack("!II", len(request), 0) + request)
    except OSError:
        pass


def _is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- the workflow's side

def start(advertised=True):
    """Start a job server for the jobs of this process; return it (or None).

    Sets :data:`ADDRESS_VARIABLE` in this process's environment, which the
    jobs inherit. Returns None, and starts nothing, on a platform without
    ``fork`` and Unix sockets (only Linux is served), when the variable is
    ``off``, or when no socket can be made in the temporary folder.

    The server's own output goes nowhere: a module it cannot import is
    imported by the job that needs it, which reports any error in its log.

    Parameters
    ----------
    advertised : bool
        Set the variable now. If False, the server starts importing, but no
        job finds it until :func:`advertise` (the workflow starts it while
        Snakemake builds the DAG, before it knows whether the run is local).
    """
    if os.environ.get(ADDRESS_VARIABLE, "") == "off" or not sys.platform.startswith("linux"):
        return None
    folder = tempfile.mkdtemp(prefix="cbma-jobs-")  # private: mode 0700
    address = os.path.join(folder, "socket")
    # Bound and listening before the first job looks for it: jobs queue on it
    # while the server starts.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError:  # e.g. a TMPDIR too long for a socket's path: no server
        listener.close()
        _remove(address)
        return None
    env = {k: v for k, v in os.environ.items() if k != ADDRESS_VARIABLE}
    # Snakemake sets these to a job's threads; the libraries read them at import.
    env.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "cbma.job_server", str(listener.fileno()), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, pass_fds=[listener.fileno()])
    except OSError:  # no process to be had: each job in its own process
        _remove(address)
        return None
    finally:
        listener.close()
    process.address = address
    if advertised:
        advertise(process)
    return process


def advertise(process):
    """Let the jobs this process starts from now on hand over to ``process`` (:func:`start`)."""
    if process is not None:
        os.environ[ADDRESS_VARIABLE] = process.address



def stop(process):
    """Stop a server from :func:`start` and remove its socket."""
    if process is None:
        return
    if os.environ.get(ADDRESS_VARIABLE) == process.address:
        del os.environ[ADDRESS_VARIABLE]
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _remove(process.address)


def _remove(address):
    """Remove a socket and its folder, as far as they exist."""
    for remove, path in ((os.unlink, address), (os.rmdir, os.path.dirname(address))):
        try:
            remove(path)
        except OSError:
            pass


# ---------------------------------------------------------------- the server

def serve(listener_fd, parent_pid):
    """Take jobs on the listening Unix socket ``listener_fd`` until process
    ``parent_pid`` is gone.

    Imports :data:`PRELOAD` one module at a time, taking
    the jobs that come in between: the first jobs of a run need not wait for
    all the imports (they do the rest themselves). Past the first
    :data:`CHAIN` modules it imports only while fewer of its jobs run than
    there are cores, so that its imports do not slow the Monte Carlo chunks,
    and not while a job is about to come: just after a job ended
    (:data:`HOLD_AFTER_JOB`), and once Snakemake announced one
    (:data:`ANNOUNCED_WAIT`). It takes every job waiting before it imports.
    A module that fails to import is reported on stderr and left to the jobs
    that need it.
    """
    listener = socket.socket(fileno=listener_fd)
    os.environ.setdefault("MPLBACKEND", "Agg")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    jobs = {}  # pid -> the connection of the job that pid runs
    signal.signal(signal.SIGTERM, lambda *_: _end(jobs))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    to_import = list(PRELOAD)
    cpus = len(os.sched_getaffinity(0))

    def in_chain():
        return len(PRELOAD) - len(to_import) < CHAIN

    def may_import():  # past the chain's modules, only on a core no job uses
        return bool(to_import) and (in_chain() or len(jobs) < cpus)

    hold_until = 0.0  # past the chain's modules: no import while a job is likely to come
    announced = 0  # jobs announced that have not come yet
    while os.getppid() == parent_pid:
        if not may_import():
            wait = 1.0
        else:
            wait = 0.0 if in_chain() else max(hold_until - time.monotonic(), 0.0)
        while True:  # every job waiting, before the next import
            events = selector.select(timeout=wait)
            for key, _ in events:
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = _take(conn, jobs, (listener, selector, wake_r, wake_w))
                    if pid == _ANNOUNCEMENT:
                        announced += 1
                        hold_until = time.monotonic() + ANNOUNCED_WAIT
                    elif pid:
                        jobs[pid] = conn
                        announced = max(announced - 1, 0)
                        if not announced:
                            hold_until = 0.0
                else:
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
            if not any(key.fileobj is listener for key, _ in events):
                break
            wait = 0
        if announced and time.monotonic() >= hold_until:
            announced = 0  # announced jobs that did not come (refused, or never handed over)
        if _reap(jobs):  # the jobs that waited for it are announced within a few hundredths
            hold_until = max(hold_until, time.monotonic() + HOLD_AFTER_JOB)
        if may_import() and (in_chain() or time.monotonic() >= hold_until):
            _import(to_import.pop(0))
    _end(jobs)  # Snakemake is gone


def _end(jobs):
    """Stop the jobs still running, and this process, at once.

    Without the interpreter's teardown of numpy, pandas, numba...: the end of
    a run waits for it.
    """
    for pid in jobs:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    os._exit(0)


def _import(name):
    import importlib

    module, _, function = name.partition(":")
    try:
        loaded = importlib.import_module(module)
        if function:
            getattr(loaded, function)()
    except Exception as exc:  # noqa: BLE001 - the job that needs it will say
        print(f"cbma job server: cannot import {name}: {exc}", file=sys.stderr, flush=True)


def _reap(jobs):
    """Tell the connection of each job that ended how it ended; return how many ended."""
    ended = 0
    while jobs:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended += 1
        conn = jobs.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            conn.close()
    return ended


def _receive(conn):
    """A job's request and its standard streams, ``(dict, {0: fd, 1: fd, 2: fd})``."""
    conn.settimeout(10)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < 8:
        more = conn.recv(8 - len(data))
        if not more:
            raise OSError("the job hung up")
        data += more
    size, mask = struct.unpack("!II", data[:8])
    body = data[8:]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise OSError("the job hung up")
        body += more
    conn.settimeout(None)
    targets = [fd for fd in (0, 1, 2) if mask & (1 << fd)]
    if len(targets) != len(fds):
        for fd in fds:
            os.close(fd)
        raise OSError("the streams did not come with the request")
    return json.loads(body), dict(zip(targets, fds, strict=True))


def _take(conn, jobs, server_fds):
    """Fork a process that runs the job of ``conn``; its pid (None if refused,
    :data:`_ANNOUNCEMENT` for an announcement)."""
    fds = {}
    try:
        request, fds = _receive(conn)
        if request.get("announce"):
            conn.close()
            return _ANNOUNCEMENT
        if request.get("executable") != sys.executable:
            conn.sendall(b"refused another-python\n")
            raise OSError("another Python")
    except (OSError, ValueError):
        for fd in fds.values():
            os.close(fd)
        conn.close()
        return None
    pid = os.fork()
    if pid == 0:  # the job
        try:
            listener, selector, wake_r, wake_w = server_fds
            selector.close()
            listener.close()
            os.close(wake_r)
            os.close(wake_w)
            for other in jobs.values():
                other.close()
            _run_job(conn, request, fds)
        finally:
            os._exit(1)
    for fd in fds.values():
        os.close(fd)
    try:
        conn.sendall(f"pid {pid}\n".encode())
    except OSError:
        pass
    return pid


def _run_job(conn, request, fds):
    """In the forked process: become the job, run its script, exit with its status."""
    global _IN_JOB
    _IN_JOB = True
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target in (0, 1, 2):
        if target in fds:
            os.dup2(fds[target], target)
            os.close(fds[target])
        else:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, target)
            os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # TMPDIR is the job's
    script = request["script"]
    sys.argv = [script]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script` has it
    # The job's process gone (Snakemake cancelled the job): end this one too.
    threading.Thread(target=_end_with, args=(conn,), daemon=True).start()
    code = 1
    try:
        import runpy

        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - a closed stream must not stop the exit
                pass
        try:  # in case the server is gone; it tells too, when it reaps this process
            conn.sendall(f"exit {code}\n".encode())
        except OSError:
            pass
        os._exit(code)


def _end_with(conn):
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    # Serve from the module the scripts import, not from __main__, so that a
    # forked job's hand_over() finds _IN_JOB set.
    from cbma.job_server import serve as _serve

    _serve(int(sys.argv[1]), int(sys.argv[2]))
