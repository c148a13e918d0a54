"""Migration 0009: readiness is a flag on the task, not the status ``deployed``.

A database made by 0008 with a serving session in ``deployed`` (written by the server as it
was, then its row put where 0008 left such sessions) is upgraded: that session is ``started``
and ready, its ``ready_at`` the former ``deployed_at``; a session that never said it was ready
is untouched; an ended one keeps when it was ready, and is not ready any more. The downgrade
gives back ``deployed``. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, bindparam, create_engine, inspect, text

from appyard.server.db.migrate import alembic_config
from tests.support import APPS, Client, ServerProc, pg_available, pg_database

DEPLOYED_AT = datetime(2026, 12, 1, 10, 0, 0)
ENDED_AT = datetime(2026, 12, 1, 11, 0, 0)


def _databases() -> list[str]:
    wanted = os.environ.get("APPYARD_TEST_DATABASES", "sqlite,postgres").split(",")
    return [d for d in wanted if d == "sqlite" or (d == "postgres" and pg_available())]


def _rows(engine: Engine, ids: list[int], ready: bool) -> dict[int, dict[str, Any]]:
    """status, the readiness columns and updated_at of the tasks ``ids``, by id."""
    columns = "status, ready, ready_at" if ready else "status, deployed_at"
    query = text(f"SELECT id, {columns}, updated_at FROM tasks WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    with engine.connect() as conn:
        return {row.id: dict(row._mapping) for row in conn.execute(query, {"ids": ids})}


def _naive(value: Any) -> datetime:
    """A timestamp as read back (SQLite: text; PostgreSQL: datetime), as naive UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


@pytest.mark.parametrize("database", _databases())
def test_deployed_sessions_become_started_and_ready(database: str, tmp_path: Path) -> None:
    with pg_database() if database == "postgres" else contextlib.nullcontext() as pg_url:
        server = ServerProc(tmp_path / "home", database_url=pg_url).start()
        url = pg_url or f"sqlite:///{server.home / 'appyard.db'}"
        try:
            admin = Client(server.url, server.admin_token)
            team = admin.ok("POST", "/teams", json={"name": "ready"})["id"]
            ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
            mid = admin.publish(APPS / "worker")["module_id"]
            body = {"workspace_id": ws, "module_id": mid}
            serving, plain, ended = (
                admin.ok("POST", "/tasks", json=body)["task_id"] for _ in range(3)
            )
        finally:
            server.stop()

        engine = create_engine(url)
        try:
            cfg = alembic_config(engine)
            command.downgrade(cfg, "0008")
            assert "ready" not in {c["name"] for c in inspect(engine).get_columns("tasks")}
            with engine.begin() as conn:  # where 0008 left a serving app, a plain one, an ended one
                put = text(
                    "UPDATE tasks SET status = :status, deployed_at = :deployed_at, "
                    "started_at = :deployed_at, ended_at = :ended_at WHERE id = :id"
                )
                conn.execute(put, {"id": serving, "status": "deployed",
                                   "deployed_at": DEPLOYED_AT, "ended_at": None})  # fmt: skip
                conn.execute(put, {"id": plain, "status": "started",
                                   "deployed_at": None, "ended_at": None})  # fmt: skip
                conn.execute(put, {"id": ended, "status": "stopped",
                                   "deployed_at": DEPLOYED_AT, "ended_at": ENDED_AT})  # fmt: skip
            before = _rows(engine, [serving, plain, ended], ready=False)

            command.upgrade(cfg, "head")
            after = _rows(engine, [serving, plain, ended], ready=True)
            assert after[serving]["status"] == "started" and after[serving]["ready"]
            assert _naive(after[serving]["ready_at"]) == DEPLOYED_AT
            # moved on, so that live views (the team stream reads by updated_at) catch up
            assert _naive(after[serving]["updated_at"]) > _naive(before[serving]["updated_at"])
            assert after[plain]["status"] == "started" and not after[plain]["ready"]
            assert after[plain]["ready_at"] is None
            assert after[plain]["updated_at"] == before[plain]["updated_at"]
            assert after[ended]["status"] == "stopped" and not after[ended]["ready"]
            assert _naive(after[ended]["ready_at"]) == DEPLOYED_AT

            command.downgrade(cfg, "0008")  # and back: the serving app is deployed again
            back = _rows(engine, [serving, plain, ended], ready=False)
            assert [back[i]["status"] for i in (serving, plain, ended)] == [
                "deployed",
                "started",
                "stopped",
            ]
            assert _naive(back[serving]["deployed_at"]) == DEPLOYED_AT
            assert back[plain]["deployed_at"] is None
            command.upgrade(cfg, "head")
        finally:
            engine.dispose()

        server.start()  # and the server reads it so
        try:
            admin = Client(server.url, server.admin_token)
            info = admin.ok("GET", f"/tasks/{serving}")
            assert (info["status"], info["ready"]) == ("started", True)
            assert info["ready_at"].startswith("2026-12-01T10:00:00")
            assert info["deployed_at"] is None
            listed = admin.ok("GET", "/tasks", params={"team_id": team, "status": "started"})
            assert sorted(t["id"] for t in listed["items"]) == sorted([serving, plain])
            assert (
                admin.ok("GET", "/tasks", params={"team_id": team, "status": "deployed"})["items"]
                == []
            )
        finally:
            server.stop()
