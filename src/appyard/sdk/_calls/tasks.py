"""The calls of ``api.task``: status, the pushed ``wait``, stop, logs, progress, outputs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from appyard.domain.status import Status as TaskStatus
from appyard.errors import (
    ApiError,
    NotFoundError,
    ServerError,
    ServerUnavailableError,
    error_from_response,
)
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
from appyard.sdk._calls.effects import (
    Emit,
    Op,
    OpenStream,
    ReadLine,
    Sleep,
    Stream,
    collect,
    consume,
    pages,
    request,
)
from appyard.sdk._core import Params, RequestSpec, backoff_delay, clean_params
from appyard.sdk._sse import SSEParser
from appyard.sdk._wait import (
    TAIL_LINES,
    WaitPlan,
    finished_with_error,
    format_seconds,
    needs_log_tail,
    never_ready,
    ready_budget,
    ready_for_calls,
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

OnUpdate = Callable[[TaskInfo], None]


def _statuses_csv(statuses: Iterable[TaskStatus | str] | None) -> str | None:
    if statuses is None:
        return None
    return ",".join(TaskStatus(s).value for s in statuses) or None


# -- reading -----------------------------------------------------------------------------------


def get(task_id: int) -> Op[TaskInfo]:
    return TaskInfo.model_validate((yield from request("GET", f"/tasks/{int(task_id)}")))


def get_info_by_id(task_id: int) -> Op[dict[str, Any]]:
    return (yield from get(task_id)).model_dump(mode="json")


def get_status(task_id: int) -> Op[TaskStatus]:
    return (yield from get(task_id)).status


def iter_list(
    team_id: int,
    module_id: int | None,
    statuses: Iterable[TaskStatus | str] | None,
    name: str | None,
    page_size: int,
) -> Stream[TaskInfo]:
    status = _statuses_csv(statuses)

    def page(cursor: str | None) -> Op[Page[TaskInfo]]:
        params = {
            "team_id": team_id,
            "module_id": module_id,
            "status": status,
            "name": name,
            "limit": page_size,
            "cursor": cursor,
        }
        return Page[TaskInfo].model_validate((yield from request("GET", "/tasks", params=params)))

    yield from pages(page)


def get_list(
    team_id: int,
    module_id: int | None,
    statuses: Iterable[TaskStatus | str] | None,
    name: str | None,
    limit: int | None,
) -> Op[list[TaskInfo]]:
    page_size = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
    return collect(iter_list(team_id, module_id, statuses, name, page_size), limit)


# -- waiting -----------------------------------------------------------------------------------


def poll(task_id: int, until: str, timeout: float) -> Op[WaitResult]:
    data = yield from request(
        "GET",
        f"/tasks/{int(task_id)}/wait",
        params={"until": until, "timeout": format_seconds(timeout)},
        timeout=timeout + POLL_MARGIN_S,
    )
    return WaitResult.model_validate(data)


def wait(
    task_id: int,
    target_status: TaskStatus | str | None,
    wait_attempts: int | None,
    wait_attempt_timeout_sec: float | None,
    on_update: OnUpdate | None,
    max_poll_sec: float,
) -> Op[TaskStatus]:
    """Long-polls until the plan is met; a server restart meanwhile is ridden out."""
    plan = WaitPlan.make(target_status, wait_attempts, wait_attempt_timeout_sec, max_poll_sec)
    failures = 0
    while True:
        try:
            result: WaitResult | None = yield from poll(task_id, plan.until, plan.poll_timeout())
        except _RECONNECT:
            result = None
        remaining = plan.remaining()
        if result is None:
            if remaining is not None and remaining <= 0:
                raise plan.exceeded() from None
            delay = backoff_delay(failures, RECONNECT_CAP_S)
            yield Sleep(delay if remaining is None else min(delay, remaining))
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
            raise finished_with_error(task, (yield from tail(task)))
        remaining = plan.remaining()
        if remaining is not None and remaining <= 0:
            raise plan.exceeded()


def wait_watching(
    task_id: int, target_status: TaskStatus | str | None, on_update: OnUpdate | None
) -> Op[TaskStatus]:
    """``wait`` without a time limit, fed by ``watch`` (every change, progress too)."""
    plan = WaitPlan.make(target_status, None, None)

    def judge(task: TaskInfo) -> TaskInfo | None:
        if on_update is not None:
            on_update(task)
        return None if plan.outcome(task) == "wait" else task

    task = yield from consume(watch(task_id), judge)
    if task is None:  # the watch ended without a verdict
        return (yield from get_status(task_id))
    if plan.outcome(task) == "error":
        raise finished_with_error(task, (yield from tail(task)))
    return task.status


# -- readiness for calls -----------------------------------------------------------------------

#: what a readiness wait asks the server to answer at: ready, or never to be (a stop; an end
#: the server answers at anyway)
READY_UNTIL = "ready,terminating"


def is_ready_for_api_calls(task_id: int) -> Op[bool]:
    """The app of ``task_id`` said it is ready for calls and runs unstopped; False for a task
    that is not running, not ready, or not found (as the reference answers)."""
    try:
        task = yield from get(task_id)
    except NotFoundError:
        return False
    return ready_for_calls(task)


def wait_until_ready_for_api_calls(
    task_id: int, attempts: int | None, attempt_delay_sec: float | None, max_poll_sec: float
) -> Op[bool]:
    """True once the app is ready for calls; False when ``attempts x attempt_delay_sec``
    seconds pass first, or the session stops or ends without being ready, or is not found.

    Pushed: long-polls answered the moment the app says it is ready (``until=ready``), not a
    look every ``attempt_delay_sec``; a server restart meanwhile is ridden out.
    """
    deadline = time.monotonic() + ready_budget(attempts, attempt_delay_sec)
    failures = 0
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            result: WaitResult | None = yield from poll(
                task_id, READY_UNTIL, min(max_poll_sec, remaining)
            )
        except NotFoundError:
            return False
        except _RECONNECT:
            result = None
        if result is not None:
            failures = 0
            if ready_for_calls(result.task):
                return True
            if never_ready(result.task):
                return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if result is None:
            yield Sleep(min(backoff_delay(failures, RECONNECT_CAP_S), remaining))
            failures += 1


def tail(task: TaskInfo) -> Op[list[LogLine]]:
    """The last log lines of a task in error, when its error text lacks them."""
    if not needs_log_tail(task):
        return []
    try:
        lines = yield from logs(task.id, 0, None)
    except Exception:  # the error itself matters more than its log tail
        return []
    return lines[-TAIL_LINES:]


# -- acting ------------------------------------------------------------------------------------


def stop(task_id: int) -> Op[TaskStatus]:
    data = yield from request("POST", f"/tasks/{int(task_id)}/stop", idempotent=True)
    return StopResult.model_validate(data).status


def _update(task_id: int, what: str, body: dict[str, Any]) -> Op[TaskInfo]:
    data = yield from request("POST", f"/tasks/{int(task_id)}/{what}", json=body, idempotent=True)
    return TaskInfo.model_validate(data)


def set_progress(task_id: int, current: float, total: float | None, message: str) -> Op[TaskInfo]:
    body = ProgressUpdate(current=current, total=total, message=message)
    return _update(task_id, "progress", body.model_dump())


def set_outputs(task_id: int, outputs: dict[str, Any]) -> Op[TaskInfo]:
    return _update(task_id, "outputs", OutputsUpdate(outputs=outputs).model_dump())


def set_output_file(task_id: int, key: str, path: str) -> Op[TaskInfo]:
    return set_outputs(task_id, {key: {"type": "team_file", "path": path}})


def set_ready(task_id: int, url: str | None) -> Op[TaskInfo]:
    return _update(task_id, "ready", ReadyUpdate(url=url).model_dump())


# -- requests into a session ------------------------------------------------------------------

#: answers to a request into a session that say it reached no app: it may simply be sent again
#: (the agent's tunnel reconnecting, nothing listening on the app's port yet, over a limit)
NOT_DELIVERED = frozenset({"tunnel_down", "app_unreachable", "too_many_requests"})
#: the HTTP timeout of a request into a session is its ``timeout`` plus this margin
REQUEST_MARGIN_S = 10.0


def send_request(
    task_id: int,
    method: str,
    data: dict[str, Any],
    context: dict[str, Any] | None,
    skip_response: bool,
    timeout: float,
    outside_request: bool,
    retries: int,
    raise_error: bool,
) -> Op[Any]:
    """``POST /tasks/{id}/request``, tried again (up to ``retries`` attempts in all) while the
    answer says it reached no app, unless ``raise_error``; any other error raises at once."""
    if not isinstance(data, dict):
        raise TypeError("data argument has to be a dict")
    ctx = dict(context or {})
    ctx["outside_request"] = outside_request
    body = {
        "command": method,
        "state": data,
        "context": ctx,
        "timeout": timeout,
        "skip_response": skip_response,
    }
    path = f"/tasks/{int(task_id)}/request"
    attempts = max(1, int(retries))
    for attempt in range(attempts):
        try:
            return (
                yield from request(
                    "POST",
                    path,
                    json=body,
                    min_timeout=float(timeout) + REQUEST_MARGIN_S,
                    idempotent=False,  # a command is not safe to repeat: only what never arrived
                )
            )
        except ApiError as exc:
            if raise_error or attempt + 1 >= attempts or exc.code not in NOT_DELIVERED:
                raise
            delay = exc.retry_after_s or backoff_delay(attempt, RECONNECT_CAP_S)
        yield Sleep(delay)
    raise AssertionError("unreachable")


# -- logs --------------------------------------------------------------------------------------


def get_logs_page(task_id: int, after: int, limit: int) -> Op[LogPage]:
    params = {"after": after, "limit": limit}
    data = yield from request("GET", f"/tasks/{int(task_id)}/logs", params=params)
    return LogPage.model_validate(data)


def logs(task_id: int, after: int, limit: int | None) -> Op[list[LogLine]]:
    out: list[LogLine] = []
    last = after
    while limit is None or len(out) < limit:
        want = LOG_PAGE_SIZE if limit is None else min(LOG_PAGE_SIZE, limit - len(out))
        page = yield from get_logs_page(task_id, after, want)
        fresh = [line for line in page.items if line.seq > last]
        out.extend(fresh)
        if fresh:
            last = fresh[-1].seq
        if not fresh or page.next_seq == after:
            break
        after = page.next_seq
    return out


class _StreamCursor(Generic[E]):
    """Reads an SSE stream's lines across reconnects: ``feed`` returns a new item or None;
    ``ended`` turns True at the stream's ``end`` event; ``failures`` counts reconnects in a
    row (reset by any event)."""

    def __init__(self) -> None:
        self.ended = False
        self.parser = SSEParser()
        self.failures = 0

    def reconnect(self) -> None:
        self.parser = SSEParser()

    def params(self) -> Params | None:
        """The query of the next connection."""
        return None

    def feed(self, raw: str) -> E | None:
        event = self.parser.feed(raw)
        if event is None:
            return None
        self.failures = 0
        if event.event == "end":
            self.ended = True
            return None
        if event.event == "closed":
            raise _closed(event.data)
        return self.item(event.event, event.data)

    def item(self, event: str, data: str) -> E | None:
        raise NotImplementedError


def _closed(data: str) -> ApiError:
    """The refusal a stream ended with (``{"status", "error"}``: its token was revoked, its
    access to the task lost): raised at once, as a new connection would be refused the same."""
    try:
        body: Any = json.loads(data)
    except ValueError:
        body = {}
    status = body.get("status") if isinstance(body, dict) else None
    return error_from_response(status if isinstance(status, int) else 401, body)


class _LogCursor(_StreamCursor[LogLine]):
    """A log stream: remembers the last line, so none is handed out twice after a reconnect."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.last = after

    def params(self) -> Params:
        return {"after": self.last}

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


def _follow(path: str, cursor: _StreamCursor[E]) -> Stream[E]:
    """The items of an event stream until its ``end``; a dropped connection is re-opened
    (from where the cursor stands) after a capped backoff."""
    while True:
        spec = RequestSpec(
            "GET", path, clean_params(cursor.params()), timeout=STREAM_READ_TIMEOUT_S
        )
        try:
            stream = yield OpenStream(spec)
            cursor.reconnect()
            while (raw := (yield ReadLine(stream))) is not None:
                item = cursor.feed(raw)
                if item is not None:
                    yield Emit(item)
                if cursor.ended:
                    return
        except _RECONNECT:
            pass
        yield Sleep(backoff_delay(cursor.failures, RECONNECT_CAP_S))
        cursor.failures += 1


def watch(task_id: int) -> Stream[TaskInfo]:
    yield from _follow(f"/tasks/{int(task_id)}/watch", _WatchCursor())


def follow_logs(task_id: int, after: int) -> Stream[LogLine]:
    yield from _follow(f"/tasks/{int(task_id)}/logs/stream", _LogCursor(after))
