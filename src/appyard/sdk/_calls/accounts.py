"""The calls of ``api.user``, ``api.team``, ``api.workspace``, ``api.agent``."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from appyard.schemas.accounts import (
    LoginRequest,
    MemberAdd,
    MemberInfo,
    Role,
    TeamCreate,
    TeamInfo,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    UserCreate,
    UserInfo,
    WorkspaceCreate,
    WorkspaceInfo,
)
from appyard.schemas.agents import AgentCreate, AgentCreated, AgentInfo
from appyard.sdk._calls.effects import Op, request

M = TypeVar("M")


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(as_type: Any) -> TypeAdapter[Any]:
    """One adapter per wire type, made on first use."""
    adapter = _ADAPTERS.get(as_type)
    if adapter is None:
        adapter = _ADAPTERS[as_type] = TypeAdapter(as_type)
    return adapter


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def _get(path: str, as_type: type[M]) -> Op[M]:
    validated: M = _adapter(as_type).validate_python((yield from request("GET", path)))
    return validated


def _post(path: str, body: BaseModel, as_type: type[M], **kwargs: Any) -> Op[M]:
    data = yield from request("POST", path, json=_body(body), **kwargs)
    validated: M = _adapter(as_type).validate_python(data)
    return validated


def _patch(path: str, body: dict[str, Any], as_type: type[M]) -> Op[M]:
    """A change that says what to set (not by how much): sending it twice is harmless. The
    fields given are sent as they are, so that the server's 422 names a bad one."""
    sent = {k: v for k, v in body.items() if v is not None}
    data = yield from request("PATCH", path, json=sent, idempotent=True)
    validated: M = _adapter(as_type).validate_python(data)
    return validated


# -- users -------------------------------------------------------------------------------------


def me() -> Op[UserInfo]:
    return _get("/users/me", UserInfo)


def users() -> Op[list[UserInfo]]:
    return _get("/users", list[UserInfo])


def create_user(login: str, password: str | None, is_admin: bool) -> Op[UserInfo]:
    return _post("/users", UserCreate(login=login, password=password, is_admin=is_admin), UserInfo)


def update_user(user_id: int, name: str | None, password: str | None) -> Op[UserInfo]:
    body = {"name": name, "password": password}
    return _patch(f"/users/{int(user_id)}", body, UserInfo)


def create_token(name: str, user_id: int | None) -> Op[TokenCreated]:
    return _post("/tokens", TokenCreate(name=name, user_id=user_id), TokenCreated)


def tokens(team_id: int | None) -> Op[list[TokenInfo]]:
    data = yield from request("GET", "/tokens", params={"team_id": team_id})
    validated: list[TokenInfo] = _adapter(list[TokenInfo]).validate_python(data)
    return validated


def disable_user(user_id: int) -> Op[UserInfo]:
    data = yield from request("POST", f"/users/{int(user_id)}/disable", idempotent=True)
    return UserInfo.model_validate(data)


def enable_user(user_id: int) -> Op[UserInfo]:
    data = yield from request("POST", f"/users/{int(user_id)}/enable", idempotent=True)
    return UserInfo.model_validate(data)


def revoke_token(token_id: int) -> Op[None]:
    yield from request("DELETE", f"/tokens/{int(token_id)}")


def login(login: str, password: str) -> Op[TokenCreated]:
    body = LoginRequest(login=login, password=password)
    return _post("/auth/login", body, TokenCreated, auth=False)


# -- teams and workspaces ----------------------------------------------------------------------


def teams() -> Op[list[TeamInfo]]:
    return _get("/teams", list[TeamInfo])


def create_team(name: str) -> Op[TeamInfo]:
    return _post("/teams", TeamCreate(name=name), TeamInfo)


def update_team(team_id: int, name: str) -> Op[TeamInfo]:
    return _patch(f"/teams/{int(team_id)}", {"name": name}, TeamInfo)


def members(team_id: int) -> Op[list[MemberInfo]]:
    return _get(f"/teams/{int(team_id)}/members", list[MemberInfo])


def add_member(team_id: int, login: str, role: Role) -> Op[MemberInfo]:
    path = f"/teams/{int(team_id)}/members"
    return _post(path, MemberAdd(login=login, role=role), MemberInfo, idempotent=True)


def update_member(team_id: int, user_id: int, role: Role) -> Op[MemberInfo]:
    path = f"/teams/{int(team_id)}/members/{int(user_id)}"
    return _patch(path, {"role": role}, MemberInfo)


def remove_member(team_id: int, user_id: int) -> Op[None]:
    yield from request("DELETE", f"/teams/{int(team_id)}/members/{int(user_id)}")


def workspaces(team_id: int) -> Op[list[WorkspaceInfo]]:
    return _get(f"/teams/{int(team_id)}/workspaces", list[WorkspaceInfo])


def workspace(workspace_id: int) -> Op[WorkspaceInfo]:
    return _get(f"/workspaces/{int(workspace_id)}", WorkspaceInfo)


def create_workspace(team_id: int, name: str, description: str) -> Op[WorkspaceInfo]:
    body = WorkspaceCreate(name=name, description=description)
    return _post(f"/teams/{int(team_id)}/workspaces", body, WorkspaceInfo)


def update_workspace(
    workspace_id: int, name: str | None, description: str | None
) -> Op[WorkspaceInfo]:
    body = {"name": name, "description": description}
    return _patch(f"/workspaces/{int(workspace_id)}", body, WorkspaceInfo)


# -- agents ------------------------------------------------------------------------------------


def agents(team_id: int) -> Op[list[AgentInfo]]:
    return _get(f"/teams/{int(team_id)}/agents", list[AgentInfo])


def create_agent(team_id: int, name: str) -> Op[AgentCreated]:
    return _post(f"/teams/{int(team_id)}/agents", AgentCreate(name=name), AgentCreated)


def rotate_agent_token(agent_id: int) -> Op[TokenCreated]:
    data = yield from request("POST", f"/agents/{int(agent_id)}/token")
    return TokenCreated.model_validate(data)


def agent(agent_id: int) -> Op[AgentInfo]:
    return _get(f"/agents/{int(agent_id)}", AgentInfo)


def agent_me() -> Op[AgentInfo]:
    return _get("/agents/me", AgentInfo)
