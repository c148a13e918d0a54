"""Users, tokens, teams, members, workspaces."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from appyard.errors import ApiError, AuthenticationError
from appyard.schemas.accounts import (
    LoginRequest,
    MemberAdd,
    MemberInfo,
    MemberUpdate,
    TeamCreate,
    TeamInfo,
    TeamUpdate,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    UserCreate,
    UserInfo,
    UserUpdate,
    WorkspaceCreate,
    WorkspaceInfo,
    WorkspaceUpdate,
)
from appyard.server.routes.deps import (
    PathId,
    QueryId,
    authenticated,
    context,
    read,
    run,
)
from appyard.server.security import hash_password
from appyard.server.services import accounts as svc

router = APIRouter(dependencies=[Depends(authenticated)], tags=["accounts"])
public = APIRouter(tags=["accounts"])


@public.post(
    "/auth/login",
    response_model=TokenCreated,
    responses={429: {"description": "too many failed sign-ins; see Retry-After"}},
)
def login(request: Request, body: LoginRequest) -> TokenCreated | JSONResponse:
    """Password sign-in, limited per login and per client address (``docs/security.md``).

    The password is checked outside any transaction (scrypt takes ~50 ms: no write lock is
    held meanwhile), at the same cost for an unknown login as for a wrong password.
    """
    ctx = context(request)
    address = request.client.host if request.client else "unknown"
    wait_s = ctx.signin.attempt(body.login, address)
    if wait_s:
        refused = ApiError(
            f"Too many failed sign-ins for this login or from this address; try again in "
            f"{wait_s} s.",
            status_code=429,
            code="too_many_requests",
            details={"retry_after_s": wait_s},
        )
        return JSONResponse(
            refused.to_body(), status_code=429, headers={"Retry-After": str(wait_s)}
        )
    with ctx.db.reader() as s:
        found = svc.password_of(s, login_name=body.login)
    user_id = svc.signed_in(found, body.password)
    if user_id is None:
        raise AuthenticationError("Wrong login or password.")
    ctx.signin.succeeded(body.login, address)
    with ctx.db.session() as s:
        return svc.login_token(s, user_id=user_id)


@router.get("/users/me", response_model=UserInfo)
def me(request: Request) -> UserInfo:
    return read(request, svc.me)


@router.post("/users", response_model=UserInfo, status_code=201)
def create_user(request: Request, body: UserCreate) -> UserInfo:
    return run(request, lambda s, p: svc.create_user(s, p, body=body))


@router.get("/users", response_model=list[UserInfo])
def list_users(request: Request) -> list[UserInfo]:
    return read(request, svc.list_users)


@router.patch("/users/{user_id}", response_model=UserInfo)
def update_user(request: Request, user_id: PathId, body: UserUpdate) -> UserInfo:
    """A user's display name and/or password: the user itself or an instance admin.

    The caller is checked first, then the password hashed outside any transaction (scrypt
    takes ~50 ms: no write lock is held meanwhile, and no unchecked caller makes the server
    hash), then the change is written (checked again, in its transaction).
    """
    read(request, lambda s, p: svc.check_user_update(s, p, user_id=user_id, body=body))
    hashed = hash_password(body.password) if body.password is not None else None
    return run(
        request,
        lambda s, p: svc.update_user(s, p, user_id=user_id, body=body, password_hash=hashed),
    )


@router.post("/users/{user_id}/disable", response_model=UserInfo)
def disable_user(request: Request, user_id: PathId) -> UserInfo:
    return run(request, lambda s, p: svc.set_disabled(s, p, user_id=user_id, disabled=True))


@router.post("/users/{user_id}/enable", response_model=UserInfo)
def enable_user(request: Request, user_id: PathId) -> UserInfo:
    return run(request, lambda s, p: svc.set_disabled(s, p, user_id=user_id, disabled=False))


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(request: Request, body: TokenCreate) -> TokenCreated:
    return run(request, lambda s, p: svc.create_token(s, p, body=body))


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(request: Request, team_id: QueryId | None = None) -> list[TokenInfo]:
    return read(request, lambda s, p: svc.list_tokens(s, p, team_id=team_id))


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(request: Request, token_id: PathId) -> Response:
    run(request, lambda s, p: svc.revoke_token(s, p, token_id=token_id))
    return Response(status_code=204)


@router.post("/agents/{agent_id}/token", response_model=TokenCreated, status_code=201)
def rotate_agent_token(request: Request, agent_id: PathId) -> TokenCreated:
    return run(request, lambda s, p: svc.rotate_agent_token(s, p, agent_id=agent_id))


@router.get("/teams", response_model=list[TeamInfo])
def list_teams(request: Request) -> list[TeamInfo]:
    return read(request, svc.list_teams)


@router.post("/teams", response_model=TeamInfo, status_code=201)
def create_team(request: Request, body: TeamCreate) -> TeamInfo:
    return run(request, lambda s, p: svc.create_team(s, p, body=body))


@router.patch("/teams/{team_id}", response_model=TeamInfo)
def update_team(request: Request, team_id: PathId, body: TeamUpdate) -> TeamInfo:
    return run(request, lambda s, p: svc.update_team(s, p, team_id=team_id, body=body))


@router.get("/teams/{team_id}/members", response_model=list[MemberInfo])
def list_members(request: Request, team_id: PathId) -> list[MemberInfo]:
    return read(request, lambda s, p: svc.list_members(s, p, team_id=team_id))


@router.post("/teams/{team_id}/members", response_model=MemberInfo, status_code=201)
def add_member(request: Request, team_id: PathId, body: MemberAdd) -> MemberInfo:
    return run(request, lambda s, p: svc.add_member(s, p, team_id=team_id, body=body))


@router.patch("/teams/{team_id}/members/{user_id}", response_model=MemberInfo)
def update_member(
    request: Request, team_id: PathId, user_id: PathId, body: MemberUpdate
) -> MemberInfo:
    return run(
        request,
        lambda s, p: svc.update_member(s, p, team_id=team_id, user_id=user_id, body=body),
    )


@router.delete("/teams/{team_id}/members/{user_id}", status_code=204)
def remove_member(request: Request, team_id: PathId, user_id: PathId) -> Response:
    run(request, lambda s, p: svc.remove_member(s, p, team_id=team_id, user_id=user_id))
    return Response(status_code=204)


@router.get("/teams/{team_id}/workspaces", response_model=list[WorkspaceInfo])
def list_workspaces(request: Request, team_id: PathId) -> list[WorkspaceInfo]:
    return read(request, lambda s, p: svc.list_workspaces(s, p, team_id=team_id))


@router.post("/teams/{team_id}/workspaces", response_model=WorkspaceInfo, status_code=201)
def create_workspace(request: Request, team_id: PathId, body: WorkspaceCreate) -> WorkspaceInfo:
    return run(request, lambda s, p: svc.create_workspace(s, p, team_id=team_id, body=body))


@router.get("/workspaces/{workspace_id}", response_model=WorkspaceInfo)
def get_workspace(request: Request, workspace_id: PathId) -> WorkspaceInfo:
    """One workspace, for the members of its team (anyone else: 404 on ``workspace_id``)."""
    return read(request, lambda s, p: svc.workspace_info(s, p, workspace_id=workspace_id))


@router.patch("/workspaces/{workspace_id}", response_model=WorkspaceInfo)
def update_workspace(
    request: Request, workspace_id: PathId, body: WorkspaceUpdate
) -> WorkspaceInfo:
    return run(
        request,
        lambda s, p: svc.update_workspace(s, p, workspace_id=workspace_id, body=body),
    )
