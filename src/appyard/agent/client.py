"""The agent's HTTP client: the agent protocol over the SDK's sync core, with the retry rule of
a report.

The core (``appyard.sdk._sync.SyncCore``) is the one every SDK user has: address normalizing,
the keep-alive TCP_NODELAY transport, typed errors, downloads that appear whole or not at all.
What is the agent's own is when a request is tried again (``ReportRetry``, handed to the core
per request) and that its waits between attempts end when the agent shuts down.

Reports (hello, task events, log batches) are retried with capped exponential backoff until the
server answers, across a server restart or outage: nothing is lost and, since the server
ignores a log batch it already has and a repeated event is refused as a conflict, nothing is
doubled. A 4xx is final (the server understood and said no: e.g. 409, the task moved on);
the caller gets the typed ``ApiError`` and drops the report.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import httpx

from appyard.errors import AppyardError, ServerUnavailableError
from appyard.schemas.agents import (
    AgentHello,
    AgentWelcome,
    LogBatch,
    PollRequest,
    PollResponse,
    TaskEvent,
)
from appyard.sdk._core import CoreBase, RequestSpec, retry_after
from appyard.sdk._sync import SyncCore

log = logging.getLogger("appyard.agent")

#: statuses worth a retry: the server is restarting, overloaded or behind a proxy that is
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
#: the longest a ``Retry-After`` makes a report wait (a proxy's own value may be anything)
RETRY_AFTER_CAP_S = 60.0
#: a report's answer is small and quick; a poll's timeout is its own plus this margin
REPORT_TIMEOUT_S = 30.0
POLL_MARGIN_S = 15.0
DOWNLOAD_TIMEOUT_S = 60.0
DOWNLOAD_ATTEMPTS = 5
_JSON = {"Content-Type": "application/json"}


class Abandoned(AppyardError):
    """The agent is shutting down: a report still unsent is left for the next agent."""


class Backoff:
    """Capped exponential delays with jitter: 0.2, 0.4, ... 5 s."""

    def __init__(self, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class ReportRetry:
    """The agent's retry rule for one request (a ``sdk._core.Retry``): an outage (no answer,
    or one of ``RETRY_STATUSES``) is tried again with ``Backoff`` until the server answers, or
    until ``attempts`` ran out; any other answer is final.

    Every request of the agent may be repeated: the server recognizes a report it already has.
    """

    def __init__(
        self, server: str, what: str, attempts: int | None = None, backoff: Backoff | None = None
    ) -> None:
        self.server = server
        self.what = what
        self.attempts = attempts
        self.backoff = backoff or Backoff()

    def _left(self) -> bool:
        return self.attempts is None or self.backoff.attempt + 1 < self.attempts

    def _again(self, problem: str) -> float:
        delay = self.backoff.next()
        n = self.backoff.attempt
        if n == 1 or n % 10 == 0:
            log.warning("%s: %s; retrying (attempt %d)", self.what, problem, n)
        return delay

    def after_error(self, exc: httpx.TransportError) -> float:
        problem = f"no answer from {self.server}: {exc!r}"
        if not self._left():
            raise ServerUnavailableError(problem) from exc
        return self._again(problem)

    def after_response(self, response: httpx.Response) -> float | None:
        if response.status_code not in RETRY_STATUSES or not self._left():
            return None
        delay = self._again(f"HTTP {response.status_code}")
        asked = retry_after(response)  # a busy server says when to come back: not sooner
        return delay if asked is None else max(delay, min(asked, RETRY_AFTER_CAP_S))

    def final(self, response: httpx.Response) -> httpx.Response:
        CoreBase.raise_for_response(response)
        return response


class AgentClient:
    """One agent's calls to the server. Thread-safe (httpx pools the connections).

    ``transport`` replaces the network (tests); by default each core has the SDK's.
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        abandon: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.abandon = abandon or threading.Event()
        # one core for the long poll, one for everything else: a report never waits behind a
        # poll for a pooled connection
        self._poll = self._core_for(server, token, transport)
        self._http = self._core_for(server, token, transport)
        self.server = self._http.server_address

    def _core_for(self, server: str, token: str, transport: httpx.BaseTransport | None) -> SyncCore:
        core = SyncCore(
            server, token, timeout=REPORT_TIMEOUT_S, transport=transport, pause=self._pause
        )
        core.client.headers["User-Agent"] = "appyard-agent"
        return core

    def _pause(self, seconds: float) -> None:
        """The wait between two attempts; it ends the retries when the agent shuts down."""
        if self.abandon.wait(seconds):
            raise Abandoned("given up: the agent is shutting down")

    def close(self) -> None:
        self._poll.close()
        self._http.close()

    def _report(self, path: str, body: bytes, what: str) -> httpx.Response:
        """POST until the server answers with something other than an outage."""
        spec = RequestSpec("POST", path, content=body, headers=_JSON)
        return self._http.send(spec, ReportRetry(self.server, what))

    # --- the protocol -----------------------------------------------------------------------
    def hello(self, hello: AgentHello) -> AgentWelcome:
        resp = self._report("/agents/hello", hello.model_dump_json().encode(), "hello")
        return AgentWelcome.model_validate_json(resp.content)

    def poll(self, agent_id: int, request: PollRequest) -> PollResponse:
        """One long poll (no retry: the poll loop owns the reconnect backoff)."""
        spec = RequestSpec(
            "POST",
            f"/agents/{agent_id}/poll",
            content=request.model_dump_json().encode(),
            headers=_JSON,
            timeout=request.timeout_s + POLL_MARGIN_S,
        )
        resp = self._poll.send(spec, ReportRetry(self.server, "poll", attempts=1))
        return PollResponse.model_validate_json(resp.content)

    def event(self, task_id: int, event: TaskEvent) -> None:
        body = event.model_dump_json().encode()
        self._report(f"/tasks/{task_id}/events", body, f"task {task_id} {event.kind}")

    def logs(self, task_id: int, batch: LogBatch) -> None:
        body = batch.model_dump_json().encode()
        self._report(f"/tasks/{task_id}/logs", body, f"task {task_id} logs")

    def download(self, url: str, dest: Path, attempts: int = DOWNLOAD_ATTEMPTS) -> None:
        """GET ``url`` (absolute, or relative to the server address, e.g. ``/api/v1/...``) into
        ``dest``, which appears whole or not at all; tried up to ``attempts`` times in an
        outage."""
        if "://" not in url:
            url = self.server + "/" + url.lstrip("/")  # the core's base URL ends in /api/v1
        spec = RequestSpec("GET", url, timeout=DOWNLOAD_TIMEOUT_S)
        retry = ReportRetry(self.server, f"download of {url}", attempts, Backoff(first=0.5))
        self._http.download(dest, spec, retry)
