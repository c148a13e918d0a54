"""Requests into a session relayed to the replica its agent's tunnel is connected to.

With several server replicas behind a load balancer, an agent's tunnel is connected to one of
them, and a request into one of its sessions may land on any. The replica that has no tunnel
for the agent reads which replica has (``services/tunnel_owners.py``, recorded by each
replica run with ``APPYARD_REPLICA_URL``) and sends it the client's request as it came: the
method, the path and query, the headers (the client's credentials with them: the owner checks
them again, as for any request) and the body, streamed both ways. A relayed request carries
``X-Appyard-Relayed-By``: a replica that has no tunnel for it either answers 503 rather than
relay it again. Replicas talk to each other only; the server still never dials an agent.

An app page's own websockets are relayed too (``websocket``): this replica opens a websocket
to the owner's same address, with the client's headers and offered subprotocols, accepts the
client's with the subprotocol the owner's chose, and passes messages and closes both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import httpx
from starlette.datastructures import Address
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from appyard.domain.hop_headers import HOP_BY_HOP
from appyard.server.db.engine import Database
from appyard.server.services import tunnel_owners
from appyard.server.tunnel import tunnel_down

#: the header a relayed request carries: the replica that relayed it
RELAYED_BY = "x-appyard-relayed-by"
#: headers of one connection, not of the request or answer (RFC 9110 7.6.1)
_HOP = HOP_BY_HOP | {RELAYED_BY}
#: how long to wait for the other replica's connection
CONNECT_TIMEOUT_S = 5.0
#: how long an owner read from the database is used for an agent's next requests: a tunnel
#: that moved is found again at the latest then, or at once when the old owner refuses
OWNER_TTL_S = 2.0
#: owners kept at most (one per agent; past it the cache starts over)
OWNER_CACHE_MAX = 10_000
#: what this replica made of the client's address and scheme (uvicorn's proxy headers,
#: from a trusted balancer) goes in their place, so the owner sees the client, not us
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto"})


def _as_seen_here(client: Address | None, scheme: str) -> list[tuple[str, str]]:
    """``X-Forwarded-For`` and ``-Proto`` as this replica resolved them; the owner takes
    them when it trusts this replica's address (``FORWARDED_ALLOW_IPS``, docs/tunnel.md)."""
    seen = [("x-forwarded-proto", {"ws": "http", "wss": "https"}.get(scheme, scheme))]
    if client is not None:
        seen.append(("x-forwarded-for", client.host))
    return seen


class Relay:
    """This replica's relay to the others (one connection pool, made when first needed)."""

    def __init__(self, db: Database, replica_url: str | None, workers: Executor) -> None:
        self._db = db
        self.own = replica_url
        self._workers = workers
        self._client: httpx.AsyncClient | None = None
        self._owners: dict[int, tuple[str, float]] = {}  # agent id -> (owner, until)

    async def answer(
        self, request: Request, *, agent_id: int, task_id: int, timeout: float
    ) -> StreamingResponse:
        """``request``, answered by the replica the agent's tunnel is connected to; a 503
        ``tunnel_down`` when there is none (or it is this one, or it does not answer)."""
        if self.own is None or request.headers.get(RELAYED_BY):
            raise tunnel_down(agent_id, task_id, "it is not connected")
        owner = await self._owner_of(agent_id)
        if owner is None:
            raise tunnel_down(agent_id, task_id, "it is not connected to any replica")
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False)  # replicas: no proxy between
        headers = [
            (k, v)
            for k, v in request.headers.raw
            if (name := k.decode("latin-1")) not in _HOP and name not in _FORWARDED
        ]
        headers += [
            (k.encode(), v.encode("latin-1"))
            for k, v in _as_seen_here(request.client, request.url.scheme)
        ]
        headers.append((RELAYED_BY.encode(), self.own.encode()))
        query = request.url.query
        url = owner + request.url.path + (f"?{query}" if query else "")
        sends_body = any(
            k in (b"content-length", b"transfer-encoding") for k, _ in request.headers.raw
        )
        outgoing = self._client.build_request(
            request.method,
            url,
            headers=headers,
            content=request.stream() if sends_body else None,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S),
        )
        try:
            answer = await self._client.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            self._owners.pop(agent_id, None)
            raise tunnel_down(
                agent_id,
                task_id,
                f"it is connected to replica {owner}, which did not answer ({type(exc).__name__})",
            ) from None
        if answer.status_code == 503:  # (its tunnel gone, say): the next one looks again
            self._owners.pop(agent_id, None)
        response = StreamingResponse(_body(answer), status_code=answer.status_code)
        response.raw_headers = [
            (k.lower(), v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in _HOP
        ]
        return response

    async def websocket(
        self, ws: WebSocket, *, agent_id: int, task_id: int, max_size: int
    ) -> tuple[int, str] | None:
        """The client's websocket ``ws`` (not accepted yet), relayed to the replica the
        agent's tunnel is connected to until either side closes; the close to give the
        client instead when there is none (or it is this one, or it refused)."""
        down = (4503, f"task {task_id}: agent {agent_id} has no tunnel to any server; retry soon")
        if self.own is None or ws.headers.get(RELAYED_BY):
            return down
        owner = await self._owner_of(agent_id)
        if owner is None:
            return down
        url = "ws" + owner.removeprefix("http") + ws.url.path
        url += f"?{ws.url.query}" if ws.url.query else ""
        offered = [
            x.strip() for x in ws.headers.get("sec-websocket-protocol", "").split(",") if x.strip()
        ]
        headers = [
            (k, v)
            for k, v in ws.headers.items()
            if k not in _HOP
            and k not in _FORWARDED
            and k != "host"
            and not k.startswith("sec-websocket-")
        ]
        headers += _as_seen_here(ws.client, ws.url.scheme)
        if ws.headers.get("origin"):
            # this replica checked the page's origin against the address the client opened;
            # the owner checks it against its own, which the relayed handshake is sent to
            headers = [(k, v) for k, v in headers if k != "origin"]
            headers.append(("origin", owner))
        headers.append((RELAYED_BY, self.own))
        try:
            app = await connect(
                url,
                additional_headers=headers,
                subprotocols=[Subprotocol(x) for x in offered] or None,
                max_size=max_size,
                open_timeout=CONNECT_TIMEOUT_S + 30,  # the owner waits up to 30 s on the app
                proxy=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self._owners.pop(agent_id, None)
            return (
                4503,
                f"task {task_id}: agent {agent_id}'s tunnel is on replica {owner}, which did not "
                f"take the websocket ({type(exc).__name__})",
            )
        async with app:
            await ws.accept(subprotocol=app.subprotocol)
            await _pump(ws, app, f"task {task_id}: the relay to replica {owner} was lost")
        return None

    async def _owner_of(self, agent_id: int) -> str | None:
        """The other replica the agent's tunnel is connected to (None: none, or this one),
        from the database at most every ``OWNER_TTL_S`` while it answers."""
        now = time.monotonic()
        known = self._owners.get(agent_id)
        if known is not None and known[1] > now:
            return known[0]
        loop = asyncio.get_running_loop()
        owner = await loop.run_in_executor(self._workers, self._owner, agent_id)
        if owner is None or owner == self.own:
            self._owners.pop(agent_id, None)
            return None
        if len(self._owners) >= OWNER_CACHE_MAX:
            self._owners.clear()
        self._owners[agent_id] = (owner, now + OWNER_TTL_S)
        return owner

    def _owner(self, agent_id: int) -> str | None:
        with self._db.reader() as s:
            return tunnel_owners.owner(s, agent_id=agent_id)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _body(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The other replica's answer as it comes (compressed as it was); closed however it ends."""
    try:
        async for piece in answer.aiter_raw():
            yield piece
    finally:
        await answer.aclose()


async def _pump(ws: WebSocket, app: ClientConnection, lost: str) -> None:
    """Messages both ways until one side closes; its close goes to the other (``lost``, with
    4503, when the owner's connection dropped without one)."""

    async def to_app() -> None:
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code", 1000)
                    await app.close(
                        1000 if code in (1005, 1006) else code, message.get("reason") or ""
                    )
                    return
                text = message.get("text")
                await app.send(text if text is not None else message.get("bytes", b""))
        except (WebSocketDisconnect, ConnectionClosed):
            return

    async def to_client() -> None:
        try:
            async for message in app:
                if isinstance(message, str):
                    await ws.send_text(message)
                else:
                    await ws.send_bytes(message)
        except ConnectionClosed:
            pass
        rcvd = app.protocol.close_rcvd  # the owner's close, as it sent it
        if rcvd is None:
            code, reason = 4503, lost
        else:
            code, reason = (1000 if rcvd.code == 1005 else rcvd.code), rcvd.reason
        with contextlib.suppress(Exception):
            await ws.close(code=code, reason=reason)

    pumps = [asyncio.create_task(to_app()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
