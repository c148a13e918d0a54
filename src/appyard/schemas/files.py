"""Team files on the wire: entries of a team's file store, addressed by team-relative paths."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from appyard.schemas.common import Wire


class FileInfo(BaseModel):
    """One entry: ``path`` is absolute within the team's root (``/exports/a.tar``)."""

    path: str
    name: str
    is_dir: bool
    size: int  # bytes; 0 for a folder
    modified_at: datetime


class FolderCreate(Wire):
    path: str = Field(min_length=1, max_length=1024)
