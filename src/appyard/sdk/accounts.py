"""``api.user``, ``api.team``, ``api.workspace``, ``api.agent``: tenancy and agents.

Every call returns the server's pydantic wire model (``TeamInfo``, ``AgentCreated``, ...):
typed, and the same objects the server validated. Creating calls are not retried once sent.
Each resource has an async twin over the same calls (``_calls.accounts``).
"""

from __future__ import annotations

from appyard.schemas.accounts import (
    MemberInfo,
    Role,
    TeamInfo,
    TokenCreated,
    TokenInfo,
    UserInfo,
    WorkspaceInfo,
)
from appyard.schemas.agents import AgentCreated, AgentInfo
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import accounts as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._sync import SyncCore


class UserApi:
    """Users and their tokens."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def me(self) -> UserInfo:
        """The user the token acts as."""
        return self._core.run(calls.me())

    def get_list(self) -> list[UserInfo]:
        """All users (instance admin only)."""
        return self._core.run(calls.users())

    def create(self, login: str, password: str | None = None, is_admin: bool = False) -> UserInfo:
        """Add a user (instance admin only); without a password it signs in with tokens only."""
        return self._core.run(calls.create_user(login, password, is_admin))

    def update(
        self, user_id: int, name: str | None = None, password: str | None = None
    ) -> UserInfo:
        """Change a user's display name and/or password: your own, or anyone's as an instance
        admin (the user's tokens stay valid)."""
        return self._core.run(calls.update_user(user_id, name, password))

    def create_token(self, name: str = "api", user_id: int | None = None) -> TokenCreated:
        """Mint a token (an admin may for another user); ``.token`` is shown only this once."""
        return self._core.run(calls.create_token(name, user_id))

    def get_tokens(self, team_id: int | None = None) -> list[TokenInfo]:
        """The caller's tokens (never their secret); with ``team_id`` (team admin): every live
        token acting in the team (members', agents', running tasks')."""
        return self._core.run(calls.tokens(team_id))

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token (own ones; a team admin: the team's); its open streams end too."""
        self._core.run(calls.revoke_token(token_id))

    def disable(self, user_id: int) -> UserInfo:
        """Disable a user (instance admin): it signs in no more and every token of it dies."""
        return self._core.run(calls.disable_user(user_id))

    def enable(self, user_id: int) -> UserInfo:
        """Enable a disabled user again (its old tokens stay revoked)."""
        return self._core.run(calls.enable_user(user_id))

    def login(self, login: str, password: str) -> TokenCreated:
        """Password sign-in: mints a user token (no token needed for this call)."""
        return self._core.run(calls.login(login, password))


@twin_of(UserApi)
class AsyncUserApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def me(self) -> UserInfo:
        return await self._core.run(calls.me())

    async def get_list(self) -> list[UserInfo]:
        return await self._core.run(calls.users())

    async def create(
        self, login: str, password: str | None = None, is_admin: bool = False
    ) -> UserInfo:
        return await self._core.run(calls.create_user(login, password, is_admin))

    async def update(
        self, user_id: int, name: str | None = None, password: str | None = None
    ) -> UserInfo:
        return await self._core.run(calls.update_user(user_id, name, password))

    async def create_token(self, name: str = "api", user_id: int | None = None) -> TokenCreated:
        return await self._core.run(calls.create_token(name, user_id))

    async def get_tokens(self, team_id: int | None = None) -> list[TokenInfo]:
        return await self._core.run(calls.tokens(team_id))

    async def revoke_token(self, token_id: int) -> None:
        await self._core.run(calls.revoke_token(token_id))

    async def disable(self, user_id: int) -> UserInfo:
        return await self._core.run(calls.disable_user(user_id))

    async def enable(self, user_id: int) -> UserInfo:
        return await self._core.run(calls.enable_user(user_id))

    async def login(self, login: str, password: str) -> TokenCreated:
        return await self._core.run(calls.login(login, password))


class TeamApi:
    """Teams and their members."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self) -> list[TeamInfo]:
        """Teams of the caller (a task token sees its team)."""
        return self._core.run(calls.teams())

    def create(self, name: str) -> TeamInfo:
        """A new team; the caller becomes its admin."""
        return self._core.run(calls.create_team(name))

    def update(self, team_id: int, name: str) -> TeamInfo:
        """Rename the team (team admin only)."""
        return self._core.run(calls.update_team(team_id, name))

    def get_members(self, team_id: int) -> list[MemberInfo]:
        """The team's members with their roles."""
        return self._core.run(calls.members(team_id))

    def add_member(self, team_id: int, login: str, role: Role = "developer") -> MemberInfo:
        """Add a user to the team, or change its role (team admin only)."""
        return self._core.run(calls.add_member(team_id, login, role))

    def change_member_role(self, team_id: int, user_id: int, role: Role) -> MemberInfo:
        """Give a member another role (team admin only); the team keeps an enabled admin."""
        return self._core.run(calls.update_member(team_id, user_id, role))

    def remove_member(self, team_id: int, user_id: int) -> None:
        """Take a user out of the team (team admin, or the member itself); the team keeps an
        admin."""
        self._core.run(calls.remove_member(team_id, user_id))


@twin_of(TeamApi)
class AsyncTeamApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_list(self) -> list[TeamInfo]:
        return await self._core.run(calls.teams())

    async def create(self, name: str) -> TeamInfo:
        return await self._core.run(calls.create_team(name))

    async def update(self, team_id: int, name: str) -> TeamInfo:
        return await self._core.run(calls.update_team(team_id, name))

    async def get_members(self, team_id: int) -> list[MemberInfo]:
        return await self._core.run(calls.members(team_id))

    async def add_member(self, team_id: int, login: str, role: Role = "developer") -> MemberInfo:
        return await self._core.run(calls.add_member(team_id, login, role))

    async def change_member_role(self, team_id: int, user_id: int, role: Role) -> MemberInfo:
        return await self._core.run(calls.update_member(team_id, user_id, role))

    async def remove_member(self, team_id: int, user_id: int) -> None:
        await self._core.run(calls.remove_member(team_id, user_id))


class WorkspaceApi:
    """Workspaces of a team (where tasks are recorded)."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self, team_id: int) -> list[WorkspaceInfo]:
        """The team's workspaces."""
        return self._core.run(calls.workspaces(team_id))

    def get_info_by_id(self, workspace_id: int) -> WorkspaceInfo:
        """One workspace (a member of its team); ``NotFoundError`` on ``workspace_id`` when
        there is none, or it is not in one of your teams."""
        return self._core.run(calls.workspace(workspace_id))

    def create(self, team_id: int, name: str, description: str = "") -> WorkspaceInfo:
        """A new workspace in the team."""
        return self._core.run(calls.create_workspace(team_id, name, description))

    def update(
        self, workspace_id: int, name: str | None = None, description: str | None = None
    ) -> WorkspaceInfo:
        """Rename a workspace and/or change its description (developer of its team); a name
        taken in the team is a ``ConflictError``."""
        return self._core.run(calls.update_workspace(workspace_id, name, description))


@twin_of(WorkspaceApi)
class AsyncWorkspaceApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_list(self, team_id: int) -> list[WorkspaceInfo]:
        return await self._core.run(calls.workspaces(team_id))

    async def get_info_by_id(self, workspace_id: int) -> WorkspaceInfo:
        return await self._core.run(calls.workspace(workspace_id))

    async def create(self, team_id: int, name: str, description: str = "") -> WorkspaceInfo:
        return await self._core.run(calls.create_workspace(team_id, name, description))

    async def update(
        self, workspace_id: int, name: str | None = None, description: str | None = None
    ) -> WorkspaceInfo:
        return await self._core.run(calls.update_workspace(workspace_id, name, description))


class AgentApi:
    """Agents of a team: the machines that run sessions."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self, team_id: int) -> list[AgentInfo]:
        """Agents with their online status, slots, running tasks, machine and labels."""
        return self._core.run(calls.agents(team_id))

    def get_info_by_id(self, agent_id: int) -> AgentInfo:
        """One agent of the caller's teams: status, load, its machine (``cpus``,
        ``memory_mb``, ``disk_free_mb``, ``gpus``) and ``labels``; NotFoundError otherwise."""
        return self._core.run(calls.agent(agent_id))

    def create(self, team_id: int, name: str) -> AgentCreated:
        """Register an agent; ``.token`` (what ``appyard agent run`` needs) is shown only once."""
        return self._core.run(calls.create_agent(team_id, name))

    def rotate_token(self, agent_id: int) -> TokenCreated:
        """A new token for the agent (team admin); the old one dies at once, so run the agent
        again with ``.token`` (shown only this once)."""
        return self._core.run(calls.rotate_agent_token(agent_id))

    def me(self) -> AgentInfo:
        """The agent this client's token belongs to (with an agent token only)."""
        return self._core.run(calls.agent_me())


@twin_of(AgentApi)
class AsyncAgentApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_list(self, team_id: int) -> list[AgentInfo]:
        return await self._core.run(calls.agents(team_id))

    async def get_info_by_id(self, agent_id: int) -> AgentInfo:
        return await self._core.run(calls.agent(agent_id))

    async def create(self, team_id: int, name: str) -> AgentCreated:
        return await self._core.run(calls.create_agent(team_id, name))

    async def rotate_token(self, agent_id: int) -> TokenCreated:
        return await self._core.run(calls.rotate_agent_token(agent_id))

    async def me(self) -> AgentInfo:
        return await self._core.run(calls.agent_me())
