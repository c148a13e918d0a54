"""A 50 MB body each way through a running app's page (``/apps/{task_id}/...``).

Through ``appyard up`` (its server, its agent, the agent's tunnel), the test page app
(``tests/e2e/apps/page``) serving its own HTTP server: an upload (chunked, streamed from this
process) and a download, each timed whole, and the server's resident memory before and at its
highest during them (sampled from ``/proc`` every 10 ms, next to the transfer). The same bodies
to the app's port directly show what the server and the tunnel add.

Run: ``python bench/app_page.py [--mb 50] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench.page_app import Peak, page_session, rss_kb  # noqa: E402

MB = 1024 * 1024


def body(mb: int) -> Iterator[bytes]:
    piece = os.urandom(MB)
    for _ in range(mb):
        yield piece


def transfer(http: httpx.Client, base: str, mb: int) -> tuple[float, float]:
    t = time.perf_counter()
    r = http.post(f"{base}upload", content=body(mb))
    up = time.perf_counter() - t
    assert r.status_code == 200 and r.json()["bytes"] == mb * MB, r.text
    t = time.perf_counter()
    got = 0
    with http.stream("GET", f"{base}download", params={"mb": mb}) as resp:
        assert resp.status_code == 200
        for piece in resp.iter_raw():
            got += len(piece)
    down = time.perf_counter() - t
    assert got == mb * MB
    return mb * MB / 1e6 / up, mb * MB / 1e6 / down


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with page_session("appyard-bench-page-") as page:
        tid = page.task_id
        with httpx.Client(base_url=page.url, headers=page.headers, timeout=600) as http:
            transfer(http, f"/apps/{tid}/", 4)  # warm
            before = rss_kb(page.server_pid)
            peak = Peak(page.server_pid)
            through = [transfer(http, f"/apps/{tid}/", args.mb) for _ in range(args.rounds)]
            top = peak.stop()
        with httpx.Client(base_url=f"http://127.0.0.1:{page.app_port}", timeout=600) as direct:
            plain = [transfer(direct, "/", args.mb) for _ in range(args.rounds)]
        best = lambda xs, i: max(x[i] for x in xs)  # noqa: E731
        print(
            f"{args.mb} MB bodies through `appyard up`'s page proxy (/apps/{tid}/), best of {args.rounds}:"
        )
        print(
            f"  upload   {best(through, 0):7.0f} MB/s   (the app's port directly: {best(plain, 0):.0f} MB/s)"
        )
        print(
            f"  download {best(through, 1):7.0f} MB/s   (the app's port directly: {best(plain, 1):.0f} MB/s)"
        )
        print(
            f"  server RSS {before / 1024:.1f} MiB before, {top / 1024:.1f} MiB at its highest (+{(top - before) / 1024:.1f} MiB)"
        )


if __name__ == "__main__":
    main()
