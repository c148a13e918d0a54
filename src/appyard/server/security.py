"""Tokens and passwords: random tokens shown once and stored as sha256; scrypt passwords."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["user", "agent", "task"]
_PREFIX: dict[str, str] = {"user": "ayu_", "agent": "aya_", "task": "ayt_"}


def new_token(kind: TokenKind) -> str:
    """A fresh random token; the prefix tells a human what kind it is."""
    return _PREFIX[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a plain sha256 is enough (no slow hash needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_hex, digest_hex = stored.split("$", 2)
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=2**14, r=8, p=1)
    return hmac.compare_digest(digest.hex(), digest_hex)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    ``kind == "user"``: a user in all its teams. ``"task"``: the task's user, confined to
    ``team_id`` and to the life of ``task_id``. ``"agent"``: only ``agent_id`` of ``team_id``.
    """

    kind: TokenKind
    token_id: int
    user_id: int | None = None
    is_admin: bool = False
    team_id: int | None = None
    agent_id: int | None = None
    task_id: int | None = None
