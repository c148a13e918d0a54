"""Our records in the reference's shapes: task dicts with camelCase keys and ``meta``, and the
info tuples (``TeamInfo``, ``WorkspaceInfo``, ``UserInfo``, ``AgentInfo``, ``AppInfo``).

Each reference tuple lists the reference's fields first, in its order, then ours with
defaults, so ``info.id`` / ``info.name`` / ``info._asdict()`` read as in the reference and
nothing of ours is lost. Where we have no value for a reference field it is ``None``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

from appyard.schemas.accounts import MemberInfo
from appyard.schemas.accounts import TeamInfo as OurTeam
from appyard.schemas.accounts import UserInfo as OurUser
from appyard.schemas.accounts import WorkspaceInfo as OurWorkspace
from appyard.schemas.agents import AgentInfo as OurAgent
from appyard.schemas.tasks import TaskInfo as OurTask

T = TypeVar("T")


class TaskInfo(dict[str, Any]):
    """A task record as the reference hands it out: a ``dict`` with its camelCase keys
    (``workspaceId``, ``meta`` with ``app``/``name``/``params``/``output``/``sessionToken``,
    ...) and ours (``workspace_id``, ``outputs``, ...) beside them."""


class TeamInfo(NamedTuple):
    id: int
    name: str
    description: str = ""
    role: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    usage: Any = None


class WorkspaceInfo(NamedTuple):
    id: int
    name: str
    description: str
    team_id: int
    created_at: str | None = None
    updated_at: str | None = None


class UserInfo(NamedTuple):
    id: int
    login: str
    role: str | None = None
    role_id: int | None = None
    name: str | None = None
    email: str | None = None
    logins: int | None = None
    disabled: bool = False
    last_login: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    #: ours: an instance admin
    is_admin: bool = False


class AgentInfo(NamedTuple):
    id: int
    name: str
    token: str | None
    #: the reference's words: ``running`` (online) or ``waiting`` (offline)
    status: str
    user_id: int | None
    team_id: int
    capabilities: dict[str, Any]
    created_at: str | None
    updated_at: str | None
    is_public: bool | None = False
    type: str | None = "app"
    disabled: bool | None = False
    version: str | None = None
    gpu_info: dict[str, Any] | None = None
    #: ours: slots, tasks held now, machine, how apps are isolated, last contact
    slots: int = 0
    running: int = 0
    hostname: str | None = None
    isolation: str | None = None
    last_seen_at: str | None = None
    #: ours: its machine as it last reported it (``gpus``: index, uuid, name, memory_mb each)
    cpus: int | None = None
    memory_mb: int | None = None
    disk_free_mb: int | None = None
    gpus: list[dict[str, Any]] | None = None
    labels: dict[str, str] | None = None


class AppInfo(NamedTuple):
    """A module installed in a team (made on its first start there)."""

    id: int
    created_by_id: int | None
    module_id: int
    disabled: bool
    user_login: str | None
    config: dict[str, Any]
    name: str
    slug: str
    is_shared: bool
    tasks: list[dict[str, Any]]
    repo: str | None
    team_id: int


def iso(value: datetime | None) -> str | None:
    """``2024-05-01T10:00:00.123Z``, the reference's timestamps."""
    if value is None:
        return None
    text = value.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if text.endswith("+00:00") else text


# -- the task record -----------------------------------------------------------------------------


class Names(NamedTuple):
    """What the record needs beside the task row: lookups that may answer ``None``."""

    module: Callable[[int], tuple[str, str] | None]  # module id -> (name, slug)
    agent: Callable[[int, int], str | None]  # team id, agent id -> name
    user: Callable[[int, int], str | None]  # team id, user id -> login
    server_address: str


def file_url(server_address: str, team_id: int, path: str) -> str:
    """The download address of a team file (the caller's token must go with it)."""
    return f"{server_address}/api/v1/teams/{team_id}/files/content?path={quote(path)}"


_ICONS = {
    "archive": ("zmdi zmdi-archive", "Download archive"),
    "file": ("zmdi zmdi-file", "Download file"),
    "folder": ("zmdi zmdi-folder", "Directory"),
}


def output_block(task: OurTask, server_address: str) -> dict[str, Any]:
    """``meta.output`` as the reference writes it, from our outputs.

    A block written in the reference's shape (``general``, ``project``, ``experiment``, by the
    compat ``set_output_*`` calls or an app) is kept as is. Otherwise the first team-file
    output becomes ``general`` (``title`` its name, ``titleUrl`` its download address,
    ``download: true``), a team-folder output a ``general`` without download, and a
    ``project_id`` output the ``project`` block.
    """
    outputs = task.outputs or {}
    block: dict[str, Any] = {
        k: v for k, v in outputs.items() if k in ("general", "project", "experiment")
    }
    if "general" not in block:
        for key, value in outputs.items():
            if not isinstance(value, dict) or value.get("type") not in ("team_file", "team_folder"):
                continue
            path = str(value.get("path", ""))
            kind = "folder" if value["type"] == "team_folder" else value.get("kind", "file")
            if key == "archive" and value["type"] == "team_file":
                kind = value.get("kind", "archive")
            icon, description = _ICONS.get(kind, _ICONS["file"])
            is_file = value["type"] == "team_file"
            block["general"] = {
                "icon": {"className": icon, "color": "#33c94c", "backgroundColor": "#d9f7e4"},
                "title": value.get("title") or (os.path.basename(path) if is_file else path),
                "titleUrl": file_url(server_address, task.team_id, path) if is_file else None,
                "download": bool(value.get("download", is_file)),
                "description": value.get("description", description),
                "path": path,
            }
            break
    project_id = outputs.get("project_id")
    if "project" not in block and isinstance(project_id, int):
        block["project"] = {"id": project_id}
    return block


def task_record(task: OurTask, names: Names) -> TaskInfo:
    """Our task as the reference's task dict (``api.task.get_info_by_id``,
    ``SessionInfo.details``): our snake_case fields, and beside them the reference's keys."""
    module = names.module(task.module_id)
    started = task.started_at or task.consumed_at
    record = TaskInfo(task.model_dump(mode="json"))
    record.update(
        {
            "type": "app",
            "workspaceId": task.workspace_id,
            "teamId": task.team_id,
            "userId": task.user_id,
            "createdBy": task.user_id,
            "moduleId": task.module_id,
            "appId": task.app_id,
            "agentId": task.agent_id,
            "agentName": names.agent(task.team_id, task.agent_id) if task.agent_id else None,
            "userLogin": names.user(task.team_id, task.user_id),
            "startedAt": iso(started or task.created_at),
            "finishedAt": iso(task.ended_at),
            "createdAt": iso(task.created_at),
            "updatedAt": iso(task.updated_at),
            "settings": {},
            "meta": {
                "app": {
                    "id": task.app_id,
                    "moduleId": task.module_id,
                    "name": module[0] if module else None,
                    "slug": module[1] if module else None,
                    "version": task.version,
                    "isBranch": False,
                },
                "name": task.name,
                "params": task.params,
                "output": output_block(task, names.server_address),
                # no session tokens in appyard: the session's page is /apps/<task id>/
                "sessionToken": str(task.id),
                "restartPolicy": "never",
                "logLevel": task.log_level,
            },
        }
    )
    return record


# -- other records -------------------------------------------------------------------------------


def team_info(t: OurTeam) -> TeamInfo:
    return TeamInfo(t.id, t.name, "", t.role, iso(t.created_at), iso(t.created_at), None)


def workspace_info(w: OurWorkspace) -> WorkspaceInfo:
    return WorkspaceInfo(
        w.id, w.name, w.description, w.team_id, iso(w.created_at), iso(w.created_at)
    )


def user_info(u: OurUser, role: str | None = None) -> UserInfo:
    return UserInfo(
        id=u.id,
        login=u.login,
        role=role or ("admin" if u.is_admin else "user"),
        name=u.name or u.login,
        disabled=u.disabled,
        created_at=iso(u.created_at),
        updated_at=iso(u.created_at),
        is_admin=u.is_admin,
    )


def member_info(m: MemberInfo) -> UserInfo:
    return UserInfo(id=m.user_id, login=m.login, role=m.role, name=m.login, disabled=m.disabled)


def agent_info(a: OurAgent) -> AgentInfo:
    return AgentInfo(
        id=a.id,
        name=a.name,
        token=None,
        status="running" if a.status == "online" else "waiting",
        user_id=None,
        team_id=a.team_id,
        capabilities={"slots": a.slots},
        created_at=iso(a.created_at),
        updated_at=iso(a.last_seen_at or a.created_at),
        version=a.version,
        slots=a.slots,
        running=a.running,
        hostname=a.hostname,
        isolation=a.isolation,
        last_seen_at=iso(a.last_seen_at),
        gpu_info=(
            {
                "is_available": bool(a.gpus),
                "device_count": len(a.gpus),
                "device_names": [g.name for g in a.gpus],
            }
            if a.inventory_at is not None
            else None
        ),
        cpus=a.cpus,
        memory_mb=a.memory_mb,
        disk_free_mb=a.disk_free_mb,
        gpus=[g.model_dump() for g in a.gpus],
        labels=dict(a.labels),
    )


# -- the reference's list filters ----------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _field(item: Any, name: str) -> Any:
    data = item if isinstance(item, dict) else item._asdict()
    if name in data:
        return data[name]
    return data.get(_snake(name))


def _matches(value: Any, operator: str, wanted: Any) -> bool:
    op = operator.strip().lower()
    if op in ("=", "=="):
        return bool(value == wanted or str(value) == str(wanted))
    if op in ("!=", "<>"):
        return not _matches(value, "=", wanted)
    if op == "in":
        return any(_matches(value, "=", w) for w in wanted)
    if op in ("not in", "notin", "!in"):
        return not _matches(value, "in", wanted)
    if op in ("contains", "ilike", "like"):
        return str(wanted).strip("%").lower() in str(value).lower()
    if value is None:
        return False
    if op == ">":
        return bool(value > wanted)
    if op == ">=":
        return bool(value >= wanted)
    if op == "<":
        return bool(value < wanted)
    if op == "<=":
        return bool(value <= wanted)
    raise ValueError(
        f"filter operator {operator!r} is not supported; use one of "
        "=, !=, in, not in, contains, >, >=, <, <="
    )


def apply_filters(items: Iterable[T], filters: Sequence[dict[str, Any]] | None) -> list[T]:
    """The reference's ``filters=[{"field": ..., "operator": ..., "value": ...}]``, applied
    here: a field is read by its camelCase name or its snake_case twin."""
    out = list(items)
    for f in filters or []:
        try:
            name, operator, wanted = f["field"], f.get("operator", "="), f["value"]
        except (KeyError, TypeError):
            raise ValueError(
                f"a filter is a dict with 'field', 'operator' and 'value'; got {f!r}"
            ) from None
        out = [item for item in out if _matches(_field(item, name), operator, wanted)]
    return out


def single(items: Sequence[T]) -> T | None:
    """The one item, ``None`` for none; several: ``RuntimeError`` as in the reference."""
    if not items:
        return None
    if len(items) > 1:
        raise RuntimeError("There are several items with the same name")
    return items[0]
