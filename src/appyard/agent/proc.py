"""Process identity on Linux: a pid is only "the same process" with the same start time and boot.

Pids are reused, so every pid the agent keeps on disk comes with the start time from
``/proc/<pid>/stat`` (field 22) and the kernel's boot id. A process is signalled only through
a pidfd opened after that identity was checked, so a reused pid can never be hit.
"""

from __future__ import annotations

import os
import select
import signal
from functools import cache

from appyard.agent.supervisor.procs import proc_start_time

__all__ = ["boot_id", "open_pidfd", "pidfd_exited", "proc_start_time", "same_process", "send"]


@cache
def boot_id() -> str:
    """Changes on every reboot: pids and start times of another boot mean nothing."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:  # pragma: no cover - not Linux
        return ""


def same_process(pid: int | None, start: int | None, boot: str | None = None) -> bool:
    """True when ``pid`` still names the process that had start time ``start``."""
    if not pid or start is None or (boot is not None and boot != boot_id()):
        return False
    return proc_start_time(pid) == start


def open_pidfd(pid: int | None, start: int | None, boot: str | None = None) -> int | None:
    """A pidfd for the process ``(pid, start)``, or None when it is gone (or the pid reused).

    The start time is checked after the pidfd is opened: if it still matches, the pidfd
    refers to the right process, whatever happens to the pid later.
    """
    if not pid or start is None or (boot is not None and boot != boot_id()):
        return None
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    if proc_start_time(pid) != start:
        os.close(fd)
        return None
    return fd


def pidfd_exited(pidfd: int, timeout: float | None = 0.0) -> bool:
    """Wait up to ``timeout`` seconds (None: forever) for the process to exit."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return bool(poller.poll(ms))


def send(pidfd: int, signum: int) -> bool:
    """Signal through a pidfd; False when the process has already exited."""
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    return True
