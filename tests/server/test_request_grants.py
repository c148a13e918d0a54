"""The grants of requests into sessions (``server/request_grants.py``) with a real notifier:
a key fired ends a grant, even one fired while its check ran; the oldest go when full; a
refusal is never kept; a grant lives ``ttl_s`` at most."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from appyard.errors import PermissionDeniedError
from appyard.server import keys
from appyard.server.notifier import Notifier
from appyard.server.request_grants import RequestGrants


def _run(body: Callable[[Notifier], Awaitable[None]]) -> None:
    async def main() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        await body(notifier)

    asyncio.run(main())


async def _agent(agent_id: int) -> int:
    return agent_id


def test_a_key_ends_a_grant() -> None:
    async def body(notifier: Notifier) -> None:
        grants = RequestGrants(notifier)
        assert grants.agent_of("h", 7) is None
        assert await grants.check("h", 7, lambda: _agent(3)) == 3
        assert grants.agent_of("h", 7) == 3 and grants.agent_of("h2", 7) is None
        notifier.publish([keys.task(8)])  # another task's change: kept
        assert grants.agent_of("h", 7) == 3
        notifier.publish([keys.task(7)])
        assert grants.agent_of("h", 7) is None and len(grants) == 0
        await grants.check("h", 7, lambda: _agent(3))
        notifier.publish([keys.credential("h")])
        assert grants.agent_of("h", 7) is None

    _run(body)


def test_a_change_while_the_check_reads_is_not_missed() -> None:
    async def body(notifier: Notifier) -> None:
        grants = RequestGrants(notifier)

        async def look() -> int:
            notifier.publish([keys.credential("h")])  # committed while the check reads
            return 3

        assert await grants.check("h", 7, look) == 3
        assert grants.agent_of("h", 7) is None

    _run(body)


def test_refusals_are_not_kept_and_the_oldest_go_when_full() -> None:
    async def body(notifier: Notifier) -> None:
        grants = RequestGrants(notifier, size=2)

        async def refuse() -> int:
            raise PermissionDeniedError("no")

        with pytest.raises(PermissionDeniedError):
            await grants.check("h", 1, refuse)
        assert len(grants) == 0 and not notifier._subs
        for task_id in (1, 2, 3):
            await grants.check("h", task_id, lambda: _agent(9))
        assert len(grants) == 2 and grants.agent_of("h", 1) is None
        assert grants.agent_of("h", 3) == 9
        grants.clear()
        assert not notifier._subs  # nothing left following keys

    _run(body)


def test_a_grant_lives_ttl_at_most() -> None:
    async def body(notifier: Notifier) -> None:
        grants = RequestGrants(notifier, ttl_s=0.0)
        await grants.check("h", 1, lambda: _agent(9))
        await asyncio.sleep(0.01)
        assert grants.agent_of("h", 1) is None

    _run(body)
