"""Runs one untrusted Python program under every guard this machine allows and prints one JSON verdict.

Started by `biglittle.sandbox.run_program` as `python -I -B supervisor.py CONFIG` with the program on
standard input. Standard library only: it runs in isolated mode, without biglittle on the path.

The supervisor (trusted) forks one child, which isolates itself and then runs the program:

  own process group        the supervisor kills it as a group
  pid namespace (root)     the child is process 1 of its own namespace: when it ends or is killed the
                           kernel kills every process it started, those that left its group too
  subreaper                processes orphaned on the way are handed to the supervisor, which kills and
                           reaps every one before it exits: nothing is left running, no zombie either
  network namespace (root) a loopback device that is down and nothing else: no network
  mount namespace (root)   a private tmpfs of bounded size as the working directory (gone with the
                           program), and empty read-only ones over /tmp, /var/tmp, /dev/shm, /run/lock
  user nobody (root)       file permissions apply to it, and RLIMIT_NPROC (which root ignores)
  rlimits                  address space, CPU seconds, file size, open files, processes; no core dumps
  audit hook               refuses writes outside the working directory, new processes, signals,
                           sockets and ctypes (a guard against accidents: the OS guards above hold
                           whatever Python code does)
  wall-clock limit         the supervisor kills the child (and so its namespace and group) at the limit

Verdicts: passed (the program ran to its end, whose last statement is the tests' check()), failed (an
AssertionError: a test failed), error (any other exception, a syntax error, an exit before the end, a
crash, memory exhausted), timeout (the wall-clock or the CPU limit). The child reports through a pipe
after the program returns; an exit that skips the report (sys.exit, os._exit, a signal) is an error.
Output: {"verdict", "detail", "seconds", "guards"}, or {"setup_error"} when the child could not isolate itself.
"""

import contextlib
import ctypes
import json
import math
import os
import pwd
import resource
import shutil
import signal
import sys
import tempfile
import time

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 1, 2, 4, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 8, 36, 38
LINUX_CAPABILITY_VERSION_3, CAP_DAC_READ_SEARCH = 0x20080522, 2
SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
POLL_S = 0.002
REAP_TIMEOUT_S = 5.0
DETAIL_CHARS = 300

PROCESS_EVENTS = {
    "os.system",
    "os.exec",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.spawn",
    "subprocess.Popen",
    "pty.spawn",
    "os.kill",
    "os.killpg",
}
BLOCKED_PREFIXES = ("socket.", "ctypes.")
# Audit events that change the file system, and which of their arguments are the paths changed.
PATH_EVENTS = {
    "open": (0,),  # only when opened for writing
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "os.rename": (0, 1),
    "os.link": (1,),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _Libc:
    """The C library's calls; one this system lacks (unshare, prctl, mount: Linux only) returns -1, a failure,
    so that the guard it would set up is skipped."""

    def __init__(self):
        self._library = ctypes.CDLL(None, use_errno=True)

    def __getattr__(self, name: str):
        return getattr(self._library, name, lambda *args: -1)


_libc = _Libc


def main() -> None:
    config = json.loads(sys.argv[1])
    program = sys.stdin.read()
    workdir = tempfile.mkdtemp(prefix=f"biglittle-sandbox-{config['run_id']}-")
    try:
        result = supervise(program, config, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


def supervise(program: str, config: dict, workdir: str) -> dict:
    """Forks the child, waits for it up to the wall-clock limit, kills and reaps everything it left."""
    libc = _libc()
    pid_namespace = bool(config["namespaces"]) and libc.unshare(CLONE_NEWPID) == 0  # for the next fork only
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    read_end, write_end = os.pipe()
    started = time.monotonic()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        run_child(program, config, workdir, write_end)  # never returns
    os.close(write_end)
    status, timed_out = wait_for(child, started + config["wall_s"])
    seconds = time.monotonic() - started
    kill_and_reap(child)
    reports = read_reports(read_end)
    if "setup_error" in reports[0]:
        return reports[0]
    guards = {**reports[0].get("guards", {}), "pid_namespace": pid_namespace}
    return {**verdict(status, timed_out, reports[-1]), "seconds": seconds, "guards": guards}


def wait_for(child: int, deadline: float) -> tuple[int, bool]:
    """(wait status, whether the wall-clock limit killed it)."""
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return status, False
        if time.monotonic() >= deadline:
            _kill_group(child)
            return os.waitpid(child, 0)[1], True
        time.sleep(POLL_S)


def _kill_group(pgid: int) -> None:
    for kill in (os.killpg, os.kill):  # the group; the child itself, should it have left its group
        with contextlib.suppress(ProcessLookupError):
            kill(pgid, signal.SIGKILL)


def _pids() -> list[str]:
    return [entry for entry in os.listdir("/proc") if entry.isdigit()] if os.path.isdir("/proc") else []


def children_of(parent: int) -> list[int]:
    children = []
    for entry in _pids():
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == parent:  # after "pid (comm) state": ppid
            children.append(int(entry))
    return children


def kill_and_reap(child: int) -> None:
    """Kills the child's group and every process handed to this subreaper, until none is left."""
    _kill_group(child)
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while time.monotonic() < deadline:
        for pid in children_of(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(POLL_S)
        except ChildProcessError:
            return


def read_reports(read_end: int) -> list[dict]:
    """The child's reports: its guards first, then its verdict (missing when it exited without one)."""
    os.set_blocking(read_end, False)
    chunks = []
    try:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    except BlockingIOError:  # a writer survived? it has been killed; what is there is all there is
        pass
    reports = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        try:
            reports.append(json.loads(line))
        except ValueError:
            continue
    return [report for report in reports if isinstance(report, dict)] or [{}]


def verdict(status: int, timed_out: bool, report: dict) -> dict:
    if timed_out:
        return {"verdict": "timeout", "detail": "the wall-clock limit was reached"}
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return {"verdict": "timeout", "detail": "the CPU-time limit was reached"}
    if "verdict" in report:
        return {"verdict": report["verdict"], "detail": report.get("detail", "")}
    if os.WIFSIGNALED(status):
        return {"verdict": "error", "detail": f"killed by signal {os.WTERMSIG(status)}"}
    return {"verdict": "error", "detail": f"exited with status {os.waitstatus_to_exitcode(status)} before the end"}


def _report(fd: int, message: dict) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


# --------------------------------------------------------------------------- the child


def run_child(program: str, config: dict, workdir: str, report_fd: int) -> None:
    try:
        guards = isolate(config, workdir)
    except BaseException as exc:  # the sandbox itself failed: the caller must hear of it, not score a program
        _report(report_fd, {"setup_error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    _report(report_fd, {"guards": guards})
    if config["audit_hook"]:
        sys.addaudithook(audit_hook(os.path.realpath(os.getcwd())))
    try:
        exec(compile(program, "solution.py", "exec"), {"__name__": "solution"})
    except AssertionError as exc:
        outcome = {"verdict": "failed", "detail": _describe(exc)}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the tests did not finish
        outcome = {"verdict": "error", "detail": _describe(exc)}
    else:
        outcome = {"verdict": "passed", "detail": ""}
    _report(report_fd, outcome)
    os._exit(0)


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    except Exception:
        text = type(exc).__name__
    return text[:DETAIL_CHARS]


def isolate(config: dict, workdir: str) -> dict:
    """Everything before the program runs; returns which guards hold. Raises when a guard that must hold fails."""
    libc = _libc()
    os.setpgid(0, 0)
    drop = os.geteuid() == 0 and config["drop_privileges"]
    uid, gid = _nobody() if drop else (os.getuid(), os.getgid())
    guards = {"net_namespace": False, "mount_namespace": False, "user": "nobody" if drop else str(uid)}
    if config["namespaces"]:
        guards["net_namespace"] = libc.unshare(CLONE_NEWNET) == 0
        guards["mount_namespace"] = libc.unshare(CLONE_NEWNS) == 0 and _private_temp(libc, config, workdir, uid, gid)
    if not guards["mount_namespace"]:
        os.chown(workdir, uid, gid)
        os.chdir(workdir)
    _set_limits(config, uid)
    if drop:
        _become(libc, uid, gid)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no set-user-ID program gives any privilege back
    supervisor = os.getppid()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    if os.getppid() != supervisor:  # the supervisor died in between
        os._exit(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.environ.clear()
    os.environ.update({"HOME": ".", "TMPDIR": ".", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    return guards


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _become(libc, uid: int, gid: int) -> None:
    """Switches to `uid` keeping one capability: reading (never writing) any file, so that a Python
    installed where that user may not look (under /root on these machines) can still import its modules."""
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _mount_tmpfs(libc, target: str, options: str, flags: int = 0) -> bool:
    return libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | flags, options.encode()) == 0


def _private_temp(libc, config: dict, workdir: str, uid: int, gid: int) -> bool:
    """In the new mount namespace: a fresh tmpfs as the working directory, and over the shared temp dirs."""
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:  # nothing of ours reaches the host
        return False
    size = config["max_dir_bytes"]  # all its files together; RLIMIT_FSIZE bounds each one
    if not _mount_tmpfs(libc, workdir, f"size={size},nr_inodes=1024,mode=0700,uid={uid},gid={gid}"):
        return False
    os.chdir(workdir)  # into the new tmpfs, before /tmp (which holds its path) is covered
    for path in SHARED_TEMP_DIRS:  # covered by empty read-only ones: writing there fails (TMPDIR is its own directory)
        covered = not os.path.isdir(path) or os.path.islink(path)
        if not covered and not _mount_tmpfs(libc, path, "size=4k,nr_inodes=16,mode=0755", MS_RDONLY):
            return False
    return True


def _processes_of(uid: int) -> int:
    count = 0
    for entry in _pids():
        try:
            with open(f"/proc/{entry}/status") as file:
                count += any(line.split()[1:2] == [str(uid)] for line in file if line.startswith("Uid:"))
        except OSError:
            continue
    return count


def _set_limits(config: dict, uid: int) -> None:
    cpu = math.ceil(config["wall_s"])
    limits = {
        resource.RLIMIT_AS: (config["memory_bytes"],) * 2,
        resource.RLIMIT_CPU: (cpu, cpu + 1),  # SIGXCPU, then SIGKILL
        resource.RLIMIT_FSIZE: (config["max_file_bytes"],) * 2,
        resource.RLIMIT_NOFILE: (config["max_open_files"],) * 2,
        # Counted per user over the whole machine: what that user runs already, plus the program's allowance.
        resource.RLIMIT_NPROC: (_processes_of(uid) + config["max_processes"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in limits.items():
        resource.setrlimit(which, (soft, hard))


def audit_hook(workdir: str):
    """Refuses, with PermissionError, what a test program never needs: see the module's docstring."""
    inside = workdir.rstrip(os.sep) + os.sep

    def outside(path) -> bool:
        if isinstance(path, int):  # an open file descriptor: only those the sandbox gave it exist
            return False
        try:
            resolved = os.path.realpath(os.path.join(workdir, os.fsdecode(path)))
        except (TypeError, ValueError):
            return True
        return not (resolved + os.sep).startswith(inside)

    def hook(event: str, args: tuple) -> None:
        if event in PROCESS_EVENTS or event.startswith(BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        positions = PATH_EVENTS.get(event)
        if positions is None:
            return
        if event == "open":
            _, mode, flags = args
            writing = bool(flags & WRITE_FLAGS) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
            if not writing:
                return
        for position in positions:
            if outside(args[position]):
                raise PermissionError(f"sandbox: {event} outside the working directory is not allowed")

    return hook


if __name__ == "__main__":
    main()
