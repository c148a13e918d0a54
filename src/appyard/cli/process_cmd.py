"""``appyard server`` and ``appyard up``: the commands that start long-running processes.

The CLI never imports ``appyard.server`` (import-linter forbids it): the server runs as its
own program, ``python -m appyard.server``, in this process (``server``) or in a child (``up``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from dotenv import dotenv_values, set_key, unset_key
from rich.console import Console

from appyard.agent.exit_codes import meaning as agent_exit_meaning
from appyard.cli._common import console, err_console, exit_with, home_dir
from appyard.cli.agent_cmd import AGENT_TOKEN_ENV, LABEL_HELP, agent_argv, check_labels
from appyard.cli.children import (
    MAX_RESTARTS,
    RESTART_WINDOW_S,
    Child,
    wait_any,
    wait_for_server,
)
from appyard.cli.demo_project import ensure_demo_project
from appyard.domain.status import ON_AGENT
from appyard.errors import AppyardError, AuthenticationError, TaskFinishedWithError
from appyard.sdk import Api
from appyard.sdk.api import default_env_file

SERVER_MODULE = "appyard.server"  # `python -m appyard.server`: uvicorn with clean shutdown
DEFAULT_PORT = 8080
STATE_FILE = "up.json"
ADMIN_TOKEN_FILE = "admin-token"
AGENT_STOP_TIMEOUT_S = 60.0  # the agent stops its apps first (each has a grace period)
SERVER_STOP_TIMEOUT_S = 15.0
HEALTH_TIMEOUT_S = 120.0  # first start runs the migrations
#: variables of the caller's shell that must not leak into the agent and its apps
_CLIENT_VARS = (
    "SERVER_ADDRESS",
    "API_TOKEN",
    "TEAM_ID",
    "WORKSPACE_ID",
    "AGENT_ID",
    "TASK_ID",
    "USER_ID",
    "PROJECT_ID",
    "DATASET_ID",
    "MODAL_STATE",
    "CONTEXT",
)


def server(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    home: Annotated[
        Path | None, typer.Option(help="Data folder (default: APPYARD_HOME or ~/.appyard).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    fd: Annotated[
        int | None,
        typer.Option(help="Serve on this already bound socket (a service manager's), not a port."),
    ] = None,
) -> None:
    """Run the appyard server in the foreground (settings from APPYARD_* variables)."""
    if home is not None:
        os.environ["APPYARD_HOME"] = str(home.expanduser())
    # the server is its own program (the CLI never imports it): become that process
    argv = [sys.executable, "-m", SERVER_MODULE, "--host", host, "--port", str(port)]
    if fd is not None:
        argv += ["--fd", str(fd)]
    os.execv(sys.executable, [*argv, "--log-level", log_level])


# -- appyard up --------------------------------------------------------------------------------


@dataclass
class UpState:
    """What ``up`` keeps in APPYARD_HOME/up.json so that the next start reuses it."""

    admin_token: str | None = None
    team_id: int | None = None
    workspace_id: int | None = None
    agent_id: int | None = None
    agent_token: str | None = None
    project_id: int | None = None  # the demo images project, made once

    @classmethod
    def load(cls, path: Path) -> UpState:
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)


#: Ctrl-C, a service manager's stop, and the terminal going away all stop ``up`` cleanly
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Shutdown(Exception):
    """Raised from the signal handler to leave the wait for the children."""


def _listen(host: str, port: int) -> socket.socket:
    """Bind the port here, then hand it to uvicorn: a request waits in the backlog until the
    server is ready (no polling for it), and a busy port is a clear error up front."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        exit_with(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port")
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _bundled_apps() -> list[Path]:
    root = Path(str(resources.files("appyard") / "ecosystem"))
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file())


def _admin_api(address: str, state: UpState, token_file: Path) -> Api:
    """A client with a working admin token: the saved one, else the one the server wrote."""
    candidates = [state.admin_token]
    if token_file.is_file():
        candidates.append(token_file.read_text().strip())
    for token in candidates:
        if not token:
            continue
        api = Api(address, token)
        try:
            api.user.me()
        except AuthenticationError:
            api.close()
            continue
        if token != state.admin_token:  # a fresh database: the saved ids mean nothing
            state.team_id = state.workspace_id = state.agent_id = state.project_id = None
            state.agent_token = None
            state.admin_token = token
        return api
    exit_with(
        f"no working admin token: the database in {home_dir()} has users, but neither "
        f"{STATE_FILE} nor {ADMIN_TOKEN_FILE} holds a valid token. Use another APPYARD_HOME, or "
        "write an admin's token into "
        f"{token_file}."
    )
    raise AssertionError  # exit_with raised


def _bootstrap(api: Api, state: UpState, state_path: Path) -> None:
    """One team, one workspace and one agent, created once and then reused."""
    teams = api.team.get_list()
    if state.team_id not in {t.id for t in teams}:
        team = teams[0] if teams else api.team.create("main")
        state.team_id, state.workspace_id, state.agent_id = team.id, None, None
        state.save(state_path)
    assert state.team_id is not None
    spaces = api.workspace.get_list(state.team_id)
    if state.workspace_id not in {w.id for w in spaces}:
        space = spaces[0] if spaces else api.workspace.create(state.team_id, "default")
        state.workspace_id = space.id
        state.save(state_path)
    agents = {a.id: a.name for a in api.agent.get_list(state.team_id)}
    if state.agent_id not in agents or not _agent_token_works(api, state.agent_token):
        # a name of its own in the team (the server refuses a taken one): local-HOST, -2, ...
        base = f"local-{socket.gethostname()}"[:90]
        taken = set(agents.values())
        name = next(n for i in range(1, len(taken) + 2) if (n := _nth(base, i)) not in taken)
        created = api.agent.create(state.team_id, name)
        state.agent_id, state.agent_token = created.id, created.token
        state.save(state_path)


def _nth(base: str, i: int) -> str:
    return base if i == 1 else f"{base}-{i}"


def _agent_token_works(api: Api, token: str | None) -> bool:
    """A stored agent token still valid (it may have been revoked, or the database reset)."""
    if not token:
        return False
    with Api(api.server_address, token) as agent_api:
        try:
            agent_api.agent.me()
        except AuthenticationError:
            return False
    return True


def _publish_bundled(api: Api, out: Console) -> None:
    for folder in _bundled_apps():
        try:
            result = api.module.publish(folder)
        except AppyardError as exc:
            err_console.print(f"[yellow]warning:[/yellow] could not publish {folder.name}: {exc}")
            continue
        verb = "published" if result.created else "up to date"
        out.print(f"  app {result.slug} {result.release.version}: {verb}")


def _stop_apps(api: Api, state: UpState, timeout: float) -> None:
    """Stop the local agent's sessions through the server, so they end as ``stopped``.

    The server tells the agent at once (its poll), the agent stops each app with the stop
    protocol (SIGTERM, grace, SIGKILL) and reports it; ``wait`` is pushed the change.
    """
    if state.team_id is None or state.agent_id is None:
        return
    try:
        tasks = [
            t
            for t in api.task.get_list(state.team_id, statuses=sorted(ON_AGENT))
            if t.agent_id == state.agent_id
        ]
        if not tasks:
            return
        err_console.print(f"stopping {len(tasks)} running app(s)...")
        for t in tasks:
            api.task.stop(t.id)
        deadline = time.monotonic() + timeout
        for t in tasks:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(TaskFinishedWithError):
                api.task.wait(t.id, wait_attempts=1, wait_attempt_timeout_sec=remaining)
    except AppyardError as exc:
        err_console.print(f"could not stop every app through the server ({exc}); the agent will")


def _write_env_file(address: str, state: UpState) -> Path:
    path = default_env_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    values: dict[str, Any] = {
        "SERVER_ADDRESS": address,
        "API_TOKEN": state.admin_token,
        "TEAM_ID": state.team_id,
        "WORKSPACE_ID": state.workspace_id,
        "AGENT_ID": state.agent_id,
    }
    for key, value in values.items():
        set_key(str(path), key, str(value), quote_mode="never")
    # no demo project (it could not be made): no stale id of an earlier database either
    if state.project_id is not None:
        set_key(str(path), "PROJECT_ID", str(state.project_id), quote_mode="never")
    elif "PROJECT_ID" in dotenv_values(path):
        unset_key(str(path), "PROJECT_ID", quote_mode="never")
    return path


@contextlib.contextmanager
def _signals_raise() -> Iterator[Callable[[], None]]:
    """SIGINT/SIGTERM/SIGHUP leave whatever ``up`` is doing; once stopping (``calm()``), they only
    say so, so that the agent can stop its apps and nothing is left behind."""

    def stopping(signum: int, frame: FrameType | None) -> None:
        err_console.print("still stopping: the agent is stopping its apps; please wait")

    def calm() -> None:
        for s in _STOP_SIGNALS:
            signal.signal(s, stopping)

    def handler(signum: int, frame: FrameType | None) -> None:
        calm()
        raise _Shutdown(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    try:
        yield calm
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class Local:
    """A running local appyard: its admin client, what ``up`` keeps, and its processes."""

    api: Api
    state: UpState
    state_path: Path
    address: str
    home: Path
    server: Child
    agent: Child
    reason: str = "done"  # said when it shuts down
    #: on the way out, leave the apps running for the next ``up`` to re-adopt
    keep_apps: bool = False

    def supervise(self) -> str:
        """Run until the server or the agent keeps failing; a crashed one is started again.

        A dead agent's apps run on under their supervisors and the new agent re-adopts them;
        a dead server loses nothing (its state is in the database). Returns why it gave up.
        """
        while True:
            child, code = wait_any([self.server, self.agent])
            if not child.may_restart():
                self.keep_apps = True  # not a deliberate stop: the apps are not ours to end
                return (
                    f"{child.exit_text(code)}, {MAX_RESTARTS + 1} times within "
                    f"{RESTART_WINDOW_S:g} s; giving up. Running apps keep running; the next "
                    "appyard up re-adopts them"
                )
            err_console.print(
                f"[yellow]{child.exit_text(code)}; starting it again[/yellow]"
                + (" (running apps keep running)" if child is self.agent else "")
            )
            child.start()


@contextlib.contextmanager
def running_appyard(
    home: Path,
    host: str,
    port: int,
    slots: int,
    *,
    quiet: bool = False,
    keep_apps: bool = False,
    labels: Sequence[str] = (),
) -> Iterator[Local]:
    """Server, bundled apps and one agent, running for the ``with`` block; stopped after it.

    The first start creates an admin, a team, a workspace, an agent and the demo project, and
    keeps them in ``home/up.json`` for the next start. SIGINT/SIGTERM/SIGHUP leave the block
    (as :class:`_Shutdown`) and everything is stopped, apps first (with ``keep_apps``, or once
    :meth:`Local.supervise` gave up, the apps are left running for the next start to re-adopt).
    If this process dies instead (SIGKILL, out of memory), the server gets SIGTERM and the agent
    SIGHUP: both exit and the apps run on.
    """
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    state_path, token_file = home / STATE_FILE, home / ADMIN_TOKEN_FILE
    state = UpState.load(state_path)
    server: Child | None = None
    agent: Child | None = None
    api: Api | None = None
    out = err_console if quiet else console
    local: Local | None = None
    reason = "stopped"
    with _signals_raise() as calm, contextlib.ExitStack() as held:
        try:
            # kept open while up runs: a restarted server listens on the same socket
            sock = held.enter_context(_listen(host, port))
            port = sock.getsockname()[1]  # port 0: the kernel picked a free one
            address = f"http://{_client_host(host)}:{port}"
            server = Child(
                "server",
                [sys.executable, "-m", SERVER_MODULE, "--fd", str(sock.fileno())],
                {
                    **os.environ,
                    "APPYARD_HOME": str(home),
                    "APPYARD_ADMIN_TOKEN_FILE": str(token_file),
                },
                death_signal=signal.SIGTERM,
                pass_fds=[sock.fileno()],
                quiet=quiet,
                capture_stderr=True,
            )
            server.start()
            out.print(f"appyard server starting at {address} (data in {home})")
            wait_for_server(address, server, HEALTH_TIMEOUT_S)
            api = _admin_api(address, state, token_file)
            state.save(state_path)
            _bootstrap(api, state, state_path)
            out.print("bundled apps:")
            _publish_bundled(api, out)
            assert state.agent_token is not None
            agent_env = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
            agent_env.update({"APPYARD_HOME": str(home), AGENT_TOKEN_ENV: state.agent_token})
            # --stop-apps-on-exit: on SIGTERM; SIGHUP leaves them (see agent/command)
            run_args = agent_argv(
                address, slots, work_dir=None, stop_apps_on_exit=True, labels=labels
            )
            agent = Child(
                "agent",
                [sys.executable, "-m", "appyard.cli", "agent", "run", *run_args],
                agent_env,
                death_signal=signal.SIGHUP,
                quiet=quiet,
                explain_exit=agent_exit_meaning,  # a refused token does not read as a crash
            )
            agent.start()
            ensure_demo_project(api, state, lambda: state.save(state_path), out)
            local = Local(api, state, state_path, address, home, server, agent)
            local.keep_apps = keep_apps
            yield local
            reason = local.reason
        except _Shutdown as exc:
            reason = f"got {exc}"
            raise
        except AppyardError as exc:
            reason = f"error: {str(exc).splitlines()[0].removesuffix('; its last lines:')}"
            raise
        finally:
            calm()
            leave = local.keep_apps if local is not None else keep_apps
            err_console.print(f"shutting down ({reason})")
            if leave and agent is not None and agent.alive():
                err_console.print("leaving the running apps for the next appyard up to re-adopt")
                agent.stop(AGENT_STOP_TIMEOUT_S, signal.SIGHUP)
            if api is not None:
                both = server is not None and server.alive() and agent is not None
                if both and agent is not None and agent.alive():
                    _stop_apps(api, state, AGENT_STOP_TIMEOUT_S)
                api.close()
            if agent is not None:
                agent.stop(AGENT_STOP_TIMEOUT_S)  # --stop-apps-on-exit: any app left is stopped
            if server is not None:
                server.stop(SERVER_STOP_TIMEOUT_S)


#: how long ``up`` waits for its agent's hello to say how it runs apps
ISOLATION_WAIT_S = 10.0


def _isolation_line(local: Local) -> str:
    """How the local agent runs apps, once its hello said (``agent/sandbox.py``)."""
    deadline = time.monotonic() + ISOLATION_WAIT_S
    mode = None
    while mode is None and time.monotonic() < deadline and local.agent.alive():
        assert local.state.team_id is not None
        for a in local.api.agent.get_list(local.state.team_id):
            if a.id == local.state.agent_id and a.status == "online":
                mode = a.isolation
        if mode is None:
            time.sleep(0.1)  # once, at start: the agent's hello follows its sandbox probe
    if mode == "sandboxed":
        return "each in a sandbox of its own (bubblewrap)"
    if mode == "user":
        return (
            "[yellow]not sandboxed: each runs as an unprivileged user of its own "
            "(install bubblewrap for a sandbox)[/yellow]"
        )
    if mode == "none":
        return (
            "[bold red]NOT sandboxed: apps can read what this user can, tokens included "
            "(install bubblewrap; see docs/security.md)[/bold red]"
        )
    return "the agent has not said yet how it runs them (appyard agent list)"


def up(
    port: Annotated[int, typer.Option(help="Port of the server.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Interface the server listens on.")] = "127.0.0.1",
    slots: Annotated[int, typer.Option(min=1, help="Sessions the local agent runs at once.")] = 4,
    keep_apps: Annotated[
        bool,
        typer.Option(
            "--keep-apps",
            help="On Ctrl-C stop the server and the agent but leave the running apps; the next "
            "appyard up re-adopts them (for an upgrade).",
        ),
    ] = False,
    label: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", help=f"The local agent: {LABEL_HELP}", callback=check_labels
        ),
    ] = None,
) -> None:
    """Run a whole appyard here: server, bundled apps, one agent; Ctrl-C stops it all.

    The first start creates an admin, a team, a workspace, an agent and a demo images project,
    and keeps them in APPYARD_HOME (default ~/.appyard) for the next start. It writes
    SERVER_ADDRESS, API_TOKEN, TEAM_ID, WORKSPACE_ID, AGENT_ID and PROJECT_ID to ~/appyard.env
    (or $APPYARD_ENV_FILE) for the SDK. A server or agent that crashes is started again; apps
    survive a crash of the agent or of up itself and are re-adopted.
    """
    code = 0
    try:
        with running_appyard(
            Path(home_dir()), host, port, slots, keep_apps=keep_apps, labels=label or ()
        ) as local:
            state = local.state
            env_file = _write_env_file(local.address, state)
            project = f", demo project {state.project_id}" if state.project_id else ""
            on_stop = (
                "running apps are left for the next appyard up"
                if keep_apps
                else "running apps are stopped first"
            )
            isolation = _isolation_line(local)
            console.print(
                f"\n[bold green]appyard is up[/bold green]\n"
                f"  web UI    {local.address}/  (sign in with API_TOKEN)\n"
                f"  API docs  {local.address}/docs\n"
                f"  team {state.team_id}, workspace {state.workspace_id}, "
                f"agent {state.agent_id}{project}\n"
                f"  apps      {isolation}\n"
                f"  credentials in {env_file} (SERVER_ADDRESS, API_TOKEN, TEAM_ID, "
                "WORKSPACE_ID, AGENT_ID, PROJECT_ID)\n"
                f"Press Ctrl-C to stop ({on_stop})."
            )
            local.reason = local.supervise()
            code = 1
    except _Shutdown:
        pass
    except AppyardError as exc:
        err_console.print(f"[red]appyard up failed:[/red] {exc}")
        code = 1
    raise typer.Exit(code)
