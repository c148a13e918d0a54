"""Read ids and credentials from the environment the way the reference SDK does.

Each helper returns the first variable that is set, in the order listed, converted (to int
for ids). Inside an app the agent also sets ``CONTEXT`` and ``MODAL_STATE`` as JSON; a key in
them counts right after its flattened twin (``context.teamId`` / ``modal.state.projectId``).
None set: ``KeyError`` with the reference's message, or ``None`` with ``raise_not_found=False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

T = TypeVar("T")

_JSON_SOURCES = {"context.": "CONTEXT", "modal.state.": "MODAL_STATE"}


def _json_env(var: str) -> dict[str, Any]:
    raw = os.environ.get(var)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _lookup(key: str) -> Any:
    """Value of one source: the env variable, or for ``context.x``/``modal.state.x`` also JSON."""
    if key in os.environ:
        return os.environ[key]
    for prefix, var in _JSON_SOURCES.items():
        if key.startswith(prefix):
            data = _json_env(var)
            name = key[len(prefix) :]
            if data.get(name) is not None:
                return data[name]
    return None


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{key}={value!r} is not an integer id")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{key}={value!r} is not an integer id") from None


def _to_str(key: str, value: Any) -> str:
    return str(value)


@overload
def _parse(
    name: str,
    keys: Sequence[str],
    convert: Callable[[str, Any], T],
    raise_not_found: Literal[True],
) -> T: ...
@overload
def _parse(
    name: str, keys: Sequence[str], convert: Callable[[str, Any], T], raise_not_found: bool
) -> T | None: ...
def _parse(
    name: str, keys: Sequence[str], convert: Callable[[str, Any], T], raise_not_found: bool
) -> T | None:
    for key in keys:
        value = _lookup(key)
        if value is not None:
            return convert(key, value)
    if raise_not_found:
        raise KeyError(
            f"{name} is not defined as environment variable. "
            f"One of the envs has to be defined: {list(keys)}"
        )
    return None


TEAM_ID_KEYS = ["CONTEXT_TEAMID", "context.teamId", "TEAM_ID"]
WORKSPACE_ID_KEYS = ["CONTEXT_WORKSPACEID", "context.workspaceId", "WORKSPACE_ID"]
PROJECT_ID_KEYS = ["CONTEXT_PROJECTID", "context.projectId", "modal.state.projectId", "PROJECT_ID"]
DATASET_ID_KEYS = ["CONTEXT_DATASETID", "context.datasetId", "modal.state.datasetId", "DATASET_ID"]
FOLDER_KEYS = ["CONTEXT_FOLDER", "context.folder", "modal.state.folder", "FOLDER"]
FILE_KEYS = ["CONTEXT_FILE", "context.file", "modal.state.file", "FILE"]


@overload
def team_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def team_id(raise_not_found: bool) -> int | None: ...
def team_id(raise_not_found: bool = True) -> int | None:
    """The team the code runs for."""
    return _parse("team_id", TEAM_ID_KEYS, _to_int, raise_not_found)


@overload
def workspace_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def workspace_id(raise_not_found: bool) -> int | None: ...
def workspace_id(raise_not_found: bool = True) -> int | None:
    """The workspace new tasks go to."""
    return _parse("workspace_id", WORKSPACE_ID_KEYS, _to_int, raise_not_found)


@overload
def project_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def project_id(raise_not_found: bool) -> int | None: ...
def project_id(raise_not_found: bool = True) -> int | None:
    """The project an app was started on (its ``images_project`` target)."""
    return _parse("project_id", PROJECT_ID_KEYS, _to_int, raise_not_found)


@overload
def dataset_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def dataset_id(raise_not_found: bool) -> int | None: ...
def dataset_id(raise_not_found: bool = True) -> int | None:
    """The dataset an app was started on (its ``images_dataset`` target)."""
    return _parse("dataset_id", DATASET_ID_KEYS, _to_int, raise_not_found)


@overload
def agent_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def agent_id(raise_not_found: bool) -> int | None: ...
def agent_id(raise_not_found: bool = True) -> int | None:
    """The agent to run sessions on."""
    return _parse("agent_id", ["AGENT_ID"], _to_int, raise_not_found)


@overload
def task_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def task_id(raise_not_found: bool) -> int | None: ...
def task_id(raise_not_found: bool = True) -> int | None:
    """The task this app process is (set by the agent)."""
    return _parse("task_id", ["TASK_ID"], _to_int, raise_not_found)


@overload
def user_id(raise_not_found: Literal[True] = True) -> int: ...
@overload
def user_id(raise_not_found: bool) -> int | None: ...
def user_id(raise_not_found: bool = True) -> int | None:
    """The user who started this app's task (set by the agent)."""
    return _parse("user_id", ["USER_ID"], _to_int, raise_not_found)


@overload
def server_address(raise_not_found: Literal[True] = True) -> str: ...
@overload
def server_address(raise_not_found: bool) -> str | None: ...
def server_address(raise_not_found: bool = True) -> str | None:
    """Where the appyard server listens."""
    return _parse("server_address", ["SERVER_ADDRESS"], _to_str, raise_not_found)


@overload
def api_token(raise_not_found: Literal[True] = True) -> str: ...
@overload
def api_token(raise_not_found: bool) -> str | None: ...
def api_token(raise_not_found: bool = True) -> str | None:
    """The token calls are made with (inside an app: the task-scoped token)."""
    return _parse("api_token", ["API_TOKEN"], _to_str, raise_not_found)


@overload
def folder(raise_not_found: Literal[True] = True) -> str: ...
@overload
def folder(raise_not_found: bool) -> str | None: ...
def folder(raise_not_found: bool = True) -> str | None:
    """The team-files folder an app was started on (its ``files_folder`` target)."""
    return _parse("folder", FOLDER_KEYS, _to_str, raise_not_found)


@overload
def file(raise_not_found: Literal[True] = True) -> str: ...
@overload
def file(raise_not_found: bool) -> str | None: ...
def file(raise_not_found: bool = True) -> str | None:
    """The team-files file an app was started on (its ``files_file`` target)."""
    return _parse("file", FILE_KEYS, _to_str, raise_not_found)


def modal_state() -> dict[str, Any]:
    """The app's state (``MODAL_STATE`` JSON set by the agent); empty outside an app."""
    return _json_env("MODAL_STATE")


def context() -> dict[str, Any]:
    """The app's start context (``CONTEXT`` JSON set by the agent); empty outside an app."""
    return _json_env("CONTEXT")
