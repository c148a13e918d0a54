"""Starting, watching and stopping one app: its command, its environment, its supervisor.

The agent never runs the app itself. It launches the per-task supervisor (``supervisor.py``,
with the agent's own interpreter and ``-I -S``, so it starts in a few ms) in a new session;
the supervisor spawns the app and tells the agent its pid through a pipe the moment it runs.
To keep even those few ms off the path from assignment to app, ``Launcher`` keeps one
supervisor started ahead ("warm", waiting for its job on a pipe) and hands the next task to
it. Warm supervisors are forked by a zygote (``_Zygote``: one interpreter start-up per agent,
not one per task); a launch that finds none waiting has one forked at once, and without a
zygote one is started as before ("cold").
The agent then watches the *supervisor* through a pidfd: the pidfd becomes readable the
instant it exits, works the same for a supervisor a previous agent launched (not our child),
and signals sent through it cannot hit a reused pid. Stop is SIGTERM to the supervisor, which
runs the grace period and the SIGKILL of the app's process group itself, so a stop completes
even if the agent dies right after asking for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appyard.agent import proc
from appyard.agent.cache import PrepareError
from appyard.agent.state import ExitInfo, TaskDir, TaskState
from appyard.agent.supervisor import JOB_MAGIC
from appyard.schemas.agents import TaskAssignment
from appyard.schemas.manifest import Manifest

log = logging.getLogger("appyard.agent")

#: what the agent runs: a stub that runs ``supervisor.py`` from its cached bytecode (a script
#: run by path is compiled on every start, which costs more than the interpreter's start-up)
SUPERVISOR = Path(__file__).with_name("supervisor_main.py")
#: a leading ``python``, ``python3`` or ``python3.11`` in an entrypoint means "the app's python"
PYTHON_WORD = re.compile(r"^python(\d+(\.\d+)?)?$")
ENV_REF = re.compile(r"\$(\w+)|\$\{(\w+)\}")
#: how long the supervisor may take to report that the app was spawned
SPAWN_REPORT_TIMEOUT_S = 60.0
#: how long a warm supervisor may take to read a job that does not fit in the pipe at once
WARM_JOB_TIMEOUT_S = 5.0
#: how long the agent's exit waits for its warm supervisor to leave on its own
WARM_EXIT_TIMEOUT_S = 2.0
#: how long the zygote may take to answer a fork request
ZYGOTE_TIMEOUT_S = 5.0
#: variables of the agent's own environment that the app must not inherit
_NOT_INHERITED = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONTEXT")
_NOT_INHERITED_PREFIXES = ("APPYARD_", "context.", "modal.state.", "CONTEXT_")


class SpawnError(PrepareError):
    """The supervisor could not start the app (the program cannot be executed, ...)."""


def _expand(word: str, env: Mapping[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` from the app's env (what a shell would do, and nothing more)."""
    return ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), word)


#: (app folder, relative path) -> the resolved path, inside the folder. A release folder does
#: not change once unpacked (and holds no links), so each is resolved once, not per task (a
#: ``resolve`` is an ``lstat`` per component of the path and of the folder's)
_resolved: dict[tuple[Path, str], Path] = {}


def _inside(app_dir: Path, rel: str, what: str) -> Path:
    path = _resolved.get((app_dir, rel))
    if path is None:
        path = (app_dir / rel).resolve()
        if not path.is_relative_to(app_dir.resolve()):
            raise PrepareError(f"manifest {what} {rel!r} points outside the app folder")
        if len(_resolved) >= 1024:
            _resolved.clear()
        _resolved[(app_dir, rel)] = path
    if not path.is_file():
        raise PrepareError(f"manifest {what} {rel!r} is not a file in the app folder")
    return path


def app_command(
    manifest: Manifest, app_dir: Path, python: str, env: Mapping[str, str]
) -> list[str]:
    """The app's argv, run without a shell.

    ``entrypoint`` (a command line, split into words once, when the manifest is parsed) wins
    over ``main_script``. A leading ``python``/``python3`` becomes ``python`` (the real
    interpreter: the agent's own or the app's venv; never a PATH lookup, which may hit a slow
    shim); ``$VAR`` words are expanded from the app's env (e.g. ``$APP_DIR``, ``$APP_PORT``);
    a relative program path such as ``./run.sh`` is taken from the app folder.
    ``main_script`` is a file in the app folder: ``[python, path]`` for ``.py``, else the
    file itself is executed.
    """
    words = manifest.command_words
    script = manifest.main_script
    if words:
        argv = [_expand(w, env) for w in words]
    elif script is not None and script.strip():
        path = _inside(app_dir, script, "main_script")
        return [python, str(path)] if path.suffix == ".py" else [str(path)]
    else:
        raise PrepareError("the manifest names no main_script and no entrypoint: nothing to run")
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
    This is the cold start; ``Launcher.launch`` does the same through a warm supervisor.
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
    return _handshake(td, popen.pid, None, popen, r, on_supervisor)


def _handshake(
    td: TaskDir,
    pid: int,
    start: int | None,
    popen: subprocess.Popen[bytes] | None,
    r: int,
    on_supervisor: Callable[[int, int | None], None] | None,
    pidfd: int = -1,
) -> AppHandle:
    """Wait for the report of a supervisor that has its task (on ``r``, closed here).

    ``start``: its start time when already known (a warm one), else read here. ``popen``: the
    supervisor is our child (else the zygote's, which reaps it). ``pidfd``: one already open
    for it, handed over to the handle.
    """
    try:
        if start is None:
            start = proc.proc_start_time(pid)
        if pidfd < 0:
            pidfd = os.pidfd_open(pid)
        handle = AppHandle(td, pid, start, pidfd, popen=popen)
        if on_supervisor is not None:
            on_supervisor(pid, start)
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
            " | ".join(tail)
            or (f"exit status {popen.returncode}" if popen is not None else "no report")
        )
    raise SpawnError(str(error))


# --- warm supervisors -------------------------------------------------------------------------


def encode_job(
    td: TaskDir, argv: Sequence[str], env: Mapping[str, str], grace_s: float
) -> bytes | None:
    """What a cold ``launch`` puts on the supervisor's command line and environment, as the
    job of a warm one (see ``supervisor.parse_job``).

    None when the arguments hold what exec or Popen refuse (a NUL, ``=`` in a name, no
    command): the cold start is left to fail exactly as it does.
    """
    try:
        words = [os.fsencode(w) for w in argv]
        entries = []
        for key, value in env.items():
            k, v = os.fsencode(key), os.fsencode(value)
            if not k or b"=" in k or b"\0" in k or b"\0" in v:
                return None
            entries.append(k + b"=" + v)
        paths = [os.fsencode(os.path.abspath(p)) for p in (td.supervisor_log, td.path, td.work)]
        grace = repr(float(grace_s)).encode()
    except (TypeError, ValueError):
        return None
    fields = [JOB_MAGIC, *paths, grace, b"%d" % len(words), *words]
    if not words or any(b"\0" in f for f in fields):
        return None
    body = b"\0".join(fields + entries) + b"\0"
    return b"%d\n%s" % (len(body), body)


def _warm_env() -> dict[str, str]:
    """The warm supervisor's own environment (the app's comes with the job)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _NOT_INHERITED and not k.startswith(_NOT_INHERITED_PREFIXES)
    }


@dataclass
class _Warm:
    """A supervisor that has started and waits for its job (and the agent's ends of its pipes).

    Started by us (``popen``, our child) or forked by the zygote (``popen`` None: the
    zygote's child, watched through ``pidfd`` and reaped by the zygote).
    """

    pid: int
    start: int | None
    job_w: int
    status_r: int
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int = -1
    #: ``discard`` had to kill it (it did not leave on its own)
    killed: bool = False

    def close_pipes(self) -> None:
        for fd in (self.job_w, self.status_r):
            if fd >= 0:
                os.close(fd)
        self.job_w = self.status_r = -1

    def exited(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return proc.pidfd_exited(self.pidfd)

    def take_pidfd(self) -> int:
        """Its pidfd, now the caller's to close (-1: none)."""
        fd, self.pidfd = self.pidfd, -1
        return fd

    def discard(self, timeout: float | None = None) -> None:
        """End it: EOF on its job pipe makes it exit; ``timeout``: wait that long, then kill.

        Without a timeout it is killed at once (it holds no app: it never got a whole job).
        """
        self.close_pipes()
        try:
            if timeout is not None and self._wait(timeout):
                return
            self.killed = True
            if self.popen is not None:
                with contextlib.suppress(OSError):
                    self.popen.kill()
            else:
                proc.send(self.pidfd, signal.SIGKILL)
            self._wait(None)
        finally:
            if self.pidfd >= 0:
                os.close(self.take_pidfd())

    def _wait(self, timeout: float | None) -> bool:
        if self.popen is None:
            return proc.pidfd_exited(self.pidfd, timeout)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class _Zygote:
    """The process that forks warm supervisors (``supervisor.py --zygote-fd``): one interpreter
    start-up per agent instead of one per task. It is started like a warm supervisor."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-I", "-S", str(SUPERVISOR), "--zygote-fd", str(theirs.fileno())]
        try:
            with sigterm_blocked():
                self.popen = subprocess.Popen(
                    cmd,
                    env=_warm_env(),
                    cwd="/",
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(ZYGOTE_TIMEOUT_S)
        self.sock = ours
        self._lock = threading.Lock()

    def fork(self) -> _Warm:
        """A new warm supervisor; OSError when the zygote cannot make one (it is gone)."""
        with _warm_pipes() as (job_r, job_w, status_r, status_w):
            with self._lock:
                socket.send_fds(self.sock, [b"fork"], [job_r, status_w])
                reply = self.sock.recv(64).split()
            if len(reply) != 2:
                raise OSError("the task supervisor zygote did not fork")
            pid, start = int(reply[0]), int(reply[1])
            pidfd = proc.open_pidfd(pid, start)
            if pidfd is None:
                raise OSError(f"the forked task supervisor {pid} is gone already")
        return _Warm(pid, start, job_w, status_r, pidfd=pidfd)

    def close(self, timeout: float) -> None:
        """EOF on its socket makes it exit; killed if it has not after ``timeout`` s."""
        self.sock.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _spawn_warm() -> _Warm:
    """Start a supervisor that waits for its job, as ``launch`` starts one for a known task.

    Same interpreter, flags, new session and SIGTERM blocked until its handler is installed;
    it holds only stdio (/dev/null until it has its task) and its two pipes.
    """
    with _warm_pipes() as (job_r, job_w, status_r, status_w):
        cmd = [sys.executable, "-I", "-S", str(SUPERVISOR)]
        cmd += ["--job-fd", str(job_r), "--status-fd", str(status_w)]
        with sigterm_blocked():
            popen = subprocess.Popen(
                cmd,
                env=_warm_env(),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(job_r, status_w),
                start_new_session=True,
            )
    return _Warm(popen.pid, proc.proc_start_time(popen.pid), job_w, status_r, popen=popen)


@contextlib.contextmanager
def _warm_pipes() -> Iterator[tuple[int, int, int, int]]:
    """The job and status pipes of a warm supervisor being made: ``(job_r, job_w, status_r,
    status_w)``. The supervisor's ends are closed here once it has them; ours too if making it
    failed; our job end is left non-blocking (a job bigger than the pipe must not hang us)."""
    job_r, job_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        yield job_r, job_w, status_r, status_w
    except BaseException:
        os.close(job_w)
        os.close(status_r)
        raise
    finally:
        os.close(job_r)
        os.close(status_w)
    os.set_blocking(job_w, False)


def _write_all(fd: int, data: bytes, timeout: float) -> bool:
    """Write all of ``data`` to a non-blocking pipe; False if its reader is gone or too slow."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    poller: select.poll | None = None
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                return False
            continue
        except OSError:  # EPIPE: it has exited
            return False
        view = view[n:]
    return True


class Launcher:
    """``launch``, through a supervisor started ahead of time whenever one is ready.

    It keeps one warm supervisor: a launch takes it (if it is still alive), writes it the
    task's job and reads its report as ``launch`` does; the next one is made in a thread
    once the launch is done, so no launch waits for an interpreter to start. Warm supervisors
    are forked by the zygote (one interpreter start-up per agent, not one per task), which a
    launch that finds none waiting (a burst) also asks for one at once; without a zygote
    (it could not start, or died) they are started one by one as before. When there is none
    (warm starts disabled, or none could be made) the launch is a cold one. Everything else
    (files, pids, the stop protocol, re-adoption) is the same for all of them.
    """

    def __init__(self, warm: bool = True) -> None:
        self.warm_enabled = warm
        self._lock = threading.Lock()
        self._warm: _Warm | None = None
        self._zygote: _Zygote | None = None
        self._zygote_failed = False  # no zygote any more: warm ones are started one by one
        self._refilling = False  # a refill is asked for or under way
        #: the thread that makes the next warm supervisor, woken through ``_wake``
        self._refiller: threading.Thread | None = None
        self._wake = threading.Condition(self._lock)
        self._closed = False

    def prime(self) -> None:
        """Start the warm supervisor now (in the background) rather than at the first launch."""
        self._refill_soon()

    def launch(
        self,
        td: TaskDir,
        argv: list[str],
        env: Mapping[str, str],
        grace_s: float,
        on_supervisor: Callable[[int, int | None], None] | None = None,
    ) -> AppHandle:
        """As ``launch`` (same arguments, result, errors and files)."""
        try:
            job = encode_job(td, argv, env, grace_s) if self.warm_enabled else None
            if job is not None:
                handle = self._launch_warm(td, job, on_supervisor)
                if handle is not None:
                    return handle
            return launch(td, argv, env, grace_s, on_supervisor)
        finally:
            self._refill_soon()

    def close(self) -> None:
        """End the warm supervisor and the zygote (the agent exits); later launches are cold."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            warm, self._warm = self._warm, None
            zygote, self._zygote = self._zygote, None
        if warm is not None:
            warm.discard(WARM_EXIT_TIMEOUT_S)
        if zygote is not None:
            zygote.close(WARM_EXIT_TIMEOUT_S)

    @property
    def warm_pid(self) -> int | None:
        """The pid of the warm supervisor that waits for a job, if there is one."""
        with self._lock:
            return self._warm.pid if self._warm is not None else None

    @property
    def zygote_pid(self) -> int | None:
        """The pid of the zygote, if there is one."""
        with self._lock:
            return self._zygote.popen.pid if self._zygote is not None else None

    def _take(self) -> _Warm | None:
        with self._lock:
            warm, self._warm = self._warm, None
        if warm is not None and warm.exited():  # it died while it waited
            warm.discard(0.0)
            return None
        return warm

    def _fork_now(self) -> _Warm | None:
        """A warm supervisor from the zygote for this launch; None when there is no zygote."""
        with self._lock:
            zygote = None if self._closed else self._zygote
        if zygote is None:
            return None
        try:
            return zygote.fork()
        except OSError as e:
            self._zygote_lost(zygote, e)
            return None

    def _zygote_lost(self, zygote: _Zygote, e: BaseException) -> None:
        log.warning("the task supervisor zygote failed (%s); starting them one by one", e)
        with self._lock:
            self._zygote_failed = True
            if self._zygote is zygote:
                self._zygote = None
        zygote.close(WARM_EXIT_TIMEOUT_S)

    def _zygote_for_refill(self) -> _Zygote | None:
        """The zygote, started on first use (only the refill thread starts it)."""
        with self._lock:
            if self._closed or self._zygote_failed or self._zygote is not None:
                return self._zygote
        try:
            zygote = _Zygote()
        except OSError as e:
            log.warning("cannot start the task supervisor zygote: %s", e)
            with self._lock:
                self._zygote_failed = True
            return None
        with self._lock:
            if not self._closed:
                self._zygote = zygote
                return zygote
        zygote.close(WARM_EXIT_TIMEOUT_S)  # the agent exits meanwhile
        return None

    def _new_warm(self) -> _Warm | None:
        zygote = self._zygote_for_refill()
        if zygote is not None:
            try:
                return zygote.fork()
            except OSError as e:
                self._zygote_lost(zygote, e)
        with self._lock:
            if self._closed:
                return None
        return _spawn_warm()

    def _launch_warm(
        self,
        td: TaskDir,
        job: bytes,
        on_supervisor: Callable[[int, int | None], None] | None,
    ) -> AppHandle | None:
        """``launch`` through the warm supervisor; None when there is none (nothing started)."""
        td.work.mkdir(parents=True, exist_ok=True)
        try:  # it goes there, as launch() would have it; created here, as launch() does
            os.close(os.open(td.supervisor_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
        except OSError as e:
            raise SpawnError(f"cannot start the task supervisor: {e}") from e
        warm = self._take() or self._fork_now()
        if warm is None:
            return None
        if not _write_all(warm.job_w, job, WARM_JOB_TIMEOUT_S):
            warm.discard()  # it never had a whole job: nothing of the task was started
            return None
        os.close(warm.job_w)
        warm.job_w = -1
        status_r, warm.status_r = warm.status_r, -1
        return _handshake(
            td, warm.pid, warm.start, warm.popen, status_r, on_supervisor, warm.take_pidfd()
        )

    def _refill_soon(self) -> None:
        with self._lock:
            if not self.warm_enabled or self._closed or self._warm or self._refilling:
                return
            self._refilling = True
            if self._refiller is None:  # one thread for all refills, not one per launch
                self._refiller = threading.Thread(
                    target=self._refill_loop, name="warm-supervisor", daemon=True
                )
                self._refiller.start()
            self._wake.notify()

    def _refill_loop(self) -> None:
        while True:
            with self._lock:
                while not (self._refilling or self._closed):
                    self._wake.wait()
                if self._closed:
                    self._refilling = False
                    return
            self._refill()

    def _refill(self) -> None:
        warm: _Warm | None = None
        try:
            warm = self._new_warm()
        except Exception as e:
            log.warning("cannot start a warm task supervisor: %s", e)
        finally:
            with self._lock:
                self._refilling = False
                if warm is not None and not self._closed and self._warm is None:
                    self._warm, warm = warm, None
        if warm is not None:  # the agent exits meanwhile
            warm.discard(WARM_EXIT_TIMEOUT_S)


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
