"""``appyard user|token|team|workspace ...``: tenancy and tokens (agents: ``agent_cmd``)."""

from __future__ import annotations

from typing import Annotated, cast

import typer
from rich.table import Table

from appyard.cli._common import (
    TEAM_HELP,
    console,
    err_console,
    exit_with,
    fmt_time,
    get_api,
    team_id,
)
from appyard.schemas.accounts import Role
from appyard.sdk import Api

user_app = typer.Typer(help="Users (instance admins manage them).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
team_app = typer.Typer(help="Teams and their members.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces of a team.", no_args_is_help=True)


# -- users and tokens --------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    admin: Annotated[bool, typer.Option("--admin", help="An instance admin.")] = False,
    password: Annotated[
        bool, typer.Option("--password", help="Prompt for a password (else token-only).")
    ] = False,
) -> None:
    """Add a user (instance admin only)."""
    secret = None
    if password:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with get_api() as api:
        user = api.user.create(login, password=secret, is_admin=admin)
    console.print(
        f"User {user.login!r} created (id {user.id}{', admin' if user.is_admin else ''})."
    )
    console.print(f"Mint a token for it: appyard token create --user {user.id}")


@user_app.command("me")
def user_me() -> None:
    """Who the current token acts as."""
    with get_api() as api:
        me = api.user.me()
    console.print(
        f"{me.login} (id {me.id}{', admin' if me.is_admin else ''}) at {api.server_address}"
    )


@user_app.command("list")
def user_list() -> None:
    """List users (instance admin only)."""
    with get_api() as api:
        users = api.user.get_list()
    table = Table("ID", "LOGIN", "ADMIN", "DISABLED", "CREATED")
    for u in users:
        table.add_row(
            str(u.id),
            u.login,
            "yes" if u.is_admin else "",
            "yes" if u.disabled else "",
            fmt_time(u.created_at),
        )
    console.print(table)


def _user_id(api: Api, user: str) -> int:
    """A user given by id or by login (a login is looked up in the users list: admins only)."""
    if user.isdigit():
        return int(user)
    for u in api.user.get_list():
        if u.login == user:
            return u.id
    exit_with(f"No user with login {user!r} (`appyard user list`).", 1)
    raise AssertionError("unreachable")


@user_app.command("disable")
def user_disable(
    user: Annotated[str, typer.Argument(help="The user's login or id.")],
) -> None:
    """Disable a user (instance admin only): it signs in no more and every token of it dies."""
    with get_api() as api:
        info = api.user.disable(_user_id(api, user))
    console.print(f"User {info.login!r} (id {info.id}) disabled; its tokens are revoked.")


@user_app.command("enable")
def user_enable(
    user: Annotated[str, typer.Argument(help="The user's login or id.")],
) -> None:
    """Enable a disabled user again (its old tokens stay revoked: mint new ones)."""
    with get_api() as api:
        info = api.user.enable(_user_id(api, user))
    console.print(f"User {info.login!r} (id {info.id}) enabled.")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for.")] = "api",
    user: Annotated[int | None, typer.Option(help="For another user (admins only).")] = None,
) -> None:
    """Mint an API token; printed only this once."""
    with get_api() as api:
        created = api.user.create_token(name, user)
    err_console.print(f"Token {created.name!r} (id {created.id}), shown only this once:")
    console.print(created.token, markup=False)


@token_app.command("list")
def token_list(
    team: Annotated[
        int | None,
        typer.Option(
            help="Every live token of this team (team admins): members', agents', tasks'."
        ),
    ] = None,
) -> None:
    """List your tokens, or a team's (not their secrets)."""
    with get_api() as api:
        tokens = api.user.get_tokens(team)
    table = Table("ID", "NAME", "KIND", "OF", "CREATED")
    for t in tokens:
        of = (
            f"agent {t.agent_id}"
            if t.agent_id is not None
            else f"task {t.task_id}"
            if t.task_id is not None
            else f"user {t.user_id}"
        )
        table.add_row(str(t.id), t.name, t.kind, of, fmt_time(t.created_at))
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id.")]) -> None:
    """Revoke a token: one of yours, or (team admins) one of `token list --team`."""
    with get_api() as api:
        api.user.revoke_token(token_id)
    console.print(f"Token {token_id} revoked.")


# -- teams and workspaces ----------------------------------------------------------------------


@team_app.command("list")
def team_list() -> None:
    """Teams you are a member of."""
    with get_api() as api:
        teams = api.team.get_list()
    table = Table("ID", "NAME", "ROLE", "CREATED")
    for t in teams:
        table.add_row(str(t.id), t.name, t.role or "-", fmt_time(t.created_at))
    console.print(table)


@team_app.command("create")
def team_create(name: Annotated[str, typer.Argument(help="Team name.")]) -> None:
    """Create a team (you become its admin)."""
    with get_api() as api:
        team = api.team.create(name)
    console.print(f"Team {team.name!r} created (id {team.id}).")


@team_app.command("add-member")
def team_add_member(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    role: Annotated[str, typer.Option(help="admin, developer or viewer.")] = "developer",
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
) -> None:
    """Add a user to the team, or change its role."""
    if role not in ("admin", "developer", "viewer"):
        exit_with(f"--role must be admin, developer or viewer, not {role!r}", 2)
    with get_api() as api:
        member = api.team.add_member(team_id(team), login, cast(Role, role))
    console.print(f"{member.login} is {member.role} of team {team_id(team)}.")


@team_app.command("remove-member")
def team_remove_member(
    login: Annotated[str, typer.Argument(help="The member's login (or user id).")],
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
) -> None:
    """Take a user out of the team (team admins; a member may remove itself)."""
    tid = team_id(team)
    with get_api() as api:
        members = api.team.get_members(tid)
        match = [m for m in members if m.login == login or str(m.user_id) == login]
        if not match:
            exit_with(f"{login!r} is not a member of team {tid} (`appyard team members`).", 1)
        api.team.remove_member(tid, match[0].user_id)
    console.print(f"{match[0].login} is no longer a member of team {tid}.")


@team_app.command("members")
def team_members(team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None) -> None:
    """List the team's members."""
    with get_api() as api:
        members = api.team.get_members(team_id(team))
    table = Table("USER", "LOGIN", "ROLE")
    for m in members:
        table.add_row(str(m.user_id), m.login, m.role + (" (disabled)" if m.disabled else ""))
    console.print(table)


@workspace_app.command("list")
def workspace_list(team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None) -> None:
    """Workspaces of the team."""
    with get_api() as api:
        spaces = api.workspace.get_list(team_id(team))
    table = Table("ID", "NAME", "DESCRIPTION", "CREATED")
    for w in spaces:
        table.add_row(str(w.id), w.name, w.description, fmt_time(w.created_at))
    console.print(table)


@workspace_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
) -> None:
    """Create a workspace in the team."""
    with get_api() as api:
        space = api.workspace.create(team_id(team), name, description)
    console.print(f"Workspace {space.name!r} created (id {space.id}, team {space.team_id}).")
