"""Entry points that start a server process: ``app_from_env`` (uvicorn factory) and ``serve``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from types import FrameType

from fastapi import FastAPI

from appyard.errors import ServerStartError
from appyard.server.app import create_app
from appyard.server.settings import Settings
from appyard.server.startup import preflight

#: exit code of a server that could not start (database driver, connection, schema)
EXIT_CANNOT_START = 3


def app_from_env() -> FastAPI:
    """The uvicorn factory: ``uvicorn --factory appyard.server.main:app_from_env``."""
    return create_app(Settings.from_env())


def serve(
    host: str = "127.0.0.1", port: int = 8080, log_level: str = "info", fd: int | None = None
) -> None:
    """Run the server until SIGINT/SIGTERM; open long-polls answer at once on the way out."""
    import uvicorn

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
        preflight(settings.db_url, settings.files_dir)
    except ServerStartError as exc:
        print(f"appyard server: cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CANNOT_START) from None
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=75,  # agents and SDK clients keep their connection between calls
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    notifier = app.state.ctx.notifier

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # waits, polls and log streams would otherwise hold the shutdown for their timeout
            notifier.close()
            super().handle_exit(sig, frame)

    # uvicorn re-raises the Ctrl-C it handled once it has shut down: end quietly
    with contextlib.suppress(KeyboardInterrupt):
        Server(config).run(sockets=None if fd is None else [inherited_socket(fd)])


def inherited_socket(fd: int) -> socket.socket:
    """The bound socket handed over as a descriptor (by ``appyard up``, a service manager).

    Its family is read from the descriptor: uvicorn's own ``fd=`` takes every descriptor for a
    Unix socket, so asyncio never sets TCP_NODELAY on the connections it accepts, and each
    response written in two pieces waits ~40 ms for the client's delayed ACK.
    """
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        raise SystemExit(f"appyard server: descriptor {fd} is not a stream socket")
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="appyard-server", description="Run the appyard server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fd", type=int, default=None, help="serve on this bound socket")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.log_level, args.fd)
