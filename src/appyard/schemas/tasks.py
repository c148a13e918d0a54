"""Tasks (sessions), their logs and progress on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from appyard.domain.status import Status
from appyard.schemas.common import (
    MAX_OUTPUTS_BYTES,
    MAX_PARAMS_BYTES,
    Id,
    ShallowJson,
    Wire,
    capped_json,
)
from appyard.schemas.usage import TaskUsage

LogLevel = Literal["debug", "info", "warning", "error"]
#: a start's params and a task's outputs: shallow, and at most this many bytes of JSON
Params = Annotated[ShallowJson, capped_json(MAX_PARAMS_BYTES)]
Outputs = Annotated[ShallowJson, capped_json(MAX_OUTPUTS_BYTES)]


class TaskStart(Wire):
    """Body of ``POST /api/v1/tasks``: start one session of a module's app."""

    workspace_id: Id
    module_id: Id
    agent_id: Id | None = None  # None: any online agent of the team
    version: str | None = Field(default=None, max_length=100)  # None: the newest release
    params: Params = Field(default_factory=dict)  # {"state": {...}} or the bare state
    task_name: str = Field(default="run-from-python", max_length=200)
    description: str = Field(default="", max_length=2000)
    log_level: LogLevel = "info"
    idempotency_key: str | None = Field(default=None, max_length=200)
    #: what the session needs instead of its app's ``resources`` (each amount from 0 up to
    #: the app's ``resources.max``; ``agent_labels`` added to the app's): docs/apps.md
    resources: dict[str, Any] | None = None
    #: queue it even when no agent of the team could ever run it (else a 422 on ``resources``)
    queue_anyway: bool = False


class Progress(BaseModel):
    current: float = 0
    total: float | None = None
    message: str = ""


class TaskInfo(BaseModel):
    """The whole task record (what ``get_sessions`` hands out as ``details``)."""

    id: int
    team_id: int
    workspace_id: int
    user_id: int
    module_id: int
    app_id: int
    release_id: int
    version: str
    agent_id: int | None
    name: str
    description: str
    status: Status
    params: dict[str, Any]
    log_level: str
    attempt: int
    exit_code: int | None
    error: str | None
    progress: Progress | None
    outputs: dict[str, Any]
    ready_url: str | None = None
    #: the app said it is ready for calls (``AppSession.ready()``); only while it is
    #: ``started``: a stop or its end clears it
    ready: bool = False
    created_at: datetime
    consumed_at: datetime | None
    started_at: datetime | None
    #: when the app first said it was ready (kept after its end)
    ready_at: datetime | None = None
    #: always None: no task becomes ``deployed`` (kept so that older clients read the record)
    deployed_at: datetime | None = None
    terminating_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    #: the pipeline run and step this task is an attempt of (None: not a pipeline's)
    pipeline_run_id: int | None = None
    pipeline_step: str | None = None
    #: what it needs of its agent's machine (its app's ``resources`` as the start asked:
    #: ``gpus``, ``gpu_memory_mb``, ``memory_mb``, ``cpus``, ``agent_labels``; empty: nothing)
    resources: dict[str, Any] = Field(default_factory=dict)
    #: the GPUs of its agent it holds (``[{"index", "uuid"}]``), from its claim until its end
    gpus: list[dict[str, Any]] = Field(default_factory=list)
    #: while queued: why it waits (no agent free, the one named offline or busy, ...)
    wait_reason: str | None = None
    #: what the app used at the last sample its agent reported (None: none yet)
    usage: TaskUsage | None = None
    #: samples over the whole session, oldest first, at most 120 (coarser the longer it
    #: runs); empty in lists of tasks (``GET /tasks``, the team's stream)
    usage_history: list[TaskUsage] = Field(default_factory=list)


class SessionStarted(BaseModel):
    task_id: int
    user_id: int
    module_id: int
    app_id: int
    status: Status


class WaitResult(BaseModel):
    """Answer of the long-poll ``GET /tasks/{id}/wait``: the task now, and whether time ran out."""

    task: TaskInfo
    timed_out: bool


class StopResult(BaseModel):
    task_id: int
    status: Status


class LogLine(BaseModel):
    seq: int
    t: datetime
    level: LogLevel
    text: str


class LogPage(BaseModel):
    items: list[LogLine]
    next_seq: int  # pass back as ``after`` to read on
    ended: bool  # the task is terminal and every line has been shipped


class ProgressUpdate(Wire):
    current: float = Field(ge=0, allow_inf_nan=False)
    total: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    message: str = Field(default="", max_length=500)


class OutputsUpdate(Wire):
    outputs: Outputs


class ReadyUpdate(Wire):
    url: str | None = Field(default=None, max_length=500)  # the column holds 500

    @field_validator("url")
    @classmethod
    def _web_page(cls, url: str | None) -> str | None:
        """The web UI shows it as a link to the session's page: a ``javascript:`` or
        ``data:`` URL there would run in the UI's origin, with the viewer's token."""
        if url is None:
            return None
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme.lower() not in ("http", "https")
            or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in url)
        ):
            raise ValueError(
                "must be an http:// or https:// URL of the session's web page "
                "(with a host, no spaces or control characters)"
            )
        return url
