"""The calls about the server itself."""

from __future__ import annotations

from typing import Any

from appyard.errors import NotFoundError
from appyard.sdk._calls.effects import Op, request


def health(server_address: str) -> Op[dict[str, Any]]:
    """The liveness answer: under the API prefix, else at the server's root (a proxy in front
    may route only one of them)."""
    try:
        data = yield from request("GET", "/health", auth=False)
    except NotFoundError:
        data = yield from request("GET", server_address + "/health", auth=False)
    return dict(data or {})
