"""Running generated code: one program at a time, in a separate, isolated, resource-limited process.

    from biglittle.sandbox import run_program
    execution = run_program(source_code)       # Execution(verdict='passed' | 'failed' | 'timeout' | 'error', ...)

Nothing runs in the calling process: `supervisor.py` (a separate interpreter in isolated mode, in a
session of its own) forks a child that gives up what it can (namespaces, user nobody, rlimits, an
audit hook) and runs the program; the supervisor kills everything the program started when it ends
or at the time limit, and removes its directory. Its docstring lists every guard and where it holds.
A crash, a hang or a fork bomb costs the program its verdict, never the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import BigLittleError

SUPERVISOR = Path(__file__).with_name("supervisor.py")
VERDICTS = ("passed", "failed", "timeout", "error")
SUPERVISOR_GRACE_S = 30.0  # beyond the program's limit: the supervisor's own start, clean-up and reaping


@dataclass(frozen=True)
class Limits:
    """What one program may use. The guards can be switched off one at a time only so that tests can
    prove that each of the others holds on its own."""

    wall_s: float = 10.0  # wall-clock seconds (and CPU seconds, rounded up) before it is killed
    memory_bytes: int = 1 << 30  # address space of each of its processes
    max_processes: int = 16  # processes beyond those its user already runs
    max_file_bytes: int = 16 << 20  # size of any file it writes
    max_dir_bytes: int = 16 << 20  # everything it writes (with a mount namespace)
    max_open_files: int = 64
    audit_hook: bool = True
    namespaces: bool = True
    drop_privileges: bool = True


@dataclass(frozen=True)
class Execution:
    verdict: str  # one of VERDICTS
    detail: str  # what failed: the exception, the signal, the limit
    seconds: float  # the program's wall time in the sandbox
    guards: dict = field(default_factory=dict)  # which guards held: namespaces, user
    run_id: str = ""  # in the supervisor's command line and directory name while it runs

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


def run_program(program: str, limits: Limits = Limits()) -> Execution:
    """Runs `program` (Python source) in the sandbox and returns its verdict; raises BigLittleError only
    when the sandbox itself cannot run (never because of what the program does)."""
    run_id = uuid.uuid4().hex[:12]
    config = json.dumps({**asdict(limits), "run_id": run_id})
    process = subprocess.Popen(
        [sys.executable, "-I", "-B", str(SUPERVISOR), config],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(program.encode(), timeout=limits.wall_s + SUPERVISOR_GRACE_S)
    except subprocess.TimeoutExpired:
        _kill(process)
        return Execution("timeout", "the sandbox's supervisor did not finish", limits.wall_s, run_id=run_id)
    except BaseException:  # Ctrl-C included: leave nothing running
        _kill(process)
        raise
    try:
        result = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
        raise BigLittleError(f"the code sandbox failed: {tail[0]}") from None
    if "setup_error" in result:
        raise BigLittleError(f"the code sandbox could not isolate a program: {result['setup_error']}")
    return Execution(result["verdict"], result["detail"], result["seconds"], result["guards"], run_id)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


@lru_cache(maxsize=1)
def guards() -> dict:
    """The guards that hold on this machine for this user (a trivial program run once)."""
    return run_program("pass").guards
