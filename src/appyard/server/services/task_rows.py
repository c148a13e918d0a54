"""A task's row on every session's path: read it, move its status, claim it.

A session passes here four or more times (start, claim, started, exited), so these are Core
statements built once, at import, and plain rows rather than ORM objects. A statement built per
call pays its construction and its cache key every time; an ORM load or bulk UPDATE costs about
three times the row read or UPDATE beneath it (``bench/throughput.py`` shows the sum).

``move`` is the one way a status changes: a conditional UPDATE on the status that was read,
checked against the one transition table, so two racing writers cannot both win. It answers the
row as the UPDATE left it (``RETURNING``), so no caller reads it again.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, cast

from sqlalchemy import Row, Table, bindparam, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from appyard.domain.status import TERMINAL, Status, can_transition
from appyard.errors import ConflictError
from appyard.server import keys
from appyard.server.db.models import PipelineOutbox, Task, Token, utcnow
from appyard.server.keys import Key
from appyard.server.notifier import emit

#: the tables themselves (``Model.__table__`` is typed as any FromClause)
TASKS = cast(Table, Task.__table__)
TOKENS = cast(Table, Token.__table__)

#: a row of any columns (a task's, an agent's)
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

TIMESTAMP_OF: dict[Status, str] = {
    Status.CONSUMED: "consumed_at",
    Status.STARTED: "started_at",
    Status.TERMINATING: "terminating_at",
    Status.FINISHED: "ended_at",
    Status.ERROR: "ended_at",
    Status.STOPPED: "ended_at",
}


class TaskLike(Protocol):
    """A task as ``move`` needs it: an ORM ``Task`` or a row of ``TASKS``."""

    @property
    def id(self) -> int: ...
    @property
    def team_id(self) -> int: ...
    @property
    def status(self) -> str: ...


_READ = select(TASKS).where(TASKS.c.id == bindparam("task_id"))
_STATUS = select(TASKS.c.status).where(TASKS.c.id == bindparam("task_id"))
#: no ``.values()``: the SET clause is the parameters' column names (``_id``/``_old`` are the
#: WHERE's), one compiled form per set of columns, cached
_MOVE = (
    TASKS.update()
    .where(TASKS.c.id == bindparam("_id"), TASKS.c.status == bindparam("_old"))
    .returning(*TASKS.c)
)
_SET = TASKS.update().where(TASKS.c.id == bindparam("_id")).returning(*TASKS.c)
#: the app of a running session says it is ready for calls (``ready_at``: the first time)
_READY = (
    TASKS.update()
    .where(TASKS.c.id == bindparam("_id"), TASKS.c.status == Status.STARTED.value)
    .values(
        ready=True,
        ready_at=func.coalesce(TASKS.c.ready_at, bindparam("_now", type_=TASKS.c.ready_at.type)),
        ready_url=bindparam("_url"),
        updated_at=bindparam("_now"),
    )
    .returning(*TASKS.c)
)
_REVOKE = TOKENS.update().where(TOKENS.c.task_id == bindparam("_task")).values(revoked=True)
#: a pipeline's task ended: the engine advances its run (``services/pipeline_engine.py``)
_OUTBOX = cast(Table, PipelineOutbox.__table__).insert()
#: ``Session.info`` counter of the outbox rows the session wrote (an advance reads the outbox
#: again only after its own transaction wrote one: another's comes with its own wake)
OUTBOX_WRITES = "pipeline_outbox_writes"


def read_row(s: Session, task_id: int) -> AnyRow | None:
    """The task's row (every column), or None."""
    return s.connection().execute(_READ, {"task_id": task_id}).first()


def set_columns(s: Session, task_id: int, **values: Any) -> AnyRow:
    """Write columns that are not the status (no transition, no wake); the row after it."""
    row = s.connection().execute(_SET, {"_id": task_id, **values}).one()
    return row


def task_keys(t: TaskLike) -> tuple[Key, Key]:
    """Notifier keys a change of ``t`` wakes: its waiters and its team's live views."""
    return keys.task(t.id), keys.team(t.team_id)


def moved(s: Session, task_id: int, old: Status, new: Status, **fields: Any) -> AnyRow | None:
    """``old`` → ``new`` if the task is still ``old`` (not checked against the transition
    table); the row after it, or None when the task is no longer ``old``."""
    now = utcnow()
    values: dict[str, Any] = {"status": new.value, "updated_at": now, **fields}
    if old is Status.STARTED:
        values.setdefault("ready", False)  # ready for calls only while it runs unstopped
    stamp = TIMESTAMP_OF.get(new)
    if stamp and stamp not in values:
        values[stamp] = now
    db = s.connection()
    row = db.execute(_MOVE, {"_id": task_id, "_old": old.value, **values}).first()
    if row is None:
        return None
    emit(s, *task_keys(row), keys.task_status(task_id, new))
    if new in TERMINAL:
        # its token dies with it (also refused at once by authenticate on the status)
        db.execute(_REVOKE, {"_task": task_id})
        if row.pipeline_run_id is not None:
            # in this transaction: the run learns of the end exactly when it commits
            db.execute(
                _OUTBOX, {"run_id": row.pipeline_run_id, "task_id": task_id, "created_at": now}
            )
            s.info[OUTBOX_WRITES] = s.info.get(OUTBOX_WRITES, 0) + 1
            emit(s, keys.pipelines_due(row.pipeline_run_id))
    return row


def mark_ready(s: Session, task_id: int, url: str | None) -> AnyRow | None:
    """The task is ready for calls (and its page at ``url``) if it is still ``started``; the
    row after it, or None when it is not. Wakes its waiters (``wait?until=ready`` too)."""
    row = s.connection().execute(_READY, {"_id": task_id, "_url": url, "_now": utcnow()}).first()
    if row is not None:
        emit(s, *task_keys(row), keys.task_ready(task_id))
    return row


def move(s: Session, t: TaskLike, new: Status, **fields: Any) -> AnyRow:
    """Move ``t`` to ``new``; 409 if the transition table forbids it or it lost a race.

    An ORM ``Task`` is brought up to date in place; the row after the move is returned for both.
    """
    old = Status(t.status)
    if not can_transition(old, new):
        raise ConflictError(
            f"Task {t.id} is {old}; it cannot become {new}.",
            field="status",
            details={"status": str(old)},
        )
    row = moved(s, t.id, old, new, **fields)
    if row is None:
        now = s.connection().execute(_STATUS, {"task_id": t.id}).scalar()
        raise ConflictError(
            f"Task {t.id} changed meanwhile (now {now}); it cannot become {new}.",
            field="status",
            details={"status": now},
        )
    if isinstance(t, Task):
        for key, value in row._mapping.items():
            set_committed_value(t, key, value)
    return row
