"""The SDK on a 429 or 503 that carries ``Retry-After``: a GET (or a call marked idempotent)
waits as long as the server asks and tries again, a few times at most; past that, or for a
call that is not safe to repeat, it raises the typed error carrying the wait, and its message
says when to try again. Against a real server whose per-token stream cap is 1."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from appyard.errors import AuthenticationError, TooManyRequestsError
from appyard.sdk._async import AsyncCore
from appyard.sdk._sync import SyncCore
from tests.support import APPS, Client, ServerProc, wait_for

API = "/api/v1"


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One open stream per token; come back in 1 s. The count lives in the server process:
    one database shows it."""
    env = {"APPYARD_MAX_STREAMS_PER_TOKEN": "1", "APPYARD_RETRY_AFTER_S": "1"}
    server = ServerProc(tmp_path_factory.mktemp("capped-sdk"), extra_env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def task_path(capped: ServerProc) -> str:
    """The wait of a queued session: a GET that takes one of its token's places (and gives
    it back at once with ``timeout=0``)."""
    admin = Client(capped.url, capped.admin_token)
    team = admin.ok("POST", "/teams", json={"name": "retry-after"})["id"]
    ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
    mid = admin.publish(APPS / "worker")["module_id"]
    task_id = admin.ok("POST", "/tasks", json={"workspace_id": ws, "module_id": mid})["task_id"]
    return f"/tasks/{task_id}/wait"


@pytest.fixture
def token(capped: ServerProc) -> str:
    admin = Client(capped.url, capped.admin_token)
    return str(admin.ok("POST", "/tokens", json={"name": "sdk-retry"})["token"])


def _hold_place(server: ServerProc, token: str, path: str) -> socket.socket:
    """The session's watch (a stream) opened on a raw socket and never read: it holds the
    token's one place until the socket closes."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    watch = path.replace("/wait", "/watch")
    sock.sendall(
        f"GET {API}{watch} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    probe = httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {token}"})

    def held() -> bool:
        r = probe.get(path, params={"timeout": 0})
        assert r.status_code in (200, 429), r.text
        return r.status_code == 429

    wait_for(held, 30, "the raw wait to hold the token's place")
    probe.close()
    return sock


def _free_place(server: ServerProc, token: str, path: str) -> None:
    with httpx.Client(
        base_url=server.url + API, headers={"Authorization": f"Bearer {token}"}
    ) as probe:
        wait_for(
            lambda: probe.get(path, params={"timeout": 0}).status_code == 200,
            30,
            "the place of the closed wait to be given back",
        )


def test_a_get_refused_with_429_waits_as_asked_then_succeeds(
    capped: ServerProc, task_path: str, token: str
) -> None:
    sock = _hold_place(capped, token, task_path)
    waits: list[float] = []

    def pause(seconds: float) -> None:
        """The SDK's wait before its next attempt: the held watch ends during it."""
        waits.append(seconds)
        sock.close()
        _free_place(capped, token, task_path)
        threading.Event().wait(seconds)

    core = SyncCore(capped.url, token, pause=pause)
    try:
        answer = core.request("GET", task_path, params={"timeout": 0})
    finally:
        core.close()
    assert waits == [1.0], waits  # the server's Retry-After, not the SDK's own backoff
    assert answer["task"]["status"] == "queued"


def test_a_get_still_refused_after_a_few_waits_raises_saying_when_to_retry(
    capped: ServerProc, task_path: str, token: str
) -> None:
    sock = _hold_place(capped, token, task_path)
    waits: list[float] = []

    def pause(seconds: float) -> None:
        waits.append(seconds)
        threading.Event().wait(seconds)

    core = SyncCore(capped.url, token, pause=pause)
    try:
        with pytest.raises(TooManyRequestsError) as caught:
            core.request("GET", task_path, params={"timeout": 0})
    finally:
        core.close()
        sock.close()
    assert waits == [1.0, 1.0, 1.0], waits  # a few tries, no more
    error = caught.value
    assert error.status_code == 429 and error.retry_after_s == 1.0
    message = str(error)
    assert "this token has 1 streams and waits open already" in message, message
    assert "Still refused after 3 retries over 3 s" in message, message
    assert "Call again in 1 s" in message, message


def test_the_async_twin_waits_and_raises_the_same(
    capped: ServerProc, task_path: str, token: str
) -> None:
    sock = _hold_place(capped, token, task_path)

    async def call() -> None:
        core = AsyncCore(capped.url, token)
        try:
            await core.request("GET", task_path, params={"timeout": 0})
        finally:
            await core.aclose()

    try:
        with pytest.raises(TooManyRequestsError) as caught:
            asyncio.run(call())
    finally:
        sock.close()
    assert caught.value.retry_after_s == 1.0
    assert "Still refused after 3 retries over 3 s" in str(caught.value)


def test_a_call_not_safe_to_repeat_raises_at_once_with_the_wait(capped: ServerProc) -> None:
    """A sign-in (a POST without an idempotency key) over its limit: not tried again."""
    admin = Client(capped.url, capped.admin_token)
    admin.ok("POST", "/users", json={"login": "guessed", "password": "the right one"})
    waits: list[float] = []
    core = SyncCore(capped.url, None, pause=waits.append)
    wrong = {"login": "guessed", "password": "a wrong one"}
    try:
        with pytest.raises(TooManyRequestsError) as caught:
            for _ in range(20):  # the login's burst of failures, then the limit
                with pytest.raises((AuthenticationError, TooManyRequestsError)) as each:
                    core.request("POST", "/auth/login", json=wrong, auth=False)
                if isinstance(each.value, TooManyRequestsError):
                    raise each.value
    finally:
        core.close()
    assert waits == [], waits
    error = caught.value
    assert error.retry_after_s is not None and error.retry_after_s > 0
    assert f"The server asks to retry after {error.retry_after_s:g} s" in str(error), error
