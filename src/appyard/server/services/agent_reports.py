"""What an agent reports of the sessions it holds: started, exited or failed, and log lines.

The exit report carries the log's last batch, and ``started`` / the exit are on every session's
path: the task is read and moved as a plain row (``task_rows``), and a batch is appended with
one conditional UPDATE and one multi-row INSERT.

A task's stored log is capped (its manifest's ``log_limit``, held to the server's ceiling): at
most that many lines, whose text fits in that many bytes of the agent's log file, plus one last
line of at most ``LAST_WORD_CHARS`` (the agent's note of what it left out and where the whole
log is). The agent keeps to the cap itself; the server's check is the defense against one that
does not, so that no agent or app can grow the database. A batch beyond the cap is a 413
``log_full`` naming the cap, which a well-behaved agent takes as its last word, never retries.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status, status_after_exit
from appyard.errors import ApiError, BadRequestError, ConflictError, NotFoundError
from appyard.schemas.agents import LogBatch, TaskEvent
from appyard.schemas.manifest import MIN_LOG_BYTES, MIN_LOG_LINES
from appyard.schemas.tasks import TaskInfo
from appyard.server import keys
from appyard.server.db.models import Release, TaskLog
from appyard.server.notifier import emit
from appyard.server.security import Principal
from appyard.server.services.manifest import release_manifest
from appyard.server.services.task_rows import TASKS, AnyRow, move, read_row, set_columns
from appyard.server.services.task_usage import store_usage
from appyard.server.services.tasks import task_info
from appyard.server.settings import LogCeiling

LOG_TAIL_LINES = 10


def _held_by(s: Session, p: Principal, task_id: int) -> AnyRow:
    """The task's row if this agent holds it; else 404 (also to any other kind of caller)."""
    t = read_row(s, task_id) if p.kind == "agent" else None
    if t is None or t.agent_id != p.agent_id:
        raise NotFoundError(f"Task {task_id} is not held by this agent.", field="task_id")
    return t


def log_tail(s: Session, *, task_id: int, n: int = LOG_TAIL_LINES) -> list[str]:
    rows = s.scalars(
        select(TaskLog.text).where(TaskLog.task_id == task_id).order_by(TaskLog.seq.desc()).limit(n)
    ).all()
    return list(reversed(rows))


def error_text(s: Session, *, task_id: int, reason: str) -> str:
    """``reason`` and the log's last lines: what a session that ended in error says why."""
    tail = log_tail(s, task_id=task_id)
    if not tail:
        return reason
    return reason + "\nLast log lines:\n" + "\n".join(tail)


def agent_event(s: Session, p: Principal, *, task_id: int, ev: TaskEvent) -> TaskInfo:
    t = _held_by(s, p, task_id)
    if ev.logs is not None:  # the log's last batch first, exactly as if sent just before
        t = _append(s, t, ev.logs)
    status = Status(t.status)
    if ev.kind == "started":
        if status is Status.QUEUED:
            # it was taken back (the agent was thought lost): the app must not run on
            raise ConflictError(
                f"Task {t.id} was queued again while this agent prepared it; stop the app.",
                field="status",
                details={"status": str(status)},
            )
        if status is Status.CONSUMED:
            t = move(s, t, Status.STARTED, pid=ev.pid)
        # else already reported, or stopped meanwhile (the agent learns of the stop on its poll)
        return task_info(t)
    if ev.usage is not None and ev.usage.task_id == t.id and status not in TERMINAL:
        store_usage(s, t.agent_id, [ev.usage])  # its last figures, before its end
    if status in TERMINAL:
        if not t.stop_delivered:
            t = set_columns(s, t.id, stop_delivered=True)
        return task_info(t)  # a retried report after the end: nothing more to do
    # the agent knows the app ended (no stop to send: ``stop_delivered``, written with the
    # move below), and its long-poll wakes: a slot is free
    emit(s, keys.agent(t.agent_id))
    if ev.kind == "failed":
        reason = ev.error or "the app could not be started"
        new = Status.STOPPED if status is Status.TERMINATING else Status.ERROR
        error = error_text(s, task_id=t.id, reason=reason) if new is Status.ERROR else None
        return task_info(move(s, t, new, error=error, stop_delivered=True))
    if ev.stopped and status is Status.STARTED:
        t = move(s, t, Status.TERMINATING)
        status = Status.TERMINATING
    new = status_after_exit(status, ev.exit_code)
    if ev.over_limit and new is Status.FINISHED:  # stopped by its supervisor: not a success
        new = Status.ERROR
    error = None
    if new is Status.ERROR and ev.over_limit and ev.error:
        error = error_text(s, task_id=t.id, reason=ev.error)
    elif new is Status.ERROR:
        code = ev.exit_code
        if code is not None and code < 0:
            reason = f"the app was killed by signal {-code}"
        else:
            reason = f"the app exited with code {code}"
        if ev.error:
            reason += f": {ev.error}"
        error = error_text(s, task_id=t.id, reason=reason)
    return task_info(move(s, t, new, exit_code=ev.exit_code, error=error, stop_delivered=True))


#: a batch is appended only where the stored log ends (``log_offset`` read): at most once
_APPEND = (
    TASKS.update()
    .where(TASKS.c.id == bindparam("_id"), TASKS.c.log_offset == bindparam("_offset"))
    .values(log_offset=bindparam("_end"), log_count=TASKS.c.log_count + bindparam("_n"))
    .returning(*TASKS.c)
)
_LOG_LINES = cast(Table, TaskLog.__table__).insert()


#: the one line a capped log may end with, beyond the cap
LAST_WORD_CHARS = 2048
_LIMIT_OF = select(Release.sha256, Release.config).where(Release.id == bindparam("release_id"))


def log_limit(s: Session, t: AnyRow) -> tuple[int, int]:
    """The task's cap (lines, bytes): its manifest's ``log_limit`` held to the ceiling."""
    ceiling: LogCeiling = s.info.get("log_ceiling") or LogCeiling()
    release = s.connection().execute(_LIMIT_OF, {"release_id": t.release_id}).one()
    try:
        asked = release_manifest(release.sha256, release.config).log_limit
        lines, size = asked.lines, asked.bytes
    except BadRequestError:  # a release stored under older rules: the ceiling holds
        lines, size = ceiling
    return min(lines, ceiling.lines), min(size, ceiling.bytes)


def _check_cap(s: Session, t: AnyRow, batch: LogBatch) -> None:
    """Refuse a batch the cap has no room for (module docstring); text is counted in
    characters, which a line of the agent's file never holds more of than its bytes."""
    n = len(batch.lines)
    chars = sum(len(ln.text) for ln in batch.lines)
    fits_span = chars <= batch.end_offset - batch.offset
    if t.log_count + n <= MIN_LOG_LINES and batch.end_offset <= MIN_LOG_BYTES:
        lines, size = MIN_LOG_LINES, MIN_LOG_BYTES  # within any cap: no need to read it
    else:
        lines, size = log_limit(s, t)
    if t.log_count + n <= lines and batch.end_offset <= size:
        if not fits_span:
            raise BadRequestError(
                f"Log batch holds {chars} characters of text in {batch.end_offset - batch.offset} "
                "bytes of log file.",
                field="lines",
            )
        return
    if n == 1 and chars <= LAST_WORD_CHARS and t.log_count <= lines and t.log_offset <= size:
        return  # the one last line past the cap
    raise ApiError(
        f"Task {t.id}'s log is full: it stores at most {lines} lines and {size} bytes "
        "(manifest log_limit); send no more of it.",
        field="lines",
        status_code=413,
        code="log_full",
        details={"lines": lines, "bytes": size, "end_offset": t.log_offset},
    )


def append_logs(s: Session, p: Principal, *, task_id: int, batch: LogBatch) -> int:
    """Append a batch at most once: it must begin where the stored log ends."""
    return int(_append(s, _held_by(s, p, task_id), batch).log_offset)


def _append(s: Session, t: AnyRow, batch: LogBatch) -> AnyRow:
    """``append_logs`` on the task's row; the row after it."""
    if batch.end_offset <= t.log_offset:
        return t  # a retry of a batch already written
    if batch.offset != t.log_offset:
        raise ConflictError(
            f"Log batch starts at {batch.offset} but task {t.id}'s log ends at {t.log_offset}; "
            "resend from there.",
            field="offset",
            details={"end_offset": t.log_offset, "log_count": t.log_count},
        )
    _check_cap(s, t, batch)
    n = len(batch.lines)
    db = s.connection()
    params = {"_id": t.id, "_offset": batch.offset, "_end": batch.end_offset, "_n": n}
    after = db.execute(_APPEND, params).first()
    if after is None:
        # another request (a retry of this very batch, say) wrote meanwhile: look again
        now = read_row(s, t.id)
        assert now is not None  # (a task is never deleted while its agent holds it)
        if batch.end_offset <= now.log_offset:
            return now
        raise ConflictError(
            f"Task {t.id}'s log now ends at {now.log_offset}; resend from there.",
            field="offset",
            details={"end_offset": now.log_offset, "log_count": now.log_count},
        )
    if batch.lines:  # one multi-row INSERT
        first = t.log_count + 1  # the row had the offset read, so it had the count read too
        db.execute(
            _LOG_LINES,
            [
                {"task_id": t.id, "seq": first + i, "t": ln.t, "level": ln.level, "text": ln.text}
                for i, ln in enumerate(batch.lines)
            ],
        )
    emit(s, keys.log(t.id))
    return after
