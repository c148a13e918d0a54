"""What a request into a session costs through the server and the agent's tunnel.

A bare server (``python -m appyard.server``, SQLite) and one agent on this machine, the bundled
echo-model serving; small JSON ``echo`` requests:
- directly to the app's port (what the tunnel adds to), and ``api.task.send_request`` through
  the server, the agent's WebSocket tunnel and the agent's connection to the app: p50/p95;
- requests/s from 8 client threads through the server.

Run: ``python bench/session_request.py [--n 2000]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench.stats import fmt, pct, timed  # noqa: E402
from tests.support import AgentProc, Client, ServerProc, wait_for  # noqa: E402

import appyard as ay  # noqa: E402

ECHO_MODEL = ROOT / "src" / "appyard" / "ecosystem" / "echo-model"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="appyard-bench-"))
    server = ServerProc(tmp / "server").start()
    agent: AgentProc | None = None
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "bench"})["id"]
        ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "bench"})["id"]
        created = admin.ok("POST", f"/teams/{team}/agents", json={"name": "bench"})
        agent = AgentProc(server.url, created["token"], tmp / "agent", slots=2).start()
        api = ay.Api(server.url, server.admin_token)
        wait_for(
            lambda: any(a.status == "online" for a in api.agent.get_list(team)), 30, "agent online"
        )
        module_id = admin.publish(ECHO_MODEL)["module_id"]
        tid = api.app.start(created["id"], ws, module_id=module_id).task_id
        assert api.app.wait_until_ready_for_api_calls(tid, 60, 1), "the echo model is not ready"
        state = json.loads((tmp / "agent" / "tasks" / str(tid) / "state.json").read_text())
        port = state["app_port"]
        body = {"command": "echo", "state": {"x": 1}, "context": {}}
        data = {"x": 1}

        with httpx.Client(transport=httpx.HTTPTransport(socket_options=[(6, 1, 1)])) as direct:

            def call_direct() -> None:
                direct.post(f"http://127.0.0.1:{port}/", json=body).raise_for_status()

            timed(call_direct, 200)
            d = timed(call_direct, args.n)

        g = timed(lambda: api.task.get(tid), args.n)

        def call_tunnel() -> None:
            api.task.send_request(tid, "echo", data)

        timed(call_tunnel, 200)
        t = timed(call_tunnel, args.n)

        apis = [ay.Api(server.url, server.admin_token) for _ in range(args.clients)]
        per = args.n // args.clients

        def client(i: int) -> None:
            for _ in range(per):
                apis[i].task.send_request(tid, "echo", data)

        with ThreadPoolExecutor(args.clients) as pool:
            t0 = time.perf_counter()
            list(pool.map(client, range(args.clients)))
            elapsed = time.perf_counter() - t0
        print(f"direct to the app's port:      {fmt(d)}  ({args.n} requests)")
        print(f"GET /tasks/{{id}} (a read, no tunnel): {fmt(g)}")
        print(f"send_request through the tunnel: {fmt(t)}  ({args.n} requests)")
        print(f"overhead at p50: {(pct(t, 0.5) - pct(d, 0.5)) * 1000:.2f} ms")
        print(f"requests/s, {args.clients} clients: {per * args.clients / elapsed:7.0f}")
        for a in apis:
            a.close()
        api.close()
    finally:
        if agent is not None:
            agent.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
