"""Pure rules under the SDK: the wait plan, its messages, the SSE parser, backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from appyard.domain.status import Status
from appyard.errors import AuthenticationError, NotFoundError
from appyard.schemas.tasks import LogLine, TaskInfo
from appyard.sdk._calls.tasks import _LogCursor, _WatchCursor
from appyard.sdk._core import backoff_delay, clean_params, normalize_address
from appyard.sdk._sse import SSEParser
from appyard.sdk._wait import WaitPlan, error_message, format_seconds
from appyard.sdk.app_api import wrap_params

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def task(status: Status, error: str | None = None) -> TaskInfo:
    fields: dict[str, Any] = dict(
        id=5, team_id=1, workspace_id=1, user_id=1, module_id=1, app_id=1, release_id=1,
        version="r1", agent_id=None, name="n", description="", status=status, params={},
        log_level="info", attempt=1, exit_code=None, error=error, progress=None, outputs={},
        created_at=NOW, consumed_at=None, started_at=None, ready_at=None,
        terminating_at=None, ended_at=None, updated_at=NOW,
    )  # fmt: skip
    return TaskInfo(**fields)


def test_budget_defaults() -> None:
    plan = WaitPlan.make(Status.FINISHED, None, None)
    assert (plan.attempts, plan.delay, plan.budget) == (999, 1.0, 999.0)
    unlimited = WaitPlan.make(None, None, None)
    assert unlimited.budget is None and unlimited.remaining() is None
    assert unlimited.poll_timeout() == 25.0
    assert WaitPlan.make(None, 3, None).budget == 3.0
    assert WaitPlan.make("finished", 20, 3).budget == 60


def test_exceeded_message_is_the_reference() -> None:
    assert str(WaitPlan.make(Status.FINISHED, 20, 3).exceeded()) == (
        "Waiting time exceeded: total waiting time 60 seconds, i.e. 20 attempts for 3 seconds each"
    )
    assert str(WaitPlan.make(Status.FINISHED, 3, 0.5).exceeded()) == (
        "Waiting time exceeded: total waiting time 1 seconds, i.e. 3 attempts for 0.5 seconds each"
    )


def test_outcomes() -> None:
    to_finish = WaitPlan.make(Status.FINISHED, None, None)
    assert to_finish.outcome(task(Status.STARTED)) == "wait"
    assert to_finish.outcome(task(Status.TERMINATING)) == "wait"
    for s in (Status.FINISHED, Status.STOPPED):
        assert to_finish.outcome(task(s)) == "done"
    assert to_finish.outcome(task(Status.ERROR)) == "error"
    assert WaitPlan.make(Status.STARTED, None, None).outcome(task(Status.STARTED)) == "done"
    assert WaitPlan.make(Status.TERMINATING, None, None).outcome(task(Status.TERMINATING)) == "done"
    assert WaitPlan.make(None, None, None).outcome(task(Status.QUEUED)) == "wait"


def test_until_names_the_target_and_the_return_statuses() -> None:
    assert WaitPlan.make(Status.STARTED, 1, 1).until == "finished,started,stopped"
    assert WaitPlan.make(None, None, None).until == "finished,stopped"


def test_no_wait_for_deployed_which_no_session_becomes() -> None:
    """A serving app stays started; a wait for the reference's plugin status would never
    return before the end, so it is refused at once, naming what to wait for instead."""
    with pytest.raises(ValueError, match="wait_until_ready_for_api_calls"):
        WaitPlan.make(Status.DEPLOYED, None, None)


def test_error_message_adds_error_text_and_tail() -> None:
    assert error_message(task(Status.ERROR), []) == "Task finished with status error"
    lines = [LogLine(seq=i, t=NOW, level="error", text=f"line {i}") for i in range(1, 4)]
    msg = error_message(task(Status.ERROR, "exit code 1"), lines)
    assert msg.startswith("Task finished with status error: exit code 1\nLast log lines:\n")
    assert msg.endswith("line 1\nline 2\nline 3")
    # the tail already inside the error text is not repeated
    msg = error_message(task(Status.ERROR, "exit code 1\nline 3"), lines[2:])
    assert msg == "Task finished with status error: exit code 1\nline 3"


def test_sse_parser() -> None:
    p = SSEParser()
    stream = [": keepalive", "", "id: 7", "event: log", 'data: {"a":1}', "", "event: end",
              "data: {}", ""]  # fmt: skip
    events = [e for e in (p.feed(line) for line in stream) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("log", '{"a":1}', "7"),
        ("end", "{}", "7"),
    ]


def test_a_stream_closed_by_the_server_raises_its_refusal() -> None:
    """A watch or a log stream whose token was revoked ends with a ``closed`` event: its
    error is raised at once, not after a reconnect that would be refused the same."""
    cursor = _WatchCursor()
    body = {"status": 401, "error": {"code": "unauthenticated", "message": "token revoked"}}
    assert cursor.feed("event: closed") is None
    with pytest.raises(AuthenticationError, match="token revoked"):
        cursor.feed(f"data: {json.dumps(body)}")
        cursor.feed("")
    gone = {"status": 404, "error": {"code": "not_found", "message": "Task 5 not found"}}
    logs = _LogCursor(0)
    with pytest.raises(NotFoundError, match="Task 5 not found"):
        for line in ("event: closed", f"data: {json.dumps(gone)}", ""):
            logs.feed(line)


def test_small_helpers() -> None:
    assert [backoff_delay(i) for i in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert clean_params({"a": None, "b": True, "c": 3, "d": "x"}) == {
        "b": "true",
        "c": "3",
        "d": "x",
    }
    assert normalize_address("h:1/") == "http://h:1"
    assert format_seconds(25.0) == "25" and format_seconds(0.25) == "0.25"
    assert wrap_params(None) == {"state": {}}
    assert wrap_params({"a": 1}) == {"state": {"a": 1}}
    assert wrap_params({"state": {"a": 1}, "x": 2}) == {"state": {"a": 1}, "x": 2}


@pytest.mark.parametrize(
    "kwargs", [{"users_id": 3}, {"is_branch": True}, {"restart_policy": "on_error"}]
)
def test_start_refuses_what_appyard_does_not_do(kwargs: dict[str, Any]) -> None:
    from appyard.errors import InvalidArgumentsError
    from appyard.sdk import Api

    with pytest.raises(InvalidArgumentsError):
        Api("127.0.0.1:9", "t").app.start(module_id=1, workspace_id=1, **kwargs)


def test_start_needs_a_module_id() -> None:
    from appyard.errors import InvalidArgumentsError
    from appyard.sdk import Api

    with pytest.raises(InvalidArgumentsError, match="module_id is required"):
        Api("127.0.0.1:9", "t").app.start(workspace_id=1)
    with pytest.raises(InvalidArgumentsError, match="log_level"):
        Api("127.0.0.1:9", "t").app.start(module_id=1, workspace_id=1, log_level="loud")


def test_progress_throttle_sends_few_and_always_the_last() -> None:
    import threading
    import time

    from appyard.sdk.session import _Throttle

    sent: list[int] = []
    done = threading.Event()

    def send(value: int) -> None:
        time.sleep(0.01)  # a slow server makes the race between timer and caller likely
        sent.append(value)
        if value == 999:
            done.set()

    throttle = _Throttle(send, rate=10)
    began = time.monotonic()
    for i in range(1000):
        throttle.submit(i)
        if i % 100 == 0:
            time.sleep(0.03)
    elapsed = time.monotonic() - began
    assert done.wait(2), "the trailing update never went out"
    assert sent[-1] == 999
    assert sent == sorted(sent)  # never an older value after a newer one
    assert len(sent) <= elapsed * 10 + 3


def test_progress_throttle_force_and_flush() -> None:
    from appyard.sdk.session import _Throttle

    sent: list[int] = []
    throttle = _Throttle(sent.append, rate=1)
    throttle.submit(1)
    throttle.submit(2)
    throttle.submit(3)
    assert sent == [1]
    throttle.flush()
    assert sent == [1, 3]
    throttle.submit(4)
    throttle.submit(5, force=True)
    assert sent == [1, 3, 5]
    throttle.flush()
    assert sent == [1, 3, 5]
