"""Fixtures: a real server per database (SQLite, and PostgreSQL where it runs), fresh teams."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import screenshots
from tests.support import Client, ServerProc, World, pg_available, pg_database

_DATABASES = os.environ.get("APPYARD_TEST_DATABASES", "sqlite,postgres").split(",")
_counter = itertools.count(1)


def _db_params() -> list[str]:
    out = []
    for name in _DATABASES:
        name = name.strip()
        if name == "postgres" and not pg_available():
            if os.environ.get("CI"):
                raise RuntimeError(
                    "CI must run the PostgreSQL leg, but PostgreSQL is not reachable"
                )
            continue
        if name:
            out.append(name)
    return out


@contextlib.contextmanager
def live_server(
    database: str, home: Path, extra_env: dict[str, str] | None = None
) -> Iterator[ServerProc]:
    """A live server on ``database`` (``sqlite`` or ``postgres``, a fresh database), stopped
    afterwards; a module's own ``server`` fixture uses it with settings of its own."""
    extra = extra_env or {}
    if database == "postgres":
        with pg_database() as url:
            proc = ServerProc(home, database_url=url, extra_env=extra).start()
            yield proc
            proc.stop()
    else:
        proc = ServerProc(home, extra_env=extra).start()
        yield proc
        proc.stop()


@pytest.fixture(scope="module", params=_db_params())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProc]:
    """One live server per test module and database."""
    with live_server(request.param, tmp_path_factory.mktemp(f"server-{request.param}")) as proc:
        yield proc


@pytest.fixture
def world(server: ServerProc, tmp_path: Path) -> Iterator[World]:
    """A fresh team and workspace on the module's server; agents stopped afterwards."""
    admin = Client(server.url, server.admin_token)
    n = next(_counter)
    team = admin.ok("POST", "/teams", json={"name": f"team-{n}"})
    ws = admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "main"})
    w = World(server, admin, team["id"], ws["id"], tmp_path)
    yield w
    # stop what still runs through the API (the real stop protocol), then the agents
    live = [a for a in w.agents if a.proc and a.proc.poll() is None]
    if live:
        page = admin.ok("GET", "/tasks", params={"team_id": w.team_id, "limit": 500})
        for t in page["items"]:
            if t["status"] not in ("finished", "error", "stopped"):
                admin.http.post(f"/tasks/{t['id']}/stop")
        for t in page["items"]:
            admin.http.get(f"/tasks/{t['id']}/wait", params={"timeout": 15})
    for agent in w.agents:
        agent.stop()
        agent.kill_left_apps()


# -- the order of the files ----------------------------------------------------------------------

#: test files that take minutes: run first, so that the run's workers (pytest-xdist, one file
#: each at a time) end together instead of waiting on one of them at the end
_LONG_FILES = ("tests/server/test_fuzz_api.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def first(item: pytest.Item) -> bool:
        return not item.nodeid.startswith(_LONG_FILES)

    items.sort(key=first)  # (a stable sort: the order is kept otherwise)


# -- the run's screenshots (tests/screenshots.py) ------------------------------------------------

_run_started: list[float] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # the run itself, not one of its workers
        _run_started.append(time.time())
        screenshots.clear_old()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    count = screenshots.written_since(_run_started[0]) if _run_started else 0
    if count:
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(f"{count} screenshots in {screenshots.SHOTS}")
