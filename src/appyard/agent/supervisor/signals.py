"""The supervisor's signal state: the stop flag its SIGTERM handler sets, and its wakeup pipe."""

from __future__ import annotations

import os

try:  # the C module: ``signal`` would import enum (~5 ms)
    import _signal as sig
except ImportError:  # pragma: no cover - other Python implementations
    import signal as sig

__all__ = ["drain", "on_term", "sig", "stop", "wakeup_pipe"]

#: set by the SIGTERM handler, installed first thing so an early stop is never lost
stop = [False]


def on_term(signum: int, frame: object) -> None:
    stop[0] = True


def wakeup_pipe() -> int:
    """A pipe the C signal handler writes to, so that a poll wakes up on a signal; its read end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    sig.set_wakeup_fd(wake_w)
    return wake_r


def drain(fd: int) -> None:
    """Read a non-blocking pipe empty."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
