"""The HTTP core: auth header, error bodies to typed errors, which requests are retried.

``httpx.MockTransport`` stands in for the network in the first tests (a seam of the HTTP
library). The last ones talk to a real server through the real transport, wrapped at that seam
to lose an answer after the server gave it, or to cut a body midway.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appyard import errors
from appyard.sdk import Api
from appyard.sdk._core import RequestSpec
from appyard.sdk._sync import SyncCore
from tests.support import ServerProc, free_port


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


# -- against a real server, with faults at the transport seam ------------------------------------

_teams = itertools.count(1)


class _CutBody(httpx.SyncByteStream):
    """A response body that breaks off after ``keep`` bytes, as a dropped connection does."""

    def __init__(self, inner: httpx.SyncByteStream, keep: int) -> None:
        self.inner, self.keep = inner, keep

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if len(chunk) >= self.keep:
                yield chunk[: self.keep]
                raise httpx.ReadError("the connection dropped midway")
            self.keep -= len(chunk)
            yield chunk
        raise httpx.ReadError("the connection dropped at the end")

    def close(self) -> None:
        self.inner.close()


class Faulty(httpx.BaseTransport):
    """The real HTTP transport, with faults for the next requests of a method, in order:
    ``refuse`` (never sent: a connect error), ``lose`` (sent and answered, then the answer is
    lost), ``cut`` (the answer's body breaks off midway)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.faults: dict[str, list[str]] = {}
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.method)
        queue = self.faults.get(request.method) or []
        fault = queue.pop(0) if queue else None
        if fault == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        response = self.inner.handle_request(request)
        if fault == "lose":
            response.read()  # the server has answered: whatever it did is done
            response.close()
            raise httpx.ReadError("the answer was lost", request=request)
        if fault == "cut":
            assert isinstance(response.stream, httpx.SyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_CutBody(response.stream, 1000),
                request=request,
            )
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def faulty(server: ServerProc) -> Iterator[tuple[SyncCore, Faulty, int]]:
    """A core over the faulty transport, and a fresh team of its admin."""
    transport = Faulty()
    core = SyncCore(server.url, server.admin_token, transport=transport, retry_count=3)
    team = core.request("POST", "/teams", json={"name": f"core-team-{next(_teams)}"})
    yield core, transport, int(team["id"])
    core.close()


def test_a_delete_whose_answer_was_lost_has_succeeded(
    server: ServerProc, faulty: tuple[SyncCore, Faulty, int]
) -> None:
    core, transport, team = faulty
    files = f"/teams/{team}/files"
    core.request("PUT", f"{files}/content", params={"path": "/a.txt"}, content=b"a")

    transport.faults["DELETE"] = ["lose"]
    assert core.request("DELETE", files, params={"path": "/a.txt"}) is None
    assert transport.seen.count("DELETE") == 2  # the retry found it gone: the first removed it
    with pytest.raises(errors.NotFoundError):
        core.request("GET", f"{files}/info", params={"path": "/a.txt"})

    # a 404 on the first attempt is an answer, not a success
    with pytest.raises(errors.NotFoundError) as first:
        core.request("DELETE", files, params={"path": "/a.txt"})
    assert first.value.field == "path"
    # ... and so it is after an attempt that never left
    transport.faults["DELETE"] = ["refuse"]
    with pytest.raises(errors.NotFoundError):
        core.request("DELETE", files, params={"path": "/a.txt"})
    assert transport.seen.count("DELETE") == 5

    # the SDK calls that remove: api.file.remove and api.project.remove
    api = Api(server.url, server.admin_token, transport=transport)
    core.request("PUT", f"{files}/content", params={"path": "/d/b.txt"}, content=b"b")
    transport.faults["DELETE"] = ["lose"]
    api.file.remove(team, "/d", recursive=True)
    assert api.file.get_info_by_path(team, "/d") is None
    workspace = api.workspace.create(team, "ws")
    project = api.project.create(workspace.id, "p")
    transport.faults["DELETE"] = ["lose"]
    api.project.remove(project.id)
    with pytest.raises(errors.NotFoundError):
        api.project.get_info_by_id(project.id)
    assert transport.seen.count("DELETE") == 9
    api.close()


def test_a_file_body_is_sent_again_from_where_it_stood(
    faulty: tuple[SyncCore, Faulty, int], tmp_path: Path
) -> None:
    core, transport, team = faulty
    url = f"/teams/{team}/files/content"
    src = tmp_path / "data.bin"
    data = os.urandom(2 * 1024 * 1024 + 5)  # more than one piece
    src.write_bytes(b"skip" + data)

    transport.faults["PUT"] = ["lose"]
    with open(src, "rb") as f:
        f.seek(4)
        info = core.request("PUT", url, params={"path": "/f.bin"}, content=f)
    assert info["size"] == len(data) and transport.seen.count("PUT") == 2
    assert core.send(RequestSpec("GET", url, {"path": "/f.bin"})).content == data

    transport.faults["PUT"] = ["lose"]
    info = core.request("PUT", url, params={"path": "/g.bin"}, content=lambda: iter([b"a", b"b"]))
    assert info["size"] == 2 and transport.seen.count("PUT") == 4

    # a one-shot iterable cannot be sent again once it started: the error says so
    transport.faults["PUT"] = ["lose"]
    with pytest.raises(errors.ServerUnavailableError):
        core.request("PUT", url, params={"path": "/h.bin"}, content=iter([b"once"]))
    assert transport.seen.count("PUT") == 5
    # ... but one that never left is sent
    transport.faults["PUT"] = ["refuse"]
    info = core.request("PUT", url, params={"path": "/h.bin"}, content=iter([b"once"]))
    assert info["size"] == 4 and transport.seen.count("PUT") == 7


def test_download_to_restarts_a_cut_body_and_makes_an_ordinary_file(
    faulty: tuple[SyncCore, Faulty, int], tmp_path: Path
) -> None:
    core, transport, team = faulty
    data = os.urandom(3 * 1024 * 1024 + 1)
    files = f"/teams/{team}/files"
    core.request("PUT", f"{files}/content", params={"path": "/big.bin"}, content=data)
    target = tmp_path / "down" / "big.bin"

    old = os.umask(0o027)
    try:
        transport.faults["GET"] = ["cut"]
        core.download_to(target, f"{files}/content", params={"path": "/big.bin"})
    finally:
        os.umask(old)
    assert target.read_bytes() == data
    assert transport.seen.count("GET") == 2
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)  # 0666 less the umask
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]  # no temporary file left

    # an error answer leaves the old file as it was, and no temporary file
    with pytest.raises(errors.NotFoundError):
        core.download_to(target, f"{files}/content", params={"path": "/nope.bin"})
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]
