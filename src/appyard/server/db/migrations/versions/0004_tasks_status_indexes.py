"""tasks: indexes that lead with the status, so a list by status reads only that status's rows

- (status, team_id, id) replaces (status, team_id): a team's sessions of one status, newest
  first, straight from the index (SQLite's index ends with the rowid anyway; PostgreSQL's
  needs the id spelled out);
- (status, team_id, module_id, id): an app's sessions of one status (the seed's
  ``get_sessions(team_id, module_id, statuses=[started])``);
- (agent_id, status, stop_delivered) replaces (agent_id, status): an agent's poll finds the
  stops it has not been told of without reading every stopped session it ever ran.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_status_team_id", "tasks", ["status", "team_id", "id"])
    op.create_index(
        "ix_tasks_status_team_module_id", "tasks", ["status", "team_id", "module_id", "id"]
    )
    op.create_index("ix_tasks_agent_status_stop", "tasks", ["agent_id", "status", "stop_delivered"])
    op.drop_index("ix_tasks_status_team", table_name="tasks")
    op.drop_index("ix_tasks_agent_status", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_agent_status", "tasks", ["agent_id", "status"])
    op.create_index("ix_tasks_status_team", "tasks", ["status", "team_id"])
    op.drop_index("ix_tasks_agent_status_stop", table_name="tasks")
    op.drop_index("ix_tasks_status_team_module_id", table_name="tasks")
    op.drop_index("ix_tasks_status_team_id", table_name="tasks")
