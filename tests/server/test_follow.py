"""The follow loop of every push endpoint (``routes/follow.py``): subscribed before the first
look, woken only by its keys, looking again after a keepalive tick or at once while more waits,
one look per burst when it settles, and answering at shutdown.

First on the real notifier in one event loop (a look is a function over a small board), then
every long-poll and stream of a real server while it shuts down.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appyard.server import keys
from appyard.server.notifier import Notifier
from appyard.server.routes.follow import FIRST, Follow
from tests.support import APPS, Client, ServerProc, pg_database, wait_for

KEY = keys.task(1)
OTHER = keys.task(2)


class Board:
    """What a look reads: a value, and what fired before each look."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.looks: list[set[str]] = []

    def look(self, then: Callable[[], None] = lambda: None) -> Callable[[set[str]], Awaitable[int]]:
        """A look that reads the value, then runs ``then`` (a write just after the read)."""

        async def look(fired: set[str]) -> int:
            self.looks.append(set(fired))
            value = self.value
            then()
            return value

        return look


def _run(main: Callable[[Notifier], Coroutine[Any, Any, None]]) -> None:
    async def bound() -> None:
        hub = Notifier()
        hub.bind(asyncio.get_running_loop())
        await asyncio.wait_for(main(hub), 10)

    asyncio.run(bound())


def _now() -> float:
    return asyncio.get_running_loop().time()


def test_a_change_between_the_first_look_and_the_wait_is_not_missed() -> None:
    async def main(hub: Notifier) -> None:
        board = Board()

        def write() -> None:  # committed after the first read, before the wait
            if len(board.looks) == 1:
                board.value = 1
                hub.publish([KEY])

        t0 = _now()
        got = await Follow(hub, [KEY], board.look(write), timeout=30).until(lambda v: v == 1)
        assert got == 1 and _now() - t0 < 5
        assert board.looks == [{FIRST}, {KEY}]

    _run(main)


def test_a_long_poll_sleeps_through_other_keys_and_answers_its_last_look_at_the_deadline() -> None:
    async def main(hub: Notifier) -> None:
        board = Board()
        asyncio.get_running_loop().call_later(0.05, hub.publish, [OTHER])
        t0 = _now()
        got = await Follow(hub, [KEY], board.look(), timeout=0.3).until(lambda v: v == 1)
        assert got == 0 and 0.25 < _now() - t0 < 5
        assert board.looks == [{FIRST}, set()]  # the first, and one at the deadline

    _run(main)


def test_at_shutdown_a_long_poll_answers_at_once_and_a_stream_ends() -> None:
    async def main(hub: Notifier) -> None:
        board = Board()
        poll = asyncio.create_task(Follow(hub, [KEY], board.look(), timeout=60).until(bool))
        stream = Follow(hub, [KEY], board.look(), keepalive_s=60)
        seen: list[int | None] = []

        async def read() -> None:
            async with stream:
                async for value in stream.looks():
                    seen.append(value)

        reading = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        t0 = _now()
        hub.close()
        assert await poll == 0
        await reading
        assert _now() - t0 < 5
        assert seen == [0, 0]  # the first look, and the one after the shutdown's wake
        # one that subscribes once the server shuts down answers after its first look
        board.looks.clear()
        assert await Follow(hub, [KEY], board.look(), timeout=60).until(bool) == 0
        assert board.looks == [{FIRST}]

    _run(main)


def test_a_stream_ticks_and_looks_again_unless_told_not_to() -> None:
    async def main(hub: Notifier) -> None:
        for look_on_keepalive, expected in ((True, 3), (False, 1)):
            board = Board()
            follow = Follow(
                hub, [KEY], board.look(), keepalive_s=0.02, look_on_keepalive=look_on_keepalive
            )
            seen: list[int | None] = []
            async with follow:
                async for value in follow.looks():
                    seen.append(value)
                    if len(seen) == 5:
                        break
            assert seen == ([0, None, 0, None, 0] if look_on_keepalive else [0] + [None] * 4)
            assert len(board.looks) == expected

    _run(main)


def test_a_full_page_is_followed_at_once_and_a_burst_is_one_look() -> None:
    async def main(hub: Notifier) -> None:
        backlog = Board(3)

        def take_one() -> None:
            backlog.value = max(0, backlog.value - 1)

        follow = Follow(
            hub, [KEY], backlog.look(take_one), keepalive_s=60, again=lambda left: left > 1
        )
        seen: list[int | None] = []
        async with follow:
            async for value in follow.looks():
                seen.append(value)
                if value == 0:
                    break
                if value == 1:  # the backlog is read: the next look waits for a wake
                    hub.publish([KEY])
        assert seen == [3, 2, 1, 0]
        assert backlog.looks == [{FIRST}, set(), set(), {KEY}]

        burst = Board()

        async def writes() -> None:  # five, apart, while the stream waits, within its settling
            for i in range(5):
                await asyncio.sleep(0.005)
                burst.value = i + 1
                hub.publish([KEY])

        follow = Follow(hub, [KEY], burst.look(), keepalive_s=60, settle_s=0.1)
        async with follow:
            async for value in follow.looks():
                if value == 0:
                    writing = asyncio.create_task(writes())
                    continue
                assert value == 5
                break
        await writing
        assert burst.looks == [{FIRST}, {KEY}]

    _run(main)


# -- every push endpoint of a real server, while it shuts down --------------------------------


@pytest.fixture
def own_server(server: ServerProc, tmp_path: Path) -> Iterator[ServerProc]:
    """A server for this test alone (it is stopped), on the kind of database ``server`` has;
    its long-polls last 60 s, so that only the shutdown can end them."""
    slow = {"APPYARD_POLL_TIMEOUT_S": "60", "APPYARD_AGENT_TTL_S": "90"}
    if server.database_url:
        with pg_database() as url:
            own = ServerProc(tmp_path / "own", database_url=url, extra_env=slow).start()
            yield own
            own.kill()
    else:
        own = ServerProc(tmp_path / "own", extra_env=slow).start()
        yield own
        own.kill()


class Held:
    """One request held open in a thread: a long-poll's answer, or a stream's whole text."""

    def __init__(self, url: str, token: str, method: str, path: str, **kw: Any) -> None:
        self.text = ""
        self.status_code = 0
        self.opened = threading.Event()  # the answer's headers are in
        self.done = threading.Event()
        self.error: BaseException | None = None
        args = (url, token, method, path, kw)
        threading.Thread(target=self._run, args=args, daemon=True).start()

    def _run(self, url: str, token: str, method: str, path: str, kw: dict[str, Any]) -> None:
        try:
            with (
                httpx.Client(base_url=f"{url}/api/v1", timeout=httpx.Timeout(10, read=90)) as http,
                http.stream(method, path, headers={"Authorization": f"Bearer {token}"}, **kw) as r,
            ):
                self.status_code = r.status_code
                self.opened.set()
                for chunk in r.iter_text():
                    self.text += chunk
        except BaseException as exc:
            self.error = exc
        finally:
            self.opened.set()
            self.done.set()

    def json(self) -> Any:
        return json.loads(self.text)


def test_every_long_poll_and_stream_answers_when_the_server_shuts_down(
    own_server: ServerProc,
) -> None:
    admin = Client(own_server.url, own_server.admin_token)
    team = admin.ok("POST", "/teams", json={"name": "closing"})["id"]
    ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
    mid = admin.publish(APPS / "worker")["module_id"]
    agents = {}
    for name in ("holder", "absent"):
        created = admin.ok("POST", f"/teams/{team}/agents", json={"name": name})
        agents[name] = (created["id"], created["token"])
    # queued for an agent that never polls: it stays queued
    body = {"workspace_id": ws, "module_id": mid, "agent_id": agents["absent"][0]}
    tid = admin.ok("POST", "/tasks", json=body)["task_id"]
    url, token = own_server.url, own_server.admin_token
    wait = Held(
        url, token, "GET", f"/tasks/{tid}/wait", params={"until": "finished", "timeout": 60}
    )
    watch = Held(url, token, "GET", f"/tasks/{tid}/watch")
    logs = Held(url, token, "GET", f"/tasks/{tid}/logs/stream")
    feed = Held(url, token, "GET", "/tasks/stream", params={"team_id": team})
    holder_id, holder_token = agents["holder"]
    Client(url, holder_token).ok("POST", "/agents/hello", json={"slots": 1})
    seen = _last_seen(admin, team, holder_id)
    poll = Held(
        url,
        holder_token,
        "POST",
        f"/agents/{holder_id}/poll",
        json={"free_slots": 1, "running": [], "timeout_s": 60},
    )
    # a poll marks its agent seen after it subscribed; a stream answers after its first look
    wait_for(lambda: _last_seen(admin, team, holder_id) != seen, 10, "the poll to be held")
    for stream in (watch, logs, feed):
        assert stream.opened.wait(10) and stream.status_code == 200, stream.error
    assert not any(h.done.is_set() for h in (wait, watch, logs, feed, poll))

    own_server.stop()
    for held in (wait, watch, logs, feed, poll):
        assert held.done.wait(5), "still held after the shutdown"
        assert held.error is None, held.error
    assert "graceful shutdown exceeded" not in (own_server.home / "server.log").read_text()
    answered = wait.json()
    assert answered["timed_out"] is True and answered["task"]["status"] == "queued"
    assert poll.json() == {"tasks": [], "stop": []}
    # the task once (the look after the shutdown's wake found nothing new), no end: it goes on
    assert watch.text.count("event: task\n") == 1 and "event: end" not in watch.text
    assert logs.text == ""  # no lines yet, and no end


def _last_seen(admin: Client, team: int, agent_id: int) -> str:
    listed = admin.ok("GET", f"/teams/{team}/agents")
    return str(next(a["last_seen_at"] for a in listed if a["id"] == agent_id))
