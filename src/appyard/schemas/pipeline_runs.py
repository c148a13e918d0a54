"""Saved pipelines and their runs on the wire (``docs/http-api.md``, "Pipelines")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from appyard.domain.pipeline import RunState, StepState
from appyard.schemas.common import Id, Wire
from appyard.schemas.pipeline import MAX_DOCUMENT_BYTES

#: how an attempt of a step ended (or that it has not: pending, running)
AttemptStatus = Literal[
    "pending", "running", "finished", "error", "stopped", "timeout", "cancelled"
]


class _OneSource(Wire):
    """A document given as JSON (``document``) or as YAML/JSON text (``text``)."""

    document: dict[str, Any] | None = None
    text: str | None = Field(default=None, max_length=MAX_DOCUMENT_BYTES)


class PipelineCreate(_OneSource):
    """Body of ``POST /teams/{team_id}/pipelines``: exactly one of ``document`` and ``text``."""

    @model_validator(mode="after")
    def _one(self) -> PipelineCreate:
        if (self.document is None) == (self.text is None):
            raise ValueError("give exactly one of document (JSON) and text (YAML or JSON)")
        return self


class PipelineInfo(BaseModel):
    """A saved pipeline: one version of a document, named by its content."""

    id: int
    team_id: int
    name: str
    version: str
    description: str | None
    document: dict[str, Any]
    #: the document's inputs: name → ``{default?, description?}``
    inputs: dict[str, Any]
    created_at: datetime
    created_by: int | None


class RunCreate(_OneSource):
    """Body of ``POST /pipeline-runs``: a saved pipeline (``pipeline_id``) or a document
    (``document`` / ``text``, saved as a pipeline first), and the run's inputs."""

    workspace_id: Id
    pipeline_id: Id | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one(self) -> RunCreate:
        given = [self.pipeline_id is not None, self.document is not None, self.text is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of pipeline_id, document (JSON) and text")
        return self


class AttemptInfo(BaseModel):
    """One attempt of a step (of one item of a ``for_each`` step: ``item``)."""

    n: int
    item: int | None = None
    task_id: int | None
    status: AttemptStatus
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None


class StepItems(BaseModel):
    """How the items of a ``for_each`` step stand (each item by its newest attempt)."""

    total: int
    finished: int
    error: int
    running: int
    pending: int
    stopped: int = 0


class StepInfo(BaseModel):
    id: str
    app: str
    state: StepState
    #: skipped: upstream_failed, run_stopped or when_not_met; error: the message
    reason: str | None
    needs: list[str]
    attempts: list[AttemptInfo]
    items: StepItems | None = None
    #: of its finished attempt; for a for_each step, each item's in item order (None for an
    #: item that did not finish)
    outputs: dict[str, Any] | list[dict[str, Any] | None] | None = None


class RunInfo(BaseModel):
    id: int
    team_id: int
    workspace_id: int
    pipeline_id: int
    pipeline_name: str
    pipeline_version: str
    status: RunState
    inputs: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    created_by: int
    steps: list[StepInfo]


class RunWaitResult(BaseModel):
    timed_out: bool
    run: RunInfo
