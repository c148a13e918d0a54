"""The agent's work folder: what it must remember across its own restarts, on disk.

Layout (default root ``$APPYARD_HOME/agent-<agent_id>``, ``APPYARD_HOME`` = ``~/.appyard``)::

    agent.json                identity: agent id, server, a fingerprint of the token
    agent.lock                flock held by the running agent (one agent per folder)
    cache/releases/<sha256>/  extracted release archives (see cache.py)
    cache/venvs/<key>/        venvs built from an app's requirements
    tasks/<task_id>/
        state.json            written by the agent (see TaskState)
        pids.json             written by the supervisor when the app is spawned
        log.jsonl             written by the supervisor: one JSON line per output line
        exit.json             written by the supervisor when the app has ended
        supervisor.log        the supervisor's own stderr (empty unless it breaks)
        work/                 the app's cwd

Every JSON file is written whole to a temporary file and renamed into place, so a reader
(or an agent killed mid-write) never sees half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from appyard.agent import proc
from appyard.agent.supervisor.files import EXIT_NAME, LOG_NAME, PIDS_NAME
from appyard.errors import ConfigurationError

STATE_NAME = "state.json"
IDENTITY_NAME = "agent.json"


def appyard_home() -> Path:
    return Path(os.environ.get("APPYARD_HOME") or Path.home() / ".appyard")


def token_fingerprint(token: str) -> str:
    """Names the token without storing it: the work folder is found again by this."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    """tmp + rename: readers see the old file or the new one, never a part.

    One line, by the C encoder (``indent`` takes the pure-Python one), with one ``write``:
    the agent writes a task's state a few times per task.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    view = memoryview((json.dumps(data) + "\n").encode())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or not (yet) valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class TaskState:
    """The agent's notes on one task (``state.json``); the token is never written down."""

    task_id: int
    app_name: str = ""
    created_at: float = 0.0
    boot_id: str = ""
    stop_grace_s: float = 10.0
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    app_pid: int | None = None
    app_start: int | None = None
    #: the port the app was given (``APP_PORT``): the tunnel forwards requests to it
    app_port: int = 0
    log_offset: int = 0  # bytes of log.jsonl the server has acknowledged
    log_lines: int = 0  # lines the server stores of it (counted against the cap)
    #: the cap of the stored log (the manifest's ``log_limit``); 0: the default
    log_cap_lines: int = 0
    log_cap_bytes: int = 0
    started_reported: bool = False
    #: the app's end was reported: the server has moved the task on; the log may still ship
    end_reported: bool = False
    reported: bool = False  # the end was reported (or refused) and the log shipped: all done

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ExitInfo:
    """``exit.json`` as the supervisor wrote it."""

    exit_code: int
    ended_at: str | None
    stop_requested: bool
    killed: bool
    spawned: bool
    error: str | None
    #: the supervisor stopped the app for exceeding its memory limit (``error`` says so)
    over_limit: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExitInfo:
        return cls(
            exit_code=int(data["exit_code"]),
            ended_at=data.get("ended_at"),
            stop_requested=bool(data.get("stop_requested")),
            killed=bool(data.get("killed")),
            spawned=bool(data.get("spawned", True)),
            error=data.get("error"),
            over_limit=bool(data.get("over_limit")),
        )


class TaskDir:
    """Paths and files of one task's folder."""

    def __init__(self, path: Path, task_id: int) -> None:
        self.path = path
        self.task_id = task_id

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def log(self) -> Path:
        return self.path / LOG_NAME

    @property
    def exit_file(self) -> Path:
        return self.path / EXIT_NAME

    @property
    def pids_file(self) -> Path:
        return self.path / PIDS_NAME

    @property
    def state_file(self) -> Path:
        return self.path / STATE_NAME

    @property
    def supervisor_log(self) -> Path:
        return self.path / "supervisor.log"

    def load(self) -> TaskState | None:
        data = read_json(self.state_file)
        if not isinstance(data, dict):
            return None
        try:
            return TaskState.from_dict(data)
        except TypeError:
            return None

    def save(self, state: TaskState) -> None:
        write_json_atomic(self.state_file, vars(state))  # flat: no need of asdict's deep copy

    def exit_info(self) -> ExitInfo | None:
        data = read_json(self.exit_file)
        if not isinstance(data, dict):
            return None
        try:
            return ExitInfo.from_dict(data)
        except (KeyError, TypeError, ValueError):
            return None

    def pids(self) -> dict[str, Any]:
        data = read_json(self.pids_file)
        return data if isinstance(data, dict) else {}

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def fill_pids(self, state: TaskState) -> None:
        """Take pids the agent did not write down (it died right after launch) from pids.json."""
        pids = self.pids()
        for key in ("supervisor_pid", "supervisor_start", "app_pid", "app_start"):
            if getattr(state, key) is None and isinstance(pids.get(key), int):
                setattr(state, key, pids[key])


class Found(Enum):
    """What a scan of the work folder found for one task."""

    RUNNING = "running"  # the supervisor still runs: re-adopt
    ENDED = "ended"  # exit.json is there: ship the rest of the log, report the exit
    LOST = "lost"  # launched, but the supervisor is gone without exit.json
    UNLAUNCHED = "unlaunched"  # the agent died before it launched the app
    DONE = "done"  # already reported


@dataclass
class ScannedTask:
    dir: TaskDir
    state: TaskState
    found: Found


class WorkDirLocked(ConfigurationError):
    """Another agent process uses this work folder."""


class WorkDir:
    """The root of one agent's files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_fd: int | None = None

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def create(self) -> None:
        self.tasks.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)

    def lock(self) -> None:
        """Hold an exclusive flock for the life of this process (released by the kernel)."""
        self.create()
        fd = os.open(self.root / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkDirLocked(
                f"another agent already runs with the work folder {self.root}; stop it first "
                "or give this one its own --work-dir"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def identity(self) -> dict[str, Any]:
        data = read_json(self.root / IDENTITY_NAME)
        return data if isinstance(data, dict) else {}

    def write_identity(self, agent_id: int, server: str, token: str) -> None:
        write_json_atomic(
            self.root / IDENTITY_NAME,
            {"agent_id": agent_id, "server": server, "token": token_fingerprint(token)},
        )

    def task(self, task_id: int) -> TaskDir:
        return TaskDir(self.tasks / str(task_id), task_id)

    def iter_tasks(self) -> Iterator[TaskDir]:
        if not self.tasks.is_dir():
            return
        for entry in sorted(self.tasks.iterdir(), key=lambda p: p.name):
            if entry.is_dir() and entry.name.isdigit():
                yield TaskDir(entry, int(entry.name))

    def scan(self) -> list[ScannedTask]:
        """Classify every task folder; see ``Found``."""
        out: list[ScannedTask] = []
        for td in self.iter_tasks():
            state = td.load()
            if state is None:
                state = TaskState(task_id=td.task_id)
            out.append(ScannedTask(td, state, classify(td, state)))
        return out

    def prune(self, older_than_s: float) -> int:
        """Delete folders of reported tasks not touched for ``older_than_s``; returns how many."""
        import shutil

        cutoff = time.time() - older_than_s
        n = 0
        for td in self.iter_tasks():
            state = td.load()
            if state is None or not state.reported:
                continue
            with contextlib.suppress(OSError):
                if td.state_file.stat().st_mtime < cutoff:
                    shutil.rmtree(td.path)
                    n += 1
        return n


def classify(td: TaskDir, state: TaskState) -> Found:
    """Where a task stands, judged from its files and from /proc (pid + start time + boot)."""
    if state.reported:
        return Found.DONE
    td.fill_pids(state)
    if td.exit_file.exists():
        return Found.ENDED
    if state.supervisor_pid is None:
        return Found.UNLAUNCHED
    boot = state.boot_id or None
    if proc.same_process(state.supervisor_pid, state.supervisor_start, boot):
        return Found.RUNNING
    if td.exit_file.exists():  # it ended between the two looks
        return Found.ENDED
    return Found.LOST


def find_work_dir(home: Path, token: str) -> WorkDir | None:
    """The ``agent-*`` folder under ``home`` that this token used before, if any.

    The agent id is only known after hello, but the scan (the ``held`` list) comes before it;
    so the folder is found by a fingerprint of the token (tokens are random and per agent).
    """
    fp = token_fingerprint(token)
    if not home.is_dir():
        return None
    for entry in sorted(home.glob("agent-*")):
        wd = WorkDir(entry)
        if wd.identity().get("token") == fp:
            return wd
    return None
