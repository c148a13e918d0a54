"""A running app page's own websocket through the server (``/apps/{task_id}/ws/echo``).

Through ``appyard up`` (its server, its agent, the agent's tunnel), the test page app
(``tests/e2e/apps/page``) echoing on its own websocket: the round trip of a small text message
(median and 99th percentile of 2000, one at a time), and 1 MiB binary messages echoed (sent and
read back in a pipeline of 8), with the server's resident memory before and at its highest.
The same against the app's port directly show what the server and the tunnel add.

Run: ``python bench/app_page_ws.py [--messages 200]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.page_app import Peak, page_session, rss_kb  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

MB = 1024 * 1024


def _open(url: str, headers: dict[str, str]) -> ClientConnection:
    return connect(
        url, additional_headers=headers, max_size=4 * MB, compression=None, proxy=None, legacy=True
    )


def round_trips(conn: ClientConnection, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        conn.send(f"ping {i}")
        assert conn.recv(timeout=10) == f"ping {i}"
        out.append(time.perf_counter() - t)
    return out


def throughput(conn: ClientConnection, n: int, in_flight: int = 8) -> float:
    """MB/s of 1 MiB messages echoed (each counted once: it goes there and back)."""
    payload = os.urandom(MB)
    t = time.perf_counter()
    sent = got = 0
    while got < n:
        while sent < n and sent - got < in_flight:
            conn.send(payload)
            sent += 1
        assert len(conn.recv(timeout=30)) == MB
        got += 1
    return n * MB / 1e6 / (time.perf_counter() - t)


def measure(url: str, headers: dict[str, str], messages: int) -> tuple[float, float, float]:
    with _open(url, headers) as conn:
        round_trips(conn, 200)  # warm
        rtt = sorted(round_trips(conn, 2000))
        rate = max(throughput(conn, messages) for _ in range(3))
    return statistics.median(rtt) * 1e3, rtt[int(len(rtt) * 0.99)] * 1e3, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    with page_session("appyard-bench-ws-") as page:
        tid = page.task_id
        ws_url = page.url.replace("http", "ws", 1) + f"/apps/{tid}/ws/echo"
        before = rss_kb(page.server_pid)
        peak = Peak(page.server_pid)
        through = measure(ws_url, page.headers, args.messages)
        top = peak.stop()
        direct = measure(f"ws://127.0.0.1:{page.app_port}/ws/echo", {}, args.messages)
        print(f"A page's websocket through `appyard up` (/apps/{tid}/ws/echo):")
        print(
            f"  round trip of a small text: median {through[0]:.2f} ms, p99 {through[1]:.2f} ms"
            f"   (the app's port directly: {direct[0]:.2f} / {direct[1]:.2f} ms)"
        )
        print(
            f"  1 MiB binary messages echoed: {through[2]:.0f} MB/s"
            f"   (the app's port directly: {direct[2]:.0f} MB/s)"
        )
        print(
            f"  server RSS {before / 1024:.1f} MiB before, {top / 1024:.1f} MiB at its highest"
            f" (+{(top - before) / 1024:.1f} MiB)"
        )


if __name__ == "__main__":
    main()
