"""``AppSession``: the helper an app uses from inside its own task.

The agent starts an app with ``TASK_ID``, ``API_TOKEN`` (scoped to the task), ``SERVER_ADDRESS``,
``MODAL_STATE`` / ``CONTEXT`` (JSON) and, for serving apps, ``APP_PORT``. This turns that into
typed state, the target, throttled progress, outputs and ``ready()``::

    session = ay.AppSession.from_env()
    for image in session.track(images, message="exporting"):
        ...
    session.set_output_file("archive", "/exports/result.tar")  # a file in the team's files

A serving app registers handlers by name; ``api.task.send_request(task_id, "predict", data)``
reaches them through the server and the agent's tunnel (docs/apps.md)::

    @session.handler("predict")
    def predict(state, context):
        return {"label": model(state["image"])}

    session.serve_forever()  # serves on APP_PORT, says ready(), runs until stopped
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from appyard.domain.targets import STATE_KEY_TO_ENV, TARGETS
from appyard.errors import AppyardError, ConfigurationError
from appyard.schemas.tasks import TaskInfo
from appyard.sdk import env
from appyard.sdk.api import Api

log = logging.getLogger("appyard.sdk")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: at most this many progress requests per second; the last value is always sent
PROGRESS_MAX_RATE = 10.0
#: the largest request a handler server reads (the server caps what it forwards lower)
MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: a request handler: ``fn(state, context)``, ``fn(state)`` or ``fn()``; returns JSON data
Handler = Callable[..., Any]
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


class _Handlers(BaseHTTPRequestHandler):
    """The requests of ``api.task.send_request``: ``POST /`` with ``{"command", "state",
    "context"}``; the command's handler answers with its JSON return. ``GET /``: the
    commands it knows (a health check)."""

    protocol_version = "HTTP/1.1"  # keep-alive: the agent reuses its connection
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed ACK)
    # an answer's head and body are written to a buffer, sent with one write when the request
    # is done (``handle_one_request`` flushes): one segment for the agent to read, not two
    wbufsize = 64 * 1024
    server: _HandlerServer

    def _send(self, status: int, data: Any) -> None:
        try:
            body = json.dumps(data).encode()
        except (TypeError, ValueError) as exc:
            status, body = (
                500,
                json.dumps(
                    {
                        "error": {
                            "code": "handler_error",
                            "message": f"the handler's return value is not JSON: {exc}",
                        }
                    }
                ).encode(),
            )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": {"code": code, "message": message}})

    def do_GET(self) -> None:
        self._send(200, {"status": "ok", "commands": sorted(self.server.session.handlers)})

    def do_POST(self) -> None:
        raw_length = self.headers.get("Content-Length")
        if raw_length is None or not raw_length.isdigit():
            self.close_connection = True
            self._error(411, "length_required", "send the request with a Content-Length")
            return
        length = int(raw_length)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._error(413, "too_large", f"the request is larger than {MAX_REQUEST_BYTES} bytes")
            return
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as exc:
            self._error(400, "invalid", f"the request is not JSON: {exc}")
            return
        if not isinstance(data, dict) or not isinstance(data.get("command"), str):
            self._error(400, "invalid", 'send {"command": NAME, "state": {...}, "context": {...}}')
            return
        command = data["command"]
        handlers = self.server.session.handlers
        fn = handlers.get(command)
        if fn is None:
            known = ", ".join(sorted(handlers)) or "none"
            self._error(
                404,
                "unknown_command",
                f"unknown command {command!r}; this app handles: {known}",
            )
            return
        state = data.get("state") or {}
        context = data.get("context") or {}
        try:
            result = _call(fn, state, context)
        except Exception as exc:
            log.exception("handler %r failed", command)
            self._error(500, "handler_error", f"{command}: {type(exc).__name__}: {exc}")
            return
        self._send(200, result)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("handler server: " + format, *args)


def _call(fn: Handler, state: Any, context: Any) -> Any:
    """``fn`` with as many of ``state, context`` as it takes positionally."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fn(state, context)
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in positional) or len(positional) >= 2:
        return fn(state, context)
    return fn(state) if positional else fn()


class _HandlerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], session: AppSession) -> None:
        self.session = session
        super().__init__(address, _Handlers)


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
        #: request handlers by command name (``handler``), served on ``port`` by ``serve``
        self.handlers: dict[str, Handler] = {}
        self._server: _HandlerServer | None = None
        self._serve_lock = threading.Lock()
        self._done = threading.Event()

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

    # -- requests into the session -------------------------------------------------------------

    def handler(self, command: str) -> Callable[[Handler], Handler]:
        """Register the function below as the handler of ``command``::

            @session.handler("predict")
            def predict(state, context): ...

        It gets the request's ``state`` and ``context`` (or only ``state``, if it takes one
        argument) and returns JSON data: the answer of ``send_request``. An exception it
        raises is a 500 with its message; an unknown command a 404 listing the known ones.
        """

        def register(fn: Handler) -> Handler:
            self.add_handler(command, fn)
            return fn

        return register

    def add_handler(self, command: str, fn: Handler) -> None:
        """``handler`` without the decorator."""
        if not command:
            raise ValueError("a handler needs a command name")
        self.handlers[command] = fn

    def serve(self, port: int | None = None) -> int:
        """Serve the handlers on ``port`` (default ``APP_PORT``) of 127.0.0.1, in background
        threads (one per request); returns the port. Calling it again does nothing more."""
        with self._serve_lock:
            if self._server is not None:
                return int(self._server.server_address[1])
            port = port if port is not None else self.port
            if port is None:
                raise ConfigurationError(
                    "APP_PORT is not set: the agent gives a serving app its port; pass "
                    "serve(port=...) to try it by hand."
                )
            self._server = _HandlerServer(("127.0.0.1", port), self)
            threading.Thread(
                target=self._server.serve_forever, name="appyard-handlers", daemon=True
            ).start()
            return int(self._server.server_address[1])

    def serve_forever(self, ready: bool = True) -> None:
        """Serve the handlers, say ``ready()`` (unless ``ready=False``), and block until the
        session is stopped (SIGTERM ends the process) or ``stop_serving`` is called."""
        self.serve()
        if ready:
            self.ready()
        self._done.wait()

    def stop_serving(self) -> None:
        """Stop the handler server; ``serve_forever`` returns."""
        with self._serve_lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self._done.set()

    def ready(self, url: str | None = None) -> None:
        """A serving app is up and answering: the task, still ``started``, becomes ready for
        calls (``ready``, what ``api.app.wait_until_ready_for_api_calls`` waits for). With
        handlers registered, they are served first (``serve``)."""
        if self.handlers:
            self.serve()
        self.flush()
        self.api.task.set_ready(self.task_id, url)  # said again: the same answer
