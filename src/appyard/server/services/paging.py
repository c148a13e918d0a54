"""Keyset pages: read ``limit + 1`` rows past the cursor; the extra one says there is more."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from appyard.schemas.common import Page

T = TypeVar("T")


class _HasId(Protocol):
    id: int


R = TypeVar("R", bound=_HasId)


def keyset_page(rows: Sequence[R], limit: int, info: Callable[[R], T]) -> Page[T]:
    """A page of the first ``limit`` of ``rows`` (read with ``limit + 1``); ``next_cursor`` is
    the id of its last row when more follow."""
    more = len(rows) > limit
    kept = rows[:limit]
    return Page[T](
        items=[info(r) for r in kept],
        next_cursor=str(kept[-1].id) if more and kept else None,
    )
