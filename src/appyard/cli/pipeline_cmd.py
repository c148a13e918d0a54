"""``appyard pipeline ...``: check a pipeline file, run it (with a live per-step view), list
saved pipelines and runs, show a run's graph, stop and resume runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from appyard.cli._common import (
    TEAM_HELP,
    WORKSPACE_HELP,
    console,
    err_console,
    fmt_time,
    get_api,
    parse_value,
    print_json,
    split_pair,
    team_id,
    workspace_id,
)
from appyard.domain.pipeline import (
    CycleError,
    Problem,
    RunState,
    StepState,
    topological_order,
)
from appyard.errors import BadRequestError, InvalidArgumentsError, NotFoundError
from appyard.schemas.manifest import Manifest
from appyard.schemas.pipeline import PipelineDoc, load_document, parse_problems
from appyard.schemas.pipeline_check import AppMissing, Catalog, catalog_of, check_pipeline
from appyard.schemas.pipeline_runs import PipelineInfo, RunInfo, StepInfo
from appyard.sdk import Api
from appyard.sdk.pipeline_api import run_ended, task_ids

pipeline_app = typer.Typer(
    help="Pipelines: apps chained into a graph the server runs.", no_args_is_help=True
)

EXIT_ERROR = 1
EXIT_STOPPED = 2
#: ``appyard pipeline validate`` found problems
EXIT_INVALID = 1

RUN_STYLE = {
    RunState.FINISHED: "green",
    RunState.ERROR: "red",
    RunState.STOPPED: "yellow",
    RunState.TERMINATING: "yellow",
}
STEP_STYLE = {
    StepState.FINISHED: "green",
    StepState.ERROR: "red",
    StepState.STOPPED: "yellow",
    StepState.RETRYING: "yellow",
    StepState.SKIPPED: "dim",
    StepState.PENDING: "dim",
}
#: task ids shown per step (a fan-out may have thousands)
SHOWN_TASKS = 8

InputOption = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="An input: key=value (JSON values parse). Repeatable."),
]


def _run_text(status: RunState) -> Text:
    return Text(status.value, style=RUN_STYLE.get(status, "cyan"))


def _step_text(step: StepInfo) -> Text:
    return Text(step.state.value, style=STEP_STYLE.get(step.state, "cyan"))


# -- reading a pipeline file -------------------------------------------------------------------


def _read_file(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"File not found: '{path}'")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgumentsError(f"{path}: not UTF-8 text ({e})") from None


def _inputs(raw: list[str] | None, declared: dict[str, Any]) -> dict[str, Any]:
    """``--input k=v`` values: JSON when it parses, kept as text when the input's default is
    a string (``--input name=123`` stays ``"123"``)."""
    out: dict[str, Any] = {}
    for item in raw or []:
        key, value = split_pair(item, "--input")
        spec = declared.get(key)
        default = spec.get("default") if isinstance(spec, dict) else None
        out[key] = parse_value(value, default)
    return out


def _print_problems(source: str, problems: list[Problem]) -> None:
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    err_console.print(Text.assemble((f"{source}: ", "bold"), (count, "red")))
    for p in problems:
        err_console.print(
            Text.assemble("  ", (p.at or "(the document)", "bold"), ": ", p.reason),
            soft_wrap=True,
        )


def _server_problems(exc: BadRequestError) -> list[Problem]:
    raw = exc.details.get("problems") if exc.details else None
    if isinstance(raw, list) and raw:
        return [
            Problem(str(p.get("at", "")), str(p.get("reason", "")))
            for p in raw
            if isinstance(p, dict)
        ]
    return [Problem(exc.field or "", exc.message)]


@contextlib.contextmanager
def _refusals(source: str) -> Iterator[None]:
    """A 422 of a document: each problem on its line, exit 1."""
    try:
        yield
    except BadRequestError as exc:
        _print_problems(source, _server_problems(exc))
        raise typer.Exit(EXIT_INVALID) from None


def _catalog(api: Api) -> Catalog:
    """The catalog as the caller's team sees it, read through the API."""

    def lookup(slug: str, version: str | None) -> Manifest | AppMissing:
        try:
            module_id = api.module.lookup(slug)
        except NotFoundError:
            return AppMissing(f"no app {slug!r} in the catalog (`appyard app list`)")
        try:
            return api.module.get(module_id, version).manifest
        except NotFoundError:
            return AppMissing(f"app {slug!r} has no version {version!r}", at="version")

    return catalog_of(lookup)


@pipeline_app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="The pipeline file (YAML or JSON).")],
    input_: InputOption = None,
    server: Annotated[
        bool,
        typer.Option(
            "--server",
            help="Also check each app against the server's catalog (it exists, the version "
            "exists, params and target fit its manifest).",
        ),
    ] = False,
) -> None:
    """Check a pipeline file: every problem, with where it is (exit 1 if any)."""
    text = _read_file(file)
    with _refusals(str(file)):
        raw = load_document(text)
    doc, problems = parse_problems(raw)
    if doc is None:
        _print_problems(str(file), problems)
        raise typer.Exit(EXIT_INVALID)
    declared = {k: v.model_dump(exclude_unset=True) for k, v in doc.inputs.items()}
    given = _inputs(input_, declared) if input_ else None
    if server:
        with get_api() as api:
            problems = check_pipeline(doc, inputs=given, catalog=_catalog(api))
    else:
        problems = check_pipeline(doc, inputs=given)
    if problems:
        _print_problems(str(file), problems)
        raise typer.Exit(EXIT_INVALID)
    where = " and the server's catalog" if server else ""
    console.print(
        f"[green]ok[/green] {escape(doc.name)}: {len(doc.steps)} steps, "
        f"{len(doc.inputs)} inputs; no problem found in the document{where}."
    )


# -- showing a run -----------------------------------------------------------------------------


def _ordered(run: RunInfo) -> list[StepInfo]:
    """The steps after the steps they need (document order among the free ones)."""
    by_id = {s.id: s for s in run.steps}
    try:
        order = topological_order({s.id: s.needs for s in run.steps})
    except CycleError:
        return list(run.steps)
    return [by_id[i] for i in order]


def _tasks(step: StepInfo) -> str:
    ids = task_ids(step)
    if not ids:
        return "-"
    shown = ", ".join(str(t) for t in ids[:SHOWN_TASKS])
    if len(ids) > SHOWN_TASKS:
        shown += f", … ({len(ids)} in all)"
    return shown


def _items(step: StepInfo) -> str:
    c = step.items
    if c is None:
        return ""
    parts = [f"{c.finished}/{c.total} done"]
    if c.running:
        parts.append(f"{c.running} running")
    if c.error:
        parts.append(f"{c.error} failed")
    return ", ".join(parts)


def _short(text: str) -> str:
    """An error in a cell: its first line, and its last one (an app's last log line says
    most) when it has more."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} … {lines[-1]}"


def _reason(step: StepInfo) -> str:
    """Why a step was skipped or failed; for a step retrying, its last attempt's error."""
    if step.reason:
        return _short(step.reason)
    if step.state in (StepState.FINISHED, StepState.PENDING, StepState.RUNNING):
        return ""
    failed = [a.error for a in step.attempts if a.error]
    return _short(failed[-1]) if failed else ""


def steps_table(run: RunInfo) -> Table:
    """The run's steps in the order they can run, each with its needs, state, attempts, task
    ids and why it failed or was skipped."""
    table = Table("STEP", "NEEDS", "APP", "STATE", "ATTEMPTS", "TASKS", "ITEMS", "REASON")
    for step in _ordered(run):
        table.add_row(
            step.id,
            ", ".join(step.needs) or "-",
            step.app,
            _step_text(step),
            str(len(step.attempts)),
            _tasks(step),
            _items(step),
            Text(_reason(step)),
        )
    return table


def run_header(run: RunInfo) -> Text:
    version = f" (version {run.pipeline_version})" if run.pipeline_version else ""
    text = Text.assemble(
        (f"Run {run.id}", "bold"),
        f" of {run.pipeline_name}{version}: ",
        _run_text(run.status),
    )
    if run.error:
        text.append(f" ({_short(run.error)})", style="red")
    return text


def run_view(run: RunInfo) -> Group:
    return Group(run_header(run), steps_table(run))


def follow(api: Api, run: RunInfo) -> RunInfo:
    """A live per-step view of the run until it ends (pushed by the server); the run then.

    An interrupt leaves the run going (the server runs it) and says how to look at it again.
    """
    last = run
    with Live(run_view(run), console=console, auto_refresh=False, transient=False) as live:
        try:
            for snapshot in api.pipeline.watch(run.id):
                last = snapshot
                live.update(run_view(snapshot), refresh=True)
        except KeyboardInterrupt:
            live.stop()
            err_console.print(
                f"Stopped watching; run {run.id} goes on on the server. "
                f"Look again: appyard pipeline show {run.id} --follow"
            )
            raise typer.Exit(130) from None
    if not console.is_terminal:
        console.line()  # a terminal's Live ends its last line itself
    if not run_ended(last):  # the stream ended early: read where it stands
        last = api.pipeline.get_run(run.id)
    return last


def exit_for(run: RunInfo) -> None:
    """Exit 0 when the run finished, 1 when it ended error, 2 when stopped."""
    if run.status is RunState.ERROR:
        raise typer.Exit(EXIT_ERROR)
    if run.status is RunState.STOPPED:
        raise typer.Exit(EXIT_STOPPED)


# -- commands ----------------------------------------------------------------------------------


def _source(api: Api, pipeline: str) -> tuple[Path | int, dict[str, Any], str]:
    """A file, or a saved pipeline's id: what to run, its declared inputs, how to name it."""
    path = Path(pipeline)
    if not path.exists() and pipeline.isdigit():
        info = api.pipeline.get(int(pipeline))
        return info.id, dict(info.inputs), f"pipeline {info.id}"
    text = _read_file(path)
    declared: dict[str, Any] = {}
    with contextlib.suppress(BadRequestError):
        doc = PipelineDoc.parse(load_document(text))
        declared = {k: v.model_dump(exclude_unset=True) for k, v in doc.inputs.items()}
    return path, declared, str(path)


@pipeline_app.command()
def run(
    pipeline: Annotated[
        str, typer.Argument(help="The pipeline file (YAML or JSON), or a saved pipeline's id.")
    ],
    input_: InputOption = None,
    workspace: Annotated[int | None, typer.Option(help=WORKSPACE_HELP)] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show each step live until the run ends.")
    ] = False,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Idempotency key: the same key twice starts one run (for scripts)."
        ),
    ] = None,
) -> None:
    """Run a pipeline; with --wait, each step live (exit 1 on error, 2 if stopped)."""
    with get_api() as api:
        source, declared, name = _source(api, pipeline)
        inputs = _inputs(input_, declared)
        with _refusals(name):
            started = api.pipeline.run(source, workspace_id(workspace), inputs, key)
        console.print(
            Text.assemble(
                "Started ",
                (f"run {started.id}", "bold"),
                f" of {started.pipeline_name}: {len(started.steps)} steps",
            )
        )
        if not wait:
            console.print(
                f"Follow it: appyard pipeline show {started.id} --follow  |  "
                f"appyard pipeline stop {started.id}",
                markup=False,
            )
            return
        ended = follow(api, started)
    exit_for(ended)


@pipeline_app.command()
def show(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep the view live until the run ends.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """A run's steps in the order they run: needs, state, attempts, task ids, reasons."""
    with get_api() as api:
        found = api.pipeline.get_run(run_id)
        if as_json:
            print_json(found.model_dump(mode="json"))
            return
        if not follow_:
            console.print(run_view(found))
            _print_times(found)
            return
        ended = follow(api, found)
    exit_for(ended)


def _print_times(run: RunInfo) -> None:
    console.print(
        f"created {fmt_time(run.created_at)}, started {fmt_time(run.started_at)}, "
        f"ended {fmt_time(run.ended_at)}; workspace {run.workspace_id}",
        style="dim",
    )
    if run.inputs:
        console.print(
            "inputs: " + ", ".join(f"{k}={v!r}" for k, v in run.inputs.items()), markup=False
        )


@pipeline_app.command()
def stop(run_id: Annotated[int, typer.Argument(help="Run id.")]) -> None:
    """Stop a run: its running steps' sessions stop, its pending steps are skipped."""
    with get_api() as api:
        stopped = api.pipeline.stop(run_id)
    console.print(Text.assemble(f"Run {run_id}: ", _run_text(stopped.status)))


@pipeline_app.command()
def resume(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Show each step live until the run ends.")
    ] = False,
) -> None:
    """Run again what did not finish in a run that ended error or stopped."""
    with get_api() as api:
        resumed = api.pipeline.resume(run_id)
        console.print(Text.assemble(f"Run {run_id}: ", _run_text(resumed.status)))
        if not wait:
            return
        ended = follow(api, resumed)
    exit_for(ended)


@pipeline_app.command("ls")
def ls(
    name: Annotated[str | None, typer.Option(help="Only the versions of this pipeline.")] = None,
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
) -> None:
    """List the team's saved pipelines."""
    with get_api() as api:
        found = api.pipeline.list(team_id(team), name)
    console.print(pipelines_table(found))


def pipelines_table(found: list[PipelineInfo]) -> Table:
    table = Table("ID", "NAME", "VERSION", "STEPS", "INPUTS", "CREATED")
    for p in found:
        steps = p.document.get("steps")
        table.add_row(
            str(p.id),
            p.name,
            str(p.version),
            str(len(steps)) if isinstance(steps, list) else "-",
            ", ".join(p.inputs) or "-",
            fmt_time(p.created_at),
        )
    return table


@pipeline_app.command()
def runs(
    status: Annotated[
        list[RunState] | None, typer.Option("--status", help="Only these statuses (repeatable).")
    ] = None,
    pipeline: Annotated[
        int | None, typer.Option("--pipeline", help="Only runs of this saved pipeline (id).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only runs of pipelines of this name.")] = None,
    team: Annotated[int | None, typer.Option(help=TEAM_HELP)] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
) -> None:
    """List the team's pipeline runs, newest first."""
    with get_api() as api:
        found = api.pipeline.list_runs(team_id(team), status or None, pipeline, name, limit)
    console.print(runs_table(found))


def runs_table(found: list[RunInfo]) -> Table:
    table = Table("RUN", "PIPELINE", "VERSION", "STATUS", "STEPS DONE", "CREATED", "ENDED")
    for r in found:
        done = sum(s.state is StepState.FINISHED for s in r.steps)
        table.add_row(
            str(r.id),
            r.pipeline_name,
            str(r.pipeline_version) if r.pipeline_version is not None else "-",
            _run_text(r.status),
            f"{done}/{len(r.steps)}",
            fmt_time(r.created_at),
            fmt_time(r.ended_at),
        )
    return table
