"""agents: ``isolation``, how an agent runs apps

An agent says in its hello whether its apps run sandboxed (``sandboxed``) or not (``none``);
the agents page and ``appyard agent list`` show it. Existing agents have said nothing yet
(null) until their next hello.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("isolation", sa.String(20), nullable=True))


def downgrade() -> None:
    op.drop_column("agents", "isolation")
