"""``Api`` and ``AsyncApi``: the entry points of the SDK.

``Api()`` reads ``SERVER_ADDRESS`` and ``API_TOKEN`` from the environment (inside an app the
agent sets both), ``Api.from_env()`` also loads ``~/appyard.env`` (what ``appyard up`` writes).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from dotenv import load_dotenv

from appyard.errors import ConfigurationError
from appyard.sdk import env
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._calls.server import health
from appyard.sdk._core import DEFAULT_RETRY_COUNT, DEFAULT_TIMEOUT, CoreBase
from appyard.sdk._sync import SyncCore
from appyard.sdk.accounts import (
    AgentApi,
    AsyncAgentApi,
    AsyncTeamApi,
    AsyncUserApi,
    AsyncWorkspaceApi,
    TeamApi,
    UserApi,
    WorkspaceApi,
)
from appyard.sdk.app_api import AppApi, AsyncAppApi
from appyard.sdk.file_api import AsyncFileApi, FileApi
from appyard.sdk.image_api import AnnotationApi, AsyncAnnotationApi, AsyncImageApi, ImageApi
from appyard.sdk.module_api import AsyncModuleApi, ModuleApi
from appyard.sdk.pipeline_api import AsyncPipelineApi, PipelineApi
from appyard.sdk.project_api import AsyncDatasetApi, AsyncProjectApi, DatasetApi, ProjectApi
from appyard.sdk.task_api import AsyncTaskApi, TaskApi

DEFAULT_ENV_FILE = "~/appyard.env"
ENV_FILE_VARIABLE = "APPYARD_ENV_FILE"


def default_env_file() -> Path:
    """``$APPYARD_ENV_FILE``, else ``~/appyard.env``."""
    return Path(os.environ.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE).expanduser()


def _resolve(server_address: str | None, token: str | None) -> tuple[str, str | None]:
    address = server_address or env.server_address(raise_not_found=False)
    if not address:
        raise ConfigurationError(
            "No server address: set the SERVER_ADDRESS environment variable "
            "(e.g. SERVER_ADDRESS=http://127.0.0.1:8000) or pass server_address=...; "
            "`appyard up` writes it to ~/appyard.env, which Api.from_env() loads."
        )
    return address, token or env.api_token(raise_not_found=False)


def _load_env_file(env_file: str | os.PathLike[str] | None) -> None:
    """Load the dotenv file unless both variables are already set (set ones win)."""
    if env.server_address(raise_not_found=False) and env.api_token(raise_not_found=False):
        return
    path = Path(env_file).expanduser() if env_file is not None else default_env_file()
    if not path.is_file():
        raise FileNotFoundError(
            f"File not found: '{path}'. Create it with SERVER_ADDRESS=... and API_TOKEN=... "
            "lines (`appyard up` writes one), or set those environment variables."
        )
    load_dotenv(path, override=False)


class _Client:
    """What ``Api`` and ``AsyncApi`` share outside any I/O: how they are made from the
    environment, and what they say about themselves."""

    _core: CoreBase

    @classmethod
    def from_env(cls, env_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> Self:
        """Like ``Api()``, loading ``env_file`` (default ``~/appyard.env``) when needed."""
        _load_env_file(env_file)
        return cls(**kwargs)

    @property
    def server_address(self) -> str:
        """The server's address as called (scheme added, trailing ``/`` cut)."""
        return self._core.server_address

    @property
    def token(self) -> str | None:
        return self._core.token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(server_address={self.server_address!r})"


class Api(_Client):
    """Blocking client of one appyard server; per-resource APIs hang off it.

    ``api.app`` (sessions, catalog), ``api.task`` (``api.task.Status``, wait, logs),
    ``api.module``, ``api.agent``, ``api.team``, ``api.workspace``, ``api.user``; data:
    ``api.project``, ``api.dataset``, ``api.image``, ``api.annotation``, ``api.file``;
    ``api.pipeline`` (pipelines of apps and their runs).
    One keep-alive connection pool; close it with ``api.close()`` or ``with Api() as api``.
    """

    _core: SyncCore

    def __init__(
        self,
        server_address: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_count: int = DEFAULT_RETRY_COUNT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        address, token = _resolve(server_address, token)
        self._core = SyncCore(
            address, token, timeout=timeout, retry_count=retry_count, transport=transport
        )
        self.task = TaskApi(self._core)
        self.app = AppApi(self._core)
        self.module = ModuleApi(self._core)
        self.agent = AgentApi(self._core)
        self.team = TeamApi(self._core)
        self.workspace = WorkspaceApi(self._core)
        self.user = UserApi(self._core)
        self.project = ProjectApi(self._core)
        self.dataset = DatasetApi(self._core)
        self.image = ImageApi(self._core)
        self.annotation = AnnotationApi(self._core)
        self.file = FileApi(self._core)
        self.pipeline = PipelineApi(self._core)

    def health(self) -> dict[str, Any]:
        """The server's liveness answer (no token needed)."""
        return self._core.run(health(self.server_address))

    def close(self) -> None:
        """Close the connection pool."""
        self._core.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@twin_of(Api)
class AsyncApi(_Client):
    """The async twin of :class:`Api`: every resource, every call, over the same calls; only
    the I/O differs (asyncio). Use ``async with AsyncApi() as api:`` or ``await api.aclose()``.
    """

    _core: AsyncCore

    def __init__(
        self,
        server_address: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_count: int = DEFAULT_RETRY_COUNT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        address, token = _resolve(server_address, token)
        self._core = AsyncCore(
            address, token, timeout=timeout, retry_count=retry_count, transport=transport
        )
        self.task = AsyncTaskApi(self._core)
        self.app = AsyncAppApi(self._core)
        self.module = AsyncModuleApi(self._core)
        self.agent = AsyncAgentApi(self._core)
        self.team = AsyncTeamApi(self._core)
        self.workspace = AsyncWorkspaceApi(self._core)
        self.user = AsyncUserApi(self._core)
        self.project = AsyncProjectApi(self._core)
        self.dataset = AsyncDatasetApi(self._core)
        self.image = AsyncImageApi(self._core)
        self.annotation = AsyncAnnotationApi(self._core)
        self.file = AsyncFileApi(self._core)
        self.pipeline = AsyncPipelineApi(self._core)

    async def health(self) -> dict[str, Any]:
        return await self._core.run(health(self.server_address))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._core.aclose()

    async def __aenter__(self) -> AsyncApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
