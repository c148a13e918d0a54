"""agents: the machine's inventory and labels; ``agent_gpus``, one row per GPU

An agent reports its machine with each hello and, when it changed, with a poll: CPU cores,
memory (total and available), the disk of its work folder (free and total), its labels
(``--label KEY=VALUE``) and its GPUs. The figures and labels are columns of ``agents``; each
GPU (NVML index, UUID, model name, memory) is a row of ``agent_gpus``, kept while the GPU is
reported, so that a reservation can point at it. Existing agents have said nothing yet (null,
no GPUs) until their next hello.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-13 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_FIGURES = (
    ("cpus", sa.Integer),
    ("memory_mb", sa.BigInteger),
    ("memory_available_mb", sa.BigInteger),
    ("disk_free_mb", sa.BigInteger),
    ("disk_total_mb", sa.BigInteger),
)


def upgrade() -> None:
    # plain ADD COLUMNs on SQLite too (no batch copy of ``agents``: with foreign keys on, a
    # copy would cascade-delete the tokens and GPUs that point at an agent)
    for name, kind in _FIGURES:
        op.add_column("agents", sa.Column(name, kind(), nullable=True))
    op.add_column("agents", sa.Column("labels", sa.JSON(), nullable=True))
    op.add_column("agents", sa.Column("inventory_at", sa.DateTime(), nullable=True))
    op.create_table(
        "agent_gpus",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "agent_id",
            sa.Integer,
            sa.ForeignKey("agents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("gpu_index", sa.Integer, nullable=False),
        sa.Column("uuid", sa.String(96), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("memory_mb", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("agent_id", "uuid"),
    )


def downgrade() -> None:
    op.drop_table("agent_gpus")
    # SQLite (3.35+) drops a column that no index or constraint uses in place, as PostgreSQL
    for name in ("inventory_at", "labels", *(n for n, _ in reversed(_FIGURES))):
        op.drop_column("agents", name)
