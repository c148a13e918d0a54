"""Pipelines through ``appyard up``, from the public SDK (``api.pipeline``).

Prints three figures, each next to what it is compared with, measured in the same
invocation on the same ``up`` and alternated round by round (``--runs``):

1. **Hand-off**: a run of two steps, ``a`` then ``b`` (``needs: [a]``), of a trivial app that
   writes the wall time (``time.time()``, one clock for every process of the machine) of its
   first line and of its exit into its task folder. Hand-off = ``b``'s first line minus ``a``'s
   exit, p50/p95 over ``--handoffs`` runs, printed as measured and beyond the app's own
   start-up (a bare ``python main.py``, spawn to first line, measured here as
   ``bench/latency.py`` does). Split at the server's timestamps: ``a``'s exit → ``a`` ended
   (the agent's report), → ``b`` queued (the engine), → ``b``'s first line (the agent's poll,
   the supervisor, the sandbox, the interpreter). For scale, a plain ``api.app.start()`` → the
   app's first line, one session after another; and a plain session's queued → first line
   (measured as ``b``'s is), on the chosen agent and with ``agent_id=None`` (the team's queue,
   which a step with ``agent: any`` takes). ``--handoff-only`` measures this part alone.
2. **Fan-out**: one run of one ``for_each`` step over ``--items`` items (``max_parallel: 8``)
   of a one-line app on ``up --slots 8``, sessions/s from ``api.pipeline.run`` sent to
   ``api.pipeline.wait`` returned; against the same number of plain sessions from 8 client
   threads (``start`` then ``wait``, as ``bench/throughput.py``); the ratio.
3. **Cost of advancing per finished step**: server process CPU (``/proc``) from the run's
   start to ``wait`` returning, divided by the steps, for a sequential chain of 10 steps and
   of 1,000 (``--chain``), and for plain sessions one after another. A chain keeps one session
   at a time, so the queue, the agent and the slots stay the same whatever the length, and
   only the run grows: what grows per step with the run's size is the engine's (or the run's
   readers'). ``--wide`` also measures one ``for_each`` step of 10 and 1,000 items.

Run: ``python bench/pipeline.py [--runs 3] [--handoffs 30] [--items 200] [--quick]
[--handoff-only]``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import Local, appyard_up, cpu  # noqa: E402
from bench.stats import pct  # noqa: E402
from bench.throughput import Run, one_run  # noqa: E402

import appyard as ay  # noqa: E402
from appyard.schemas.pipeline_runs import RunInfo  # noqa: E402
from appyard.sdk.pipeline import Pipeline  # noqa: E402

APPS = Path(__file__).parent / "apps"
NOOP = APPS / "noop"  # writes the times of its first line and of its exit
ONE_LINE = APPS / "one-line"  # writes one line; marks its run in its task folder
STAMP = "stamp.json"
SLOTS = 8
CLIENTS = 8
MAX_PARALLEL = 8


def ms(seconds: float) -> float:
    return seconds * 1000


def epoch(t: datetime | None) -> float:
    assert t is not None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


class Tasks:
    """Where the agent of ``up`` keeps each task's folder (found once, then read directly)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root: Path | None = None

    def work(self, task_id: int) -> Path:
        if self.root is None:
            (found,) = self.home.glob(f"**/tasks/{task_id}/work")
            self.root = found.parent.parent
        return self.root / str(task_id) / "work"

    def stamp(self, task_id: int) -> dict[str, float]:
        times: dict[str, float] = json.loads((self.work(task_id) / STAMP).read_text())
        return times


def bare_startup(tmp: Path, n: int) -> list[float]:
    """The app's own start-up: spawn the interpreter on the app to its first line."""
    out = []
    for i in range(n):
        stamp = tmp / f"bare-{i}.json"
        env = {**os.environ, "MODAL_STATE": json.dumps({"stamp": str(stamp)})}
        t0 = time.time()
        subprocess.run([sys.executable, str(NOOP / "main.py")], env=env, check=True)
        out.append(json.loads(stamp.read_text())["began"] - t0)
    return out


def task_of(run: RunInfo, step: str) -> int:
    (info,) = (s for s in run.steps if s.id == step)
    task_id = info.attempts[-1].task_id
    assert task_id is not None, f"step {step} of run {run.id} has no task"
    return task_id


# -- 1. hand-off -----------------------------------------------------------------------------


@dataclass
class Handoffs:
    total: list[float] = field(default_factory=list)  # a's exit -> b's first line
    report: list[float] = field(default_factory=list)  # a's exit -> a ended on the server
    engine: list[float] = field(default_factory=list)  # a ended -> b queued
    start: list[float] = field(default_factory=list)  # b queued -> b's first line
    plain: list[float] = field(default_factory=list)  # api.app.start() -> first line
    plain_start: list[float] = field(default_factory=list)  # its queued -> its first line
    any_start: list[float] = field(default_factory=list)  # the same, agent_id=None


def handoffs(
    local: Local, api: ay.Api, tasks: Tasks, pipeline_id: int, module_id: int, n: int
) -> Handoffs:
    out = Handoffs()
    for _ in range(n):
        run = api.pipeline.wait(api.pipeline.run(pipeline_id, local.workspace_id).id, timeout=60)
        a, b = task_of(run, "a"), task_of(run, "b")
        sa, sb = tasks.stamp(a), tasks.stamp(b)
        ta, tb = api.task.get(a), api.task.get(b)
        out.total.append(sb["began"] - sa["ends"])
        out.report.append(epoch(ta.ended_at) - sa["ends"])
        out.engine.append(epoch(tb.created_at) - epoch(ta.ended_at))
        out.start.append(sb["began"] - epoch(tb.created_at))
        # plain sessions, for scale: start -> the app's first line, and queued -> first line
        # (as b's is measured), on the chosen agent and on any (the team's queue, as b's)
        for agent_id in (local.agent_id, None):
            t0 = time.time()
            session = api.app.start(
                agent_id=agent_id,
                module_id=module_id,
                workspace_id=local.workspace_id,
                params={"stamp": STAMP},
            )
            api.app.wait(session.task_id, target_status=ay.Status.FINISHED)
            began = tasks.stamp(session.task_id)["began"]
            queued = began - epoch(api.task.get(session.task_id).created_at)
            if agent_id is None:
                out.any_start.append(queued)
            else:
                out.plain.append(began - t0)
                out.plain_start.append(queued)
    return out


# -- 2. fan-out ------------------------------------------------------------------------------


@dataclass
class FanOut:
    items: int
    wall_s: float
    server_cpu_s: float
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.items / self.wall_s


def fan_out(local: Local, api: ay.Api, tasks: Tasks, n: int, name: str = "fan-out") -> FanOut:
    p = Pipeline(name).step(
        "each",
        app="bench/one-line",
        params={"marks": "."},
        for_each=list(range(n)),
        max_parallel=MAX_PARALLEL,
    )
    saved = api.pipeline.create(local.team_id, p)
    server0 = cpu(local.server_pid)
    t0 = time.perf_counter()
    run = api.pipeline.run(saved.id, local.workspace_id)
    done = api.pipeline.wait(run.id, timeout=600)
    wall = time.perf_counter() - t0
    server1 = cpu(local.server_pid)
    problems = []
    (step,) = done.steps
    ids = [a.task_id for a in step.attempts if a.task_id is not None]
    if len(step.attempts) != n or len(set(ids)) != n:
        problems.append(f"{len(step.attempts)} attempts, {len(set(ids))} tasks for {n} items")
    for task_id in ids:  # each item's app ran once (one byte per run in its task folder)
        mark = tasks.work(task_id) / str(task_id)
        if not mark.exists() or len(mark.read_bytes()) != 1:
            problems.append(f"task {task_id}'s app did not run exactly once")
    return FanOut(n, wall, server1.own - server0.own, problems)


# -- 3. cost per finished step ---------------------------------------------------------------


@dataclass
class Cost:
    steps: int
    wall_s: float
    server_cpu_s: float

    @property
    def per_step_ms(self) -> float:
        return ms(self.server_cpu_s / self.steps)


def chain(n: int) -> Pipeline:
    p = Pipeline(f"chain-{n}")
    for i in range(n):
        p.step(f"s{i}", app="bench/one-line", needs=None if i == 0 else f"s{i - 1}")
    return p


def wide(n: int) -> Pipeline:
    return Pipeline(f"wide-{n}").step(
        "each", app="bench/one-line", for_each=list(range(n)), max_parallel=MAX_PARALLEL
    )


def run_cost(local: Local, api: ay.Api, p: Pipeline, steps: int, runs: int = 1) -> Cost:
    """``runs`` runs of ``p`` one after another: server CPU and wall time over all of them."""
    saved = api.pipeline.create(local.team_id, p)  # saved (and checked) outside the measure
    server0 = cpu(local.server_pid)
    t0 = time.perf_counter()
    for _ in range(runs):
        run = api.pipeline.run(saved.id, local.workspace_id)
        done = api.pipeline.wait(run.id, timeout=3600)
        assert done.status is api.pipeline.RunState.FINISHED, done.status
    wall = time.perf_counter() - t0
    server1 = cpu(local.server_pid)
    return Cost(steps * runs, wall, server1.own - server0.own)


def plain_cost(local: Local, api: ay.Api, module_id: int, n: int) -> Cost:
    server0 = cpu(local.server_pid)
    t0 = time.perf_counter()
    for _ in range(n):
        session = api.app.start(
            agent_id=local.agent_id, module_id=module_id, workspace_id=local.workspace_id
        )
        api.app.wait(session.task_id, target_status=ay.Status.FINISHED)
    wall = time.perf_counter() - t0
    return Cost(n, wall, cpu(local.server_pid).own - server0.own)


# -- printing --------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 1) -> str:
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{lo:8.{digits}f} {mid:8.{digits}f} {hi:8.{digits}f}"


def table(title: str, rows: list[tuple[str, list[float], str]], digits: int = 1) -> None:
    print(f"\n{title}")
    print(f"  {'':<58} {'min':>8} {'median':>8} {'max':>8}")
    for name, values, unit in rows:
        if values:
            print(f"  {name:<58} {spread(values, digits)} {unit}")


@dataclass
class Round:
    handoff: Handoffs
    plain: Run | None = None
    fan: FanOut | None = None
    costs: dict[str, Cost] = field(default_factory=dict)


def alternated(r: int, jobs: list[tuple[str, Callable[[], object]]]) -> dict[str, object]:
    """Each job once, in the order given on even rounds and reversed on odd ones."""
    return {key: fn() for key, fn in (jobs if r % 2 == 0 else jobs[::-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds, alternated")
    parser.add_argument("--handoffs", type=int, default=30, help="two-step runs per round")
    parser.add_argument("--items", type=int, default=200, help="items of the fan-out")
    parser.add_argument("--chain", type=int, default=1000, help="steps of the long chain")
    parser.add_argument("--short", type=int, default=10, help="steps of the short chain")
    parser.add_argument("--short-runs", type=int, default=10, help="runs of the short chain")
    parser.add_argument("--wide", action="store_true", help="also a for_each of --short/--chain")
    parser.add_argument("--quick", action="store_true", help="1 round, 80 items, chain of 200")
    parser.add_argument("--handoff-only", action="store_true", help="only the hand-off (1.)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.items, args.chain = 1, 80, 200
    tmp = Path(tempfile.mkdtemp(prefix="appyard-pipeline-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # its home, apps' stamps and marks
    rounds: list[Round] = []
    with appyard_up(tmp, SLOTS) as local, local.api() as api:
        tasks = Tasks(local.home)
        noop = api.module.publish(NOOP).module_id
        one = api.module.publish(ONE_LINE).module_id
        two = (
            Pipeline("hand-off")
            .step("a", app="bench/noop", params={"stamp": STAMP})
            .step("b", app="bench/noop", needs="a", params={"stamp": STAMP})
        )
        two_id = api.pipeline.create(local.team_id, two).id
        # warm up: releases in the agent's cache, the server's code paths, connections
        handoffs(local, api, tasks, two_id, noop, 3)
        if not args.handoff_only:
            one_run(local, one, SLOTS, SLOTS)
            fan_out(local, api, tasks, SLOTS, "warm-up")
        print(
            f"appyard {ay.__version__}, {os.cpu_count()} cores, SQLite, through appyard up "
            f"--slots {SLOTS}; {args.runs} rounds, alternated",
            flush=True,
        )
        short, long_ = chain(args.short), chain(args.chain)
        for r in range(args.runs):
            got = Round(handoffs(local, api, tasks, two_id, noop, args.handoffs))
            if args.handoff_only:
                rounds.append(got)
                print(
                    f"round {r + 1}: hand-off p50 {ms(pct(got.handoff.total, 0.5)):.1f} ms",
                    flush=True,
                )
                continue
            both = alternated(
                r,
                [
                    ("plain", lambda: one_run(local, one, args.items, CLIENTS)),
                    ("fan", lambda: fan_out(local, api, tasks, args.items)),
                ],
            )
            got.plain, got.fan = both["plain"], both["fan"]  # type: ignore[assignment]
            jobs: list[tuple[str, Callable[[], object]]] = [
                ("short", lambda: run_cost(local, api, short, args.short, args.short_runs)),
                ("long", lambda: run_cost(local, api, long_, args.chain)),
                ("seq", lambda: plain_cost(local, api, one, args.short * args.short_runs)),
            ]
            if args.wide:
                jobs += [
                    ("wide-short", lambda: run_cost(local, api, wide(args.short), args.short)),
                    ("wide-long", lambda: run_cost(local, api, wide(args.chain), args.chain)),
                ]
            got.costs = alternated(r, jobs)  # type: ignore[assignment]
            rounds.append(got)
            assert got.plain is not None and got.fan is not None
            print(
                f"round {r + 1}: hand-off p50 {ms(pct(got.handoff.total, 0.5)):.1f} ms, "
                f"fan-out {got.fan.rate:.1f}/s vs plain {got.plain.rate:.1f}/s, "
                + ", ".join(f"{k} {c.per_step_ms:.1f} ms CPU/step" for k, c in got.costs.items()),
                flush=True,
            )
            for problem in [*got.plain.problems, *got.fan.problems][:10]:
                print(f"  PROBLEM: {problem}")
        bare = bare_startup(tmp, 40)
    report(rounds, bare, args)
    if any(r.plain.problems or r.fan.problems for r in rounds if r.plain and r.fan):
        sys.exit(1)


def report(rounds: list[Round], bare: list[float], args: argparse.Namespace) -> None:
    boot = pct(bare, 0.5)

    def hand(pick: Callable[[Handoffs], list[float]], q: float, minus: float = 0) -> list[float]:
        """Per round: the ``q`` percentile of the picked timings, in ms, less ``minus`` s."""
        return [ms(pct(pick(r.handoff), q) - minus) for r in rounds]

    print(
        f"\nthe app's own start-up (bare python main.py, spawn to first line): p50 {ms(boot):.1f} ms"
    )
    table(
        f"1. hand-off, {args.handoffs} two-step runs per round (per-round p50 / p95)",
        [
            ("a's exit -> b's first line, p50", hand(lambda h: h.total, 0.5), "ms"),
            ("a's exit -> b's first line, p95", hand(lambda h: h.total, 0.95), "ms"),
            (
                "  beyond b's start-up, p50 (goal <= 30 ms)",
                hand(lambda h: h.total, 0.5, boot),
                "ms",
            ),
            ("  beyond b's start-up, p95", hand(lambda h: h.total, 0.95, boot), "ms"),
            (
                "  a's exit -> a ended on the server (agent's report), p50",
                hand(lambda h: h.report, 0.5),
                "ms",
            ),
            ("  a ended -> b queued (the engine), p50", hand(lambda h: h.engine, 0.5), "ms"),
            (
                "  b queued -> b's first line (agent, sandbox, python), p50",
                hand(lambda h: h.start, 0.5),
                "ms",
            ),
            ("plain api.app.start() -> first line, p50", hand(lambda h: h.plain, 0.5), "ms"),
            ("  beyond start-up, p50", hand(lambda h: h.plain, 0.5, boot), "ms"),
            ("  its queued -> its first line, p50", hand(lambda h: h.plain_start, 0.5), "ms"),
            (
                "  the same with agent_id=None (the team's queue, as b), p50",
                hand(lambda h: h.any_start, 0.5),
                "ms",
            ),
        ],
    )
    if args.handoff_only:
        return
    fans = [r.fan for r in rounds if r.fan is not None]
    plains = [r.plain for r in rounds if r.plain is not None]
    table(
        f"2. fan-out: {args.items} items, max_parallel {MAX_PARALLEL}, up --slots {SLOTS}",
        [
            ("pipeline, one for_each step, sessions/s", [f.rate for f in fans], "/s"),
            (
                f"plain sessions from {CLIENTS} client threads, sessions/s",
                [p.rate for p in plains],
                "/s",
            ),
            (
                "ratio, round by round (goal >= 80 %)",
                [100 * f.rate / p.rate for f, p in zip(fans, plains, strict=True)],
                "%",
            ),
            ("server CPU per item, pipeline", [ms(f.server_cpu_s / f.items) for f in fans], "ms"),
            ("server CPU per session, plain", [p.per(p.server_cpu_s) for p in plains], "ms"),
        ],
    )

    def per_step(key: str) -> list[float]:
        return [r.costs[key].per_step_ms for r in rounds if key in r.costs]

    rows = [
        (
            f"chain of {args.short} steps ({args.short_runs} runs), CPU per step",
            per_step("short"),
            "ms",
        ),
        (f"chain of {args.chain} steps, CPU per step", per_step("long"), "ms"),
        ("  its wall time", [r.costs["long"].wall_s for r in rounds], "s"),
        ("plain sessions one after another, CPU per session", per_step("seq"), "ms"),
    ]
    if args.wide:
        rows += [
            (f"one for_each of {args.short} items, CPU per item", per_step("wide-short"), "ms"),
            (f"one for_each of {args.chain} items, CPU per item", per_step("wide-long"), "ms"),
        ]
    table("3. cost of advancing: server process CPU / finished steps", rows)


if __name__ == "__main__":
    main()
