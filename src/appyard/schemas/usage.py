"""What a session uses (CPU, memory, GPU), as its agent reports it and as a task shows it.

The agent sends samples with its poll (``PollRequest.usage``) and with the report of the app's
end (``TaskEvent.usage``); the server keeps the latest on the task (``TaskInfo.usage``) and a
compact history (``TaskInfo.usage_history``): at most ``HISTORY_CAP`` samples over the whole
session, halved by merging neighbours whenever it would grow past the cap (``merge_history``).
A hostile agent or app may send junk: every figure is bounded, and more is a 422 naming it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from appyard.schemas.common import Id, Wire

#: samples in one report of one task (an agent sends those it has not sent yet)
MAX_REPORT_SAMPLES = 120
#: tasks' reports in one poll (an agent holds at most 1024 slots)
MAX_REPORTS = 1024
#: samples a task keeps: the whole session, coarser the longer it runs
HISTORY_CAP = 120
#: the largest memory figure in MB (1 EiB) and CPU % (65,536 cores), GPU % (64 GPUs)
MAX_MB = 2**40
MAX_CPU_PERCENT = 100.0 * 65536
MAX_GPU_PERCENT = 100.0 * 64


class UsageSample(Wire):
    """One sample of all the app's processes (100 % CPU = one core busy)."""

    sampled_at: datetime
    cpu_percent: float = Field(ge=0, le=MAX_CPU_PERCENT, allow_inf_nan=False)
    #: resident memory, summed over the app's processes
    memory_mb: float = Field(ge=0, le=MAX_MB, allow_inf_nan=False)
    #: GPU memory and utilization of the app's processes; None where no GPU is read
    gpu_memory_mb: float | None = Field(default=None, ge=0, le=MAX_MB, allow_inf_nan=False)
    gpu_percent: float | None = Field(default=None, ge=0, le=MAX_GPU_PERCENT, allow_inf_nan=False)


class TaskUsageReport(Wire):
    """The samples of one task the agent has not sent before, oldest first."""

    task_id: Id
    samples: list[UsageSample] = Field(min_length=1, max_length=MAX_REPORT_SAMPLES)


def _mean(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return round((a + b) / 2, 1)


def _peak(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two neighbouring samples as one: at the later's time, mean CPU and GPU %, peak memory
    (a chart of a long session still shows how high memory went)."""
    return {
        "sampled_at": b["sampled_at"],
        "cpu_percent": _mean(a["cpu_percent"], b["cpu_percent"]),
        "memory_mb": _peak(a["memory_mb"], b["memory_mb"]),
        "gpu_memory_mb": _peak(a.get("gpu_memory_mb"), b.get("gpu_memory_mb")),
        "gpu_percent": _mean(a.get("gpu_percent"), b.get("gpu_percent")),
    }


def later_than(last: Any, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples of ``new`` dated after ``last`` (``None``: none yet), in time order, each
    time once: a poll sent again, or samples older than those kept, add nothing. Times compare
    as they are given (ISO texts in UTC, or microseconds), alike on both sides."""
    out = []
    for s in sorted(new, key=lambda d: d["sampled_at"]):
        if last is None or s["sampled_at"] > last:
            out.append(s)
            last = s["sampled_at"]
    return out


def halved(history: list[dict[str, Any]], cap: int = HISTORY_CAP) -> list[dict[str, Any]]:
    """``history`` at most ``cap`` long: past it, neighbours are merged pairwise (``_merged``)
    until it fits, so it keeps covering the whole session with between cap/2 and cap points."""
    out = history
    while len(out) > cap:
        # an odd one out is the newest: kept as it is
        out = [_merged(out[i], out[i + 1]) for i in range(0, len(out) - 1, 2)] + (
            [out[-1]] if len(out) % 2 else []
        )
    return out


def merge_history(
    history: list[dict[str, Any]], new: list[dict[str, Any]], cap: int = HISTORY_CAP
) -> list[dict[str, Any]]:
    """``history`` with the samples of ``new`` later than its last appended, at most ``cap``."""
    last = history[-1]["sampled_at"] if history else None
    return halved(list(history) + later_than(last, new), cap)


class TaskUsage(BaseModel):
    """One sample as a task shows it (``TaskInfo.usage`` and ``usage_history``)."""

    sampled_at: datetime
    cpu_percent: float
    memory_mb: float
    gpu_memory_mb: float | None = None
    gpu_percent: float | None = None
