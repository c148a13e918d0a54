"""Latency of sessions through ``appyard up`` (the default path; SQLite, this machine).

Prints, for a trivial app:
- start -> app process running: from ``api.app.start()`` to the app's first line, p50/p95,
  and the same minus the app's own start-up (a bare ``python app.py`` measured here);
- app exit -> ``wait()`` returns: from the app's last line to ``api.app.wait`` returning;
- a small authenticated GET (``api.team.get_list``) on a reused connection.

By default it runs ``python -m appyard.cli up`` exactly as a user starts it (APPYARD_HOME and
APPYARD_ENV_FILE in a temporary folder, credentials read from that env file, the app published
through the SDK). ``--bare-server`` measures a bare ``python -m appyard.server`` with a separate
agent instead, and adds the exit latency of a client polling once a second (as the reference
SDK does) and sessions per second with 1 and 4 slots.

Run: ``python bench/latency.py [--runs 40] [--bare-server]``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import appyard_up  # noqa: E402
from bench.stats import fmt, pct, timed  # noqa: E402
from tests.support import APPS, AgentProc, Client, ServerProc, wait_for  # noqa: E402

import appyard as ay  # noqa: E402

NOOP = Path(__file__).parent / "apps" / "noop"
#: where a session's app writes its times: in its own working folder (its task's ``work/``)
STAMP = "stamp.json"


def bare_startup(tmp: Path, runs: int) -> list[float]:
    """The app's own start-up: spawn the interpreter on the app to its first line."""
    out = []
    for i in range(runs):
        stamp = tmp / f"bare-{i}.json"
        env = {**os.environ, "MODAL_STATE": json.dumps({"stamp": str(stamp)})}
        t0 = time.time()
        subprocess.run([sys.executable, str(NOOP / "main.py")], env=env, check=True)
        out.append(json.loads(stamp.read_text())["began"] - t0)
    return out


def read_stamp(root: Path, task_id: int) -> dict[str, float]:
    """The stamp a session's app wrote in its own task folder (a sandboxed app writes nowhere
    else), found below ``root``, the folder of the agents' work folders."""
    (path,) = root.glob(f"**/tasks/{task_id}/work/{STAMP}")
    times: dict[str, float] = json.loads(path.read_text())
    return times


def one_session(
    api: ay.Api, module_id: int, agent_id: int, ws: int, root: Path
) -> tuple[float, float]:
    t0 = time.time()
    session = api.app.start(
        agent_id=agent_id, module_id=module_id, workspace_id=ws, params={"stamp": STAMP}
    )
    api.app.wait(session.task_id, target_status=api.task.Status.FINISHED)
    t_done = time.time()
    times = read_stamp(root, session.task_id)
    return times["began"] - t0, t_done - times["ends"]


def polled_session(api: ay.Api, module_id: int, agent_id: int, ws: int, root: Path) -> float:
    """The reference SDK's way: ask for the status once a second until it is final."""
    session = api.app.start(
        agent_id=agent_id, module_id=module_id, workspace_id=ws, params={"stamp": STAMP}
    )
    while api.app.get_status(session.task_id) not in (ay.Status.FINISHED, ay.Status.ERROR):
        time.sleep(1.0)
    return time.time() - read_stamp(root, session.task_id)["ends"]


def throughput(api: ay.Api, module_id: int, agent_id: int, ws: int, n: int) -> float:
    t0 = time.perf_counter()
    tids = [
        api.app.start(agent_id=agent_id, module_id=module_id, workspace_id=ws, params={}).task_id
        for _ in range(n)
    ]
    for tid in tids:
        api.task.wait(tid)
    return n / (time.perf_counter() - t0)


def print_latency(
    runs: int, bare: list[float], starts: list[float], exits: list[float], path: str
) -> None:
    bare_p50 = pct(bare, 0.5)
    print(f"appyard {ay.__version__}, {os.cpu_count()} cores, SQLite, {path}, {runs} runs")
    print(f"app's own start-up (bare python app.py): {fmt(bare, 1)}")
    print(f"start -> app running:                    {fmt(starts, 1)}")
    print(
        "start -> app running, beyond start-up:   "
        f"p50 {(pct(starts, 0.5) - bare_p50) * 1000:7.1f} ms   "
        f"p95 {(pct(starts, 0.95) - bare_p50) * 1000:7.1f} ms"
    )
    print(f"app exit -> wait() returns (pushed):     {fmt(exits, 1)}")


def through_up(runs: int, slots: int) -> None:
    """Everything through ``appyard up``, as a user runs it."""
    tmp = Path(tempfile.mkdtemp(prefix="appyard-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # its home, apps' marks
    with appyard_up(tmp, slots) as local, local.api() as api:
        module_id = api.module.publish(NOOP).module_id
        ws, agent = local.workspace_id, local.agent_id
        for _ in range(3):  # warm up: release cache, connections
            one_session(api, module_id, agent, ws, tmp)
        starts, exits = [], []
        for _ in range(runs):
            s, e = one_session(api, module_id, agent, ws, tmp)
            starts.append(s)
            exits.append(e)
        api.team.get_list()
        gets = timed(api.team.get_list, max(runs, 200))
        bare = bare_startup(tmp, runs)
    print_latency(runs, bare, starts, exits, "through appyard up")
    print(f"GET /teams (api.team.get_list), reused:  {fmt(gets, 2)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--slots", type=int, default=4, help="appyard up --slots")
    parser.add_argument(
        "--bare-server",
        action="store_true",
        help="a bare `python -m appyard.server` and a separate agent instead of `appyard up`",
    )
    parser.add_argument("--polled-runs", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=40)
    args = parser.parse_args()
    if not args.bare_server:
        through_up(args.runs, args.slots)
        return
    tmp = Path(tempfile.mkdtemp(prefix="appyard-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # its home, apps' marks
    server = ServerProc(
        tmp / "server", extra_env={"APPYARD_AGENT_TTL_S": "60", "APPYARD_POLL_TIMEOUT_S": "25"}
    ).start()
    agents: list[AgentProc] = []
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "bench"})
        ws = admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "bench"})["id"]
        module_id = admin.publish(NOOP)["module_id"]
        assert APPS.exists()
        api = ay.Api(server.url, server.admin_token)

        def agent(slots: int) -> int:
            created = admin.ok("POST", f"/teams/{team['id']}/agents", json={"name": f"s{slots}"})
            proc = AgentProc(
                server.url, created["token"], tmp / f"agent-{slots}", slots=slots
            ).start()
            agents.append(proc)
            wait_for(
                lambda: any(
                    a.id == created["id"] and a.status == "online"
                    for a in api.agent.get_list(team["id"])
                ),
                30,
                "agent online",
            )
            return int(created["id"])

        a1 = agent(1)
        for _ in range(3):  # warm up: release cache, connections
            one_session(api, module_id, a1, ws, tmp)
        starts, exits = [], []
        for _ in range(args.runs):
            s, e = one_session(api, module_id, a1, ws, tmp)
            starts.append(s)
            exits.append(e)
        bare = bare_startup(tmp, args.runs)
        polled = [polled_session(api, module_id, a1, ws, tmp) for i in range(args.polled_runs)]
        tp1 = throughput(api, module_id, a1, ws, args.sessions)
        a4 = agent(4)
        tp4 = throughput(api, module_id, a4, ws, args.sessions)

        print_latency(args.runs, bare, starts, exits, "bare server")
        print(
            f"app exit -> status seen, polling 1/s:    {fmt(polled, 1)}  ({args.polled_runs} runs)"
        )
        print(f"sessions/s, 1 slot:  {tp1:6.1f}   ({args.sessions} sessions)")
        print(f"sessions/s, 4 slots: {tp4:6.1f}   ({args.sessions} sessions)")
        api.close()
    finally:
        for a in agents:
            a.stop()
        server.stop()


if __name__ == "__main__":
    main()
