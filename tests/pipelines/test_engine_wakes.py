"""The pipeline engine's wake names the run whose task ended: the engine follows the bare
``keys.pipelines_due()`` and is handed ``keys.pipelines_due(run_id)`` itself, so it advances
that run without looking for it. On the real notifier, in one event loop."""

from __future__ import annotations

import asyncio

from appyard.server import keys
from appyard.server.notifier import Notifier


def test_a_runs_wake_reaches_the_engine_with_the_run_it_names() -> None:
    async def main() -> None:
        hub = Notifier()
        hub.bind(asyncio.get_running_loop())
        with (
            hub.subscribe(keys.pipelines_due()) as engine,
            hub.subscribe(keys.pipeline_run(7)) as run_waiter,
        ):
            hub.publish([keys.pipelines_due(7), keys.pipelines_due(9)])
            assert await engine.wait(5)
            fired = engine.take()
            assert {keys.due_run(k) for k in fired} == {7, 9}
            assert keys.pipelines_due() not in fired  # (the bare key: look at every run)
            assert not run_waiter.take(), "a run's waiters follow its own key, not the engine's"

            hub.publish([keys.pipelines_due()])
            assert await engine.wait(5)
            fired = engine.take()
            assert fired == {keys.pipelines_due()}
            assert keys.due_run(next(iter(fired))) is None

    asyncio.run(main())


def test_only_the_engines_keys_name_a_run() -> None:
    assert keys.due_run(keys.pipelines_due(42)) == 42
    assert keys.due_run(keys.pipelines_due()) is None
    for other in (keys.pipeline_run(42), keys.task(42), keys.queue(42), keys.agent(42)):
        assert keys.due_run(other) is None
        assert keys.also_wakes(other) is None
    assert keys.also_wakes(keys.pipelines_due(42)) == keys.pipelines_due()
    assert keys.also_wakes(keys.pipelines_due()) is None
