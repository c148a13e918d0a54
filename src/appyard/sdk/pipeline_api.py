"""``api.pipeline``: saved pipelines and their runs — run, the pushed ``wait`` and ``watch``,
stop, resume.

``PipelineApi`` and ``AsyncPipelineApi`` are thin shells over the same calls
(``_calls.pipelines``). A pipeline is given as the builder (:class:`appyard.sdk.pipeline.
Pipeline`), a document (a dict), YAML or JSON text, or a ``Path`` to a file; a run may also
name a saved pipeline by its id (or its :class:`PipelineInfo`).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from appyard.domain.pipeline import RunState, StepState
from appyard.schemas.pipeline_runs import PipelineInfo, RunInfo, RunWaitResult
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import pipelines as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._calls.pipelines import (
    PAGE_SIZE,
    OnRun,
    RunSource,
    Source,
    failure_message,
    run_ended,
    task_ids,
)
from appyard.sdk._sync import SyncCore
from appyard.sdk._wait import MAX_POLL_S

__all__ = [
    "PAGE_SIZE",
    "AsyncPipelineApi",
    "PipelineApi",
    "RunSource",
    "Source",
    "failure_message",
    "run_ended",
    "task_ids",
]

Statuses = RunState | str | Iterable[RunState | str] | None


class PipelineApi:
    """Pipelines of a team and their runs; the server runs them, no client stays connected."""

    RunState: ClassVar[type[RunState]] = RunState
    StepState: ClassVar[type[StepState]] = StepState

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    # -- saved pipelines -----------------------------------------------------------------------

    def create(self, team_id: int, source: Source) -> PipelineInfo:
        """Save a pipeline in a team: the builder, a document, YAML/JSON text or a ``Path``.

        Versioned by content: the same content saved again is the same pipeline. Every
        problem of the document (its shape, graph, expressions, the apps and their params)
        is one ``BadRequestError`` with each in ``details["problems"]``; nothing is saved.
        """
        return self._core.run(calls.create(team_id, source))

    def get(self, pipeline_id: int) -> PipelineInfo:
        """A saved pipeline, with its document."""
        return self._core.run(calls.get(pipeline_id))

    def iter_list(
        self, team_id: int, name: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[PipelineInfo]:
        """The saved pipelines of a team (``name``: only its versions), page after page."""
        return self._core.iterate(calls.iter_list(team_id, name, page_size))

    def list(
        self, team_id: int, name: str | None = None, limit: int | None = None
    ) -> builtins.list[PipelineInfo]:
        """Like :meth:`iter_list`, collected; ``limit`` caps how many are read."""
        return self._core.run(calls.get_list(team_id, name, limit))

    # -- runs ----------------------------------------------------------------------------------

    def run(
        self,
        source: RunSource,
        workspace_id: int | None = None,
        inputs: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RunInfo:
        """Start a run of a pipeline (a saved one's id, or a document as :meth:`create` takes)
        in a workspace (None: WORKSPACE_ID) with ``inputs``; the run as queued.

        Everything is checked first (the inputs too); a problem is a ``BadRequestError``
        and nothing runs. The request carries ``idempotency_key`` (a fresh one when None),
        so a retried start never makes two runs; pass your own to make a start safe to
        repeat across processes.
        """
        return self._core.run(calls.run(source, workspace_id, inputs, idempotency_key))

    def get_run(self, run_id: int) -> RunInfo:
        """A run now: its status and each step's state, attempts (task ids) and outputs."""
        return self._core.run(calls.get_run(run_id))

    def iter_runs(
        self,
        team_id: int,
        status: Statuses = None,
        pipeline_id: int | None = None,
        name: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[RunInfo]:
        """Runs of a team, newest first, filtered on the server (a status or several, a
        saved pipeline, a pipeline name), page after page."""
        return self._core.iterate(calls.iter_runs(team_id, status, pipeline_id, name, page_size))

    def list_runs(
        self,
        team_id: int,
        status: Statuses = None,
        pipeline_id: int | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[RunInfo]:
        """Like :meth:`iter_runs`, collected; ``limit`` caps how many are read."""
        return self._core.run(calls.list_runs(team_id, status, pipeline_id, name, limit))

    def poll(self, run_id: int, timeout: float = MAX_POLL_S) -> RunWaitResult:
        """One long-poll: answered the moment the run ends, else after ``timeout`` seconds."""
        return self._core.run(calls.poll(run_id, timeout))

    def wait(
        self,
        run_id: int,
        timeout: float | None = None,
        *,
        on_update: OnRun | None = None,
    ) -> RunInfo:
        """Wait until the run ends; the run, ``finished``.

        Pushed by the server: each request is a long-poll answered the moment the run ends.
        A run that ends ``error`` or ``stopped`` raises ``PipelineRunFailed`` (a
        ``TaskFinishedWithError``) naming each failed step, its tasks and error, with the
        run in ``.run``; past ``timeout`` seconds (None: no limit) ``WaitingTimeExceeded``
        (the run goes on). A server restart meanwhile is ridden out.
        """
        return self._core.run(calls.wait(run_id, timeout, on_update))

    def watch(self, run_id: int) -> Iterator[RunInfo]:
        """The run now, then after every change (a step's state, an attempt, outputs), until
        it ends. Pushed by the server (server-sent events); a dropped connection is
        re-opened."""
        return self._core.iterate(calls.watch(run_id))

    def stop(self, run_id: int) -> RunInfo:
        """Stop a run: every running step's session gets the app stop protocol, pending steps
        are skipped; the run is ``terminating`` until every process is gone, then
        ``stopped`` (:meth:`wait` raises then)."""
        return self._core.run(calls.stop(run_id))

    def resume(self, run_id: int) -> RunInfo:
        """Run again what did not finish in a run that ended ``error`` or ``stopped``:
        finished steps keep their outputs; a run in another state is a ``ConflictError``."""
        return self._core.run(calls.resume(run_id))


@twin_of(PipelineApi)
class AsyncPipelineApi:
    RunState: ClassVar[type[RunState]] = RunState
    StepState: ClassVar[type[StepState]] = StepState

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def create(self, team_id: int, source: Source) -> PipelineInfo:
        return await self._core.run(calls.create(team_id, source))

    async def get(self, pipeline_id: int) -> PipelineInfo:
        return await self._core.run(calls.get(pipeline_id))

    def iter_list(
        self, team_id: int, name: str | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[PipelineInfo]:
        return self._core.iterate(calls.iter_list(team_id, name, page_size))

    async def list(
        self, team_id: int, name: str | None = None, limit: int | None = None
    ) -> builtins.list[PipelineInfo]:
        return await self._core.run(calls.get_list(team_id, name, limit))

    async def run(
        self,
        source: RunSource,
        workspace_id: int | None = None,
        inputs: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RunInfo:
        return await self._core.run(calls.run(source, workspace_id, inputs, idempotency_key))

    async def get_run(self, run_id: int) -> RunInfo:
        return await self._core.run(calls.get_run(run_id))

    def iter_runs(
        self,
        team_id: int,
        status: Statuses = None,
        pipeline_id: int | None = None,
        name: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[RunInfo]:
        return self._core.iterate(calls.iter_runs(team_id, status, pipeline_id, name, page_size))

    async def list_runs(
        self,
        team_id: int,
        status: Statuses = None,
        pipeline_id: int | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[RunInfo]:
        return await self._core.run(calls.list_runs(team_id, status, pipeline_id, name, limit))

    async def poll(self, run_id: int, timeout: float = MAX_POLL_S) -> RunWaitResult:
        return await self._core.run(calls.poll(run_id, timeout))

    async def wait(
        self,
        run_id: int,
        timeout: float | None = None,
        *,
        on_update: OnRun | None = None,
    ) -> RunInfo:
        return await self._core.run(calls.wait(run_id, timeout, on_update))

    def watch(self, run_id: int) -> AsyncIterator[RunInfo]:
        return self._core.iterate(calls.watch(run_id))

    async def stop(self, run_id: int) -> RunInfo:
        return await self._core.run(calls.stop(run_id))

    async def resume(self, run_id: int) -> RunInfo:
        return await self._core.run(calls.resume(run_id))
