"""team files get ids; users get a display name

``team_files``: one row per regular file of a team's files, so that the file has a stable
integer id (``GET /files/{id}``). The disk stays the truth of what exists; the rows are made
for the files already there (the server passes its files folder in the config's attributes as
``files_dir``; run without it, e.g. from the alembic command line, the rows are made the first
time a listing or an info call meets each file). ``users.name``: a display name beside the
login (``PATCH /users/{id}``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 05:00:00.000000
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: names the server gives its own temporary files (``file_paths.RESERVED_PREFIX``), as of now
_RESERVED_PREFIX = ".appyard-"
_BATCH = 500

_TEAM_FILES = sa.table(
    "team_files",
    sa.column("team_id", sa.Integer),
    sa.column("path", sa.Text),
    sa.column("path_key", sa.String),
    sa.column("size", sa.BigInteger),
    sa.column("mtime_ns", sa.BigInteger),
    sa.column("created_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
)


def upgrade() -> None:
    op.create_table(
        "team_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "team_id", sa.Integer(), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("path_key", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("team_id", "path_key"),
        # an id is never given again (SQLite would reuse the highest one once its row is gone)
        sqlite_autoincrement=True,
    )
    op.create_index("ix_team_files_team_id", "team_files", ["team_id"])
    op.add_column("users", sa.Column("name", sa.String(200), nullable=True))
    files_dir = context.config.attributes.get("files_dir")
    if files_dir is not None:
        _backfill(Path(files_dir))


def _backfill(files_dir: Path) -> None:
    """A row for every regular file already in a team's folder (of a team that exists)."""
    if not files_dir.is_dir():
        return
    bind = op.get_bind()
    teams = {int(t) for t in bind.execute(sa.text("SELECT id FROM teams")).scalars()}
    batch: list[dict[str, Any]] = []
    for team_id in sorted(teams):
        for path, st in _files_of(files_dir / str(team_id)):
            when = datetime.fromtimestamp(st.st_mtime, UTC).replace(tzinfo=None)
            batch.append(
                {
                    "team_id": team_id,
                    "path": path,
                    "path_key": hashlib.sha256(path.encode("utf-8")).hexdigest(),
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "created_at": when,
                    "updated_at": when,
                }
            )
            if len(batch) >= _BATCH:
                op.bulk_insert(_TEAM_FILES, batch)
                batch = []
    if batch:
        op.bulk_insert(_TEAM_FILES, batch)


def _files_of(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Team path and stat of each regular file under ``root``; no link is followed, the
    server's temporary files and names that are not UTF-8 are left out."""
    stack = [(root, "")]
    while stack:
        folder, team_path = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(_RESERVED_PREFIX):
                continue
            try:
                entry.name.encode("utf-8")
                st = entry.stat(follow_symlinks=False)
            except (OSError, UnicodeEncodeError):
                continue
            child = f"{team_path}/{entry.name}"
            if stat.S_ISDIR(st.st_mode):
                stack.append((Path(entry.path), child))
            elif stat.S_ISREG(st.st_mode):
                yield child, st


def downgrade() -> None:
    op.drop_column("users", "name")
    op.drop_index("ix_team_files_team_id", table_name="team_files")
    op.drop_table("team_files")
