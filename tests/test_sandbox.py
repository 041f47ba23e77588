"""The code sandbox: what generated code may do to the machine, and how each guard holds on its own.

Every test runs real programs in real sandboxes (a second or two each at most). Tests with a guard
switched off (Limits(audit_hook=False), namespaces=False, drop_privileges=False) prove that the others
hold without it; those that need root's guards (namespaces, user nobody) are skipped elsewhere.
"""

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from biglittle.sandbox import VERDICTS, Limits, guards, run_program

FAST = Limits(wall_s=2.0)
NO_AUDIT = Limits(wall_s=2.0, audit_hook=False)  # the OS's guards alone
AUDIT_ONLY = Limits(wall_s=2.0, namespaces=False, drop_privileges=False)  # the audit hook alone
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and the switch to user nobody need root")
EACH_GUARD = [
    pytest.param(FAST, id="all-guards"),
    pytest.param(AUDIT_ONLY, id="audit-hook-alone"),
    pytest.param(NO_AUDIT, id="os-guards-alone", marks=needs_root),
]


def leftovers(run_id: str) -> list[int]:
    """Processes still running whose command line is the sandbox's (every fork of it shares the run id)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if run_id.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def zombies_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            count += fields.get("State", "").strip().startswith("Z") and fields["Uid"].split()[0] == str(uid)
    return count


def test_a_correct_program_passes_and_a_wrong_one_fails():
    good = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n", FAST)
    wrong = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5, 'add(2, 3)'\n", FAST)
    assert (good.verdict, good.passed) == ("passed", True)
    assert (wrong.verdict, wrong.detail, wrong.passed) == ("failed", "AssertionError: add(2, 3)", False)
    assert set(VERDICTS) == {"passed", "failed", "timeout", "error"}


@pytest.mark.parametrize(
    "program, detail",
    [
        ("import sys\nsys.exit(0)\nassert False\n", "SystemExit"),
        ("import os\nos._exit(0)\nassert False\n", "exited with status 0 before the end"),
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
        ("def f(:\n", "SyntaxError"),
        ("import ctypes\nctypes.string_at(0)\n", "killed by signal 11"),
    ],
    ids=["sys.exit", "os._exit", "interrupt", "syntax", "signal"],
)
def test_a_program_that_stops_before_its_end_does_not_pass(program, detail):
    """Passing means running to the end (the tests' check() is the last statement): an exit, even with
    status 0, before it is an error. The crash runs without the audit hook, which would refuse ctypes."""
    execution = run_program(program, NO_AUDIT if "ctypes" in program else FAST)
    assert execution.verdict == "error" and detail in execution.detail, execution


@pytest.mark.parametrize("limits", [FAST, Limits(wall_s=2.0, namespaces=False)], ids=["pid-namespace", "subreaper"])
def test_an_endless_loop_is_killed_with_every_process_it_started(limits):
    """A child in the program's group, and a grandchild that left the group with setsid(), both sleeping:
    gone after the timeout, through the pid namespace, or without one through the supervisor as subreaper."""
    program = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        time.sleep(600)\n"
        "    time.sleep(600)\n"
        "while True:\n"
        "    pass\n"
    )
    started = time.monotonic()
    execution = run_program(program, Limits(**{**limits.__dict__, "audit_hook": False}))
    assert execution.verdict == "timeout" and time.monotonic() - started < limits.wall_s + 3
    assert leftovers(execution.run_id) == []


def test_a_cpu_bound_program_is_stopped_by_the_cpu_limit_too():
    execution = run_program("while True:\n    pass\n", Limits(wall_s=1.0))
    assert execution.verdict == "timeout" and 0.9 < execution.seconds < 3


def test_a_sleeping_program_is_stopped_by_the_wall_clock_limit():
    started = time.monotonic()
    execution = run_program("import time\ntime.sleep(600)\n", Limits(wall_s=1.0))
    assert execution.verdict == "timeout" and time.monotonic() - started < 4


def test_unbounded_allocation_fails_within_the_memory_limit():
    program = (
        "blocks = []\n"
        "try:\n"
        "    while True:\n"
        "        blocks.append(bytearray(32 << 20))\n"
        "except MemoryError:\n"
        "    assert len(blocks) < 16, f'{len(blocks) * 32} MiB'  # the limit is 512 MiB\n"
        "    raise\n"
    )
    execution = run_program(program, Limits(wall_s=5.0, memory_bytes=512 << 20))
    assert execution.verdict == "error" and "MemoryError" in execution.detail, execution


def test_a_fork_bomb_is_contained_and_leaves_nothing_behind():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    zombies = zombies_of(65534)
    execution = run_program(bomb, Limits(wall_s=1.5, audit_hook=False))
    assert execution.verdict == "timeout" and leftovers(execution.run_id) == []
    assert zombies_of(65534) <= zombies  # every process reaped
    assert run_program("assert sum(range(10)) == 45\n", FAST).passed  # and the machine still runs programs


@pytest.mark.parametrize("limits", EACH_GUARD)
def test_the_number_of_processes_is_bounded(limits):
    """Forking is refused by the audit hook; without it RLIMIT_NPROC (as nobody when root) stops the forks."""
    program = (
        "import os, time\n"
        "forked = 0\n"
        "for _ in range(64):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    forked += 1\n"
        f"assert forked <= {limits.max_processes}, forked\n"
    )
    execution = run_program(program, Limits(**{**limits.__dict__, "wall_s": 5.0}))
    assert execution.passed, execution
    assert leftovers(execution.run_id) == []


@pytest.mark.parametrize("limits", EACH_GUARD)
def test_writes_outside_its_directory_are_refused(limits):
    """The audit hook refuses them; without it, /tmp is covered by a read-only tmpfs in the program's mount
    namespace and the home directory is not nobody's."""
    name = f"biglittle-escape-{uuid.uuid4().hex}"
    for target in (Path("/tmp") / name, Path.home() / name):
        execution = run_program(f"open({str(target)!r}, 'w').write('escaped')\n", limits)
        escaped = target.exists()
        target.unlink(missing_ok=True)
        assert execution.verdict == "error" and not escaped, (target, execution)
    inside = "open('mine.txt', 'w').write('fine')\nassert open('mine.txt').read() == 'fine'\n"
    assert run_program(inside, limits).passed  # its own directory is writable


@pytest.mark.parametrize("limits", EACH_GUARD)
def test_no_network(limits):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
        execution = run_program(program, limits)
        assert execution.verdict == "error", execution
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected


def test_files_it_writes_are_bounded_in_size():
    """RLIMIT_FSIZE alone (no mount namespace, whose tmpfs would be full first)."""
    program = "with open('big', 'wb') as f:\n    f.write(b'x' * (64 << 20))\n"
    execution = run_program(program, Limits(wall_s=5.0, max_file_bytes=1 << 20, namespaces=False))
    assert execution.verdict == "error" and not execution.passed, execution


@needs_root
def test_every_guard_holds_as_root():
    assert guards() == {"pid_namespace": True, "net_namespace": True, "mount_namespace": True, "user": "nobody"}
    assert run_program("import os\nassert os.getuid() != 0 and os.getcwd() != '/'\n", FAST).passed
