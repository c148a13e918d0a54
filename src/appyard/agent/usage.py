"""What the agent's apps use, on their way to the server: read from ``usage.json``, sent with
the reports that go anyway.

Each task's supervisor samples its app (``supervisor/usage.py``) into ``usage.json``; the agent
reads the samples it has not sent yet when it builds a poll (``UsageCollector.collect``: all its
running tasks in that one request) and when it reports an app's end (``final``), so no request
is made for a sample. The newest sample of each task gets the GPU memory and utilization of
the app's processes, asked of NVML through the inventory's seam (``gpu_usage``); nothing where
NVML is missing. Samples the server would refuse (a file an app without a sandbox could write)
are dropped here: a refused poll would take the agent down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from appyard.agent import inventory
from appyard.agent.state import read_json
from appyard.agent.supervisor.usage import USAGE_NAME
from appyard.schemas.usage import MAX_REPORT_SAMPLES, TaskUsageReport, UsageSample

if TYPE_CHECKING:
    from appyard.schemas.agents import TaskAssignment

log = logging.getLogger("appyard.agent")

#: the default seconds between two samples of an app (``--usage-interval``)
DEFAULT_INTERVAL_S = 5.0
_MB = 1024 * 1024


def memory_limit_mb(a: TaskAssignment) -> int:
    """The session's memory limit in MB (0: none): ``memory_mb`` of what the server placed it
    with (``resources``: the manifest's as its start raised or lowered them); from a server
    that sends no ``resources``, the manifest's own."""
    sent = "resources" in a.model_fields_set
    source = getattr(a, "resources", None) if sent else (a.config or {}).get("resources")
    if isinstance(source, dict):
        with contextlib.suppress(TypeError, ValueError):
            return max(0, int(source.get("memory_mb") or 0))
    return 0


def gpu_usage(pids: Iterable[int]) -> tuple[float, float] | None:
    """(GPU memory in MB, utilization in %, summed over GPUs) of these processes; None where
    NVML is missing or sees none of them."""
    nv = inventory._start_nvml()
    if nv is None:
        return None
    wanted = set(pids)
    memory = percent = 0.0
    seen = False
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid in wanted:
                    seen = True
                    memory += (p.usedGpuMemory or 0) / _MB
            busy: dict[int, float] = {}  # pid -> its highest utilization NVML has kept
            with contextlib.suppress(nv.NVMLError):  # no samples yet on this GPU
                for u in nv.nvmlDeviceGetProcessUtilization(h, 0):
                    if u.pid in wanted:
                        busy[u.pid] = max(busy.get(u.pid, 0.0), float(u.smUtil))
            seen = seen or bool(busy)
            percent += sum(busy.values())
    except nv.NVMLError as e:
        log.debug("GPU usage not read: %s", e)
        return None
    return (round(memory, 1), round(percent, 1)) if seen else None


def read_samples(task_dir: Path, after: int) -> tuple[list[UsageSample], int, list[int]]:
    """The samples of ``usage.json`` numbered past ``after``: (samples, the last number, the
    pids last seen); what the server would refuse is left out."""
    data = read_json(task_dir / USAGE_NAME)
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
        return [], after, []
    out: list[UsageSample] = []
    last = after
    for raw in data["samples"][-MAX_REPORT_SAMPLES:]:
        if not isinstance(raw, dict) or not isinstance(raw.get("n"), int) or raw["n"] <= after:
            continue
        last = max(last, raw["n"])
        fields: dict[str, Any] = {k: raw.get(k) for k in ("cpu_percent", "memory_mb")}
        with contextlib.suppress(ValidationError):
            out.append(UsageSample.model_validate({"sampled_at": raw.get("t"), **fields}))
    pids = [p for p in data.get("pids") or () if isinstance(p, int)]
    return out, last, pids


class UsageCollector:
    """Which samples of each task went to the server already (numbered by its supervisor)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[int, int] = {}  # task id -> last sample number the server has
        self._pending: dict[int, int] = {}  # task id -> last number in the poll on its way

    def report(self, task_id: int, task_dir: Path) -> TaskUsageReport | None:
        """The task's samples not sent yet, the newest with its GPU figures; None: none."""
        with self._lock:
            after = self._sent.get(task_id, 0)
        samples, last, pids = read_samples(task_dir, after)
        if not samples:
            return None
        gpu = gpu_usage(pids) if pids else None
        if gpu is not None:
            samples[-1] = samples[-1].model_copy(
                update={"gpu_memory_mb": gpu[0], "gpu_percent": gpu[1]}
            )
        with self._lock:
            self._pending[task_id] = last
        return TaskUsageReport(task_id=task_id, samples=samples)

    def collect(self, tasks: Iterable[tuple[int, Path]]) -> list[TaskUsageReport]:
        """The reports of these running tasks (task id, folder) for the next poll."""
        out = []
        for task_id, task_dir in tasks:
            r = self.report(task_id, task_dir)
            if r is not None:
                out.append(r)
        return out

    def sent(self, reports: Iterable[TaskUsageReport]) -> None:
        """The server took these reports (its answer came): they are not sent again."""
        with self._lock:
            for r in reports:
                n = self._pending.pop(r.task_id, None)
                if n is not None:
                    self._sent[r.task_id] = max(n, self._sent.get(r.task_id, 0))

    def forget(self, task_id: int) -> None:
        """The task's worker is done."""
        with self._lock:
            self._sent.pop(task_id, None)
            self._pending.pop(task_id, None)
