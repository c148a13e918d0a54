"""A write that waits on a lock another connection holds is given up after the lock timeout
(``APPYARD_DB_LOCK_TIMEOUT_S``): a 503 ``busy`` with ``Retry-After``, nothing written, on a
connection that serves the next request. On PostgreSQL the server's connections carry a
``lock_timeout`` (without one, the request waited for as long as the lock was held); on SQLite
the same setting is the busy timeout."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from appyard.sdk._sync import SyncCore
from tests.conftest import _db_params, live_server
from tests.support import APPS, Client, ServerProc

API = "/api/v1"


@pytest.fixture(scope="module", params=_db_params())
def quick(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProc]:
    """A server whose writes wait 1 s for a lock held elsewhere, and say to retry in 2 s."""
    env = {"APPYARD_DB_LOCK_TIMEOUT_S": "1", "APPYARD_RETRY_AFTER_S": "2"}
    home = tmp_path_factory.mktemp(f"locks-{request.param}")
    with live_server(request.param, home, env) as proc:
        yield proc


class HeldLock:
    """Another connection holding a lock until ``release``: on PostgreSQL what ``statement``
    takes (in a transaction), on SQLite the write lock."""

    def __init__(self, server: ServerProc, statement: str, *args: object) -> None:
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        if server.database_url:
            import psycopg

            dsn = server.database_url.replace("postgresql+psycopg://", "postgresql://")
            self._pg = psycopg.connect(dsn)
            self._pg.execute(statement, args)
        else:
            self._sqlite = sqlite3.connect(
                server.home / "appyard.db", timeout=5, isolation_level=None
            )
            self._sqlite.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg = None
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None


@contextmanager
def team_locked(server: ServerProc, team_id: int) -> Iterator[None]:
    """The team's row held (``FOR UPDATE``, what a member change takes too) or SQLite's write
    lock, until the block ends."""
    lock = HeldLock(server, "SELECT id FROM teams WHERE id = %s FOR UPDATE", team_id)
    try:
        yield
    finally:
        lock.release()


def test_a_write_waiting_on_a_lock_held_elsewhere_is_a_503_with_retry_after(
    quick: ServerProc,
) -> None:
    # a read timeout well past the lock timeout: a request held for as long as the lock is
    # (what PostgreSQL did without a lock_timeout) fails the test instead of hanging it
    http = httpx.Client(
        base_url=f"{quick.url}{API}",
        headers={"Authorization": f"Bearer {quick.admin_token}"},
        timeout=20,
    )
    team = http.post("/teams", json={"name": "locked"}).raise_for_status().json()
    http.post("/users", json={"login": "newcomer"}).raise_for_status()
    member = {"login": "newcomer", "role": "viewer"}

    with team_locked(quick, team["id"]):
        r = http.post(f"/teams/{team['id']}/members", json=member)
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "busy" and "Retry in 2 s" in error["message"], error
        assert r.headers["retry-after"] == "2"
        assert r.headers.get("connection") != "close"

    # nothing was written; the lock gone, the same connection does it
    assert [m["login"] for m in http.get(f"/teams/{team['id']}/members").json()] == ["admin"]
    r = http.post(f"/teams/{team['id']}/members", json=member)
    assert r.status_code == 201, r.text
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1


def test_the_sdk_waits_as_a_503_asks_then_its_idempotent_start_goes_through(
    quick: ServerProc,
) -> None:
    admin = Client(quick.url, quick.admin_token)
    team = admin.ok("POST", "/teams", json={"name": "sdk-busy"})["id"]
    ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
    mid = admin.publish(APPS / "worker")["module_id"]
    start = {"workspace_id": ws, "module_id": mid, "idempotency_key": "busy-once"}
    lock = HeldLock(quick, "LOCK TABLE tasks IN EXCLUSIVE MODE")  # no session can be added
    waits: list[float] = []

    def pause(seconds: float) -> None:
        """The SDK's wait before its next attempt: the lock goes during it."""
        waits.append(seconds)
        lock.release()
        threading.Event().wait(seconds)

    core = SyncCore(quick.url, quick.admin_token, pause=pause)
    try:
        started = core.request("POST", "/tasks", json=start, idempotent=True)
    finally:
        core.close()
        lock.release()
    assert waits == [2.0], waits  # the server's Retry-After
    page = admin.ok("GET", "/tasks", params={"team_id": team})
    assert [t["id"] for t in page["items"]] == [started["task_id"]]  # one session, once
