"""Who may open a running app's web page (``/apps/{task_id}/...``), and its sign-in.

A browser cannot send ``Authorization`` on a navigation, so the page has a sign-in of its own:
the web UI (which holds the user's token) asks ``POST /tasks/{id}/app-page`` for a ticket, and
the browser opens ``/apps/{id}/?appyard_ticket=...``; the server answers that with a cookie
scoped to the page (``Path=/apps/{id}/``, HttpOnly) and a redirect without the ticket. The
ticket and the cookie carry the id of the token they were made with, the task, an expiry and
an HMAC keyed with the token's stored hash: no server secret is needed (replicas agree), a
revoked token ends its cookies, and a cookie opens one task's page and nothing else (the API
never reads cookies). Clients with a token (curl, the SDK) send it as usual instead.

Opening the page takes the ``viewer`` role in the task's team (another team: 404, as if the
task did not exist). The page is there while the app runs (``started``/``deployed``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import ApiError, AuthenticationError, PermissionDeniedError
from appyard.server.db.models import Token
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.accounts import authenticate_hash

#: the page's cookie, and the query parameter of the ticket that sets it
COOKIE = "appyard_app"
TICKET_PARAM = "appyard_ticket"
#: how long a ticket (in a URL: short) and a cookie are good for
TICKET_TTL_S = 120
COOKIE_TTL_S = 12 * 3600
#: statuses in which the app process runs and its page is there
RUNNING = frozenset({Status.STARTED, Status.DEPLOYED})

Use = Literal["ticket", "cookie"]


def _sig(token_hash: str, use: Use, token_id: int, task_id: int, exp: int) -> str:
    msg = f"appyard-app-page|{use}|{token_id}|{task_id}|{exp}".encode()
    return hmac.new(token_hash.encode(), msg, hashlib.sha256).hexdigest()


def sign(token_hash: str, use: Use, token_id: int, task_id: int, ttl_s: int) -> str:
    exp = int(time.time()) + ttl_s
    return f"v1.{token_id}.{task_id}.{exp}.{_sig(token_hash, use, token_id, task_id, exp)}"


def token_hash_of(s: Session, token_id: int) -> str | None:
    return s.scalar(select(Token.hash).where(Token.id == token_id))


def resolve_signed(s: Session, value: str, use: Use, task_id: int) -> Principal:
    """The principal a ticket or cookie of ``task_id``'s page acts as, or a 401 saying why."""
    what = "ticket" if use == "ticket" else "sign-in cookie"
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != "v1" or not all(p.isdigit() for p in parts[1:4]):
        raise AuthenticationError(f"The app page's {what} is malformed; open the page again.")
    token_id, for_task, exp = int(parts[1]), int(parts[2]), int(parts[3])
    if for_task != task_id:
        raise AuthenticationError(
            f"The app page's {what} is for task {for_task}, not task {task_id}."
        )
    if exp < time.time():
        raise AuthenticationError(
            f"The app page's {what} has expired; open the page again from the session's page."
        )
    token_hash = token_hash_of(s, token_id)
    expected = _sig(token_hash or "", use, token_id, task_id, exp)
    if token_hash is None or not hmac.compare_digest(expected, parts[4]):
        raise AuthenticationError(f"The app page's {what} is not valid; open the page again.")
    return authenticate_hash(s, token_hash)


def page_target(s: Session, p: Principal, *, task_id: int) -> tuple[int, int]:
    """The agent running ``task_id`` and the task's team, if ``p`` may open its page and the
    app runs; else 404 (not visible), 403 (an agent token) or 409 naming the task's status."""
    if p.kind == "agent":
        raise PermissionDeniedError(
            "An agent token cannot open app pages; sign in as a user (or send a user token)."
        )
    t = get_task(s, p, task_id, "viewer")
    status = Status(t.status)
    if status not in RUNNING or t.agent_id is None:
        if status in TERMINAL:
            what = f"has ended ({status.value}): its page is gone"
        elif status is Status.TERMINATING:
            what = "is being stopped (terminating)"
        else:
            what = f"has not started yet ({status.value}); open its page once it runs"
        raise ApiError(
            f"The page of task {task_id} is not there: the session {what}.",
            status_code=409,
            code="not_running",
            field="task_id",
            details={"task_id": task_id, "status": status.value},
        )
    return t.agent_id, t.team_id


def ticket_for(s: Session, p: Principal, *, task_id: int) -> str:
    """A short-lived ticket that opens ``task_id``'s page as ``p`` (checked as the page is)."""
    page_target(s, p, task_id=task_id)
    token_hash = token_hash_of(s, p.token_id)
    if token_hash is None:  # the token went between its check and now
        raise AuthenticationError("The API token is not valid (unknown or revoked).")
    return sign(token_hash, "ticket", p.token_id, task_id, TICKET_TTL_S)


def cookie_for(s: Session, p: Principal, *, task_id: int) -> str:
    token_hash = token_hash_of(s, p.token_id)
    if token_hash is None:
        raise AuthenticationError("The API token is not valid (unknown or revoked).")
    return sign(token_hash, "cookie", p.token_id, task_id, COOKIE_TTL_S)
