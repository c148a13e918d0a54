"""``api.user``, ``api.team``, ``api.workspace``, ``api.agent``: tenancy and agents.

Every call returns the server's pydantic wire model (``TeamInfo``, ``AgentCreated``, ...):
typed, and the same objects the server validated. Creating calls are not retried once sent.
"""

from __future__ import annotations

from typing import Any

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
from appyard.sdk._core import SyncCore


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


class UserApi:
    """Users and their tokens."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def me(self) -> UserInfo:
        """The user the token acts as."""
        return UserInfo.model_validate(self._core.request("GET", "/users/me"))

    def get_list(self) -> list[UserInfo]:
        """All users (instance admin only)."""
        return TypeAdapter(list[UserInfo]).validate_python(self._core.request("GET", "/users"))

    def create(self, login: str, password: str | None = None, is_admin: bool = False) -> UserInfo:
        """Add a user (instance admin only); without a password it signs in with tokens only."""
        body = _body(UserCreate(login=login, password=password, is_admin=is_admin))
        return UserInfo.model_validate(self._core.request("POST", "/users", json=body))

    def create_token(self, name: str = "api", user_id: int | None = None) -> TokenCreated:
        """Mint a token (an admin may for another user); ``.token`` is shown only this once."""
        body = _body(TokenCreate(name=name, user_id=user_id))
        return TokenCreated.model_validate(self._core.request("POST", "/tokens", json=body))

    def get_tokens(self) -> list[TokenInfo]:
        return TypeAdapter(list[TokenInfo]).validate_python(self._core.request("GET", "/tokens"))

    def revoke_token(self, token_id: int) -> None:
        self._core.request("DELETE", f"/tokens/{int(token_id)}")

    def login(self, login: str, password: str) -> TokenCreated:
        """Password sign-in: mints a user token (no token needed for this call)."""
        body = _body(LoginRequest(login=login, password=password))
        data = self._core.request("POST", "/auth/login", json=body, auth=False)
        return TokenCreated.model_validate(data)


class TeamApi:
    """Teams and their members."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self) -> list[TeamInfo]:
        """Teams of the caller (a task token sees its team)."""
        return TypeAdapter(list[TeamInfo]).validate_python(self._core.request("GET", "/teams"))

    def create(self, name: str) -> TeamInfo:
        """A new team; the caller becomes its admin."""
        data = self._core.request("POST", "/teams", json=_body(TeamCreate(name=name)))
        return TeamInfo.model_validate(data)

    def get_members(self, team_id: int) -> list[MemberInfo]:
        data = self._core.request("GET", f"/teams/{int(team_id)}/members")
        return TypeAdapter(list[MemberInfo]).validate_python(data)

    def add_member(self, team_id: int, login: str, role: Role = "developer") -> MemberInfo:
        """Add a user to the team, or change its role (team admin only)."""
        body = _body(MemberAdd(login=login, role=role))
        data = self._core.request(
            "POST", f"/teams/{int(team_id)}/members", json=body, idempotent=True
        )
        return MemberInfo.model_validate(data)


class WorkspaceApi:
    """Workspaces of a team (where tasks are recorded)."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self, team_id: int) -> list[WorkspaceInfo]:
        data = self._core.request("GET", f"/teams/{int(team_id)}/workspaces")
        return TypeAdapter(list[WorkspaceInfo]).validate_python(data)

    def create(self, team_id: int, name: str, description: str = "") -> WorkspaceInfo:
        body = _body(WorkspaceCreate(name=name, description=description))
        data = self._core.request("POST", f"/teams/{int(team_id)}/workspaces", json=body)
        return WorkspaceInfo.model_validate(data)


class AgentApi:
    """Agents of a team: the machines that run sessions."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self, team_id: int) -> list[AgentInfo]:
        """Agents with their online status, slots and running tasks."""
        data = self._core.request("GET", f"/teams/{int(team_id)}/agents")
        return TypeAdapter(list[AgentInfo]).validate_python(data)

    def create(self, team_id: int, name: str) -> AgentCreated:
        """Register an agent; ``.token`` (what ``appyard agent run`` needs) is shown only once."""
        body = _body(AgentCreate(name=name))
        data = self._core.request("POST", f"/teams/{int(team_id)}/agents", json=body)
        return AgentCreated.model_validate(data)

    def me(self) -> AgentInfo:
        """The agent this client's token belongs to (with an agent token only)."""
        return AgentInfo.model_validate(self._core.request("GET", "/agents/me"))
