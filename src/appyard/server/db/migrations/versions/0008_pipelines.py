"""pipelines: saved pipelines, their runs, steps, attempts, and the outbox of ended tasks

- ``pipelines``: a team's pipeline documents, one row per content (sha256 of the canonical
  JSON; ``version`` its first 12 hex digits);
- ``pipeline_runs``, ``pipeline_steps``, ``pipeline_attempts``: a run, its steps, and each
  attempt of a step (or of one item of a ``for_each`` step) with its task;
- ``pipeline_outbox``: a run's task ended (written with the task's last transition), for the
  engine to advance the run;
- ``tasks.pipeline_run_id`` / ``tasks.pipeline_step``: the run and step a task belongs to.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(12), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column(
            "created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("team_id", "sha256"),
    )
    op.create_index("ix_pipelines_team_name_id", "pipelines", ["team_id", "name", "id"])
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "workspace_id",
            sa.Integer,
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "pipeline_id",
            sa.Integer,
            sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column(
            "created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("open_steps", sa.Integer, nullable=False),
        sa.Column("failed_steps", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("created_by", "idempotency_key"),
    )
    op.create_index("ix_pipeline_runs_team_id", "pipeline_runs", ["team_id", "id"])
    op.create_index("ix_pipeline_runs_team_status_id", "pipeline_runs", ["team_id", "status", "id"])
    op.create_index(
        "ix_pipeline_runs_team_pipeline_id", "pipeline_runs", ["team_id", "pipeline_id", "id"]
    )
    op.create_index("ix_pipeline_runs_due_at", "pipeline_runs", ["due_at"])
    op.create_table(
        "pipeline_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("items", sa.JSON, nullable=True),
        sa.Column("units_open", sa.Integer, nullable=False),
        sa.Column("units_error", sa.Integer, nullable=False),
        sa.Column("units_stopped", sa.Integer, nullable=False),
        sa.UniqueConstraint("run_id", "step"),
    )
    op.create_table(
        "pipeline_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "step_row_id",
            sa.Integer,
            sa.ForeignKey("pipeline_steps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item", sa.Integer, nullable=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column(
            "task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("timer_at", sa.DateTime, nullable=True),
        sa.Column("timed_out", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("ended_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_pipeline_attempts_run_status", "pipeline_attempts", ["run_id", "status"])
    op.create_index("ix_pipeline_attempts_run_timer", "pipeline_attempts", ["run_id", "timer_at"])
    op.create_index(
        "ix_pipeline_attempts_step_status_item",
        "pipeline_attempts",
        ["step_row_id", "status", "item"],
    )
    op.create_index("ix_pipeline_attempts_task_id", "pipeline_attempts", ["task_id"], unique=True)
    op.create_table(
        "pipeline_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("task_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_pipeline_outbox_run_id", "pipeline_outbox", ["run_id"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pipeline_run_id", sa.Integer, nullable=True))
        batch_op.add_column(sa.Column("pipeline_step", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("pipeline_step")
        batch_op.drop_column("pipeline_run_id")
    op.drop_index("ix_pipeline_outbox_run_id", table_name="pipeline_outbox")
    op.drop_table("pipeline_outbox")
    op.drop_index("ix_pipeline_attempts_task_id", table_name="pipeline_attempts")
    op.drop_index("ix_pipeline_attempts_step_status_item", table_name="pipeline_attempts")
    op.drop_index("ix_pipeline_attempts_run_timer", table_name="pipeline_attempts")
    op.drop_index("ix_pipeline_attempts_run_status", table_name="pipeline_attempts")
    op.drop_table("pipeline_attempts")
    op.drop_table("pipeline_steps")
    op.drop_index("ix_pipeline_runs_due_at", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_team_pipeline_id", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_team_status_id", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_team_id", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
    op.drop_index("ix_pipelines_team_name_id", table_name="pipelines")
    op.drop_table("pipelines")
