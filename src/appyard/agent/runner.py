"""Starting, watching and stopping one app: its command, its environment, its supervisor.

The agent never runs the app itself. It launches the per-task supervisor (``supervisor.py``,
with the agent's own interpreter and ``-I -S``, so it starts in a few ms) in a new session;
the supervisor spawns the app and tells the agent its pid through a pipe the moment it runs.
The agent then watches the *supervisor* through a pidfd: the pidfd becomes readable the
instant it exits, works the same for a supervisor a previous agent launched (not our child),
and signals sent through it cannot hit a reused pid. Stop is SIGTERM to the supervisor, which
runs the grace period and the SIGKILL of the app's process group itself, so a stop completes
even if the agent dies right after asking for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from appyard.agent import proc
from appyard.agent.cache import PrepareError
from appyard.agent.state import ExitInfo, TaskDir, TaskState
from appyard.schemas.agents import TaskAssignment

SUPERVISOR = Path(__file__).with_name("supervisor.py")
#: a leading ``python``, ``python3`` or ``python3.11`` in an entrypoint means "the app's python"
PYTHON_WORD = re.compile(r"^python(\d+(\.\d+)?)?$")
ENV_REF = re.compile(r"\$(\w+)|\$\{(\w+)\}")
#: how long the supervisor may take to report that the app was spawned
SPAWN_REPORT_TIMEOUT_S = 60.0
#: variables of the agent's own environment that the app must not inherit
_NOT_INHERITED = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONTEXT")
_NOT_INHERITED_PREFIXES = ("APPYARD_", "context.", "modal.state.", "CONTEXT_")


class SpawnError(PrepareError):
    """The supervisor could not start the app (the program cannot be executed, ...)."""


def _expand(word: str, env: Mapping[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` from the app's env (what a shell would do, and nothing more)."""
    return ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), word)


def _inside(app_dir: Path, rel: str, what: str) -> Path:
    path = (app_dir / rel).resolve()
    if not path.is_relative_to(app_dir.resolve()):
        raise PrepareError(f"manifest {what} {rel!r} points outside the app folder")
    if not path.is_file():
        raise PrepareError(f"manifest {what} {rel!r} is not a file in the app folder")
    return path


def app_command(
    config: Mapping[str, Any], app_dir: Path, python: str, env: Mapping[str, str]
) -> list[str]:
    """The app's argv, run without a shell.

    ``entrypoint`` (a command string, shlex-split, or a list) wins over ``main_script``. A
    leading ``python``/``python3`` becomes ``python`` (the real interpreter: the agent's own
    or the app's venv; never a PATH lookup, which may hit a slow shim); ``$VAR`` words are
    expanded from the app's env (e.g. ``$APP_DIR``, ``$APP_PORT``); a relative program path
    such as ``./run.sh`` is taken from the app folder. ``main_script`` is a file in the app
    folder: ``[python, path]`` for ``.py``, else the file itself is executed.
    """
    entry = config.get("entrypoint")
    script = config.get("main_script")
    if isinstance(entry, str) and entry.strip():
        try:
            argv = shlex.split(entry)
        except ValueError as e:
            raise PrepareError(f"manifest entrypoint {entry!r} cannot be parsed: {e}") from e
    elif isinstance(entry, list) and entry and all(isinstance(w, str) for w in entry):
        argv = list(entry)
    elif isinstance(script, str) and script.strip():
        path = _inside(app_dir, script, "main_script")
        return [python, str(path)] if path.suffix == ".py" else [str(path)]
    else:
        raise PrepareError("the manifest names no main_script and no entrypoint: nothing to run")
    argv = [_expand(w, env) for w in argv]
    if PYTHON_WORD.match(argv[0]):
        argv[0] = python
    elif "/" in argv[0] and not os.path.isabs(argv[0]):
        argv[0] = str(_inside(app_dir, argv[0], "entrypoint program"))
    return argv


def _env_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _env_ok(key: str, value: str) -> bool:
    return bool(key) and "=" not in key and "\0" not in key and "\0" not in value


def app_env(
    a: TaskAssignment,
    *,
    server: str,
    agent_id: int,
    app_dir: Path,
    port: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The app's environment (DESIGN.md, "the app contract").

    The agent's environment minus its own settings (``APPYARD_*``, Python and venv variables),
    then the reference agent's flattened ``modal.state.<key>`` and ``context.<key>`` (strings
    as they are, anything else as JSON), the target's ``PROJECT_ID``/``DATASET_ID``/``FOLDER``/
    ``FILE``, then ours, which nothing overrides.
    """
    src = os.environ if base is None else base
    env = {
        k: v
        for k, v in src.items()
        if k not in _NOT_INHERITED and not k.startswith(_NOT_INHERITED_PREFIXES)
    }
    flat: list[tuple[str, Any]] = [(f"modal.state.{k}", v) for k, v in a.state.items()]
    flat += [(f"context.{k}", v) for k, v in a.context.items()]
    for key, value in flat:
        text = _env_value(value)
        if _env_ok(key, text):
            env[key] = text
    for key, text in a.env.items():
        if _env_ok(key, text):
            env[key] = text
    env.update(
        {
            "SERVER_ADDRESS": server,
            "API_TOKEN": a.token,
            "TASK_ID": str(a.task_id),
            "TEAM_ID": str(a.team_id),
            "WORKSPACE_ID": str(a.workspace_id),
            "AGENT_ID": str(agent_id),
            "USER_ID": str(a.user_id),
            "APP_NAME": a.app_name,
            "MODAL_STATE": json.dumps(a.state),
            "CONTEXT": json.dumps(a.context),
            "LOG_LEVEL": a.log_level,
            "APP_PORT": str(port),
            "APP_DIR": str(app_dir),
            # the app folder is importable (``python -m src.main``, ``from src import x``)
            "PYTHONPATH": str(app_dir),
            "PYTHONUNBUFFERED": "1",  # prints reach the log at once
        }
    )
    return env


def free_port() -> int:
    """A TCP port free right now on all interfaces, for a serving app (``APP_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class AppHandle:
    """A launched (or re-adopted) task: its supervisor, watched through a pidfd."""

    def __init__(
        self,
        td: TaskDir,
        supervisor_pid: int,
        supervisor_start: int | None,
        pidfd: int,
        app_pid: int | None = None,
        app_start: int | None = None,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.dir = td
        self.supervisor_pid = supervisor_pid
        self.supervisor_start = supervisor_start
        self.pidfd = pidfd
        self.app_pid = app_pid
        self.app_start = app_start
        self._popen = popen
        self._ended = False

    def fileno(self) -> int:
        """The supervisor's pidfd: readable the moment it exits (for select/poll)."""
        return self.pidfd

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (None: forever) for the supervisor to end; True if it has."""
        if self._ended:
            return True
        if not proc.pidfd_exited(self.pidfd, timeout):
            return False
        self._reap()
        self._ended = True
        return True

    def _reap(self) -> None:
        """Collect the exit status of a supervisor we launched, so no zombie is left."""
        if self._popen is not None:
            self._popen.wait()
            return
        # a re-adopted supervisor is normally not our child; if it is, reap it
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.supervisor_pid, os.WNOHANG)

    def stop(self) -> bool:
        """Ask the supervisor to run the stop protocol; False if it has already exited."""
        if self.pidfd < 0 or self._ended:
            return False
        return proc.send(self.pidfd, signal.SIGTERM)

    def exit_info(self) -> ExitInfo | None:
        return self.dir.exit_info()

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def _read_report(fd: int, timeout: float) -> bytes:
    """The supervisor's one-line report; b"" if it exited (closing the pipe) without one."""
    data = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000) + 1):
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


@contextlib.contextmanager
def sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM in this thread while a supervisor is forked from it.

    The child inherits the mask: a SIGTERM that reaches the supervisor before it installed
    its handler stays pending instead of killing it (the supervisor unblocks it first thing).
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def launch(
    td: TaskDir,
    argv: list[str],
    env: Mapping[str, str],
    grace_s: float,
    on_supervisor: Callable[[int, int | None], None] | None = None,
) -> AppHandle:
    """Start the supervisor, which starts the app; return once the app process exists.

    ``on_supervisor(pid, start_time)`` is called as soon as the supervisor runs, before the
    app is spawned, so the caller can write the pid down while it waits. Raises SpawnError
    when the app cannot be started (it still leaves ``exit.json`` in the task folder).
    """
    td.work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-I", "-S", str(SUPERVISOR), "--task-dir", str(td.path)]
    r, w = os.pipe()
    try:
        with open(td.supervisor_log, "ab") as sup_log:
            cmd += ["--cwd", str(td.work), "--grace", repr(float(grace_s))]
            cmd += ["--status-fd", str(w), "--", *argv]
            with sigterm_blocked():
                popen = subprocess.Popen(
                    cmd,
                    env=dict(env),
                    cwd=td.path,
                    stdin=subprocess.DEVNULL,
                    stdout=sup_log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(w,),
                    start_new_session=True,  # no SIGINT/SIGHUP from the agent's terminal
                )
    except OSError as e:
        os.close(r)
        raise SpawnError(f"cannot start the task supervisor: {e}") from e
    finally:
        os.close(w)
    try:
        start = proc.proc_start_time(popen.pid)
        pidfd = os.pidfd_open(popen.pid)
        handle = AppHandle(td, popen.pid, start, pidfd, popen=popen)
        if on_supervisor is not None:
            on_supervisor(popen.pid, start)
        line = _read_report(r, SPAWN_REPORT_TIMEOUT_S)
    finally:
        os.close(r)
    try:
        report = json.loads(line) if line.strip() else {}
    except ValueError:
        report = {}
    if isinstance(report.get("pid"), int):
        handle.app_pid = report["pid"]
        handle.app_start = report.get("start")
        return handle
    if line.strip():
        handle.wait(10)
    else:  # no report: the supervisor broke (or hangs); make sure it is gone
        if not handle.wait(5):
            proc.send(pidfd, signal.SIGKILL)
            handle.wait(5)
    handle.close()
    error = report.get("error")
    if not error:
        tail = td.supervisor_log.read_text(errors="replace").strip().splitlines()[-5:]
        error = "the task supervisor ended without starting the app: " + (
            " | ".join(tail) or f"exit status {popen.returncode}"
        )
    raise SpawnError(str(error))


def adopt(td: TaskDir, state: TaskState) -> AppHandle | None:
    """Re-attach to a supervisor a previous agent launched, if it still runs (pid + start)."""
    fd = proc.open_pidfd(state.supervisor_pid, state.supervisor_start, state.boot_id or None)
    if fd is None or state.supervisor_pid is None:
        return None
    return AppHandle(
        td, state.supervisor_pid, state.supervisor_start, fd, state.app_pid, state.app_start
    )


def kill_orphan(state: TaskState) -> bool:
    """SIGKILL the app group of a task whose supervisor vanished; True if there was one."""
    fd = proc.open_pidfd(state.app_pid, state.app_start, state.boot_id or None)
    if fd is None or state.app_pid is None:
        return False
    try:
        # the leader is alive (checked through the pidfd), so its pgid is still its own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.app_pid, signal.SIGKILL)
        proc.send(fd, signal.SIGKILL)
    finally:
        os.close(fd)
    return True
