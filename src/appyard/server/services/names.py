"""Names of projects, datasets and images: unique in their parent, and what one may be.

A taken name is a 409, or, when the caller asks (``change_name_if_conflict``), the first free
numbered variant (``name 1``, ``name 2``, ...; an image keeps its extension last). The unique
constraint has the last word, so a name won by a concurrent writer is handled the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from appyard.errors import BadRequestError, ConflictError, NotFoundError
from appyard.server.db.models import Dataset, Image, Project

#: what a name of a project, dataset or image may be (as ``schemas.annotation.Name``)
NAME_PATTERN = r"^[^\x00-\x1f/\\]+$"
NAME_MAX = 100

R = TypeVar("R", Project, Dataset, Image)


def check_description(description: str) -> None:
    """A description is free text, but without NUL characters (PostgreSQL cannot store one)."""
    if "\x00" in description:
        raise BadRequestError(
            "description: contains a NUL character (\\x00); remove it.", field="description"
        )


def _numbered(name: str, keep_extension: bool) -> tuple[str, Callable[[int], str]]:
    """The prefix every numbered variant of ``name`` starts with, and the n-th variant:
    ``name 1``, ``name 2``, ... (for an image ``cat 1.jpg``: its extension stays last)."""
    stem, dot, ext = name.rpartition(".")
    if keep_extension and dot and stem:
        return f"{stem} ", lambda n: f"{stem} {n}.{ext}"
    return f"{name} ", lambda n: f"{name} {n}"


def _free_name(
    s: Session,
    column: InstrumentedAttribute[str],
    scope: ColumnElement[bool],
    name: str,
    keep_extension: bool,
) -> str:
    """``name`` if no row in ``scope`` has it, else the first free numbered variant (one query)."""
    prefix, variant = _numbered(name, keep_extension)
    taken = set(
        s.scalars(
            select(column).where(
                scope, or_(column == name, column.startswith(prefix, autoescape=True))
            )
        )
    )
    if name not in taken:
        return name
    n = 1
    while variant(n) in taken:
        n += 1
    return variant(n)


def insert_named(
    s: Session,
    make: Callable[[str], R],
    column: InstrumentedAttribute[str],
    scope: ColumnElement[bool],
    name: str,
    change_name_if_conflict: bool,
    taken: Callable[[str], ConflictError],
    parent_gone: Callable[[], NotFoundError | None],
    keep_extension: bool = False,
) -> R:
    """Insert ``make(name)`` under a name unique in ``scope``: a taken name is ``taken(name)``
    (a 409), or, with ``change_name_if_conflict``, the first free ``name N``.

    The unique constraint has the last word: a name won by a concurrent writer between the
    look and the insert is a 409 too (or the next free name is tried).
    """
    for _ in range(100):
        if change_name_if_conflict:
            chosen = _free_name(s, column, scope, name, keep_extension)
        else:
            if s.scalar(select(column).where(scope, column == name)) is not None:
                raise taken(name)
            chosen = name
        row = make(chosen)
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            gone = parent_gone()
            if gone is not None:
                raise gone from None
            if not change_name_if_conflict:
                raise taken(name) from None
            continue
        return row
    raise taken(name)
