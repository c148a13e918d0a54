"""tasks: readiness is a flag, not a status

A serving app stays ``started`` while it serves, as in the reference; that it is ready for
calls (``AppSession.ready()``) is ``tasks.ready``, and when it first was, ``tasks.ready_at``
(the former ``deployed_at``). No task becomes ``deployed`` any more (the reference's status
for plugins, which appyard does not have): every task in it is made ``started`` and ready,
and its ``updated_at`` is moved on so that live views catch up with it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 12:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TASKS = sa.table(
    "tasks",
    sa.column("status", sa.String),
    sa.column("ready", sa.Boolean),
    sa.column("updated_at", sa.DateTime),
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored as naive UTC (``UTCDateTime``)


def upgrade() -> None:
    # a plain ADD COLUMN on SQLite too (no batch copy of ``tasks``: with foreign keys on, a
    # copy would cascade-delete the rows that point at a task)
    op.add_column(
        "tasks", sa.Column("ready", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    # RENAME COLUMN in place on both (SQLite 3.25+)
    op.execute("ALTER TABLE tasks RENAME COLUMN deployed_at TO ready_at")
    op.execute(
        _TASKS.update()
        .where(_TASKS.c.status == "deployed")
        .values(status="started", ready=True, updated_at=_now())
    )


def downgrade() -> None:
    op.execute(
        _TASKS.update()
        .where(_TASKS.c.status == "started", _TASKS.c.ready == sa.true())
        .values(status="deployed", updated_at=_now())
    )
    op.execute("ALTER TABLE tasks RENAME COLUMN ready_at TO deployed_at")
    # SQLite (3.35+) drops a column that no index or constraint uses in place, as PostgreSQL
    op.drop_column("tasks", "ready")
