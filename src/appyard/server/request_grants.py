"""Who was let through to which session, remembered until something that could change the
answer happens: the hot path of requests into a session (``routes/requests.py``).

A script that drives a serving app sends it thousands of requests with one token. Checking
each one against the database (the token, the caller's role in the task's team, the task
running and ready, its agent) costs two queries and a hop to a worker thread: half the
server's CPU per request. So the first request of a (token, task) pair is checked as every
request is, and its answer, the agent to forward to, is kept as a *grant*, which ends:

- when the token's credential key fires (``keys.credential``: the token revoked, its user
  disabled, removed from a team, its role changed) or the task's (``keys.task``: its status
  or its readiness changed, it stopped); the keys are followed from before the check is read,
  so a change committed while it runs is not missed (``notifier``: with PostgreSQL, keys from
  other replicas arrive by ``LISTEN``);
- after ``ttl_s`` at the latest, however quiet the keys were (a key lost while a replica's
  listener reconnects must not keep a grant forever);
- when the cache is full: the oldest goes first.

Only grants are kept: a refusal is checked again on every request (it is the rare case, and a
cached refusal would outlive the fix for it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from appyard.server import keys
from appyard.server.notifier import Notifier, Subscription

#: grants kept at once (each follows two keys: about 1 KiB with its subscription)
MAX_GRANTS = 4096
#: the longest a grant lives without being checked again
GRANT_TTL_S = 10.0


@dataclass(slots=True)
class _Grant:
    agent_id: int
    until: float
    watch: Subscription


class RequestGrants:
    """The (token hash, task) pairs let through, and the agent each goes to. Event loop only."""

    def __init__(
        self, notifier: Notifier, *, size: int = MAX_GRANTS, ttl_s: float = GRANT_TTL_S
    ) -> None:
        self._notifier = notifier
        self._size = size
        self._ttl_s = ttl_s
        self._grants: dict[tuple[str, int], _Grant] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def agent_of(self, token_hash: str, task_id: int) -> int | None:
        """The agent a request of this token into ``task_id`` goes to, if it was let through
        and nothing changed since; None: check it (``check``)."""
        grant = self._grants.get((token_hash, task_id))
        if grant is None:
            return None
        if grant.watch.take() or time.monotonic() > grant.until:
            self._drop((token_hash, task_id))
            return None
        return grant.agent_id

    async def check(self, token_hash: str, task_id: int, look: Callable[[], Awaitable[int]]) -> int:
        """``look()`` (the full check, which raises a refusal), its agent kept as a grant."""
        watch = self._notifier.subscribe(keys.credential(token_hash), keys.task(task_id))
        watch.__enter__()  # before the look reads: a change while it runs ends the grant
        try:
            agent_id = await look()
        except BaseException:
            watch.__exit__(None, None, None)
            raise
        key = (token_hash, task_id)
        self._drop(key)
        while len(self._grants) >= self._size:
            self._drop(next(iter(self._grants)))
        self._grants[key] = _Grant(agent_id, time.monotonic() + self._ttl_s, watch)
        return agent_id

    def _drop(self, key: tuple[str, int]) -> None:
        grant = self._grants.pop(key, None)
        if grant is not None:
            grant.watch.__exit__(None, None, None)

    def clear(self) -> None:
        for key in list(self._grants):
            self._drop(key)
