"""Agents: create and list (users); hello and the long-poll (the agent itself)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from appyard.schemas.agents import (
    AgentCreate,
    AgentCreated,
    AgentHello,
    AgentInfo,
    AgentWelcome,
    PollRequest,
    PollResponse,
)
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
    return run(request, lambda s, p: svc.create_agent(s, p, team_id, body, ttl))


@router.get("/teams/{team_id}/agents", response_model=list[AgentInfo])
def list_agents(request: Request, team_id: PathId) -> list[AgentInfo]:
    ttl = context(request).settings.agent_ttl_s
    return read(request, lambda s, p: svc.list_agents(s, p, team_id, ttl))


@router.get("/agents/me", response_model=AgentInfo)
def agent_me(request: Request) -> AgentInfo:
    ttl = context(request).settings.agent_ttl_s
    return read(request, lambda s, p: svc.me(s, p, ttl))


@router.post("/agents/hello", response_model=AgentWelcome)
def hello(request: Request, body: AgentHello) -> AgentWelcome:
    settings = context(request).settings
    return run(request, lambda s, p: svc.hello(s, p, body, settings))


@router.post("/agents/{agent_id}/poll", response_model=PollResponse)
async def poll(request: Request, agent_id: PathId, body: PollRequest) -> Response:
    """Long-poll: answers the moment a task is queued for this agent or a stop is asked for."""
    ctx = context(request)
    pg = ctx.db.is_postgres
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(body.timeout_s, ctx.settings.poll_timeout_s)
    team_id = ctx.agent_teams.get(agent_id)
    if team_id is None:
        team_id = await aread(request, lambda s, p: svc.team_of_agent(s, p, agent_id))
        ctx.agent_teams[agent_id] = team_id
    queue_key = f"queue:{team_id}"
    with ctx.notifier.subscribe(f"agent:{agent_id}", queue_key) as sub:
        fired = {"first look"}
        while True:
            if fired - {queue_key}:
                answer, team = await arun(
                    request, lambda s, p: (svc.poll_once(s, p, agent_id, body, pg), p.team_id)
                )
                if queue_key in fired:
                    sub.pass_on(queue_key)  # it may not have taken it: the next one looks
                if team != team_id:  # not the team remembered: listen on the right queue
                    ctx.agent_teams.pop(agent_id, None)
                    if not (answer.tasks or answer.stop):
                        return await poll(request, agent_id, body)
            else:
                # woken alone for the team's queue: look without the write lock first, take
                # what fits, and hand the wake on while tasks are left that it did not take
                free, queued = await aread(request, lambda s, p: svc.claimable(s, p, agent_id))
                answer = PollResponse()
                if free and queued:
                    answer = await arun(
                        request, lambda s, p: svc.poll_once(s, p, agent_id, body, pg)
                    )
                if queued > len(answer.tasks):
                    sub.pass_on(queue_key)
            remaining = deadline - loop.time()
            if answer.tasks or answer.stop or remaining <= 0 or sub.closing:
                return json_response(answer)
            await sub.wait(remaining)
            fired = sub.take()
