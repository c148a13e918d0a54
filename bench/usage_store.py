"""What storing sessions' usage costs the server: agents' polls that carry the figures.

``--agents`` protocol-level agents (default 100) each hold ``--per-agent`` started sessions
(default 100: 10,000 in all), made through the API and the agent protocol. Then rounds of
polls: in each, every agent sends one poll (``timeout_s`` 0) carrying 5 new samples for each of
its sessions, what a real agent sends every 25 s at the default 5 s interval. The first rounds
fill the histories; the timed ones run once each history holds its cap (120 samples), where
every poll also merges. Printed per poll: the wall time, the server's CPU time (user + system
from ``/proc``) and, with ``--postgres``, the database's and the bytes of its write-ahead log;
and what that is at 100 agents polling
every 25 s (4 polls a second) as a share of one core.

The server is ``appyard up``'s (SQLite in its home, or ``--postgres``), as users run it;
``--bare``: ``python -m appyard.server`` alone.

Run: ``python bench/usage_store.py [--agents 100] [--per-agent 100] [--postgres] [--bare]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import APPS, Client, ServerProc, Up, free_port, pg_database  # noqa: E402

#: samples per session per poll: a 25 s poll at the 5 s default interval
PER_POLL = 5
#: rounds before the timed ones: 24 x 5 = 120 samples, each history at its cap
FILL_ROUNDS = 24
POLL_S = 25.0
#: the protocol-level agents poll only in the timed rounds: they must not be called lost
TTL = "86400"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (and of their ended threads)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def wal_bytes(url: str | None) -> int:
    """Where PostgreSQL's write-ahead log is, in bytes (0 without PostgreSQL): what the
    database wrote, tables, indexes and their TOAST alike."""
    if url is None:
        return 0
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()
        return int(row[0]) if row else 0


def postgres_pids() -> list[int]:
    """Every PostgreSQL process (its backends do the writes)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip().startswith("postgres"):
                    out.append(int(d.name))
    return out


class Agents:
    """Protocol-level agents holding started sessions, sending figures as a real one would."""

    def __init__(self, http: httpx.AsyncClient, tokens: list[dict[str, Any]]) -> None:
        self.http = http
        self.tokens = tokens
        self.held: dict[int, list[int]] = {t["id"]: [] for t in tokens}
        self.clock = datetime.now(UTC) - timedelta(hours=2)

    def _headers(self, t: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {t['token']}"}

    async def claim(self, per_agent: int) -> None:
        async def one(t: dict[str, Any]) -> None:
            while len(self.held[t["id"]]) < per_agent:
                r = await self.http.post(
                    f"/agents/{t['id']}/poll",
                    json={"free_slots": per_agent, "running": self.held[t["id"]], "timeout_s": 0},
                    headers=self._headers(t),
                )
                r.raise_for_status()
                for a in r.json()["tasks"]:
                    ev = {"kind": "started", "pid": 4242}
                    s = await self.http.post(
                        f"/tasks/{a['task_id']}/events", json=ev, headers=self._headers(t)
                    )
                    s.raise_for_status()
                    self.held[t["id"]].append(a["task_id"])

        await asyncio.gather(*(one(t) for t in self.tokens))

    def _usage(self, ids: list[int]) -> list[dict[str, Any]]:
        times = [(self.clock + timedelta(seconds=5 * i)).isoformat() for i in range(PER_POLL)]
        self.clock += timedelta(seconds=5 * PER_POLL)
        return [
            {
                "task_id": tid,
                "samples": [
                    {"sampled_at": at, "cpu_percent": 37.5 + i, "memory_mb": 1024.0 + tid % 97}
                    for i, at in enumerate(times)
                ],
            }
            for tid in ids
        ]

    async def round(self) -> list[float]:
        """Each agent's poll with its figures, one after the other (as 100 agents 0.25 s apart
        would be); the wall time of each."""
        took = []
        for t in self.tokens:
            ids = self.held[t["id"]]
            body = {"free_slots": 0, "running": ids, "timeout_s": 0, "usage": self._usage(ids)}
            t0 = time.perf_counter()
            r = await self.http.post(f"/agents/{t['id']}/poll", json=body, headers=self._headers(t))
            took.append(time.perf_counter() - t0)
            r.raise_for_status()
        return took


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield None
        return
    with pg_database() as url:
        yield url


@dataclass
class Target:
    """The server measured: its address, an admin token, its process, its database."""

    url: str
    admin_token: str
    pid: int
    database_url: str | None


def server_child(parent: int) -> int:
    """The pid of ``appyard up``'s server process (its child running ``appyard.server``)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent and b"appyard.server" in (d / "cmdline").read_bytes():
                    return int(d.name)
    raise SystemExit("appyard up runs no server process")


async def bench(server: Target, args: argparse.Namespace) -> None:
    admin = Client(server.url, server.admin_token)
    team = admin.ok("POST", "/teams", json={"name": "usage"})["id"]
    ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
    mid = admin.publish(APPS / "worker")["module_id"]
    tokens = [
        admin.ok("POST", f"/teams/{team}/agents", json={"name": f"a{i}"})
        for i in range(args.agents)
    ]
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(
        base_url=f"{server.url}/api/v1", timeout=120, limits=limits
    ) as http:
        headers = {"Authorization": admin.http.headers["Authorization"]}
        for t in tokens:
            r = await http.post(
                "/agents/hello",
                json={"slots": args.per_agent},
                headers={"Authorization": f"Bearer {t['token']}"},
            )
            r.raise_for_status()
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(16)

        async def start(agent_id: int) -> None:
            body = {"workspace_id": ws, "module_id": mid, "params": {}, "agent_id": agent_id}
            async with sem:
                (await http.post("/tasks", json=body, headers=headers)).raise_for_status()

        await asyncio.gather(*(start(t["id"]) for t in tokens for _ in range(args.per_agent)))
        agents = Agents(http, tokens)
        await agents.claim(args.per_agent)
        n = args.agents * args.per_agent
        print(f"{n} started sessions on {args.agents} agents ({time.perf_counter() - t0:.0f} s)")
        pids = [server.pid]
        for i in range(FILL_ROUNDS):
            took = await agents.round()
            if i == 0:
                print(f"first poll with figures (empty histories): {_ms(took)}")
        db_pids = postgres_pids() if args.postgres else []
        cpu0, db0, wal0 = cpu_s(pids), cpu_s(db_pids), wal_bytes(server.database_url)
        took = []
        for _ in range(args.rounds):
            took += await agents.round()
        cpu = (cpu_s(pids) - cpu0) / len(took) * 1000
        db = (cpu_s(db_pids) - db0) / len(took) * 1000
        wal = (wal_bytes(server.database_url) - wal0) / len(took) / 1024
        print(
            f"poll with figures of {args.per_agent} sessions, histories at their cap "
            f"({len(took)} polls): {_ms(took)}"
        )
        print(
            f"server CPU per poll: {cpu:.1f} ms"
            + (f"; PostgreSQL: {db:.1f} ms, {wal:.0f} KB of WAL" if db_pids else "")
        )
        rate = args.agents / POLL_S
        share = (cpu + db) * rate / 10
        print(
            f"at {args.agents} agents polling every {POLL_S:g} s ({rate:g} polls/s): "
            f"{share:.1f} % of one core"
        )
        one = agents.held[tokens[0]["id"]][0]
        got = (await http.get(f"/tasks/{one}", headers=headers)).json()
        print(f"a session's history: {len(got['usage_history'])} samples")


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"p50 {statistics.median(xs) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--per-agent", type=int, default=100)
    ap.add_argument(
        "--rounds", type=int, default=12, help="timed rounds: 12, one halving of each history"
    )
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--bare", action="store_true", help="a bare server, not `appyard up`")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(args.postgres) as url:
        home = Path(tmp) / "home"
        print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")
        if args.bare:
            server = ServerProc(home, database_url=url, extra_env={"APPYARD_AGENT_TTL_S": TTL})
            server.start()
            try:
                assert server.proc is not None
                target = Target(server.url, server.admin_token, server.proc.pid, url)
                asyncio.run(bench(target, args))
            finally:
                server.stop()
            return
        port = free_port()
        up = Up(
            home,
            Path(tmp) / "appyard.env",
            port,
            APPYARD_AGENT_TTL_S=TTL,
            APPYARD_DATABASE_URL=url or "",  # empty: the SQLite file in the home
        )
        try:
            token = (home / "admin-token").read_text().strip()
            target = Target(f"http://127.0.0.1:{port}", token, server_child(up.proc.pid), url)
            print("through `appyard up --port` (its own agent idle beside them)")
            asyncio.run(bench(target, args))
        finally:
            up.interrupt()


if __name__ == "__main__":
    main()
