"""The appyard Python SDK: ``Api`` / ``AsyncApi``, the env helpers and the in-app session.

The names load lazily: the agent speaks through the SDK's sync core (``appyard.sdk._sync``),
and importing the package must not make it load the async client, dotenv and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appyard.sdk import env
    from appyard.sdk.api import Api, AsyncApi
    from appyard.sdk.app_api import SessionInfo
    from appyard.sdk.module_info import ModuleInfo
    from appyard.sdk.session import AppSession, AppTarget

__all__ = ["Api", "AppSession", "AppTarget", "AsyncApi", "ModuleInfo", "SessionInfo", "env"]

#: each public name and the module it lives in
_HOME = {
    "Api": "appyard.sdk.api",
    "AsyncApi": "appyard.sdk.api",
    "SessionInfo": "appyard.sdk.app_api",
    "ModuleInfo": "appyard.sdk.module_info",
    "AppSession": "appyard.sdk.session",
    "AppTarget": "appyard.sdk.session",
}


def __getattr__(name: str) -> Any:
    if name == "env":
        return importlib.import_module("appyard.sdk.env")
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'appyard.sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
