"""Wakes waiters (agent polls, task waits, log streams) the moment something changes.

Services run in worker threads and record *keys* (``task:42``, ``agent:7``, ``team:3``, each
built by ``keys.py``) on the database session; after the commit those keys are published here,
and every waiter subscribed to one of them wakes and re-reads the database. A waiter always
subscribes *before* it reads (``routes/follow.py``), so a change between its read and its wait
cannot be missed.

A key that starts with ``queue:`` (``keys.queue``: a task any agent of a team may take) wakes
ONE waiter, the one that has waited longest, not all of them: with 100 agents polling, one
start would otherwise make 100 polls look at the database at once. The woken poll takes what it
can, and passes the wake on (``pass_on``) to the next waiter of the same *wave* while work is
left that it could not take; a wave ends when every waiter has had it once.

With PostgreSQL the same keys also go out as ``NOTIFY appyard``, all of a transaction's in one
statement just before its commit (delivered on commit), and a listener thread feeds what other replicas publish into this
process; a key may then arrive twice, which is harmless: a wake only means "look again".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from appyard.server.keys import QUEUE, Key, also_wakes

log = logging.getLogger("appyard.server.notifier")
CHANNEL = "appyard"
ONE_AT_A_TIME = QUEUE


class Wave:
    """One ``queue:`` wake travelling from waiter to waiter; each gets it at most once."""

    def __init__(self) -> None:
        # the subscriptions themselves (not their id(): a freed one's id can come back)
        self.tried: set[Subscription] = set()


class Subscription:
    """A waiter's interest in some keys; ``wait`` returns True once any of them fired."""

    def __init__(self, hub: Notifier, keys: Iterable[Key]) -> None:
        self._hub = hub
        self.keys = tuple(keys)
        self._event = asyncio.Event()
        self._fired: set[str] = set()
        self._waves: dict[str, Wave] = {}
        #: the waves of the last ``take``: hand them on with ``pass_on`` if work is left
        self.waves: dict[str, Wave] = {}

    def fire(self, key: str = "", wave: Wave | None = None) -> None:
        self._fired.add(key)
        if wave is not None:
            self._waves[key] = wave
        self._event.set()

    def take(self) -> set[str]:
        """The keys fired since the last take, and clear (call it before reading again)."""
        fired, self._fired = self._fired, set()
        self.waves, self._waves = self._waves, {}
        self._event.clear()
        return fired

    def pass_on(self, key: Key) -> None:
        """Hand the wave of ``key`` taken last to the next waiter that has not had it."""
        wave = self.waves.pop(key, None)
        if wave is not None:
            self._hub._fire_one(key, wave)

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
        self.take()

    def __enter__(self) -> Subscription:
        self._hub._add(self)
        if self._hub.closing:
            self.fire("closing")
        return self

    def __exit__(self, *exc: object) -> None:
        self._hub._remove(self)
        # a wave it was handed but did not look at goes on to the next waiter
        for key, wave in {**self.waves, **self._waves}.items():
            self._hub._fire_one(key, wave)


class Notifier:
    """In-process fan-out of keys to asyncio waiters; thread-safe ``publish``."""

    def __init__(self) -> None:
        # insertion-ordered: the first waiter of a key is the one that has waited longest
        self._subs: dict[str, dict[Subscription, None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: set when the server shuts down: every waiter answers now instead of holding on
        self.closing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, *keys: Key) -> Subscription:
        return Subscription(self, keys)

    def _add(self, sub: Subscription) -> None:
        for key in sub.keys:
            self._subs.setdefault(key, {})[sub] = None

    def _remove(self, sub: Subscription) -> None:
        for key in sub.keys:
            subs = self._subs.get(key)
            if subs is not None:
                subs.pop(sub, None)
                if not subs:
                    del self._subs[key]

    def _fire(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key.startswith(ONE_AT_A_TIME):
                self._fire_one(key, Wave())
                continue
            for sub in tuple(self._subs.get(key, ())):
                sub.fire(key)
            also = also_wakes(key)
            if also is not None:  # (handed the key itself: it says which)
                for sub in tuple(self._subs.get(also, ())):
                    sub.fire(key)

    def _fire_one(self, key: str, wave: Wave) -> None:
        """Wake the longest-waiting waiter of ``key`` that this wave has not woken yet."""
        subs = self._subs.get(key)
        if not subs:
            return
        for sub in tuple(subs):
            if sub not in wave.tried:
                wave.tried.add(sub)
                del subs[sub]  # to the back of the line
                subs[sub] = None
                sub.fire(key, wave)
                return

    def close(self) -> None:
        """Wake every waiter for good (server shutdown); callable from any thread."""
        self.closing = True
        if self._loop is None or self._loop.is_closed():
            return

        def fire_all() -> None:
            for subs in list(self._subs.values()):
                for sub in tuple(subs):
                    sub.fire("closing")

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
    if session.in_nested_transaction():
        return  # a savepoint released: its keys go out with the transaction's commit
    keys = session.info.pop("notify", None)
    hub = session.info.get("notifier")
    if keys and isinstance(hub, Notifier):
        hub.publish(keys)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint rolled back: the transaction's keys stand (a wake only says look)
    session.info.pop("notify", None)


def emit(session: Session, *keys: Key) -> None:
    """Record keys to publish when ``session`` commits (nothing is published on rollback)."""
    pending: set[str] = session.info.setdefault("notify", set())
    pending.update(keys)


#: every key a transaction recorded, in one statement just before its commit (one NOTIFY per
#: key, delivered on commit): a poll that stores 100 sessions' figures made 100 round trips
_NOTIFY = text("SELECT pg_notify(:c, k) FROM unnest(CAST(:keys AS text[])) AS k")


@event.listens_for(Session, "before_commit")
def _notify_before_commit(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.get("postgres"):
        return  # a savepoint's keys go out with the transaction's commit
    keys = session.info.get("notify")
    if keys:
        session.execute(_NOTIFY, {"c": CHANNEL, "keys": sorted(keys)})


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
