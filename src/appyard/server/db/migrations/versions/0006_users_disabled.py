"""users: a ``disabled`` flag

An instance admin disables a user who leaves: the user signs in no more and no token acts as
it. Its user tokens are revoked when it is disabled; its task tokens (whose rows name no user)
are refused by the token lookup, which reads the flag of the token's user or of its task's
user in its one statement. Every existing user is enabled.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN on SQLite too (no batch copy of ``users``: with foreign keys on, a
    # copy would cascade-delete every row that points at a user)
    op.add_column(
        "users",
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # SQLite (3.35+) drops a column that no index or constraint uses in place, as PostgreSQL
    op.drop_column("users", "disabled")
