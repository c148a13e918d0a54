"""What a request into a session costs through the server and the agent's tunnel.

Through ``appyard up`` (its server, its agent and the agent's tunnel), as a user runs it, the
bundled echo-model serving; small JSON ``echo`` requests:
- directly to the app's port (what the tunnel adds to), and ``api.task.send_request`` through
  the server, the agent's WebSocket tunnel and the agent's connection to the app: p50/p95;
- requests/s from 8 client threads through the server, and the CPU the server and the agent
  spent per request meanwhile.

Run: ``python bench/session_request.py [--n 2000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench.local import Local, appyard_up, cpu  # noqa: E402
from bench.stats import fmt, pct, timed  # noqa: E402
from tests.support import Client  # noqa: E402

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
    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(client, range(clients)))
        elapsed = time.perf_counter() - t0
    server_ms = (cpu(local.server_pid).own - server0) * 1000 / (per * clients)
    agent_ms = (cpu(local.agent_pid).own - agent0) * 1000 / (per * clients)
    print(f"direct to the app's port:        {fmt(d)}  ({n} requests)")
    print(f"GET /tasks/{{id}} (a read, no tunnel): {fmt(g)}")
    print(f"send_request through the tunnel: {fmt(t)}  ({n} requests)")
    print(f"overhead at p50: {(pct(t, 0.5) - pct(d, 0.5)) * 1000:.2f} ms")
    print(f"requests/s, {clients} clients: {per * clients / elapsed:7.0f}")
    print(f"CPU per request: server {server_ms:.2f} ms, agent {agent_ms:.2f} ms")
    for a in apis:
        a.close()
    api.close()
    admin.http.close()


if __name__ == "__main__":
    main()
