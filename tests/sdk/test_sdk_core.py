"""The HTTP core: auth header, error bodies to typed errors, which requests are retried.

``httpx.MockTransport`` stands in for the network here (a seam of the HTTP library); the
same core talks to a real server in the live tests.
"""

from __future__ import annotations

import httpx
import pytest

from appyard import errors
from appyard.sdk import Api
from tests.support import free_port


def api_with(handler: object, retry_count: int = 3) -> Api:
    return Api("h:1", "tok", retry_count=retry_count, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_auth_header_and_base_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 7})

    assert api_with(handler).app.get_ecosystem_module_id("a/b") == 7
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert str(seen[0].url) == "http://h:1/api/v1/modules/lookup?slug=a%2Fb"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.BadRequestError),
        (500, errors.ServerError),
    ],
)
def test_error_bodies_become_typed_errors(status: int, cls: type[errors.ApiError]) -> None:
    body = {"error": {"code": "x", "message": "what went wrong", "field": "name"}}
    api = api_with(lambda request: httpx.Response(status, json=body), retry_count=0)
    with pytest.raises(cls) as info:
        api.team.create("t")
    assert str(info.value) == "what went wrong"
    assert (info.value.status_code, info.value.field) == (status, "name")


def test_a_non_json_error_still_says_something() -> None:
    api = api_with(lambda request: httpx.Response(502, text="Bad Gateway"), retry_count=0)
    with pytest.raises(errors.ServerError, match="Bad Gateway"):
        api.user.me()


def test_unknown_slug_is_module_not_found() -> None:
    body = {"error": {"code": "not_found", "message": "no"}}
    api = api_with(lambda request: httpx.Response(404, json=body))
    with pytest.raises(errors.ModuleNotFoundInEcosystem) as info:
        api.app.get_ecosystem_module_id("nobody/nothing")
    assert str(info.value) == "Module nobody/nothing not found in ecosystem"
    assert isinstance(info.value, KeyError)


def flaky(failures: list[BaseException | int], final: httpx.Response) -> tuple[object, list[str]]:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, int):
                return httpx.Response(failure, json={"error": {"message": "busy"}})
            raise failure
        return final

    return handler, calls


ME = {"id": 1, "login": "a", "is_admin": False, "created_at": "2024-01-01T00:00:00Z"}


def test_safe_requests_are_retried_on_transport_errors_and_503() -> None:
    handler, calls = flaky(
        [httpx.ReadError("reset"), 503, httpx.ConnectError("refused")], httpx.Response(200, json=ME)
    )
    assert api_with(handler).user.me().login == "a"
    assert calls == ["GET"] * 4


def test_a_post_is_retried_only_when_it_never_left() -> None:
    team = {"id": 1, "name": "t", "created_at": "2024-01-01T00:00:00Z"}
    handler, calls = flaky([httpx.ConnectError("refused")], httpx.Response(201, json=team))
    assert api_with(handler).team.create("t").id == 1
    assert calls == ["POST", "POST"]
    handler, calls = flaky([httpx.RemoteProtocolError("gone")], httpx.Response(201, json=team))
    with pytest.raises(errors.ServerUnavailableError):
        api_with(handler).team.create("t")  # it may have been created: not repeated
    assert calls == ["POST"]
    handler, calls = flaky([503], httpx.Response(201, json=team))
    with pytest.raises(errors.ServerError):
        api_with(handler).team.create("t")
    assert calls == ["POST"]


def test_start_is_retried_with_the_same_idempotency_key() -> None:
    bodies: list[bytes] = []
    started = {"task_id": 9, "user_id": 1, "module_id": 2, "app_id": 3, "status": "queued"}

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) == 1:
            raise httpx.ReadError("answer lost")
        return httpx.Response(201, json=started)

    session = api_with(handler).app.start(module_id=2, workspace_id=1, params={"a": 1})
    assert tuple(session) == (9, 1, 2, 3, {})
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert b'"idempotency_key":"' in bodies[0]
    assert b'"params":{"state":{"a":1}}' in bodies[0]


def test_unreachable_server_is_one_clear_error() -> None:
    port = free_port()
    api = Api(f"127.0.0.1:{port}", "t", retry_count=2)
    with pytest.raises(errors.ServerUnavailableError) as info:
        api.user.me()
    assert f"http://127.0.0.1:{port}" in str(info.value)
    assert "SERVER_ADDRESS" in str(info.value)
    assert isinstance(info.value, ConnectionError)
