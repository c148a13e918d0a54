"""SQLAlchemy models: the tables of appyard.

Times are stored as naive UTC and handed out timezone-aware (``UTCDateTime``), so SQLite and
PostgreSQL behave alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: a disabled user signs in no more, and no token acts as it (its task tokens included:
    #: the token lookup reads this flag in its one statement); migration 0006
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: a display name beside the login (``PATCH /users/{id}``; migration 0010)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An API token, stored as its sha256; ``kind`` is user, agent or task."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Member(Base):
    __tablename__ = "members"
    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20))


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    slots: Mapped[int] = mapped_column(Integer, default=1)
    hostname: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(50))
    #: how it runs apps, as its last hello said: "sandboxed" or "none" (migration 0007)
    isolation: Mapped[str | None] = mapped_column(String(20))
    last_seen_at: Mapped[datetime | None] = mapped_column()
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: its machine as it last reported it, and its labels (migration 0011; null: never said)
    cpus: Mapped[int | None] = mapped_column(Integer)
    memory_mb: Mapped[int | None] = mapped_column(BigInteger)
    memory_available_mb: Mapped[int | None] = mapped_column(BigInteger)
    disk_free_mb: Mapped[int | None] = mapped_column(BigInteger)
    disk_total_mb: Mapped[int | None] = mapped_column(BigInteger)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    inventory_at: Mapped[datetime | None] = mapped_column()
    #: the replica its tunnel is connected to (its ``APPYARD_REPLICA_URL``), while connected
    #: (migration 0014; null: none, or a single replica that records nothing)
    tunnel_replica: Mapped[str | None] = mapped_column(String(500))


class AgentGpu(Base):
    """A GPU of an agent's machine, as its last report said (migration 0011). A row lives as
    long as the GPU (same UUID) is reported, so what refers to it (a reservation) stays."""

    __tablename__ = "agent_gpus"
    __table_args__ = (UniqueConstraint("agent_id", "uuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    #: NVML's index on its machine
    gpu_index: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(200))
    memory_mb: Mapped[int] = mapped_column(BigInteger)


class TeamFile(Base):
    """A regular file of a team's files, so that it has a stable id (migration 0010).

    The disk (``services/file_tree.py``) is the truth of what exists; this row gives the file at
    ``path`` its id, kept while a file is there (a new upload over it keeps it). ``sha256`` is
    of the content the upload wrote, valid while the file on disk still has ``size`` and
    ``mtime_ns``. ``path_key`` is the sha256 of ``path``: unique per team whatever the length.
    """

    __tablename__ = "team_files"
    #: an id is never given again (SQLite would reuse the highest one once its row is gone)
    __table_args__ = (UniqueConstraint("team_id", "path_key"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    path_key: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Module(Base):
    """An app of the catalog. Seen (listed, read, downloaded, started) by the members of
    ``team_id``, and by everyone when ``public``; a module of no team is the instance's own
    (the bundled ``appyard/`` apps) and public (migration 0005)."""

    __tablename__ = "modules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlugOwner(Base):
    """The owner prefix of slugs (``owner`` in ``owner/name``, lower case) and the team that
    claimed it by publishing under it first; no team: the instance's (an admin's) prefix."""

    __tablename__ = "slug_owners"
    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("module_id", "version"),
        UniqueConstraint("module_id", "sha256"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    module_id: Mapped[int] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    readme: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class App(Base):
    """A module installed in a team: made on its first start there."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("team_id", "module_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    module_id: Mapped[int] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_team_id_id", "team_id", "id"),
        Index("ix_tasks_team_module_id", "team_id", "module_id", "id"),
        # lists filtered by status (running sessions of a team or an app, queued work, the
        # agents' claim) read only the rows of that status, newest first (migration 0004)
        Index("ix_tasks_status_team_id", "status", "team_id", "id"),
        Index("ix_tasks_status_team_module_id", "status", "team_id", "module_id", "id"),
        # what an agent holds, and the stops it has not been told of yet
        Index("ix_tasks_agent_status_stop", "agent_id", "status", "stop_delivered"),
        # a team's live stream reads what changed since its cursor (GET /tasks/stream)
        Index("ix_tasks_team_updated", "team_id", "updated_at", "id"),
        UniqueConstraint("user_id", "idempotency_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    module_id: Mapped[int] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))
    requested_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    log_level: Mapped[str] = mapped_column(String(10), default="info")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    pid: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ready_url: Mapped[str | None] = mapped_column(String(500))
    #: the app said it is ready for calls (``AppSession.ready()``) while it is ``started``; a
    #: stop or its end clears it, ``ready_at`` keeps when it first was (migration 0009)
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    log_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    log_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consumed_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    ready_at: Mapped[datetime | None] = mapped_column()
    terminating_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the pipeline run and step this task is an attempt of (migration 0008); no foreign key:
    #: a task outlives nothing of its run, and the run's attempts point at it
    pipeline_run_id: Mapped[int | None] = mapped_column(Integer)
    pipeline_step: Mapped[str | None] = mapped_column(String(100))
    #: what it needs of its agent's machine (``domain/resources.py``: ``Need``; null: nothing)
    #: and the GPUs its claim gave it (``[{"index", "uuid"}]``); migration 0012
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gpus: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    #: what the app uses: the last sample its agent reported (migration 0013), and how many
    #: points its history holds (``TaskUsageChunk``, at most 120; migration 0015)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    usage_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TaskUsageChunk(Base):
    """Points of a session's usage history (``schemas/usage.py``), as one poll brought them:
    a poll appends a row per session instead of rewriting the whole history (migration 0015).
    ``points`` is a list of ``[sampled_us, cpu_percent, memory_mb, gpu_memory_mb,
    gpu_percent]``, ``sampled_us`` in microseconds since the epoch (UTC)."""

    __tablename__ = "task_usage"
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    #: the index of its first point in the history: chunks read in this order are the history
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    points: Mapped[list[list[float | None]]] = mapped_column(JSON)


class TaskLog(Base):
    __tablename__ = "task_logs"
    __table_args__ = (UniqueConstraint("task_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    t: Mapped[datetime] = mapped_column()
    level: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text)


class Project(Base):
    """An images project of a workspace; ``meta`` is its ProjectMeta (classes and tags)."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(20), default="images")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    """An image of a dataset: its file is ``images/<sha256[:2]>/<sha256>``.

    ``annotation`` is the whole Annotation JSON (deferred: lists never load it); ``tags``,
    ``objects_count`` and ``usage`` (``{"classes": {name: n}, "tags": {name: n}}``) are kept
    from it on every write, so listings and meta checks read small columns only.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name"),
        Index("ix_images_dataset_id_id", "dataset_id", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    mime: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    annotation: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    objects_count: Mapped[int] = mapped_column(Integer, default=0)
    usage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pipeline(Base):
    """A saved pipeline: one version of a document, named by its content (migration 0008).

    ``sha256`` is of the canonical JSON of the parsed document; ``version`` its first 12 hex
    digits. The same content saved again is the same row.
    """

    __tablename__ = "pipelines"
    __table_args__ = (
        UniqueConstraint("team_id", "sha256"),
        Index("ix_pipelines_team_name_id", "team_id", "name", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(12))
    sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PipelineRun(Base):
    """A run of a pipeline. Only the engine (``services/pipeline_engine.py``) moves it, under
    its row lock. ``open_steps`` / ``failed_steps`` count its steps not ended yet and those
    ended failed (not ``continue_on_failure``), so that a step's end costs no read of the
    others; ``due_at`` is the earliest time one of its timers (a retry's backoff, a step's
    timeout) is due (indexed: the engine sleeps until the earliest one)."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (
        Index("ix_pipeline_runs_team_id", "team_id", "id"),
        Index("ix_pipeline_runs_team_status_id", "team_id", "status", "id"),
        Index("ix_pipeline_runs_team_pipeline_id", "team_id", "pipeline_id", "id"),
        Index("ix_pipeline_runs_due_at", "due_at"),
        UniqueConstraint("created_by", "idempotency_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    open_steps: Mapped[int] = mapped_column(Integer, default=0)
    failed_steps: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PipelineStep(Base):
    """A step of a run. A ``for_each`` step keeps its items (resolved when it started) and
    counts its units (items; a plain step has one) not ended, ended in error, stopped."""

    __tablename__ = "pipeline_steps"
    __table_args__ = (UniqueConstraint("run_id", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    items: Mapped[list[Any] | None] = mapped_column(JSON)
    units_open: Mapped[int] = mapped_column(Integer, default=0)
    units_error: Mapped[int] = mapped_column(Integer, default=0)
    units_stopped: Mapped[int] = mapped_column(Integer, default=0)


class PipelineAttempt(Base):
    """One attempt of a step (of one item of a ``for_each`` step): ``queued`` (an item waiting
    for a ``max_parallel`` place) or ``pending`` (its start is due at ``timer_at``: a retry
    after its backoff), then ``running`` with its task (``timer_at``: its timeout, if any),
    then ``finished``, ``error``, ``stopped``, ``timeout``, or ``cancelled`` (the run was
    stopped before it started). A run's next timer is the least ``timer_at`` of its attempts:
    one index seek."""

    __tablename__ = "pipeline_attempts"
    __table_args__ = (
        Index("ix_pipeline_attempts_run_status", "run_id", "status"),
        Index("ix_pipeline_attempts_run_timer", "run_id", "timer_at"),
        Index("ix_pipeline_attempts_step_status_item", "step_row_id", "status", "item"),
        Index("ix_pipeline_attempts_task_id", "task_id", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step_row_id: Mapped[int] = mapped_column(ForeignKey("pipeline_steps.id", ondelete="CASCADE"))
    item: Mapped[int | None] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    timer_at: Mapped[datetime | None] = mapped_column()
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()


class PipelineOutbox(Base):
    """A task of a run ended: written in the same transaction as the task's last transition
    (``task_rows.moved``), drained by the engine, which advances the run and deletes it."""

    __tablename__ = "pipeline_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "Agent",
    "App",
    "Base",
    "Dataset",
    "Image",
    "Member",
    "Module",
    "Pipeline",
    "PipelineAttempt",
    "PipelineOutbox",
    "PipelineRun",
    "PipelineStep",
    "Project",
    "Release",
    "SlugOwner",
    "Task",
    "TaskLog",
    "Team",
    "TeamFile",
    "Token",
    "User",
    "Workspace",
    "utcnow",
]
