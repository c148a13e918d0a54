"""The agent's HTTP client: the agent protocol, with the retry rules of a report.

Reports (task events, log batches) are retried with capped exponential backoff until the
server answers, across a server restart or outage: nothing is lost and, since the server
ignores a log batch it already has and a repeated event is refused as a conflict, nothing is
doubled. A 4xx is final (the server understood and said no: e.g. 409, the task moved on);
the caller gets the typed ``ApiError`` and drops the report.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from appyard.errors import ApiError, AppyardError, ServerUnavailableError, error_from_response
from appyard.schemas.agents import (
    AgentHello,
    AgentWelcome,
    LogBatch,
    PollRequest,
    PollResponse,
    TaskEvent,
)

log = logging.getLogger("appyard.agent")
M = TypeVar("M", bound=BaseModel)

API = "/api/v1"
#: statuses worth a retry: the server is restarting, overloaded or behind a proxy that is
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


def _transport() -> httpx.HTTPTransport:
    """Keep-alive with TCP_NODELAY: a request's headers and body go out without waiting for
    the ACK of the first write (Nagle meeting delayed ACK costs 40 ms a request)."""
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


class Abandoned(AppyardError):
    """The agent is shutting down: a report still unsent is left for the next agent."""


def normalize_server(address: str) -> str:
    """``host:port`` → ``http://host:port``; no trailing slash (as the SDK does)."""
    address = address.strip()
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


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


class AgentClient:
    """One agent's calls to the server. Thread-safe (httpx pools the connections)."""

    def __init__(self, server: str, token: str, *, abandon: threading.Event | None = None):
        self.server = normalize_server(server)
        self.abandon = abandon or threading.Event()
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "appyard-agent"}
        timeout = httpx.Timeout(30.0, connect=5.0)
        # one client for the long poll, one for everything else: a report never waits
        # behind a poll for a pooled connection
        self._poll = httpx.Client(
            base_url=self.server, headers=headers, timeout=timeout, transport=_transport()
        )
        self._http = httpx.Client(
            base_url=self.server, headers=headers, timeout=timeout, transport=_transport()
        )

    def close(self) -> None:
        self._poll.close()
        self._http.close()

    # --- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def _check(resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            try:
                body: Any = resp.json()
            except ValueError:
                body = None
            raise error_from_response(resp.status_code, body)
        return resp

    def _send_once(
        self, client: httpx.Client, method: str, path: str, body: BaseModel | None, **kw: Any
    ) -> httpx.Response:
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            resp = client.request(method, path, content=content, headers=headers, **kw)
        except httpx.TransportError as e:
            raise ServerUnavailableError(f"{self.server} cannot be reached: {e!r}") from e
        return self._check(resp)

    def _send(self, method: str, path: str, body: BaseModel | None, what: str) -> httpx.Response:
        """Send until the server answers with something other than an outage."""
        backoff = Backoff()
        while True:
            try:
                return self._send_once(self._http, method, path, body)
            except ServerUnavailableError as e:
                problem = str(e)
            except ApiError as e:
                if e.status_code not in RETRY_STATUSES:
                    raise
                problem = f"HTTP {e.status_code}: {e}"
            delay = backoff.next()
            if backoff.attempt == 1 or backoff.attempt % 10 == 0:
                log.warning("%s: %s; retrying (attempt %d)", what, problem, backoff.attempt)
            if self.abandon.wait(delay):
                raise Abandoned(f"{what}: given up, the agent is shutting down")

    # --- the protocol -----------------------------------------------------------------------
    def hello(self, hello: AgentHello) -> AgentWelcome:
        resp = self._send("POST", f"{API}/agents/hello", hello, "hello")
        return AgentWelcome.model_validate_json(resp.content)

    def poll(self, agent_id: int, request: PollRequest) -> PollResponse:
        """One long poll (no retry: the poll loop owns the reconnect backoff)."""
        timeout = httpx.Timeout(request.timeout_s + 15.0, connect=5.0)
        resp = self._send_once(
            self._poll, "POST", f"{API}/agents/{agent_id}/poll", request, timeout=timeout
        )
        return PollResponse.model_validate_json(resp.content)

    def event(self, task_id: int, event: TaskEvent) -> None:
        self._send("POST", f"{API}/tasks/{task_id}/events", event, f"task {task_id} {event.kind}")

    def logs(self, task_id: int, batch: LogBatch) -> None:
        self._send("POST", f"{API}/tasks/{task_id}/logs", batch, f"task {task_id} logs")

    @contextmanager
    def _stream(self, url: str) -> Iterator[httpx.Response]:
        with self._http.stream("GET", url, timeout=httpx.Timeout(60.0, connect=5.0)) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            yield resp

    def download(self, url: str, dest: Path, attempts: int = 5) -> None:
        """GET ``url`` (absolute, or relative to the server) into ``dest``; retries outages."""
        backoff = Backoff(first=0.5)
        for attempt in range(1, attempts + 1):
            try:
                with self._stream(url) as resp, open(dest, "wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        f.write(chunk)
                return
            except httpx.TransportError as e:
                problem: Exception = ServerUnavailableError(f"download of {url} failed: {e!r}")
            except ApiError as e:
                if e.status_code not in RETRY_STATUSES:
                    raise
                problem = e
            if attempt == attempts:
                raise problem
            log.warning("%s; retrying", problem)
            if self.abandon.wait(backoff.next()):
                raise Abandoned(f"download of {url}: given up, the agent is shutting down")
