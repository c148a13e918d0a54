"""Team files on the wire: entries of a team's file store, addressed by team-relative paths."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from appyard.schemas.common import Wire


class FileInfo(BaseModel):
    """One entry: ``path`` is absolute within the team's root (``/exports/a.tar``).

    A file has a stable ``id`` (``GET /files/{id}``) while it is there; a folder has none.
    ``hash`` is the sha256 of the content an upload wrote, when the server knows it.
    """

    path: str
    name: str
    is_dir: bool
    size: int  # bytes; 0 for a folder
    modified_at: datetime
    id: int | None = None  # a file's id; None for a folder
    team_id: int | None = None
    hash: str | None = None  # sha256 hex of the content, if known
    user_id: int | None = None  # who uploaded it, if known
    created_at: datetime | None = None  # when a file first got its id at this path
    updated_at: datetime | None = None  # when it was last written through the API


class FolderCreate(Wire):
    path: str = Field(min_length=1, max_length=1024)


class FileMove(Wire):
    """What ``PATCH /files/{id}`` changes: the file's team path (its id stays)."""

    path: str = Field(min_length=1, max_length=1024)


class FolderMove(Wire):
    """``POST /teams/{id}/files/folders/move``: a folder and all below it, to a free path."""

    src: str = Field(min_length=1, max_length=1024)
    dst: str = Field(min_length=1, max_length=1024)
