"""Authentication, users, tokens, teams, members, workspaces: who may do what where."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from appyard.schemas.accounts import (
    MemberAdd,
    MemberInfo,
    Role,
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
from appyard.server.db.models import Agent, Member, Task, Team, Token, User, Workspace
from appyard.server.security import (
    Principal,
    TokenKind,
    check_password,
    hash_password,
    hash_token,
    new_token,
)

ROLE_RANK: dict[str, int] = {"viewer": 0, "developer": 1, "admin": 2}


# -- authentication ---------------------------------------------------------------------------


#: a token and what it acts as (its user, agent or task) in one read of plain columns: every
#: request pays for it, so it is built once and reads no ORM objects
_RESOLVE = (
    select(
        Token.id,
        Token.kind,
        Token.revoked,
        User.id,
        User.is_admin,
        Agent.id,
        Agent.team_id,
        Task.id,
        Task.status,
        Task.user_id,
        Task.team_id,
    )
    .outerjoin(User, User.id == Token.user_id)
    .outerjoin(Agent, Agent.id == Token.agent_id)
    .outerjoin(Task, Task.id == Token.task_id)
    .where(Token.hash == bindparam("hash"))
)


def authenticate(s: Session, token: str) -> Principal:
    """Resolve a bearer token to the principal it acts as, or refuse it."""
    # on the connection: plain columns need none of the ORM's execution machinery
    row = s.connection().execute(_RESOLVE, {"hash": hash_token(token)}).first()
    if row is not None and row.kind == "task" and row.revoked:
        raise AuthenticationError(
            "This task token expired: its task has ended. A task token is valid only while "
            "its task runs."
        )
    if row is None or row.revoked:
        if token.startswith("aya_"):
            raise AuthenticationError(
                "The agent token is not valid (unknown or revoked). Create a new agent with "
                "`appyard agent create NAME` and run the agent with the token it prints."
            )
        raise AuthenticationError(
            "The API token is not valid (unknown or revoked). "
            "Create a token with `appyard token create` and set API_TOKEN."
        )
    token_id, kind, _, user_id, is_admin, agent_id, agent_team = row[:7]
    task_id, task_status, task_user, task_team = row[7:]
    if kind == "user":
        if user_id is None:
            raise AuthenticationError("The token's user no longer exists.")
        return Principal("user", token_id, user_id=user_id, is_admin=bool(is_admin))
    if kind == "agent":
        if agent_id is None:
            raise AuthenticationError("The token's agent no longer exists; create a new agent.")
        return Principal("agent", token_id, team_id=agent_team, agent_id=agent_id)
    if task_id is None or Status(task_status) in TERMINAL:
        raise AuthenticationError(
            "This task token expired: its task has ended. A task token is valid only while "
            "its task runs."
        )
    return Principal("task", token_id, user_id=task_user, team_id=task_team, task_id=task_id)


def mint_token(
    s: Session, kind: TokenKind, name: str = "", **owner: int | None
) -> tuple[Token, str]:
    raw = new_token(kind)
    row = Token(hash=hash_token(raw), kind=kind, name=name, **owner)
    s.add(row)
    s.flush()
    return row, raw


def require_user(p: Principal) -> int:
    """The user id behind a user or task token; agents are refused."""
    if p.kind == "agent" or p.user_id is None:
        raise PermissionDeniedError(
            "An agent token can only be used by its agent; use a user token for this."
        )
    return p.user_id


def require_admin(p: Principal) -> int:
    user_id = require_user(p)
    if p.kind != "user" or not p.is_admin:
        raise PermissionDeniedError("Only an instance admin may do this.")
    return user_id


def team_role(s: Session, p: Principal, team_id: int, need: Role = "viewer") -> Role:
    """The caller's role in ``team_id``, checked against ``need``.

    Not a member (or a task/agent token of another team): 404, so that team ids of others
    do not leak. A member with too low a role: 403 naming the role needed.
    """
    team = s.get(Team, team_id)
    not_found = NotFoundError(
        f"Team {team_id} not found, or you are not a member of it.", field="team_id"
    )
    if team is None:
        raise not_found
    # an agent token acts only as its agent (its own protocol), never as a team member
    if p.kind == "agent" or (p.kind == "task" and p.team_id != team_id):
        raise not_found
    role: Role
    if p.kind == "user" and p.is_admin:
        role = "admin"
    else:
        member = s.get(Member, (team_id, p.user_id))
        if member is None:
            raise not_found
        role = member.role  # type: ignore[assignment]
    if ROLE_RANK[role] < ROLE_RANK[need]:
        raise PermissionDeniedError(
            f"Your role in team {team_id} is {role}; this needs {need} or higher. "
            "Ask a team admin to change your role."
        )
    return role


# -- users and tokens -------------------------------------------------------------------------


def _user_info(u: User) -> UserInfo:
    return UserInfo(id=u.id, login=u.login, is_admin=u.is_admin, created_at=u.created_at)


def create_user(s: Session, p: Principal | None, *, body: UserCreate) -> UserInfo:
    if p is not None:
        require_admin(p)
    if s.scalar(select(User.id).where(User.login == body.login)) is not None:
        raise ConflictError(f"A user with login {body.login!r} exists already.", field="login")
    user = User(
        login=body.login,
        password_hash=hash_password(body.password) if body.password else None,
        is_admin=body.is_admin,
    )
    s.add(user)
    s.flush()
    return _user_info(user)


def list_users(s: Session, p: Principal) -> list[UserInfo]:
    require_admin(p)
    return [_user_info(u) for u in s.scalars(select(User).order_by(User.id))]


def me(s: Session, p: Principal) -> UserInfo:
    user = s.get(User, require_user(p))
    assert user is not None
    return _user_info(user)


def _token_info(t: Token) -> TokenInfo:
    return TokenInfo(id=t.id, name=t.name, kind=t.kind, user_id=t.user_id, created_at=t.created_at)


def create_token(s: Session, p: Principal, *, body: TokenCreate) -> TokenCreated:
    user_id = require_user(p)
    if p.kind != "user":
        raise PermissionDeniedError("A task token cannot mint tokens.")
    if body.user_id is not None and body.user_id != user_id:
        require_admin(p)
        if s.get(User, body.user_id) is None:
            raise NotFoundError(f"User {body.user_id} not found.", field="user_id")
        user_id = body.user_id
    row, raw = mint_token(s, "user", body.name, user_id=user_id)
    return TokenCreated(**_token_info(row).model_dump(), token=raw)


def list_tokens(s: Session, p: Principal) -> list[TokenInfo]:
    user_id = require_user(p)
    rows = s.scalars(
        select(Token)
        .where(Token.user_id == user_id, Token.kind == "user", Token.revoked.is_(False))
        .order_by(Token.id)
    )
    return [_token_info(t) for t in rows]


def revoke_token(s: Session, p: Principal, *, token_id: int) -> None:
    user_id = require_user(p)
    row = s.get(Token, token_id)
    if row is None or row.kind != "user" or (row.user_id != user_id and not p.is_admin):
        raise NotFoundError(f"Token {token_id} not found.", field="token_id")
    row.revoked = True


def login(s: Session, *, login_name: str, password: str) -> TokenCreated:
    user = s.scalar(select(User).where(User.login == login_name))
    if user is None or not check_password(password, user.password_hash):
        raise AuthenticationError("Wrong login or password.")
    row, raw = mint_token(s, "user", "login", user_id=user.id)
    return TokenCreated(**_token_info(row).model_dump(), token=raw)


def bootstrap_admin(s: Session, token_file: Path) -> bool:
    """On a database with no users: make ``admin`` and write its token to ``token_file``.

    Used by ``appyard up`` so the first start needs no manual step. Returns True when it did.
    """
    if s.scalar(select(func.count()).select_from(User)):
        return False
    user = User(login="admin", is_admin=True)
    s.add(user)
    s.flush()
    _, raw = mint_token(s, "user", "bootstrap", user_id=user.id)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = token_file.with_suffix(".tmp")
    tmp.write_text(raw + "\n")
    tmp.chmod(0o600)
    tmp.replace(token_file)
    return True


# -- teams, members, workspaces ---------------------------------------------------------------


def list_teams(s: Session, p: Principal) -> list[TeamInfo]:
    if p.kind == "agent":
        raise PermissionDeniedError(
            "An agent token can only be used by its agent; use a user token for this."
        )
    if p.kind == "task":
        team = s.get(Team, p.team_id)
        assert team is not None
        role = team_role(s, p, team.id)
        return [TeamInfo(id=team.id, name=team.name, role=role, created_at=team.created_at)]
    if p.is_admin:
        rows = s.execute(
            select(Team, Member.role)
            .outerjoin(Member, (Member.team_id == Team.id) & (Member.user_id == p.user_id))
            .order_by(Team.id)
        )
        return [
            TeamInfo(id=t.id, name=t.name, role="admin", created_at=t.created_at) for t, _ in rows
        ]
    rows = s.execute(
        select(Team, Member.role)
        .join(Member, Member.team_id == Team.id)
        .where(Member.user_id == p.user_id)
        .order_by(Team.id)
    )
    return [
        TeamInfo(id=t.id, name=t.name, role=r, created_at=t.created_at)  # type: ignore[arg-type]
        for t, r in rows
    ]


def create_team(s: Session, p: Principal, *, body: TeamCreate) -> TeamInfo:
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can create a team.")
    user_id = require_user(p)
    team = Team(name=body.name)
    s.add(team)
    s.flush()
    s.add(Member(team_id=team.id, user_id=user_id, role="admin"))
    return TeamInfo(id=team.id, name=team.name, role="admin", created_at=team.created_at)


def list_members(s: Session, p: Principal, *, team_id: int) -> list[MemberInfo]:
    team_role(s, p, team_id)
    rows = s.execute(
        select(Member, User.login)
        .join(User, User.id == Member.user_id)
        .where(Member.team_id == team_id)
        .order_by(User.id)
    )
    return [MemberInfo(user_id=m.user_id, login=login, role=m.role) for m, login in rows]  # type: ignore[arg-type]


def add_member(s: Session, p: Principal, *, team_id: int, body: MemberAdd) -> MemberInfo:
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can manage members.")
    team_role(s, p, team_id, "admin")
    user = s.scalar(select(User).where(User.login == body.login))
    if user is None:
        raise NotFoundError(f"No user with login {body.login!r}.", field="login")
    member = s.get(Member, (team_id, user.id))
    if member is None:
        s.add(Member(team_id=team_id, user_id=user.id, role=body.role))
    else:
        member.role = body.role
    return MemberInfo(user_id=user.id, login=user.login, role=body.role)


def _ws_info(w: Workspace) -> WorkspaceInfo:
    return WorkspaceInfo(
        id=w.id, team_id=w.team_id, name=w.name, description=w.description, created_at=w.created_at
    )


def list_workspaces(s: Session, p: Principal, *, team_id: int) -> list[WorkspaceInfo]:
    team_role(s, p, team_id)
    rows = s.scalars(select(Workspace).where(Workspace.team_id == team_id).order_by(Workspace.id))
    return [_ws_info(w) for w in rows]


def create_workspace(
    s: Session, p: Principal, *, team_id: int, body: WorkspaceCreate
) -> WorkspaceInfo:
    team_role(s, p, team_id, "developer")
    exists = s.scalar(
        select(Workspace.id).where(Workspace.team_id == team_id, Workspace.name == body.name)
    )
    if exists is not None:
        raise ConflictError(
            f"Team {team_id} has a workspace named {body.name!r} already.", field="name"
        )
    ws = Workspace(team_id=team_id, name=body.name, description=body.description)
    s.add(ws)
    s.flush()
    return _ws_info(ws)


def get_workspace(s: Session, p: Principal, workspace_id: int, need: Role = "viewer") -> Workspace:
    ws = s.get(Workspace, workspace_id)
    if ws is None:
        raise NotFoundError(f"Workspace {workspace_id} not found.", field="workspace_id")
    try:
        team_role(s, p, ws.team_id, need)
    except NotFoundError:
        raise NotFoundError(
            f"Workspace {workspace_id} not found, or you are not a member of its team.",
            field="workspace_id",
        ) from None
    return ws
