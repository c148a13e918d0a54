"""Real processes for the tests: a server subprocess (SQLite or PostgreSQL), agents, helpers."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from appyard.agent.proc import same_process

T = TypeVar("T")
APPS = Path(__file__).parent / "apps"
PG_ADMIN_DSN = os.environ.get("APPYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# short timings so that loss and reconnection show within seconds
TEST_ENV = {
    "APPYARD_AGENT_TTL_S": "4",
    "APPYARD_POLL_TIMEOUT_S": "2",
    "APPYARD_SWEEP_INTERVAL_S": "0.5",
}


def wait_for(cond: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Wait until ``cond()`` is truthy, checking often; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=2):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one server; dropped afterwards."""
    import psycopg

    name = f"appyard_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class ServerProc:
    """``python -m appyard.server`` on a free port, with its own APPYARD_HOME."""

    home: Path
    database_url: str | None = None
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    #: the address it listens on (``--host``): another one than loopback for agents that sit
    #: in a network of their own; a wildcard one is reached through 127.0.0.1
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def admin_token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    def start(self) -> ServerProc:
        env = {
            **os.environ,
            **TEST_ENV,
            "APPYARD_HOME": str(self.home),
            "APPYARD_ADMIN_TOKEN_FILE": str(self.home / "admin.token"),
            **self.extra_env,
        }
        if self.database_url:
            env["APPYARD_DATABASE_URL"] = self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appyard.server",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, 30, "the server to answer /health")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {self.proc.returncode}:\n{(self.home / 'server.log').read_text()}"
            )
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class AgentProc:
    """``python -m appyard.agent`` with its own work folder."""

    server_url: str
    token: str
    work_dir: Path
    slots: int = 2
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    #: the interpreter the agent runs on (its apps' too)
    python: str = sys.executable
    #: a command that execs the agent's (e.g. ``ip netns exec NAME``: an agent in a network
    #: namespace of its own); the process's pid stays the agent's
    wrapper: list[str] = field(default_factory=list)
    #: more of its environment (e.g. a test-only inventory file)
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> AgentProc:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.work_dir.parent / f"{self.work_dir.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                self.python,
                "-m",
                "appyard.agent",
                "--server",
                self.server_url,
                "--token",
                self.token,
                "--slots",
                str(self.slots),
                "--work-dir",
                str(self.work_dir),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **{k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "SERVER_ADDRESS")},
                **self.extra_env,
            },
        )
        return self

    @property
    def log_text(self) -> str:
        path = self.work_dir.parent / f"{self.work_dir.name}.log"
        return path.read_text() if path.exists() else ""

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill_left_apps(self) -> int:
        """Kill the apps of this agent's work folder that outlived it (apps survive their
        agent by design; a test whose agent could no longer be told to stop them, its token
        rotated say, would leave them running on the machine); how many were found."""
        found = 0
        for state_file in self.work_dir.glob("tasks/*/state.json"):
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(state_file.read_text())
                supervisor, app = state.get("supervisor_pid"), state.get("app_pid")
                # a sandboxed app dies with its supervisor (bubblewrap's --die-with-parent);
                # an app run as a user of its own leads its process group. Each only if its
                # pid still names the process the agent started (its start time)
                if same_process(supervisor, state.get("supervisor_start")):
                    found += 1
                    with contextlib.suppress(OSError):
                        os.kill(supervisor, signal.SIGKILL)
                if same_process(app, state.get("app_start")):
                    with contextlib.suppress(OSError):
                        os.killpg(app, signal.SIGKILL)
        # an app run as a user of its own outlives its supervisor, and its pid is not always
        # written down yet: any process running this agent's releases is one of its apps
        releases = f"{self.work_dir}/cache/releases/".encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if releases in Path(f"/proc/{entry}/cmdline").read_bytes():
                        found += 1
                        os.kill(int(entry), signal.SIGKILL)
        return found


@contextlib.contextmanager
def two_replicas(
    tmp_path: Path, extra_env: dict[str, str] | None = None, relay: bool = False
) -> Iterator[tuple[ServerProc, ServerProc]]:
    """Two server replicas on one fresh PostgreSQL database; b shares a's releases and files
    (object storage stands in for it). ``relay``: each knows its ``APPYARD_REPLICA_URL``."""
    with pg_database() as url:
        extra = dict(extra_env or {})
        a = ServerProc(tmp_path / "a", database_url=url, extra_env=dict(extra))
        b = ServerProc(
            tmp_path / "b", database_url=url, extra_env={**extra, "APPYARD_ADMIN_TOKEN_FILE": ""}
        )
        if relay:
            a.extra_env["APPYARD_REPLICA_URL"] = a.url
            b.extra_env["APPYARD_REPLICA_URL"] = b.url
        a.start()
        b.extra_env["APPYARD_HOME"] = str(tmp_path / "a")
        b.start()
        try:
            yield a, b
        finally:
            b.stop()
            a.stop()


def tar_of(files: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    """A gzipped tar of exactly ``files`` (name -> bytes) and empty ``folders``: an archive a
    test makes by hand, broken or odd on purpose."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in folders:
            folder = tarfile.TarInfo(name)
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
    return buf.getvalue()


def config_tar(config: dict[str, Any]) -> bytes:
    """An app archive of ``config`` as its config.json and an empty main.py."""
    return tar_of({"config.json": json.dumps(config).encode(), "main.py": b""})


def pack(folder: Path, overrides: dict[str, Any] | None = None) -> bytes:
    """A release archive of ``folder`` (config.json patched with ``overrides``).

    Byte-for-byte the same for the same content (no time in the gzip header either), so that
    publishing it twice is recognised as the same release.
    """
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts or path.is_dir():
                continue
            rel = path.relative_to(folder).as_posix()
            data = path.read_bytes()
            if rel == "config.json" and overrides:
                data = json.dumps({**json.loads(data), **overrides}).encode()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Client:
    """A thin raw-HTTP client for tests that check the wire (status codes, error bodies)."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def publish(self, folder: Path, **overrides: Any) -> dict[str, Any]:
        data = pack(folder, overrides)
        result: dict[str, Any] = self.ok(
            "POST", "/modules", files={"archive": ("app.tar.gz", data)}
        )
        return result


@dataclass
class World:
    """A team with a workspace, an admin client, and helpers to make agents and members."""

    server: ServerProc
    admin: Client
    team_id: int
    workspace_id: int
    tmp: Path
    agents: list[AgentProc] = field(default_factory=list)

    def new_agent_token(self, name: str = "agent") -> tuple[int, str]:
        created = self.admin.ok("POST", f"/teams/{self.team_id}/agents", json={"name": name})
        return int(created["id"]), str(created["token"])

    def start_agent(
        self,
        token: str,
        name: str = "agent",
        slots: int = 2,
        work_dir: Path | None = None,
        **kw: Any,
    ) -> AgentProc:
        folder = work_dir or self.tmp / f"agent-{name}"
        agent = AgentProc(self.server.url, token, folder, slots=slots, **kw)
        self.agents.append(agent.start())
        return agent

    def member(self, login: str, role: str) -> Client:
        self.admin.ok("POST", "/users", json={"login": login})
        self.admin.ok("POST", f"/teams/{self.team_id}/members", json={"login": login, "role": role})
        users = self.admin.ok("GET", "/users")
        uid = next(u["id"] for u in users if u["login"] == login)
        token = self.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})["token"]
        return Client(self.server.url, token)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for an SDK subprocess acting as the admin in this team."""
        return {
            **os.environ,
            "SERVER_ADDRESS": self.server.url,
            "API_TOKEN": self.admin.http.headers["Authorization"].split()[1],
            "TEAM_ID": str(self.team_id),
            "WORKSPACE_ID": str(self.workspace_id),
            **extra,
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``appyard ARGS...`` as the admin in this team: wide, plain output, and no env file
        or client variable of the machine's."""
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
        env.update(
            COLUMNS="300",
            NO_COLOR="1",
            APPYARD_ENV_FILE="/nonexistent/a.env",
            SERVER_ADDRESS=self.server.url,
            API_TOKEN=self.admin.http.headers["Authorization"].split()[1],
            TEAM_ID=str(self.team_id),
            WORKSPACE_ID=str(self.workspace_id),
        )
        return subprocess.run(
            [sys.executable, "-m", "appyard.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


#: variables an SDK or CLI process reads its server, token and ids from
CLIENT_VARS = ("SERVER_ADDRESS", "API_TOKEN", "TEAM_ID", "WORKSPACE_ID", "AGENT_ID", "TASK_ID")


class Up:
    """``appyard up`` as a child process with its output collected line by line."""

    def __init__(
        self,
        home: Path,
        env_file: Path,
        port: int,
        args: list[str] | None = None,
        slots: int = 2,
        **extra_env: str,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("SERVER_ADDRESS", "API_TOKEN")}
        env.update(extra_env)
        env.update(
            APPYARD_HOME=str(home),
            APPYARD_ENV_FILE=str(env_file),
            PYTHONUNBUFFERED="1",
            COLUMNS="200",
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appyard.cli",
                "up",
                "--port",
                str(port),
                "--slots",
                str(slots),
                *(args or []),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as in a terminal
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        # the first start also runs create-demo-project
        wait_for(self._up, 300, "appyard up to be ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("appyard up exited:\n" + "\n".join(self.lines))
        return any("appyard is up" in line for line in self.lines)

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(90)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def app_pids(task_id: int, server_url: str, mentioning: str = "", timeout: float = 30) -> list[int]:
    """The live pids of a task's app (bubblewrap's and its sandbox's among them when it runs
    sandboxed: an app inside sees only pids of its own namespace), once one of them has
    ``mentioning`` in its command line (by default: once there is any)."""

    def found() -> list[int]:
        pids = processes_of(task_id, server_url)
        if mentioning and not any(mentioning in _cmdline(p) for p in pids):
            return []
        return pids

    return wait_for(found, timeout, f"the processes of task {task_id}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes_of(task_id: int, server_url: str) -> list[int]:
    """Live pids whose environment says they belong to this task of this server."""
    marks = (f"TASK_ID={task_id}".encode(), f"SERVER_ADDRESS={server_url}".encode())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(m in env for m in marks) and alive(int(entry)):
            found.append(int(entry))
    return found
