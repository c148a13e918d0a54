"""Every way the server listens sets TCP_NODELAY on the connections it accepts.

Without it a response written in two pieces (headers, then body) waits for the client's delayed
ACK: ~44 ms a request. The check is made on the server's own accepted socket, fetched from the
server process with ``pidfd_getfd`` (Linux >= 5.6), so it reads the option the kernel really has.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Up, free_port, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the server's sockets through /proc"
)

_SYS_PIDFD_GETFD = 438  # the same number on x86-64 and arm64


def _inode_of(local: tuple[str, int], peer: tuple[str, int]) -> int | None:
    """The socket inode of the TCP connection whose local end is ``local``, peer ``peer``."""
    want_local, want_peer = f"{local[1]:04X}", f"{peer[1]:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[1].endswith(":" + want_local) and cols[2].endswith(":" + want_peer):
                return int(cols[9])
    return None


def _holder(inode: int) -> tuple[int, int]:
    """The (pid, fd) that holds socket ``inode``."""
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid), int(fd)
        except OSError:
            continue
    raise AssertionError(f"no process holds {target}")


def server_side_nodelay(client: socket.socket) -> int:
    """TCP_NODELAY of the socket the server accepted for ``client``'s connection."""
    here, there = client.getsockname()[:2], client.getpeername()[:2]

    def found() -> int | None:
        return _inode_of(there, here)  # the server's end: local = our peer, peer = us

    inode = wait_for(found, 10, "the server's end of the connection")
    pid, fd = _holder(inode)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd of the server's socket")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=copy) as sock:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@contextlib.contextmanager
def _connected(host: str, port: int) -> Iterator[socket.socket]:
    """A connection on which the server has answered one request (so it has accepted it)."""
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        yield conn


def _check(host: str, port: int) -> None:
    with _connected(host, port) as conn:
        assert server_side_nodelay(conn) == 1


def _serve(argv: list[str], home: Path, port: int, **popen: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        argv,
        env={**os.environ, "APPYARD_HOME": str(home)},
        stderr=subprocess.DEVNULL,
        **popen,  # type: ignore[call-overload]
    )

    def healthy() -> bool:
        assert proc.poll() is None, f"{argv} exited with {proc.returncode}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 120, "the server to answer")
    return proc


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_appyard_server_port(tmp_path: Path, host: str) -> None:
    port = free_port()
    cli = [sys.executable, "-m", "appyard.cli", "server", "--host", host, "--port", str(port)]
    proc = _serve(cli, tmp_path, port)
    try:
        _check("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("program", ["module", "cli"])
def test_server_on_a_handed_socket(tmp_path: Path, program: str) -> None:
    """``--fd``: the socket bound by someone else (``appyard up``, a service manager)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.set_inheritable(True)
        port, fd = sock.getsockname()[1], str(sock.fileno())
        argv = (
            [sys.executable, "-m", "appyard.server", "--fd", fd]
            if program == "module"
            else [sys.executable, "-m", "appyard.cli", "server", "--fd", fd]
        )
        proc = _serve(argv, tmp_path, port, pass_fds=[sock.fileno()])
    try:
        _check("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(30)


def test_appyard_up_on_every_interface(tmp_path: Path) -> None:
    """``up`` binds the socket itself and hands it to the server: the default path."""
    port = free_port()
    up = Up(tmp_path / "home", tmp_path / "appyard.env", port, args=["--host", "0.0.0.0"])
    try:
        _check("127.0.0.1", port)
    finally:
        assert up.interrupt() == 0, up.output
