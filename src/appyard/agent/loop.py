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

A worker (``worker.TaskWorker``) owns one task from assignment to its last report.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appyard import __version__
from appyard.agent.cache import ReleaseCache, VenvCache
from appyard.agent.client import RETRY_STATUSES, Abandoned, AgentClient, Backoff
from appyard.agent.exit_codes import RET_CONFIG, RET_CRASHED, RET_OK, RET_REFUSED
from appyard.agent.inventory import InventoryReader
from appyard.agent.launcher import Launcher
from appyard.agent.sandbox import DEFAULT_APP_USER, Isolation, detect, unsandboxed
from appyard.agent.state import (
    Found,
    ScannedTask,
    TaskState,
    WorkDir,
    appyard_home,
    find_work_dir,
)
from appyard.agent.tunnel import TunnelClient
from appyard.agent.usage import DEFAULT_INTERVAL_S, UsageCollector
from appyard.agent.worker import TaskWorker
from appyard.errors import ApiError, ConfigurationError, ServerUnavailableError
from appyard.schemas.agents import (
    AgentHello,
    AgentWelcome,
    HeldTask,
    PollRequest,
    TaskAssignment,
)

log = logging.getLogger("appyard.agent")

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
    #: folders of this machine that an app may ask to read (manifest ``sandbox.read_only_paths``)
    app_paths: tuple[Path, ...] = ()
    #: run apps in a bubblewrap sandbox, or as ``app_user`` where none can be made
    #: (``--no-sandbox``: neither)
    sandbox: bool = True
    #: the unprivileged user apps run as when the agent runs as root without a sandbox
    app_user: str = DEFAULT_APP_USER
    #: ``--label KEY=VALUE``: reported with the machine's inventory (checked by ``parse_labels``)
    labels: dict[str, str] = field(default_factory=dict)
    #: ``--usage-interval``: seconds between two samples of what an app uses (0: none)
    usage_interval_s: float = DEFAULT_INTERVAL_S


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
        self.exit_code = RET_OK
        self.work_dir: WorkDir | None = None
        self.releases: ReleaseCache | None = None
        self.venvs: VenvCache | None = None
        self._workers: dict[int, TaskWorker] = {}
        self._lock = threading.Lock()
        #: launches supervisors, keeping one started ahead (warm) for the next task
        self.launcher = Launcher()
        #: how apps run here (sandboxed or not), found once at start; sent with every hello
        home = config.home or appyard_home()
        private = [p for p in (home, config.work_dir) if p]
        if config.sandbox:
            reach = config.work_dir or home
            reach.mkdir(parents=True, exist_ok=True)
            self.isolation: Isolation = detect(
                config.app_paths,
                private,
                state_dir=home,
                app_user=config.app_user,
                reach=[reach],
            )
        else:
            self.isolation = unsandboxed(config.app_paths, private)
        #: the machine (cores, memory, disk, GPUs) and labels, sent with hellos and polls; a
        #: broken test-only inventory file is a ConfigurationError here, before any hello
        self.inventory = InventoryReader(config.work_dir or home, config.labels)
        self.inventory.read()
        #: what the apps used, read from their supervisors' samples, sent with the polls
        self.usage = UsageCollector()
        self._stop = threading.Event()
        #: set once hello succeeded and the found tasks have their workers (tests wait on it)
        self.online = threading.Event()
        #: the WebSocket the server's requests into this agent's apps ride (``tunnel.py``)
        self.tunnel: TunnelClient | None = None

    # --- start ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> int:
        """Run until ``stop`` is set (``main`` sets it on SIGTERM/SIGINT); returns an exit code.

        ``agent/exit_codes.py``: RET_OK asked to stop; RET_CRASHED the agent broke; RET_CONFIG
        its work folder is taken by another agent; RET_REFUSED the server refused it.
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
            # A signal's Python handler runs in the main thread only, and only once that thread
            # runs again; the kernel may give SIGTERM to any of the agent's threads, and then
            # nothing interrupts a wait without a timeout (seen: an agent deaf to SIGTERM). A
            # tick a second lets the handler run; ``stop`` set by a thread ends the wait at once.
            while not stop.wait(1.0):
                pass
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
            self.exit_code = RET_CONFIG
            self._stop.set()
            return
        except ApiError as e:
            log.error("the server refused the agent's hello: %s (check the token)", e)
            self.exit_code = RET_REFUSED
            self._stop.set()
            return
        except Exception:
            log.exception("the agent could not start")
            self.exit_code = RET_CRASHED
            self._stop.set()
            return
        for found in scanned:
            self._start_found(found)
        for task_id in welcome.stop:
            self.stop_task(task_id)
        self.launcher.prime()  # the first task gets a warm supervisor too
        # opened once the found tasks have their workers: a re-adopted app is reachable at once
        assert self.agent_id is not None
        self.tunnel = TunnelClient(
            self.server, self.config.token, self.agent_id, self.app_port, threading.Event()
        )
        self.tunnel.start()
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
        self.inventory.folder = wd.root  # its disk is the one to report
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
        self.isolation.close_folders([wd.root, wd.tasks, wd.cache, wd.cache / "releases"])
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
            isolation=self.isolation.mode,
            inventory=self.inventory.for_hello(),
        )
        welcome = self.client.hello(hello)
        self.inventory.sent(hello.inventory)
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
            inventory=self.inventory.for_poll(),  # only when the machine changed
            usage=self.usage.collect(
                (w.task_id, w.dir.path) for w in workers if w.handle is not None and not w.app_ended
            ),
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
                req = self._poll_request()
                resp = self.client.poll(self.agent_id, req)
                self.inventory.sent(req.inventory)
                self.usage.sent(req.usage)
            except Abandoned:
                return
            except (ServerUnavailableError, ApiError) as e:
                if isinstance(e, ApiError) and e.status_code not in RETRY_STATUSES:
                    log.error("the server refused the agent's poll: %s; the agent stops", e)
                    self.exit_code = RET_REFUSED
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
        self.usage.forget(worker.task_id)

    def app_port(self, task_id: int) -> int | None:
        """The port a running app of ``task_id`` serves on (its ``APP_PORT``), if it runs."""
        with self._lock:
            worker = self._workers.get(task_id)
        if worker is None or worker.app_ended or worker.handle is None:
            return None
        return worker.state.app_port or None

    def workers(self) -> list[TaskWorker]:
        with self._lock:
            return list(self._workers.values())

    # --- exit -------------------------------------------------------------------------------
    def _shutdown(self) -> int:
        self.stopping.set()
        self.launcher.close()  # its warm supervisor exits (EOF on its job pipe)
        if self.tunnel is not None:
            self.tunnel.close()  # requests in flight fail on the server's side, clearly
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


def run_agent(config: AgentConfig, stop: threading.Event | None = None) -> int:
    """Run an agent until ``stop`` is set; see ``Agent.run``."""
    return Agent(config).run(stop)
