"""``supervisely.api.agent_api``: agents as the reference's ``AgentInfo`` tuples.

Statuses are the reference's words: ``running`` for an online agent, ``waiting`` for an
offline one (``AgentApi.Status``); our fields (slots, running tasks, hostname) follow.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from appyard.compat._errors import NotSupportedError
from appyard.compat._records import AgentInfo, agent_info, apply_filters, single
from appyard.compat._utils import generate_free_name
from appyard.compat.api._module import ModuleBase
from appyard.errors import AppyardError, NotFoundError

if TYPE_CHECKING:
    from appyard.compat.api.api import Api

__all__ = ["AgentApi", "AgentInfo", "AgentNotFound", "AgentNotRunning"]


class AgentNotFound(NotFoundError):
    """The agent is in none of the caller's teams."""


class AgentNotRunning(AppyardError):
    """The agent is not running (offline)."""


class AgentApi(ModuleBase):
    _info = AgentInfo

    class Status(Enum):
        WAITING = "waiting"
        RUNNING = "running"

    def __init__(self, api: Api) -> None:
        self._api = api
        self._ay = api._ay

    def get_list(
        self,
        team_id: int,
        filters: list[dict[str, Any]] | None = None,
        with_gpu_info: bool = False,
    ) -> list[AgentInfo]:
        return apply_filters([agent_info(a) for a in self._ay.agent.get_list(team_id)], filters)

    def get_list_available(
        self,
        team_id: int,
        show_public: bool = False,
        show_only_running: bool = True,
        has_gpu: bool = False,
        type: str | None = None,
        plugin_version_id: int | None = None,
        version: str | None = None,
        envs: list[dict[str, Any]] | None = None,
        min_nvidia_driver_version: str | None = None,
    ) -> list[AgentInfo]:
        """The team's agents that can take a session: running ones (all with
        ``show_only_running=False``), of ``version`` when given, with at least one GPU with
        ``has_gpu=True`` (as each agent last reported its machine). Agents do not report
        their NVIDIA driver: ``min_nvidia_driver_version`` raises ``NotSupportedError``, as do
        ``plugin_version_id`` and ``envs``."""
        if min_nvidia_driver_version is not None:
            raise NotSupportedError(
                "min_nvidia_driver_version is not supported: appyard agents report their GPUs "
                "(has_gpu=True works) but not their driver version; pick the agent by name or "
                "id, or ask for GPUs in the app's resources (docs/apps.md)."
            )
        if plugin_version_id is not None or envs is not None:
            raise NotSupportedError(
                "plugin_version_id/envs are not supported: every appyard agent runs any "
                "published app."
            )
        agents = self.get_list(team_id)
        if show_only_running:
            agents = [a for a in agents if a.status == self.Status.RUNNING.value]
        if version is not None:
            agents = [a for a in agents if a.version == version]
        if has_gpu:
            agents = [a for a in agents if a.gpus]
        return agents

    def get_info_by_id(self, id: int) -> AgentInfo | None:
        """``GET /agents/{id}``: ``None`` when there is none, or it is in none of your teams."""
        try:
            return agent_info(self._ay.agent.get_info_by_id(id))
        except NotFoundError as exc:
            if exc.field != "agent_id":
                raise
            return None

    def get_info_by_name(self, parent_id: int, name: str) -> AgentInfo | None:
        return single(self.get_list(parent_id, [{"field": "name", "operator": "=", "value": name}]))

    def exists(self, parent_id: int, name: str) -> bool:
        return self.get_info_by_name(parent_id, name) is not None

    def get_free_name(self, parent_id: int, name: str) -> str:
        return generate_free_name({a.name for a in self.get_list(parent_id)}, name)

    def get_status(self, id: int) -> AgentApi.Status:
        info = self.get_info_by_id(id)
        if info is None:
            raise AgentNotFound(f"Agent {id} not found in your teams")
        return self.Status(info.status)

    def raise_for_status(self, status: Any) -> None:
        pass
