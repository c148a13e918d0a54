"""``supervisely.io.env`` over appyard's env helpers.

Each helper reads the first variable set, in order: appyard's names first, then the
reference's (``modal.state.slyProjectId`` beside ``modal.state.projectId``, ...). Not found:
``KeyError`` with the reference's message, or ``None`` with ``raise_not_found=False``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from appyard.sdk import env as _ours
from appyard.sdk.env import (
    DATASET_ID_KEYS,
    FILE_KEYS,
    FOLDER_KEYS,
    PROJECT_ID_KEYS,
    TEAM_ID_KEYS,
    WORKSPACE_ID_KEYS,
    _parse,
    _to_int,
    _to_str,
)

__all__ = [
    "agent_id",
    "agent_storage",
    "api_token",
    "app_name",
    "context",
    "dataset_id",
    "file",
    "flag_from_env",
    "folder",
    "modal_state",
    "project_id",
    "server_address",
    "task_id",
    "team_files_file",
    "team_files_folder",
    "team_id",
    "user_id",
    "user_login",
    "workspace_id",
]

_PROJECT = [*PROJECT_ID_KEYS[:-1], "modal.state.slyProjectId", PROJECT_ID_KEYS[-1]]
_DATASET = [*DATASET_ID_KEYS[:-1], "modal.state.slyDatasetId", DATASET_ID_KEYS[-1]]
_FOLDER = [*FOLDER_KEYS[:-1], "CONTEXT_SLYFOLDER", "context.slyFolder", "modal.state.slyFolder"]
_FOLDER.append(FOLDER_KEYS[-1])
_FILE = [*FILE_KEYS[:-1], "CONTEXT_SLYFILE", "context.slyFile", "modal.state.slyFile"]
_FILE.append(FILE_KEYS[-1])

server_address = _ours.server_address
api_token = _ours.api_token
agent_id = _ours.agent_id
task_id = _ours.task_id
modal_state = _ours.modal_state
context = _ours.context


def flag_from_env(s: str) -> bool:
    return s.upper() in ("TRUE", "YES", "1")


def team_id(raise_not_found: bool = True) -> int | None:
    return _parse("team_id", TEAM_ID_KEYS, _to_int, raise_not_found)


def workspace_id(raise_not_found: bool = True) -> int | None:
    return _parse("workspace_id", WORKSPACE_ID_KEYS, _to_int, raise_not_found)


def project_id(raise_not_found: bool = True) -> int | None:
    return _parse("project_id", _PROJECT, _to_int, raise_not_found)


def dataset_id(raise_not_found: bool = True) -> int | None:
    return _parse("dataset_id", _DATASET, _to_int, raise_not_found)


def folder(raise_not_found: bool = True) -> str | None:
    return _parse("folder", _FOLDER, _to_str, raise_not_found)


def file(raise_not_found: bool = True) -> str | None:
    return _parse("file", _FILE, _to_str, raise_not_found)


team_files_folder = folder
team_files_file = file


def user_id(raise_not_found: bool = True) -> int | None:
    return _parse(
        "user_id", ["USER_ID", "context.userId", "CONTEXT_USERID"], _to_int, raise_not_found
    )


def _with_default(name: str, keys: list[str], default: str, raise_not_found: bool) -> str | None:
    found = _parse(name, keys, _to_str, False)
    if found is not None:
        return found
    if raise_not_found:
        _parse(name, keys, _to_str, True)
    return default


def user_login(raise_not_found: bool = True) -> str | None:
    return _with_default(
        "user_login",
        ["USER_LOGIN", "context.userLogin", "CONTEXT_USERLOGIN"],
        "user (debug)",
        raise_not_found,
    )


def app_name(raise_not_found: bool = True) -> str | None:
    return _with_default("app_name", ["APP_NAME"], "app (debug)", raise_not_found)


def agent_storage(raise_not_found: bool = True) -> str | None:
    """Where the agent keeps its files (the agent's work folder, when it says)."""
    return _parse("agent_storage", ["AGENT_STORAGE"], _to_str, raise_not_found)


def app_categories(raise_not_found: bool = False) -> list[str]:
    raw = os.environ.get("APP_CATEGORIES")
    if raw is None:
        if raise_not_found:
            raise KeyError("APP_CATEGORIES is not defined as environment variable")
        return []
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return [str(v) for v in value] if isinstance(value, list) else []
