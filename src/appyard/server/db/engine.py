"""Engine and sessions; SQLite gets WAL and a busy timeout so threads can share the file.

A write that waits on a lock held elsewhere waits at most ``lock_timeout_s``: SQLite's write
lock held by another process (its busy timeout), a PostgreSQL row or table lock (the session's
``lock_timeout``). Past it the database raises, and the server answers 503 ``busy`` with
``Retry-After`` (``guard.classify``), nothing written, instead of holding the request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: how long a write waits for a lock held elsewhere, unless told otherwise
LOCK_TIMEOUT_S = 30.0


def make_engine(url: str, readonly: bool = False, lock_timeout_s: float = LOCK_TIMEOUT_S) -> Engine:
    """An engine; on SQLite a writer's transactions take the write lock at BEGIN, a reader's
    (``readonly``) are deferred and refuse writes, so reads never wait behind the writer."""
    lock_ms = max(1, round(lock_timeout_s * 1000))
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_ms / 1000},
            pool_size=20,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={lock_ms}")
            if readonly:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN so
        # a read-then-write transaction cannot deadlock against another writer.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    # every statement of the server's connections: a lock wait past it is an error (55P03)
    return create_engine(
        url,
        pool_size=20,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"options": f"-c lock_timeout={lock_ms}"},
    )


class Database:
    """The engine plus a session factory; one per server process."""

    def __init__(
        self,
        url: str,
        notifier: object | None = None,
        info: dict[str, object] | None = None,
        *,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.engine = make_engine(url, lock_timeout_s=lock_timeout_s)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        # on SQLite, readers get their own engine (deferred BEGIN, query_only); elsewhere the same
        self.read_engine = (
            self.engine
            if self.is_postgres
            else make_engine(url, readonly=True, lock_timeout_s=lock_timeout_s)
        )
        # the notifier publishes the keys a session recorded once it commits (notifier.emit)
        self._sessions = sessionmaker(
            self.engine,
            expire_on_commit=False,
            # ``info``: settings the services read from their session (the log's ceiling)
            info={**(info or {}), "notifier": notifier, "postgres": self.is_postgres},
        )
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue here for it: one that
        # finds the file's lock taken would sleep in SQLite's busy handler (1, 2, 5, 10, ...
        # 100 ms) and miss the moment it is free; a queue hands it over at once. Other
        # processes on the same file still wait in the busy handler.
        self._writer: contextlib.AbstractContextManager[object] = (
            contextlib.nullcontext() if self.is_postgres else threading.RLock()
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self._writer, self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only unit of work (it may not write: SQLite refuses, by ``query_only``)."""
        with self._readers() as s:
            try:
                yield s
            finally:
                s.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
