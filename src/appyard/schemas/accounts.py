"""Users, tokens, teams, members and workspaces on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from appyard.schemas.common import MAX_DESCRIPTION, MAX_NAME, Id, Wire

Role = Literal["admin", "developer", "viewer"]
NAME = Field(min_length=1, max_length=MAX_NAME)


class UserCreate(Wire):
    login: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str | None = Field(default=None, min_length=8, max_length=200)
    is_admin: bool = False


class UserInfo(BaseModel):
    id: int
    login: str
    is_admin: bool
    disabled: bool = False  # signs in no more; no token acts as it
    created_at: datetime
    name: str | None = None  # a display name beside the login, if one was given


class UserUpdate(Wire):
    """What ``PATCH /users/{id}`` changes; a field left out stays as it is."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    password: str | None = Field(default=None, min_length=8, max_length=200)


class LoginRequest(Wire):
    login: str = Field(max_length=100)
    password: str = Field(max_length=1024)


class TokenCreate(Wire):
    name: str = Field(default="api", min_length=1, max_length=100)
    user_id: Id | None = None  # an admin may mint a token for another user


class TokenInfo(BaseModel):
    id: int
    name: str
    kind: str  # user, agent or task
    user_id: int | None
    created_at: datetime
    agent_id: int | None = None  # an agent token's agent
    task_id: int | None = None  # a task token's task (its user: the task's)


class TokenCreated(TokenInfo):
    token: str  # shown once, never stored in clear


class TeamCreate(Wire):
    name: str = NAME


class TeamUpdate(Wire):
    """What ``PATCH /teams/{id}`` changes: the team's name."""

    name: str = NAME


class TeamInfo(BaseModel):
    id: int
    name: str
    role: Role | None = None  # the caller's role in the team
    created_at: datetime


class MemberAdd(Wire):
    login: str = Field(min_length=1, max_length=100)
    role: Role = "developer"


class MemberUpdate(Wire):
    """``PATCH /teams/{id}/members/{user_id}``: the member's new role."""

    role: Role


class MemberInfo(BaseModel):
    user_id: int
    login: str
    role: Role
    disabled: bool = False  # the user is disabled (it counts as no admin of the team)


class WorkspaceCreate(Wire):
    name: str = NAME
    description: str = Field(default="", max_length=MAX_DESCRIPTION)


class WorkspaceUpdate(Wire):
    """What ``PATCH /workspaces/{id}`` changes; a field left out stays as it is."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)


class WorkspaceInfo(BaseModel):
    id: int
    team_id: int
    name: str
    description: str
    created_at: datetime
