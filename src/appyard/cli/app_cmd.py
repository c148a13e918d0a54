"""``appyard app ...`` and ``appyard task ...``: the catalog and sessions from a terminal."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from appyard.cli._common import (
    TEAM_HELP,
    WORKSPACE_HELP,
    console,
    err_console,
    fmt_short_time,
    fmt_time,
    get_api,
    parse_value,
    print_json,
    split_pair,
    team_id,
    workspace_id,
)
from appyard.domain.status import Status
from appyard.domain.targets import TARGETS
from appyard.errors import InvalidArgumentsError, TaskFinishedWithError, WaitingTimeExceeded
from appyard.schemas.tasks import LogLine, TaskInfo
from appyard.sdk import Api
from appyard.sdk.archive import build_archive, read_manifest, sha256_hex
from appyard.sdk.module_info import ModuleInfo

app = typer.Typer(help="Apps of the ecosystem and their sessions.", no_args_is_help=True)
task_app = typer.Typer(help="Tasks (one run of an app).", no_args_is_help=True)

EXIT_ERROR = 1
EXIT_STOPPED = 2
EXIT_TIMEOUT = 124
STATUS_STYLE = {
    Status.FINISHED: "green",
    Status.ERROR: "red",
    Status.STOPPED: "yellow",
    Status.TERMINATING: "yellow",
}


def _status_text(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLE.get(status, "cyan"))


def _task_status_text(task: TaskInfo) -> Text:
    """The status, and ``ready`` when a serving app said it is ready for calls."""
    text = _status_text(task.status)
    if task.ready:
        text.append(" ready", style="green")
    return text


def _module(api: Api, slug_or_id: str, version: str | None = None) -> ModuleInfo:
    return api.module.get(api.module.resolve(slug_or_id), version)


@app.command("list")
def list_apps(
    q: Annotated[str | None, typer.Option(help="Search text.")] = None,
) -> None:
    """List the apps of the catalog."""
    with get_api() as api:
        modules = api.module.get_list(q=q)
    table = Table("ID")
    table.add_column("SLUG", no_wrap=True)
    for title in ("NAME", "VERSION", "TARGETS"):
        table.add_column(title)
    for m in modules:
        targets = ", ".join(m.get_context_menu_targets())
        table.add_row(str(m.id), m.slug, m.name, m.version or "-", targets)
    console.print(table)


@app.command()
def info(
    slug_or_id: Annotated[str, typer.Argument(help="App slug (owner/name) or module id.")],
    version: Annotated[str | None, typer.Option(help="Release version (default: newest).")] = None,
) -> None:
    """Show an app: its manifest, options, targets and releases."""
    with get_api() as api:
        module = _module(api, slug_or_id, version)
    console.print(f"[bold]{module.name}[/bold]  ({module.slug}, module {module.id})")
    description = module.manifest.description
    if description:
        console.print(description, markup=False)
    console.print(f"version: {module.version or '-'}")
    console.print()
    console.print(module.arguments_help_text(), markup=False, end="", soft_wrap=True)
    if module.releases:
        table = Table("VERSION", "SHA256", "SIZE", "PUBLISHED")
        for r in module.releases:
            table.add_row(
                str(r["version"]),
                str(r["sha256"])[:12],
                str(r["size"]),
                fmt_time(_parse_time(r["created_at"])),
            )
        console.print(table)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@app.command()
def publish(
    path: Annotated[Path, typer.Argument(help="The app folder (with config.json).")] = Path("."),
    team: Annotated[
        int | None,
        typer.Option("--team", help="The team a new app belongs to (default: your one team)."),
    ] = None,
    public: Annotated[
        bool | None,
        typer.Option(
            "--public/--private",
            help="Let every team see and run it, or only its own (instance admins only).",
        ),
    ] = None,
) -> None:
    """Publish an app folder as a release (the same content twice makes no new release)."""
    manifest = read_manifest(path)
    archive = build_archive(path)
    console.print(
        f"Packed {manifest['name']!r}: {len(archive)} bytes, sha256 {sha256_hex(archive)[:12]}"
    )
    with get_api() as api:
        result = api.module.publish_archive(archive, team_id=team, public=public)
    if result.created:
        console.print(
            f"[green]Published[/green] {result.slug} version {result.release.version} "
            f"(module {result.module_id})"
        )
    else:
        console.print(
            f"Already published: {result.slug} version {result.release.version} has this "
            f"content (module {result.module_id}); no new release."
        )


def _target(module: ModuleInfo, raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    name, sep, value = raw.partition("=")
    name = name.strip()
    known = TARGETS.get(name)
    if known is None or known.value_type is None:
        return {name: None}
    if not sep:
        raise InvalidArgumentsError(f"--target {name} needs a value: --target {name}=VALUE")
    if known.value_type is int:
        try:
            return {name: int(value)}
        except ValueError:
            raise InvalidArgumentsError(
                f"--target {name} takes an integer id, got {value!r}"
            ) from None
    return {name: value}


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def wait_and_report(
    api: Api, task_id: int, target: Status | None = None, timeout: float | None = None
) -> None:
    """Wait with a progress bar; exit 0 at the target or finished, else a failing code."""
    attempts = 1 if timeout is not None else None
    with _progress() as progress:
        bar = progress.add_task(f"task {task_id}", total=None)

        def show(task: TaskInfo) -> None:
            label = escape(f"task {task_id} [{task.status.value}]")
            p = task.progress
            if p is None:
                progress.update(bar, description=label)
                return
            if p.message:
                label += " " + escape(p.message)
            progress.update(bar, description=label, completed=p.current, total=p.total)

        try:
            if timeout is None:  # progress pushed by the server as it changes
                status = api.task.wait_watching(task_id, target, on_update=show)
            else:  # a budget: the long-poll wait keeps it
                status = api.task.wait(
                    task_id, target, attempts, timeout, on_update=show, max_poll_sec=1.0
                )
        except TaskFinishedWithError as exc:
            progress.stop()
            err_console.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_ERROR) from None
        except WaitingTimeExceeded:
            progress.stop()
            err_console.print(f"Task {task_id} is still running after {timeout:g} s.")
            raise typer.Exit(EXIT_TIMEOUT) from None
    console.print(Text.assemble(f"Task {task_id}: ", _status_text(status)))
    if status is Status.STOPPED and target is not Status.STOPPED:
        raise typer.Exit(EXIT_STOPPED)


@app.command()
def start(
    slug_or_id: Annotated[str, typer.Argument(help="App slug (owner/name) or module id.")],
    agent: Annotated[int | None, typer.Option(help="Agent id (default: any online agent).")] = None,
    workspace: Annotated[int | None, typer.Option(help=WORKSPACE_HELP)] = None,
    version: Annotated[str | None, typer.Option(help="Release version (default: newest).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="An option: key=value (JSON values parse)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Where it starts from: images_project=3, ecosystem, ...")
    ] = None,
    name: Annotated[str, typer.Option(help="Session name.")] = "run-from-cli",
    description: Annotated[str, typer.Option(help="Session description.")] = "",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the end, with progress.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after SECONDS.")
    ] = None,
    gpus: Annotated[
        int | None, typer.Option(help="GPUs it needs (instead of the app's resources.gpus).")
    ] = None,
    memory_mb: Annotated[
        int | None, typer.Option(help="Memory it needs, its limit (MB; instead of the app's).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="A label its agent must carry: key=value (repeatable)."),
    ] = None,
    queue_anyway: Annotated[
        bool,
        typer.Option("--queue-anyway", help="Queue it even if no agent could ever run it."),
    ] = False,
) -> None:
    """Start a session of an app; a session that cannot run yet says why it waits."""
    with get_api() as api:
        module = _module(api, slug_or_id, version)
        params = module.get_arguments(**_target(module, target))
        defaults = module.get_modal_window_arguments()
        for raw in param or []:
            key, value = split_pair(raw, "--param")
            params[key] = parse_value(value, defaults.get(key))
        resources: dict[str, object] = {}
        if gpus is not None:
            resources["gpus"] = gpus
        if memory_mb is not None:
            resources["memory_mb"] = memory_mb
        if label:
            resources["agent_labels"] = dict(split_pair(raw, "--label") for raw in label)
        session = api.app.start(
            agent_id=agent,
            workspace_id=workspace_id(workspace),
            module_id=module.id,
            app_version=version,
            params=params,
            task_name=name,
            description=description,
            resources=resources or None,
            queue_anyway=queue_anyway,
        )
        console.print(f"Started {module.slug}: task {session.task_id}")
        reason = api.task.get(session.task_id).wait_reason
        if reason:
            console.print(Text(f"It waits: {reason}", style="yellow"))
        if not wait:
            console.print(
                f"Follow it: appyard app wait {session.task_id}  |  appyard app logs {session.task_id} --follow"
            )
            return
        wait_and_report(api, session.task_id, timeout=timeout)


#: ``app wait --ready`` without ``--timeout``: in effect no limit
NO_LIMIT_S = 10.0**9


def wait_ready_and_report(api: Api, task_id: int, timeout: float | None) -> None:
    """Wait until the app is ready for calls; exit 0 then, 124 if it is still not ready after
    ``timeout``, 2 if it was stopped and 1 if it ended without being ready."""
    budget = NO_LIMIT_S if timeout is None else timeout
    if api.app.wait_until_ready_for_api_calls(task_id, 1, budget):
        console.print(Text.assemble(f"Task {task_id}: ", _status_text(Status.STARTED), " ready"))
        return
    task = api.task.get(task_id)
    if task.status in (Status.QUEUED, Status.CONSUMED, Status.STARTED):
        err_console.print(f"Task {task_id} is not ready for calls after {budget:g} s.")
        raise typer.Exit(EXIT_TIMEOUT)
    err_console.print(
        Text.assemble(
            f"Task {task_id} ended without being ready for calls: ", _status_text(task.status)
        )
    )
    stopped = task.status in (Status.STOPPED, Status.TERMINATING)
    raise typer.Exit(EXIT_STOPPED if stopped else EXIT_ERROR)


@app.command("wait")
def wait_cmd(
    task_id: Annotated[int, typer.Argument(help="Task id.")],
    timeout: Annotated[float | None, typer.Option(help="Give up after SECONDS (exit 124).")] = None,
    status: Annotated[
        Status | None, typer.Option(help="Return at this status (default: the end).")
    ] = None,
    ready: Annotated[
        bool,
        typer.Option(
            "--ready", help="Return once a serving app is ready for calls (it stays started)."
        ),
    ] = False,
) -> None:
    """Wait for a task with a progress bar; exit 1 on error, 2 if stopped, 124 on timeout."""
    if status is Status.DEPLOYED:
        raise typer.BadParameter(
            "no session becomes deployed: a serving app stays started and says separately "
            "that it is ready for calls; wait for that with --ready",
            param_hint="--status",
        )
    with get_api() as api:
        if ready:
            wait_ready_and_report(api, task_id, timeout)
        else:
            wait_and_report(api, task_id, status, timeout)


@app.command()
def stop(task_id: Annotated[int, typer.Argument(help="Task id.")]) -> None:
    """Ask a session to stop (SIGTERM, a grace period, then SIGKILL)."""
    with get_api() as api:
        status = api.app.stop(task_id)
    console.print(Text.assemble(f"Task {task_id}: ", _status_text(status)))


@app.command("request")
def request_cmd(
    task_id: Annotated[int, typer.Argument(help="Task id of a running serving app.")],
    method: Annotated[str, typer.Argument(help="The command its handler is registered as.")],
    data: Annotated[
        str, typer.Option("--data", "-d", help="The handler's state: a JSON object.")
    ] = "{}",
    context: Annotated[str, typer.Option(help="The request's context: a JSON object.")] = "{}",
    timeout: Annotated[float, typer.Option(help="Seconds the app has to answer.")] = 60,
    skip_response: Annotated[
        bool, typer.Option("--skip-response", help="Do not wait for the answer.")
    ] = False,
) -> None:
    """Send a request into a running session (api.task.send_request); prints its JSON answer."""
    state, ctx = _json_object(data, "--data"), _json_object(context, "--context")
    with get_api() as api:
        answer = api.task.send_request(
            task_id, method, state, ctx, skip_response=skip_response, timeout=timeout
        )
    print_json(answer)


def _json_object(raw: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object ({...})", param_hint=option)
    return value


@app.command()
def sessions(
    app_: Annotated[str | None, typer.Option("--app", help="App slug or module id.")] = None,
    status: Annotated[
        list[Status] | None, typer.Option("--status", help="Only these statuses (repeatable).")
    ] = None,
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
) -> None:
    """List sessions of the team, newest first."""
    with get_api() as api:
        module_id = api.module.resolve(app_) if app_ else None
        tasks = api.task.get_list(team_id(team), module_id, status or None, limit=limit)
    console.print(sessions_table(tasks))


#: from this many columns on, ``sessions_table`` shows every column; below, a narrower set
WIDE_SESSIONS = 120


def sessions_table(tasks: list[TaskInfo], width: int | None = None) -> Table:
    """Sessions as a table, one row each (``app sessions``, ``demo``).

    At ``width`` (default: the terminal's) below ``WIDE_SESSIONS`` columns, the module's
    version, the agent and the GPUs are left out, CPU and memory share one column, a started
    session ready for calls is just ``ready`` and progress is a percentage where it has a total,
    so that 80 columns keep ids, statuses, times and progress whole on a row's first line
    (names and figures fold).
    """
    wide = (console.width if width is None else width) >= WIDE_SESSIONS
    now = datetime.now().astimezone()
    table = Table()
    table.add_column("TASK" if wide else "ID", no_wrap=True)
    table.add_column("MODULE" if wide else "APP", no_wrap=True)
    if wide:
        table.add_column("VERSION", overflow="fold")
    table.add_column("NAME", overflow="fold")
    table.add_column("STATUS", no_wrap=True)
    if wide:
        table.add_column("AGENT", no_wrap=True)
        table.add_column("GPUS", overflow="fold")
        table.add_column("CPU", no_wrap=True)
        table.add_column("MEMORY", overflow="fold")
    else:
        table.add_column("USAGE", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("PROGRESS" if wide else "PROG", no_wrap=True)
    for t in tasks:
        cpu, memory = _usage_cells(t)
        if wide:
            gpus = ",".join(str(g.get("index")) for g in t.gpus) or "-"
            status = _task_status_text(t)
            middle: tuple[str, ...] = (str(t.agent_id or "-"), gpus, cpu, memory)
        else:
            status = Text("ready", style="green") if t.ready else _status_text(t.status)
            middle = (f"{cpu} {memory}" if t.usage is not None else "-",)
        table.add_row(
            str(t.id),
            str(t.module_id),
            *((t.version,) if wide else ()),
            t.name,
            status,
            *middle,
            fmt_short_time(t.created_at, now),
            _progress_cell(t, percent=not wide),
        )
    return table


def _progress_cell(t: TaskInfo, percent: bool) -> str:
    """``120/1000`` (``12%`` with ``percent``), ``120`` without a total, ``-`` before any."""
    p = t.progress
    if p is None:
        return "-"
    if p.total is None:
        return f"{p.current:g}"
    if percent:
        return f"{100 * p.current / p.total:.0f}%" if p.total else "-"
    return f"{p.current:g}/{p.total:g}"


def _usage_cells(t: TaskInfo) -> tuple[str, str]:
    """CPU and memory at the task's last usage sample ("-" before its first): ``12%``, ``350 MB``
    (``1.5 GB`` from 1000 MB on), with its GPU memory after a ``+`` where it has any."""
    u = t.usage
    if u is None:
        return "-", "-"

    def mb(v: float) -> str:
        return f"{v / 1024:.1f} GB" if v >= 1000 else f"{v:.0f} MB"

    memory = mb(u.memory_mb) + (f" + GPU {mb(u.gpu_memory_mb)}" if u.gpu_memory_mb else "")
    return f"{u.cpu_percent:.0f}%", memory


def _print_line(line: LogLine) -> None:
    style = {"error": "red", "warning": "yellow", "debug": "dim"}.get(line.level, "")
    console.print(
        Text.assemble((fmt_time(line.t), "dim"), " ", (f"{line.level:<7}", style), " ", line.text),
        soft_wrap=True,
    )


@app.command()
def logs(
    task_id: Annotated[int, typer.Argument(help="Task id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
    after: Annotated[int, typer.Option(help="Only lines after this sequence number.")] = 0,
) -> None:
    """Print a task's log (live with --follow)."""
    with get_api() as api:
        if follow:
            for line in api.task.follow_logs(task_id, after):
                _print_line(line)
            return
        for line in api.task.logs(task_id, after, limit=None):
            _print_line(line)


@task_app.command("info")
def task_info(task_id: Annotated[int, typer.Argument(help="Task id.")]) -> None:
    """Print the whole task record as JSON."""
    with get_api() as api:
        print_json(api.task.get_info_by_id(task_id))


@task_app.command("wait")
def task_wait(
    task_id: Annotated[int, typer.Argument(help="Task id.")],
    timeout: Annotated[float | None, typer.Option(help="Give up after SECONDS (exit 124).")] = None,
) -> None:
    """Same as ``appyard app wait``."""
    with get_api() as api:
        wait_and_report(api, task_id, None, timeout)
