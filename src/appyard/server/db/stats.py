"""Planner statistics on SQLite: ANALYZE a table when it was never analyzed or its size changed
tenfold since (PostgreSQL's autovacuum does the same there by itself).

This is the rule of SQLite's ``PRAGMA optimize``, applied here because before SQLite 3.46 that
pragma only looks at the tables the connection itself has queried, which on a fresh connection
is none. The server runs it at start-up and then every ``STATS_INTERVAL_S``.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

#: ANALYZE reads about this many rows of each index: approximate statistics, in a fraction of a
#: second at any size (a full ANALYZE of a million tasks holds the write lock for seconds)
ANALYSIS_LIMIT = 1000
#: smaller tables are left to the planner's defaults
MIN_ROWS = 1000
#: a table is analyzed again once its row count grew or shrank this many times
CHANGE_FACTOR = 10
STATS_INTERVAL_S = 3600.0


def _analyzed_rows(conn: Connection) -> dict[str, int]:
    """The row count each table had when it was last analyzed (``sqlite_stat1``)."""
    has_stats = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
    ).first()
    if has_stats is None:
        return {}
    rows: dict[str, int] = {}
    for table, stat in conn.exec_driver_sql("SELECT tbl, stat FROM sqlite_stat1"):
        first = str(stat or "").split(" ", 1)[0]
        if first.isdigit():
            rows[table] = max(rows.get(table, 0), int(first))
    return rows


def stale_tables(conn: Connection) -> list[str]:
    """Tables of at least ``MIN_ROWS`` rows never analyzed (or analyzed when smaller than
    that), or whose row count changed by ``CHANGE_FACTOR`` or more since."""
    then = _analyzed_rows(conn)
    names = [
        name
        for (name,) in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    stale = []
    for name in names:
        # the largest rowid: read from the end of the table at any size (a count would read
        # it all); deletions make it an overestimate, which only delays a re-analysis
        now = int(conn.exec_driver_sql(f"SELECT max(rowid) FROM {_quoted(name)}").scalar() or 0)
        before = then.get(name, 0)
        if before < MIN_ROWS:
            if now >= MIN_ROWS:
                stale.append(name)
        elif now >= before * CHANGE_FACTOR or now * CHANGE_FACTOR <= before:
            stale.append(name)
    return stale


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def refresh_statistics(engine: Engine) -> list[str]:
    """On SQLite, ANALYZE (approximately) the tables that need it; returns their names.

    A connection reads the statistics when it opens, so a caller that analyzed something
    should let its pooled connections reopen (``Engine.dispose``). Elsewhere: nothing.
    """
    if engine.dialect.name != "sqlite":
        return []
    with engine.begin() as conn:
        stale = stale_tables(conn)
        if stale:
            conn.exec_driver_sql(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
        for name in stale:
            conn.exec_driver_sql(f"ANALYZE {_quoted(name)}")
    return stale
