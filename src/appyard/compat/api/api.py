"""``supervisely.api.api.Api`` over appyard's ``Api``.

``Api()`` / ``Api(server_address, token)`` / ``Api.from_env()``. ``api.task``, ``api.app``,
``api.team``, ``api.workspace``, ``api.user`` and ``api.agent`` speak the reference's calls
and shapes; ``api.file`` is appyard's with the reference's ``get_info_by_id``; every other
resource (``project``, ``dataset``, ``image``, ``annotation``, ``module``, ``pipeline``) is
appyard's own, reached through the same object.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from appyard.compat._records import Names, TaskInfo, task_record
from appyard.errors import ApiError
from appyard.schemas.tasks import TaskInfo as OurTask
from appyard.sdk.api import Api as OurApi
from appyard.sdk.api import default_env_file

_REFERENCE_ENV_FILE = "~/supervisely.env"


class Api:
    """A client of one appyard server with the reference SDK's surface."""

    def __init__(
        self,
        server_address: str | None = None,
        token: str | None = None,
        retry_count: int | None = 10,
        retry_sleep_sec: float | None = None,
        external_logger: Any = None,
        ignore_task_id: bool = False,
        api_server_address: str | None = None,
        check_instance_version: bool | str = False,
    ) -> None:
        """``retry_count`` is passed on; ``retry_sleep_sec``, ``external_logger``,
        ``ignore_task_id``, ``api_server_address`` and ``check_instance_version`` are
        accepted and have no effect (appyard retries with capped backoff, has one address)."""
        self._ay = OurApi(server_address, token, retry_count=retry_count or 1)
        from appyard.compat.api.agent_api import AgentApi
        from appyard.compat.api.app_api import AppApi
        from appyard.compat.api.file_api import FileApi
        from appyard.compat.api.task_api import TaskApi
        from appyard.compat.api.team_api import TeamApi
        from appyard.compat.api.user_api import UserApi
        from appyard.compat.api.workspace_api import WorkspaceApi

        self.task = TaskApi(self)
        self.app = AppApi(self)
        self.team = TeamApi(self)
        self.workspace = WorkspaceApi(self)
        self.user = UserApi(self)
        self.agent = AgentApi(self)
        self.file = FileApi(self)
        self._modules: dict[int, tuple[str, str] | None] = {}
        self._agent_names: dict[int, dict[int, str]] = {}
        self._logins: dict[int, dict[int, str]] = {}
        self._workspace_team: dict[int, int] = {}

    @classmethod
    def from_env(
        cls,
        retry_count: int = 10,
        ignore_task_id: bool = False,
        env_file: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Api:
        """``SERVER_ADDRESS`` / ``API_TOKEN`` from the environment; when not set, from
        ``env_file``, else ``~/supervisely.env`` if it exists, else appyard's env file
        (``$APPYARD_ENV_FILE`` or ``~/appyard.env``, which ``appyard up`` writes)."""
        if not (os.environ.get("SERVER_ADDRESS") and os.environ.get("API_TOKEN")):
            if env_file is None:
                reference = Path(_REFERENCE_ENV_FILE).expanduser()
                env_file = reference if reference.is_file() else default_env_file()
            OurApi.from_env(env_file=env_file).close()  # loads the file (set ones win)
        return cls(retry_count=retry_count, ignore_task_id=ignore_task_id, **kwargs)

    # -- appyard's own resources and properties -------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ay, name)

    @property
    def server_address(self) -> str:
        return self._ay.server_address

    @property
    def token(self) -> str | None:
        return self._ay.token

    @property
    def appyard(self) -> OurApi:
        """The appyard client underneath (``import appyard``'s ``Api``)."""
        return self._ay

    def close(self) -> None:
        self._ay.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Api(server_address={self.server_address!r})"

    # -- lookups the reference's shapes need ----------------------------------------------------

    def _module_name(self, module_id: int) -> tuple[str, str] | None:
        if module_id not in self._modules:
            try:
                info = self._ay.module.get(module_id)
                self._modules[module_id] = (info.name, info.slug)
            except ApiError:
                self._modules[module_id] = None
        return self._modules[module_id]

    def _agent_name(self, team_id: int, agent_id: int) -> str | None:
        names = self._agent_names.get(team_id, {})
        if agent_id not in names:
            try:
                names = {a.id: a.name for a in self._ay.agent.get_list(team_id)}
            except ApiError:
                names = {}
            self._agent_names[team_id] = names
        return names.get(agent_id)

    def _login(self, team_id: int, user_id: int) -> str | None:
        logins = self._logins.get(team_id, {})
        if user_id not in logins:
            try:
                logins = {m.user_id: m.login for m in self._ay.team.get_members(team_id)}
            except ApiError:
                logins = {}
            if user_id not in logins:
                try:
                    me = self._ay.user.me()
                    logins[me.id] = me.login
                except ApiError:
                    pass
            self._logins[team_id] = logins
        return logins.get(user_id)

    def _record(self, task: OurTask) -> TaskInfo:
        names = Names(self._module_name, self._agent_name, self._login, self.server_address)
        return task_record(task, names)

    def _team_of_workspace(self, workspace_id: int) -> int:
        """The team of a workspace (``GET /workspaces/{id}``, cached: it never changes);
        ``NotFoundError`` on ``workspace_id`` when it is in none of the caller's teams."""
        if workspace_id not in self._workspace_team:
            self._workspace_team[workspace_id] = self._ay.workspace.get_info_by_id(
                workspace_id
            ).team_id
        return self._workspace_team[workspace_id]
