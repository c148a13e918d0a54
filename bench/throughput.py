"""Sessions per second through ``appyard up`` when many are submitted at once.

N sessions of a trivial app (it writes one line and exits) from T client threads, each with
its own SDK ``Api``, each session ``api.app.start()`` then ``api.app.wait(FINISHED)``, on
``appyard up --slots S`` started exactly as a user starts it. Prints:

- sessions/s, from the first ``start`` sent to the last ``wait`` returned;
- that every session ran exactly once: each ``finished``, one log line each, and one run of
  its app (the app appends a byte to a marker file named after its task);
- where the time goes, per session: CPU of the server process, of the agent process, of the
  task supervisors and their apps (what the agent and its supervisor zygote reaped), and of
  the clients (this process); and a bare interpreter start of the app for scale.

``--runs 5`` repeats the measurement on the same ``up`` and prints the spread (min / median /
max) of each figure.

Run: ``python bench/throughput.py [--sessions 40] [--clients 8] [--slots 8] [--runs 1]``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import Local, appyard_up, below, cpu  # noqa: E402
from bench.stats import pct  # noqa: E402

import appyard as ay  # noqa: E402

APP = Path(__file__).parent / "apps" / "one-line"


@dataclass
class Run:
    sessions: int
    wall_s: float
    server_cpu_s: float
    agent_cpu_s: float
    apps_cpu_s: float  # supervisors and apps (and the agent's supervisor zygote)
    client_cpu_s: float
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.sessions / self.wall_s

    def per(self, seconds: float) -> float:
        """Milliseconds per session."""
        return seconds / self.sessions * 1000


def check_once(api: ay.Api, task_id: int, status: ay.Status, marks: Path) -> list[str]:
    """What is wrong with one session (nothing: it ran exactly once)."""
    problems = []
    if status is not ay.Status.FINISHED:
        problems.append(f"task {task_id} ended {status}")
    lines = [line.text for line in api.task.logs(task_id, limit=None)]
    if lines != [f"ran task {task_id}"]:
        problems.append(f"task {task_id} has {len(lines)} log lines: {lines[:3]}")
    found = list(marks.glob(f"**/tasks/{task_id}/work/{task_id}"))
    runs = len(found[0].read_bytes()) if found else 0
    if runs != 1:
        problems.append(f"task {task_id}'s app ran {runs} times")
    return problems


def one_run(local: Local, module_id: int, n: int, clients: int) -> Run:
    # each app marks its run in its own task folder (a sandboxed app writes no other)
    marks = local.home
    before = set(marks.glob("**/tasks/*/work/*"))
    apis = [local.api() for _ in range(clients)]
    for api in apis:
        api.team.get_list()  # each client has its connection open, as a running script has
    begins: list[float] = []
    ends: list[float] = []
    done: list[tuple[int, ay.Status]] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        api = apis[i]
        barrier.wait()
        for _ in range(i, n, clients):
            t0 = time.perf_counter()
            try:
                session = api.app.start(
                    agent_id=local.agent_id,
                    module_id=module_id,
                    workspace_id=local.workspace_id,
                    params={"marks": "."},
                )
                status = api.app.wait(session.task_id, target_status=ay.Status.FINISHED)
            except ay.AppyardError as exc:
                with lock:
                    errors.append(f"client {i}: {exc}")
                continue
            t1 = time.perf_counter()
            with lock:
                begins.append(t0)
                ends.append(t1)
                done.append((session.task_id, status))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    server0, agent0, self0 = cpu(local.server_pid), cpu(local.agent_pid), os.times()
    below0 = below(local.agent_pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server1, agent1, self1 = cpu(local.server_pid), cpu(local.agent_pid), os.times()
    below1 = below(local.agent_pid)
    problems = list(errors)
    for task_id, status in done:
        problems += check_once(apis[0], task_id, status, marks)
    made = set(marks.glob("**/tasks/*/work/*")) - before
    extra = {p.name for p in made} - {str(t) for t, _ in done}
    if extra:
        problems.append(f"apps ran for tasks nobody started: {sorted(extra)}")
    if len(done) != n:
        problems.append(f"{n - len(done)} of {n} sessions did not finish")
    for api in apis:
        api.close()
    return Run(
        sessions=n,
        wall_s=max(ends) - min(begins) if ends else float("nan"),
        server_cpu_s=server1.own - server0.own,
        agent_cpu_s=agent1.own - agent0.own,
        apps_cpu_s=below1 - below0,
        client_cpu_s=(self1.user + self1.system) - (self0.user + self0.system),
        problems=problems,
    )


def bare_startup(runs: int = 20) -> list[float]:
    """A bare ``python main.py`` of the app, wall time."""
    out = []
    env = {**os.environ, "TASK_ID": "0"}
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, str(APP / "main.py")], env=env, check=True, capture_output=True
        )
        out.append(time.perf_counter() - t0)
    return out


def line(r: Run) -> str:
    ok = "every session ran once" if not r.problems else f"{len(r.problems)} PROBLEMS"
    return (
        f"{r.rate:6.1f} sessions/s ({r.sessions} in {r.wall_s:5.2f} s); per session: "
        f"server {r.per(r.server_cpu_s):5.1f} ms CPU, agent {r.per(r.agent_cpu_s):5.1f} ms, "
        f"supervisor+app {r.per(r.apps_cpu_s):5.1f} ms, clients {r.per(r.client_cpu_s):5.1f} ms"
        f"; {ok}"
    )


def spread(name: str, values: list[float], unit: str) -> str:
    return (
        f"{name:<28} min {min(values):7.1f}   median {statistics.median(values):7.1f}   "
        f"max {max(values):7.1f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40, help="N sessions per run")
    parser.add_argument("--clients", type=int, default=8, help="T client threads")
    parser.add_argument("--slots", type=int, default=8, help="appyard up --slots S")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="appyard-throughput-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # its home, apps' marks
    runs: list[Run] = []
    with appyard_up(tmp, args.slots) as local, local.api() as api:
        module_id = api.module.publish(APP).module_id
        # warm up: the release in the agent's cache, the server's code paths
        one_run(local, module_id, args.slots, min(args.clients, args.slots))
        print(
            f"appyard {ay.__version__}, {os.cpu_count()} cores, SQLite, through appyard up "
            f"--slots {args.slots}: {args.sessions} sessions from {args.clients} clients"
        )
        for i in range(args.runs):
            r = one_run(local, module_id, args.sessions, args.clients)
            runs.append(r)
            print(f"run {i + 1}: {line(r)}")
            for problem in r.problems[:10]:
                print(f"  {problem}")
    bare = bare_startup()
    print(f"the app's own start-up (bare python main.py): p50 {pct(bare, 0.5) * 1000:.1f} ms")
    if len(runs) > 1:
        print(f"spread over {len(runs)} runs:")
        print(spread("sessions/s", [r.rate for r in runs], "/s"))
        print(spread("server CPU per session", [r.per(r.server_cpu_s) for r in runs], "ms"))
        print(spread("agent CPU per session", [r.per(r.agent_cpu_s) for r in runs], "ms"))
        print(spread("supervisor+app CPU per sess.", [r.per(r.apps_cpu_s) for r in runs], "ms"))
        print(spread("client CPU per session", [r.per(r.client_cpu_s) for r in runs], "ms"))
    if any(r.problems for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
