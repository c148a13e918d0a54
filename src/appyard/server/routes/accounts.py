"""Users, tokens, teams, members, workspaces."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from appyard.schemas.accounts import (
    LoginRequest,
    MemberAdd,
    MemberInfo,
    TeamCreate,
    TeamInfo,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    UserCreate,
    UserInfo,
    WorkspaceCreate,
    WorkspaceInfo,
)
from appyard.server.routes.deps import PathId, authenticated, read, run, run_anon
from appyard.server.services import accounts as svc

router = APIRouter(dependencies=[Depends(authenticated)], tags=["accounts"])
public = APIRouter(tags=["accounts"])


@public.post("/auth/login", response_model=TokenCreated)
def login(request: Request, body: LoginRequest) -> TokenCreated:
    return run_anon(request, lambda s: svc.login(s, login_name=body.login, password=body.password))


@router.get("/users/me", response_model=UserInfo)
def me(request: Request) -> UserInfo:
    return read(request, svc.me)


@router.post("/users", response_model=UserInfo, status_code=201)
def create_user(request: Request, body: UserCreate) -> UserInfo:
    return run(request, lambda s, p: svc.create_user(s, p, body=body))


@router.get("/users", response_model=list[UserInfo])
def list_users(request: Request) -> list[UserInfo]:
    return read(request, svc.list_users)


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(request: Request, body: TokenCreate) -> TokenCreated:
    return run(request, lambda s, p: svc.create_token(s, p, body=body))


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(request: Request) -> list[TokenInfo]:
    return read(request, svc.list_tokens)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(request: Request, token_id: PathId) -> Response:
    run(request, lambda s, p: svc.revoke_token(s, p, token_id=token_id))
    return Response(status_code=204)


@router.get("/teams", response_model=list[TeamInfo])
def list_teams(request: Request) -> list[TeamInfo]:
    return read(request, svc.list_teams)


@router.post("/teams", response_model=TeamInfo, status_code=201)
def create_team(request: Request, body: TeamCreate) -> TeamInfo:
    return run(request, lambda s, p: svc.create_team(s, p, body=body))


@router.get("/teams/{team_id}/members", response_model=list[MemberInfo])
def list_members(request: Request, team_id: PathId) -> list[MemberInfo]:
    return read(request, lambda s, p: svc.list_members(s, p, team_id=team_id))


@router.post("/teams/{team_id}/members", response_model=MemberInfo, status_code=201)
def add_member(request: Request, team_id: PathId, body: MemberAdd) -> MemberInfo:
    return run(request, lambda s, p: svc.add_member(s, p, team_id=team_id, body=body))


@router.get("/teams/{team_id}/workspaces", response_model=list[WorkspaceInfo])
def list_workspaces(request: Request, team_id: PathId) -> list[WorkspaceInfo]:
    return read(request, lambda s, p: svc.list_workspaces(s, p, team_id=team_id))


@router.post("/teams/{team_id}/workspaces", response_model=WorkspaceInfo, status_code=201)
def create_workspace(request: Request, team_id: PathId, body: WorkspaceCreate) -> WorkspaceInfo:
    return run(request, lambda s, p: svc.create_workspace(s, p, team_id=team_id, body=body))
