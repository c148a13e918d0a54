"""A revocation reaches the streams and long-polls its token holds at once, not at their next
keepalive: a token revoked (or signed out), its user disabled or removed from the team, an
agent's token rotated. A stream ends with a last ``closed`` event carrying the refusal; a held
wait or poll answers it.

The server here sends keepalives once an hour, holds waits and polls as long as they ask, and
calls an agent lost after an hour: nothing but the revocation's own wake can end them early,
so a test whose wake is missing fails on its read timeout (``READ_S``), or gets a poll's 200
at its deadline, never on a timer of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _db_params, live_server
from tests.support import APPS, Client, ServerProc, World, wait_for

API = "/api/v1"
#: how long a read may wait for the stream's next bytes: far less than the keepalive
READ_S = 60.0
HOUR = "3600"
#: streams and waits one token may hold: a wait's place shows when it is held
CAP = 3


@pytest.fixture(scope="module", params=_db_params())
def quiet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProc]:
    env = {
        "APPYARD_STREAM_KEEPALIVE_S": HOUR,
        "APPYARD_POLL_TIMEOUT_S": HOUR,
        "APPYARD_AGENT_TTL_S": HOUR,  # a held poll's agent is not swept as lost (a wake too)
        "APPYARD_MAX_STREAMS_PER_TOKEN": str(CAP),
    }
    home = tmp_path_factory.mktemp(f"quiet-{request.param}")
    with live_server(request.param, home, env) as proc:
        yield proc


@pytest.fixture
def team(quiet: ServerProc, tmp_path: Path) -> World:
    admin = Client(quiet.url, quiet.admin_token)
    team = admin.ok("POST", "/teams", json={"name": f"team-{tmp_path.name}"})
    ws = admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "main"})
    return World(quiet, admin, team["id"], ws["id"], tmp_path)


class Events:
    """A server-sent events stream read in a thread until it ends (or its read times out)."""

    def __init__(self, url: str, token: str, path: str, **params: Any) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status = 0
        self.failure: BaseException | None = None
        self._opened = threading.Event()
        self._args = (url, token, path, params)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._opened.wait()  # set once the answer's head came (or the request failed)
        assert self.status == 200, f"{path}: {self.status} {self.failure!r}"

    def _read(self) -> None:
        url, token, path, params = self._args
        try:
            with (
                httpx.Client(base_url=url + API, timeout=httpx.Timeout(READ_S, connect=5)) as h,
                h.stream(
                    "GET", path, headers={"Authorization": f"Bearer {token}"}, params=params
                ) as r,
            ):
                self.status = r.status_code
                self._opened.set()
                kind = "message"
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line[6:])))
        except BaseException as exc:  # a read timeout: the stream did not end
            self.failure = exc
        finally:
            self._opened.set()

    def end(self) -> dict[str, Any]:
        """The stream's last event, once it ended; it must be ``closed``."""
        self._thread.join()  # bounded by the read timeout
        assert self.failure is None, f"the stream did not end: {self.failure!r}"
        assert self.events and self.events[-1][0] == "closed", self.events
        closed: dict[str, Any] = self.events[-1][1]
        return closed


def _user(world: World, login: str, role: str = "viewer") -> tuple[int, int, str]:
    """A member of the team: its user id, a token's id and the token."""
    world.admin.ok("POST", "/users", json={"login": login})
    world.admin.ok("POST", f"/teams/{world.team_id}/members", json={"login": login, "role": role})
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == login)
    made = world.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})
    return uid, int(made["id"]), str(made["token"])


def _team_stream(world: World, token: str) -> Events:
    return Events(world.server.url, token, "/tasks/stream", team_id=world.team_id)


def test_a_revoked_tokens_streams_close_at_once_with_a_closed_event(team: World) -> None:
    mid = team.admin.publish(APPS / "worker")["module_id"]
    body = {"workspace_id": team.workspace_id, "module_id": mid}
    task_id = team.admin.ok("POST", "/tasks", json=body)["task_id"]
    _, token_id, token = _user(team, f"revoked-{team.team_id}")
    url = team.server.url
    streams = [
        _team_stream(team, token),
        Events(url, token, f"/tasks/{task_id}/watch"),
        Events(url, token, f"/tasks/{task_id}/logs/stream"),
    ]
    team.admin.ok("DELETE", f"/tokens/{token_id}")
    for stream in streams:
        closed = stream.end()
        assert closed["status"] == 401, closed
        assert closed["error"]["code"] == "unauthenticated", closed
        assert "not valid (unknown or revoked)" in closed["error"]["message"], closed


def test_signing_out_closes_the_streams_of_that_token(team: World) -> None:
    _, token_id, token = _user(team, f"leaver-{team.team_id}")
    stream = _team_stream(team, token)
    Client(team.server.url, token).ok("DELETE", f"/tokens/{token_id}")  # the web UI's sign-out
    assert stream.end()["status"] == 401


def test_disabling_a_user_closes_its_streams(team: World) -> None:
    uid, _, token = _user(team, f"disabled-{team.team_id}")
    stream = _team_stream(team, token)
    team.admin.ok("POST", f"/users/{uid}/disable")
    closed = stream.end()
    assert closed["status"] == 401 and "disabled" in closed["error"]["message"], closed


def test_removing_a_member_closes_its_streams_of_that_team_only(team: World) -> None:
    uid, _, token = _user(team, f"removed-{team.team_id}")
    other = team.admin.ok("POST", "/teams", json={"name": f"kept-{team.team_id}"})["id"]
    team.admin.ok(
        "POST",
        f"/teams/{other}/members",
        json={"login": f"removed-{team.team_id}", "role": "viewer"},
    )
    stream = _team_stream(team, token)
    kept = Events(team.server.url, token, "/tasks/stream", team_id=other)
    team.admin.ok("DELETE", f"/teams/{team.team_id}/members/{uid}")
    closed = stream.end()
    assert closed["status"] == 404 and closed["error"]["code"] == "not_found", closed
    # the stream of its other team lives on: a change there still arrives
    mid = team.admin.publish(APPS / "worker")["module_id"]
    ws = team.admin.ok("POST", f"/teams/{other}/workspaces", json={"name": "w"})["id"]
    task_id = team.admin.ok("POST", "/tasks", json={"workspace_id": ws, "module_id": mid})[
        "task_id"
    ]
    wait_for(
        lambda: any(kind == "task" and e["id"] == task_id for kind, e in kept.events),
        30,
        "the new session of its other team on that team's stream",
    )
    team.admin.ok("DELETE", f"/teams/{other}/members/{uid}")  # and then that one ends too
    assert kept.end()["status"] == 404


def test_a_held_wait_answers_401_at_the_revocation(team: World) -> None:
    mid = team.admin.publish(APPS / "worker")["module_id"]
    body = {"workspace_id": team.workspace_id, "module_id": mid}
    task_id = team.admin.ok("POST", "/tasks", json=body)["task_id"]
    _, token_id, token = _user(team, f"waiter-{team.team_id}")
    viewer = Client(team.server.url, token)
    streams = [_team_stream(team, token) for _ in range(CAP - 1)]
    answer: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answer.append(
            viewer.http.get(
                f"/tasks/{task_id}/wait",
                params={"until": "finished", "timeout": 600},
                timeout=httpx.Timeout(READ_S, connect=5),
            )
        )
    )
    waiting.start()

    def held() -> bool:
        """The wait holds the token's last place: one more is refused (a 200 took a place
        and gave it back at once)."""
        r = viewer.http.get(f"/tasks/{task_id}/wait", params={"timeout": 0})
        assert r.status_code in (200, 429), r.text
        return r.status_code == 429

    wait_for(held, 30, "the wait to be held")
    team.admin.ok("DELETE", f"/tokens/{token_id}")
    waiting.join()  # bounded by the read timeout
    assert answer and answer[0].status_code == 401, answer[0].text if answer else "no answer"
    assert all(stream.end()["status"] == 401 for stream in streams)


def test_an_agents_held_poll_answers_401_when_its_token_is_rotated(team: World) -> None:
    agent_id, agent_token = team.new_agent_token(f"rotated-{team.team_id}")
    agent = Client(team.server.url, agent_token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 0})

    def last_seen() -> str:
        agents = team.admin.ok("GET", f"/teams/{team.team_id}/agents")
        return str(next(a for a in agents if a["id"] == agent_id)["last_seen_at"])

    before = last_seen()
    answer: list[httpx.Response] = []
    polling = threading.Thread(
        target=lambda: answer.append(
            agent.http.post(
                f"/agents/{agent_id}/poll",
                json={"free_slots": 1, "timeout_s": 60},  # the most a poll may ask for
                # shorter than the poll's own 60 s: at its deadline it looks once more, and
                # would answer the 401 then, wake or not
                timeout=httpx.Timeout(30, connect=5),
            )
        )
    )
    polling.start()
    wait_for(lambda: last_seen() != before, 30, "the poll's first look (it marks the agent seen)")
    team.admin.ok("POST", f"/agents/{agent_id}/token")  # rotating revokes the agent's token
    polling.join()  # bounded by the read timeout
    assert answer and answer[0].status_code == 401, answer[0].text if answer else "no answer"
