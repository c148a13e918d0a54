"""``/apps/{task_id}/...``: a running app's own web page, through its agent's tunnel
(docs/web.md, docs/apps.md, docs/tunnel.md).

Any method; the request's body goes to the app piece by piece as the agent's credit allows,
and the answer streams back the same way, so neither sits whole in the server. The sign-in is
checked before a byte of the body is read: a token (``Authorization``/``x-api-key``), or the
page's own cookie (``services/app_pages.py``); the platform's credentials are removed from what
the app sees. The app is asked for the path under the prefix (``/apps/5/a/b`` -> ``/a/b``),
and learns the prefix from ``APP_BASE_PATH`` (and ``X-Forwarded-Prefix``); redirects and
cookies it sends are put under the prefix.

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
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from appyard.errors import ApiError, AuthenticationError
from appyard.schemas.tunnel import Head, Open
from appyard.server.guard import error_response
from appyard.server.routes.deps import (
    PathId,
    ServerContext,
    aread,
    authenticated,
    in_thread,
    json_response,
)
from appyard.server.routes.requests import SMALL_ANSWER_BYTES, stream_failed
from appyard.server.security import Principal
from appyard.server.services import app_pages
from appyard.server.services.accounts import authenticate
from appyard.server.tunnel import ServerStream, StreamFailed, TunnelRegistry, tunnel_down

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
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
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


def request_headers(request: Request, prefix: str) -> list[tuple[str, str]]:
    """The client's headers as the app sees them: hop-by-hop ones, the platform's
    credentials and its page cookie removed; the public address in ``X-Forwarded-*``."""
    raw = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]]
    drop = HOP_BY_HOP | CREDENTIALS | _connection_named(raw)
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


def _bearer(request: Request) -> str | None:
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
    if tunnel is None:
        raise tunnel_down(agent_id, task_id, "it is not connected")
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
