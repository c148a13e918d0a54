"""Agents and the agent protocol (hello, long-poll, task events, log batches) on the wire."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from appyard.schemas.common import MAX_INT64, Id, ReportedText, Wire
from appyard.schemas.usage import MAX_REPORTS, TaskUsageReport

# --- a machine's inventory: what an agent reports of its machine, and its labels -------------
#: caps on what an agent may report (a hostile one may send junk): more is a 422 naming the field
MAX_GPUS = 64
MAX_LABELS = 64
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 128
MAX_GPU_UUID = 96
MAX_GPU_NAME = 200
#: the largest figure in MB (memory, disk): 1 EiB
MAX_MB = 2**40
MAX_CPUS = 65536
#: a label's key: letters and digits, with ``. _ - /`` inside (``gpu``, ``zone``, ``team.io/pool``)
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$"
#: a label's value: empty, or letters, digits and ``. _ - : / @ +``
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9._:/@+-]*$"

#: printable text (a GPU's model name): no control characters
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
MegaBytes = Annotated[int, Field(ge=0, le=MAX_MB)]


def check_label(key: str, value: str) -> None:
    """Raise ValueError saying what is wrong with a label (the same rule for ``--label`` and
    for what the server accepts)."""
    shown = key[: MAX_LABEL_KEY + 1]
    if not key or len(key) > MAX_LABEL_KEY or not re.fullmatch(LABEL_KEY_PATTERN, key):
        raise ValueError(
            f"label key {shown!r}: 1 to {MAX_LABEL_KEY} letters, digits or . _ - / "
            "(starting and ending with a letter or digit)"
        )
    if len(value) > MAX_LABEL_VALUE or not re.fullmatch(LABEL_VALUE_PATTERN, value):
        raise ValueError(
            f"label {shown!r}: its value {value[: MAX_LABEL_VALUE + 1]!r} must be at most "
            f"{MAX_LABEL_VALUE} letters, digits or . _ - : / @ +"
        )


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (as ``--label`` takes it) -> (key, value); ValueError says what is wrong."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"label {text!r} is not KEY=VALUE (e.g. gpu=a100)")
    check_label(key, value)
    return key, value


def parse_labels(texts: Iterable[str]) -> dict[str, str]:
    """Every ``KEY=VALUE`` of ``texts`` as a dict; a key given twice or too many is a ValueError."""
    out: dict[str, str] = {}
    for text in texts:
        key, value = parse_label(text)
        if key in out:
            raise ValueError(f"label {key!r} is given twice; give each key once")
        out[key] = value
    if len(out) > MAX_LABELS:
        raise ValueError(f"{len(out)} labels: at most {MAX_LABELS}")
    return out


class GpuReport(Wire):
    """One GPU as an agent reports it (NVML's index, UUID, model name, total memory)."""

    index: int = Field(ge=0, le=MAX_GPUS * 16)
    uuid: str = Field(
        min_length=1, max_length=MAX_GPU_UUID, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
    )
    name: str = Field(min_length=1, max_length=MAX_GPU_NAME, pattern=_PRINTABLE)
    memory_mb: MegaBytes


class AgentInventory(Wire):
    """What an agent reports of its machine: with each hello, and with a poll when it changed.

    The figures a placement engine reads: ``cpus``, ``memory_mb``, ``disk_free_mb``, ``gpus``
    and ``labels``; ``memory_available_mb`` and ``disk_total_mb`` are for people.
    """

    cpus: int = Field(ge=1, le=MAX_CPUS)
    memory_mb: MegaBytes
    memory_available_mb: MegaBytes
    #: of the file system that holds the agent's work folder
    disk_free_mb: MegaBytes
    disk_total_mb: MegaBytes
    gpus: list[GpuReport] = Field(default_factory=list, max_length=MAX_GPUS)
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        # checked as ``--label`` checks them, so the 422 names ``labels`` and says the rule
        for key, value in labels.items():
            check_label(key, value)
        return labels

    @model_validator(mode="after")
    def _consistent(self) -> AgentInventory:
        for name, values in (
            ("index", [g.index for g in self.gpus]),
            ("uuid", [g.uuid for g in self.gpus]),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"gpus: two GPUs have the same {name}; each must have its own")
        if self.memory_available_mb > self.memory_mb:
            raise ValueError("memory_available_mb is more than memory_mb")
        if self.disk_free_mb > self.disk_total_mb:
            raise ValueError("disk_free_mb is more than disk_total_mb")
        return self


class GpuInfo(BaseModel):
    """A GPU of an agent, as the server shows it."""

    index: int
    uuid: str
    name: str
    memory_mb: int
    #: the session that holds it now (placement gave it), None: free
    task_id: int | None = None


class AgentsNow(BaseModel):
    """The team's agents as one event of ``GET /teams/{id}/agents/stream``."""

    agents: list[AgentInfo]


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
    #: the machine, as its last report said (None / empty: it never said; an older agent)
    cpus: int | None = None
    memory_mb: int | None = None
    memory_available_mb: int | None = None
    disk_free_mb: int | None = None
    disk_total_mb: int | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    #: when the agent last reported its machine
    inventory_at: datetime | None = None


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
    #: its machine and labels (an older agent says nothing)
    inventory: AgentInventory | None = None


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
    #: its machine, only when it changed since the last hello or poll the server answered
    inventory: AgentInventory | None = None
    #: what its running apps used since the last poll the server answered (docs/agent.md)
    usage: list[TaskUsageReport] = Field(default_factory=list, max_length=MAX_REPORTS)


class AssignedGpu(BaseModel):
    index: int
    uuid: str


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
    #: the GPUs of this agent the session holds (``CUDA_VISIBLE_DEVICES``, and the only GPU
    #: devices in its sandbox); None: a server that does not place GPUs
    gpus: list[AssignedGpu] | None = None
    #: what it needs of the machine (``memory_mb`` is its memory limit): docs/apps.md
    resources: dict[str, Any] = Field(default_factory=dict)


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
    # exited: the supervisor stopped the app for exceeding its memory limit (``error`` says
    # by how much): the task ends ``error``, whatever its exit code
    over_limit: bool = False
    # exited/failed: the usage samples not sent with a poll yet (its last figures)
    usage: TaskUsageReport | None = None
