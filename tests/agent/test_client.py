"""The agent's HTTP client: the agent protocol over the SDK's core, with a report's retry rule.

``httpx.MockTransport`` stands in for the network in most tests (a seam of the HTTP library);
the last one talks to a real server through the real transport, which loses an answer after the
server gave it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from appyard import errors
from appyard.agent.client import (
    RETRY_STATUSES,
    Abandoned,
    AgentClient,
    Backoff,
    ReportRetry,
)
from appyard.schemas.agents import AgentHello, LogBatch, PollRequest, TaskEvent
from tests.support import World, wait_for

Handler = Callable[[httpx.Request], httpx.Response]
BUSY = {"error": {"code": "busy", "message": "busy"}}


def client_with(handler: Handler, abandon: threading.Event | None = None) -> AgentClient:
    return AgentClient("h:1", "tok", abandon=abandon, transport=httpx.MockTransport(handler))


def flaky(
    failures: list[Exception | int], final: httpx.Response
) -> tuple[Handler, list[httpx.Request]]:
    """A server that fails as listed (an error raised, or a status answered), then answers."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        if len(seen) <= len(failures):
            failure = failures[len(seen) - 1]
            if isinstance(failure, int):
                return httpx.Response(failure, json=BUSY)
            raise failure
        return final

    return handler, seen


# -- the rule ------------------------------------------------------------------------------------


def test_the_rule_of_a_report() -> None:
    """Outage statuses are retried without end, with capped delays; any other answer is final."""
    rule = ReportRetry("http://h:1", "a report")
    for status in sorted(RETRY_STATUSES) * 5:
        delay = rule.after_response(httpx.Response(status))
        assert delay is not None and 0 < delay <= 5.0
    assert rule.after_error(httpx.ConnectError("refused")) <= 5.0
    assert rule.after_error(httpx.ReadError("the answer was lost")) <= 5.0
    for status in (200, 204, 400, 401, 403, 404, 409, 413, 422):
        assert rule.after_response(httpx.Response(status)) is None
    with pytest.raises(errors.ConflictError):
        rule.final(httpx.Response(409, json={"error": {"message": "moved on"}}))


def test_a_busy_server_is_not_asked_again_before_its_retry_after() -> None:
    """A 503 or 429 with ``Retry-After`` waits at least that long (capped: a proxy's value
    may be anything); without one, the usual backoff."""
    rule = ReportRetry("http://h:1", "a report")
    assert rule.after_response(httpx.Response(503, headers={"Retry-After": "3"})) == 3.0
    assert rule.after_response(httpx.Response(429, headers={"Retry-After": "2"})) == 2.0
    assert rule.after_response(httpx.Response(503, headers={"Retry-After": "86400"})) == 60.0
    delay = rule.after_response(httpx.Response(503, headers={"Retry-After": "soon"}))
    assert delay is not None and delay <= 5.0


def test_a_rule_with_attempts_stops_after_them() -> None:
    rule = ReportRetry("http://h:1", "a download", attempts=3, backoff=Backoff(first=0.5))
    assert rule.after_response(httpx.Response(503)) is not None
    assert rule.after_error(httpx.ReadError("cut")) is not None
    assert rule.after_response(httpx.Response(503)) is None  # the third answer is final
    with pytest.raises(errors.ServerUnavailableError, match="http://h:1"):
        rule.after_error(httpx.ConnectError("refused"))


# -- reports -------------------------------------------------------------------------------------


def test_a_report_is_sent_again_until_the_server_answers() -> None:
    """Even a POST whose answer was lost is sent again: the server knows a report it has."""
    handler, seen = flaky(
        [httpx.ConnectError("refused"), httpx.ReadError("the answer was lost"), 503],
        httpx.Response(204),
    )
    client = client_with(handler)
    client.event(7, TaskEvent(kind="started", pid=42))
    assert len(seen) == 4
    assert {str(r.url) for r in seen} == {"http://h:1/api/v1/tasks/7/events"}
    assert len({r.content for r in seen}) == 1
    first = seen[0]
    assert first.method == "POST"
    assert first.headers["authorization"] == "Bearer tok"
    assert first.headers["user-agent"] == "appyard-agent"
    assert first.headers["content-type"] == "application/json"
    assert first.content == TaskEvent(kind="started", pid=42).model_dump_json().encode()
    client.close()


def test_a_4xx_drops_the_report() -> None:
    body = {"error": {"code": "conflict", "message": "the task moved on"}}
    handler, seen = flaky([], httpx.Response(409, json=body))
    client = client_with(handler)
    batch = LogBatch.model_validate({"offset": 0, "end_offset": 0, "lines": []})
    with pytest.raises(errors.ConflictError, match="the task moved on"):
        client.logs(7, batch)
    assert len(seen) == 1
    assert str(seen[0].url) == "http://h:1/api/v1/tasks/7/logs"


def test_abandon_interrupts_the_retries() -> None:
    """On exit the agent sets ``abandon``: a report in its backoff gives up at once."""
    abandon = threading.Event()
    handler, seen = flaky([503] * 1000, httpx.Response(204))
    client = client_with(handler, abandon)
    outcome: list[BaseException] = []

    def report() -> None:
        try:
            client.event(7, TaskEvent(kind="started", pid=1))
        except BaseException as e:
            outcome.append(e)

    th = threading.Thread(target=report, daemon=True)
    th.start()
    wait_for(lambda: len(seen) >= 4, 10, "four attempts")  # the next pause is over a second
    abandon.set()
    th.join(0.5)
    assert not th.is_alive(), "the report still waits"
    assert len(outcome) == 1 and isinstance(outcome[0], Abandoned)
    assert len(seen) == 4


# -- the poll and downloads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (503, errors.ServerError),
        (httpx.ConnectError("refused"), errors.ServerUnavailableError),
        (401, errors.AuthenticationError),
    ],
)
def test_the_poll_is_tried_once(failure: Exception | int, error: type[Exception]) -> None:
    """The poll loop owns the reconnect backoff (and says hello again after an outage)."""
    handler, seen = flaky([failure], httpx.Response(200, json={"tasks": [], "stop": []}))
    client = client_with(handler)
    with pytest.raises(error):
        client.poll(3, PollRequest(free_slots=1, timeout_s=25))
    assert len(seen) == 1
    assert str(seen[0].url) == "http://h:1/api/v1/agents/3/poll"
    assert seen[0].extensions["timeout"]["read"] == 40.0  # the poll's own 25 s, and a margin
    assert client.poll(3, PollRequest(free_slots=1)).tasks == []


def _cut(data: bytes) -> Iterator[bytes]:
    yield data[:10]
    raise httpx.ReadError("the connection dropped midway")


def test_a_download_starts_again_and_appears_whole(tmp_path: Path) -> None:
    data = b"archive bytes " * 1000
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if len(seen) == 1:
            return httpx.Response(200, content=_cut(data))
        if request.url.path.endswith("/nope"):
            return httpx.Response(404, json={"error": {"message": "no such release"}})
        return httpx.Response(200, content=data)

    client = client_with(handler)
    dest = tmp_path / "x" / "archive"
    client.download("/api/v1/releases/abc/archive", dest)
    assert dest.read_bytes() == data
    assert seen == ["http://h:1/api/v1/releases/abc/archive"] * 2  # the prefix once

    client.download("http://store:9/blob", tmp_path / "other")
    assert seen[-1] == "http://store:9/blob"

    with pytest.raises(errors.NotFoundError):
        client.download("/api/v1/releases/nope", tmp_path / "none")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "x"]  # no temporary file
    assert [p.name for p in dest.parent.iterdir()] == ["archive"]


def test_a_download_in_an_outage_gives_up_after_its_attempts(tmp_path: Path) -> None:
    handler, seen = flaky([503] * 10, httpx.Response(200, content=b""))
    client = client_with(handler)
    with pytest.raises(errors.ServerError):
        client.download("/api/v1/releases/abc/archive", tmp_path / "archive", attempts=2)
    assert len(seen) == 2
    assert list(tmp_path.iterdir()) == []


# -- against a real server -----------------------------------------------------------------------


class LoseFirstAnswer(httpx.BaseTransport):
    """The real transport; the first answer is lost after the server gave it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url.path)
        response = self.inner.handle_request(request)
        if len(self.seen) == 1:
            response.read()
            response.close()
            raise httpx.ReadError("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_the_protocol_against_a_real_server(world: World) -> None:
    agent_id, token = world.new_agent_token("client-test")
    transport = LoseFirstAnswer()
    client = AgentClient(world.server.url + "/", token, transport=transport)
    assert client.server == world.server.url

    welcome = client.hello(AgentHello(slots=1, hostname="here", version="0"))
    assert welcome.agent_id == agent_id
    assert transport.seen == ["/api/v1/agents/hello"] * 2  # said again: its answer was lost

    polled = client.poll(agent_id, PollRequest(free_slots=0, timeout_s=0))
    assert (polled.tasks, polled.stop) == ([], [])

    with pytest.raises(errors.ApiError) as info:  # not this agent's task: dropped, not retried
        client.event(2**31 - 1, TaskEvent(kind="started", pid=1))
    assert 400 <= info.value.status_code < 500
    assert transport.seen.count("/api/v1/tasks/2147483647/events") == 1
    client.close()
