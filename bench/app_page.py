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
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from dotenv import dotenv_values  # noqa: E402
from tests.support import Up, free_port, wait_for  # noqa: E402

import appyard as ay  # noqa: E402

PAGE_APP = ROOT / "tests" / "e2e" / "apps" / "page"
MB = 1024 * 1024


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server_pid(port: int) -> int:
    """The process listening on ``port`` (the server ``appyard up`` started)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].split(":")[1], 16) == port and f[3] == "0A":
                inode = f[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process listens on {port}")


class Peak:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, rss_kb(pid), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss_kb(self.pid))

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


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
    home = Path(tempfile.mkdtemp(prefix="appyard-bench-page-"))
    port = free_port()
    up = Up(home / ".appyard", home / "appyard.env", port, HOME=str(home))
    try:
        env = dotenv_values(home / "appyard.env")
        url, token = str(env["SERVER_ADDRESS"]), str(env["API_TOKEN"])
        api = ay.Api(url, token)
        team = int(env["TEAM_ID"] or 0)
        agent = next(a for a in api.agent.get_list(team) if a.status == "online")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            r = http.post(
                "/api/v1/modules",
                files={"archive": ("page.tar.gz", _pack(PAGE_APP))},
            )
            assert r.status_code < 300, r.text
            module_id = r.json()["module_id"]
            tid = api.app.start(
                agent.id, int(env["WORKSPACE_ID"] or 0), module_id=module_id
            ).task_id
            assert api.app.wait_until_ready_for_api_calls(tid, 60, 1)
            state_file = home / ".appyard" / "agent" / "tasks" / str(tid) / "state.json"
            found = list((home / ".appyard").rglob(f"tasks/{tid}/state.json"))
            app_port = json.loads((found[0] if found else state_file).read_text())["app_port"]
            pid = server_pid(port)
            transfer(http, f"/apps/{tid}/", 4)  # warm
            before = rss_kb(pid)
            peak = Peak(pid)
            through = [transfer(http, f"/apps/{tid}/", args.mb) for _ in range(args.rounds)]
            top = peak.stop()
        with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=600) as direct:
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
        api.app.stop(tid)
        wait_for(lambda: api.task.get_status(tid) == ay.Status.STOPPED, 60, "the app to stop")
    finally:
        up.interrupt()
        shutil.rmtree(home, ignore_errors=True)


def _pack(folder: Path) -> bytes:
    from tests.support import pack

    return pack(folder, {})


if __name__ == "__main__":
    main()
