"""The pipeline engine: advances runs, the server's own work (no client needs to stay).

When a task of a run ends, its last transition (``task_rows.moved``) writes a row to
``pipeline_outbox`` in the same transaction, and wakes the engine with the run's id
(``keys.pipelines_due(run_id)``). The engine (``Engine.look``, run by every replica) advances
the runs its wakes name at once; at start-up, when a timer is due, after a failure, and every
``SWEEP_S`` (a safety net) it also looks for every run with outbox rows or a due timer. It
locks the run's row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: one replica advances a
given run; SQLite has one writer anyway), and in one transaction: reads and deletes those
rows, ends the attempts, decides retries, and starts what comes next through the same path as
``POST /tasks`` (``task_start.start``), each attempt with the idempotency key
``pipeline-run/RUN/STEP/ITEM/N``. A crash before the commit loses nothing (the outbox rows and
the timers are still there when the server starts again); after it, the tasks started and the
attempts that point at them are both there: no attempt starts twice.

Cost: a task's end reads its attempt (by task id), its step, the steps that need that step
and their needs (by run and step id), and counters on the run row (``open_steps``,
``failed_steps``): not the other steps. A run's next timer is the least ``timer_at`` of its
attempts, and the engine's sleep the least ``due_at`` of the runs: index seeks. A parsed
document is cached by pipeline id (a saved pipeline never changes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, distinct, func, select
from sqlalchemy.orm import Session

from appyard.domain.expressions import ExpressionError, Scope, StepResult, find_refs, gather
from appyard.domain.pipeline import (
    RetryOn,
    RunState,
    SkipReason,
    StepRule,
    StepState,
    StepView,
    When,
    plan,
    retry_delay,
)
from appyard.domain.status import TERMINAL, Status
from appyard.errors import ApiError
from appyard.schemas.pipeline import PipelineDoc
from appyard.schemas.pipeline_check import step_items, step_start_state
from appyard.schemas.tasks import TaskStart
from appyard.server import keys
from appyard.server.db.engine import Database
from appyard.server.db.models import (
    Module,
    Pipeline,
    PipelineAttempt,
    PipelineOutbox,
    PipelineRun,
    PipelineStep,
    Task,
    User,
    utcnow,
)
from appyard.server.notifier import emit
from appyard.server.security import Principal
from appyard.server.services import task_start
from appyard.server.services.ecosystem import runs_in_team
from appyard.server.services.task_rows import OUTBOX_WRITES, read_row
from appyard.server.services.tasks import stop_session

log = logging.getLogger("appyard.server.pipelines")

#: runs taken per look of the engine; more waiting: it looks again at once
DRAIN_BATCH = 100
#: the engine looks at least this often even without a wake (a safety net, not the path)
SWEEP_S = 30.0
#: after a failed look, the engine looks again this soon
RETRY_S = 1.0
#: a timer found past (its run held by another replica): the engine looks again this soon
PASSED_S = 0.1
#: rounds of one advance (each round: ended tasks, timers, the steps they free)
MAX_ROUNDS = 10_000

_ACTIVE_ATTEMPT = ("pending", "running")
_OUTBOX = cast(Table, PipelineOutbox.__table__)
#: a run's outbox rows, read and deleted in one statement (under the run's lock)
_TAKE_OUTBOX = (
    _OUTBOX.delete()
    .where(_OUTBOX.c.run_id == bindparam("run_id"))
    .returning(_OUTBOX.c.id, _OUTBOX.c.task_id)
)


@dataclass(frozen=True)
class Compiled:
    """A saved pipeline as the engine reads it: the document, each step's rule, the steps
    that need each step, and the steps each step's expressions read."""

    doc: PipelineDoc
    rules: dict[str, StepRule]
    users: dict[str, tuple[str, ...]]
    reads: dict[str, frozenset[str]]

    @classmethod
    def of(cls, document: dict[str, Any]) -> Compiled:
        doc = PipelineDoc.parse(document)
        users: dict[str, list[str]] = {s.id: [] for s in doc.steps}
        reads: dict[str, frozenset[str]] = {}
        for s in doc.steps:
            for n in dict.fromkeys(s.needs):
                users[n].append(s.id)
            found = find_refs([s.params, s.target, s.for_each])
            reads[s.id] = frozenset(f.ref.step for f in found if f.ref and f.ref.step)
        return cls(doc, doc.rules(), {k: tuple(v) for k, v in users.items()}, reads)


_CACHE: OrderedDict[tuple[int, str], Compiled] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


def compiled(s: Session, pipeline_id: int) -> Compiled:
    """The parsed pipeline of this id, cached by id and content (a saved pipeline never
    changes; an id of a save rolled back may come again with other content)."""
    sha = s.scalar(select(Pipeline.sha256).where(Pipeline.id == pipeline_id))
    if sha is None:
        raise KeyError(pipeline_id)
    key = (pipeline_id, sha)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
    document: dict[str, Any] = (
        s.scalar(select(Pipeline.document).where(Pipeline.id == pipeline_id)) or {}
    )
    made = Compiled.of(document)
    with _CACHE_LOCK:
        _CACHE[key] = made
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return made


def lock_run(s: Session, run_id: int, *, skip_locked: bool = False) -> PipelineRun | None:
    """The run's row, locked for this transaction (PostgreSQL; SQLite's writer lock is held
    already). ``skip_locked``: None when another transaction holds it (another replica
    advances it now)."""
    stmt = select(PipelineRun).where(PipelineRun.id == run_id)
    if s.info.get("postgres"):
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    found: PipelineRun | None = s.scalar(stmt.execution_options(populate_existing=True))
    return found


def _end_of(status: Status, timed_out: bool) -> str:
    if status is Status.FINISHED:
        return "finished"
    if status is Status.ERROR:
        return "error"
    return "timeout" if timed_out else "stopped"


_RETRY_ON = {"error": RetryOn.ERROR, "timeout": RetryOn.TIMEOUT, "stopped": RetryOn.STOPPED}


@dataclass
class _Advance:
    """One advance of one run, in the transaction that holds its lock."""

    s: Session
    run: PipelineRun
    comp: Compiled
    files_dir: Path
    now: datetime = field(default_factory=utcnow)
    frontier: set[str] = field(default_factory=set)
    rows: dict[str, PipelineStep] = field(default_factory=dict)
    by_id: dict[int, PipelineStep] = field(default_factory=dict)
    results: dict[str, StepResult] = field(default_factory=dict)
    principal: Principal | str | None = None
    #: the session's count of outbox rows written when the outbox was read last (None: not
    #: read yet)
    outbox_mark: int | None = None
    #: the run may have timers: it had one when this advance began, or one was set since
    timers: bool = False

    def __post_init__(self) -> None:
        self.timers = self.run.due_at is not None

    def timer_set(self) -> None:
        """An attempt's timer was set: the run is due now (``finish`` sets its real time)."""
        self.timers = True
        self.run.due_at = self.now

    # -- step rows -------------------------------------------------------------------------

    def load(self, ids: set[str]) -> None:
        missing = [i for i in ids if i not in self.rows]
        if not missing:
            return
        for row in self.s.scalars(
            select(PipelineStep).where(
                PipelineStep.run_id == self.run.id, PipelineStep.step.in_(missing)
            )
        ):
            self.rows[row.step] = row
            self.by_id[row.id] = row

    def row(self, step_id: str) -> PipelineStep:
        self.load({step_id})
        return self.rows[step_id]

    def row_by_id(self, row_id: int) -> PipelineStep:
        if row_id not in self.by_id:
            row = self.s.get(PipelineStep, row_id)
            assert row is not None
            self.rows[row.step] = row
            self.by_id[row.id] = row
        return self.by_id[row_id]

    # -- the loop --------------------------------------------------------------------------

    def run_rounds(self, *, changed: bool = True) -> None:
        """Rounds until nothing moves; then the run's status, timer and wake (``finish``),
        unless nothing moved and the caller ``changed`` nothing (a wake already advanced)."""
        for _ in range(MAX_ROUNDS):
            moved = self.drain_outbox()
            moved = self.fire_timers() or moved
            if self.run.status in (RunState.QUEUED.value, RunState.RUNNING.value):
                moved = self.plan_frontier() or moved
            else:
                self.frontier.clear()
            if not moved:
                break
            changed = True
        if changed:
            self.finish()

    def drain_outbox(self) -> bool:
        written = self.s.info.get(OUTBOX_WRITES, 0)
        if written == self.outbox_mark:
            # read already, and this transaction wrote no row since: a row another one commits
            # now comes with its own wake (``keys.pipelines_due(run)``), after which the engine
            # advances this run again
            return False
        self.outbox_mark = written
        found = self.s.connection().execute(_TAKE_OUTBOX, {"run_id": self.run.id}).all()
        for r in sorted(found):  # in the order the tasks ended
            self.task_ended(r.task_id)
        return bool(found)

    def fire_timers(self) -> bool:
        due = self.run.due_at
        if due is None or due > self.now:
            return False
        self.run.due_at = None  # (finish sets the next one: this counts as a move)
        fired = list(
            self.s.scalars(
                select(PipelineAttempt)
                .where(PipelineAttempt.run_id == self.run.id, PipelineAttempt.timer_at <= self.now)
                .order_by(PipelineAttempt.id)
            )
        )
        for att in fired:
            att.timer_at = None
            if att.status == "pending":
                self.start_attempt(self.row_by_id(att.step_row_id), att)
            elif att.status == "running" and att.task_id is not None:
                att.timed_out = True
                stop_session(self.s, task_id=att.task_id)
        return True

    def finish(self) -> None:
        run = self.run
        if run.status != RunState.STOPPED.value and run.open_steps <= 0 and run.ended_at is None:
            if run.status == RunState.TERMINATING.value:
                run.status = RunState.STOPPED.value
            elif run.failed_steps > 0:
                run.status = RunState.ERROR.value
            else:
                run.status = RunState.FINISHED.value
                run.error = None
            run.ended_at = self.now
        next_timer = None
        if self.timers:  # (else none before and none set since: none now, without asking)
            self.s.flush()
            next_timer = self.s.scalar(
                select(func.min(PipelineAttempt.timer_at)).where(PipelineAttempt.run_id == run.id)
            )
        if next_timer != run.due_at:
            run.due_at = next_timer
            if next_timer is not None:
                emit(self.s, keys.pipelines_due())  # every engine sleeps until its earliest
        run.updated_at = self.now
        emit(self.s, keys.pipeline_run(run.id))

    # -- ends ------------------------------------------------------------------------------

    def task_ended(self, task_id: int) -> None:
        att = self.s.scalar(select(PipelineAttempt).where(PipelineAttempt.task_id == task_id))
        if att is None or att.status != "running":
            return  # handled already
        t = read_row(self.s, task_id)
        if t is None or Status(t.status) not in TERMINAL:
            return
        end = _end_of(Status(t.status), att.timed_out)
        att.status = end
        att.ended_at = self.now
        att.timer_at = None
        if end == "error":
            att.error = t.error or "the session ended in error"
        elif end == "timeout":
            spec = self.comp.doc.step(self.row_by_id(att.step_row_id).step)
            att.error = f"ran past timeout_s ({spec.timeout_s:g} s) and was stopped"
        elif end == "stopped":
            att.error = "the session was stopped"
        self.unit_ended(self.row_by_id(att.step_row_id), att, end)

    def unit_ended(
        self, row: PipelineStep, att: PipelineAttempt, end: str, *, retry: bool = True
    ) -> None:
        """An attempt of the step (of one of its items) ended ``end``: another attempt after
        the backoff if the policy says so, else the unit (the step, the item) ended."""
        spec = self.comp.doc.step(row.step)
        if (
            retry
            and end != "finished"
            and spec.retries is not None
            and self.run.status == RunState.RUNNING.value
        ):
            policy = spec.retries
            delay = retry_delay(
                limit=policy.limit,
                backoff_s=policy.backoff_s,
                retry_on=policy.retry_on,
                attempts=att.n,
                end=_RETRY_ON[end],
            )
            if delay is not None:
                nxt = PipelineAttempt(
                    run_id=self.run.id,
                    step_row_id=row.id,
                    item=att.item,
                    n=att.n + 1,
                    status="pending",
                    timer_at=self.now + timedelta(seconds=delay),
                    timed_out=False,
                )
                self.s.add(nxt)
                if spec.for_each is None:
                    row.state = StepState.RETRYING.value
                    row.reason = att.error
                if delay <= 0:
                    self.s.flush()
                    nxt.timer_at = None
                    self.start_attempt(row, nxt)
                else:
                    self.timer_set()
                return
        row.units_open -= 1
        if end in ("error", "timeout"):
            row.units_error += 1
        elif end in ("stopped", "cancelled"):
            row.units_stopped += 1
        if end != "finished" and att.error and (spec.for_each is None or row.reason is None):
            row.reason = att.error if att.item is None else f"item {att.item}: {att.error}"
        if row.units_open > 0:
            if spec.for_each is not None and self.run.status == RunState.RUNNING.value:
                self.fill_items(row)
            return
        if row.units_error:
            state = StepState.ERROR
        elif row.units_stopped:
            state = StepState.STOPPED
        else:
            state = StepState.FINISHED
            row.reason = None
        self.step_ended(row, state)

    def step_ended(self, row: PipelineStep, state: StepState, reason: str | None = None) -> None:
        row.state = state.value
        if reason is not None:
            row.reason = reason
        self.run.open_steps -= 1
        spec = self.comp.doc.step(row.step)
        if state in (StepState.ERROR, StepState.STOPPED) and not spec.continue_on_failure:
            self.run.failed_steps += 1
            if self.run.error is None:
                why = f": {row.reason}" if row.reason else ""
                self.run.error = f"step {row.step!r} ended {state.value}{why}"
        self.frontier.update(self.comp.users[row.step])

    # -- starts ----------------------------------------------------------------------------

    def plan_frontier(self) -> bool:
        if not self.frontier:
            return False
        candidates, self.frontier = self.frontier, set()
        rules = self.comp.rules
        self.load(candidates | {n for c in candidates for n in rules[c].needs})
        pending = {c for c in candidates if self.rows[c].state == StepState.PENDING.value}
        if not pending:
            return False
        # the pending candidates with their own rules; their needs as they stand (a need
        # that is not a candidate is not decided here: it neither starts nor is skipped)
        sub: dict[str, StepRule] = {}
        for c in sorted(pending, key=lambda x: self.rows[x].position):
            sub[c] = rules[c]
        for c in list(sub):
            for n in rules[c].needs:
                if n not in sub:
                    sub[n] = StepRule((), When.ALL_DONE, rules[n].continue_on_failure)
        views = {x: self._view(self.rows[x]) for x in sub}
        decided = plan(sub, views)
        for sid, why in decided.skip.items():
            if sid in pending:
                self.step_ended(self.rows[sid], StepState.SKIPPED, why.value)
        for sid in decided.start:
            if sid in pending:
                self.start_step(self.rows[sid])
        return True

    @staticmethod
    def _view(row: PipelineStep) -> StepView:
        state = StepState(row.state)
        reason = None
        if state is StepState.SKIPPED and row.reason in {r.value for r in SkipReason}:
            reason = SkipReason(row.reason)
        return StepView(state, reason)

    def scope(self, step_id: str) -> Scope:
        results: dict[str, StepResult] = {}
        for other in self.comp.reads[step_id]:
            row = self.row(other)
            if row.state != StepState.FINISHED.value:
                continue
            if other not in self.results:
                self.results[other] = self._result(row)
            results[other] = self.results[other]
        inputs = {**self.comp.doc.defaults(), **(self.run.inputs or {})}
        return Scope(inputs=inputs, steps=results)

    def _result(self, row: PipelineStep) -> StepResult:
        found = self.s.execute(
            select(PipelineAttempt.item, Task.id, Task.outputs)
            .join(Task, Task.id == PipelineAttempt.task_id)
            .where(PipelineAttempt.step_row_id == row.id, PipelineAttempt.status == "finished")
            .order_by(PipelineAttempt.item, PipelineAttempt.n)
        ).all()
        if row.items is None:
            last = found[-1] if found else None
            return StepResult(
                outputs=(last.outputs or {}) if last else {}, task_id=last.id if last else None
            )
        return gather([StepResult(outputs=r.outputs or {}, task_id=r.id) for r in found])

    def start_step(self, row: PipelineStep) -> None:
        spec = self.comp.doc.step(row.step)
        if self.run.status == RunState.QUEUED.value:
            self.run.status = RunState.RUNNING.value
            self.run.started_at = self.run.started_at or self.now
        row.state = StepState.RUNNING.value
        row.reason = None
        row.units_error = row.units_stopped = 0
        if spec.for_each is None:
            last_n = self.s.scalar(
                select(func.max(PipelineAttempt.n)).where(PipelineAttempt.step_row_id == row.id)
            )
            att = PipelineAttempt(
                run_id=self.run.id,
                step_row_id=row.id,
                item=None,
                n=(last_n or 0) + 1,
                status="pending",
                timed_out=False,
            )
            self.s.add(att)
            row.units_open = 1
            self.s.flush()
            self.start_attempt(row, att)
            return
        again: list[tuple[int, int]] = []  # (item, n) to run
        if row.items is None:
            try:
                items = step_items(self.comp.doc, row.step, self.scope(row.step))
            except ExpressionError as e:
                row.units_open = 0
                self.step_ended(row, StepState.ERROR, str(e))
                return
            row.items = list(items or [])
            again = [(i, 1) for i in range(len(row.items))]
        else:  # resumed: the items that did not finish run again
            newest: dict[int, tuple[int, str]] = {}
            for item, n, status in self.s.execute(
                select(PipelineAttempt.item, PipelineAttempt.n, PipelineAttempt.status).where(
                    PipelineAttempt.step_row_id == row.id
                )
            ):
                if item is not None and (item not in newest or n > newest[item][0]):
                    newest[item] = (n, status)
            for i in range(len(row.items)):
                n, status = newest.get(i, (0, ""))
                if status != "finished":
                    again.append((i, n + 1))
        row.units_open = len(again)
        if not again:
            self.step_ended(row, StepState.FINISHED)
            return
        self.s.add_all(
            PipelineAttempt(
                run_id=self.run.id,
                step_row_id=row.id,
                item=i,
                n=n,
                status="queued",
                timed_out=False,
            )
            for i, n in again
        )
        self.s.flush()
        self.fill_items(row)

    def fill_items(self, row: PipelineStep) -> None:
        """Start the next queued items of a for_each step, keeping at most ``max_parallel``
        running (or waiting to retry)."""
        spec = self.comp.doc.step(row.step)
        stmt = (
            select(PipelineAttempt)
            .where(PipelineAttempt.step_row_id == row.id, PipelineAttempt.status == "queued")
            .order_by(PipelineAttempt.item)
        )
        if spec.max_parallel is not None:
            busy = (
                self.s.scalar(
                    select(func.count())
                    .select_from(PipelineAttempt)
                    .where(
                        PipelineAttempt.step_row_id == row.id,
                        PipelineAttempt.status.in_(_ACTIVE_ATTEMPT),
                    )
                )
                or 0
            )
            room = spec.max_parallel - busy
            if room <= 0:
                return
            stmt = stmt.limit(room)
        for att in list(self.s.scalars(stmt)):
            att.status = "pending"
            self.start_attempt(row, att)

    def _principal(self) -> Principal | str:
        """Who the run's sessions start as: the user who started the run; or why not."""
        if self.principal is None:
            user = self.s.get(User, self.run.created_by)
            if user is None:
                self.principal = "the user who started the run no longer exists"
            elif user.disabled:
                self.principal = (
                    f"user {user.login}, who started the run, is disabled; an instance admin "
                    "can enable it again"
                )
            else:
                self.principal = Principal("user", 0, user_id=user.id, is_admin=user.is_admin)
        return self.principal

    def _module_id(self, slug: str) -> int | str:
        found = self.s.execute(
            select(Module.id, Module.team_id, Module.public).where(Module.slug == slug)
        ).first()
        if found is None or not runs_in_team(found.team_id, found.public, self.run.team_id):
            return f"there is no app {slug} in the catalog of team {self.run.team_id} (any more)"
        return int(found.id)

    def _refused(self, row: PipelineStep, att: PipelineAttempt, why: str) -> None:
        """The attempt could not start (an expression without its value, a start refused):
        the unit ends in error now, without a retry (it would be refused again)."""
        att.status = "error"
        att.error = why
        att.started_at = att.ended_at = self.now
        self.unit_ended(row, att, "error", retry=False)

    def start_attempt(self, row: PipelineStep, att: PipelineAttempt) -> None:
        """Start the task of a pending attempt, through the path of ``POST /tasks``."""
        spec = self.comp.doc.step(row.step)
        if self.run.status != RunState.RUNNING.value:
            att.status = "cancelled"
            att.ended_at = self.now
            self.unit_ended(row, att, "cancelled", retry=False)
            return
        row.state = StepState.RUNNING.value
        scope = self.scope(row.step)
        if att.item is not None:
            assert row.items is not None
            scope = scope.with_item(row.items[att.item])
        try:
            state = step_start_state(self.comp.doc, row.step, scope)
        except ExpressionError as e:
            self._refused(row, att, str(e))
            return
        who = self._principal()
        module_id = self._module_id(spec.app)
        if isinstance(who, str) or isinstance(module_id, str):
            self._refused(row, att, who if isinstance(who, str) else str(module_id))
            return
        label = row.step if att.item is None else f"{row.step}[{att.item}]"
        item = "-" if att.item is None else str(att.item)
        try:
            body = TaskStart(
                workspace_id=self.run.workspace_id,
                module_id=module_id,
                agent_id=None if spec.agent == "any" else int(spec.agent),
                version=spec.version,
                params={"state": state},
                task_name=f"{self.comp.doc.name}/{label}"[:200],
                description=f"pipeline run {self.run.id}, step {label}, attempt {att.n}",
                idempotency_key=f"pipeline-run/{self.run.id}/{row.step}/{item}/{att.n}",
            )
            with self.s.begin_nested():
                started = task_start.start(
                    self.s,
                    who,
                    body=body,
                    files_dir=self.files_dir,
                    pipeline=(self.run.id, row.step),
                )
        except ApiError as e:
            self._refused(row, att, f"the session could not start: {e.message}")
            return
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            where = ".".join(str(x) for x in first["loc"])
            self._refused(row, att, f"the session could not start: {where}: {first['msg']}")
            return
        att.task_id = started.task_id
        att.status = "running"
        att.started_at = self.now
        if spec.timeout_s is not None:
            att.timer_at = self.now + timedelta(seconds=spec.timeout_s)
            self.timer_set()
        if Status(started.status) in TERMINAL:  # (a start retried after its end)
            self.task_ended(started.task_id)


def advance(
    s: Session, run: PipelineRun, *, files_dir: Path, start: set[str] | None = None
) -> None:
    """Advance a locked run as far as it goes now: its ended tasks, its due timers, the steps
    they free. ``start``: steps to look at too (a new or resumed run's)."""
    a = _Advance(s, run, compiled(s, run.pipeline_id), files_dir)
    if start:
        a.frontier |= start
    a.run_rounds(changed=start is not None)  # (a new or resumed run changed already)


def stop_run(s: Session, run: PipelineRun, *, files_dir: Path) -> None:
    """Stop a locked run: pending steps are skipped (run_stopped), waiting attempts cancelled,
    running sessions get the stop protocol; the run ends ``stopped`` when every one ended."""
    a = _Advance(s, run, compiled(s, run.pipeline_id), files_dir)
    run.status = RunState.TERMINATING.value
    for row in s.scalars(
        select(PipelineStep).where(
            PipelineStep.run_id == run.id, PipelineStep.state == StepState.PENDING.value
        )
    ):
        a.rows[row.step] = row
        a.by_id[row.id] = row
        a.step_ended(row, StepState.SKIPPED, SkipReason.RUN_STOPPED.value)
    waiting = s.scalars(
        select(PipelineAttempt).where(
            PipelineAttempt.run_id == run.id, PipelineAttempt.status.in_(("pending", "queued"))
        )
    )
    for att in list(waiting):
        att.status = "cancelled"
        att.timer_at = None
        att.ended_at = a.now
        a.unit_ended(a.row_by_id(att.step_row_id), att, "cancelled", retry=False)
    running = s.scalars(
        select(PipelineAttempt.task_id).where(
            PipelineAttempt.run_id == run.id, PipelineAttempt.status == "running"
        )
    )
    for task_id in list(running):
        if task_id is not None:
            stop_session(s, task_id=task_id)
    a.frontier.clear()
    a.run_rounds()


def resume_run(s: Session, run: PipelineRun, *, files_dir: Path) -> None:
    """Run again what did not finish of a locked run that ended error or stopped."""
    again = list(
        s.scalars(
            select(PipelineStep).where(
                PipelineStep.run_id == run.id,
                PipelineStep.state.in_(
                    [StepState.ERROR.value, StepState.STOPPED.value, StepState.SKIPPED.value]
                ),
            )
        )
    )
    for row in again:
        row.state = StepState.PENDING.value
        row.reason = None
    run.status = RunState.RUNNING.value
    run.open_steps = len(again)
    run.failed_steps = 0
    run.error = None
    run.ended_at = None
    advance(s, run, files_dir=files_dir, start={row.step for row in again})


# -- the engine's look ------------------------------------------------------------------------


def _runs_to_advance(db: Database) -> list[int]:
    now = utcnow()
    with db.reader() as s:
        ended = s.scalars(select(distinct(PipelineOutbox.run_id)).limit(DRAIN_BATCH)).all()
        due = s.scalars(
            select(PipelineRun.id)
            .where(PipelineRun.due_at <= now)
            .order_by(PipelineRun.due_at)
            .limit(DRAIN_BATCH)
        ).all()
    return list(dict.fromkeys([*ended, *due]))


def advance_one(db: Database, run_id: int, *, files_dir: Path) -> datetime | None:
    """Advance one run in its own transaction, unless another replica holds it now. Answers
    the run's next timer (None: none, or not advanced here)."""
    with db.session() as s:
        run = lock_run(s, run_id, skip_locked=True)
        if run is None:
            return None
        advance(s, run, files_dir=files_dir)
        return run.due_at


@dataclass
class Engine:
    """The engine of one server process: what it knows between looks."""

    db: Database
    files_dir: Path
    #: the earliest timer known (of the runs this engine advanced, or found by a scan)
    next_due: datetime | None = None
    #: when to look at every run again (``time.monotonic``): 0, at start-up, now
    scan_at: float = 0.0

    def look(self, run_ids: Iterable[int] = (), *, scan: bool = False) -> float:
        """Advance ``run_ids`` (named by their wakes) at once; then, at start-up, when asked
        (``scan``: a timer moved), when the earliest timer is due, after a failure, and every
        ``SWEEP_S``, every run with ended tasks or a due timer. Answers how long to sleep
        until the next look if no wake comes first."""
        failed = False
        for run_id in dict.fromkeys(run_ids):
            failed = not self._advance(run_id) or failed
            # (no query for the next timer here: the hand-off is committed, the next
            # session queued; this run's own timer is the one that can have moved earlier)
        now = utcnow()
        if (
            scan
            or failed
            or time.monotonic() >= self.scan_at
            or (self.next_due is not None and self.next_due <= now)
        ):
            failed = not self._scan() or failed
        wait = max(0.0, self.scan_at - time.monotonic())
        if self.next_due is not None:
            # past already: another replica holds that run now; look again shortly
            wait = min(wait, max(PASSED_S, (self.next_due - utcnow()).total_seconds()))
        if failed:
            self.scan_at = 0.0  # the next look, at RETRY_S or at a wake, looks at every run
            return min(wait, RETRY_S)
        return wait

    def _advance(self, run_id: int) -> bool:
        try:
            due = advance_one(self.db, run_id, files_dir=self.files_dir)
        except Exception:
            log.exception("advancing pipeline run %s failed; trying again soon", run_id)
            return False
        if due is not None and (self.next_due is None or due < self.next_due):
            self.next_due = due
        return True

    def _scan(self) -> bool:
        """Every run with ended tasks or a due timer; then the earliest timer of all runs."""
        self.scan_at = time.monotonic() + SWEEP_S
        ok = True
        while True:
            run_ids = _runs_to_advance(self.db)
            for run_id in run_ids:
                ok = self._advance(run_id) and ok
            if len(run_ids) < DRAIN_BATCH or not ok:
                break
        with self.db.reader() as s:
            self.next_due = s.scalar(select(func.min(PipelineRun.due_at)))
        return ok
