"""Processes as the supervisor sees them: identity (start time), the subreaper, descendants."""

from __future__ import annotations

import os
import time
from _collections_abc import Callable  # loaded with os (collections.abc is not)

from .signals import sig

#: prctl option: orphaned descendants are reparented to us instead of init (Linux >= 3.4)
PR_SET_CHILD_SUBREAPER = 36
#: how long to wait for the SIGKILLed descendants to be reaped
REAP_S = 2.0


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): the pid's identity."""
    try:  # os.open/os.read: a buffered file costs 5 more system calls
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)  # one read: the file is made whole at the read (< 1 KiB)
    except OSError:
        return None
    finally:
        os.close(fd)
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])


_own_start: list[int | None] = []


def own_start_time() -> int | None:
    """This process's start time (read once: a supervisor reads it before its job)."""
    if not _own_start:
        _own_start.append(proc_start_time(os.getpid()))
    return _own_start[0]


def forget_own_start_time() -> None:
    """In a forked child: its start time is its own, not its parent's."""
    _own_start.clear()


_prctl: list[Callable[..., int] | None] = []
_subreaper = [False]


def libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` through ctypes, looked up once (the zygote does it for all it forks:
    a lookup in each forked supervisor costs it ~0.3 ms); None where there is none."""
    if not _prctl:
        try:
            import ctypes  # here: ~3 ms of imports, not on the way to a usage error

            _prctl.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (ImportError, OSError, AttributeError):  # not Linux, no ctypes: as before
            _prctl.append(None)
    return _prctl[0]


def become_subreaper() -> bool:
    """Make this process a child subreaper (once); False where that is not possible."""
    if not _subreaper[0]:
        prctl = libc_prctl()
        if prctl is not None:
            _subreaper[0] = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper[0]


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (of its main thread: bubblewrap has no other)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(k) for k in f.read().split()]
    except OSError:  # it vanished
        return []


def descendants() -> list[int]:
    """The pids of all our live (or zombie) descendants, parents before their children."""
    found: list[int] = []
    todo = ["self"]
    seen: set[str] = set()
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:  # it vanished
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = f.read().split()
            except OSError:
                continue
            for kid in kids:
                k = kid.decode()
                if k not in seen:
                    seen.add(k)
                    found.append(int(k))
                    todo.append(k)
    return found


def reap_children() -> bool:
    """Collect the exit status of every child that has one; True when we have no child left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def kill_descendants(deadline_s: float = REAP_S) -> None:
    """SIGKILL every process still below us and reap them; call it after the app was reaped.

    Orphans of a killed process come to us (we are a subreaper), so it goes round until no
    child is left or the deadline passes.
    """
    end = time.monotonic() + deadline_s
    while True:
        for pid in descendants():
            try:  # noqa: SIM105 - contextlib would cost imports at start
                os.kill(pid, sig.SIGKILL)
            except ProcessLookupError:
                pass
        if reap_children() or time.monotonic() >= end:
            return
        time.sleep(0.005)


def signal_group(pgid: int, signum: int) -> None:
    """Signal a process group that may be gone already."""
    try:  # noqa: SIM105 - contextlib would cost imports at start
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
