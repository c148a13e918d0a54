"""A pipeline's graph and states: order, cycles, ancestors, the state tables, and which steps
start next.

Pure: no I/O, imports nothing of ours, works on plain step ids and
:class:`StepRule` values, so the server can advance a run from what it read in the same
transaction as a step's last task transition, and tests need no database.

How a step's ``when`` reads its needs (``docs/pipelines.md``):

- ``all_success`` (default): every need succeeded: it finished, or it failed with
  ``continue_on_failure``. It is skipped as soon as one need did not succeed.
- ``all_done``: every need ended, however.
- ``any_failed``: every need ended and at least one failed (error or stopped, with or without
  ``continue_on_failure``, or skipped because its own upstream failed).

A step that fails with ``continue_on_failure`` does not fail the run.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class Problem:
    """One problem of a pipeline document: where (``steps[1].params.trainSplitCoef``) and
    why, in a sentence. Checks return every problem they find, not only the first."""

    at: str
    reason: str

    def __str__(self) -> str:
        return f"{self.at}: {self.reason}" if self.at else self.reason

    def as_dict(self) -> dict[str, str]:
        return {"at": self.at, "reason": self.reason}


class When(StrEnum):
    """When a step with needs starts (see the module's docstring)."""

    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ANY_FAILED = "any_failed"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    TERMINATING = "terminating"  # a stop was asked for; steps' sessions are being stopped
    FINISHED = "finished"
    ERROR = "error"
    STOPPED = "stopped"


class StepState(StrEnum):
    PENDING = "pending"  # not started (yet, or again after a resume)
    RUNNING = "running"  # an attempt's task is queued or running
    RETRYING = "retrying"  # an attempt failed; the next one waits for its backoff
    FINISHED = "finished"
    ERROR = "error"
    STOPPED = "stopped"
    SKIPPED = "skipped"  # never ran: see SkipReason


class SkipReason(StrEnum):
    UPSTREAM_FAILED = "upstream_failed"
    RUN_STOPPED = "run_stopped"
    WHEN_NOT_MET = "when_not_met"


class RetryOn(StrEnum):
    """Which end of an attempt the retry policy counts."""

    ERROR = "error"  # the app exited non-zero, crashed, or its agent was lost
    TIMEOUT = "timeout"  # the attempt ran past the step's timeout_s and was stopped
    STOPPED = (
        "stopped"  # its session was stopped from outside the run (a stop of the run never retries)
    )


DEFAULT_RETRY_ON: tuple[RetryOn, ...] = (RetryOn.ERROR, RetryOn.TIMEOUT)

ENDED: frozenset[StepState] = frozenset(
    {StepState.FINISHED, StepState.ERROR, StepState.STOPPED, StepState.SKIPPED}
)
RUN_ENDED: frozenset[RunState] = frozenset({RunState.FINISHED, RunState.ERROR, RunState.STOPPED})

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    # pending -> stopped never: a stop skips what has not started (run_stopped)
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.SKIPPED}),
    StepState.RUNNING: frozenset(
        {StepState.RETRYING, StepState.FINISHED, StepState.ERROR, StepState.STOPPED}
    ),
    # retrying -> stopped: the run was stopped while the step waited for its next attempt
    StepState.RETRYING: frozenset({StepState.RUNNING, StepState.STOPPED}),
    StepState.FINISHED: frozenset(),
    # a resume runs again what did not finish
    StepState.ERROR: frozenset({StepState.PENDING}),
    StepState.STOPPED: frozenset({StepState.PENDING}),
    StepState.SKIPPED: frozenset({StepState.PENDING}),
}

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    # queued -> stopped: stopped before its first step started
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.STOPPED, RunState.ERROR}),
    RunState.RUNNING: frozenset(
        {RunState.TERMINATING, RunState.FINISHED, RunState.ERROR, RunState.STOPPED}
    ),
    # stopped only when every step's process is gone
    RunState.TERMINATING: frozenset({RunState.STOPPED}),
    RunState.FINISHED: frozenset(),
    # resume
    RunState.ERROR: frozenset({RunState.RUNNING}),
    RunState.STOPPED: frozenset({RunState.RUNNING}),
}


def can_step_move(old: StepState, new: StepState) -> bool:
    """True when a step may go from ``old`` to ``new``."""
    return new in STEP_TRANSITIONS[old]


def can_run_move(old: RunState, new: RunState) -> bool:
    """True when a run may go from ``old`` to ``new``."""
    return new in RUN_TRANSITIONS[old]


class CycleError(ValueError):
    """The steps' needs go round; ``cycle`` lists the ids with the first one again at the end."""

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__("the needs go round: " + " -> ".join(cycle))
        self.cycle = list(cycle)


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle of the graph (``[a, b, a]``: ``a`` needs ``b`` needs ``a``), or None. Needs
    naming no step are ignored (a check of its own reports them)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(needs, white)
    for start in needs:
        if colour[start] != white:
            continue
        colour[start] = grey
        path = [start]
        stack = [iter(needs[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if nxt not in colour:
                continue
            if colour[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(needs[nxt]))
    return None


def topological_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Every step after the steps it needs; of the steps free to go, the first in the document
    goes first (``needs`` is read in insertion order). :class:`CycleError` when there is no such order."""
    waiting = {s: len({n for n in deps if n in needs}) for s, deps in needs.items()}
    users: dict[str, list[str]] = {s: [] for s in needs}
    for s, deps in needs.items():
        for n in dict.fromkeys(deps):
            if n in needs:
                users[n].append(s)
    position = {s: i for i, s in enumerate(needs)}
    ready = [(position[s], s) for s, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, s = heapq.heappop(ready)
        order.append(s)
        for u in users[s]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (position[u], u))
    if len(order) < len(needs):
        cycle = find_cycle(needs)
        assert cycle is not None
        raise CycleError(cycle)
    return order


def ancestors(needs: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Each step's ancestors: the steps it needs, and theirs, and so on (a cycle included)."""
    try:
        order = topological_order(needs)
    except CycleError:
        order = []
    out: dict[str, frozenset[str]] = {}
    if order:  # each from its needs' sets, in one pass
        for s in order:
            found: set[str] = set()
            for n in needs[s]:
                if n in needs:
                    found |= out[n]
                    found.add(n)
            out[s] = frozenset(found)
        return out
    for start in needs:  # a cycle: walk from each step
        seen: set[str] = set()
        todo = [n for n in needs[start] if n in needs]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(m for m in needs[n] if m in needs)
        out[start] = frozenset(seen)
    return out


@dataclass(frozen=True)
class StepRule:
    """What the planner needs of a step of the document."""

    needs: tuple[str, ...] = ()
    when: When = When.ALL_SUCCESS
    continue_on_failure: bool = False


@dataclass(frozen=True)
class StepView:
    """A step's state in a run, and why it was skipped."""

    state: StepState = StepState.PENDING
    skip_reason: SkipReason | None = None


@dataclass(frozen=True)
class Plan:
    """What to do now: the steps to start (in topological order), and the steps to skip with
    their reasons."""

    start: tuple[str, ...] = ()
    skip: dict[str, SkipReason] = field(default_factory=dict)


def _failed(view: StepView) -> bool:
    """The step failed, or did not run because a step before it failed."""
    return view.state in (StepState.ERROR, StepState.STOPPED) or (
        view.state is StepState.SKIPPED and view.skip_reason is SkipReason.UPSTREAM_FAILED
    )


def _succeeded(view: StepView, rule: StepRule) -> bool:
    if view.state is StepState.FINISHED:
        return True
    return rule.continue_on_failure and view.state in (StepState.ERROR, StepState.STOPPED)


def plan(
    rules: Mapping[str, StepRule], views: Mapping[str, StepView], *, stopping: bool = False
) -> Plan:
    """Which pending steps start now and which are skipped, from every step's state. A skip
    is carried down the graph in the same plan (a skipped step's own dependants are decided
    with it). ``stopping``: the run is being stopped: nothing starts, every pending step is
    skipped. A step in ``retrying`` is not started here: its retry policy starts it."""
    if stopping:
        pending = [s for s in rules if views.get(s, StepView()).state is StepState.PENDING]
        return Plan(skip=dict.fromkeys(pending, SkipReason.RUN_STOPPED))
    now = {s: views.get(s, StepView()) for s in rules}
    start: list[str] = []
    skip: dict[str, SkipReason] = {}
    for s in topological_order({s: r.needs for s, r in rules.items()}):
        if now[s].state is not StepState.PENDING:
            continue
        rule = rules[s]
        needs = [n for n in dict.fromkeys(rule.needs) if n in rules]
        ended = [now[n] for n in needs if now[n].state in ENDED]
        all_ended = len(ended) == len(needs)
        reason: SkipReason | None = None
        go = False
        if rule.when is When.ALL_SUCCESS:
            if any(not _succeeded(now[n], rules[n]) for n in needs if now[n].state in ENDED):
                upstream_failed = any(
                    _failed(now[n]) and not _succeeded(now[n], rules[n]) for n in needs
                )
                reason = SkipReason.UPSTREAM_FAILED if upstream_failed else SkipReason.WHEN_NOT_MET
            go = all_ended and reason is None
        elif rule.when is When.ALL_DONE:
            go = all_ended
        elif all_ended:  # any_failed
            go = any(_failed(v) for v in ended)
            reason = None if go else SkipReason.WHEN_NOT_MET
        if go:
            start.append(s)
        elif reason is not None:
            skip[s] = reason
            now[s] = StepView(StepState.SKIPPED, reason)
    return Plan(start=tuple(start), skip=skip)


def ready_steps(rules: Mapping[str, StepRule], views: Mapping[str, StepView]) -> list[str]:
    """The pending steps that can start now (see :func:`plan`)."""
    return list(plan(rules, views).start)


def run_outcome(
    rules: Mapping[str, StepRule], views: Mapping[str, StepView], *, stopping: bool = False
) -> RunState | None:
    """How the run ends once every step has ended (None while one has not): ``stopped`` when
    a stop was asked for, else ``error`` when a step failed without ``continue_on_failure``,
    else ``finished``."""
    states = {s: views.get(s, StepView()) for s in rules}
    if any(v.state not in ENDED for v in states.values()):
        return None
    if stopping:
        return RunState.STOPPED
    for s, v in states.items():
        if v.state in (StepState.ERROR, StepState.STOPPED) and not rules[s].continue_on_failure:
            return RunState.ERROR
    return RunState.FINISHED


def to_resume(views: Mapping[str, StepView]) -> list[str]:
    """The steps a resume sets back to pending: all but the finished ones, which keep their
    outputs and do not run again."""
    return [
        s
        for s, v in views.items()
        if v.state in (StepState.ERROR, StepState.STOPPED, StepState.SKIPPED)
    ]


def fan_out_state(items: Iterable[StepState]) -> StepState:
    """A ``for_each`` step's state from its items' (each item an attempt chain of its own):
    running while one is not ended, then error if one failed, stopped if one was stopped,
    else finished (an empty list finishes at once)."""
    seen = list(items)
    if any(s in (StepState.PENDING, StepState.RUNNING, StepState.RETRYING) for s in seen):
        return StepState.RUNNING
    if StepState.ERROR in seen:
        return StepState.ERROR
    if StepState.STOPPED in seen:
        return StepState.STOPPED
    return StepState.FINISHED


def items_to_start(items: Sequence[StepState], max_parallel: int | None) -> list[int]:
    """The indexes of the pending items of a ``for_each`` step to start now, lowest first,
    keeping at most ``max_parallel`` running (or retrying) at once (None: no limit)."""
    busy = sum(s in (StepState.RUNNING, StepState.RETRYING) for s in items)
    pending = [i for i, s in enumerate(items) if s is StepState.PENDING]
    if max_parallel is None:
        return pending
    return pending[: max(0, max_parallel - busy)]


def retry_delay(
    *, limit: int, backoff_s: float, retry_on: Iterable[RetryOn], attempts: int, end: RetryOn
) -> float | None:
    """Seconds to wait before the next attempt, or None when the step (or item) ends now:
    the attempt's ``end`` is not one the policy counts, or ``attempts`` (made so far, the one
    that just ended included) already used the ``limit`` of retries."""
    if end not in set(retry_on) or attempts > limit:
        return None
    return float(backoff_s)
