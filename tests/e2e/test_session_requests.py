"""Requests into a session (``api.task.send_request``) end to end: a real server, a real agent
and its tunnel, real serving apps (``tests/e2e/apps/serving``, the bundled echo-model)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import appyard as ay
from appyard.agent.tunnel import tunnel_url
from appyard.errors import ApiError
from tests.e2e.conftest import Env, online_agent
from tests.support import Client, wait_for

S = ay.Status
SERVING = Path(__file__).parent / "apps" / "serving"
ECHO_MODEL = Path(ay.__file__).parent / "ecosystem" / "echo-model"
DATA = ("--data", '{"inputs": ["hi"]}')


def _start(env: Env, module_id: int, agent_id: int | None = None, **state: Any) -> int:
    session = env.api.app.start(
        agent_id=agent_id or env.agent_id,
        module_id=module_id,
        workspace_id=env.world.workspace_id,
        params=state,
    )
    return session.task_id


def _serving(env: Env, agent_id: int | None = None, **state: Any) -> int:
    """A running, ready session of the test serving app."""
    module_id = env.world.admin.publish(SERVING)["module_id"]
    tid = _start(env, module_id, agent_id, **state)
    assert env.api.app.wait_until_ready_for_api_calls(tid, 60, 1)
    return tid


def _error(call: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    return info.value


def test_echo_model_answers_requests_as_the_tutorial_uses_it(env: Env) -> None:
    """Start a model-serving app, wait until it is ready, send it inputs, read predictions;
    from the SDK (sync and async twins) and from the CLI."""
    api, world = env.api, env.world
    module_id = world.admin.publish(ECHO_MODEL)["module_id"]
    tid = _start(env, module_id, label="cat")
    assert api.app.wait_until_ready_for_api_calls(tid, 60, 1)

    answer = api.task.send_request(tid, "predict", {"inputs": ["abc", "a1"]})
    assert answer == {
        "model": "echo-model",
        "predictions": [
            {"input": "abc", "label": "cat", "score": 1.0},
            {"input": "a1", "label": "cat", "score": 0.5},
        ],
    }
    echoed = api.task.send_request(tid, "echo", {"x": [1, {"y": None}]}, context={"from": "t"})
    assert echoed == {
        "state": {"x": [1, {"y": None}]},
        "context": {"from": "t", "outside_request": True},
    }
    assert api.task.send_request(tid, "info", {})["served"] == 1

    # the app's own error: its status and message, passed through
    bad = _error(lambda: api.task.send_request(tid, "predict", {"inputs": "abc"}))
    assert bad.status_code == 500 and bad.code == "app_error"
    assert f"The app of task {tid} answered 500" in bad.message
    assert 'send {"inputs": [...]}' in bad.message
    unknown = _error(lambda: api.task.send_request(tid, "train", {}))
    assert unknown.status_code == 404 and unknown.code == "app_error"
    assert "unknown command 'train'; this app handles: echo, info, predict" in unknown.message

    async def twin() -> Any:
        async with ay.AsyncApi(world.server.url, api._core.token) as aapi:
            return await aapi.task.send_request(tid, "predict", {"inputs": ["zz"]})

    assert asyncio.run(twin())["predictions"] == [{"input": "zz", "label": "cat", "score": 1.0}]

    cli = subprocess.run(
        [sys.executable, "-m", "appyard.cli", "app", "request", str(tid), "predict", *DATA],
        env=world.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["predictions"][0] == {"input": "hi", "label": "cat", "score": 1.0}
    assert api.task.send_request(tid, "info", {})["served"] == 3


def test_errors_timeouts_bodies_and_who_may_send(env: Env) -> None:
    api, world = env.api, env.world
    tid = _serving(env)
    answer = api.task.send_request(tid, "echo", {"a": 1})
    assert answer["state"] == {"a": 1} and answer["task_id"] == tid

    failed = _error(lambda: api.task.send_request(tid, "fail", {"why": "testing"}))
    assert failed.status_code == 500 and failed.code == "app_error"
    assert "fail: RuntimeError: asked to fail: testing" in failed.message
    assert failed.details["app_status"] == 500

    slow = _error(lambda: api.task.send_request(tid, "sleep", {"s": 30}, timeout=1))
    assert slow.status_code == 504 and slow.code == "app_timeout"
    assert f"The app of task {tid} did not answer within 1 s" in slow.message

    # bodies of many tunnel chunks each way (64 KiB chunks, a window of 8): flow control
    big = api.task.send_request(tid, "big", {"n": 3_000_000, "payload": "p" * 700_000})
    assert big["got"] == 700_000 and len(big["data"]) == 3_000_000

    skipped = api.task.send_request(tid, "echo", {"b": 2}, skip_response=True)
    assert skipped == {"task_id": tid, "command": "echo", "skipped_response": True}

    # bad input names the field; no token is a 401 before the body is read
    raw = world.admin.http.post(f"/tasks/{tid}/request", json={"state": {}})
    assert raw.status_code == 422 and raw.json()["error"]["field"] == "command"
    raw = world.admin.http.post(f"/tasks/{tid}/request", json={"command": "echo", "timeout": 0})
    assert raw.status_code == 422 and raw.json()["error"]["field"] == "timeout"
    anonymous = Client(world.server.url, None)
    raw = anonymous.http.post(f"/tasks/{tid}/request", json={"command": "echo"})
    assert raw.status_code == 401

    # roles: a viewer may not drive a session (403 naming the role); another team: 404
    viewer = world.member("req-viewer", "viewer")
    raw = viewer.http.post(f"/tasks/{tid}/request", json={"command": "echo"})
    assert raw.status_code == 403 and "developer" in raw.json()["error"]["message"]
    developer = world.member("req-dev", "developer")
    raw = developer.http.post(f"/tasks/{tid}/request", json={"command": "echo", "state": {"d": 1}})
    assert raw.status_code == 200 and raw.json()["state"] == {"d": 1}
    other = world.admin.ok("POST", "/teams", json={"name": "other-team-req"})
    world.admin.ok("POST", "/users", json={"login": "stranger-req"})
    world.admin.ok(
        "POST", f"/teams/{other['id']}/members", json={"login": "stranger-req", "role": "admin"}
    )
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == "stranger-req")
    stranger = Client(
        world.server.url,
        world.admin.ok("POST", "/tokens", json={"name": "s", "user_id": uid})["token"],
    )
    raw = stranger.http.post(f"/tasks/{tid}/request", json={"command": "echo"})
    assert raw.status_code == 404
    assert raw.json()["error"]["message"].startswith(f"Task {tid} not found")
    raw = Client(world.server.url, env.agent_token).http.post(
        f"/tasks/{tid}/request", json={"command": "echo"}
    )
    assert raw.status_code == 403

    # a session that is not ready, then one that ended
    waiting = _start(env, world.admin.publish(SERVING)["module_id"], ready=False)
    assert api.task.wait(waiting, S.STARTED, 60, 1) == S.STARTED
    not_ready = _error(lambda: api.task.send_request(waiting, "echo", {}))
    assert not_ready.status_code == 409 and not_ready.code == "not_ready"
    assert f"Task {waiting} is running but its app has not said it is ready" in not_ready.message
    api.app.stop(tid)
    api.task.wait(tid, S.STOPPED)
    ended = _error(lambda: api.task.send_request(tid, "echo", {}))
    assert ended.status_code == 409 and ended.code == "not_running"
    assert f"Task {tid} is not running: it has ended (stopped)" in ended.message
    missing = _error(lambda: api.task.send_request(2**31 - 2, "echo", {}))
    assert missing.status_code == 404


def test_a_request_let_through_is_asked_again_when_access_changes(env: Env) -> None:
    """After a first request, the server keeps that this token may reach this session
    (``request_grants``): a role lowered, a token revoked, bad input, the session stopped are
    each seen on the very next request, with no wait."""
    world = env.world
    tid = _serving(env)
    dev = world.member("grant-dev", "developer")
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == "grant-dev")

    def send(body: dict[str, Any]) -> Any:
        return dev.http.post(f"/tasks/{tid}/request", json=body)

    for i in range(3):  # the first is checked in full, the others ride the grant
        answer = send({"command": "echo", "state": {"i": i}})
        assert answer.status_code == 200 and answer.json()["state"] == {"i": i}
    bad = send({"command": "echo", "timeout": 0})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "timeout"
    bad = dev.http.post(f"/tasks/{tid}/request", content=b"{not json", headers=JSON)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "body"
    # hostile bodies on the path that skips the router: the same answers as the route's
    bad = send({"command": 5})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "command"
    deep = b'{"command": "echo", "state": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    bad = dev.http.post(f"/tasks/{tid}/request", content=deep, headers=JSON)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "body", bad.text
    huge = b'{"command": "echo", "state": {"x": "' + b"x" * (17 * 1024 * 1024) + b'"}}'
    bad = dev.http.post(f"/tasks/{tid}/request", content=huge, headers=JSON)
    assert bad.status_code == 413 and bad.json()["error"]["field"] == "body"
    nul = send({"command": "echo\u0000"})
    assert nul.status_code == 404 and nul.json()["error"]["code"] == "app_error"
    assert send({"command": "echo"}).status_code == 200

    member = f"/teams/{world.team_id}/members/{uid}"
    world.admin.ok("PATCH", member, json={"role": "viewer"})
    lowered = send({"command": "echo"})
    assert lowered.status_code == 403 and "developer" in lowered.json()["error"]["message"]
    world.admin.ok("PATCH", member, json={"role": "developer"})
    assert send({"command": "echo"}).status_code == 200

    token_id = next(t["id"] for t in dev.ok("GET", "/tokens") if t["name"] == "grant-dev")
    assert world.admin.http.delete(f"/tokens/{token_id}").status_code == 204
    revoked = send({"command": "echo"})
    assert revoked.status_code == 401 and "not valid" in revoked.json()["error"]["message"]

    admin = world.admin
    assert admin.http.post(f"/tasks/{tid}/request", json={"command": "echo"}).status_code == 200
    env.api.app.stop(tid)
    env.api.task.wait(tid, S.STOPPED)
    ended = admin.http.post(f"/tasks/{tid}/request", json={"command": "echo"})
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "not_running"


JSON = {"content-type": "application/json"}


def test_a_blocked_session_does_not_hold_up_another(env: Env) -> None:
    """Two sessions on one agent (one tunnel): while a request into A waits inside its app,
    requests into B, and into A itself, are answered. No clock: the blocked one can only end
    once the test releases it."""
    api = env.api
    a, b = _serving(env), _serving(env)
    with ThreadPoolExecutor(2) as pool:
        blocked: Future[Any] = pool.submit(
            api.task.send_request, a, "block", {"name": "one"}, timeout=120
        )
        wait_for(
            lambda: api.task.send_request(a, "entered", {"name": "one"})["entered"],
            30,
            "the blocking request to reach the app",
        )
        for _ in range(20):
            assert api.task.send_request(b, "echo", {"n": 1})["task_id"] == b
            assert api.task.send_request(a, "echo", {"n": 2})["task_id"] == a
        big = api.task.send_request(b, "big", {"n": 1_000_000})
        assert len(big["data"]) == 1_000_000
        assert not blocked.done()  # still inside the app: nothing but the release ends it
        assert api.task.send_request(b, "release", {"name": "one"}) == {"released": "one"}
        assert not blocked.done()  # the gate is A's own: B's release did not touch it
        api.task.send_request(a, "release", {"name": "one"})
        assert blocked.result(60) == {"released": "one"}


def _tcp_peers(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of every TCP socket process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                local, remote = fields[1], fields[2]
                out.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)))
    return out


def test_tunnel_loss_fails_clearly_and_a_new_agent_serves_again(env: Env) -> None:
    """The server reaches the app only through the agent's tunnel: while a request is inside
    the app, the agent holds a connection to the app's port and the server process holds
    none (each of its TCP sockets is its listening port, a connection accepted on it, or the
    database's). The app's port is on the same machine here, so that is checked from the
    kernel's socket tables (``/proc/<pid>/fd`` and ``/proc/<pid>/net/tcp``) rather than by a
    network the server cannot route to; and the server has no code that connects anywhere but
    its database. Then ``kill -9`` of the agent fails the request in flight at once (502
    ``tunnel_lost``, naming the agent), a request meanwhile is a 503 ``tunnel_down``, and a
    new agent re-adopts the app and serves requests into it again."""
    api, world = env.api, env.world
    tid = _serving(env)
    port = _app_port(env, tid)
    with ThreadPoolExecutor(1) as pool:
        blocked: Future[Any] = pool.submit(
            api.task.send_request, tid, "block", {"name": "cut"}, timeout=120, retries=1
        )
        wait_for(
            lambda: api.task.send_request(tid, "entered", {"name": "cut"})["entered"],
            30,
            "the blocking request to reach the app",
        )
        assert env.agent.proc is not None and world.server.proc is not None
        agent_peers = _tcp_peers(env.agent.proc.pid)
        assert any(remote == port for _, remote in agent_peers), agent_peers
        server_port = world.server.port
        for local, remote in _tcp_peers(world.server.proc.pid):
            assert local == server_port or remote == 5432, (local, remote, port)

        env.agent.kill9()
        lost = blocked.exception(60)
        assert isinstance(lost, ApiError), lost
        assert lost.status_code == 502 and lost.code == "tunnel_lost"
        assert f"the tunnel of agent {env.agent_id} closed" in lost.message

    down = _error(lambda: api.task.send_request(tid, "echo", {}, raise_error=True))
    assert down.status_code == 503 and down.code == "tunnel_down"
    assert f"agent {env.agent_id} has no tunnel to this server" in down.message

    again = world.start_agent(env.agent_token, name="agent")
    answer = wait_for(
        lambda: _answer_or_none(api, tid),
        60,
        f"a request into the re-adopted app:\n{again.log_text}",
    )
    assert answer["task_id"] == tid
    assert api.task.get_status(tid) == S.STARTED and api.task.is_ready_for_api_calls(tid)
    api.task.send_request(tid, "release", {"name": "cut"})


def _app_port(env: Env, tid: int) -> int:
    state = json.loads((env.agent.work_dir / "tasks" / str(tid) / "state.json").read_text())
    return int(state["app_port"])


def _answer_or_none(api: ay.Api, tid: int) -> Any:
    try:
        return api.task.send_request(tid, "echo", {}, raise_error=True)
    except ApiError as exc:
        if exc.code in ("tunnel_down", "not_running"):
            return None
        raise


def test_a_second_agent_has_its_own_tunnel(env: Env) -> None:
    """Sessions on two agents of a team: each request rides its own agent's tunnel."""
    other_id, _, _ = online_agent(env.world, name="second")
    a, b = _serving(env), _serving(env, agent_id=other_id)
    assert env.api.task.send_request(a, "echo", {})["task_id"] == a
    assert env.api.task.send_request(b, "echo", {})["task_id"] == b


def test_the_tunnel_takes_only_its_agents_token(env: Env) -> None:
    """The token is checked before the upgrade; a rotated token closes the open tunnel, and
    requests into the agent's sessions are refused clearly (503, naming the agent)."""
    world = env.world
    url = tunnel_url(world.server.url, env.agent_id)
    other_id, other_token = world.new_agent_token("other")
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer aya_unknown"}, 401),
        ({"Authorization": f"Bearer {other_token}"}, 403),
        ({"Authorization": f"Bearer {world.admin.http.headers['Authorization'][7:]}"}, 403),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, proxy=None, open_timeout=10)
        assert refused.value.response.status_code == status, headers
    tid = _serving(env)
    assert env.api.task.send_request(tid, "echo", {})["task_id"] == tid
    world.admin.ok("POST", f"/agents/{env.agent_id}/token")  # rotate: the old one is revoked

    def refused() -> ApiError | None:
        exc = _refused(env.api, tid)
        # one in flight as the tunnel closes is cut (502 tunnel_lost): the next is refused
        return None if exc is not None and exc.code == "tunnel_lost" else exc

    down = wait_for(refused, 30, "the tunnel of the rotated token to close")
    assert down.status_code == 503 and down.code == "tunnel_down"
    assert f"agent {env.agent_id} has no tunnel" in down.message
    assert other_id != env.agent_id


def _refused(api: ay.Api, tid: int) -> ApiError | None:
    try:
        api.task.send_request(tid, "echo", {}, raise_error=True)
    except ApiError as exc:
        return exc
    return None
