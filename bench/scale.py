"""What the server costs at 10,000 sessions and 100 agents, or with a million ended ones
(SQLite by default).

Up to 50,000 sessions:

- starts N sessions through the API (no agent takes them: they stay queued), timing each;
- times listing them (first page, a status filter, a page deep in the cursor chain), reading
  one, and a ``wait`` that answers at once;
- connects M protocol-level agents that each hold a long-poll, then times start -> the
  assignment reaching the agent it was meant for, and start -> any agent (one held poll is
  woken, and hands the wake on if it cannot take the task);
- prints the server's resident memory.

More (``--sessions 1000000``): a team's history. N ended sessions are written straight into
the database while no server runs (a recursive CTE on SQLite, ``generate_series`` on
PostgreSQL; 90% finished, 7% error, 3% stopped, 90% of them of one app, the seed's), a few
live ones are made through the API and the agent protocol (two started sessions of that app,
one of them ready for calls, one terminating, one consumed, two queued), then the lists users and agents ask
for most are timed through the public SDK and HTTP, as they would be by a user: on the bare
server (``python -m appyard.server --port``), then through ``appyard up`` (``--no-up``: not):

- the seed tutorial's ``api.app.get_sessions(team_id, module_id, statuses=[STARTED])``;
- the first page (50, the API's default) of the sessions list for each status filter of the web UI;
- the agents page (each agent's running sessions counted) and an agent's own record;
- an agent's poll that finds nothing to do, and one that claims the task just started for it
  (the agent ran most of the history: its stopped sessions are what a poll must not read).

Run: ``python bench/scale.py [--sessions 10000] [--agents 100] [--postgres] [--no-up]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from appyard.domain.status import TERMINAL, Status
from appyard.sdk import Api
from appyard.server.db.engine import make_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import fmt, timed  # noqa: E402
from tests.history import Share, seed_ended  # noqa: E402
from tests.support import APPS, Client, ServerProc, Up, free_port, pg_database  # noqa: E402

#: more sessions than this are written straight into the database as an ended history
SEED_ABOVE = 50_000
#: timings per figure of the history bench
REPS = 30
#: the live sessions are held by an agent that polls once: it must not be called lost
AGENT_TTL_S = "86400"


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

        async def poller(t: dict[str, Any]) -> None:
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
    parser.add_argument(
        "--up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"above {SEED_ABOVE:,} sessions: also measure through `appyard up`",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="appyard-scale-"))
    if args.sessions > SEED_ABOVE:
        try:
            with pg_database() if args.postgres else contextlib.nullcontext() as url:
                history_bench(tmp, url, args.sessions, args.up)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a million rows: hundreds of MB
        return
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


# -- a million ended sessions ---------------------------------------------------------------------


@dataclass
class History:
    """What the history bench made through the API."""

    admin_token: str
    team: int
    workspace: int
    module: int  # the seed's app: 90% of the history is its sessions
    live_agent: tuple[int, str]  # holds the live sessions (id, token)
    history_agent: tuple[int, str]  # ran most of the history; its polls are timed
    templates: tuple[int, int]  # an ended session of each app, copied into the history
    running: list[int] = field(default_factory=list)  # the started sessions of the seed's app


def prepare(server: ServerProc) -> History:
    admin = Client(server.url, server.admin_token)
    team = admin.ok("POST", "/teams", json={"name": "history"})["id"]
    ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
    mid = admin.publish(APPS / "worker")["module_id"]
    other = admin.publish(ROOT / "bench" / "apps" / "noop")["module_id"]
    live, old = (
        admin.ok("POST", f"/teams/{team}/agents", json={"name": name})
        for name in ("bench-live", "bench-history")
    )
    templates = []
    for module in (mid, other):
        body = {"workspace_id": ws, "module_id": module, "agent_id": old["id"]}
        task_id = admin.ok("POST", "/tasks", json=body)["task_id"]
        admin.ok("POST", f"/tasks/{task_id}/stop")
        templates.append(task_id)
    return History(
        server.admin_token,
        team,
        ws,
        mid,
        (live["id"], live["token"]),
        (old["id"], old["token"]),
        (templates[0], templates[1]),
    )


def seed(url: str, h: History, n: int) -> None:
    engine = make_engine(url)
    old, live = h.history_agent[0], h.live_agent[0]
    mine = n * 9 // 10
    t0 = time.perf_counter()
    seed_ended(
        engine,
        [
            Share(h.templates[0], mine, (old, old, old, live)),
            Share(h.templates[1], n - mine, (old,)),
        ],
    )
    took = time.perf_counter() - t0
    print(f"seeded {n:,} ended sessions in {took:.1f} s ({n / took:,.0f} rows/s)")
    if engine.dialect.name == "postgresql":
        t0 = time.perf_counter()
        with engine.begin() as conn:  # what autovacuum does soon after a bulk insert
            conn.exec_driver_sql("ANALYZE tasks")
        print(f"ANALYZE tasks (as autovacuum would): {time.perf_counter() - t0:.1f} s")
    engine.dispose()


def make_live(address: str, h: History) -> None:
    """Through the API and the agent protocol: two started sessions of the seed's app (the ones
    its call must find; one ready for calls), one terminating, one consumed, two queued."""
    admin = Client(address, h.admin_token)
    agent_id, token = h.live_agent
    agent = Client(address, token)
    agent.ok("POST", "/agents/hello", json={"slots": 4})
    body = {"workspace_id": h.workspace, "module_id": h.module, "agent_id": agent_id}
    for _ in range(4):
        admin.ok("POST", "/tasks", json=body)
    claimed = agent.ok(
        "POST", f"/agents/{agent_id}/poll", json={"free_slots": 4, "running": [], "timeout_s": 0}
    )["tasks"]
    assert len(claimed) == 4, claimed
    for t in claimed[:3]:
        agent.ok("POST", f"/tasks/{t['task_id']}/events", json={"kind": "started", "pid": 1})
    Client(address, claimed[1]["token"]).ok(
        "POST", f"/tasks/{claimed[1]['task_id']}/ready", json={}
    )
    admin.ok("POST", f"/tasks/{claimed[2]['task_id']}/stop")
    for _ in range(2):  # its slots are full: these stay queued
        admin.ok("POST", "/tasks", json=body)
    h.running = sorted((claimed[0]["task_id"], claimed[1]["task_id"]), reverse=True)


def statistics_note(url: str) -> str:
    if not url.startswith("sqlite"):
        return "planner statistics: PostgreSQL's (ANALYZE)"
    engine = make_engine(url, readonly=True)
    try:
        with engine.connect() as conn:
            has = (
                conn.exec_driver_sql(
                    "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"
                ).first()
                and conn.exec_driver_sql("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'tasks'").first()
            )
    finally:
        engine.dispose()
    return "planner statistics: " + ("tasks analyzed" if has else "none (never analyzed)")


def measure(address: str, h: History, label: str) -> None:
    print(f"-- {label} ({address})")
    filters = [(st.value, st.value) for st in Status] + [
        ("not ended", ",".join(st.value for st in Status if st not in TERMINAL)),
        ("ended", ",".join(sorted(TERMINAL))),
    ]
    with Api(address, h.admin_token) as api:
        found = api.app.get_sessions(h.team, h.module, statuses=[Status.STARTED])
        assert [x.task_id for x in found] == h.running, found
        calls = timed(
            lambda: api.app.get_sessions(h.team, h.module, statuses=[Status.STARTED]), REPS
        )
        print(f"  seed's api.app.get_sessions(team, app, [started]): {fmt(calls)}")
        with httpx.Client(
            base_url=f"{address}/api/v1",
            headers={"Authorization": f"Bearer {h.admin_token}"},
            timeout=60,
        ) as http:
            for name, status in filters:

                def page(status: str = status) -> None:
                    params: dict[str, str | int] = {
                        "team_id": h.team,
                        "status": status,
                        "limit": 50,
                    }
                    http.get("/tasks", params=params).raise_for_status()

                print(f"  first page, status={name:<12} {fmt(timed(page, REPS))}")
        agents = timed(lambda: api.agent.get_list(h.team), REPS)
        print(f"  agents page (running counted per agent):    {fmt(agents)}")
    with Api(address, h.live_agent[1]) as agent_api:
        assert agent_api.agent.me().running == 4
        me = timed(agent_api.agent.me, REPS)
        print(f"  an agent's own record (its 4 running):       {fmt(me)}")
    claim_path(address, h)


def claim_path(address: str, h: History) -> None:
    """The agent that ran most of the history: a poll with nothing to do (reconcile, stops not
    told yet, free slots, the claim query), and one that claims a session started for it."""
    admin = Client(address, h.admin_token)
    agent_id, token = h.history_agent
    agent = Client(address, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    poll = {"free_slots": 1, "running": [], "timeout_s": 0}

    def idle() -> None:
        assert agent.ok("POST", f"/agents/{agent_id}/poll", json=poll)["tasks"] == []

    print(f"  agent poll, nothing to do:                   {fmt(timed(idle, REPS))}")
    body = {"workspace_id": h.workspace, "module_id": h.module, "agent_id": agent_id}
    claims = []
    for _ in range(REPS):
        task_id = admin.ok("POST", "/tasks", json=body)["task_id"]
        t0 = time.perf_counter()
        got = agent.ok("POST", f"/agents/{agent_id}/poll", json=poll)["tasks"]
        claims.append(time.perf_counter() - t0)
        assert [t["task_id"] for t in got] == [task_id], got
        for ev in ({"kind": "started", "pid": 1}, {"kind": "exited", "exit_code": 0}):
            agent.ok("POST", f"/tasks/{task_id}/events", json=ev)
    print(f"  agent poll that claims the session for it:   {fmt(claims)}")


def history_bench(tmp: Path, pg_url: str | None, n: int, through_up: bool) -> None:
    home = tmp / "home"
    server = ServerProc(home, database_url=pg_url, extra_env={"APPYARD_AGENT_TTL_S": AGENT_TTL_S})
    url = pg_url or f"sqlite:///{home / 'appyard.db'}"
    print(f"database: {'PostgreSQL' if pg_url else 'SQLite'}")
    server.start()
    try:
        h = prepare(server)
    finally:
        server.stop()
    seed(url, h, n)  # no server running, as an import would
    server.start()
    try:
        print(statistics_note(url) + " (after the server's start-up)")
        make_live(server.url, h)
        measure(server.url, h, "bare server: python -m appyard.server --port")
    finally:
        server.stop()
    if not through_up:
        return
    # `appyard up` on the same home: it finds the admin token where it keeps it
    (home / "admin-token").write_text(h.admin_token)
    port = free_port()
    up = Up(
        home,
        tmp / "appyard.env",
        port,
        APPYARD_AGENT_TTL_S=AGENT_TTL_S,
        APPYARD_DATABASE_URL=pg_url or "",  # empty: the SQLite file in the home
    )
    try:
        measure(f"http://127.0.0.1:{port}", h, "through `appyard up --port`")
    finally:
        up.interrupt()


if __name__ == "__main__":
    main()
