"""Migration 0015: a session's usage history moves from one JSON value on the task to rows.

A database made by 0014 holds a history of three points (one with GPU figures, one time
without microseconds), a task with figures but an empty history, and a task without figures.
The upgrade copies the points in order, as one chunk, and counts them on the task; the server
then answers the same history, and appends to it; the downgrade gives the JSON back. On SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from appyard.server.db.migrate import alembic_config
from tests.support import APPS, Client, ServerProc, pg_available, pg_database

HISTORY = [
    {"sampled_at": "2026-12-01T10:00:00+00:00", "cpu_percent": 12.5, "memory_mb": 100.0,
     "gpu_memory_mb": None, "gpu_percent": None},
    {"sampled_at": "2026-12-01T10:00:05.250000+00:00", "cpu_percent": 200.0, "memory_mb": 150.5,
     "gpu_memory_mb": 2048.0, "gpu_percent": 75.0},
    {"sampled_at": "2026-12-01T10:00:10.500000+00:00", "cpu_percent": 0.0, "memory_mb": 90.0,
     "gpu_memory_mb": None, "gpu_percent": None},
]  # fmt: skip


def _databases() -> list[str]:
    wanted = os.environ.get("APPYARD_TEST_DATABASES", "sqlite,postgres").split(",")
    return [d for d in wanted if d == "sqlite" or (d == "postgres" and pg_available())]


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Two histories alike, whatever the spelling of their times."""

    def norm(h: dict[str, Any]) -> dict[str, Any]:
        at = datetime.fromisoformat(str(h["sampled_at"]).replace("Z", "+00:00"))
        return {**h, "sampled_at": at.astimezone(UTC)}

    return [norm(x) for x in a] == [norm(x) for x in b]


@pytest.mark.parametrize("database", _databases())
def test_histories_move_to_rows_and_back(database: str, tmp_path: Path) -> None:
    with pg_database() if database == "postgres" else contextlib.nullcontext() as pg_url:
        server = ServerProc(tmp_path / "home", database_url=pg_url).start()
        url = pg_url or f"sqlite:///{server.home / 'appyard.db'}"
        try:
            admin = Client(server.url, server.admin_token)
            team = admin.ok("POST", "/teams", json={"name": "usage"})["id"]
            ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
            mid = admin.publish(APPS / "worker")["module_id"]
            made = admin.ok("POST", f"/teams/{team}/agents", json={"name": "a"})
            agent_id, token = made["id"], made["token"]
            body = {"workspace_id": ws, "module_id": mid, "agent_id": agent_id}
            full, empty, none = (admin.ok("POST", "/tasks", json=body)["task_id"] for _ in range(3))
        finally:
            server.stop()

        engine = create_engine(url)
        try:
            cfg = alembic_config(engine)
            command.downgrade(cfg, "0014")
            assert "task_usage" not in inspect(engine).get_table_names()
            with engine.begin() as conn:  # as 0014 kept them, held by the agent
                put = text(
                    "UPDATE tasks SET status = 'started', agent_id = :agent, usage = :usage, "
                    "usage_history = :history WHERE id = :id"
                )
                for task_id, history in ((full, HISTORY), (empty, [])):
                    usage = json.dumps(HISTORY[-1])
                    conn.execute(put, {"id": task_id, "agent": agent_id, "usage": usage,
                                       "history": json.dumps(history)})  # fmt: skip

            command.upgrade(cfg, "head")
            assert "usage_history" not in {c["name"] for c in inspect(engine).get_columns("tasks")}
            with engine.connect() as conn:
                counts = dict(conn.execute(text("SELECT id, usage_points FROM tasks")).all())
                seqs = conn.execute(
                    text("SELECT seq FROM task_usage WHERE task_id = :t ORDER BY seq"), {"t": full}
                ).scalars()
                assert list(seqs) == [0]  # one chunk of the 3 points
            assert (counts[full], counts[empty], counts[none]) == (3, 0, 0)
        finally:
            engine.dispose()

        server.start()
        try:
            admin = Client(server.url, server.admin_token)
            got = admin.ok("GET", f"/tasks/{full}")
            assert _same(got["usage_history"], HISTORY), got["usage_history"]
            assert admin.ok("GET", f"/tasks/{empty}")["usage_history"] == []
            assert admin.ok("GET", f"/tasks/{none}")["usage_history"] == []
            # the agent's next figures go after the copied ones; older ones are dropped
            agent = Client(server.url, token)
            later = {**HISTORY[0], "sampled_at": "2026-12-01T10:00:15+00:00", "memory_mb": 99.0}
            usage = [{"task_id": full, "samples": [HISTORY[0], later]}]
            poll = {"free_slots": 0, "timeout_s": 0, "running": [full, empty], "usage": usage}
            agent.ok("POST", f"/agents/{agent_id}/poll", json=poll)
            got = admin.ok("GET", f"/tasks/{full}")
            assert _same(got["usage_history"], [*HISTORY, later]), got["usage_history"]
            assert got["usage"]["memory_mb"] == 99.0
        finally:
            server.stop()

        engine = create_engine(url)
        try:
            command.downgrade(alembic_config(engine), "0014")  # and back: the JSON as it was
            with engine.connect() as conn:
                rows = dict(conn.execute(text("SELECT id, usage_history FROM tasks")).all())
            back = {k: json.loads(v) if isinstance(v, str) else v for k, v in rows.items()}
            assert _same(back[full], [*HISTORY, later]), back[full]
            assert back[empty] is None and back[none] is None
            command.upgrade(alembic_config(engine), "head")
        finally:
            engine.dispose()
