"""Agents: create and list (users); hello and the long-poll (the agent itself)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from appyard.schemas.agents import (
    AgentCreate,
    AgentCreated,
    AgentHello,
    AgentInfo,
    AgentsNow,
    AgentWelcome,
    PollRequest,
    PollResponse,
)
from appyard.server import keys
from appyard.server.routes.deps import (
    PathId,
    aread,
    arun,
    authenticated,
    context,
    json_response,
    read,
    run,
)
from appyard.server.routes.follow import (
    EVENT_STREAM_DOC,
    EventStreamResponse,
    Follow,
    snapshot_stream,
)
from appyard.server.security import Principal
from appyard.server.services import agents as svc

router = APIRouter(dependencies=[Depends(authenticated)], tags=["agents"])


@router.post(
    "/teams/{team_id}/agents",
    response_model=AgentCreated,
    status_code=201,
    responses={409: {"description": "The team has an agent of that name already (field `name`)"}},
)
def create_agent(request: Request, team_id: PathId, body: AgentCreate) -> AgentCreated:
    """A new agent of the team and its token (shown once); names are unique in a team."""
    ttl = context(request).settings.agent_ttl_s
    return run(request, lambda s, p: svc.create_agent(s, p, team_id=team_id, body=body, ttl_s=ttl))


@router.get("/teams/{team_id}/agents", response_model=list[AgentInfo])
def list_agents(request: Request, team_id: PathId) -> list[AgentInfo]:
    ttl = context(request).settings.agent_ttl_s
    return read(request, lambda s, p: svc.list_agents(s, p, team_id=team_id, ttl_s=ttl))


#: a burst of changes (a start that takes a GPU, its agent's poll) is one look
AGENTS_COALESCE_S = 0.2


@router.get(
    "/teams/{team_id}/agents/stream",
    response_class=EventStreamResponse,
    responses=EVENT_STREAM_DOC,
)
async def stream_agents(request: Request, team_id: PathId) -> StreamingResponse:
    """Server-sent events: the team's agents (``agents``: ``{"agents": [AgentInfo, ...]}``, as
    ``GET /teams/{id}/agents``) now and after every change of them: one comes online or goes
    offline, reports its machine, or a session takes or frees its slots and GPUs. Changes
    faster than a client reads are coalesced to the newest list."""
    ttl = context(request).settings.agent_ttl_s

    def look(s: Session, p: Principal) -> AgentsNow:
        return AgentsNow(agents=svc.list_agents(s, p, team_id=team_id, ttl_s=ttl))

    follow = Follow(
        context(request).notifier,
        (keys.team(team_id),),
        lambda _: aread(request, look),
        keepalive_s=context(request).settings.stream_keepalive_s,
        settle_s=AGENTS_COALESCE_S,
        request=request,
        team_of=lambda _: team_id,
    )
    await follow.open()
    return snapshot_stream(follow, "agents", lambda _: False)


@router.get("/agents/me", response_model=AgentInfo)
def agent_me(request: Request) -> AgentInfo:
    ttl = context(request).settings.agent_ttl_s
    return read(request, lambda s, p: svc.me(s, p, ttl_s=ttl))


@router.get(
    "/agents/{agent_id}",
    response_model=AgentInfo,
    responses={404: {"description": "No such agent in the caller's teams (field `agent_id`)"}},
)
def get_agent(request: Request, agent_id: PathId) -> AgentInfo:
    """One agent: status, load, its machine (cores, memory, disk, GPUs) and labels."""
    ttl = context(request).settings.agent_ttl_s
    return read(request, lambda s, p: svc.get_agent(s, p, agent_id=agent_id, ttl_s=ttl))


@router.post("/agents/hello", response_model=AgentWelcome)
def hello(request: Request, body: AgentHello) -> AgentWelcome:
    settings = context(request).settings
    return run(request, lambda s, p: svc.hello(s, p, body=body, settings=settings))


@router.post("/agents/{agent_id}/poll", response_model=PollResponse)
async def poll(request: Request, agent_id: PathId, body: PollRequest) -> Response:
    """Long-poll: answers the moment a task is queued for this agent or a stop is asked for."""
    ctx = context(request)
    pg = ctx.db.is_postgres
    team_id = ctx.agent_teams.get(agent_id)
    if team_id is None:
        team_id = await aread(request, lambda s, p: svc.team_of_agent(s, p, agent_id=agent_id))
        ctx.agent_teams[agent_id] = team_id
    queue = keys.queue(team_id)
    moved = False  # the agent is not of the team remembered
    stored = False  # the machine the poll carries is stored (once, by the first look)

    def claim(s: Session, p: Principal) -> PollResponse:
        return svc.poll_once(s, p, agent_id=agent_id, req=body, postgres=pg, inventory=not stored)

    async def look(fired: set[str]) -> PollResponse:
        nonlocal moved, stored
        if fired - {queue}:
            answer, team = await arun(request, lambda s, p: (claim(s, p), p.team_id))
            stored = True
            if queue in fired:
                follow.pass_on(queue)  # it may not have taken it: the next one looks
            if team != team_id:
                ctx.agent_teams.pop(agent_id, None)
                moved = True
            return answer
        # woken alone for the team's queue: look without the write lock first, take what
        # fits, and hand the wake on while tasks are left that it did not take
        free, queued = await aread(request, lambda s, p: svc.claimable(s, p, agent_id=agent_id))
        answer = PollResponse()
        if free and queued:
            answer = await arun(request, claim)
        if queued > len(answer.tasks):
            follow.pass_on(queue)
        return answer

    timeout = min(body.timeout_s, ctx.settings.poll_timeout_s)
    # not counted (one poll per agent; a team may have hundreds), but its token is checked
    # again at each look after the first: a deleted agent claims nothing more
    follow = Follow(
        ctx.notifier, (keys.agent(agent_id), queue), look, timeout=timeout, request=request
    )
    answer = await follow.until(lambda answer: bool(answer.tasks or answer.stop) or moved)
    if moved and not (answer.tasks or answer.stop):
        return await poll(request, agent_id, body)  # listen on the right queue
    return json_response(answer)
