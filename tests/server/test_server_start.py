"""A server that cannot start says why in one line: driver, connection, schema; and ``up`` passes
that on instead of blaming the server's address."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command

from appyard.server.db.migrate import alembic_config
from tests.support import ServerProc, free_port, pg_available, pg_database

CANNOT_START = 3  # appyard.server.main.EXIT_CANNOT_START


def _server(home: Path, url: str, *prelude: str) -> subprocess.CompletedProcess[str]:
    code = "; ".join([*prelude, "from appyard.server.main import main", "main(['--port', '0'])"])
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "APPYARD_HOME": str(home), "APPYARD_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _said(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == CANNOT_START, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("appyard server: ")]
    assert len(lines) == 1, out.stderr  # one line, no traceback
    assert "Traceback" not in out.stderr
    return lines[0]


def test_a_missing_postgres_driver_names_the_extra(tmp_path: Path) -> None:
    # the driver's absence, at its seam: importing psycopg fails as in an install without it
    out = _server(
        tmp_path,
        "postgresql://postgres@127.0.0.1:5432/x",
        "import sys",
        "sys.modules['psycopg'] = None",
    )
    said = _said(out)
    assert "driver 'psycopg'" in said and "pip install 'appyard[postgres]'" in said


def test_an_unreachable_database_is_said_so(tmp_path: Path) -> None:
    said = _said(_server(tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/appyard"))
    assert "cannot connect to the database postgresql+psycopg://postgres@127.0.0.1:" in said
    assert "Connection refused" in said


def test_an_unsupported_or_unreadable_url(tmp_path: Path) -> None:
    assert "runs on SQLite or PostgreSQL" in _said(_server(tmp_path, "mysql://a@localhost/b"))
    assert "cannot be read" in _said(_server(tmp_path, "not a url"))


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    command.upgrade(alembic_config(url=url), "0002")
    with sqlite3.connect(db) as conn:  # what 0003 creates, already there: it cannot run
        conn.execute("CREATE INDEX ix_tasks_team_updated ON tasks (id)")
    said = _said(_server(tmp_path, url))
    assert "migrating the database sqlite:///" in said
    assert "from schema revision 0002 failed" in said and "already exists" in said
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002",)]


def test_a_database_of_a_newer_appyard(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    said = _said(_server(tmp_path, f"sqlite:///{db}"))
    assert "schema revision '9999'" in said and "newer version" in said


@pytest.mark.skipif(not pg_available(), reason="needs the PostgreSQL server")
def test_plain_postgresql_urls_use_the_installed_driver(tmp_path: Path) -> None:
    """``postgresql://`` means psycopg 3 whatever SQLAlchemy 2.x would pick by itself."""
    with pg_database() as url:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        server = ServerProc(tmp_path, database_url=plain).start()
        server.stop()


def test_up_reports_the_servers_own_start_failure(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "appyard.cli", "up", "--port", str(free_port())],
        env={
            **os.environ,
            "APPYARD_HOME": str(tmp_path / "home"),
            "APPYARD_ENV_FILE": str(tmp_path / "appyard.env"),
            "APPYARD_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/appyard",
            "COLUMNS": "300",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    said = " ".join(out.stderr.split())
    assert f"the server exited with code {CANNOT_START} while starting" in said
    assert "cannot connect to the database" in said
    assert "SERVER_ADDRESS" not in out.stdout + out.stderr
