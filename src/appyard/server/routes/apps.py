"""``/apps/{task_id}/...``: a running app's own web page, through its agent's tunnel
(docs/web.md, docs/apps.md, docs/tunnel.md).

Any method; the request's body goes to the app piece by piece as the agent's credit allows,
and the answer streams back the same way, so neither sits whole in the server. The sign-in is
checked before a byte of the body is read: a token (``Authorization``/``x-api-key``), or the
page's own cookie (``services/app_pages.py``); the platform's credentials are removed from what
the app sees. The app is asked for the path under the prefix (``/apps/5/a/b`` -> ``/a/b``),
and learns the prefix from ``APP_BASE_PATH`` (and ``X-Forwarded-Prefix``); redirects and
cookies it sends are put under the prefix.

A page's own WebSockets (``app_websocket``) are signed in the same way, checked before the
upgrade is accepted, and reach the app's WebSocket at the same path through the tunnel; the
codes a client sees when the platform ends one are listed in docs/tunnel.md.

Isolation: an answer served on the platform's own origin carries ``Content-Security-Policy:
sandbox ...`` (no ``allow-same-origin``), so the page runs in an opaque origin and cannot read
the web UI's storage (its token) nor call the API as the user. An answer served on the app's
own origin (``APPYARD_APPS_ORIGIN``, by default ``http://<task_id>.apps.localhost:<port>`` when
the server is reached on a loopback address) needs no sandbox: it is another origin already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from appyard.domain import hop_headers
from appyard.errors import ApiError, AuthenticationError, PermissionDeniedError
from appyard.schemas.tunnel import Close, Head, Open, Reset, close_reason, sendable_close
from appyard.server import keys
from appyard.server.guard import error_response
from appyard.server.relay import RELAYED_BY, Relay
from appyard.server.routes.deps import (
    PathId,
    ServerContext,
    aread,
    authenticated,
    in_thread,
    json_response,
)
from appyard.server.routes.requests import SMALL_ANSWER_BYTES, stream_failed
from appyard.server.security import Principal, hash_token
from appyard.server.services import app_pages
from appyard.server.services.accounts import authenticate
from appyard.server.tunnel import (
    ServerStream,
    StreamFailed,
    Tunnel,
    TunnelRegistry,
    WebSocketStream,
    WsMessage,
)

log = logging.getLogger("appyard.server")
router = APIRouter(tags=["app pages"])

#: the sandbox of a page served on the platform's origin: scripts, forms, popups (sandboxed
#: too), downloads and dialogs work; ``allow-same-origin`` is never given
SANDBOX = (
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads "
    "allow-pointer-lock allow-presentation"
)
#: the longest the app may take to start its answer (its head); the body may take longer
HEAD_TIMEOUT_S = 60.0
#: headers of one hop, never passed on either way (and those the Connection header names)
HOP_BY_HOP = hop_headers.HOP_BY_HOP | {"host"}
#: the platform's credentials: never shown to the app
CREDENTIALS = frozenset({"authorization", "x-api-key"})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


# -- where a page lives ---------------------------------------------------------------------------


def _host_port(host_header: str) -> tuple[str, str]:
    """``Host`` -> (host lowercased, port or "")."""
    h = host_header.strip().lower()
    if h.startswith("["):
        host, _, rest = h.partition("]")
        return host + "]", rest.lstrip(":")
    host, sep, port = h.rpartition(":")
    return (host, port) if sep and port.isdigit() else (h, "")


def page_origin(apps_origin: str | None, scheme: str, host_header: str, task_id: int) -> str:
    """The origin ``task_id``'s page is opened on: ``APPYARD_APPS_ORIGIN`` (``{task_id}`` in
    it replaced), else ``<task_id>.apps.localhost`` on the same port when the server is reached
    on a loopback address (browsers resolve ``*.localhost`` to loopback themselves), else the
    platform's own origin (the page is sandboxed there)."""
    if apps_origin:
        return apps_origin.rstrip("/").replace("{task_id}", str(task_id))
    host, port = _host_port(host_header)
    if host in LOOPBACK or host.endswith(".localhost"):
        return f"{scheme}://{task_id}.apps.localhost{':' + port if port else ''}"
    return f"{scheme}://{host_header}"


def _apps_host_pattern(apps_origin: str | None) -> re.Pattern[str]:
    """Hosts that are app origins (``Host`` header, port ignored): the configured one, and
    ``<id>.apps.localhost``; group 1 is the task id when the host names one."""
    alts = [r"(\d+)\.apps\.localhost"]
    if apps_origin:
        host = (urlsplit(apps_origin.replace("{task_id}", "0")).hostname or "").lower()
        if "{task_id}" in apps_origin:
            tmpl = (urlsplit(apps_origin).netloc.rsplit("@", 1)[-1]).lower()
            tmpl = re.sub(r":\d+$", "", tmpl)
            escaped = re.escape(tmpl).replace(re.escape("{task_id}"), r"(\d+)")
            alts.insert(0, escaped)
        elif host:
            alts.insert(0, re.escape(host) + "()")
    return re.compile(rf"^(?:{'|'.join(alts)})$")


class AppsHostGuard:
    """On an app's own origin only its page is served: the web UI and the API answer 404 there
    (a page must not be able to show the platform's sign-in on its own origin), and a page of
    another task on a per-task origin too."""

    def __init__(self, app: ASGIApp, *, apps_origin: str | None) -> None:
        self.app = app
        self.pattern = _apps_host_pattern(apps_origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = ""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value.decode("latin-1")
                    break
            m = self.pattern.match(_host_port(host)[0])
            if m is not None:
                task = next((g for g in m.groups() if g), None)
                path: str = scope["path"]
                prefix = f"/apps/{task}/" if task else "/apps/"
                if not (path.startswith(prefix) or path == prefix.rstrip("/")):
                    if scope["type"] == "websocket":
                        await send({"type": "websocket.close", "code": 1008})
                        return
                    error = ApiError(
                        f"{path}: this address is an app page's own origin; it serves only "
                        f"{prefix}... (the platform is on its own address)",
                        status_code=404,
                        code="not_found",
                    )
                    await error_response(error)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def isolated(apps_origin: str | None, host_header: str, task_id: int) -> bool:
    """Whether this request reached ``task_id``'s page on an origin of its own."""
    m = _apps_host_pattern(apps_origin).match(_host_port(host_header)[0])
    if m is None:
        return False
    task = next((g for g in m.groups() if g), None)
    return task is None or task == str(task_id)


# -- headers ------------------------------------------------------------------------------------


def _connection_named(headers: list[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for k, v in headers:
        if k == "connection":
            named.update(x.strip().lower() for x in v.split(",") if x.strip())
    return named


def request_headers(request: HTTPConnection, prefix: str) -> list[tuple[str, str]]:
    """The client's headers as the app sees them: hop-by-hop ones, the platform's
    credentials and its page cookie removed; the public address in ``X-Forwarded-*``."""
    raw = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]]
    drop = HOP_BY_HOP | CREDENTIALS | {RELAYED_BY} | _connection_named(raw)
    out: list[tuple[str, str]] = []
    for k, v in raw:
        if k in drop or k.startswith("x-forwarded-"):
            continue
        if k == "cookie":
            kept = [
                c.strip()
                for c in v.split(";")
                if c.strip() and c.strip().split("=", 1)[0].strip() != app_pages.COOKIE
            ]
            if not kept:
                continue
            v = "; ".join(kept)
        out.append((k, v))
    out += [
        ("x-forwarded-host", request.headers.get("host", "")),
        ("x-forwarded-proto", request.url.scheme),
        ("x-forwarded-prefix", prefix.rstrip("/")),
    ]
    if request.client is not None:
        out.append(("x-forwarded-for", request.client.host))
    return out


def _location(value: str, prefix: str) -> str:
    """A redirect of the app's, under the prefix: ``/x`` -> ``/apps/5/x``; an absolute URL to
    the app's own loopback address likewise; anything else (another site) as it is."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK:
        value = parts._replace(scheme="", netloc="").geturl() or "/"
        parts = urlsplit(value)
    local = not parts.scheme and not parts.netloc and value.startswith("/")
    if local and not value.startswith(prefix):
        return prefix.rstrip("/") + value
    return value


def _set_cookie(value: str, prefix: str) -> str | None:
    """An app's cookie, kept to its page: its ``Path`` under the prefix, no ``Domain``; one
    named as the platform's page cookie is dropped."""
    name = value.split("=", 1)[0].strip()
    if name == app_pages.COOKIE:
        return None
    attrs = [a.strip() for a in value.split(";")]
    out = [attrs[0]]
    path = "/"
    for a in attrs[1:]:
        key = a.split("=", 1)[0].strip().lower()
        if key == "domain":
            continue
        if key == "path":
            path = a.split("=", 1)[1].strip() if "=" in a else "/"
            continue
        out.append(a)
    if not path.startswith(prefix):
        path = prefix.rstrip("/") + (path if path.startswith("/") else "/" + path)
    out.append(f"Path={path}")
    return "; ".join(out)


def response_headers(head: Head, prefix: str, sandbox: bool) -> list[tuple[str, str]]:
    headers = [(k.lower(), v) for k, v in head.headers]
    drop = HOP_BY_HOP | _connection_named(headers)
    out: list[tuple[str, str]] = []
    for k, v in headers:
        if k in drop:
            continue
        if k == "location":
            v = _location(v, prefix)
        elif k == "set-cookie":
            kept = _set_cookie(v, prefix)
            if kept is None:
                continue
            v = kept
        elif k == "content-security-policy" and sandbox:
            continue  # ours replaces it (an app's own policy could not loosen the sandbox anyway)
        out.append((k, v))
    if sandbox:
        out.append(("content-security-policy", SANDBOX))
    return out


# -- the sign-in ---------------------------------------------------------------------------------


def _bearer(request: HTTPConnection) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    return request.headers.get("x-api-key", "").strip() or None


def _signed_in(ctx: ServerContext, request: Request, task_id: int) -> tuple[int, str | None]:
    """The agent of ``task_id`` if the request may open its page (401/403/404/409 if not), and
    a fresh page cookie when it came with a ticket."""
    token = _bearer(request)
    ticket = request.query_params.get(app_pages.TICKET_PARAM)
    cookie = request.cookies.get(app_pages.COOKIE)
    with ctx.db.reader() as s:
        p: Principal
        if token is not None:
            p = authenticate(s, token)
        elif ticket:
            p = app_pages.resolve_signed(s, ticket, "ticket", task_id)
        elif cookie:
            p = app_pages.resolve_signed(s, cookie, "cookie", task_id)
        else:
            raise AuthenticationError(
                f"Not signed in to the page of task {task_id}: open it from the session's page "
                "in the web UI, or send 'Authorization: Bearer <token>'."
            )
        agent_id, _ = app_pages.page_target(s, p, task_id=task_id)
        fresh = app_pages.cookie_for(s, p, task_id=task_id) if ticket and token is None else None
    return agent_id, fresh


# -- the route -----------------------------------------------------------------------------------

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route("/apps/{task_id}", methods=_METHODS, include_in_schema=False)
async def app_root(task_id: PathId, request: Request) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/apps/{task_id}/{query}", status_code=308)


@router.api_route("/apps/{task_id}/{path:path}", methods=_METHODS, include_in_schema=False)
async def app_page(task_id: PathId, path: str, request: Request) -> Response:
    """The app of ``task_id``'s own HTTP server, at ``/{path}`` (docs/web.md). Signed in with
    a token, or the page's cookie; the viewer role in the task's team is enough."""
    ctx: ServerContext = request.app.state.ctx
    registry: TunnelRegistry = request.app.state.tunnels
    prefix = f"/apps/{task_id}/"
    agent_id, fresh = await in_thread(request, lambda: _signed_in(ctx, request, task_id))
    if fresh is not None:
        # the ticket becomes the page's cookie; the address is shown without it
        query = [
            (k, v)
            for k, v in parse_qsl(request.url.query, keep_blank_values=True)
            if k != app_pages.TICKET_PARAM
        ]
        target = prefix + path + (f"?{urlencode(query)}" if query else "")
        redirect = RedirectResponse(target, status_code=303)
        redirect.set_cookie(
            app_pages.COOKIE,
            fresh,
            max_age=app_pages.COOKIE_TTL_S,
            path=prefix,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        redirect.headers["Cache-Control"] = "no-store"
        redirect.headers["Referrer-Policy"] = "no-referrer"
        return redirect
    tunnel = registry.get(agent_id)
    if tunnel is None:  # connected to another replica, or not at all
        relay: Relay = request.app.state.relay
        return await relay.answer(
            request, agent_id=agent_id, task_id=task_id, timeout=ctx.settings.max_request_timeout_s
        )
    sandbox = not isolated(ctx.settings.apps_origin, request.headers.get("host", ""), task_id)
    target = "/" + path + (f"?{request.url.query}" if request.url.query else "")
    open_ = Open(
        task_id=task_id,
        method=request.method,
        path=target,
        headers=request_headers(request, prefix),
        timeout=ctx.settings.max_request_timeout_s,
    )
    stream = tunnel.open_stream(task_id)
    handed_over = False
    upload = asyncio.create_task(_upload(stream, open_, request))
    upload.add_done_callback(_retrieved)
    try:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await _head(stream, upload)
        except TimeoutError:
            raise ApiError(
                f"The app of task {task_id} did not start answering {request.method} "
                f"{target} within {HEAD_TIMEOUT_S:g} s; it was told to stop.",
                status_code=504,
                code="app_timeout",
                details={"task_id": task_id},
            ) from None
        headers = response_headers(head, prefix, sandbox)
        response = await _answer(stream, head, headers, upload, request.method)
        handed_over = True
        return response
    except StreamFailed as exc:
        raise stream_failed(tunnel, task_id, exc, "The page of") from None
    finally:
        if not handed_over:
            upload.cancel()
            await stream.cancel()


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: its failure is the stream's, answered by the route


async def _upload(stream: ServerStream, open_: Open, request: Request) -> None:
    """OPEN, then the client's body piece by piece as it arrives and the agent's credit
    allows (a 200 MB upload never sits in memory), then END."""
    await stream.send_open(open_)
    async for piece in request.stream():
        if piece:
            await stream.send_data(piece)
    await stream.send_end()


async def _head(stream: ServerStream, upload: asyncio.Task[None]) -> Head:
    """The app's head; an upload that fails first (the stream reset) fails it too."""
    head_task = asyncio.ensure_future(stream.head())
    done, _ = await asyncio.wait({head_task, upload}, return_when=asyncio.FIRST_COMPLETED)
    if head_task in done:
        return head_task.result()
    exc = upload.exception()
    if exc is not None and not isinstance(exc, StreamFailed):
        head_task.cancel()
        raise exc  # the client went away mid-upload
    return await head_task


async def _answer(
    stream: ServerStream,
    head: Head,
    headers: list[tuple[str, str]],
    upload: asyncio.Task[None],
    method: str,
) -> Response:
    length = next((v for k, v in headers if k == "content-length"), None)
    if method == "HEAD" or (
        length is not None and length.isdigit() and int(length) <= SMALL_ANSWER_BYTES
    ):
        content = b"".join([piece async for piece in stream.body()])
        await _finish(upload)
        response = Response(content, status_code=head.status)
        _set_headers(response, headers, keep_length=method == "HEAD")
        return response

    async def pieces() -> AsyncIterator[bytes]:
        try:
            async for piece in stream.body():
                yield piece
        finally:
            await _finish(upload)
            await stream.cancel("the answer could not be completed")

    response = StreamingResponse(pieces(), status_code=head.status)
    _set_headers(response, headers, keep_length=True)
    return response


async def _finish(upload: asyncio.Task[None]) -> None:
    """The answer is over: an upload still going is not wanted any more."""
    if not upload.done():
        upload.cancel()
    with contextlib.suppress(BaseException):
        await upload


def _set_headers(response: Response, headers: list[tuple[str, str]], *, keep_length: bool) -> None:
    """The app's headers on ``response``; its ``content-length`` only when ``keep_length``
    (a HEAD, a stream), else the one of the body gathered."""
    raw = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in headers
        if k != "content-length" or keep_length
    ]
    if not keep_length:
        raw.append((b"content-length", str(len(response.body)).encode()))
    response.raw_headers = raw


# -- the page's ticket (the web UI's "App page") ---------------------------------------------------

api_router = APIRouter(dependencies=[Depends(authenticated)], tags=["tasks"])


class AppPage(BaseModel):
    """Where to open a session's page: ``url`` carries a ticket (good for ``expires_in_s``)
    that the page's first answer turns into a cookie scoped to it."""

    task_id: int
    url: str
    origin: str
    #: served on the platform's own origin in a sandbox (an opaque origin), not an origin of
    #: its own (``APPYARD_APPS_ORIGIN``)
    sandboxed: bool
    expires_in_s: int


@api_router.post(
    "/tasks/{task_id}/app-page",
    response_model=AppPage,
    responses={
        404: {"description": "No such task, or not in one of your teams"},
        409: {"description": "The session is not running (`not_running`)"},
    },
)
async def open_app_page(request: Request, task_id: PathId) -> Response:
    """A link that opens the running app's own web page in a browser (docs/web.md); the
    viewer role in the task's team is enough."""
    ctx: ServerContext = request.app.state.ctx
    ticket = await aread(request, lambda s, p: app_pages.ticket_for(s, p, task_id=task_id))
    host = request.headers.get("host", "")
    origin = page_origin(ctx.settings.apps_origin, request.url.scheme, host, task_id)
    own = urlsplit(origin).netloc.lower() == host.lower()
    page = AppPage(
        task_id=task_id,
        url=f"{origin}/apps/{task_id}/?{urlencode({app_pages.TICKET_PARAM: ticket})}",
        origin=origin,
        sandboxed=own and not isolated(ctx.settings.apps_origin, host, task_id),
        expires_in_s=app_pages.TICKET_TTL_S,
    )
    return json_response(page)


# -- the page's own websockets --------------------------------------------------------------------

#: close codes a client's websocket gets when the platform, not the app, ends it (docs/tunnel.md)
WS_APP_REFUSED = 4400  # the app answered the handshake with an HTTP status (no websocket there)
WS_SIGNED_OUT = 4401  # the token the page was opened with was revoked, or lost its access
WS_SESSION_ENDED = 4409  # the session is not running (any more)
WS_TOO_MANY = 4429  # as many requests in flight into the session or on its agent as allowed
WS_APP_BROKEN = 4500  # the app's connection dropped without a close, or broke the protocol
WS_APP_UNREACHABLE = 4502  # nothing answers on the app's port
WS_TUNNEL_DOWN = 4503  # the agent's tunnel is not connected, or was lost while open
WS_APP_TIMEOUT = 4504  # the app did not finish the handshake in time
#: how long the app has to accept a websocket (the agent dials it, the app answers 101)
WS_HANDSHAKE_TIMEOUT_S = 30.0
#: the client's handshake headers the agent's own handshake with the app replaces
_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
)


@dataclass(frozen=True)
class _WsAccess:
    """Who opened a page's websocket: enough to check again while it stays open."""

    agent_id: int
    #: the stored hash of the token signed in with (its revocation fires ``keys.credential``)
    token_hash: str
    #: signed in with the page's cookie (a browser), not a token in a header
    by_cookie: bool


def _ws_signed_in(ctx: ServerContext, ws: WebSocket, task_id: int) -> _WsAccess:
    """As ``_signed_in`` for a page's websocket: a token or the page's cookie (a ticket is for
    navigations only); 401/403/404/409 if it may not open."""
    token = _bearer(ws)
    cookie = ws.cookies.get(app_pages.COOKIE)
    with ctx.db.reader() as s:
        p: Principal
        if token is not None:
            p = authenticate(s, token)
            token_hash = hash_token(token)
        elif cookie:
            p = app_pages.resolve_signed(s, cookie, "cookie", task_id)
            token_hash = app_pages.token_hash_of(s, p.token_id) or ""
        else:
            raise AuthenticationError(
                f"Not signed in to the page of task {task_id}: a page's websocket is signed in by "
                "the page's cookie (open the page from the session's page in the web UI first), "
                "or send 'Authorization: Bearer <token>'."
            )
        agent_id, _ = app_pages.page_target(s, p, task_id=task_id)
    return _WsAccess(agent_id, token_hash, token is None)


def _same_origin(ws: WebSocket) -> bool:
    """A browser's websocket comes from a page of the address it opens (``Origin`` is its
    ``Host``), or it is not a browser's (no ``Origin``). Another page (another app's, on a
    sibling ``*.apps`` origin) must not use the page's cookie: nothing like CORS guards a
    websocket."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = ws.headers.get("host", "").lower()
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def _ended(task_id: int, exc: ApiError) -> tuple[int, str]:
    """The close for a refusal of an open websocket's sign-in (checked again on a change)."""
    if exc.status_code == 409:
        status = exc.details.get("status", "not running")
        return WS_SESSION_ENDED, f"task {task_id}: the session is {status}; its page is gone"
    return WS_SIGNED_OUT, close_reason(f"task {task_id}: signed out ({exc.message})")


def _ws_recheck(ctx: ServerContext, ws: WebSocket, task_id: int) -> tuple[int, str] | None:
    try:
        _ws_signed_in(ctx, ws, task_id)
    except ApiError as exc:
        return _ended(task_id, exc)
    return None


def _ws_failed(tunnel: Tunnel, task_id: int, reset: Reset) -> tuple[int, str]:
    """The close code and reason for a websocket stream the agent reset, or the tunnel lost."""
    agent = tunnel.agent_id
    if tunnel.closed:
        return WS_TUNNEL_DOWN, f"task {task_id}: {tunnel.down_message()}"
    code = reset.code
    if code == "not_here":
        return WS_SESSION_ENDED, f"task {task_id}: its app is not running on agent {agent} now"
    if code == "app_unreachable":
        return WS_APP_UNREACHABLE, f"task {task_id}: nothing answers on the app's port"
    if code == "app_refused":
        return WS_APP_REFUSED, f"task {task_id}: {reset.message}"
    if code == "app_timeout":
        return WS_APP_TIMEOUT, f"task {task_id}: the app did not accept the websocket in time"
    if code == "too_many":
        return WS_TOO_MANY, f"task {task_id}: agent {agent} forwards as many streams as it takes"
    return WS_APP_BROKEN, f"task {task_id}: {reset.message or reset.code}"


async def _deny(ws: WebSocket, exc: ApiError) -> None:
    """Refuse the upgrade with a plain HTTP answer (the usual JSON error body)."""
    try:
        await ws.send_denial_response(JSONResponse(exc.to_body(), status_code=exc.status_code))
    except RuntimeError:  # a server without the denial extension: a bare close
        await ws.close(code=1008, reason=close_reason(exc.message))


async def _close_at_once(ws: WebSocket, code: int, reason: str) -> None:
    """A signed-in client whose websocket cannot open: accepted and closed at once with the code
    and reason (a browser's script sees those, and nothing of a refused upgrade)."""
    await ws.accept()
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=close_reason(reason))


@router.websocket("/apps/{task_id}/{path:path}")
async def app_websocket(ws: WebSocket, task_id: PathId, path: str) -> None:
    """The app of ``task_id``'s own WebSocket at ``/{path}``, through its agent's tunnel
    (docs/tunnel.md): messages both ways, text and binary kept, close codes and the
    subprotocol passed on. Signed in as the page is, before the upgrade is accepted."""
    ctx: ServerContext = ws.app.state.ctx
    registry: TunnelRegistry = ws.app.state.tunnels
    loop = asyncio.get_running_loop()
    try:
        access = await loop.run_in_executor(ctx.workers, _ws_signed_in, ctx, ws, task_id)
    except ApiError as exc:
        if exc.status_code == 409:  # signed in and allowed: the session is not running
            await _close_at_once(ws, *_ended(task_id, exc))
        else:
            await _deny(ws, exc)
        return
    if access.by_cookie and not _same_origin(ws):
        await _deny(
            ws,
            PermissionDeniedError(
                f"The page of task {task_id} takes websockets signed in by its cookie only from "
                f"its own origin, not from {ws.headers.get('origin')!r}."
            ),
        )
        return
    tunnel = registry.get(access.agent_id)
    if tunnel is None:  # connected to another replica (relayed there), or not at all
        relay: Relay = ws.app.state.relay
        down = await relay.websocket(
            ws,
            agent_id=access.agent_id,
            task_id=task_id,
            max_size=ctx.settings.max_ws_message_bytes,
        )
        if down is not None:
            await _close_at_once(ws, *down)
        return
    try:
        stream = tunnel.open_websocket(task_id)
    except ApiError:
        await _close_at_once(
            ws, WS_TOO_MANY, f"task {task_id}: too many requests in flight; retry in a moment"
        )
        return
    prefix = f"/apps/{task_id}/"
    headers = [
        (k, {"ws": "http", "wss": "https"}.get(v, v) if k == "x-forwarded-proto" else v)
        for k, v in request_headers(ws, prefix)
        if k not in _WS_HANDSHAKE
    ]
    open_ = Open(
        task_id=task_id,
        method="GET",
        path="/" + path + (f"?{ws.url.query}" if ws.url.query else ""),
        headers=headers,
        timeout=WS_HANDSHAKE_TIMEOUT_S,
        kind="websocket",
    )
    try:
        await stream.send_open(open_)
        async with asyncio.timeout(WS_HANDSHAKE_TIMEOUT_S + 5):
            head = await stream.head()
    except StreamFailed as exc:
        await stream.cancel()
        end = _ws_failed(tunnel, task_id, exc.reset)
        if exc.reset.code == "protocol" and not tunnel.closed:  # an agent older than websockets
            end = (
                WS_APP_BROKEN,
                (
                    f"task {task_id}: agent {tunnel.agent_id} cannot open websockets to apps "
                    "(update the agent)"
                ),
            )
        await _close_at_once(ws, *end)
        return
    except TimeoutError:
        await stream.cancel("the app did not accept the websocket in time")
        await _close_at_once(
            ws, WS_APP_TIMEOUT, f"task {task_id}: the app did not accept the websocket in time"
        )
        return
    except BaseException:
        await stream.cancel()
        raise
    offered = [
        x.strip() for x in ws.headers.get("sec-websocket-protocol", "").split(",") if x.strip()
    ]
    chosen = next((v for k, v in head.headers if k.lower() == "sec-websocket-protocol"), None)
    try:
        await ws.accept(subprotocol=chosen if chosen in offered else None)
    except BaseException:
        await stream.send_close(1001, "the client went away")
        raise
    await _relay(ctx, ws, stream, tunnel, task_id, access)


#: what a pump of ``_relay`` ends with: the client went away (the app was told), a close to
#: give the client (the platform's), the app's close, or the stream's failure
_End = None | tuple[int, str] | Close | Reset


async def _relay(
    ctx: ServerContext,
    ws: WebSocket,
    stream: WebSocketStream,
    tunnel: Tunnel,
    task_id: int,
    access: _WsAccess,
) -> None:
    """Messages both ways until one side closes, the stream fails, or the sign-in or the
    session ends; then the other side is told, with a code."""
    to_client = asyncio.create_task(_app_to_client(ws, stream))
    to_app = asyncio.create_task(_client_to_app(ws, stream, tunnel.limits.ws_message))
    watch = asyncio.create_task(_ws_watch(ctx, ws, task_id, access))
    pumps = (to_client, to_app, watch)
    end: _End = None
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        first = next(t for t in pumps if t in done)
        try:
            end = first.result()
            if first is to_app and isinstance(end, Reset):  # the app's side ended: its close
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        end = await to_client
        except Exception as exc:  # a send on the tunnel failed as it went down, say
            log.warning("task %d: a page's websocket failed: %r", task_id, exc)
            end = Reset(code="app_broken", message=f"the relay failed ({type(exc).__name__})")
    finally:
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if isinstance(end, tuple):  # the platform ends it: the app is told why
            await stream.send_close(1001, close_reason(f"the platform closed it: {end[1]}"))
        await stream.cancel("the websocket is over")  # a no-op once it ended, as it should
    if end is None:
        return
    if isinstance(end, Close):
        code = sendable_close(end.code)
        reason = close_reason(end.reason) if end.code not in (None, 1005) else ""
    elif isinstance(end, Reset):
        code, reason = _ws_failed(tunnel, task_id, end)
        if end.code == "app_broken":  # its connection dropped: most often, the session ended
            loop = asyncio.get_running_loop()
            gone = await loop.run_in_executor(ctx.workers, _ws_recheck, ctx, ws, task_id)
            code, reason = gone or (code, reason)
    else:
        code, reason = end
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=close_reason(reason))


async def _app_to_client(ws: WebSocket, stream: WebSocketStream) -> _End:
    """The app's messages to the client, each one's credit given back once it is sent."""
    while True:
        item = await stream.receive()
        if not isinstance(item, WsMessage):
            return item
        try:
            if item.text:
                await ws.send_text(item.data.decode())
            else:
                await ws.send_bytes(item.data)
        except Exception:  # the client went away
            await stream.send_close(1001, "the client's connection was lost")
            return None
        stream.sent()


async def _client_to_app(ws: WebSocket, stream: WebSocketStream, cap: int) -> _End:
    """The client's messages to the app as the agent's credit allows (a slow app stops this
    reader, and so the client, and nothing else), each checked against the cap."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            await stream.send_close(message.get("code", 1005), message.get("reason") or "")
            return None
        text = message.get("text")
        data = text.encode() if text is not None else (message.get("bytes") or b"")
        if len(data) > cap:
            await stream.send_close(1009, "the client sent a message too big")
            return 1009, (
                f"task {stream.task_id}: a message of {len(data)} bytes is over the cap of "
                f"{cap} (APPYARD_MAX_WS_MESSAGE_BYTES)"
            )
        try:
            await stream.send_message(data, text is not None)
        except StreamFailed as exc:
            return exc.reset


async def _ws_watch(ctx: ServerContext, ws: WebSocket, task_id: int, access: _WsAccess) -> _End:
    """End the websocket when the session stops running or the sign-in is revoked (its token's
    ``credential`` key): each change of either is checked again, in a worker thread."""
    loop = asyncio.get_running_loop()
    with ctx.notifier.subscribe(keys.task(task_id), keys.credential(access.token_hash)) as sub:
        while True:
            await sub.wait(3600.0)
            sub.take()
            if sub.closing:
                return 1001, f"task {task_id}: the server is shutting down"
            end = await loop.run_in_executor(ctx.workers, _ws_recheck, ctx, ws, task_id)
            if end is not None:
                return end
