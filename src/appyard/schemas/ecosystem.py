"""Modules (apps in the catalog) and their releases on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ReleaseInfo(BaseModel):
    id: int
    version: str
    sha256: str
    size: int
    created_at: datetime


class ModuleInfoWire(BaseModel):
    """A module; ``config`` is the manifest of the release asked for (newest by default)."""

    id: int
    slug: str
    name: str
    type: str = "app"
    config: dict[str, Any]
    readme: str = ""
    repo: str | None = None
    github_repo: str | None = None
    meta: dict[str, Any]  # meta["releases"]: list of ReleaseInfo dicts, newest first
    created_at: datetime
    updated_at: datetime


class PublishResult(BaseModel):
    module_id: int
    slug: str
    release: ReleaseInfo
    created: bool  # False when the same content was published before
