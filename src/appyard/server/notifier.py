"""Wakes waiters (agent polls, task waits, log streams) the moment something changes.

Services run in worker threads and record *keys* (``task:42``, ``agent:7``, ``team:3``) on
the database session; after the commit those keys are published here, and every waiter
subscribed to one of them wakes and re-reads the database. A waiter always subscribes
*before* it reads, so a change between its read and its wait cannot be missed.

With PostgreSQL the same keys also go out as ``NOTIFY appyard`` inside the transaction
(delivered on commit), and a listener thread feeds what other replicas publish into this
process; a key may then arrive twice, which is harmless: a wake only means "look again".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable

from sqlalchemy import event, text
from sqlalchemy.orm import Session

log = logging.getLogger("appyard.server.notifier")
CHANNEL = "appyard"


class Subscription:
    """A waiter's interest in some keys; ``wait`` returns True once any of them fired."""

    def __init__(self, hub: Notifier, keys: Iterable[str]) -> None:
        self._hub = hub
        self.keys = tuple(keys)
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()

    @property
    def closing(self) -> bool:
        return self._hub.closing

    async def wait(self, timeout: float) -> bool:
        if timeout <= 0:
            return self._event.is_set()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def clear(self) -> None:
        self._event.clear()

    def __enter__(self) -> Subscription:
        self._hub._add(self)
        if self._hub.closing:
            self._event.set()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hub._remove(self)


class Notifier:
    """In-process fan-out of keys to asyncio waiters; thread-safe ``publish``."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: set when the server shuts down: every waiter answers now instead of holding on
        self.closing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, *keys: str) -> Subscription:
        return Subscription(self, keys)

    def _add(self, sub: Subscription) -> None:
        for key in sub.keys:
            self._subs.setdefault(key, set()).add(sub)

    def _remove(self, sub: Subscription) -> None:
        for key in sub.keys:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[key]

    def _fire(self, keys: Iterable[str]) -> None:
        for key in keys:
            for sub in tuple(self._subs.get(key, ())):
                sub.fire()

    def close(self) -> None:
        """Wake every waiter for good (server shutdown); callable from any thread."""
        self.closing = True
        if self._loop is None or self._loop.is_closed():
            return

        def fire_all() -> None:
            for subs in list(self._subs.values()):
                for sub in tuple(subs):
                    sub.fire()

        self._loop.call_soon_threadsafe(fire_all)

    def publish(self, keys: Iterable[str]) -> None:
        """Wake the waiters of ``keys``; callable from any thread."""
        keys = tuple(keys)
        if not keys or self._loop is None or self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire(keys)
        else:
            self._loop.call_soon_threadsafe(self._fire, keys)


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    keys = session.info.pop("notify", None)
    hub = session.info.get("notifier")
    if keys and isinstance(hub, Notifier):
        hub.publish(keys)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("notify", None)


def emit(session: Session, *keys: str) -> None:
    """Record keys to publish when ``session`` commits (nothing is published on rollback)."""
    pending: set[str] = session.info.setdefault("notify", set())
    pending.update(keys)
    if session.info.get("postgres"):
        for key in keys:
            session.execute(text("SELECT pg_notify(:c, :k)"), {"c": CHANNEL, "k": key})


class PostgresListener:
    """A thread that LISTENs on PostgreSQL and feeds other replicas' keys to the notifier."""

    def __init__(self, dsn: str, notifier: Notifier) -> None:
        self._dsn = dsn
        self._notifier = notifier
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._notifier.publish([note.payload])
            except Exception as exc:  # reconnect: a database restart must not end listening
                log.warning("PostgreSQL LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
