"""Team files: a file tree per team, addressed by team-relative paths (docs/data.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from appyard.server.routes.deps import authenticated

router = APIRouter(dependencies=[Depends(authenticated)], tags=["files"])
