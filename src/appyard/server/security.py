"""Tokens and passwords: random tokens shown once and stored as sha256; scrypt passwords."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
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


@functools.cache
def _decoy_hash() -> str:
    """A hash no password matches, made once: what an unknown login is checked against."""
    return hash_password(secrets.token_urlsafe(32))


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``, at the same scrypt cost whatever ``stored`` is.

    An unknown login (None), a token-only user (None) and a malformed hash cost one scrypt as
    a wrong password does, so that the time of an answer does not say whether a login exists.
    """
    parts = (stored or "").split("$")
    usable = len(parts) == 3 and parts[0] == "scrypt"
    try:
        salt = bytes.fromhex(parts[1]) if usable else b""
    except ValueError:
        usable = False
    if not usable:
        _, salt_hex, _ = _decoy_hash().split("$")
        salt, parts = bytes.fromhex(salt_hex), ["", "", ""]
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return hmac.compare_digest(digest.hex(), parts[2]) and usable


@dataclass
class _Bucket:
    level: float  # failures counted, leaking away at the limit's rate
    at: float  # monotonic time of ``level``


@dataclass(frozen=True)
class Limit:
    """``burst`` attempts at once, then one per ``every_s`` seconds."""

    burst: int
    every_s: float


class SignInLimiter:
    """Failed sign-ins counted per login and per client address, in this process.

    Each key has a leaky bucket: an attempt adds one before its password is checked (so that
    parallel guesses cannot all slip in before the first failure is counted), a success takes
    it back (and clears its login's count), and counts leak at the limit's rate. An attempt
    that would overflow either bucket is refused unchecked, with the seconds to wait. At most
    ``max_keys`` keys are kept (the least recently used go first), so a flood of made-up
    logins costs bounded memory.
    """

    def __init__(
        self,
        per_login: Limit = Limit(burst=5, every_s=12.0),
        per_address: Limit = Limit(burst=20, every_s=3.0),
        max_keys: int = 100_000,
    ) -> None:
        self.per_login = per_login
        self.per_address = per_address
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, key: tuple[str, str], limit: Limit, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        return max(0.0, bucket.level - (now - bucket.at) / limit.every_s)

    def _set(self, key: tuple[str, str], level: float, now: float) -> None:
        if level <= 0:
            self._buckets.pop(key, None)
            return
        self._buckets[key] = _Bucket(level, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def attempt(self, login: str, address: str) -> int:
        """Count an attempt; 0 if it may go on, else the whole seconds to wait first."""
        now = time.monotonic()
        keys = ((("login", login.lower()), self.per_login), (("addr", address), self.per_address))
        with self._lock:
            levels = [self._level(key, limit, now) for key, limit in keys]
            wait = 0.0
            for level, (_, limit) in zip(levels, keys, strict=True):
                if level + 1 > limit.burst:
                    wait = max(wait, (level + 1 - limit.burst) * limit.every_s)
            if wait:
                return max(1, math.ceil(wait))
            for level, (key, _) in zip(levels, keys, strict=True):
                self._set(key, level + 1, now)
            return 0

    def succeeded(self, login: str, address: str) -> None:
        """A right password: its login starts afresh, and its address gets its attempt back."""
        now = time.monotonic()
        key = ("addr", address)
        with self._lock:
            self._buckets.pop(("login", login.lower()), None)
            self._set(key, self._level(key, self.per_address, now) - 1, now)


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
