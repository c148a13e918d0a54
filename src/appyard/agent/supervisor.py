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

Levels: a stdout line is ``info`` and a stderr line ``error``, unless one of the first words of
the line is an upper-case level name (``DEBUG``, ``INFO``, ``WARNING``/``WARN``, ``ERROR``,
``CRITICAL``/``FATAL``), as Python's logging and most servers write them; then that level.
Lines are split on ``\\n`` (a trailing ``\\r`` is dropped); a line longer than 64 KiB is cut and
marked, the rest of it up to the next newline is dropped. Bytes that are not UTF-8 are replaced.
Lines the supervisor writes itself (stop, kill, spawn error) carry ``"src": "supervisor"``.

Usage (the agent runs it by file path with ``-I -S`` so that it starts in a few ms; it imports
nothing but built-in modules: no ``json``, no ``signal`` (both pull in ``re``/``enum``))::

    python -I -S supervisor.py --task-dir DIR --cwd DIR --grace SECONDS [--status-fd N] -- ARGV...
    python -m appyard.agent.supervisor ...   (works too, a bit slower to start)

The app gets the supervisor's environment, stdin from /dev/null, a new session (so its own
process group, pgid = its pid), and default dispositions for SIGPIPE/SIGHUP/SIGINT/SIGXFSZ.

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
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])


def write_atomic(path: str, text: str, sync: bool = False) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


#: set by the SIGTERM handler, installed first thing so an early stop is never lost
_stop = [False]


def _on_term(signum: int, frame: object) -> None:
    _stop[0] = True


class Supervisor:
    """One app process, its two output pipes, its log file, its stop protocol."""

    def __init__(self, task_dir: str, cwd: str, grace: float, status_fd: int | None) -> None:
        self.task_dir = task_dir
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
                os.environ,
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

    def run(self, argv: list[str]) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        sig.set_wakeup_fd(wake_w)

        pid = self.spawn(argv)
        if pid is None:
            return 0
        pidfd = os.pidfd_open(pid)
        start = proc_start_time(pid)
        pids: dict[str, object] = {
            "supervisor_pid": os.getpid(),
            "supervisor_start": proc_start_time(os.getpid()),
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
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif fd == pidfd:
                    # the app is a zombie now, its pid (= pgid) still reserved: kill the rest
                    # of its group, then reap it
                    self.signal_group(pid, sig.SIGKILL)
                    status = os.waitpid(pid, 0)[1]
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


def main(argv: list[str] | None = None) -> int:
    sig.signal(sig.SIGTERM, _on_term)
    # the agent starts us with SIGTERM blocked, so a stop sent while this interpreter was
    # still starting waited (pending) for the handler above instead of killing us
    sig.pthread_sigmask(sig.SIG_UNBLOCK, [sig.SIGTERM])
    # the agent may die, or its terminal may close: none of that concerns us
    sig.signal(sig.SIGHUP, sig.SIG_IGN)
    sig.signal(sig.SIGINT, sig.SIG_IGN)
    try:
        task_dir, cwd, grace, status_fd, cmd = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"supervisor: {e}", file=sys.stderr)
        return 2
    if status_fd is not None:
        os.set_inheritable(status_fd, False)  # the app must not hold the agent's pipe open
    return Supervisor(task_dir, cwd, grace, status_fd).run(cmd)


if __name__ == "__main__":
    sys.exit(main())
