"""``POST /tasks/{task_id}/request``: a request into a running session, through its agent's
tunnel (docs/http-api.md, docs/tunnel.md).

The server forwards ``{"command", "state", "context"}`` to the app's HTTP server (on its
``APP_PORT``, on the agent's machine) and answers with the app's JSON reply as it streams
back. Every failure is ours to name: the session not running or not ready (409), the agent's
tunnel down (503), the app not listening (502), the app too slow (504), the app's own error
(its status, with its message).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appyard.errors import ApiError
from appyard.schemas.tunnel import Head, Open, RequestAccepted, SessionRequest
from appyard.server.guard import error_response, token_of
from appyard.server.relay import Relay
from appyard.server.request_grants import RequestGrants
from appyard.server.routes.deps import (
    PathId,
    aread,
    authenticated,
    bearer,
    context,
    json_response,
)
from appyard.server.security import hash_token
from appyard.server.services.session_requests import request_target
from appyard.server.settings import Settings
from appyard.server.tunnel import ServerStream, StreamFailed, Tunnel, TunnelRegistry, tunnel_down

router = APIRouter(dependencies=[Depends(authenticated)], tags=["tasks"])

#: of an app's error answer, this much is read for its message (the rest is dropped)
APP_ERROR_BYTES = 64 * 1024
#: the app's headers passed on with its answer
_PASSED_HEADERS = frozenset({"content-type", "content-disposition", "content-encoding"})
#: a relayed request's answer may take this much longer than its ``timeout`` (the other
#: replica's own hop)
RELAY_SLACK_S = 10.0
#: an answer of a known length up to this is read whole and sent in one response (one write);
#: a longer one, or one of unknown length, is streamed on
SMALL_ANSWER_BYTES = 1024 * 1024

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such task, or not in one of your teams (or the app's own 404)"},
    409: {"description": "The session is not running (`not_running`) or not ready (`not_ready`)"},
    429: {"description": "Too many requests in flight into this session or on its agent"},
    502: {"description": "The app is not listening, broke the connection, or the tunnel was lost"},
    503: {"description": "The agent's tunnel is not connected to this server (`tunnel_down`)"},
    504: {"description": "The app did not answer within `timeout` (`app_timeout`)"},
}


@router.post(
    "/tasks/{task_id}/request",
    responses={200: {"description": "The app's JSON reply, as it answered"}, **_ERRORS},
)
async def send_request(request: Request, task_id: PathId, body: SessionRequest) -> Response:
    """Forward ``{"command", "state", "context"}`` to the running app of ``task_id`` and answer
    with its reply (``skip_response``: 202 once it is on its way). Needs the developer role."""
    grants: RequestGrants = request.app.state.request_grants
    agent_id = await grants.check(
        hash_token(bearer(request)),
        task_id,
        lambda: aread(request, lambda s, p: request_target(s, p, task_id=task_id)),
    )
    settings = context(request).settings
    registry: TunnelRegistry = request.app.state.tunnels
    if registry.get(agent_id) is None:  # connected to another replica, or not at all
        relay: Relay = request.app.state.relay
        return await relay.answer(
            request, agent_id=agent_id, task_id=task_id, timeout=body.timeout + RELAY_SLACK_S
        )
    return await forward(settings, registry, task_id, agent_id, body)


async def forward(
    settings: Settings, registry: TunnelRegistry, task_id: int, agent_id: int, body: SessionRequest
) -> Response:
    """The request, let through to ``agent_id``, over its tunnel to the app; its answer."""
    tunnel = registry.get(agent_id)
    if tunnel is None:
        raise tunnel_down(agent_id, task_id, "it is not connected")
    timeout = min(body.timeout, settings.max_request_timeout_s)
    payload = json.dumps(
        {"command": body.command, "state": body.state, "context": body.context},
        separators=(",", ":"),
    ).encode()
    stream = tunnel.open_stream(task_id)
    open_ = Open(
        task_id=task_id,
        method="POST",
        path="/",
        headers=[("content-type", "application/json"), ("content-length", str(len(payload)))],
        timeout=timeout,
    )
    deadline = asyncio.get_running_loop().time() + timeout
    handed_over = False
    try:
        async with asyncio.timeout_at(deadline):
            await stream.send_request(open_, payload)
            if body.skip_response:
                stream.release_when_done()
                handed_over = True
                accepted = RequestAccepted(task_id=task_id, command=body.command)
                return json_response(accepted, 202)
            head = await stream.head()
            if head.status >= 400:
                raw, _ = await stream.read_all(APP_ERROR_BYTES)
                raise _app_error(task_id, head, raw)
            response = await _answer(stream, head, deadline)
            handed_over = True
            return response
    except TimeoutError:
        raise _timed_out(task_id, timeout) from None
    except StreamFailed as exc:
        raise stream_failed(tunnel, task_id, exc) from None
    finally:
        if not handed_over:
            await stream.cancel()


class FastSendRequest:
    """ASGI middleware, inside the ``Guard`` (which has checked that a token came and capped
    the body): a request into a session whose (token, task) pair holds a grant
    (``request_grants``) and whose body is a valid ``SessionRequest`` is forwarded here, with
    no database work and none of the router's; anything else (the first request of a pair, a
    refusal, bad input) goes on to the route above, which answers as it always does.

    Why: at a thousand requests a second into serving apps, the route's matching, dependency
    solving and per-request check were most of the server's CPU (docs/tunnel.md).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api: str,
        settings: Settings,
        tunnels: TunnelRegistry,
        grants: RequestGrants,
    ) -> None:
        self.app = app
        self.path = re.compile(rf"^{re.escape(api)}/tasks/([1-9][0-9]{{0,17}})/request$")
        self.settings = settings
        self.tunnels = tunnels
        self.grants = grants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = self.path.match(scope["path"])
        token = _json_request_token(scope["headers"]) if match is not None else None
        if match is None or token is None:
            await self.app(scope, receive, send)
            return
        task_id = int(match.group(1))
        agent_id = self.grants.agent_of(hash_token(token), task_id)
        if agent_id is None or self.tunnels.get(agent_id) is None:
            await self.app(scope, receive, send)
            return
        raw, gone = await _whole_body(receive)
        if gone:
            return  # the client went away while sending it
        try:
            body = SessionRequest.model_validate_json(raw)
        except ValidationError:  # the route names the field, as for every request
            await self.app(scope, _replay(raw, receive), send)
            return
        try:
            response = await forward(self.settings, self.tunnels, task_id, agent_id, body)
        except ApiError as exc:
            response = error_response(exc)
        await response(scope, receive, send)


def _json_request_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's token, if its body says it is JSON (anything else: the route decides)."""
    for name, value in headers:
        if name == b"content-type":
            if not value.lower().startswith(b"application/json"):
                return None
            return token_of(headers)
    return None


async def _whole_body(receive: Receive) -> tuple[bytes, bool]:
    """The request's body (capped by the ``Guard``), and whether the client went away first."""
    pieces: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", True
        pieces.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(pieces), False


def _replay(raw: bytes, receive: Receive) -> Receive:
    """``receive`` for the route: the body already read once, then the connection's own."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


async def _answer(stream: ServerStream, head: Head, deadline: float) -> Response:
    """The app's reply: whole, when its length is known and small (the usual JSON answer);
    streamed on, piece by piece, otherwise (nothing of it sits whole in the server)."""
    headers = {k.lower(): v for k, v in head.headers if k.lower() in _PASSED_HEADERS}
    media_type = headers.pop("content-type", None)
    length = next((v for k, v in head.headers if k.lower() == "content-length"), None)
    if length is not None and length.isdigit() and int(length) <= SMALL_ANSWER_BYTES:
        content = b"".join([piece async for piece in stream.body()])
        return Response(content, status_code=head.status, media_type=media_type, headers=headers)

    async def pieces() -> AsyncIterator[bytes]:
        try:
            async with asyncio.timeout_at(deadline):
                async for piece in stream.body():
                    yield piece
        finally:
            # ended, or the client went away, the deadline passed, the stream failed midway
            # (the connection is cut: the answer cannot be completed): the app is told to stop
            await stream.cancel("the answer could not be completed")

    return StreamingResponse(
        pieces(), status_code=head.status, media_type=media_type, headers=headers
    )


def _app_message(raw: bytes) -> tuple[str, Any]:
    """The message of an app's error answer, and its JSON (None if it is not JSON)."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="replace").strip()
        return (text[:2000] or "(no message)"), None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = err.get("message")
        elif isinstance(err, str):
            message = err
        message = message or data.get("message") or data.get("detail")
    if message is None:
        message = json.dumps(data)[:2000]
    return str(message)[:2000], data


def _app_error(task_id: int, head: Head, raw: bytes) -> ApiError:
    message, data = _app_message(raw)
    # the app's status is passed on, but a 401 from an app would read as "your token is not
    # valid" to every client: it becomes a 502 (the app's status is in the details)
    status = head.status if head.status != 401 and head.status < 600 else 502
    details: dict[str, Any] = {"task_id": task_id, "app_status": head.status}
    if data is not None and len(raw) <= 16 * 1024:
        details["app_body"] = data
    return ApiError(
        f"The app of task {task_id} answered {head.status}: {message}",
        status_code=status,
        code="app_error",
        details=details,
    )


def _timed_out(task_id: int, timeout: float) -> ApiError:
    return ApiError(
        f"The app of task {task_id} did not answer within {timeout:g} s; it was told to stop "
        "working on the request. Give it more time (timeout=...), or look at its log for why "
        "it is slow.",
        status_code=504,
        code="app_timeout",
        details={"task_id": task_id, "timeout_s": timeout},
    )


def stream_failed(
    tunnel: Tunnel, task_id: int, exc: StreamFailed, subject: str = "The request into"
) -> ApiError:
    """The error for a tunnel stream that failed: the tunnel cut, the app gone, slow or busy.
    ``subject`` names what failed (``The request into``, ``The page of``) before the task."""
    reset = exc.reset
    agent_id = tunnel.agent_id
    details = {"task_id": task_id, "agent_id": agent_id}
    if tunnel.closed:
        return ApiError(
            f"{subject} task {task_id} was cut: {tunnel.down_message()} while it was in "
            "flight; the app may or may not have received it. Retry once the agent is back if "
            "the command is safe to repeat.",
            status_code=502,
            code="tunnel_lost",
            details=details,
        )
    what = reset.message or reset.code
    if reset.code == "not_here":
        return ApiError(
            f"Task {task_id} is not running on agent {agent_id} ({what}); its app has ended, or "
            "the agent is re-adopting it after a restart. Look at the task's status and retry.",
            status_code=409,
            code="not_running",
            field="task_id",
            details=details,
        )
    if reset.code == "app_unreachable":
        return ApiError(
            f"The app of task {task_id} does not answer on its port on agent {agent_id} "
            f"({what}). A serving app must serve HTTP on APP_PORT (AppSession handlers do).",
            status_code=502,
            code="app_unreachable",
            details=details,
        )
    if reset.code == "app_timeout":
        return ApiError(
            f"The app of task {task_id} did not answer in time ({what}).",
            status_code=504,
            code="app_timeout",
            details=details,
        )
    if reset.code == "too_many":
        return ApiError(
            f"Agent {agent_id} has as many requests in flight as it takes ({what}); retry when "
            "one has been answered.",
            status_code=429,
            code="too_many_requests",
            details={**details, "retry_after_s": 1},
        )
    return ApiError(
        f"{subject} task {task_id} failed on agent {agent_id}: {what} ({reset.code}).",
        status_code=502,
        code="app_broken",
        details=details,
    )
