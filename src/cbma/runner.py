"""What every rule script shares: a log file, one-line errors, provenance sidecars.

Takes the ``snakemake`` object a ``script:`` receives (duck-typed: this module
does not import Snakemake).
"""

import sys
import time
import traceback
from pathlib import Path

from . import provenance
from .errors import CbmaError


class Job:
    """One rule job: logs to its ``log:`` file and writes sidecars for its outputs."""

    def __init__(self, smk):
        self.smk = smk
        self.started = time.time()
        self.log_path = Path(smk.log[0])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log_path, "w")  # noqa: SIM115 - closed in run()

    def log(self, message, echo=False):
        """Write a line to the job's log (and to the console if ``echo``)."""
        stamp = time.strftime("%H:%M:%S")
        self._fh.write(f"[{stamp}] {message}\n")
        self._fh.flush()
        if echo:
            print(f"[{self.smk.rule}] {message}", file=sys.__stderr__, flush=True)

    def params(self):
        return {k: v for k, v in self.smk.params.items()}

    def finish(self, outputs=None, seed=None, extra=None):
        """Write the provenance sidecar of each data output."""
        outputs = [o for o in (outputs if outputs is not None else self.smk.output)
                   if not str(o).endswith(".json")]
        sidecars = {provenance.sidecar_path(o) for o in outputs}
        made = [o for o in self.smk.output if str(o) not in sidecars]
        rec = provenance.record(self.smk.rule, list(self.smk.input), self.params(),
                                self.started, seed=seed, extra=extra, outputs=made)
        provenance.write_sidecars(outputs, rec)


def run(smk, main):
    """Run ``main(job)`` for a rule script; turn input errors into one line.

    A :class:`~cbma.errors.CbmaError` is written to the log and printed as a
    single ``cbma error:`` line; the job then fails, and Snakemake removes its
    partial outputs. Any other exception is a bug: its traceback goes to the
    log.
    """
    job = Job(smk)
    try:
        main(job)
    except CbmaError as exc:
        job.log(f"ERROR: {exc}")
        print(f"cbma error: {exc}", file=sys.__stderr__, flush=True)
        sys.exit(1)
    except Exception:
        job._fh.write(traceback.format_exc())
        print(f"cbma: unexpected error in rule {smk.rule}; see {job.log_path}",
              file=sys.__stderr__, flush=True)
        raise
    finally:
        job._fh.close()
