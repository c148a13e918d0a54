"""``supervisely.api.file_api``: ``api.file.get_info_by_id`` in the reference's ``FileInfo``,
and ``api.file.rename`` (a move in the team of ``TEAM_ID``).

Every other call of ``api.file`` is appyard's own (``docs/data.md``: ``upload``, ``list``,
``download``, ... with appyard's ``FileInfo``, whose ``id`` is the same id), reached through
this object unchanged.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING, Any, NamedTuple

from appyard.compat._errors import NotSupportedError
from appyard.compat._records import file_url, iso
from appyard.compat.io import env
from appyard.errors import NotFoundError
from appyard.schemas.files import FileInfo as OurFile

if TYPE_CHECKING:
    from appyard.compat.api.api import Api

__all__ = ["FileApi", "FileInfo", "file_info"]


class FileInfo(NamedTuple):
    """A team file as the reference describes it; ``storage_path`` and ``full_storage_url``
    are its download address on this server (the caller's token goes with a request to it)."""

    team_id: int
    id: int
    user_id: int | None
    name: str
    hash: str | None
    path: str
    storage_path: str
    mime: str | None
    ext: str
    sizeb: int
    created_at: str | None
    updated_at: str | None
    full_storage_url: str
    is_dir: bool


def file_info(f: OurFile, server_address: str) -> FileInfo:
    """Our file info (from ``GET /files/{id}``: it has its id and team) as the reference's."""
    if f.id is None or f.team_id is None:
        raise ValueError(f"{f.path!r} has no id (a folder): the reference's FileInfo needs one")
    url = file_url(server_address, f.team_id, f.path)
    stem, dot, ext = f.name.rpartition(".")
    return FileInfo(
        team_id=f.team_id,
        id=f.id,
        user_id=f.user_id,
        name=f.name,
        hash=f.hash,
        path=f.path,
        storage_path=url,
        mime=mimetypes.guess_type(f.name)[0],
        ext=ext if dot and stem else "",
        sizeb=f.size,
        created_at=iso(f.created_at or f.modified_at),
        updated_at=iso(f.updated_at or f.modified_at),
        full_storage_url=url,
        is_dir=f.is_dir,
    )


class FileApi:
    """appyard's ``api.file``, with the reference's ``get_info_by_id`` and ``rename``."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._ay = api._ay

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ay.file, name)

    def rename(self, old_name: str, new_name: str) -> None:
        """Move team file or folder ``old_name`` to ``new_name`` (team paths; ids stay) in the
        team of ``TEAM_ID``: the reference's call names no team (and does nothing there).
        Without ``TEAM_ID``: ``NotSupportedError``; ``api.file.move(team_id, src, dst)`` names
        the team."""
        team_id = env.team_id(raise_not_found=False)
        if team_id is None:
            raise NotSupportedError(
                "file.rename without TEAM_ID is not supported: it names no team. Call "
                "api.file.move(team_id, old_name, new_name), or set TEAM_ID."
            )
        self._ay.file.move(team_id, old_name, new_name)

    def get_info_by_id(self, id: int) -> FileInfo | None:
        """The team file with id ``id`` (listed and uploaded files carry it as ``.id``);
        ``None`` when there is none now or it is in none of your teams."""
        try:
            found = self._ay.file.get_info_by_id(id)
        except NotFoundError as exc:
            if exc.field == "file_id":
                return None
            raise
        return file_info(found, self._api.server_address)
