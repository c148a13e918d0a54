"""Agents and the agent protocol (hello, long-poll, task events, log batches) on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from appyard.schemas.common import MAX_INT64, Id, ReportedText, Wire


class AgentCreate(Wire):
    name: str = Field(min_length=1, max_length=100)


class AgentInfo(BaseModel):
    id: int
    team_id: int
    name: str
    status: Literal["online", "offline"]
    slots: int
    running: int  # tasks held by the agent now
    hostname: str | None
    version: str | None
    #: how the agent runs apps: ``sandboxed``, ``user`` (as an unprivileged user of their
    #: own, no sandbox) or ``none`` (apps see what its user sees); None for an agent that
    #: never said (an older one)
    isolation: str | None = None
    last_seen_at: datetime | None
    created_at: datetime


class AgentCreated(AgentInfo):
    token: str  # shown once


class HeldTask(Wire):
    """A task the agent still holds after a restart, as it found it in its work folder."""

    task_id: Id
    running: bool  # the app still runs (re-adopted); False: it ended while the agent was away


class AgentHello(Wire):
    """Sent once on every (re)start, before the first poll."""

    slots: int = Field(ge=1, le=1024)
    hostname: str = Field(default="", max_length=255)
    version: str = Field(default="", max_length=100)
    held: list[HeldTask] = Field(default_factory=list)
    #: how it runs apps (``agent/sandbox.py``): ``sandboxed``, ``user`` or ``none``; an older
    #: agent says nothing
    isolation: Literal["sandboxed", "user", "none"] | None = None


class AgentWelcome(BaseModel):
    agent_id: int
    team_id: int
    ttl_s: float  # the server marks the agent lost after this long without a poll
    poll_timeout_s: float  # how long the server may hold a poll open
    # tasks of ``held`` the server no longer wants (stopped or lost meanwhile): stop them
    stop: list[int] = Field(default_factory=list)


class PollRequest(Wire):
    free_slots: int = Field(ge=0, le=1024)
    # every task id the agent holds: being prepared, running, or ended but not yet reported
    # (a held task missing here is requeued if it had not started, else marked error)
    running: list[Id] = Field(default_factory=list, max_length=4096)
    timeout_s: float = Field(default=25.0, ge=0, le=60)


class TaskAssignment(BaseModel):
    """Everything the agent needs to run one task."""

    task_id: int
    team_id: int
    workspace_id: int
    user_id: int
    module_id: int
    app_name: str
    release_sha256: str
    release_url: str  # relative to the server address
    config: dict[str, Any]
    state: dict[str, Any]
    context: dict[str, Any]
    token: str  # the task-scoped API token
    stop_grace_s: float
    log_level: str
    env: dict[str, str]  # target-derived variables: PROJECT_ID, DATASET_ID, FOLDER, FILE


class PollResponse(BaseModel):
    tasks: list[TaskAssignment] = Field(default_factory=list)
    stop: list[int] = Field(default_factory=list)  # task ids to stop now


class LogRecord(Wire):
    t: datetime
    level: Literal["debug", "info", "warning", "error"] = "info"
    text: ReportedText = Field(max_length=65536)


class LogBatch(Wire):
    """Lines of one task's log; ``offset`` makes a retried batch harmless.

    ``offset`` is the position (in the agent's log file) where the batch begins and
    ``end_offset`` where it ends; the server stores ``end_offset`` and ignores a batch
    whose ``end_offset`` it already has, so a batch is written at most once.
    """

    offset: int = Field(ge=0, le=MAX_INT64)
    end_offset: int = Field(ge=0, le=MAX_INT64)
    lines: list[LogRecord] = Field(max_length=5000)


class TaskEvent(Wire):
    """A status change reported by the agent that holds the task."""

    kind: Literal["started", "exited", "failed"]
    # started: the app process runs; exited: it ended (exit_code, or -N for signal N);
    # failed: it could not be started at all (fetch/install/spawn error in ``error``)
    pid: int | None = Field(default=None, ge=1, le=2**31 - 1)
    exit_code: int | None = Field(default=None, ge=-255, le=255)
    error: ReportedText | None = None
    # exited: the agent itself stopped the app (it was asked to stop its apps as it exits),
    # so the task ends ``stopped`` like a stop asked for through the API
    stopped: bool = False
    # exited/failed: the last batch of the log, stored (as ``POST /tasks/{id}/logs`` would)
    # in the same transaction, before the status changes: one request, not two, at the end
    logs: LogBatch | None = None
