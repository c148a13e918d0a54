"""The per-task supervisor: a tiny shim that owns one app process (like conmon/containerd-shim).

Why it exists: apps survive an agent restart, so the agent is not the app's parent. The
supervisor is; it runs in its own session, so it outlives the agent (and the terminal the
agent runs in), and it keeps the things that must not be lost when the agent dies:

- the app's output: stdout and stderr lines are appended to ``log.jsonl`` as one JSON object
  per line ``{"t": "<iso utc>", "level": "...", "text": "..."}``, written at once (no buffer);
- the app's exit status: ``exit.json`` (tmp + rename), with the exit code (``-N`` when killed
  by signal N), the end time, whether a stop was asked for, whether SIGKILL was needed, and
  ``spawned: false`` with ``error`` and code 127 when the program could not be executed;
- the stop protocol: SIGTERM to the supervisor sends SIGTERM to the app's process group,
  waits the grace period, then SIGKILLs the group. When the app itself exits, whatever is
  left in its group is SIGKILLed at once.
- the app's descendants: the supervisor is a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``)
  so a process that left the app's group (``setsid``, a double-fork daemon) is reparented to
  it, not to init; once the app has exited, every descendant still there is SIGKILLed and
  reaped too, so nothing of the task outlives it (nor holds its output pipes open).

Levels: a stdout line is ``info`` and a stderr line ``error``, unless one of the first words of
the line is an upper-case level name (``DEBUG``, ``INFO``, ``WARNING``/``WARN``, ``ERROR``,
``CRITICAL``/``FATAL``), as Python's logging and most servers write them; then that level.
Lines are split on ``\\n`` (a trailing ``\\r`` is dropped); a line longer than 64 KiB is cut and
marked, the rest of it up to the next newline is dropped. Bytes that are not UTF-8 are replaced.
Lines the supervisor writes itself (stop, kill, spawn error) carry ``"src": "supervisor"``.

Usage (the agent runs it by file path with ``-I -S`` so that it starts in a few ms; it imports
nothing but built-in modules: no ``json``, no ``signal`` (both pull in ``re``/``enum``))::

    python -I -S supervisor.py --task-dir DIR --cwd DIR --grace SECONDS [--status-fd N] -- ARGV...
    python -I -S supervisor.py --job-fd N --status-fd M          (a "warm" supervisor, below)
    python -I -S supervisor.py --zygote-fd N          (forks warm supervisors, below)
    python -m appyard.agent.supervisor ...   (works too, a bit slower to start)

The app gets the supervisor's environment, stdin from /dev/null, a new session (so its own
process group, pgid = its pid), and default dispositions for SIGPIPE/SIGHUP/SIGINT/SIGXFSZ.

A warm supervisor is started before there is a task, so that the ~10 ms of interpreter
start-up are not on the path from "task assigned" to "app spawned". It blocks reading its
job from ``--job-fd`` (the read end of a pipe from the agent): ``<length>\\n`` then ``length``
bytes of NUL-terminated fields (see ``parse_job``) carrying what the command line and the
environment of a cold start carry. Then it becomes exactly that cold start: stdout/stderr
go to the task's ``supervisor.log``, its cwd is the task folder, its environment is replaced
by the app's (including what the interpreter's start-up would have done to it: the PEP 538
``LC_CTYPE`` coercion), and it runs as above. EOF on the job pipe before a whole job (the
agent exited or is gone) ends it at once, with code 0 and no file written. A SIGTERM that
comes while no job has arrived is not a stop of any task, and is forgotten.

The zygote (``--zygote-fd N``, one per agent) makes warm supervisors without an interpreter
start-up each: it starts once, and forks one per request. N is its end of a ``SOCK_SEQPACKET``
socket pair with the agent; a request is the message ``fork`` carrying two descriptors (the
read end of a job pipe, the write end of a status pipe), the answer ``<pid> <start time>`` of
a new warm supervisor that holds them and is in every way one started with ``--job-fd
--status-fd`` (its own session, its own wakeup pipe, nothing else of the zygote's open). The
zygote reaps what it forked; EOF on its socket (the agent exited or died) ends it, and the
supervisors it forked run on.

``--status-fd`` is the write end of a pipe from the agent: the supervisor writes one line,
``{"pid": P, "start": S}`` the moment the app is spawned (or ``{"error": "...", "exit_code": 127}``
when it cannot be executed) and closes it, so the agent learns "started" without polling.
The same facts go to ``pids.json`` for an agent that was not there to read the pipe.
Exit codes of the supervisor itself: 0 when it did its job, 2 on a usage error.
"""

from __future__ import annotations

import os
import select
import sys
import time
from _collections_abc import Callable, Mapping  # loaded with os (collections.abc is not)

try:  # the C module: ``signal`` would import enum (~5 ms)
    import _signal as sig
except ImportError:  # pragma: no cover - other Python implementations
    import signal as sig

LOG_NAME = "log.jsonl"
EXIT_NAME = "exit.json"
PIDS_NAME = "pids.json"
#: exit code written when the program cannot be executed at all (as a shell does)
EXEC_FAILED = 127
CUT_MARK = " …[line cut]"
MAX_LINE = 65536 - len(CUT_MARK)  # bytes kept of a long line; the text stays <= 64 Ki chars
READ_SIZE = 65536
#: how long the output pipes may stay open after the app and its group are gone
DRAIN_S = 2.0
#: prctl option: orphaned descendants are reparented to us instead of init (Linux >= 3.4)
PR_SET_CHILD_SUBREAPER = 36
#: how long to wait for the SIGKILLed descendants to be reaped
REAP_S = 2.0

_LEVELS = {
    "DEBUG": "debug",
    "INFO": "info",
    "WARNING": "warning",
    "WARN": "warning",
    "ERROR": "error",
    "CRITICAL": "error",
    "FATAL": "error",
}
_ESC = {i: f"\\u{i:04x}" for i in range(32)}
_ESC.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", 9: "\\t"})


def jstr(s: str) -> str:
    """A JSON string literal (``json`` itself costs ~9 ms of imports)."""
    return '"' + s.translate(_ESC) + '"'


def jvalue(v: object) -> str:
    """JSON for the few value types the supervisor writes."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return repr(v)
    return jstr(str(v))


def jobject(d: dict[str, object]) -> str:
    return "{" + ", ".join(f"{jstr(k)}: {jvalue(v)}" for k, v in d.items()) + "}"


def now_iso() -> str:
    """UTC time with microseconds, the form pydantic parses: 2024-05-01T10:00:00.123456Z."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def level_of(text: str, default: str) -> str:
    """The level named by one of the first words of a line, else ``default``."""
    word: list[str] = []
    words = 0
    for ch in text[:48]:
        if ch.isalnum() or ch == "_":
            word.append(ch)
            continue
        if word:
            found = _LEVELS.get("".join(word))
            if found:
                return found
            word.clear()
            words += 1
            if words >= 8:
                return default
    if word:
        return _LEVELS.get("".join(word), default)
    return default


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): the pid's identity."""
    try:  # os.open/os.read: a buffered file costs 5 more system calls
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)  # one read: the file is made whole at the read (< 1 KiB)
    except OSError:
        return None
    finally:
        os.close(fd)
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])


def write_atomic(path: str, text: str, sync: bool = False) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    data = (text + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        while data:
            data = data[os.write(fd, data) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


#: set by the SIGTERM handler, installed first thing so an early stop is never lost
_stop = [False]


def _on_term(signum: int, frame: object) -> None:
    _stop[0] = True


def wakeup_pipe() -> int:
    """A pipe the C signal handler writes to, so that a poll wakes up on a signal; its read end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    sig.set_wakeup_fd(wake_w)
    return wake_r


_subreaper = [False]
_own_start: list[int | None] = []


def own_start_time() -> int | None:
    """This process's start time (read once: a warm supervisor reads it before its job)."""
    if not _own_start:
        _own_start.append(proc_start_time(os.getpid()))
    return _own_start[0]


_prctl: list[Callable[..., int] | None] = []


def libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` through ctypes, looked up once (the zygote does it for all it forks:
    a lookup in each forked supervisor costs it ~0.3 ms); None where there is none."""
    if not _prctl:
        try:
            import ctypes  # here: ~3 ms of imports, not on a cold start's way to the usage error

            _prctl.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (ImportError, OSError, AttributeError):  # not Linux, no ctypes: as before
            _prctl.append(None)
    return _prctl[0]


def become_subreaper() -> bool:
    """Make this process a child subreaper (once); False where that is not possible."""
    if not _subreaper[0]:
        prctl = libc_prctl()
        if prctl is not None:
            _subreaper[0] = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper[0]


def descendants() -> list[int]:
    """The pids of all our live (or zombie) descendants, parents before their children."""
    found: list[int] = []
    todo = ["self"]
    seen: set[str] = set()
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:  # it vanished
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = f.read().split()
            except OSError:
                continue
            for kid in kids:
                k = kid.decode()
                if k not in seen:
                    seen.add(k)
                    found.append(int(k))
                    todo.append(k)
    return found


def reap_children() -> bool:
    """Collect the exit status of every child that has one; True when we have no child left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def kill_descendants(deadline_s: float = REAP_S) -> None:
    """SIGKILL every process still below us and reap them; call it after the app was reaped.

    Orphans of a killed process come to us (we are a subreaper), so it goes round until no
    child is left or the deadline passes.
    """
    end = time.monotonic() + deadline_s
    while True:
        for pid in descendants():
            try:  # noqa: SIM105 - contextlib would cost imports at start
                os.kill(pid, sig.SIGKILL)
            except ProcessLookupError:
                pass
        if reap_children() or time.monotonic() >= end:
            return
        time.sleep(0.005)


def drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


class Supervisor:
    """One app process, its two output pipes, its log file, its stop protocol."""

    def __init__(
        self,
        task_dir: str,
        cwd: str,
        grace: float,
        status_fd: int | None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.task_dir = task_dir
        #: the app's environment (a cold start's is its own)
        self.env = os.environ if env is None else env
        self.cwd = cwd
        self.grace = grace
        self.status_fd = status_fd
        self.log_fd = os.open(
            os.path.join(task_dir, LOG_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )
        self.killed = False
        self.started_at = now_iso()

    @property
    def stop_requested(self) -> bool:
        return _stop[0]

    # --- output -----------------------------------------------------------------------------
    def write_records(self, records: list[str]) -> None:
        if not records:
            return
        data = ("\n".join(records) + "\n").encode("utf-8", "replace")
        while data:
            try:
                n = os.write(self.log_fd, data)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            data = data[n:]

    def record(self, level: str, text: str, src: str | None = None) -> str:
        rec = f'{{"t": "{now_iso()}", "level": "{level}", "text": {jstr(text)}'
        if src:
            rec += f', "src": "{src}"'
        return rec + "}"

    def note(self, level: str, text: str) -> None:
        """A line of the supervisor's own in the task's log (stop, kill, spawn error)."""
        self.write_records([self.record(level, text, "supervisor")])

    def report_status(self, payload: dict[str, object]) -> None:
        """Tell the agent (if it still listens) that the app runs or could not start."""
        fd, self.status_fd = self.status_fd, None
        if fd is None:
            return
        try:
            os.write(fd, (jobject(payload) + "\n").encode())
        except OSError:  # EPIPE: the agent is gone; pids.json / exit.json tell the next one
            pass
        finally:
            os.close(fd)

    def write_exit(self, exit_code: int, error: str | None = None, spawned: bool = True) -> None:
        write_atomic(
            os.path.join(self.task_dir, EXIT_NAME),
            jobject(
                {
                    "exit_code": exit_code,
                    "started_at": self.started_at,
                    "ended_at": now_iso(),
                    "stop_requested": self.stop_requested,
                    "killed": self.killed,
                    "spawned": spawned,
                    "error": error,
                }
            ),
            sync=True,
        )

    # --- the app ----------------------------------------------------------------------------
    def spawn(self, argv: list[str]) -> int | None:
        """Start the app in a new session; on failure log it, write exit.json, return None."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pipes = {out_r: "info", err_r: "error"}
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        # ignored dispositions survive exec: give the app the defaults back
        sigdef = (sig.SIGPIPE, sig.SIGXFSZ, sig.SIGHUP, sig.SIGINT)
        spawn = os.posix_spawn if "/" in argv[0] else os.posix_spawnp
        try:
            os.chdir(self.cwd)
            pid = spawn(
                argv[0],
                argv,
                self.env,
                file_actions=actions,
                setsid=True,
                setsigdef=sigdef,
                setsigmask=(),  # nothing blocked in the app
            )
        except (OSError, IndexError) as e:
            error = f"cannot execute {argv[0] if argv else '(empty command)'}: {e}"
            self.note("error", error)
            self.write_exit(EXEC_FAILED, error, spawned=False)
            self.report_status({"error": error, "exit_code": EXEC_FAILED})
            return None
        finally:
            os.close(out_w)
            os.close(err_w)
        return pid

    def signal_group(self, pgid: int, signum: int) -> None:
        try:  # noqa: SIM105 - contextlib would cost imports at start
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass

    def run(self, argv: list[str], wake_r: int | None = None) -> int:
        if wake_r is None:
            wake_r = wakeup_pipe()
        become_subreaper()  # before the spawn: the app's orphans must come to us, not init

        pid = self.spawn(argv)
        if pid is None:
            return 0
        pidfd = os.pidfd_open(pid)
        start = proc_start_time(pid)
        pids: dict[str, object] = {
            "supervisor_pid": os.getpid(),
            "supervisor_start": own_start_time(),
            "app_pid": pid,
            "app_start": start,
            "started_at": self.started_at,
        }
        write_atomic(os.path.join(self.task_dir, PIDS_NAME), jobject(pids))
        self.report_status({"pid": pid, "start": start})
        try:
            code = self.watch(pid, pidfd, wake_r)
        except BaseException as e:  # a bug of ours must not leave the app unwatched
            self.signal_group(pid, sig.SIGKILL)
            try:
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            except ChildProcessError:
                code = -sig.SIGKILL
            kill_descendants()
            error = f"supervisor failed: {e!r}"
            self.note("error", error)
            self.write_exit(code, error)
            raise
        self.write_exit(code)
        return 0

    def watch(self, pid: int, pidfd: int, wake_r: int) -> int:
        """Copy output to the log, run the stop protocol; return the app's exit code."""
        poller = select.poll()
        for fd in (*self.pipes, pidfd, wake_r):
            poller.register(fd, select.POLLIN)
        partial: dict[int, bytearray] = {fd: bytearray() for fd in self.pipes}
        cutting: dict[int, bool] = dict.fromkeys(self.pipes, False)
        status: int | None = None
        term_sent = False
        kill_at: float | None = None
        drain_until: float | None = None

        while self.pipes or status is None:
            now = time.monotonic()
            if self.stop_requested and not term_sent and status is None:
                term_sent = True
                self.note("info", f"stop requested: SIGTERM to the app, {self.grace:g} s grace")
                self.signal_group(pid, sig.SIGTERM)
                kill_at = now + self.grace
            if kill_at is not None and status is None and now >= kill_at:
                kill_at = None
                self.killed = True
                self.note("warning", f"still running after {self.grace:g} s grace: SIGKILL")
                self.signal_group(pid, sig.SIGKILL)
            records: list[str] = []
            if drain_until is not None and now >= drain_until:
                # a process that left the group holds the pipes open: stop reading
                for fd in list(self.pipes):
                    self.take(fd, b"", partial, cutting, records)
                self.write_records(records)
                break
            deadline = kill_at if status is None else drain_until
            timeout = None if deadline is None else max(0, int((deadline - now) * 1000) + 1)
            for fd, _ in poller.poll(timeout):
                if fd == wake_r:
                    drain(wake_r)
                elif fd == pidfd:
                    # the app is a zombie now, its pid (= pgid) still reserved: kill the rest
                    # of its group, then reap it
                    self.signal_group(pid, sig.SIGKILL)
                    status = os.waitpid(pid, 0)[1]
                    # its status is ours now: kill and reap whatever else is left below us
                    # (daemons that left the group came to us as their subreaper)
                    kill_descendants()
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    drain_until = time.monotonic() + DRAIN_S
                else:
                    data = os.read(fd, READ_SIZE)
                    self.take(fd, data, partial, cutting, records)
                    if not data:
                        poller.unregister(fd)
                        os.close(fd)
                        del self.pipes[fd]
            self.write_records(records)
        assert status is not None
        return os.waitstatus_to_exitcode(status)

    def take(
        self,
        fd: int,
        data: bytes,
        partial: dict[int, bytearray],
        cutting: dict[int, bool],
        records: list[str],
    ) -> None:
        """Split a chunk of a pipe into lines; ``data == b""`` (EOF) flushes the last one."""
        level = self.pipes[fd]
        buf = partial[fd]
        buf += data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE and not cutting[fd]:
                    records.append(self.line(bytes(buf[:MAX_LINE]), level, cut=True))
                    cutting[fd] = True
                if cutting[fd]:
                    buf.clear()
                if not data and buf:
                    records.append(self.line(bytes(buf), level))
                    buf.clear()
                return
            if cutting[fd]:
                cutting[fd] = False
            else:
                records.append(self.line(bytes(buf[: min(i, MAX_LINE)]), level, i > MAX_LINE))
            del buf[: i + 1]

    def line(self, raw: bytes, default_level: str, cut: bool = False) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", "replace")
        if cut:
            text += CUT_MARK
        return self.record(level_of(text, default_level), text)


def parse_args(argv: list[str]) -> tuple[str, str, float, int | None, list[str]]:
    """``--task-dir D --cwd W --grace S [--status-fd N] -- ARGV...`` (argparse costs imports)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "--":
        key = argv[i]
        if key not in ("--task-dir", "--cwd", "--grace", "--status-fd") or i + 1 >= len(argv):
            raise ValueError(f"unknown or incomplete option {key!r}")
        opts[key] = argv[i + 1]
        i += 2
    if "--task-dir" not in opts:
        raise ValueError("--task-dir is required")
    cmd = argv[i + 1 :]
    if not cmd:
        raise ValueError("no command after --")
    task_dir = os.path.abspath(opts["--task-dir"])
    status_fd = int(opts["--status-fd"]) if "--status-fd" in opts else None
    return (
        task_dir,
        os.path.abspath(opts.get("--cwd", task_dir)),
        float(opts.get("--grace", "10")),
        status_fd,
        cmd,
    )


#: the first field of a job (its format's version)
JOB_MAGIC = b"appyard-job-1"
#: what a cold start's interpreter tries, in this order, when it finds the C locale (PEP 538)
COERCION_TARGETS = ("C.UTF-8", "C.utf8", "UTF-8")


def parse_job(body: bytes) -> tuple[str, str, str, float, list[str], dict[str, str]]:
    """A job's fields: ``MAGIC, supervisor.log, task dir, cwd, grace, N, argv[0..N), K=V...``.

    Each field ends with a NUL (none of them can hold one: they are paths, argv words and
    environment entries); bytes are decoded as ``os.fsdecode`` does, so that they reach the
    app unchanged. Returns (supervisor log, task dir, cwd, grace, argv, env).
    """
    fields = body.split(b"\0")
    if len(fields) < 7 or fields[0] != JOB_MAGIC or fields[-1] != b"":
        raise ValueError("not a job")
    n = int(fields[5])
    if n < 1 or 6 + n > len(fields) - 1:
        raise ValueError("bad argv count in the job")
    env: dict[str, str] = {}
    for entry in fields[6 + n : -1]:
        key, eq, value = entry.partition(b"=")
        if not key or not eq:
            raise ValueError("bad environment entry in the job")
        env[os.fsdecode(key)] = os.fsdecode(value)
    log, task_dir, cwd = (os.fsdecode(f) for f in fields[1:4])
    return log, task_dir, cwd, float(fields[4]), [os.fsdecode(w) for w in fields[6 : 6 + n]], env


def read_job(job_fd: int, wake_r: int) -> bytes | None:
    """Block until the whole job is read; None on EOF before that (the agent is gone).

    A SIGTERM seen while the pipe is still empty is not a stop: the agent only stops a task
    after its job is written (a later one may re-adopt it, also after), so it is forgotten
    instead of stopping the next task's app the moment it starts.
    """
    poller = select.poll()
    poller.register(job_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    buf = b""
    need = -1
    while True:
        ready = dict(poller.poll())
        if job_fd in ready:
            chunk = os.read(job_fd, READ_SIZE)
            if not chunk:
                return None
            buf += chunk
            if need < 0 and b"\n" in buf:
                head, _, buf = buf.partition(b"\n")
                need = int(head)
            if 0 <= need <= len(buf):
                return buf[:need]
        elif wake_r in ready:
            drain(wake_r)
            if not buf and need < 0:
                _stop[0] = False


def coerce_c_locale(env: dict[str, str]) -> None:
    """Do to ``env`` what a cold start's interpreter does to its environment (PEP 538).

    Unless ``LC_ALL`` is set, an interpreter that finds LC_CTYPE to be the C locale sets
    ``LC_CTYPE`` to the first of ``COERCION_TARGETS`` that exists, and the app inherits it;
    the warm supervisor started with another environment, so it asks libc the same question
    about the app's one. The supervisor's own locale is left as a cold start would leave it.
    """
    if env.get("LC_ALL"):
        return
    try:
        import _locale as loc
    except ImportError:  # pragma: no cover - other Python implementations
        return
    error: type[Exception] = loc.Error  # type: ignore[attr-defined]  # not in typeshed
    loc.setlocale(loc.LC_CTYPE, "C")  # where a new process starts
    try:  # noqa: SIM105 - contextlib would cost imports at start
        loc.setlocale(loc.LC_CTYPE, "")  # from the environment, set to the app's just before
    except error:
        pass  # an unknown locale name: it stays "C"
    if loc.setlocale(loc.LC_CTYPE, None) != "C":
        return
    for target in COERCION_TARGETS:
        try:
            loc.setlocale(loc.LC_CTYPE, target)
        except error:
            continue
        if loc.nl_langinfo(loc.CODESET):
            env["LC_CTYPE"] = target
            return
    loc.setlocale(loc.LC_CTYPE, "C")


#: what of the C environment the supervisor's own libc reads: ``posix_spawnp`` the PATH,
#: ``setlocale`` the locale variables
C_ENV = ("PATH", "LC_ALL", "LC_CTYPE", "LANG", "LOCPATH")

#: what ``coerce_c_locale`` found for this process's own environment (whose locale it left
#: set): [(the locale variables of that environment, the LC_CTYPE it coerced them to or None)]
_locale_known: list[tuple[tuple[str | None, ...], str | None]] = []


def locale_key(env: Mapping[str, str]) -> tuple[str | None, ...]:
    """What ``coerce_c_locale`` depends on in an environment."""
    return tuple(env.get(name) for name in C_ENV[1:])


def know_own_locale() -> None:
    """Run ``coerce_c_locale`` for this process's own environment ahead of any job (once).

    A job whose environment has the same locale variables (an app's environment is the
    agent's, as the warm supervisor's is, unless the app sets them) then finds the answer
    here and this process's locale already set as it would set it: no ``setlocale`` calls
    between the job and the app's spawn.
    """
    if not _locale_known:
        env = dict(os.environ)
        before = env.get("LC_CTYPE")
        coerce_c_locale(env)
        after = env.get("LC_CTYPE")
        _locale_known.append((locale_key(os.environ), after if after != before else None))


def become(log: str, task_dir: str, env: dict[str, str]) -> None:
    """Turn a warm supervisor into the one a cold start would be: output, cwd, environment.

    The app gets ``env`` as it is (``Supervisor.env``); of the supervisor's own environment
    only what its libc reads (``C_ENV``) is made the app's, which is all a cold start's
    environment would change here (replacing all of it costs about a millisecond).
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(task_dir)
    for name in C_ENV:
        value = env.get(name)
        if value is None:
            os.unsetenv(name)
        else:
            os.putenv(name, value)
    known = _locale_known[0] if _locale_known else None
    if known is not None and known[0] == locale_key(env):
        if known[1] is not None:
            env["LC_CTYPE"] = known[1]
    else:
        coerce_c_locale(env)


def parse_warm_args(argv: list[str]) -> tuple[int, int]:
    """``--job-fd N --status-fd M``."""
    if len(argv) != 4 or argv[0] != "--job-fd" or argv[2] != "--status-fd":
        raise ValueError("usage: --job-fd N --status-fd M")
    return int(argv[1]), int(argv[3])


def warm_main(argv: list[str], wake_r: int) -> int:
    try:
        job_fd, status_fd = parse_warm_args(argv)
    except ValueError as e:
        print(f"supervisor: {e}", file=sys.stderr)
        return 2
    return warm_run(job_fd, status_fd, wake_r)


def warm_run(job_fd: int, status_fd: int, wake_r: int) -> int:
    """A warm supervisor: wait for the job on ``job_fd``, then become the task's supervisor."""
    os.set_inheritable(status_fd, False)  # the app must not hold the agent's pipes open
    os.set_inheritable(job_fd, False)
    # now, while there is no task: off the way to the app's spawn
    become_subreaper()
    own_start_time()
    know_own_locale()
    job = read_job(job_fd, wake_r)
    os.close(job_fd)
    if job is None:
        return 0  # no task for us: the agent exited (or died)
    try:
        log, task_dir, cwd, grace, cmd, env = parse_job(job)
    except ValueError as e:  # an agent of another version?
        print(f"supervisor: bad job: {e}", file=sys.stderr)
        return 2
    become(log, task_dir, env)
    return Supervisor(task_dir, cwd, grace, status_fd, env).run(cmd, wake_r)


def _on_child(signum: int, frame: object) -> None:
    """The zygote's SIGCHLD handler: its wakeup pipe wakes its poll, which reaps."""


def fork_warm(job_fd: int, status_fd: int, ctl_fd: int, wake_r: int) -> int:
    """In the zygote: fork a warm supervisor that holds ``job_fd`` and ``status_fd``; its pid.

    The child leaves the zygote's session, socket (``ctl_fd``), SIGCHLD handler and wakeup
    pipe behind and takes its own, with SIGTERM blocked until then (a stop sent to it that
    early waits for its own state, as in a started one); it never returns.
    """
    old = sig.pthread_sigmask(sig.SIG_BLOCK, [sig.SIGTERM])
    try:
        pid = os.fork()
    except BaseException:
        sig.pthread_sigmask(sig.SIG_SETMASK, old)
        raise
    if pid:
        sig.pthread_sigmask(sig.SIG_SETMASK, old)
        return pid
    code = 1
    try:
        os.setsid()
        os.close(ctl_fd)
        sig.signal(sig.SIGCHLD, sig.SIG_DFL)
        os.close(sig.set_wakeup_fd(-1))  # the zygote's wakeup pipe (its write end) ...
        os.close(wake_r)  # ... and its read end
        _stop[0] = False
        _own_start.clear()  # (the zygote never read its own; a forked one reads its own)
        own_wake = wakeup_pipe()
        sig.pthread_sigmask(sig.SIG_SETMASK, old)
        code = warm_run(job_fd, status_fd, own_wake)
    except BaseException as e:
        try:  # noqa: SIM105 - contextlib would cost imports at start
            print(f"supervisor: {e!r}", file=sys.stderr)
        except BaseException:  # nothing left to tell it to
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 - contextlib would cost imports at start
                stream.flush()
            except BaseException:  # a log that went away
                pass
        os._exit(code)


def zygote_main(argv: list[str], wake_r: int) -> int:
    """``--zygote-fd N``: fork a warm supervisor per request until EOF (see the docstring)."""
    if len(argv) != 2 or argv[0] != "--zygote-fd":
        print("supervisor: usage: --zygote-fd N", file=sys.stderr)
        return 2
    import socket  # once per agent, not per supervisor

    # once for all the supervisors it forks
    libc_prctl()
    know_own_locale()
    ctl = socket.socket(fileno=int(argv[1]))
    ctl.set_inheritable(False)
    sig.signal(sig.SIGCHLD, _on_child)
    poller = select.poll()
    poller.register(ctl.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                drain(wake_r)
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(ctl, 16, 2)
            except OSError:
                return 0
            if not msg:
                return 0  # EOF: the agent exited or died
            try:
                if msg != b"fork" or len(fds) != 2:
                    ctl.send(b"error")
                    continue
                pid = fork_warm(fds[0], fds[1], ctl.fileno(), wake_r)
                ctl.send(b"%d %d" % (pid, proc_start_time(pid) or 0))
            except OSError:
                return 0  # it cannot fork any more, or the agent is gone: it asks no more
            finally:
                for f in fds:
                    os.close(f)
        reap_children()


def main(argv: list[str] | None = None) -> int:
    sig.signal(sig.SIGTERM, _on_term)
    args = sys.argv[1:] if argv is None else argv
    warm = args[:1] in (["--job-fd"], ["--zygote-fd"])
    # a warm supervisor must see a SIGTERM that waited for the unblock below on its poll
    wake_r = wakeup_pipe() if warm else None
    # the agent starts us with SIGTERM blocked, so a stop sent while this interpreter was
    # still starting waited (pending) for the handler above instead of killing us
    sig.pthread_sigmask(sig.SIG_UNBLOCK, [sig.SIGTERM])
    # the agent may die, or its terminal may close: none of that concerns us
    sig.signal(sig.SIGHUP, sig.SIG_IGN)
    sig.signal(sig.SIGINT, sig.SIG_IGN)
    if wake_r is not None:
        if args[0] == "--zygote-fd":
            return zygote_main(args, wake_r)
        return warm_main(args, wake_r)
    try:
        task_dir, cwd, grace, status_fd, cmd = parse_args(args)
    except ValueError as e:
        print(f"supervisor: {e}", file=sys.stderr)
        return 2
    if status_fd is not None:
        os.set_inheritable(status_fd, False)  # the app must not hold the agent's pipe open
    return Supervisor(task_dir, cwd, grace, status_fd).run(cmd)


if __name__ == "__main__":
    sys.exit(main())
