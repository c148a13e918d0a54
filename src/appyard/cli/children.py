"""The processes ``appyard up`` runs (server, agent): started, watched, restarted, stopped.

``up`` is their parent but not their life-line: each child gets a signal of its own choosing
when ``up`` dies (Linux' parent-death signal), so that a crash of ``up`` ends the server and the
agent but leaves the apps running under their supervisors, to be re-adopted by the next ``up``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from appyard.cli._common import err_console
from appyard.errors import AppyardError, ServerStartError
from appyard.sdk import Api

#: lines of a child's stderr kept to explain its exit
TAIL_LINES = 20
#: a child that ends more often than this within RESTART_WINDOW_S is not started again
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0


def _die_with_parent(sig: int) -> None:
    """In the child, before exec: receive ``sig`` when ``up`` dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One long-running child of ``up``, started again the same way after a crash."""

    name: str
    argv: list[str]
    env: dict[str, str]
    #: what the child gets when ``up`` dies: the server SIGTERM (a clean stop), the agent
    #: SIGHUP (exit, leave the apps running)
    death_signal: int
    pass_fds: Sequence[int] = ()
    quiet: bool = False  # its output is not shown (``appyard demo``)
    #: keep the last lines of stderr (passed through unless quiet) to explain a failed start
    capture_stderr: bool = False
    #: what an exit code of this program means (``agent.exit_codes.meaning``), for messages
    explain_exit: Callable[[int], str | None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _reader: threading.Thread | None = None
    _exits: deque[float] = field(default_factory=deque)

    def start(self) -> None:
        quiet_out = subprocess.DEVNULL if self.quiet else None
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            pass_fds=self.pass_fds,
            start_new_session=True,  # a Ctrl-C in up's terminal reaches up alone
            preexec_fn=functools.partial(_die_with_parent, self.death_signal),
            stdout=quiet_out,
            stderr=subprocess.PIPE if self.capture_stderr else quiet_out,
        )
        if self.capture_stderr:
            self.tail.clear()
            self._reader = threading.Thread(
                target=self._read, name=f"{self.name}-stderr", daemon=True
            )
            self._reader.start()

    def _read(self) -> None:
        """Pass the child's stderr through, keeping its last lines."""
        assert self.proc is not None and self.proc.stderr is not None
        out = sys.stderr.buffer
        for line in self.proc.stderr:
            self.tail.append(line.decode(errors="replace").rstrip())
            if not self.quiet:
                with contextlib.suppress(OSError, ValueError):
                    out.write(line)
                    out.flush()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self, status: int) -> int:
        """Record the exit ``os.waitpid`` reaped; returns the exit code (-N: killed by N)."""
        assert self.proc is not None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self._reader is not None:
            self._reader.join(2.0)  # the last lines it wrote before dying
        return self.proc.returncode

    def exit_text(self, code: int) -> str:
        """``the agent exited with code 3 (the server refused it: ...)``."""
        said = f"the {self.name} exited with code {code}"
        why = self.explain_exit(code) if self.explain_exit is not None else None
        return f"{said} ({why})" if why else said

    def may_restart(self) -> bool:
        """False once it has ended more than MAX_RESTARTS times within RESTART_WINDOW_S."""
        now = time.monotonic()
        self._exits.append(now)
        while self._exits and now - self._exits[0] > RESTART_WINDOW_S:
            self._exits.popleft()
        return len(self._exits) <= MAX_RESTARTS

    def last_lines(self) -> str:
        return "\n".join(f"    {line}" for line in self.tail) or "    (it wrote nothing)"

    def stop(self, timeout: float, sig: int = signal.SIGTERM) -> None:
        """``sig``, then up to ``timeout`` seconds to exit, then SIGKILL."""
        if not self.alive():
            return
        assert self.proc is not None
        err_console.print(f"stopping the {self.name}...")
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            err_console.print(f"the {self.name} did not stop in {timeout:g} s; killing it")
            self.proc.kill()
            self.proc.wait()


def wait_for_server(address: str, server: Child, timeout: float) -> None:
    """Return once the server answers; raise, with its last lines, if it exits first.

    Both are pushed: the health request waits in the listening socket's backlog until the
    server accepts it, and the server's pidfd becomes readable the moment it exits.
    """
    done_r, done_w = os.pipe()
    failure: list[AppyardError] = []

    def probe() -> None:
        try:
            with Api(address, timeout=timeout) as client:
                client.health()
        except AppyardError as exc:
            failure.append(exc)
        finally:  # this thread owns the writing end: it may outlive the wait below
            with contextlib.suppress(OSError):
                os.write(done_w, b".")
            os.close(done_w)

    threading.Thread(target=probe, name="health", daemon=True).start()
    pidfd = os.pidfd_open(server.pid)
    try:
        ready, _, _ = select.select([done_r, pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
        os.close(done_r)
    if done_r in ready and not failure:
        return
    if not ready:
        raise ServerStartError(f"the server did not answer within {timeout:g} s")
    if server.proc is not None and server.proc.poll() is None and failure:
        raise failure[0]
    code = server.proc.wait() if server.proc is not None else None
    if server._reader is not None:
        server._reader.join(2.0)
    raise ServerStartError(
        f"the server exited with code {code} while starting; its last lines:\n{server.last_lines()}"
    )


def wait_any(children: Sequence[Child]) -> tuple[Child, int]:
    """Block until one of ``children`` exits (the kernel wakes us); which, and its code."""
    by_pid = {c.pid: c for c in children if c.proc is not None}
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid in by_pid:
            child = by_pid[pid]
            return child, child.exited(status)
