"""What a session uses, as its agent reports it: stored on the task with the report that goes.

The samples ride on the agent's poll (all its running tasks in one request) and on the report
of an app's end; nothing is sent or written per sample. The task keeps its latest sample
(``tasks.usage``) and a history of at most ``HISTORY_CAP`` points in chunks (``task_usage``: a
row per report, its points as compact lists), with their count on the task
(``usage_points``). A poll with usage costs one SELECT of the reported tasks (locked, in id
order: a poll and an end report of one task may race), one INSERT of a chunk per task and one
UPDATE of the tasks, each batched. A history past its cap is halved (``schemas/usage.py``):
read, deleted and written again as one chunk, once every 60 samples or so (5 minutes at the
default interval). ``bench/usage_store.py`` measures it at 10,000 sessions.
``updated_at`` is left alone (a team's stream is not woken by figures); the task's own watchers
are (``keys.task``), so its page redraws its charts.

A report is checked at the edge (``schemas/usage.py``: every figure bounded, at most 120
samples per task and 1024 tasks, 422 naming the field). Here, samples are dropped without a
word: those dated more than a day ahead of the server's clock (an agent machine's clock is
wrong: refusing its poll would take the agent down), and those of a task this agent does not
hold or that no longer runs (a poll races with the task's end).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session

from appyard.domain.status import ON_AGENT
from appyard.schemas.usage import HISTORY_CAP, TaskUsageReport, UsageSample, halved, later_than
from appyard.server import keys
from appyard.server.db.models import TaskUsageChunk, utcnow
from appyard.server.notifier import emit
from appyard.server.services.task_rows import TASKS

#: how far ahead of the server's clock a sample may be (agents' clocks drift a little)
FUTURE_SLACK = timedelta(days=1)

CHUNKS = cast(Table, TaskUsageChunk.__table__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FIGURES = ("cpu_percent", "memory_mb", "gpu_memory_mb", "gpu_percent")

_HELD = (
    select(TASKS.c.id, TASKS.c.usage, TASKS.c.usage_points)
    .where(
        TASKS.c.id.in_(bindparam("ids", expanding=True)),
        TASKS.c.agent_id == bindparam("agent_id"),
        TASKS.c.status.in_([st.value for st in ON_AGENT]),
    )
    .order_by(TASKS.c.id)
    .with_for_update()  # (nothing on SQLite: its writers take turns)
)
_CHUNKS = (
    select(CHUNKS.c.task_id, CHUNKS.c.points)
    .where(CHUNKS.c.task_id.in_(bindparam("ids", expanding=True)))
    .order_by(CHUNKS.c.task_id, CHUNKS.c.seq)
)
_ONE_HISTORY = (
    select(CHUNKS.c.points).where(CHUNKS.c.task_id == bindparam("task_id")).order_by(CHUNKS.c.seq)
)
_DROP = CHUNKS.delete().where(CHUNKS.c.task_id.in_(bindparam("ids", expanding=True)))
_STORE = (
    TASKS.update()
    .where(TASKS.c.id == bindparam("_id"))
    .values(usage=bindparam("_usage"), usage_points=bindparam("_points"))
)


def _us(at: datetime) -> int:
    """``at`` in microseconds since the epoch; a time without a zone is UTC."""
    return ((at.replace(tzinfo=UTC) if at.tzinfo is None else at) - EPOCH) // _US


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _point(x: UsageSample) -> dict[str, Any]:
    """A sample as the history keeps it: its time in microseconds, figures rounded to 0.1."""
    return {
        "sampled_at": _us(x.sampled_at),
        "cpu_percent": round(x.cpu_percent, 1),
        "memory_mb": round(x.memory_mb, 1),
        "gpu_memory_mb": _round(x.gpu_memory_mb),
        "gpu_percent": _round(x.gpu_percent),
    }


def _latest(point: dict[str, Any]) -> dict[str, Any]:
    """A point as ``tasks.usage`` keeps it (JSON: an ISO time in UTC)."""
    return {**point, "sampled_at": (EPOCH + point["sampled_at"] * _US).isoformat()}


def _packed(points: list[dict[str, Any]]) -> list[list[Any]]:
    """Points as a chunk keeps them: a list each, the time first."""
    return [[p["sampled_at"], *(p[f] for f in _FIGURES)] for p in points]


def _unpacked(points: list[list[Any]]) -> list[dict[str, Any]]:
    return [{"sampled_at": p[0], **dict(zip(_FIGURES, p[1:], strict=True))} for p in points]


def store_usage(s: Session, agent_id: int, reports: Sequence[TaskUsageReport]) -> None:
    """Add each report's samples to its task's usage, for the tasks this agent runs."""
    if not reports:
        return
    ahead = _us(utcnow() + FUTURE_SLACK)
    by_task: dict[int, list[dict[str, Any]]] = {}
    for r in reports:
        points = [p for p in map(_point, r.samples) if p["sampled_at"] <= ahead]
        by_task.setdefault(r.task_id, []).extend(points)
    db = s.connection()
    rows = db.execute(_HELD, {"ids": sorted(by_task), "agent_id": agent_id}).all()
    chunks: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    full: dict[int, list[dict[str, Any]]] = {}  # tasks whose history is halved: their fresh
    for task_id, usage, count in rows:
        last = _us(datetime.fromisoformat(usage["sampled_at"])) if usage else None
        fresh = later_than(last, by_task[task_id])
        if not fresh:
            continue
        if count + len(fresh) > HISTORY_CAP:
            full[task_id] = fresh
        else:
            chunks.append({"task_id": task_id, "seq": count, "points": _packed(fresh)})
        updates.append(
            {"_id": task_id, "_usage": _latest(fresh[-1]), "_points": count + len(fresh)}
        )
    if full:
        kept: dict[int, list[dict[str, Any]]] = {task_id: [] for task_id in full}
        for task_id, points in db.execute(_CHUNKS, {"ids": sorted(full)}):
            kept[task_id] += _unpacked(points)
        db.execute(_DROP, {"ids": sorted(full)})
        for u in updates:
            if u["_id"] in full:
                history = halved(kept[u["_id"]] + full[u["_id"]])
                chunks.append({"task_id": u["_id"], "seq": 0, "points": _packed(history)})
                u["_points"] = len(history)
    if chunks:
        db.execute(CHUNKS.insert(), chunks)
    if updates:
        db.execute(_STORE, updates)
        for u in updates:
            emit(s, keys.task(u["_id"]))


def usage_history(db: Connection, task_id: int) -> list[dict[str, Any]]:
    """A task's history, oldest first (``TaskInfo.usage_history``)."""
    out = []
    for (points,) in db.execute(_ONE_HISTORY, {"task_id": task_id}):
        for p in _unpacked(points):
            out.append({**p, "sampled_at": EPOCH + p["sampled_at"] * _US})
    return out
