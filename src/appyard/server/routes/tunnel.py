"""``/agents/{agent_id}/tunnel``: the WebSocket an agent opens for the traffic into its apps.

The agent's token is checked before the WebSocket is accepted (a refusal is a plain HTTP
401/403/404 answer to the upgrade, with the usual JSON error body). Once open, the tunnel is
the agent's in this server process (``server/tunnel.py``) until it closes; a revocation of
the agent's token (rotated, the agent deleted) closes it at once (WebSocket close code 4401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from appyard.errors import ApiError, AuthenticationError, PermissionDeniedError
from appyard.schemas.tunnel import FEATURES_HEADER, FrameError
from appyard.server import keys
from appyard.server.routes.deps import PathId, ServerContext
from appyard.server.security import Principal, hash_token
from appyard.server.services import tunnel_owners
from appyard.server.services.accounts import authenticate
from appyard.server.tunnel import Tunnel, TunnelRegistry

log = logging.getLogger("appyard.server")
router = APIRouter(tags=["agents"])

#: the WebSocket close code of a tunnel whose token is no longer valid
CLOSE_REFUSED = 4401


def _token(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    return ws.headers.get("x-api-key", "").strip() or None


def _check(ctx: ServerContext, token: str, agent_id: int) -> Principal:
    with ctx.db.reader() as s:
        p = authenticate(s, token)
    if p.kind != "agent" or p.agent_id != agent_id:
        raise PermissionDeniedError(
            f"Only agent {agent_id}'s own token can open its tunnel.", field="agent_id"
        )
    return p


async def _refuse(ws: WebSocket, exc: ApiError) -> None:
    try:
        await ws.send_denial_response(JSONResponse(exc.to_body(), status_code=exc.status_code))
    except RuntimeError:  # a server without the denial extension: a bare close
        await ws.close(code=CLOSE_REFUSED, reason=exc.message[:120])


@router.websocket("/agents/{agent_id}/tunnel")
async def tunnel(ws: WebSocket, agent_id: PathId) -> None:
    ctx: ServerContext = ws.app.state.ctx
    registry: TunnelRegistry = ws.app.state.tunnels
    token = _token(ws)
    if token is None:
        await _refuse(
            ws,
            AuthenticationError(
                "No API token: send 'Authorization: Bearer <agent token>' to open a tunnel."
            ),
        )
        return
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(ctx.workers, _check, ctx, token, agent_id)
    except ApiError as exc:
        await _refuse(ws, exc)
        return
    await ws.accept()
    features = {f.strip() for f in ws.headers.get(FEATURES_HEADER, "").split(",")}
    t = Tunnel(agent_id, ws.send_bytes, registry.limits, whole="whole" in features)
    registry.attach(t)
    watcher = asyncio.create_task(_watch_token(ws, ctx, t, token))
    reason = "the agent closed it"
    replica = ctx.settings.replica_url
    try:
        if replica is not None:  # the other replicas relay to this one (server/relay.py)
            await loop.run_in_executor(ctx.workers, _owned, ctx, agent_id, replica, True)
        await t.hello()
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                reason = "the connection was lost"
                break
            data = message.get("bytes")
            if data is None:
                raise FrameError("a text message on the tunnel (frames are binary)")
            t.dispatch(data)
    except WebSocketDisconnect:
        reason = "the connection was lost"
    except FrameError as exc:
        reason = f"the agent broke the protocol: {exc}"
        log.warning("agent %d: tunnel closed: %s", agent_id, reason)
        with contextlib.suppress(Exception):
            await ws.close(code=1002, reason=str(exc)[:120])
    except Exception as exc:
        reason = f"the connection failed: {type(exc).__name__}"
        raise
    finally:
        watcher.cancel()
        t.close(reason)
        registry.detach(t)
        if replica is not None and registry.get(agent_id) is None:
            with contextlib.suppress(Exception):  # a stale owner only costs a failed relay
                await loop.run_in_executor(ctx.workers, _owned, ctx, agent_id, replica, False)


def _owned(ctx: ServerContext, agent_id: int, replica: str, owned: bool) -> None:
    """Record (or clear) that the agent's tunnel is connected to this replica."""
    with ctx.db.session() as s:
        if owned:
            tunnel_owners.claim(s, agent_id=agent_id, replica=replica)
        else:
            tunnel_owners.release(s, agent_id=agent_id, replica=replica)


async def _watch_token(ws: WebSocket, ctx: ServerContext, t: Tunnel, token: str) -> None:
    """Close the tunnel the moment its token is revoked (the agent's token rotated, the agent
    deleted): the revocation fires the token's ``credential`` key."""
    loop = asyncio.get_running_loop()
    with ctx.notifier.subscribe(keys.credential(hash_token(token))) as sub:
        while not t.closed:
            await sub.wait(3600.0)
            sub.take()
            if sub.closing:
                return
            try:
                await loop.run_in_executor(ctx.workers, _check, ctx, token, t.agent_id)
            except ApiError as exc:
                t.close(f"its token was refused: {exc.message}")
                with contextlib.suppress(Exception):
                    await ws.close(code=CLOSE_REFUSED, reason="token refused")
                return
