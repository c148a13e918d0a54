"""Small shared wire pieces."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

#: ids are positive 64-bit integers: a larger number is refused with the field, not a crash
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class Wire(BaseModel):
    """Base of every wire model: unknown fields in a request are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """A page of a list; ``next_cursor`` is passed back as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None = None
    total: int | None = None
