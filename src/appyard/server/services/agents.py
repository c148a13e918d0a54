"""Agents: creation, the hello/poll protocol (claiming tasks), and losing agents.

Claiming is a compare-and-set (``UPDATE ... WHERE status='queued'``, with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL when picking), so however many agents or replicas race, a task is
handed out once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import Table, bindparam, false, func, or_, select, update
from sqlalchemy.orm import Session

from appyard.domain.resources import Gpu, Machine, Need
from appyard.domain.status import ON_AGENT, TERMINAL, Status
from appyard.domain.targets import STATE_KEY_TO_ENV
from appyard.errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
from appyard.schemas.agents import (
    AgentCreate,
    AgentCreated,
    AgentHello,
    AgentInfo,
    AgentWelcome,
    AssignedGpu,
    GpuInfo,
    PollRequest,
    PollResponse,
    TaskAssignment,
)
from appyard.schemas.manifest import DEFAULT_GRACE_S
from appyard.server import keys
from appyard.server.db.models import Agent, Module, Release, Task, Team, Token, utcnow
from appyard.server.notifier import emit
from appyard.server.security import Principal, hash_token, new_token
from appyard.server.services.access import own_agent, own_agent_row
from appyard.server.services.accounts import mint_token, team_role
from appyard.server.services.agent_inventory import gpus_of, inventory_fields, store_inventory
from appyard.server.services.agent_reports import error_text
from appyard.server.services.manifest import release_manifest
from appyard.server.services.placement import gpus_json, machines
from appyard.server.services.task_rows import TASKS, AnyRow, move, moved
from appyard.server.services.task_usage import store_usage
from appyard.server.settings import Settings

ON_AGENT_VALUES = [st.value for st in ON_AGENT]


def _info(s: Session, a: Agent, ttl_s: float, gpus: list[GpuInfo] | None = None) -> AgentInfo:
    """``gpus``: the agent's, when the caller read them with those of other agents."""
    if gpus is None:
        gpus = gpus_of(s, [a.id])[a.id]
    running = s.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.agent_id == a.id, Task.status.in_(ON_AGENT_VALUES))
    )
    return AgentInfo(
        id=a.id,
        team_id=a.team_id,
        name=a.name,
        status="online" if is_online(a, ttl_s) else "offline",
        slots=a.slots,
        running=running or 0,
        hostname=a.hostname,
        version=a.version,
        isolation=a.isolation,
        last_seen_at=a.last_seen_at,
        created_at=a.created_at,
        **inventory_fields(a, gpus),
    )


def is_online(a: Agent, ttl_s: float) -> bool:
    return bool(
        a.online and a.last_seen_at and utcnow() - a.last_seen_at < timedelta(seconds=ttl_s)
    )


def create_agent(
    s: Session, p: Principal, *, team_id: int, body: AgentCreate, ttl_s: float
) -> AgentCreated:
    team_role(s, p, team_id, "developer")
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can create agents.")
    # one creation at a time per team (the team's row locked; a no-op on SQLite, whose writes
    # are serialized anyway), so two racing requests cannot both take a name
    s.execute(select(Team.id).where(Team.id == team_id).with_for_update(key_share=True))
    if s.scalar(select(Agent.id).where(Agent.team_id == team_id, Agent.name == body.name)):
        raise ConflictError(
            f"This team has an agent named {body.name!r} already; pick another name "
            "(each agent of a team needs its own, such as its machine's name).",
            field="name",
        )
    agent = Agent(team_id=team_id, name=body.name, slots=1)
    s.add(agent)
    s.flush()
    _, raw = mint_token(s, "agent", f"agent {agent.id}", agent_id=agent.id)
    return AgentCreated(**_info(s, agent, ttl_s).model_dump(), token=raw)


def list_agents(s: Session, p: Principal, *, team_id: int, ttl_s: float) -> list[AgentInfo]:
    team_role(s, p, team_id)
    rows = s.scalars(select(Agent).where(Agent.team_id == team_id).order_by(Agent.id)).all()
    gpus = gpus_of(s, [a.id for a in rows])
    return [_info(s, a, ttl_s, gpus[a.id]) for a in rows]


def get_agent(s: Session, p: Principal, *, agent_id: int, ttl_s: float) -> AgentInfo:
    """One agent, to the members of its team (and to the agent itself); 404 to anyone else."""
    agent = s.get(Agent, agent_id)
    missing = NotFoundError(f"Agent {agent_id} not found in your teams.", field="agent_id")
    if agent is None:
        raise missing
    if not (p.kind == "agent" and p.agent_id == agent_id):
        try:
            team_role(s, p, agent.team_id)
        except NotFoundError:
            raise missing from None
    return _info(s, agent, ttl_s)


def _requeue_or_fail(s: Session, t: Task, reason: str) -> None:
    """A task its agent no longer holds: not started yet → queued again; else error."""
    status = Status(t.status)
    if status is Status.CONSUMED:
        s.execute(update(Token).where(Token.task_id == t.id).values(revoked=True))
        move(
            s,
            t,
            Status.QUEUED,
            agent_id=t.requested_agent_id,
            consumed_at=None,
            attempt=t.attempt + 1,
            gpus=None,
        )
        wake = keys.agent(t.requested_agent_id) if t.requested_agent_id else keys.queue(t.team_id)
        emit(s, wake)
    elif status is Status.TERMINATING:
        move(s, t, Status.STOPPED)
    else:
        move(s, t, Status.ERROR, error=error_text(s, task_id=t.id, reason=reason))


#: the ids of the tasks the database has on an agent (every poll reads them)
_ON_AGENT = select(TASKS.c.id).where(
    TASKS.c.agent_id == bindparam("agent_id"), TASKS.c.status.in_(ON_AGENT_VALUES)
)


def _reconcile(
    s: Session, agent_id: int, held: set[int], reason: str
) -> tuple[list[int], set[int]]:
    """Make the database agree with what the agent says it holds; return ids to stop, and
    the ids on the agent now (what it holds of them: the others were taken back or ended)."""
    stop: list[int] = []
    # ids only: on every poll, and what it holds is normally just what the database has on it
    on_agent = set(s.connection().execute(_ON_AGENT, {"agent_id": agent_id}).scalars())
    for task_id in sorted(on_agent - held):
        t = s.get(Task, task_id)
        if t is not None:
            _requeue_or_fail(s, t, reason)
    for task_id in held - on_agent:  # the others are on this agent and running: all is well
        h = s.get(Task, task_id)
        if h is None or h.agent_id != agent_id:
            stop.append(task_id)  # not this agent's (any more): the app must not run on
        elif Status(h.status) in TERMINAL and not h.stop_delivered:
            h.stop_delivered = True  # ended by the server meanwhile (lost, stopped): say it once
            stop.append(task_id)
    return stop, on_agent & held


def hello(s: Session, p: Principal, *, body: AgentHello, settings: Settings) -> AgentWelcome:
    agent = own_agent(s, p)
    agent.slots = body.slots
    agent.hostname = body.hostname or None
    agent.version = body.version or None
    agent.isolation = body.isolation
    agent.last_seen_at = utcnow()
    agent.online = True
    if body.inventory is not None:
        store_inventory(s, agent.id, body.inventory)
    held = {h.task_id for h in body.held}
    stop, _ = _reconcile(
        s, agent.id, held, f"agent lost: agent {agent.id} restarted and no longer has this app"
    )
    # stops asked for while it was away are delivered again on its next poll
    s.execute(
        update(Task)
        .where(Task.agent_id == agent.id, Task.status == Status.TERMINATING.value)
        .values(stop_delivered=False)
    )
    emit(s, keys.team(agent.team_id))
    return AgentWelcome(
        agent_id=agent.id,
        team_id=agent.team_id,
        ttl_s=settings.agent_ttl_s,
        poll_timeout_s=settings.poll_timeout_s,
        stop=stop,
    )


#: what the agent needs of the release and its module, in one read (not the readme)
_RELEASE = (
    select(Release.sha256, Release.config, Module.name)
    .join(Module, Module.id == Release.module_id)
    .where(Release.id == bindparam("release_id"))
)


def _assignment(s: Session, t: AnyRow, token: str) -> TaskAssignment:
    release = s.connection().execute(_RELEASE, {"release_id": t.release_id}).one()
    try:
        manifest = release_manifest(release.sha256, release.config)
        app_name, grace_s = manifest.name, manifest.stop_grace_s
    except BadRequestError:  # stored under older rules: the agent fails the task, saying why
        app_name, grace_s = release.name, DEFAULT_GRACE_S
    state = t.params.get("state", {})
    # the server's ids win: a caller's params must not tell the app it runs in another team
    context = {**t.params.get("context", {}), "teamId": t.team_id, "workspaceId": t.workspace_id}
    env = {
        var: str(state[key])
        for key, var in STATE_KEY_TO_ENV.items()
        if key in state and state[key] is not None
    }
    return TaskAssignment(
        task_id=t.id,
        team_id=t.team_id,
        workspace_id=t.workspace_id,
        user_id=t.user_id,
        module_id=t.module_id,
        app_name=app_name,
        release_sha256=release.sha256,
        release_url=f"/api/v1/releases/{release.sha256}/archive",
        config=release.config,
        state=state,
        context=context,
        token=token,
        stop_grace_s=grace_s,
        log_level=t.log_level,
        env=env,
        gpus=[AssignedGpu(index=g["index"], uuid=g["uuid"]) for g in t.gpus or []],
        resources=t.resources or {},
    )


_AGENTS = cast(Table, Agent.__table__)
_SEEN = (
    _AGENTS.update()
    .where(_AGENTS.c.id == bindparam("_id"))
    .values(last_seen_at=bindparam("_at"), online=True)
)
#: stopped tasks of the agent it has not been told of ("= false", not "IS false": an index
#: lookup on (agent_id, status, stop_delivered), not a read of every task it ever ran)
_UNTOLD = select(TASKS.c.id).where(
    TASKS.c.agent_id == bindparam("agent_id"),
    TASKS.c.status.in_([Status.TERMINATING.value, Status.STOPPED.value]),
    TASKS.c.stop_delivered == false(),
)
_TOLD = (
    TASKS.update()
    .where(TASKS.c.id.in_(bindparam("ids", expanding=True)))
    .values(stop_delivered=True)
)
#: queued tasks this agent may take, oldest first (not those it still holds: one taken back
#: from it goes to it again once it let go)
#: queued tasks a claim looks at beyond its free slots (those that do not fit it are skipped)
PICK_LOOKAHEAD = 16
_PICK = (
    select(TASKS.c.id, TASKS.c.resources)
    .where(
        TASKS.c.team_id == bindparam("team_id"),
        TASKS.c.status == Status.QUEUED.value,
        or_(
            TASKS.c.requested_agent_id == bindparam("agent_id"),
            TASKS.c.requested_agent_id.is_(None),
        ),
        TASKS.c.id.not_in(bindparam("held", expanding=True)),
    )
    .order_by(TASKS.c.id)
    .limit(bindparam("n"))
)
_PICK_LOCKED = _PICK.with_for_update(skip_locked=True)
_TASK_TOKEN = cast(Table, Token.__table__).insert()


def poll_once(
    s: Session,
    p: Principal,
    *,
    agent_id: int,
    req: PollRequest,
    postgres: bool,
    inventory: bool = True,
) -> PollResponse:
    """One look for work: reconcile, claim up to ``free_slots`` tasks, collect stops.

    ``inventory``: store the machine and the usage the poll carries, if any (a long poll's
    first look)."""
    agent = own_agent_row(s, p, agent_id)
    db = s.connection()
    db.execute(_SEEN, {"_id": agent.id, "_at": utcnow()})
    if inventory and req.inventory is not None:
        store_inventory(s, agent.id, req.inventory)
    if inventory and req.usage:  # as the machine: once per poll, by its first look
        store_usage(s, agent.id, req.usage)
    if not agent.online:
        emit(s, keys.team(agent.team_id))
    held = set(req.running)
    stops, on_agent = _reconcile(s, agent.id, held, f"agent {agent.id} no longer runs this app")
    untold = list(db.execute(_UNTOLD, {"agent_id": agent.id}).scalars())
    if untold:
        db.execute(_TOLD, {"ids": untold})
        stops += [task_id for task_id in untold if task_id in held]
    tasks: list[TaskAssignment] = []
    free = max(0, agent.slots - len(on_agent))  # read in this transaction just now
    if free > 0:
        pick = _PICK_LOCKED if postgres else _PICK
        # as many as it has free slots; a task that does not fit here leaves its turn to the
        # next (another agent may fit it; it says why it waits meanwhile), up to
        # PICK_LOOKAHEAD of them: rows are locked only as they are looked at, so agents that
        # race still find each their own
        here: Machine | None = None
        seen: list[int] = []
        skipped = 0
        while len(tasks) < free and skipped <= PICK_LOOKAHEAD:
            params = {
                "team_id": agent.team_id,
                "agent_id": agent.id,
                "held": sorted(held) + seen,
                "n": free - len(tasks),
            }
            rows = list(db.execute(pick, params))
            if not rows:
                break
            for task_id, resources in rows:
                seen.append(task_id)
                gpus: list[Gpu] = []
                need = Need.from_json(resources)
                if need.asks():
                    if here is None:
                        here = machines(s, agent.team_id, [agent.id])[0]
                        here.online = True  # it is polling
                    fits = here.fit(need)
                    if isinstance(fits, str):
                        skipped += 1
                        continue
                    gpus = fits
                t = moved(
                    s,
                    task_id,
                    Status.QUEUED,
                    Status.CONSUMED,
                    agent_id=agent.id,
                    gpus=gpus_json(gpus) if need.asks() else None,
                )
                if t is None:
                    continue  # lost the race for it to another agent: fine
                if here is not None:
                    here.take(need, gpus)
                raw = new_token("task")  # as mint_token, in one plain INSERT
                db.execute(
                    _TASK_TOKEN,
                    {
                        "hash": hash_token(raw),
                        "kind": "task",
                        "name": f"task {t.id}",
                        "task_id": t.id,
                    },
                )
                tasks.append(_assignment(s, t, raw))
    return PollResponse(tasks=tasks, stop=sorted(set(stops)))


def _free_slots(s: Session, agent: Agent) -> int:
    """Free slots as the database sees them: a poll's own figure may be stale by the time the
    long-poll wakes (a task ended meanwhile); the database's is not."""
    on_agent = s.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.agent_id == agent.id, Task.status.in_(ON_AGENT_VALUES))
    )
    return max(0, agent.slots - (on_agent or 0))


def claimable(s: Session, p: Principal, *, agent_id: int) -> tuple[int, int]:
    """Read-only: the agent's free slots, and how many tasks any agent of its team may take
    (counted up to 64: enough to know whether to hand a wake on)."""
    agent = own_agent(s, p, agent_id)
    for_anyone = (
        select(Task.id)
        .where(
            Task.team_id == agent.team_id,
            Task.status == Status.QUEUED.value,
            Task.requested_agent_id.is_(None),
        )
        .limit(64)
        .subquery()
    )
    queued = s.scalar(select(func.count()).select_from(for_anyone)) or 0
    return _free_slots(s, agent), queued


def sweep_lost(s: Session, *, ttl_s: float) -> list[int]:
    """Agents silent for the TTL go offline; what they ran becomes error ("agent lost")."""
    cutoff = utcnow() - timedelta(seconds=ttl_s)
    lost = s.scalars(select(Agent).where(Agent.online.is_(True), Agent.last_seen_at < cutoff)).all()
    for agent in lost:
        agent.online = False
        emit(s, keys.team(agent.team_id))
        reason = f"agent lost: agent {agent.id} ({agent.name}) sent nothing for {ttl_s:g} s"
        for t in s.scalars(
            select(Task).where(Task.agent_id == agent.id, Task.status.in_(ON_AGENT_VALUES))
        ).all():
            _requeue_or_fail(s, t, reason)
    return [a.id for a in lost]


def me(s: Session, p: Principal, *, ttl_s: float) -> AgentInfo:
    """The agent a token belongs to (lets a tool check an agent token without side effects)."""
    return _info(s, own_agent(s, p), ttl_s)


def team_of_agent(s: Session, p: Principal, *, agent_id: int) -> int:
    """The agent's team (a poll follows its team's queue)."""
    return own_agent(s, p, agent_id).team_id
