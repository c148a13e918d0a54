"""Server settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from appyard.archive import DEFAULT_CAPS, Caps
from appyard.errors import ServerStartError
from appyard.schemas.manifest import MAX_LOG_BYTES, MAX_LOG_LINES

#: URL schemes that name PostgreSQL without a driver; SQLAlchemy 2.0 maps them to psycopg2
#: and 2.1 to psycopg (3), so they are pinned to the driver the ``postgres`` extra installs
_BARE_POSTGRES = ("postgresql://", "postgres://")


def normalize_database_url(url: str) -> str:
    """``postgresql://`` (and Heroku-style ``postgres://``) -> ``postgresql+psycopg://``."""
    for scheme in _BARE_POSTGRES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def default_home() -> Path:
    return Path(os.environ.get("APPYARD_HOME", "~/.appyard")).expanduser()


class LogCeiling(NamedTuple):
    """The server's cap of one task's stored log (the database sessions carry it)."""

    lines: int = MAX_LOG_LINES
    bytes: int = MAX_LOG_BYTES


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; ``from_env`` is what ``appyard server`` uses."""

    home: Path = field(default_factory=default_home)
    database_url: str | None = None  # None: a SQLite file under home
    agent_ttl_s: float = 40.0  # no poll for this long: the agent is lost
    poll_timeout_s: float = 25.0  # longest an agent poll or a wait is held open
    sweep_interval_s: float = 2.0  # how often lost agents are looked for
    max_release_bytes: int = 512 * 1024 * 1024
    max_file_bytes: int = 4 * 1024**3  # largest team file one upload may write
    #: largest body of any other request (JSON): an agent's log batch (1 MiB of output, escaped)
    #: fits with room to spare; uploads have their own caps (docs/security.md)
    max_body_bytes: int = 16 * 1024 * 1024
    #: a body larger than this (or one of unknown length) waits for its token to be checked
    #: against the database before a byte of it is read; a smaller one is read first and the
    #: token is resolved in the request's own transaction (no extra lookup on the hot path)
    auth_before_body_bytes: int = 64 * 1024
    #: what a client is told to wait (``Retry-After``) when the database is busy, or it holds
    #: as many streams as it may
    retry_after_s: int = 5
    #: the longest a write waits for a lock another connection holds (SQLite's write lock held
    #: by another process, a PostgreSQL row or table lock) before it is given up: a 503 ``busy``
    #: with ``Retry-After``, nothing written
    db_lock_timeout_s: float = 30.0
    #: a stream (watch, log, team) sends a comment this often when nothing happens, so that
    #: proxies keep it open
    stream_keepalive_s: float = 15.0
    #: publishes under way at once in this process, their upload included; one more waits up
    #: to ``publish_wait_s`` for a place, then gets a 429
    max_concurrent_publishes: int = 2
    publish_wait_s: float = 2.0
    #: what a release archive may hold: its files unpacked, its entries, and unpacked bytes
    #: per compressed byte (``appyard.archive``; agents read the same variables)
    archive_caps: Caps = DEFAULT_CAPS
    #: clients' waits and streams (watch, logs, team) open at once per token and per team of
    #: the data followed, in this process (each replica counts its own); past it: 429
    max_streams_per_token: int = 64
    max_streams_per_team: int = 256
    admin_token_file: Path | None = None  # first start: write the admin's token here
    #: the most of one task's log the server stores, whatever its manifest's ``log_limit`` asks
    #: (lines, and bytes of the agent's log file); a task's default is 100,000 lines / 64 MiB
    max_log_lines: int = MAX_LOG_LINES
    max_log_bytes: int = MAX_LOG_BYTES
    #: requests into sessions (``POST /tasks/{id}/request``) through the agents' tunnels
    #: (docs/tunnel.md): the longest a request may wait for its app's answer, requests in
    #: flight into one session and on one agent's tunnel at once (past either: 429), DATA
    #: frames unacknowledged per stream, and the largest body piece of one frame
    max_request_timeout_s: float = 3600.0
    max_requests_per_session: int = 16
    max_requests_per_agent: int = 256
    tunnel_window: int = 8
    tunnel_chunk_bytes: int = 64 * 1024
    #: running apps' own web pages (``/apps/{task_id}/...``, docs/web.md): the origin they are
    #: opened on (``{task_id}`` in it: one origin per session); unset, a page is opened on
    #: ``<task_id>.apps.localhost`` when the server is reached on a loopback address, else on
    #: the platform's origin in a sandbox. And the largest request body sent to a page
    apps_origin: str | None = None
    max_app_body_bytes: int = 4 * 1024**3
    #: the largest message of a page's own websocket, either way (1 KiB to 16 MiB: uvicorn
    #: takes no larger message from a client)
    max_ws_message_bytes: int = 1024**2
    #: with several replicas: the address the other replicas reach this one at (``http://
    #: 10.0.0.5:8000``); a request into a session whose agent's tunnel is connected to another
    #: replica is relayed there (docs/tunnel.md). Unset: one replica, nothing relayed
    replica_url: str | None = None

    @property
    def log_ceiling(self) -> LogCeiling:
        return LogCeiling(self.max_log_lines, self.max_log_bytes)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.home / 'appyard.db'}"

    @property
    def releases_dir(self) -> Path:
        return self.home / "releases"

    @property
    def images_dir(self) -> Path:
        """Image files of projects, content-addressed by sha256."""
        return self.home / "images"

    @property
    def files_dir(self) -> Path:
        """Team files: one tree per team, ``files/<team_id>/``."""
        return self.home / "files"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        token_file = env.get("APPYARD_ADMIN_TOKEN_FILE")
        return cls(
            home=default_home(),
            database_url=env.get("APPYARD_DATABASE_URL") or None,
            agent_ttl_s=float(env.get("APPYARD_AGENT_TTL_S", "40")),
            poll_timeout_s=float(env.get("APPYARD_POLL_TIMEOUT_S", "25")),
            sweep_interval_s=float(env.get("APPYARD_SWEEP_INTERVAL_S", "2")),
            max_file_bytes=int(env.get("APPYARD_MAX_FILE_BYTES", str(4 * 1024**3))),
            max_release_bytes=int(env.get("APPYARD_MAX_RELEASE_BYTES", str(512 * 1024**2))),
            max_body_bytes=int(env.get("APPYARD_MAX_BODY_BYTES", str(16 * 1024**2))),
            auth_before_body_bytes=int(env.get("APPYARD_AUTH_BEFORE_BODY_BYTES", str(64 * 1024))),
            max_streams_per_token=int(env.get("APPYARD_MAX_STREAMS_PER_TOKEN", "64")),
            max_streams_per_team=int(env.get("APPYARD_MAX_STREAMS_PER_TEAM", "256")),
            retry_after_s=int(env.get("APPYARD_RETRY_AFTER_S", "5")),
            db_lock_timeout_s=float(env.get("APPYARD_DB_LOCK_TIMEOUT_S", "30")),
            stream_keepalive_s=float(env.get("APPYARD_STREAM_KEEPALIVE_S", "15")),
            max_concurrent_publishes=int(env.get("APPYARD_MAX_CONCURRENT_PUBLISHES", "2")),
            publish_wait_s=float(env.get("APPYARD_PUBLISH_WAIT_S", "2")),
            archive_caps=Caps.from_env(env),
            admin_token_file=Path(token_file).expanduser() if token_file else None,
            max_log_lines=int(env.get("APPYARD_MAX_LOG_LINES", str(MAX_LOG_LINES))),
            max_log_bytes=int(env.get("APPYARD_MAX_LOG_BYTES", str(MAX_LOG_BYTES))),
            max_request_timeout_s=float(env.get("APPYARD_MAX_REQUEST_TIMEOUT_S", "3600")),
            max_requests_per_session=int(env.get("APPYARD_MAX_REQUESTS_PER_SESSION", "16")),
            max_requests_per_agent=int(env.get("APPYARD_MAX_REQUESTS_PER_AGENT", "256")),
            tunnel_window=max(1, int(env.get("APPYARD_TUNNEL_WINDOW", "8"))),
            tunnel_chunk_bytes=max(
                1024, min(1024**2, int(env.get("APPYARD_TUNNEL_CHUNK_BYTES", str(64 * 1024))))
            ),
            apps_origin=env.get("APPYARD_APPS_ORIGIN") or None,
            replica_url=_replica_url(env.get("APPYARD_REPLICA_URL", "")),
            max_app_body_bytes=int(env.get("APPYARD_MAX_APP_BODY_BYTES", str(4 * 1024**3))),
            max_ws_message_bytes=max(
                1024, min(16 * 1024**2, int(env.get("APPYARD_MAX_WS_MESSAGE_BYTES", str(1024**2))))
            ),
        )


def _replica_url(value: str) -> str | None:
    """``APPYARD_REPLICA_URL``: an http(s) address, without a trailing slash; empty: none."""
    value = value.strip().rstrip("/")
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or len(value) > 500:
        raise ServerStartError(
            f"APPYARD_REPLICA_URL={value!r} is not an http(s) address of at most 500 characters "
            "(the address other replicas reach this one at, e.g. http://10.0.0.5:8000)"
        )
    return value
