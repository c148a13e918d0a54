"""The agent's launches: one supervisor kept waiting for the next task, made by a zygote.

The supervisor's interpreter start-up is kept off the path from assignment to app: a launch
hands its job to a supervisor started ahead, and the next one is made in the background.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from appyard.agent.handle import AppHandle
from appyard.agent.launch import (
    OnSupervisor,
    Waiting,
    Zygote,
    give,
    job_for,
    launch_cold,
    make_task_files,
    start_waiting,
)
from appyard.agent.state import TaskDir

log = logging.getLogger("appyard.agent")

#: how long the agent's exit waits for its waiting supervisor (and zygote) to leave on their own
WARM_EXIT_TIMEOUT_S = 2.0


class Launcher:
    """``launch.launch``, through a supervisor started ahead of time whenever one is ready.

    It keeps one waiting ("warm") supervisor: a launch takes it (if it is still alive), gives
    it the task's job and reads its report as ``launch`` does; the next one is made in a
    thread once the launch is done, so no launch waits for an interpreter to start. They are
    forked by the zygote (one interpreter start-up per agent, not one per task), which a
    launch that finds none waiting (a burst) also asks for one at once; without a zygote (it
    could not start, or died) they are started one by one. When there is none (warm starts
    disabled, or none could be made) the launch is a cold one: a supervisor started for it,
    given the same job. Everything else (files, pids, the stop protocol, re-adoption) is the
    same for all of them.
    """

    def __init__(self, warm: bool = True) -> None:
        self.warm_enabled = warm
        self._lock = threading.Lock()
        self._warm: Waiting | None = None
        self._zygote: Zygote | None = None
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
        on_supervisor: OnSupervisor | None = None,
        sandboxed: bool = False,
        usage: tuple[float, int] = (0.0, 0),
    ) -> AppHandle:
        """As ``launch.launch`` (same arguments, result, errors and files)."""
        try:
            job = job_for(td, argv, env, grace_s, sandboxed, usage)
            make_task_files(td)
            if self.warm_enabled:
                warm = self._take() or self._fork_now()
                if warm is not None:
                    handle = give(td, warm, job, on_supervisor)
                    if handle is not None:
                        return handle
            return launch_cold(td, job, on_supervisor)
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

    def _take(self) -> Waiting | None:
        with self._lock:
            warm, self._warm = self._warm, None
        if warm is not None and warm.exited():  # it died while it waited
            warm.discard(0.0)
            return None
        return warm

    def _fork_now(self) -> Waiting | None:
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

    def _zygote_lost(self, zygote: Zygote, e: BaseException) -> None:
        log.warning("the task supervisor zygote failed (%s); starting them one by one", e)
        with self._lock:
            self._zygote_failed = True
            if self._zygote is zygote:
                self._zygote = None
        zygote.close(WARM_EXIT_TIMEOUT_S)

    def _zygote_for_refill(self) -> Zygote | None:
        """The zygote, started on first use (only the refill thread starts it)."""
        with self._lock:
            if self._closed or self._zygote_failed or self._zygote is not None:
                return self._zygote
        try:
            zygote = Zygote()
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

    def _new_warm(self) -> Waiting | None:
        zygote = self._zygote_for_refill()
        if zygote is not None:
            try:
                return zygote.fork()
            except OSError as e:
                self._zygote_lost(zygote, e)
        with self._lock:
            if self._closed:
                return None
        return start_waiting()

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
        warm: Waiting | None = None
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
