"""What clients read of sessions in pages or live: a team's lists, the team's feed of changes
(``GET /tasks/stream``), a task's log.

Each costs what it returns, however long the team's history: lists by status read the indexes
that lead with the status, the feed reads only what changed since its last look, a log page
its lines by sequence number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, select, union_all
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import BadRequestError
from appyard.schemas.common import Page
from appyard.schemas.tasks import LogLine, LogPage, TaskInfo
from appyard.server.db.models import Task, TaskLog, utcnow
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.accounts import team_role
from appyard.server.services.paging import keyset_page
from appyard.server.services.tasks import task_info


def list_tasks(
    s: Session,
    p: Principal,
    *,
    team_id: int,
    module_id: int | None = None,
    statuses: list[Status] | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> Page[TaskInfo]:
    team_role(s, p, team_id)
    stmt = list_statement(team_id, module_id, statuses, name, limit + 1, cursor)
    rows = list(s.scalars(stmt))
    return keyset_page(rows, limit, task_info)


def list_statement(
    team_id: int,
    module_id: int | None = None,
    statuses: list[Status] | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> Select[Task]:
    """The newest ``limit`` tasks of the team that match, in one SELECT.

    Filtered by status, each status is read on its own from an index that leads with it
    ((status, team_id, id), or (status, team_id, module_id, id) for an app), newest first,
    stopping after ``limit`` ids; the rows of the newest ``limit`` of those ids are read. So a
    list of running or queued sessions costs what it returns, however long the team's
    history: one ``status IN (...)`` over several statuses would have the database sort every
    row of those statuses, or walk the team's tasks in id order past every ended one.
    """

    def newest(what: Any, *where: ColumnElement[bool]) -> Select[Any]:
        stmt = select(what).where(Task.team_id == team_id, *where)
        if module_id is not None:
            stmt = stmt.where(Task.module_id == module_id)
        if name:
            stmt = stmt.where(Task.name == name)
        if cursor is not None:
            stmt = stmt.where(Task.id < cursor)
        return stmt.order_by(Task.id.desc()).limit(limit)

    values = sorted({st.value for st in statuses or ()})
    if len(values) == len(Status):
        values = []  # every status: no filter at all
    if len(values) <= 1:
        return newest(Task, *(Task.status == v for v in values))
    # ids only in the pieces (the index has them), whole rows for the page alone
    ids = union_all(*(select(newest(Task.id, Task.status == v).subquery()) for v in values))
    page = ids.subquery("page")
    return select(Task).where(Task.id.in_(select(page.c.id))).order_by(Task.id.desc()).limit(limit)


# -- a team's changes, live (GET /tasks/stream) --------------------------------------------------

#: each look re-reads this far behind the newest change it saw: a write stamped earlier may
#: commit later (PostgreSQL writers run in parallel; replicas' clocks differ a little)
STREAM_OVERLAP = timedelta(seconds=2)
#: rows handed out per look; a longer backlog (a resume from long ago) comes in several
STREAM_BATCH = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: how often a stream checks again that its caller is still a member of the team
STREAM_RECHECK_S = 15.0


class TeamFeed:
    """Where one team stream stands: ``cursor`` is the newest ``updated_at`` it has seen;
    ``sent`` the (task id, updated_at) states it handed out within the overlap window."""

    def __init__(self, team_id: int, cursor: datetime) -> None:
        self.team_id = team_id
        self.cursor = cursor
        self.sent: set[tuple[int, datetime]] = set()
        self.checked_at: float | None = None  # when membership was last checked (monotonic)


@dataclass
class TeamChanges:
    items: list[TaskInfo]
    more: bool  # the batch was full: look again at once


def parse_after(raw: str | None, field_name: str = "after") -> datetime:
    """A stream's starting point: an ISO time (a stream event's ``id`` is one), no later
    than now; none: now. A time without a zone is UTC."""
    now = utcnow()
    if raw is None or not raw.strip():
        return now
    try:
        at = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequestError(
            f"{field_name}: {raw!r} is not an ISO time such as 2030-01-31T12:00:00.000000Z "
            "(the id of the stream's last event)",
            field=field_name,
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return min(max(at, EPOCH), now)


def stream_id(at: datetime) -> str:
    """A stream event's id: its task's ``updated_at``, URL-safe (``Z``, not ``+00:00``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def team_changes(s: Session, p: Principal, *, feed: TeamFeed) -> TeamChanges:
    """The team's tasks changed since the feed's cursor, each once in its newest state, oldest
    change first; advances the feed. 404 unless the caller is a member (checked on the first
    look, then every ``STREAM_RECHECK_S``: with many streams it is a large part of a look).

    Two reads, both narrow: the (id, updated_at) pairs of the overlap window and after, from
    the index (team_id, updated_at, id); then the whole rows of the pairs not sent yet.
    """
    now = time.monotonic()
    if feed.checked_at is None or now - feed.checked_at >= STREAM_RECHECK_S:
        team_role(s, p, feed.team_id)
        feed.checked_at = now
    horizon = feed.cursor - STREAM_OVERLAP
    limit = STREAM_BATCH + len(feed.sent)
    stamps = s.execute(
        select(Task.id, Task.updated_at)
        .where(Task.team_id == feed.team_id, Task.updated_at > horizon)
        .order_by(Task.updated_at, Task.id)
        .limit(limit)
    ).all()
    fresh = [task_id for task_id, at in stamps if (task_id, at) not in feed.sent]
    rows: list[Task] = []
    if fresh:
        rows = list(s.scalars(select(Task).where(Task.id.in_(fresh))))
        rows.sort(key=lambda t: (t.updated_at, t.id))
    # a row may have changed again between the two reads: what is sent is what counts
    feed.sent.update((t.id, t.updated_at) for t in rows)
    if stamps:
        feed.cursor = max(feed.cursor, stamps[-1][1])
    horizon = feed.cursor - STREAM_OVERLAP
    feed.sent = {pair for pair in feed.sent if pair[1] > horizon}
    items = [task_info(t) for t in rows]  # the history: on the task's own page
    return TeamChanges(items=items, more=len(stamps) >= limit)


# -- a task's log -------------------------------------------------------------------------------


def read_logs(
    s: Session, p: Principal, *, task_id: int, after: int = 0, limit: int = 1000
) -> LogPage:
    t = get_task(s, p, task_id)
    # plain columns, not ORM objects, and lines built without re-validation (the database holds
    # only what was validated on the way in): a page of 10,000 lines is the hot path of a log
    rows = s.execute(
        select(TaskLog.seq, TaskLog.t, TaskLog.level, TaskLog.text)
        .where(TaskLog.task_id == t.id, TaskLog.seq > after)
        .order_by(TaskLog.seq)
        .limit(limit)
    )
    items = [LogLine.model_construct(seq=q, t=at, level=lv, text=tx) for q, at, lv, tx in rows]
    next_seq = items[-1].seq if items else after
    ended = Status(t.status) in TERMINAL and next_seq >= t.log_count
    return LogPage(items=items, next_seq=next_seq, ended=ended)
