"""The appyard agent: runs tasks (app sessions) on one machine for the server.

Entry points: ``main(argv)`` (the ``python -m appyard.agent`` command line) and
``run_agent(AgentConfig(...), stop_event)``. They load lazily: the per-task supervisor
(``appyard.agent.supervisor``) lives in this package and must start without httpx/pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appyard.agent.command import main
    from appyard.agent.loop import Agent, AgentConfig, run_agent

__all__ = ["Agent", "AgentConfig", "main", "run_agent"]


def __getattr__(name: str) -> Any:
    if name in ("Agent", "AgentConfig", "run_agent"):
        from appyard.agent import loop

        return getattr(loop, name)
    if name == "main":
        from appyard.agent.command import main

        return main
    raise AttributeError(f"module 'appyard.agent' has no attribute {name!r}")
