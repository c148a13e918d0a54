"""agents: the server replica each agent's tunnel is connected to

``agents.tunnel_replica`` is that replica's ``APPYARD_REPLICA_URL`` while the tunnel is open
there; another replica relays requests into the agent's sessions to it (docs/tunnel.md).
Null: no tunnel, or a server run without ``APPYARD_REPLICA_URL`` (one replica).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-16 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("tunnel_replica", sa.String(500), nullable=True))


def downgrade() -> None:
    op.drop_column("agents", "tunnel_replica")
