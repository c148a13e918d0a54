"""Authentication, users, tokens, teams, members, workspaces: who may do what where."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from appyard.schemas.accounts import (
    MemberAdd,
    MemberInfo,
    MemberUpdate,
    Role,
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
from appyard.server import keys
from appyard.server.db.models import Agent, Member, Task, Team, Token, User, Workspace
from appyard.server.notifier import emit
from appyard.server.security import (
    Principal,
    TokenKind,
    check_password,
    hash_password,
    hash_token,
    new_token,
)

ROLE_RANK: dict[str, int] = {"viewer": 0, "developer": 1, "admin": 2}
_TERMINAL = [st.value for st in TERMINAL]


def _wake_holders(s: Session, token_hashes: Iterable[str]) -> None:
    """When ``s`` commits, wake the streams and long-polls held with these tokens: they look
    again at once, and a token refused now ends them (``routes/follow.py``), instead of at
    their next keepalive."""
    emit(s, *(keys.credential(h) for h in token_hashes))


def _live_token_hashes(s: Session, user_id: int, team_id: int | None = None) -> list[str]:
    """The hashes of a user's live user tokens and of the task tokens of its sessions that
    still run (in ``team_id`` only, if given)."""
    users = select(Token.hash).where(
        Token.user_id == user_id, Token.kind == "user", Token.revoked.is_(False)
    )
    tasks = select(Task.id).where(Task.user_id == user_id, Task.status.not_in(_TERMINAL))
    if team_id is not None:
        tasks = tasks.where(Task.team_id == team_id)
    of_tasks = select(Token.hash).where(
        Token.kind == "task", Token.revoked.is_(False), Token.task_id.in_(tasks)
    )
    return list(s.scalars(users.union_all(of_tasks)))


# -- authentication ---------------------------------------------------------------------------


#: a token and what it acts as (its user, agent or task) in one read of plain columns: every
#: request pays for it, so it is built once and reads no ORM objects. The user joined is the
#: token's own or its task's, so that a disabled user's task tokens are refused by this same
#: statement (a primary-key lookup on a value of the rows before it)
_RESOLVE = (
    select(
        Token.id,
        Token.kind,
        Token.revoked,
        User.id,
        User.is_admin,
        User.disabled,
        Agent.id,
        Agent.team_id,
        Task.id,
        Task.status,
        Task.user_id,
        Task.team_id,
    )
    .select_from(Token)
    .outerjoin(Agent, Agent.id == Token.agent_id)
    .outerjoin(Task, Task.id == Token.task_id)
    .outerjoin(User, User.id == func.coalesce(Token.user_id, Task.user_id))
    .where(Token.hash == bindparam("hash"))
)


def authenticate(s: Session, token: str) -> Principal:
    """Resolve a bearer token to the principal it acts as, or refuse it."""
    return authenticate_hash(s, hash_token(token), token)


def authenticate_hash(s: Session, token_hash: str, token: str = "") -> Principal:
    """``authenticate`` by the token's stored hash (an app page's cookie, signed with it,
    names the token by id and proves it was made by its holder: ``services/app_pages.py``)."""
    # on the connection: plain columns need none of the ORM's execution machinery
    row = s.connection().execute(_RESOLVE, {"hash": token_hash}).first()
    if row is not None and row.disabled and row.kind != "agent":
        raise AuthenticationError(
            "The user this token acts for is disabled; an instance admin can enable it again "
            "(`appyard user enable`)."
        )
    if row is not None and row.kind == "task" and row.revoked:
        raise AuthenticationError(
            "This task token expired: its task has ended (or a team admin revoked it). A task "
            "token is valid only while its task runs."
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
    token_id, kind, _, user_id, is_admin, _, agent_id, agent_team = row[:8]
    task_id, task_status, task_user, task_team = row[8:]
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
    return UserInfo(
        id=u.id,
        login=u.login,
        is_admin=u.is_admin,
        disabled=u.disabled,
        created_at=u.created_at,
        name=u.name,
    )


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


def set_disabled(s: Session, p: Principal, *, user_id: int, disabled: bool) -> UserInfo:
    """Disable a user (it signs in no more, every token of it dies) or enable it again.

    Its user tokens are revoked for good (enabling it again revives none); its task tokens are
    refused while it is disabled by the token lookup itself, which reads the flag.
    """
    me_id = require_admin(p)
    user = s.get(User, user_id)
    if user is None:
        raise NotFoundError(f"User {user_id} not found.", field="user_id")
    if disabled and user.id == me_id:
        raise ConflictError(
            "You cannot disable yourself: ask another instance admin.", field="user_id"
        )
    user.disabled = disabled
    if disabled:
        _wake_holders(s, _live_token_hashes(s, user.id))
        s.execute(
            update(Token)
            .where(Token.user_id == user.id, Token.revoked.is_(False))
            .values(revoked=True)
        )
    s.flush()
    return _user_info(user)


def check_user_update(s: Session, p: Principal, *, user_id: int, body: UserUpdate) -> User:
    """May the caller change user ``user_id`` as ``body`` says? The user itself (with a user
    token) or an instance admin may. A user the caller shares no team with looks missing (404);
    another member of its teams is a 403. Nothing to change: a 422."""
    if body.name is None and body.password is None:
        raise BadRequestError(
            "name: give a new name or a new password (or both); the body changes nothing",
            field="name",
        )
    if p.kind != "user" or p.user_id is None:
        raise PermissionDeniedError(
            f"A {p.kind} token cannot change a user; use the user's own token or an instance "
            "admin's."
        )
    user = s.get(User, user_id)
    missing = NotFoundError(f"User {user_id} not found.", field="user_id")
    if user is None:
        raise missing
    if user.id == p.user_id or p.is_admin:
        return user
    mine = select(Member.team_id).where(Member.user_id == p.user_id)
    shared = s.scalar(
        select(Member.team_id).where(Member.user_id == user_id, Member.team_id.in_(mine)).limit(1)
    )
    if shared is None:
        raise missing
    raise PermissionDeniedError(
        f"Only user {user_id} itself or an instance admin may change its name or password.",
        field="user_id",
    )


def update_user(
    s: Session, p: Principal, *, user_id: int, body: UserUpdate, password_hash: str | None
) -> UserInfo:
    """Change a user's display name and/or password (``password_hash``: ``body.password``
    hashed by the caller outside the transaction). Its tokens live on: a token already gives
    what a sign-in would."""
    user = check_user_update(s, p, user_id=user_id, body=body)
    if body.name is not None:
        user.name = body.name
    if password_hash is not None:
        user.password_hash = password_hash
    s.flush()
    return _user_info(user)


def me(s: Session, p: Principal) -> UserInfo:
    user = s.get(User, require_user(p))
    assert user is not None
    return _user_info(user)


def _token_info(t: Token) -> TokenInfo:
    return TokenInfo(
        id=t.id,
        name=t.name,
        kind=t.kind,
        user_id=t.user_id,
        agent_id=t.agent_id,
        task_id=t.task_id,
        created_at=t.created_at,
    )


def _token_manager(p: Principal) -> int:
    """Only a user token manages tokens: an app's (task) token or an agent's manages none."""
    if p.kind != "user" or p.user_id is None:
        raise PermissionDeniedError(
            f"A {p.kind} token manages no tokens; use a user token for this."
        )
    return p.user_id


def create_token(s: Session, p: Principal, *, body: TokenCreate) -> TokenCreated:
    user_id = _token_manager(p)
    if body.user_id is not None and body.user_id != user_id:
        require_admin(p)
        other = s.get(User, body.user_id)
        if other is None:
            raise NotFoundError(f"User {body.user_id} not found.", field="user_id")
        if other.disabled:
            raise ConflictError(
                f"User {body.user_id} is disabled; enable it first (`appyard user enable`).",
                field="user_id",
            )
        user_id = body.user_id
    row, raw = mint_token(s, "user", body.name, user_id=user_id)
    return TokenCreated(**_token_info(row).model_dump(), token=raw)


def list_tokens(s: Session, p: Principal, *, team_id: int | None = None) -> list[TokenInfo]:
    """The caller's user tokens; with ``team_id`` (a team admin): every live token that acts
    in the team: its members' user tokens, its agents' and its running tasks'."""
    user_id = _token_manager(p)
    live = Token.revoked.is_(False)
    if team_id is None:
        mine = select(Token).where(Token.user_id == user_id, Token.kind == "user", live)
        return [_token_info(t) for t in s.scalars(mine.order_by(Token.id))]
    team_role(s, p, team_id, "admin")
    members = select(Member.user_id).where(Member.team_id == team_id)
    agents = select(Agent.id).where(Agent.team_id == team_id)
    tasks = select(Task.id).where(Task.team_id == team_id, Task.status.not_in(_TERMINAL))
    rows = s.scalars(
        select(Token)
        .where(
            live,
            ((Token.kind == "user") & Token.user_id.in_(members))
            | ((Token.kind == "agent") & Token.agent_id.in_(agents))
            | ((Token.kind == "task") & Token.task_id.in_(tasks)),
        )
        .order_by(Token.id)
    )
    return [_token_info(t) for t in rows]


def _token_team(s: Session, row: Token) -> int | None:
    """The team an agent or task token acts in."""
    if row.agent_id is not None:
        return s.scalar(select(Agent.team_id).where(Agent.id == row.agent_id))
    if row.task_id is not None:
        return s.scalar(select(Task.team_id).where(Task.id == row.task_id))
    return None


def revoke_token(s: Session, p: Principal, *, token_id: int) -> None:
    """Revoke a token the caller may manage.

    Its own user tokens; as a team admin, the team's agent and task tokens, and the user
    tokens of a member whose every team the caller administers (a token acts in all of its
    user's teams: revoking it must not reach into a team the caller does not run), never an
    instance admin's; as an instance admin, any. Any other token looks missing (404), or is
    a 403 when the caller administers one of its user's teams but not all.
    """
    user_id = _token_manager(p)
    row = s.get(Token, token_id)
    missing = NotFoundError(f"Token {token_id} not found.", field="token_id")
    if row is None:
        raise missing
    if p.is_admin or (row.kind == "user" and row.user_id == user_id):
        _revoke(s, row)
        return
    if row.kind in ("agent", "task"):
        team = _token_team(s, row)
        if team is None or s.get(Member, (team, user_id)) is None:
            raise missing
        team_role(s, p, team, "admin")
        _revoke(s, row)
        return
    their_teams = dict(
        s.execute(select(Member.team_id, Member.role).where(Member.user_id == row.user_id)).all()
    )
    my_admin_teams = set(
        s.scalars(select(Member.team_id).where(Member.user_id == user_id, Member.role == "admin"))
    )
    if not (their_teams.keys() & my_admin_teams):
        raise missing
    owner = s.get(User, row.user_id)
    outside = sorted(their_teams.keys() - my_admin_teams)
    if owner is None or owner.is_admin or outside:
        why = (
            "is an instance admin"
            if owner is None or owner.is_admin
            else f"is also a member of team(s) {', '.join(map(str, outside))}, which you do not administer"
        )
        raise PermissionDeniedError(
            f"Token {token_id} belongs to a user who {why}: ask an instance admin to revoke it, "
            "or remove the user from your team instead.",
            field="token_id",
        )
    _revoke(s, row)


def _revoke(s: Session, row: Token) -> None:
    row.revoked = True
    _wake_holders(s, [row.hash])


def rotate_agent_token(s: Session, p: Principal, *, agent_id: int) -> TokenCreated:
    """A new token for an agent (team admin); every older token of the agent dies at once.

    The agent in operation gets a 401 on its next call: run it again with the new token.
    """
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can rotate an agent's token.")
    agent = s.get(Agent, agent_id)
    missing = NotFoundError(f"Agent {agent_id} not found.", field="agent_id")
    if agent is None:
        raise missing
    try:
        team_role(s, p, agent.team_id, "admin")
    except NotFoundError:
        raise missing from None
    live = (Token.agent_id == agent.id, Token.revoked.is_(False))
    _wake_holders(s, s.scalars(select(Token.hash).where(*live)))
    s.execute(update(Token).where(*live).values(revoked=True))
    row, raw = mint_token(s, "agent", f"agent {agent.id}", agent_id=agent.id)
    return TokenCreated(**_token_info(row).model_dump(), token=raw)


def password_of(s: Session, *, login_name: str) -> tuple[int, str | None] | None:
    """A sign-in's user id and password hash (None: no such login, or a disabled user)."""
    row = s.execute(
        select(User.id, User.password_hash, User.disabled).where(User.login == login_name)
    ).first()
    if row is None or row.disabled:
        return None
    return row.id, row.password_hash


def signed_in(found: tuple[int, str | None] | None, password: str) -> int | None:
    """The user id if ``password`` is right; one scrypt whatever ``found`` is, so that an
    unknown login answers as slowly as a wrong password (no database: run it outside one)."""
    right = check_password(password, found[1] if found is not None else None)
    return found[0] if right and found is not None else None


def login_token(s: Session, *, user_id: int) -> TokenCreated:
    """Mint a sign-in's token (the user may have been disabled since its password was read)."""
    user = s.get(User, user_id)
    if user is None or user.disabled:
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


def update_team(s: Session, p: Principal, *, team_id: int, body: TeamUpdate) -> TeamInfo:
    """Rename a team (team admin). Team names need not be unique, as at creation."""
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can rename a team.")
    role = team_role(s, p, team_id, "admin")
    team = s.get(Team, team_id)
    assert team is not None  # team_role found it
    team.name = body.name
    s.flush()
    return TeamInfo(id=team.id, name=team.name, role=role, created_at=team.created_at)


def list_members(s: Session, p: Principal, *, team_id: int) -> list[MemberInfo]:
    team_role(s, p, team_id)
    rows = s.execute(
        select(Member, User.login, User.disabled)
        .join(User, User.id == Member.user_id)
        .where(Member.team_id == team_id)
        .order_by(User.id)
    )
    return [
        MemberInfo(user_id=m.user_id, login=login, role=m.role, disabled=off)  # type: ignore[arg-type]
        for m, login, off in rows
    ]


def _keep_an_admin(s: Session, *, team_id: int, losing: int) -> None:
    """Refuse a change that would leave the team with no enabled admin.

    Called with the team's row locked (``_lock_team``), so that two admins demoting or removing
    each other at once cannot both pass the count.
    """
    others = s.scalar(
        select(func.count())
        .select_from(Member)
        .join(User, User.id == Member.user_id)
        .where(
            Member.team_id == team_id,
            Member.role == "admin",
            Member.user_id != losing,
            User.disabled.is_(False),
        )
    )
    if not others:
        raise ConflictError(
            f"Team {team_id} would have no admin left: make another member admin first.",
            field="user_id",
        )


def _lock_team(s: Session, team_id: int) -> None:
    """Member changes of one team one at a time (a row lock on PostgreSQL; SQLite's writes are
    serialized anyway)."""
    s.execute(select(Team.id).where(Team.id == team_id).with_for_update())


def add_member(s: Session, p: Principal, *, team_id: int, body: MemberAdd) -> MemberInfo:
    """Add a user to the team, or change a member's role (team admin).

    Whom a team admin may add: the members of its other teams (users it sees already). Any
    other login answers as a login that does not exist, whether it exists or not, so that the
    answer does not tell who has an account here; an instance admin (who lists users anyway)
    adds anyone.
    """
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can manage members.")
    team_role(s, p, team_id, "admin")
    _lock_team(s, team_id)
    found = select(User).where(User.login == body.login)
    if not p.is_admin:
        my_teams = select(Member.team_id).where(Member.user_id == p.user_id)
        shared = select(Member.user_id).where(
            Member.user_id == User.id, Member.team_id.in_(my_teams)
        )
        found = found.where(exists(shared))
    user = s.scalar(found)
    if user is None:
        raise NotFoundError(
            f"No user with login {body.login!r} that you can add. A team admin adds the members "
            "of its other teams; an instance admin adds anyone.",
            field="login",
        )
    member = s.get(Member, (team_id, user.id))
    if member is None:
        s.add(Member(team_id=team_id, user_id=user.id, role=body.role))
    else:
        if member.role == "admin" and body.role != "admin":
            _keep_an_admin(s, team_id=team_id, losing=user.id)
        member.role = body.role
    return MemberInfo(user_id=user.id, login=user.login, role=body.role, disabled=user.disabled)


def update_member(
    s: Session, p: Principal, *, team_id: int, user_id: int, body: MemberUpdate
) -> MemberInfo:
    """Change a member's role (team admin); the team keeps at least one enabled admin."""
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can manage members.")
    team_role(s, p, team_id, "admin")
    _lock_team(s, team_id)
    member = s.get(Member, (team_id, user_id))
    if member is None:
        raise NotFoundError(
            f"User {user_id} is not a member of team {team_id}; add it first "
            f"(POST /teams/{team_id}/members).",
            field="user_id",
        )
    if member.role == "admin" and body.role != "admin":
        _keep_an_admin(s, team_id=team_id, losing=user_id)
    if member.role != body.role:
        # what its tokens were let do in the team is asked again (a stream, a request into a
        # session let through before: ``request_grants``)
        _wake_holders(s, _live_token_hashes(s, user_id, team_id))
    member.role = body.role
    user = s.get(User, user_id)
    assert user is not None  # a member row points at its user
    s.flush()
    return MemberInfo(user_id=user.id, login=user.login, role=body.role, disabled=user.disabled)


def remove_member(s: Session, p: Principal, *, team_id: int, user_id: int) -> None:
    """Take a user out of a team: a team admin removes anyone, a member removes itself.

    The team keeps at least one enabled admin. What the user started keeps running; its task
    tokens act in the team no more (a task token acts only while its user is a member).
    """
    if p.kind != "user":
        raise PermissionDeniedError("Only a user token can manage members.")
    team_role(s, p, team_id, "viewer" if user_id == p.user_id else "admin")
    _lock_team(s, team_id)
    member = s.get(Member, (team_id, user_id))
    if member is None:
        raise NotFoundError(f"User {user_id} is not a member of team {team_id}.", field="user_id")
    if member.role == "admin":
        _keep_an_admin(s, team_id=team_id, losing=user_id)
    s.delete(member)
    # its streams of the team's data look again, and end refused; those of its other teams
    # look once and go on
    _wake_holders(s, _live_token_hashes(s, user_id, team_id))


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
    _lock_team(s, team_id)  # a name is checked and taken one writer at a time (renames too)
    _check_workspace_name(s, team_id, body.name)
    ws = Workspace(team_id=team_id, name=body.name, description=body.description)
    s.add(ws)
    s.flush()
    return _ws_info(ws)


def _check_workspace_name(s: Session, team_id: int, name: str, keep: int | None = None) -> None:
    """A workspace name is unique in its team (``keep``: the workspace being renamed)."""
    taken = select(Workspace.id).where(Workspace.team_id == team_id, Workspace.name == name)
    if keep is not None:
        taken = taken.where(Workspace.id != keep)
    if s.scalar(taken.limit(1)) is not None:
        raise ConflictError(
            f"Team {team_id} has a workspace named {name!r} already; pick another name.",
            field="name",
        )


def update_workspace(
    s: Session, p: Principal, *, workspace_id: int, body: WorkspaceUpdate
) -> WorkspaceInfo:
    """Rename a workspace and/or change its description (developer of its team); the name
    stays unique in the team (409 on ``name``, nothing changed)."""
    if body.name is None and body.description is None:
        raise BadRequestError(
            "name: give a new name or a new description (or both); the body changes nothing",
            field="name",
        )
    ws = get_workspace(s, p, workspace_id, "developer")
    if body.name is not None and body.name != ws.name:
        _lock_team(s, ws.team_id)
        _check_workspace_name(s, ws.team_id, body.name, keep=ws.id)
        ws.name = body.name
    if body.description is not None:
        ws.description = body.description
    s.flush()
    return _ws_info(ws)


def workspace_info(s: Session, p: Principal, *, workspace_id: int) -> WorkspaceInfo:
    """One workspace, for the members of its team (anyone else: the 404 of a missing one)."""
    return _ws_info(get_workspace(s, p, workspace_id))


def get_workspace(s: Session, p: Principal, workspace_id: int, need: Role = "viewer") -> Workspace:
    """Workspace ``workspace_id`` once the caller's role in its team is at least ``need``; one
    that is missing and one of a team the caller is not in are the same 404."""
    missing = NotFoundError(
        f"Workspace {workspace_id} not found, or you are not a member of its team. List your "
        "team's workspaces with GET /teams/{team_id}/workspaces.",
        field="workspace_id",
    )
    ws = s.get(Workspace, workspace_id)
    if ws is None:
        raise missing
    try:
        team_role(s, p, ws.team_id, need)
    except NotFoundError:
        raise missing from None
    return ws
