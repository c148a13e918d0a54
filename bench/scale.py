"""What the server costs at 10,000 sessions and 100 agents (SQLite by default).

- starts N sessions through the API (no agent takes them: they stay queued), timing each;
- times listing them (first page, a status filter, a page deep in the cursor chain), reading
  one, and a ``wait`` that answers at once;
- connects M protocol-level agents that each hold a long-poll, then times start -> the
  assignment reaching the agent it was meant for, and start -> any agent (one held poll is
  woken, and hands the wake on if it cannot take the task);
- prints the server's resident memory.

Run: ``python bench/scale.py [--sessions 10000] [--agents 100] [--postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import fmt, timed  # noqa: E402
from tests.support import APPS, Client, ServerProc, pg_database  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def agents_bench(
    server: ServerProc, admin: Client, team: int, ws: int, mid: int, m: int
) -> None:
    tokens = [admin.ok("POST", f"/teams/{team}/agents", json={"name": f"a{i}"}) for i in range(m)]
    limits = httpx.Limits(max_connections=m + 10, max_keepalive_connections=m + 10)
    async with httpx.AsyncClient(
        base_url=f"{server.url}/api/v1", timeout=60, limits=limits
    ) as http:
        for t in tokens:
            r = await http.post(
                "/agents/hello",
                json={"slots": 1},
                headers={"Authorization": f"Bearer {t['token']}"},
            )
            r.raise_for_status()
        got: asyncio.Queue[tuple[int, int, float]] = asyncio.Queue()
        stop = asyncio.Event()

        async def poller(t: dict) -> None:  # type: ignore[type-arg]
            held: list[int] = []
            headers = {"Authorization": f"Bearer {t['token']}"}
            while not stop.is_set():
                r = await http.post(
                    f"/agents/{t['id']}/poll",
                    json={"free_slots": 1, "running": held, "timeout_s": 20},
                    headers=headers,
                )
                for a in r.json()["tasks"]:
                    now = time.perf_counter()
                    held.append(a["task_id"])
                    await got.put((t["id"], a["task_id"], now))
                    # report it done at once, so the slot frees again
                    for ev in ({"kind": "started", "pid": 1}, {"kind": "exited", "exit_code": 0}):
                        await http.post(f"/tasks/{a['task_id']}/events", json=ev, headers=headers)
                    held.remove(a["task_id"])

        tasks = [asyncio.create_task(poller(t)) for t in tokens]
        await asyncio.sleep(1.0)  # every poll held
        admin_headers = {"Authorization": admin.http.headers["Authorization"]}

        async def dispatch(agent_id: int | None) -> float:
            body = {"workspace_id": ws, "module_id": mid, "params": {}}
            if agent_id is not None:
                body["agent_id"] = agent_id
            t0 = time.perf_counter()
            r = await http.post("/tasks", json=body, headers=admin_headers)
            r.raise_for_status()
            aid, tid, t1 = await asyncio.wait_for(got.get(), 30)
            assert tid == r.json()["task_id"] and (agent_id is None or aid == agent_id)
            await asyncio.sleep(0.05)  # its poller re-polls
            return t1 - t0

        direct = [await dispatch(tokens[i % m]["id"]) for i in range(40)]
        anyone = [await dispatch(None) for _ in range(40)]
        print(f"{m} agents holding a poll; server RSS {rss_mb(server.proc.pid):.0f} MB")  # type: ignore[union-attr]
        print(f"start -> assignment at the chosen agent: {fmt(direct)}")
        print(f"start -> assignment at any agent (one of {m} polls woken): {fmt(anyone)}")
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="appyard-scale-"))
    env = {"APPYARD_AGENT_TTL_S": "120", "APPYARD_POLL_TIMEOUT_S": "25"}
    if args.postgres:
        with pg_database() as url:
            run(ServerProc(tmp / "server", database_url=url, extra_env=env), args)
    else:
        run(ServerProc(tmp / "server", extra_env=env), args)


def run(server: ServerProc, args: argparse.Namespace) -> None:
    server.start()
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "scale"})["id"]
        ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
        mid = admin.publish(APPS / "worker")["module_id"]
        body = {"workspace_id": ws, "module_id": mid, "params": {}}
        t0 = time.perf_counter()
        starts = timed(lambda: admin.ok("POST", "/tasks", json=body), args.sessions)
        total = time.perf_counter() - t0
        print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")
        print(f"{args.sessions} starts: {fmt(starts)}   ({args.sessions / total:.0f}/s)")
        first = admin.ok("GET", "/tasks", params={"team_id": team})
        some_id = first["items"][0]["id"]
        print(
            "list, first page of 50:     "
            + fmt(timed(lambda: admin.ok("GET", "/tasks", params={"team_id": team}), 50))
        )
        print(
            "list, status=finished (none):"
            + fmt(
                timed(
                    lambda: admin.ok(
                        "GET", "/tasks", params={"team_id": team, "status": "finished"}
                    ),
                    50,
                )
            )
        )
        cursor = str(some_id - args.sessions // 2)
        print(
            "list, a page mid-way:        "
            + fmt(
                timed(
                    lambda: admin.ok("GET", "/tasks", params={"team_id": team, "cursor": cursor}),
                    50,
                )
            )
        )
        print(
            "get one task:                "
            + fmt(timed(lambda: admin.ok("GET", f"/tasks/{some_id}"), 50))
        )
        print(
            "wait that answers at once:   "
            + fmt(
                timed(
                    lambda: admin.ok("GET", f"/tasks/{some_id}/wait", params={"until": "queued"}),
                    50,
                )
            )
        )
        # clear the queue so the agents bench sees only its own tasks
        for t in range(some_id - args.sessions + 1, some_id + 1):
            admin.http.post(f"/tasks/{t}/stop")
        asyncio.run(agents_bench(server, admin, team, ws, mid, args.agents))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
