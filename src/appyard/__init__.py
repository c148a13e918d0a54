"""appyard: a self-hosted app ecosystem.

The top level re-exports what app automation needs: the SDK client (``Api``), the env
helpers (``env``), the in-app helper (``AppSession``), the task statuses, the errors a waiting
caller handles, and the annotation models apps build (``Annotation``, ``ProjectMeta``). ``Api``,
``env`` and the models load lazily, so the server (which never uses the SDK) does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appyard.domain.status import Status
from appyard.errors import AppyardError, TaskFinishedWithError, WaitingTimeExceeded

if TYPE_CHECKING:
    from appyard.schemas.annotation import Annotation, ProjectMeta
    from appyard.sdk import env
    from appyard.sdk.api import Api, AsyncApi
    from appyard.sdk.session import AppSession

__version__ = "0.1.0"

__all__ = [
    "Annotation",
    "Api",
    "AppSession",
    "AppyardError",
    "AsyncApi",
    "ProjectMeta",
    "Status",
    "TaskFinishedWithError",
    "WaitingTimeExceeded",
    "__version__",
    "env",
]


def __getattr__(name: str) -> Any:
    if name in ("Api", "AsyncApi"):
        from appyard.sdk import api

        return getattr(api, name)
    if name == "AppSession":
        from appyard.sdk.session import AppSession

        return AppSession
    if name in ("Annotation", "ProjectMeta"):
        from appyard.schemas import annotation

        return getattr(annotation, name)
    if name == "env":
        from appyard.sdk import env

        return env
    raise AttributeError(f"module 'appyard' has no attribute {name!r}")
