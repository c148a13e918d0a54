"""Small shared wire pieces."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")

#: ids are positive 64-bit integers: a larger number is refused with the field, not a crash
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


#: how deep free-form JSON (params, outputs, manifests) may nest: deeper is refused with a 422
MAX_JSON_DEPTH = 32


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a JSON value, counted without recursion (stops past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def shallow_json(value: dict[str, Any]) -> dict[str, Any]:
    """Pydantic validator: refuse JSON nested deeper than ``MAX_JSON_DEPTH``."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


ShallowJson = Annotated[dict[str, Any], AfterValidator(shallow_json)]


class Wire(BaseModel):
    """Base of every wire model: unknown fields in a request are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """A page of a list; ``next_cursor`` is passed back as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None = None
    total: int | None = None
