"""``appyard agent|user|token|team|workspace ...``: tenancy, tokens and agents."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table
from rich.text import Text

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

agent_app = typer.Typer(help="Agents: the machines that run sessions.", no_args_is_help=True)
user_app = typer.Typer(help="Users (instance admins manage them).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
team_app = typer.Typer(help="Teams and their members.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces of a team.", no_args_is_help=True)

AGENT_TOKEN_ENV = "APPYARD_AGENT_TOKEN"


# -- agents ------------------------------------------------------------------------------------


@agent_app.command("create")
def agent_create(
    name: Annotated[str, typer.Argument(help="A name for the agent (e.g. the machine's).")],
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
) -> None:
    """Register an agent; prints its token (only this once) and the command to run it."""
    with get_api() as api:
        created = api.agent.create(team_id(team), name)
        address = api.server_address
    console.print(f"Agent {created.name!r} created (id {created.id}, team {created.team_id}).")
    console.print("Its token, shown only this once:")
    console.print(Text(created.token, style="bold"))
    console.print("Run it on the machine that should run the apps:")
    console.print(
        Text(f"appyard agent run --server {address} --token {created.token}", style="cyan"),
        soft_wrap=True,
    )


@agent_app.command("list")
def agent_list(team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None) -> None:
    """List the team's agents with their status and load."""
    with get_api() as api:
        agents = api.agent.get_list(team_id(team))
    table = Table("ID", "NAME", "STATUS", "SLOTS", "RUNNING", "HOST", "VERSION", "LAST SEEN")
    for a in agents:
        table.add_row(
            str(a.id),
            a.name,
            Text(a.status, style="green" if a.status == "online" else "dim"),
            str(a.slots),
            str(a.running),
            a.hostname or "-",
            a.version or "-",
            fmt_time(a.last_seen_at),
        )
    console.print(table)


def agent_argv(
    server: str, slots: int, work_dir: Path | None, stop_apps_on_exit: bool
) -> list[str]:
    """The agent's arguments; the token goes by APPYARD_AGENT_TOKEN, not argv (``ps`` shows
    argv to every user of the machine)."""
    argv = ["--server", server, "--slots", str(slots)]
    if work_dir is not None:
        argv += ["--work-dir", str(work_dir)]
    if stop_apps_on_exit:
        argv.append("--stop-apps-on-exit")
    return argv


def _agent_entry() -> Callable[[list[str]], int | None] | None:
    """The agent's ``main(argv)``, when this install has the agent package."""
    for module_name in ("appyard.agent.command", "appyard.agent.loop"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name not in (module_name, "appyard.agent"):
                raise
            continue
        entry = getattr(module, "main", None)
        if callable(entry):
            return cast(Callable[[list[str]], int | None], entry)
    return None


@agent_app.command("run")
def agent_run(
    server: Annotated[str, typer.Option(envvar="SERVER_ADDRESS", help="The server's address.")],
    token: Annotated[
        str,
        typer.Option(
            envvar=AGENT_TOKEN_ENV,
            help=f"The agent's token from `agent create` (better: env {AGENT_TOKEN_ENV}).",
        ),
    ],
    slots: Annotated[int, typer.Option(min=1, help="Sessions it runs at once.")] = 4,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="Tasks and the release cache (default: $APPYARD_HOME/agent-<id>)."),
    ] = None,
    stop_apps_on_exit: Annotated[
        bool, typer.Option(help="Stop the running apps when the agent exits.")
    ] = False,
) -> None:
    """Run an agent in the foreground (its apps survive an agent restart)."""
    argv = agent_argv(server, slots, work_dir, stop_apps_on_exit)
    os.environ[AGENT_TOKEN_ENV] = token
    entry = _agent_entry()
    if entry is not None:
        raise typer.Exit(int(entry(argv) or 0))
    if importlib.util.find_spec("appyard.agent.__main__") is None:
        exit_with("this appyard install has no agent (appyard.agent is missing)")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: signals (SIGTERM from `appyard up`, Ctrl-C) reach the agent itself
    os.execv(sys.executable, [sys.executable, "-m", "appyard.agent", *argv])


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
    table = Table("ID", "LOGIN", "ADMIN", "CREATED")
    for u in users:
        table.add_row(str(u.id), u.login, "yes" if u.is_admin else "", fmt_time(u.created_at))
    console.print(table)


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
def token_list() -> None:
    """List your tokens (not their secrets)."""
    with get_api() as api:
        tokens = api.user.get_tokens()
    table = Table("ID", "NAME", "KIND", "CREATED")
    for t in tokens:
        table.add_row(str(t.id), t.name, t.kind, fmt_time(t.created_at))
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id.")]) -> None:
    """Revoke one of your tokens."""
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


@team_app.command("members")
def team_members(team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None) -> None:
    """List the team's members."""
    with get_api() as api:
        members = api.team.get_members(team_id(team))
    table = Table("USER", "LOGIN", "ROLE")
    for m in members:
        table.add_row(str(m.user_id), m.login, m.role)
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
