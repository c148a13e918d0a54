"""``Api`` and ``AsyncApi``: the entry points of the SDK.

``Api()`` reads ``SERVER_ADDRESS`` and ``API_TOKEN`` from the environment (inside an app the
agent sets both), ``Api.from_env()`` also loads ``~/appyard.env`` (what ``appyard up`` writes).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from dotenv import load_dotenv

from appyard.errors import ConfigurationError, NotFoundError
from appyard.sdk import env
from appyard.sdk._core import DEFAULT_RETRY_COUNT, DEFAULT_TIMEOUT, AsyncCore, SyncCore
from appyard.sdk.accounts import AgentApi, TeamApi, UserApi, WorkspaceApi
from appyard.sdk.app_api import AppApi, AsyncAppApi
from appyard.sdk.file_api import FileApi
from appyard.sdk.module_api import ModuleApi
from appyard.sdk.project_api import AnnotationApi, DatasetApi, ImageApi, ProjectApi
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


class Api:
    """Blocking client of one appyard server; per-resource APIs hang off it.

    ``api.app`` (sessions, catalog), ``api.task`` (``api.task.Status``, wait, logs),
    ``api.module``, ``api.agent``, ``api.team``, ``api.workspace``, ``api.user``; data:
    ``api.project``, ``api.dataset``, ``api.image``, ``api.annotation``, ``api.file``.
    One keep-alive connection pool; close it with ``api.close()`` or ``with Api() as api``.
    """

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
        self.app = AppApi(self._core, self.task)
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

    @classmethod
    def from_env(cls, env_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> Api:
        """Like ``Api()``, loading ``env_file`` (default ``~/appyard.env``) when needed."""
        _load_env_file(env_file)
        return cls(**kwargs)

    @property
    def server_address(self) -> str:
        return self._core.server_address

    @property
    def token(self) -> str | None:
        return self._core.token

    def health(self) -> dict[str, Any]:
        """The server's liveness answer (no token needed)."""
        try:
            data = self._core.request("GET", "/health", auth=False)
        except NotFoundError:
            response = self._core.client.get(self.server_address + "/health")
            self._core.raise_for_response(response)
            data = response.json()
        return dict(data or {})

    def close(self) -> None:
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

    def __repr__(self) -> str:
        return f"Api(server_address={self.server_address!r})"


class AsyncApi:
    """The async twin of :class:`Api` (``app`` and ``task``), over the same HTTP core.

    Use ``async with AsyncApi() as api:`` or ``await api.aclose()``.
    """

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
        self.app = AsyncAppApi(self._core, self.task)

    @classmethod
    def from_env(cls, env_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> AsyncApi:
        _load_env_file(env_file)
        return cls(**kwargs)

    @property
    def server_address(self) -> str:
        return self._core.server_address

    @property
    def token(self) -> str | None:
        return self._core.token

    async def aclose(self) -> None:
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

    def __repr__(self) -> str:
        return f"AsyncApi(server_address={self.server_address!r})"
