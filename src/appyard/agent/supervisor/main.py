"""The supervisor's start: signals first, then its arguments (``argparse`` costs imports)."""

from __future__ import annotations

import sys

from .signals import on_term, sig, wakeup_pipe
from .start import run_job

USAGE = "usage: --job-fd N --status-fd M | --zygote-fd N"


def parse_args(argv: list[str]) -> tuple[int, int] | int:
    """``--job-fd N --status-fd M``: (N, M); ``--zygote-fd N``: N. ValueError otherwise."""
    if len(argv) == 4 and argv[0] == "--job-fd" and argv[2] == "--status-fd":
        return int(argv[1]), int(argv[3])
    if len(argv) == 2 and argv[0] == "--zygote-fd":
        return int(argv[1])
    raise ValueError(USAGE)


def main(argv: list[str] | None = None) -> int:
    sig.signal(sig.SIGTERM, on_term)
    # a SIGTERM that waited for the unblock below must wake the poll for the job
    wake_r = wakeup_pipe()
    # the agent starts us with SIGTERM blocked, so a stop sent while this interpreter was
    # still starting waited (pending) for the handler above instead of killing us
    sig.pthread_sigmask(sig.SIG_UNBLOCK, [sig.SIGTERM])
    # the agent may die, or its terminal may close: none of that concerns us
    sig.signal(sig.SIGHUP, sig.SIG_IGN)
    sig.signal(sig.SIGINT, sig.SIG_IGN)
    try:
        fds = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"supervisor: {e}", file=sys.stderr)
        return 2
    if isinstance(fds, int):
        from .zygote import zygote_main  # only the zygote forks

        return zygote_main(fds, wake_r)
    return run_job(fds[0], fds[1], wake_r)
