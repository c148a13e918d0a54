"""What the app uses, sampled by its supervisor: CPU % and resident memory of all its processes.

Why here: the supervisor is the app's parent and a child subreaper, so every process the app
makes (bubblewrap's sandbox included, whose processes are visible from the supervisor's PID
namespace; daemons that left its group) is below it in ``/proc``; and it outlives the agent,
so a memory limit is kept while no agent watches.

Every ``interval_s`` the supervisor walks its descendants (``procs.descendants``), reads
``/proc/<pid>/stat`` of each (user + system CPU ticks, resident pages), and writes
``usage.json`` in the task folder (tmp + rename): the last ``FILE_SAMPLES`` samples, each
``{"n", "t", "cpu_percent", "memory_mb"}`` (``n`` counts up, so the agent sends each once),
and the pids it saw (the agent asks NVML about those). CPU % is the CPU time the processes
took since the previous sample over the wall time between (100 = one core); a process that
ended between two samples loses what it took since the previous one. Memory is the sum of
the processes' resident sets (pages shared between them counted once per process).

A memory limit (``memory_limit_mb``, from the manifest's ``resources.memory_mb``) is checked
at each sample: over it, ``exceeded`` holds the error, and the supervisor stops the app with
the stop protocol (``app.Supervisor.watch``).
"""

from __future__ import annotations

import os
import time

from .files import jobject, jvalue, now_iso, write_atomic
from .procs import descendants

USAGE_NAME = "usage.json"
#: samples kept in ``usage.json`` (the agent reads it at each poll, every 25 s at most)
FILE_SAMPLES = 32
_MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> tuple[int, int, int] | None:
    """(start time, CPU ticks (user + system), resident bytes) of ``pid``; None when gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # fields after the command name: [0] is field 3 (state), utime 14, stime 15, start 22, rss 24
    f = data[data.rfind(b")") + 2 :].split()
    try:
        return int(f[19]), int(f[11]) + int(f[12]), int(f[21]) * _PAGE
    except (IndexError, ValueError):
        return None


class Sampler:
    """The app's usage, sampled every ``interval_s``; ``exceeded`` once over the limit."""

    def __init__(self, task_dir: str, interval_s: float, memory_limit_mb: int) -> None:
        self.path = os.path.join(task_dir, USAGE_NAME)
        self.interval_s = interval_s
        self.limit_mb = memory_limit_mb
        #: (pid, start time) -> CPU ticks at the previous sample
        self.ticks: dict[tuple[int, int], int] = {}
        self.last = time.monotonic()
        #: when the next sample is due (monotonic); the first one a second in at most
        self.next_at = self.last + min(interval_s, 1.0)
        self.n = 0
        self.samples: list[str] = []
        #: the error of a memory limit exceeded (the app is being stopped for it)
        self.exceeded: str | None = None

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def sample(self) -> None:
        """One sample of every process below the supervisor, written to ``usage.json``."""
        now = time.monotonic()
        ticks: dict[tuple[int, int], int] = {}
        took = rss = 0
        pids = descendants()
        for pid in pids:
            got = proc_usage(pid)
            if got is None:
                continue
            start, t, r = got
            ticks[(pid, start)] = t
            took += t - self.ticks.get((pid, start), 0)
            rss += r
        wall = max(now - self.last, 1e-3)
        self.ticks, self.last = ticks, now
        self.next_at = now + self.interval_s
        cpu = round(max(0, took) / _TICK / wall * 100, 1)
        mem = round(rss / _MB, 1)
        self.n += 1
        self.samples.append(
            jobject({"n": self.n, "t": now_iso(), "cpu_percent": cpu, "memory_mb": mem})
        )
        del self.samples[:-FILE_SAMPLES]
        if self.limit_mb and mem > self.limit_mb and self.exceeded is None:
            self.exceeded = f"memory limit {self.limit_mb} MB exceeded (used {mem:.0f} MB)"
        body = ", ".join(self.samples)
        text = (
            f'{{"samples": [{body}], "pids": [{", ".join(map(str, pids))}], '
            f'"exceeded": {jvalue(self.exceeded)}}}'
        )
        try:  # noqa: SIM105 - contextlib would cost imports at start
            write_atomic(self.path, text)
        except OSError:  # a full disk: the limit is still kept, the figures wait
            pass
