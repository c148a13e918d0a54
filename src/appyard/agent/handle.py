"""A task's supervisor as the agent holds it, launched or re-adopted after an agent restart.

The agent watches the *supervisor* (not the app) through a pidfd: it becomes readable the
instant the supervisor exits, works the same for one a previous agent launched (not our
child), and signals sent through it cannot hit a reused pid. Stop is SIGTERM to the
supervisor, which runs the grace period and the SIGKILL of the app's process group itself, so
a stop completes even if the agent dies right after asking for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from appyard.agent import proc
from appyard.agent.state import ExitInfo, TaskDir, TaskState


class AppHandle:
    """A launched (or re-adopted) task: its supervisor, watched through a pidfd."""

    def __init__(
        self,
        td: TaskDir,
        supervisor_pid: int,
        supervisor_start: int | None,
        pidfd: int,
        app_pid: int | None = None,
        app_start: int | None = None,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.dir = td
        self.supervisor_pid = supervisor_pid
        self.supervisor_start = supervisor_start
        self.pidfd = pidfd
        self.app_pid = app_pid
        self.app_start = app_start
        self._popen = popen
        self._ended = False

    def fileno(self) -> int:
        """The supervisor's pidfd: readable the moment it exits (for select/poll)."""
        return self.pidfd

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (None: forever) for the supervisor to end; True if it has."""
        if self._ended:
            return True
        if not proc.pidfd_exited(self.pidfd, timeout):
            return False
        self._reap()
        self._ended = True
        return True

    def _reap(self) -> None:
        """Collect the exit status of a supervisor we launched, so no zombie is left."""
        if self._popen is not None:
            self._popen.wait()
            return
        # a re-adopted supervisor is normally not our child; if it is, reap it
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.supervisor_pid, os.WNOHANG)

    def stop(self) -> bool:
        """Ask the supervisor to run the stop protocol; False if it has already exited."""
        if self.pidfd < 0 or self._ended:
            return False
        return proc.send(self.pidfd, signal.SIGTERM)

    def exit_info(self) -> ExitInfo | None:
        return self.dir.exit_info()

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def adopt(td: TaskDir, state: TaskState) -> AppHandle | None:
    """Re-attach to a supervisor a previous agent launched, if it still runs (pid + start)."""
    fd = proc.open_pidfd(state.supervisor_pid, state.supervisor_start, state.boot_id or None)
    if fd is None or state.supervisor_pid is None:
        return None
    return AppHandle(
        td, state.supervisor_pid, state.supervisor_start, fd, state.app_pid, state.app_start
    )


def kill_orphan(state: TaskState) -> bool:
    """SIGKILL the app group of a task whose supervisor vanished; True if there was one."""
    fd = proc.open_pidfd(state.app_pid, state.app_start, state.boot_id or None)
    if fd is None or state.app_pid is None:
        return False
    try:
        # the leader is alive (checked through the pidfd), so its pgid is still its own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.app_pid, signal.SIGKILL)
        proc.send(fd, signal.SIGKILL)
    finally:
        os.close(fd)
    return True
