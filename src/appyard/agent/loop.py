"""The agent: hello, the long poll, one worker thread per task, re-adoption after a restart.

Life of an agent::

    find its work folder (by a fingerprint of the token) and lock it
    scan it: running supervisors are re-adopted (pid + start time + boot id), tasks that ended
        meanwhile are collected (exit.json), vanished supervisors are "lost"
    POST /agents/hello with ``held`` (all of those); stop what the welcome lists
    start a worker per found task, then long-poll: each assignment gets a worker, each id in
        ``stop`` gets the stop protocol
    on SIGTERM/SIGINT: stop polling and exit, leaving the apps running (a new agent
        re-adopts them); with ``stop_apps_on_exit``: stop every app, report, then exit

A worker owns one task from assignment to its last report: fetch the release, build the venv,
launch the supervisor (runner.py), report ``started``, ship the log every ~50 ms until the
supervisor's pidfd says it ended, ship the rest, report ``exited`` (or ``failed`` when the app
could not start), mark the task reported. Reports are retried until the server answers; a 4xx
answer (e.g. 409: the server already moved the task on) drops the report.
"""

from __future__ import annotations

import logging
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appyard import __version__
from appyard.agent import proc
from appyard.agent.cache import ReleaseCache, VenvCache, requirements_of
from appyard.agent.client import RETRY_STATUSES, Abandoned, AgentClient, Backoff
from appyard.agent.logship import LogShipper
from appyard.agent.runner import (
    AppHandle,
    Launcher,
    SpawnError,
    adopt,
    app_command,
    app_env,
    free_port,
    kill_orphan,
)
from appyard.agent.state import (
    Found,
    ScannedTask,
    TaskDir,
    TaskState,
    WorkDir,
    appyard_home,
    classify,
    find_work_dir,
)
from appyard.errors import ApiError, AppyardError, ConfigurationError, ServerUnavailableError
from appyard.schemas.agents import (
    AgentHello,
    AgentWelcome,
    HeldTask,
    LogBatch,
    PollRequest,
    TaskAssignment,
    TaskEvent,
)

log = logging.getLogger("appyard.agent")

#: how often a running task's log file is read (its exit is noticed at once, by pidfd)
LOG_INTERVAL_S = 0.05
#: extra time, beyond the longest grace period, that a stop-on-exit waits for the reports
STOP_ON_EXIT_SLACK_S = 15.0
#: a poll answered faster than this with nothing new is followed by a pause this long
QUICK_POLL_S = 0.1


@dataclass
class AgentConfig:
    """What ``appyard agent`` (or ``python -m appyard.agent``) was given."""

    server: str
    token: str
    slots: int = 4
    #: None: ``$APPYARD_HOME/agent-<agent_id>`` (found again by the token's fingerprint)
    work_dir: Path | None = None
    #: stop every app (stop protocol) when the agent is asked to exit; default: leave them
    stop_apps_on_exit: bool = False
    home: Path | None = None
    hostname: str = field(default_factory=socket.gethostname)
    poll_timeout_s: float = 25.0
    #: folders of reported tasks older than this are deleted at start
    prune_after_s: float = 7 * 86400.0


class Agent:
    """One agent process's state: its workers, its client, its work folder."""

    def __init__(self, config: AgentConfig) -> None:
        if config.slots < 1:
            raise ValueError("slots must be at least 1")
        self.config = config
        self.abandon = threading.Event()  # set on exit: pending reports are left on disk
        self.stopping = threading.Event()
        self.client = AgentClient(config.server, config.token, abandon=self.abandon)
        self.server = self.client.server
        self.agent_id: int | None = None
        self.poll_timeout_s = config.poll_timeout_s
        self.exit_code = 0
        self.work_dir: WorkDir | None = None
        self.releases: ReleaseCache | None = None
        self.venvs: VenvCache | None = None
        self._workers: dict[int, TaskWorker] = {}
        self._lock = threading.Lock()
        #: launches supervisors, keeping one started ahead (warm) for the next task
        self.launcher = Launcher()
        self._stop = threading.Event()
        #: set once hello succeeded and the found tasks have their workers (tests wait on it)
        self.online = threading.Event()

    # --- start ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> int:
        """Run until ``stop`` is set (``main`` sets it on SIGTERM/SIGINT); returns an exit code.

        0: asked to stop; 1: the agent broke; 2: its work folder is taken by another agent;
        3: the server refused it (bad token, agent deleted).
        Raises ``WorkDirLocked`` when another agent uses the work folder.
        """
        stop = stop or threading.Event()
        self._stop = stop
        try:
            wd = self._find_work_dir()
            scanned = self._scan(wd) if wd is not None else []
            main = threading.Thread(
                target=self._main, args=(wd, scanned), name="agent", daemon=True
            )
            main.start()
            stop.wait()
            return self._shutdown()
        finally:
            self.abandon.set()
            if self.work_dir is not None:
                self.work_dir.unlock()

    def _main(self, wd: WorkDir | None, scanned: list[ScannedTask]) -> None:
        """Hello, adopt what the scan found, then poll (in a thread: a signal can end it)."""
        try:
            welcome = self._hello(scanned)
            if wd is None:
                wd = self._settle_work_dir(welcome.agent_id)
                scanned = self._scan(wd)  # a folder a rotated token left behind
                if scanned:  # tell the server about those too (it may want them stopped)
                    welcome = self._hello(scanned)
            self._use(wd, welcome)
        except Abandoned:
            return
        except ConfigurationError as e:
            log.error("%s", e)
            self.exit_code = 2
            self._stop.set()
            return
        except ApiError as e:
            log.error("the server refused the agent's hello: %s (check the token)", e)
            self.exit_code = 3
            self._stop.set()
            return
        except Exception:
            log.exception("the agent could not start")
            self.exit_code = 1
            self._stop.set()
            return
        for found in scanned:
            self._start_found(found)
        for task_id in welcome.stop:
            self.stop_task(task_id)
        self.launcher.prime()  # the first task gets a warm supervisor too
        self.online.set()
        self._poll_loop()

    def _home(self) -> Path:
        return self.config.home or appyard_home()

    def _find_work_dir(self) -> WorkDir | None:
        if self.config.work_dir is not None:
            wd = WorkDir(self.config.work_dir)
        else:
            found = find_work_dir(self._home(), self.config.token)
            if found is None:
                return None  # first run: the folder is named after the id hello returns
            wd = found
        wd.lock()
        self.work_dir = wd
        return wd

    def _settle_work_dir(self, agent_id: int) -> WorkDir:
        wd = WorkDir(self._home() / f"agent-{agent_id}")
        wd.lock()
        self.work_dir = wd
        return wd

    def _use(self, wd: WorkDir, welcome: AgentWelcome) -> None:
        ident = wd.identity()
        if ident.get("agent_id") not in (None, welcome.agent_id):
            log.warning(
                "work folder %s belonged to agent %s; this is agent %s",
                wd.root,
                ident.get("agent_id"),
                welcome.agent_id,
            )
        wd.write_identity(welcome.agent_id, self.server, self.config.token)
        self.releases = ReleaseCache(wd.cache / "releases")
        self.venvs = VenvCache(wd.cache / "venvs")
        log.info(
            "agent %d of team %d online at %s: %d slots, work folder %s",
            welcome.agent_id,
            welcome.team_id,
            self.server,
            self.config.slots,
            wd.root,
        )

    def _scan(self, wd: WorkDir) -> list[ScannedTask]:
        """Tasks of the work folder that still need the agent (see ``state.Found``)."""
        wd.create()
        pruned = wd.prune(self.config.prune_after_s)
        if pruned:
            log.info("removed %d old task folders", pruned)
        out = []
        for t in wd.scan():
            if t.found is Found.DONE:
                continue
            if t.found is Found.UNLAUNCHED:
                # the agent died before it launched the app: the server gets the task back
                # (it is not in ``held``) and may give it to this agent again
                log.info("task %d: never launched, left to the server", t.state.task_id)
                t.state.reported = True
                t.dir.save(t.state)
                continue
            log.info("task %d: found %s", t.state.task_id, t.found.value)
            out.append(t)
        return out

    def _hello(self, scanned: list[ScannedTask] | None = None) -> AgentWelcome:
        if scanned is not None:
            held = [
                HeldTask(task_id=t.state.task_id, running=t.found is Found.RUNNING) for t in scanned
            ]
        else:
            with self._lock:
                workers = list(self._workers.values())
            held = [HeldTask(task_id=w.task_id, running=not w.app_ended) for w in workers if w.held]
        hello = AgentHello(
            slots=self.config.slots,
            hostname=self.config.hostname[:255],
            version=__version__,
            held=held,
        )
        welcome = self.client.hello(hello)
        self.agent_id = welcome.agent_id
        self.poll_timeout_s = max(0.0, min(self.config.poll_timeout_s, welcome.poll_timeout_s))
        return welcome

    def _start_found(self, t: ScannedTask) -> None:
        worker = TaskWorker(self, t.dir, t.state, found=t.found)
        with self._lock:
            self._workers[worker.task_id] = worker
        worker.start()

    # --- the poll ---------------------------------------------------------------------------
    def _poll_request(self) -> PollRequest:
        with self._lock:
            workers = list(self._workers.values())
        busy = sum(1 for w in workers if not w.app_ended)
        return PollRequest(
            free_slots=max(0, self.config.slots - busy),
            running=sorted(w.task_id for w in workers if w.held),
            timeout_s=self.poll_timeout_s,
        )

    def _poll_loop(self) -> None:
        stop = self._stop
        backoff = Backoff(first=0.5, cap=10.0)
        rehello = False
        assert self.agent_id is not None
        while not stop.is_set():
            try:
                if rehello:
                    # after an outage: the server may have restarted or marked us offline
                    welcome = self._hello()
                    for task_id in welcome.stop:
                        self.stop_task(task_id)
                    rehello = False
                    log.info("reconnected to %s", self.server)
                t0 = time.monotonic()
                resp = self.client.poll(self.agent_id, self._poll_request())
            except Abandoned:
                return
            except (ServerUnavailableError, ApiError) as e:
                if isinstance(e, ApiError) and e.status_code not in RETRY_STATUSES:
                    log.error("the server refused the agent's poll: %s; the agent stops", e)
                    self.exit_code = 3
                    stop.set()
                    return
                delay = backoff.next()
                if backoff.attempt == 1 or backoff.attempt % 10 == 0:
                    log.warning("poll failed: %s; retrying in %.1f s", e, delay)
                rehello = True
                stop.wait(delay)
                continue
            backoff.reset()
            news = bool(resp.tasks)
            for assignment in resp.tasks:
                self._accept(assignment)
            for task_id in resp.stop:
                news |= self.stop_task(task_id)
            if not news and time.monotonic() - t0 < QUICK_POLL_S:
                # only stops already under way, answered at once (a task that ends while the
                # server has ended it already): do not spin while its last reports go out
                stop.wait(QUICK_POLL_S)

    def _accept(self, a: TaskAssignment) -> None:
        assert self.work_dir is not None
        with self._lock:
            if a.task_id in self._workers:
                log.warning("task %d: assigned again while this agent runs it; ignored", a.task_id)
                return
            busy = sum(1 for w in self._workers.values() if not w.app_ended)
            if busy >= self.config.slots:
                log.warning("task %d: assigned beyond the %d slots", a.task_id, self.config.slots)
            td = self.work_dir.task(a.task_id)
            if td.path.exists():
                # left by an earlier life of this id (a reset database, or an attempt taken
                # back before its app started): a new task starts with a fresh folder and log
                aside = td.path.with_name(f"{a.task_id}.old-{time.time_ns()}")
                td.path.rename(aside)
                log.info("task %d: an old folder of this id moved aside to %s", a.task_id, aside)
            worker = TaskWorker(self, td, TaskState(task_id=a.task_id), assignment=a)
            self._workers[a.task_id] = worker
        log.info("task %d: assigned (%s, release %s)", a.task_id, a.app_name, a.release_sha256[:12])
        if self.stopping.is_set():
            worker.request_stop()  # it will report that it did not start
        worker.start()

    def stop_task(self, task_id: int) -> bool:
        """Run the stop protocol for a task; False if it was asked before (or is unknown)."""
        with self._lock:
            worker = self._workers.get(task_id)
        if worker is None:
            log.debug("task %d: stop asked, but this agent does not run it", task_id)
            return False
        if worker.stop_asked:
            return False
        worker.request_stop()
        return True

    def worker_done(self, worker: TaskWorker) -> None:
        with self._lock:
            if self._workers.get(worker.task_id) is worker:
                del self._workers[worker.task_id]

    def workers(self) -> list[TaskWorker]:
        with self._lock:
            return list(self._workers.values())

    # --- exit -------------------------------------------------------------------------------
    def _shutdown(self) -> int:
        self.stopping.set()
        self.launcher.close()  # its warm supervisor exits (EOF on its job pipe)
        workers = self.workers()
        if self.config.stop_apps_on_exit and workers:
            log.info("stopping %d apps before exit", len(workers))
            for w in workers:
                w.request_stop("stopped by the agent as it exited (--stop-apps-on-exit)")
            grace = max(w.state.stop_grace_s for w in workers)
            deadline = time.monotonic() + grace + STOP_ON_EXIT_SLACK_S
            for w in workers:
                w.join(max(0.0, deadline - time.monotonic()))
            left = [w.task_id for w in workers if w.is_alive()]
            if left:
                log.warning("tasks %s did not finish reporting before exit", left)
        elif workers:
            log.info("exiting; %d apps keep running and will be re-adopted", len(workers))
        self.abandon.set()
        deadline = time.monotonic() + 2.0  # workers see ``abandon`` within ~50 ms
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        self.client.close()
        return self.exit_code


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
        self._logs_refused = False
        self._stop_note: str | None = None

    # --- called from other threads ----------------------------------------------------------
    @property
    def held(self) -> bool:
        """Listed in the poll's ``running``: the server keeps the task on this agent for it.

        A task asked to stop before its app was launched is left out: the server has ended
        it, and listing it would bring the same stop back on every poll while the worker
        finishes preparing. A launched one stays listed until its end is reported, so the
        server's status changes only after the last log lines are in.
        """
        with self._handle_lock:
            launched = self.handle is not None or self.found is not None
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
        except Exception:
            log.exception("task %d: unexpected failure of its worker", self.task_id)
            with self._handle_lock:  # nobody watches the app any more: do not leave it running
                if self.handle is not None and not self.app_ended and self.handle.stop():
                    log.warning("task %d: its app is being stopped", self.task_id)
        finally:
            with self._handle_lock:
                if self.handle is not None:
                    self.handle.close()
            self.agent.worker_done(self)

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
        url = a.release_url or f"/api/v1/releases/{a.release_sha256}/archive"
        app_dir = agent.releases.get(a.release_sha256, lambda dest: self.client.download(url, dest))
        reqs = requirements_of(app_dir, manifest)
        python = agent.venvs.python_for(reqs) if reqs else sys.executable
        self.env = app_env(
            a, server=agent.server, agent_id=agent.agent_id, app_dir=app_dir, port=free_port()
        )
        return app_command(manifest, app_dir, python, self.env)

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
        if self._stop_asked.is_set():
            self._report_failed("stopped before the app started")
            return False

        def on_supervisor(pid: int, start: int | None) -> None:
            self.state.supervisor_pid, self.state.supervisor_start = pid, start
            self._save()

        try:
            handle = self.agent.launcher.launch(
                self.dir, argv, self.env, a.stop_grace_s, on_supervisor
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

    def _acked(self, offset: int) -> None:
        self.state.log_offset = offset
        self._save()

    def _ship(self, final: bool = False, shipper: LogShipper | None = None) -> None:
        if self._logs_refused:
            return
        own = shipper is None
        shipper = shipper or LogShipper(
            self.client, self.task_id, self.dir.log, self.state.log_offset, self._acked
        )
        try:
            shipper.ship(final=final, max_batches=None if final else 20)
        except ApiError as e:
            log.warning("task %d: server refused its log: %s; log not sent", self.task_id, e)
            self._logs_refused = True
        finally:
            if own:
                shipper.close()

    def _follow(self, handle: AppHandle) -> None:
        """Ship the log while the app runs; return the moment its supervisor has exited."""
        shipper = LogShipper(
            self.client, self.task_id, self.dir.log, self.state.log_offset, self._acked
        )
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
        """The app is gone: ship the rest of its log, then report how it ended."""
        info = self.dir.exit_info()
        error: str | None = None
        if info is None:
            killed = kill_orphan(self.state)
            error = "the task supervisor vanished without an exit status (killed, or a reboot)"
            if killed:
                error += "; the app was still running and has been killed"
            log.warning("task %d: %s", self.task_id, error)
        last = self._ship_but_last()
        if info is not None and not info.spawned:
            event = TaskEvent(kind="failed", error=info.error or "the app could not be started")
        elif info is not None:
            note = info.error or (self._stop_note if info.stop_requested else None)
            event = TaskEvent(
                kind="exited", exit_code=info.exit_code, error=note, stopped=info.stop_requested
            )
        else:
            event = TaskEvent(kind="exited", exit_code=None, error=error)
        if self._report_end(event, last):
            log.info(
                "task %d: %s%s",
                self.task_id,
                event.kind,
                f" with code {event.exit_code}" if event.exit_code is not None else "",
            )
        self._mark_reported()

    def _ship_but_last(self) -> LogBatch | None:
        """After the app's end: ship its log but the last batch, which goes with the report."""
        if self._logs_refused:
            return None
        shipper = LogShipper(
            self.client, self.task_id, self.dir.log, self.state.log_offset, self._acked
        )
        try:
            return shipper.rest_but_last()
        except ApiError as e:
            log.warning("task %d: server refused its log: %s; log not sent", self.task_id, e)
            self._logs_refused = True
            return None
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
        self.state.log_offset = last.end_offset  # written down with ``reported``, next
        return True

    def _mark_reported(self) -> None:
        self.state.reported = True
        self._save()


def run_agent(config: AgentConfig, stop: threading.Event | None = None) -> int:
    """Run an agent until ``stop`` is set; see ``Agent.run``."""
    return Agent(config).run(stop)
