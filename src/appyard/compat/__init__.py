"""The reference SDK's surface over appyard: replace ``import supervisely as sly`` with
``import appyard.compat as sly`` (and ``from supervisely.x import y`` with
``from appyard.compat.x import y``).

Top level: ``Api``, ``env``, ``fs``, ``logger``, ``is_development()``, ``app.get_data_dir()``,
the info types, ``WaitingTimeExceeded`` / ``TaskFinishedWithError``. The module tree:
``api`` (``api.task_api``, ``api.app_api``, ``api.team_api``, ``api.workspace_api``,
``api.user_api``, ``api.agent_api``, ``api.file_api``), ``io.env``, ``io.fs``, ``sly_logger``,
``_utils``, ``app``.
What differs from the reference and what is refused: docs/compat.md. Our own API,
``import appyard as ay``, stays as it is.
"""

from __future__ import annotations

from appyard.compat import _utils as utils
from appyard.compat import app
from appyard.compat._errors import NotSupportedError
from appyard.compat._records import (
    AgentInfo,
    AppInfo,
    TaskInfo,
    TeamInfo,
    UserInfo,
    WorkspaceInfo,
)
from appyard.compat._utils import is_development, is_production
from appyard.compat.api.api import Api
from appyard.compat.io import env, fs
from appyard.compat.sly_logger import logger
from appyard.domain.status import Status
from appyard.errors import AppyardError, TaskFinishedWithError, WaitingTimeExceeded
from appyard.schemas.projects import DatasetInfo, ImageInfo, ProjectInfo
from appyard.sdk.app_api import SessionInfo
from appyard.sdk.module_info import ModuleInfo

__all__ = [
    "AgentInfo",
    "Api",
    "AppInfo",
    "AppyardError",
    "DatasetInfo",
    "ImageInfo",
    "ModuleInfo",
    "NotSupportedError",
    "ProjectInfo",
    "SessionInfo",
    "Status",
    "TaskFinishedWithError",
    "TaskInfo",
    "TeamInfo",
    "UserInfo",
    "WaitingTimeExceeded",
    "WorkspaceInfo",
    "app",
    "env",
    "fs",
    "is_development",
    "is_production",
    "logger",
    "utils",
]
