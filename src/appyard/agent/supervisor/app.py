"""The app process under its supervisor: spawn, output to the log, stop protocol, exit status.

The app gets the job's environment, stdin from /dev/null, a new session (so its own process
group, pgid = its pid), and default dispositions for SIGPIPE/SIGHUP/SIGINT/SIGXFSZ.

A sandboxed app (``Job.sandboxed``: argv is bubblewrap's, ``agent/sandbox.py``) is one more
level down: the process spawned is bubblewrap, whose one child is the sandbox's first process
(pid 1 of its PID namespace, leader of a session of its own: ``--new-session``), whose child is
the app, in that session's group. A stop's SIGTERM goes to that group, never to bubblewrap
(which would die of it, and take the sandbox down at once: ``--die-with-parent``); the
SIGKILL after the grace period goes to bubblewrap and the sandbox's first process, which ends
every process in the sandbox. Bubblewrap exits with the app's code, or 128 + N when the app was
killed by signal N, which is written as -N, as for an app run without a sandbox.
"""

from __future__ import annotations

import os
import select
import time
from _collections_abc import Mapping  # loaded with os (collections.abc is not)

from . import signals
from .files import EXIT_NAME, LOG_NAME, PIDS_NAME, jobject, now_iso, write_atomic
from .lines import READ_SIZE, Lines, record
from .procs import (
    become_subreaper,
    children,
    kill_descendants,
    own_start_time,
    proc_start_time,
    signal_group,
)
from .signals import drain, sig
from .usage import Sampler

#: exit code written when the program cannot be executed at all (as a shell does)
EXEC_FAILED = 127
#: how long the output pipes may stay open after the app and its group are gone
DRAIN_S = 2.0
#: how often a stop retries its SIGTERM while bubblewrap has not made the sandbox yet
SANDBOX_RETRY_S = 0.01


class Supervisor:
    """One app process, its two output pipes, its log file, its stop protocol."""

    def __init__(
        self,
        task_dir: str,
        cwd: str,
        grace: float,
        status_fd: int | None,
        env: Mapping[str, str],
        sandboxed: bool = False,
    ) -> None:
        self.task_dir = task_dir
        self.sandboxed = sandboxed
        #: the app's environment
        self.env = env
        self.cwd = cwd
        self.grace = grace
        self.status_fd = status_fd
        self.log_fd = os.open(
            os.path.join(task_dir, LOG_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )
        #: the app's output pipes (read ends), each cut into lines at its level
        self.pipes: dict[int, Lines] = {}
        self.killed = False
        self.started_at = now_iso()
        #: samples what the app uses, and keeps its memory limit (``watch_usage``)
        self.sampler: Sampler | None = None
        self.usage: tuple[float, int] = (0.0, 0)

    def watch_usage(self, interval_s: float, memory_limit_mb: int) -> None:
        """Sample the app's usage every ``interval_s`` from its spawn on (0: never); stop it
        once its memory passes ``memory_limit_mb`` (0: no limit; sampled every second at
        least then, so that the limit is kept)."""
        if memory_limit_mb > 0 and not interval_s > 0:
            interval_s = 1.0
        self.usage = (interval_s, memory_limit_mb)

    @property
    def stop_requested(self) -> bool:
        return signals.stop[0]

    @property
    def over_limit(self) -> str | None:
        """Why the supervisor stops the app itself (its memory limit), or None."""
        return self.sampler.exceeded if self.sampler is not None else None

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

    def note(self, level: str, text: str) -> None:
        """A line of the supervisor's own in the task's log (stop, kill, spawn error)."""
        self.write_records([record(level, text, "supervisor")])

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
                    "error": error or self.over_limit,
                    "over_limit": self.over_limit is not None,
                }
            ),
            sync=True,
        )

    # --- the app ----------------------------------------------------------------------------
    def sandbox_leader(self, pid: int) -> int | None:
        """The sandbox's first process (bubblewrap's child), once bubblewrap has made it."""
        kids = children(pid)
        return kids[0] if kids else None

    def term(self, pid: int) -> bool:
        """SIGTERM to the app's process group; False when it cannot be sent yet (bubblewrap
        still makes the sandbox: the app does not run yet)."""
        if not self.sandboxed:
            signal_group(pid, sig.SIGTERM)
            return True
        leader = self.sandbox_leader(pid)
        if leader is None:
            return False
        try:
            os.killpg(leader, sig.SIGTERM)
        except ProcessLookupError:  # not a session leader yet (or gone): try again
            return False
        return True

    def kill(self, pid: int) -> None:
        """SIGKILL to the app's group; for a sandbox, to bubblewrap and the sandbox's first
        process, whose end kills every process in it."""
        leader = self.sandbox_leader(pid) if self.sandboxed else None
        signal_group(pid, sig.SIGKILL)
        if leader is not None:
            try:  # noqa: SIM105 - contextlib would cost imports at start
                os.kill(leader, sig.SIGKILL)
            except ProcessLookupError:
                pass

    def exit_code(self, status: int) -> int:
        """The app's exit code from its wait status (see the module's docstring)."""
        code = os.waitstatus_to_exitcode(status)
        if self.sandboxed and 128 < code < 128 + 65:
            return 128 - code
        return code

    def spawn(self, argv: list[str]) -> int | None:
        """Start the app in a new session; on failure log it, write exit.json, return None."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pipes = {out_r: Lines("info"), err_r: Lines("error")}
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

    def run(self, argv: list[str], wake_r: int) -> int:
        """Spawn the app and supervise it to its end; the supervisor's exit code."""
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
        if self.usage[0] > 0:
            self.sampler = Sampler(self.task_dir, *self.usage)
        try:
            code = self.watch(pid, pidfd, wake_r)
        except BaseException as e:  # a bug of ours must not leave the app unwatched
            self.kill(pid)
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
        status: int | None = None
        term_asked = term_sent = False
        kill_at: float | None = None
        drain_until: float | None = None

        sampler = self.sampler
        while self.pipes or status is None:
            now = time.monotonic()
            if sampler is not None and status is None and sampler.due(now):
                sampler.sample()
                if sampler.exceeded is not None and not term_asked:
                    self.note("error", f"{sampler.exceeded}: stopping the app")
            stopping = self.stop_requested or self.over_limit is not None
            if stopping and not term_sent and status is None:
                if not term_asked:
                    term_asked = True
                    why = "stop requested" if self.stop_requested else "memory limit"
                    self.note("info", f"{why}: SIGTERM to the app, {self.grace:g} s grace")
                    kill_at = now + self.grace
                term_sent = self.term(pid)
            if kill_at is not None and status is None and now >= kill_at:
                kill_at = None
                self.killed = True
                self.note("warning", f"still running after {self.grace:g} s grace: SIGKILL")
                self.kill(pid)
            records: list[str] = []
            if drain_until is not None and now >= drain_until:
                # a process that left the group holds the pipes open: stop reading
                for lines in self.pipes.values():
                    lines.feed(b"", records)
                self.write_records(records)
                break
            deadline = kill_at if status is None else drain_until
            if term_asked and not term_sent and status is None:
                deadline = now + SANDBOX_RETRY_S
            if sampler is not None and status is None:
                deadline = sampler.next_at if deadline is None else min(deadline, sampler.next_at)
            timeout = None if deadline is None else max(0, int((deadline - now) * 1000) + 1)
            for fd, _ in poller.poll(timeout):
                if fd == wake_r:
                    drain(wake_r)
                elif fd == pidfd:
                    # the app is a zombie now, its pid (= pgid) still reserved: kill the rest
                    # of its group, then reap it
                    signal_group(pid, sig.SIGKILL)
                    status = os.waitpid(pid, 0)[1]
                    # its status is ours now: kill and reap whatever else is left below us
                    # (daemons that left the group came to us as their subreaper)
                    kill_descendants()
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    drain_until = time.monotonic() + DRAIN_S
                else:
                    data = os.read(fd, READ_SIZE)
                    self.pipes[fd].feed(data, records)
                    if not data:
                        poller.unregister(fd)
                        os.close(fd)
                        del self.pipes[fd]
            self.write_records(records)
        assert status is not None
        return self.exit_code(status)
