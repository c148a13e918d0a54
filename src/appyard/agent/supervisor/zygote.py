"""The zygote: forks supervisors that wait for their jobs, one interpreter start-up per agent.

It starts once per agent (``--zygote-fd N``) and forks one supervisor per request. N is its
end of a ``SOCK_SEQPACKET`` socket pair with the agent; a request is the message ``fork``
carrying two descriptors (the read end of a job pipe, the write end of a status pipe), the
answer ``<pid> <start time>`` of a new supervisor that holds them and is in every way one
started with ``--job-fd --status-fd`` (its own session, its own wakeup pipe, nothing else of
the zygote's open). The zygote reaps what it forked; EOF on its socket (the agent exited or
died) ends it, and the supervisors it forked run on.
"""

from __future__ import annotations

import _socket  # the C module: ``socket`` imports enum and selectors, ~10 ms of a start
import os
import select
import sys

from . import signals
from .procs import forget_own_start_time, libc_prctl, proc_start_time, reap_children
from .signals import drain, sig, wakeup_pipe
from .start import know_own_locale, run_job

#: bytes of a C int: a descriptor in an ``SCM_RIGHTS`` message
_INT = 4


def recv_fds(ctl: _socket.socket, size: int, maxfds: int) -> tuple[bytes, list[int]]:
    """A message and the descriptors it carries: ``socket.recv_fds`` on the C socket."""
    msg, ancdata, _, _ = ctl.recvmsg(size, _socket.CMSG_LEN(maxfds * _INT))
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            end = len(data) - len(data) % _INT
            fds += (
                int.from_bytes(data[i : i + _INT], sys.byteorder, signed=True)
                for i in range(0, end, _INT)
            )
    return msg, fds


def _on_child(signum: int, frame: object) -> None:
    """The zygote's SIGCHLD handler: its wakeup pipe wakes its poll, which reaps."""


def fork_supervisor(job_fd: int, status_fd: int, ctl_fd: int, wake_r: int) -> int:
    """Fork a supervisor that holds ``job_fd`` and ``status_fd``; its pid (in the zygote).

    The child leaves the zygote's session, socket (``ctl_fd``), SIGCHLD handler and wakeup
    pipe behind and takes its own, with SIGTERM blocked until then (a stop sent to it that
    early waits for its own state, as in a started one); it never returns.
    """
    old = sig.pthread_sigmask(sig.SIG_BLOCK, [sig.SIGTERM])
    try:
        pid = os.fork()
    except BaseException:
        sig.pthread_sigmask(sig.SIG_SETMASK, old)
        raise
    if pid:
        sig.pthread_sigmask(sig.SIG_SETMASK, old)
        return pid
    code = 1
    try:
        os.setsid()
        os.close(ctl_fd)
        sig.signal(sig.SIGCHLD, sig.SIG_DFL)
        os.close(sig.set_wakeup_fd(-1))  # the zygote's wakeup pipe (its write end) ...
        os.close(wake_r)  # ... and its read end
        signals.stop[0] = False
        forget_own_start_time()  # (the zygote never read its own; a forked one reads its own)
        own_wake = wakeup_pipe()
        sig.pthread_sigmask(sig.SIG_SETMASK, old)
        code = run_job(job_fd, status_fd, own_wake)
    except BaseException as e:
        try:  # noqa: SIM105 - contextlib would cost imports at start
            print(f"supervisor: {e!r}", file=sys.stderr)
        except BaseException:  # nothing left to tell it to
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 - contextlib would cost imports at start
                stream.flush()
            except BaseException:  # a log that went away
                pass
        os._exit(code)


def zygote_main(ctl_fd: int, wake_r: int) -> int:
    """Fork a supervisor per request on ``ctl_fd`` until EOF."""
    # once for all the supervisors it forks
    libc_prctl()
    know_own_locale()
    ctl = _socket.socket(fileno=ctl_fd)
    os.set_inheritable(ctl_fd, False)
    sig.signal(sig.SIGCHLD, _on_child)
    poller = select.poll()
    poller.register(ctl.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                drain(wake_r)
                continue
            try:
                msg, fds = recv_fds(ctl, 16, 2)
            except OSError:
                return 0
            if not msg:
                return 0  # EOF: the agent exited or died
            try:
                if msg != b"fork" or len(fds) != 2:
                    ctl.send(b"error")
                    continue
                pid = fork_supervisor(fds[0], fds[1], ctl.fileno(), wake_r)
                ctl.send(b"%d %d" % (pid, proc_start_time(pid) or 0))
            except OSError:
                return 0  # it cannot fork any more, or the agent is gone: it asks no more
            finally:
                for f in fds:
                    os.close(f)
        reap_children()
