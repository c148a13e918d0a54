"""``appyard agent create|list|rotate-token|run``: register agents, list them, run one in the foreground."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from appyard.cli._common import TEAM_HELP, console, fmt_time, get_api, team_id
from appyard.schemas.agents import AgentInfo, parse_labels

agent_app = typer.Typer(help="Agents: the machines that run sessions.", no_args_is_help=True)

AGENT_TOKEN_ENV = "APPYARD_AGENT_TOKEN"


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
    """List the team's agents with their status, load, machine (cores, memory, disk, GPUs)
    and labels."""
    with get_api() as api:
        agents = api.agent.get_list(team_id(team))
    table = Table(
        "ID",
        "NAME",
        "STATUS",
        "SLOTS",
        "RUNNING",
        "CPUS",
        "MEMORY",
        "DISK FREE",
        "GPUS",
        "LABELS",
        "HOST",
        "VERSION",
        "SANDBOX",
        "LAST SEEN",
    )
    for a in agents:
        table.add_row(
            str(a.id),
            a.name,
            Text(a.status, style="green" if a.status == "online" else "dim"),
            str(a.slots),
            str(a.running),
            str(a.cpus) if a.cpus is not None else "-",
            _memory(a),
            _size(a.disk_free_mb),
            _gpus(a),
            " ".join(f"{k}={v}" for k, v in sorted(a.labels.items())) or "-",
            a.hostname or "-",
            a.version or "-",
            _isolation(a.isolation),
            fmt_time(a.last_seen_at),
        )
    console.print(table)


def _size(mb: int | None) -> str:
    """MB as people read them: ``512 MB``, ``7.8 GB``, ``80 GB``, ``1.8 TB``."""
    if mb is None:
        return "-"
    if mb < 1024:
        return f"{mb} MB"
    for unit, scale in (("GB", 1024), ("TB", 1024 * 1024)):
        value = mb / scale
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def _memory(a: AgentInfo) -> str:
    """Total memory, and what is available now."""
    if a.memory_mb is None:
        return "-"
    if a.memory_available_mb is None:
        return _size(a.memory_mb)
    return f"{_size(a.memory_mb)} ({_size(a.memory_available_mb)} free)"


def _gpus(a: AgentInfo) -> str:
    """How many GPUs of each model (``2 x NVIDIA A100 (80 GB)``); ``0`` when it reported none."""
    if not a.gpus:
        return "0" if a.inventory_at is not None else "-"
    kinds: dict[tuple[str, int], int] = {}
    for g in a.gpus:
        kinds[(g.name, g.memory_mb)] = kinds.get((g.name, g.memory_mb), 0) + 1
    return "\n".join(f"{n} x {name} ({_size(mb)})" for (name, mb), n in kinds.items())


@agent_app.command("rotate-token")
def agent_rotate_token(
    agent: Annotated[int, typer.Argument(help="The agent's id (`appyard agent list`).")],
) -> None:
    """A new token for an agent (team admins); the old one stops working at once."""
    with get_api() as api:
        created = api.agent.rotate_token(agent)
        address = api.server_address
    console.print(f"Agent {agent}: the old token is revoked. The new one, shown only this once:")
    console.print(Text(created.token, style="bold"))
    console.print("Run the agent again with it:")
    console.print(
        Text(f"appyard agent run --server {address} --token {created.token}", style="cyan"),
        soft_wrap=True,
    )


def _isolation(mode: str | None) -> Text:
    """How the agent runs apps; ``none`` stands out: its apps see what its user sees."""
    if mode == "none":
        return Text("none (apps not sandboxed)", style="bold red")
    if mode == "user":
        return Text("user (apps run as a user of their own, not sandboxed)", style="yellow")
    return Text(mode or "-")


def agent_argv(
    server: str,
    slots: int,
    work_dir: Path | None,
    stop_apps_on_exit: bool,
    *,
    sandbox: bool | None = None,
    app_paths: Sequence[Path] = (),
    app_user: str | None = None,
    labels: Sequence[str] = (),
) -> list[str]:
    """The agent's arguments; the token goes by APPYARD_AGENT_TOKEN, not argv (``ps`` shows
    argv to every user of the machine). ``sandbox`` None: the agent's default."""
    argv = ["--server", server, "--slots", str(slots)]
    if work_dir is not None:
        argv += ["--work-dir", str(work_dir)]
    if stop_apps_on_exit:
        argv.append("--stop-apps-on-exit")
    if sandbox is not None:
        argv.append("--sandbox" if sandbox else "--no-sandbox")
    for path in app_paths:
        argv += ["--app-path", str(path)]
    if app_user is not None:
        argv += ["--app-user", app_user]
    for label in labels:
        argv += ["--label", label]
    return argv


def check_labels(labels: list[str] | None) -> list[str]:
    """Typer callback of ``--label``: each KEY=VALUE checked here, a clear usage error."""
    try:
        parse_labels(labels or [])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return labels or []


LABEL_HELP = (
    "A label of the agent, KEY=VALUE (e.g. gpu=a100, zone=eu), reported with its machine; "
    "repeat for more."
)


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
    sandbox: Annotated[
        bool | None,
        typer.Option(
            "--sandbox/--no-sandbox",
            help="Each app in a bubblewrap sandbox, or as --app-user when the agent runs as "
            "root without one (default: on, env APPYARD_AGENT_SANDBOX=0 turns it off).",
            show_default=False,
        ),
    ] = None,
    app_path: Annotated[
        list[Path] | None,
        typer.Option(help="A folder apps may ask to read in their sandbox; repeat for more."),
    ] = None,
    app_user: Annotated[
        str | None,
        typer.Option(
            envvar="APPYARD_AGENT_APP_USER",
            help="The user apps run as when the agent runs as root without a sandbox "
            "(default appyard-app, else nobody).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help=LABEL_HELP, callback=check_labels),
    ] = None,
) -> None:
    """Run an agent in the foreground (its apps survive an agent restart)."""
    # imported here, not at the top: every other ``appyard`` command would load the agent
    # (~35 ms) for nothing
    from appyard.agent.command import main as agent_main

    os.environ[AGENT_TOKEN_ENV] = token
    # in this process, not a child: signals (SIGTERM from `appyard up`, Ctrl-C) reach the agent
    argv = agent_argv(
        server,
        slots,
        work_dir,
        stop_apps_on_exit,
        sandbox=sandbox,
        app_paths=app_path or (),
        app_user=app_user,
        labels=label or (),
    )
    raise typer.Exit(agent_main(argv))
