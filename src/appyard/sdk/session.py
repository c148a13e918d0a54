"""``AppSession``: the helper an app uses from inside its own task.

The agent starts an app with ``TASK_ID``, ``API_TOKEN`` (scoped to the task), ``SERVER_ADDRESS``,
``MODAL_STATE`` / ``CONTEXT`` (JSON) and, for serving apps, ``APP_PORT``. This turns that into
typed state, the target, throttled progress, outputs and ``ready()``::

    session = ay.AppSession.from_env()
    for image in session.track(images, message="exporting"):
        ...
    session.set_output_file("archive", "/exports/result.tar")  # a file in the team's files
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from appyard.domain.status import Status
from appyard.domain.targets import STATE_KEY_TO_ENV, TARGETS
from appyard.errors import AppyardError, ConfigurationError, ConflictError
from appyard.schemas.tasks import TaskInfo
from appyard.sdk import env
from appyard.sdk.api import Api

log = logging.getLogger("appyard.sdk")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: at most this many progress requests per second; the last value is always sent
PROGRESS_MAX_RATE = 10.0
#: when both a dataset and a project key are in the state, the dataset is the narrower target
_TARGET_ORDER = (
    "images_dataset",
    "images_project",
    "files_file",
    "files_folder",
    "team_member",
    "team",
)


class AppTarget(NamedTuple):
    """Where the app was started from: a target name and its value (``None`` for ecosystem)."""

    name: str
    value: Any


class _Throttle:
    """Send at most ``rate`` updates per second, and always the last one (a trailing timer).

    Every update gets a sequence number and sends are serialised, so an older update that
    a timer thread picked up can never land after a newer one.
    """

    def __init__(self, send: Callable[..., None], rate: float = PROGRESS_MAX_RATE) -> None:
        self._send = send
        self._interval = 1.0 / rate
        self._lock = threading.Lock()  # guards the fields below
        self._send_lock = threading.Lock()  # one send at a time, in sequence order
        self._seq = 0
        self._delivered = 0
        self._last_sent = 0.0
        self._pending: tuple[int, tuple[Any, ...]] | None = None
        self._timer: threading.Timer | None = None

    def submit(self, *args: Any, force: bool = False) -> None:
        with self._lock:
            self._seq += 1
            now = time.monotonic()
            wait = self._last_sent + self._interval - now
            if not force and wait > 0:
                self._pending = (self._seq, args)
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._fire)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._cancel()
            self._pending = None
            self._last_sent = now
            seq = self._seq
        self._deliver(seq, args)

    def _take(self) -> tuple[int, tuple[Any, ...]] | None:
        with self._lock:
            self._cancel()
            item, self._pending = self._pending, None
            if item is not None:
                self._last_sent = time.monotonic()
            return item

    def _deliver(self, seq: int, args: tuple[Any, ...]) -> None:
        with self._send_lock:
            if seq <= self._delivered:
                return  # a newer update went out already
            self._delivered = seq
            self._send(*args)

    def _fire(self) -> None:
        item = self._take()
        if item is None:
            return
        try:
            self._deliver(*item)
        except AppyardError as exc:  # a background send has no caller to raise to
            log.warning("progress update failed: %s", exc)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._timer = None

    def flush(self) -> None:
        """Send a held-back update now (at exit, or before the app reports its result)."""
        item = self._take()
        if item is not None:
            self._deliver(*item)
        with self._send_lock:
            pass  # a send the timer thread already took must finish before the app exits


class ProgressBar:
    """A counter reported as the task's progress: ``with session.progress_bar(n) as bar``."""

    def __init__(self, session: AppSession, total: float | None, message: str = "") -> None:
        self._session = session
        self.total = total
        self.message = message
        self.current = 0.0

    def update(self, step: float = 1, message: str | None = None) -> None:
        """Advance by ``step`` (and optionally change the message)."""
        self.current += step
        if message is not None:
            self.message = message
        self._session.progress(self.current, self.total, self.message)

    def set(self, current: float, message: str | None = None) -> None:
        """Jump to ``current``."""
        self.current = current
        if message is not None:
            self.message = message
        self._session.progress(self.current, self.total, self.message)

    def __enter__(self) -> ProgressBar:
        self._session.progress(self.current, self.total, self.message)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._session.flush()


class AppSession:
    """The running app's view of its own task (task id, state, target, progress, outputs)."""

    def __init__(
        self,
        api: Api,
        task_id: int,
        state: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        port: int | None = None,
    ) -> None:
        self.api = api
        self.task_id = int(task_id)
        self.state: dict[str, Any] = dict(state or {})
        self.context: dict[str, Any] = dict(context or {})
        self.port = port
        self._progress = _Throttle(self._send_progress)
        atexit.register(self._flush_at_exit)

    @classmethod
    def from_env(cls, api: Api | None = None) -> AppSession:
        """The session of the app this process is (from the env the agent sets)."""
        task_id = env.task_id(raise_not_found=False)
        if task_id is None:
            raise ConfigurationError(
                "TASK_ID is not set: AppSession works inside an app started by an appyard "
                "agent (set TASK_ID, SERVER_ADDRESS and API_TOKEN to try it by hand)."
            )
        port = os.environ.get("APP_PORT")
        return cls(
            api or Api(),
            task_id,
            state=env.modal_state(),
            context=env.context(),
            port=int(port) if port else None,
        )

    # -- inputs --------------------------------------------------------------------------------

    def state_as(self, model: type[M]) -> M:
        """The state validated into a pydantic model (typed options of the app)."""
        return model.model_validate(self.state)

    @property
    def target(self) -> AppTarget:
        """The target the app was started from, read from its state (then env) keys."""
        for name in _TARGET_ORDER:
            target = TARGETS.get(name)
            if target is None or target.state_key is None:
                continue
            value = self.state.get(target.state_key)
            if value is None:
                value = self.context.get(target.state_key)
            if value is None and target.state_key in STATE_KEY_TO_ENV:
                value = os.environ.get(STATE_KEY_TO_ENV[target.state_key])
            if value is not None and target.value_type is int:
                value = int(value)
            if value is not None:
                return AppTarget(name, value)
        return AppTarget("ecosystem", None)

    def task(self) -> TaskInfo:
        """The task record as the server has it now."""
        return self.api.task.get(self.task_id)

    # -- progress ------------------------------------------------------------------------------

    def progress(self, current: float, total: float | None = None, message: str = "") -> None:
        """Report progress; throttled to ~10 requests/s, the last value always gets through."""
        done = total is not None and current >= total
        self._progress.submit(current, total, message, force=done)

    def _send_progress(self, current: float, total: float | None, message: str) -> None:
        self.api.task.set_progress(self.task_id, current, total, message)

    def flush(self) -> None:
        """Send a progress update still held back by the throttle."""
        self._progress.flush()

    def _flush_at_exit(self) -> None:
        with contextlib.suppress(AppyardError):  # the process ends anyway
            self.flush()

    def progress_bar(self, total: float | None = None, message: str = "") -> ProgressBar:
        """A context manager counting steps into the task's progress."""
        return ProgressBar(self, total, message)

    def track(
        self, items: Iterable[T], total: float | None = None, message: str = ""
    ) -> Iterator[T]:
        """Iterate ``items``, reporting each one done as progress (``total`` from ``len``)."""
        if total is None and hasattr(items, "__len__"):
            total = float(len(items))  # type: ignore[arg-type]
        with self.progress_bar(total, message) as bar:
            for item in items:
                yield item
                bar.update(1)

    # -- outputs and readiness -----------------------------------------------------------------

    def set_output(self, key: str, value: Any) -> None:
        """Attach one output (a team-files path, a project id, a URL...) to the task."""
        self.set_outputs({key: value})

    def set_outputs(self, outputs: dict[str, Any]) -> None:
        """Merge outputs into the task's outputs."""
        self.flush()
        self.api.task.set_outputs(self.task_id, outputs)

    def set_output_file(self, key: str, path: str) -> None:
        """Output ``key`` is a file of the team's files (upload it first with ``api.file``)."""
        self.flush()
        self.api.task.set_output_file(self.task_id, key, path)

    def ready(self, url: str | None = None) -> None:
        """A serving app is up and answering: the task becomes ``deployed``."""
        self.flush()
        try:
            self.api.task.set_ready(self.task_id, url)
        except ConflictError:
            if self.api.task.get_status(self.task_id) is not Status.DEPLOYED:
                raise  # an earlier (retried) call already made it deployed otherwise
