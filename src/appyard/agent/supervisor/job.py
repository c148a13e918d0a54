"""A supervisor's job, both ends: what reaches the app, in one format, over one pipe.

The agent encodes (``encode_job``) and writes the job to the pipe it gives every supervisor,
started ahead of its task or on the spot; the supervisor reads (``read_job``) and decodes
(``decode_job``) it. On the pipe: ``<length>\\n``, then ``length`` bytes of NUL-terminated
fields: ``MAGIC, supervisor.log, task dir, cwd, grace, sandboxed, usage, N, argv[0..N),
KEY=VALUE...`` (``sandboxed`` is ``1`` when argv runs the app in a bubblewrap sandbox, else
``0``; ``usage`` is ``INTERVAL/LIMIT``: seconds between samples of what the app uses, 0 for
none, and its memory limit in MB, 0 for none: ``usage``'s ``Sampler``; none of
them can hold a NUL: they are paths, argv words and environment entries). Words and entries
are bytes as ``os.fsencode`` makes them and ``os.fsdecode`` takes them back, so that they
reach the app unchanged. A change to what reaches an app is a change here, at both ends.
"""

from __future__ import annotations

import os
import select
from _collections_abc import Mapping, Sequence  # loaded with os (collections.abc is not)

from . import signals
from .signals import drain

#: the first field of a job (its format's version)
JOB_MAGIC = b"appyard-job-3"
#: bytes read from the job pipe at once
JOB_READ_SIZE = 65536


class Job:
    """What a supervisor needs to run its task's app."""

    __slots__ = (
        "argv",
        "cwd",
        "env",
        "grace",
        "log",
        "memory_limit_mb",
        "sandboxed",
        "task_dir",
        "usage_s",
    )

    def __init__(
        self,
        log: str,
        task_dir: str,
        cwd: str,
        grace: float,
        argv: Sequence[str],
        env: Mapping[str, str],
        sandboxed: bool = False,
        usage_s: float = 0.0,
        memory_limit_mb: int = 0,
    ) -> None:
        #: the supervisor's own stdout and stderr (``supervisor.log``)
        self.log = log
        self.task_dir = task_dir
        #: the app's working folder
        self.cwd = cwd
        #: seconds between the SIGTERM and the SIGKILL of a stop
        self.grace = grace
        self.argv = argv
        #: the app's whole environment
        self.env = env
        #: argv is bubblewrap's, which runs the app in a sandbox of its own (``app``'s stop)
        self.sandboxed = sandboxed
        #: seconds between two samples of what the app uses (0: none)
        self.usage_s = usage_s
        #: the app is stopped once its processes' resident memory passes this (0: no limit)
        self.memory_limit_mb = memory_limit_mb


def encode_job(job: Job) -> bytes:
    """The job as the agent writes it to the pipe (paths made absolute here, in the agent).

    Raises ValueError for what exec refuses as well (no command, a NUL in an argument or in
    the environment, a variable name that is empty or holds ``=``): no supervisor could
    give it to an app.
    """
    if not job.argv:
        raise ValueError("no command to run")
    try:
        words = [os.fsencode(w) for w in job.argv]
        entries = []
        for key, value in job.env.items():
            k, v = os.fsencode(key), os.fsencode(value)
            if not k or b"=" in k or b"\0" in k or b"\0" in v:
                raise ValueError(f"the environment variable {key!r} cannot be given to a program")
            entries.append(k + b"=" + v)
        paths = [os.fsencode(os.path.abspath(p)) for p in (job.log, job.task_dir, job.cwd)]
        grace = repr(float(job.grace)).encode()
    except TypeError as e:
        raise ValueError(f"not a job: {e}") from None
    for i, word in enumerate(words):
        if b"\0" in word:
            raise ValueError(f"argument {i} of the command holds a NUL byte")
    if any(b"\0" in p for p in paths):
        raise ValueError("a path of the task holds a NUL byte")
    flag = b"1" if job.sandboxed else b"0"
    try:
        usage = b"%r/%d" % (max(0.0, float(job.usage_s)), max(0, int(job.memory_limit_mb)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a job: {e}") from None
    fields = [JOB_MAGIC, *paths, grace, flag, usage, b"%d" % len(words), *words, *entries]
    body = b"\0".join(fields) + b"\0"
    return b"%d\n%s" % (len(body), body)


def decode_job(body: bytes) -> Job:
    """The job in ``body`` (what follows the length line); ValueError when it is not one."""
    fields = body.split(b"\0")
    if len(fields) < 9 or fields[0] != JOB_MAGIC or fields[-1] != b"":
        raise ValueError("not a job")
    n = int(fields[7])
    if n < 1 or 8 + n > len(fields) - 1:
        raise ValueError("bad argv count in the job")
    usage_s, _, limit = fields[6].partition(b"/")
    env: dict[str, str] = {}
    for entry in fields[8 + n : -1]:
        key, eq, value = entry.partition(b"=")
        if not key or not eq:
            raise ValueError("bad environment entry in the job")
        env[os.fsdecode(key)] = os.fsdecode(value)
    log, task_dir, cwd = (os.fsdecode(f) for f in fields[1:4])
    argv = [os.fsdecode(w) for w in fields[8 : 8 + n]]
    return Job(
        log,
        task_dir,
        cwd,
        float(fields[4]),
        argv,
        env,
        fields[5] == b"1",
        float(usage_s),
        int(limit),
    )


def read_job(job_fd: int, wake_r: int) -> bytes | None:
    """Block until the whole job is read (its body); None on EOF before that (the agent is gone).

    A SIGTERM seen while the pipe is still empty is not a stop: the agent only stops a task
    after its job is written (a later one may re-adopt it, also after), so it is forgotten
    instead of stopping the next task's app the moment it starts.
    """
    poller = select.poll()
    poller.register(job_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    buf = b""
    need = -1
    while True:
        ready = dict(poller.poll())
        if job_fd in ready:
            chunk = os.read(job_fd, JOB_READ_SIZE)
            if not chunk:
                return None
            buf += chunk
            if need < 0 and b"\n" in buf:
                head, _, buf = buf.partition(b"\n")
                need = int(head)
            if 0 <= need <= len(buf):
                return buf[:need]
        elif wake_r in ready:
            drain(wake_r)
            if not buf and need < 0:
                signals.stop[0] = False
