"""``api.task``: tasks (sessions) — status, the pushed ``wait``, stop, logs, progress, outputs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from appyard.domain.status import Status as TaskStatus
from appyard.errors import ServerError, ServerUnavailableError
from appyard.schemas.common import Page
from appyard.schemas.tasks import (
    LogLine,
    LogPage,
    OutputsUpdate,
    ProgressUpdate,
    ReadyUpdate,
    StopResult,
    TaskInfo,
    WaitResult,
)
from appyard.sdk._core import AsyncCore, SyncCore, backoff_delay
from appyard.sdk._sse import SSEParser
from appyard.sdk._wait import (
    MAX_POLL_S,
    TAIL_LINES,
    WaitPlan,
    finished_with_error,
    format_seconds,
    needs_log_tail,
)

PAGE_SIZE = 100
E = TypeVar("E")
LOG_PAGE_SIZE = 1000
RECONNECT_CAP_S = 2.0
#: the stream is re-opened after this long without a byte (a half-dead connection)
STREAM_READ_TIMEOUT_S = 60.0
#: the HTTP timeout of a long-poll is its server-side timeout plus this margin
POLL_MARGIN_S = 10.0

#: errors after which a waiting client reconnects instead of failing (a server restart)
_RECONNECT = (ServerUnavailableError, ServerError)


def _statuses_csv(statuses: Iterable[TaskStatus | str] | None) -> str | None:
    if statuses is None:
        return None
    return ",".join(TaskStatus(s).value for s in statuses) or None


def _list_params(
    team_id: int,
    module_id: int | None,
    statuses: Iterable[TaskStatus | str] | None,
    name: str | None,
    page_size: int,
    cursor: str | None,
) -> dict[str, Any]:
    """Query of one page of ``GET /tasks`` (shared by the sync and async twins)."""
    return {
        "team_id": team_id,
        "module_id": module_id,
        "status": _statuses_csv(statuses),
        "name": name,
        "limit": page_size,
        "cursor": cursor,
    }


def _wait_params(until: str, timeout: float) -> dict[str, str]:
    return {"until": until, "timeout": format_seconds(timeout)}


class _StreamCursor(Generic[E]):
    """Reads an SSE stream's lines for both twins, across reconnects: ``feed`` returns a new
    item or None; ``ended`` turns True at the stream's ``end`` event; ``failures`` counts
    reconnects in a row (reset by any event)."""

    def __init__(self) -> None:
        self.ended = False
        self.parser = SSEParser()
        self.failures = 0

    def reconnect(self) -> None:
        self.parser = SSEParser()

    def feed(self, raw: str) -> E | None:
        event = self.parser.feed(raw)
        if event is None:
            return None
        self.failures = 0
        if event.event == "end":
            self.ended = True
            return None
        return self.item(event.event, event.data)

    def item(self, event: str, data: str) -> E | None:
        raise NotImplementedError


class _LogCursor(_StreamCursor[LogLine]):
    """A log stream: remembers the last line, so none is handed out twice after a reconnect."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.last = after

    def item(self, event: str, data: str) -> LogLine | None:
        if event != "log":
            return None
        line = LogLine.model_validate_json(data)
        if line.seq <= self.last:
            return None  # already handed out before a reconnect
        self.last = line.seq
        return line


class _WatchCursor(_StreamCursor[TaskInfo]):
    """A task watch: drops a state already handed out (the first answer after a reconnect
    repeats the current state)."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def item(self, event: str, data: str) -> TaskInfo | None:
        if event != "task" or data == self.last:
            return None
        self.last = data
        return TaskInfo.model_validate_json(data)


class TaskApi:
    """Tasks: one run of an app on an agent."""

    Status: ClassVar[type[TaskStatus]] = TaskStatus

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    # -- reading -------------------------------------------------------------------------------

    def get(self, task_id: int) -> TaskInfo:
        """The task record as a typed model."""
        return TaskInfo.model_validate(self._core.request("GET", f"/tasks/{int(task_id)}"))

    def get_info_by_id(self, task_id: int) -> dict[str, Any]:
        """The task record as a dict (what the reference SDK returns)."""
        return self.get(task_id).model_dump(mode="json")

    def get_status(self, task_id: int) -> TaskStatus:
        """The task's status now; an unknown task raises ``NotFoundError``."""
        return self.get(task_id).status

    def iter_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[TaskInfo]:
        """Tasks of a team, newest first, filtered on the server, page after page."""
        cursor: str | None = None
        while True:
            data = self._core.request(
                "GET",
                "/tasks",
                params=_list_params(team_id, module_id, statuses, name, page_size, cursor),
            )
            page = Page[TaskInfo].model_validate(data)
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    def get_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[TaskInfo]:
        """Like :meth:`iter_list`, collected; ``limit`` caps how many are read."""
        out: list[TaskInfo] = []
        page_size = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
        for task in self.iter_list(team_id, module_id, statuses, name, page_size):
            if limit is not None and len(out) >= limit:
                break
            out.append(task)
        return out

    # -- waiting -------------------------------------------------------------------------------

    def poll(self, task_id: int, until: str, timeout: float = MAX_POLL_S) -> WaitResult:
        """One long-poll: returns as soon as the status is in ``until`` (csv) or terminal."""
        data = self._core.request(
            "GET",
            f"/tasks/{int(task_id)}/wait",
            params=_wait_params(until, timeout),
            timeout=timeout + POLL_MARGIN_S,
        )
        return WaitResult.model_validate(data)

    def wait(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        wait_attempts: int | None = None,
        wait_attempt_timeout_sec: float | None = None,
        *,
        on_update: Callable[[TaskInfo], None] | None = None,
        max_poll_sec: float = MAX_POLL_S,
    ) -> TaskStatus:
        """Wait until the task reaches ``target_status`` (or finished/deployed/stopped).

        Pushed by the server: each request is a long-poll answered the moment the status
        changes. The budget is ``wait_attempts * wait_attempt_timeout_sec`` (999 x 1 s by
        default); with no target and no limits it waits for the end without a limit.
        ``error`` raises ``TaskFinishedWithError``; a server restart meanwhile is ridden out.
        ``on_update`` sees the task after every answer (the CLI draws progress with it).
        """
        plan = WaitPlan.make(target_status, wait_attempts, wait_attempt_timeout_sec, max_poll_sec)
        failures = 0
        while True:
            try:
                result = self.poll(task_id, plan.until, plan.poll_timeout())
            except _RECONNECT:
                remaining = plan.remaining()
                if remaining is not None and remaining <= 0:
                    raise plan.exceeded() from None
                delay = backoff_delay(failures, RECONNECT_CAP_S)
                time.sleep(delay if remaining is None else min(delay, remaining))
                failures += 1
                continue
            failures = 0
            task = result.task
            if on_update is not None:
                on_update(task)
            outcome = plan.outcome(task)
            if outcome == "done":
                return task.status
            if outcome == "error":
                raise finished_with_error(task, self._tail(task))
            remaining = plan.remaining()
            if remaining is not None and remaining <= 0:
                raise plan.exceeded()

    def wait_watching(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        on_update: Callable[[TaskInfo], None] | None = None,
    ) -> TaskStatus:
        """Like :meth:`wait` without a time limit, fed by :meth:`watch`: ``on_update`` sees
        every change of the task (progress too) the moment it happens, not only its statuses.
        """
        plan = WaitPlan.make(target_status, None, None)
        for task in self.watch(task_id):
            if on_update is not None:
                on_update(task)
            outcome = plan.outcome(task)
            if outcome == "done":
                return task.status
            if outcome == "error":
                raise finished_with_error(task, self._tail(task))
        return self.get_status(task_id)

    def _tail(self, task: TaskInfo) -> list[LogLine]:
        if not needs_log_tail(task):
            return []
        try:
            return self.logs(task.id, limit=None)[-TAIL_LINES:]
        except Exception:  # the error itself matters more than its log tail
            return []

    # -- acting --------------------------------------------------------------------------------

    def stop(self, task_id: int) -> TaskStatus:
        """Ask for a stop; the status right after (``terminating`` or ``stopped``)."""
        data = self._core.request("POST", f"/tasks/{int(task_id)}/stop", idempotent=True)
        return StopResult.model_validate(data).status

    def set_progress(
        self, task_id: int, current: float, total: float | None = None, message: str = ""
    ) -> TaskInfo:
        """Report the app's progress (task token of that task)."""
        body = ProgressUpdate(current=current, total=total, message=message)
        data = self._core.request(
            "POST", f"/tasks/{int(task_id)}/progress", json=body.model_dump(), idempotent=True
        )
        return TaskInfo.model_validate(data)

    def set_outputs(self, task_id: int, outputs: dict[str, Any]) -> TaskInfo:
        """Merge ``outputs`` into the task's outputs (task token of that task)."""
        body = OutputsUpdate(outputs=outputs)
        data = self._core.request(
            "POST", f"/tasks/{int(task_id)}/outputs", json=body.model_dump(), idempotent=True
        )
        return TaskInfo.model_validate(data)

    def set_output_file(self, task_id: int, key: str, path: str) -> TaskInfo:
        """Output ``key`` is team file ``path`` (it must exist; clients offer it as a download)."""
        return self.set_outputs(task_id, {key: {"type": "team_file", "path": path}})

    def set_ready(self, task_id: int, url: str | None = None) -> TaskInfo:
        """A serving app is up: ``started`` becomes ``deployed``."""
        body = ReadyUpdate(url=url)
        data = self._core.request(
            "POST", f"/tasks/{int(task_id)}/ready", json=body.model_dump(), idempotent=True
        )
        return TaskInfo.model_validate(data)

    # -- logs ----------------------------------------------------------------------------------

    def get_logs_page(self, task_id: int, after: int = 0, limit: int = LOG_PAGE_SIZE) -> LogPage:
        """One page of the task's log, lines after sequence number ``after``."""
        data = self._core.request(
            "GET", f"/tasks/{int(task_id)}/logs", params={"after": after, "limit": limit}
        )
        return LogPage.model_validate(data)

    def logs(
        self, task_id: int, after: int = 0, limit: int | None = LOG_PAGE_SIZE
    ) -> list[LogLine]:
        """Log lines after ``after`` as stored now (at most ``limit``; ``None``: all)."""
        out: list[LogLine] = []
        last = after
        while limit is None or len(out) < limit:
            want = LOG_PAGE_SIZE if limit is None else min(LOG_PAGE_SIZE, limit - len(out))
            page = self.get_logs_page(task_id, after, want)
            fresh = [line for line in page.items if line.seq > last]
            out.extend(fresh)
            if fresh:
                last = fresh[-1].seq
            if not fresh or page.next_seq == after:
                break
            after = page.next_seq
        return out

    def watch(self, task_id: int) -> Iterator[TaskInfo]:
        """The task now, then after every change (status, progress, outputs), until it ends.

        Pushed by the server (server-sent events); changes faster than they are read are
        coalesced to the newest. A dropped connection is re-opened; the iterator ends after
        the task's terminal state.
        """
        cursor = _WatchCursor()
        while True:
            try:
                with self._core.stream(
                    f"/tasks/{int(task_id)}/watch", timeout=STREAM_READ_TIMEOUT_S
                ) as response:
                    cursor.reconnect()
                    for raw in response.iter_lines():
                        task = cursor.feed(raw)
                        if task is not None:
                            yield task
                        if cursor.ended:
                            return
            except _RECONNECT:
                pass
            time.sleep(backoff_delay(cursor.failures, RECONNECT_CAP_S))
            cursor.failures += 1

    def follow_logs(self, task_id: int, after: int = 0) -> Iterator[LogLine]:
        """Live log lines (server-sent events) until the task ended and all were shipped.

        A dropped connection is re-opened from the last line seen, so no line is lost or
        repeated across a server restart.
        """
        cursor = _LogCursor(after)
        while True:
            try:
                with self._core.stream(
                    f"/tasks/{int(task_id)}/logs/stream",
                    params={"after": cursor.last},
                    timeout=STREAM_READ_TIMEOUT_S,
                ) as response:
                    cursor.reconnect()
                    for raw in response.iter_lines():
                        line = cursor.feed(raw)
                        if cursor.ended:
                            return
                        if line is not None:
                            yield line
            except _RECONNECT:
                pass
            time.sleep(backoff_delay(cursor.failures, RECONNECT_CAP_S))
            cursor.failures += 1


class AsyncTaskApi:
    """The async twin of :class:`TaskApi` (status, wait, stop, logs)."""

    Status: ClassVar[type[TaskStatus]] = TaskStatus

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get(self, task_id: int) -> TaskInfo:
        return TaskInfo.model_validate(await self._core.request("GET", f"/tasks/{int(task_id)}"))

    async def get_info_by_id(self, task_id: int) -> dict[str, Any]:
        return (await self.get(task_id)).model_dump(mode="json")

    async def get_status(self, task_id: int) -> TaskStatus:
        return (await self.get(task_id)).status

    async def iter_list(
        self,
        team_id: int,
        module_id: int | None = None,
        statuses: Iterable[TaskStatus | str] | None = None,
        name: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[TaskInfo]:
        cursor: str | None = None
        while True:
            data = await self._core.request(
                "GET",
                "/tasks",
                params=_list_params(team_id, module_id, statuses, name, page_size, cursor),
            )
            page = Page[TaskInfo].model_validate(data)
            for item in page.items:
                yield item
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def poll(self, task_id: int, until: str, timeout: float = MAX_POLL_S) -> WaitResult:
        data = await self._core.request(
            "GET",
            f"/tasks/{int(task_id)}/wait",
            params=_wait_params(until, timeout),
            timeout=timeout + POLL_MARGIN_S,
        )
        return WaitResult.model_validate(data)

    async def wait(
        self,
        task_id: int,
        target_status: TaskStatus | str | None = None,
        wait_attempts: int | None = None,
        wait_attempt_timeout_sec: float | None = None,
        *,
        on_update: Callable[[TaskInfo], None] | None = None,
        max_poll_sec: float = MAX_POLL_S,
    ) -> TaskStatus:
        """See :meth:`TaskApi.wait`."""
        plan = WaitPlan.make(target_status, wait_attempts, wait_attempt_timeout_sec, max_poll_sec)
        failures = 0
        while True:
            try:
                result = await self.poll(task_id, plan.until, plan.poll_timeout())
            except _RECONNECT:
                remaining = plan.remaining()
                if remaining is not None and remaining <= 0:
                    raise plan.exceeded() from None
                delay = backoff_delay(failures, RECONNECT_CAP_S)
                await asyncio.sleep(delay if remaining is None else min(delay, remaining))
                failures += 1
                continue
            failures = 0
            task = result.task
            if on_update is not None:
                on_update(task)
            outcome = plan.outcome(task)
            if outcome == "done":
                return task.status
            if outcome == "error":
                raise finished_with_error(task, await self._tail(task))
            remaining = plan.remaining()
            if remaining is not None and remaining <= 0:
                raise plan.exceeded()

    async def _tail(self, task: TaskInfo) -> list[LogLine]:
        if not needs_log_tail(task):
            return []
        try:
            return (await self.logs(task.id, limit=None))[-TAIL_LINES:]
        except Exception:  # the error itself matters more than its log tail
            return []

    async def stop(self, task_id: int) -> TaskStatus:
        data = await self._core.request("POST", f"/tasks/{int(task_id)}/stop", idempotent=True)
        return StopResult.model_validate(data).status

    async def get_logs_page(
        self, task_id: int, after: int = 0, limit: int = LOG_PAGE_SIZE
    ) -> LogPage:
        data = await self._core.request(
            "GET", f"/tasks/{int(task_id)}/logs", params={"after": after, "limit": limit}
        )
        return LogPage.model_validate(data)

    async def logs(
        self, task_id: int, after: int = 0, limit: int | None = LOG_PAGE_SIZE
    ) -> list[LogLine]:
        out: list[LogLine] = []
        last = after
        while limit is None or len(out) < limit:
            want = LOG_PAGE_SIZE if limit is None else min(LOG_PAGE_SIZE, limit - len(out))
            page = await self.get_logs_page(task_id, after, want)
            fresh = [line for line in page.items if line.seq > last]
            out.extend(fresh)
            if fresh:
                last = fresh[-1].seq
            if not fresh or page.next_seq == after:
                break
            after = page.next_seq
        return out

    async def watch(self, task_id: int) -> AsyncIterator[TaskInfo]:
        """See :meth:`TaskApi.watch`."""
        cursor = _WatchCursor()
        while True:
            try:
                async with self._core.stream(
                    f"/tasks/{int(task_id)}/watch", timeout=STREAM_READ_TIMEOUT_S
                ) as response:
                    cursor.reconnect()
                    async for raw in response.aiter_lines():
                        task = cursor.feed(raw)
                        if task is not None:
                            yield task
                        if cursor.ended:
                            return
            except _RECONNECT:
                pass
            await asyncio.sleep(backoff_delay(cursor.failures, RECONNECT_CAP_S))
            cursor.failures += 1

    async def follow_logs(self, task_id: int, after: int = 0) -> AsyncIterator[LogLine]:
        """See :meth:`TaskApi.follow_logs`."""
        cursor = _LogCursor(after)
        while True:
            try:
                async with self._core.stream(
                    f"/tasks/{int(task_id)}/logs/stream",
                    params={"after": cursor.last},
                    timeout=STREAM_READ_TIMEOUT_S,
                ) as response:
                    cursor.reconnect()
                    async for raw in response.aiter_lines():
                        line = cursor.feed(raw)
                        if cursor.ended:
                            return
                        if line is not None:
                            yield line
            except _RECONNECT:
                pass
            await asyncio.sleep(backoff_delay(cursor.failures, RECONNECT_CAP_S))
            cursor.failures += 1
