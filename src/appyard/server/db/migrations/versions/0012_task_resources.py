"""tasks: what a session needs of its agent's machine, and the GPUs it holds

``tasks.resources`` is the session's need (its app's ``resources``, as the start raised or
lowered them: GPUs, GPU memory, memory, CPUs, agent labels; null: nothing asked), checked when
an agent claims it. ``tasks.gpus`` is what the claim gave it of its agent's GPUs (``[{"index",
"uuid"}]``, null: none): a GPU is held while a task that names it is on its agent, so a
session's end, its stop or the loss of its agent frees it with no step of its own.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-14 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMNs on SQLite too (no batch copy of ``tasks``: with foreign keys on, a
    # copy would cascade-delete the rows that point at a task)
    op.add_column("tasks", sa.Column("resources", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("gpus", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "gpus")
    op.drop_column("tasks", "resources")
