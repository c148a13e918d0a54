"""tasks: a session's usage history in chunks of its own, not one JSON value on the task

``tasks.usage_history`` (0013) was rewritten whole, about 12 KB, for every running session on
every agent's poll. Its points move to ``task_usage``: a row per poll's worth of points
(``task_id``, ``seq``: the index of its first point, ``points``: a list of ``[sampled_us,
cpu_percent, memory_mb, gpu_memory_mb, gpu_percent]``, the time in microseconds since the
epoch), so a poll appends a small row per session; ``tasks.usage_points`` counts the points, so
that a poll knows when to halve a history without reading it. An existing history becomes one
chunk; the downgrade joins them back.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-17 12:00:00.000000
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: tasks copied per statement
BATCH = 500

_FIGURES = ("cpu_percent", "memory_mb", "gpu_memory_mb", "gpu_percent")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(text: str) -> int:
    at = datetime.fromisoformat(text)
    return ((at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)) - EPOCH) // _US


def _chunk(history: Any) -> list[list[Any]]:
    """A 0013 history (a list of dicts) as one chunk's points."""
    if isinstance(history, str):  # SQLite may hand JSON back as text
        history = json.loads(history)
    return [[_us(h["sampled_at"]), *(h.get(f) for f in _FIGURES)] for h in history or ()]


def _history(points: list[list[Any]]) -> list[dict[str, Any]]:
    """A chunk's points as a 0013 history."""
    return [
        {"sampled_at": (EPOCH + p[0] * _US).isoformat(), **dict(zip(_FIGURES, p[1:], strict=True))}
        for p in points
    ]


def upgrade() -> None:
    chunks = op.create_table(
        "task_usage",
        sa.Column(
            "task_id",
            sa.Integer(),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("points", sa.JSON(), nullable=False),
    )
    # plain ADD COLUMN on SQLite too (no batch copy of ``tasks``: with foreign keys on, a copy
    # would cascade-delete the rows that point at a task)
    op.add_column(
        "tasks", sa.Column("usage_points", sa.Integer(), nullable=False, server_default="0")
    )
    tasks = sa.table(
        "tasks",
        sa.column("id", sa.Integer()),
        sa.column("usage_history", sa.JSON()),
        sa.column("usage_points", sa.Integer()),
    )
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(tasks.c.id, tasks.c.usage_history)
            .where(tasks.c.id > after, tasks.c.usage_history.is_not(None))
            .order_by(tasks.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1][0]
        made = {task_id: _chunk(history) for task_id, history in rows}
        made = {task_id: points for task_id, points in made.items() if points}
        if made:
            conn.execute(
                chunks.insert(), [{"task_id": k, "seq": 0, "points": p} for k, p in made.items()]
            )
            conn.execute(
                tasks.update()
                .where(tasks.c.id == sa.bindparam("_id"))
                .values(usage_points=sa.bindparam("_n")),
                [{"_id": k, "_n": len(p)} for k, p in made.items()],
            )
    op.drop_column("tasks", "usage_history")


def downgrade() -> None:
    op.add_column("tasks", sa.Column("usage_history", sa.JSON(), nullable=True))
    tasks = sa.table("tasks", sa.column("id", sa.Integer()), sa.column("usage_history", sa.JSON()))
    chunks = sa.table(
        "task_usage",
        sa.column("task_id", sa.Integer()),
        sa.column("seq", sa.Integer()),
        sa.column("points", sa.JSON()),
    )
    conn = op.get_bind()
    after = 0
    while True:
        ids = list(
            conn.execute(
                sa.select(chunks.c.task_id)
                .where(chunks.c.task_id > after)
                .group_by(chunks.c.task_id)
                .order_by(chunks.c.task_id)
                .limit(BATCH)
            ).scalars()
        )
        if not ids:
            break
        after = ids[-1]
        histories: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for task_id, points in conn.execute(
            sa.select(chunks.c.task_id, chunks.c.points)
            .where(chunks.c.task_id.in_(ids))
            .order_by(chunks.c.task_id, chunks.c.seq)
        ):
            if isinstance(points, str):
                points = json.loads(points)
            histories[task_id] += _history(points)
        conn.execute(
            tasks.update()
            .where(tasks.c.id == sa.bindparam("_id"))
            .values(usage_history=sa.bindparam("_h")),
            [{"_id": k, "_h": h} for k, h in histories.items()],
        )
    op.drop_column("tasks", "usage_points")
    op.drop_table("task_usage")
