"""Starting task supervisors and handing them their jobs: the way from argv and env to an app.

The agent never runs the app itself. Every supervisor is started the same way: with the
agent's own interpreter and ``-I -S`` (``supervisor_main.py``, so it starts in a few ms), in a
new session, SIGTERM blocked until its handler is in place, holding the read end of a job pipe
and the write end of a status pipe. It gets its task as one job on that pipe
(``supervisor/job.py``, the one format for what reaches an app), spawns the app, and tells the
agent its pid on the status pipe the moment it runs. A supervisor may be started ahead of its
task ("warm": ``start_waiting``, or forked by the ``Zygote``, one interpreter start-up per
agent) or on the spot ("cold": ``launch``); only when its job is written differs.
``launcher.Launcher`` keeps one waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from appyard.agent import proc
from appyard.agent.appspec import inherited_env
from appyard.agent.cache import PrepareError
from appyard.agent.handle import AppHandle
from appyard.agent.state import TaskDir
from appyard.agent.supervisor.job import Job, encode_job

#: what the agent runs: a stub that runs the supervisor package from its cached bytecode (a
#: script run by path is compiled on every start, which costs more than the interpreter's)
SUPERVISOR = Path(__file__).with_name("supervisor_main.py")
#: how long the supervisor may take to report that the app was spawned
SPAWN_REPORT_TIMEOUT_S = 60.0
#: how long a warm supervisor may take to read a job that does not fit in the pipe at once
WARM_JOB_TIMEOUT_S = 5.0
#: how long the zygote may take to answer a fork request
ZYGOTE_TIMEOUT_S = 5.0

#: ``on_supervisor(pid, start_time)``: the supervisor has its job (see ``launch``)
OnSupervisor = Callable[[int, int | None], None]


class SpawnError(PrepareError):
    """The supervisor could not start the app (the program cannot be executed, ...)."""


def job_for(
    td: TaskDir,
    argv: Sequence[str],
    env: Mapping[str, str],
    grace_s: float,
    sandboxed: bool = False,
    usage: tuple[float, int] = (0.0, 0),
) -> bytes:
    """The task's job, as written to its supervisor; SpawnError for what no program can get.

    ``sandboxed``: argv runs the app in a bubblewrap sandbox (``sandbox.Isolation.wrap``),
    which the supervisor's stop protocol must know. ``usage``: seconds between samples of
    what the app uses, and its memory limit in MB (0: none of either; ``supervisor/usage.py``)."""
    try:
        return encode_job(
            Job(
                str(td.supervisor_log),
                str(td.path),
                str(td.work),
                grace_s,
                argv,
                env,
                sandboxed,
                *usage,
            )
        )
    except ValueError as e:
        raise SpawnError(f"cannot start the app: {e}") from None


def make_task_files(td: TaskDir) -> None:
    """The app's working folder and ``supervisor.log``, made before any supervisor has the task."""
    try:
        td.work.mkdir(parents=True, exist_ok=True)
        os.close(os.open(td.supervisor_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
    except OSError as e:
        raise SpawnError(f"cannot start the task supervisor: {e}") from e


@contextlib.contextmanager
def sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM in this thread while a supervisor is forked from it.

    The child inherits the mask: a SIGTERM that reaches the supervisor before it installed
    its handler stays pending instead of killing it (the supervisor unblocks it first thing).
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _start(
    args: Sequence[str],
    pass_fds: Sequence[int],
    out: IO[bytes] | int = subprocess.DEVNULL,
    cwd: str | Path = "/",
) -> subprocess.Popen[bytes]:
    """A supervisor process (or the zygote): same interpreter and flags, a session of its own
    (no SIGINT/SIGHUP from the agent's terminal), SIGTERM blocked, the agent's environment
    without its own settings (the app's comes with the job), output to ``out``."""
    with sigterm_blocked():
        return subprocess.Popen(
            [sys.executable, "-I", "-S", str(SUPERVISOR), *args],
            env=inherited_env(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=True,
        )


@dataclass
class Waiting:
    """A supervisor that has started and waits for its job (and the agent's ends of its pipes).

    Started by us (``popen``, our child) or forked by the zygote (``popen`` None: the
    zygote's child, watched through ``pidfd`` and reaped by the zygote).
    """

    pid: int
    start: int | None
    job_w: int
    status_r: int
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int = -1
    #: ``discard`` had to kill it (it did not leave on its own)
    killed: bool = False

    def close_pipes(self) -> None:
        for fd in (self.job_w, self.status_r):
            if fd >= 0:
                os.close(fd)
        self.job_w = self.status_r = -1

    def exited(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return proc.pidfd_exited(self.pidfd)

    def take_pidfd(self) -> int:
        """Its pidfd, now the caller's to close (-1: none)."""
        fd, self.pidfd = self.pidfd, -1
        return fd

    def discard(self, timeout: float | None = None) -> None:
        """End it: EOF on its job pipe makes it exit; ``timeout``: wait that long, then kill.

        Without a timeout it is killed at once (it holds no app: it never got a whole job).
        """
        self.close_pipes()
        try:
            if timeout is not None and self._wait(timeout):
                return
            self.killed = True
            if self.popen is not None:
                with contextlib.suppress(OSError):
                    self.popen.kill()
            else:
                proc.send(self.pidfd, signal.SIGKILL)
            self._wait(None)
        finally:
            if self.pidfd >= 0:
                os.close(self.take_pidfd())

    def _wait(self, timeout: float | None) -> bool:
        if self.popen is None:
            return proc.pidfd_exited(self.pidfd, timeout)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


@contextlib.contextmanager
def _pipes() -> Iterator[tuple[int, int, int, int]]:
    """The job and status pipes of a supervisor being made: ``(job_r, job_w, status_r,
    status_w)``. The supervisor's ends are closed here once it has them; ours too if making it
    failed; our job end is left non-blocking (a job bigger than the pipe must not hang us)."""
    job_r, job_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        yield job_r, job_w, status_r, status_w
    except BaseException:
        os.close(job_w)
        os.close(status_r)
        raise
    finally:
        os.close(job_r)
        os.close(status_w)
    os.set_blocking(job_w, False)


def start_waiting(out: IO[bytes] | int = subprocess.DEVNULL, cwd: str | Path = "/") -> Waiting:
    """Start a supervisor that waits for its job; it holds only stdio (``out``, /dev/null for
    one started ahead: it has no task yet) and its two pipes."""
    with _pipes() as (job_r, job_w, status_r, status_w):
        args = ["--job-fd", str(job_r), "--status-fd", str(status_w)]
        popen = _start(args, (job_r, status_w), out, cwd)
    return Waiting(popen.pid, proc.proc_start_time(popen.pid), job_w, status_r, popen=popen)


class Zygote:
    """The process that forks supervisors waiting for their jobs (``--zygote-fd``): one
    interpreter start-up per agent instead of one per task. It is started like one of them."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen = _start(["--zygote-fd", str(theirs.fileno())], (theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(ZYGOTE_TIMEOUT_S)
        self.sock = ours
        self._lock = threading.Lock()

    def fork(self) -> Waiting:
        """A new waiting supervisor; OSError when the zygote cannot make one (it is gone)."""
        with _pipes() as (job_r, job_w, status_r, status_w):
            with self._lock:
                socket.send_fds(self.sock, [b"fork"], [job_r, status_w])
                reply = self.sock.recv(64).split()
            if len(reply) != 2:
                raise OSError("the task supervisor zygote did not fork")
            pid, start = int(reply[0]), int(reply[1])
            pidfd = proc.open_pidfd(pid, start)
            if pidfd is None:
                raise OSError(f"the forked task supervisor {pid} is gone already")
        return Waiting(pid, start, job_w, status_r, pidfd=pidfd)

    def close(self, timeout: float) -> None:
        """EOF on its socket makes it exit; killed if it has not after ``timeout`` s."""
        self.sock.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _write_all(fd: int, data: bytes, timeout: float) -> bool:
    """Write all of ``data`` to a non-blocking pipe; False if its reader is gone or too slow."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    poller: select.poll | None = None
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                return False
            continue
        except OSError:  # EPIPE: it has exited
            return False
        view = view[n:]
    return True


def give(
    td: TaskDir,
    waiting: Waiting,
    job: bytes,
    on_supervisor: OnSupervisor | None,
    timeout: float = WARM_JOB_TIMEOUT_S,
) -> AppHandle | None:
    """Hand ``job`` to a waiting supervisor and return once its app runs (as ``launch``).

    None when it did not take the whole job within ``timeout`` s (it is ended: nothing of the
    task was started).
    """
    if not _write_all(waiting.job_w, job, timeout):
        waiting.discard()
        return None
    os.close(waiting.job_w)
    waiting.job_w = -1
    status_r, waiting.status_r = waiting.status_r, -1
    return _handshake(
        td, waiting.pid, waiting.start, waiting.popen, status_r, on_supervisor, waiting.take_pidfd()
    )


def launch(
    td: TaskDir,
    argv: list[str],
    env: Mapping[str, str],
    grace_s: float,
    on_supervisor: OnSupervisor | None = None,
    sandboxed: bool = False,
    usage: tuple[float, int] = (0.0, 0),
) -> AppHandle:
    """Start a supervisor for the task, which starts the app; return once the app process exists.

    ``on_supervisor(pid, start_time)`` is called as soon as the supervisor has its job, before
    the app is spawned, so the caller can write the pid down while it waits. Raises SpawnError
    when the app cannot be started (once a supervisor had the job, it leaves ``exit.json`` in
    the task folder). This is the cold start; ``Launcher.launch`` does the same through a
    supervisor started ahead.
    """
    job = job_for(td, argv, env, grace_s, sandboxed, usage)
    make_task_files(td)
    return launch_cold(td, job, on_supervisor)


def launch_cold(td: TaskDir, job: bytes, on_supervisor: OnSupervisor | None) -> AppHandle:
    """``launch`` of an encoded job, the task's files made: a supervisor started for it now,
    its output in ``supervisor.log`` from its first byte."""
    try:
        with open(td.supervisor_log, "ab") as out:
            waiting = start_waiting(out, td.path)
    except OSError as e:
        raise SpawnError(f"cannot start the task supervisor: {e}") from e
    handle = give(td, waiting, job, on_supervisor, SPAWN_REPORT_TIMEOUT_S)
    if handle is None:
        raise SpawnError(_no_start(td, waiting.popen))
    return handle


def _read_report(fd: int, timeout: float) -> bytes:
    """The supervisor's one-line report; b"" if it exited (closing the pipe) without one."""
    data = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000) + 1):
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _no_start(td: TaskDir, popen: subprocess.Popen[bytes] | None) -> str:
    """Why a supervisor ended without a word about the app: the end of its own output."""
    tail = td.supervisor_log.read_text(errors="replace").strip().splitlines()[-5:]
    return "the task supervisor ended without starting the app: " + (
        " | ".join(tail)
        or (f"exit status {popen.returncode}" if popen is not None else "no report")
    )


def _handshake(
    td: TaskDir,
    pid: int,
    start: int | None,
    popen: subprocess.Popen[bytes] | None,
    r: int,
    on_supervisor: OnSupervisor | None,
    pidfd: int = -1,
) -> AppHandle:
    """Wait for the report of a supervisor that has its task (on ``r``, closed here).

    ``start``: its start time when already known, else read here. ``popen``: the supervisor
    is our child (else the zygote's, which reaps it). ``pidfd``: one already open for it,
    handed over to the handle.
    """
    try:
        if start is None:
            start = proc.proc_start_time(pid)
        if pidfd < 0:
            pidfd = os.pidfd_open(pid)
        handle = AppHandle(td, pid, start, pidfd, popen=popen)
        if on_supervisor is not None:
            on_supervisor(pid, start)
        line = _read_report(r, SPAWN_REPORT_TIMEOUT_S)
    finally:
        os.close(r)
    try:
        report = json.loads(line) if line.strip() else {}
    except ValueError:
        report = {}
    if isinstance(report.get("pid"), int):
        handle.app_pid = report["pid"]
        handle.app_start = report.get("start")
        return handle
    if line.strip():
        handle.wait(10)
    else:  # no report: the supervisor broke (or hangs); make sure it is gone
        if not handle.wait(5):
            proc.send(pidfd, signal.SIGKILL)
            handle.wait(5)
    handle.close()
    raise SpawnError(str(report.get("error") or _no_start(td, popen)))
