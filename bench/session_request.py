"""What a request into a session costs through the server and the agent's tunnel.

Through ``appyard up`` (its server, its agent and the agent's tunnel), as a user runs it, the
bundled echo-model serving; small JSON ``echo`` requests:
- directly to the app's port (what the tunnel adds to), and ``api.task.send_request`` through
  the server, the agent's WebSocket tunnel and the agent's connection to the app: p50/p95;
- requests/s from 8 clients through the server, as 8 threads of one process and as 8
  processes (8 scripts, as 8 users' or pipelines' are), and the CPU each of the four
  processes on the path (the clients' SDK, the server, the agent, the app) spent per request
  meanwhile: on a machine whose cores they share, requests/s is the cores over their sum.

Run: ``python bench/session_request.py [--n 4000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench.local import Local, appyard_up, children, cpu  # noqa: E402
from bench.stats import fmt, pct, timed  # noqa: E402
from tests.support import Client  # noqa: E402

import appyard as ay  # noqa: E402

ECHO_MODEL = ROOT / "src" / "appyard" / "ecosystem" / "echo-model"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="appyard-bench-") as tmp,
        appyard_up(Path(tmp), slots=2) as local,
    ):
        run(local, args.n, args.clients)


def run(local: Local, n: int, clients: int) -> None:
    admin = Client(local.address, local.token)
    api = local.api()
    module_id = admin.publish(ECHO_MODEL)["module_id"]
    tid = api.app.start(local.agent_id, local.workspace_id, module_id=module_id).task_id
    assert api.app.wait_until_ready_for_api_calls(tid, 60, 1), "the echo model is not ready"
    state_file = next(local.home.glob(f"agent-*/tasks/{tid}/state.json"))
    port = json.loads(state_file.read_text())["app_port"]
    # the app and what runs it in its sandbox: the processes below its supervisor
    supervisor = json.loads(state_file.read_text())["supervisor_pid"]
    body = {"command": "echo", "state": {"x": 1}, "context": {}}
    data = {"x": 1}

    with httpx.Client(transport=httpx.HTTPTransport(socket_options=[(6, 1, 1)])) as direct:

        def call_direct() -> None:
            direct.post(f"http://127.0.0.1:{port}/", json=body).raise_for_status()

        timed(call_direct, 200)
        d = timed(call_direct, n)

    g = timed(lambda: api.task.get(tid), n)

    def call_tunnel() -> None:
        api.task.send_request(tid, "echo", data)

    timed(call_tunnel, 200)
    t = timed(call_tunnel, n)

    apis = [local.api() for _ in range(clients)]
    per = n // clients

    def client(i: int) -> None:
        for _ in range(per):
            apis[i].task.send_request(tid, "echo", data)

    server0, agent0 = cpu(local.server_pid).own, cpu(local.agent_pid).own
    app0, client0 = sum(tree_cpu(p) for p in children(supervisor)), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(client, range(clients)))
        elapsed = time.perf_counter() - t0
    threads = Figures(
        per * clients / elapsed,
        (time.process_time() - client0) * 1000 / (per * clients),
        (cpu(local.server_pid).own - server0) * 1000 / (per * clients),
        (cpu(local.agent_pid).own - agent0) * 1000 / (per * clients),
        (sum(tree_cpu(p) for p in children(supervisor)) - app0) * 1000 / (per * clients),
    )

    # 8 scripts (processes of their own, as 8 users' or pipelines' scripts are)
    spawn = mp.get_context("spawn")
    go = spawn.Event()
    server0, agent0 = cpu(local.server_pid).own, cpu(local.agent_pid).own
    app0 = sum(tree_cpu(p) for p in children(supervisor))
    answers = spawn.Queue()
    procs = [
        spawn.Process(target=script, args=(local.address, local.token, tid, per, go, answers))
        for _ in range(clients)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        answers.get()  # connected and warmed up
    t0 = time.perf_counter()
    go.set()
    spent = sum(answers.get() for _ in procs)
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    scripts = Figures(
        per * clients / elapsed,
        spent * 1000 / (per * clients),
        (cpu(local.server_pid).own - server0) * 1000 / (per * clients),
        (cpu(local.agent_pid).own - agent0) * 1000 / (per * clients),
        (sum(tree_cpu(p) for p in children(supervisor)) - app0) * 1000 / (per * clients),
    )

    print(f"direct to the app's port:        {fmt(d)}  ({n} requests)")
    print(f"GET /tasks/{{id}} (a read, no tunnel): {fmt(g)}")
    print(f"send_request through the tunnel: {fmt(t)}  ({n} requests)")
    print(f"overhead at p50: {(pct(t, 0.5) - pct(d, 0.5)) * 1000:.2f} ms")
    print(f"{clients} client threads in one process: {threads}")
    print(f"{clients} client processes:           {scripts}")
    for a in apis:
        a.close()
    api.close()
    admin.http.close()


@dataclass
class Figures:
    """Requests/s, and the CPU each process on the path spent per request meanwhile (ms)."""

    rate: float
    client: float
    server: float
    agent: float
    app: float

    def __str__(self) -> str:
        total = self.client + self.server + self.agent + self.app
        return (
            f"{self.rate:5.0f} requests/s; CPU per request: client {self.client:.2f} ms, "
            f"server {self.server:.2f}, agent {self.agent:.2f}, app {self.app:.2f} "
            f"(sum {total:.2f} ms on {os.cpu_count()} cores)"
        )


def script(address: str, token: str, tid: int, n: int, go: Any, answers: Any) -> None:
    """One client script: ``n`` requests once ``go`` is set; puts the CPU seconds they took."""
    with ay.Api(address, token) as api:
        for _ in range(20):
            api.task.send_request(tid, "echo", {"x": 1})
        answers.put(0.0)
        go.wait()
        t0 = time.process_time()
        for _ in range(n):
            api.task.send_request(tid, "echo", {"x": 1})
        answers.put(time.process_time() - t0)


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and the live processes below it (in its sandbox, the app runs
    under bubblewrap's own processes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            total += cpu(p).own
            todo += children(p)
    return total


if __name__ == "__main__":
    main()
