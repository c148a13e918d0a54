"""tasks: what a session uses (CPU, memory, GPU): the latest sample and a compact history

``tasks.usage`` is the last sample its agent reported (``{"sampled_at", "cpu_percent",
"memory_mb", "gpu_memory_mb", "gpu_percent"}``), ``tasks.usage_history`` at most 120 of them
over the whole session (``schemas/usage.py``: ``merge_history``); null: nothing reported. They
are written with the agent's poll (one UPDATE per running task per poll), never per sample.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-15 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMNs on SQLite too (no batch copy of ``tasks``: with foreign keys on, a
    # copy would cascade-delete the rows that point at a task)
    op.add_column("tasks", sa.Column("usage", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("usage_history", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "usage_history")
    op.drop_column("tasks", "usage")
