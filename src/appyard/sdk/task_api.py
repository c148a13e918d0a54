"""``api.task``: tasks (sessions) — status, the pushed ``wait``, stop, logs, progress, outputs.

``TaskApi`` and ``AsyncTaskApi`` are thin shells over the same calls (``_calls.tasks``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, ClassVar

from appyard.domain.status import Status as TaskStatus
from appyard.schemas.tasks import LogLine, LogPage, TaskInfo, WaitResult
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import tasks as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._calls.tasks import (
    LOG_PAGE_SIZE,
    PAGE_SIZE,
    POLL_MARGIN_S,
    RECONNECT_CAP_S,
    STREAM_READ_TIMEOUT_S,
    OnUpdate,
)
from appyard.sdk._sync import SyncCore
from appyard.sdk._wait import MAX_POLL_S, READY_ATTEMPTS, READY_DELAY_S

__all__ = [
    "LOG_PAGE_SIZE",
    "PAGE_SIZE",
    "POLL_MARGIN_S",
    "RECONNECT_CAP_S",
    "STREAM_READ_TIMEOUT_S",
    "AsyncTaskApi",
    "TaskApi",
]


class TaskApi:
    """Tasks: one run of an app on an agent."""

    Status: ClassVar[type[TaskStatus]] = TaskStatus

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    # -- reading -------------------------------------------------------------------------------

    def get(self, task_id: int) -> TaskInfo:
        """The task record as a typed model."""
        return self._core.run(calls.get(task_id))

    def get_info_by_id(self, task_id: int) -> dict[str, Any]:
        """The task record as a dict (what the reference SDK returns)."""
        return self._core.run(calls.get_info_by_id(task_id))

    def get_status(self, task_id: int) -> TaskStatus:
        """The task's status now; an unknown task raises ``NotFoundError``."""
        return self._core.run(calls.get_status(task_id))

    def iter_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[TaskInfo]:
        """Tasks of a team, newest first, filtered on the server, page after page."""
        return self._core.iterate(calls.iter_list(team_id, module_id, statuses, name, page_size))

    def get_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[TaskInfo]:
        """Like :meth:`iter_list`, collected; ``limit`` caps how many are read."""
        return self._core.run(calls.get_list(team_id, module_id, statuses, name, limit))

    # -- waiting -------------------------------------------------------------------------------

    def poll(self, task_id: int, until: str, timeout: float = MAX_POLL_S) -> WaitResult:
        """One long-poll: returns as soon as the status is in ``until`` (csv) or terminal."""
        return self._core.run(calls.poll(task_id, until, timeout))

    def wait(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        wait_attempts: int | None = None,
        wait_attempt_timeout_sec: float | None = None,
        *,
        on_update: OnUpdate | None = None,
        max_poll_sec: float = MAX_POLL_S,
    ) -> TaskStatus:
        """Wait until the task reaches ``target_status`` (or finished/stopped).

        Pushed by the server: each request is a long-poll answered the moment the status
        changes. The budget is ``wait_attempts * wait_attempt_timeout_sec`` (999 x 1 s by
        default); with no target and no limits it waits for the end without a limit.
        ``error`` raises ``TaskFinishedWithError``; a server restart meanwhile is ridden out.
        ``on_update`` sees the task after every answer (the CLI draws progress with it).
        """
        return self._core.run(
            calls.wait(
                task_id,
                target_status,
                wait_attempts,
                wait_attempt_timeout_sec,
                on_update,
                max_poll_sec,
            )
        )

    def wait_watching(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        on_update: OnUpdate | None = None,
    ) -> TaskStatus:
        """Like :meth:`wait` without a time limit, fed by :meth:`watch`: ``on_update`` sees
        every change of the task (progress too) the moment it happens, not only its statuses.
        """
        return self._core.run(calls.wait_watching(task_id, target_status, on_update))

    # -- readiness for calls -------------------------------------------------------------------

    def is_ready_for_api_calls(self, task_id: int) -> bool:
        """Whether the app of ``task_id`` said it is ready for calls (``session.ready()``) and
        runs unstopped; False too for a task not found (as the reference answers)."""
        return self._core.run(calls.is_ready_for_api_calls(task_id))

    def wait_until_ready_for_api_calls(
        self,
        task_id: int,
        attempts: int = READY_ATTEMPTS,
        attempt_delay_sec: float | None = READY_DELAY_S,
        *,
        max_poll_sec: float = MAX_POLL_S,
    ) -> bool:
        """Wait until the app of ``task_id`` is ready for calls: True then; False once
        ``attempts * attempt_delay_sec`` seconds have passed, or the session stopped or ended
        without being ready, or it is not found (the reference's answers).

        Pushed by the server: a long-poll answered the moment the app says it is ready, not a
        look every ``attempt_delay_sec``.
        """
        return self._core.run(
            calls.wait_until_ready_for_api_calls(task_id, attempts, attempt_delay_sec, max_poll_sec)
        )

    # -- acting --------------------------------------------------------------------------------

    def stop(self, task_id: int) -> TaskStatus:
        """Ask for a stop; the status right after (``terminating`` or ``stopped``)."""
        return self._core.run(calls.stop(task_id))

    def set_progress(
        self, task_id: int, current: float, total: float | None = None, message: str = ""
    ) -> TaskInfo:
        """Report the app's progress (task token of that task)."""
        return self._core.run(calls.set_progress(task_id, current, total, message))

    def set_outputs(self, task_id: int, outputs: dict[str, Any]) -> TaskInfo:
        """Merge ``outputs`` into the task's outputs (task token of that task)."""
        return self._core.run(calls.set_outputs(task_id, outputs))

    def set_output_file(self, task_id: int, key: str, path: str) -> TaskInfo:
        """Output ``key`` is team file ``path`` (it must exist; clients offer it as a download)."""
        return self._core.run(calls.set_output_file(task_id, key, path))

    def set_ready(self, task_id: int, url: str | None = None) -> TaskInfo:
        """A serving app is up: the task (still ``started``) is ready for calls (``ready``)."""
        return self._core.run(calls.set_ready(task_id, url))

    # -- requests into a session ---------------------------------------------------------------

    def send_request(
        self,
        task_id: int,
        method: str,
        data: dict[str, Any],
        context: dict[str, Any] | None = None,
        skip_response: bool = False,
        timeout: float = 60,
        outside_request: bool = True,
        retries: int = 10,
        raise_error: bool = False,
    ) -> Any:
        """Send ``method`` with ``data`` (the handler's ``state``) to the running app of
        ``task_id`` and return its JSON answer, as the reference SDK does.

        The server forwards ``{"command": method, "state": data, "context": context}`` to the
        app through its agent's tunnel (``context`` gets ``outside_request``). ``timeout``: the
        seconds the app has to answer (past it: a 504, ``app_timeout``). ``skip_response``:
        return once the request is on its way (``{"task_id", "command", "skipped_response"}``).
        A failure that reached no app (the agent's tunnel reconnecting, the app not listening
        yet, too many requests in flight) is tried again, up to ``retries`` attempts in all;
        ``raise_error=True`` raises it at once. Other errors raise at once: the session not
        running or not ready (409), the app's own error (its status, ``code="app_error"``).
        """
        return self._core.run(
            calls.send_request(
                task_id,
                method,
                data,
                context,
                skip_response,
                timeout,
                outside_request,
                retries,
                raise_error,
            )
        )

    # -- logs ----------------------------------------------------------------------------------

    def get_logs_page(self, task_id: int, after: int = 0, limit: int = LOG_PAGE_SIZE) -> LogPage:
        """One page of the task's log, lines after sequence number ``after``."""
        return self._core.run(calls.get_logs_page(task_id, after, limit))

    def logs(
        self, task_id: int, after: int = 0, limit: int | None = LOG_PAGE_SIZE
    ) -> list[LogLine]:
        """Log lines after ``after`` as stored now (at most ``limit``; ``None``: all)."""
        return self._core.run(calls.logs(task_id, after, limit))

    def watch(self, task_id: int) -> Iterator[TaskInfo]:
        """The task now, then after every change (status, progress, outputs), until it ends.

        Pushed by the server (server-sent events); changes faster than they are read are
        coalesced to the newest. A dropped connection is re-opened; the iterator ends after
        the task's terminal state.
        """
        return self._core.iterate(calls.watch(task_id))

    def follow_logs(self, task_id: int, after: int = 0) -> Iterator[LogLine]:
        """Live log lines (server-sent events) until the task ended and all were shipped.

        A dropped connection is re-opened from the last line seen, so no line is lost or
        repeated across a server restart.
        """
        return self._core.iterate(calls.follow_logs(task_id, after))


@twin_of(TaskApi)
class AsyncTaskApi:
    Status: ClassVar[type[TaskStatus]] = TaskStatus

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get(self, task_id: int) -> TaskInfo:
        return await self._core.run(calls.get(task_id))

    async def get_info_by_id(self, task_id: int) -> dict[str, Any]:
        return await self._core.run(calls.get_info_by_id(task_id))

    async def get_status(self, task_id: int) -> TaskStatus:
        return await self._core.run(calls.get_status(task_id))

    def iter_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[TaskInfo]:
        return self._core.iterate(calls.iter_list(team_id, module_id, statuses, name, page_size))

    async def get_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[TaskInfo]:
        return await self._core.run(calls.get_list(team_id, module_id, statuses, name, limit))

    async def poll(self, task_id: int, until: str, timeout: float = MAX_POLL_S) -> WaitResult:
        return await self._core.run(calls.poll(task_id, until, timeout))

    async def wait(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        wait_attempts: int | None = None,
        wait_attempt_timeout_sec: float | None = None,
        *,
        on_update: OnUpdate | None = None,
        max_poll_sec: float = MAX_POLL_S,
    ) -> TaskStatus:
        return await self._core.run(
            calls.wait(
                task_id,
                target_status,
                wait_attempts,
                wait_attempt_timeout_sec,
                on_update,
                max_poll_sec,
            )
        )

    async def wait_watching(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        on_update: OnUpdate | None = None,
    ) -> TaskStatus:
        return await self._core.run(calls.wait_watching(task_id, target_status, on_update))

    async def is_ready_for_api_calls(self, task_id: int) -> bool:
        return await self._core.run(calls.is_ready_for_api_calls(task_id))

    async def wait_until_ready_for_api_calls(
        self,
        task_id: int,
        attempts: int = READY_ATTEMPTS,
        attempt_delay_sec: float | None = READY_DELAY_S,
        *,
        max_poll_sec: float = MAX_POLL_S,
    ) -> bool:
        return await self._core.run(
            calls.wait_until_ready_for_api_calls(task_id, attempts, attempt_delay_sec, max_poll_sec)
        )

    async def stop(self, task_id: int) -> TaskStatus:
        return await self._core.run(calls.stop(task_id))

    async def set_progress(
        self, task_id: int, current: float, total: float | None = None, message: str = ""
    ) -> TaskInfo:
        return await self._core.run(calls.set_progress(task_id, current, total, message))

    async def set_outputs(self, task_id: int, outputs: dict[str, Any]) -> TaskInfo:
        return await self._core.run(calls.set_outputs(task_id, outputs))

    async def set_output_file(self, task_id: int, key: str, path: str) -> TaskInfo:
        return await self._core.run(calls.set_output_file(task_id, key, path))

    async def set_ready(self, task_id: int, url: str | None = None) -> TaskInfo:
        return await self._core.run(calls.set_ready(task_id, url))

    async def send_request(
        self,
        task_id: int,
        method: str,
        data: dict[str, Any],
        context: dict[str, Any] | None = None,
        skip_response: bool = False,
        timeout: float = 60,
        outside_request: bool = True,
        retries: int = 10,
        raise_error: bool = False,
    ) -> Any:
        return await self._core.run(
            calls.send_request(
                task_id,
                method,
                data,
                context,
                skip_response,
                timeout,
                outside_request,
                retries,
                raise_error,
            )
        )

    async def get_logs_page(
        self, task_id: int, after: int = 0, limit: int = LOG_PAGE_SIZE
    ) -> LogPage:
        return await self._core.run(calls.get_logs_page(task_id, after, limit))

    async def logs(
        self, task_id: int, after: int = 0, limit: int | None = LOG_PAGE_SIZE
    ) -> list[LogLine]:
        return await self._core.run(calls.logs(task_id, after, limit))

    def watch(self, task_id: int) -> AsyncIterator[TaskInfo]:
        return self._core.iterate(calls.watch(task_id))

    def follow_logs(self, task_id: int, after: int = 0) -> AsyncIterator[LogLine]:
        return self._core.iterate(calls.follow_logs(task_id, after))
