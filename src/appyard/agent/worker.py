"""One task on the agent, from its assignment (or re-adoption) to its last report.

A worker fetches the release, builds the venv, computes the app's command and environment
(``appspec``), launches the supervisor (``launcher``), reports ``started``, ships the log every
~50 ms until the supervisor's pidfd says it ended, reports ``exited`` (or ``failed`` when the
app could not start) with the log's last batch, ships what is left, and marks the task
reported. Reports are retried until the server answers; a 4xx answer (e.g. 409: the server
already moved the task on) drops the report. A re-adopted task (found running by a new agent)
starts at the shipping.

The end is reported once the log up to its cap has shipped (``END_BATCHES``), so a client whose
``wait`` returns reads the whole stored log; the cap (``logship``) bounds that wait, and what the
app printed past it is never waited for. Each task ships from its
own thread over the agent's pooled connections, in bounded turns: a task with a long backlog
holds up no other task's log or report.

A full disk under the task folder fails the task, saying so and where; it is not left for the
server to find the task missing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import sys
import threading
import time
from typing import TYPE_CHECKING

from appyard.agent import proc
from appyard.agent.appspec import app_command, app_env, free_port
from appyard.agent.cache import requirements_of
from appyard.agent.client import Abandoned
from appyard.agent.handle import AppHandle, adopt, kill_orphan
from appyard.agent.launch import SpawnError
from appyard.agent.logship import MAX_BATCH_BYTES, MAX_BATCH_LINES, LogShipper
from appyard.agent.state import Found, TaskDir, TaskState, classify
from appyard.agent.usage import memory_limit_mb
from appyard.errors import ApiError, AppyardError
from appyard.schemas.agents import LogBatch, TaskAssignment, TaskEvent
from appyard.schemas.manifest import DEFAULT_LOG_BYTES, DEFAULT_LOG_LINES

if TYPE_CHECKING:
    from appyard.agent.loop import Agent

log = logging.getLogger("appyard.agent")

#: how often a running task's log file is read (its exit is noticed at once, by pidfd)
LOG_INTERVAL_S = 0.05
#: batches of log shipped per turn while the app runs (then the app is looked at again)
TURN_BATCHES = 20
#: batches of log the report of the app's end waits for at most (the rest ships after it):
#: enough for the largest log cap a manifest may ask for (1,000,000 lines, 1 GiB), so a client
#: whose ``wait`` returns reads the whole stored log; the cap bounds how long that takes
END_BATCHES = max(1_000_000 // MAX_BATCH_LINES, (1 << 30) // MAX_BATCH_BYTES) + 2
#: errors of a full disk
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class TaskWorker(threading.Thread):
    """One task, from assignment (or re-adoption) to its last report."""

    def __init__(
        self,
        agent: Agent,
        td: TaskDir,
        state: TaskState,
        *,
        assignment: TaskAssignment | None = None,
        found: Found | None = None,
    ) -> None:
        super().__init__(name=f"task-{td.task_id}", daemon=True)
        self.agent = agent
        self.client = agent.client
        self.dir = td
        self.state = state
        self.task_id = td.task_id
        self.assignment = assignment
        self.found = found
        self.handle: AppHandle | None = None
        # the app is gone (its slot is free); reports may still be on their way
        self.app_ended = found in (Found.ENDED, Found.LOST)
        self.env: dict[str, str] = {}
        self._stop_asked = threading.Event()
        self._handle_lock = threading.Lock()
        #: the launch began: from here on a stop is run on the app, not on its preparation
        self._launching = False
        self._logs_refused = False
        self._stop_note: str | None = None

    # --- called from other threads ----------------------------------------------------------
    @property
    def held(self) -> bool:
        """Listed in the poll's ``running``: the server keeps the task on this agent for it.

        A task asked to stop before its launch began is left out: the server has ended it,
        and listing it would bring the same stop back on every poll while the worker finishes
        preparing. One whose launch began stays listed until its end is reported, even while
        the launcher has not handed over the app yet (its process may run already), so the
        server's status changes only after the app is gone and the last log lines are in.
        """
        if self.state.end_reported:
            return False  # the server moved it on: only log lines are left to send
        with self._handle_lock:
            launched = self._launching or self.handle is not None or self.found is not None
        return launched or not self._stop_asked.is_set()

    @property
    def stop_asked(self) -> bool:
        return self._stop_asked.is_set()

    def request_stop(self, note: str | None = None) -> None:
        """Stop protocol: SIGTERM to the supervisor, which does grace + SIGKILL of the group.

        ``note`` goes with the exit report (the server only knows of stops asked through it).
        """
        if note and self._stop_note is None:
            self._stop_note = note
        first = not self._stop_asked.is_set()
        self._stop_asked.set()
        with self._handle_lock:  # the worker closes the pidfd under this lock
            sent = self.handle is not None and self.handle.stop()
        if sent and first:
            log.info("task %d: stop: SIGTERM to its supervisor", self.task_id)

    # --- the thread -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Abandoned:
            log.info("task %d: reports left for the next agent", self.task_id)
        except OSError as e:
            if e.errno not in _DISK_FULL:
                self._broken()
            else:
                self._disk_full(e)
        except Exception as e:
            self._broken(e)
        finally:
            with self._handle_lock:
                if self.handle is not None:
                    self.handle.close()
            self.agent.worker_done(self)

    def _broken(self, e: Exception | None = None) -> None:
        """The worker failed: nobody watches the app any more, so it is not left running. A
        task whose app never started is reported failed, so the server does not give it to
        this agent again and again."""
        log.exception("task %d: unexpected failure of its worker", self.task_id)
        with self._handle_lock:
            launched = self.handle is not None
            if self.handle is not None and not self.app_ended and self.handle.stop():
                log.warning("task %d: its app is being stopped", self.task_id)
        if not launched and not self.app_ended:
            with contextlib.suppress(Exception):
                self._report_failed(f"the agent failed to start the app: {e!r}")

    def _disk_full(self, e: OSError) -> None:
        """No room left to write the task's files: its app is stopped and the task fails with
        what happened and where (the server would otherwise see it vanish from the agent)."""
        where = e.filename or self.dir.path
        error = (
            f"the agent's disk is full: no space left on device writing {where} "
            f"(agent {self.agent.agent_id}, host {self.agent.config.hostname})"
        )
        log.error("task %d: %s", self.task_id, error)
        with self._handle_lock:
            if self.handle is not None and not self.app_ended:
                self.handle.stop()
        try:
            if not self.state.end_reported:
                self._report(TaskEvent(kind="failed", error=error))
        except Abandoned:
            log.info("task %d: reports left for the next agent", self.task_id)
        self.app_ended = True
        self.state.reported = True
        with contextlib.suppress(OSError):  # still full: a new agent reports it again
            self._save()

    def _run(self) -> None:
        if self.assignment is not None:
            if not self._launch(self.assignment):
                return
        elif self.found is Found.RUNNING:
            handle = adopt(self.dir, self.state)
            if handle is None:  # it ended between the scan and now
                self.found = classify(self.dir, self.state)
            else:
                self._set_handle(handle)
                log.info(
                    "task %d: re-adopted (supervisor %d, app %s)",
                    self.task_id,
                    handle.supervisor_pid,
                    handle.app_pid,
                )
        if self.handle is not None:
            if not self.state.started_reported:
                self._report_started()
            self._follow(self.handle)
        self.app_ended = True
        self._finish()

    def _set_handle(self, handle: AppHandle) -> None:
        with self._handle_lock:
            self.handle = handle
            stopped = self._stop_asked.is_set() and handle.stop()  # asked while we launched
        if stopped:
            log.info("task %d: stop: SIGTERM to its supervisor", self.task_id)

    def _save(self) -> None:
        self.dir.save(self.state)

    def _prepare(self, a: TaskAssignment) -> list[str]:
        """Fetch the release, build its venv, compute argv and env (may take minutes)."""
        agent = self.agent
        assert agent.releases is not None and agent.venvs is not None
        assert agent.agent_id is not None
        manifest = agent.releases.manifest(a.release_sha256, a.config)
        # written down with the supervisor's pid, next (a new agent ships to the same cap)
        self.state.log_cap_lines = manifest.log_limit.lines
        self.state.log_cap_bytes = manifest.log_limit.bytes
        url = a.release_url or f"/api/v1/releases/{a.release_sha256}/archive"
        app_dir = agent.releases.get(a.release_sha256, lambda dest: self.client.download(url, dest))
        reqs = requirements_of(app_dir, manifest)
        python = agent.venvs.python_for(reqs) if reqs else sys.executable
        port = free_port()
        self.env = app_env(
            a, server=agent.server, agent_id=agent.agent_id, app_dir=app_dir, port=port
        )
        self.state.app_port = port  # written down with the supervisor's pid, next
        argv = app_command(manifest, app_dir, python, self.env)
        return agent.isolation.wrap(
            argv,
            self.env,
            app_dir=app_dir,
            python=python,
            work=self.dir.work,
            spec=manifest.sandbox,
            gpus=[g.index for g in a.gpus or []],
        )

    def _fresh_folder(self, a: TaskAssignment) -> None:
        """A new attempt in the task's folder; the log is kept so its offsets keep growing."""
        td = self.dir
        try:
            td.path.mkdir(parents=True)
        except FileExistsError:  # (a new folder, the usual case, has nothing to clear)
            for f in (td.exit_file, td.pids_file, td.state_file, td.supervisor_log):
                f.unlink(missing_ok=True)
            shutil.rmtree(td.work, ignore_errors=True)
        self.state = TaskState(
            task_id=a.task_id,
            app_name=a.app_name,
            created_at=time.time(),
            boot_id=proc.boot_id(),
            stop_grace_s=a.stop_grace_s,
            log_offset=td.log_size(),
        )
        self._save()

    def _launch(self, a: TaskAssignment) -> bool:
        t0 = time.monotonic()
        self._fresh_folder(a)
        if self._stop_asked.is_set():
            self._report_failed("stopped before the app started")
            return False
        try:
            argv = self._prepare(a)
        except Abandoned:
            raise
        except (AppyardError, OSError) as e:
            log.warning("task %d: cannot prepare the app: %s", self.task_id, e)
            self._report_failed(f"cannot prepare the app: {e}")
            return False
        with self._handle_lock:  # a stop asked from here on is run on the app (``held``)
            stopped = self._stop_asked.is_set()
            self._launching = not stopped
        if stopped:
            self._report_failed("stopped before the app started")
            return False

        def on_supervisor(pid: int, start: int | None) -> None:
            self.state.supervisor_pid, self.state.supervisor_start = pid, start
            self._save()

        try:
            handle = self.agent.launcher.launch(
                self.dir,
                argv,
                self.env,
                a.stop_grace_s,
                on_supervisor,
                sandboxed=self.agent.isolation.sandboxed,
                usage=(self.agent.config.usage_interval_s, memory_limit_mb(a)),
            )
        except SpawnError as e:
            log.warning("task %d: %s", self.task_id, e)
            self._report_failed(str(e))
            return False
        # not written down here: the supervisor wrote them to pids.json before it told us,
        # and a scan takes them from there (``TaskDir.fill_pids``)
        self.state.app_pid, self.state.app_start = handle.app_pid, handle.app_start
        self._set_handle(handle)
        log.info(
            "task %d: started pid %s (%.0f ms after assignment)",
            self.task_id,
            handle.app_pid,
            (time.monotonic() - t0) * 1000,
        )
        return True

    def _report(self, event: TaskEvent) -> bool:
        """Send an event until the server answers; False when it refused it (4xx)."""
        try:
            self.client.event(self.task_id, event)
            return True
        except ApiError as e:
            log.warning("task %d: server refused %s event: %s", self.task_id, event.kind, e)
            return False

    def _report_failed(self, error: str) -> None:
        self._ship(final=True)
        if self._report(TaskEvent(kind="failed", error=error[:8000])):
            log.info("task %d: failed: %s", self.task_id, error.splitlines()[0][:200])
        self.app_ended = True
        self._mark_reported()

    def _report_started(self) -> None:
        assert self.handle is not None
        if self._report(TaskEvent(kind="started", pid=self.handle.app_pid)):
            # written down with the next save (a log ack, the end): a new agent that finds
            # it unset reports ``started`` again, which the server takes as a no-op
            self.state.started_reported = True
        else:  # the server does not want this task (stopped or lost meanwhile): stop it
            self.request_stop()

    def _acked(self, offset: int, lines: int) -> None:
        self.state.log_offset = offset
        self.state.log_lines = lines
        self._save()

    def _shipper(self) -> LogShipper:
        st = self.state
        return LogShipper(
            self.client,
            self.task_id,
            self.dir.log,
            st.log_offset,
            self._acked,
            lines=st.log_lines,
            cap=(st.log_cap_lines or DEFAULT_LOG_LINES, st.log_cap_bytes or DEFAULT_LOG_BYTES),
            where=(
                f"on agent {self.agent.agent_id} (host {self.agent.config.hostname}) "
                f"in {self.dir.log}"
            ),
        )

    def _ship(self, final: bool = False, shipper: LogShipper | None = None) -> None:
        if self._logs_refused:
            return
        own = shipper is None
        shipper = shipper or self._shipper()
        try:
            shipper.ship(final=final, max_batches=None if final else TURN_BATCHES)
        except ApiError as e:
            log.warning("task %d: server refused its log: %s; log not sent", self.task_id, e)
            self._logs_refused = True
        finally:
            if own:
                shipper.close()

    def _follow(self, handle: AppHandle) -> None:
        """Ship the log while the app runs; return the moment its supervisor has exited."""
        shipper = self._shipper()
        try:
            while True:
                if self.agent.abandon.is_set():
                    raise Abandoned("the agent exits; the app keeps running")
                # wait first: what a short app prints goes with the report of its end
                if handle.wait(0 if shipper.behind else LOG_INTERVAL_S):
                    return
                self._ship(shipper=shipper)
        finally:
            shipper.close()

    def _finish(self) -> None:
        """The app is gone: report how it ended (with at most ``END_BATCHES`` of its log
        before), then ship the rest of the log."""
        info = self.dir.exit_info()
        error: str | None = None
        if info is None:
            killed = kill_orphan(self.state)
            error = "the task supervisor vanished without an exit status (killed, or a reboot)"
            if killed:
                error += "; the app was still running and has been killed"
            log.warning("task %d: %s", self.task_id, error)
        if self.state.end_reported:  # by an earlier agent: only the log is left
            self._ship(final=True)
            self._mark_reported()
            return
        last, more = self._end_batch()
        if info is not None and not info.spawned:
            event = TaskEvent(kind="failed", error=info.error or "the app could not be started")
        elif info is not None:
            note = info.error or (self._stop_note if info.stop_requested else None)
            event = TaskEvent(
                kind="exited",
                exit_code=info.exit_code,
                error=note,
                stopped=info.stop_requested,
                over_limit=info.over_limit,
            )
        else:
            event = TaskEvent(kind="exited", exit_code=None, error=error)
        # the samples no poll took yet: the app's last figures
        event.usage = self.agent.usage.report(self.task_id, self.dir.path)
        if self._report_end(event, last):
            log.info(
                "task %d: %s%s",
                self.task_id,
                event.kind,
                f" with code {event.exit_code}" if event.exit_code is not None else "",
            )
        if more:  # what the report did not wait for
            self.state.end_reported = True
            self._save()
            self._ship(final=True)
        self._mark_reported()

    def _end_batch(self) -> tuple[LogBatch | None, bool]:
        """After the app's end: ship a bounded part of its log; the batch that goes with the
        report (``LogShipper.end_batch``), and whether more is left for after it."""
        if self._logs_refused:
            return None, False
        shipper = self._shipper()
        try:
            return shipper.end_batch(END_BATCHES), shipper.behind
        except ApiError as e:
            log.warning("task %d: server refused its log: %s; log not sent", self.task_id, e)
            self._logs_refused = True
            return None, False
        finally:
            shipper.close()

    def _report_end(self, event: TaskEvent, last: LogBatch | None) -> bool:
        """Report the end with the log's last batch in one request. Refused, the two go apart
        as ever: the log may be wanted where the report is not, or need a resync."""
        if last is None:
            return self._report(event)
        try:
            self.client.event(self.task_id, event.model_copy(update={"logs": last}))
        except ApiError:
            self._ship(final=True)
            return self._report(event)
        # written down with the next save (``end_reported`` or ``reported``)
        self.state.log_offset = last.end_offset
        self.state.log_lines += len(last.lines)
        return True

    def _mark_reported(self) -> None:
        self.state.reported = True
        self._save()
