"""Issue 10 (points 4 and 8, and three small holes): open streams and waits are capped per
token and per team (429 with Retry-After), a revoked token or an ended task's token loses the
streams it holds, a client that does not read makes the server hold no more than a socket's
buffer for it; ``ready`` takes only http(s) URLs, a start cannot override the app's
``context.teamId``, and a manifest with Infinity or NaN is refused.

Every test plays the caller as it would on the wire: raw sockets or httpx against a real
server, and the agent's side through the agent protocol (hello, poll, events, logs).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import APPS, Client, ServerProc, World, pack, wait_for

API = "/api/v1"


class Stream:
    """A server-sent events stream read in a thread: its events, and when it ended."""

    def __init__(self, url: str, token: str, path: str, **params: Any) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status = 0
        self.opened = threading.Event()
        self.ended = threading.Event()
        self._args = (url, token, path, params)
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(10), f"{path} did not answer"

    def _read(self) -> None:
        url, token, path, params = self._args
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with (
                httpx.Client(base_url=url + API, timeout=httpx.Timeout(60, connect=5)) as http,
                http.stream("GET", path, headers=headers, params=params) as r,
            ):
                self.status = r.status_code
                self.opened.set()
                event = "message"
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((event, json.loads(line[6:])))
        finally:
            self.opened.set()
            self.ended.set()

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


class ProtocolAgent:
    """The agent's side of one task, spoken over HTTP as the agent process speaks it."""

    def __init__(self, world: World, name: str) -> None:
        self.agent_id, token = world.new_agent_token(name)
        self.client = Client(world.server.url, token)
        self.client.ok("POST", "/agents/hello", json={"slots": 4})
        self.held: list[int] = []
        self.offset = 0

    def claim(self) -> dict[str, Any]:
        r = self.client.ok(
            "POST",
            f"/agents/{self.agent_id}/poll",
            json={"free_slots": 4, "running": self.held, "timeout_s": 5},
        )
        assert r["tasks"], "nothing was handed out"
        assignment: dict[str, Any] = r["tasks"][0]
        self.held.append(assignment["task_id"])
        return assignment

    def started(self, task_id: int) -> None:
        self.client.ok("POST", f"/tasks/{task_id}/events", json={"kind": "started", "pid": 1})

    def log(self, task_id: int, *texts: str) -> None:
        lines = [{"t": datetime.now(UTC).isoformat(), "text": text} for text in texts]
        end = self.offset + sum(len(text) + 1 for text in texts)
        self.client.ok(
            "POST",
            f"/tasks/{task_id}/logs",
            json={"offset": self.offset, "end_offset": end, "lines": lines},
        )
        self.offset = end

    def exited(self, task_id: int) -> None:
        self.client.ok("POST", f"/tasks/{task_id}/events", json={"kind": "exited", "exit_code": 0})
        self.held.remove(task_id)


def _start(world: World, module_id: int, **params: Any) -> int:
    body = {"workspace_id": world.workspace_id, "module_id": module_id, "params": params}
    return int(world.admin.ok("POST", "/tasks", json=body)["task_id"])


def _running(world: World, agent: ProtocolAgent, module_id: int) -> tuple[int, str]:
    """A started task of the team and its task token."""
    task_id = _start(world, module_id)
    assignment = agent.claim()
    assert assignment["task_id"] == task_id
    agent.started(task_id)
    return task_id, str(assignment["token"])


def _viewer(world: World, login: str) -> tuple[Client, int, str]:
    """A viewer of the team: its client, its token's id and the token."""
    world.admin.ok("POST", "/users", json={"login": login})
    world.admin.ok(
        "POST", f"/teams/{world.team_id}/members", json={"login": login, "role": "viewer"}
    )
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == login)
    made = world.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})
    return Client(world.server.url, made["token"]), int(made["id"]), str(made["token"])


# -- a revoked token, an ended task: their streams end ------------------------------------------


def test_a_revoked_token_loses_its_open_streams_at_their_next_wake(world: World) -> None:
    """The attack: a viewer opens streams, signs out (or is revoked), and keeps reading the
    team's log lines and new sessions through the streams already open."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "speaker")
    task_id, task_token = _running(world, agent, mid)
    viewer, token_id, token = _viewer(world, "leaver")
    url = world.server.url
    logs = Stream(url, token, f"/tasks/{task_id}/logs/stream")
    watch = Stream(url, token, f"/tasks/{task_id}/watch")
    team = Stream(url, token, "/tasks/stream", team_id=world.team_id)
    assert (logs.status, watch.status, team.status) == (200, 200, 200)
    agent.log(task_id, "before")
    wait_for(lambda: ("log", "before") in [(k, e.get("text")) for k, e in logs.events], 10)
    wait_for(lambda: watch.events, 10, "the watch's first event")

    seen = (len(logs.events), len(watch.events))
    assert viewer.delete(f"/tokens/{token_id}").status_code == 204  # signs out
    agent.log(task_id, "after the token was revoked")  # would wake the log stream
    app = Client(world.server.url, task_token)
    app.ok("POST", f"/tasks/{task_id}/progress", json={"current": 1})  # would wake the watch
    other = _start(world, mid)  # a new session of the team: would wake the team stream

    for stream, what in ((logs, "log"), (watch, "watch"), (team, "team")):
        assert stream.ended.wait(10), f"the {what} stream is still open after the revocation"
        # the revocation itself ended it, with a last event saying why
        kind, closed = stream.events[-1]
        assert kind == "closed" and closed["status"] == 401, stream.events
    # nothing was sent after it but that last event
    assert (len(logs.events) - 1, len(watch.events) - 1) == seen, logs.events[seen[0] :]
    assert all(e.get("id") != other for _, e in team.events), "the new session was sent"
    # and the client's reconnect is told why
    assert viewer.get(f"/tasks/{task_id}/watch").status_code == 401
    assert viewer.get(f"/tasks/{task_id}/wait", params={"timeout": 1}).status_code == 401


def test_a_wait_held_when_its_token_is_revoked_answers_401(world: World) -> None:
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "waited")
    task_id, _ = _running(world, agent, mid)
    viewer, token_id, _ = _viewer(world, "waiter")
    answer: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answer.append(
            viewer.get(f"/tasks/{task_id}/wait", params={"until": "finished", "timeout": 30})
        )
    )
    waiting.start()
    time.sleep(0.3)  # the wait is held (the test server's waits last 2 s at most)
    world.admin.ok("DELETE", f"/tokens/{token_id}")
    agent.exited(task_id)  # the wake: the answer would show the finished task
    waiting.join(10)
    assert answer and answer[0].status_code == 401, answer[0].text if answer else "no answer"


def test_a_task_token_loses_its_team_stream_when_its_task_ends(world: World) -> None:
    """A task token is valid only while its task runs: an app that opened the team stream
    must not read the team's sessions after it ended."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "ender")
    task_id, task_token = _running(world, agent, mid)
    team = Stream(world.server.url, task_token, "/tasks/stream", team_id=world.team_id)
    assert team.status == 200
    agent.exited(task_id)
    assert team.ended.wait(10), "the ended task's token still streams the team's sessions"
    later = _start(world, mid)
    time.sleep(0.3)
    assert all(e.get("id") != later for _, e in team.events)


def test_a_deleted_agent_token_claims_nothing_from_a_held_poll(world: World) -> None:
    """A poll holds the agent's token for up to its timeout: the token is checked again when
    a task wakes it, so a revoked agent token claims nothing."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "rotated")
    answer: list[httpx.Response] = []
    held = threading.Thread(
        target=lambda: answer.append(
            agent.client.post(
                f"/agents/{agent.agent_id}/poll", json={"free_slots": 1, "timeout_s": 10}
            )
        )
    )
    held.start()
    time.sleep(0.3)  # the poll is held
    world.admin.ok("POST", f"/agents/{agent.agent_id}/token")  # the old token is revoked
    task_id = _start(world, mid)
    held.join(15)
    assert answer and answer[0].status_code == 401, answer[0].text if answer else "no answer"
    assert world.admin.ok("GET", f"/tasks/{task_id}")["status"] == "queued"


# -- caps on open streams -----------------------------------------------------------------------

CAP_TOKEN = 3
CAP_TEAM = 5


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server with small stream caps. The caps are counted in the server process, not in
    the database, so one database (SQLite) shows them."""
    env = {
        "APPYARD_MAX_STREAMS_PER_TOKEN": str(CAP_TOKEN),
        "APPYARD_MAX_STREAMS_PER_TEAM": str(CAP_TEAM),
    }
    server = ServerProc(tmp_path_factory.mktemp("capped"), extra_env=env).start()
    yield server
    server.stop()


def _open_raw(server: ServerProc, token: str, path: str) -> tuple[socket.socket, str]:
    """A GET whose answer head is read and whose body is left unread: a held stream."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        f"GET {API}{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    text = head.decode("latin-1")
    if not text.startswith("HTTP/1.1 200"):  # a refusal: read its JSON body too
        length = next(
            int(line.split(":", 1)[1])
            for line in text.lower().splitlines()
            if line.startswith("content-length:")
        )
        while len(head) - head.index(b"\r\n\r\n") - 4 < length:
            head += sock.recv(4096)
        text = head.decode("latin-1")
    return sock, text


def _status(head: str) -> int:
    return int(head.split(" ", 2)[1])


def test_streams_and_waits_past_a_tokens_or_teams_cap_are_429(
    capped: ServerProc, tmp_path: Path
) -> None:
    """The attack: one viewer opens streams by the thousand, and every change of the team
    then costs a look for each, which every other request waits behind."""
    admin = Client(capped.url, capped.admin_token)
    team_id = admin.ok("POST", "/teams", json={"name": "capped"})["id"]
    ws = admin.ok("POST", f"/teams/{team_id}/workspaces", json={"name": "w"})["id"]
    world = World(capped, admin, team_id, ws, tmp_path)
    mid = admin.publish(APPS / "worker")["module_id"]
    task_id = _start(world, mid)
    _, _, one = _viewer(world, "greedy")
    _, _, two = _viewer(world, "second")
    path = f"/tasks/stream?team_id={team_id}"
    held = [_open_raw(capped, one, path) for _ in range(CAP_TOKEN)]
    assert [_status(head) for _, head in held] == [200] * CAP_TOKEN

    for extra in (path, f"/tasks/{task_id}/watch", f"/tasks/{task_id}/wait?timeout=5"):
        sock, head = _open_raw(capped, one, extra)
        sock.close()
        assert _status(head) == 429, head
        assert "retry-after: 5" in head.lower(), head
        assert "too_many_requests" in head and "this token has 3" in head, head

    # the team's cap counts every token's streams of its data
    held += [_open_raw(capped, two, f"/tasks/{task_id}/logs/stream") for _ in range(2)]
    assert [_status(head) for _, head in held[CAP_TOKEN:]] == [200, 200]
    sock, head = _open_raw(capped, admin.http.headers["Authorization"][7:], path)
    sock.close()
    assert _status(head) == 429 and f"team {team_id} has 5" in head, head
    # another team's data is not held up by it
    other = admin.ok("POST", "/teams", json={"name": "other"})["id"]
    sock, head = _open_raw(
        capped, admin.http.headers["Authorization"][7:], f"/tasks/stream?team_id={other}"
    )
    sock.close()
    assert _status(head) == 200, head

    # a stream the client closes gives its place back
    held.pop(0)[0].close()

    def reopened() -> bool:
        sock, head = _open_raw(capped, one, path)
        if _status(head) == 200:
            held.append((sock, head))
            return True
        sock.close()
        return False

    wait_for(reopened, 10, "a place freed by a closed stream")
    for sock, _ in held:
        sock.close()


def test_a_client_gone_before_its_stream_began_leaves_no_place_taken(
    capped: ServerProc, tmp_path: Path
) -> None:
    """Opened and dropped at once, again and again: no place may leak, or the token would
    be refused for good."""
    admin = Client(capped.url, capped.admin_token)
    team_id = admin.ok("POST", "/teams", json={"name": "dropper"})["id"]
    ws = admin.ok("POST", f"/teams/{team_id}/workspaces", json={"name": "w"})["id"]
    world = World(capped, admin, team_id, ws, tmp_path)
    _, _, token = _viewer(world, "dropper")
    request = (
        f"GET {API}/tasks/stream?team_id={team_id} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", capped.port), timeout=10) as sock:
            sock.sendall(request)
    path = f"/tasks/stream?team_id={team_id}"

    def all_places_free() -> bool:
        opened = [_open_raw(capped, token, path) for _ in range(CAP_TOKEN)]
        for sock, _ in opened:
            sock.close()
        return all(_status(head) == 200 for _, head in opened)

    wait_for(all_places_free, 10, "every dropped stream's place back")


# -- a client that does not read ------------------------------------------------------------------


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_log_stream_nobody_reads_holds_a_sockets_worth_not_the_log(world: World) -> None:
    """The attack: open a log stream of a chatty task and never read it. The server must not
    queue the log up for that reader: it stops looking until the socket drains."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "chatty")
    task_id, _ = _running(world, agent, mid)
    sock = socket.create_connection(("127.0.0.1", world.server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    token = world.admin.http.headers["Authorization"][7:]
    sock.sendall(
        f"GET {API}/tasks/{task_id}/logs/stream HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    assert world.server.proc is not None
    pid = world.server.proc.pid
    line = "x" * 2000
    agent.log(task_id, *[line] * 2000)  # warm up: allocations that stay whoever reads
    before = _rss(pid)
    for _ in range(12):  # 48 MB of log events (a log stores 64 MiB at most)
        agent.log(task_id, *[line] * 2000)
    grown = _rss(pid) - before
    sock.close()
    assert grown < 24 * 1024 * 1024, f"the server grew {grown / 2**20:.0f} MiB for one reader"
    # and it is still answering
    assert world.admin.ok("GET", f"/tasks/{task_id}")["status"] == "started"


# -- ready URL, the app's context, a manifest's numbers ------------------------------------------


def test_ready_takes_only_an_http_url(world: World) -> None:
    """The attack: an app reports ``javascript:...`` as its page, which the web UI shows as a
    link to every viewer of the session."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "server-app")
    task_id, task_token = _running(world, agent, mid)
    app = Client(world.server.url, task_token)
    for url in (
        "javascript:alert(document.cookie)",
        "JavaScript://x/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "http:///no-host",
        " http://leading.space/",
    ):
        r = app.post(f"/tasks/{task_id}/ready", json={"url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["field"] == "url", r.text
    assert world.admin.ok("GET", f"/tasks/{task_id}")["status"] == "started"
    done = app.ok("POST", f"/tasks/{task_id}/ready", json={"url": "https://box:8443/app?x=1"})
    assert done["status"] == "started" and done["ready"] is True
    assert done["ready_url"] == "https://box:8443/app?x=1" and done["ready_at"] is not None


def test_a_start_cannot_tell_the_app_it_runs_in_another_team(world: World) -> None:
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent = ProtocolAgent(world, "contexts")
    task_id = _start(world, mid, state={}, context={"teamId": 999_999, "workspaceId": 1, "mine": 7})
    assignment = agent.claim()
    assert assignment["task_id"] == task_id
    assert assignment["context"] == {
        "teamId": world.team_id,
        "workspaceId": world.workspace_id,
        "mine": 7,
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"modal_template_state": {"lines": 3, "limit": float("inf")}},
            "modal_template_state.limit",
        ),
        ({"stop_grace_s": float("nan")}, "stop_grace_s"),
        ({"extra": [1, {"deep": float("-inf")}]}, "extra.1.deep"),
    ],
)
def test_a_manifest_with_infinity_or_nan_is_refused_naming_the_key(
    world: World, overrides: dict[str, Any], field: str
) -> None:
    """Python's JSON reader takes ``Infinity``; stored, it came back as null."""
    data = pack(APPS / "worker", overrides)
    r = world.admin.post("/modules", files={"archive": ("app.tar.gz", data)})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == f"config.{field}", error
    assert "Infinity or NaN" in error["message"], error
