"""The test page app running under ``appyard up``, for the benchmarks of app pages.

``appyard up`` in a temporary home, the page app (``tests/e2e/apps/page``) published and
started on its agent until it is ready for calls, its own port (read from the agent's state
file) and the server's pid and resident memory (from ``/proc``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from dotenv import dotenv_values  # noqa: E402
from tests.support import Up, free_port, pack, wait_for  # noqa: E402

import appyard as ay  # noqa: E402

PAGE_APP = ROOT / "tests" / "e2e" / "apps" / "page"


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
    """The highest resident memory of ``pid``, sampled every 10 ms until ``stop``."""

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


@dataclass
class PageSession:
    """The page app's session: where to reach it through the server and directly."""

    url: str
    headers: dict[str, str]
    api: ay.Api
    task_id: int
    app_port: int
    server_pid: int


@contextlib.contextmanager
def page_session(prefix: str) -> Iterator[PageSession]:
    """``appyard up`` in a new temporary home and the page app started there, ready for
    calls; the app stopped and ``appyard up`` interrupted (Ctrl-C) afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
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
            r = http.post("/api/v1/modules", files={"archive": ("page.tar.gz", pack(PAGE_APP, {}))})
            assert r.status_code < 300, r.text
            module_id = r.json()["module_id"]
        tid = api.app.start(agent.id, int(env["WORKSPACE_ID"] or 0), module_id=module_id).task_id
        assert api.app.wait_until_ready_for_api_calls(tid, 60, 1)
        state_file = home / ".appyard" / "agent" / "tasks" / str(tid) / "state.json"
        found = list((home / ".appyard").rglob(f"tasks/{tid}/state.json"))
        app_port = json.loads((found[0] if found else state_file).read_text())["app_port"]
        yield PageSession(url, headers, api, tid, app_port, server_pid(port))
        api.app.stop(tid)
        wait_for(lambda: api.task.get_status(tid) == ay.Status.STOPPED, 60, "the app to stop")
    finally:
        up.interrupt()
        shutil.rmtree(home, ignore_errors=True)
