"""What a session uses, as its agent reports it: stored on the task with the report that goes.

The samples ride on the agent's poll (all its running tasks in one request) and on the report
of an app's end; nothing is sent or written per sample. A poll with usage costs one SELECT of
the reported tasks' histories and one executemany UPDATE (``usage``, ``usage_history``), so
10,000 running sessions spread over agents polling every 25 s cost about 400 row updates a
second, batched per agent. ``updated_at`` is left alone (a team's stream is not woken by
figures); the task's own watchers are (``keys.task``), so its page redraws its charts.

A report is checked at the edge (``schemas/usage.py``: every figure bounded, at most 120
samples per task and 1024 tasks, 422 naming the field). Here, samples are dropped without a
word: those dated more than a day ahead of the server's clock (an agent machine's clock is
wrong: refusing its poll would take the agent down), and those of a task this agent does not
hold or that no longer runs (a poll races with the task's end).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from appyard.domain.status import ON_AGENT
from appyard.schemas.usage import TaskUsageReport, merge_history, sample_dict
from appyard.server import keys
from appyard.server.db.models import utcnow
from appyard.server.notifier import emit
from appyard.server.services.task_rows import TASKS

#: how far ahead of the server's clock a sample may be (agents' clocks drift a little)
FUTURE_SLACK = timedelta(days=1)

_HISTORIES = select(TASKS.c.id, TASKS.c.usage_history).where(
    TASKS.c.id.in_(bindparam("ids", expanding=True)),
    TASKS.c.agent_id == bindparam("agent_id"),
    TASKS.c.status.in_([st.value for st in ON_AGENT]),
)
_STORE = (
    TASKS.update()
    .where(TASKS.c.id == bindparam("_id"))
    .values(usage=bindparam("_usage"), usage_history=bindparam("_history"))
)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def store_usage(s: Session, agent_id: int, reports: Sequence[TaskUsageReport]) -> None:
    """Add each report's samples to its task's usage, for the tasks this agent runs."""
    if not reports:
        return
    ahead = utcnow() + FUTURE_SLACK
    by_task: dict[int, list[dict[str, Any]]] = {}
    for r in reports:
        samples = [x for x in r.samples if _aware(x.sampled_at) <= ahead]
        by_task.setdefault(r.task_id, []).extend(sample_dict(x) for x in samples)
    db = s.connection()
    rows = db.execute(_HISTORIES, {"ids": sorted(by_task), "agent_id": agent_id}).all()
    updates = []
    for task_id, history in rows:
        merged = merge_history(history or [], by_task[task_id])
        if merged and merged != history:
            updates.append({"_id": task_id, "_usage": merged[-1], "_history": merged})
    if updates:
        db.execute(_STORE, updates)
        for u in updates:
            emit(s, keys.task(u["_id"]))
