"""Two server replicas on one PostgreSQL database, each with its ``APPYARD_REPLICA_URL``: a
request into a session that lands on the replica its agent's tunnel is not connected to is
relayed to the one it is (``server/relay.py``), for ``send_request`` and for the app's page,
bodies streamed both ways; the app's own errors come back as they are, and a replica with no
tunnel to relay to says so."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import appyard as ay
from appyard.errors import ApiError
from tests.support import AgentProc, Client, ServerProc, pg_available, two_replicas, wait_for

pytestmark = pytest.mark.skipif(not pg_available(), reason="needs the PostgreSQL server")

E2E_APPS = Path(__file__).parent / "apps"
MB = 1024 * 1024


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[ServerProc, ServerProc]]:
    with two_replicas(tmp_path, relay=True) as pair:
        yield pair


def test_requests_and_pages_reach_a_session_through_either_replica(
    replicas: tuple[ServerProc, ServerProc], tmp_path: Path
) -> None:
    a, b = replicas
    token = a.admin_token
    admin = Client(a.url, token)
    team = admin.ok("POST", "/teams", json={"name": "relayed"})
    ws = admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "w"})
    created = admin.ok("POST", f"/teams/{team['id']}/agents", json={"name": "on-a"})
    agent = AgentProc(a.url, created["token"], tmp_path / "agent").start()  # its tunnel: on a
    api_a, api_b = ay.Api(a.url, token), ay.Api(b.url, token)
    try:
        wait_for(
            lambda: any(x.status == "online" for x in api_b.agent.get_list(team["id"])),
            30,
            f"the agent online:\n{agent.log_text}",
        )
        serving = admin.publish(E2E_APPS / "serving")["module_id"]
        tid = api_b.app.start(
            agent_id=created["id"], module_id=serving, workspace_id=ws["id"], params={}
        ).task_id
        assert api_b.app.wait_until_ready_for_api_calls(tid, 60, 1)

        # send_request through b (relayed to a) and through a (its own tunnel): the same
        for api in (api_b, api_a, api_b):
            answer = api.task.send_request(tid, "echo", {"via": api._core.server_address})
            assert answer["state"] == {"via": api._core.server_address} and answer["task_id"] == tid
        big = api_b.task.send_request(tid, "big", {"n": 3_000_000, "payload": "p" * 700_000})
        assert big["got"] == 700_000 and len(big["data"]) == 3_000_000
        with pytest.raises(ApiError) as failed:
            api_b.task.send_request(tid, "fail", {"why": "relayed"})
        assert failed.value.status_code == 500 and failed.value.code == "app_error"
        assert "asked to fail: relayed" in failed.value.message
        # the grant on b holds, and is asked again on the owner: a viewer is refused on both
        viewer_login = "relay-viewer"
        admin.ok("POST", "/users", json={"login": viewer_login})
        admin.ok(
            "POST",
            f"/teams/{team['id']}/members",
            json={"login": viewer_login, "role": "viewer"},
        )
        uid = next(u["id"] for u in admin.ok("GET", "/users") if u["login"] == viewer_login)
        viewer = Client(
            b.url, admin.ok("POST", "/tokens", json={"name": "v", "user_id": uid})["token"]
        )
        refused = viewer.http.post(f"/tasks/{tid}/request", json={"command": "echo"})
        assert refused.status_code == 403

        # the app's page through b: headers, a streamed upload and a chunked download
        page = admin.publish(E2E_APPS / "page")["module_id"]
        pid = api_b.app.start(
            agent_id=created["id"], module_id=page, workspace_id=ws["id"], params={}
        ).task_id
        assert api_b.app.wait_until_ready_for_api_calls(pid, 60, 1)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=b.url, headers=auth, timeout=120) as http:
            # as a balancer on 127.0.0.1 (trusted by both) would ask: the client's address and
            # scheme reach the app on the owner, not the relaying replica's
            forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
            seen = http.get(f"/apps/{pid}/headers?x=1", headers=forwarded)
            assert seen.status_code == 200, seen.text
            sent = dict(seen.json()["headers"])
            assert "authorization" not in sent and "x-appyard-relayed-by" not in sent
            assert sent["x-forwarded-for"] == "203.0.113.7", sent
            assert sent["x-forwarded-proto"] == "https", sent
            assert seen.json()["path"] == "/headers?x=1"
            digest = hashlib.sha256()
            piece = os.urandom(MB)

            def body() -> Iterator[bytes]:
                for _ in range(12):
                    digest.update(piece)
                    yield piece

            up = http.post(f"/apps/{pid}/upload", content=body())
            assert up.status_code == 200, up.text
            assert up.json() == {"bytes": 12 * MB, "sha256": digest.hexdigest()}
            down = http.get(f"/apps/{pid}/download", params={"mb": 9})
            assert down.status_code == 200 and len(down.content) == 9 * MB

        # the page's own websocket through b: messages both ways, the subprotocol, the close
        ws_url = b.url.replace("http", "ws", 1) + f"/apps/{pid}/ws/echo"
        with connect(
            ws_url, additional_headers={**auth, **forwarded}, subprotocols=["echo.v1"], proxy=None
        ) as ws_b:
            assert ws_b.subprotocol == "echo.v1"
            ws_b.send("headers")
            handshake = dict(json.loads(ws_b.recv(timeout=30))["headers"])
            assert handshake["x-forwarded-for"] == "203.0.113.7", handshake
            assert handshake["x-forwarded-proto"] == "https", handshake
            ws_b.send("through b")
            assert ws_b.recv(timeout=30) == "through b"
            ws_b.send(b"\x00\x01")
            assert ws_b.recv(timeout=30) == b"\x00\x01"
            ws_b.send("close:4001:bye")
            with pytest.raises(ConnectionClosed):
                ws_b.recv(timeout=30)
            assert ws_b.close_code == 4001 and ws_b.close_reason == "bye"

        with httpx.Client(base_url=b.url, headers=auth, timeout=120) as http:
            # a request relayed once is never relayed again: b has no tunnel of its own
            looped = http.post(
                f"/api/v1/tasks/{tid}/request",
                json={"command": "echo"},
                headers={"X-Appyard-Relayed-By": "http://elsewhere"},
            )
            assert looped.status_code == 503 and looped.json()["error"]["code"] == "tunnel_down"

        # the agent gone: its tunnel is on no replica, and b says so instead of relaying
        agent.stop()
        with httpx.Client(base_url=b.url, headers=auth, timeout=30) as http:

            def refused_on_b() -> bool:
                gone = http.post(f"/api/v1/tasks/{tid}/request", json={"command": "echo"})
                assert gone.status_code == 503 and gone.json()["error"]["code"] == "tunnel_down"
                # (until a has seen the tunnel close, b relays there, and a refuses)
                return "not connected to any replica" in gone.json()["error"]["message"]

            wait_for(refused_on_b, 30, "b to find the agent's tunnel on no replica")
        # back (it re-adopts its apps, its tunnel on a again): b relays again
        agent.start()
        assert api_b.task.send_request(tid, "echo", {"back": 1})["state"] == {"back": 1}
        for session in (tid, pid):
            api_b.app.stop(session)
            assert api_b.task.wait(session, ay.Status.STOPPED, 60, 1) == ay.Status.STOPPED
    finally:
        api_a.close()
        api_b.close()
        agent.stop()
