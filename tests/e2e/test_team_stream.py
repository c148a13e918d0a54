"""A team's live stream of task changes (``GET /tasks/stream``, server-sent events): every task
created or changed after it opened, each state once, in order, until the server shuts down."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

import appyard as ay
from appyard.server.db.models import Base, Member, Task, Team, User
from appyard.server.security import Principal
from appyard.server.services import task_feeds as svc
from tests.e2e.conftest import Env
from tests.support import Client, ServerProc, World, wait_for

S = ay.Status
ORDER = [S.QUEUED, S.CONSUMED, S.STARTED, S.TERMINATING, S.FINISHED, S.STOPPED]
HELLO = Path(ay.__file__).parent / "ecosystem" / "hello"
Event = tuple[str, dict[str, Any]]  # (the event's id, the TaskInfo it carries)


class Stream:
    """Reads ``GET /tasks/stream`` in a thread until ``until(events)`` holds (or the server
    ends it); ``opened`` is set once the answer's headers are in, ``done`` when it ended."""

    def __init__(
        self,
        url: str,
        token: str,
        params: dict[str, Any],
        until: Callable[[list[Event]], bool] = lambda events: False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.events: list[Event] = []
        self.status_code = 0
        self.body = b""
        self.error: BaseException | None = None
        self.opened = threading.Event()
        self.done = threading.Event()
        self._args = (url, token, params, until, headers or {})
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        url, token, params, until, headers = self._args
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=60)) as http,
                http.stream(
                    "GET",
                    f"{url}/api/v1/tasks/stream",
                    params=params,
                    headers={"Authorization": f"Bearer {token}", **headers},
                ) as r,
            ):
                self.status_code = r.status_code
                self.opened.set()
                if r.status_code != 200:
                    self.body = r.read()
                    return
                fields: dict[str, str] = {}
                for line in r.iter_lines():
                    if line.startswith(":"):
                        continue  # a keepalive comment
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                        continue
                    assert fields.get("event") == "task", fields
                    self.events.append((fields["id"], json.loads(fields["data"])))
                    fields = {}
                    if until(self.events):
                        return
        except BaseException as exc:
            self.error = exc
        finally:
            self.opened.set()
            self.done.set()

    def wait_done(self, what: str, timeout: float = 60) -> list[Event]:
        if not self.done.wait(timeout):
            raise AssertionError(f"timed out waiting for {what}; got {self.statuses()}")
        assert self.error is None, repr(self.error)
        return self.events

    def statuses(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for _, info in self.events:
            out.setdefault(info["id"], []).append(info["status"])
        return out

    def readiness(self, task_id: int) -> list[tuple[str, bool]]:
        """The (status, ready) of each state of ``task_id`` the stream sent."""
        return [(i["status"], i["ready"]) for _, i in self.events if i["id"] == task_id]


def _token(client: Client) -> str:
    return str(client.http.headers["Authorization"].split()[1])


def _open(world: World, token: str, **kw: Any) -> Stream:
    params = {"team_id": world.team_id, **kw.pop("params", {})}
    stream = Stream(world.server.url, token, params, **kw)
    assert stream.opened.wait(30), "the stream's headers"
    return stream


def _ended(ids: set[int], final: set[S]) -> Callable[[list[Event]], bool]:
    def check(events: list[Event]) -> bool:
        ended = {info["id"] for _, info in events if S(info["status"]) in final}
        return ids <= ended

    return check


def _check_each_state_once_in_order(events: list[Event]) -> None:
    pairs = [(info["id"], info["updated_at"]) for _, info in events]
    assert len(set(pairs)) == len(pairs), "a state was sent twice"
    by_task: dict[int, list[dict[str, Any]]] = {}
    for event_id, info in events:
        at = datetime.fromisoformat(info["updated_at"])
        assert datetime.fromisoformat(event_id) == at  # the id is the state's updated_at
        by_task.setdefault(info["id"], []).append(info)
    for task_id, infos in by_task.items():
        ranks = [ORDER.index(S(i["status"])) for i in infos]
        assert ranks == sorted(ranks), (task_id, [i["status"] for i in infos])
        stamps = [datetime.fromisoformat(i["updated_at"]) for i in infos]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps


def test_the_stream_follows_each_session_to_its_end(env: Env) -> None:
    world = env.world
    viewer = world.member("stream-viewer", "viewer")
    tids: set[int] = set()
    done = threading.Event()  # set once every session is started

    def all_ended(events: list[Event]) -> bool:
        return done.is_set() and _ended(tids, {S.FINISHED, S.STOPPED})(events)

    admin_stream = _open(world, _token(world.admin), until=all_ended)
    viewer_stream = _open(world, _token(viewer), until=all_ended)  # a viewer may read it
    assert admin_stream.status_code == viewer_stream.status_code == 200
    hello = env.api.module.publish(HELLO).module_id
    quick = [env.start_worker(lines=2) for _ in range(3)]
    counting = env.api.app.start(
        agent_id=env.agent_id,
        module_id=hello,
        workspace_id=world.workspace_id,
        params={"name": "stream", "count": 3, "delay_s": 0.01, "style": "shout"},
    ).task_id
    serving = env.start_worker(ready=True, sleep_s=120)
    tids.update([*quick, counting, serving])
    done.set()
    # the serving app stays started, and ready, until stopped: the stream shows it so
    wait_for(
        lambda: (S.STARTED.value, True) in admin_stream.readiness(serving),
        30,
        "the serving app to show ready",
    )
    env.api.app.stop(serving)
    for stream in (admin_stream, viewer_stream):
        events = stream.wait_done("every session to end")
        _check_each_state_once_in_order(events)
        seen = stream.statuses()
        assert set(seen) == tids, seen  # only this team's tasks, each of them
        for tid in [*quick, counting]:
            assert seen[tid][-1] == S.FINISHED.value, seen[tid]
        assert seen[serving][-1] == S.STOPPED.value, seen[serving]
        ready = stream.readiness(serving)
        assert (S.STARTED.value, True) in ready, ready
        assert not ready[-1][1], ready  # ended: no longer ready for calls
        last = {info["id"]: info for _, info in events}
        for tid in tids:  # its last event is the task as it is now, without the usage history
            now = world.admin.ok("GET", f"/tasks/{tid}")  # (a sample may have come: a busy host)
            assert last[tid]["usage_history"] == [], last[tid]
            assert last[tid] == {**now, "usage_history": []}, tid
        assert last[counting]["progress"]["current"] == 3
        assert last[counting]["outputs"] == {"greeting": "HELLO, STREAM!"}


def test_resuming_after_a_time_sends_each_task_once_in_its_newest_state(env: Env) -> None:
    world = env.world
    tids = [env.start_worker(lines=1) for _ in range(3)]
    for tid in tids:
        env.api.app.wait(tid, target_status=S.FINISHED)
    first = world.admin.ok("GET", f"/tasks/{tids[0]}")
    before = datetime.fromisoformat(first["created_at"]) - timedelta(seconds=5)
    for after in (before.isoformat(), before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")):
        stream = _open(
            world,
            _token(world.admin),
            params={"after": after},
            until=_ended(set(tids), {S.FINISHED}),
        )
        events = stream.wait_done("the finished tasks")
        assert sorted(info["id"] for _, info in events) == tids  # each once
        stamps = [datetime.fromisoformat(info["updated_at"]) for _, info in events]
        assert stamps == sorted(stamps)  # oldest change first
        assert all(info["status"] == S.FINISHED.value for _, info in events)
    # Last-Event-ID (an EventSource's reconnect) is the same as ``after``
    stream = _open(
        world,
        _token(world.admin),
        headers={"Last-Event-ID": before.isoformat()},
        until=_ended(set(tids), {S.FINISHED}),
    )
    assert sorted(info["id"] for _, info in stream.wait_done("the finished tasks")) == tids


def test_only_members_may_open_it(world: World) -> None:
    admin = world.admin
    admin.ok("POST", "/users", json={"login": "stranger"})
    uid = next(u["id"] for u in admin.ok("GET", "/users") if u["login"] == "stranger")
    stranger = admin.ok("POST", "/tokens", json={"name": "s", "user_id": uid})["token"]
    stream = _open(world, stranger)
    stream.wait_done("the refusal")
    assert stream.status_code == 404, stream.body
    assert json.loads(stream.body)["error"]["field"] == "team_id"
    for params, status, field in [
        ({"team_id": 999999}, 404, "team_id"),
        ({"team_id": "x"}, 422, "team_id"),
        ({"after": "yesterday"}, 422, "after"),
    ]:
        r = admin.http.get("/tasks/stream", params={"team_id": world.team_id, **params})
        assert r.status_code == status, r.text
        assert r.json()["error"]["field"] == field
    assert admin.http.get("/tasks/stream").status_code == 422  # team_id is needed


def test_the_stream_ends_when_the_server_shuts_down(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server").start()
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "closing"})
        stream = Stream(server.url, server.admin_token, {"team_id": team["id"]})
        assert stream.opened.wait(30) and stream.status_code == 200
        server.stop()
        stream.wait_done("the stream to end at shutdown", 30)
        # it ended the stream itself: not cancelled after the graceful timeout, nor killed
        assert "graceful shutdown exceeded" not in (server.home / "server.log").read_text()
        assert server.proc is not None and server.proc.returncode != -signal.SIGKILL
    finally:
        server.kill()


# -- the look itself, on a database of its own: writes that commit out of order ------------------


def _session() -> Session:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    s = Session(engine)
    s.add_all(
        [User(id=1, login="u"), Team(id=1, name="t"), Member(team_id=1, user_id=1, role="viewer")]
    )
    s.commit()
    return s


def _put(s: Session, task_id: int, at: datetime, status: S = S.QUEUED, team_id: int = 1) -> None:
    t = s.get(Task, task_id)
    if t is None:
        t = Task(
            id=task_id,
            team_id=team_id,
            workspace_id=1,
            user_id=1,
            module_id=1,
            app_id=1,
            release_id=1,
            version="r1",
            name="t",
            params={},
            outputs={},
            created_at=at,
        )
        s.add(t)
    t.status = status.value
    t.updated_at = at
    s.commit()


def test_a_look_reads_what_committed_late_and_repeats_nothing() -> None:
    s = _session()
    viewer = Principal(kind="user", token_id=1, user_id=1)
    t0 = datetime.now(UTC)
    feed = svc.TeamFeed(1, t0)

    def look() -> list[tuple[int, str]]:
        return [(i.id, i.status.value) for i in svc.team_changes(s, viewer, feed=feed).items]

    _put(s, 9, t0 - svc.STREAM_OVERLAP - timedelta(seconds=1))  # long before it opened
    _put(s, 1, t0 + timedelta(seconds=1))
    _put(s, 5, t0 + timedelta(seconds=1), team_id=2)  # another team's
    assert look() == [(1, "queued")]
    assert look() == []  # nothing new: nothing sent
    # stamped before the newest one seen, committed after it: still sent, once
    _put(s, 2, t0 + timedelta(seconds=0.5))
    _put(s, 3, t0 + timedelta(seconds=1.5))
    assert look() == [(2, "queued"), (3, "queued")]
    # changes of one task between two looks: once, in its newest state
    _put(s, 1, t0 + timedelta(seconds=2), S.CONSUMED)
    _put(s, 1, t0 + timedelta(seconds=2.5), S.STARTED)
    assert look() == [(1, "started")]
    assert look() == []
    # what the overlap no longer covers has been forgotten
    _put(s, 4, t0 + timedelta(seconds=5))
    assert look() == [(4, "queued")]
    assert {at for _, at in feed.sent} == {t0 + timedelta(seconds=5)}


def test_a_long_backlog_comes_in_batches_each_task_once() -> None:
    s = _session()
    viewer = Principal(kind="user", token_id=1, user_id=1)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    n = svc.STREAM_BATCH * 2 + 7
    for i in range(1, n + 1):
        _put(s, i, t0 + timedelta(milliseconds=i // 3))  # three at a time share a stamp
    feed = svc.TeamFeed(1, t0 - timedelta(minutes=1))
    got: list[int] = []
    while True:
        batch = svc.team_changes(s, viewer, feed=feed)
        got += [i.id for i in batch.items]
        if not batch.more:
            break
    assert got == list(range(1, n + 1))


def test_the_look_reads_the_index() -> None:
    """Both reads of a look, explained by SQLite: the index range, no sort, no table scan."""
    s = _session()
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if "FROM tasks" in statement and not statement.startswith("EXPLAIN"):
            statements.append((statement, params))

    engine = s.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    _put(s, 1, datetime.now(UTC))
    statements.clear()
    svc.team_changes(
        s,
        Principal(kind="user", token_id=1, user_id=1),
        feed=svc.TeamFeed(1, datetime.now(UTC)),
    )
    event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 2, statements  # the stamps, then the rows not sent yet
    plans = [
        " | ".join(
            str(row[-1])
            for row in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
        )
        for sql, params in statements
    ]
    assert "COVERING INDEX ix_tasks_team_updated" in plans[0], plans[0]
    assert "TEMP B-TREE" not in plans[0], plans[0]  # no sort: the index gives the order
    assert "INTEGER PRIMARY KEY" in plans[1], plans[1]
