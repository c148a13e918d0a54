"""Lists by status read the rows of that status, not the team's history.

With thousands of ended sessions in the team (written straight into the database), the plans
(EXPLAIN) of the seed's ``get_sessions(team_id, module_id, statuses=[started])`` and of the
status-filtered lists read the indexes that lead with the status (migration 0004); the pages
they give, merged from one read per status, are the right ones page after page; and a
database made before 0004 is upgraded with its sessions.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import ClauseElement, Engine, create_engine, inspect, select, text

from appyard.domain.status import TERMINAL, Status
from appyard.sdk import Api
from appyard.sdk.task_api import PAGE_SIZE
from appyard.server.db.engine import make_engine
from appyard.server.db.migrate import alembic_config
from appyard.server.db.models import Task
from appyard.server.db.stats import refresh_statistics
from appyard.server.services.task_feeds import list_statement
from tests.history import Share, seed_ended
from tests.support import APPS, Client, ServerProc, World, pg_available, pg_database

HISTORY = 20_000
ACTIVE = [st for st in Status if st not in TERMINAL]
ENDED = sorted(TERMINAL)
#: the plans must read these, and nothing else of the tasks table
BY_STATUS = "ix_tasks_status_team_id"
BY_APP_STATUS = "ix_tasks_status_team_module_id"


@dataclass
class History:
    world: World
    engine: Engine
    module_id: int
    agent_id: int
    started: int  # the one running session of the module


def _url(server: ServerProc) -> str:
    return server.database_url or f"sqlite:///{server.home / 'appyard.db'}"


@pytest.fixture
def history(world: World) -> Iterator[History]:
    admin, ws = world.admin, world.workspace_id
    mid = admin.publish(APPS / "worker")["module_id"]
    other = admin.publish(APPS / "worker", slug="tests/worker-other", name="Other")["module_id"]
    agent_id, token = world.new_agent_token("plans")
    templates = []
    for module in (mid, other):
        body = {"workspace_id": ws, "module_id": module, "agent_id": agent_id}
        task_id = admin.ok("POST", "/tasks", json=body)["task_id"]
        admin.ok("POST", f"/tasks/{task_id}/stop")
        templates.append(task_id)
    engine = make_engine(_url(world.server))
    seed_ended(
        engine,
        [
            Share(templates[0], HISTORY * 9 // 10, (agent_id,)),
            Share(templates[1], HISTORY // 10, (agent_id,)),
        ],
    )
    # then the live ones, on a real agent with one slot: one running, two queued behind it
    agent = world.start_agent(token, "plans", slots=1)
    body = {"workspace_id": ws, "module_id": mid, "agent_id": agent_id}
    started = admin.ok("POST", "/tasks", json={**body, "params": {"sleep_s": 600}})["task_id"]
    waited = admin.ok("GET", f"/tasks/{started}/wait", params={"until": "started", "timeout": 60})
    assert waited["task"]["status"] == "started", f"{waited}\nthe agent's log:\n{agent.log_text}"
    for _ in range(2):
        admin.ok("POST", "/tasks", json=body)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # what autovacuum does after a bulk insert
            conn.execute(text("ANALYZE tasks"))
    try:
        yield History(world, engine, mid, agent_id, started)
    finally:
        engine.dispose()


#: the rows of a page of several statuses, read by id
BY_ID = "PRIMARY KEY"
#: a read of the tasks table in a plan line, and the index it reads (none: the whole table)
_READ = {
    "sqlite": re.compile(
        r"^(?:SEARCH|SCAN) tasks(?: USING (?:COVERING )?INDEX (\w+)| USING (INTEGER PRIMARY KEY))?"
    ),
    "postgresql": re.compile(
        r"(?:Seq Scan on tasks|Index (?:Only )?Scan(?: Backward)? using (\w+) on tasks"
        r"|Bitmap Index Scan on (\w+))"
    ),
}


def _tasks_reads(engine: Engine, stmt: ClauseElement) -> list[str]:
    """EXPLAIN ``stmt``: the index each read of the tasks table uses (``FULL SCAN``: none)."""
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    postgres = engine.dialect.name == "postgresql"
    explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        lines = [str(row[-1]) for row in conn.exec_driver_sql(explain + sql)]
    reads = []
    for line in lines:
        m = _READ[engine.dialect.name].search(line.strip())
        if m:
            index = next((g for g in m.groups() if g), "FULL SCAN")
            reads.append(BY_ID if index in ("INTEGER PRIMARY KEY", "tasks_pkey") else index)
    assert reads, "\n".join(lines)
    return reads


def test_the_seeds_query_and_status_lists_read_the_status_indexes(history: History) -> None:
    team, mid, engine = history.world.team_id, history.module_id, history.engine
    # the seed's api.app.get_sessions(team_id, module_id, statuses=[STARTED]): one page
    seed = list_statement(team, mid, [Status.STARTED], limit=PAGE_SIZE + 1)
    assert _tasks_reads(engine, seed) == [BY_APP_STATUS]
    # a status filter of the sessions page, and the agents' queued work
    for status in ACTIVE:
        assert _tasks_reads(engine, list_statement(team, None, [status], limit=51)) == [BY_STATUS]
    # "not ended": the ids of each status from its index, then the rows of the page by id
    not_ended = list_statement(team, None, ACTIVE, limit=51)
    assert sorted(_tasks_reads(engine, not_ended)) == [BY_ID] + [BY_STATUS] * 5
    app_active = list_statement(team, mid, ACTIVE, limit=51, cursor=10**9)
    assert sorted(_tasks_reads(engine, app_active)) == [BY_ID] + [BY_APP_STATUS] * 5
    if engine.dialect.name == "sqlite":
        # without statistics SQLite always takes the status index; PostgreSQL may rather walk
        # the ids newest first for a status most ended sessions have (it knows how common
        # each status is), which finds a page as fast
        for status in ENDED:
            assert _tasks_reads(engine, list_statement(team, None, [status])) == [BY_STATUS]
        app_ended = list_statement(team, mid, ENDED)
        assert sorted(_tasks_reads(engine, app_ended)) == [BY_ID] + [BY_APP_STATUS] * 3


def _expected(engine: Engine, team: int, statuses: list[str], module_id: int | None) -> list[int]:
    stmt = select(Task.id).where(Task.team_id == team, Task.status.in_(statuses))
    if module_id is not None:
        stmt = stmt.where(Task.module_id == module_id)
    with engine.connect() as conn:
        return list(conn.scalars(stmt.order_by(Task.id.desc()).limit(60)))


def test_pages_by_status_are_the_newest_first_page_after_page(history: History) -> None:
    world, team = history.world, history.world.team_id
    for statuses, module_id in [
        (["started"], history.module_id),
        (["queued", "consumed", "started"], None),
        (["error", "stopped"], None),
        (["finished", "error", "stopped"], history.module_id),
    ]:
        got: list[int] = []
        cursor = None
        for _ in range(4):
            params = {"team_id": team, "status": ",".join(statuses), "limit": 15}
            if module_id is not None:
                params["module_id"] = module_id
            if cursor is not None:
                params["cursor"] = cursor
            page = world.admin.ok("GET", "/tasks", params=params)
            assert all(t["status"] in statuses for t in page["items"])
            got += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == _expected(history.engine, team, statuses, module_id)[: len(got)]
        assert len(got) == min(60, len(_expected(history.engine, team, statuses, module_id)))
    # and the seed's own call, through the SDK
    token = world.admin.http.headers["Authorization"].split()[1]
    with Api(world.server.url, token) as api:
        running = api.app.get_sessions(team, history.module_id, statuses=[Status.STARTED])
    assert [s.task_id for s in running] == [history.started]


def _databases() -> list[str]:
    wanted = os.environ.get("APPYARD_TEST_DATABASES", "sqlite,postgres").split(",")
    return [d for d in wanted if d == "sqlite" or (d == "postgres" and pg_available())]


def test_statistics_follow_the_history_and_the_plans_stay(history: History) -> None:
    """SQLite: the tables that grew tenfold are analyzed (approximately), once; the plans are
    the same with statistics as without. PostgreSQL: left to autovacuum."""
    engine, team, mid = history.engine, history.world.team_id, history.module_id
    if engine.dialect.name != "sqlite":
        assert refresh_statistics(engine) == []
        return
    assert "tasks" in refresh_statistics(engine)
    assert refresh_statistics(engine) == []  # nothing changed tenfold since
    engine.dispose()  # connections read the statistics when they open
    seed = list_statement(team, mid, [Status.STARTED], limit=PAGE_SIZE + 1)
    assert _tasks_reads(engine, seed) == [BY_APP_STATUS]
    for status in Status:
        assert _tasks_reads(engine, list_statement(team, None, [status])) == [BY_STATUS]
    not_ended = list_statement(team, None, ACTIVE, limit=51)
    assert sorted(_tasks_reads(engine, not_ended)) == [BY_ID] + [BY_STATUS] * 5


@pytest.mark.parametrize("database", _databases())
def test_a_database_made_before_0004_is_upgraded_with_its_sessions(
    database: str, tmp_path: Path
) -> None:
    """The server migrates a 0003 database with a history in it on start, and (SQLite)
    analyzes it for the planner: the first lists after an upgrade are fast already."""
    with pg_database() if database == "postgres" else contextlib.nullcontext() as pg_url:
        server = ServerProc(tmp_path / "home", database_url=pg_url).start()
        url = _url(server)
        try:
            admin = Client(server.url, server.admin_token)
            team = admin.ok("POST", "/teams", json={"name": "old"})["id"]
            ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
            mid = admin.publish(APPS / "worker")["module_id"]
            ids = [
                admin.ok("POST", "/tasks", json={"workspace_id": ws, "module_id": mid})["task_id"]
                for _ in range(3)
            ]
            admin.ok("POST", f"/tasks/{ids[0]}/stop")
        finally:
            server.stop()
        engine = create_engine(url)
        try:
            command.downgrade(alembic_config(engine), "0003")
            names = {ix["name"] for ix in inspect(engine).get_indexes("tasks")}
            assert BY_STATUS not in names and "ix_tasks_status_team" in names
            seed_ended(engine, [Share(ids[0], 3000, (None,))])
        finally:
            engine.dispose()
        server.start()  # the server migrates on start
        try:
            admin = Client(server.url, server.admin_token)
            queued = admin.ok("GET", "/tasks", params={"team_id": team, "status": "queued"})
            assert [t["id"] for t in queued["items"]] == ids[:0:-1]
            params = {"team_id": team, "module_id": mid, "status": "error,stopped"}
            ended = [t["id"] for t in admin.ok("GET", "/tasks", params=params)["items"]]
        finally:
            server.stop()
        engine = create_engine(url)
        try:
            names = {ix["name"] for ix in inspect(engine).get_indexes("tasks")}
            assert {BY_STATUS, BY_APP_STATUS, "ix_tasks_agent_status_stop"} <= names
            assert not {"ix_tasks_status_team", "ix_tasks_agent_status"} & names
            assert ended == _expected(engine, team, ["error", "stopped"], mid)[:50]
            if database == "sqlite":  # analyzed at start-up
                with engine.connect() as conn:
                    stats = conn.execute(text("SELECT tbl FROM sqlite_stat1")).scalars().all()
                assert "tasks" in stats
        finally:
            engine.dispose()
