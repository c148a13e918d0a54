"""The appyard Python SDK: ``Api`` / ``AsyncApi``, the env helpers and the in-app session."""

from __future__ import annotations

from appyard.sdk import env
from appyard.sdk.api import Api, AsyncApi
from appyard.sdk.app_api import SessionInfo
from appyard.sdk.module_info import ModuleInfo
from appyard.sdk.session import AppSession, AppTarget

__all__ = ["Api", "AppSession", "AppTarget", "AsyncApi", "ModuleInfo", "SessionInfo", "env"]
