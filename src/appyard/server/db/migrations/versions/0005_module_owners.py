"""modules: an owning team and a public flag; slug_owners: which team owns a slug's prefix

Until now the catalog was global: every user saw, downloaded and started every module, and any
developer could publish under any ``owner/`` prefix. From here a module is seen by the members
of its team, and by everyone when it is public. Existing modules get:

- ``appyard/...`` (the bundled apps): no team (the instance's own), public;
- any other: the first team (lowest id) in which its publisher is a developer or an admin,
  private; a module whose publisher is gone or in no such team gets no team and stays private
  (seen by instance admins only, who may publish it again with a team or as public).

Each prefix already used is claimed for the team of its oldest module (no team: the
instance's). ``appyard`` is reserved in code and gets no row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from appyard.server.db.models import UTCDateTime, utcnow

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RESERVED = "appyard"


def upgrade() -> None:
    # ALTER TABLE ... ADD COLUMN on SQLite too: a batch copy of ``modules`` would drop the
    # table, and with foreign keys on that deletes its releases, apps and tasks by cascade.
    # The key has no ON DELETE (SQLite's inline REFERENCES would not reflect one): teams are
    # never deleted; one that is must first give its modules away
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("modules")}  # kept by a downgrade
    if bind.dialect.name == "sqlite":
        if "team_id" not in have:
            op.execute("ALTER TABLE modules ADD COLUMN team_id INTEGER REFERENCES teams (id)")
    else:
        op.add_column("modules", sa.Column("team_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_modules_team_id", "modules", "teams", ["team_id"], ["id"])
    if "public" not in have:
        op.add_column(
            "modules",
            sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    op.create_index("ix_modules_team_id", "modules", ["team_id"])
    slug_owners = op.create_table(
        "slug_owners",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("owner"),
    )

    conn = bind
    modules = sa.table(
        "modules",
        sa.column("id", sa.Integer()),
        sa.column("slug", sa.String()),
        sa.column("publisher_id", sa.Integer()),
        sa.column("team_id", sa.Integer()),
        sa.column("public", sa.Boolean()),
    )
    members = sa.table(
        "members",
        sa.column("team_id", sa.Integer()),
        sa.column("user_id", sa.Integer()),
        sa.column("role", sa.String()),
    )
    first_team = (
        sa.select(sa.func.min(members.c.team_id))
        .where(
            members.c.user_id == modules.c.publisher_id,
            members.c.role.in_(("developer", "admin")),
        )
        .scalar_subquery()
    )
    bundled = modules.c.slug.like(f"{RESERVED}/%")
    conn.execute(sa.update(modules).where(bundled).values(team_id=None, public=True))
    conn.execute(sa.update(modules).where(~bundled).values(team_id=first_team, public=False))
    claims: dict[str, int | None] = {}
    rows = conn.execute(
        sa.select(modules.c.slug, modules.c.team_id).where(~bundled).order_by(modules.c.id)
    )
    for slug, team_id in rows:
        owner = str(slug).split("/", 1)[0].lower()[:64]
        claims.setdefault(owner, team_id)
    if claims:
        now = utcnow()
        op.bulk_insert(
            slug_owners,
            [{"owner": o, "team_id": t, "created_at": now} for o, t in claims.items()],
        )


def downgrade() -> None:
    op.drop_table("slug_owners")
    op.drop_index("ix_modules_team_id", table_name="modules")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops no column held by a foreign key without copying the table, and that copy
        # would cascade-delete the modules' releases, apps and tasks: the two columns stay
        # (nullable, defaulted), unused by 0004's code
        return
    op.drop_constraint("fk_modules_team_id", "modules", type_="foreignkey")
    op.drop_column("modules", "public")
    op.drop_column("modules", "team_id")
