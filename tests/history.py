"""A long history of ended sessions, written straight into the database (SQLite or PostgreSQL).

Starting a million sessions through the API would take hours; the plan tests and the scale
benchmark only need the rows. Each ended row is a copy of a template task (one of the team's
own, made through the API, so every column is what the server writes) with the status, agent
and times of an ended session: 90% ``finished``, 7% ``error``, 3% ``stopped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, bindparam, text

from appyard.server.db.models import UTCDateTime

#: columns copied from the template as they are
_COPIED = (
    "team_id",
    "workspace_id",
    "user_id",
    "module_id",
    "app_id",
    "release_id",
    "version",
    "name",
    "description",
    "params",
    "log_level",
    "outputs",
)


@dataclass(frozen=True)
class Share:
    """``rows`` ended copies of task ``template``, run by the agents ``agents`` in turn
    (``None``: by none, as a session stopped before any agent took it)."""

    template: int
    rows: int
    agents: tuple[int | None, ...]


def _status_of(x: str) -> str:
    return (
        f"CASE WHEN {x} % 100 < 90 THEN 'finished' "
        f"WHEN {x} % 100 < 97 THEN 'error' ELSE 'stopped' END"
    )


def _agent_of(x: str, agents: tuple[int | None, ...]) -> str:
    def sql(agent: int | None) -> str:
        return "NULL" if agent is None else str(int(agent))

    if len(agents) == 1:
        return sql(agents[0])
    arms = " ".join(f"WHEN {i} THEN {sql(a)}" for i, a in enumerate(agents))
    return f"CASE {x} % {len(agents)} {arms} END"


def seed_ended(engine: Engine, shares: list[Share], at: datetime | None = None) -> int:
    """Insert the ended rows of ``shares`` in one statement each (a recursive CTE on SQLite,
    ``generate_series`` on PostgreSQL); returns how many were written."""
    at = at or datetime.now(UTC) - timedelta(days=1)
    postgres = engine.dialect.name == "postgresql"
    written = 0
    for share in shares:
        if share.rows <= 0:
            continue
        numbers = (
            "generate_series(1, :n) AS c(x)"
            if postgres
            else "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
            "SELECT x FROM c) AS c"
        )
        status = _status_of("c.x")
        columns = ", ".join(_COPIED)
        copied = ", ".join(f"t.{col}" for col in _COPIED)
        sql = (
            f"INSERT INTO tasks ({columns}, requested_agent_id, agent_id, status, attempt, "
            "exit_code, error, stop_delivered, log_offset, log_count, created_at, consumed_at, "
            "started_at, ended_at, updated_at) "
            f"SELECT {copied}, NULL, {_agent_of('c.x', share.agents)}, {status}, 1, "
            f"CASE {status} WHEN 'finished' THEN 0 WHEN 'error' THEN 1 ELSE -15 END, "
            f"CASE {status} WHEN 'error' THEN 'the app exited with code 1' ELSE NULL END, "
            ":delivered, 0, 0, :at, :at, :at, :at, :at "
            f"FROM tasks AS t, {numbers} WHERE t.id = :template"
        )
        stmt = text(sql).bindparams(
            bindparam("at", type_=UTCDateTime),
            bindparam("delivered", True),
        )
        with engine.begin() as conn:
            result = conn.execute(stmt, {"n": share.rows, "template": share.template, "at": at})
            written += result.rowcount
    return written
