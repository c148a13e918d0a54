"""Small shared wire pieces."""

from __future__ import annotations

import json
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

T = TypeVar("T")

#: ids are positive integers that fit the id columns (INTEGER: 32 bits on PostgreSQL): a larger
#: number is refused with the field (422), never sent to the database to overflow there (500)
MAX_ID = 2**31 - 1
#: byte offsets and sizes (BIGINT columns): 64 bits
MAX_INT64 = 2**63 - 1
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

#: most bytes (as compact JSON) of a start's ``params`` and of a task's ``outputs``: both are
#: stored in the task's row and sent with every page and stream of the team's sessions
MAX_PARAMS_BYTES = 256 * 1024
MAX_OUTPUTS_BYTES = 256 * 1024
#: longest name (team, workspace, task) and description (workspace, task)
MAX_NAME = 200
MAX_DESCRIPTION = 5000
#: longest text an agent reports for a task (its error with the log's tail): longer is cut
MAX_REPORTED_TEXT = 65536


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (what is stored)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def capped_json(limit: int) -> AfterValidator:
    """Pydantic validator: refuse JSON that takes more than ``limit`` bytes."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        size = json_size(value)
        if size > limit:
            raise ValueError(f"is {size} bytes of JSON; the limit is {limit} bytes")
        return value

    return AfterValidator(check)


def nul_at(value: Any) -> str | None:
    """Where a NUL character is in a JSON-like value: ``""`` in the value itself, ``.key`` or
    ``[i]`` below it, None when it has none. Models inside are skipped (they check their own)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return at
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{at}.{key!r}"
                if isinstance(child, str | dict | list):
                    stack.append((child, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend(
                (child, f"{at}[{i}]")
                for i, child in enumerate(item)
                if isinstance(child, str | dict | list)
            )
    return None


def _without_nul(value: Any) -> Any:
    """A reported text keeps what it can: NUL becomes U+FFFD, and it is cut to its cap."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if len(value) > MAX_REPORTED_TEXT:
            value = value[: MAX_REPORTED_TEXT - 1] + "…"
    return value


#: text an agent relays from an app (log lines, error texts): never refused, since an app's
#: output is not the agent's to fix; a NUL is replaced and an over-long text cut
ReportedText = Annotated[str, BeforeValidator(_without_nul)]


class Wire(BaseModel):
    """Base of every wire model: unknown fields in a request are refused, not ignored, and
    no text field may hold a NUL character (PostgreSQL can neither store nor look one up)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # free JSON (params, outputs) may hold one: a JSON column stores it escaped
        at = nul_at(value) if isinstance(value, str | list) else None
        if at is not None:
            where = f" (at {at.lstrip('.')})" if at else ""
            raise ValueError(
                f"contains a NUL character (\\u0000){where}, which cannot be stored; remove it"
            )
        return value


class Page(BaseModel, Generic[T]):
    """A page of a list; ``next_cursor`` is passed back as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None = None
    total: int | None = None
